// SPDX-License-Identifier: MIT
/* sse.c - /ports/events: port events as a text/event-stream, one bus subscription per client
 *
 * Theory of Operation
 * ===================
 * Every client gets its own bus subscription (a bounded queue filled by the
 * port worker, which never waits) whose eventfd is watched on the API loop.
 * When it fires, events are moved from the queue into the connection's
 * output, which writes what the socket takes at once. What the socket does
 * not take stays buffered here; once more than SSE_MAX bytes beyond the
 * snapshot wait (the client has not read the kernel's socket buffers and
 * SSE_MAX on top), the stream is cut with a reset and its memory freed:
 * such a client is far behind and has to re-read /ports anyway. So a
 * client that stops reading costs at most the snapshot plus SSE_MAX here,
 * not the 30 s of the write deadline. The bus queue covers the other case,
 * a loop that does not run for a while: when it is full the bus drops
 * events for this client alone and counts them, and the client then gets
 * "event: lost" with the count. A ": ping" comment every ping_ms keeps
 * proxies and the client's own idle timers from cutting a quiet stream.
 *
 * Streams are capped (max_streams, --max-event-streams): a new one at the
 * cap evicts the oldest, which is sent "event: evicted" and closed. Streams
 * therefore never hold more than that many of the API's connection slots.
 *
 * Admission is cheap, the start is not, and only the start waits. A new
 * stream is admitted in its request handler: the 200 head is queued (and
 * held: it goes out with the first event, in one send), the cap enforced,
 * and the stream queued as pending. What is expensive (the bus
 * subscription with its eventfd, the snapshot of the port table, its first
 * write) waits until START_QUIET_MS passed without a new stream, at most
 * START_MAX_MS after the stream's admission: a burst of reconnecting
 * clients settles first, and the streams it evicted while still pending
 * are never started at all (such a stream's only event is "evicted"). Then
 * at most START_BATCH pending streams are started per turn of the loop,
 * one while clients still wait in the API's listen queue (the last accept
 * batch did not empty it), so the requests that arrived meanwhile (GET
 * /health, the snapshot endpoints) are read and answered in between.
 * Measured with 1,000 never-reading clients reconnecting each second
 * (t_api_load.sh): starting every stream in its handler cost the API
 * thread 0.74 s (glibc) and 1.2-1.6 s (musl, whose allocator also maps and
 * unmaps memory groups per start, each unmap a TLB shoot-down) per 8 s,
 * and /health waited behind whole bursts; with the settling, 0.6-0.75 s.
 */
#include "sse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SSE_MAX		(64 * 1024)
#define TAKE_BATCH	32
#define START_BATCH	8	/* pending streams started per turn of the loop */
#define START_QUIET_MS	10	/* starts wait for this long without a new stream... */
#define START_MAX_MS	100	/* ...but no stream waits longer than this */

struct sse {
	struct ph_sse_hub *hub;
	struct ph_http_conn *c;
	struct ph_list node;		/* hub->streams, oldest first */
	struct ph_list pnode;		/* hub->pending while not started */
	struct ph_sub *sub;		/* NULL until started */
	struct ph_io io;
	struct ph_timer ping;
	struct ph_defer defer;
	size_t bound;			/* buffered bytes beyond which the stream is cut */
	uint64_t admitted_ms;
};

void ph_sse_format(struct ph_buf *b, const char *event, const char *data, size_t len)
{
	const char *p = data, *end = data + len;

	if (event)
		ph_buf_printf(b, "event: %s\n", event);
	do {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		ph_buf_puts(b, "data: ");
		ph_buf_add(b, p, (size_t)(eol - p));
		ph_buf_add(b, "\n", 1);
		p = nl ? nl + 1 : end;
	} while (p < end);
	ph_buf_add(b, "\n", 1);
}

/* Append one event, its data the port object (or, for "address", the old
 * and new external addresses) */
