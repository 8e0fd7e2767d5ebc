// SPDX-License-Identifier: MIT
/* ctl_sse.c - incremental text/event-stream parser for portholectl watch
 *
 * Follows the "interpret the event stream" rules of the HTML standard: lines
 * end with CRLF, LF or CR; an empty line dispatches the event collected so
 * far; "field: value" (one leading space of the value dropped) sets "event" or
 * appends a "data" line; lines starting with ':' are comments (the daemon's
 * keep-alive pings); "id" and "retry" do not matter for a one-shot watch and
 * are ignored, as are unknown fields. An event without data is not dispatched.
 * Bytes may arrive split anywhere, including between a CR and its LF.
 */
#include "ctl_sse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void ph_ctl_sse_init(struct ph_ctl_sse *s, ph_ctl_sse_event_fn on_event, ph_ctl_sse_comment_fn on_comment,
		 void *arg)
{
	memset(s, 0, sizeof(*s));
	s->line.limit = PH_CTL_SSE_MAX_LINE;
	s->data.limit = PH_CTL_SSE_MAX_LINE;
	s->on_event = on_event;
	s->on_comment = on_comment;
	s->arg = arg;
}

static int dispatch(struct ph_ctl_sse *s)
{
	int ret = 0;

	if (s->have_data && s->on_event) {
		/* drop the "\n" that followed the last data line */
		if (s->data.len)
			s->data.data[--s->data.len] = '\0';
		ret = s->on_event(s->arg, s->event[0] ? s->event : "message",
				  s->data.len ? s->data.data : "");
	}
	s->event[0] = '\0';
	s->data.len = 0;
	s->have_data = false;
	return ret;
}

/* Process one complete line (s->line, NUL-terminated when non-empty) */
static int process_line(struct ph_ctl_sse *s)
{
	const char *line = s->line.len ? s->line.data : "";
	const char *value = "";
	size_t flen = s->line.len;
	char *colon;
	int ret = 0;

	if (!s->line.len)
		return dispatch(s);
	if (line[0] == ':') {
		if (s->on_comment)
			ret = s->on_comment(s->arg, line + 1 + (line[1] == ' '));
		goto out;
	}
	colon = memchr(line, ':', s->line.len);
	if (colon) {
		flen = (size_t)(colon - line);
		value = colon + 1 + (colon[1] == ' ');
	}
	if (flen == 5 && !memcmp(line, "event", 5)) {
		snprintf(s->event, sizeof(s->event), "%s", value);
	} else if (flen == 4 && !memcmp(line, "data", 4)) {
		ret = ph_ctl_http_buf_append(&s->data, value, strlen(value));
		if (!ret)
			ret = ph_ctl_http_buf_append(&s->data, "\n", 1);
		s->have_data = true;
	}
out:
	s->line.len = 0;
	return ret;
}

int ph_ctl_sse_feed(void *arg, const char *data, size_t len)
{
	struct ph_ctl_sse *s = arg;
	int ret;

	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (c == '\n' && s->last_cr) {
			s->last_cr = false;	/* second half of a CRLF */
			continue;
		}
		s->last_cr = c == '\r';
		if (c == '\r' || c == '\n') {
			ret = process_line(s);
			if (ret)
				return ret;
			continue;
		}
		/* copy the run of ordinary bytes at once */
		size_t j = i;

		while (j < len && data[j] != '\r' && data[j] != '\n')
			j++;
		ret = ph_ctl_http_buf_append(&s->line, data + i, j - i);
		if (ret)
			return ret;
		i = j - 1;
	}
	return 0;
}

void ph_ctl_sse_free(struct ph_ctl_sse *s)
{
	ph_ctl_http_buf_free(&s->line);
	ph_ctl_http_buf_free(&s->data);
}
