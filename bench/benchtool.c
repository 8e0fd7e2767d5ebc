// SPDX-License-Identifier: MIT
/* benchtool.c - small timing clients and servers for bench/run (echo, listen, hold, probe, detect, snapshot)
 *
 * Theory of Operation
 *
 * bench/bench.py drives every measurement that needs sub-millisecond timing
 * or thousands of sockets through this one program; everything else (iperf3,
 * wrk, nginx) is off the shelf. Subcommands:
 *
 *   echo ADDR PORT MAXSEC            epoll echo server (backend of relayed conns)
 *   listen ADDR BASE COUNT MAXSEC    COUNT listeners on BASE.., accepting and closing;
 *                                    "ready T0 T1" (wall µs of the first and last
 *                                    listen())
 *   hold ADDR PORT N MAXSEC          N connections, each proven relayed by an echoed
 *                                    byte; "ready N" on stdout, held until stdin EOF
 *   probe ADDR BASE COUNT TMO_MS     connect once to each port; prints the successes
 *   detect GUEST_NS ADDR BASE TRIALS JITTER_MS TIMEOUT_MS [removal|udp|udp,removal]
 *                                    listen() on 127.0.0.1:port in GUEST_NS, then time
 *                                    until a connect to ADDR:port (from the namespace
 *                                    we were started in) succeeds; one line per trial;
 *                                    "removal": also close() and time until refused
 *                                    (lines "OPEN_US REMOVAL_US"); "udp": bind a UDP
 *                                    socket instead, time until a datagram sent to
 *                                    ADDR:port every 250 µs reaches it, and (removal)
 *                                    after close() until the sender gets ECONNREFUSED
 *                                    (GUEST_NS needs net.ipv4.icmp_ratelimit=0)
 *   snapshot API_ADDR API_PORT ADDR PORT TRIALS
 *                                    POST /snapshot/prepare, connect while quiesced,
 *                                    POST /snapshot/resume, time first relayed bytes
 *
 * Every wait is bounded (MAXSEC, TMO_MS, TIMEOUT_MS) so a broken contender
 * fails a measurement instead of hanging the suite. Sockets are opened in a
 * namespace by switching this thread there with setns() around socket():
 * a socket stays in the namespace it was created in.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* detect and snapshot give up after this many failed trials in a row */
