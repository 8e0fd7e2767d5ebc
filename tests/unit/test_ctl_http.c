// SPDX-License-Identifier: MIT
/* test_ctl_http.c - portholectl's HTTP client: response parsing, request format, deadlines */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_http.h"
#include "loop.h"

/* Feed @text in pieces of @step bytes; collect the body. Return: last feed result */
static int feed_steps(struct ph_ctl_http_resp *r, struct ph_ctl_http_buf *body, const char *text,
		      size_t len, size_t step)
{
	size_t off = 0, used;
	int ret = 0;

	ph_ctl_http_resp_init(r, ph_ctl_http_buf_append, body);
	while (off < len) {
		size_t n = len - off < step ? len - off : step;

		ret = ph_ctl_http_resp_feed(r, text + off, n, &used);
		if (ret)
			return ret;
		assert_int_equal(used, n);
		off += n;
	}
	return ret;
}

/* Parse @text in every piece size from 1 to 7 and whole; each must give @want and @body */
static void expect_all_splits(const char *text, int want_status, const char *want_body)
{
	size_t steps[] = { 1, 2, 3, 5, 7, 4096 };

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct ph_ctl_http_resp *r = malloc(sizeof(*r));
		struct ph_ctl_http_buf body = { 0 };

		assert_non_null(r);
		assert_int_equal(feed_steps(r, &body, text, strlen(text), steps[i]), 1);
		assert_int_equal(r->status, want_status);
		assert_int_equal(body.len, strlen(want_body));
		if (body.len)
			assert_string_equal(body.data, want_body);
		ph_ctl_http_buf_free(&body);
		free(r);
	}
}

static void test_content_length(void **state)
{
	(void)state;
	expect_all_splits("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			  "Content-Length: 35\r\n\r\n{\"version\":\"0.1\",\"state\":\"running\"}",
			  200, "{\"version\":\"0.1\",\"state\":\"running\"}");
	expect_all_splits("HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}", 404, "{}");
}

static void test_fields_and_reason(void **state)
{
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct ph_ctl_http_buf body = { 0 };
	const char *t = "HTTP/1.1 401 Unauthorized\r\nCONTENT-TYPE:  text/event-stream \r\n"
			"Connection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n";

	(void)state;
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 4096), 1);
	assert_int_equal(r->status, 401);
	assert_string_equal(r->reason, "Unauthorized");
	assert_string_equal(r->content_type, "text/event-stream");
	assert_true(r->conn_close);
	assert_int_equal(body.len, 0);
	free(r);
}

static void test_chunked(void **state)
{
	(void)state;
	/* extensions, upper-case hex, a trailer field */
	expect_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "5;name=val\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-T: 1\r\n\r\n",
			  200, "hello, chunked!");
	/* chunked wins over a Content-Length (RFC 9112 6.3) */
	expect_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "3\r\nabc\r\n0\r\n\r\n",
			  200, "abc");
}

static void test_lf_only_and_no_body(void **state)
{
	(void)state;
	expect_all_splits("HTTP/1.1 200 OK\nContent-Length: 3\n\nabc", 200, "abc");
	expect_all_splits("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, "");
	/* an interim 100 is skipped, the final answer counts */
	expect_all_splits("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
			  200, "x");
}

static void test_stops_after_response(void **state)
{
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct ph_ctl_http_buf body = { 0 };
	const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
	size_t used;

	(void)state;
	ph_ctl_http_resp_init(r, ph_ctl_http_buf_append, &body);
	assert_int_equal(ph_ctl_http_resp_feed(r, t, strlen(t), &used), 1);
	assert_int_equal(used, strlen(t) - 5);
	assert_string_equal(body.data, "ok");
	ph_ctl_http_buf_free(&body);
	free(r);
}

static void test_close_delimited(void **state)
{
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct ph_ctl_http_buf body = { 0 };
	const char *t = "HTTP/1.0 500 Oops\r\n\r\nuntil close";

	(void)state;
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 3), 0);
	assert_int_equal(ph_ctl_http_resp_eof(r), 1);
	assert_string_equal(body.data, "until close");
	ph_ctl_http_buf_free(&body);

	/* cut short: a Content-Length body, a chunked body, a head */
	t = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 4096), 0);
	assert_int_equal(ph_ctl_http_resp_eof(r), -ECONNABORTED);
	ph_ctl_http_buf_free(&body);
	t = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 4096), 0);
	assert_int_equal(ph_ctl_http_resp_eof(r), -ECONNABORTED);
	ph_ctl_http_buf_free(&body);
	t = "HTTP/1.1 200 OK\r\n";
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 4096), 0);
	assert_int_equal(ph_ctl_http_resp_eof(r), -ECONNABORTED);
	ph_ctl_http_buf_free(&body);
	free(r);
}

#define CASE(s) { s, sizeof(s) - 1 }

