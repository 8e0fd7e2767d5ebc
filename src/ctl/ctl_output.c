// SPDX-License-Identifier: MIT
/* ctl_output.c - portholectl's human-readable output
 *
 * Everything printed here came from the network, so strings are passed
 * through put_clean(): a daemon (or whatever answers on its port) must not
 * be able to send terminal escape sequences to the operator's screen.
 */
#include "ctl_output.h"
#include "ctl_json.h"

#include <errno.h>
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
	struct ph_jv *root, *err;
	size_t n;

	if (!size)
		return;
	buf[0] = '\0';
	if (!body || !*body)
		return;
	root = ph_json_parse(body, true);
	err = ph_json_get(root, "error");
	if (ph_json_is(err, PH_J_STR)) {
		clean_copy(buf, size, err->s, err->len);
	} else {
		n = strcspn(body, "\r\n");
		clean_copy(buf, size, body, n);
	}
	ph_json_free(root);
}

enum { C_PORT, C_FAMILY, C_ADDR, C_EXT, C_STATE, C_CONNS, C_FLOWS, C_SINCE, C_ERROR, NCOLS };

/* One table row, every cell already a string */
struct row {
	long long port;
	bool udp;
	char cell[NCOLS][128];
};

/* "proto" is "udp": such ports are shown as "53/udp", TCP ones bare */
static bool is_udp(const struct ph_jv *obj)
{
	const struct ph_jv *v = ph_json_get(obj, "proto");

	return ph_json_is(v, PH_J_STR) && v->len == 3 && !memcmp(v->s, "udp", 3);
}

static const char *const headers[NCOLS] = {
	"PORT", "FAMILY", "ADDRESS", "EXTERNAL", "STATE", "CONNS", "FLOWS", "SINCE", "ERROR",
};

/* The port's "addresses" comma-separated, "-" when none; what does not fit
 * in the cell is counted, "10.0.0.1,+3" */
static void cell_addrs(char *cell, const struct ph_jv *obj)
{
	const struct ph_jv *a = ph_json_get(obj, "addresses");
	size_t len = 0, n = ph_json_is(a, PH_J_ARR) ? a->n : 0;

	strcpy(cell, "-");
	for (size_t i = 0; i < n; i++) {
		const struct ph_jv *v = &a->kids[i];
		char s[64];
		size_t l;

		if (!ph_json_is(v, PH_J_STR))
			continue;
		clean_copy(s, sizeof(s), v->s, v->len);
		l = strlen(s);
		/* room for this one, its comma and a "+N" after it */
		if (len + l + 1 + 4 >= 128) {
			snprintf(cell + len, 128 - len, "%s+%zu", len ? "," : "", n - i);
			return;
		}
		len += (size_t)sprintf(cell + len, "%s%s", len ? "," : "", s);
	}
}

static void cell_str(char *cell, const struct ph_jv *obj, const char *key)
{
	const struct ph_jv *v = ph_json_get(obj, key);

	if (ph_json_is(v, PH_J_STR) && v->len)
		clean_copy(cell, 128, v->s, v->len);
	else
		strcpy(cell, "-");
}

/* An integer member as text, "-" when absent */
static void cell_int(char *cell, const struct ph_jv *obj, const char *key)
{
	const struct ph_jv *v = ph_json_get(obj, key);

	if (ph_json_is(v, PH_J_INT))
		snprintf(cell, 128, "%lld", v->i);
	else
		strcpy(cell, "-");
}

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->udp != y->udp)
		return x->udp ? 1 : -1;
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
	size_t width[NCOLS], n, i, steered = 0;
	struct row *rows = NULL;
	struct ph_jv *root, *ports;
	int ret = -EPROTO;

	root = ph_json_parse(body ? body : "", false);
	ports = ph_json_get(root, "ports");
	if (!ph_json_is(ports, PH_J_ARR))
		goto out;
	n = ports->n;
	rows = calloc(n ? n : 1, sizeof(*rows));
	if (!rows) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct ph_jv *p = &ports->kids[i];
		const struct ph_jv *port = ph_json_get(p, "port");
		struct row *r = &rows[i];

		if (!ph_json_is(port, PH_J_INT))
			goto out;
		r->port = port->i;
		r->udp = is_udp(p);
		snprintf(r->cell[C_PORT], 128, "%lld%s", (long long)r->port, r->udp ? "/udp" : "");
		cell_str(r->cell[C_FAMILY], p, "family");
		cell_str(r->cell[C_ADDR], p, "address");
		cell_addrs(r->cell[C_EXT], p);
		cell_str(r->cell[C_STATE], p, "state");
		cell_int(r->cell[C_CONNS], p, "connections");
		cell_int(r->cell[C_FLOWS], p, "flows");
		cell_str(r->cell[C_SINCE], p, "since");
		cell_str(r->cell[C_ERROR], p, "error");
		if (ph_json_is(ph_json_get(p, "steer_error"), PH_J_STR)) {
			char why[128];

			cell_str(why, p, "steer_error");
			snprintf(r->cell[C_ERROR], 128, "not steered: %.100s", why);
		}
		steered += !strcmp(r->cell[C_STATE], "steered");
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
	if (steered)	/* the trade, where it applies */
		fputs("steered: no relay; the service sees each client's own address, not "
		      "127.0.0.1 (services that trust loopback peers refuse them)\n", out);
	ret = 0;
