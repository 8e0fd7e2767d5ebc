// SPDX-License-Identifier: MIT
/* test_api_routes.c - the control API's routes, auth, snapshot calls and event stream,
 * against a fake port subsystem (the ph_ports_* symbols below replace lifecycle.c) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "http.h"
#include "config.h"
#include "events.h"
#include "porthole.h"

/* ---- fake port subsystem ------------------------------------------------ */

static struct {
	bool quiesced;
	unsigned quiesce_calls, resume_calls, resumed;
	bool hold;		/* posted commands wait for fake_release() */
	enum ph_ports_op posted;	/* 0: none */
	bool done;
	int result, notify_fd;
	struct ph_bus *bus;
	struct ph_stats stats;
} fake;

const unsigned ph_scan_hist_bounds_us[PH_SCAN_HIST_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 250000,
};

bool ph_ports_running(struct ph_ports *p) { (void)p; return true; }
bool ph_ports_quiesced(struct ph_ports *p) { (void)p; return fake.quiesced; }
struct ph_bus *ph_ports_bus(struct ph_ports *p) { (void)p; return fake.bus; }
struct ph_stats *ph_ports_stats(struct ph_ports *p) { (void)p; return &fake.stats; }

int ph_ports_quiesce(struct ph_ports *p)
{
	(void)p;
	fake.quiesce_calls++;
	fake.quiesced = true;
	return 0;
}

int ph_ports_resume(struct ph_ports *p)
{
	(void)p;
	fake.resume_calls++;
	if (!fake.quiesced)
		return 0;
	fake.quiesced = false;
	fake.resumed++;
	return 1;
}

/* The worker runs the posted command and tells the API */
static void fake_run_posted(void)
{
	uint64_t one = 1;

	fake.result = fake.posted == PH_PORTS_QUIESCE ? ph_ports_quiesce(NULL) : ph_ports_resume(NULL);
	fake.done = true;
	assert_int_equal(write(fake.notify_fd, &one, sizeof(one)), sizeof(one));
}

static void fake_release(void)
{
	fake.hold = false;
	if (fake.posted && !fake.done)
		fake_run_posted();
}

int ph_ports_post(struct ph_ports *p, enum ph_ports_op op, int notify_fd)
{
	(void)p;
	if (fake.posted)
		return -EBUSY;
	fake.posted = op;
	fake.done = false;
	fake.notify_fd = notify_fd;
	if (!fake.hold)
		fake_run_posted();
	return 0;
}

int ph_ports_post_result(struct ph_ports *p)
{
	(void)p;
	if (!fake.posted)
		return -ENOENT;
	if (!fake.done)
		return -EINPROGRESS;
	fake.posted = 0;
	return fake.result;
}

void ph_ports_post_forget(struct ph_ports *p)
{
	(void)p;
	fake.notify_fd = -1;
}

int ph_ports_list(struct ph_ports *p, struct ph_port_list *out)
{
	(void)p;
	memset(out, 0, sizeof(*out));
	strcpy(out->external, "169.254.0.21");
	out->ports = calloc(1, sizeof(*out->ports));
	if (!out->ports)
		return -ENOMEM;
	out->n = 1;
	out->ports[0] = (struct ph_port_info){ .port = 8000, .family = AF_INET,
		.address = "127.0.0.1", .state = PH_PORT_FORWARDED, .connections = 2,
		.since_ms = 1714564800123 };
	return 0;
}

void ph_port_list_free(struct ph_port_list *l)
{
	free(l->ports);
	l->ports = NULL;
	l->n = 0;
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
	struct ph_loop loop;
	struct ph_daemon_config cfg;
	struct ph_api *api;
	uint16_t port;
};

