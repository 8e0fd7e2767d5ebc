// SPDX-License-Identifier: MIT
/* discovery_events.c - a BPF program on inet_sock_set_state says "look now" when a TCP socket
 * enters or leaves LISTEN in our network namespace
 *
 * Theory of Operation
 * ===================
 * The scan (discovery.c) stays the single source of truth; this file only
 * tells the port worker when to scan. A 50-instruction program, assembled
 * here and loaded with the bpf() system call (no libbpf, no clang, no BTF:
 * the static build stays self-contained), runs on the raw tracepoint
 * inet_sock_set_state, whose arguments (sk, oldstate, newstate) have been
 * the same since Linux 4.16. For a socket entering TCP_LISTEN or leaving it
 * for TCP_CLOSE (not LISTEN -> SYN_RECV: that is a connection's child socket,
 * cloned from its listener, once per accepted connection) it
 *
 *   1. copies the first 56 bytes of the socket (struct sock_common) with
 *      bpf_probe_read_kernel(): skc_rcv_saddr at 4, skc_num at 14,
 *      skc_family at 16 and skc_net (the struct net address) at 48 - a
 *      layout unchanged on 64-bit kernels for a decade, and checked at run
 *      time (below);
 *   2. drops it unless skc_net equals the netns the daemon stored in the
 *      configuration array (0: not known yet, pass everything);
 *   3. writes a 32-byte record (struct ph_listen_event, with the time from
 *      bpf_ktime_get_ns()) into a BPF ring buffer; if the ring is full it
 *      counts a lost event instead.
 *
 * The ring buffer's fd is readable (epoll) while records are pending, so the
 * worker loop wakes, consumes everything (ph_events_drain) and scans once: a
 * burst of events is one scan. A lost record needs no repair: it was lost
 * because records were pending, and they wake the worker, whose scan comes
 * after the loss.
 *
 * Finding our namespace (calibration): with the filter open, ph_events_open()
 * listens on 127.0.0.1 and on ::1 (port 0, so the kernel picks free ports)
 * and waits for both records. They must carry the same nonzero skc_net: a
 * wrong offset would read a per-socket or a per-family field and differ
 * between an IPv4 and an IPv6 socket, so a kernel with another layout fails
 * the check and the daemon polls, instead of filtering out its own
 * namespace. Without IPv6 two IPv4 listeners are compared. The address is
 * only compared, never dereferenced, and never leaves the process.
 *
 * The tracepoint fires just before the socket is hashed (listen) or unhashed
 * (close); the worker therefore scans once more shortly after an event
 * (lifecycle.c), for a listener whose process was preempted in between.
 *
 * Privileges: CAP_BPF and CAP_PERFMON (or root). Every object is owned by
 * fds of this struct: ph_events_close() detaches and frees all of it.
 */
#include "discovery_events.h"
#include "bpf_sys.h"
#include "netutil.h"

#include <errno.h>
#include <string.h>

#ifdef PH_HAVE_BPF

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bpf_asm.h"
#include "log.h"
#include "loop.h"

const bool ph_events_built = true;

_Static_assert(sizeof(struct ph_listen_event) == 32, "the BPF program writes 32 bytes");

/* 6,500 records of 40 bytes: a burst of 1,000 listeners fits, with the
 * 1,000 external listeners it makes the daemon open */
#define RING_BYTES	(256 * 1024)
#define TCP_LISTEN_STATE PH_TCP_LISTEN
#define TCP_CLOSE_STATE	PH_TCP_CLOSE
#define CALIBRATE_MS	500		/* how long to wait for our own two listeners */
#define TP_NAME		"inet_sock_set_state"

/* byte offsets in struct sock_common (64-bit) and in the record */
#define SK_COPY		56
#define SK_SADDR	4
#define SK_NUM		14
#define SK_FAMILY	16
#define SK_NET		48
/* stack: fp-56..-1 copy of the socket, fp-60 map key, fp-96..-65 the record */
#define FP_SK		(-SK_COPY)
#define FP_KEY		(-60)
#define FP_REC		(-96)

