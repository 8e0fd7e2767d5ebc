// SPDX-License-Identifier: MIT
/*
 * bench/floor_udp.c - the least a userspace UDP relay can do: a yardstick
 *
 *	floor_udp ADDR PORT		relays UDP ADDR:PORT to 127.0.0.1:PORT
 *
 * Theory of Operation
 *
 * Issue 16 sets porthole's UDP rate targets against nftables DNAT, which
 * forwards in softirq context with no second socket hop. When porthole
 * misses them, the question is whether porthole or relaying itself is to
 * blame: this program answers it in the same runs ("floor" in results.md),
 * as bench/floor_relay.c does for TCP. It makes the system calls every
 * relay of porthole's design must make, and the ones porthole makes to
 * keep them few, and nothing else:
 *
 * - one unconnected socket bound to ADDR:PORT (the external socket), with
 *   the 2 MiB receive buffer porthole gives it (EXT_RCVBUF in
 *   src/lib/relay_udp.c), so that the floor's loss is not a smaller queue's;
 * - per client address one socket connected to 127.0.0.1:PORT, made on the
 *   client's first datagram (the service sees one peer per client, as with
 *   porthole), in the epoll set for the service's replies;
 * - client -> service: recvmmsg() of up to BATCH datagrams on the external
 *   socket, grouped by flow (arrival order within a flow), one sendmmsg()
 *   per flow and batch; service -> client: recvmmsg() on the flow socket,
 *   one sendmmsg() on the external socket addressed to the client;
 * - within a send, a run of datagrams of one size (the last may be
 *   shorter) goes as one UDP_SEGMENT message (a GSO train), as porthole
 *   sends them (send_dgrams() in relay_udp.c); a path that refuses a train
 *   gets single datagrams from then on;
 * - one thread, level-triggered epoll, at most ROUNDS full batches per
 *   readiness report (porthole's ROUNDS), datagrams received straight into
 *   the slots they are sent from.
 *
 * Left out, as optional: flow limits and eviction, idle timers, the LRU
 * list, counters, MSG_TRUNC checks (slots hold any UDP payload), ending a
 * flow on ECONNREFUSED (its datagrams are simply dropped), IPv6, pausing.
 * Flows are never freed: the relay lives for one benchmark run. It is not
 * a product: datagrams that do not fit a socket buffer are dropped, as UDP
 * allows, and the loop never waits.
 *
 * iperf3 -u also opens a TCP control connection to the same port; the
 * benchmark runs bench/floor_relay beside this program for it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define BATCH 64		/* PH_UDP_BATCH */
#define ROUNDS 4		/* full batches per readiness report, at most */
#define SLOT_SIZE 65536		/* larger than any UDP payload */
#define GSO_MAX_BYTES 65507	/* a train's payload, at most */
#define EXT_RCVBUF (2 << 20)
#define BUCKETS 4096		/* power of two; chains grow past it, fine here */

struct flow {
	struct flow *next;	/* hash chain */
	struct sockaddr_in client;
	int fd;			/* connected to the service */
	uint64_t gen;		/* batch that last grouped a datagram for it */
	unsigned head, tail;	/* its first and last slot in that batch */
	struct flow *bnext;	/* next flow of that batch */
};

static int ext_fd, epfd;
static struct sockaddr_in target;
static struct flow *buckets[BUCKETS];
static int gso_ok[2] = { 1, 1 };	/* trains allowed: [0] to the service, [1] to clients */

static char *slots;
static struct mmsghdr rx[BATCH];
static struct iovec riov[BATCH];
static struct sockaddr_in names[BATCH];
static unsigned bnext[BATCH];		/* next slot of the same flow */
static struct mmsghdr tx[BATCH];
static struct iovec tiov[BATCH];
static unsigned tsegs[BATCH];
static union {
	struct cmsghdr hdr;
	char buf[CMSG_SPACE(sizeof(uint16_t))];
} tctl[BATCH];

static unsigned hash(const struct sockaddr_in *a)
{
	uint32_t h = a->sin_addr.s_addr * 0x9e3779b1u ^ a->sin_port * 0x85ebca6bu;

	return (h ^ h >> 16) & (BUCKETS - 1);
}

/* The flow of client @a, made on its first datagram; NULL: drop it */
static struct flow *flow_get(const struct sockaddr_in *a)
{
	struct flow **b = &buckets[hash(a)], *f;
	struct epoll_event ev = { .events = EPOLLIN };

	for (f = *b; f; f = f->next)
		if (f->client.sin_port == a->sin_port &&
		    f->client.sin_addr.s_addr == a->sin_addr.s_addr)
			return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ev.data.ptr = f;
	if (f->fd < 0 || connect(f->fd, (const struct sockaddr *)&target, sizeof(target)) ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, f->fd, &ev)) {
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		return NULL;
	}
	f->client = *a;
	f->next = *b;
	*b = f;
	return f;
}

/* Message @k of tx: datagrams tiov[@first .. @first+@segs-1], a train if
 * more than one, each of @size bytes (the last may be shorter) */
static void msg_set(unsigned k, unsigned first, unsigned segs, size_t size,
		    const struct sockaddr_in *to)
{
	struct msghdr *m = &tx[k].msg_hdr;

	*m = (struct msghdr){ .msg_name = (void *)to, .msg_namelen = to ? sizeof(*to) : 0,
			      .msg_iov = &tiov[first], .msg_iovlen = segs };
	tsegs[k] = segs;
	if (segs > 1) {
		struct cmsghdr *c = &tctl[k].hdr;

		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		*(uint16_t *)(void *)CMSG_DATA(c) = (uint16_t)size;
		m->msg_control = c;
		m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
	}
}