static uint16_t free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static int start(void **state, const char *token, size_t queue, uint64_t ping_ms,
		 unsigned max_streams)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_in *sin;

	assert_non_null(f);
	memset(&fake, 0, sizeof(fake));
	fake.bus = ph_bus_new();
	assert_non_null(fake.bus);
	/* the defaults of config.c, set here so that lifecycle.c is not linked in */
	f->cfg.http = (struct ph_http_limits){
		.head_timeout_ms = 5000, .idle_timeout_ms = 640000, .write_timeout_ms = 30000,
		.max_conns = 256, .max_head = 16384, .max_body = 65536,
	};
	f->port = free_port();
	sin = (struct sockaddr_in *)&f->cfg.listen;
	sin->sin_family = AF_INET;
	f->cfg.listen_len = sizeof(*sin);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = htons(f->port);
	if (token) {
		strcpy(f->cfg.token, token);
		f->cfg.token_len = strlen(token);
	}
	f->cfg.http.sse_queue = queue;
	f->cfg.http.sse_ping_ms = ping_ms;
	f->cfg.http.max_streams = max_streams;
	assert_int_equal(ph_loop_init(&f->loop, NULL, NULL), 0);
	assert_int_equal(ph_api_new(&f->api, &f->loop, &f->cfg, (struct ph_ports *)&fake), 0);
	assert_true(ph_api_listen_inode(f->api) > 0);
	*state = f;
	return 0;
}

static int setup(void **state) { return start(state, NULL, 64, 15000, 64); }
static int setup_token(void **state) { return start(state, "s3cr3t-token", 64, 15000, 64); }
static int setup_small_queue(void **state) { return start(state, NULL, 4, 50, 64); }

static int setup_one_stream(void **state) { return start(state, NULL, 64, 15000, 1); }

static int teardown(void **state)
{
	struct fx *f = *state;

	ph_api_free(f->api);
	ph_loop_fini(&f->loop);
	ph_bus_free(fake.bus);
	free(f);
	return 0;
}

static int dial(struct fx *f)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(f->port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
		assert_int_equal(errno, EINPROGRESS);
	return fd;
}

/* Pump the loop and read from @fd until @until appears, EOF, or @ms pass */
static size_t pump(struct fx *f, int fd, char *buf, size_t size, const char *until, int ms,
		   bool *eof)
{
	uint64_t end = ph_now_ms() + (uint64_t)ms;
	size_t got = strlen(buf);

	*eof = false;
	while (ph_now_ms() < end) {
		ssize_t n;

		ph_loop_run_once(&f->loop, 5);
		n = recv(fd, buf + got, size - 1 - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			buf[got] = '\0';
		} else if (n == 0) {
			*eof = true;
			break;
		}
		if (until && strstr(buf, until))
			break;
	}
	return got;
}

/* One request on a fresh connection; the answer (head and body) into @buf */
static int request(struct fx *f, const char *req, char *buf, size_t size)
{
	int fd = dial(f), st = 0;
	bool eof;
	char *body;

	buf[0] = '\0';
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	pump(f, fd, buf, size, "\r\n\r\n", 2000, &eof);
	body = strstr(buf, "\r\n\r\n");
	assert_non_null(body);
	if (strstr(buf, "Content-Length: ") && strncmp(req, "HEAD ", 5)) {
		size_t len = strtoul(strstr(buf, "Content-Length: ") + 16, NULL, 10);
		uint64_t end = ph_now_ms() + 2000;

		while (strlen(body + 4) < len && !eof && ph_now_ms() < end)
			pump(f, fd, buf, size, NULL, 50, &eof);
	}
	close(fd);
	assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &st), 1);
	return st;
}

#define GET(f, path, buf) request((f), "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n", (buf), sizeof(buf))
#define POST(f, path, buf) request((f), "POST " path " HTTP/1.1\r\nHost: t\r\n\r\n", (buf), sizeof(buf))

/* ---- tests -------------------------------------------------------------- */

static void test_health(void **state)
{
	struct fx *f = *state;
	char buf[4096];

	assert_int_equal(GET(f, "/health", buf), 200);
	assert_non_null(strstr(buf, "\r\n\r\n{\"version\":\"" PH_VERSION "\",\"state\":\"running\"}\n"));
	assert_non_null(strstr(buf, "Content-Type: application/json\r\n"));
	assert_non_null(strstr(buf, "Cache-Control: no-store\r\n"));
	assert_int_equal(fake.resume_calls, 0);
}

