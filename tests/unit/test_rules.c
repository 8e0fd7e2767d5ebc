// SPDX-License-Identifier: MIT
/* test_rules.c - exposure rules: table of scans -> expected per-port decisions */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"

#define EXT "169.254.0.21"
#define PH_MAX_OWN_TEST 16

/* listener flags */
#define V6ONLY	1	/* IPV6_V6ONLY set */
#define UNKNOWN	2	/* v6only not known (the /proc fallback) */

struct tl {
	int fam;		/* 4 or 6: the socket's family */
	const char *addr;	/* for fam 4 dotted quad; for 6 any IPv6 text */
	uint16_t port;
	uint64_t inode;
	int flags;
};

struct td {
	uint16_t port;
	enum ph_decision_kind kind;
	int fam;		/* 4 or 6: expected decision family */
	const char *addr;	/* expected address (dotted quad when fam 4) */
	uint64_t inode;		/* expected inode (uid is checked as inode * 10) */
};

struct tcase {
	const char *name;
	struct tl l[8];		/* ends at port 0 */
	const char *ext;	/* NULL: unknown */
	const char *allow, *deny;	/* NULL: not given */
	uint64_t own[4];	/* ends at 0 */
	struct td d[6];		/* ends at port 0 */
};

#define E PH_DECIDE_EXPOSE
#define X PH_DECIDE_EXCLUDED
#define P PH_DECIDE_PUBLIC

