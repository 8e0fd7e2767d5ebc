// SPDX-License-Identifier: MIT
/* sdnotify.c - the fd store protocol as text: descriptor names, LISTEN_FDNAMES, notify datagrams
 *
 * Pure parsers and formatters (see sdnotify.h for the formats); every input
 * is bounded and checked, none is trusted: LISTEN_FDNAMES comes from the
 * environment, a notify datagram from any process that can reach the socket.
 * fuzz/fuzz_sdnotify.c drives all three parsers.
 */
#include "sdnotify.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

bool ph_fdname_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < ' ' || (unsigned char)s[n] >= 127 || s[n] == ':')
			return false;
	return n <= PH_FDNAME_MAX;
}

static const char *kind_prefix(enum ph_fdkind kind)
{
	return kind == PH_FDKIND_TCP ? "tcp" : kind == PH_FDKIND_UDP ? "udp" : NULL;
}

int ph_fdname_format(char *buf, size_t len, enum ph_fdkind kind, const struct sockaddr *sa)
{
	char a[INET6_ADDRSTRLEN];
	const char *p = kind_prefix(kind);
	unsigned port;
	int n;

	if (kind == PH_FDKIND_API) {
		n = snprintf(buf, len, "api");
		return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
	}
	if (!p || !sa)
		return -EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		port = ntohs(s4->sin_port);
		n = snprintf(buf, len, "%s/%s/%u", p, a, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		for (char *c = a; *c; c++)
			if (*c == ':')
				*c = '-';
		port = ntohs(s6->sin6_port);
		if (s6->sin6_scope_id)
			n = snprintf(buf, len, "%s/%s%%%u/%u", p, a, (unsigned)s6->sin6_scope_id, port);
		else
			n = snprintf(buf, len, "%s/%s/%u", p, a, port);
	} else {
		return -EINVAL;
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* Decimal, no sign, no leading zero, within [min, max] */
static int parse_dec(const char *s, size_t n, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!n || n > 10 || (s[0] == '0' && n > 1))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "ADDR/PORT" of a tcp/ or udp/ name */
static int parse_addr_port(const char *s, struct ph_fdname *out)
{
	const char *slash = strrchr(s, '/'), *pct;
	char a[INET6_ADDRSTRLEN + 1];
	size_t alen;
	uint64_t port, scope = 0;

	if (!slash || slash == s)
		return -EINVAL;
	if (parse_dec(slash + 1, strlen(slash + 1), 1, 65535, &port))
		return -EINVAL;
	alen = (size_t)(slash - s);
	pct = memchr(s, '%', alen);
	if (pct) {
		if (parse_dec(pct + 1, (size_t)(slash - pct - 1), 1, UINT32_MAX, &scope))
			return -EINVAL;
		alen = (size_t)(pct - s);
	}
	if (!alen || alen >= sizeof(a))
		return -EINVAL;
	memcpy(a, s, alen);
	a[alen] = '\0';
	if (memchr(a, ':', alen))	/* IPv6 is written with '-' */
		return -EINVAL;
	if (memchr(a, '-', alen)) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->sa;

		for (char *c = a; *c; c++)
			if (*c == '-')
				*c = ':';
		if (inet_pton(AF_INET6, a, &s6->sin6_addr) != 1)
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		s6->sin6_scope_id = (uint32_t)scope;
		out->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&out->sa;

		if (pct || inet_pton(AF_INET, a, &s4->sin_addr) != 1)
			return -EINVAL;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*s4);
	}
	return 0;
}

int ph_fdname_parse(const char *name, struct ph_fdname *out)
{
	enum ph_fdkind kind = PH_FDKIND_OTHER;

	memset(out, 0, sizeof(*out));
	if (!name)
		return 0;
	if (!strcmp(name, "api")) {
		out->kind = PH_FDKIND_API;
		return 0;
	}
	if (!strncmp(name, "tcp/", 4))
		kind = PH_FDKIND_TCP;
	else if (!strncmp(name, "udp/", 4))
		kind = PH_FDKIND_UDP;
	else
		return 0;
	if (parse_addr_port(name + 4, out)) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	out->kind = kind;
	return 0;
}

int ph_fdnames_split(const char *env, size_t n, char (*names)[PH_FDNAME_MAX + 1])
{
	const char *s = env;

	for (size_t i = 0; i < n; i++) {
		const char *end;
		size_t len;

		if (!env) {
			strcpy(names[i], "unknown");
			continue;
		}
		if (!s)
			return -EINVAL;	/* fewer names than descriptors */
		end = strchr(s, ':');
		len = end ? (size_t)(end - s) : strlen(s);
		if (len > PH_FDNAME_MAX)
			return -EINVAL;
		memcpy(names[i], s, len);
		names[i][len] = '\0';
		if (!ph_fdname_valid(names[i]))
			return -EINVAL;
		s = end ? end + 1 : NULL;
	}
	if (env && (s || !n))	/* more names than descriptors */
		return n || *env ? -EINVAL : 0;
	return 0;
}

/* one "KEY=VALUE" line */
static int notify_line(const char *l, size_t n, struct ph_notify *out)
{
	const char *eq = memchr(l, '=', n);
	size_t klen, vlen;
	const char *v;

	if (!eq)
		return 0;
	klen = (size_t)(eq - l);
	v = eq + 1;
	vlen = n - klen - 1;
#define KEY(k) (klen == sizeof(k) - 1 && !memcmp(l, (k), klen))
#define IS1 (vlen == 1 && v[0] == '1')
	if (KEY("READY")) {
		out->ready = IS1;
	} else if (KEY("STOPPING")) {
		out->stopping = IS1;
	} else if (KEY("FDSTORE")) {
		out->fdstore = IS1;
	} else if (KEY("FDSTOREREMOVE")) {
		out->fdstore_remove = IS1;
	} else if (KEY("FDNAME")) {
		if (vlen > PH_FDNAME_MAX)
			return -EINVAL;
		memcpy(out->fdname, v, vlen);
		out->fdname[vlen] = '\0';
		if (!ph_fdname_valid(out->fdname))
			return -EINVAL;
		out->has_fdname = true;
	} else if (KEY("MAINPID")) {
		uint64_t pid;

		if (parse_dec(v, vlen, 1, INT32_MAX, &pid))
			return -EINVAL;
		out->mainpid = (pid_t)pid;
	}
#undef KEY
#undef IS1
	return 0;
}

int ph_notify_parse(const char *buf, size_t len, struct ph_notify *out)
{
	size_t i = 0;

	memset(out, 0, sizeof(*out));
	if (memchr(buf, '\0', len))
		return -EINVAL;
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (buf + i)) : len - i;
		int ret = notify_line(buf + i, n, out);

		if (ret) {
			memset(out, 0, sizeof(*out));
			return ret;
		}
		i += n + 1;
	}
	return 0;
}

int ph_notify_addr(const char *env, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n;

	if (!env || (env[0] != '/' && env[0] != '@'))
		return -EINVAL;
	n = strlen(env);
	if (n < 2 || n >= sizeof(sa->sun_path))
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, env, n);
	if (env[0] == '@') {	/* abstract: a leading NUL, no terminating one */
		sa->sun_path[0] = '\0';
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	} else {
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	return 0;
}

bool ph_sockaddr_same(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return false;
}