static void test_prepare_then_health_resumes_once(void **state)
{
	struct fx *f = *state;
	char buf[32768];	/* the whole /metrics answer */
	int fds[50];

	assert_int_equal(POST(f, "/snapshot/prepare", buf), 204);
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	assert_null(strstr(buf, "Content-Length"));
	assert_true(fake.quiesced);
	/* idempotent */
	assert_int_equal(POST(f, "/snapshot/prepare", buf), 204);
	assert_int_equal(fake.quiesce_calls, 2);

	/* 50 clients ask /health at once: exactly one resume runs */
	for (int i = 0; i < 50; i++)
		fds[i] = dial(f);
	ph_loop_run_once(&f->loop, 5);
	for (int i = 0; i < 50; i++)
		assert_int_equal(send(fds[i], "GET /health HTTP/1.1\r\n\r\n", 24, MSG_NOSIGNAL), 24);
	for (int i = 0; i < 50; i++) {
		bool eof;

		buf[0] = '\0';
		pump(f, fds[i], buf, sizeof(buf), "}\n", 2000, &eof);
		assert_non_null(strstr(buf, "\"state\":\"running\""));
		close(fds[i]);
	}
	assert_int_equal(fake.resumed, 1);
	assert_int_equal(GET(f, "/metrics", buf), 200);
	assert_non_null(strstr(buf, "porthole_snapshot_resumes_total 1\n"));
	assert_non_null(strstr(buf, "porthole_snapshot_prepares_total 1\n"));
}

static void test_resume(void **state)
{
	struct fx *f = *state;
	char buf[4096];

	assert_int_equal(POST(f, "/snapshot/resume", buf), 204);	/* no-op when running */
	assert_int_equal(fake.resumed, 0);
	assert_int_equal(POST(f, "/snapshot/prepare", buf), 204);
	assert_int_equal(POST(f, "/snapshot/resume", buf), 204);
	assert_int_equal(fake.resumed, 1);
	assert_null(strstr(buf, "Connection: close"));
}

/* While the worker has not run a prepare yet, the API keeps answering:
 * /health at once, a resume after the prepare, in order */
static void test_prepare_waits_for_worker_not_api(void **state)
{
	struct fx *f = *state;
	char buf[4096] = "", hbuf[4096] = "", rbuf[4096] = "";
	int pre, res, h;
	bool eof;

	fake.hold = true;
	pre = dial(f);
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(pre, "POST /snapshot/prepare HTTP/1.1\r\n\r\n", 35, MSG_NOSIGNAL), 35);
	shutdown(pre, SHUT_WR);	/* a half-closed client still gets its answer */
	pump(f, pre, buf, sizeof(buf), "\r\n\r\n", 100, &eof);
	assert_string_equal(buf, "");		/* the worker has not run it */
	assert_false(eof);
	assert_int_equal(fake.quiesce_calls, 0);

	/* /health is answered meanwhile, with the state the worker published;
	 * it does not resume: the snapshot waits for the prepare's answer */
	assert_int_equal(GET(f, "/health", hbuf), 200);
	assert_non_null(strstr(hbuf, "\"state\":\"running\""));
	assert_int_equal(GET(f, "/metrics", hbuf), 200);

	/* a resume sent meanwhile waits behind the prepare */
	res = dial(f);
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(res, "POST /snapshot/resume HTTP/1.1\r\n\r\n", 34, MSG_NOSIGNAL), 34);
	/* and a /health behind that resume rides on it */
	h = dial(f);
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(h, "GET /health HTTP/1.1\r\n\r\n", 24, MSG_NOSIGNAL), 24);
	hbuf[0] = '\0';
	pump(f, h, hbuf, sizeof(hbuf), "}\n", 100, &eof);
	assert_string_equal(hbuf, "");

	fake_release();
	pump(f, pre, buf, sizeof(buf), "\r\n\r\n", 2000, &eof);
	assert_non_null(strstr(buf, "HTTP/1.1 204 "));
	assert_non_null(strstr(buf, "Connection: close\r\n"));
	pump(f, res, rbuf, sizeof(rbuf), "\r\n\r\n", 2000, &eof);
	assert_non_null(strstr(rbuf, "HTTP/1.1 204 "));
	pump(f, h, hbuf, sizeof(hbuf), "}\n", 2000, &eof);
	assert_non_null(strstr(hbuf, "\"state\":\"running\""));
	assert_int_equal(fake.quiesce_calls, 1);
	assert_int_equal(fake.resumed, 1);
	assert_int_equal(fake.resume_calls, 1);	/* the rider made no call */
	close(pre);
	close(res);
	close(h);
}