static void test_malformed(void **state)
{
	static const struct { const char *s; size_t len; } bad[] = {
		CASE("HTTP/2 200 OK\r\n\r\n"),
		CASE("HTTP/1.1 20 OK\r\n\r\n"),
		CASE("HTTP/1.1 2000 OK\r\n\r\n"),
		CASE("HTTP/1.1 099 Low\r\n\r\n"),
		CASE("ICY 200 OK\r\n\r\n"),
		CASE("\r\nHTTP/1.1 200 OK\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
		CASE("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
		CASE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n"),
		CASE("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n"),
		CASE("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"),
		CASE("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"),
	};
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ph_ctl_http_buf body = { 0 };

		print_message("case %zu\n", i);
		assert_int_equal(feed_steps(r, &body, bad[i].s, bad[i].len, 1), -EPROTO);
		ph_ctl_http_buf_free(&body);
	}
	free(r);
}

static void test_limits(void **state)
{
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct ph_ctl_http_buf body = { .limit = 4 };
	char *big = malloc(PH_CTL_HTTP_MAX_HEAD + 64);
	const char *t;

	(void)state;
	strcpy(big, "HTTP/1.1 200 OK\r\nX: ");
	memset(big + strlen(big), 'a', PH_CTL_HTTP_MAX_HEAD);
	strcpy(big + PH_CTL_HTTP_MAX_HEAD, "\r\n\r\n");
	assert_int_equal(feed_steps(r, &body, big, strlen(big), 4096), -EMSGSIZE);

	/* the body consumer's error ends the parse */
	t = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345";
	assert_int_equal(feed_steps(r, &body, t, strlen(t), 4096), -EMSGSIZE);
	ph_ctl_http_buf_free(&body);
	free(big);
	free(r);
}

static void test_format_request(void **state)
{
	struct ph_ctl_http_request req = {
		.method = "POST", .path = "/snapshot/resume", .host = "169.254.0.21:49982",
		.token = "abc.DEF-123",
	};
	char buf[1024];
	int n;

	(void)state;
	n = ph_ctl_http_format_request(buf, sizeof(buf), &req);
	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	assert_non_null(strstr(buf, "POST /snapshot/resume HTTP/1.1\r\nHost: 169.254.0.21:49982\r\n"));
	assert_non_null(strstr(buf, "\r\nAuthorization: Bearer abc.DEF-123\r\n"));
	assert_non_null(strstr(buf, "\r\nContent-Length: 0\r\n"));
	assert_non_null(strstr(buf, "\r\nConnection: close\r\n\r\n"));

	req.method = "GET";
	req.token = "";
	n = ph_ctl_http_format_request(buf, sizeof(buf), &req);
	assert_true(n > 0);
	assert_null(strstr(buf, "Authorization"));
	assert_null(strstr(buf, "Content-Length"));

	/* nothing may smuggle a line into the head */
	req.token = "a\r\nX-Evil: 1";
	assert_int_equal(ph_ctl_http_format_request(buf, sizeof(buf), &req), -EINVAL);
	req.token = NULL;
	req.path = "/x y";
	assert_int_equal(ph_ctl_http_format_request(buf, sizeof(buf), &req), -EINVAL);
	req.path = "/health";
	assert_int_equal(ph_ctl_http_format_request(buf, 20, &req), -ENOSPC);
}

/* --- I/O against real loopback sockets --- */

/* A TCP socket on 127.0.0.1, port chosen by the kernel; listening or just bound */
static int loopback_socket(struct sockaddr_in *sin, bool do_listen)
{
	socklen_t len = sizeof(*sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
	if (do_listen)
		assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
	return fd;
}

static void test_refused(void **state)
{
	struct sockaddr_in sin;
	struct ph_ctl_http_client c;
	int fd = loopback_socket(&sin, false);	/* bound, not listening: RST */

	(void)state;
	ph_ctl_http_client_init(&c, ph_now_ms() + 1000);
	assert_int_equal(ph_ctl_http_connect(&c, (struct sockaddr *)&sin, sizeof(sin), c.deadline_ms),
			 -ECONNREFUSED);
	assert_int_equal(c.phase, PH_CTL_PHASE_CONNECT);
	assert_int_equal(c.fd, -1);
	close(fd);
}

/* Accepted by the kernel (backlog) but never answered: the deadline ends it, on time */
static void test_silent_server_deadline(void **state)
{
	struct ph_ctl_http_request req = { .method = "GET", .path = "/health", .host = "x" };
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct sockaddr_in sin;
	struct ph_ctl_http_client c;
	int fd = loopback_socket(&sin, true);
	uint64_t t0 = ph_now_ms(), el;

	(void)state;
	ph_ctl_http_client_init(&c, t0 + 300);
	ph_ctl_http_resp_init(r, NULL, NULL);
	assert_int_equal(ph_ctl_http_connect(&c, (struct sockaddr *)&sin, sizeof(sin), c.deadline_ms), 0);
	assert_int_equal(ph_ctl_http_exchange(&c, &req, r), -ETIMEDOUT);
	el = ph_now_ms() - t0;
	assert_int_equal(c.phase, PH_CTL_PHASE_HEAD);
	assert_true(el >= 300 && el < 450);
	ph_ctl_http_close(&c);
	close(fd);
	free(r);
}

struct trickle {
	int lfd;
	const char *text;
	unsigned delay_ms;
};

/* Accept one connection and send text one byte every delay_ms */
static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	int fd = accept(t->lfd, NULL, NULL);

	for (const char *p = t->text; fd >= 0 && *p; p++) {
		if (send(fd, p, 1, MSG_NOSIGNAL) != 1)
			break;
		usleep(t->delay_ms * 1000);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* A byte every 50 ms keeps no per-read timeout from firing; the absolute deadline still does */
static void test_trickle_deadline(void **state)
{
	struct ph_ctl_http_request req = { .method = "GET", .path = "/health", .host = "x" };
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct trickle t = { .text = "HTTP/1.1 200 OK\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
			     .delay_ms = 50 };
	struct sockaddr_in sin;
	struct ph_ctl_http_client c;
	pthread_t th;
	uint64_t t0, el;

	(void)state;
	t.lfd = loopback_socket(&sin, true);
	assert_int_equal(pthread_create(&th, NULL, trickle_main, &t), 0);
	t0 = ph_now_ms();
	ph_ctl_http_client_init(&c, t0 + 400);
	ph_ctl_http_resp_init(r, NULL, NULL);
	assert_int_equal(ph_ctl_http_connect(&c, (struct sockaddr *)&sin, sizeof(sin), c.deadline_ms), 0);
	assert_int_equal(ph_ctl_http_exchange(&c, &req, r), -ETIMEDOUT);
	el = ph_now_ms() - t0;
	assert_true(el >= 400 && el < 550);
	assert_true(r->head_len > 0);	/* it did receive bytes all along */
	ph_ctl_http_close(&c);
	pthread_join(th, NULL);
	close(t.lfd);
	free(r);
}

/* A complete exchange over a real socket, answer trickled in */
static void test_exchange_ok(void **state)
{
	struct ph_ctl_http_request req = { .method = "GET", .path = "/ports", .host = "x" };
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct ph_ctl_http_buf body = { 0 };
	struct trickle t = { .text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				     "2\r\n{}\r\n0\r\n\r\n",
			     .delay_ms = 1 };
	struct sockaddr_in sin;
	struct ph_ctl_http_client c;
	pthread_t th;

	(void)state;
	t.lfd = loopback_socket(&sin, true);
	assert_int_equal(pthread_create(&th, NULL, trickle_main, &t), 0);
	ph_ctl_http_client_init(&c, ph_now_ms() + 5000);
	ph_ctl_http_resp_init(r, ph_ctl_http_buf_append, &body);
	assert_int_equal(ph_ctl_http_connect(&c, (struct sockaddr *)&sin, sizeof(sin), c.deadline_ms), 0);
	assert_int_equal(ph_ctl_http_exchange(&c, &req, r), 0);
	assert_int_equal(r->status, 200);
	assert_string_equal(body.data, "{}");
	ph_ctl_http_close(&c);
	pthread_join(th, NULL);
	close(t.lfd);
	ph_ctl_http_buf_free(&body);
	free(r);
}

/* The SIGINT flag ends an endless wait (watch) */
static void test_interrupted(void **state)
{
	struct ph_ctl_http_request req = { .method = "GET", .path = "/health", .host = "x" };
	struct ph_ctl_http_resp *r = malloc(sizeof(*r));
	struct sockaddr_in sin;
	struct ph_ctl_http_client c;
	int fd = loopback_socket(&sin, true);

	(void)state;
	ph_ctl_http_client_init(&c, PH_CTL_HTTP_NO_DEADLINE);
	ph_ctl_http_resp_init(r, NULL, NULL);
	assert_int_equal(ph_ctl_http_connect(&c, (struct sockaddr *)&sin, sizeof(sin), c.deadline_ms), 0);
	ph_ctl_http_interrupted = 1;	/* as the SIGINT handler would */
	assert_int_equal(ph_ctl_http_exchange(&c, &req, r), -EINTR);
	ph_ctl_http_interrupted = 0;
	ph_ctl_http_close(&c);
	close(fd);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_fields_and_reason),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_lf_only_and_no_body),
		cmocka_unit_test(test_stops_after_response),
		cmocka_unit_test(test_close_delimited),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_format_request),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_silent_server_deadline),
		cmocka_unit_test(test_trickle_deadline),
		cmocka_unit_test(test_exchange_ok),
		cmocka_unit_test(test_interrupted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
