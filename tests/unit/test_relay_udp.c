// SPDX-License-Identifier: MIT
/* test_relay_udp.c - the UDP flow table, driven by a real loop over loopback UDP sockets
 *
 * Theory of Operation
 * ===================
 * Each test builds what the port worker would: a struct ph_loop, a relay on
 * it, an "external" UDP socket on 127.0.0.1 (or ::1) handed to
 * ph_udp_ext_open(), and a "service" socket on the loopback address the
 * relay targets. Clients are plain UDP sockets sending to the external
 * address. The test turns the loop by hand: a wait for a datagram on a
 * far end (recv_wait()) runs the loop between non-blocking receives, so
 * every step is deterministic up to loopback delivery, which completes
 * inside the sending system call. The service learns each flow's address
 * from recvfrom() and answers to it, as a real service does.
 *
 * Every test counts the open descriptors (/proc/self/fd) before it builds
 * its fixture and after it tore it down: they must match.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "relay_udp.h"

union addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
	struct sockaddr_storage ss;
};

struct fixture {
	struct ph_loop loop;
	struct ph_udp_counters ctr;
	struct ph_udp_relay *r;
	struct ph_udp_ext *x;
	int family;
	union addr ext;		/* the external socket's address */
	union addr svc_addr;	/* the service's (the relay's target) */
	socklen_t alen;
	int svc;		/* the service's socket, -1 when none */
	int fds_before;
};

static void no_wake(struct ph_loop *loop, void *arg)
{
	(void)loop;
	(void)arg;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own descriptor */
}

/* A UDP socket bound to the loopback address of @family, port 0; its address in @a */
static int udp_bound(int family, union addr *a, bool nonblock)
{
	socklen_t len = family == AF_INET ? sizeof(a->in) : sizeof(a->in6);
	int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);

	assert_true(fd >= 0);
	memset(a, 0, sizeof(*a));
	a->sa.sa_family = (sa_family_t)family;
	if (family == AF_INET)
		a->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else
		a->in6.sin6_addr = in6addr_loopback;
	assert_int_equal(bind(fd, &a->sa, len), 0);
	assert_int_equal(getsockname(fd, &a->sa, &len), 0);
	return fd;
}

/* SO_RCVBUF/SO_SNDBUF of @fd, so bursts of the tests fit */
static void big_buffers(int fd)
{
	int sz = 4 << 20;

	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz));
}

/**
 * fx_new() - loop, relay, external socket and service on loopback
 * @family:	AF_INET or AF_INET6
 * @max_flows:	the relay's flow limit
 * @idle_ms:	its idle timeout
 * @service:	false: the target port has no socket (it is bound, noted and
 *		closed again)
 */
static struct fixture *fx_new(int family, unsigned max_flows, unsigned idle_ms, bool service)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int xfd;

	assert_non_null(f);
	f->fds_before = count_fds();
	f->family = family;
	f->alen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	assert_int_equal(ph_loop_init(&f->loop, no_wake, NULL), 0);
	assert_int_equal(ph_udp_relay_new(&f->loop, max_flows, idle_ms, &f->ctr, &f->r), 0);
	f->svc = udp_bound(family, &f->svc_addr, true);
	big_buffers(f->svc);
	if (!service) {
		close(f->svc);
		f->svc = -1;
	}
	xfd = udp_bound(family, &f->ext, true);
	big_buffers(xfd);
	assert_int_equal(ph_udp_ext_open(f->r, xfd, &f->svc_addr.sa, f->alen, NULL, &f->x), 0);
	return f;
}

static void fx_free(struct fixture *f)
{
	ph_udp_relay_free(f->r);
	ph_loop_run_once(&f->loop, 0);	/* deferred frees */
	assert_int_equal(atomic_load(&f->ctr.flows_open), 0);
	if (f->svc >= 0)
		close(f->svc);
	ph_loop_fini(&f->loop);
	assert_int_equal(count_fds(), f->fds_before);
	free(f);
}

/* A client socket (non-blocking) on the fixture's loopback address */
static int client_new(struct fixture *f)
{
	union addr a;
	int fd = udp_bound(f->family, &a, true);

	big_buffers(fd);
	return fd;
}