#define MAX_CONSECUTIVE_FAILS 3

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int parse_u(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int make_addr(const char *ip, unsigned port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

/* Many sockets (hold 1,000 connections, listen on 1,000 ports): lift the fd limit. */
static void raise_nofile(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
		rl.rlim_cur = want;
		if (rl.rlim_max < want)
			rl.rlim_max = want;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/**
 * listen_on() - a listening TCP socket
 * @ip, @port:	address to bind
 * @backlog:	listen() backlog
 *
 * Return: fd (non-blocking) or -errno
 */
static int listen_on(const char *ip, unsigned port, int backlog)
{
	struct sockaddr_in sa;
	int one = 1, fd, ret;

	if (make_addr(ip, port, &sa) < 0)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/**
 * connect_wait() - connect with a deadline
 * @sa:		destination
 * @tmo_ms:	deadline for the handshake
 *
 * Return: connected blocking fd, or -errno (-ETIMEDOUT, -ECONNREFUSED, ...)
 */
static int connect_wait(const struct sockaddr_in *sa, int tmo_ms)
{
	struct pollfd pfd;
	socklen_t len = sizeof(int);
	int fd, err = 0, ret;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 && errno != EINPROGRESS) {
		ret = -errno;
		goto fail;
	}
	pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
	ret = poll(&pfd, 1, tmo_ms);
	if (ret <= 0) {
		ret = ret < 0 ? -errno : -ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
		ret = err ? -err : -errno;
		goto fail;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	close(fd);
	return ret;
}

/* Wait up to @tmo_ms for one byte on blocking @fd. Return: 0 or -errno (-ETIMEDOUT, -ECONNRESET) */
static int read_byte(int fd, int tmo_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char c;
	ssize_t n;
	int ret = poll(&pfd, 1, tmo_ms);

	if (ret <= 0)
		return ret < 0 ? -errno : -ETIMEDOUT;
	n = recv(fd, &c, 1, MSG_DONTWAIT);
	if (n == 1)
		return 0;
	return n == 0 ? -ECONNRESET : -errno;
}

/* --- servers ----------------------------------------------------------- */

/**
 * serve() - epoll loop over listeners: echo data back, or accept-and-close
 * @lfds, @n:	listening sockets
 * @echo:	echo received bytes (otherwise close accepted sockets at once)
 * @maxsec:	exit after this many seconds whatever happens
 * @ready:	appended to the "ready" line printed once listening
 *
 * Return: 0 or -errno
 */
static int serve(const int *lfds, size_t n, bool echo, unsigned maxsec, const char *ready)
{
	struct epoll_event ev[256];
	uint64_t end = now_ns() + (uint64_t)maxsec * 1000000000u;
	char buf[65536];
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0)
		return -errno;
	for (size_t i = 0; i < n; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)lfds[i] | (1ull << 32) };

		if (epoll_ctl(ep, EPOLL_CTL_ADD, lfds[i], &e) < 0)
			return -errno;
	}
	printf("ready%s\n", ready);
	fflush(stdout);
	while (now_ns() < end) {
		int k = epoll_wait(ep, ev, 256, 200);

		for (int i = 0; i < k; i++) {
			int fd = (int)(ev[i].data.u64 & 0xffffffffu);

			if (ev[i].data.u64 >> 32) {	/* listener */
				int c;

				while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct epoll_event e = { .events = EPOLLIN, .data.u64 = (uint64_t)c };

					if (!echo || epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) < 0)
						close(c);
				}
				continue;
			}
			for (;;) {
				ssize_t r = recv(fd, buf, sizeof(buf), 0);

				if (r > 0) {
					/* Bench payloads are tiny; a short send only drops echo bytes. */
					if (send(fd, buf, (size_t)r, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
						break;
					continue;
				}
				if (r < 0 && errno == EAGAIN)
					goto next;
				break;
			}
			close(fd);	/* EOF or error: closing also drops it from epoll */
next:;
		}
	}
	close(ep);
	return 0;
}

static int cmd_echo(char **argv)
{
	unsigned long port, maxsec;
	int fd;

	if (parse_u(argv[1], 65535, &port) < 0 || parse_u(argv[2], 86400, &maxsec) < 0)
		return -EINVAL;
	raise_nofile(65536);
	fd = listen_on(argv[0], (unsigned)port, 4096);
	if (fd < 0)
		return fd;
	return serve(&fd, 1, true, (unsigned)maxsec, "");
}

/* CLOCK_REALTIME in µs: compared with the daemon's since_ms in /ports */
static uint64_t wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmd_listen(char **argv)
{
	unsigned long base, count, maxsec;
	int *fds, ret = 0;
	uint64_t t_first;
	char times[64];

	if (parse_u(argv[1], 65535, &base) < 0 || parse_u(argv[2], 65536 - base, &count) < 0 ||
	    parse_u(argv[3], 86400, &maxsec) < 0 || count == 0)
		return -EINVAL;
	raise_nofile(count + 64);
	fds = calloc(count, sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	t_first = wall_us();
	for (unsigned long i = 0; i < count; i++) {
		fds[i] = listen_on(argv[0], (unsigned)(base + i), 64);
		if (fds[i] < 0) {
			ret = fds[i];
			fprintf(stderr, "benchtool: listen %s:%lu: %s\n", argv[0], base + i, strerror(-ret));
			goto out;
		}
	}
	/* the burst measurement times exposure from the first listen() */
	snprintf(times, sizeof(times), " %" PRIu64 " %" PRIu64, t_first, wall_us());
	ret = serve(fds, count, false, (unsigned)maxsec, times);
out:
	free(fds);	/* the process exits: sockets go with it */
	return ret;
}

/* --- clients ------------------------------------------------------------ */

static int cmd_hold(char **argv)
{
	unsigned long port, n, maxsec;
	struct sockaddr_in sa;
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	uint64_t end;
	char c;

	if (parse_u(argv[1], 65535, &port) < 0 || parse_u(argv[2], 100000, &n) < 0 ||
	    parse_u(argv[3], 86400, &maxsec) < 0 || make_addr(argv[0], (unsigned)port, &sa) < 0)
		return -EINVAL;
	raise_nofile(n + 64);
	for (unsigned long i = 0; i < n; i++) {
		int fd, ret;

		/* Connect one by one and wait for the echo: every connection is
		 * then really relayed, and socat's backlog of 5 never overflows. */
		fd = connect_wait(&sa, 3000);
		if (fd < 0) {
			printf("fail %lu connect %s\n", i, strerror(-fd));
			return fd;
		}
		ret = send(fd, "h", 1, MSG_NOSIGNAL) == 1 ? read_byte(fd, 3000) : -errno;
		if (ret < 0) {
			printf("fail %lu echo %s\n", i, strerror(-ret));
			return ret;
		}
	}
	printf("ready %lu\n", n);
	fflush(stdout);
	end = now_ns() + (uint64_t)maxsec * 1000000000u;
	while (now_ns() < end) {
		int r = poll(&pfd, 1, 200);

		if (r > 0 && read(0, &c, 1) <= 0)
			break;	/* stdin closed: the driver is done measuring */
	}
	return 0;
}

static int cmd_probe(char **argv)
{
	unsigned long base, count, tmo;
	struct sockaddr_in sa;
	unsigned long ok = 0;

	if (parse_u(argv[1], 65535, &base) < 0 || parse_u(argv[2], 65536 - base, &count) < 0 ||
	    parse_u(argv[3], 60000, &tmo) < 0 || make_addr(argv[0], 0, &sa) < 0)
		return -EINVAL;
	for (unsigned long i = 0; i < count; i++) {
		int fd;

		sa.sin_port = htons((uint16_t)(base + i));
		fd = connect_wait(&sa, (int)tmo);
		if (fd >= 0) {
			ok++;
			close(fd);
		}
	}
	printf("%lu\n", ok);
	return 0;
}

/**
 * socket_in_ns() - a socket created in another network namespace
 * @nsfd:	target namespace
 * @homefd:	namespace to return to
 *
 * Return: fd or -errno
 */
static int socket_in_ns(int nsfd, int homefd, int type)
{
	int fd, ret;

	if (setns(nsfd, CLONE_NEWNET) < 0)
		return -errno;
	fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ret = fd < 0 ? -errno : fd;
	if (setns(homefd, CLONE_NEWNET) < 0) {
		/* Cannot happen short of a kernel bug; continuing would run the
		 * clients in the wrong namespace and measure nonsense. */
		perror("benchtool: setns back");
		exit(2);
	}
	return ret;
}

/**
 * detect_one() - one detection-latency trial
 * @gns, @home:	namespace fds (guest: where the service listens)
 * @ext:	external address with the trial's port
 * @tmo_ms:	give up after this long
 *
 * Return: microseconds from listen() returning to the first successful
 * connect on @ext, or -errno (-ETIMEDOUT)
 */
static int64_t detect_one(int gns, int home, struct sockaddr_in *ext, unsigned tmo_ms,
			  int64_t *removal_us, unsigned jitter_ms)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = ext->sin_port,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, lfd = socket_in_ns(gns, home, SOCK_STREAM);
	int64_t ret = -ETIMEDOUT;
	uint64_t t0, deadline;

	if (lfd < 0)
		return lfd;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&lo, sizeof(lo)) < 0 || listen(lfd, 64) < 0) {
		ret = -errno;
		goto out;
	}
	t0 = now_ns();
	deadline = t0 + (uint64_t)tmo_ms * 1000000u;
	while (now_ns() < deadline) {
		int fd = connect_wait(ext, 100);

		if (fd >= 0) {
			ret = (int64_t)((now_ns() - t0) / 1000);
			close(fd);
			break;
		}
		/* Refused (nothing listens yet) comes back in tens of µs: a short
		 * pause keeps the poll from flooding the veth while keeping the
		 * error of the measurement under 0.5 ms. */
		usleep(250);
	}
	if (ret >= 0 && removal_us) {
		/* removal: from close() to the first refused connect, the close
		 * at a random phase of any scan interval */
		*removal_us = -ETIMEDOUT;
		if (jitter_ms)
			sleep_ms((unsigned)((unsigned long)rand() % jitter_ms));
		close(lfd);
		lfd = -1;
		t0 = now_ns();
		deadline = t0 + (uint64_t)tmo_ms * 1000000u;
		while (now_ns() < deadline) {
			int fd = connect_wait(ext, 100);

			if (fd == -ECONNREFUSED) {
				*removal_us = (int64_t)((now_ns() - t0) / 1000);
				break;
			}
			if (fd >= 0)
				close(fd);
			usleep(250);
		}
	}