static const struct tcase cases[] = {
	{ "empty scan", { { 0 } }, EXT, NULL, NULL, { 0 }, { { 0 } } },
	{ "127.0.0.1 only",
	  { { 4, "127.0.0.1", 8080, 11, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 8080, E, 4, "127.0.0.1", 11 } } },
	{ "::1 only",
	  { { 6, "::1", 8080, 12, V6ONLY } }, EXT, NULL, NULL, { 0 },
	  { { 8080, E, 6, "::1", 12 } } },
	{ "::1 only, v6only unknown",
	  { { 6, "::1", 8080, 12, UNKNOWN } }, EXT, NULL, NULL, { 0 },
	  { { 8080, E, 6, "::1", 12 } } },
	{ "127.0.0.1 + ::1 -> one decision, IPv4 target",
	  { { 6, "::1", 3000, 21, V6ONLY }, { 4, "127.0.0.1", 3000, 22, 0 } }, EXT, NULL, NULL,
	  { 0 }, { { 3000, E, 4, "127.0.0.1", 22 } } },
	{ "127.0.0.2 only",
	  { { 4, "127.0.0.2", 3000, 31, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 3000, E, 4, "127.0.0.2", 31 } } },
	{ "127.0.0.1 preferred over 127.0.0.0",
	  { { 4, "127.0.0.0", 3000, 31, 0 }, { 4, "127.0.0.1", 3000, 32, 0 } }, EXT, NULL, NULL,
	  { 0 }, { { 3000, E, 4, "127.0.0.1", 32 } } },
	{ "lowest other 127/8 address",
	  { { 4, "127.1.0.1", 3000, 41, 0 }, { 4, "127.0.0.3", 3000, 42, 0 },
	    { 4, "127.0.0.2", 3000, 43, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 3000, E, 4, "127.0.0.2", 43 } } },
	{ "AF_INET 127.0.0.2 over mapped ::ffff:127.0.0.1",
	  { { 6, "::ffff:127.0.0.1", 3000, 51, 0 }, { 4, "127.0.0.2", 3000, 52, 0 } }, EXT,
	  NULL, NULL, { 0 }, { { 3000, E, 4, "127.0.0.2", 52 } } },
	{ "mapped loopback over ::1, connects as IPv4",
	  { { 6, "::1", 3000, 61, V6ONLY }, { 6, "::ffff:127.0.0.5", 3000, 62, 0 } }, EXT,
	  NULL, NULL, { 0 }, { { 3000, E, 4, "127.0.0.5", 62 } } },
	{ "0.0.0.0 is public",
	  { { 4, "0.0.0.0", 80, 71, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, P, 4, "0.0.0.0", 71 } } },
	{ "0.0.0.0 + 127.0.0.1 same port -> public, covering listener",
	  { { 4, "127.0.0.1", 80, 81, 0 }, { 4, "0.0.0.0", 80, 82, 0 } }, EXT, NULL, NULL,
	  { 0 }, { { 80, P, 4, "0.0.0.0", 82 } } },
	{ ":: dual stack + 127.0.0.1 -> public",
	  { { 4, "127.0.0.1", 80, 91, 0 }, { 6, "::", 80, 92, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, P, 6, "::", 92 } } },
	{ ":: v6only + 127.0.0.1 -> expose",
	  { { 4, "127.0.0.1", 80, 101, 0 }, { 6, "::", 80, 102, V6ONLY } }, EXT, NULL, NULL,
	  { 0 }, { { 80, E, 4, "127.0.0.1", 101 } } },
	{ ":: v6only alone -> nothing",
	  { { 6, "::", 80, 111, V6ONLY } }, EXT, NULL, NULL, { 0 }, { { 0 } } },
	{ ":: v6only unknown (/proc) -> treated as dual stack",
	  { { 4, "127.0.0.1", 80, 121, 0 }, { 6, "::", 80, 122, V6ONLY | UNKNOWN } }, EXT,
	  NULL, NULL, { 0 }, { { 80, P, 6, "::", 122 } } },
	{ "::ffff:0.0.0.0 is public",
	  { { 6, "::ffff:0.0.0.0", 80, 131, 0 }, { 6, "::1", 80, 132, V6ONLY } }, EXT, NULL,
	  NULL, { 0 }, { { 80, P, 4, "0.0.0.0", 131 } } },
	{ "0.0.0.0 reported over ::",
	  { { 6, "::", 80, 141, 0 }, { 4, "0.0.0.0", 80, 142, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, P, 4, "0.0.0.0", 142 } } },
	{ "external address itself -> public",
	  { { 4, "127.0.0.1", 80, 151, 0 }, { 4, EXT, 80, 152, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, P, 4, EXT, 152 } } },
	{ "::ffff:EXTERNAL -> public",
	  { { 6, "::1", 80, 161, V6ONLY }, { 6, "::ffff:" EXT, 80, 162, 0 } }, EXT, NULL,
	  NULL, { 0 }, { { 80, P, 4, EXT, 162 } } },
	{ "external unknown: a specific address does not count",
	  { { 4, "127.0.0.1", 80, 171, 0 }, { 4, EXT, 80, 172, 0 } }, NULL, NULL, NULL, { 0 },
	  { { 80, E, 4, "127.0.0.1", 171 } } },
	{ "external unknown: wildcard still public",
	  { { 4, "127.0.0.1", 80, 181, 0 }, { 4, "0.0.0.0", 80, 182, 0 } }, NULL, NULL, NULL,
	  { 0 }, { { 80, P, 4, "0.0.0.0", 182 } } },
	{ "other specific addresses are ignored",
	  { { 4, "10.0.0.5", 80, 191, 0 }, { 6, "2001:db8::1", 81, 192, 0 },
	    { 6, "fe80::1", 82, 193, 0 }, { 4, "127.0.0.1", 82, 194, 0 },
	    { 4, "169.254.0.22", 82, 195, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 82, E, 4, "127.0.0.1", 194 } } },
	{ "own loopback socket ignored",
	  { { 4, "127.0.0.1", 9000, 201, 0 }, { 4, "127.0.0.1", 9001, 202, 0 } }, EXT, NULL,
	  NULL, { 201 }, { { 9001, E, 4, "127.0.0.1", 202 } } },
	{ "own external listener does not make the port public",
	  { { 4, EXT, 3000, 211, 0 }, { 4, "127.0.0.1", 3000, 212, 0 },
	    { 4, EXT, 3001, 213, 0 }, { 6, "::1", 3001, 214, V6ONLY } }, EXT, NULL, NULL,
	  { 999, 213, 211 },
	  { { 3000, E, 4, "127.0.0.1", 212 }, { 3001, E, 6, "::1", 214 } } },
	{ "own wildcard ignored, the service behind it exposed",
	  { { 4, "0.0.0.0", 80, 221, 0 }, { 4, "127.0.0.1", 80, 222, 0 } }, EXT, NULL, NULL,
	  { 221 }, { { 80, E, 4, "127.0.0.1", 222 } } },
	{ "allow list: others excluded",
	  { { 4, "127.0.0.1", 22, 231, 0 }, { 4, "127.0.0.1", 80, 232, 0 },
	    { 4, "127.0.0.1", 5500, 233, 0 } }, EXT, "22,5000-5999", NULL, { 0 },
	  { { 22, E, 4, "127.0.0.1", 231 }, { 80, X, 4, "127.0.0.1", 232 },
	    { 5500, E, 4, "127.0.0.1", 233 } } },
	{ "deny list",
	  { { 4, "127.0.0.1", 22, 241, 0 }, { 6, "::1", 80, 242, V6ONLY } }, EXT, NULL, "80",
	  { 0 }, { { 22, E, 4, "127.0.0.1", 241 }, { 80, X, 6, "::1", 242 } } },
	{ "deny wins over allow",
	  { { 4, "127.0.0.1", 22, 251, 0 }, { 4, "127.0.0.1", 80, 252, 0 } }, EXT, "22,80",
	  "80", { 0 }, { { 22, E, 4, "127.0.0.1", 251 }, { 80, X, 4, "127.0.0.1", 252 } } },
	{ "public wins over excluded",
	  { { 4, "127.0.0.1", 80, 261, 0 }, { 4, "0.0.0.0", 80, 262, 0 },
	    { 4, "0.0.0.0", 443, 263, 0 } }, EXT, "22", "80", { 0 },
	  { { 80, P, 4, "0.0.0.0", 262 }, { 443, P, 4, "0.0.0.0", 263 } } },
	{ "SO_REUSEPORT group: lowest inode",
	  { { 4, "127.0.0.1", 80, 303, 0 }, { 4, "127.0.0.1", 80, 301, 0 },
	    { 4, "127.0.0.1", 80, 302, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, E, 4, "127.0.0.1", 301 } } },
	{ "SO_REUSEPORT group on 0.0.0.0: lowest inode",
	  { { 4, "0.0.0.0", 80, 312, 0 }, { 4, "0.0.0.0", 80, 311, 0 },
	    { 4, "127.0.0.1", 80, 310, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, P, 4, "0.0.0.0", 311 } } },
	{ "several ports, sorted by port",
	  { { 4, "127.0.0.1", 9000, 321, 0 }, { 4, "0.0.0.0", 22, 322, 0 },
	    { 6, "::1", 80, 323, V6ONLY }, { 4, "127.0.0.1", 65535, 324, 0 },
	    { 4, "127.0.0.1", 1, 325, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 1, E, 4, "127.0.0.1", 325 }, { 22, P, 4, "0.0.0.0", 322 },
	    { 80, E, 6, "::1", 323 }, { 9000, E, 4, "127.0.0.1", 321 },
	    { 65535, E, 4, "127.0.0.1", 324 } } },
	{ "no allow/deny list: loopback listeners exposed",
	  { { 4, "127.0.0.1", 80, 331, 0 } }, EXT, NULL, NULL, { 0 },
	  { { 80, E, 4, "127.0.0.1", 331 } } },
};