/**
 * send_dgrams() - send the @n datagrams of tiov on @fd, in order
 * @fd:		socket
 * @n:		datagrams
 * @to:		client address (external socket), or NULL (flow socket)
 * @dir:	index into gso_ok
 *
 * The same trains as porthole's send_dgrams(): a run of one size, the
 * last of it possibly shorter, none empty, GSO_MAX_BYTES in all. A full
 * buffer drops the rest; a refused train turns trains off for @dir and
 * sends the rest one by one; any other error drops one message.
 */
static void send_dgrams(int fd, unsigned n, const struct sockaddr_in *to, int dir)
{
	unsigned k = 0, done = 0;

	for (unsigned i = 0, j; i < n; i = j) {
		size_t size = tiov[i].iov_len, total = size;

		j = i + 1;
		if (gso_ok[dir] && size)
			while (j < n && tiov[j].iov_len && tiov[j].iov_len <= size &&
			       total + tiov[j].iov_len <= GSO_MAX_BYTES) {
				total += tiov[j++].iov_len;
				if (tiov[j - 1].iov_len < size)
					break;
			}
		msg_set(k++, i, j - i, size, to);
	}
	while (done < k) {
		int m = sendmmsg(fd, tx + done, k - done, MSG_DONTWAIT);

		if (m >= 0) {
			done += (unsigned)m;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM ||
		    errno == ECONNREFUSED)
			return;
		if (tsegs[done] > 1 && (errno == EINVAL || errno == EIO || errno == EMSGSIZE)) {
			unsigned first = (unsigned)(tx[done].msg_hdr.msg_iov - tiov);

			gso_ok[dir] = 0;
			k = done;
			for (unsigned q = first; q < n; q++)
				msg_set(k++, q, 1, 0, to);
			continue;
		}
		done++;
	}
}

/* Client -> service: batches from the external socket, grouped by flow */
static void ext_input(void)
{
	static uint64_t gen;

	for (int round = 0; round < ROUNDS; round++) {
		struct flow *first = NULL, **lastp = &first;
		int n;

		for (unsigned i = 0; i < BATCH; i++) {
			rx[i].msg_hdr.msg_name = &names[i];
			rx[i].msg_hdr.msg_namelen = sizeof(names[i]);
		}
		n = recvmmsg(ext_fd, rx, BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		gen++;
		for (unsigned i = 0; i < (unsigned)n; i++) {
			struct flow *f = flow_get(&names[i]);

			if (!f)
				continue;
			if (f->gen == gen) {
				bnext[f->tail] = i;
			} else {
				f->gen = gen;
				f->head = i;
				f->bnext = NULL;
				*lastp = f;
				lastp = &f->bnext;
			}
			f->tail = i;
		}
		for (struct flow *f = first; f; f = f->bnext) {
			unsigned c = 0;

			for (unsigned i = f->head;; i = bnext[i]) {
				tiov[c++] = (struct iovec){ riov[i].iov_base, rx[i].msg_len };
				if (i == f->tail)
					break;
			}
			send_dgrams(f->fd, c, NULL, 0);
		}
		if (n < BATCH)
			return;
	}
}

/* Service -> client: batches from a flow socket, out of the external one */
static void flow_input(struct flow *f)
{
	for (int round = 0; round < ROUNDS; round++) {
		int n;

		for (unsigned i = 0; i < BATCH; i++) {
			rx[i].msg_hdr.msg_name = NULL;
			rx[i].msg_hdr.msg_namelen = 0;
		}
		n = recvmmsg(f->fd, rx, BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;	/* EAGAIN, or ECONNREFUSED (consumed by the call) */
		}
		for (unsigned i = 0; i < (unsigned)n; i++)
			tiov[i] = (struct iovec){ riov[i].iov_base, rx[i].msg_len };
		send_dgrams(ext_fd, (unsigned)n, &f->client, 1);
		if (n < BATCH)
			return;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct epoll_event events[256], ev = { .events = EPOLLIN, .data.ptr = NULL };
	int port, size = 1000, probe, rcvbuf = EXT_RCVBUF;

	if (argc != 3 || (port = atoi(argv[2])) <= 0 || port > 65535 ||
	    inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
		fprintf(stderr, "usage: floor_udp ADDR PORT\n");
		return 2;
	}
	target = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				       .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	addr.sin_port = target.sin_port;

	/* a kernel without UDP_SEGMENT would send a train as one datagram */
	probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (probe < 0 || setsockopt(probe, SOL_UDP, UDP_SEGMENT, &size, sizeof(size)))
		gso_ok[0] = gso_ok[1] = 0;
	if (probe >= 0)
		close(probe);

	slots = malloc((size_t)BATCH * SLOT_SIZE);
	ext_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!slots || ext_fd < 0 || epfd < 0 ||
	    bind(ext_fd, (struct sockaddr *)&addr, sizeof(addr)) ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, ext_fd, &ev)) {
		perror("floor_udp: bind");
		return 1;
	}
	if (setsockopt(ext_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)))
		(void)setsockopt(ext_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	for (unsigned i = 0; i < BATCH; i++) {
		riov[i] = (struct iovec){ slots + (size_t)i * SLOT_SIZE, SLOT_SIZE };
		rx[i].msg_hdr.msg_iov = &riov[i];
		rx[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		int n = epoll_wait(epfd, events, 256, -1);

		if (n < 0 && errno != EINTR) {
			perror("floor_udp: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (events[i].data.ptr)
				flow_input(events[i].data.ptr);
			else
				ext_input();
		}
	}
}