out:
	if (lfd >= 0)
		close(lfd);
	return ret;
}

/**
 * udp_detect_one() - detect_one() for UDP: a bound socket is the service
 * @gns, @home, @ext, @tmo_ms, @removal_us, @jitter_ms: as detect_one()
 *
 * A datagram to @ext every 250 µs until the service socket receives one;
 * removal: after close(), until the sender gets ECONNREFUSED (an ICMP port
 * unreachable: nothing is bound on @ext any more; while the relay holds it,
 * datagrams are forwarded and nothing comes back).
 * Return: microseconds from bind() to the first datagram received, or -errno
 */
static int64_t udp_detect_one(int gns, int home, struct sockaddr_in *ext, unsigned tmo_ms,
			      int64_t *removal_us, unsigned jitter_ms)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = ext->sin_port,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int sfd = socket_in_ns(gns, home, SOCK_DGRAM), cfd = -1;
	int64_t ret = -ETIMEDOUT;
	uint64_t t0, deadline;
	char b[16];

	if (sfd < 0)
		return sfd;
	cfd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cfd < 0 || connect(cfd, (struct sockaddr *)ext, sizeof(*ext)) < 0 ||
	    bind(sfd, (struct sockaddr *)&lo, sizeof(lo)) < 0) {
		ret = -errno;
		goto out;
	}
	t0 = now_ns();
	deadline = t0 + (uint64_t)tmo_ms * 1000000u;
	while (now_ns() < deadline) {
		struct pollfd p = { .fd = sfd, .events = POLLIN };

		(void)!send(cfd, "d", 1, 0);	/* refused until exposed: ignored */
		if (poll(&p, 1, 0) == 0) {
			usleep(250);
			p.revents = 0;
			poll(&p, 1, 0);
		}
		if ((p.revents & POLLIN) && recv(sfd, b, sizeof(b), MSG_DONTWAIT) > 0) {
			ret = (int64_t)((now_ns() - t0) / 1000);
			break;
		}
	}
	if (ret >= 0 && removal_us) {
		*removal_us = -ETIMEDOUT;
		if (jitter_ms)
			sleep_ms((unsigned)((unsigned long)rand() % jitter_ms));
		while (recv(cfd, b, sizeof(b), MSG_DONTWAIT) >= 0 || errno == ECONNREFUSED)
			;	/* an error left over from before the exposure */
		close(sfd);
		sfd = -1;
		t0 = now_ns();
		deadline = t0 + (uint64_t)tmo_ms * 1000000u;
		while (now_ns() < deadline) {
			if ((send(cfd, "r", 1, 0) < 0 && errno == ECONNREFUSED) ||
			    (usleep(250), recv(cfd, b, sizeof(b), MSG_DONTWAIT) < 0 &&
					  errno == ECONNREFUSED)) {
				*removal_us = (int64_t)((now_ns() - t0) / 1000);
				break;
			}
		}
	}