static void write_event(const struct ph_event *ev, struct ph_buf *tmp)
{
	struct ph_buf data = { 0 };
	struct ph_json j;

	ph_json_init(&j, &data);
	if (ev->type == PH_EV_ADDRESS)
		ph_json_address_event(&j, ev);
	else
		ph_json_port(&j, &ev->port);
	if (ph_json_finish(&j) == 0)
		ph_sse_format(tmp, ph_event_type_name(ev->type), data.data, data.len);
	ph_buf_free(&data);
}

/* Cut the stream if its client left too much unread. Return: true if cut */
static bool over_bound(struct sse *s)
{
	if (ph_http_out_pending(s->c) <= s->bound)
		return false;
	ph_http_stream_cut(s->c);
	return true;
}

/* Move queued events into the output */
static void pump(struct sse *s)
{
	struct ph_event evs[TAKE_BATCH];

	for (;;) {
		struct ph_buf out = { 0 };
		uint64_t lost = 0;
		size_t n = ph_sub_take(s->sub, evs, TAKE_BATCH, &lost);
		char num[24];
		int ret;

		for (size_t i = 0; i < n; i++)
			write_event(&evs[i], &out);
		if (lost) {
			s->hub->lost += lost;
			snprintf(num, sizeof(num), "%" PRIu64, lost);
			ph_sse_format(&out, "lost", num, strlen(num));
		}
		ret = out.len ? ph_http_stream_write(s->c, out.data, out.len) : 0;
		ph_buf_free(&out);
		if (ret || (!n && !lost) || over_bound(s))
			return;
	}
}

static void on_sub(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct sse *s = ph_container_of(io, struct sse, io);

	(void)loop;
	(void)events;
	pump(s);
}

static void on_ping(struct ph_loop *loop, struct ph_timer *t)
{
	struct sse *s = ph_container_of(t, struct sse, ping);
	static const char ping[] = ": ping\n\n";

	if (ph_http_stream_write(s->c, ping, sizeof(ping) - 1) == 0 && !over_bound(s))
		ph_timer_arm(loop, t, loop->now_ms + s->hub->ping_ms, on_ping);
}

static void on_drained(struct ph_http_conn *c, void *ctx)
{
	struct sse *s = ctx;

	(void)c;
	if (s->sub)
		pump(s);
}

static void on_evict(struct ph_http_conn *c, void *ctx)
{
	static const char msg[] = "event: evicted\ndata: too many event streams\n\n";

	(void)ctx;
	ph_http_stream_hold(c, false);
	ph_http_stream_write(c, msg, sizeof(msg) - 1);
}

static void free_sse(struct ph_defer *d)
{
	free(ph_container_of(d, struct sse, defer));
}

/* The connection is going: release everything now, the memory after the batch */
static void on_closed(struct ph_http_conn *c, void *ctx)
{
	struct sse *s = ctx;

	(void)c;
	if (s->sub) {
		ph_loop_del(s->hub->loop, &s->io);
		ph_timer_cancel(s->hub->loop, &s->ping);
		ph_bus_unsubscribe(s->hub->bus, s->sub);
	}
	ph_list_del(&s->pnode);
	ph_list_del(&s->node);
	s->hub->clients--;
	ph_loop_defer(s->hub->loop, &s->defer, free_sse);
}

static const struct ph_http_stream_ops sse_ops = {
	.drained = on_drained,
	.evict = on_evict,
	.closed = on_closed,
};

/**
 * stream_start() - subscribe, then send the snapshot (see the top)
 * @s:		a pending stream
 *
 * Return: 0, or -errno (nothing was subscribed; the caller closes)
 */
