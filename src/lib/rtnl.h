/* SPDX-License-Identifier: MIT */
/* rtnl.h - the guest's addresses and default routes, from rtnetlink, and the external addresses they give */
#ifndef PH_RTNL_H
#define PH_RTNL_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrset.h"

/* --- the model (rtnl.c: pure) --------------------------------------------- */

/**
 * struct ph_rtnl_addr - one interface address (RTM_NEWADDR)
 * @addr:	IFA_LOCAL, else IFA_ADDRESS; IPv4 v4-mapped
 * @ifindex:	its interface
 * @prefixlen:	ifa_prefixlen
 * @scope:	ifa_scope (RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_HOST, ...)
 * @flags:	IFA_FLAGS, else ifa_flags (IFA_F_TENTATIVE, IFA_F_SECONDARY, ...)
 */
struct ph_rtnl_addr {
	struct in6_addr addr;
	uint32_t ifindex;
	uint32_t flags;
	uint8_t prefixlen;
	uint8_t scope;
};

/**
 * struct ph_rtnl_route - one default route of the main table (RTM_NEWROUTE)
 * @ifindex:	RTA_OIF, or the first next hop's
 * @priority:	RTA_PRIORITY (the metric; lowest wins)
 * @family:	AF_INET or AF_INET6
 */
struct ph_rtnl_route {
	uint32_t ifindex;
	uint32_t priority;
	uint8_t family;
};

/* struct ph_rtnl_link - an interface's index and name (RTM_NEWLINK) */
struct ph_rtnl_link {
	uint32_t ifindex;
	char name[IF_NAMESIZE];
};

/**
 * struct ph_rtnl_model - what the kernel told us, in the order it told us
 * (zero-initialised: empty). Only default routes are kept.
 */
struct ph_rtnl_model {
	struct ph_rtnl_addr *addrs;
	size_t n_addrs, cap_addrs;
	struct ph_rtnl_route *routes;
	size_t n_routes, cap_routes;
	struct ph_rtnl_link *links;
	size_t n_links, cap_links;
};

void ph_rtnl_model_clear(struct ph_rtnl_model *m);	/* keeps the allocations */
void ph_rtnl_model_free(struct ph_rtnl_model *m);
void ph_rtnl_model_swap(struct ph_rtnl_model *a, struct ph_rtnl_model *b);

/* What a datagram touched (ph_rtnl_parse()'s @what) */
#define PH_RTNL_ADDR	1u	/* an address came or went */
#define PH_RTNL_ROUTE	2u	/* a default route came or went */
#define PH_RTNL_LINK	4u	/* an interface changed (its routes may be flushed unannounced) */
#define PH_RTNL_DELADDR	8u	/* an address went (its routes may be flushed unannounced) */

/**
 * ph_rtnl_parse() - apply one datagram of rtnetlink messages to @m
 * @buf, @len:	the datagram as received (a dump reply or notifications)
 * @seq:	a dump's sequence number, whose replies alone count; 0 for
 *		notifications (any sequence number)
 * @m:		model: NEW messages add or replace, DEL messages remove
 * @what:	PH_RTNL_* bits are or'ed in
 *
 * Pure function (unit-tested and fuzzed). Every message and attribute is
 * bounds-checked; messages of other types are skipped.
 *
 * Return: 1 when NLMSG_DONE was seen, 0 otherwise; -EINTR when a dump was
 * flagged NLM_F_DUMP_INTR; -errno from NLMSG_ERROR; -EPROTO when malformed
 * (messages before the bad one are applied); -ENOMEM.
 */
int ph_rtnl_parse(const void *buf, size_t len, uint32_t seq, struct ph_rtnl_model *m,
		  unsigned *what);

/**
 * ph_rtnl_select() - the external addresses @m gives
 * @m:		model
 * @specs:	--external-addr values; none: the defaults, the first IPv4
 *		address of the interface with the IPv4 default route and the
 *		first global IPv6 address of the one with the IPv6 default route
 * @n:		number of @specs
 * @out:	the set (at most PH_MAX_EXT_ADDRS, the rest dropped)
 *
 * Tentative and DAD-failed addresses do not count (they cannot be bound).
 * Return: a bit per spec (1 << i, first 32) that names nothing configured now
 */
uint32_t ph_rtnl_select(const struct ph_rtnl_model *m, const struct ph_ext_spec *specs,
			size_t n, struct ph_addr_set *out);

/* --- the watcher (rtnl_watch.c) ------------------------------------------- */

/**
 * struct ph_rtnl_watch - an rtnetlink subscription and the model it keeps
 * @sub_fd:	subscribed to addresses, routes and links (non-blocking)
 * @dump_fd:	for full dumps (blocking, with a receive timeout)
 * @seq:	next dump sequence number
 * @m:		current model
 * @resyncs:	full re-dumps forced by lost notifications or parse errors
 * @buf:	receive buffer
 */
struct ph_rtnl_watch {
	int sub_fd;
	int dump_fd;
	uint32_t seq;
	unsigned char *buf;
	struct ph_rtnl_model m;
	uint64_t resyncs;
};

/* Open both sockets and dump everything. Return: 0 or -errno (nothing left open) */
int ph_rtnl_watch_open(struct ph_rtnl_watch *w);
void ph_rtnl_watch_close(struct ph_rtnl_watch *w);

/**
 * ph_rtnl_watch_dump() - replace the model by a fresh dump of links,
 * addresses and routes. Return: 0 or -errno (the model is left as it was)
 */
int ph_rtnl_watch_dump(struct ph_rtnl_watch *w);

/**
 * ph_rtnl_watch_read() - drain the subscription into the model
 * @w:		watcher
 *
 * ENOBUFS (the kernel dropped notifications), a truncated or malformed
 * datagram, or a change after which the kernel flushes routes without
 * telling (an address removed, a link changed) end in a full dump.
 * Return: 1 when anything arrived, 0 when nothing did, -errno when the dump
 * that was needed failed (the caller tries again later)
 */
int ph_rtnl_watch_read(struct ph_rtnl_watch *w);

#endif /* PH_RTNL_H */