/* configuration array element: [0] our netns (0: any), [1] lost records */
#define CONF_NETNS	0
#define CONF_LOST	8
#define CONF_SIZE	16

/*
 * The program. Jump offsets count instructions after the jump; "out" is the
 * last two instructions (return 0). Raw tracepoint context: u64 args[]
 * = { sk, oldstate, newstate }.
 */
#define PROG_LEN 50
static void build_prog(struct bpf_insn *p, int ring_fd, int conf_fd)
{
	const struct bpf_insn prog[PROG_LEN] = {
		/* 0 */ MOV_REG(R6, R1),
		LDX(BPF_DW, R2, R6, 8),				/* oldstate */
		LDX(BPF_DW, R3, R6, 16),			/* newstate */
		JEQ_IMM(R3, TCP_LISTEN_STATE, 2),		/* listen: -> 6 */
		JNE_IMM(R2, TCP_LISTEN_STATE, 43),		/* -> out (48) */
		JNE_IMM(R3, TCP_CLOSE_STATE, 42),		/* an accepted child: -> out */
		/* 6: copy the socket's first bytes to the stack */
		MOV_REG(R1, FP), ADD_IMM(R1, FP_SK), MOV_IMM(R2, SK_COPY),
		LDX(BPF_DW, R3, R6, 0),				/* sk */
		CALL(BPF_FUNC_probe_read_kernel),
		/* 11: conf = lookup(conf_map, 0) */
		ST_IMM(BPF_W, FP, FP_KEY, 0),
		LD_MAP(R1, conf_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_KEY),
		CALL(BPF_FUNC_map_lookup_elem),
		/* 17 */ JEQ_IMM(R0, 0, 30),			/* -> out */
		MOV_REG(R7, R0),
		LDX(BPF_DW, R1, R7, CONF_NETNS),
		JEQ_IMM(R1, 0, 2),				/* not calibrated: -> 23 */
		/* 21 */ LDX(BPF_DW, R2, FP, FP_SK + SK_NET),
		JNE_REG(R1, R2, 25),				/* other netns: -> out */
		/* 23: the record (struct ph_listen_event) */
		CALL(BPF_FUNC_ktime_get_ns), STX(BPF_DW, FP, R0, FP_REC + 8),
		ST_IMM(BPF_DW, FP, FP_REC + 24, 0),		/* family and padding */
		LDX(BPF_DW, R1, FP, FP_SK + SK_NET), STX(BPF_DW, FP, R1, FP_REC),
		LDX(BPF_W, R1, FP, FP_SK + SK_SADDR), STX(BPF_W, FP, R1, FP_REC + 16),
		LDX(BPF_H, R1, FP, FP_SK + SK_NUM), STX(BPF_H, FP, R1, FP_REC + 20),
		LDX(BPF_DW, R1, R6, 8), STX(BPF_B, FP, R1, FP_REC + 22),
		LDX(BPF_DW, R1, R6, 16), STX(BPF_B, FP, R1, FP_REC + 23),
		LDX(BPF_H, R1, FP, FP_SK + SK_FAMILY), STX(BPF_H, FP, R1, FP_REC + 24),
		/* 38 */ LD_MAP(R1, ring_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_REC),
		MOV_IMM(R3, sizeof(struct ph_listen_event)), MOV_IMM(R4, 0),
		CALL(BPF_FUNC_ringbuf_output),
		/* 45 */ JEQ_IMM(R0, 0, 2),			/* -> out */
		MOV_IMM(R1, 1),
		XADD64(R7, R1, CONF_LOST),
		/* 48: out */
		MOV_IMM(R0, 0),
		EXIT(),
	};

	memcpy(p, prog, sizeof(prog));
}

/* Load the program; on a verifier refusal the first line of its log goes to @why */
static int prog_load(struct ph_events *ev, char *why, size_t len)
{
	struct bpf_insn insns[PROG_LEN];

	build_prog(insns, ev->ring_fd, ev->conf_fd);
	return ph_bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, 0, insns, PROG_LEN, why, len);
}

