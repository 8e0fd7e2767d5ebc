/* SPDX-License-Identifier: MIT */
/* relay_udp.h - relayed UDP: one flow (socket connected to the service) per client address */
#ifndef PH_RELAY_UDP_H
#define PH_RELAY_UDP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

/* Deliberately independent of porthole.h, so porthole.h can include this
 * header for struct ph_udp_counters (a member of struct ph_stats). */

/* Datagrams moved per recvmmsg()/sendmmsg() call, at most */
#define PH_UDP_BATCH 64
/* Largest datagram relayed: an IPv4 UDP payload (65,535 - 20 - 8). IPv6
 * allows 65,527 without jumbograms; its receive buffers hold that too. */
#define PH_UDP_MAX_DGRAM 65507
#define PH_UDP_DEFAULT_IDLE_TIMEOUT_MS 60000
#define PH_UDP_DEFAULT_MAX_FLOWS 4096

/**
 * enum ph_udp_drop - why a datagram was not relayed (struct ph_udp_counters.drops)
 * @PH_UDP_DROP_TRUNCATED:	larger than the receive buffer (MSG_TRUNC): never
 *				forwarded cut short
 * @PH_UDP_DROP_BUFFER_FULL:	the sending socket had no room (EAGAIN, ENOBUFS):
 *				UDP semantics, the loop never waits
 * @PH_UDP_DROP_NO_FLOW:	a new client got no flow: no descriptor below the
 *				control plane's reserve, no memory, or the
 *				service's socket could not be made
 * @PH_UDP_DROP_REFUSED:	the service refused (ECONNREFUSED on sending): the
 *				flow ended, the rest of its batch is dropped
 * @PH_UDP_DROP_ERROR:		any other send error (EHOSTUNREACH, EMSGSIZE, ...)
 */
enum ph_udp_drop {
	PH_UDP_DROP_TRUNCATED,
	PH_UDP_DROP_BUFFER_FULL,
	PH_UDP_DROP_NO_FLOW,
	PH_UDP_DROP_REFUSED,
	PH_UDP_DROP_ERROR,
	PH_UDP_DROP__COUNT
};

/* "truncated", "buffer_full", "no_flow", "refused", "error" (metrics
 * labels); "?" when out of range */
const char *ph_udp_drop_name(enum ph_udp_drop d);

/**
 * struct ph_udp_counters - UDP relay counters; relaxed atomics, written by
 * the relay's loop thread, read by any (/metrics). Live across cycles.
 * @flows_open:		flows now (a gauge)
 * @flows_created:	flows made, ever
 * @flows_evicted:	flows ended to make room at the flow limit (LRU)
 * @flows_timed_out:	flows ended after the idle timeout
 * @flows_refused:	flows ended by ECONNREFUSED (ICMP port unreachable
 *			from the service)
 * @dgrams_in:		datagrams client -> service, sent
 * @dgrams_out:		datagrams service -> client, sent
 * @bytes_in:		their payload bytes
 * @bytes_out:		their payload bytes
 * @drops:		datagrams not relayed, by enum ph_udp_drop
 * Flows ended by ph_udp_relay_drop_flows(), ph_udp_ext_close() or
 * ph_udp_relay_free() only leave @flows_open.
 */
struct ph_udp_counters {
	_Atomic uint64_t flows_open;
	_Atomic uint64_t flows_created;
	_Atomic uint64_t flows_evicted;
	_Atomic uint64_t flows_timed_out;
	_Atomic uint64_t flows_refused;
	_Atomic uint64_t dgrams_in;
	_Atomic uint64_t dgrams_out;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t drops[PH_UDP_DROP__COUNT];
};

/*
 * All UDP flows of one cycle, on one loop (one thread): the external
 * sockets, a hash of flows on (external socket, client address), one LRU
 * list over all flows that is also their idle order, the flow limit. Every
 * function below runs on that loop's thread.
 */
struct ph_udp_relay;

/* One external socket (EXTERNAL:P on one address) and its flows */
struct ph_udp_ext;

