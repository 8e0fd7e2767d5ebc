// SPDX-License-Identifier: MIT
/* discovery_sockdiag.c - enumerate TCP listeners and UDP sockets of this netns through NETLINK_SOCK_DIAG
 *
 * Theory of Operation
 *
 * One dump per address family and protocol: a SOCK_DIAG_BY_FAMILY request
 * (struct inet_diag_req_v2) with NLM_F_REQUEST | NLM_F_DUMP.
 *
 * TCP asks for idiag_states = 1 << TCP_LISTEN. Because the state mask holds
 * LISTEN alone, the kernel walks only the listening hash and skips the
 * established hash entirely (inet_diag: "if (!(idiag_states & ~TCPF_LISTEN))
 * goto out"), so the cost of a scan does not grow with the number of
 * connections.
 *
 * UDP (udp_diag) asks for idiag_states = 1 << TCP_CLOSE: a bound UDP socket
 * without a peer is in CLOSE, a connect()ed one in ESTABLISHED. The kernel
 * filters on the state, so connected client sockets (a resolver's, and the
 * relay's own flow sockets) never reach us. The UDP table has one hash, so
 * that walk is over every UDP socket, connected or not.
 *
 * The reply is a multi-part dump spread over any number of datagrams; the
 * kernel fills the next one only when we read, and never makes one larger
 * than 32 KiB, so a 32 KiB receive buffer always holds a whole datagram
 * (MSG_TRUNC is still checked and treated as a protocol error). The dump
 * ends with NLMSG_DONE, whose payload may carry a negative errno; a request
 * the kernel refuses is answered with NLMSG_ERROR instead. A dump that raced
 * with a change of the socket tables carries NLM_F_DUMP_INTR: the result is
 * inconsistent and the caller retries.
 *
 * Parsing is a pure function over one datagram (ph_sockdiag_parse) so it can
 * be unit-tested on captured bytes and fuzzed. Every length is checked
 * against what remains before anything is read; headers are copied out with
 * memcpy() so a buffer of any alignment is safe.
 *
 * AF_INET6 listeners always carry INET_DIAG_SKV6ONLY (the kernel adds it for
 * IPv6 sockets in LISTEN or CLOSE: TCP listeners and unconnected UDP sockets
 * alike); IPv4 listeners cannot be v6only, which is known as well.
 */
#include "discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>
#include <stdalign.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Largest datagram the kernel builds for a dump (netlink caps it at 32 KiB) */
#define SOCKDIAG_BUF	32768
/* A stuck kernel must not hang the scanner */
#define SOCKDIAG_TIMEOUT_S 1

/* The one state a dump of @proto asks for: LISTEN, or CLOSE (unconnected UDP) */
static unsigned wanted_state(int proto)
{
	return proto == IPPROTO_UDP ? TCP_CLOSE : TCP_LISTEN;
}

