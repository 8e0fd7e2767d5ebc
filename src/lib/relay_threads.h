/* SPDX-License-Identifier: MIT */
/* relay_threads.h - extra relay threads: clients accepted by the port worker, relayed elsewhere */
#ifndef PH_RELAY_THREADS_H
#define PH_RELAY_THREADS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "relay.h"

struct ph_config;
struct ph_stats;
struct ph_relay_thread;

/**
 * struct ph_relay_threads - the relay threads of one port worker besides itself
 * @v:		the threads
 * @n:		how many (0: the port worker relays everything)
 * @next:	round-robin position, 0 being the port worker itself
 * @pending:	clients handed over and not yet relaying (they count against
 *		the connection limit like open relays)
 * @on_closed:	called on a relay thread after one of its relays closed, with
 *		the relay's owner (still referenced during the call)
 * @arg:	its argument
 *
 * Zero-initialised: no threads, everything relays on the port worker.
 */
struct ph_relay_threads {
	struct ph_relay_thread *v;
	size_t n;
	size_t next;
	_Atomic uint64_t pending;
	void (*on_closed)(void *arg, struct ph_relay_owner *owner);
	void *arg;
};

#define PH_RELAY_THREADS_MAX	64
#define PH_RELAY_THREADS_AUTO	8	/* at most, when one per CPU */

/**
 * ph_relay_thread_count() - relay threads to run, the port worker included
 * @cfg:	@cfg->relay_threads (default 1), 0 for one per CPU this process
 *		may run on (at most PH_RELAY_THREADS_AUTO)
 * Return: at least 1
 */
size_t ph_relay_thread_count(const struct ph_config *cfg);

/**
 * ph_relay_threads_start() - start @n relay threads
 * @s:		zeroed set, @on_closed and @arg filled in (may be NULL)
 * @n:		threads to start besides the port worker
 * @cfg:	relay settings (outlives the threads)
 * @stats:	counters shared with the port worker
 * Return: 0, or -errno with nothing started
 */
int ph_relay_threads_start(struct ph_relay_threads *s, size_t n, const struct ph_config *cfg,
		    struct ph_stats *stats);

/**
 * ph_relay_threads_stop() - reset every relay of every thread and join them
 * @s:		set; zeroed again afterwards
 */
void ph_relay_threads_stop(struct ph_relay_threads *s);

/**
 * ph_relay_threads_pick() - which thread relays the next client
 * @s:		set
 * Return: NULL for the port worker itself, else a relay thread
 */
struct ph_relay_thread *ph_relay_threads_pick(struct ph_relay_threads *s);

/**
 * ph_relay_threads_handoff() - give an accepted client to relay thread @sh
 * @s:		set
 * @sh:		from ph_relay_threads_pick()
 * @client_fd:	accepted client socket
 * @svc_fd:	its service socket, from ph_relay_take_spare()
 * @target:	service address (owned by @owner, which outlives the relay)
 * @tlen:	its length
 * @owner:	takes a reference until the relay has started
 * Both descriptors are always consumed; the thread is woken only when its
 * queue was empty.
 */
void ph_relay_threads_handoff(struct ph_relay_threads *s, struct ph_relay_thread *sh, int client_fd, int svc_fd,
		       const struct sockaddr *target, socklen_t tlen, struct ph_relay_owner *owner);

/**
 * ph_relay_threads_quiesce() - every thread resets all its relays and queued clients
 * @s:		set
 * Waits for each thread. Return: relays reset
 */
size_t ph_relay_threads_quiesce(struct ph_relay_threads *s);

/**
 * ph_relay_threads_resume() - every thread resets relays older than its quiesce
 * @s:		set
 * Return: relays reset
 */
size_t ph_relay_threads_resume(struct ph_relay_threads *s);

/**
 * ph_relay_threads_freeze() - every thread stops, in a wait, until thawed
 * @s:		set
 * Returns once each one waits: their relays may then be read from this
 * thread (ph_relay_threads_ctx(), an upgrade's export).
 */
void ph_relay_threads_freeze(struct ph_relay_threads *s);

/* Let every frozen thread go on */
void ph_relay_threads_thaw(struct ph_relay_threads *s);

/* The relay context of thread @i (< s->n), or NULL */
struct ph_relay_ctx *ph_relay_threads_ctx(struct ph_relay_threads *s, size_t i);

/**
 * ph_relay_threads_run() - call @fn with thread @i's relay context, on that thread
 * @s:		set
 * @i:		thread (< s->n)
 * @fn, @arg:	what to run (an upgrade's import); its result is returned
 * Waits for it. Return: what @fn returned
 */
size_t ph_relay_threads_run(struct ph_relay_threads *s, size_t i,
			    size_t (*fn)(struct ph_relay_ctx *ctx, void *arg), void *arg);

#endif /* PH_RELAY_THREADS_H */
