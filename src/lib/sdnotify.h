/* SPDX-License-Identifier: MIT */
/* sdnotify.h - the service manager's fd store protocol as text: names, LISTEN_FDNAMES, notify messages
 *
 * Pure functions (no I/O), shared by the daemon's side (fdstore.c) and the
 * supervisor's (src/daemon/supervise.c), which speaks the same protocol as
 * systemd: sd_notify(3) (FDSTORE=1, FDSTOREREMOVE=1, FDNAME=, READY=1,
 * MAINPID=) and sd_listen_fds(3) (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES).
 *
 * Stored descriptors are named for what they are, so that a new process
 * can tell them apart and a closed one can be removed by name:
 *
 *   api                        the control API listener
 *   tcp/169.254.0.21/8000      an external TCP listener on IPv4
 *   tcp/fe80--1%2/8000         ... on IPv6: ':' written '-', the scope id
 *                              (interface index) after '%'
 *   udp/...                    the same for UDP (reserved)
 *
 * ':' cannot appear: it separates the names in LISTEN_FDNAMES, and systemd
 * refuses such a name (printable ASCII, no ':', at most 255 bytes).
 */
#ifndef PH_SDNOTIFY_H
#define PH_SDNOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define PH_FDNAME_MAX		255	/* systemd's FDNAME_MAX */
#define PH_LISTEN_FDS_START	3	/* SD_LISTEN_FDS_START */
#define PH_NOTIFY_MSG_MAX	4096	/* longest notify datagram read */

/**
 * enum ph_fdkind - what a stored descriptor is, by its name
 * @PH_FDKIND_OTHER:	a name this version does not know
 * @PH_FDKIND_API:	"api", the control API listener
 * @PH_FDKIND_TCP:	"tcp/ADDR/PORT", an external TCP listener
 * @PH_FDKIND_UDP:	"udp/ADDR/PORT", an external UDP socket
 */
enum ph_fdkind { PH_FDKIND_OTHER, PH_FDKIND_API, PH_FDKIND_TCP, PH_FDKIND_UDP };

/**
 * struct ph_fdname - a parsed descriptor name
 * @kind:	what it is
 * @sa:		for TCP and UDP: the address it is bound to
 * @len:	its length (0 for the others)
 */
struct ph_fdname {
	enum ph_fdkind kind;
	struct sockaddr_storage sa;
	socklen_t len;
};

/* systemd's rule: printable ASCII but ':', at most PH_FDNAME_MAX bytes */
bool ph_fdname_valid(const char *s);

/**
 * ph_fdname_format() - the name of a stored descriptor
 * @buf, @len:	output (PH_FDNAME_MAX + 1 is always enough)
 * @kind:	PH_FDKIND_API, _TCP or _UDP
 * @sa:		its bound address (TCP, UDP; AF_INET or AF_INET6)
 *
 * Return: 0, or -EINVAL (another kind or family) / -ENOSPC
 */
int ph_fdname_format(char *buf, size_t len, enum ph_fdkind kind, const struct sockaddr *sa);

/**
 * ph_fdname_parse() - what a name says
 * @name:	a descriptor name
 * @out:	result; kind PH_FDKIND_OTHER for a name of no known kind
 *
 * Return: 0; -EINVAL for a known kind whose address or port is malformed
 * (@out->kind is then PH_FDKIND_OTHER too)
 */
int ph_fdname_parse(const char *name, struct ph_fdname *out);

/**
 * ph_fdnames_split() - LISTEN_FDNAMES into one name per descriptor
 * @env:	its value, or NULL when unset (every name is then "unknown",
 *		as sd_listen_fds_with_names(3) says)
 * @n:		LISTEN_FDS
 * @names:	@n buffers of PH_FDNAME_MAX + 1 bytes
 *
 * Return: 0, or -EINVAL when the count differs from @n or a name is invalid
 */
int ph_fdnames_split(const char *env, size_t n, char (*names)[PH_FDNAME_MAX + 1]);

/**
 * struct ph_notify - what one notify datagram says (only what porthole uses)
 * @ready:	READY=1
 * @stopping:	STOPPING=1
 * @fdstore:	FDSTORE=1: keep the descriptors sent with it
 * @fdstore_remove: FDSTOREREMOVE=1: close the stored ones named @fdname
 * @fdname:	FDNAME= (valid), or "" when absent
 * @has_fdname:	FDNAME= was given
 * @mainpid:	MAINPID=, 0 when absent
 */
struct ph_notify {
	bool ready;
	bool stopping;
	bool fdstore;
	bool fdstore_remove;
	bool has_fdname;
	char fdname[PH_FDNAME_MAX + 1];
	pid_t mainpid;
};

/**
 * ph_notify_parse() - parse a notify datagram: newline-separated
 * VARIABLE=VALUE assignments; unknown ones and lines without '=' are ignored
 * @buf, @len:	the datagram (not NUL-terminated)
 * @out:	result
 *
 * Return: 0; -EINVAL for an embedded NUL byte, an invalid FDNAME= or MAINPID=
 */
int ph_notify_parse(const char *buf, size_t len, struct ph_notify *out);

/**
 * ph_notify_addr() - NOTIFY_SOCKET as a socket address
 * @env:	"/run/..." (a path) or "@name" (abstract)
 * @sa, @len:	result
 *
 * Return: 0, or -EINVAL (empty, relative, vsock:, too long)
 */
int ph_notify_addr(const char *env, struct sockaddr_un *sa, socklen_t *len);

/* Same family, address, port (and IPv6 scope id) */
bool ph_sockaddr_same(const struct sockaddr *a, const struct sockaddr *b);

#endif /* PH_SDNOTIFY_H */
