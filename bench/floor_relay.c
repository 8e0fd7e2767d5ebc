// SPDX-License-Identifier: MIT
/*
 * bench/floor_relay.c - the least a userspace TCP relay can do: a yardstick
 *
 *	floor_relay ADDR PORT		relays ADDR:PORT to 127.0.0.1:PORT
 *	floor_relay ADDR PORT unix:PATH	relays ADDR:PORT to the Unix stream
 *					socket PATH
 *
 * Theory of Operation
 *
 * The benchmark's request targets compare porthole with a direct
 * connection. When porthole misses one, the question is whether porthole
 * or relaying itself is to blame. This program answers it: a relay with
 * nothing but the system calls every relay must make, run in the same
 * runs as porthole ("floor" in results.md). Per connection: accept4,
 * socket, TCP_NODELAY on both legs, a non-blocking connect, two
 * EPOLL_CTL_ADD; per message one recv and one send; at the end shutdown and
 * two closes. One thread, level-triggered epoll, no limits, no keepalive, no
 * congestion-control choice, no accounting, no splice. It is not a product:
 * a message that does not fit the peer's socket buffer waits in a 16 KiB
 * buffer with that side's reading paused, and a connection that fails in
 * any way is simply closed.
 *
 * With unix:PATH the service leg is an AF_UNIX stream socket instead of a
 * loopback TCP connection ("floor-unix" in results.md), and nothing else
 * changes: the same loop, the same recv and send per message, the same FIN
 * handling (shutdown of a Unix stream socket reports EPOLLRDHUP to its peer
 * as a TCP FIN does); TCP_NODELAY is set on the client leg only. It bounds
 * issue 19 part 2's relay acceleration from above: that design keeps the
 * client leg and this loop and only moves the loopback leg out of the TCP
 * stack (sock_ops + sk_msg redirect into the peer's receive queue), so no
 * such relay can beat one whose loopback leg costs what the cheapest
 * inter-process byte path costs. A Unix stream send is an skb allocation,
 * a copy, a queue and a wake-up, a recv one copy: no TCP/IP, no softirq, no
 * ACKs, the same order of work as an sk_msg ingress redirect (which also
 * allocates, copies, runs a BPF program, queues and wakes). The server's
 * own accept and I/O on a Unix socket are cheaper than on TCP as well,
 * which flatters this contender further; for an upper bound that is fine.
 * A Unix connect does not wait for an accept, and a full backlog fails it
 * at once with EAGAIN: that connection is closed like any other failure.
 *
 * One detail it must share with porthole to be comparable: a FIN that
 * arrives with the last data (EPOLLRDHUP in the same report) is passed on
 * right after that data, in the same turn. A relay that passes it one turn
 * later lets an HTTP client close first and keep the TIME_WAIT, and a
 * connection-per-request load then runs out of ephemeral ports within
 * seconds (see docs/design.md, "Connection per request under sustained
 * load").
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FLOOR_BUF 16384

struct floor_pair;

struct floor_side {
	int fd;
	int idx;		/* 0 client, 1 service */
	int registered;		/* in the epoll set */
	struct floor_pair *pair;
};

struct floor_pair {
	struct floor_side side[2];
	int eof[2];		/* side i sent its FIN (and it was passed on) */
	char pend[FLOOR_BUF];	/* bytes the other side could not take yet */
	size_t pend_len;
	int dead;
	struct floor_pair *next_dead;
};

/* Where the service leg connects: 127.0.0.1:PORT or a Unix socket path. */
struct floor_target {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_un un;
	} addr;
	socklen_t len;
};

static int floor_epfd;
static struct floor_pair *floor_dead;	/* freed after each epoll batch */

/**
 * floor_watch() - set the epoll interest of one side
 * @s:		side
 * @events:	mask; 0 takes the side out of the epoll set, since epoll
 *		reports EPOLLHUP whatever the mask and a paused side must not
 *		be reported
 *
 * Return: 0 or -errno
 */
static int floor_watch(struct floor_side *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };
	int op = !events ? EPOLL_CTL_DEL : s->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

	if (!events && !s->registered)
		return 0;
	if (epoll_ctl(floor_epfd, op, s->fd, &ev))
		return -errno;
	s->registered = events != 0;
	return 0;
}

/* Close both legs; the memory goes after the batch, whose later events
 * may still name this pair. */
static void floor_close(struct floor_pair *p)
{
	if (p->dead)
		return;
	close(p->side[0].fd);
	close(p->side[1].fd);
	p->dead = 1;
	p->next_dead = floor_dead;
	floor_dead = p;
}

/**
 * floor_accept() - accept every pending client and connect its service leg
 * @lfd:	listening socket
 * @target:	127.0.0.1:PORT, or a Unix stream socket
 */
static void floor_accept(int lfd, const struct floor_target *target)
{
	int family = target->addr.sa.sa_family;
	int one = 1;

	for (;;) {
		struct floor_pair *p;
		int c, s;

		c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c < 0)
			return;		/* EAGAIN, or out of fds: try on the next report */
		s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		p = calloc(1, sizeof(*p));
		if (s < 0 || !p)
			goto fail;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (family == AF_INET)
			setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(s, &target->addr.sa, target->len) && errno != EINPROGRESS)
			goto fail;
		p->side[0] = (struct floor_side){ .fd = c, .idx = 0, .pair = p };
		p->side[1] = (struct floor_side){ .fd = s, .idx = 1, .pair = p };
		if (floor_watch(&p->side[0], EPOLLIN | EPOLLRDHUP) ||
		    floor_watch(&p->side[1], EPOLLIN | EPOLLRDHUP))
			goto fail;
		continue;