static int attach(int prog_fd)
{
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.raw_tracepoint.name = (uintptr_t)TP_NAME;
	a.raw_tracepoint.prog_fd = (unsigned)prog_fd;
	return ph_bpf(BPF_RAW_TRACEPOINT_OPEN, &a);
}

static int map_ring(struct ph_events *ev)
{
	long page = sysconf(_SC_PAGESIZE);

	ev->cons = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, ev->ring_fd, 0);
	if (ev->cons == MAP_FAILED) {
		ev->cons = NULL;
		return -errno;
	}
	/* producer page, then the data pages mapped twice (records may wrap) */
	ev->prod = mmap(NULL, (size_t)page + 2 * RING_BYTES, PROT_READ, MAP_SHARED, ev->ring_fd,
			page);
	if (ev->prod == MAP_FAILED) {
		ev->prod = NULL;
		return -errno;
	}
	ev->conf = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, ev->conf_fd, 0);
	if (ev->conf == MAP_FAILED) {
		ev->conf = NULL;
		return -errno;
	}
	return 0;
}

static size_t bpf_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
			void *arg)
{
	const uint8_t *data = (const uint8_t *)ev->prod + sysconf(_SC_PAGESIZE);
	uint64_t *consp = ev->cons, *prodp = ev->prod;
	uint64_t cons = __atomic_load_n(consp, __ATOMIC_ACQUIRE);
	uint64_t prod = __atomic_load_n(prodp, __ATOMIC_ACQUIRE);
	size_t n = 0;

	while (cons < prod) {
		const uint32_t *hdr = (const uint32_t *)(data + (cons & (RING_BYTES - 1)));
		uint32_t len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);

		if (len & BPF_RINGBUF_BUSY_BIT)
			break;		/* being written: the wake for it comes later */
		if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
			struct ph_listen_event e;

			n++;
			if (fn && (len & ~BPF_RINGBUF_DISCARD_BIT) >= sizeof(e)) {
				memcpy(&e, (const uint8_t *)hdr + BPF_RINGBUF_HDR_SZ, sizeof(e));
				fn(&e, arg);
			}
		}
		len &= ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
		cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~7u;
		__atomic_store_n(consp, cons, __ATOMIC_RELEASE);
	}
	return n;
}

static uint64_t bpf_lost_delta(struct ph_events *ev)
{
	uint64_t lost, d;

	if (!ev->conf)
		return 0;
	lost = __atomic_load_n(&ev->conf[CONF_LOST / 8], __ATOMIC_RELAXED);
	d = lost - ev->lost_seen;
	ev->lost_seen = lost;
	return d;
}

/* struct calib - one calibration listener: its port, and the netns its record carried */
struct calib {
	uint16_t port;
	uint64_t netns;
};

static void calib_match(const struct ph_listen_event *e, void *arg)
{
	struct calib *k = arg;

	for (int i = 0; i < 2; i++)
		if (e->newstate == TCP_LISTEN_STATE && e->port == k[i].port && !k[i].netns)
			k[i].netns = e->netns;
}

/* Find our netns from two listeners of our own (see the top of the file) */
static int calibrate(struct ph_events *ev, char *why, size_t len)
{
	struct calib k[2] = { { 0 } };
	int fds[2], ret = 0;
	uint64_t deadline = ph_now_ms() + CALIBRATE_MS;

	fds[0] = ph_loopback_listen(AF_INET, &k[0].port);
	fds[1] = ph_loopback_listen(AF_INET6, &k[1].port);
	if (fds[1] < 0)
		fds[1] = ph_loopback_listen(AF_INET, &k[1].port);
	if (fds[0] < 0 || fds[1] < 0) {
		ret = fds[0] < 0 ? fds[0] : fds[1];
		snprintf(why, len, "cannot listen on loopback to calibrate: %s", ph_strerror(ret));
		goto out;
	}
	while (!k[0].netns || !k[1].netns) {
		struct pollfd pfd = { .fd = ev->ring_fd, .events = POLLIN };
		uint64_t now = ph_now_ms();

		bpf_drain(ev, calib_match, k);
		if (k[0].netns && k[1].netns)
			break;
		if (now >= deadline) {
			snprintf(why, len, "the tracepoint did not report our own listeners");
			ret = -ETIMEDOUT;
			goto out;
		}
		poll(&pfd, 1, (int)(deadline - now));
	}
	if (k[0].netns != k[1].netns) {
		snprintf(why, len, "unexpected struct sock layout (netns of two sockets differ)");
		ret = -EPROTO;
		goto out;
	}
	__atomic_store_n(&ev->conf[CONF_NETNS / 8], k[0].netns, __ATOMIC_RELEASE);
out:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return ret;
}

