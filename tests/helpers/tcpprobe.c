// SPDX-License-Identifier: MIT
/* tcpprobe.c - precise TCP peers for the integration tests (half-close, resets, load, exposure latency)
 *
 * Theory of Operation
 * ===================
 * socat cannot express "shut down my write side, then still expect a reply",
 * nor tell an EOF from a reset, nor hold a thousand connections. This helper
 * does, one mode per test need:
 *
 *   client ADDR PORT SCRIPT         connect, run SCRIPT
 *   server ADDR PORT SCRIPT         listen, accept one connection, close the
 *                                   listener at once, run SCRIPT
 *   echo ADDR PORT                  epoll echo server for many connections,
 *                                   one process (see mode_echo())
 *   many ADDR PORT N BYTES [MS]     N concurrent connections, each sends BYTES
 *                                   of its own pattern and checks the echo
 *   hold ADDR PORT N SECS           open N connections, keep them SECS
 *   latency GUESTNS HOSTNS EXT PORT TRIALS
 *                                   in netns GUESTNS listen on 127.0.0.1:PORT,
 *                                   from HOSTNS poll EXT:PORT until a connect
 *                                   succeeds (detection latency), close the
 *                                   listener, poll until refused (removal
 *                                   latency); TRIALS times; print percentiles
 *   udplatency GUESTNS HOSTNS EXT PORT TRIALS
 *                                   the same for UDP: bind 127.0.0.1:PORT, send
 *                                   a datagram to EXT:PORT every 1 ms until the
 *                                   socket receives one, close it, send until
 *                                   the sender gets ECONNREFUSED (an ICMP port
 *                                   unreachable: EXT:PORT is unbound again; the
 *                                   guest needs net.ipv4.icmp_ratelimit=0)
 *
 * SCRIPT is a comma list of steps, run in order, each bounded by a deadline
 * (PH_PROBE_TIMEOUT_MS, default 5000):
 *   s:TEXT  send TEXT          r:TEXT  read exactly TEXT
 *   e       expect EOF         R       expect a reset (ECONNRESET) on read;
 *                              a client script of just "R" (or "c") also
 *                              accepts a reset that arrives during connect
 *   w       shutdown(SHUT_WR)  x       abort: SO_LINGER 0, close (sends RST)
 *   c       close              z:MS    sleep MS
 *   t       print ms since the connection was established
 *   g:PATH  wait until file PATH exists (a gate the test script opens)
 *   i       note the segments received so far (TCP_INFO tcpi_segs_in)
 *   I:N     expect exactly N segments received since the last i
 * Exit status 0 when every step went as expected, 1 otherwise (with a line on
 * stderr saying which step failed and why), 2 for usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int step_timeout_ms = 5000;

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/**
 * parse_addr() - numeric IPv4 or IPv6 address and port into a sockaddr
 * @addr:	text address ("127.0.0.1", "::1")
 * @port:	text port
 * @ss:		result
 * @len:	its length
 *
 * Return: 0 or -EINVAL
 */
static int parse_addr(const char *addr, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char *end;
	long p = strtol(port, &end, 10);

	if (*end || p < 0 || p > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/**
 * connect_timeout() - blocking-style connect bounded by a deadline
 * @ss, @len:	address
 * @ms:		deadline
 *
 * Return: connected blocking socket, or -errno
 */
static int connect_timeout(const struct sockaddr_storage *ss, socklen_t len, int ms)
{
	struct pollfd pfd;
	socklen_t elen = sizeof(int);
	int fd, err = 0, ret;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)ss, len) && errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ret = poll(&pfd, 1, ms);
	if (ret == 0) {
		ret = -ETIMEDOUT;
		goto fail;
	}
	if (ret < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen)) {
		ret = -errno;
		goto fail;
	}
	if (err) {
		ret = -err;
		goto fail;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return ret;
}

static int listen_on(const struct sockaddr_storage *ss, socklen_t len, int backlog)
{
	int fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) || listen(fd, backlog)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/* Wait until @fd is readable or the step deadline passes. Return: 0 or -ETIMEDOUT */
static int wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int ret;

	do
		ret = poll(&pfd, 1, step_timeout_ms);
	while (ret < 0 && errno == EINTR);
	return ret > 0 ? 0 : -ETIMEDOUT;
}