fail:
		close(c);
		if (s >= 0)
			close(s);
		free(p);
	}
}

/* Side @k sent its FIN: pass it on, and end the pair once both did. */
static void floor_eof(struct floor_pair *p, int k)
{
	p->eof[k] = 1;
	shutdown(p->side[1 - k].fd, SHUT_WR);
	if (p->eof[1 - k]) {
		floor_close(p);
		return;
	}
	if (floor_watch(&p->side[k], 0))
		floor_close(p);
}

/**
 * floor_pass() - send @n bytes read from side @k to the other side
 * @p:		pair
 * @k:		side the bytes came from
 * @buf:	bytes
 * @n:		length
 *
 * Return: 0 if sent or parked (reading @k paused until the other side
 * takes them), -1 if the pair was closed.
 */
static int floor_pass(struct floor_pair *p, int k, const char *buf, size_t n)
{
	ssize_t w = send(p->side[1 - k].fd, buf, n, MSG_NOSIGNAL);

	if (w == (ssize_t)n)
		return 0;
	if (w < 0 && errno != EAGAIN) {
		floor_close(p);
		return -1;
	}
	if (w < 0)
		w = 0;
	memcpy(p->pend, buf + w, n - (size_t)w);
	p->pend_len = n - (size_t)w;
	if (floor_watch(&p->side[k], 0) || floor_watch(&p->side[1 - k], EPOLLOUT)) {
		floor_close(p);
		return -1;
	}
	return 0;
}

/* The side that could not take bytes can now: send them, resume reading. */
static void floor_flush(struct floor_pair *p, int k)
{
	ssize_t w = send(p->side[k].fd, p->pend, p->pend_len, MSG_NOSIGNAL);

	if (w < 0 && errno == EAGAIN)
		return;
	if (w < 0) {
		floor_close(p);
		return;
	}
	p->pend_len -= (size_t)w;
	memmove(p->pend, p->pend + w, p->pend_len);
	if (p->pend_len)
		return;
	for (int j = 0; j < 2; j++) {
		if (floor_watch(&p->side[j], p->eof[j] ? 0 : EPOLLIN | EPOLLRDHUP)) {
			floor_close(p);
			return;
		}
	}
}

/**
 * floor_input() - side @k is readable: one recv, passed on at once
 * @p:		pair
 * @k:		side
 * @events:	epoll mask of the report
 */
static void floor_input(struct floor_pair *p, int k, uint32_t events)
{
	static char buf[FLOOR_BUF];
	ssize_t r = recv(p->side[k].fd, buf, sizeof(buf), 0);

	if (r < 0) {
		if (errno != EAGAIN)
			floor_close(p);
		return;
	}
	if (r > 0) {
		if (floor_pass(p, k, buf, (size_t)r) || p->pend_len)
			return;
		if (!(events & EPOLLRDHUP))
			return;
		/* the FIN came with this data: pass it on in this turn */
		r = recv(p->side[k].fd, buf, sizeof(buf), 0);
		if (r > 0) {
			floor_pass(p, k, buf, (size_t)r);
			return;
		}
		if (r < 0) {
			if (errno != EAGAIN)
				floor_close(p);
			return;
		}
	}
	floor_eof(p, k);
}

/**
 * floor_target_parse() - the service leg's address
 * @t:		filled in
 * @port:	PORT, for 127.0.0.1:PORT
 * @arg:	NULL for 127.0.0.1:PORT, or "unix:PATH"
 *
 * Return: 0 or -EINVAL
 */
static int floor_target_parse(struct floor_target *t, int port, const char *arg)
{
	memset(t, 0, sizeof(*t));
	if (!arg) {
		t->addr.in.sin_family = AF_INET;
		t->addr.in.sin_port = htons((uint16_t)port);
		t->addr.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		t->len = sizeof(t->addr.in);
		return 0;
	}
	if (strncmp(arg, "unix:", 5) || !arg[5] || strlen(arg + 5) >= sizeof(t->addr.un.sun_path))
		return -EINVAL;
	t->addr.un.sun_family = AF_UNIX;
	strcpy(t->addr.un.sun_path, arg + 5);
	t->len = sizeof(t->addr.un);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct floor_target target;
	struct epoll_event events[256];
	int lfd, one = 1, port;

	if (argc < 3 || argc > 4 || (port = atoi(argv[2])) <= 0 || port > 65535 ||
	    inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
	    floor_target_parse(&target, port, argc == 4 ? argv[3] : NULL)) {
		fprintf(stderr, "usage: floor_relay ADDR PORT [unix:PATH]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	addr.sin_port = htons((uint16_t)port);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	floor_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lfd < 0 || floor_epfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 4096)) {
		perror("floor_relay: listen");
		return 1;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		if (epoll_ctl(floor_epfd, EPOLL_CTL_ADD, lfd, &ev)) {
			perror("floor_relay: epoll_ctl");
			return 1;
		}
	}
	for (;;) {
		int n = epoll_wait(floor_epfd, events, 256, -1);

		if (n < 0 && errno != EINTR) {
			perror("floor_relay: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct floor_side *s = events[i].data.ptr;
			struct floor_pair *p;

			if (!s) {
				floor_accept(lfd, &target);
				continue;
			}
			p = s->pair;
			if (p->dead)
				continue;
			if (events[i].events & EPOLLOUT)
				floor_flush(p, s->idx);
			else if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				floor_input(p, s->idx, events[i].events);
		}
		while (floor_dead) {
			struct floor_pair *d = floor_dead;

			floor_dead = d->next_dead;
			free(d);
		}
	}
}
