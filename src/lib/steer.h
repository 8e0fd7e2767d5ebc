/* SPDX-License-Identifier: MIT */
/* steer.h - steering (--steer): new connections to EXTERNAL:port handed by a BPF sk_lookup
 * program straight to the service's own loopback listener, no relay */
#ifndef PH_STEER_H
#define PH_STEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addrset.h"

struct inet_diag_msg;

/**
 * struct ph_steer_key - a key of both maps of the sk_lookup program (20 bytes)
 * @family:	AF_INET or AF_INET6 of the connection
 * @port:	local port (host order); 0 in the address map
 * @addr:	local address (IPv4: its 4 bytes first, the rest 0); zero in the socket map
 */
struct ph_steer_key {
	uint16_t family;
	uint16_t port;
	uint8_t addr[16];
};

/**
 * struct ph_steer - the BPF objects of steering, one set per cycle
 * @addr_fd:	HASH: the external addresses (value unused)
 * @sock_fd:	SOCKHASH: (family, port) -> the service's listener
 * @prog_fd:	the BPF_PROG_TYPE_SK_LOOKUP program
 * @link_fd:	its link to the daemon's network namespace; -1 when off
 * @addrs:	the addresses now in @addr_fd
 */
struct ph_steer {
	int addr_fd, sock_fd, prog_fd, link_fd;
	struct ph_addr_set addrs;
};

/* Whether this build has steering (<linux/bpf.h>, 64-bit, not EVENTS=0) */
extern const bool ph_steer_built;

/* All fds -1: off, ph_steer_close() is harmless */
void ph_steer_init(struct ph_steer *s);

/**
 * ph_steer_open() - load and attach the sk_lookup program to this network
 * namespace, after checking that sock_diag can destroy sockets (snapshot
 * prepare needs it)
 * @s:		initialised
 * @why:	on failure, a sentence saying what is missing
 * @len:	size of @why
 *
 * Needs CAP_BPF and CAP_NET_ADMIN (or root) and Linux 5.9+.
 * Return: 0 or -errno (@s left off)
 */
int ph_steer_open(struct ph_steer *s, char *why, size_t len);

/* Detach and release everything (the maps' references to listeners too) */
void ph_steer_close(struct ph_steer *s);

static inline bool ph_steer_on(const struct ph_steer *s)
{
	return s->link_fd >= 0;
}

/* Make the address map hold exactly @ext. Return: 0 or the first error (-errno) */
int ph_steer_set_addrs(struct ph_steer *s, const struct ph_addr_set *ext);

/**
 * ph_steer_set() - steer (@family, @port) to the listener @fd, or stop (@fd < 0)
 * Return: 0 or -errno (stopping a key that is not there is not an error)
 */
int ph_steer_set(struct ph_steer *s, int family, uint16_t port, int fd);

/**
 * ph_steer_take_listener() - a descriptor of another process's socket
 * @inode:	the socket's inode (as sock_diag reports it)
 * @why:	on failure, what went wrong and what privilege would help
 * @len:	size of @why
 *
 * Finds a process holding "socket:[@inode]" in /proc/PID/fd, then
 * pidfd_open() + pidfd_getfd() (CAP_SYS_PTRACE, or the same user without
 * more capabilities than ours). The copy shares the socket; the caller closes it.
 * Return: the descriptor, or -errno
 */
int ph_steer_take_listener(uint64_t inode, char *why, size_t len);

/**
 * struct ph_steer_sel - which established sockets are steered connections
 * @ext:	the external addresses
 * @ports:	steered ports
 * @fams:	per port, PH_FAM_* families steered
 * @n:		number of ports
 */
struct ph_steer_sel {
	const struct ph_addr_set *ext;
	const uint16_t *ports;
	const uint8_t *fams;
	size_t n;
};

/* The index in @sel of a connection whose local end is (@family, @addr, @port), or -1 */
long ph_steer_sel_find(const struct ph_steer_sel *sel, int family, const void *addr,
		       uint16_t port);

/**
 * ph_steer_conns() - count, or destroy, the steered connections (sock_diag)
 * @sel:	which
 * @destroy:	SOCK_DESTROY each (the service sees ECONNABORTED, the client a reset)
 * @per_port:	NULL, or @sel->n counters, incremented per connection found
 * @total:	connections found (and, with @destroy, destroyed)
 *
 * Return: 0 or -errno
 */
int ph_steer_conns(const struct ph_steer_sel *sel, bool destroy, uint32_t *per_port,
		   size_t *total);

/**
 * ph_steer_diag_parse() - walk one datagram of a sock_diag dump (pure; fuzzed)
 * @buf, @len:	the datagram
 * @fn, @arg:	called with each inet_diag_msg (copied out: any alignment of @buf)
 *
 * Return: 1 at the end of the dump, 0 when more datagrams follow, -errno
 * for an error answer or a malformed message (-EPROTO)
 */
int ph_steer_diag_parse(const uint8_t *buf, size_t len,
			void (*fn)(const struct inet_diag_msg *m, void *arg), void *arg);

#endif /* PH_STEER_H */
