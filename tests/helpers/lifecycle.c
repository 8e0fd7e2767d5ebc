// SPDX-License-Identifier: MIT
/* lifecycle.c - stress the port subsystem's start/stop/restart under live traffic
 *
 * Run inside a test network namespace that has the external address:
 *
 *   lifecycle --external-addr IP [--port P] [--cycles N] [--threads T] [--steer]
 *
 * A loopback echo service listens on 127.0.0.1:P; a client thread keeps
 * connecting to EXTERNAL:P (through the relay when the subsystem runs) and
 * checks every echo it gets back. T threads then call start/stop/restart
 * (and quiesce/resume) concurrently, N calls in all. Afterwards the
 * subsystem is stopped and the process must hold exactly the descriptors and
 * threads (relay threads included) it had before the first start; memory is checked by the sanitizer
 * or valgrind run around it. With --steer the port is steered (sk_lookup)
 * instead of relayed, and the BPF links on this network namespace are
 * counted with bpftool before the first start and after the last stop: a
 * leaked link (or its program and maps, which it holds) fails. Prints
 * "lifecycle: N passed, N failed".
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "porthole.h"

static struct in_addr external;
static uint16_t port = 47001;
static _Atomic bool done;
static _Atomic uint64_t echoes_ok, echoes_bad, connects_failed;
static struct ph_ports *ports;
static _Atomic long calls_left;
static int svc_fd = -1;
static int passed, failed;

static void result(bool ok, const char *what)
{
	printf("%s %s\n", ok ? "ok  " : "FAIL", what);
	if (ok)
		passed++;
	else
		failed++;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own descriptor */
}

static int count_threads(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");
	int n = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * Threads once the ones just joined are gone: pthread_join() returns when
 * the kernel clears the thread's tid, which is before the task is released,
 * so /proc may still count it for a moment. The least count over 200 ms.
 */
static int count_threads_settled(void)
{
	int least = count_threads();

	for (int i = 0; i < 20; i++) {
		int n;

		usleep(10000);
		n = count_threads();
		if (n >= 0 && n < least)
			least = n;
	}
	return least;
}

/* sk_lookup links attached to this network namespace (bpftool), -1 when unknown */
static int count_netns_links(void)
{
	char cmd[160], line[256];
	struct stat st;
	FILE *f;
	int n = 0;

	if (stat("/proc/self/ns/net", &st))
		return -1;
	/* no bpftool: no count (-1), never a count of 0 */
	snprintf(cmd, sizeof(cmd), "command -v bpftool >/dev/null && "
		 "bpftool link show 2>/dev/null | grep -c 'netns_ino %lu '",
		 (unsigned long)st.st_ino);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "%d", &n) != 1)
		n = -1;
	pclose(f);
	return n;
}

/* Echo service on 127.0.0.1:port, one connection at a time, short timeouts. */
static void *service(void *arg)
{
	char buf[4096];

	(void)arg;
	while (!atomic_load(&done)) {
		struct pollfd pfd = { .fd = svc_fd, .events = POLLIN };
		int c;

		if (poll(&pfd, 1, 50) <= 0)
			continue;
		c = accept4(svc_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		for (;;) {
			struct pollfd cp = { .fd = c, .events = POLLIN };
			ssize_t n;

			if (poll(&cp, 1, 200) <= 0)
				break;
			n = recv(c, buf, sizeof(buf), 0);
			if (n <= 0 || send(c, buf, (size_t)n, MSG_NOSIGNAL) != n)
				break;
		}
		close(c);
	}
	return NULL;
}

/* Client: connect to EXTERNAL:port, send a line, expect it back verbatim. */
static void *client(void *arg)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr = external };
	unsigned long seq = 0;

	(void)arg;
	while (!atomic_load(&done)) {
		char msg[64], got[64];
		size_t len, have = 0;
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct timeval tv = { .tv_sec = 0, .tv_usec = 300000 };

		if (fd < 0)
			break;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
			atomic_fetch_add(&connects_failed, 1);
			close(fd);
			usleep(2000);
			continue;
		}
		len = (size_t)snprintf(msg, sizeof(msg), "echo %lu\n", seq++);
		if (send(fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len) {
			while (have < len) {
				ssize_t n = recv(fd, got + have, len - have, 0);

				if (n <= 0)
					break;
				have += (size_t)n;
			}
			/* a stop may cut the connection: a short answer is fine,
			 * a wrong one never is */
			if (have == len && !memcmp(got, msg, len))
				atomic_fetch_add(&echoes_ok, 1);
			else if (have && memcmp(got, msg, have))
				atomic_fetch_add(&echoes_bad, 1);
		}
		close(fd);
	}
	return NULL;
}

static void *churn(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (atomic_fetch_sub(&calls_left, 1) > 0) {
		switch (rand_r(&seed) % 8) {
		case 0: case 1: case 2:
			ph_ports_start(ports);
			break;
		case 3: case 4: case 5:
			ph_ports_stop(ports);
			break;
		case 6:
			ph_ports_restart(ports);
			break;
		default:
			if (ph_ports_quiesce(ports) == 0)
				ph_ports_resume(ports);
			break;
		}
	}
	return NULL;
}