static const char *perm_hint(int err)
{
	return err == -EPERM || err == -EACCES ? " (needs CAP_BPF and CAP_PERFMON)" : "";
}

int ph_events_open(struct ph_events *ev, char *why, size_t len)
{
	int ret;

	ph_events_init(ev);
	why[0] = 0;
	ret = ev->ring_fd = ph_bpf_map_create(BPF_MAP_TYPE_RINGBUF, 0, 0, RING_BYTES, 0);
	if (ret < 0) {
		snprintf(why, len, "bpf ring buffer: %s%s", ph_strerror(ret), perm_hint(ret));
		goto fail;
	}
	ret = ev->conf_fd = ph_bpf_map_create(BPF_MAP_TYPE_ARRAY, 4, CONF_SIZE, 1, BPF_F_MMAPABLE);
	if (ret < 0) {
		snprintf(why, len, "bpf array: %s%s", ph_strerror(ret), perm_hint(ret));
		goto fail;
	}
	ret = map_ring(ev);
	if (ret < 0) {
		snprintf(why, len, "mmap of the bpf maps: %s", ph_strerror(ret));
		goto fail;
	}
	ret = ev->prog_fd = prog_load(ev, why, len);
	if (ret < 0) {
		if (!why[0])
			snprintf(why, len, "bpf program load: %s%s", ph_strerror(ret), perm_hint(ret));
		goto fail;
	}
	ret = ev->link_fd = attach(ev->prog_fd);
	if (ret < 0) {
		snprintf(why, len, "attach to raw tracepoint %s: %s%s", TP_NAME, ph_strerror(ret),
			 perm_hint(ret));
		goto fail;
	}
	ret = calibrate(ev, why, len);
	if (ret < 0)
		goto fail;
	bpf_drain(ev, NULL, NULL);
	ev->source = PH_EVENTS_BPF;
	return 0;
fail:
	ph_events_close(ev);
	return ret;
}

static void udp_close(struct ph_events *ev);

static void bpf_close(struct ph_events *ev)
{
	long page = sysconf(_SC_PAGESIZE);

	udp_close(ev);
	if (ev->link_fd >= 0)
		close(ev->link_fd);
	if (ev->prog_fd >= 0)
		close(ev->prog_fd);
	if (ev->cons)
		munmap(ev->cons, (size_t)page);
	if (ev->prod)
		munmap(ev->prod, (size_t)page + 2 * RING_BYTES);
	if (ev->conf)
		munmap((void *)ev->conf, (size_t)page);
	if (ev->ring_fd >= 0)
		close(ev->ring_fd);
	if (ev->conf_fd >= 0)
		close(ev->conf_fd);
}


/* ---- UDP: cgroup socket hooks ------------------------------------------- */

/*
 * UDP has no tracepoint for bind. Three cgroup socket programs (one
 * instruction sequence, loaded per attach type) on the root of the cgroup v2
 * hierarchy run for every socket of every process below it: post-bind
 * (IPv4, IPv6: after the port is taken and the socket hashed) and release
 * (close of the last descriptor: just before the kernel unhashes it). Each
 * keeps only UDP sockets in state CLOSE (bound or not, without a peer: a
 * connect()ed client is ESTABLISHED) with a port, copies struct sock_common
 * with bpf_probe_read_kernel() (the context is the struct sock; the release
 * hook may not read src_port from it) and filters on the same skc_net as the
 * TCP program, then writes the same record with proto IPPROTO_UDP into the
 * same ring. It returns 1: the bind or close goes ahead whatever happens.
 * Linked with BPF_LINK_CREATE: closing the link detaches, so nothing stays
 * attached after the daemon exits or crashes.
 */