static int stream_start(struct sse *s)
{
	struct ph_sse_hub *hub = s->hub;
	struct ph_buf snap = { 0 }, out = { 0 };
	int ret;

	s->sub = ph_bus_subscribe(hub->bus, hub->queue ? hub->queue : 1);
	if (!s->sub)
		return -errno;
	ret = ph_loop_add(hub->loop, &s->io, ph_sub_fd(s->sub), EPOLLIN, on_sub);
	if (ret)
		goto fail_sub;
	ret = hub->snapshot(hub->arg, &snap);
	if (ret) {
		ph_loop_del(hub->loop, &s->io);
		goto fail_sub;
	}
	ph_sse_format(&out, "snapshot", snap.data ? snap.data : "", snap.len);
	s->bound = out.len + SSE_MAX;
	ph_http_stream_hold(s->c, false);
	ph_http_stream_write(s->c, out.data, out.len);
	ph_buf_free(&out);
	ph_buf_free(&snap);
	if (hub->ping_ms)
		ph_timer_arm(hub->loop, &s->ping, hub->loop->now_ms + hub->ping_ms, on_ping);
	pump(s);
	return 0;
fail_sub:
	ph_bus_unsubscribe(hub->bus, s->sub);
	s->sub = NULL;
	ph_buf_free(&snap);
	return ret;
}

/* Start up to START_BATCH pending streams; come back next turn for the rest */
static void on_start(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_sse_hub *hub = ph_container_of(t, struct ph_sse_hub, start_timer);
	struct sse *oldest;
	uint64_t due;
	int batch;

	if (ph_list_empty(&hub->pending))
		return;
	/* a burst of new streams settles first (see the top) */
	oldest = ph_list_entry(ph_list_first(&hub->pending), struct sse, pnode);
	due = hub->last_admit_ms + START_QUIET_MS;
	if (due > oldest->admitted_ms + START_MAX_MS)
		due = oldest->admitted_ms + START_MAX_MS;
	if (loop->now_ms < due) {
		ph_timer_arm(loop, t, due, on_start);
		return;
	}
	/* clients still queued at the listener go first: one start per turn */
	batch = hub->srv && ph_http_server_backlogged(hub->srv) ? 1 : START_BATCH;
	for (int i = 0; i < batch && !ph_list_empty(&hub->pending); i++) {
		struct sse *s = ph_list_entry(ph_list_first(&hub->pending), struct sse, pnode);
		int ret;

		ph_list_del(&s->pnode);
		ret = stream_start(s);
		if (ret) {
			ph_debug("API event stream not started", PH_FU("conn", ph_http_conn_seq(s->c)),
				 PH_FERR(ret));
			ph_http_conn_close(s->c);
		}
	}
	if (!ph_list_empty(&hub->pending))
		ph_timer_arm(loop, t, loop->now_ms, on_start);
}

int ph_sse_start(struct ph_sse_hub *hub, struct ph_http_conn *c)
{
	struct sse *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->hub = hub;
	s->c = c;
	ph_list_init(&s->node);
	ph_list_init(&s->pnode);
	ret = ph_http_stream_begin(c, "text/event-stream", &sse_ops, s);
	if (ret) {
		free(s);
		return ret == 1 ? 0 : ret;
	}
	/* from here on the connection owns @s: on_closed releases it */
	ph_http_stream_hold(c, true);
	if (hub->max_streams && hub->clients >= hub->max_streams) {
		struct sse *old = ph_list_entry(ph_list_first(&hub->streams), struct sse, node);

		ph_http_stream_evict(old->c);
	}
	ph_list_add_tail(&hub->streams, &s->node);
	ph_list_add_tail(&hub->pending, &s->pnode);
	hub->clients++;
	s->admitted_ms = hub->last_admit_ms = hub->loop->now_ms;
	if (!ph_timer_armed(&hub->start_timer))
		ph_timer_arm(hub->loop, &hub->start_timer, s->admitted_ms + START_QUIET_MS, on_start);
	return 0;
}

void ph_sse_hub_fini(struct ph_sse_hub *hub)
{
	ph_timer_cancel(hub->loop, &hub->start_timer);
}

unsigned ph_sse_end_all(struct ph_sse_hub *hub, const char *msg)
{
	struct ph_list *n_, *tmp;
	unsigned n = 0;

	ph_list_for_each_safe(n_, tmp, &hub->streams) {
		struct sse *s = ph_list_entry(n_, struct sse, node);

		ph_http_stream_hold(s->c, false);
		ph_http_stream_write(s->c, msg, strlen(msg));
		ph_http_conn_close(s->c);	/* unlinks @s */
		n++;
	}
	return n;
}
