/* SPDX-License-Identifier: MIT */
/* discovery_listeners.h - a listening socket (TCP LISTEN, unconnected UDP) as discovered by a scan, and a scan's result set */
#ifndef PH_DISCOVERY_LISTENERS_H
#define PH_DISCOVERY_LISTENERS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct ph_listener - one TCP socket in state LISTEN, or one bound, unconnected
 * UDP socket (a connected one has a peer: it is a client)
 * @addr:	bound address; IPv4 is stored v4-mapped (::ffff:a.b.c.d) so one
 *		comparison serves both families
 * @inode:	socket inode (identifies this socket; a restarted service has a new one)
 * @uid:	owner uid
 * @port:	bound port, host byte order
 * @family:	AF_INET or AF_INET6: the socket's own family (an AF_INET6 socket
 *		bound to ::ffff:127.0.0.1 has family AF_INET6 and a v4-mapped addr)
 * @v6only:	IPV6_V6ONLY is set (AF_INET6 only)
 * @v6only_known: @v6only comes from the kernel (sock_diag); /proc does not say
 * @proto:	IPPROTO_TCP or IPPROTO_UDP (0 is read as TCP)
 */
struct ph_listener {
	struct in6_addr addr;
	uint64_t inode;
	uint32_t uid;
	uint16_t port;
	uint8_t family;
	bool v6only;
	bool v6only_known;
	uint8_t proto;
};

/**
 * struct ph_scan - growable array of listeners (zero-initialised: empty)
 */
struct ph_scan {
	struct ph_listener *v;
	size_t len, cap;
};

/* Return: 0 or -ENOMEM */
int ph_scan_push(struct ph_scan *scan, const struct ph_listener *l);
void ph_scan_clear(struct ph_scan *scan);	/* keeps the allocation */
void ph_scan_free(struct ph_scan *scan);
void ph_scan_swap(struct ph_scan *a, struct ph_scan *b);

/* Address classification, on the v4-mapped representation */
bool ph_addr_is_v4(const struct in6_addr *a);
bool ph_addr_is_loopback(const struct in6_addr *a);	/* 127/8, ::1, ::ffff:127/104 */
bool ph_addr_is_any(const struct in6_addr *a);		/* 0.0.0.0 (mapped) or :: */
void ph_addr_from_v4(struct in6_addr *out, struct in_addr v4);
/* Format as dotted quad for v4-mapped, RFC 5952 otherwise. Return: @buf */
const char *ph_addr_str(const struct in6_addr *a, char *buf, size_t len);

#endif /* PH_DISCOVERY_LISTENERS_H */
