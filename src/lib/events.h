/* SPDX-License-Identifier: MIT */
/* events.h - port events fanned out to subscribers through bounded queues */
#ifndef PH_EVENTS_H
#define PH_EVENTS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "addrset.h"

enum ph_port_state {
	PH_PORT_FORWARDED,	/* exposed on EXTERNAL:port and relayed */
	PH_PORT_CONFLICT,	/* should be exposed, but binding EXTERNAL:port failed */
	PH_PORT_EXCLUDED,	/* loopback-only, ruled out by --allow/--deny */
	PH_PORT_PUBLIC,		/* already reachable on the external address */
	PH_PORT_STEERED,	/* --steer: sk_lookup hands EXTERNAL:port to the service's listener */
};

#define PH_PORT_STATES	5	/* values of enum ph_port_state */

const char *ph_port_state_name(enum ph_port_state s);

/**
 * struct ph_port_info - the externally visible state of one port of one protocol
 * @port:	TCP or UDP port
 * @proto:	IPPROTO_TCP or IPPROTO_UDP (0 reads as TCP)
 * @family:	AF_INET or AF_INET6 of the listener shown
 * @address:	that listener's address, text
 * @state:	see enum ph_port_state
 * @connections: relayed connections open now (FORWARDED TCP only); for
 *		STEERED, the service's connections on the external addresses
 *		(counted with sock_diag by ph_ports_list())
 * @cap_hits:	times the port reached its connection cap (FORWARDED TCP only)
 * @flows:	UDP flows (client addresses relayed) open now (FORWARDED UDP only)
 * @since_ms:	wall-clock time (Unix ms) it entered @state
 * @error:	bind error text for CONFLICT; for a FORWARDED port that --steer
 *		names, why it is relayed instead; else empty
 * @addrs:	the external addresses it is bound to (FORWARDED, CONFLICT) or
 *		steered on (STEERED)
 * @steered_fams: STEERED: the families (PH_FAM_*) whose external addresses
 *		are steered (the others, if any, are relayed)
 */
struct ph_port_info {
	uint16_t port;
	uint8_t proto;
	uint8_t family;
	char address[INET6_ADDRSTRLEN];
	enum ph_port_state state;
	uint32_t connections;
	uint64_t cap_hits;
	uint32_t flows;
	int64_t since_ms;
	char error[160];
	struct ph_addr_set addrs;
	uint8_t steered_fams;
};

enum ph_event_type { PH_EV_OPEN, PH_EV_CLOSE, PH_EV_CONFLICT, PH_EV_ADDRESS };

/* "open", "close", "conflict", "address" */
const char *ph_event_type_name(enum ph_event_type t);

/**
 * struct ph_event - one event
 * @type:	see enum ph_event_type
 * @port:	the port (open, close, conflict)
 * @addresses:	the external addresses before and after (address)
 */
struct ph_event {
	enum ph_event_type type;
	union {
		struct ph_port_info port;
		struct {
			struct ph_addr_set old;
			struct ph_addr_set now;
		} addresses;
	};
};

struct ph_bus;
struct ph_sub;

/* Return: new bus or NULL (ENOMEM) */
struct ph_bus *ph_bus_new(void);
/* Frees the bus and any subscription still attached */
void ph_bus_free(struct ph_bus *bus);

/**
 * ph_bus_subscribe() - attach a subscriber with a queue of @capacity events
 * @bus:	bus
 * @capacity:	queue length (> 0)
 *
 * Return: subscription, or NULL with errno set
 */
struct ph_sub *ph_bus_subscribe(struct ph_bus *bus, size_t capacity);
void ph_bus_unsubscribe(struct ph_bus *bus, struct ph_sub *sub);

/**
 * ph_bus_publish() - queue @ev for every subscriber; never blocks on them
 * @bus:	bus
 * @ev:		event (copied)
 *
 * A subscriber whose queue is full loses the event; its lost count grows.
 */
void ph_bus_publish(struct ph_bus *bus, const struct ph_event *ev);

/* eventfd that is readable while events (or a loss) are pending */
int ph_sub_fd(const struct ph_sub *sub);

/**
 * ph_sub_take() - dequeue up to @max events
 * @sub:	subscription
 * @out:	destination
 * @max:	room in @out
 * @lost:	set to the number of events dropped since the previous take
 *		(and reset); events before the loss come first in @out
 *
 * Return: number of events stored
 */
size_t ph_sub_take(struct ph_sub *sub, struct ph_event *out, size_t max, uint64_t *lost);

#endif /* PH_EVENTS_H */
