// SPDX-License-Identifier: MIT
/* rules.c - decide, per port, whether a scan's listeners are exposed; diff two decision sets
 *
 * Theory of Operation
 * ===================
 * ph_rules_decide() is a pure function of its input: no I/O, no clock, no
 * global state, so it is tested exhaustively from tables and fuzzed freely.
 *
 * Every listener that matters gets a rank (see enum rank): the ranks that
 * cover an external address come first (each covers IPv4, IPv6 or both:
 * rank_fams()), then the loopback ranks in the order we prefer them as
 * connect() targets. Listeners that are neither (a specific non-loopback
 * address, the daemon's own sockets) get no rank and are dropped. The candidates are
 * packed into a 64-bit key
 *
 *	port << 48 | rank << 40 | IPv4 address (host order, where it matters)
 *
 * and grouped by port with a two-pass byte radix sort (stable, O(n), no
 * table larger than 256 counters). Within a port, the covering ranks say on
 * which families the port is public already; the smallest (key, inode)
 * among those covering a family that counts is the listener shown for a
 * PUBLIC port; among loopback candidates the smallest is the
 * preferred connect() target (127.0.0.1, then the lowest other 127/8
 * address, then a v4-mapped 127/8 bound by an IPv6 socket, then ::1);
 * equal addresses (SO_REUSEPORT groups) fall back to the lowest inode, so
 * the answer never depends on the order the kernel listed the sockets in.
 * That is a few linear passes, whatever the scan size (a comparison sort
 * of 50,000 listeners took three times as long).
 *
 * TCP and UDP go through the same steps apart (a UDP socket never covers a
 * TCP port): the candidates of each are collected, sorted and decided on
 * their own, and the two port-sorted results are merged, TCP first on
 * equal ports. UDP adds one rule at collection: a socket on a port inside
 * the ephemeral range (ip_local_port_range) is a client's, a resolver
 * stub's say, and is no candidate at all unless --allow names that UDP
 * port. (Connected UDP sockets never got here: discovery leaves them out.)
 *
 * ph_rules_diff() merges two (port, proto)-sorted decision arrays in one pass.
 */
#include "rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum rank {
	/* listeners that make the port reachable on the external address */
	R_ANY4,			/* AF_INET 0.0.0.0 */
	R_ANY6,			/* AF_INET6 :: accepting IPv4 too */
	R_ANY_MAPPED,		/* AF_INET6 ::ffff:0.0.0.0 */
	R_EXT4,			/* AF_INET EXTERNAL */
	R_EXT_MAPPED,		/* AF_INET6 ::ffff:EXTERNAL */
	R_ANY6_ONLY,		/* AF_INET6 :: with IPV6_V6ONLY: IPv6 only */
	R_EXT6,			/* AF_INET6 an IPv6 EXTERNAL */
	R_PUBLIC_LAST = R_EXT6,
	/* loopback-only listeners, most preferred connect() target first */
	R_LO_ONE = 8,		/* AF_INET 127.0.0.1 */
	R_LO4,			/* AF_INET other 127/8, lowest address first */
	R_LO_MAPPED,		/* AF_INET6 ::ffff:127/8, lowest address first */
	R_LO6,			/* AF_INET6 ::1 */
	R_NONE = -1,
};