static void to_addr(int fam, const char *s, struct in6_addr *out)
{
	if (fam == 4) {
		struct in_addr v4;

		assert_int_equal(inet_pton(AF_INET, s, &v4), 1);
		ph_addr_from_v4(out, v4);
	} else {
		assert_int_equal(inet_pton(AF_INET6, s, out), 1);
	}
}

static void build(const struct tcase *c, struct ph_scan *scan)
{
	for (size_t i = 0; i < 8 && c->l[i].port; i++) {
		const struct tl *t = &c->l[i];
		struct ph_listener l = {
			.inode = t->inode,
			.uid = (uint32_t)t->inode * 10,
			.port = t->port,
			.family = t->fam == 4 ? AF_INET : AF_INET6,
			.v6only = t->fam == 6 && (t->flags & V6ONLY),
			.v6only_known = t->fam == 6 && !(t->flags & UNKNOWN),
		};

		to_addr(t->fam, t->addr, &l.addr);
		assert_int_equal(ph_scan_push(scan, &l), 0);
	}
}

static void check(const struct tcase *c, const struct ph_decision *d, size_t n)
{
	size_t want = 0;

	while (want < 6 && c->d[want].port)
		want++;
	if (n != want)
		fail_msg("%s: %zu decisions, want %zu", c->name, n, want);
	if (!n)
		assert_null(d);
	for (size_t i = 0; i < n; i++) {
		const struct td *t = &c->d[i];
		struct in6_addr a;
		char got[INET6_ADDRSTRLEN];

		to_addr(t->fam, t->addr, &a);
		ph_addr_str(&d[i].addr, got, sizeof(got));
		if (d[i].port != t->port || d[i].kind != t->kind ||
		    d[i].family != (t->fam == 4 ? AF_INET : AF_INET6) ||
		    memcmp(&d[i].addr, &a, sizeof(a)) || d[i].inode != t->inode ||
		    d[i].uid != t->inode * 10)
			fail_msg("%s: #%zu got port %u kind %d family %u %s inode %llu uid %u; "
				 "want port %u kind %d fam %d %s inode %llu",
				 c->name, i, d[i].port, d[i].kind, d[i].family, got,
				 (unsigned long long)d[i].inode, d[i].uid, t->port, t->kind,
				 t->fam, t->addr, (unsigned long long)t->inode);
	}
}

