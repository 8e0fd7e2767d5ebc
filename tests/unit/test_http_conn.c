// SPDX-License-Identifier: MIT
/* test_http_conn.c - the HTTP connection layer: parsing edge cases, pipelining, limits, deadlines */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

struct fx {
	struct ph_loop loop;
	struct ph_http_server srv;
	struct ph_http_limits lim;
	unsigned calls;
	char last_path[256];
	char last_auth[256];
	char last_query[64];
	size_t last_body;
};

static struct ph_http_limits default_limits(void)
{
	return (struct ph_http_limits){
		.head_timeout_ms = 5000, .idle_timeout_ms = 640000, .write_timeout_ms = 30000,
		.max_conns = 256, .max_head = 16384, .max_body = 65536, .sse_ping_ms = 15000,
		.sse_queue = 16,
	};
}

static void handler(void *arg, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct fx *f = arg;
	static char big[4 << 20];
	char body[512];
	int n;

	f->calls++;
	snprintf(f->last_path, sizeof(f->last_path), "%s", req->path);
	snprintf(f->last_query, sizeof(f->last_query), "%s", req->query ? req->query : "");
	snprintf(f->last_auth, sizeof(f->last_auth), "%.*s", (int)req->auth_len,
		 req->authorization ? req->authorization : "");
	f->last_body = req->body_len;
	if (!strcmp(req->path, "/big")) {
		memset(big, 'x', sizeof(big));
		ph_http_send(c, &(struct ph_http_resp){ .status = 200, .content_type = "text/plain",
							.body = big, .body_len = sizeof(big) });
		return;
	}
	if (!strcmp(req->path, "/none"))
		return;		/* the layer must answer 500 */
	if (!strcmp(req->path, "/nocontent")) {
		ph_http_send(c, &(struct ph_http_resp){ .status = 204 });
		return;
	}
	n = snprintf(body, sizeof(body), "%s %s", req->method_name, req->path);
	ph_http_send(c, &(struct ph_http_resp){ .status = 200, .content_type = "text/plain",
						.body = body, .body_len = (size_t)n });
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->lim = default_limits();
	assert_int_equal(ph_loop_init(&f->loop, NULL, NULL), 0);
	assert_int_equal(ph_http_server_init(&f->srv, &f->loop, &f->lim, handler, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ph_http_server_fini(&f->srv);
	ph_loop_fini(&f->loop);
	free(f);
	return 0;
}

/* Feed @in to a new detached connection; return whether it closed */
static int exchange(struct fx *f, const char *in, size_t len, struct ph_buf *out)
{
	struct ph_http_conn *c = ph_http_conn_new(&f->srv, -1, out);
	int closed;

	assert_non_null(c);
	closed = ph_http_conn_feed(c, in, len);
	if (!closed)
		ph_http_conn_close(c);
	ph_loop_run_once(&f->loop, 0);	/* deferred frees */
	return closed;
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; p && (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static int status_of(const struct ph_buf *b)
{
	int st = 0;

	if (!b->data || sscanf(b->data, "HTTP/1.1 %d", &st) != 1)
		return -1;
	return st;
}

#define EXCHANGE(f, s, out) exchange((f), (s), sizeof(s) - 1, (out))

static void test_simple_get(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	assert_int_equal(EXCHANGE(f, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", &out), 0);
	assert_int_equal(status_of(&out), 200);
	assert_non_null(strstr(out.data, "\r\nCache-Control: no-store\r\n"));
	assert_non_null(strstr(out.data, "\r\nContent-Length: 11\r\n"));
	assert_non_null(strstr(out.data, "\r\nDate: "));
	assert_null(strstr(out.data, "Connection:"));
	assert_non_null(strstr(out.data, "\r\n\r\nGET /health"));
	assert_string_equal(f->last_path, "/health");
	ph_buf_free(&out);
}

static void test_query_and_absolute_form(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	EXCHANGE(f, "GET /ports?x=1 HTTP/1.1\r\n\r\n", &out);
	assert_string_equal(f->last_path, "/ports");
	assert_string_equal(f->last_query, "x=1");
	ph_buf_reset(&out);
	EXCHANGE(f, "GET http://169.254.0.21:49982/metrics HTTP/1.1\r\n\r\n", &out);
	assert_string_equal(f->last_path, "/metrics");
	ph_buf_reset(&out);
	EXCHANGE(f, "GET http://host HTTP/1.1\r\n\r\n", &out);
	assert_string_equal(f->last_path, "/");
	ph_buf_free(&out);
}

static const char pipelined[] =
	"GET /a HTTP/1.1\r\n\r\n"
	"POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
	"HEAD /cc HTTP/1.1\r\n\r\n"
	"GET /d HTTP/1.1\r\nConnection: close\r\n\r\n"
	"GET /never HTTP/1.1\r\n\r\n";

static void check_pipelined(struct fx *f, const struct ph_buf *out, int closed)
{
	const char *a, *b, *c, *d;

	assert_int_equal(closed, 1);
	assert_int_equal(count(out->data, "HTTP/1.1 200 OK"), 4);
	a = strstr(out->data, "GET /a");
	b = strstr(out->data, "POST /b");
	c = strstr(out->data, "Content-Length: 8\r\n");	/* HEAD: length of "HEAD /cc" */
	d = strstr(out->data, "GET /d");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(d);
	assert_true(a < b && b < c && c < d);
	assert_null(strstr(out->data, "HEAD /cc"));	/* no body for HEAD */
	assert_null(strstr(out->data, "/never"));
	assert_int_equal(count(out->data, "Connection: close"), 1);
	assert_string_equal(f->last_path, "/d");
}

static void test_pipelining_in_order(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	check_pipelined(f, &out, EXCHANGE(f, pipelined, &out));
	assert_int_equal(f->calls, 4);
	ph_buf_free(&out);
}

/* The same bytes split at every position give the same answers */
static void test_pipelining_any_split(void **state)
{
	struct fx *f = *state;
	size_t len = sizeof(pipelined) - 1;

	for (size_t cut = 1; cut < len; cut += 3) {
		struct ph_buf out = { 0 };
		struct ph_http_conn *c = ph_http_conn_new(&f->srv, -1, &out);
		int closed = ph_http_conn_feed(c, pipelined, cut);

		if (!closed)
			closed = ph_http_conn_feed(c, pipelined + cut, len - cut);
		check_pipelined(f, &out, closed);
		ph_loop_run_once(&f->loop, 0);
		ph_buf_free(&out);
	}
}

static void test_byte_by_byte(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };
	struct ph_http_conn *c = ph_http_conn_new(&f->srv, -1, &out);
	int closed = 0;

	for (size_t i = 0; i < sizeof(pipelined) - 1 && !closed; i++)
		closed = ph_http_conn_feed(c, pipelined + i, 1);
	check_pipelined(f, &out, closed);
	ph_loop_run_once(&f->loop, 0);
	ph_buf_free(&out);
}

struct bad_case {
	const char *name;
	const char *req;
	int status;
};

static const struct bad_case bad[] = {
	{ "bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400 },
	{ "bare LF in headers", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400 },
	{ "bare CR", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400 },
	{ "CL and TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
	{ "two CL", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400 },
	{ "bad CL", "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc", 400 },
	{ "space in name", "GET / HTTP/1.1\r\nHo st: a\r\n\r\n", 400 },
	{ "space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },
	{ "obs-fold", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400 },
	{ "control char in value", "GET / HTTP/1.1\r\nA: b\x01" "c\r\n\r\n", 400 },
	{ "bad method", "G@T / HTTP/1.1\r\n\r\n", 400 },
	{ "space in target", "GET /a b HTTP/1.1\r\n\r\n", 400 },
	{ "bad version", "GET / HTTP/1.2\r\n\r\n", 400 },
	{ "HTTP/2", "GET / HTTP/2.0\r\n\r\n", 505 },
	{ "HTTP/0.9, nothing after the line", "GET /health\r\n", 400 },
	{ "HTTP/0.9 after an empty line", "\r\nGET /health\r\n", 400 },
	{ "TE not chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabcd", 400 },
	{ "chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 411 },
	{ "CL too large", "POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413 },
	{ "bad expectation", "POST / HTTP/1.1\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", 417 },
};

static void test_malformed(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ph_buf out = { 0 };
		int closed = exchange(f, bad[i].req, strlen(bad[i].req), &out);

		if (status_of(&out) != bad[i].status || !closed)
			fail_msg("%s: status %d (want %d), closed %d", bad[i].name, status_of(&out),
				 bad[i].status, closed);
		assert_non_null(strstr(out.data, "Connection: close\r\n"));
		assert_non_null(strstr(out.data, "Content-Type: application/json\r\n"));
		assert_non_null(strstr(out.data, "\r\n\r\n{\"error\":\""));
		ph_buf_free(&out);
	}
	assert_int_equal(f->calls, 0);
	assert_int_equal(f->srv.stats.responses[400] > 0, 1);
}

static void test_head_limit(void **state)
{
	struct fx *f = *state;
	const char *pre = "GET / HTTP/1.1\r\nX-Pad: ";
	struct ph_buf req = { 0 }, out = { 0 };
	size_t pad;

	/* exactly max_head bytes: accepted */
	pad = f->lim.max_head - strlen(pre) - 4;
	ph_buf_puts(&req, pre);
	for (size_t i = 0; i < pad; i++)
		ph_buf_add(&req, "a", 1);
	ph_buf_puts(&req, "\r\n\r\n");
	assert_int_equal(req.len, f->lim.max_head);
	assert_int_equal(exchange(f, req.data, req.len, &out), 0);
	assert_int_equal(status_of(&out), 200);

	/* one more byte: 431, and the connection closes */
	ph_buf_reset(&req);
	ph_buf_reset(&out);
	ph_buf_puts(&req, pre);
	for (size_t i = 0; i < pad + 1; i++)
		ph_buf_add(&req, "a", 1);
	ph_buf_puts(&req, "\r\n\r\n");
	assert_int_equal(exchange(f, req.data, req.len, &out), 1);
	assert_int_equal(status_of(&out), 431);

	/* an endless head is cut at the limit without waiting for its end */
	ph_buf_reset(&out);
	ph_buf_reset(&req);
	ph_buf_puts(&req, pre);
	while (req.len < 100000)
		ph_buf_add(&req, "b", 1);
	assert_int_equal(exchange(f, req.data, req.len, &out), 1);
	assert_int_equal(status_of(&out), 431);
	ph_buf_free(&req);
	ph_buf_free(&out);
}

static void test_body_limit(void **state)
{
	struct fx *f = *state;
	struct ph_buf req = { 0 }, out = { 0 };

	ph_buf_printf(&req, "POST /x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", f->lim.max_body);
	for (size_t i = 0; i < f->lim.max_body; i++)
		ph_buf_add(&req, "z", 1);
	ph_buf_puts(&req, "GET /after HTTP/1.1\r\n\r\n");
	assert_int_equal(exchange(f, req.data, req.len, &out), 0);
	assert_int_equal(count(out.data, "HTTP/1.1 200"), 2);
	assert_string_equal(f->last_path, "/after");
	ph_buf_free(&req);
	ph_buf_free(&out);
}

static void test_post_without_body(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	/* no Content-Length on a POST is no body, not 411 */
	assert_int_equal(EXCHANGE(f, "POST /snapshot/prepare HTTP/1.1\r\nHost: x\r\n\r\n", &out), 0);
	assert_int_equal(status_of(&out), 200);
	assert_int_equal(f->last_body, 0);
	ph_buf_free(&out);
}

static void test_http10(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	assert_int_equal(EXCHANGE(f, "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", &out), 1);
	assert_int_equal(count(out.data, "HTTP/1.1 200"), 1);
	assert_non_null(strstr(out.data, "Connection: close\r\n"));
	ph_buf_reset(&out);
	assert_int_equal(EXCHANGE(f, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
				     "GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &out), 0);
	assert_int_equal(count(out.data, "HTTP/1.1 200"), 2);
	assert_int_equal(count(out.data, "Connection: keep-alive\r\n"), 2);
	ph_buf_free(&out);
}

static void test_expect_continue(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	assert_int_equal(EXCHANGE(f, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
				  &out), 0);
	assert_true(!strncmp(out.data, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK", 40));
	ph_buf_free(&out);
}

static void test_no_answer_is_500_and_204_has_no_length(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	EXCHANGE(f, "GET /none HTTP/1.1\r\n\r\n", &out);
	assert_int_equal(status_of(&out), 500);
	ph_buf_reset(&out);
	EXCHANGE(f, "POST /nocontent HTTP/1.1\r\n\r\n", &out);
	assert_int_equal(status_of(&out), 204);
	assert_null(strstr(out.data, "Content-Length"));
	ph_buf_free(&out);
}

static void test_authorization_captured(void **state)
{
	struct fx *f = *state;
	struct ph_buf out = { 0 };

	EXCHANGE(f, "GET /m HTTP/1.1\r\nauthorization: Bearer abc  \r\n\r\n", &out);
	assert_string_equal(f->last_auth, "Bearer abc");
	/* two Authorization headers: neither is believed */
	EXCHANGE(f, "GET /m HTTP/1.1\r\nAuthorization: Bearer abc\r\nAuthorization: Bearer abc\r\n\r\n",
		 &out);
	assert_string_equal(f->last_auth, "");
	ph_buf_free(&out);
}

/* ---- with real sockets ------------------------------------------------ */

static void run_for(struct fx *f, int ms)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;

	while (ph_now_ms() < end)
		ph_loop_run_once(&f->loop, (int)(end - ph_now_ms()));
}

/* Run the loop until @fd reads EOF (or error); return elapsed ms, -1 on timeout */
static long run_until_eof(struct fx *f, int fd, int max_ms)
{
	uint64_t start = ph_now_ms();
	char buf[65536];

	while (ph_now_ms() - start < (uint64_t)max_ms) {
		ssize_t n;

		ph_loop_run_once(&f->loop, 10);
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			return (long)(ph_now_ms() - start);
	}
	return -1;
}

static void test_head_deadline_not_reset_by_bytes(void **state)
{
	struct fx *f = *state;
	const char *req = "GET /slow HTTP/1.1\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
	int sv[2];
	uint64_t start;
	long t;

	f->lim.head_timeout_ms = 300;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(ph_http_conn_new(&f->srv, sv[0], NULL));
	start = ph_now_ms();
	/* one byte every 20 ms: it would take far longer than the deadline */
	t = -1;
	for (size_t i = 0; i < strlen(req) && t < 0; i++) {
		char buf[512];
		ssize_t n;

		send(sv[1], req + i, 1, MSG_NOSIGNAL);
		run_for(f, 20);
		n = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n > 0 && !strncmp(buf, "HTTP/1.1 408", 12)) ||
		    (n < 0 && errno != EAGAIN))
			t = (long)(ph_now_ms() - start);
	}
	assert_true(t >= 300 && t < 450);
	assert_int_equal(f->srv.stats.timeouts_head, 1);
	assert_int_equal(f->calls, 0);
	close(sv[1]);
}

static void test_idle_timeout(void **state)
{
	struct fx *f = *state;
	int sv[2];
	long t;

	f->lim.idle_timeout_ms = 150;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(ph_http_conn_new(&f->srv, sv[0], NULL));
	assert_int_equal(send(sv[1], "GET /x HTTP/1.1\r\n\r\n", 19, 0), 19);
	t = run_until_eof(f, sv[1], 1000);
	assert_true(t >= 140 && t < 400);
	assert_int_equal(f->calls, 1);
	assert_int_equal(f->srv.stats.timeouts_idle, 1);
	close(sv[1]);
}

static void test_write_timeout(void **state)
{
	struct fx *f = *state;
	int sv[2];
	uint64_t start;

	f->lim.write_timeout_ms = 200;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(ph_http_conn_new(&f->srv, sv[0], NULL));
	assert_int_equal(send(sv[1], "GET /big HTTP/1.1\r\n\r\n", 21, 0), 21);
	start = ph_now_ms();
	/* never read: the server must give up on its own */
	while (f->srv.stats.conns_active && ph_now_ms() - start < 2000)
		ph_loop_run_once(&f->loop, 20);
	assert_int_equal(f->srv.stats.conns_active, 0);
	assert_int_equal(f->srv.stats.timeouts_write, 1);
	assert_true(ph_now_ms() - start >= 190);
	close(sv[1]);
}

/* A client that pipelines without reading is not read without bound */
static void test_backpressure(void **state)
{
	struct fx *f = *state;
	char reqs[21 * 64];
	int sv[2];

	f->lim.write_timeout_ms = 100000;
	for (int i = 0; i < 64; i++)
		memcpy(reqs + i * 21, "GET /big HTTP/1.1\r\n\r\n", 21);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(ph_http_conn_new(&f->srv, sv[0], NULL));
	assert_int_equal(send(sv[1], reqs, sizeof(reqs), 0), (ssize_t)sizeof(reqs));
	run_for(f, 100);
	/* each answer is 4 MiB; only the first fits before parsing stops */
	assert_true(f->calls <= 2);
	close(sv[1]);
	run_for(f, 50);
	assert_int_equal(f->srv.stats.conns_active, 0);
}

static int connect_to(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static uint16_t listen_any(struct fx *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);

	assert_int_equal(ph_http_server_listen(&f->srv, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->srv.lfd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/* Read one response head+body into @buf within @ms; return bytes */
static ssize_t read_reply(struct fx *f, int fd, char *buf, size_t size, int ms)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;
	size_t got = 0;

	while (ph_now_ms() < end && got < size - 1) {
		ssize_t n;

		ph_loop_run_once(&f->loop, 5);
		n = recv(fd, buf + got, size - 1 - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
			if (strstr(buf, "\r\n\r\n"))
				break;
		} else if (n == 0) {
			break;
		}
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

static void test_conn_limit_evicts_idle_then_slow(void **state)
{
	struct fx *f = *state;
	int fds[4], extra;
	char buf[2048];
	uint16_t port;

	f->lim.max_conns = 3;
	port = listen_any(f);
	for (int i = 0; i < 3; i++) {
		fds[i] = connect_to(port);
		run_for(f, 10);
	}
	assert_int_equal(f->srv.stats.conns_active, 3);
	/* all idle: a fourth evicts the oldest and is served */
	fds[3] = connect_to(port);
	assert_int_equal(send(fds[3], "GET /ok HTTP/1.1\r\n\r\n", 20, 0), 20);
	assert_true(read_reply(f, fds[3], buf, sizeof(buf), 1000) > 0);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);
	assert_int_equal(f->srv.stats.conns_evicted, 1);
	assert_int_equal(recv(fds[0], buf, sizeof(buf), MSG_DONTWAIT), 0);	/* evicted: EOF */
	/* half a request (slowloris) is evicted before an idle connection */
	assert_int_equal(send(fds[1], "GET /", 5, 0), 5);
	run_for(f, 20);
	extra = connect_to(port);
	assert_int_equal(send(extra, "GET /ok HTTP/1.1\r\n\r\n", 20, 0), 20);
	assert_true(read_reply(f, extra, buf, sizeof(buf), 1000) > 0);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);
	assert_int_equal(f->srv.stats.conns_evicted, 2);
	assert_int_equal(recv(fds[1], buf, sizeof(buf), MSG_DONTWAIT), 0);
	assert_int_equal(f->srv.stats.conns_rejected, 0);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	close(extra);
	run_for(f, 20);
}

/* Every slot writes a response its client does not read: a real 503, read
 * by the client even though it sent its request (no reset). */
static void test_conn_limit_503_when_all_write(void **state)
{
	struct fx *f = *state;
	int fds[3], extra, rcv = 4096;
	char buf[2048];
	uint16_t port;

	f->lim.max_conns = 3;
	port = listen_any(f);
	for (int i = 0; i < 3; i++) {
		fds[i] = connect_to(port);
		setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
		assert_int_equal(send(fds[i], "GET /big HTTP/1.1\r\n\r\n", 21, 0), 21);
		run_for(f, 10);
	}
	extra = connect_to(port);
	assert_int_equal(send(extra, "GET /ok HTTP/1.1\r\n\r\n", 20, 0), 20);
	assert_true(read_reply(f, extra, buf, sizeof(buf), 1000) > 0);
	assert_int_equal(strncmp(buf, "HTTP/1.1 503", 12), 0);
	assert_non_null(strstr(buf, "Retry-After: 1"));
	assert_non_null(strstr(buf, "too many API connections"));
	assert_int_equal(f->srv.stats.conns_rejected, 1);
	assert_int_equal(f->srv.stats.conns_active, 4);	/* 3 slots + 1 lingering 503 */
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(extra);
	run_for(f, 20);
}

static void test_close_idle_spares_busy(void **state)
{
	struct fx *f = *state;
	int a[2], b[2];
	struct ph_http_conn *ca, *cb;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
	ca = ph_http_conn_new(&f->srv, a[0], NULL);
	cb = ph_http_conn_new(&f->srv, b[0], NULL);
	assert_non_null(ca);
	assert_non_null(cb);
	assert_int_equal(send(b[1], "GET /x HTTP/1.1\r\nHo", 19, 0), 19);
	run_for(f, 20);
	assert_int_equal(ph_http_server_close_idle(&f->srv, NULL, true), 1);
	assert_true(ph_http_conn_closed(ca));
	assert_false(ph_http_conn_closed(cb));
	assert_int_equal(ph_http_server_close_older(&f->srv, ph_http_server_seq(&f->srv), NULL), 1);
	run_for(f, 10);
	close(a[1]);
	close(b[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_simple_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_query_and_absolute_form, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining_any_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_by_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_without_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_answer_is_500_and_204_has_no_length, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_authorization_captured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_deadline_not_reset_by_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_limit_evicts_idle_then_slow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conn_limit_503_when_all_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_idle_spares_busy, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