static void cli_send(struct fixture *f, int cli, const void *buf, size_t len)
{
	assert_int_equal(sendto(cli, buf, len, 0, &f->ext.sa, f->alen), (ssize_t)len);
}

/**
 * recv_wait() - receive a datagram on @fd, turning the loop while none is there
 * @f:		fixture
 * @fd:		non-blocking socket
 * @buf:	where it goes; @cap its size
 * @from:	its sender, or NULL
 * @ms:		give up after about this long
 * Return: its length, or -1 when none came
 */
static ssize_t recv_wait(struct fixture *f, int fd, void *buf, size_t cap, union addr *from,
			 int ms)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;

	for (;;) {
		socklen_t len = sizeof(*from);
		ssize_t n = recvfrom(fd, buf, cap, MSG_TRUNC, from ? &from->sa : NULL,
				     from ? &len : NULL);

		if (n >= 0)
			return n;
		assert_true(errno == EAGAIN);
		if (ph_now_ms() >= end)
			return -1;
		ph_loop_run_once(&f->loop, 5);
	}
}

/* Turn the loop for about @ms */
static void run_for(struct fixture *f, int ms)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;

	while (ph_now_ms() < end)
		ph_loop_run_once(&f->loop, 5);
}

/* Turn the loop until the relay has @n flows, at most @ms; Return: true if it has */
static bool wait_flows(struct fixture *f, size_t n, int ms)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;

	while (ph_udp_relay_flows(f->r) != n && ph_now_ms() < end)
		ph_loop_run_once(&f->loop, 5);
	return ph_udp_relay_flows(f->r) == n;
}

/* The same client address, by the relay's own test (relay_udp.h) */
static bool addr_same(const union addr *a, const union addr *b)
{
	return ph_udp_addr_eq(&a->sa, &b->sa);
}

/* ---- tests ------------------------------------------------------------ */

/*
 * Every size 1..65,507 each way, byte for byte, one flow, in order.
 * PH_TEST_UDP_SIZE_STEP=N takes every Nth size only (and 65,507): for runs
 * under valgrind, where 4 GB of copies and compares take far too long.
 */
static void sizes_both_ways(int family)
{
	const char *env = getenv("PH_TEST_UDP_SIZE_STEP");
	size_t step = env && atoi(env) > 0 ? (size_t)atoi(env) : 1;
	uint64_t count = 0;
	struct fixture *f = fx_new(family, 16, 60000, true);
	size_t cap = PH_UDP_MAX_DGRAM + 256;
	unsigned char *pat = malloc(cap), *buf = malloc(cap + 16);
	int cli = client_new(f);
	union addr peer, first;
	uint64_t bytes = 0;

	assert_non_null(pat);
	assert_non_null(buf);
	srandom(16);
	for (size_t i = 0; i < cap; i++)
		pat[i] = (unsigned char)random();
	for (size_t len = 1; len <= PH_UDP_MAX_DGRAM;
	     len = len < PH_UDP_MAX_DGRAM && len + step > PH_UDP_MAX_DGRAM ? PH_UDP_MAX_DGRAM
									: len + step) {
		const unsigned char *want = pat + len % 251;	/* a different slice each size */

		cli_send(f, cli, want, len);
		assert_int_equal(recv_wait(f, f->svc, buf, cap + 16, &peer, 2000), (ssize_t)len);
		assert_memory_equal(buf, want, len);
		if (len == 1)
			first = peer;
		assert_true(addr_same(&peer, &first));	/* one flow throughout */
		/* back: a different slice again */
		want = pat + (len * 7) % 241;
		assert_int_equal(sendto(f->svc, want, len, 0, &peer.sa, f->alen), (ssize_t)len);
		assert_int_equal(recv_wait(f, cli, buf, cap + 16, NULL, 2000), (ssize_t)len);
		assert_memory_equal(buf, want, len);
		bytes += len;
		count++;
	}
	assert_int_equal(atomic_load(&f->ctr.flows_created), 1);
	assert_int_equal(count, step == 1 ? PH_UDP_MAX_DGRAM : count);
	assert_int_equal(atomic_load(&f->ctr.dgrams_in), count);
	assert_int_equal(atomic_load(&f->ctr.dgrams_out), count);
	assert_int_equal(atomic_load(&f->ctr.bytes_in), bytes);
	assert_int_equal(atomic_load(&f->ctr.bytes_out), bytes);
	for (int d = 0; d < PH_UDP_DROP__COUNT; d++)
		assert_int_equal(atomic_load(&f->ctr.drops[d]), 0);
	close(cli);
	free(pat);
	free(buf);
	fx_free(f);
}