static void run_case(const struct tcase *c, const struct ph_scan *scan)
{
	struct ph_portset allow = { 0 }, deny = { 0 };
	struct ph_rules_input in = { .scan = scan, .allow = &allow, .deny = &deny };
	struct ph_decision *d;
	size_t n, n_own = 0;

	if (c->ext)
		assert_int_equal(inet_pton(AF_INET, c->ext, &in.external), 1);
	if (c->allow)
		assert_int_equal(ph_portset_parse(&allow, c->allow, NULL, 0), 0);
	if (c->deny)
		assert_int_equal(ph_portset_parse(&deny, c->deny, NULL, 0), 0);
	while (n_own < 4 && c->own[n_own])
		n_own++;
	in.own_inodes = n_own ? c->own : NULL;
	in.n_own = n_own;

	assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
	check(c, d, n);
	free(d);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ph_scan scan = { 0 };

		build(&cases[i], &scan);
		run_case(&cases[i], &scan);
		ph_scan_free(&scan);
	}
}

/* The answer must not depend on the order the kernel listed the sockets in */
static void test_table_any_order(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ph_scan scan = { 0 };

		build(&cases[i], &scan);
		for (size_t rot = 0; rot < scan.len; rot++) {
			struct ph_scan perm = { 0 };

			/* every rotation, forwards and backwards */
			for (size_t k = 0; k < scan.len; k++)
				assert_int_equal(ph_scan_push(&perm, &scan.v[(k + rot) % scan.len]), 0);
			run_case(&cases[i], &perm);
			for (size_t k = 0; k < scan.len / 2; k++) {
				struct ph_listener t = perm.v[k];

				perm.v[k] = perm.v[scan.len - 1 - k];
				perm.v[scan.len - 1 - k] = t;
			}
			run_case(&cases[i], &perm);
			ph_scan_free(&perm);
		}
		ph_scan_free(&scan);
	}
}