/* A client that resets before its command is posted: the command is dropped */
static void test_prepare_client_gone(void **state)
{
	struct fx *f = *state;
	char buf[4096] = "";
	int a, b;
	bool eof;

	fake.hold = true;
	a = dial(f);
	b = dial(f);
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(a, "POST /snapshot/resume HTTP/1.1\r\n\r\n", 34, MSG_NOSIGNAL), 34);
	pump(f, a, buf, sizeof(buf), NULL, 50, &eof);
	assert_int_equal(send(b, "POST /snapshot/prepare HTTP/1.1\r\n\r\n", 35, MSG_NOSIGNAL), 35);
	pump(f, b, buf, sizeof(buf), NULL, 50, &eof);
	/* b resets (a FIN alone may be a half-close: that client still waits);
	 * its prepare was not posted yet: dropped */
	assert_int_equal(setsockopt(b, SOL_SOCKET, SO_LINGER,
				    &(struct linger){ .l_onoff = 1, .l_linger = 0 },
				    sizeof(struct linger)), 0);
	close(b);
	close(a);	/* its resume was posted: it runs */
	pump(f, a, buf, sizeof(buf), NULL, 50, &eof);
	fake_release();
	for (int i = 0; i < 10; i++)
		ph_loop_run_once(&f->loop, 5);
	assert_int_equal(fake.resume_calls, 1);
	assert_int_equal(fake.quiesce_calls, 0);
	assert_false(fake.quiesced);
	assert_int_equal(GET(f, "/health", buf), 200);
}

static void test_prepare_closes_idle_connections(void **state)
{
	struct fx *f = *state;
	char buf[4096] = "";
	int idle = dial(f), busy = dial(f), sse = dial(f);
	bool eof;

	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(busy, "GET /health HTTP/1.1\r\nX: ", 25, MSG_NOSIGNAL), 25);
	assert_int_equal(send(sse, "GET /ports/events HTTP/1.1\r\n\r\n", 30, MSG_NOSIGNAL), 30);
	pump(f, sse, buf, sizeof(buf), "event: snapshot", 1000, &eof);
	assert_non_null(strstr(buf, "event: snapshot"));
	assert_int_equal(POST(f, "/snapshot/prepare", buf), 204);
	buf[0] = '\0';
	pump(f, idle, buf, sizeof(buf), NULL, 100, &eof);
	assert_true(eof);
	buf[0] = '\0';
	pump(f, sse, buf, sizeof(buf), NULL, 100, &eof);
	assert_true(eof);
	/* a half-sent request is not idle: it may still complete */
	assert_int_equal(send(busy, "y\r\n\r\n", 5, MSG_NOSIGNAL), 5);
	buf[0] = '\0';
	pump(f, busy, buf, sizeof(buf), "}\n", 1000, &eof);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);
	close(idle);
	close(busy);
	close(sse);
}