/**
 * run_script() - run a step script on a connected socket
 * @fd:		the connection (closed here)
 * @script:	comma list of steps (see the header)
 * @who:	"client" or "server", for messages
 *
 * Return: 0 when every step behaved, 1 otherwise
 */
#ifdef __GLIBC__
/* glibc's struct tcp_info stops at tcpi_total_retrans; the kernel's
 * (linux/tcp.h, which clashes with netinet/tcp.h) goes on like this. */
struct tcp_info_segs {
	struct tcp_info base;
	uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
	uint32_t segs_out, segs_in;
};
#else
/* musl (the static build) has the kernel's longer struct tcp_info already */
struct tcp_info_segs {
	struct tcp_info base;
};
#define segs_in base.tcpi_segs_in
#endif

static int read_segs_in(int fd, uint32_t *n)
{
	struct tcp_info_segs ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return -1;
	if (len < offsetof(struct tcp_info_segs, segs_in) + sizeof(uint32_t)) {
		errno = ENOPROTOOPT;	/* kernel older than 4.2 */
		return -1;
	}
	*n = ti.segs_in;
	return 0;
}

static int run_script(int fd, const char *script, const char *who)
{
	char *copy = strdup(script), *save = NULL, *step;
	uint64_t t0 = now_us();
	uint32_t segs0 = 0, segs;
	int ret = 1;

	if (!copy)
		goto out;
	for (step = strtok_r(copy, ",", &save); step; step = strtok_r(NULL, ",", &save)) {
		char op = step[0];
		const char *arg = step[1] == ':' ? step + 2 : "";

		switch (op) {
		case 's': {
			size_t n = strlen(arg);

			if (send(fd, arg, n, MSG_NOSIGNAL) != (ssize_t)n) {
				fprintf(stderr, "%s: step %s: send: %s\n", who, step, strerror(errno));
				goto out;
			}
			break;
		}
		case 'r': {
			size_t want = strlen(arg), got = 0;
			char buf[4096];

			if (want > sizeof(buf))
				goto out;
			while (got < want) {
				ssize_t n;

				if (wait_readable(fd)) {
					fprintf(stderr, "%s: step %s: timed out after %zu bytes\n", who, step, got);
					goto out;
				}
				n = recv(fd, buf + got, want - got, 0);
				if (n <= 0) {
					fprintf(stderr, "%s: step %s: %s after %zu bytes\n", who, step,
						n ? strerror(errno) : "EOF", got);
					goto out;
				}
				got += (size_t)n;
			}
			if (memcmp(buf, arg, want)) {
				fprintf(stderr, "%s: step %s: got '%.*s'\n", who, step, (int)want, buf);
				goto out;
			}
			break;
		}
		case 'e':
		case 'R': {
			char buf[256];
			ssize_t n;

			if (wait_readable(fd)) {
				fprintf(stderr, "%s: step %s: timed out waiting for %s\n", who, step,
					op == 'e' ? "EOF" : "a reset");
				goto out;
			}
			n = recv(fd, buf, sizeof(buf), 0);
			if (op == 'e' && n != 0) {
				fprintf(stderr, "%s: step e: expected EOF, got %s\n", who,
					n > 0 ? "data" : strerror(errno));
				goto out;
			}
			if (op == 'R' && !(n < 0 && errno == ECONNRESET)) {
				fprintf(stderr, "%s: step R: expected ECONNRESET, got %s\n", who,
					n > 0 ? "data" : n == 0 ? "EOF" : strerror(errno));
				goto out;
			}
			break;
		}
		case 'w':
			if (shutdown(fd, SHUT_WR)) {
				fprintf(stderr, "%s: shutdown: %s\n", who, strerror(errno));
				goto out;
			}
			break;
		case 'x': {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
			/* fall through */
		case 'c':
			close(fd);
			fd = -1;
			break;
		case 'z':
			usleep((useconds_t)atoi(arg) * 1000u);
			break;
		case 't':
			printf("%llu\n", (unsigned long long)((now_us() - t0) / 1000));
			fflush(stdout);
			break;
		case 'g': {
			uint64_t end = now_us() + (uint64_t)step_timeout_ms * 1000u;

			while (access(arg, F_OK)) {
				if (now_us() > end) {
					fprintf(stderr, "%s: step g: %s did not appear\n", who, arg);
					goto out;
				}
				usleep(2000);
			}
			break;
		}
		case 'i':
			if (read_segs_in(fd, &segs0)) {
				fprintf(stderr, "%s: TCP_INFO: %s\n", who, strerror(errno));
				goto out;
			}
			break;
		case 'I':
			if (read_segs_in(fd, &segs)) {
				fprintf(stderr, "%s: TCP_INFO: %s\n", who, strerror(errno));
				goto out;
			}
			if (segs - segs0 != (uint32_t)atoi(arg)) {
				fprintf(stderr, "%s: step %s: %u segments received\n", who, step,
					segs - segs0);
				goto out;
			}
			break;
		default:
			fprintf(stderr, "%s: unknown step '%s'\n", who, step);
			goto out;
		}
		if (fd < 0 && save && *save) {
			fprintf(stderr, "%s: steps after close\n", who);
			goto out;
		}
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
}

static int mode_client(const struct sockaddr_storage *ss, socklen_t len, const char *script)
{
	int fd = connect_timeout(ss, len, step_timeout_ms);

	/* A reset that beats our poll() shows up as the connect's own error:
	 * still a reset (the handshake completed), unlike ECONNREFUSED. */
	if (fd == -ECONNRESET && (!strcmp(script, "R") || !strcmp(script, "c")))
		return 0;
	if (fd < 0) {
		fprintf(stderr, "client: connect: %s\n", strerror(-fd));
		return 1;
	}
	return run_script(fd, script, "client");
}

static int mode_server(const struct sockaddr_storage *ss, socklen_t len, const char *script)
{
	int lfd, fd;

	lfd = listen_on(ss, len, 16);
	if (lfd < 0) {
		fprintf(stderr, "server: listen: %s\n", strerror(-lfd));
		return 1;
	}
	/* The accept waits as long as the test needs (the runner bounds it). */
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	if (fd < 0) {
		fprintf(stderr, "server: accept: %s\n", strerror(errno));
		return 1;
	}
	return run_script(fd, script, "server");
}

/*
 * Echo server: one process, level-triggered epoll, non-blocking throughout.
 * It stands in for the service behind a port wherever a test needs "bytes
 * come back" from many connections at once. It does not fork per
 * connection as socat's fork option does: on this kind of machine a fork
 * can sit for seconds in the kernel (a fork from a parent with 200 live
 * children waited 2.5 s for the rmap walk of the kernel's DAMON monitor,
 * kdamond), which a test then reads as the relay's delay. A connection
 * whose echo the client does not read keeps what could not be sent and
 * stops reading until it drains (EPOLLOUT), so it stalls only itself. At
 * the client's EOF it sends what is still pending, then closes, as socat's
 * PIPE does.
 */
#define ECHO_BUF 65536

struct echo_conn {
	int fd;
	bool eof;		/* the client sent its FIN */
	size_t off, len;	/* buf[off, len) is waiting to be sent */
	char buf[ECHO_BUF];
};

static void echo_close(int ep, struct echo_conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* Send what is pending. Return: 0 (all sent or the socket is full), or -errno */
static int echo_flush(struct echo_conn *c)
{
	while (c->off < c->len) {
		ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0)
			return errno == EAGAIN ? 0 : (errno == EINTR ? 0 : -errno);
		c->off += (size_t)w;
	}
	c->off = c->len = 0;
	return 0;
}

/* One readiness report for @c: read while nothing is pending, send, and
 * watch for input or for room to send accordingly. */
static void echo_turn(int ep, struct echo_conn *c)
{
	struct epoll_event ev;

	if (echo_flush(c) < 0) {
		echo_close(ep, c);
		return;
	}
	while (!c->eof && c->len == 0) {
		ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);

		if (r == 0) {
			c->eof = true;
		} else if (r < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			echo_close(ep, c);	/* a reset: nothing to send back to */
			return;
		} else {
			c->len = (size_t)r;
			if (echo_flush(c) < 0) {
				echo_close(ep, c);
				return;
			}
		}
	}
	if (c->eof && c->len == 0) {
		echo_close(ep, c);
		return;
	}
	ev = (struct epoll_event){ .events = c->len ? EPOLLOUT : EPOLLIN, .data.ptr = c };
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int mode_echo(const struct sockaddr_storage *ss, socklen_t len)
{
	struct epoll_event ev, evs[64];
	int lfd, ep;

	raise_nofile();
	lfd = listen_on(ss, len, 4096);
	if (lfd < 0) {
		fprintf(stderr, "echo: listen: %s\n", strerror(-lfd));
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return 1;
	ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = NULL };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);

		for (int i = 0; i < n; i++) {
			struct echo_conn *c = evs[i].data.ptr;
			int fd;

			if (c) {
				echo_turn(ep, c);
				continue;
			}
			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
				    errno == ENOBUFS)
					usleep(10000);	/* the client waits in the backlog */
				continue;
			}
			c = calloc(1, sizeof(*c));
			if (!c) {
				close(fd);
				continue;
			}
			c->fd = fd;
			ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = c };
			if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
				close(fd);
				free(c);
			}
		}
	}
}

