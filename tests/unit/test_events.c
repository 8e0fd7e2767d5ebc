// SPDX-License-Identifier: MIT
/* test_events.c - event bus: ordering, overflow and loss, eventfd wake-ups, threads */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "events.h"

/* events carry a sequence number; the other fields are derived from it so a
 * torn copy would show */
static struct ph_event mkev(uint64_t seq)
{
	struct ph_event ev = {
		.type = (enum ph_event_type)(seq % 3),
		.port = { .port = (uint16_t)(seq & 0xffff), .family = AF_INET,
			  .state = PH_PORT_FORWARDED, .since_ms = (int64_t)seq },
	};

	snprintf(ev.port.address, sizeof(ev.port.address), "127.0.0.%u", (unsigned)(seq % 256));
	return ev;
}

static uint64_t seq_of(const struct ph_event *ev)
{
	char want[INET6_ADDRSTRLEN];
	uint64_t seq = (uint64_t)ev->port.since_ms;

	snprintf(want, sizeof(want), "127.0.0.%u", (unsigned)(seq % 256));
	assert_int_equal(ev->type, seq % 3);
	assert_int_equal(ev->port.port, seq & 0xffff);
	assert_string_equal(ev->port.address, want);
	return seq;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_true(poll(&p, 1, 0) >= 0);
	return p.revents & POLLIN;
}

