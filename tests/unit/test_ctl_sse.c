// SPDX-License-Identifier: MIT
/* test_ctl_sse.c - event-stream framing of portholectl watch */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_sse.h"

/* Dispatched events and comments, rendered as "type=data|" and "#text|" */
struct log {
	char text[4096];
	int stop_after;		/* >0: fail with -ECANCELED at this event */
	int events;
};

static int on_event(void *arg, const char *event, const char *data)
{
	struct log *l = arg;
	size_t n = strlen(l->text);

	snprintf(l->text + n, sizeof(l->text) - n, "%s=%s|", event, data);
	if (++l->events == l->stop_after)
		return -ECANCELED;
	return 0;
}

static int on_comment(void *arg, const char *text)
{
	struct log *l = arg;
	size_t n = strlen(l->text);

	snprintf(l->text + n, sizeof(l->text) - n, "#%s|", text);
	return 0;
}

/* Parse @stream split every @step bytes, return what was dispatched */
static void parse(const char *stream, size_t step, struct log *l)
{
	struct ph_ctl_sse s;
	size_t len = strlen(stream);

	memset(l->text, 0, sizeof(l->text));
	l->events = 0;
	ph_ctl_sse_init(&s, on_event, on_comment, l);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;

		assert_int_equal(ph_ctl_sse_feed(&s, stream + off, n), 0);
	}
	ph_ctl_sse_free(&s);
}

/* Every split of @stream must produce @want */
static void expect(const char *stream, const char *want)
{
	struct log l = { 0 };

	for (size_t step = 1; step <= strlen(stream) + 1; step++) {
		parse(stream, step, &l);
		if (strcmp(l.text, want))
			fail_msg("split %zu: got \"%s\", want \"%s\"", step, l.text, want);
	}
}

static void test_basic(void **state)
{
	(void)state;
	expect("event: open\ndata: {\"port\":80}\n\n", "open={\"port\":80}|");
	/* no event field: "message" */
	expect("data: x\n\n", "message=x|");
	/* the event type does not leak into the next event */
	expect("event: a\ndata: 1\n\ndata: 2\n\n", "a=1|message=2|");
}

static void test_line_endings(void **state)
{
	(void)state;
	expect("event: a\r\ndata: 1\r\n\r\n", "a=1|");
	expect("event: a\rdata: 1\r\r", "a=1|");
	/* mixed, and a CR whose LF arrives in the next piece (covered by the splits) */
	expect("event: a\r\ndata: 1\n\revent: b\rdata: 2\r\n\n", "a=1|b=2|");
}

static void test_multiline_and_fields(void **state)
{
	(void)state;
	expect("data: l1\ndata: l2\ndata\n\n", "message=l1\nl2\n|");
	/* only one leading space is dropped; no space is fine */
	expect("event:x\ndata:  two\n\n", "x= two|");
	/* id, retry and unknown fields are ignored; a colon-less field is a name */
	expect("id: 7\nretry: 100\nfoo: bar\nevent: e\ndata: d\n\n", "e=d|");
	/* an event without data is not dispatched, and its type is forgotten */
	expect("event: lost\n\ndata: y\n\n", "message=y|");
	/* empty data is still an event */
	expect("event: e\ndata:\n\n", "e=|");
}

static void test_comments(void **state)
{
	(void)state;
	expect(": ping\n\nevent: open\n: inside\ndata: 1\n\n", "#ping|#inside|open=1|");
}

static void test_incomplete_not_dispatched(void **state)
{
	(void)state;
	/* no blank line yet: nothing happens */
	expect("event: open\ndata: 1\n", "");
	expect("event: open\ndata: 1", "");
}

static void test_consumer_error_stops(void **state)
{
	struct ph_ctl_sse s;
	struct log l = { .stop_after = 1 };
	const char *t = "data: 1\n\ndata: 2\n\n";

	(void)state;
	ph_ctl_sse_init(&s, on_event, NULL, &l);
	assert_int_equal(ph_ctl_sse_feed(&s, t, strlen(t)), -ECANCELED);
	assert_string_equal(l.text, "message=1|");
	ph_ctl_sse_free(&s);
}

static void test_line_limit(void **state)
{
	struct ph_ctl_sse s;
	struct log l = { 0 };
	char *big = malloc(1 << 20);

	(void)state;
	memset(big, 'a', 1 << 20);
	ph_ctl_sse_init(&s, on_event, NULL, &l);
	s.line.limit = 1000;	/* the real limit is PH_CTL_SSE_MAX_LINE; same code path */
	assert_int_equal(ph_ctl_sse_feed(&s, big, 999), 0);
	assert_int_equal(ph_ctl_sse_feed(&s, big, 2), -EMSGSIZE);
	ph_ctl_sse_free(&s);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_multiline_and_fields),
		cmocka_unit_test(test_comments),
		cmocka_unit_test(test_incomplete_not_dispatched),
		cmocka_unit_test(test_consumer_error_stops),
		cmocka_unit_test(test_line_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
