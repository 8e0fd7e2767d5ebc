// SPDX-License-Identifier: MIT
/* events.c - port event bus: fan-out to subscribers through bounded ring queues
 *
 * Theory of Operation
 * ===================
 * The publisher is the port worker, which must never wait for anybody. Each
 * subscriber owns a fixed ring of @capacity events, a lost counter and an
 * eventfd. ph_bus_publish() walks the subscriber list under the bus mutex
 * and, for each one, takes that subscriber's own mutex just long enough to
 * copy one event in (or, when the ring is full, to count the event as lost:
 * the new event is the one dropped, so what a subscriber does receive is an
 * unbroken prefix followed by a reported gap). Neither lock is ever held
 * while waiting for a consumer: ph_sub_take() holds the subscriber mutex
 * only to copy out at most @max events. So publish costs O(subscribers).
 *
 * Ring memory follows the backlog, not @capacity: a ring starts with
 * RING_MIN slots, doubles (up to @capacity) when a publish finds it full,
 * and a take that empties a ring grown past RING_KEEP shrinks it back. An
 * event is 336 bytes, so a full-size ring of 1024 is 344 KB: allocated (and
 * zeroed) for every subscriber, as it used to be, a flood of short-lived
 * event streams spent most of the API thread's time in memset() and in
 * handing the memory back (measured: 17% memset, 6% madvise with TLB
 * shoot-downs, 1,000 streams reconnecting each second). A failed growth
 * counts the event as lost, like a full ring.
 *
 * Wake-ups: the invariant, kept under the subscriber mutex, is
 *
 *	eventfd counter != 0  <=>  ring not empty || lost != 0
 *
 * publish writes 1 when it moves the subscriber from "nothing pending" to
 * "something pending"; take reads (clears) the counter when it leaves
 * nothing pending. Both transitions happen under the same mutex, so a
 * consumer polling the eventfd can never miss an event that was published
 * between its take and its next poll.
 *
 * Lifetime: a subscription is unlinked under the bus mutex before it is
 * freed, so a concurrent publish either sees it whole or not at all. The
 * caller must not use a subscription (take, fd) once it unsubscribed it.
 */
#include "events.h"
#include "list.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RING_MIN	8	/* slots a ring starts with */
#define RING_KEEP	64	/* an emptied ring larger than this shrinks */

struct ph_sub {
	struct ph_list node;		/* bus->subs, under bus->lock */
	pthread_mutex_t lock;		/* protects everything below */
	struct ph_event *ring;
	size_t cap, alloc, head, count;	/* capacity, slots allocated */
	uint64_t lost;
	int efd;
};

struct ph_bus {
	pthread_mutex_t lock;		/* protects the list */
	struct ph_list subs;
};

const char *ph_port_state_name(enum ph_port_state s)
{
	switch (s) {
	case PH_PORT_FORWARDED:
		return "forwarded";
	case PH_PORT_CONFLICT:
		return "conflict";
	case PH_PORT_EXCLUDED:
		return "excluded";
	case PH_PORT_PUBLIC:
		return "public";
	case PH_PORT_STEERED:
		return "steered";
	}
	return "unknown";
}

const char *ph_event_type_name(enum ph_event_type t)
{
	switch (t) {
	case PH_EV_OPEN:
		return "open";
	case PH_EV_CLOSE:
		return "close";
	case PH_EV_CONFLICT:
		return "conflict";
	case PH_EV_ADDRESS:
		return "address";
	}
	return "unknown";
}

struct ph_bus *ph_bus_new(void)
{
	struct ph_bus *bus = calloc(1, sizeof(*bus));

	if (!bus)
		return NULL;
	if (pthread_mutex_init(&bus->lock, NULL)) {
		free(bus);
		errno = ENOMEM;
		return NULL;
	}
	ph_list_init(&bus->subs);
	return bus;
}

static void sub_destroy(struct ph_sub *sub)
{
	close(sub->efd);
	pthread_mutex_destroy(&sub->lock);
	free(sub->ring);
	free(sub);
}

void ph_bus_free(struct ph_bus *bus)
{
	struct ph_list *n, *tmp;

	if (!bus)
		return;
	ph_list_for_each_safe(n, tmp, &bus->subs)
		sub_destroy(ph_list_entry(n, struct ph_sub, node));
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

/**
 * ph_bus_subscribe() - attach a subscriber with a queue of @capacity events
 * @bus:	bus
 * @capacity:	queue length (> 0)
 *
 * Return: subscription, or NULL with errno set (EINVAL, ENOMEM, or the
 * eventfd() error)
 */
struct ph_sub *ph_bus_subscribe(struct ph_bus *bus, size_t capacity)
{
	struct ph_sub *sub;
	int err;

	if (!bus || !capacity) {
		errno = EINVAL;
		return NULL;
	}
	sub = calloc(1, sizeof(*sub));
	if (!sub)
		return NULL;
	sub->efd = -1;
	sub->cap = capacity;
	sub->alloc = capacity < RING_MIN ? capacity : RING_MIN;
	sub->ring = malloc(sub->alloc * sizeof(*sub->ring));
	if (!sub->ring) {
		err = ENOMEM;
		goto fail;
	}
	sub->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sub->efd < 0) {
		err = errno;
		goto fail;
	}
	err = pthread_mutex_init(&sub->lock, NULL);
	if (err)
		goto fail;

	pthread_mutex_lock(&bus->lock);
	ph_list_add(&bus->subs, &sub->node);
	pthread_mutex_unlock(&bus->lock);
	return sub;
fail:
	if (sub->efd >= 0)
		close(sub->efd);
	free(sub->ring);
	free(sub);
	errno = err;
	return NULL;
}

