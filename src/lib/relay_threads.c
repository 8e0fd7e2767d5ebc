// SPDX-License-Identifier: MIT
/* relay_threads.c - extra relay threads: clients accepted by the port worker, relayed elsewhere
 *
 * Theory of Operation
 * ===================
 * The port worker (accept.c) owns discovery, the listeners and accepting.
 * When it runs alone, each client it accepts is relayed on its own loop.
 * With relay threads it deals the accepted clients round-robin
 * between itself and them: a client for relay thread k goes, with the service
 * socket reserved for it before accept() (so no relay thread ever runs out of
 * descriptors mid-way) and a reference on its port entry, into k's queue.
 * The queue is a mutex-protected pair of arrays (the relay thread swaps them and
 * starts a whole batch without the lock); the eventfd is written only
 * when the queue was empty, so a busy relay thread is not woken per client. The
 * relay thread starts the relays on its own loop with its own relay context
 * (scratch buffer, pipe pool): from then on nothing is shared but atomics.
 *
 * Why hand-off rather than every thread accepting: the listeners, their
 * pause on descriptor exhaustion, the connection limit and the quiesce
 * stay on one thread, unchanged, and a relay thread needs no knowledge of ports.
 * The cost is one queue operation per client (and a wake-up when the
 * relay thread was idle); connect(), the expensive part on loopback, runs on the
 * relay thread, in parallel with the port worker's accepting.
 *
 * Commands (stop, quiesce, resume) use the same lock: the port worker
 * posts one to each relay thread in turn and waits for its answer. A relay thread never
 * waits for the port worker, so this cannot deadlock. Queued clients are
 * started before a command runs, so a quiesce resets them like any relay
 * that existed before it.
 */
#include "relay_threads.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "netutil.h"
#include "porthole.h"
#include "array.h"

enum rt_cmd { RT_NONE, RT_STOP, RT_QUIESCE, RT_RESUME, RT_FREEZE, RT_RUN };

/* A client on its way to a relay thread */
struct handoff {
	int client_fd;
	int svc_fd;
	const struct sockaddr *target;
	socklen_t tlen;
	struct ph_relay_owner *owner;
};

/**
 * struct ph_relay_thread - one relay thread
 * @set:	its set
 * @thread:	the thread
 * @loop:	its loop
 * @relays:	its relays
 * @lock:	guards @in, @n_in, @cap_in and the command fields
 * @cond:	signalled when a command is done
 * @in:		queued clients
 * @n_in:	how many
 * @cap_in:	allocated
 * @out:	the relay thread's side of the double buffer: a batch taken from @in
 *		(swapped under @lock) is started from here, without the lock
 * @cap_out:	allocated
 * @cmd:	posted command, RT_NONE when none
 * @cmd_done:	the relay thread finished @cmd
 * @cmd_result:	relays it reset
 * @quiesce_epoch: relays below this epoch existed at the last quiesce
 * @frozen:	RT_FREEZE: the thread waits on @cond until it is cleared (an
 *		upgrade reads its relays meanwhile)
 * @run_fn, @run_arg: RT_RUN: called on the thread with its relay context
 */
struct ph_relay_thread {
	struct ph_relay_threads *set;
	pthread_t thread;
	struct ph_loop loop;
	struct ph_relay_ctx relays;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct handoff *in;
	size_t n_in, cap_in;
	struct handoff *out;
	size_t cap_out;
	enum rt_cmd cmd;
	bool cmd_done;
	size_t cmd_result;
	uint64_t quiesce_epoch;
	bool frozen;
	size_t (*run_fn)(struct ph_relay_ctx *ctx, void *arg);
	void *run_arg;
};

static void handoff_drop(struct ph_relay_threads *s, struct handoff *h)
{
	ph_sock_abort(h->client_fd);
	close(h->svc_fd);
	atomic_fetch_sub(&h->owner->queued, 1);
	ph_relay_owner_put(h->owner);
	atomic_fetch_sub_explicit(&s->pending, 1, memory_order_relaxed);
}

static void start_queued(struct ph_relay_thread *sh, struct handoff *q, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct handoff *h = &q[i];

		ph_relay_give_spare(&sh->relays, h->target->sa_family, h->svc_fd);
		ph_relay_start(&sh->relays, h->client_fd, h->target, h->tlen, h->owner);
		atomic_fetch_sub(&h->owner->queued, 1);	/* counted in conns now */
		ph_relay_owner_put(h->owner);	/* the relay holds its own now */
		atomic_fetch_sub_explicit(&sh->set->pending, 1, memory_order_relaxed);
	}
}