/**
 * ph_udp_relay_new() - make an empty UDP relay
 * @loop:	the loop it runs on
 * @max_flows:	flows at once, over all its external sockets (>= 1); at the
 *		limit the least recently used flow is ended for a new client
 * @idle_timeout_ms: a flow with no datagram either way for this long ends (>= 1)
 * @ctr:	counters, updated while the relay lives; must outlive it
 * @out:	the relay
 * Return: 0 or -errno (EINVAL, ENOMEM)
 */
int ph_udp_relay_new(struct ph_loop *loop, unsigned max_flows, unsigned idle_timeout_ms,
		     struct ph_udp_counters *ctr, struct ph_udp_relay **out);

/**
 * ph_udp_relay_free() - end every flow, close every external socket, free @r
 * @r:		relay, or NULL
 * On the loop's thread, before ph_loop_fini() (memory of sockets closed
 * during an event batch is released after it, through ph_loop_defer()).
 */
void ph_udp_relay_free(struct ph_udp_relay *r);

/**
 * ph_udp_relay_drop_flows() - end every flow, keep the external sockets (/snapshot/prepare)
 * @r:		relay
 * The clients of the flows are on the other side of a snapshot; datagrams
 * that arrive afterwards make new flows.
 */
void ph_udp_relay_drop_flows(struct ph_udp_relay *r);

/**
 * ph_udp_relay_pause() - stop or restart moving datagrams (/snapshot/prepare, /snapshot/resume)
 * @r:		relay
 * @paused:	true: no external or flow socket is read any more (each is
 *		taken off the loop), so no datagram moves and no flow is made;
 *		what arrives waits in the socket buffers, or the kernel drops
 *		it when they are full, as a network would. false: every socket
 *		is watched again and what waited is relayed.
 * External sockets opened while paused start paused. Idempotent.
 * Return: 0, or the first -errno of re-registering a socket (it stays
 * unwatched)
 */
int ph_udp_relay_pause(struct ph_udp_relay *r, bool paused);

/* True while paused (ph_udp_relay_pause()) */
bool ph_udp_relay_paused(const struct ph_udp_relay *r);

/* Flows open now */
size_t ph_udp_relay_flows(const struct ph_udp_relay *r);

/**
 * ph_udp_addr_eq() - the relay's test for "the same client address"
 * @a, @b:	AF_INET or AF_INET6 socket addresses (struct sockaddr_in or
 *		sockaddr_in6 in full)
 * Return: true when family, address, port (and for IPv6 the scope) are
 * equal; false for any other family
 */
bool ph_udp_addr_eq(const struct sockaddr *a, const struct sockaddr *b);

/**
 * ph_udp_ext_open() - relay datagrams arriving on an external socket
 * @r:		relay
 * @fd:		bound, non-blocking UDP socket on EXTERNAL:P; always consumed
 *		(closed on error)
 * @target:	the service's loopback address (127.0.0.1:P or [::1]:P); each
 *		new client address gets a flow socket of its family connected
 *		to it, so the service sees one distinct peer per client
 * @tlen:	its length
 * @port_flows:	counter of flows open kept for the owner (its port's, read
 *		by other threads), or NULL; several external sockets may share one
 * @out:	the external socket's handle
 * Return: 0 or -errno (EINVAL: @target not AF_INET/AF_INET6; ENOMEM; an
 * epoll_ctl() error)
 */
int ph_udp_ext_open(struct ph_udp_relay *r, int fd, const struct sockaddr *target, socklen_t tlen,
		    _Atomic uint32_t *port_flows, struct ph_udp_ext **out);

/**
 * ph_udp_ext_close() - end @x's flows, close its socket, free it
 * @x:		handle, or NULL
 */
void ph_udp_ext_close(struct ph_udp_ext *x);

/* Flows of @x open now */
size_t ph_udp_ext_flows(const struct ph_udp_ext *x);

#endif /* PH_RELAY_UDP_H */