static void test_sizes_ipv4(void **state)
{
	(void)state;
	sizes_both_ways(AF_INET);
}

static void test_sizes_ipv6(void **state)
{
	(void)state;
	sizes_both_ways(AF_INET6);
}

/* A zero-length datagram is a datagram too */
static void test_empty_datagram(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 60000, true);
	int cli = client_new(f);
	char buf[8];
	union addr peer;

	(void)state;
	cli_send(f, cli, "", 0);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &peer, 2000), 0);
	assert_int_equal(sendto(f->svc, "", 0, 0, &peer.sa, f->alen), 0);
	assert_int_equal(recv_wait(f, cli, buf, sizeof(buf), NULL, 2000), 0);
	close(cli);
	fx_free(f);
}

#define NCLI 3
#define BURST 150

/*
 * Three clients send interleaved bursts (a1 b1 c1 a2 ...), so every batch
 * the relay reads mixes flows: each flow's datagrams reach the service in
 * order, from one peer per client; the service's bursts back arrive in
 * order at the right client.
 */
static void test_order_per_flow(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 60000, true);
	int cli[NCLI];
	union addr peer[NCLI];
	uint32_t next[NCLI] = { 0 };
	uint32_t msg[2];

	(void)state;
	for (int c = 0; c < NCLI; c++)
		cli[c] = client_new(f);
	for (uint32_t i = 0; i < BURST; i++)
		for (uint32_t c = 0; c < NCLI; c++) {
			msg[0] = c;
			msg[1] = i;
			cli_send(f, cli[c], msg, sizeof(msg));
		}
	for (int got = 0; got < NCLI * BURST; got++) {
		union addr from;
		uint32_t c;

		assert_int_equal(recv_wait(f, f->svc, msg, sizeof(msg), &from, 2000), sizeof(msg));
		c = msg[0];
		assert_true(c < NCLI);
		assert_int_equal(msg[1], next[c]);	/* in order within the flow */
		if (next[c] == 0)
			peer[c] = from;
		assert_true(addr_same(&from, &peer[c]));
		next[c]++;
	}
	for (int a = 0; a < NCLI; a++)
		for (int b = a + 1; b < NCLI; b++)
			assert_false(addr_same(&peer[a], &peer[b]));	/* one peer per client */
	assert_int_equal(ph_udp_relay_flows(f->r), NCLI);
	assert_int_equal(ph_udp_ext_flows(f->x), NCLI);

	/* back: interleaved bursts to the three peers */
	for (uint32_t i = 0; i < BURST; i++)
		for (uint32_t c = 0; c < NCLI; c++) {
			msg[0] = c;
			msg[1] = i;
			assert_int_equal(sendto(f->svc, msg, sizeof(msg), 0, &peer[c].sa, f->alen),
					 sizeof(msg));
		}
	for (uint32_t c = 0; c < NCLI; c++)
		for (uint32_t i = 0; i < BURST; i++) {
			assert_int_equal(recv_wait(f, cli[c], msg, sizeof(msg), NULL, 2000),
					 sizeof(msg));
			assert_int_equal(msg[0], c);
			assert_int_equal(msg[1], i);
		}
	assert_int_equal(atomic_load(&f->ctr.dgrams_in), NCLI * BURST);
	assert_int_equal(atomic_load(&f->ctr.dgrams_out), NCLI * BURST);
	for (int c = 0; c < NCLI; c++)
		close(cli[c]);
	fx_free(f);
}

