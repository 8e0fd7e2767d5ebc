/* SPDX-License-Identifier: MIT */
/* loop.h - single-threaded epoll event loop with timers and a cross-thread wake */
#ifndef PH_LOOP_H
#define PH_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

#define ph_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct ph_loop;
struct ph_io;
struct ph_timer;

typedef void (*ph_io_fn)(struct ph_loop *loop, struct ph_io *io, uint32_t events);
typedef void (*ph_timer_fn)(struct ph_loop *loop, struct ph_timer *t);
typedef void (*ph_wake_fn)(struct ph_loop *loop, void *arg);

/**
 * struct ph_io - a file descriptor watched by the loop; embed it in its owner
 * @fd:		the descriptor, -1 when not registered
 * @fn:		called with the epoll event mask
 * @events:	mask currently registered
 *
 * Zero-initialised it is unregistered (fd 0 is never a watched descriptor
 * because ph_loop_add() sets it). Once ph_loop_del() ran, no further callback
 * is made for it, even for events already fetched in the current batch.
 */
struct ph_io {
	int fd;
	ph_io_fn fn;
	uint32_t events;
	bool live;
};

/**
 * struct ph_timer - a one-shot timer; embed it in its owner
 * @deadline_ms: monotonic ms at which it fires
 * @fn:		callback
 * @heap_idx:	position in the loop's heap, 0 when not armed
 */
struct ph_timer {
	uint64_t deadline_ms;
	ph_timer_fn fn;
	size_t heap_idx;
};

/**
 * struct ph_defer - work run after the current batch of events
 * Used to free objects whose ph_io may still appear later in the batch.
 */
struct ph_defer {
	struct ph_defer *next;
	void (*fn)(struct ph_defer *d);
};

struct ph_loop {
	int epfd;
	int wakefd;		/* eventfd: ph_loop_wake() from any thread */
	struct ph_io wake_io;
	ph_wake_fn wake_fn;
	void *wake_arg;
	struct ph_timer **heap;	/* 1-based binary min-heap on deadline_ms */
	size_t heap_len, heap_cap;
	struct ph_defer *deferred;
	bool stop;
	uint64_t now_ms;	/* cached at each iteration */
};

/* monotonic clock in ms / ns */
uint64_t ph_now_ms(void);
uint64_t ph_now_ns(void);

int ph_loop_init(struct ph_loop *loop, ph_wake_fn wake_fn, void *wake_arg);
void ph_loop_fini(struct ph_loop *loop);

int ph_loop_add(struct ph_loop *loop, struct ph_io *io, int fd, uint32_t events, ph_io_fn fn);
int ph_loop_mod(struct ph_loop *loop, struct ph_io *io, uint32_t events);
void ph_loop_del(struct ph_loop *loop, struct ph_io *io);
/* Like ph_loop_del() for a descriptor the caller closes right away (and never
 * duplicated): close() removes it from epoll, so no epoll_ctl() is needed;
 * while ph_loop_fds_shared is not 0 it is ph_loop_del(). */
void ph_loop_forget(struct ph_loop *loop, struct ph_io *io);

/* Not 0 while another process may hold copies of this one's descriptors (an
 * upgrade's child between fork() and exec(), or holding what it was sent):
 * close() then does not remove a descriptor from epoll (upgrade.c sets it) */
extern _Atomic unsigned ph_loop_fds_shared;

void ph_timer_arm(struct ph_loop *loop, struct ph_timer *t, uint64_t deadline_ms, ph_timer_fn fn);
void ph_timer_cancel(struct ph_loop *loop, struct ph_timer *t);
static inline bool ph_timer_armed(const struct ph_timer *t) { return t->heap_idx != 0; }

void ph_loop_defer(struct ph_loop *loop, struct ph_defer *d, void (*fn)(struct ph_defer *d));

/* Wake the loop from any thread; its wake_fn runs on the loop thread. */
void ph_loop_wake(struct ph_loop *loop);

/* Run until ph_loop_break(). Return: 0 or -errno from epoll_wait */
int ph_loop_run(struct ph_loop *loop);
/* One iteration, waiting at most @max_wait_ms (-1: until an event or timer) */
int ph_loop_run_once(struct ph_loop *loop, int max_wait_ms);
void ph_loop_break(struct ph_loop *loop);

/**
 * ph_loop_thread_start() - start a thread (to run a loop) that takes no signals
 * @thread:	where its id goes
 * @fn:		thread function
 * @arg:	its argument
 * Every signal is blocked in the new thread: signals belong to the
 * embedding program, whose own threads decide who takes them.
 * Return: 0 or -errno
 */
int ph_loop_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif /* PH_LOOP_H */