#define UDP_OUT		0x7fff		/* jump placeholder: "out", fixed up below */
#define UDP_PROG_MAX	56
#define UDP_CALIBRATE_MS 200

static const enum bpf_attach_type udp_attach[3] = {
	BPF_CGROUP_INET4_POST_BIND, BPF_CGROUP_INET6_POST_BIND, BPF_CGROUP_INET_SOCK_RELEASE,
};

static unsigned build_udp_prog(struct bpf_insn *p, int ring_fd, int conf_fd, int newstate)
{
	const struct bpf_insn prog[] = {
		MOV_REG(R6, R1),
		LDX(BPF_W, R2, R6, offsetof(struct bpf_sock, protocol)),
		JNE_IMM(R2, IPPROTO_UDP, UDP_OUT),
		LDX(BPF_W, R2, R6, offsetof(struct bpf_sock, state)),
		JNE_IMM(R2, TCP_CLOSE_STATE, UDP_OUT),		/* a connected client */
		MOV_REG(R1, FP), ADD_IMM(R1, FP_SK), MOV_IMM(R2, SK_COPY), MOV_REG(R3, R6),
		CALL(BPF_FUNC_probe_read_kernel),
		JNE_IMM(R0, 0, UDP_OUT),
		LDX(BPF_H, R1, FP, FP_SK + SK_NUM),
		JEQ_IMM(R1, 0, UDP_OUT),			/* never bound */
		ST_IMM(BPF_W, FP, FP_KEY, 0),
		LD_MAP(R1, conf_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_KEY),
		CALL(BPF_FUNC_map_lookup_elem),
		JEQ_IMM(R0, 0, UDP_OUT),
		MOV_REG(R7, R0),
		LDX(BPF_DW, R1, R7, CONF_NETNS),
		JEQ_IMM(R1, 0, 2),				/* not calibrated: pass */
		LDX(BPF_DW, R2, FP, FP_SK + SK_NET),
		JNE_REG(R1, R2, UDP_OUT),			/* other netns */
		CALL(BPF_FUNC_ktime_get_ns), STX(BPF_DW, FP, R0, FP_REC + 8),
		ST_IMM(BPF_DW, FP, FP_REC + 24, 0),
		LDX(BPF_DW, R1, FP, FP_SK + SK_NET), STX(BPF_DW, FP, R1, FP_REC),
		LDX(BPF_W, R1, FP, FP_SK + SK_SADDR), STX(BPF_W, FP, R1, FP_REC + 16),
		LDX(BPF_H, R1, FP, FP_SK + SK_NUM), STX(BPF_H, FP, R1, FP_REC + 20),
		ST_IMM(BPF_B, FP, FP_REC + 22, 0),
		ST_IMM(BPF_B, FP, FP_REC + 23, newstate),
		LDX(BPF_H, R1, FP, FP_SK + SK_FAMILY), STX(BPF_H, FP, R1, FP_REC + 24),
		ST_IMM(BPF_B, FP, FP_REC + 26, IPPROTO_UDP),
		LD_MAP(R1, ring_fd),
		MOV_REG(R2, FP), ADD_IMM(R2, FP_REC),
		MOV_IMM(R3, sizeof(struct ph_listen_event)), MOV_IMM(R4, 0),
		CALL(BPF_FUNC_ringbuf_output),
		JEQ_IMM(R0, 0, UDP_OUT),
		MOV_IMM(R1, 1),
		XADD64(R7, R1, CONF_LOST),
		/* out: allow the bind or release */
		MOV_IMM(R0, 1),
		EXIT(),
	};
	unsigned n = sizeof(prog) / sizeof(prog[0]);

	_Static_assert(sizeof(prog) / sizeof(prog[0]) <= UDP_PROG_MAX, "UDP_PROG_MAX");
	memcpy(p, prog, sizeof(prog));
	for (unsigned i = 0; i < n; i++)
		if (BPF_CLASS(p[i].code) == BPF_JMP && BPF_OP(p[i].code) != BPF_CALL &&
		    p[i].off == UDP_OUT)
			p[i].off = (int16_t)(n - 2 - i - 1);
	return n;
}