/* Size of datagram @i of a train test: runs of one size, shorter ones, empty ones */
static size_t train_size(unsigned i)
{
	static const size_t sizes[] = { 1400, 1400, 1400, 700, 1400, 0, 0, 1, 1, 1, 2, 1, 1 };

	if (i < 13)
		return sizes[i];
	if (i < 60)
		return 1400 + (i == 59);	/* 47 of 1,400 (more than 65,507 B), then 1,401 */
	return i < 63 ? 16000 : 9;	/* a train of 16,000 B ended by a short one */
}

/* Content of datagram @i: its number and size, repeated */
static void train_fill(unsigned char *b, unsigned i, size_t n)
{
	for (size_t k = 0; k < n; k++)
		b[k] = (unsigned char)(i * 31 + k + n);
}

/* Receive the 64 datagrams of a train test on @fd, exact and in order */
static void train_expect(struct fixture *f, int fd, union addr *from)
{
	static unsigned char got[65536], want[65536];

	for (unsigned i = 0; i < 64; i++) {
		size_t n = train_size(i);

		assert_int_equal(recv_wait(f, fd, got, sizeof(got), from, 2000), (ssize_t)n);
		train_fill(want, i, n);
		assert_memory_equal(got, want, n ? n : 1);
	}
}

/*
 * A batch of 64 datagrams of one flow, in runs of one size (sent as GSO
 * trains where the kernel takes them) and of mixed sizes, each way: every
 * datagram arrives whole, with its own size (a train is cut back where it
 * was put together, never merged, never cut elsewhere), in order.
 */
static void trains_both_ways(int family)
{
	struct fixture *f = fx_new(family, 16, 60000, true);
	static unsigned char b[65536];
	int cli = client_new(f);
	union addr peer;

	big_buffers(f->svc);
	for (unsigned i = 0; i < 64; i++) {
		train_fill(b, i, train_size(i));
		cli_send(f, cli, b, train_size(i));
	}
	train_expect(f, f->svc, &peer);
	/* back: the flow socket has the default receive buffer (208 KiB) */
	for (unsigned i = 0; i < 64; i++) {
		train_fill(b, i, train_size(i));
		assert_int_equal(sendto(f->svc, b, train_size(i), 0, &peer.sa, f->alen),
				 (ssize_t)train_size(i));
	}
	train_expect(f, cli, NULL);
	assert_int_equal(atomic_load(&f->ctr.dgrams_in), 64);
	assert_int_equal(atomic_load(&f->ctr.dgrams_out), 64);
	for (int d = 0; d < PH_UDP_DROP__COUNT; d++)
		assert_int_equal(atomic_load(&f->ctr.drops[d]), 0);
	close(cli);
	fx_free(f);
}

static void test_trains_ipv4(void **state)
{
	(void)state;
	trains_both_ways(AF_INET);
}

static void test_trains_ipv6(void **state)
{
	(void)state;
	trains_both_ways(AF_INET6);
}

/* Each client address is a flow of its own, and answers go back to their client */
static void test_flow_per_client(void **state)
{
	enum { N = 20 };
	struct fixture *f = fx_new(AF_INET6, 64, 60000, true);
	int cli[N];
	union addr peer[N];
	char buf[32];

	(void)state;
	for (int c = 0; c < N; c++) {
		cli[c] = client_new(f);
		snprintf(buf, sizeof(buf), "hello %d", c);
		cli_send(f, cli[c], buf, strlen(buf));
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &peer[c], 2000),
				 (ssize_t)strlen(buf));
		for (int o = 0; o < c; o++)
			assert_false(addr_same(&peer[c], &peer[o]));
	}
	/* the same client again: the same flow */
	cli_send(f, cli[3], "again", 5);
	{
		union addr from;

		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 5);
		assert_true(addr_same(&from, &peer[3]));
	}
	assert_int_equal(ph_udp_relay_flows(f->r), N);
	assert_int_equal(atomic_load(&f->ctr.flows_created), N);
	assert_int_equal(atomic_load(&f->ctr.flows_open), N);
	/* answers in reverse order, each tagged with its client */
	for (int c = N - 1; c >= 0; c--) {
		snprintf(buf, sizeof(buf), "to %d", c);
		assert_int_equal(sendto(f->svc, buf, strlen(buf), 0, &peer[c].sa, f->alen),
				 (ssize_t)strlen(buf));
	}
	for (int c = 0; c < N; c++) {
		char want[32];
		ssize_t n = recv_wait(f, cli[c], buf, sizeof(buf) - 1, NULL, 2000);

		assert_true(n > 0);
		buf[n] = 0;
		snprintf(want, sizeof(want), "to %d", c);
		assert_string_equal(buf, want);
	}
	for (int c = 0; c < N; c++)
		close(cli[c]);
	fx_free(f);
}