struct conn {
	int fd;
	size_t sent, got;
	bool done;
};

static unsigned char pattern_byte(size_t conn, size_t off)
{
	return (unsigned char)((conn * 131u + off * 7u + (off >> 8)) & 0xff);
}

/**
 * mode_many() - N concurrent echo round trips, all connections open at once
 * @ss, @len:	address
 * @n:		connections
 * @bytes:	bytes each sends (and must get back, unchanged)
 * @ms:		overall deadline
 *
 * Every connection is opened before any is closed, so the peer really holds
 * N at once. Prints "connected N verified N ms T".
 * Return: 0 when all N verified in time, 1 otherwise
 */
static int mode_many(const struct sockaddr_storage *ss, socklen_t len, size_t n, size_t bytes, int ms)
{
	struct conn *c = calloc(n, sizeof(*c));
	struct epoll_event ev, evs[256];
	size_t connected = 0, verified = 0;
	uint64_t t0 = now_us(), deadline = t0 + (uint64_t)ms * 1000u;
	int ep, ret = 1;

	raise_nofile();
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!c || ep < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		c[i].fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c[i].fd < 0) {
			fprintf(stderr, "many: socket %zu: %s\n", i, strerror(errno));
			goto out;
		}
		if (connect(c[i].fd, (const struct sockaddr *)ss, len) && errno != EINPROGRESS) {
			fprintf(stderr, "many: connect %zu: %s\n", i, strerror(errno));
			goto out;
		}
		ev = (struct epoll_event){ .events = EPOLLIN | EPOLLOUT, .data.u64 = i };
		epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
	}
	while (verified < n && now_us() < deadline) {
		int k = epoll_wait(ep, evs, 256, 100);

		for (int j = 0; j < k; j++) {
			size_t i = evs[j].data.u64;
			unsigned char buf[16384];
			ssize_t r;

			if (c[i].done)
				continue;
			if (evs[j].events & (EPOLLERR | EPOLLHUP) && !(evs[j].events & EPOLLIN)) {
				int err = 0;
				socklen_t el = sizeof(err);

				getsockopt(c[i].fd, SOL_SOCKET, SO_ERROR, &err, &el);
				fprintf(stderr, "many: connection %zu failed: %s\n", i, strerror(err));
				goto out;
			}
			if ((evs[j].events & EPOLLOUT) && c[i].sent < bytes) {
				size_t m = bytes - c[i].sent;

				if (!c[i].sent)
					connected++;
				if (m > sizeof(buf))
					m = sizeof(buf);
				for (size_t b = 0; b < m; b++)
					buf[b] = pattern_byte(i, c[i].sent + b);
				r = send(c[i].fd, buf, m, MSG_NOSIGNAL);
				if (r > 0)
					c[i].sent += (size_t)r;
				if (c[i].sent == bytes) {
					ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = i };
					epoll_ctl(ep, EPOLL_CTL_MOD, c[i].fd, &ev);
				}
			}
			if (evs[j].events & EPOLLIN) {
				r = recv(c[i].fd, buf, sizeof(buf), 0);
				if (r <= 0) {
					if (r < 0 && errno == EAGAIN)
						continue;
					fprintf(stderr, "many: connection %zu: %s after %zu bytes\n", i,
						r ? strerror(errno) : "EOF", c[i].got);
					goto out;
				}
				for (ssize_t b = 0; b < r; b++) {
					if (buf[b] != pattern_byte(i, c[i].got + (size_t)b)) {
						fprintf(stderr, "many: connection %zu: wrong byte at %zu\n", i,
							c[i].got + (size_t)b);
						goto out;
					}
				}
				c[i].got += (size_t)r;
				if (c[i].got == bytes) {
					c[i].done = true;
					verified++;
				}
			}
		}
	}
	ret = verified == n ? 0 : 1;
