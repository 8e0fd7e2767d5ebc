/* SPDX-License-Identifier: MIT */
/* sse.h - /ports/events: port events as a text/event-stream, one bus subscription per client */
#ifndef PH_SSE_H
#define PH_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "events.h"
#include "http.h"
#include "json.h"
#include "list.h"
#include "loop.h"

/*
 * Writes the first event's data (the /ports document) into @out.
 * Return: 0 or -errno
 */
typedef int (*ph_sse_snapshot_fn)(void *arg, struct ph_buf *out);

/**
 * struct ph_sse_hub - what all event streams share (zero-initialise, then fill)
 * @loop:	the API's loop
 * @bus:	where port events come from
 * @queue:	events queued per client before it loses some
 * @ping_ms:	interval of ": ping" comments
 * @snapshot:	produces the first event's data
 * @arg:	its argument
 * @max_streams: streams at once; a new one evicts the oldest (0: no cap)
 * @srv:	the HTTP server (may be NULL): starts yield to its listen queue
 * @streams:	open streams, oldest first (ph_list_init() it)
 * @pending:	streams admitted but not started yet, oldest first (ph_list_init() it)
 * @start_timer: starts pending streams, a few per turn of the loop
 * @last_admit_ms: when the newest stream was admitted
 * @clients:	streams open now (started or pending)
 * @lost:	events dropped for slow clients, all time
 */
struct ph_sse_hub {
	struct ph_loop *loop;
	struct ph_bus *bus;
	size_t queue;
	uint64_t ping_ms;
	ph_sse_snapshot_fn snapshot;
	void *arg;
	unsigned max_streams;
	struct ph_http_server *srv;
	struct ph_list streams;
	struct ph_list pending;
	struct ph_timer start_timer;
	uint64_t last_admit_ms;
	uint64_t clients;
	uint64_t lost;
};

/**
 * ph_sse_start() - answer the current request of @c with an event stream
 * @hub:	shared state
 * @c:		connection, inside the request handler
 *
 * Admits the stream (the head is queued, the cap enforced) and leaves the
 * rest to a timer due at once, which starts a few pending streams per turn
 * of the loop: it subscribes first and takes the snapshot second, so no
 * event between the two is missed (one may repeat what the snapshot
 * already shows). A stream that cannot be started then is closed.
 * Return: 0 (answered: a stream, or the head alone for HEAD), or -errno
 * when nothing was sent and the caller must answer with an error
 */
int ph_sse_start(struct ph_sse_hub *hub, struct ph_http_conn *c);

/**
 * ph_sse_end_all() - write @msg (a whole event) to every stream and close it
 * @hub:	hub
 * @msg:	"event: NAME\ndata: ...\n\n"
 * Return: streams closed
 */
unsigned ph_sse_end_all(struct ph_sse_hub *hub, const char *msg);

/* Stop starting pending streams (before the connections are closed) */
void ph_sse_hub_fini(struct ph_sse_hub *hub);

/* Append one event: "event: NAME\n" (omitted when NULL), a "data:" line per line of @data, "\n" */
void ph_sse_format(struct ph_buf *b, const char *event, const char *data, size_t len);

#endif /* PH_SSE_H */
