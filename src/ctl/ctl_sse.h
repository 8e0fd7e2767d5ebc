/* SPDX-License-Identifier: MIT */
/* ctl_sse.h - incremental parser of a text/event-stream (the WHATWG "server-sent events" framing) */
#ifndef PH_CTL_SSE_H
#define PH_CTL_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl_http.h"

#define PH_CTL_SSE_MAX_LINE	PH_CTL_HTTP_MAX_BODY	/* a snapshot event carries the whole /ports body */

/**
 * typedef ph_ctl_sse_event_fn - one dispatched event
 * @event:	its type ("message" when the stream named none)
 * @data:	its data lines joined by "\n", NUL-terminated
 * Return: 0 to continue, negative errno to stop the stream
 */
typedef int (*ph_ctl_sse_event_fn)(void *arg, const char *event, const char *data);

/* A comment line (": ping"), text after the colon. Return: as ph_ctl_sse_event_fn */
typedef int (*ph_ctl_sse_comment_fn)(void *arg, const char *text);

/**
 * struct ph_ctl_sse - parser state
 * @line:	current line, without its end
 * @event:	event type of the event being collected, empty: "message"
 * @data:	data of the event being collected
 * @have_data:	at least one data field was seen (data may be empty)
 * @last_cr:	the previous byte was CR, so an LF now ends nothing
 * @on_event, @on_comment, @arg: consumers (either may be NULL)
 */
struct ph_ctl_sse {
	struct ph_ctl_http_buf line;
	char event[64];
	struct ph_ctl_http_buf data;
	bool have_data;
	bool last_cr;
	ph_ctl_sse_event_fn on_event;
	ph_ctl_sse_comment_fn on_comment;
	void *arg;
};

void ph_ctl_sse_init(struct ph_ctl_sse *s, ph_ctl_sse_event_fn on_event, ph_ctl_sse_comment_fn on_comment,
		 void *arg);

/**
 * ph_ctl_sse_feed() - parse stream bytes (any split, any of CRLF, LF, CR line ends)
 * @arg:	a struct ph_ctl_sse; the signature is a ph_ctl_http_body_fn
 * Return: 0, -EMSGSIZE for a line or event over PH_CTL_SSE_MAX_LINE, -ENOMEM,
 * or the error a consumer returned
 */
int ph_ctl_sse_feed(void *arg, const char *data, size_t len);

void ph_ctl_sse_free(struct ph_ctl_sse *s);

#endif /* PH_CTL_SSE_H */