/* A flow ends after the idle timeout; traffic either way keeps it */
static void test_idle_timeout(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 150, true);
	int a = client_new(f), b = client_new(f);
	union addr pa, pb, from;
	char buf[8];

	(void)state;
	cli_send(f, a, "a", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &pa, 2000), 1);
	cli_send(f, b, "b", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &pb, 2000), 1);
	assert_int_equal(ph_udp_relay_flows(f->r), 2);
	/* for 3 idle timeouts: a's client sends, the service sends to b's flow */
	for (int i = 0; i < 9; i++) {
		run_for(f, 50);
		cli_send(f, a, "a", 1);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
		assert_true(addr_same(&from, &pa));
		assert_int_equal(sendto(f->svc, "B", 1, 0, &pb.sa, f->alen), 1);
		assert_int_equal(recv_wait(f, b, buf, sizeof(buf), NULL, 2000), 1);
	}
	assert_int_equal(ph_udp_relay_flows(f->r), 2);
	assert_int_equal(atomic_load(&f->ctr.flows_timed_out), 0);
	/* silence: both end, one timeout later (the timer fires within it) */
	assert_true(wait_flows(f, 0, 1000));
	assert_int_equal(atomic_load(&f->ctr.flows_timed_out), 2);
	assert_int_equal(atomic_load(&f->ctr.flows_open), 0);
	/* a's next datagram makes a new flow: a new peer for the service */
	cli_send(f, a, "a", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	assert_false(addr_same(&from, &pa));
	assert_int_equal(atomic_load(&f->ctr.flows_created), 3);
	close(a);
	close(b);
	fx_free(f);
}

/* At the limit, a new client ends the least recently used flow */
static void test_lru_eviction(void **state)
{
	struct fixture *f = fx_new(AF_INET, 3, 60000, true);
	int c[4];
	union addr p[4], from;
	char buf[8];

	(void)state;
	for (int i = 0; i < 4; i++)
		c[i] = client_new(f);
	for (int i = 0; i < 3; i++) {
		cli_send(f, c[i], "x", 1);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &p[i], 2000), 1);
	}
	/* 0 sends again, the service answers 1: 2 is now the least recently used */
	cli_send(f, c[0], "x", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	assert_int_equal(sendto(f->svc, "y", 1, 0, &p[1].sa, f->alen), 1);
	assert_int_equal(recv_wait(f, c[1], buf, sizeof(buf), NULL, 2000), 1);
	cli_send(f, c[3], "x", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &p[3], 2000), 1);
	assert_int_equal(ph_udp_relay_flows(f->r), 3);
	assert_int_equal(atomic_load(&f->ctr.flows_evicted), 1);
	/* 0 and 1 kept their flows (same peer), 2 lost its (a new peer) */
	for (int i = 0; i < 3; i++) {
		cli_send(f, c[i], "z", 1);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
		assert_true(addr_same(&from, &p[i]) == (i != 2));
	}
	/* 2's new flow evicted 3, the least recently used then */
	assert_int_equal(atomic_load(&f->ctr.flows_evicted), 2);
	assert_int_equal(ph_udp_relay_flows(f->r), 3);
	for (int i = 0; i < 4; i++)
		close(c[i]);
	fx_free(f);
}

/*
 * Limit 1, two clients interleaved in one batch: each datagram evicts the
 * other client's flow, and still every datagram is delivered (the grouped
 * datagrams of a flow are sent before it is evicted), in order per client.
 */