/* The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo,
 * opened. (read(), not stdio: the static daemon carries no scanf.) */
static int cgroup2_open(void)
{
	char buf[4096];
	size_t have = 0;
	int fd = -ENOENT, mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);

	if (mi < 0)
		return -errno;
	while (fd == -ENOENT) {
		ssize_t n = read(mi, buf + have, sizeof(buf) - 1 - have);
		char *line = buf, *nl;

		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		while (fd == -ENOENT && (nl = strchr(line, '\n'))) {
			char *mnt;

			*nl = 0;
			mnt = ph_mountinfo_cgroup2(line);
			if (mnt) {
				fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (fd < 0)
					fd = -ENOENT;
			}
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		if (have == sizeof(buf) - 1)
			have = 0;	/* a line longer than the buffer: not ours */
		memmove(buf, line, have);
	}
	close(mi);
	return fd;
}

static void udp_close(struct ph_events *ev)
{
	for (int i = 0; i < 3; i++) {
		if (ev->udp_link[i] >= 0)
			close(ev->udp_link[i]);
		ev->udp_link[i] = -1;
	}
}

struct udp_calib {
	uint16_t port;
	bool seen;
	uint64_t netns;
};

static void udp_calib_match(const struct ph_listen_event *e, void *arg)
{
	struct udp_calib *k = arg;

	if (e->proto == IPPROTO_UDP && e->newstate == PH_UDP_BOUND && e->port == k->port) {
		k->seen = true;
		k->netns = e->netns;
	}
}

/* Bind a UDP socket of our own on 127.0.0.1 and wait for its record */
static int udp_calibrate(struct ph_events *ev, char *why, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct udp_calib k = { 0 };
	uint64_t deadline = ph_now_ms() + UDP_CALIBRATE_MS;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &al)) {
		ret = -errno;
		snprintf(why, len, "cannot bind UDP on loopback to check the hook: %s",
			 ph_strerror(ret));
		goto out;
	}
	k.port = ntohs(a.sin_port);
	while (!k.seen) {
		struct pollfd pfd = { .fd = ev->ring_fd, .events = POLLIN };
		uint64_t now = ph_now_ms();

		bpf_drain(ev, udp_calib_match, &k);
		if (k.seen)
			break;
		if (now >= deadline) {
			snprintf(why, len, "the cgroup hook did not report our own UDP bind "
				 "(the daemon outside the cgroup v2 hierarchy it sees?)");
			ret = -ETIMEDOUT;
			goto out;
		}
		poll(&pfd, 1, (int)(deadline - now));
	}
	if (k.netns != ev->conf[CONF_NETNS / 8]) {
		snprintf(why, len, "the UDP record's netns differs from the TCP one");
		ret = -EPROTO;
	}
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

int ph_events_open_udp(struct ph_events *ev, char *why, size_t len)
{
	struct bpf_insn insns[UDP_PROG_MAX];
	int cg, ret = 0;

	why[0] = 0;
	if (ev->source != PH_EVENTS_BPF) {
		snprintf(why, len, "the UDP hooks need the BPF source");
		return -EOPNOTSUPP;
	}
	cg = cgroup2_open();
	if (cg < 0) {
		snprintf(why, len, "no cgroup v2 hierarchy to attach to: %s", ph_strerror(cg));
		return cg;
	}
	for (int i = 0; i < 3 && !ret; i++) {
		unsigned n = build_udp_prog(insns, ev->ring_fd, ev->conf_fd,
					    i < 2 ? PH_UDP_BOUND : PH_UDP_RELEASED);
		int prog = ph_bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK, udp_attach[i], insns, n,
					    why, len);

		if (prog < 0) {
			ret = prog;
			if (!why[0])
				snprintf(why, len, "cgroup socket program load: %s%s",
					 ph_strerror(ret), perm_hint(ret));
			break;
		}
		ret = ev->udp_link[i] = ph_bpf_link_create(prog, cg, udp_attach[i]);
		close(prog);	/* the link holds it */
		if (ret < 0)
			snprintf(why, len, "cgroup socket program link: %s%s", ph_strerror(ret),
				 perm_hint(ret));
		else
			ret = 0;
	}
	close(cg);
	if (!ret)
		ret = udp_calibrate(ev, why, len);
	if (ret) {
		udp_close(ev);
		return ret;
	}
	bpf_drain(ev, NULL, NULL);	/* the calibration socket's release */
	return 0;
}