static int svc_listen(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) || listen(fd, 128)) {
		close(fd);
		return -errno;
	}
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "external-addr", required_argument, NULL, 'e' },
		{ "port", required_argument, NULL, 'p' },
		{ "cycles", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "steer", no_argument, NULL, 's' },
		{ 0 },
	};
	long cycles = 10000;
	int nthreads = 4, opt, fds0, thr0, fds1, thr1, links0 = 0, links1;
	bool steer = false;
	pthread_t svc, cli, th[16];
	struct ph_config cfg;
	char what[160];

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'e':
			if (inet_pton(AF_INET, optarg, &external) != 1)
				return 2;
			break;
		case 'p':
			port = (uint16_t)atoi(optarg);
			break;
		case 'n':
			cycles = atol(optarg);
			break;
		case 's':
			steer = true;
			break;
		case 't':
			nthreads = atoi(optarg);
			if (nthreads < 1 || nthreads > 16)
				return 2;
			break;
		default:
			return 2;
		}
	}
	if (!external.s_addr) {
		fprintf(stderr, "lifecycle: --external-addr is required\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ph_log_setup(PH_LOG_TEXT, PH_LOG_ERROR);

	svc_fd = svc_listen();
	if (svc_fd < 0) {
		fprintf(stderr, "lifecycle: service listen: %s\n", ph_strerror(svc_fd));
		return 1;
	}
	ph_config_defaults(&cfg);
	cfg.external = external;
	cfg.scan_interval_ms = 5;
	/* the port worker and two relay threads, whatever the CPU count: the
	 * client's connections are dealt among all three, so stops and
	 * quiesces meet relays and queued clients on every thread */
	cfg.relay_threads = 3;
	if (steer)
		ph_portset_add(&cfg.steer, port);
	ports = ph_ports_new(&cfg);
	if (!ports)
		return 1;
	/* baseline: one full cycle first, so lazily created state is counted;
	 * taken before the peer threads run, compared after they are joined */
	ph_ports_start(ports);
	usleep(100000);
	ph_ports_stop(ports);
	fds0 = count_fds();
	thr0 = count_threads_settled();
	if (steer)
		links0 = count_netns_links();
	pthread_create(&svc, NULL, service, NULL);
	pthread_create(&cli, NULL, client, NULL);

	/* traffic flows through a running subsystem */
	ph_ports_start(ports);
	for (int i = 0; i < 200 && atomic_load(&echoes_ok) < 20; i++)
		usleep(10000);
	snprintf(what, sizeof(what), "relay serves echoes while running (%llu)",
		 (unsigned long long)atomic_load(&echoes_ok));
	result(atomic_load(&echoes_ok) >= 20, what);
	if (steer) {
		struct ph_port_list l;
		bool steered = false;

		links1 = count_netns_links();
		snprintf(what, sizeof(what), "steered: one sk_lookup link while running (%d, %d before)",
			 links1, links0);
		result(links1 == links0 + 1, what);
		if (!ph_ports_list(ports, &l)) {
			for (size_t i = 0; i < l.n; i++)
				steered |= l.ports[i].port == port && l.ports[i].state == PH_PORT_STEERED;
			ph_port_list_free(&l);
		}
		result(steered, "steered: the port's state is steered");
	}

	atomic_store(&calls_left, cycles);
	for (int i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, churn, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);

	/* still works after the churn */
	ph_ports_start(ports);
	{
		uint64_t before = atomic_load(&echoes_ok);

		for (int i = 0; i < 300 && atomic_load(&echoes_ok) < before + 10; i++)
			usleep(10000);
		snprintf(what, sizeof(what), "relay serves echoes after %ld lifecycle calls", cycles);
		result(atomic_load(&echoes_ok) >= before + 10, what);
	}
	ph_ports_stop(ports);
	ph_ports_stop(ports); /* stop when stopped: no-op */
	atomic_store(&done, true);
	pthread_join(cli, NULL);
	pthread_join(svc, NULL);

	fds1 = count_fds();
	thr1 = count_threads_settled();
	snprintf(what, sizeof(what), "descriptors after stop: %d, before first start: %d", fds1, fds0);
	result(fds1 == fds0, what);
	snprintf(what, sizeof(what), "threads after stop: %d, before first start: %d", thr1, thr0);
	result(thr1 == thr0, what);
	if (steer) {
		links1 = count_netns_links();
		snprintf(what, sizeof(what), "BPF links on this namespace after stop: %d, before: %d",
			 links1, links0);
		result(links1 == links0 && links0 >= 0, what);
	}
	snprintf(what, sizeof(what), "no corrupted echo (%llu bad, %llu good, %llu failed connects)",
		 (unsigned long long)atomic_load(&echoes_bad),
		 (unsigned long long)atomic_load(&echoes_ok),
		 (unsigned long long)atomic_load(&connects_failed));
	result(atomic_load(&echoes_bad) == 0, what);

	ph_ports_free(ports);
	close(svc_fd);
	printf("lifecycle: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