static void test_eviction_inside_batch(void **state)
{
	struct fixture *f = fx_new(AF_INET, 1, 60000, true);
	int a = client_new(f), b = client_new(f);
	uint32_t msg[2], next[2] = { 0, 0 };

	(void)state;
	for (uint32_t i = 0; i < 10; i++) {
		msg[1] = i;
		msg[0] = 0;
		cli_send(f, a, msg, sizeof(msg));
		msg[0] = 1;
		cli_send(f, a, msg, sizeof(msg));	/* a twice: a run of one flow */
		msg[0] = 2;
		cli_send(f, b, msg, sizeof(msg));
	}
	for (int got = 0; got < 30; got++) {
		assert_int_equal(recv_wait(f, f->svc, msg, sizeof(msg), NULL, 2000), sizeof(msg));
		if (msg[0] == 2) {
			assert_int_equal(msg[1], next[1]);
			next[1]++;
		} else {
			assert_int_equal(msg[1], next[0] / 2);
			assert_int_equal(msg[0], next[0] % 2);
			next[0]++;
		}
	}
	assert_int_equal(ph_udp_relay_flows(f->r), 1);
	assert_int_equal(atomic_load(&f->ctr.flows_created), 20);
	assert_int_equal(atomic_load(&f->ctr.flows_evicted), 19);
	assert_int_equal(atomic_load(&f->ctr.dgrams_in), 30);
	close(a);
	close(b);
	fx_free(f);
}

/*
 * No service on the port: the ICMP port unreachable (ECONNREFUSED) ends the
 * flow. The service then starts on the same port: the next datagram makes
 * a new flow that reaches it.
 */
static void test_refused_ends_flow(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 60000, false);
	int cli = client_new(f);
	char buf[8];
	union addr from;

	(void)state;
	cli_send(f, cli, "q", 1);
	run_for(f, 20);
	assert_true(wait_flows(f, 0, 2000));
	assert_int_equal(atomic_load(&f->ctr.flows_created), 1);
	assert_int_equal(atomic_load(&f->ctr.flows_refused), 1);
	assert_int_equal(atomic_load(&f->ctr.flows_open), 0);

	f->svc = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(f->svc >= 0);
	assert_int_equal(bind(f->svc, &f->svc_addr.sa, f->alen), 0);
	cli_send(f, cli, "r", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	assert_int_equal(buf[0], 'r');
	assert_int_equal(ph_udp_relay_flows(f->r), 1);
	assert_int_equal(atomic_load(&f->ctr.flows_created), 2);
	close(cli);
	fx_free(f);
}

/* drop_flows ends every flow and keeps the external socket working */
static void test_drop_flows(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 60000, true);
	int c[3];
	union addr p[3], from;
	char buf[8];

	(void)state;
	for (int i = 0; i < 3; i++) {
		c[i] = client_new(f);
		cli_send(f, c[i], "x", 1);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &p[i], 2000), 1);
	}
	assert_int_equal(ph_udp_relay_flows(f->r), 3);
	ph_udp_relay_drop_flows(f->r);
	assert_int_equal(ph_udp_relay_flows(f->r), 0);
	assert_int_equal(ph_udp_ext_flows(f->x), 0);
	assert_int_equal(atomic_load(&f->ctr.flows_open), 0);
	/* answers to the old flows go nowhere (their sockets are gone) */
	sendto(f->svc, "y", 1, 0, &p[0].sa, f->alen);
	run_for(f, 20);
	assert_int_equal(recv(c[0], buf, sizeof(buf), MSG_DONTWAIT), -1);
	/* clients come back as new flows */
	cli_send(f, c[1], "z", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	assert_false(addr_same(&from, &p[1]));
	assert_int_equal(sendto(f->svc, "w", 1, 0, &from.sa, f->alen), 1);
	assert_int_equal(recv_wait(f, c[1], buf, sizeof(buf), NULL, 2000), 1);
	assert_int_equal(buf[0], 'w');
	assert_int_equal(ph_udp_relay_flows(f->r), 1);
	for (int i = 0; i < 3; i++)
		close(c[i]);
	fx_free(f);
}

/*
 * Paused (a snapshot prepare): nothing is read, no datagram moves either way
 * and no flow is made; what arrived meanwhile is relayed after the pause.
 * An external socket opened while paused starts paused. The owner's flow
 * count follows flows made, timed out and dropped.
 */
