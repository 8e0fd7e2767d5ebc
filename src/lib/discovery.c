// SPDX-License-Identifier: MIT
/* discovery.c - one call that lists every TCP listener and unconnected UDP socket: sock_diag, or /proc
 *
 * Theory of Operation
 *
 * ph_scanner_init() opens a sock_diag socket and runs one probe dump of each
 * family. If the kernel lacks sock_diag (socket() fails with
 * EPROTONOSUPPORT, the inet_diag handler is missing: ENOENT, an LSM denies
 * it: EACCES/EPERM, ...), the scanner switches to /proc/net/tcp{,6} for
 * good and says so once. Any other probe failure is not taken as "missing":
 * it is a transient error that the next scan reports.
 *
 * ph_scanner_run() produces a complete picture or fails: an interrupted dump
 * (NLM_F_DUMP_INTR) is retried a few times, then the scan fails with
 * -EAGAIN; any other error fails it at once. After a failed dump the netlink
 * socket is replaced, because the kernel may still be in the middle of that
 * dump and would refuse the next request on the same socket (EBUSY, which is
 * therefore retried on the fresh socket) or feed us its leftovers. Missing IPv6 (no tcp6 file, EAFNOSUPPORT) just means no
 * IPv6 listeners.
 *
 * UDP (ph_scanner_enable_udp) is two more dumps on the same socket in the
 * same run, after TCP's: one picture of both protocols or a failed scan.
 * udp_diag is a module of its own; a kernel without it reads
 * /proc/net/udp{,6} for UDP while TCP stays on sock_diag.
 */
#include "discovery.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* Tries of one family's dump while the kernel flags it interrupted */
#define SCAN_ATTEMPTS 3

/* Errors that mean "this kernel has no usable sock_diag" */
static bool diag_unavailable(int err)
{
	switch (-err) {
	case EPROTONOSUPPORT:
	case EAFNOSUPPORT:
	case ESOCKTNOSUPPORT:
	case ENOENT:
	case EOPNOTSUPP:
	case ENOSYS:
	case EACCES:
	case EPERM:
		return true;
	default:
		return false;
	}
}

static void close_diag(struct ph_scanner *s)
{
	if (s->diag_fd >= 0)
		close(s->diag_fd);
	s->diag_fd = -1;
}

/**
 * dump_family() - complete dump of one family, retried while interrupted
 * @s:		scanner (its socket is reopened after a failure)
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP or IPPROTO_UDP
 * @out:	listeners are appended; unchanged on failure
 *
 * Return: 0, -EAGAIN when every attempt was interrupted, or -errno
 */
static int dump_family(struct ph_scanner *s, int family, int proto, struct ph_scan *out)
{
	size_t mark = out->len;
	int ret = -EAGAIN;

	for (int i = 0; i < SCAN_ATTEMPTS; i++) {
		if (s->diag_fd < 0) {
			int fd = ph_sockdiag_open();

			if (fd < 0)
				return fd;
			s->diag_fd = fd;
		}
		ret = ph_sockdiag_dump_proto(s->diag_fd, family, proto, s->seq++, out);
		if (!ret)
			return 0;
		out->len = mark;
		/* Refused before any dump started: the socket stays clean */
		if (ret == -EAFNOSUPPORT && family == AF_INET6)
			return 0;
		close_diag(s);
		/* EBUSY: a dump was left unfinished on the old socket; the
		 * new one is clean */
		if (ret != -EINTR && ret != -EBUSY)
			return ret;
	}
	return -EAGAIN;
}

static int run_diag(struct ph_scanner *s, int proto, struct ph_scan *out)
{
	int ret = dump_family(s, AF_INET, proto, out);

	if (ret)
		return ret;
	return dump_family(s, AF_INET6, proto, out);
}

