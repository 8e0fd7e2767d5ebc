// SPDX-License-Identifier: MIT
/* scan_cost.c - time one listener scan: porthole's scanner vs a full /proc/net/tcp{,6} parse
 *
 * Theory of Operation
 *
 * Run inside the benchmark's guest namespace. It first fills the namespace
 * with @conns established loopback connections (2 sockets each, so 50,000
 * connections are 100,000 descriptors, spread over child processes so
 * each stays under RLIMIT_NOFILE) and
 * @listeners extra loopback listeners, then times three ways of answering
 * "which TCP ports listen here?":
 *
 *   sock_diag   ph_scanner_run() as portholed runs it every scan interval:
 *               the kernel walks only the listening hash;
 *   proc_ph     ph_scanner_run() forced onto porthole's /proc fallback;
 *   proc_ref    what the reference design does each second: read
 *               /proc/net/tcp and tcp6 and parse every field of every line
 *               (the kernel formats every socket of the namespace, then
 *               userspace scans the text).
 *
 * Each method runs until @iters scans or @max_ms milliseconds, whichever
 * comes first (the /proc parse at 50,000 sockets takes hundreds of ms per
 * scan). One JSON object goes to stdout. Nothing is sent on the wire but
 * loopback handshakes inside the namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "discovery.h"
#include "discovery_listeners.h"

/* Connections per holder process (and per listening port): 2 fds each
 * stay under a 20,000 RLIMIT_NOFILE hard limit, and the count stays clear
 * of the ephemeral port range, since a connect()-only local port is shared
 * only across distinct destination ports. */
#define CONNS_PER_CHILD 9000
#define SRC_PORT_BASE 20000

struct opts {
	unsigned long conns;
	unsigned long listeners;
	unsigned long iters;
	unsigned long max_ms;
	unsigned long base;
};

struct timing {
	const char *method;	/* what ph_scanner really used ("sock_diag", "proc") */
	double *us;
	size_t n;
	size_t found;		/* listeners the last scan reported */
	int err;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int listen_lo(unsigned port, int backlog)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

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

/* Accept everything queued on non-blocking @lfd. Return: accepted count */
static unsigned long drain(int lfd)
{
	unsigned long n = 0;

	while (accept4(lfd, NULL, NULL, SOCK_CLOEXEC) >= 0)
		n++;
	return n;
}

/* Soft RLIMIT_NOFILE up to @want, capped by the hard limit. Return: the new limit */
static rlim_t raise_nofile(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 1024;
	if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) {
		struct rlimit hard = { .rlim_cur = want, .rlim_max = want };

		/* Without CAP_SYS_RESOURCE this fails; the caller spreads out. */
		if (setrlimit(RLIMIT_NOFILE, &hard) == 0)
			return want;
		want = rl.rlim_max;
	}
	rl.rlim_cur = want;
	return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? want : rl.rlim_cur;
}

/**
 * hold_connections() - child: open @n loopback connections to a fresh port, keep them
 * @port:	port of this child's own listener
 * @n:		connections
 * @ready:	write end of a pipe: one byte 'y' once all are established
 *
 * Runs in a child process so that the descriptors of 50,000 connections
 * (100,000 fds) fit even when RLIMIT_NOFILE cannot be raised: each child
 * holds its share. The child dies with its parent (PR_SET_PDEATHSIG).
 */
