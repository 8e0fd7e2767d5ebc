/* SPDX-License-Identifier: MIT */
/* discovery.h - enumerate TCP listeners and unconnected UDP sockets: netlink sock_diag, with /proc/net fallback */
#ifndef PH_DISCOVERY_H
#define PH_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "discovery_listeners.h"

/* --- sock_diag (discovery_sockdiag.c) ------------------------------------------- */

/* Open a NETLINK_SOCK_DIAG socket. Return: fd or -errno */
int ph_sockdiag_open(void);

/**
 * ph_sockdiag_dump() - one complete LISTEN dump of one family
 * @fd:		from ph_sockdiag_open()
 * @family:	AF_INET or AF_INET6
 * @seq:	sequence number to use (replies with another seq are ignored)
 * @out:	listeners are appended
 *
 * Return: 0; -EINTR when the kernel flagged the dump NLM_F_DUMP_INTR (the
 * caller retries); -errno from NLMSG_ERROR or the socket; -EPROTO for a
 * malformed or truncated reply. On error @out may hold a partial result
 * which the caller must discard.
 */
int ph_sockdiag_dump(int fd, int family, uint32_t seq, struct ph_scan *out);

/**
 * ph_sockdiag_dump_proto() - ph_sockdiag_dump() of one protocol
 * @proto:	IPPROTO_TCP (LISTEN sockets) or IPPROTO_UDP (bound sockets
 *		without a peer: state CLOSE; connected ones are clients)
 *
 * Return: as ph_sockdiag_dump(); -EPROTONOSUPPORT for another @proto
 */
int ph_sockdiag_dump_proto(int fd, int family, int proto, uint32_t seq, struct ph_scan *out);

/**
 * ph_sockdiag_parse() - parse one datagram of a sock_diag dump reply
 * @buf, @len:	the datagram as received
 * @seq:	expected sequence number
 * @out:	listeners are appended
 *
 * Pure function (unit-tested on captured and hand-made messages).
 * Return: 1 when NLMSG_DONE was seen, 0 when more datagrams follow,
 * -EINTR on NLM_F_DUMP_INTR, -errno from NLMSG_ERROR, -EPROTO if malformed.
 */
int ph_sockdiag_parse(const void *buf, size_t len, uint32_t seq, struct ph_scan *out);

/* ph_sockdiag_parse() of a dump of @proto (IPPROTO_TCP or IPPROTO_UDP): the
 * sockets in the state that protocol's dump asks for are appended, tagged
 * with @proto; a UDP socket with a peer or without a port is not */
int ph_sockdiag_parse_proto(const void *buf, size_t len, uint32_t seq, int proto,
			    struct ph_scan *out);

/* --- /proc/net/tcp (discovery_proc.c) ---------------------------------------- */

/**
 * ph_proctcp_parse_line() - parse one line of /proc/net/tcp or tcp6
 * @line:	NUL-terminated line (trailing newline allowed)
 * @family:	AF_INET for tcp, AF_INET6 for tcp6
 * @out:	filled when the line is a LISTEN socket
 *
 * Return: 1 for a listener, 0 for a valid line that is not one (other
 * state, or the header line), -EINVAL when malformed.
 */
int ph_proctcp_parse_line(const char *line, int family, struct ph_listener *out);

/**
 * ph_proctcp_read() - parse a whole /proc/net/tcp{,6} file
 * @path:	file to read
 * @family:	AF_INET or AF_INET6
 * @out:	listeners are appended
 *
 * Return: 0, -errno when unreadable, -EINVAL when any line is malformed
 * (a half-parsed file is never taken as a result).
 */
int ph_proctcp_read(const char *path, int family, struct ph_scan *out);

/* --- /proc/net/udp (discovery_proc.c, the same parser) -------------------- */

