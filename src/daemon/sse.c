// SPDX-License-Identifier: MIT
/* sse.c - /ports/events: port events as a text/event-stream, one bus subscription per client
 *
 * Theory of Operation
 * ===================
 * Every client gets its own bus subscription (a bounded queue filled by the
 * port worker, which never waits) whose eventfd is watched on the API loop.
 * When it fires, events are moved from the queue into the connection's
 * output, but only while that output holds less than SSE_HIGH bytes. A
 * client that stops reading therefore costs at most SSE_HIGH bytes here and
 * its queue's capacity in the bus: once the queue is full the bus drops
 * events for this client alone and counts them, and when the client reads
 * again it first gets what was queued, then "event: lost" with the count.
 * If it never reads again, the HTTP layer's write deadline closes it. The
 * eventfd is unwatched while output is above the mark (it stays readable,
 * and epoll is level-triggered) and watched again from the "drained"
 * callback. A ": ping" comment every ping_ms keeps proxies and the
 * client's own idle timers from cutting a quiet stream.
 */
#include "sse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define SSE_HIGH	(64 * 1024)
#define TAKE_BATCH	32

struct sse {
	struct ph_sse_hub *hub;
	struct ph_http_conn *c;
	struct ph_sub *sub;
	struct ph_io io;
	struct ph_timer ping;
	struct ph_defer defer;
	bool paused;
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

/* Move queued events into the output while there is room */
static void pump(struct sse *s)
{
	struct ph_event evs[TAKE_BATCH];

	while (ph_http_out_pending(s->c) < SSE_HIGH) {
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
		if (ret || (!n && !lost))
			return;
	}
	/* full: stop watching until the client has read */
	if (!s->paused && ph_loop_mod(s->hub->loop, &s->io, 0) == 0)
		s->paused = true;
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

	if (ph_http_stream_write(s->c, ping, sizeof(ping) - 1) == 0)
		ph_timer_arm(loop, t, loop->now_ms + s->hub->ping_ms, on_ping);
}

static void on_drained(struct ph_http_conn *c, void *ctx)
{
	struct sse *s = ctx;

	(void)c;
	if (s->paused && ph_loop_mod(s->hub->loop, &s->io, EPOLLIN) == 0)
		s->paused = false;
	pump(s);
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
	ph_loop_del(s->hub->loop, &s->io);
	ph_timer_cancel(s->hub->loop, &s->ping);
	ph_bus_unsubscribe(s->hub->bus, s->sub);
	s->hub->clients--;
	ph_loop_defer(s->hub->loop, &s->defer, free_sse);
}

static const struct ph_http_stream_ops sse_ops = {
	.drained = on_drained,
	.closed = on_closed,
};

int ph_sse_start(struct ph_sse_hub *hub, struct ph_http_conn *c)
{
	struct ph_buf snap = { 0 }, out = { 0 };
	struct sse *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->hub = hub;
	s->c = c;
	s->sub = ph_bus_subscribe(hub->bus, hub->queue ? hub->queue : 1);
	if (!s->sub) {
		ret = -errno;
		goto fail;
	}
	ret = hub->snapshot(hub->arg, &snap);
	if (ret)
		goto fail_sub;
	ret = ph_http_stream_begin(c, "text/event-stream", &sse_ops, s);
	if (ret) {
		ph_bus_unsubscribe(hub->bus, s->sub);
		free(s);
		ph_buf_free(&snap);
		return ret == 1 ? 0 : ret;
	}
	/* from here on the connection owns @s: on_closed releases it */
	hub->clients++;
	ret = ph_loop_add(hub->loop, &s->io, ph_sub_fd(s->sub), EPOLLIN, on_sub);
	if (ret) {
		ph_http_conn_close(c);
		ph_buf_free(&snap);
		return 0;
	}
	ph_sse_format(&out, "snapshot", snap.data ? snap.data : "", snap.len);
	ph_http_stream_write(c, out.data, out.len);
	ph_buf_free(&out);
	ph_buf_free(&snap);
	if (hub->ping_ms)
		ph_timer_arm(hub->loop, &s->ping, hub->loop->now_ms + hub->ping_ms, on_ping);
	pump(s);
	return 0;
fail_sub:
	ph_bus_unsubscribe(hub->bus, s->sub);
fail:
	free(s);
	ph_buf_free(&snap);
	return ret ? ret : -ENOMEM;
}
