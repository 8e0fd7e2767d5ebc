// SPDX-License-Identifier: MIT
/* json.c - growable text buffer and a small escaping JSON writer on top of it
 *
 * The API only ever writes JSON (jansson is used for parsing elsewhere), so a
 * writer that appends to a buffer is all that is needed. Strings are escaped
 * per RFC 8259; bytes that are not valid UTF-8 become U+FFFD so that the
 * output is always valid JSON whatever a port's error text contains.
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "porthole.h"
#include "array.h"

void ph_buf_free(struct ph_buf *b)
{
	free(b->data);
	*b = (struct ph_buf){ 0 };
}

void ph_buf_reset(struct ph_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->data)
		b->data[0] = '\0';
}

/**
 * ph_buf_reserve() - make room for @n more bytes plus the terminating NUL
 * @b:		buffer
 * @n:		bytes about to be appended
 *
 * Return: 0 or -ENOMEM (then @b->oom is set)
 */
int ph_buf_reserve(struct ph_buf *b, size_t n)
{
	size_t need;

	if (b->oom)
		return -ENOMEM;
	if (n > SIZE_MAX / 2 - b->len)
		goto oom;
	need = b->len + n + 1;
	if (ph_array_grow(&b->data, &b->cap, need, 1, 256) == 0)
		return 0;
oom:
	b->oom = true;
	return -ENOMEM;
}