/* On the relay thread: start what was queued, then run the posted command. */
static void on_thread_wake(struct ph_loop *loop, void *arg)
{
	struct ph_relay_thread *sh = arg;
	struct handoff *q;
	size_t n, cap, result = 0;
	enum rt_cmd cmd;

	/* swap the buffers: the port worker fills the empty one meanwhile */
	pthread_mutex_lock(&sh->lock);
	q = sh->in;
	cap = sh->cap_in;
	n = sh->n_in;
	sh->in = sh->out;
	sh->cap_in = sh->cap_out;
	sh->n_in = 0;
	cmd = sh->cmd;
	pthread_mutex_unlock(&sh->lock);
	sh->out = q;
	sh->cap_out = cap;

	start_queued(sh, q, n);

	switch (cmd) {
	case RT_NONE:
		return;
	case RT_STOP:
		ph_loop_break(loop);
		break;
	case RT_QUIESCE:
		sh->quiesce_epoch = ++sh->relays.epoch;
		result = ph_relay_abort_all(&sh->relays, UINT64_MAX);
		break;
	case RT_RESUME:
		result = ph_relay_abort_all(&sh->relays, sh->quiesce_epoch);
		break;
	case RT_RUN:
		result = sh->run_fn(&sh->relays, sh->run_arg);
		break;
	case RT_FREEZE:
		/* answer, then stand still until thawed: nothing of this
		 * thread moves while an upgrade reads its relays */
		pthread_mutex_lock(&sh->lock);
		sh->cmd = RT_NONE;
		sh->cmd_done = true;
		sh->frozen = true;
		pthread_cond_broadcast(&sh->cond);
		while (sh->frozen)
			pthread_cond_wait(&sh->cond, &sh->lock);
		pthread_mutex_unlock(&sh->lock);
		return;
	}
	pthread_mutex_lock(&sh->lock);
	sh->cmd = RT_NONE;
	sh->cmd_result = result;
	sh->cmd_done = true;
	pthread_cond_broadcast(&sh->cond);
	pthread_mutex_unlock(&sh->lock);
}

static void on_thread_relay_closed(struct ph_relay_ctx *ctx, struct ph_relay_owner *owner)
{
	struct ph_relay_thread *sh = ph_container_of(ctx, struct ph_relay_thread, relays);

	if (sh->set->on_closed)
		sh->set->on_closed(sh->set->arg, owner);
}

static void *relay_thread_main(void *arg)
{
	struct ph_relay_thread *sh = arg;
	char name[16];
	int ret;

	/* "ph-relay-N" in top -H and /proc/PID/task/TID/comm */
	snprintf(name, sizeof(name), "ph-relay-%zu", (size_t)(sh - sh->set->v) + 1);
	pthread_setname_np(pthread_self(), name);
	ret = ph_loop_run(&sh->loop);

	if (ret)
		ph_error("relay thread loop failed", PH_FERR(ret));
	/* the stopper joins us: leave nothing behind */
	sh->relays.on_closed = NULL;
	ph_relay_ctx_fini(&sh->relays);
	for (size_t i = 0; i < sh->n_in; i++)	/* none: the stopper queues nothing */
		handoff_drop(sh->set, &sh->in[i]);
	free(sh->in);
	free(sh->out);
	sh->in = sh->out = NULL;
	sh->n_in = sh->cap_in = sh->cap_out = 0;
	ph_loop_fini(&sh->loop);
	return NULL;
}

/* Post @cmd to @sh and wait for it. Return: the relay thread's result */
static size_t rt_cmd(struct ph_relay_thread *sh, enum rt_cmd cmd)
{
	size_t result;

	pthread_mutex_lock(&sh->lock);
	sh->cmd = cmd;
	sh->cmd_done = false;
	ph_loop_wake(&sh->loop);
	while (!sh->cmd_done)
		pthread_cond_wait(&sh->cond, &sh->lock);
	result = sh->cmd_result;
	pthread_mutex_unlock(&sh->lock);
	return result;
}

size_t ph_relay_thread_count(const struct ph_config *cfg)
{
	cpu_set_t set;
	int n;

	if (cfg->relay_threads)
		return cfg->relay_threads;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	n = CPU_COUNT(&set);
	return n < 1 ? 1 : n > PH_RELAY_THREADS_AUTO ? PH_RELAY_THREADS_AUTO : (size_t)n;
}

static void relay_thread_destroy(struct ph_relay_thread *sh)
{
	pthread_cond_destroy(&sh->cond);
	pthread_mutex_destroy(&sh->lock);
}