static void test_pause(void **state)
{
	struct fixture *f = fx_new(AF_INET, 16, 60000, true);
	_Atomic uint32_t port_flows = 0;
	struct ph_udp_ext *x2;
	union addr ext2, p0, from;
	int xfd2 = udp_bound(AF_INET, &ext2, true);
	int c0 = client_new(f), c1 = client_new(f);
	char buf[8];

	(void)state;
	assert_int_equal(ph_udp_ext_open(f->r, xfd2, &f->svc_addr.sa, f->alen, &port_flows, &x2), 0);
	assert_int_equal(sendto(c0, "a", 1, 0, &ext2.sa, f->alen), 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &p0, 2000), 1);
	assert_int_equal(atomic_load(&port_flows), 1);

	assert_false(ph_udp_relay_paused(f->r));
	assert_int_equal(ph_udp_relay_pause(f->r, true), 0);
	assert_int_equal(ph_udp_relay_pause(f->r, true), 0);	/* idempotent */
	assert_true(ph_udp_relay_paused(f->r));
	/* an existing flow's answer waits, a new client's datagram waits */
	assert_int_equal(sendto(f->svc, "b", 1, 0, &p0.sa, f->alen), 1);
	assert_int_equal(sendto(c1, "c", 1, 0, &ext2.sa, f->alen), 1);
	cli_send(f, c0, "d", 1);	/* to the first external socket */
	run_for(f, 50);
	assert_int_equal(recv(c0, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(recv(f->svc, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(ph_udp_relay_flows(f->r), 1);
	assert_int_equal(atomic_load(&f->ctr.dgrams_in), 1);
	assert_int_equal(atomic_load(&f->ctr.dgrams_out), 0);

	/* resumed: everything that waited moves */
	assert_int_equal(ph_udp_relay_pause(f->r, false), 0);
	assert_false(ph_udp_relay_paused(f->r));
	assert_int_equal(recv_wait(f, c0, buf, sizeof(buf), NULL, 2000), 1);
	assert_int_equal(buf[0], 'b');
	for (int i = 0; i < 2; i++) {
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
		assert_true(buf[0] == 'c' || buf[0] == 'd');
	}
	assert_int_equal(ph_udp_relay_flows(f->r), 3);
	assert_int_equal(atomic_load(&port_flows), 2);	/* c0 and c1 on x2 */

	/* paused with an external socket opened meanwhile: it waits too */
	{
		struct ph_udp_ext *x3;
		union addr ext3;
		int xfd3 = udp_bound(AF_INET, &ext3, true);

		assert_int_equal(ph_udp_relay_pause(f->r, true), 0);
		assert_int_equal(ph_udp_ext_open(f->r, xfd3, &f->svc_addr.sa, f->alen, NULL, &x3), 0);
		assert_int_equal(sendto(c1, "e", 1, 0, &ext3.sa, f->alen), 1);
		run_for(f, 50);
		assert_int_equal(recv(f->svc, buf, sizeof(buf), MSG_DONTWAIT), -1);
		ph_udp_relay_drop_flows(f->r);	/* what a prepare does next */
		assert_int_equal(atomic_load(&port_flows), 0);
		assert_int_equal(ph_udp_relay_pause(f->r, false), 0);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), NULL, 2000), 1);
		assert_int_equal(buf[0], 'e');
		assert_int_equal(ph_udp_ext_flows(x3), 1);
	}
	close(c0);
	close(c1);
	fx_free(f);
}