static void test_null_inputs(void **state)
{
	struct ph_scan scan = { 0 };
	struct ph_listener l = { .port = 80, .family = AF_INET, .inode = 1 };
	struct ph_rules_input in = { .scan = NULL };
	struct ph_decision *d = (void *)1;
	size_t n = 99;

	(void)state;
	assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
	assert_null(d);
	assert_int_equal(n, 0);

	/* NULL allow/deny/own: no filtering */
	ph_addr_from_v4(&l.addr, (struct in_addr){ htonl(INADDR_LOOPBACK) });
	assert_int_equal(ph_scan_push(&scan, &l), 0);
	in.scan = &scan;
	assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(d[0].kind, PH_DECIDE_EXPOSE);
	free(d);

	/* only ignored listeners: empty, not an allocation of zero */
	scan.v[0].addr = in6addr_loopback;
	scan.v[0].addr.s6_addr[15] = 2;	/* ::2 */
	scan.v[0].family = AF_INET6;
	d = (void *)1;
	assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
	assert_null(d);
	assert_int_equal(n, 0);
	ph_scan_free(&scan);
}

/* An allow list that was given but holds no port excludes everything */
static void test_allow_set_but_empty(void **state)
{
	struct ph_scan scan = { 0 };
	struct ph_listener l = { .port = 80, .family = AF_INET, .inode = 1 };
	struct ph_portset allow = { .set = true };
	struct ph_rules_input in = { .scan = &scan, .allow = &allow };
	struct ph_decision *d;
	size_t n;

	(void)state;
	ph_addr_from_v4(&l.addr, (struct in_addr){ htonl(INADDR_LOOPBACK) });
	assert_int_equal(ph_scan_push(&scan, &l), 0);
	assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(d[0].kind, PH_DECIDE_EXCLUDED);
	free(d);
	ph_scan_free(&scan);
}

/*
 * Reference model for the randomised test: the rules written the slow,
 * obvious way (per port, look at every listener), independent of the sort
 * and packed keys of the real implementation.
 */
static uint32_t v4_of(const struct ph_listener *l)
{
	return (uint32_t)l->addr.s6_addr[12] << 24 | (uint32_t)l->addr.s6_addr[13] << 16 |
	       (uint32_t)l->addr.s6_addr[14] << 8 | l->addr.s6_addr[15];
}

/* preference among listeners covering the external address; -1: not covering */
static int cover_pref(const struct ph_listener *l, uint32_t ext)
{
	bool mapped = IN6_IS_ADDR_V4MAPPED(&l->addr);

	if (mapped && v4_of(l) == 0)
		return l->family == AF_INET ? 0 : 2;
	if (!mapped && IN6_IS_ADDR_UNSPECIFIED(&l->addr) && l->family == AF_INET6)
		return l->v6only && l->v6only_known ? -1 : 1;
	if (mapped && ext && v4_of(l) == ext)
		return l->family == AF_INET ? 3 : 4;
	return -1;
}

/* preference among loopback listeners; -1: not loopback */
static int lo_pref(const struct ph_listener *l)
{
	bool mapped = IN6_IS_ADDR_V4MAPPED(&l->addr);

	if (mapped && v4_of(l) >> 24 == 127) {
		if (l->family == AF_INET6)
			return 2;
		return v4_of(l) == 0x7f000001 ? 0 : 1;
	}
	if (!mapped && IN6_IS_ADDR_LOOPBACK(&l->addr))
		return 3;
	return -1;
}

static bool better(const struct ph_listener *a, int pa, const struct ph_listener *b, int pb)
{
	if (pa != pb)
		return pa < pb;
	if (v4_of(a) != v4_of(b))
		return v4_of(a) < v4_of(b);
	return a->inode < b->inode;
}