/* Detach and free @sub; a NULL @sub or one not attached to @bus is ignored */
void ph_bus_unsubscribe(struct ph_bus *bus, struct ph_sub *sub)
{
	struct ph_list *n, *tmp;
	bool found = false;

	if (!bus || !sub)
		return;
	pthread_mutex_lock(&bus->lock);
	ph_list_for_each_safe(n, tmp, &bus->subs) {
		if (n == &sub->node) {
			ph_list_del(n);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&bus->lock);
	if (found)
		sub_destroy(sub);
}

/* Make the eventfd readable; called under sub->lock on the empty -> pending edge */
static void sub_signal(struct ph_sub *sub)
{
	uint64_t one = 1;

	/* Cannot fail short of a counter overflow, which the invariant rules out */
	if (write(sub->efd, &one, sizeof(one)) < 0) {
	}
}

/**
 * ring_resize() - move @sub's queued events into a ring of @slots, oldest at 0
 * @sub:	subscription (its lock held)
 * @slots:	new size, at least sub->count
 *
 * Return: true, or false when out of memory (the ring is unchanged)
 */
static bool ring_resize(struct ph_sub *sub, size_t slots)
{
	struct ph_event *r = malloc(slots * sizeof(*r));

	if (!r)
		return false;
	for (size_t i = 0; i < sub->count; i++)
		r[i] = sub->ring[(sub->head + i) % sub->alloc];
	free(sub->ring);
	sub->ring = r;
	sub->alloc = slots;
	sub->head = 0;
	return true;
}

/**
 * ph_bus_publish() - queue @ev for every subscriber; never blocks on them
 * @bus:	bus
 * @ev:		event (copied)
 *
 * A subscriber whose queue is full loses @ev; its lost count grows.
 */
void ph_bus_publish(struct ph_bus *bus, const struct ph_event *ev)
{
	struct ph_list *n, *tmp;

	pthread_mutex_lock(&bus->lock);
	ph_list_for_each_safe(n, tmp, &bus->subs) {
		struct ph_sub *sub = ph_list_entry(n, struct ph_sub, node);
		bool idle;

		pthread_mutex_lock(&sub->lock);
		idle = !sub->count && !sub->lost;
		if (sub->count == sub->alloc && sub->alloc < sub->cap)
			ring_resize(sub, sub->alloc * 2 < sub->cap ? sub->alloc * 2 : sub->cap);
		if (sub->count < sub->alloc) {
			sub->ring[(sub->head + sub->count) % sub->alloc] = *ev;
			sub->count++;
		} else {
			sub->lost++;
		}
		if (idle)
			sub_signal(sub);
		pthread_mutex_unlock(&sub->lock);
	}
	pthread_mutex_unlock(&bus->lock);
}

int ph_sub_fd(const struct ph_sub *sub)
{
	return sub->efd;	/* constant for the subscription's life: no lock */
}

/**
 * ph_sub_take() - dequeue up to @max events, oldest first
 * @sub:	subscription
 * @out:	destination
 * @max:	room in @out
 * @lost:	set to the number of events dropped since the previous take
 *		(and reset); may be NULL, the count is reset anyway
 *
 * The eventfd is cleared when this leaves nothing pending.
 * Return: number of events stored
 */
size_t ph_sub_take(struct ph_sub *sub, struct ph_event *out, size_t max, uint64_t *lost)
{
	size_t n = 0;
	bool pending;

	pthread_mutex_lock(&sub->lock);
	pending = sub->count || sub->lost;
	while (n < max && sub->count) {
		out[n++] = sub->ring[sub->head];
		sub->head = (sub->head + 1) % sub->alloc;
		sub->count--;
	}
	if (!sub->count && sub->alloc > RING_KEEP)
		ring_resize(sub, RING_MIN);	/* a burst is over: give its memory back */
	if (lost)
		*lost = sub->lost;
	sub->lost = 0;
	if (pending && !sub->count) {
		uint64_t v;

		if (read(sub->efd, &v, sizeof(v)) < 0) {
			/* cannot happen: the invariant says the counter is set */
		}
	}
	pthread_mutex_unlock(&sub->lock);
	return n;
}