/* A candidate listener; small so that the sort moves little memory */
struct cand {
	uint64_t key;
	uint64_t inode;
	uint32_t idx;		/* index into the scan */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_cand(const struct cand *x, const struct cand *y)
{
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->inode != y->inode)
		return x->inode < y->inode ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * sort_by_port() - stable LSD radix sort of @c by port (the key's top 16 bits)
 * @tmp:	scratch of @n entries
 */
static void sort_by_port(struct cand *c, struct cand *tmp, size_t n)
{
	struct cand *src = c, *dst = tmp;

	for (unsigned shift = 48; shift <= 56; shift += 8) {
		size_t pos[256] = { 0 }, sum = 0;

		for (size_t i = 0; i < n; i++)
			pos[(src[i].key >> shift) & 0xff]++;
		for (unsigned b = 0; b < 256; b++) {
			size_t k = pos[b];

			pos[b] = sum;
			sum += k;
		}
		for (size_t i = 0; i < n; i++)
			dst[pos[(src[i].key >> shift) & 0xff]++] = src[i];
		src = dst;
		dst = src == c ? tmp : c;
	}
	/* two passes: the result is back in @c */
}

static uint32_t mapped_v4(const struct in6_addr *a)
{
	uint32_t v;

	memcpy(&v, &a->s6_addr[12], 4);
	return ntohl(v);
}

/* PH_FAM_* bits a rank covers */
static unsigned rank_fams(enum rank r)
{
	switch (r) {
	case R_ANY6:
		return PH_FAM_V4 | PH_FAM_V6;
	case R_ANY6_ONLY:
	case R_EXT6:
		return PH_FAM_V6;
	default:
		return r <= R_PUBLIC_LAST ? PH_FAM_V4 : 0;
	}
}

/* @a (v4-mapped or IPv6) is one of the external addresses */
static bool is_external(const struct ph_rules_input *in, const struct in6_addr *a)
{
	struct in6_addr legacy;

	if (in->external.s_addr) {
		ph_addr_from_v4(&legacy, in->external);
		if (!memcmp(&legacy, a, sizeof(*a)))
			return true;
	}
	for (uint32_t i = 0; in->ext && i < in->ext->n; i++)
		if (!memcmp(&in->ext->a[i].addr, a, sizeof(*a)))
			return true;
	return false;
}

/*
 * rank_of() - classify one listener
 * @in:		the external addresses (none: only wildcard listeners cover)
 * @v4:	set to the IPv4 address (host order) for v4-mapped listeners
 *
 * Return: its rank, or R_NONE when it neither covers an external address
 * nor is loopback-only
 */
static enum rank rank_of(const struct ph_rules_input *in, const struct ph_listener *l,
			 uint32_t *v4)
{
	bool inet = l->family == AF_INET;

	*v4 = 0;
	if (ph_addr_is_v4(&l->addr)) {
		uint32_t a = mapped_v4(&l->addr);

		*v4 = a;
		if (a == 0)
			return inet ? R_ANY4 : R_ANY_MAPPED;
		if (is_external(in, &l->addr))
			return inet ? R_EXT4 : R_EXT_MAPPED;
		if (a >> 24 == 127) {
			if (!inet)
				return R_LO_MAPPED;
			return a == INADDR_LOOPBACK ? R_LO_ONE : R_LO4;
		}
		return R_NONE;
	}
	if (inet)
		return R_NONE;	/* malformed: AF_INET must be stored v4-mapped */
	/* Without sock_diag we cannot know IPV6_V6ONLY: assume the default, dual stack */
	if (IN6_IS_ADDR_UNSPECIFIED(&l->addr))
		return l->v6only_known && l->v6only ? R_ANY6_ONLY : R_ANY6;
	if (IN6_IS_ADDR_LOOPBACK(&l->addr))
		return R_LO6;
	return is_external(in, &l->addr) ? R_EXT6 : R_NONE;
}

static bool excluded(const struct ph_rules_input *in, uint8_t proto, uint16_t port)
{
	if (in->deny && ph_portset_has_proto(in->deny, proto, port))
		return true;
	return in->allow && in->allow->set && !ph_portset_has_proto(in->allow, proto, port);
}

/* A UDP socket on an ephemeral port is a client's, unless --allow names it */
static bool udp_client_port(const struct ph_rules_input *in, uint16_t port)
{
	if (!in->ephemeral_lo || port < in->ephemeral_lo || port > in->ephemeral_hi)
		return false;
	return !(in->allow && in->allow->set && ph_portset_has_proto(in->allow, IPPROTO_UDP, port));
}

/**
 * ph_rules_decide() - compute one decision per relevant port
 * @in:		inputs (see struct ph_rules_input)
 * @out:	malloc'ed array sorted by port (caller frees); NULL when empty
 * @n:		its length
 *
 * The reported family is AF_INET whenever the address is v4-mapped (also
 * for an IPv6 socket bound to ::ffff:a.b.c.d), because that is the family
 * to connect() with and the form an address is shown in.
 *
 * Return: 0 or -ENOMEM (then *@out is NULL and *@n is 0)
 */
/*
 * The candidates of @proto: every listener of it a rule can see (rank_of()
 * not R_NONE) that is not one of the daemon's own sockets (nor, for UDP, a
 * client's: udp_client_port()), keyed for sorting by port, then rank, then
 * address. @c has room for every listener of the scan.
 * Return: how many, or -ENOMEM
 */
static long collect_candidates(const struct ph_rules_input *in, uint8_t proto, struct cand *c)
{
	const struct ph_scan *scan = in->scan;
	uint64_t *own = NULL;
	size_t nc = 0;

	if (in->n_own) {
		own = malloc(in->n_own * sizeof(*own));
		if (!own)
			return -ENOMEM;
		memcpy(own, in->own_inodes, in->n_own * sizeof(*own));
		qsort(own, in->n_own, sizeof(*own), cmp_u64);
	}
	for (size_t i = 0; i < scan->len; i++) {
		const struct ph_listener *l = &scan->v[i];
		uint32_t v4;
		enum rank r;

		if (ph_proto_norm(l->proto) != proto)
			continue;
		if (proto == IPPROTO_UDP && udp_client_port(in, l->port))
			continue;
		r = rank_of(in, l, &v4);
		if (r == R_NONE)
			continue;
		if (own && bsearch(&l->inode, own, in->n_own, sizeof(*own), cmp_u64))
			continue;
		c[nc++] = (struct cand){
			.key = (uint64_t)l->port << 48 | (uint64_t)r << 40 | v4,
			.inode = l->inode,
			.idx = (uint32_t)i,
		};
	}
	free(own);
	return (long)nc;
}

/* The families with external addresses; none known: IPv4 stands in */
static unsigned counted_fams(const struct ph_rules_input *in, unsigned *active)
{
	*active = (in->ext ? ph_addr_set_fams(in->ext) : 0) | (in->external.s_addr ? PH_FAM_V4 : 0);
	return *active ? *active : PH_FAM_V4;
}

/*
 * One decision per port from candidates sorted by port: which families a
 * covering listener serves, the best covering listener of a family that
 * counts, the best loopback listener. @d has room for one per distinct port.
 * Return: decisions written
 */
static size_t decide_per_port(const struct ph_rules_input *in, uint8_t proto,
			      const struct cand *c, size_t nc, struct ph_decision *d)
{
	unsigned active, counted = counted_fams(in, &active);
	size_t nd = 0;

	for (size_t i = 0, j; i < nc; i = j) {
		const struct cand *cov = NULL, *lo = NULL, *best;
		const struct ph_listener *l;
		uint16_t port = (uint16_t)(c[i].key >> 48);
		unsigned pub = 0;

		for (j = i; j < nc && (uint16_t)(c[j].key >> 48) == port; j++) {
			enum rank r = (enum rank)((c[j].key >> 40) & 0xff);
			unsigned f = rank_fams(r) & counted;

			pub |= f;
			if (f && (!cov || cmp_cand(&c[j], cov) < 0))
				cov = &c[j];
			if (r > R_PUBLIC_LAST && (!lo || cmp_cand(&c[j], lo) < 0))
				lo = &c[j];
		}
		/* expose when a family with addresses is not covered, or none has any */
		if (lo && ((active & ~pub) || !pub))
			best = lo;
		else if (cov)
			best = cov;
		else
			continue;
		l = &in->scan->v[best->idx];
		d[nd++] = (struct ph_decision){
			.addr = l->addr,
			.inode = l->inode,
			.uid = l->uid,
			.port = port,
			.family = ph_addr_is_v4(&l->addr) ? AF_INET : AF_INET6,
			.public_fams = (uint8_t)pub,
			.kind = best == cov ? PH_DECIDE_PUBLIC
				: excluded(in, proto, port) ? PH_DECIDE_EXCLUDED
				: PH_DECIDE_EXPOSE,
			.proto = proto,
		};
	}
	return nd;
}

/*
 * The decisions of one protocol, appended at @d (room for one per
 * candidate). @c and @tmp: scratch of a listener each.
 * Return: decisions written, or -ENOMEM
 */
static long decide_proto(const struct ph_rules_input *in, uint8_t proto, struct cand *c,
			 struct cand *tmp, struct ph_decision *d)
{
	long nc = collect_candidates(in, proto, c);

	if (nc <= 0)
		return nc;
	sort_by_port(c, tmp, (size_t)nc);
	return (long)decide_per_port(in, proto, c, (size_t)nc, d);
}

/* Merge the port-sorted TCP and UDP decisions into @out, TCP first on a tie */
static void merge(const struct ph_decision *t, size_t nt, const struct ph_decision *u, size_t nu,
		  struct ph_decision *out)
{
	size_t i = 0, j = 0, k = 0;

	while (i < nt || j < nu)
		out[k++] = j == nu || (i < nt && t[i].port <= u[j].port) ? t[i++] : u[j++];
}

int ph_rules_decide(const struct ph_rules_input *in, struct ph_decision **out, size_t *n)
{
	size_t len = in->scan ? in->scan->len : 0;
	struct cand *c = NULL, *tmp = NULL;
	struct ph_decision *d = NULL, *m = NULL;
	long nt, nu = 0;
	int ret = -ENOMEM;

	*out = NULL;
	*n = 0;
	if (!len)
		return 0;
	c = malloc(len * sizeof(*c));
	tmp = malloc(len * sizeof(*tmp));
	/* at most one decision per listener, over both protocols */
	d = calloc(len, sizeof(*d));
	if (!c || !tmp || !d)
		goto out;
	nt = decide_proto(in, IPPROTO_TCP, c, tmp, d);
	if (nt >= 0)
		nu = decide_proto(in, IPPROTO_UDP, c, tmp, d + nt);
	if (nt < 0 || nu < 0)
		goto out;
	ret = 0;
	if (!nt && !nu)
		goto out;	/* only listeners that count on no family */
	if (nt && nu) {
		m = malloc((size_t)(nt + nu) * sizeof(*m));
		if (!m) {
			ret = -ENOMEM;
			goto out;
		}
		merge(d, (size_t)nt, d + nt, (size_t)nu, m);
		free(d);
		d = m;
	}
	*out = d;
	*n = (size_t)(nt + nu);
	d = NULL;
out:
	free(d);
	free(tmp);
	free(c);
	return ret;
}

int ph_decision_cmp(uint16_t port_a, uint8_t proto_a, uint16_t port_b, uint8_t proto_b)
{
	if (port_a != port_b)
		return port_a < port_b ? -1 : 1;
	proto_a = ph_proto_norm(proto_a);
	proto_b = ph_proto_norm(proto_b);
	return (proto_a > proto_b) - (proto_a < proto_b);
}

static bool same_target(const struct ph_decision *a, const struct ph_decision *b)
{
	return a->kind == b->kind && a->family == b->family &&
	       a->public_fams == b->public_fams && !memcmp(&a->addr, &b->addr, sizeof(a->addr));
}

/**
 * ph_rules_diff() - report every difference between two sorted decision sets
 * @a, @na:	previous set (sorted by port, then proto; one entry per (port, proto))
 * @b, @nb:	current set (the same)
 * @fn, @arg:	called once per change, in that order (@fn may be NULL to count)
 *
 * A (port, proto) in both sets is UPDATED when kind, family, address or the
 * families it is public on differ,
 * RESTARTED when only the inode does; an identical entry is no change.
 *
 * Return: number of changes reported
 */
size_t ph_rules_diff(const struct ph_decision *a, size_t na, const struct ph_decision *b,
		     size_t nb, ph_change_fn fn, void *arg)
{
	size_t i = 0, j = 0, count = 0;

	while (i < na || j < nb) {
		struct ph_change ch;
		int cmp = i == na ? 1 : j == nb ? -1 :
			  ph_decision_cmp(a[i].port, a[i].proto, b[j].port, b[j].proto);

		if (cmp < 0) {
			ch = (struct ph_change){ PH_CHANGE_REMOVED, &a[i++], NULL };
		} else if (cmp > 0) {
			ch = (struct ph_change){ PH_CHANGE_ADDED, NULL, &b[j++] };
		} else {
			const struct ph_decision *o = &a[i++], *nw = &b[j++];

			if (!same_target(o, nw))
				ch = (struct ph_change){ PH_CHANGE_UPDATED, o, nw };
			else if (o->inode != nw->inode)
				ch = (struct ph_change){ PH_CHANGE_RESTARTED, o, nw };
			else
				continue;
		}
		count++;
		if (fn)
			fn(arg, &ch);
	}
	return count;
}