static void reference(const struct ph_rules_input *in, struct ph_decision *d, size_t *n)
{
	uint32_t ext = ntohl(in->external.s_addr);

	*n = 0;
	for (unsigned port = 1; port < 65536; port++) {
		const struct ph_listener *cov = NULL, *lo = NULL;
		int pc = 0, pl = 0;

		for (size_t i = 0; i < in->scan->len; i++) {
			const struct ph_listener *l = &in->scan->v[i];
			bool own = false;
			int p;

			if (l->port != port)
				continue;
			for (size_t k = 0; k < in->n_own; k++)
				own |= in->own_inodes[k] == l->inode;
			if (own)
				continue;
			p = cover_pref(l, ext);
			if (p >= 0 && (!cov || better(l, p, cov, pc))) {
				cov = l;
				pc = p;
			}
			p = lo_pref(l);
			if (p >= 0 && (!lo || better(l, p, lo, pl))) {
				lo = l;
				pl = p;
			}
		}
		if (cov || lo) {
			const struct ph_listener *l = cov ? cov : lo;
			bool excl = ph_portset_has(in->deny, (uint16_t)port) ||
				    (in->allow->set && !ph_portset_has(in->allow, (uint16_t)port));

			d[*n] = (struct ph_decision){
				.addr = l->addr, .inode = l->inode, .uid = l->uid,
				.port = (uint16_t)port,
				.family = IN6_IS_ADDR_V4MAPPED(&l->addr) ? AF_INET : AF_INET6,
				.kind = cov ? PH_DECIDE_PUBLIC : excl ? PH_DECIDE_EXCLUDED
					: PH_DECIDE_EXPOSE,
			};
			(*n)++;
		}
	}
}

static uint32_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

/* Random scans with many collisions, compared against the reference model */
static void test_random_vs_reference(void **state)
{
	static const char *const a4[] = { "127.0.0.1", "127.0.0.2", "127.9.0.1", "0.0.0.0",
					  EXT, "10.0.0.1", "127.0.0.0" };
	static const char *const a6[] = { "::1", "::", "::ffff:127.0.0.1", "::ffff:127.0.0.3",
					  "::ffff:0.0.0.0", "::ffff:" EXT, "2001:db8::1" };
	uint64_t seed = 42;

	(void)state;
	for (int iter = 0; iter < 2000; iter++) {
		struct ph_scan scan = { 0 };
		struct ph_portset allow = { 0 }, deny = { 0 };
		uint64_t own[4];
		struct ph_rules_input in = { .scan = &scan, .allow = &allow, .deny = &deny,
					     .own_inodes = own, .n_own = rnd(&seed) % 5 };
		struct ph_decision *d, ref[64];
		size_t n, nref, len = rnd(&seed) % 40;

		if (rnd(&seed) % 4)
			inet_pton(AF_INET, EXT, &in.external);
		for (size_t k = 0; k < 4; k++)
			own[k] = 1 + rnd(&seed) % 60;
		for (unsigned p = 1; p <= 8; p++) {
			if (rnd(&seed) % 3 == 0)
				ph_portset_add(&allow, (uint16_t)p);
			if (rnd(&seed) % 5 == 0)
				ph_portset_add(&deny, (uint16_t)p);
		}
		if (rnd(&seed) % 2)
			allow.set = false, memset(allow.bits, 0, sizeof(allow.bits));
		for (size_t i = 0; i < len; i++) {
			struct ph_listener l = {
				.port = (uint16_t)(1 + rnd(&seed) % 8),
				.inode = 1 + rnd(&seed) % 60,
				.uid = rnd(&seed) % 3,
				.v6only = rnd(&seed) % 2,
				.v6only_known = rnd(&seed) % 3 != 0,
			};

			if (rnd(&seed) % 2)
				to_addr(4, a4[rnd(&seed) % 7], &l.addr), l.family = AF_INET;
			else
				to_addr(6, a6[rnd(&seed) % 7], &l.addr), l.family = AF_INET6;
			if (l.family == AF_INET)
				l.v6only = l.v6only_known = false;
			assert_int_equal(ph_scan_push(&scan, &l), 0);
		}
		assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
		reference(&in, ref, &nref);
		assert_int_equal(n, nref);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(d[i].port, ref[i].port);
			assert_int_equal(d[i].kind, ref[i].kind);
			assert_int_equal(d[i].family, ref[i].family);
			assert_int_equal(d[i].inode, ref[i].inode);
			assert_int_equal(d[i].uid, ref[i].uid);
			assert_memory_equal(&d[i].addr, &ref[i].addr, sizeof(d[i].addr));
		}
		free(d);
		ph_scan_free(&scan);
	}
}