static void publish_range(struct ph_bus *bus, uint64_t from, uint64_t to)
{
	for (uint64_t s = from; s < to; s++) {
		struct ph_event ev = mkev(s);

		ph_bus_publish(bus, &ev);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(ph_port_state_name(PH_PORT_FORWARDED), "forwarded");
	assert_string_equal(ph_port_state_name(PH_PORT_CONFLICT), "conflict");
	assert_string_equal(ph_port_state_name(PH_PORT_EXCLUDED), "excluded");
	assert_string_equal(ph_port_state_name(PH_PORT_PUBLIC), "public");
	assert_string_equal(ph_port_state_name((enum ph_port_state)42), "unknown");
	assert_string_equal(ph_event_type_name(PH_EV_OPEN), "open");
	assert_string_equal(ph_event_type_name(PH_EV_CLOSE), "close");
	assert_string_equal(ph_event_type_name(PH_EV_CONFLICT), "conflict");
	assert_string_equal(ph_event_type_name((enum ph_event_type)42), "unknown");
}

static void test_subscribe_args(void **state)
{
	struct ph_bus *bus = ph_bus_new();
	struct ph_sub *sub;
	int fd;

	(void)state;
	assert_non_null(bus);
	errno = 0;
	assert_null(ph_bus_subscribe(bus, 0));
	assert_int_equal(errno, EINVAL);
	assert_null(ph_bus_subscribe(NULL, 4));

	sub = ph_bus_subscribe(bus, 4);
	assert_non_null(sub);
	fd = ph_sub_fd(sub);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_false(readable(fd));

	/* publish without subscribers, unsubscribe of NULL: harmless */
	ph_bus_unsubscribe(bus, NULL);
	ph_bus_unsubscribe(bus, sub);
	/* the eventfd is closed with the subscription */
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	publish_range(bus, 0, 3);
	ph_bus_free(bus);
	ph_bus_free(NULL);
}

static void test_order_and_readability(void **state)
{
	struct ph_bus *bus = ph_bus_new();
	struct ph_sub *sub = ph_bus_subscribe(bus, 8);
	struct ph_event out[8];
	uint64_t lost = 99;
	int fd = ph_sub_fd(sub);

	(void)state;
	assert_int_equal(ph_sub_take(sub, out, 8, &lost), 0);
	assert_int_equal(lost, 0);
	assert_false(readable(fd));

	publish_range(bus, 0, 5);
	assert_true(readable(fd));
	/* a partial take leaves the rest pending: still readable */
	assert_int_equal(ph_sub_take(sub, out, 2, &lost), 2);
	assert_int_equal(lost, 0);
	assert_int_equal(seq_of(&out[0]), 0);
	assert_int_equal(seq_of(&out[1]), 1);
	assert_true(readable(fd));
	assert_int_equal(ph_sub_take(sub, out, 8, &lost), 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(seq_of(&out[i]), 2 + i);
	assert_false(readable(fd));

	/* drained, then a new event: readable again (the edge is re-armed) */
	publish_range(bus, 5, 6);
	assert_true(readable(fd));
	assert_int_equal(ph_sub_take(sub, out, 8, NULL), 1);
	assert_int_equal(seq_of(&out[0]), 5);
	assert_false(readable(fd));

	/* the ring wraps around many times without reordering */
	for (uint64_t base = 100; base < 1000; base += 7) {
		publish_range(bus, base, base + 7);
		assert_int_equal(ph_sub_take(sub, out, 8, &lost), 7);
		assert_int_equal(lost, 0);
		for (unsigned i = 0; i < 7; i++)
			assert_int_equal(seq_of(&out[i]), base + i);
		assert_false(readable(fd));
	}
	ph_bus_free(bus);	/* frees the subscription still attached */
}

/* The ring grows with the backlog (from a few slots, wrapped around, up to
 * its capacity) and shrinks once emptied: order and loss as with a fixed one */
static void test_ring_grows_and_shrinks(void **state)
{
	struct ph_bus *bus = ph_bus_new();
	struct ph_sub *sub = ph_bus_subscribe(bus, 1000);
	static struct ph_event out[1000];
	uint64_t lost = 99, next = 0;

	(void)state;
	for (int round = 0; round < 3; round++) {
		/* leave the head mid-ring, so growing has to unwrap it */
		publish_range(bus, next, next + 5);
		assert_int_equal(ph_sub_take(sub, out, 3, &lost), 3);
		assert_int_equal(lost, 0);
		for (unsigned i = 0; i < 3; i++)
			assert_int_equal(seq_of(&out[i]), next + i);
		/* 2 left + 1,000 more: 998 fit (capacity), 2 are lost */
		publish_range(bus, next + 5, next + 1005);
		assert_int_equal(ph_sub_take(sub, out, 1000, &lost), 1000);
		assert_int_equal(lost, 2);
		for (unsigned i = 0; i < 1000; i++)
			assert_int_equal(seq_of(&out[i]), next + 3 + i);
		assert_false(readable(ph_sub_fd(sub)));
		next += 2000;
	}
	ph_bus_unsubscribe(bus, sub);
	ph_bus_free(bus);
}

static void test_overflow_lost(void **state)
{
	struct ph_bus *bus = ph_bus_new();
	struct ph_sub *sub = ph_bus_subscribe(bus, 4);
	struct ph_event out[16];
	uint64_t lost = 0;
	int fd = ph_sub_fd(sub);

	(void)state;
	publish_range(bus, 0, 10);
	assert_true(readable(fd));
	/* max 0: only the loss is reported (and reset); events stay pending */
	assert_int_equal(ph_sub_take(sub, out, 0, &lost), 0);
	assert_int_equal(lost, 6);
	assert_true(readable(fd));
	/* the oldest events are kept: the new ones were dropped */
	assert_int_equal(ph_sub_take(sub, out, 16, &lost), 4);
	assert_int_equal(lost, 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(seq_of(&out[i]), i);
	assert_false(readable(fd));

	/* a loss reported together with the events before it */
	publish_range(bus, 10, 17);
	assert_int_equal(ph_sub_take(sub, out, 16, &lost), 4);
	assert_int_equal(lost, 3);
	assert_int_equal(seq_of(&out[0]), 10);
	assert_int_equal(seq_of(&out[3]), 13);
	assert_false(readable(fd));
	assert_int_equal(ph_sub_take(sub, out, 16, &lost), 0);
	assert_int_equal(lost, 0);

	/* capacity 1 */
	ph_bus_unsubscribe(bus, sub);
	sub = ph_bus_subscribe(bus, 1);
	publish_range(bus, 20, 23);
	assert_int_equal(ph_sub_take(sub, out, 16, &lost), 1);
	assert_int_equal(seq_of(&out[0]), 20);
	assert_int_equal(lost, 2);
	ph_bus_free(bus);
}

/* A stuck subscriber loses events; another one, reading, loses none */
static void test_independent_subscribers(void **state)
{
	struct ph_bus *bus = ph_bus_new();
	struct ph_sub *stuck = ph_bus_subscribe(bus, 8);
	struct ph_sub *live = ph_bus_subscribe(bus, 8);
	struct ph_sub *late;
	struct ph_event out[8];
	uint64_t lost;

	(void)state;
	for (uint64_t s = 0; s < 100; s++) {
		publish_range(bus, s, s + 1);
		assert_int_equal(ph_sub_take(live, out, 8, &lost), 1);
		assert_int_equal(lost, 0);
		assert_int_equal(seq_of(&out[0]), s);
	}
	assert_true(readable(ph_sub_fd(stuck)));
	assert_false(readable(ph_sub_fd(live)));

	/* a subscriber sees only what is published after it joined */
	late = ph_bus_subscribe(bus, 8);
	publish_range(bus, 100, 101);
	assert_int_equal(ph_sub_take(late, out, 8, &lost), 1);
	assert_int_equal(seq_of(&out[0]), 100);
	assert_int_equal(lost, 0);

	assert_int_equal(ph_sub_take(stuck, out, 8, &lost), 8);
	assert_int_equal(lost, 93);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(seq_of(&out[i]), i);

	/* unsubscribing one leaves the others working */
	ph_bus_unsubscribe(bus, stuck);
	publish_range(bus, 101, 102);
	assert_int_equal(ph_sub_take(live, out, 8, &lost), 2);
	assert_int_equal(seq_of(&out[0]), 100);
	assert_int_equal(seq_of(&out[1]), 101);
	assert_int_equal(ph_sub_take(late, out, 8, &lost), 1);
	ph_bus_unsubscribe(bus, late);
	ph_bus_unsubscribe(bus, live);
	ph_bus_free(bus);
}

/* ---- threaded stress ---- */

#define STRESS_EVENTS 100000
#define N_CONSUMERS 4

struct stress {
	struct ph_bus *bus;
	int stop_fd;			/* readable once the publisher is done */
	atomic_bool done;
	_Atomic uint64_t published;	/* events whose publish returned */
	atomic_int failures;
	_Atomic uint64_t churn_subs;
};

struct consumer {
	struct stress *st;
	struct ph_sub *sub;
	size_t max;			/* take at most this many at a time */
	unsigned delay_us;		/* simulated slowness after each take */
	uint64_t delivered, lost;
	bool stalled, disorder, wake_bug;
};

static void *publisher(void *arg)
{
	struct stress *st = arg;
	uint64_t one = 1;

	for (uint64_t s = 0; s < STRESS_EVENTS; s++) {
		struct ph_event ev = mkev(s);

		ph_bus_publish(st->bus, &ev);
		atomic_store(&st->published, s + 1);
		if (s % 256 == 0)
			sched_yield();
	}
	atomic_store(&st->done, true);
	if (write(st->stop_fd, &one, sizeof(one)) != sizeof(one))
		atomic_fetch_add(&st->failures, 1);
	return NULL;
}

/*
 * Checks the eventfd invariant from the consumer's side (only this thread
 * takes from its subscription, so pending work can only grow between a poll
 * and the next take):
 * - a poll that said "readable" must be followed by a non-empty take;
 * - once the publisher is done nothing changes any more, so the eventfd must
 *   be readable exactly when a take finds something. A lost wake-up leaves
 *   the consumer asleep until the stop signal and is caught here.
 */
static void *consumer(void *arg)
{
	struct consumer *c = arg;
	struct ph_event buf[64];
	uint64_t next = 0;	/* every seq below this was delivered or lost */
	bool woke = false;

	for (;;) {
		bool fin = atomic_load(&c->st->done);
		bool ready = fin && readable(ph_sub_fd(c->sub));
		uint64_t lost;
		size_t n = ph_sub_take(c->sub, buf, c->max, &lost);

		if ((woke || ready) && !n && !lost)
			c->wake_bug = true;	/* readable, but nothing pending */
		if (fin && (n || lost) && !ready)
			c->wake_bug = true;	/* pending, but not readable */
		woke = false;
		c->lost += lost;
		for (size_t i = 0; i < n; i++) {
			uint64_t s = (uint64_t)buf[i].port.since_ms;

			if (s < next || buf[i].port.port != (s & 0xffff))
				c->disorder = true;
			next = s + 1;
		}
		c->delivered += n;
		if (c->delay_us)
			usleep(c->delay_us);
		if (!n && !lost) {
			struct pollfd p[2] = { { .fd = ph_sub_fd(c->sub), .events = POLLIN },
					       { .fd = c->st->stop_fd, .events = POLLIN } };

			if (fin)
				break;
			if (poll(p, 2, 10000) == 0) {
				c->stalled = true;
				break;
			}
			woke = p[0].revents & POLLIN;
		}
	}
	return NULL;
}

/*
 * Subscribe/unsubscribe churn during the stream. The first event after
 * subscribing always fits, so it is the first one published after the
 * subscription; whenever a take drains the queue, delivered + lost must
 * account for every event from there up to one published before the take.
 */
static void *churner(void *arg)
{
	struct stress *st = arg;
	struct ph_event buf[8];
	unsigned r = 1;

	while (!atomic_load(&st->done)) {
		struct ph_sub *sub = ph_bus_subscribe(st->bus, 1 + r % 32);
		uint64_t first = UINT64_MAX, last = 0, total = 0;

		if (!sub) {
			atomic_fetch_add(&st->failures, 1);
			return NULL;
		}
		for (unsigned k = 0; k < 1 + r % 20; k++) {
			struct pollfd p = { .fd = ph_sub_fd(sub), .events = POLLIN };
			uint64_t lost, pub;
			size_t n;

			if (poll(&p, 1, 1) < 0)
				atomic_fetch_add(&st->failures, 1);
			n = ph_sub_take(sub, buf, 8, &lost);
			pub = atomic_load(&st->published);
			for (size_t i = 0; i < n; i++) {
				uint64_t s = (uint64_t)buf[i].port.since_ms;

				if (first == UINT64_MAX)
					first = s;
				else if (s <= last)
					atomic_fetch_add(&st->failures, 1);
				last = s;
			}
			if (first == UINT64_MAX && lost)
				atomic_fetch_add(&st->failures, 1);	/* loss before any event */
			total += n + lost;
			if (n < 8 && first != UINT64_MAX &&
			    (total < last - first + 1 || total > pub - first + 1))
				atomic_fetch_add(&st->failures, 1);
		}
		ph_bus_unsubscribe(st->bus, sub);
		atomic_fetch_add(&st->churn_subs, 1);
		r = r * 1103515245u + 12345u;
	}
	return NULL;
}

static void test_threaded_stress(void **state)
{
	struct stress st = { .bus = ph_bus_new() };
	struct consumer c[N_CONSUMERS] = {
		{ .max = 64, .delay_us = 0 },	/* fast */
		{ .max = 1, .delay_us = 0 },	/* one at a time */
		{ .max = 8, .delay_us = 50 },	/* slow */
		{ .max = 64, .delay_us = 2000 },/* very slow */
	};
	static const size_t caps[N_CONSUMERS] = { 4096, 64, 16, 1 };
	pthread_t pt, ct[N_CONSUMERS], chr;

	(void)state;
	assert_non_null(st.bus);
	st.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(st.stop_fd >= 0);
	for (int i = 0; i < N_CONSUMERS; i++) {
		c[i].st = &st;
		c[i].sub = ph_bus_subscribe(st.bus, caps[i]);
		assert_non_null(c[i].sub);
		assert_int_equal(pthread_create(&ct[i], NULL, consumer, &c[i]), 0);
	}
	assert_int_equal(pthread_create(&chr, NULL, churner, &st), 0);
	assert_int_equal(pthread_create(&pt, NULL, publisher, &st), 0);

	assert_int_equal(pthread_join(pt, NULL), 0);
	assert_int_equal(pthread_join(chr, NULL), 0);
	for (int i = 0; i < N_CONSUMERS; i++) {
		assert_int_equal(pthread_join(ct[i], NULL), 0);
		print_message("consumer %d (capacity %zu): %llu delivered, %llu lost\n", i,
			      caps[i], (unsigned long long)c[i].delivered,
			      (unsigned long long)c[i].lost);
		assert_false(c[i].stalled);
		assert_false(c[i].wake_bug);
		assert_false(readable(ph_sub_fd(c[i].sub)));	/* drained: quiet */
		assert_false(c[i].disorder);
		assert_int_equal(c[i].delivered + c[i].lost, STRESS_EVENTS);
	}
	print_message("churn: %llu subscriptions\n", (unsigned long long)st.churn_subs);
	assert_int_equal(atomic_load(&st.failures), 0);
	assert_true(atomic_load(&st.churn_subs) > 0);
	assert_int_equal(c[3].lost > 0, 1);	/* capacity 1 and slow: it must have lost */
	for (int i = 0; i < N_CONSUMERS; i++)
		ph_bus_unsubscribe(st.bus, c[i].sub);
	close(st.stop_fd);
	ph_bus_free(st.bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_subscribe_args),
		cmocka_unit_test(test_order_and_readability),
		cmocka_unit_test(test_overflow_lost),
		cmocka_unit_test(test_ring_grows_and_shrinks),
		cmocka_unit_test(test_independent_subscribers),
		cmocka_unit_test(test_threaded_stress),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