void ph_buf_add(struct ph_buf *b, const void *p, size_t n)
{
	if (ph_buf_reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void ph_buf_puts(struct ph_buf *b, const char *s)
{
	ph_buf_add(b, s, strlen(s));
}

void ph_buf_printf(struct ph_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ph_buf_reserve(b, 64))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (ph_buf_reserve(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void ph_buf_consume(struct ph_buf *b, size_t n)
{
	if (n >= b->len) {
		ph_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

/* Length of the valid UTF-8 sequence at @s (at most @n bytes), 0 if invalid */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/**
 * ph_json_escape() - append string content escaped for a JSON string literal
 * @b:		destination
 * @s:		bytes (need not be NUL-terminated, may contain NUL)
 * @n:		their count
 */
void ph_json_escape(struct ph_buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, run = 0;

	while (i < n) {
		unsigned char c = p[i];
		const char *esc = NULL;
		char ubuf[8];
		size_t l;

		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(ubuf, sizeof(ubuf), "\\u%04x", c);
				esc = ubuf;
			}
		}
		if (esc) {
			ph_buf_add(b, s + i - run, run);
			run = 0;
			ph_buf_puts(b, esc);
			i++;
			continue;
		}
		l = utf8_len(p + i, n - i);
		if (!l) {
			ph_buf_add(b, s + i - run, run);
			run = 0;
			ph_buf_puts(b, "\\ufffd");
			i++;
			continue;
		}
		run += l;
		i += l;
	}
	ph_buf_add(b, s + i - run, run);
}

void ph_json_init(struct ph_json *j, struct ph_buf *b)
{
	*j = (struct ph_json){ .b = b };
}

/*
 * Every value goes through begin_value(): inside an object it must follow a
 * key (which wrote the comma); inside an array it writes the comma itself; at
 * the top level only one value is allowed.
 */
static void begin_value(struct ph_json *j)
{
	if (j->depth == 0) {
		if (j->done)
			j->bad = true;
		j->done = true;
		return;
	}
	if (j->is_obj[j->depth - 1]) {
		if (!j->after_key)
			j->bad = true;
		j->after_key = false;
		return;
	}
	if (j->count[j->depth - 1]++)
		ph_buf_add(j->b, ",", 1);
}

static void open_nest(struct ph_json *j, char c, bool object)
{
	begin_value(j);
	if (j->depth >= PH_JSON_MAX_DEPTH) {
		j->bad = true;
		return;
	}
	ph_buf_add(j->b, &c, 1);
	j->is_obj[j->depth] = object;
	j->count[j->depth] = 0;
	j->depth++;
}

static void close_nest(struct ph_json *j, char c, bool object)
{
	if (j->depth == 0 || j->after_key || j->is_obj[j->depth - 1] != object) {
		j->bad = true;
		return;
	}
	ph_buf_add(j->b, &c, 1);
	j->depth--;
}

void ph_json_obj_begin(struct ph_json *j) { open_nest(j, '{', true); }
void ph_json_obj_end(struct ph_json *j) { close_nest(j, '}', true); }
void ph_json_arr_begin(struct ph_json *j) { open_nest(j, '[', false); }
void ph_json_arr_end(struct ph_json *j) { close_nest(j, ']', false); }

/**
 * ph_json_key() - write an object member name; the next value is its value
 * @j:		writer, inside an object
 * @key:	name (escaped)
 */
void ph_json_key(struct ph_json *j, const char *key)
{
	if (j->depth == 0 || j->after_key || !j->is_obj[j->depth - 1]) {
		j->bad = true;
		return;
	}
	if (j->count[j->depth - 1]++)
		ph_buf_add(j->b, ",", 1);
	ph_buf_add(j->b, "\"", 1);
	ph_json_escape(j->b, key, strlen(key));
	ph_buf_add(j->b, "\":", 2);
	j->after_key = true;
}

void ph_json_strn(struct ph_json *j, const char *s, size_t n)
{
	begin_value(j);
	ph_buf_add(j->b, "\"", 1);
	ph_json_escape(j->b, s, n);
	ph_buf_add(j->b, "\"", 1);
}

void ph_json_str(struct ph_json *j, const char *s)
{
	ph_json_strn(j, s, strlen(s));
}

void ph_json_int(struct ph_json *j, int64_t v)
{
	begin_value(j);
	ph_buf_printf(j->b, "%" PRId64, v);
}

void ph_json_uint(struct ph_json *j, uint64_t v)
{
	begin_value(j);
	ph_buf_printf(j->b, "%" PRIu64, v);
}

void ph_json_bool(struct ph_json *j, bool v)
{
	begin_value(j);
	ph_buf_puts(j->b, v ? "true" : "false");
}

void ph_json_null(struct ph_json *j)
{
	begin_value(j);
	ph_buf_puts(j->b, "null");
}

int ph_json_finish(const struct ph_json *j)
{
	if (j->b->oom)
		return -ENOMEM;
	if (j->bad || j->depth || j->after_key || !j->done)
		return -EINVAL;
	return 0;
}

void ph_rfc3339_ms(char *buf, size_t size, int64_t unix_ms)
{
	time_t t = (time_t)(unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
	int ms = (int)(unix_ms - (int64_t)t * 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm)) {
		snprintf(buf, size, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

/**
 * ph_json_port() - one port object
 * @j:		writer, where a value may go
 * @pi:		the port
 *
 * "proto" is "tcp" or "udp". "connections" and "cap_hits" only for forwarded
 * TCP ports and, counted with sock_diag, steered ones, "flows" (client
 * addresses relayed now) only for forwarded UDP ports, "error" only for
 * conflicts, "steer_error" for a forwarded port that --steer names (why it
 * is relayed instead), "addresses" (the external addresses it is bound to) whenever it
 * is bound to any, "since" whenever the subsystem knows when the state began.
 */
void ph_json_port(struct ph_json *j, const struct ph_port_info *pi)
{
	char since[40];

	ph_json_obj_begin(j);
	ph_json_key(j, "port");
	ph_json_uint(j, pi->port);
	ph_json_key(j, "proto");
	ph_json_str(j, pi->proto == IPPROTO_UDP ? "udp" : "tcp");
	ph_json_key(j, "family");
	ph_json_str(j, pi->family == AF_INET6 ? "ipv6" : "ipv4");
	ph_json_key(j, "address");
	ph_json_strn(j, pi->address, strnlen(pi->address, sizeof(pi->address)));
	ph_json_key(j, "state");
	ph_json_str(j, ph_port_state_name(pi->state));
	if (pi->state == PH_PORT_FORWARDED && pi->proto != IPPROTO_UDP) {
		ph_json_key(j, "connections");
		ph_json_uint(j, pi->connections);
		ph_json_key(j, "cap_hits");
		ph_json_uint(j, pi->cap_hits);
	} else if (pi->state == PH_PORT_FORWARDED) {
		ph_json_key(j, "flows");
		ph_json_uint(j, pi->flows);
	}
	if (pi->state == PH_PORT_STEERED) {
		ph_json_key(j, "connections");
		ph_json_uint(j, pi->connections);
	}
	if (pi->state == PH_PORT_CONFLICT ||
	    (pi->state == PH_PORT_FORWARDED && pi->error[0])) {
		ph_json_key(j, pi->state == PH_PORT_CONFLICT ? "error" : "steer_error");
		ph_json_strn(j, pi->error, strnlen(pi->error, sizeof(pi->error)));
	}
	if (pi->addrs.n) {
		ph_json_key(j, "addresses");
		ph_json_addr_set(j, &pi->addrs);
	}
	if (pi->since_ms > 0) {
		ph_rfc3339_ms(since, sizeof(since), pi->since_ms);
		ph_json_key(j, "since");
		ph_json_str(j, since);
	}
	ph_json_obj_end(j);
}

void ph_json_port_list(struct ph_json *j, const struct ph_port_list *l)
{
	ph_json_obj_begin(j);
	ph_json_key(j, "external_address");
	ph_json_strn(j, l->external, strnlen(l->external, sizeof(l->external)));
	if (l->external_addrs.n) {
		ph_json_key(j, "external_addresses");
		ph_json_addr_set(j, &l->external_addrs);
	}
	ph_json_key(j, "ports");
	ph_json_arr_begin(j);
	for (size_t i = 0; i < l->n; i++)
		ph_json_port(j, &l->ports[i]);
	ph_json_arr_end(j);
	ph_json_obj_end(j);
}

void ph_json_addr_set(struct ph_json *j, const struct ph_addr_set *s)
{
	char buf[PH_ADDR_STRLEN];

	ph_json_arr_begin(j);
	for (uint32_t i = 0; i < s->n && i < PH_MAX_EXT_ADDRS; i++)
		ph_json_str(j, ph_ext_addr_str(&s->a[i], buf, sizeof(buf)));
	ph_json_arr_end(j);
}

void ph_json_address_event(struct ph_json *j, const struct ph_event *ev)
{
	ph_json_obj_begin(j);
	ph_json_key(j, "old");
	ph_json_addr_set(j, &ev->addresses.old);
	ph_json_key(j, "new");
	ph_json_addr_set(j, &ev->addresses.now);
	ph_json_obj_end(j);
}