out:
	printf("connected %zu verified %zu ms %llu\n", connected, verified,
	       (unsigned long long)((now_us() - t0) / 1000));
	if (c)
		for (size_t i = 0; i < n; i++)
			if (c[i].fd > 0)
				close(c[i].fd);
	free(c);
	if (ep >= 0)
		close(ep);
	return ret;
}

/* Open N connections (each one connect()ed, nothing sent), keep them SECS. */
static int mode_hold(const struct sockaddr_storage *ss, socklen_t len, size_t n, int secs)
{
	size_t ok = 0;
	int *fds = calloc(n, sizeof(int));

	if (!fds)
		return 1;
	raise_nofile();
	for (size_t i = 0; i < n; i++) {
		fds[i] = connect_timeout(ss, len, 1000);
		if (fds[i] >= 0)
			ok++;
	}
	printf("held %zu\n", ok);
	fflush(stdout);
	sleep((unsigned)secs);
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return 0;
}

static int enter_netns(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (setns(fd, CLONE_NEWNET))
		ret = -errno;
	close(fd);
	return ret;
}

/* Poll-connect every 1 ms until the outcome is @want_open; Return: us or -ETIMEDOUT */
static int64_t poll_until(const struct sockaddr_storage *ss, socklen_t len, bool want_open, int ms)
{
	uint64_t t0 = now_us(), end = t0 + (uint64_t)ms * 1000u;

	while (now_us() < end) {
		int fd = connect_timeout(ss, len, 200);
		/* a reset after the handshake (relay whose backend is gone)
		 * still means a listener; only a refusal means none */
		bool open = fd >= 0 || fd == -ECONNRESET;

		if (fd >= 0)
			close(fd);
		if (want_open ? open : fd == -ECONNREFUSED)
			return (int64_t)(now_us() - t0);
		usleep(1000);
	}
	return -ETIMEDOUT;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* A UDP socket bound to @ss (the service), or -errno */
static int udp_bound(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len)) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/**
 * udp_poll_until() - send a datagram to @ss every 1 ms until the outcome is @want_open
 * @sfd:	the service's socket (open: it receives one); -1 for removal
 * @ss, @len:	EXT:PORT
 * @ms:		give up after this long
 *
 * Removal is the sender's ECONNREFUSED: an ICMP port unreachable, which only
 * an unbound EXT:PORT makes (while exposed, the relay forwards the datagram).
 * Return: microseconds, or -ETIMEDOUT
 */