/* Closing an external socket ends its flows only; freeing the relay ends the rest */
static void test_ext_close_and_free(void **state)
{
	struct fixture *f = fx_new(AF_INET, 64, 60000, true);
	struct ph_udp_ext *x2;
	union addr ext2, from;
	int xfd2 = udp_bound(AF_INET, &ext2, true);
	int c[10];
	char buf[8];
	_Atomic uint32_t port_flows = 0;

	(void)state;
	assert_int_equal(ph_udp_ext_open(f->r, xfd2, &f->svc_addr.sa, f->alen, &port_flows, &x2), 0);
	for (int i = 0; i < 10; i++) {
		c[i] = client_new(f);
		if (i % 2)
			assert_int_equal(sendto(c[i], "x", 1, 0, &ext2.sa, f->alen), 1);
		else
			cli_send(f, c[i], "x", 1);
		assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	}
	assert_int_equal(ph_udp_ext_flows(f->x), 5);
	assert_int_equal(ph_udp_ext_flows(x2), 5);
	assert_int_equal(atomic_load(&port_flows), 5);	/* the owner's count: x2's only */
	ph_udp_ext_close(x2);
	assert_int_equal(atomic_load(&port_flows), 0);
	assert_int_equal(ph_udp_relay_flows(f->r), 5);
	assert_int_equal(ph_udp_ext_flows(f->x), 5);
	/* the closed socket's port is free again */
	xfd2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(xfd2, &ext2.sa, f->alen), 0);
	close(xfd2);
	/* the other one still relays */
	cli_send(f, c[0], "y", 1);
	assert_int_equal(recv_wait(f, f->svc, buf, sizeof(buf), &from, 2000), 1);
	for (int i = 0; i < 10; i++)
		close(c[i]);
	fx_free(f);	/* frees with 5 flows open; counts descriptors */
}

/*
 * No descriptor below the relay's ceiling (RLIMIT_NOFILE - PH_FD_RESERVE):
 * a new client gets no flow, its datagram is counted, nothing leaks.
 */
static void test_no_descriptor(void **state)
{
	struct fixture *f;
	struct rlimit old, lim;
	int cli, probe;
	char buf[8];

	(void)state;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	probe = dup(0);	/* the lowest free number: the fixture's sockets follow it */
	assert_true(probe >= 0);
	close(probe);
	lim.rlim_cur = (rlim_t)probe + 64 + 3;	/* ceiling: room for the fixture and client */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	f = fx_new(AF_INET, 16, 60000, true);	/* reads the ceiling */
	cli = client_new(f);
	cli_send(f, cli, "x", 1);
	run_for(f, 20);
	assert_int_equal(recv(f->svc, buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(atomic_load(&f->ctr.drops[PH_UDP_DROP_NO_FLOW]), 1);
	assert_int_equal(ph_udp_relay_flows(f->r), 0);
	close(cli);
	fx_free(f);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

static void test_bad_arguments(void **state)
{
	struct ph_loop loop;
	struct ph_udp_counters ctr = { 0 };
	struct ph_udp_relay *r;
	struct ph_udp_ext *x;
	struct sockaddr_un_like {
		sa_family_t family;
		char path[20];
	} bad = { .family = AF_UNIX };
	int fds = count_fds(), fd;

	(void)state;
	assert_int_equal(ph_loop_init(&loop, no_wake, NULL), 0);
	assert_int_equal(ph_udp_relay_new(&loop, 0, 1000, &ctr, &r), -EINVAL);
	assert_int_equal(ph_udp_relay_new(&loop, 10, 0, &ctr, &r), -EINVAL);
	assert_int_equal(ph_udp_relay_new(&loop, 10, 1000, &ctr, &r), 0);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/* consumed even on error */
	assert_int_equal(ph_udp_ext_open(r, fd, (struct sockaddr *)&bad, sizeof(bad), NULL, &x), -EINVAL);
	assert_string_equal(ph_udp_drop_name(PH_UDP_DROP_BUFFER_FULL), "buffer_full");
	assert_string_equal(ph_udp_drop_name(PH_UDP_DROP__COUNT), "?");
	assert_false(ph_udp_addr_eq((struct sockaddr *)&bad, (struct sockaddr *)&bad));
	ph_udp_relay_free(r);
	ph_loop_fini(&loop);
	assert_int_equal(count_fds(), fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_ipv4),
		cmocka_unit_test(test_sizes_ipv6),
		cmocka_unit_test(test_empty_datagram),
		cmocka_unit_test(test_order_per_flow),
		cmocka_unit_test(test_trains_ipv4),
		cmocka_unit_test(test_trains_ipv6),
		cmocka_unit_test(test_flow_per_client),
		cmocka_unit_test(test_idle_timeout),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_eviction_inside_batch),
		cmocka_unit_test(test_refused_ends_flow),
		cmocka_unit_test(test_drop_flows),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_ext_close_and_free),
		cmocka_unit_test(test_no_descriptor),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