out:
	free(rows);
	ph_json_free(root);
	return ret;
}

int ph_ctl_print_health(FILE *out, const char *body)
{
	struct ph_jv *root = ph_json_parse(body ? body : "", false);
	const struct ph_jv *state = ph_json_get(root, "state");
	const struct ph_jv *version = ph_json_get(root, "version");
	int ret = -EPROTO;

	if (!ph_json_is(state, PH_J_STR))
		goto out;
	put_clean(out, state->s);
	if (ph_json_is(version, PH_J_STR)) {
		fputs(" (portholed ", out);
		put_clean(out, version->s);
		fputc(')', out);
	}
	fputc('\n', out);
	ret = 0;
out:
	ph_json_free(root);
	return ret;
}

/* "8000 ipv4 127.0.0.1 forwarded conns=2" (a UDP port: "53/udp ... flows=1")
 * plus the error, from one port object */
static void put_port(FILE *out, const struct ph_jv *p)
{
	static const char *const keys[] = { "family", "address", "state" };
	const struct ph_jv *v = ph_json_get(p, "port");

	if (ph_json_is(v, PH_J_INT))
		fprintf(out, "%lld", v->i);
	else
		fputc('?', out);
	if (is_udp(p))
		fputs("/udp", out);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		v = ph_json_get(p, keys[i]);
		fputc(' ', out);
		put_clean(out, ph_json_is(v, PH_J_STR) ? v->s : "-");
	}
	v = ph_json_get(p, "connections");
	if (ph_json_is(v, PH_J_INT))
		fprintf(out, " conns=%lld", v->i);
	v = ph_json_get(p, "flows");
	if (ph_json_is(v, PH_J_INT))
		fprintf(out, " flows=%lld", v->i);
	v = ph_json_get(p, "error");
	if (ph_json_is(v, PH_J_STR)) {
		fputs(" error=\"", out);
		put_clean(out, v->s);
		fputc('"', out);
	}
	v = ph_json_get(p, "steer_error");
	if (ph_json_is(v, PH_J_STR)) {
		fputs(" not_steered=\"", out);
		put_clean(out, v->s);
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
	struct ph_jv *root = ph_json_parse(data, false);

	if (!strcmp(event, "lost")) {
		const struct ph_jv *count = ph_json_is(root, PH_J_OBJ) ? ph_json_get(root, "count") : root;

		if (ph_json_is(count, PH_J_INT))
			fprintf(out, "warning: %lld events lost (watch too slow); the state shown may be stale\n",
				count->i);
		else
			put_raw(out, "warning: events lost:", data);
	} else if (!strcmp(event, "snapshot") && ph_json_is(ph_json_get(root, "ports"), PH_J_ARR)) {
		const struct ph_jv *ports = ph_json_get(root, "ports");

		fprintf(out, "snapshot %zu ports", ports->n);
		for (size_t i = 0; i < ports->n; i++) {
			fputs(i ? ", " : ": ", out);
			put_port(out, &ports->kids[i]);
		}
		fputc('\n', out);
	} else if (ph_json_get(root, "port")) {
		put_clean(out, event);
		fputc(' ', out);
		put_port(out, root);
		fputc('\n', out);
	} else {
		put_raw(out, event, data);
	}
	ph_json_free(root);
	return 0;
}
