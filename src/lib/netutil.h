/* SPDX-License-Identifier: MIT */
/* netutil.h - small socket helpers shared by the relay, the listeners and the daemon */
#ifndef PH_NETUTIL_H
#define PH_NETUTIL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct ph_keepalive;

/* Enable TCP keepalive with these timings; with @user_timeout also a matching
 * TCP_USER_TIMEOUT, so a remote peer that vanished with data in flight is
 * reaped in the same time. Return: 0 or -errno */
int ph_sock_keepalive(int fd, const struct ph_keepalive *ka, bool user_timeout);

/* TCP_CONGESTION @name (e.g. "reno"). Return: 0 or -errno (-ENOENT: no such
 * algorithm, -EPERM: not in net.ipv4.tcp_allowed_congestion_control) */
int ph_sock_congestion(int fd, const char *name);

/* SO_LINGER {1, 0}: the next close() sends RST instead of FIN */
void ph_sock_set_rst(int fd);

/* close() with RST; -1 is ignored */
void ph_sock_abort(int fd);

/* Socket inode of @fd (its st_ino), 0 on error */
uint64_t ph_sock_inode(int fd);

/* Fill a sockaddr for a v4-mapped or IPv6 address and port. Return: its length */
socklen_t ph_sockaddr_from(struct sockaddr_storage *ss, const struct in6_addr *addr, uint16_t port);

/**
 * ph_loopback_listen() - listen on 127.0.0.1 or ::1, port 0 (the listen-event
 * sources' self-checks: discovery_events.c, discovery_perf.c)
 * @family:	AF_INET or AF_INET6
 * @port:	receives the port the kernel chose
 *
 * Return: the listening socket, or -errno
 */
int ph_loopback_listen(int family, uint16_t *port);

#endif /* PH_NETUTIL_H */