static _Noreturn void hold_connections(unsigned port, unsigned idx, unsigned long n, int ready)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	/* Source 127.1.<idx>.1 with explicit ports: the ephemeral range (28,000
	 * ports by default) could not hold 50,000 connections, and binding
	 * distinct addresses never collides with another child's ports. */
	struct sockaddr_in src = { .sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(0x7f010001u | (idx << 8)) };
	unsigned long accepted = 0;
	int lfd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		_exit(1);
	lfd = listen_lo(port, 4096);
	if (lfd < 0)
		_exit(1);
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	for (unsigned long c = 0; c < n; c++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		src.sin_port = htons((uint16_t)(SRC_PORT_BASE + c));
		/* A loopback connect completes synchronously while the accept
		 * queue has room; draining every 1,024 keeps it from filling. */
		if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			_exit(1);
		if ((c & 1023) == 1023)
			accepted += drain(lfd);
	}
	accepted += drain(lfd);
	if (accepted != n || write(ready, "y", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/* Connection holders, killed and reaped at exit */
#define MAX_CHILDREN 64
static pid_t kids[MAX_CHILDREN];
static unsigned children;

static void reap_children(void)
{
	for (unsigned i = 0; i < children; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	children = 0;
}

/**
 * fill_namespace() - create the sockets the scans will have to wade through
 * @o:		sizes and the first port to use
 *
 * Extra listeners stay open in this process (deliberately leaked until
 * exit); connections live in child processes, CONNS_PER_CHILD each.
 * Return: 0 or -errno
 */
static int fill_namespace(const struct opts *o)
{
	unsigned long port = o->base, left = o->conns;
	int pfd[2], ret = 0;

	if (raise_nofile(o->listeners + 64) < o->listeners + 64)
		return -EMFILE;
	for (unsigned long i = 0; i < o->listeners; i++) {
		int fd = listen_lo((unsigned)port++, 16);

		if (fd < 0)
			return fd;
	}
	if (!left)
		return 0;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	while (left) {
		unsigned long n = left < CONNS_PER_CHILD ? left : CONNS_PER_CHILD;
		pid_t pid = children < MAX_CHILDREN ? fork() : (errno = E2BIG, -1);

		if (pid < 0) {
			ret = -errno;
			goto out;
		}
		if (pid == 0) {
			close(pfd[0]);
			if (raise_nofile(2 * n + 64) < 2 * n + 64)
				_exit(1);
			hold_connections((unsigned)port, children, n, pfd[1]);
		}
		kids[children++] = pid;
		port++;
		left -= n;
	}
	close(pfd[1]);
	pfd[1] = -1;
	for (unsigned i = 0; i < children; i++) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		char c;

		/* A failed child just exits, so wait with a deadline. */
		if (poll(&p, 1, 60000) <= 0 || read(pfd[0], &c, 1) != 1) {
			ret = -ETIMEDOUT;
			break;
		}
	}
out:
	close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	return ret;
}

/**
 * parse_proc_ref() - the reference design's scan: parse every line of one file
 * @path:	/proc/net/tcp or /proc/net/tcp6
 * @found:	incremented per loopback listener
 *
 * Return: 0 or -errno
 */
static int parse_proc_ref(const char *path, size_t *found)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	int ret = 0;

	if (!f)
		return errno == ENOENT ? 0 : -errno;
	if (getline(&line, &cap, f) < 0)	/* header */
		goto out;
	while (getline(&line, &cap, f) >= 0) {
		char laddr[33], raddr[33];
		unsigned slot, lport, rport, state, tr, retr, uid, timeout;
		unsigned long txq, rxq, tm, inode;

		if (sscanf(line, " %u: %32[0-9A-Fa-f]:%x %32[0-9A-Fa-f]:%x %x %lx:%lx %x:%lx %x %u %u %lu",
			   &slot, laddr, &lport, raddr, &rport, &state, &txq, &rxq, &tr, &tm, &retr,
			   &uid, &timeout, &inode) != 14) {
			ret = -EINVAL;
			break;
		}
		if (state == 0x0A && (!strcmp(laddr, "0100007F") ||
				      !strcmp(laddr, "00000000000000000000000001000000")))
			(*found)++;
	}
out:
	free(line);
	fclose(f);
	return ret;
}

/**
 * time_method() - run one scan method repeatedly
 * @method:	0 sock_diag, 1 porthole's /proc fallback, 2 reference /proc parse
 * @o:		iteration and time caps
 * @t:		per-scan durations in µs are stored here
 *
 * Return: 0 or -errno (also kept in @t->err)
 */
static int time_method(int method, const struct opts *o, struct timing *t)
{
	struct ph_scanner sc = { .diag_fd = -1 };
	struct ph_scan scan = { 0 };
	uint64_t end;
	int ret = 0;

	t->us = calloc(o->iters, sizeof(*t->us));
	if (!t->us)
		return t->err = -ENOMEM;
	if (method < 2) {
		ret = ph_scanner_init(&sc, method == 1);
		if (ret < 0)
			return t->err = ret;
		/* Without sock_diag the scanner falls back to /proc: say so. */
		t->method = ph_scanner_method(&sc);
	} else {
		t->method = "reference";
	}
	end = now_ns() + o->max_ms * 1000000u;
	/* One untimed scan first: page in the code and size the buffers. */
	for (long i = -1; i < (long)o->iters && now_ns() < end; i++) {
		uint64_t t0 = now_ns();
		size_t found = 0;

		if (method < 2) {
			ret = ph_scanner_run(&sc, &scan);
			found = scan.len;
		} else {
			ret = parse_proc_ref("/proc/net/tcp", &found);
			if (!ret)
				ret = parse_proc_ref("/proc/net/tcp6", &found);
		}
		if (ret < 0)
			break;
		if (i >= 0)
			t->us[t->n++] = (double)(now_ns() - t0) / 1000.0;
		t->found = found;
	}
	if (method < 2) {
		ph_scan_free(&scan);
		ph_scanner_fini(&sc);
	}
	return t->err = ret;
}

static void print_timing(const char *name, struct timing *t, int last)
{
	printf("  \"%s\": {", name);
	if (t->err) {
		printf("\"error\": \"%s\"}%s\n", strerror(-t->err), last ? "" : ",");
		return;
	}
	qsort(t->us, t->n, sizeof(*t->us), cmp_double);
	printf("\"method\": \"%s\", \"scans\": %zu, \"found\": %zu", t->method, t->n, t->found);
	if (t->n)
		printf(", \"median_us\": %.1f, \"min_us\": %.1f, \"max_us\": %.1f",
		       t->us[t->n / 2], t->us[0], t->us[t->n - 1]);
	printf("}%s\n", last ? "" : ",");
}

static int parse_num(const char *s, unsigned long *v)
{
	char *end;

	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno || end == s || *end ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	struct opts o = { .conns = 100, .listeners = 0, .iters = 200, .max_ms = 3000, .base = 12000 };
	struct timing t[3] = { 0 };
	static const char *const names[3] = { "sock_diag", "proc_porthole", "proc_reference" };
	int c, ret;

	while ((c = getopt(argc, argv, "c:l:i:t:b:")) != -1) {
		unsigned long *dst = c == 'c' ? &o.conns : c == 'l' ? &o.listeners :
				     c == 'i' ? &o.iters : c == 't' ? &o.max_ms : c == 'b' ? &o.base : NULL;

		if (!dst || parse_num(optarg, dst) < 0) {
			fprintf(stderr, "usage: scan_cost [-c CONNS] [-l LISTENERS] [-i ITERS] "
				"[-t MAX_MS_PER_METHOD] [-b BASE_PORT]\n");
			return 2;
		}
	}
	if (o.iters == 0 || o.base + o.listeners + o.conns / CONNS_PER_CHILD + 1 > 65535) {
		fprintf(stderr, "scan_cost: bad sizes\n");
		return 2;
	}
	ret = fill_namespace(&o);
	if (ret < 0) {
		reap_children();
		fprintf(stderr, "scan_cost: creating sockets: %s\n", strerror(-ret));
		return 1;
	}
	for (int m = 0; m < 3; m++)
		time_method(m, &o, &t[m]);
	printf("{\n  \"conns\": %lu, \"listeners\": %lu,\n", o.conns, o.listeners);
	for (int m = 0; m < 3; m++)
		print_timing(names[m], &t[m], m == 2);
	printf("}\n");
	for (int m = 0; m < 3; m++)
		free(t[m].us);
	reap_children();
	return 0;
}