/* 50,000 listeners: correctness of the shape, and a printed per-call cost */
static void test_large_scan(void **state)
{
	struct ph_scan scan = { 0 };
	struct ph_rules_input in = { .scan = &scan };
	struct ph_decision *d;
	struct timespec t0, t1;
	size_t n, n_public = 0, n_expose = 0;
	uint64_t own[PH_MAX_OWN_TEST] = { 0 };
	const int rounds = 20;
	double ns;

	(void)state;
	assert_int_equal(inet_pton(AF_INET, EXT, &in.external), 1);
	for (uint32_t i = 0; i < 50000; i++) {
		/* ports scattered over 1..40000, so most ports get several listeners */
		uint16_t port = (uint16_t)(1 + (i * 7919u) % 40000);
		struct ph_listener l = { .port = port, .inode = 1000000 - i, .uid = i };
		struct in_addr v4;

		switch (i % 5) {
		case 0:
			v4.s_addr = htonl(INADDR_LOOPBACK);
			break;
		case 1:
			v4.s_addr = htonl(0x7f000000 | (i & 0xffff));
			break;
		case 2:
			v4.s_addr = htonl(i % 20 ? 0x0a000001 : 0);	/* some 0.0.0.0 */
			break;
		case 3:
			l.family = AF_INET6;
			l.addr = in6addr_loopback;
			l.v6only = l.v6only_known = true;
			break;
		default:
			v4.s_addr = in.external.s_addr;
			break;
		}
		if (!l.family) {
			l.family = AF_INET;
			ph_addr_from_v4(&l.addr, v4);
		}
		assert_int_equal(ph_scan_push(&scan, &l), 0);
	}
	for (size_t i = 0; i < PH_MAX_OWN_TEST; i++)
		own[i] = 1000000 - 5 * i - 4;	/* some of the EXT listeners are ours */
	in.own_inodes = own;
	in.n_own = PH_MAX_OWN_TEST;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < rounds; r++) {
		assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
		if (r < rounds - 1)
			free(d);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / rounds;
	print_message("ph_rules_decide: 50000 listeners -> %zu decisions, %.2f ms per call\n", n,
		      ns / 1e6);

	assert_true(n > 0 && n <= 40000);
	for (size_t i = 0; i < n; i++) {
		if (i)
			assert_true(d[i - 1].port < d[i].port);
		n_public += d[i].kind == PH_DECIDE_PUBLIC;
		n_expose += d[i].kind == PH_DECIDE_EXPOSE;
	}
	assert_true(n_public > 0 && n_expose > 0);
	assert_int_equal(n_public + n_expose, n);	/* no filters: nothing EXCLUDED */
	free(d);
	ph_scan_free(&scan);
}

