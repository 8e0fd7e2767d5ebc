// SPDX-License-Identifier: MIT
/* apiload.c - control API load for the integration tests: a /health prober and hostile clients
 *
 * Theory of Operation
 * ===================
 * One process per role, each bounded in connections and time:
 *
 *   probe ADDR PORT SECS          a new connection every 50 ms sends
 *                                 "GET /health" (Connection: close) and times
 *                                 the whole answer; at the end prints
 *                                 "sent N ok N non200 N p50 X p99 X p100 X
 *                                 retransmitted N p100_clean X
 *                                 p100_retransmitted X" (milliseconds; a
 *                                 probe that fails or takes over 1 s counts
 *                                 as non-200; "retransmitted" ones had to send
 *                                 a segment again, TCP_INFO says: the network
 *                                 lost one, and the split keeps apart what the
 *                                 daemon took from what the loss took)
 *   streams ADDR PORT N SECS read|noread
 *                                 N clients of GET /ports/events, all at once;
 *                                 "read" ones read and discard, "noread" ones
 *                                 never read; one the server closed
 *                                 reconnects at the next second; held SECS
 *   slow ADDR PORT N SECS RAMP_MS slowloris: N clients, one every RAMP_MS (0:
 *                                 all at once), each sends the first byte of a
 *                                 request head at once, then one byte a
 *                                 second; one the server closed reconnects at
 *                                 the next tick; held SECS
 *   flood ADDR PORT N HOLD_S      N TCP connections opened (non-blocking
 *                                 connect, 10 a millisecond), each closed HOLD_S
 *                                 after it was opened, whether or not it
 *                                 got through; prints "opened N failed N
 *                                 established N"
 *   slowsvc ADDR PORT BACKLOG RATE SECS
 *                                 a slow service: listen(BACKLOG), accept
 *                                 RATE connections a second, read and
 *                                 discard, close on EOF; runs SECS; prints
 *                                 "accepted N"
 *
 * The hostile roles print "connected N closed_by_server N" at the end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROBE_EVERY_MS	50
#define PROBE_MAX_MS	1000
#define MAX_CLIENTS	4096

static struct sockaddr_in target;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int dial(int flags)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One probe. Return: HTTP status, or -1; *us: its duration; *conn_us: how
 * much of it the handshake took (the kernel's part: the daemon is not
 * involved until its accept); *retrans: the segments its connection sent
 * again (a SYN or request the network lost) */
static int probe_once(uint64_t *us, uint64_t *conn_us, unsigned *retrans)
{
	static const char req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	uint64_t t0 = now_us(), deadline = t0 + PROBE_MAX_MS * 1000u;
	char buf[2048];
	size_t got = 0;
	int fd = dial(0), st = -1;

	*conn_us = now_us() - t0;
	if (fd < 0)
		goto out;
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
		goto out;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_us();
		ssize_t n;

		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000u) + 1) <= 0)
			goto out;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(buf) - 1)
			break;
	}
	buf[got] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &st) != 1)
		st = -1;
out:
	*us = now_us() - t0;
	*retrans = 0;
	if (fd >= 0) {
		struct tcp_info ti;
		socklen_t len = sizeof(ti);

		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
			*retrans = ti.tcpi_total_retrans;
		close(fd);
	}
	return st;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int probe(int secs)
{
	size_t cap = (size_t)secs * (1000 / PROBE_EVERY_MS) + 16, n = 0, bad = 0, lost = 0;
	uint64_t *lat = calloc(cap, sizeof(*lat)), end = now_us() + (uint64_t)secs * 1000000u;
	uint64_t next = now_us(), max_clean = 0, max_lost = 0, max_conn = 0, max_after = 0;

	if (!lat)
		return 1;
	while (now_us() < end && n < cap) {
		uint64_t us, conn_us, now;
		unsigned retrans;

		if (probe_once(&us, &conn_us, &retrans) != 200)
			bad++;
		lat[n++] = us;
		max_conn = conn_us > max_conn ? conn_us : max_conn;
		max_after = us - conn_us > max_after ? us - conn_us : max_after;
		if (retrans) {
			lost++;
			max_lost = us > max_lost ? us : max_lost;
		} else {
			max_clean = us > max_clean ? us : max_clean;
		}
		next += PROBE_EVERY_MS * 1000u;
		now = now_us();
		if (next > now)
			usleep((useconds_t)(next - now));
		else
			next = now;
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("sent %zu ok %zu non200 %zu p50 %.1f p99 %.1f p100 %.1f"
	       " retransmitted %zu p100_clean %.1f p100_retransmitted %.1f"
	       " p100_handshake %.1f p100_after_handshake %.1f\n", n, n - bad, bad,
	       n ? lat[n / 2] / 1000.0 : 0, n ? lat[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0 : 0,
	       n ? lat[n - 1] / 1000.0 : 0, lost, max_clean / 1000.0, max_lost / 1000.0,
	       max_conn / 1000.0, max_after / 1000.0);
	free(lat);
	return 0;
}

/* Hostile clients: each an fd in an epoll set, or -1 while it waits to reconnect */
struct crowd {
	int ep;
	int fd[MAX_CLIENTS];
	size_t sent[MAX_CLIENTS];
	int n;
	unsigned connected, closed;
};

static void join(struct crowd *c, int i, const char *first, size_t len)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i };
	int fd = dial(0);

	c->fd[i] = -1;
	if (fd < 0)
		return;
	if (send(fd, first, len, MSG_NOSIGNAL) != (ssize_t)len ||
	    epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev)) {
		close(fd);
		return;
	}
	c->fd[i] = fd;
	c->sent[i] = len;
	c->connected++;
}

