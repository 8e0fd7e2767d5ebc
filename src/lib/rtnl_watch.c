// SPDX-License-Identifier: MIT
/* rtnl_watch.c - keep the rtnetlink model current: a subscription, and full dumps when needed
 *
 * Theory of Operation
 * ===================
 * Two NETLINK_ROUTE sockets. The subscription (RTMGRP_IPV4_IFADDR,
 * RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK) is
 * non-blocking and sits on the port worker's loop; each readable event
 * drains it into the model (rtnl.c). The other socket makes full dumps of
 * links, addresses and routes, synchronously, into a fresh model that
 * replaces the current one only when the whole dump succeeded.
 *
 * A full dump is taken at start, on every resume from a snapshot (by the
 * caller), and whenever the notifications cannot be trusted to describe
 * the namespace:
 *  - ENOBUFS: the kernel dropped notifications for lack of buffer;
 *  - a truncated or malformed datagram;
 *  - an address removed or a link changed: the kernel then flushes the
 *    routes through it without notifying anyone (IPv4 does so for a link
 *    going down and for the last address of a subnet);
 *  - a default route changed: several routes may share what the model
 *    keys them by (e.g. two IPv6 routers), so a removal is checked.
 * The first two are counted (@resyncs): they mean lost information.
 * A dump of a guest's few links, addresses and routes costs well under a
 * millisecond; notifications that only add an address (the common case,
 * `ip addr add` or a DHCP lease) are applied directly.
 *
 * Messages queued on the subscription while a dump runs are applied after
 * it; NEW and DEL are idempotent, so the model converges to the kernel's.
 */
#include "rtnl.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define RTNL_BUF	32768
#define DUMP_TRIES	4

static int nl_open(unsigned groups, bool nonblock)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };
	int fd, rcvbuf = 1 << 20;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0),
		    NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	if (groups)	/* best effort: a bigger queue loses fewer bursts */
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (!nonblock) {
		struct timeval tv = { .tv_sec = 2 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* One dump request, its replies applied to @m. Return: 0 or -errno */
static int dump_one(struct ph_rtnl_watch *w, uint16_t type, struct ph_rtnl_model *m)
{
	unsigned char *buf = w->buf;
	struct {
		struct nlmsghdr h;
		struct rtgenmsg g;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = type,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.g = { .rtgen_family = AF_UNSPEC },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	unsigned what = 0;
	int ret;

	req.h.nlmsg_seq = ++w->seq ? w->seq : ++w->seq;
	if (sendto(w->dump_fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	do {
		ssize_t n = recv(w->dump_fd, buf, RTNL_BUF, MSG_TRUNC);

		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if ((size_t)n > RTNL_BUF)
			return -EPROTO;
		ret = ph_rtnl_parse(buf, (size_t)n, req.h.nlmsg_seq, m, &what);
	} while (ret == 0);
	return ret < 0 ? ret : 0;
}

int ph_rtnl_watch_dump(struct ph_rtnl_watch *w)
{
	static const uint16_t types[] = { RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE };
	struct ph_rtnl_model fresh = { 0 };
	int ret = 0;

	for (int tries = 0; tries < DUMP_TRIES; tries++) {
		ph_rtnl_model_clear(&fresh);
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			ret = dump_one(w, types[i], &fresh);
			if (ret)
				break;
		}
		if (ret != -EINTR)
			break;
		/* NLM_F_DUMP_INTR: the tables changed meanwhile; again */
	}
	if (!ret)
		ph_rtnl_model_swap(&w->m, &fresh);
	ph_rtnl_model_free(&fresh);
	return ret;
}

int ph_rtnl_watch_open(struct ph_rtnl_watch *w)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->dump_fd = -1;
	w->buf = malloc(RTNL_BUF);	/* netlink messages are 4-byte aligned: malloc's are */
	if (!w->buf)
		return -ENOMEM;
	w->sub_fd = nl_open(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE |
			    RTMGRP_IPV6_ROUTE | RTMGRP_LINK, true);
	if (w->sub_fd < 0) {
		ret = w->sub_fd;
		free(w->buf);
		w->buf = NULL;
		return ret;
	}
	w->dump_fd = nl_open(0, false);
	if (w->dump_fd < 0) {
		ret = w->dump_fd;
		goto fail;
	}
	ret = ph_rtnl_watch_dump(w);
	if (!ret)
		return 0;
	close(w->dump_fd);
fail:
	close(w->sub_fd);
	ph_rtnl_model_free(&w->m);
	free(w->buf);
	w->buf = NULL;
	w->sub_fd = w->dump_fd = -1;
	return ret;
}

void ph_rtnl_watch_close(struct ph_rtnl_watch *w)
{
	if (w->sub_fd >= 0)
		close(w->sub_fd);
	if (w->dump_fd >= 0)
		close(w->dump_fd);
	w->sub_fd = w->dump_fd = -1;
	ph_rtnl_model_free(&w->m);
	free(w->buf);
	w->buf = NULL;
}

int ph_rtnl_watch_read(struct ph_rtnl_watch *w)
{
	unsigned char *buf = w->buf;
	bool any = false, lost = false, dump = false;

	for (;;) {
		unsigned what = 0;
		ssize_t n = recv(w->sub_fd, buf, RTNL_BUF, MSG_TRUNC | MSG_DONTWAIT);
		int ret;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS) {	/* notifications were dropped */
				any = lost = true;
				continue;
			}
			break;	/* EAGAIN: drained */
		}
		any = true;
		if ((size_t)n > RTNL_BUF) {
			lost = true;
			continue;
		}
		ret = ph_rtnl_parse(buf, (size_t)n, 0, &w->m, &what);
		if (ret < 0 && ret != -EINTR)
			lost = true;
		if (what & (PH_RTNL_DELADDR | PH_RTNL_LINK | PH_RTNL_ROUTE))
			dump = true;
	}
	if (lost)
		w->resyncs++;
	if (lost || dump) {
		int ret = ph_rtnl_watch_dump(w);

		if (ret)
			return ret;
	}
	return any;
}