int ph_relay_threads_start(struct ph_relay_threads *s, size_t n, const struct ph_config *cfg,
		    struct ph_stats *stats)
{
	size_t i;
	int ret = 0;

	s->v = calloc(n ? n : 1, sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct ph_relay_thread *sh = &s->v[i];

		sh->set = s;
		pthread_mutex_init(&sh->lock, NULL);
		pthread_cond_init(&sh->cond, NULL);
		ret = ph_loop_init(&sh->loop, on_thread_wake, sh);
		if (ret)
			goto fail_sync;
		ret = ph_relay_ctx_init(&sh->relays, &sh->loop, cfg, stats);
		if (ret)
			goto fail_loop;
		sh->relays.on_closed = on_thread_relay_closed;
		ret = ph_loop_thread_start(&sh->thread, relay_thread_main, sh);
		if (ret)
			goto fail_relays;
		s->n = i + 1;
	}
	return 0;

fail_relays:
	ph_relay_ctx_fini(&s->v[i].relays);
fail_loop:
	ph_loop_fini(&s->v[i].loop);
fail_sync:
	relay_thread_destroy(&s->v[i]);
	ph_relay_threads_stop(s);
	return ret;
}

void ph_relay_threads_stop(struct ph_relay_threads *s)
{
	for (size_t i = 0; i < s->n; i++) {
		rt_cmd(&s->v[i], RT_STOP);
		pthread_join(s->v[i].thread, NULL);
		relay_thread_destroy(&s->v[i]);
	}
	free(s->v);
	s->v = NULL;
	s->n = 0;
	s->next = 0;
}

struct ph_relay_thread *ph_relay_threads_pick(struct ph_relay_threads *s)
{
	size_t i;

	if (!s->n)
		return NULL;
	i = s->next;
	s->next = i == s->n ? 0 : i + 1;
	return i ? &s->v[i - 1] : NULL;
}

void ph_relay_threads_handoff(struct ph_relay_threads *s, struct ph_relay_thread *sh, int client_fd, int svc_fd,
		       const struct sockaddr *target, socklen_t tlen, struct ph_relay_owner *owner)
{
	struct handoff h = {
		.client_fd = client_fd, .svc_fd = svc_fd, .target = target, .tlen = tlen,
		.owner = owner,
	};
	bool wake;

	ph_relay_owner_get(owner);
	atomic_fetch_add_explicit(&owner->queued, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->pending, 1, memory_order_relaxed);
	pthread_mutex_lock(&sh->lock);
	if (ph_array_grow(&sh->in, &sh->cap_in, sh->n_in + 1, sizeof(*sh->in), 64)) {
		pthread_mutex_unlock(&sh->lock);
		handoff_drop(s, &h);	/* the client is reset, nothing leaks */
		return;
	}
	sh->in[sh->n_in++] = h;
	wake = sh->n_in == 1;
	pthread_mutex_unlock(&sh->lock);
	if (wake)
		ph_loop_wake(&sh->loop);
}

size_t ph_relay_threads_quiesce(struct ph_relay_threads *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += rt_cmd(&s->v[i], RT_QUIESCE);
	return n;
}

size_t ph_relay_threads_resume(struct ph_relay_threads *s)
{
	size_t n = 0;

	for (size_t i = 0; i < s->n; i++)
		n += rt_cmd(&s->v[i], RT_RESUME);
	return n;
}

void ph_relay_threads_freeze(struct ph_relay_threads *s)
{
	for (size_t i = 0; i < s->n; i++)
		rt_cmd(&s->v[i], RT_FREEZE);
}

void ph_relay_threads_thaw(struct ph_relay_threads *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct ph_relay_thread *sh = &s->v[i];

		pthread_mutex_lock(&sh->lock);
		sh->frozen = false;
		pthread_cond_broadcast(&sh->cond);
		pthread_mutex_unlock(&sh->lock);
	}
}

struct ph_relay_ctx *ph_relay_threads_ctx(struct ph_relay_threads *s, size_t i)
{
	return i < s->n ? &s->v[i].relays : NULL;
}

size_t ph_relay_threads_run(struct ph_relay_threads *s, size_t i,
			    size_t (*fn)(struct ph_relay_ctx *ctx, void *arg), void *arg)
{
	struct ph_relay_thread *sh = &s->v[i];

	sh->run_fn = fn;	/* read by the thread after it takes the lock */
	sh->run_arg = arg;
	return rt_cmd(sh, RT_RUN);
}
