// SPDX-License-Identifier: MIT
/* discovery_perf.c - the fallback listen-event source: the sock:inet_sock_set_state perf
 * tracepoint on every CPU, filtered in the kernel to LISTEN transitions
 *
 * Theory of Operation
 * ===================
 * Where the BPF program cannot be had (no bpf() system call, a kernel
 * without CONFIG_BPF_SYSCALL, a seccomp policy refusing it, CAP_BPF not
 * granted) but tracepoints can, the same "look now" comes from a perf
 * tracepoint event (CAP_PERFMON, or kernel.perf_event_paranoid -1):
 *
 *   1. The event's id is read from tracefs:
 *      /sys/kernel/tracing/events/sock/inet_sock_set_state/id, or the
 *      same under /sys/kernel/debug/tracing. The daemon never mounts
 *      tracefs (that would change the guest's mount table and need
 *      CAP_SYS_ADMIN); where it is not mounted this source is not used
 *      and the start-up log says so. systemd mounts it at boot.
 *   2. A system-wide event is per CPU (perf does not allow one buffer for
 *      several CPUs), so one is opened per configured CPU (offline ones are
 *      skipped: a listener on a CPU brought online later is found by the
 *      safety-net scan), each with a small mmapped ring and wakeup_events 1.
 *      The fds go into one epoll set of their own, whose fd is what the
 *      worker's loop watches.
 *   3. An ftrace filter on each event keeps only TCP sockets entering
 *      LISTEN or leaving it for CLOSE ("protocol == 6 && (newstate == 10 ||
 *      (oldstate == 10 && newstate == 7))"), so accepted connections (their
 *      child socket goes LISTEN -> SYN_RECV) and every other TCP state
 *      change never wake the daemon. Kernels whose tracepoint has no
 *      protocol field get the filter without that clause.
 *   4. Calibration, as for BPF: listeners on 127.0.0.1:0 and [::1]:0 must
 *      come back with their ports and families at the offsets this file
 *      reads (the format of Linux 5.6 and later: sport at 24, family at 28,
 *      saddr at 32); otherwise the source is refused, the daemon polls.
 *
 * What this source cannot do is filter on the network namespace: the
 * tracepoint's record carries no netns and the filter has nothing to match
 * it with. A listener opened in another namespace therefore costs one scan
 * (coalesced with any others pending), where the BPF source drops it in the
 * kernel. Records are still read for their port and family, so the
 * daemon's own external listeners cause no scan (lifecycle.c).
 *
 * A full ring is reported by the kernel as a PERF_RECORD_LOST record: the
 * count goes to the lost counter, and the worker scans, as with BPF.
 */
#include "discovery_events.h"
#include "netutil.h"

#include <errno.h>
#include <string.h>

#if defined(__has_include) && __has_include(<linux/perf_event.h>) && !defined(PH_NO_EVENTS)

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define PERF_DATA_PAGES	2	/* per CPU; a power of two; ~85 records */
#define CALIBRATE_MS	500
#define MAX_CPUS	1024

/* the tracepoint's record (after its 8 common bytes), Linux 5.6+ */
#define TP_OLDSTATE	16
#define TP_NEWSTATE	20
#define TP_SPORT	24
#define TP_FAMILY	28
#define TP_SADDR	32
#define TP_MIN_LEN	36

static const char *const id_paths[] = {
	"/sys/kernel/tracing/events/sock/inet_sock_set_state/id",
	"/sys/kernel/debug/tracing/events/sock/inet_sock_set_state/id",
};

/**
 * ph_perf_parse_sample() - one PERF_RECORD_SAMPLE (PERF_SAMPLE_TIME | PERF_SAMPLE_RAW)
 * @rec:	the record, header included
 * @len:	its length (from the header, checked by the caller to fit)
 * @out:	filled on success
 *
 * Return: 0, or -EINVAL when the record is too short for what it claims
 */
int ph_perf_parse_sample(const uint8_t *rec, size_t len, struct ph_listen_event *out)
{
	const size_t hdr = sizeof(struct perf_event_header);
	uint32_t raw_len;
	const uint8_t *raw;
	int32_t st;
	uint16_t v16;

	if (len < hdr + 8 + 4)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(&out->ts_ns, rec + hdr, 8);
	memcpy(&raw_len, rec + hdr + 8, 4);
	raw = rec + hdr + 12;
	if (raw_len > len - hdr - 12 || raw_len < TP_MIN_LEN)
		return -EINVAL;
	memcpy(&st, raw + TP_OLDSTATE, 4);
	out->oldstate = (uint8_t)st;
	memcpy(&st, raw + TP_NEWSTATE, 4);
	out->newstate = (uint8_t)st;
	memcpy(&out->port, raw + TP_SPORT, 2);
	memcpy(&v16, raw + TP_FAMILY, 2);
	out->family = v16;
	memcpy(&out->saddr, raw + TP_SADDR, 4);
	return 0;
}