static void test_ports(void **state)
{
	struct fx *f = *state;
	char buf[4096];

	assert_int_equal(GET(f, "/ports", buf), 200);
	assert_non_null(strstr(buf, "\r\n\r\n{\"external_address\":\"169.254.0.21\",\"ports\":[{\"port\":8000,\"proto\":\"tcp\","
				    "\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"forwarded\","
				    "\"connections\":2,\"cap_hits\":0,\"since\":\"2024-05-01T12:00:00.123Z\"}]}\n"));
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	char buf[32768];	/* the whole /metrics answer */

	assert_int_equal(GET(f, "/nope", buf), 404);
	assert_non_null(strstr(buf, "{\"error\":"));
	assert_int_equal(GET(f, "/health/", buf), 404);
	assert_int_equal(GET(f, "/snapshot/prepare", buf), 405);
	assert_non_null(strstr(buf, "\r\nAllow: POST\r\n"));
	assert_false(fake.quiesced);
	assert_int_equal(POST(f, "/ports", buf), 405);
	assert_non_null(strstr(buf, "\r\nAllow: GET, HEAD\r\n"));
	assert_int_equal(request(f, "DELETE /health HTTP/1.1\r\n\r\n", buf, sizeof(buf)), 405);
	assert_int_equal(request(f, "HEAD /health HTTP/1.1\r\n\r\n", buf, sizeof(buf)), 200);
	assert_null(strstr(buf, "version"));
	assert_int_equal(GET(f, "/metrics", buf), 200);
	assert_non_null(strstr(buf, "porthole_api_requests_total{code=\"405\"} 3\n"));
	assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
}