#else /* no <linux/bpf.h>, PH_NO_EVENTS, or not a 64-bit kernel layout */

#include <stdio.h>

const bool ph_events_built = false;

int ph_events_open(struct ph_events *ev, char *why, size_t len)
{
	ph_events_init(ev);
	snprintf(why, len, "built without BPF listen events");
	return -ENOSYS;
}

static size_t bpf_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
			void *arg)
{
	(void)ev, (void)fn, (void)arg;
	return 0;
}

static uint64_t bpf_lost_delta(struct ph_events *ev)
{
	(void)ev;
	return 0;
}

static void bpf_close(struct ph_events *ev)
{
	(void)ev;
}

int ph_events_open_udp(struct ph_events *ev, char *why, size_t len)
{
	(void)ev;
	snprintf(why, len, "built without BPF listen events");
	return -ENOSYS;
}

#endif

/* ---- either source ------------------------------------------------------- */

char *ph_mountinfo_cgroup2(char *line)
{
	char *sep = strstr(line, " - "), *f = line;

	if (!sep || strncmp(sep + 3, "cgroup2 ", 8))
		return NULL;
	for (int i = 0; i < 4; i++) {	/* ID PARENT MAJ:MIN ROOT MOUNTPOINT */
		f = strchr(f, ' ');
		if (!f)
			return NULL;
		f++;
	}
	*strchrnul(f, ' ') = 0;
	return f;
}


void ph_events_init(struct ph_events *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->ring_fd = ev->conf_fd = ev->prog_fd = ev->link_fd = ev->perf_ep = -1;
	for (int i = 0; i < 3; i++)
		ev->udp_link[i] = -1;
}

bool ph_events_udp(const struct ph_events *ev)
{
	return ev->udp_link[0] >= 0;
}

int ph_events_open_perf(struct ph_events *ev, char *why, size_t len)
{
	int ret;

	ph_events_init(ev);
	why[0] = 0;
	ret = ph_perf_open(ev, why, len);
	if (ret < 0) {
		ph_perf_close(ev);
		ph_events_init(ev);
		return ret;
	}
	ev->source = PH_EVENTS_PERF;
	return 0;
}

int ph_events_fd(const struct ph_events *ev)
{
	switch (ev->source) {
	case PH_EVENTS_BPF:
		return ev->ring_fd;
	case PH_EVENTS_PERF:
		return ev->perf_ep;
	default:
		return -1;
	}
}

size_t ph_events_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		       void *arg)
{
	switch (ev->source) {
	case PH_EVENTS_BPF:
		return bpf_drain(ev, fn, arg);
	case PH_EVENTS_PERF:
		return ph_perf_drain(ev, fn, arg);
	default:
		return 0;
	}
}

uint64_t ph_events_lost_delta(struct ph_events *ev)
{
	uint64_t d;

	switch (ev->source) {
	case PH_EVENTS_BPF:
		return bpf_lost_delta(ev);
	case PH_EVENTS_PERF:
		d = ev->perf_lost;
		ev->perf_lost = 0;
		return d;
	default:
		return 0;
	}
}

const char *ph_events_source_name(enum ph_events_source s)
{
	return s == PH_EVENTS_BPF ? "bpf" : s == PH_EVENTS_PERF ? "perf" : "none";
}

void ph_events_close(struct ph_events *ev)
{
	bpf_close(ev);
	ph_perf_close(ev);
	ph_events_init(ev);
}
