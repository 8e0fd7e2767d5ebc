// SPDX-License-Identifier: MIT
/* loop.c - epoll event loop
 *
 * Theory of Operation
 * ===================
 * One loop per thread. Descriptors are registered with a struct ph_io
 * embedded in their owner; epoll's data.ptr points at it. Timers live in a
 * binary min-heap; epoll_wait() sleeps until the earliest deadline. Owners
 * that close a descriptor during a batch call ph_loop_del() (which marks the
 * ph_io dead so later events of the same batch are skipped) and release their
 * memory through ph_loop_defer(), which runs after the batch: so no callback
 * ever sees freed memory. Other threads talk to the loop only through
 * ph_loop_wake() (an eventfd) and state they protect themselves.
 */
#include "loop.h"
#include "array.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

uint64_t ph_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t ph_now_ms(void)
{
	return ph_now_ns() / 1000000ull;
}

static void wake_cb(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	uint64_t v;

	(void)events;
	if (read(io->fd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another wake already consumed it */
	}
	if (loop->wake_fn)
		loop->wake_fn(loop, loop->wake_arg);
}

/**
 * ph_loop_init() - set up an event loop
 * @loop:	zeroed or uninitialised storage
 * @wake_fn:	called on the loop thread after ph_loop_wake(); may be NULL
 * @wake_arg:	its argument
 *
 * Return: 0 or -errno
 */
int ph_loop_init(struct ph_loop *loop, ph_wake_fn wake_fn, void *wake_arg)
{
	int ret;

	*loop = (struct ph_loop){ .epfd = -1, .wakefd = -1 };
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wakefd < 0) {
		ret = -errno;
		goto fail;
	}
	loop->wake_fn = wake_fn;
	loop->wake_arg = wake_arg;
	ret = ph_loop_add(loop, &loop->wake_io, loop->wakefd, EPOLLIN, wake_cb);
	if (ret)
		goto fail;
	loop->now_ms = ph_now_ms();
	return 0;
fail:
	ph_loop_fini(loop);
	return ret;
}

static void run_deferred(struct ph_loop *loop)
{
	while (loop->deferred) {
		struct ph_defer *d = loop->deferred;

		loop->deferred = d->next;
		d->next = NULL;
		d->fn(d);
	}
}

/**
 * ph_loop_fini() - release the loop's own resources
 * @loop:	loop; owners must have closed their descriptors first
 *
 * Runs pending deferred work, so memory queued with ph_loop_defer() is freed.
 */
void ph_loop_fini(struct ph_loop *loop)
{
	run_deferred(loop);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->epfd >= 0)
		close(loop->epfd);
	free(loop->heap);
	loop->heap = NULL;
	loop->heap_len = loop->heap_cap = 0;
	loop->wakefd = loop->epfd = -1;
}

/**
 * ph_loop_add() - watch @fd
 * @loop:	loop
 * @io:		handle embedded in the owner
 * @fd:		descriptor
 * @events:	EPOLLIN, EPOLLOUT, EPOLLET, ...
 * @fn:		callback
 *
 * Return: 0 or -errno
 */
int ph_loop_add(struct ph_loop *loop, struct ph_io *io, int fd, uint32_t events, ph_io_fn fn)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	io->fd = fd;
	io->fn = fn;
	io->events = events;
	io->live = true;
	return 0;
}

/**
 * ph_loop_mod() - change the event mask of a watched descriptor
 * @loop:	loop
 * @io:		registered handle
 * @events:	new mask
 *
 * Return: 0 or -errno
 */
int ph_loop_mod(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };

	if (!io->live)
		return -EBADF;
	if (io->events == events)
		return 0;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

/**
 * ph_loop_del() - stop watching; the caller still owns and closes the fd
 * @loop:	loop
 * @io:		handle; safe to call when not registered
 */
void ph_loop_del(struct ph_loop *loop, struct ph_io *io)
{
	if (!io->live)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->live = false;
	io->fd = -1;
}

_Atomic unsigned ph_loop_fds_shared;

void ph_loop_forget(struct ph_loop *loop, struct ph_io *io)
{
	/* a forked child (an upgrade's, before its exec) has copies: close()
	 * would leave the registration, and events for freed memory */
	if (atomic_load(&ph_loop_fds_shared)) {
		ph_loop_del(loop, io);
		return;
	}
	io->live = false;
	io->fd = -1;
}

/* heap helpers: 1-based, heap[i]->heap_idx == i */
static void heap_swap(struct ph_loop *loop, size_t a, size_t b)
{
	struct ph_timer *t = loop->heap[a];

	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_idx = a;
	loop->heap[b]->heap_idx = b;
}

