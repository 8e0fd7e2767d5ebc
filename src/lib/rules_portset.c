// SPDX-License-Identifier: MIT
/* rules_portset.c - parse "22,udp:53,tcp:5000-5999" into port bitmaps and query them
 *
 * Grammar (whitespace allowed around items and around the protocol's colon
 * is not: "udp:53", not "udp : 53"):
 *
 *	list  = item *("," item)
 *	item  = [proto ":"] port ["-" port]	; no proto: TCP and UDP
 *	proto = "tcp" / "udp"			; lower case
 *	port  = 1*DIGIT				; 1..65535
 *
 * The parser is strict on purpose: a typo in --allow or --deny must stop
 * the daemon with a message naming the item rather than silently expose
 * (or hide) the wrong ports. It runs twice over the text, validating
 * first and setting bits second, so a failed parse leaves @ps untouched.
 */
#include "rules_portset.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>

#define ITEM_SHOW 32	/* at most this much of a bad item is quoted back */

/* protocols an item names */
#define P_TCP 1u
#define P_UDP 2u

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * Read a port number from [*p, end). Only digits; the value is capped while
 * reading so that any length of digits cannot overflow.
 * Return: 0 and the port, -ERANGE (0 or > 65535) or -EINVAL (no digits)
 */
static int read_port(const char **p, const char *end, uint16_t *port)
{
	const char *s = *p;
	unsigned long v = 0;

	if (s == end || !is_digit(*s))
		return -EINVAL;
	while (s < end && is_digit(*s)) {
		if (v <= 65535)
			v = v * 10 + (unsigned long)(*s - '0');
		s++;
	}
	*p = s;
	if (v == 0 || v > 65535)
		return -ERANGE;
	*port = (uint16_t)v;
	return 0;
}

/*
 * An optional "tcp:" or "udp:" at *@p: advances past it.
 * Return: the P_* bits it names (both without one), or 0 for another
 * protocol name
 */
static unsigned read_proto(const char **p, const char *end)
{
	const char *s = *p;

	if (end - s < 4 || s[3] != ':')
		return is_digit(*s) ? P_TCP | P_UDP : 0;
	*p = s + 4;
	if (!memcmp(s, "tcp", 3))
		return P_TCP;
	if (!memcmp(s, "udp", 3))
		return P_UDP;
	return 0;
}

/*
 * Parse one item (already trimmed, non-empty) into @protos, [*lo, *hi].
 * Return: 0, or -EINVAL with @why set
 */
static int parse_item(const char *s, const char *end, unsigned *protos, uint16_t *lo,
		      uint16_t *hi, const char **why)
{
	const char *p = s;
	int ret;

	*protos = read_proto(&p, end);
	if (!*protos) {
		*why = "expected PORT, PORT-PORT, tcp:... or udp:...";
		return -EINVAL;
	}
	ret = read_port(&p, end, lo);
	if (ret) {
		*why = ret == -ERANGE ? "port out of range 1-65535" : "not a port number";
		return -EINVAL;
	}
	*hi = *lo;
	if (p < end && *p == '-') {
		p++;
		ret = read_port(&p, end, hi);
		if (ret) {
			*why = ret == -ERANGE ? "port out of range 1-65535" : "not a port range";
			return -EINVAL;
		}
		if (*hi < *lo) {
			*why = "reversed range";
			return -EINVAL;
		}
	}
	if (p != end) {
		*why = "trailing garbage";
		return -EINVAL;
	}
	return 0;
}

static void add_range(struct ph_portset *ps, unsigned protos, unsigned lo, unsigned hi)
{
	for (unsigned p = lo; p <= hi; p++) {
		if (protos & P_TCP)
			ps->bits[p / 64] |= 1ull << (p % 64);
		if (protos & P_UDP)
			ps->udp[p / 64] |= 1ull << (p % 64);
	}
}

/*
 * One pass over @spec; sets bits only when @ps is not NULL.
 * Return: 0 or -EINVAL with @err filled
 */
static int walk(struct ph_portset *ps, const char *spec, char *err, size_t errlen)
{
	const char *item = spec;
	unsigned n = 0;

	for (;;) {
		const char *comma = strchr(item, ',');
		const char *end = comma ? comma : item + strlen(item);
		const char *s = item, *e = end, *why = NULL;
		uint16_t lo, hi;
		unsigned protos;

		n++;
		while (s < e && is_space(*s))
			s++;
		while (e > s && is_space(e[-1]))
			e--;
		if (s == e) {
			set_err(err, errlen, "empty item #%u in port list", n);
			return -EINVAL;
		}
		if (parse_item(s, e, &protos, &lo, &hi, &why)) {
			int len = (int)(e - s);

			set_err(err, errlen, "bad port item \"%.*s%s\": %s",
				len > ITEM_SHOW ? ITEM_SHOW : len, s, len > ITEM_SHOW ? "..." : "",
				why);
			return -EINVAL;
		}
		if (ps)
			add_range(ps, protos, lo, hi);
		if (!comma)
			return 0;
		item = comma + 1;
	}
}

/**
 * ph_portset_parse() - parse a comma list of ports and ranges
 * @ps:		result; may already hold ports (repeated flags accumulate)
 * @spec:	e.g. "22,udp:53,tcp:5000-5999"; whitespace around items is allowed
 * @err:	human-readable reason on failure, naming the item (may be NULL)
 * @errlen:	size of @err
 *
 * On failure @ps is left unchanged. On success @ps->set becomes true.
 * Return: 0 or -EINVAL
 */
int ph_portset_parse(struct ph_portset *ps, const char *spec, char *err, size_t errlen)
{
	const char *s = spec;

	if (!spec) {
		set_err(err, errlen, "missing port list");
		return -EINVAL;
	}
	while (is_space(*s))
		s++;
	if (!*s) {
		set_err(err, errlen, "empty port list");
		return -EINVAL;
	}
	if (walk(NULL, spec, err, errlen))
		return -EINVAL;
	walk(ps, spec, NULL, 0);
	ps->set = true;
	return 0;
}

bool ph_portset_has(const struct ph_portset *ps, uint16_t port)
{
	return ps && (ps->bits[port / 64] >> (port % 64)) & 1;
}

bool ph_portset_has_proto(const struct ph_portset *ps, int proto, uint16_t port)
{
	if (proto != IPPROTO_UDP)
		return ph_portset_has(ps, port);
	return ps && (ps->udp[port / 64] >> (port % 64)) & 1;
}

/* Adds @port for both protocols (0 is never a member) and marks the set as given */
void ph_portset_add(struct ph_portset *ps, uint16_t port)
{
	if (port)
		add_range(ps, P_TCP | P_UDP, port, port);
	ps->set = true;
}