out:
	if (sfd >= 0)
		close(sfd);
	if (cfd >= 0)
		close(cfd);
	return ret;
}

static int cmd_detect(char **argv)
{
	unsigned long base, trials, jitter, tmo;
	struct sockaddr_in ext;
	int gns, home;
	bool removal = argv[6] && strstr(argv[6], "removal");
	bool udp = argv[6] && strstr(argv[6], "udp");

	if (parse_u(argv[2], 65535, &base) < 0 || parse_u(argv[3], 100000, &trials) < 0 ||
	    parse_u(argv[4], 60000, &jitter) < 0 || parse_u(argv[5], 600000, &tmo) < 0 ||
	    base + trials > 65536 || make_addr(argv[1], 0, &ext) < 0)
		return -EINVAL;
	gns = open(argv[0], O_RDONLY | O_CLOEXEC);
	home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (gns < 0 || home < 0)
		return -errno;
	srand((unsigned)(now_ns() ^ (uint64_t)getpid()));
	for (unsigned long i = 0, fails = 0; i < trials; i++) {
		int64_t us, rm_us = 0;

		/* A random pause decorrelates listen() from the scanner's phase;
		 * without it every trial would start just after a scan. */
		if (jitter)
			sleep_ms((unsigned)((unsigned long)rand() % jitter));
		ext.sin_port = htons((uint16_t)(base + i));
		us = (udp ? udp_detect_one : detect_one)(gns, home, &ext, (unsigned)tmo,
							 removal ? &rm_us : NULL, (unsigned)jitter);
		if (us >= 0 && removal && rm_us >= 0) {
			printf("%" PRId64 " %" PRId64 "\n", us, rm_us);
			fails = 0;
		} else if (us >= 0 && removal) {
			printf("error removal %s\n", strerror((int)-rm_us));
		} else if (us >= 0) {
			printf("%" PRId64 "\n", us);
			fails = 0;
		} else {
			printf("error %s\n", strerror((int)-us));
		}
		fflush(stdout);
		/* A forwarder that stopped exposing ports would otherwise cost
		 * TIMEOUT_MS per remaining trial. */
		if (us < 0 && ++fails == MAX_CONSECUTIVE_FAILS) {
			printf("abort after %d failed trials in a row\n", MAX_CONSECUTIVE_FAILS);
			break;
		}
	}
	return 0;
}