static int read_id(unsigned long *id, const char **where)
{
	for (size_t i = 0; i < sizeof(id_paths) / sizeof(id_paths[0]); i++) {
		char buf[32];
		int fd = open(id_paths[i], O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		*id = strtoul(buf, NULL, 10);
		*where = id_paths[i];
		return *id ? 0 : -EINVAL;
	}
	return -ENOENT;
}

static int open_cpu(unsigned long id, int cpu)
{
	struct perf_event_attr a;
	long fd;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_TRACEPOINT;
	a.size = sizeof(a);
	a.config = id;
	a.sample_period = 1;
	a.sample_type = PERF_SAMPLE_TIME | PERF_SAMPLE_RAW;
	a.wakeup_events = 1;
	a.disabled = 1;
	a.use_clockid = 1;
	a.clockid = CLOCK_MONOTONIC;
	fd = syscall(SYS_perf_event_open, &a, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
	return fd < 0 ? -errno : (int)fd;
}

static int set_filter(int fd)
{
	static const char *const filters[] = {
		"protocol == 6 && (newstate == 10 || (oldstate == 10 && newstate == 7))",
		"newstate == 10 || (oldstate == 10 && newstate == 7)",	/* no protocol field */
	};

	for (size_t i = 0; i < 2; i++)
		if (!ioctl(fd, PERF_EVENT_IOC_SET_FILTER, filters[i]))
			return 0;
	return -errno;
}

static size_t ring_bytes(void)
{
	return (size_t)sysconf(_SC_PAGESIZE) * (1 + PERF_DATA_PAGES);
}

/* Consume one CPU's ring */
static size_t drain_one(struct ph_events *ev, void *ring,
			void (*fn)(const struct ph_listen_event *e, void *arg), void *arg)
{
	struct perf_event_mmap_page *m = ring;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size = page * PERF_DATA_PAGES, n = 0;
	const uint8_t *data = (const uint8_t *)ring + page;
	uint64_t head = __atomic_load_n(&m->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = m->data_tail;

	while (tail < head) {
		uint8_t rec[256];
		struct perf_event_header h;
		size_t off = tail & (size - 1), first;

		first = size - off < sizeof(h) ? size - off : sizeof(h);
		memcpy(&h, data + off, first);
		memcpy((uint8_t *)&h + first, data, sizeof(h) - first);
		if (h.size < sizeof(h) || h.size > head - tail) {
			tail = head;	/* cannot happen; resynchronise rather than loop */
			break;
		}
		if (h.size <= sizeof(rec)) {
			first = size - off < h.size ? size - off : h.size;
			memcpy(rec, data + off, first);
			memcpy(rec + first, data, h.size - first);
			if (h.type == PERF_RECORD_SAMPLE) {
				struct ph_listen_event e;

				n++;
				if (fn && !ph_perf_parse_sample(rec, h.size, &e))
					fn(&e, arg);
			} else if (h.type == PERF_RECORD_LOST && h.size >= sizeof(h) + 16) {
				uint64_t lost;

				memcpy(&lost, rec + sizeof(h) + 8, 8);
				ev->perf_lost += lost;
			}
		}
		tail += h.size;
	}
	__atomic_store_n(&m->data_tail, tail, __ATOMIC_RELEASE);
	return n;
}

size_t ph_perf_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		     void *arg)
{
	size_t n = 0;

	for (unsigned i = 0; i < ev->n_perf; i++)
		if (ev->perf_ring[i])
			n += drain_one(ev, ev->perf_ring[i], fn, arg);
	return n;
}

/* struct calib - a calibration listener: its port and family, and whether it was reported */
struct calib {
	uint16_t port;
	uint16_t family;
	bool seen;
};

static void calib_match(const struct ph_listen_event *e, void *arg)
{
	struct calib *k = arg;

	for (int i = 0; i < 2; i++)
		if (e->newstate == PH_TCP_LISTEN && e->port == k[i].port &&
		    e->family == k[i].family)
			k[i].seen = true;
}

/* Our own two listeners must come back with their ports and families */
static int calibrate(struct ph_events *ev, char *why, size_t len)
{
	struct calib k[2] = { { .family = AF_INET }, { .family = AF_INET6 } };
	uint64_t deadline = ph_now_ms() + CALIBRATE_MS;
	int fds[2], ret = 0;

	fds[0] = ph_loopback_listen(AF_INET, &k[0].port);
	fds[1] = ph_loopback_listen(AF_INET6, &k[1].port);
	if (fds[1] < 0) {
		k[1].family = AF_INET;
		fds[1] = ph_loopback_listen(AF_INET, &k[1].port);
	}
	if (fds[0] < 0 || fds[1] < 0) {
		ret = fds[0] < 0 ? fds[0] : fds[1];
		snprintf(why, len, "cannot listen on loopback to calibrate: %s", ph_strerror(ret));
		goto out;
	}
	for (;;) {
		struct pollfd pfd = { .fd = ev->perf_ep, .events = POLLIN };
		uint64_t now = ph_now_ms();

		ph_perf_drain(ev, calib_match, k);
		if (k[0].seen && k[1].seen)
			break;
		if (now >= deadline) {
			snprintf(why, len, "the perf tracepoint did not report our own listeners "
				 "(a tracepoint format other than Linux 5.6+'s?)");
			ret = -ETIMEDOUT;
			goto out;
		}
		poll(&pfd, 1, (int)(deadline - now));
	}
out:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return ret;
}

int ph_perf_open(struct ph_events *ev, char *why, size_t len)
{
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);
	const char *where = NULL;
	unsigned long id;
	unsigned opened = 0;
	int ret;

	ret = read_id(&id, &where);
	if (ret) {
		snprintf(why, len, "perf tracepoint: tracefs is not mounted (%s; the daemon does "
			 "not mount it)", id_paths[0]);
		return ret;
	}
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > MAX_CPUS)
		ncpu = MAX_CPUS;
	ev->perf_fd = malloc((size_t)ncpu * sizeof(*ev->perf_fd));
	ev->perf_ring = calloc((size_t)ncpu, sizeof(*ev->perf_ring));
	if (!ev->perf_fd || !ev->perf_ring) {
		snprintf(why, len, "perf tracepoint: out of memory");
		return -ENOMEM;
	}
	ev->n_perf = (unsigned)ncpu;
	for (unsigned i = 0; i < ev->n_perf; i++)
		ev->perf_fd[i] = -1;
	ev->perf_ep = epoll_create1(EPOLL_CLOEXEC);
	if (ev->perf_ep < 0) {
		ret = -errno;
		snprintf(why, len, "perf tracepoint: epoll: %s", ph_strerror(ret));
		return ret;
	}
	for (unsigned i = 0; i < ev->n_perf; i++) {
		struct epoll_event ee = { .events = EPOLLIN, .data.u32 = i };
		void *ring;
		int fd = open_cpu(id, (int)i);

		if (fd == -ENODEV || fd == -EINVAL)
			continue;	/* CPU offline or absent */
		if (fd < 0) {
			snprintf(why, len, "perf_event_open of %s: %s%s", where, ph_strerror(fd),
				 fd == -EACCES || fd == -EPERM ? " (needs CAP_PERFMON)" : "");
			return fd;
		}
		ev->perf_fd[i] = fd;
		ret = set_filter(fd);
		if (ret) {
			snprintf(why, len, "perf tracepoint filter: %s", ph_strerror(ret));
			return ret;
		}
		ring = mmap(NULL, ring_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (ring == MAP_FAILED) {
			ret = -errno;
			snprintf(why, len, "mmap of a perf ring: %s", ph_strerror(ret));
			return ret;
		}
		ev->perf_ring[i] = ring;
		if (epoll_ctl(ev->perf_ep, EPOLL_CTL_ADD, fd, &ee) ||
		    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)) {
			ret = -errno;
			snprintf(why, len, "perf tracepoint: %s", ph_strerror(ret));
			return ret;
		}
		opened++;
	}
	if (!opened) {
		snprintf(why, len, "perf_event_open: no CPU accepted the event");
		return -ENODEV;
	}
	ret = calibrate(ev, why, len);
	if (ret)
		return ret;
	ph_perf_drain(ev, NULL, NULL);
	ev->perf_lost = 0;
	return 0;
}

void ph_perf_close(struct ph_events *ev)
{
	for (unsigned i = 0; i < ev->n_perf; i++) {
		if (ev->perf_ring && ev->perf_ring[i])
			munmap(ev->perf_ring[i], ring_bytes());
		if (ev->perf_fd && ev->perf_fd[i] >= 0)
			close(ev->perf_fd[i]);
	}
	free(ev->perf_fd);
	free(ev->perf_ring);
	ev->perf_fd = NULL;
	ev->perf_ring = NULL;
	ev->n_perf = 0;
	if (ev->perf_ep >= 0)
		close(ev->perf_ep);
	ev->perf_ep = -1;
}

#else /* no <linux/perf_event.h> or PH_NO_EVENTS */

#include <stdio.h>
#include <unistd.h>

int ph_perf_open(struct ph_events *ev, char *why, size_t len)
{
	(void)ev;
	snprintf(why, len, "built without listen events");
	return -ENOSYS;
}

size_t ph_perf_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		     void *arg)
{
	(void)ev, (void)fn, (void)arg;
	return 0;
}

void ph_perf_close(struct ph_events *ev)
{
	if (ev->perf_ep >= 0)
		close(ev->perf_ep);
	ev->perf_ep = -1;
}

#endif
