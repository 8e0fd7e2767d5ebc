// SPDX-License-Identifier: MIT
/* ctl_output.c - portholectl's human-readable output
 *
 * Everything printed here came from the network, so strings are passed
 * through put_clean(): a daemon (or whatever answers on its port) must not
 * be able to send terminal escape sequences to the operator's screen.
 */
#include "ctl_output.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Print @s with control characters replaced by '?' */
static void put_clean(FILE *out, const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
}

static void clean_copy(char *buf, size_t size, const char *s, size_t n)
{
	size_t i;

	if (!size)
		return;
	for (i = 0; i < n && i + 1 < size && s[i]; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
}

void ph_ctl_error_text(const char *body, char *buf, size_t size)
{
	json_t *root, *err;
	size_t n;

	if (!size)
		return;
	buf[0] = '\0';
	if (!body || !*body)
		return;
	root = json_loads(body, JSON_DISABLE_EOF_CHECK, NULL);
	err = json_is_object(root) ? json_object_get(root, "error") : NULL;
	if (json_is_string(err)) {
		clean_copy(buf, size, json_string_value(err), json_string_length(err));
	} else {
		n = strcspn(body, "\r\n");
		clean_copy(buf, size, body, n);
	}
	json_decref(root);
}

enum { C_PORT, C_FAMILY, C_ADDR, C_EXT, C_STATE, C_CONNS, C_SINCE, C_ERROR, NCOLS };

/* One table row, every cell already a string */
struct row {
	json_int_t port;
	char cell[NCOLS][128];
};

static const char *const headers[NCOLS] = {
	"PORT", "FAMILY", "ADDRESS", "EXTERNAL", "STATE", "CONNS", "SINCE", "ERROR",
};

/* The port's "addresses" comma-separated, "-" when none; what does not fit
 * in the cell is counted, "10.0.0.1,+3" */
static void cell_addrs(char *cell, json_t *obj)
{
	json_t *a = json_object_get(obj, "addresses"), *v;
	size_t i, len = 0, n = json_is_array(a) ? json_array_size(a) : 0;

	strcpy(cell, "-");
	json_array_foreach(a, i, v) {
		char s[64];
		size_t l;

		if (!json_is_string(v))
			continue;
		clean_copy(s, sizeof(s), json_string_value(v), json_string_length(v));
		l = strlen(s);
		/* room for this one, its comma and a "+N" after it */
		if (len + l + 1 + 4 >= 128) {
			snprintf(cell + len, 128 - len, "%s+%zu", len ? "," : "", n - i);
			return;
		}
		len += (size_t)sprintf(cell + len, "%s%s", len ? "," : "", s);
	}
}

static void cell_str(char *cell, json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_string(v) && json_string_length(v))
		clean_copy(cell, 128, json_string_value(v), json_string_length(v));
	else
		strcpy(cell, "-");
}

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	return strcmp(x->cell[C_FAMILY], y->cell[C_FAMILY]);
}

static void put_cell(FILE *out, const char *s, size_t width, bool last)
{
	if (last)
		fprintf(out, "%s\n", s);
	else
		fprintf(out, "%-*s  ", (int)width, s);
}

