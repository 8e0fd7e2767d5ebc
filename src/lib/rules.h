/* SPDX-License-Identifier: MIT */
/* rules.h - which listeners to expose: pure functions from a scan to decisions */
#ifndef PH_RULES_H
#define PH_RULES_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "addrset.h"
#include "discovery_listeners.h"
#include "rules_portset.h"

enum ph_decision_kind {
	PH_DECIDE_EXPOSE,	/* loopback-only on a family: open EXTERNAL:port and relay */
	PH_DECIDE_EXCLUDED,	/* the same, but --allow/--deny rule it out */
	PH_DECIDE_PUBLIC,	/* already reachable on the external addresses */
};

/**
 * struct ph_decision - what to do with one port of one protocol (one per
 * (port, proto), sorted by port, TCP before UDP)
 * @port:	TCP or UDP port
 * @kind:	see enum ph_decision_kind
 * @family:	family of the reported listener (AF_INET / AF_INET6); for
 *		EXPOSE also the family to connect() with
 * @addr:	reported listener address; for EXPOSE the connect target
 *		(v4-mapped for IPv4). 127.0.0.1 is preferred over other 127/8
 *		addresses, and IPv4 loopback over ::1
 * @inode:	inode of that listener (changes when the service restarts)
 * @uid:	its owner
 * @public_fams: PH_FAM_V4/PH_FAM_V6: the families on which a listener
 *		already covers the external addresses; an EXPOSE port is
 *		exposed on the external addresses of the other families
 * @proto:	IPPROTO_TCP or IPPROTO_UDP
 */
struct ph_decision {
	struct in6_addr addr;
	uint64_t inode;
	uint32_t uid;
	uint16_t port;
	uint8_t family;
	uint8_t public_fams;
	enum ph_decision_kind kind;
	uint8_t proto;
};

/**
 * struct ph_rules_input - everything a decision depends on
 * @scan:	listeners of the namespace
 * @external:	an external IPv4 address; INADDR_ANY (0): none (besides @ext)
 * @ext:	the external addresses, both families (may be NULL)
 * @allow:	when @allow->set, only these ports may be exposed (may be NULL)
 * @deny:	never expose these (may be NULL); deny wins over allow
 * @own_inodes:	sockets of the daemon itself (control port, external listeners)
 * @n_own:	number of @own_inodes (need not be sorted)
 * @ephemeral_lo, @ephemeral_hi: net.ipv4.ip_local_port_range; a UDP socket on
 *		a port in it is a client's (resolver stubs bind one) and is
 *		ignored unless @allow names that UDP port (0, 0: no range)
 */
struct ph_rules_input {
	const struct ph_scan *scan;
	struct in_addr external;
	const struct ph_addr_set *ext;
	const struct ph_portset *allow;
	const struct ph_portset *deny;
	const uint64_t *own_inodes;
	size_t n_own;
	uint16_t ephemeral_lo, ephemeral_hi;
};

/**
 * ph_rules_decide() - compute one decision per relevant (port, protocol)
 * @in:		inputs
 * @out:	malloc'ed array sorted by port, TCP before UDP (caller frees);
 *		NULL when empty
 * @n:		its length
 *
 * TCP and UDP are decided alike and apart: a UDP socket never makes a TCP
 * port public, nor the other way round.
 * Per family: a listener covers IPv4's external addresses when it is on
 * 0.0.0.0, on :: without IPV6_V6ONLY, or on one of them (v4 or v4-mapped);
 * IPv6's when it is on :: (with or without IPV6_V6ONLY) or on one of them.
 * A family with external addresses that no listener covers needs the port
 * exposed: EXPOSE (or EXCLUDED) when the port has a loopback listener. A
 * port covered on every such family is PUBLIC. With no external address at
 * all, IPv4 stands in (wildcards make it PUBLIC, loopback ones EXPOSE).
 * Listeners on other specific addresses are ignored. Return: 0 or -ENOMEM
 */
int ph_rules_decide(const struct ph_rules_input *in, struct ph_decision **out, size_t *n);

enum ph_change_kind {
	PH_CHANGE_ADDED,	/* (port, proto) appears in the new set */
	PH_CHANGE_REMOVED,	/* (port, proto) gone from the new set */
	PH_CHANGE_UPDATED,	/* kind, family or target address differ */
	PH_CHANGE_RESTARTED,	/* same decision, new inode (service restarted) */
};

/**
 * struct ph_change - one difference between two decision sets
 * @old:	previous decision (NULL for ADDED)
 * @new:	current decision (NULL for REMOVED)
 */
struct ph_change {
	enum ph_change_kind kind;
	const struct ph_decision *old;
	const struct ph_decision *new;
};

typedef void (*ph_change_fn)(void *arg, const struct ph_change *c);

/**
 * ph_rules_diff() - report every difference between two sorted decision sets
 * @a, @na:	previous set (sorted by port, then proto)
 * @b, @nb:	current set (sorted the same way)
 * @fn, @arg:	called once per change, in (port, proto) order
 *
 * Return: number of changes reported
 */
size_t ph_rules_diff(const struct ph_decision *a, size_t na, const struct ph_decision *b,
		     size_t nb, ph_change_fn fn, void *arg);

/**
 * ph_decision_cmp() - order of decisions: port, then protocol (TCP first)
 * Return: <0, 0, >0
 */
int ph_decision_cmp(uint16_t port_a, uint8_t proto_a, uint16_t port_b, uint8_t proto_b);

/* IPPROTO_UDP for a UDP listener or decision, else IPPROTO_TCP (0 included) */
static inline uint8_t ph_proto_norm(uint8_t proto)
{
	return proto == IPPROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP;
}

/* "udp" or "tcp" */
static inline const char *ph_proto_name(uint8_t proto)
{
	return proto == IPPROTO_UDP ? "udp" : "tcp";
}

#endif /* PH_RULES_H */
