// SPDX-License-Identifier: MIT
/* discovery_listeners.c - the set of listeners a scan found, and address classification */
#include "discovery_listeners.h"
#include "array.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ph_scan_push(struct ph_scan *scan, const struct ph_listener *l)
{
	if (ph_array_grow(&scan->v, &scan->cap, scan->len + 1, sizeof(*scan->v), 64))
		return -ENOMEM;
	scan->v[scan->len++] = *l;
	return 0;
}

void ph_scan_clear(struct ph_scan *scan)
{
	scan->len = 0;
}

void ph_scan_free(struct ph_scan *scan)
{
	free(scan->v);
	*scan = (struct ph_scan){ 0 };
}

void ph_scan_swap(struct ph_scan *a, struct ph_scan *b)
{
	struct ph_scan t = *a;

	*a = *b;
	*b = t;
}

bool ph_addr_is_v4(const struct in6_addr *a)
{
	return IN6_IS_ADDR_V4MAPPED(a);
}

bool ph_addr_is_loopback(const struct in6_addr *a)
{
	if (IN6_IS_ADDR_V4MAPPED(a))
		return a->s6_addr[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(a);
}

bool ph_addr_is_any(const struct in6_addr *a)
{
	static const uint8_t mapped_any[16] = { [10] = 0xff, [11] = 0xff };

	return IN6_IS_ADDR_UNSPECIFIED(a) || !memcmp(a->s6_addr, mapped_any, 16);
}

void ph_addr_from_v4(struct in6_addr *out, struct in_addr v4)
{
	memset(out, 0, sizeof(*out));
	out->s6_addr[10] = 0xff;
	out->s6_addr[11] = 0xff;
	memcpy(&out->s6_addr[12], &v4.s_addr, 4);
}

const char *ph_addr_str(const struct in6_addr *a, char *buf, size_t len)
{
	if (IN6_IS_ADDR_V4MAPPED(a))
		inet_ntop(AF_INET, &a->s6_addr[12], buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, a, buf, (socklen_t)len);
	return buf;
}