static int64_t udp_poll_until(int sfd, const struct sockaddr_storage *ss, socklen_t len, int ms)
{
	uint64_t t0 = now_us(), end = t0 + (uint64_t)ms * 1000u;
	int cfd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int64_t ret = -ETIMEDOUT;
	char b[16];

	if (cfd < 0 || connect(cfd, (const struct sockaddr *)ss, len)) {
		ret = -errno;
		goto out;
	}
	while (now_us() < end) {
		struct pollfd p = { .fd = sfd >= 0 ? sfd : cfd, .events = POLLIN };

		if (send(cfd, "p", 1, 0) < 0 && errno == ECONNREFUSED && sfd < 0) {
			ret = (int64_t)(now_us() - t0);
			break;
		}
		if (poll(&p, 1, 1) > 0) {
			ssize_t n = recv(p.fd, b, sizeof(b), MSG_DONTWAIT);

			if (sfd >= 0 ? n > 0 : (n < 0 && errno == ECONNREFUSED)) {
				ret = (int64_t)(now_us() - t0);
				break;
			}
		}
	}
out:
	if (cfd >= 0)
		close(cfd);
	return ret;
}

/**
 * mode_latency() - detection and removal latency of exposures, TRIALS times
 *
 * The listener is created in the guest netns and the probes in the host
 * netns by one process: a socket keeps the namespace it was created in, so
 * a setns() between the two is all it takes, and both clocks are the same.
 * Prints per-trial lines and "open_p50_ms ... close_p99_ms ..." at the end.
 * Return: 0 when every trial saw both transitions, 1 otherwise
 */