static void test_auth(void **state)
{
	struct fx *f = *state;
	char buf[4096];

	assert_int_equal(GET(f, "/health", buf), 200);
	assert_int_equal(GET(f, "/ports", buf), 401);
	assert_non_null(strstr(buf, "\r\nWWW-Authenticate: Bearer"));
	assert_non_null(strstr(buf, "{\"error\":"));
	assert_int_equal(GET(f, "/unknown", buf), 401);	/* no probing without a token */
	assert_int_equal(POST(f, "/snapshot/prepare", buf), 401);
	assert_false(fake.quiesced);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nAuthorization: Bearer s3cr3t-tokeX\r\n\r\n",
				 buf, sizeof(buf)), 401);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nAuthorization: Bearer s3cr3t-token1\r\n\r\n",
				 buf, sizeof(buf)), 401);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nAuthorization: Bearer s3cr3t-toke\r\n\r\n",
				 buf, sizeof(buf)), 401);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nAuthorization: Basic s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 401);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nAuthorization: Bearer s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 200);
	assert_int_equal(request(f, "GET /ports HTTP/1.1\r\nauthorization: bearer s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 200);
	assert_int_equal(request(f, "GET /nope HTTP/1.1\r\nAuthorization: Bearer s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 404);
	assert_int_equal(request(f, "POST /snapshot/prepare HTTP/1.1\r\nAuthorization: Bearer s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 204);
	assert_true(fake.quiesced);
	/* quiesced by an authenticated client: /health without the token only reports */
	assert_int_equal(GET(f, "/health", buf), 200);
	assert_non_null(strstr(buf, "\"state\":\"quiesced\""));
	assert_true(fake.quiesced);
	assert_int_equal(request(f, "GET /health HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n",
				 buf, sizeof(buf)), 200);
	assert_true(fake.quiesced);
	/* with the token, the first /health after a restore resumes */
	assert_int_equal(request(f, "GET /health HTTP/1.1\r\nAuthorization: Bearer s3cr3t-token\r\n\r\n",
				 buf, sizeof(buf)), 200);
	assert_non_null(strstr(buf, "\"state\":\"running\""));
	assert_false(fake.quiesced);
}

static struct ph_event ev(enum ph_event_type t, uint16_t port)
{
	return (struct ph_event){ .type = t, .port = { .port = port, .family = AF_INET,
		.address = "127.0.0.1", .state = PH_PORT_FORWARDED, .since_ms = 1 } };
}

static void test_events_stream(void **state)
{
	struct fx *f = *state;
	char buf[16384] = "";
	int fd = dial(f);
	struct ph_event e = ev(PH_EV_OPEN, 9000);
	bool eof;

	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(fd, "GET /ports/events HTTP/1.1\r\n\r\n", 30, MSG_NOSIGNAL), 30);
	pump(f, fd, buf, sizeof(buf), "\n\n", 1000, &eof);
	assert_int_equal(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17), 0);
	assert_non_null(strstr(buf, "Content-Type: text/event-stream\r\n"));
	assert_non_null(strstr(buf, "Cache-Control: no-store\r\n"));
	assert_null(strstr(buf, "Content-Length"));
	assert_non_null(strstr(buf, "\r\n\r\nevent: snapshot\ndata: {\"external_address\":"));
	buf[0] = '\0';
	ph_bus_publish(fake.bus, &e);
	pump(f, fd, buf, sizeof(buf), "\n\n", 1000, &eof);
	assert_string_equal(buf, "event: open\ndata: {\"port\":9000,\"proto\":\"tcp\",\"family\":\"ipv4\",\"address\":"
				 "\"127.0.0.1\",\"state\":\"forwarded\",\"connections\":0,\"cap_hits\":0,"
				 "\"since\":\"1970-01-01T00:00:00.001Z\"}\n\n");
	close(fd);
	ph_loop_run_once(&f->loop, 5);
}

static void test_events_lost_and_ping(void **state)
{
	struct fx *f = *state;
	char buf[16384] = "";
	int fd = dial(f);
	bool eof;

	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(fd, "GET /ports/events HTTP/1.1\r\n\r\n", 30, MSG_NOSIGNAL), 30);
	pump(f, fd, buf, sizeof(buf), "event: snapshot", 1000, &eof);
	/* ten events while the stream does not run: a queue of 4 keeps 4 */
	for (int i = 0; i < 10; i++) {
		struct ph_event e = ev(i % 2 ? PH_EV_CLOSE : PH_EV_OPEN, (uint16_t)(9000 + i));

		ph_bus_publish(fake.bus, &e);
	}
	buf[0] = '\0';
	pump(f, fd, buf, sizeof(buf), "event: lost\ndata: 6\n\n", 1000, &eof);
	assert_non_null(strstr(buf, "event: lost\ndata: 6\n\n"));
	assert_non_null(strstr(buf, "\"port\":9003"));
	assert_null(strstr(buf, "\"port\":9004"));
	assert_true(strstr(buf, "\"port\":9003") < strstr(buf, "event: lost"));
	buf[0] = '\0';
	pump(f, fd, buf, sizeof(buf), ": ping\n\n", 500, &eof);
	assert_non_null(strstr(buf, ": ping\n\n"));
	close(fd);
	ph_loop_run_once(&f->loop, 5);
}

/* At the stream cap the oldest stream is told "event: evicted" and closed */
static void test_events_cap_evicts_oldest(void **state)
{
	struct fx *f = *state;
	char a[16384] = "", b[16384] = "";
	int fa = dial(f), fb;
	bool eof;

	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(fa, "GET /ports/events HTTP/1.1\r\n\r\n", 30, MSG_NOSIGNAL), 30);
	pump(f, fa, a, sizeof(a), "event: snapshot", 1000, &eof);
	assert_non_null(strstr(a, "event: snapshot"));
	fb = dial(f);
	ph_loop_run_once(&f->loop, 5);
	assert_int_equal(send(fb, "GET /ports/events HTTP/1.1\r\n\r\n", 30, MSG_NOSIGNAL), 30);
	pump(f, fb, b, sizeof(b), "event: snapshot", 1000, &eof);
	assert_non_null(strstr(b, "event: snapshot"));
	a[0] = '\0';
	pump(f, fa, a, sizeof(a), "never", 300, &eof);
	assert_non_null(strstr(a, "event: evicted\ndata: too many event streams\n\n"));
	assert_true(eof);
	assert_int_equal(ph_api_http_server(f->api)->stats.streams_evicted, 1);
	close(fa);
	close(fb);
	ph_loop_run_once(&f->loop, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepare_then_health_resumes_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepare_waits_for_worker_not_api, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepare_client_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepare_closes_idle_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth, setup_token, teardown),
		cmocka_unit_test_setup_teardown(test_events_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_lost_and_ping, setup_small_queue, teardown),
		cmocka_unit_test_setup_teardown(test_events_cap_evicts_oldest, setup_one_stream, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