/* Per family, with IPv4 and IPv6 external addresses (or IPv6 only) */
static void test_per_family(void **state)
{
	static const struct {
		const char *name;
		struct tl l[3];
		bool v4ext;		/* EXT is external too (else IPv6 only) */
		enum ph_decision_kind kind;	/* -1: no decision */
		const char *addr;
		unsigned pub;
	} fam_cases[] = {
		{ "127.0.0.1 only: exposed on both", { { 4, "127.0.0.1", 80, 1, 0 } }, true,
		  E, "::ffff:127.0.0.1", 0 },
		{ "::1 only: exposed on both", { { 6, "::1", 80, 2, V6ONLY } }, true, E, "::1", 0 },
		{ "0.0.0.0 + 127.0.0.1: public on IPv4, exposed on IPv6",
		  { { 4, "0.0.0.0", 80, 3, 0 }, { 4, "127.0.0.1", 80, 4, 0 } }, true,
		  E, "::ffff:127.0.0.1", PH_FAM_V4 },
		{ "0.0.0.0 alone: public (nothing loopback-only to relay to)",
		  { { 4, "0.0.0.0", 80, 5, 0 } }, true, P, "::ffff:0.0.0.0", PH_FAM_V4 },
		{ ":: dual stack: public on both", { { 6, "::", 80, 6, 0 }, { 4, "127.0.0.1", 80, 7, 0 } },
		  true, P, "::", PH_FAM_V4 | PH_FAM_V6 },
		{ ":: v6only + 127.0.0.1: public on IPv6, exposed on IPv4",
		  { { 6, "::", 80, 8, V6ONLY }, { 4, "127.0.0.1", 80, 9, 0 } }, true,
		  E, "::ffff:127.0.0.1", PH_FAM_V6 },
		{ ":: v6only alone, dual stack: public on IPv6", { { 6, "::", 80, 10, V6ONLY } }, true,
		  P, "::", PH_FAM_V6 },
		{ "IPv6 external address itself -> public there",
		  { { 6, "fd00::1", 80, 11, V6ONLY }, { 6, "::1", 80, 12, V6ONLY } }, true,
		  E, "::1", PH_FAM_V6 },
		{ "IPv6 only guest: 0.0.0.0 + 127.0.0.1 exposed on IPv6",
		  { { 4, "0.0.0.0", 80, 13, 0 }, { 4, "127.0.0.1", 80, 14, 0 } }, false,
		  E, "::ffff:127.0.0.1", 0 },
		{ "IPv6 only guest: :: v6only covers it", { { 6, "::", 80, 15, V6ONLY },
		  { 6, "::1", 80, 16, V6ONLY } }, false, P, "::", PH_FAM_V6 },
		{ "IPv6 only guest: 0.0.0.0 alone is not listed", { { 4, "0.0.0.0", 80, 17, 0 } },
		  false, (enum ph_decision_kind)-1, NULL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(fam_cases) / sizeof(fam_cases[0]); i++) {
		struct ph_scan scan = { 0 };
		struct ph_addr_set ext = { 0 };
		struct ph_ext_addr a = { 0 };
		struct ph_rules_input in = { .scan = &scan, .ext = &ext };
		struct ph_decision *d;
		struct in6_addr want;
		size_t n;

		for (size_t k = 0; k < 3 && fam_cases[i].l[k].port; k++) {
			const struct tl *t = &fam_cases[i].l[k];
			struct ph_listener l = { .inode = t->inode, .port = t->port,
						 .family = t->fam == 4 ? AF_INET : AF_INET6,
						 .v6only = t->flags & V6ONLY, .v6only_known = t->fam == 6 };

			to_addr(t->fam, t->addr, &l.addr);
			assert_int_equal(ph_scan_push(&scan, &l), 0);
		}
		to_addr(6, "fd00::1", &a.addr);
		ph_addr_set_add(&ext, &a);
		if (fam_cases[i].v4ext) {
			to_addr(4, EXT, &a.addr);
			ph_addr_set_add(&ext, &a);
		}
		assert_int_equal(ph_rules_decide(&in, &d, &n), 0);
		if (fam_cases[i].kind == (enum ph_decision_kind)-1) {
			if (n)
				fail_msg("%s: %zu decisions, want none", fam_cases[i].name, n);
		} else {
			to_addr(6, fam_cases[i].addr, &want);
			if (n != 1 || d[0].kind != fam_cases[i].kind || d[0].public_fams != fam_cases[i].pub ||
			    memcmp(&d[0].addr, &want, sizeof(want)))
				fail_msg("%s: n %zu kind %d public %u", fam_cases[i].name, n,
					 n ? (int)d[0].kind : -1, n ? d[0].public_fams : 0);
		}
		free(d);
		ph_scan_free(&scan);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_table_any_order),
		cmocka_unit_test(test_null_inputs),
		cmocka_unit_test(test_allow_set_but_empty),
		cmocka_unit_test(test_random_vs_reference),
		cmocka_unit_test(test_large_scan),
		cmocka_unit_test(test_per_family),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