static int mode_latency(const char *gns, const char *hns, const char *ext, const char *port, int trials,
			bool udp)
{
	struct sockaddr_storage lo, ex;
	socklen_t lolen, exlen;
	int64_t *open_us = calloc((size_t)trials, sizeof(int64_t));
	int64_t *close_us = calloc((size_t)trials, sizeof(int64_t));
	int ret = 1, done = 0;

	if (!open_us || !close_us || parse_addr("127.0.0.1", port, &lo, &lolen) ||
	    parse_addr(ext, port, &ex, &exlen))
		goto out;
	for (int t = 0; t < trials; t++) {
		int lfd;

		if (enter_netns(gns)) {
			fprintf(stderr, "latency: setns %s: %s\n", gns, strerror(errno));
			goto out;
		}
		lfd = udp ? udp_bound(&lo, lolen) : listen_on(&lo, lolen, 64);
		if (enter_netns(hns) || lfd < 0) {
			fprintf(stderr, "latency: listen/setns failed\n");
			goto out;
		}
		open_us[t] = udp ? udp_poll_until(lfd, &ex, exlen, 3000) : poll_until(&ex, exlen, true, 3000);
		if (open_us[t] < 0) {
			close(lfd);
			fprintf(stderr, "latency: trial %d: not exposed within 3 s\n", t);
			goto out;
		}
		/* Detection happens just after a scan: close at a random
		 * phase, or every removal would wait a full interval. */
		usleep((useconds_t)(rand() % 50000));
		close(lfd);
		close_us[t] = udp ? udp_poll_until(-1, &ex, exlen, 3000) : poll_until(&ex, exlen, false, 3000);
		if (close_us[t] < 0) {
			fprintf(stderr, "latency: trial %d: not removed within 3 s\n", t);
			goto out;
		}
		done++;
		/* Removal was just seen, right after a scan: sleeping a uniform
		 * 0..50 ms (one default scan interval) gives the next listen()
		 * a uniform phase relative to the scan clock. */
		usleep((useconds_t)(rand() % 50000));
	}
	qsort(open_us, (size_t)trials, sizeof(int64_t), cmp_i64);
	qsort(close_us, (size_t)trials, sizeof(int64_t), cmp_i64);
#define PCT(a, p) ((double)(a)[((size_t)trials * (p) + 99) / 100 - 1] / 1000.0)
	printf("trials %d open_p50_ms %.1f open_p99_ms %.1f open_max_ms %.1f "
	       "close_p50_ms %.1f close_p99_ms %.1f close_max_ms %.1f\n",
	       trials, PCT(open_us, 50), PCT(open_us, 99), PCT(open_us, 100), PCT(close_us, 50),
	       PCT(close_us, 99), PCT(close_us, 100));
#undef PCT
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "latency: %d of %d trials done\n", done, trials);
	free(open_us);
	free(close_us);
	return ret;
}

static int usage(void)
{
	fprintf(stderr, "usage: tcpprobe client|server ADDR PORT SCRIPT\n"
			"       tcpprobe echo ADDR PORT\n"
			"       tcpprobe many ADDR PORT N BYTES [MS]\n"
			"       tcpprobe hold ADDR PORT N SECS\n"
			"       tcpprobe latency|udplatency GUESTNS HOSTNS EXTADDR PORT TRIALS\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *t = getenv("PH_PROBE_TIMEOUT_MS");

	if (t && atoi(t) > 0)
		step_timeout_ms = atoi(t);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 7 && !strcmp(argv[1], "latency"))
		return mode_latency(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]), false);
	if (argc >= 7 && !strcmp(argv[1], "udplatency"))
		return mode_latency(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]), true);
	if (argc < 4 || parse_addr(argv[2], argv[3], &ss, &len))
		return usage();
	if (!strcmp(argv[1], "client") && argc == 5)
		return mode_client(&ss, len, argv[4]);
	if (!strcmp(argv[1], "server") && argc == 5)
		return mode_server(&ss, len, argv[4]);
	if (!strcmp(argv[1], "echo") && argc == 4)
		return mode_echo(&ss, len);
	if (!strcmp(argv[1], "many") && (argc == 6 || argc == 7))
		return mode_many(&ss, len, strtoul(argv[4], NULL, 10), strtoul(argv[5], NULL, 10),
				 argc == 7 ? atoi(argv[6]) : 30000);
	if (!strcmp(argv[1], "hold") && argc == 6)
		return mode_hold(&ss, len, strtoul(argv[4], NULL, 10), atoi(argv[5]));
	return usage();
}