/* Wait for input up to @ms; read it if @read, notice closes */
static void crowd_poll(struct crowd *c, int ms, int rd)
{
	struct epoll_event evs[256];
	char buf[65536];
	int k = epoll_wait(c->ep, evs, 256, ms);

	for (int j = 0; j < k; j++) {
		int i = (int)evs[j].data.u32;
		ssize_t n = 1;

		if (c->fd[i] < 0)
			continue;
		if (rd || (evs[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
			n = read(c->fd[i], buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EAGAIN) ||
		    (!rd && (evs[j].events & (EPOLLHUP | EPOLLERR)))) {
			close(c->fd[i]);
			c->fd[i] = -1;
			c->closed++;
		} else if (!rd) {
			/* not reading: stop hearing about this one's data */
			struct epoll_event ev = { .events = EPOLLRDHUP, .data.u32 = (uint32_t)i };

			epoll_ctl(c->ep, EPOLL_CTL_MOD, c->fd[i], &ev);
		}
	}
}

static int streams(int n, int secs, int rd)
{
	static const char req[] = "GET /ports/events HTTP/1.1\r\nHost: x\r\n\r\n";
	static struct crowd c;
	uint64_t end = now_us() + (uint64_t)secs * 1000000u;

	uint64_t tick = now_us() + 1000000u;

	c.ep = epoll_create1(EPOLL_CLOEXEC);
	c.n = n;
	for (int i = 0; i < n; i++)
		join(&c, i, req, sizeof(req) - 1);
	while (now_us() < end) {
		crowd_poll(&c, 50, rd);
		if (now_us() < tick)
			continue;
		tick = now_us() + 1000000u;
		for (int i = 0; i < n; i++)
			if (c.fd[i] < 0)
				join(&c, i, req, sizeof(req) - 1);
	}
	printf("connected %u closed_by_server %u\n", c.connected, c.closed);
	return 0;
}

static int slow(int n, int secs, int ramp_ms)
{
	static const char head[] = "GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	static struct crowd c;
	uint64_t start = now_us(), end = start + (uint64_t)secs * 1000000u, tick = start;
	int started = 0;

	c.ep = epoll_create1(EPOLL_CLOEXEC);
	c.n = n;
	for (int i = 0; i < n; i++)
		c.fd[i] = -1;
	while (now_us() < end) {
		uint64_t now = now_us();

		while (started < n && (ramp_ms == 0 ||
				       now >= start + (uint64_t)started * (uint64_t)ramp_ms * 1000u)) {
			join(&c, started, head, 1);
			started++;
		}
		if (now >= tick) {
			tick = now + 1000000u;
			for (int i = 0; i < started; i++) {
				if (c.fd[i] < 0) {
					join(&c, i, head, 1);
				} else if (c.sent[i] < sizeof(head) - 1) {
					if (send(c.fd[i], head + c.sent[i], 1, MSG_NOSIGNAL) == 1)
						c.sent[i]++;
				}
			}
		}
		crowd_poll(&c, 20, 1);
	}
	printf("connected %u closed_by_server %u\n", c.connected, c.closed);
	return 0;
}

/* As many descriptors as the hard limit allows */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

#define FLOOD_MAX	20000
#define FLOOD_PER_MS	10

static int flood(int n, int hold_s)
{
	static int fds[FLOOD_MAX];
	static uint64_t born[FLOOD_MAX];
	unsigned opened = 0, failed = 0, established = 0;
	int open_now = 0;

	raise_nofile();
	for (int i = 0; i < n; i++) {
		/* FLOOD_PER_MS connects a millisecond: all 20,000 of the flood test
		 * are open within a second, but its SYNs do not reach the kernel
		 * as one burst. Unpaced, the guest's input processing of that burst
		 * on these 2 cores held back other packets for 110-170 ms (a /health
		 * probe's handshake ACK and request, with the daemon's API thread
		 * asleep throughout: perf sched), which measured the machine, not
		 * the daemon. */
		if (i && i % FLOOD_PER_MS == 0)
			usleep(1000);
		fds[i] = dial(SOCK_NONBLOCK);
		born[i] = now_us();
		if (fds[i] < 0) {
			failed++;
			continue;
		}
		opened++;
		open_now++;
	}
	while (open_now) {
		uint64_t now = now_us();

		for (int i = 0; i < n; i++) {
			int err = 0;
			socklen_t len = sizeof(err);
			struct sockaddr_in peer;
			socklen_t plen = sizeof(peer);

			if (fds[i] < 0 || now < born[i] + (uint64_t)hold_s * 1000000u)
				continue;
			if (getpeername(fds[i], (struct sockaddr *)&peer, &plen) == 0 &&
			    getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 && !err)
				established++;
			close(fds[i]);
			fds[i] = -1;
			open_now--;
		}
		usleep(100000);
	}
	printf("opened %u failed %u established %u\n", opened, failed, established);
	return 0;
}

static int slowsvc(int backlog, int rate, int secs)
{
	struct sockaddr_in a = target;
	uint64_t end = now_us() + (uint64_t)secs * 1000000u, next = now_us();
	/* non-blocking: blocked in accept() on an empty queue it would read
	 * no EOF of the connections it holds, and the relays waiting for it
	 * (the port's whole cap) would let no new connection come */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), ep, one = 1;
	unsigned accepted = 0;

	raise_nofile();
	ep = epoll_create1(EPOLL_CLOEXEC);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, backlog)) {
		perror("slowsvc");
		return 1;
	}
	printf("listening\n");
	while (now_us() < end) {
		struct epoll_event evs[64];
		int k;

		if (now_us() >= next) {
			int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

			next += 1000000u / (unsigned)rate;
			if (fd >= 0) {
				struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

				accepted++;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
					close(fd);
			} else if (now_us() > next) {
				next = now_us();	/* nothing queued: no catching up */
			}
		}
		k = epoll_wait(ep, evs, 64, 10);
		for (int j = 0; j < k; j++) {
			char buf[4096];
			ssize_t r = read(evs[j].data.fd, buf, sizeof(buf));

			if (r == 0 || (r < 0 && errno != EAGAIN)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, evs[j].data.fd, NULL);
				close(evs[j].data.fd);
			}
		}
	}
	printf("accepted %u\n", accepted);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 5)
		goto usage;
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1)
		goto usage;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "probe"))
		return probe(atoi(argv[4]));
	if (argc >= 7 && !strcmp(argv[1], "streams") && atoi(argv[4]) <= MAX_CLIENTS)
		return streams(atoi(argv[4]), atoi(argv[5]), !strcmp(argv[6], "read"));
	if (argc >= 7 && !strcmp(argv[1], "slow") && atoi(argv[4]) <= MAX_CLIENTS)
		return slow(atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
	if (argc >= 6 && !strcmp(argv[1], "flood") && atoi(argv[4]) > 0 &&
	    atoi(argv[4]) <= FLOOD_MAX)
		return flood(atoi(argv[4]), atoi(argv[5]));
	if (argc >= 7 && !strcmp(argv[1], "slowsvc") && atoi(argv[5]) > 0)
		return slowsvc(atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
usage:
	fprintf(stderr, "usage: apiload probe ADDR PORT SECS | streams ADDR PORT N SECS read|noread |"
			" slow ADDR PORT N SECS RAMP_MS | flood ADDR PORT N HOLD_S |"
			" slowsvc ADDR PORT BACKLOG RATE SECS\n");
	return 2;
}