int ph_ctl_print_ports(FILE *out, const char *body)
{
	size_t width[NCOLS], n, i;
	struct row *rows = NULL;
	json_t *root, *ports, *p;
	int ret = -EPROTO;

	root = json_loads(body ? body : "", 0, NULL);
	ports = json_is_object(root) ? json_object_get(root, "ports") : NULL;
	if (!json_is_array(ports))
		goto out;
	n = json_array_size(ports);
	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows) {
		ret = -ENOMEM;
		goto out;
	}
	json_array_foreach(ports, i, p) {
		struct row *r = &rows[i];
		json_t *port = json_object_get(p, "port"), *conns;

		if (!json_is_object(p) || !json_is_integer(port))
			goto out;
		r->port = json_integer_value(port);
		snprintf(r->cell[C_PORT], 128, "%lld", (long long)r->port);
		cell_str(r->cell[C_FAMILY], p, "family");
		cell_str(r->cell[C_ADDR], p, "address");
		cell_addrs(r->cell[C_EXT], p);
		cell_str(r->cell[C_STATE], p, "state");
		conns = json_object_get(p, "connections");
		if (json_is_integer(conns))
			snprintf(r->cell[C_CONNS], 128, "%lld", (long long)json_integer_value(conns));
		else
			strcpy(r->cell[C_CONNS], "-");
		cell_str(r->cell[C_SINCE], p, "since");
		cell_str(r->cell[C_ERROR], p, "error");
	}
	qsort(rows, n, sizeof(*rows), row_cmp);

	for (int c = 0; c < NCOLS; c++) {
		width[c] = strlen(headers[c]);
		for (i = 0; i < n; i++)
			if (strlen(rows[i].cell[c]) > width[c])
				width[c] = strlen(rows[i].cell[c]);
	}
	/* the last column is not padded, so lines carry no trailing blanks */
	for (int c = 0; c < NCOLS; c++)
		put_cell(out, headers[c], width[c], c == NCOLS - 1);
	for (i = 0; i < n; i++)
		for (int c = 0; c < NCOLS; c++)
			put_cell(out, rows[i].cell[c], width[c], c == NCOLS - 1);
	ret = 0;
out:
	free(rows);
	json_decref(root);
	return ret;
}

int ph_ctl_print_health(FILE *out, const char *body)
{
	json_t *root = json_loads(body ? body : "", 0, NULL);
	json_t *state = json_is_object(root) ? json_object_get(root, "state") : NULL;
	json_t *version = json_is_object(root) ? json_object_get(root, "version") : NULL;
	int ret = -EPROTO;

	if (!json_is_string(state))
		goto out;
	put_clean(out, json_string_value(state));
	if (json_is_string(version)) {
		fputs(" (portholed ", out);
		put_clean(out, json_string_value(version));
		fputc(')', out);
	}
	fputc('\n', out);
	ret = 0;
out:
	json_decref(root);
	return ret;
}

/* "8000 ipv4 127.0.0.1 forwarded 2 conns" plus the error, from one port object */
static void put_port(FILE *out, json_t *p)
{
	static const char *const keys[] = { "family", "address", "state" };
	json_t *v = json_object_get(p, "port");

	if (json_is_integer(v))
		fprintf(out, "%lld", (long long)json_integer_value(v));
	else
		fputc('?', out);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		v = json_object_get(p, keys[i]);
		fputc(' ', out);
		put_clean(out, json_is_string(v) ? json_string_value(v) : "-");
	}
	v = json_object_get(p, "connections");
	if (json_is_integer(v))
		fprintf(out, " conns=%lld", (long long)json_integer_value(v));
	v = json_object_get(p, "error");
	if (json_is_string(v)) {
		fputs(" error=\"", out);
		put_clean(out, json_string_value(v));
		fputc('"', out);
	}
}

static void put_raw(FILE *out, const char *event, const char *data)
{
	put_clean(out, event);
	if (*data) {
		fputc(' ', out);
		put_clean(out, data);	/* multi-line data: newlines become '?' */
	}
	fputc('\n', out);
}

int ph_ctl_print_event(FILE *out, const char *event, const char *data)
{
	json_t *root = json_loads(data, JSON_DECODE_ANY, NULL);

	if (!strcmp(event, "lost")) {
		json_t *count = json_is_object(root) ? json_object_get(root, "count") : root;

		if (json_is_integer(count))
			fprintf(out, "warning: %lld events lost (watch too slow); the state shown may be stale\n",
				(long long)json_integer_value(count));
		else
			put_raw(out, "warning: events lost:", data);
	} else if (!strcmp(event, "snapshot") && json_is_object(root) &&
		   json_is_array(json_object_get(root, "ports"))) {
		json_t *ports = json_object_get(root, "ports"), *p;
		size_t i;

		fprintf(out, "snapshot %zu ports", json_array_size(ports));
		json_array_foreach(ports, i, p) {
			fputs(i ? ", " : ": ", out);
			put_port(out, p);
		}
		fputc('\n', out);
	} else if (json_is_object(root) && json_object_get(root, "port")) {
		put_clean(out, event);
		fputc(' ', out);
		put_port(out, root);
		fputc('\n', out);
	} else {
		put_raw(out, event, data);
	}
	json_decref(root);
	return 0;
}