static void heap_up(struct ph_loop *loop, size_t i)
{
	while (i > 1 && loop->heap[i / 2]->deadline_ms > loop->heap[i]->deadline_ms) {
		heap_swap(loop, i, i / 2);
		i /= 2;
	}
}

static void heap_down(struct ph_loop *loop, size_t i)
{
	for (;;) {
		size_t l = 2 * i, r = l + 1, m = i;

		if (l <= loop->heap_len && loop->heap[l]->deadline_ms < loop->heap[m]->deadline_ms)
			m = l;
		if (r <= loop->heap_len && loop->heap[r]->deadline_ms < loop->heap[m]->deadline_ms)
			m = r;
		if (m == i)
			return;
		heap_swap(loop, i, m);
		i = m;
	}
}

/**
 * ph_timer_cancel() - disarm; safe on a timer that is not armed
 * @loop:	loop
 * @t:		timer
 */
void ph_timer_cancel(struct ph_loop *loop, struct ph_timer *t)
{
	size_t i = t->heap_idx;

	if (!i)
		return;
	if (i != loop->heap_len) {
		heap_swap(loop, i, loop->heap_len);
		loop->heap_len--;
		heap_down(loop, i);
		heap_up(loop, i);
	} else {
		loop->heap_len--;
	}
	t->heap_idx = 0;
}

/**
 * ph_timer_arm() - (re)arm a one-shot timer
 * @loop:	loop
 * @t:		timer, armed or not
 * @deadline_ms: absolute monotonic ms
 * @fn:		callback
 *
 * The heap grows by doubling; if even that allocation fails the process
 * aborts, because a timer that silently never fires is a hung connection.
 */
void ph_timer_arm(struct ph_loop *loop, struct ph_timer *t, uint64_t deadline_ms, ph_timer_fn fn)
{
	ph_timer_cancel(loop, t);
	t->deadline_ms = deadline_ms;
	t->fn = fn;
	/* the heap is 1-based: slot 0 stays unused */
	if (ph_array_grow(&loop->heap, &loop->heap_cap, loop->heap_len + 2, sizeof(*loop->heap), 64))
		abort(); /* timers are part of correctness; no silent loss */
	loop->heap[++loop->heap_len] = t;
	t->heap_idx = loop->heap_len;
	heap_up(loop, t->heap_idx);
}

void ph_loop_defer(struct ph_loop *loop, struct ph_defer *d, void (*fn)(struct ph_defer *d))
{
	d->fn = fn;
	d->next = loop->deferred;
	loop->deferred = d;
}

void ph_loop_wake(struct ph_loop *loop)
{
	uint64_t one = 1;

	if (write(loop->wakefd, &one, sizeof(one)) < 0) {
		/* EAGAIN: counter saturated, a wake is pending anyway */
	}
}

int ph_loop_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int ret;

	/* the new thread inherits the mask in force while it is created */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

void ph_loop_break(struct ph_loop *loop)
{
	loop->stop = true;
}

/* Runs the timers due at loop->now_ms (the caller keeps it current) */
static void run_timers(struct ph_loop *loop)
{
	while (loop->heap_len && loop->heap[1]->deadline_ms <= loop->now_ms) {
		struct ph_timer *t = loop->heap[1];

		ph_timer_cancel(loop, t);
		t->fn(loop, t);
	}
}

int ph_loop_run_once(struct ph_loop *loop, int max_wait_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	int timeout = max_wait_ms, n;

	/* Two clock reads per turn, one on each side of epoll_wait(): under
	 * load a turn is a few splices long, and each read is a visible cost
	 * (2-5% of a bulk relay's CPU under a hypervisor). */
	loop->now_ms = ph_now_ms();
	run_timers(loop);
	run_deferred(loop);
	if (loop->stop)
		return 0;
	if (loop->heap_len) {
		uint64_t now = loop->now_ms, dl = loop->heap[1]->deadline_ms;
		int until = dl > now ? (int)(dl - now) : 0;

		if (timeout < 0 || until < timeout)
			timeout = until;
	}
	n = epoll_wait(loop->epfd, evs, LOOP_BATCH, timeout);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	loop->now_ms = ph_now_ms();
	for (int i = 0; i < n; i++) {
		struct ph_io *io = evs[i].data.ptr;

		if (io->live)
			io->fn(loop, io, evs[i].events);
	}
	run_deferred(loop);
	run_timers(loop);
	run_deferred(loop);
	return 0;
}

int ph_loop_run(struct ph_loop *loop)
{
	int ret = 0;

	loop->stop = false;
	while (!loop->stop && !ret)
		ret = ph_loop_run_once(loop, -1);
	return ret;
}
