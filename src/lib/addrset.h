/* SPDX-License-Identifier: MIT */
/* addrset.h - external addresses: one address with its scope, a small set of them */
#ifndef PH_ADDRSET_H
#define PH_ADDRSET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* external addresses the daemon serves at once (both families) */
#define PH_MAX_EXT_ADDRS	8
/* text of one: an IPv6 address, '%', an interface name */
#define PH_ADDR_STRLEN		(INET6_ADDRSTRLEN + 17)

/* address families as bits (rules.h: which families a port is public on) */
#define PH_FAM_V4	1u
#define PH_FAM_V6	2u

/**
 * struct ph_ext_addr - one external address
 * @addr:	IPv6, or IPv4 stored v4-mapped
 * @ifindex:	interface holding it; the scope id of an IPv6 link-local address
 */
struct ph_ext_addr {
	struct in6_addr addr;
	uint32_t ifindex;
};

/**
 * struct ph_addr_set - the external addresses, in the order they were chosen
 * @a:		addresses (no duplicates)
 * @n:		how many
 */
struct ph_addr_set {
	struct ph_ext_addr a[PH_MAX_EXT_ADDRS];
	uint32_t n;
};

/* PH_FAM_V4 or PH_FAM_V6 */
unsigned ph_ext_addr_fam(const struct ph_ext_addr *a);

/* IPv6 fe80::/10 */
bool ph_addr_is_v6_linklocal(const struct in6_addr *a);

/* "169.254.0.21", "fd00::1", "fe80::1%eth0" (the scope only for link-local) */
const char *ph_ext_addr_str(const struct ph_ext_addr *a, char *buf, size_t len);

/* Fill a sockaddr for @a and @port (with the scope id). Return: its length */
socklen_t ph_ext_addr_sockaddr(const struct ph_ext_addr *a, uint16_t port,
			       struct sockaddr_storage *ss);

bool ph_addr_set_has(const struct ph_addr_set *s, const struct ph_ext_addr *a);
bool ph_addr_set_equal(const struct ph_addr_set *x, const struct ph_addr_set *y);
/* Add @a unless present or full. Return: true when added */
bool ph_addr_set_add(struct ph_addr_set *s, const struct ph_ext_addr *a);
/* PH_FAM_* bits of the families present in @s */
unsigned ph_addr_set_fams(const struct ph_addr_set *s);
/* "a, b, c" ("none" when empty) */
const char *ph_addr_set_str(const struct ph_addr_set *s, char *buf, size_t len);

/**
 * struct ph_ext_spec - one --external-addr
 * @ifname:	an interface name (all its global and link-local addresses), or ""
 * @addr:	else this address (IPv4 v4-mapped)
 * @scope:	for an IPv6 link-local @addr: the interface given with '%', 0: any
 */
struct ph_ext_spec {
	char ifname[16];	/* IF_NAMESIZE */
	struct in6_addr addr;
	uint32_t scope;
};

/**
 * ph_ext_spec_parse() - parse one --external-addr value (rtnl.c)
 * @s:		"192.0.2.1", "fd00::1", "fe80::1%eth0" or an interface name
 * @out:	result
 *
 * An address must not be a wildcard; a name of digits and dots only is a
 * malformed IPv4 address, not an interface. Return: 0 or -EINVAL
 */
int ph_ext_spec_parse(const char *s, struct ph_ext_spec *out);

/* The text of @s, as it could have been given */
const char *ph_ext_spec_str(const struct ph_ext_spec *s, char *buf, size_t len);

#endif /* PH_ADDRSET_H */
