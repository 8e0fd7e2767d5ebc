/* SPDX-License-Identifier: MIT */
/* discovery_events.h - "look now": the kernel reports TCP sockets entering or leaving LISTEN */
#ifndef PH_DISCOVERY_EVENTS_H
#define PH_DISCOVERY_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * struct ph_listen_event - one record of the ring buffer (as the BPF program writes it)
 * @netns:	the socket's struct net address (only compared, never dereferenced)
 * @saddr:	skc_rcv_saddr, network order (IPv4 sockets)
 * @port:	skc_num, host order
 * @oldstate, @newstate: TCP states of the transition (one of them is TCP_LISTEN)
 */
struct ph_listen_event {
	uint64_t netns;
	uint32_t saddr;
	uint16_t port;
	uint8_t oldstate;
	uint8_t newstate;
};

/**
 * struct ph_events - a loaded and attached listen-event source
 * @ring_fd:	BPF ring buffer; readable (epoll) when events are pending
 * @conf_fd:	one-element mmapable array: our netns, lost-event counter
 * @prog_fd:	the raw tracepoint program
 * @link_fd:	its attachment to inet_sock_set_state (closing it detaches)
 * @cons, @prod: the ring's consumer page (rw) and producer page + data (ro)
 * @conf:	the mmapped array element
 * @lost_seen:	lost-event count already reported by ph_events_lost_delta()
 *
 * All fds are -1 and pointers NULL when closed (ph_events_init()).
 */
struct ph_events {
	int ring_fd, conf_fd, prog_fd, link_fd;
	void *cons, *prod;
	volatile uint64_t *conf;
	uint64_t lost_seen;
};

/* Whether this build has the BPF event source at all */
extern const bool ph_events_built;

void ph_events_init(struct ph_events *ev);

/**
 * ph_events_open() - load the program, attach it, find our network namespace
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
 * ph_events_drain() - consume every pending record
 * @ev:		open event source
 * @fn:		called for each record (may be NULL)
 * @arg:	its argument
 *
 * Return: records consumed
 */
size_t ph_events_drain(struct ph_events *ev, void (*fn)(const struct ph_listen_event *e, void *arg),
		       void *arg);

/* Events the program could not deliver (ring full) since the last call */
uint64_t ph_events_lost_delta(struct ph_events *ev);

/* Detach and release everything (no-op when closed) */
void ph_events_close(struct ph_events *ev);

#endif /* PH_DISCOVERY_EVENTS_H */