/**
 * ph_procudp_parse_line() - parse one line of /proc/net/udp or udp6
 *
 * As ph_proctcp_parse_line(), but a line counts (1) when it is a bound UDP
 * socket without a peer (state 07, remote port 0, local port not 0); a
 * connected one is a client (0).
 */
int ph_procudp_parse_line(const char *line, int family, struct ph_listener *out);

/* ph_proctcp_read() of /proc/net/udp{,6} */
int ph_procudp_read(const char *path, int family, struct ph_scan *out);

/**
 * ph_port_range_parse() - /proc/sys/net/ipv4/ip_local_port_range: "LO\tHI\n"
 * @text:	NUL-terminated contents
 * @lo, @hi:	the range (1 <= @lo <= @hi <= 65535)
 *
 * Return: 0 or -EINVAL
 */
int ph_port_range_parse(const char *text, uint16_t *lo, uint16_t *hi);

/* --- scanner facade (discovery.c) ---------------------------------------- */

/**
 * struct ph_scanner - picks sock_diag, falls back to /proc once for good
 * @diag_fd:	netlink socket, -1 when not in use
 * @seq:	next netlink sequence number
 * @use_proc:	sock_diag unavailable (or disabled): parse /proc instead
 * @udp:	UDP sockets are scanned too (ph_scanner_enable_udp())
 * @udp_proc:	UDP through /proc (no udp_diag, or @use_proc)
 * @proc_root:	"/proc" unless a test points it elsewhere
 * @ephemeral_lo, @ephemeral_hi: ip_local_port_range as of the last UDP scan
 *		(0, 0 if it could not be read)
 */
struct ph_scanner {
	int diag_fd;
	uint32_t seq;
	bool use_proc;
	bool udp;
	bool udp_proc;
	const char *proc_root;
	uint16_t ephemeral_lo, ephemeral_hi;
};

/**
 * ph_scanner_init() - prepare a scanner
 * @s:		scanner
 * @force_proc:	skip sock_diag (tests, and kernels without it)
 *
 * Return: 0 or -errno (only allocation-type failures; a missing sock_diag
 * selects the fallback instead)
 */
int ph_scanner_init(struct ph_scanner *s, bool force_proc);

/**
 * ph_scanner_enable_udp() - scan unconnected UDP sockets too, in the same run
 * @s:		scanner from ph_scanner_init()
 *
 * Probes udp_diag; a kernel without it (or a /proc scanner) reads
 * /proc/net/udp{,6} for UDP. Return: 0 or -errno (allocation-type failures)
 */
int ph_scanner_enable_udp(struct ph_scanner *s);

/**
 * ph_scanner_run() - enumerate all TCP listeners (and, when enabled, unconnected
 * UDP sockets) of this network namespace
 * @s:		scanner
 * @out:	cleared, then filled with IPv4 and IPv6 listeners, TCP first
 *
 * With UDP it also reads ip_local_port_range into @s (the rules need it to
 * tell a client's UDP socket from a service's).
 *
 * Retries an interrupted dump a few times. Return: 0, or -errno: the scan
 * failed and @out is not a valid picture of the namespace (never "no ports").
 */
int ph_scanner_run(struct ph_scanner *s, struct ph_scan *out);

/**
 * ph_scanner_run_some() - scan again only @tcp and/or @udp sockets
 * @s:		scanner
 * @out:	the last successful result of ph_scanner_run() (or of this):
 *		its entries of the protocols not asked for are kept as they are
 * @tcp, @udp:	the protocols to dump again
 *
 * For a caller that knows only those changed (listen events of one
 * protocol). Return: as ph_scanner_run(); on failure @out is cleared.
 */
int ph_scanner_run_some(struct ph_scanner *s, struct ph_scan *out, bool tcp, bool udp);
void ph_scanner_fini(struct ph_scanner *s);
/* "sock_diag" or "proc" (TCP; UDP follows it unless udp_diag is missing) */
const char *ph_scanner_method(const struct ph_scanner *s);

#endif /* PH_DISCOVERY_H */
