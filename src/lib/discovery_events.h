/* SPDX-License-Identifier: MIT */
/* discovery_events.h - "look now": the kernel reports TCP sockets entering or leaving LISTEN */
#ifndef PH_DISCOVERY_EVENTS_H
#define PH_DISCOVERY_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PH_TCP_LISTEN	10
#define PH_TCP_CLOSE	7
/* newstate of a UDP record (proto IPPROTO_UDP): bound, or released */
#define PH_UDP_BOUND	1
#define PH_UDP_RELEASED	2

/**
 * struct ph_listen_event - one report, from either source
 * @netns:	the socket's struct net address (BPF only; only compared, never
 *		dereferenced); 0 from the perf source
 * @ts_ns:	CLOCK_MONOTONIC time of the transition
 * @saddr:	skc_rcv_saddr, network order (IPv4 sockets)
 * @port:	local port, host order (0: not bound yet)
 * @family:	AF_INET or AF_INET6
 * @oldstate, @newstate: TCP states of the transition (one of them is TCP_LISTEN);
 *		for UDP, @newstate is PH_UDP_BOUND or PH_UDP_RELEASED
 * @proto:	0 (TCP: the tracepoint, or the perf source) or IPPROTO_UDP (the cgroup hooks)
 *
 * The BPF programs write exactly this layout into the ring buffer (32 bytes).
 */
struct ph_listen_event {
	uint64_t netns;
	uint64_t ts_ns;
	uint32_t saddr;
	uint16_t port;
	uint8_t oldstate;
	uint8_t newstate;
	uint16_t family;
	uint8_t proto;
	uint8_t pad[5];
};

/**
 * enum ph_events_source - where the reports come from
 * @PH_EVENTS_NONE:	closed (polling)
 * @PH_EVENTS_BPF:	a BPF program on the raw tracepoint, a BPF ring buffer
 * @PH_EVENTS_PERF:	a perf tracepoint event per CPU with an ftrace filter
 */
enum ph_events_source { PH_EVENTS_NONE, PH_EVENTS_BPF, PH_EVENTS_PERF };

/**
 * struct ph_events - a loaded and attached listen-event source
 * @source:	which one (PH_EVENTS_NONE when closed)
 * @ring_fd:	BPF ring buffer; readable (epoll) when events are pending
 * @conf_fd:	one-element mmapable array: our netns, lost-event counter
 * @prog_fd:	the raw tracepoint program
 * @link_fd:	its attachment to inet_sock_set_state (closing it detaches)
 * @cons, @prod: the ring's consumer page (rw) and producer page + data (ro)
 * @conf:	the mmapped array element
 * @lost_seen:	lost-event count already reported by ph_events_lost_delta()
 * @udp_link:	UDP hooks (BPF only): links of the cgroup programs on bind (IPv4,
 *		IPv6) and release; -1 when not attached (ph_events_open_udp())
 * @perf_ep:	perf source: epoll set of the per-CPU events (ph_events_fd())
 * @perf_fd:	perf source: one event per CPU (-1: CPU offline)
 * @perf_ring:	perf source: each event's mmapped ring (metadata page + data)
 * @n_perf:	perf source: how many entries in @perf_fd and @perf_ring
 * @perf_lost:	perf source: records the kernel dropped, not yet reported
 *
 * All fds are -1 and pointers NULL when closed (ph_events_init()).
 */
struct ph_events {
	enum ph_events_source source;
	int ring_fd, conf_fd, prog_fd, link_fd;
	void *cons, *prod;
	volatile uint64_t *conf;
	uint64_t lost_seen;
	int udp_link[3];
	int perf_ep;
	int *perf_fd;
	void **perf_ring;
	unsigned n_perf;
	uint64_t perf_lost;
};

/* Whether this build has the BPF event source at all (the perf one needs no headers beyond libc's) */
extern const bool ph_events_built;

void ph_events_init(struct ph_events *ev);

/**
 * ph_events_open() - load the BPF program, attach it, find our network namespace
 * @ev:		from ph_events_init()
 * @why:	on failure, a one-line reason (for the log)
 * @len:	its size
 *
 * Return: 0, or -errno with everything released (-EPERM: no CAP_BPF and
 * CAP_PERFMON; -ENOSYS: built without BPF; -ETIMEDOUT: the calibration
 * listeners were not reported)
 */
int ph_events_open(struct ph_events *ev, char *why, size_t len);

/**
 * ph_events_open_perf() - open the sock:inet_sock_set_state perf tracepoint on every CPU
 * @ev:		from ph_events_init()
 * @why:	on failure, a one-line reason (for the log)
 * @len:	its size
 *
 * Needs tracefs mounted (the event's id is read from it; the daemon does not
 * mount it) and CAP_PERFMON. The kernel filters on the states, not on the
 * network namespace: see discovery_perf.c.
 * Return: 0, or -errno with everything released
 */
int ph_events_open_perf(struct ph_events *ev, char *why, size_t len);

/**
 * ph_events_open_udp() - add UDP binds and closes to an open BPF source
 * @ev:		opened by ph_events_open() (the BPF source)
 * @why:	on failure, a one-line reason (for the log)
 * @len:	its size
 *
 * Attaches a cgroup socket program to the root of the cgroup v2 hierarchy
 * (post-bind for IPv4 and IPv6, socket release), writing into the same ring
 * as the TCP records (@proto IPPROTO_UDP), and checks it with a UDP socket
 * of its own. The TCP source stays as it was whatever happens.
 * Return: 0, or -errno with the UDP hooks released (-ENOENT: no cgroup v2
 * mount; -EOPNOTSUPP: not the BPF source)
 */
int ph_events_open_udp(struct ph_events *ev, char *why, size_t len);

/**
 * ph_mountinfo_cgroup2() - the mount point of one /proc/self/mountinfo line, if cgroup2
 * @line:	one line, NUL-terminated, without its newline; modified
 *
 * Octal escapes (\040) are not decoded: such a mount point fails to open
 * and the caller tries the next one.
 * Return: the 5th field, NUL-terminated in place, when the filesystem type
 * (after " - ") is cgroup2; else NULL
 */
char *ph_mountinfo_cgroup2(char *line);

/* Whether UDP records come (ph_events_open_udp() succeeded) */
bool ph_events_udp(const struct ph_events *ev);

/* The descriptor to watch for readability (-1 when closed): the BPF ring
 * buffer, or an epoll set of the per-CPU perf events */
int ph_events_fd(const struct ph_events *ev);

/**
 * ph_events_drain() - consume every pending record
 * @ev:		open event source
 * @fn:		called for each record (may be NULL)
 * @arg:	its argument
 *
 * Return: records consumed
 */
size_t ph_events_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		       void *arg);

/* Events the kernel could not deliver (ring full) since the last call */
uint64_t ph_events_lost_delta(struct ph_events *ev);

/* "bpf", "perf" or "none" */
const char *ph_events_source_name(enum ph_events_source s);

/* Detach and release everything (no-op when closed) */
void ph_events_close(struct ph_events *ev);

/* --- perf source internals (discovery_perf.c), called by the functions above --- */
int ph_perf_open(struct ph_events *ev, char *why, size_t len);
size_t ph_perf_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		     void *arg);
void ph_perf_close(struct ph_events *ev);
int ph_perf_parse_sample(const uint8_t *rec, size_t len, struct ph_listen_event *out);

#endif /* PH_DISCOVERY_EVENTS_H */