/**
 * http_post() - one HTTP/1.1 POST without body, Connection: close
 * @api:	control API address
 * @path:	request target
 *
 * Return: HTTP status code, or -errno
 */
static int http_post(const struct sockaddr_in *api, const char *path)
{
	char req[256], resp[512];
	int fd = connect_wait(api, 2000), n, status = -EPROTO;
	size_t got = 0;

	if (fd < 0)
		return fd;
	n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n"
		     "Connection: close\r\n\r\n", path);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		return -EIO;
	}
	while (got < sizeof(resp) - 1) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 3000) <= 0)
			break;
		r = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		resp[got] = 0;
		if (strstr(resp, "\r\n"))
			break;	/* the status line is all we need */
	}
	resp[got] = 0;
	if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
		status = -EPROTO;
	close(fd);
	return status;
}

/* Time (µs since @t0) until one byte arrives on @fd, or -1 */
static int64_t first_byte_us(int fd, uint64_t t0, int tmo_ms)
{
	if (fd < 0 || read_byte(fd, tmo_ms) < 0)
		return -1;
	return (int64_t)((now_ns() - t0) / 1000);
}

static int cmd_snapshot(char **argv)
{
	unsigned long aport, port, trials;
	struct sockaddr_in api, ext;

	if (parse_u(argv[1], 65535, &aport) < 0 || parse_u(argv[3], 65535, &port) < 0 ||
	    parse_u(argv[4], 1000, &trials) < 0 || make_addr(argv[0], (unsigned)aport, &api) < 0 ||
	    make_addr(argv[2], (unsigned)port, &ext) < 0)
		return -EINVAL;
	for (unsigned long i = 0, fails = 0; i < trials; i++) {
		int st_prep, st_res, pend, fresh;
		bool early = false;
		int64_t t_pend, t_fresh, t_http;
		uint64_t t0;

		st_prep = http_post(&api, "/snapshot/prepare");
		/* While quiesced the external listener still completes handshakes
		 * (the kernel queues them); the data must wait for the resume. */
		pend = connect_wait(&ext, 2000);
		if (pend >= 0) {
			if (send(pend, "p", 1, MSG_NOSIGNAL) != 1) {
				close(pend);
				pend = -1;
			}
		}
		sleep_ms(50);
		if (pend >= 0) {
			struct pollfd pfd = { .fd = pend, .events = POLLIN };

			early = poll(&pfd, 1, 0) > 0;	/* answered while quiesced? */
		}
		t0 = now_ns();
		st_res = http_post(&api, "/snapshot/resume");
		t_http = (int64_t)((now_ns() - t0) / 1000);
		fresh = connect_wait(&ext, 2000);
		if (fresh >= 0 && send(fresh, "f", 1, MSG_NOSIGNAL) != 1) {
			close(fresh);
			fresh = -1;
		}
		t_pend = first_byte_us(pend, t0, 3000);
		t_fresh = first_byte_us(fresh, t0, 3000);
		printf("{\"prepare_status\":%d,\"resume_status\":%d,\"resume_http_us\":%" PRId64
		       ",\"quiesced_connect\":%s,\"answered_while_quiesced\":%s,"
		       "\"quiesced_first_byte_us\":%" PRId64 ",\"fresh_first_byte_us\":%" PRId64 "}\n",
		       st_prep, st_res, t_http, pend >= 0 ? "true" : "false", early ? "true" : "false",
		       t_pend, t_fresh);
		fflush(stdout);
		if (pend >= 0)
			close(pend);
		if (fresh >= 0)
			close(fresh);
		fails = t_fresh < 0 ? fails + 1 : 0;
		if (fails == MAX_CONSECUTIVE_FAILS)
			break;	/* the daemon stopped relaying: stop hammering it */
		sleep_ms(100);
	}
	return 0;
}

struct cmd {
	const char *name;
	int nargs;
	int (*fn)(char **argv);
};

static const struct cmd cmds[] = {
	{ "echo", 3, cmd_echo },
	{ "listen", 4, cmd_listen },
	{ "hold", 4, cmd_hold },
	{ "probe", 4, cmd_probe },
	{ "detect", 6, cmd_detect },
	{ "snapshot", 5, cmd_snapshot },
};

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; argc >= 2 && i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int ret;

		if (strcmp(argv[1], cmds[i].name))
			continue;
		/* detect takes an optional seventh argument ("removal") */
		if (argc - 2 != cmds[i].nargs &&
		    !(cmds[i].fn == cmd_detect && argc - 2 == cmds[i].nargs + 1)) {
			fprintf(stderr, "benchtool %s: needs %d arguments\n", cmds[i].name, cmds[i].nargs);
			return 2;
		}
		ret = cmds[i].fn(argv + 2);
		if (ret < 0) {
			fprintf(stderr, "benchtool %s: %s\n", cmds[i].name, strerror(-ret));
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "usage: benchtool echo|listen|hold|probe|detect|snapshot ARGS (see bench/benchtool.c)\n");
	return 2;
}