int ph_sockdiag_open(void)
{
	struct timeval tv = { .tv_sec = SOCKDIAG_TIMEOUT_S };
	int fd;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/**
 * parse_attrs() - pick the attributes we use out of an inet_diag_msg tail
 * @p, @len:	attribute area (may be empty)
 * @l:		listener to complete
 *
 * Return: 0, or -EPROTO when an attribute overruns the area
 */
static int parse_attrs(const uint8_t *p, size_t len, struct ph_listener *l)
{
	while (len >= sizeof(struct nlattr)) {
		struct nlattr a;
		size_t step;

		memcpy(&a, p, sizeof(a));
		if (a.nla_len < sizeof(a) || a.nla_len > len)
			return -EPROTO;

		if ((a.nla_type & NLA_TYPE_MASK) == INET_DIAG_SKV6ONLY &&
		    l->family == AF_INET6) {
			if (a.nla_len < sizeof(a) + 1)
				return -EPROTO;
			l->v6only = p[sizeof(a)] != 0;
			l->v6only_known = true;
		}

		/* the last attribute may lack its padding */
		step = NLA_ALIGN(a.nla_len);
		if (step >= len)
			return 0;
		p += step;
		len -= step;
	}
	return len ? -EPROTO : 0;
}

/**
 * parse_diag_msg() - one SOCK_DIAG_BY_FAMILY message into a listener
 * @p, @len:	message payload (after the netlink header)
 * @proto:	IPPROTO_TCP or IPPROTO_UDP: what the dump asked for
 * @out:	a LISTEN (TCP) or unconnected (UDP) socket is appended
 *
 * Return: 0 or -EPROTO / -ENOMEM
 */
static int parse_diag_msg(const uint8_t *p, size_t len, int proto, struct ph_scan *out)
{
	struct inet_diag_msg m;
	struct ph_listener l = { 0 };
	size_t hdr = NLMSG_ALIGN(sizeof(m));
	int ret;

	if (len < sizeof(m))
		return -EPROTO;
	memcpy(&m, p, sizeof(m));

	l.family = m.idiag_family;
	if (m.idiag_family == AF_INET) {
		struct in_addr a;

		memcpy(&a.s_addr, &m.id.idiag_src[0], sizeof(a.s_addr));
		ph_addr_from_v4(&l.addr, a);
		l.v6only_known = true;		/* an IPv4 socket never is */
	} else if (m.idiag_family == AF_INET6) {
		memcpy(&l.addr, m.id.idiag_src, sizeof(l.addr));
	} else {
		return -EPROTO;
	}
	l.port = ntohs(m.id.idiag_sport);
	l.inode = m.idiag_inode;
	l.uid = m.idiag_uid;
	l.proto = (uint8_t)proto;

	if (len > hdr) {
		ret = parse_attrs(p + hdr, len - hdr, &l);
		if (ret)
			return ret;
	}

	/* We asked for one state only; anything else is not ours to report,
	 * nor is a UDP socket with a peer or without a port */
	if (m.idiag_state != wanted_state(proto) || !l.port)
		return 0;
	if (proto == IPPROTO_UDP && m.id.idiag_dport)
		return 0;
	return ph_scan_push(out, &l);
}

/**
 * parse_error() - payload of NLMSG_ERROR or NLMSG_DONE
 * @p, @len:	payload
 * @err:	the errno carried, <= 0
 *
 * Return: 0, or -EPROTO when there is no valid error code
 */
static int parse_error(const uint8_t *p, size_t len, int *err)
{
	int e;

	if (len < sizeof(e))
		return -EPROTO;
	memcpy(&e, p, sizeof(e));
	if (e > 0 || e < -4095)
		return -EPROTO;
	*err = e;
	return 0;
}

int ph_sockdiag_parse(const void *buf, size_t len, uint32_t seq, struct ph_scan *out)
{
	return ph_sockdiag_parse_proto(buf, len, seq, IPPROTO_TCP, out);
}

int ph_sockdiag_parse_proto(const void *buf, size_t len, uint32_t seq, int proto,
			    struct ph_scan *out)
{
	const uint8_t *p = buf;

	while (len >= sizeof(struct nlmsghdr)) {
		const uint8_t *payload = p + NLMSG_HDRLEN;
		struct nlmsghdr h;
		size_t plen, step;
		int err, ret;

		memcpy(&h, p, sizeof(h));
		if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len)
			return -EPROTO;
		plen = h.nlmsg_len - NLMSG_HDRLEN;

		/* Left over from an earlier, abandoned request: not ours */
		if (h.nlmsg_seq != seq)
			goto next;
		if (h.nlmsg_flags & NLM_F_DUMP_INTR)
			return -EINTR;

		switch (h.nlmsg_type) {
		case NLMSG_NOOP:
			break;
		case NLMSG_OVERRUN:
			return -ENOBUFS;	/* data was lost */
		case NLMSG_ERROR:
			ret = parse_error(payload, plen, &err);
			if (ret)
				return ret;
			return err ? err : 1;	/* 0 is an ACK: nothing follows */
		case NLMSG_DONE:
			/* Older kernels send DONE without the error int */
			if (plen < sizeof(int))
				return 1;
			ret = parse_error(payload, plen, &err);
			if (ret)
				return ret;
			return err ? err : 1;
		case SOCK_DIAG_BY_FAMILY:
			ret = parse_diag_msg(payload, plen, proto, out);
			if (ret)
				return ret;
			break;
		default:
			break;		/* unknown types carry nothing we use */
		}
next:
		step = NLMSG_ALIGN(h.nlmsg_len);
		if (step >= len)
			return 0;
		p += step;
		len -= step;
	}
	/* A datagram is made of whole messages: a stray tail is corruption */
	return len ? -EPROTO : 0;
}

/**
 * send_request() - ask for a dump of one family's listening sockets
 * @fd:		sock_diag socket
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP (LISTEN) or IPPROTO_UDP (CLOSE: unconnected)
 * @seq:	sequence number of the request
 *
 * Return: 0 or -errno
 */
static int send_request(int fd, int family, int proto, uint32_t seq)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nlh = {
			.nlmsg_len = sizeof(msg),
			.nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			.nlmsg_seq = seq,
		},
		.req = {
			.sdiag_family = (uint8_t)family,
			.sdiag_protocol = (uint8_t)proto,
			.idiag_states = 1U << wanted_state(proto),
		},
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	ssize_t n;

	do {
		n = sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != sizeof(msg))
		return -EIO;
	return 0;
}

int ph_sockdiag_dump(int fd, int family, uint32_t seq, struct ph_scan *out)
{
	return ph_sockdiag_dump_proto(fd, family, IPPROTO_TCP, seq, out);
}

int ph_sockdiag_dump_proto(int fd, int family, int proto, uint32_t seq, struct ph_scan *out)
{
	/* On the stack: no allocation per scan, nothing shared between threads */
	alignas(struct nlmsghdr) uint8_t buf[SOCKDIAG_BUF];
	int ret;

	if (family != AF_INET && family != AF_INET6)
		return -EAFNOSUPPORT;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return -EPROTONOSUPPORT;

	ret = send_request(fd, family, proto, seq);
	if (ret)
		return ret;

	for (;;) {
		struct sockaddr_nl from;
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr mh = {
			.msg_name = &from,
			.msg_namelen = sizeof(from),
			.msg_iov = &iov,
			.msg_iovlen = 1,
		};
		ssize_t n;

		n = recvmsg(fd, &mh, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return -ETIMEDOUT;
			return -errno;
		}
		if (mh.msg_flags & MSG_TRUNC)
			return -EPROTO;
		/* Only the kernel (port id 0) answers a diag request */
		if (mh.msg_namelen < sizeof(from) || from.nl_family != AF_NETLINK ||
		    from.nl_pid != 0)
			continue;

		ret = ph_sockdiag_parse_proto(buf, (size_t)n, seq, proto, out);
		if (ret < 0)
			return ret;
		if (ret == 1)
			return 0;
	}
}