static int run_proc(const struct ph_scanner *s, int proto, struct ph_scan *out)
{
	int (*read)(const char *, int, struct ph_scan *) =
		proto == IPPROTO_UDP ? ph_procudp_read : ph_proctcp_read;
	const char *root = s->proc_root ? s->proc_root : "/proc";
	const char *name = proto == IPPROTO_UDP ? "udp" : "tcp";
	char path[PATH_MAX];
	int ret;

	if (snprintf(path, sizeof(path), "%s/net/%s", root, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	ret = read(path, AF_INET, out);
	if (ret)
		return ret;

	if (snprintf(path, sizeof(path), "%s/net/%s6", root, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	ret = read(path, AF_INET6, out);
	if (ret == -ENOENT)
		return 0;	/* IPv6 disabled: no IPv6 listeners */
	return ret;
}

int ph_scanner_init(struct ph_scanner *s, bool force_proc)
{
	struct ph_scan probe = { 0 };
	int ret;

	*s = (struct ph_scanner){ .diag_fd = -1, .seq = 1, .proc_root = "/proc" };
	if (force_proc) {
		s->use_proc = true;
		return 0;
	}

	ret = ph_sockdiag_open();
	if (ret < 0)
		goto fail;
	s->diag_fd = ret;

	ret = run_diag(s, IPPROTO_TCP, &probe);
	ph_scan_free(&probe);
	if (!ret)
		return 0;
fail:
	if (diag_unavailable(ret)) {
		close_diag(s);
		s->use_proc = true;
		ph_info("sock_diag unavailable, reading /proc/net/tcp instead", PH_FERR(ret));
		return 0;
	}
	if (ret == -ENOMEM || ret == -ENOBUFS || ret == -EMFILE || ret == -ENFILE) {
		close_diag(s);
		return ret;
	}
	/* Transient (interrupted, timed out, ...): keep sock_diag, scans report */
	ph_warn("sock_diag probe failed", PH_FERR(ret));
	return 0;
}

/* ip_local_port_range into @s; unreadable (no /proc): 0, 0 (no range) */
static void read_ephemeral(struct ph_scanner *s)
{
	const char *root = s->proc_root ? s->proc_root : "/proc";
	char path[PATH_MAX], text[64];
	ssize_t n = -1;
	int fd;

	s->ephemeral_lo = s->ephemeral_hi = 0;
	if (snprintf(path, sizeof(path), "%s/sys/net/ipv4/ip_local_port_range", root) >=
	    (int)sizeof(path))
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
	}
	if (n <= 0)
		return;
	text[n] = '\0';
	if (ph_port_range_parse(text, &s->ephemeral_lo, &s->ephemeral_hi))
		s->ephemeral_lo = s->ephemeral_hi = 0;
}

int ph_scanner_enable_udp(struct ph_scanner *s)
{
	struct ph_scan probe = { 0 };
	int ret;

	s->udp = true;
	s->udp_proc = s->use_proc;
	if (s->udp_proc)
		return 0;
	ret = run_diag(s, IPPROTO_UDP, &probe);
	ph_scan_free(&probe);
	if (!ret)
		return 0;
	if (diag_unavailable(ret)) {
		s->udp_proc = true;
		ph_info("udp_diag unavailable, reading /proc/net/udp instead", PH_FERR(ret));
		return 0;
	}
	if (ret == -ENOMEM || ret == -ENOBUFS || ret == -EMFILE || ret == -ENFILE)
		return ret;
	ph_warn("udp_diag probe failed", PH_FERR(ret));	/* scans report */
	return 0;
}

int ph_scanner_run(struct ph_scanner *s, struct ph_scan *out)
{
	ph_scan_clear(out);
	return ph_scanner_run_some(s, out, true, true);
}

int ph_scanner_run_some(struct ph_scanner *s, struct ph_scan *out, bool tcp, bool udp)
{
	size_t k = 0;
	int ret = 0;

	udp = udp && s->udp;
	/* the previous picture of the protocols not asked for stays */
	for (size_t i = 0; i < out->len; i++)
		if (out->v[i].proto == IPPROTO_UDP ? s->udp && !udp : !tcp)
			out->v[k++] = out->v[i];
	out->len = k;
	if (tcp)
		ret = s->use_proc ? run_proc(s, IPPROTO_TCP, out) : run_diag(s, IPPROTO_TCP, out);
	if (!ret && udp) {
		read_ephemeral(s);
		ret = s->udp_proc ? run_proc(s, IPPROTO_UDP, out) : run_diag(s, IPPROTO_UDP, out);
	}
	if (ret)
		ph_scan_clear(out);	/* never mistaken for "no listeners" */
	return ret;
}

void ph_scanner_fini(struct ph_scanner *s)
{
	close_diag(s);
}

const char *ph_scanner_method(const struct ph_scanner *s)
{
	return s->use_proc ? "proc" : "sock_diag";
}
