// SPDX-License-Identifier: MIT
/* http.c - HTTP/1.1 server connection layer on a ph_loop (llhttp, deadlines, limits)
 *
 * Theory of Operation
 * ===================
 * Each connection owns a fixed input buffer, an llhttp request parser, an
 * output queue and one timer. Input is parsed where it lies; the parser is
 * paused at the end of every message (on_message_complete returns
 * HPE_PAUSED), the request is handed to the handler, which answers
 * synchronously by appending to the output queue, and parsing resumes with
 * the bytes that follow. Pipelined requests are therefore answered strictly
 * in order. Output is written at the end of each event (one send for a
 * whole pipelined batch); what the socket does not take waits for EPOLLOUT.
 * While more than OUT_HIGH bytes wait, no further request is parsed and the
 * socket is not read, so a client that pipelines without reading cannot
 * make us buffer without bound.
 *
 * Head limit: while a head is incomplete, at most max_head - bytes-so-far
 * are given to the parser, so a head that is still incomplete after
 * max_head bytes is answered 431 without ever buffering more than that.
 * Everything the handler needs (target, Authorization, Expect) is copied
 * out of the parser's spans, so input can be compacted between reads.
 *
 * Deadlines (one ph_timer, re-armed to the earliest applicable one):
 *  - request: from the first byte of a request, the whole request (head
 *    and its at most max_body body) must arrive within head_timeout; later
 *    bytes never extend it, so a trickling client is cut on time;
 *  - idle: a connection with no request in progress and nothing to write
 *    is closed after idle_timeout;
 *  - write: from the moment the socket stops taking output, the queue must
 *    drain within write_timeout (partial progress does not extend it).
 *
 * Connection limit (max_conns slots). The control plane (GET /health, POST
 * /snapshot/prepare and resume, GET /metrics) must always get a slot, but a new connection's path
 * is unknown until its head arrives. So no slot is reserved by path;
 * instead every connection that could hold slots for long without doing
 * useful work can be evicted, and a new connection at the cap takes the
 * slot of one of them, cheapest loss first (eviction_victim()):
 *  1. one lingering after its final response (only input is drained);
 *  2. the oldest with a request still arriving (head or body incomplete:
 *     a live client's request arrives within a round trip, a trickling one
 *     is what stays; this bounds slowloris clients by the accept rate, not
 *     only by the head deadline);
 *  3. the one idle longest (no request in progress, including a new
 *     connection that has not sent a byte; HTTP clients retry such closes);
 *  4. the oldest event stream (told "event: evicted" first). Streams also
 *     have their own, lower cap (sse.c), so they never reach this in the
 *     default configuration.
 * Never a connection whose request was dispatched and whose response is
 * still being written: that is bounded by the write deadline. Only when
 * every slot holds such a response does the new connection get 503 with
 * Retry-After; it is answered like any final response (half-close, input
 * drained for LINGER_MS), so the client reads the 503 instead of a reset.
 * Such connections hold no slot; at most REJECT_MAX linger at once, beyond
 * that they are answered and closed at once. A new connection is read as
 * soon as it is accepted: a client that sent its request with the
 * handshake is served before the next accept can evict it.
 *
 * Memory: an output queue that grew (a stream, a large response) is freed
 * once drained rather than kept at its high-water mark, and after
 * connections worth TRIM_BYTES were released, malloc_trim() hands the
 * freed heap back to the kernel (TRIM_DELAY_MS later, once per burst).
 * A closed connection's memory (about 19 KB with its output queue) goes
 * to a cache of up to CONN_CACHE that new connections are taken from, so
 * a flood of short-lived connections (streams evicted and reconnecting, a
 * burst of probes) does not allocate and free per connection. That churn
 * was the API thread's main cost under such a flood, worst with musl,
 * whose free() hands every freed slot of that size back to the kernel at
 * once (madvise(MADV_FREE), a TLB shoot-down on every CPU running one of
 * our threads). The cache is emptied, and the heap trimmed, once a trim
 * period passed without taking from it: a flood's memory still goes back
 * when it ends.
 *
 * Closing after a final response ("Connection: close", errors) is graceful:
 * the write side is shut down once the queue is written and input is
 * drained for up to LINGER_MS, so a client that was still sending never has
 * its response destroyed by a reset.
 *
 * Deferred answers: a handler that must wait for another thread (the
 * snapshot commands wait for the port worker) calls ph_http_defer() and
 * returns; the connection then holds its request: it is neither idle nor
 * evictable, has no request deadline, parses nothing further (pipelined
 * requests stay in order behind it) and, if the client half-closes, still
 * gets its answer. The answer comes from the loop later through
 * ph_http_send(); a connection closed meanwhile tells its owner (@gone).
 * Meanwhile every other connection is served as usual.
 *
 * Lifetime: ph_http_conn_close() unregisters and closes at once; memory is
 * released through ph_loop_defer(), and every path that calls out (handler,
 * stream callbacks) checks c->dead afterwards.
 */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <llhttp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define IN_CAP		16384		/* input buffer per connection */
#define OUT_HIGH	(256 * 1024)	/* stop parsing while this much waits */
#define LINGER_MS	2000		/* drain input after a final response */
#define URL_MAX		2048
#define AUTH_MAX	(PH_TOKEN_MAX + 64)
#define OUT_KEEP	16384		/* output capacity kept once drained */
#define REJECT_MAX	64		/* 503s lingering at once */
#define TRIM_BYTES	(1024 * 1024)	/* released before malloc_trim() */
#define TRIM_DELAY_MS	200
#define CONN_CACHE	64		/* closed connections kept for reuse */

enum hdr { HDR_OTHER, HDR_AUTH, HDR_EXPECT };

struct ph_http_conn {
	struct ph_http_server *srv;
	struct ph_list node;			/* srv->conns */
	struct ph_list idle;			/* srv->idle while idle */
	struct ph_io io;
	int fd;
	struct ph_buf *sink;			/* detached: output goes here */
	struct ph_timer timer;
	struct ph_defer defer;
	llhttp_t parser;
	uint64_t seq;

	/* input */
	size_t in_pos, in_len;
	char prev_byte;				/* the byte before in[0] */
	bool rd_eof;

	/* request in progress */
	bool in_req;		/* a byte of a request arrived, not yet answered */
	bool headers_done;
	bool msg_done;
	bool keep_alive;
	size_t head_used;
	uint64_t req_start_ms;
	int err_status;
	const char *err_msg;
	size_t url_len;
	bool url_long;
	char field[32];
	size_t field_len;
	enum hdr cur_hdr;
	size_t auth_len;
	bool auth_seen, auth_bad;
	char expect[32];
	size_t expect_len;
	bool expect_seen;
	size_t body_len;
	unsigned method;
	uint8_t major, minor;
	bool upgrade;

	/* response */
	bool answered;
	bool close_after;	/* Connection: close on the current response */
	struct ph_buf out;
	size_t out_off;
	bool write_blocked;
	uint64_t write_since_ms;
	uint64_t idle_since_ms;

	bool streaming;
	const struct ph_http_stream_ops *sops;
	void *sctx;
	bool closing;		/* final response queued: close once written */
	bool lingering;
	uint64_t linger_until_ms;
	bool failed;		/* write error noticed outside a callback */
	bool abort;		/* close with a reset (a stream cut for not reading) */
	bool rejected;		/* turned away at the cap: holds no slot */
	bool dead;
	bool reuse;		/* closed while the server lives: may be cached */
	bool hold;		/* a stream not started: keep its head for its first write */
	bool dispatching;	/* inside the handler */
	bool deferred;		/* the handler will answer later (ph_http_defer()) */
	void (*gone)(struct ph_http_conn *c, void *ctx);	/* closed while deferred */
	void *gone_ctx;
	struct ph_http_conn *next_free;	/* in srv->cache */

	/* request line, watched for HTTP/0.9 (no version) */
	unsigned line_len, line_sp;
	bool line_done;

	char url[URL_MAX + 1];
	char auth[AUTH_MAX];
	char in[IN_CAP];
};

static void update_events(struct ph_http_conn *c);
static void flush(struct ph_http_conn *c, bool callbacks);
static void rearm(struct ph_http_conn *c);
static void update_idle(struct ph_http_conn *c);

const char *ph_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Unknown";
}

/* IMF-fixdate of now, recomputed at most once a second */
static const char *http_date(void)
{
	static char buf[40];
	static time_t last = -1;
	time_t t = time(NULL);
	struct tm tm;

	if (t != last && gmtime_r(&t, &tm)) {
		strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		last = t;
	}
	return buf;
}

static uint64_t now_ms(const struct ph_http_conn *c)
{
	return c->srv->loop->now_ms;
}

static size_t out_pending(const struct ph_http_conn *c)
{
	return c->out.len - c->out_off;
}

size_t ph_http_out_pending(const struct ph_http_conn *c)
{
	return out_pending(c);
}

bool ph_http_conn_closed(const struct ph_http_conn *c)
{
	return c->dead;
}

uint64_t ph_http_conn_seq(const struct ph_http_conn *c)
{
	return c->seq;
}

/* ---- parser callbacks ------------------------------------------------- */

static int set_error(struct ph_http_conn *c, int status, const char *msg)
{
	if (!c->err_status) {
		c->err_status = status;
		c->err_msg = msg;
	}
	llhttp_set_error_reason(&c->parser, msg);
	return HPE_USER;
}

static int on_message_begin(llhttp_t *p)
{
	struct ph_http_conn *c = p->data;

	c->url_len = 0;
	c->url_long = false;
	c->field_len = 0;
	c->cur_hdr = HDR_OTHER;
	c->auth_len = 0;
	c->auth_seen = c->auth_bad = false;
	c->expect_len = 0;
	c->expect_seen = false;
	c->body_len = 0;
	c->upgrade = false;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	struct ph_http_conn *c = p->data;

	if (c->url_long || n > URL_MAX - c->url_len) {
		c->url_long = true;
		n = URL_MAX - c->url_len;
	}
	memcpy(c->url + c->url_len, at, n);
	c->url_len += n;
	return 0;
}

/* RFC 9110 tchar: llhttp checks these only when built in strict mode */
static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	struct ph_http_conn *c = p->data;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)at[i];

		if (!is_tchar(ch))
			return set_error(c, 400, "invalid character in a header name");
		if (c->field_len < sizeof(c->field) - 1)
			c->field[c->field_len++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
		else
			c->field[0] = '\0';	/* too long to be one we look at */
	}
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	struct ph_http_conn *c = p->data;

	c->field[c->field_len] = '\0';
	c->field_len = 0;
	c->cur_hdr = HDR_OTHER;
	if (!strcmp(c->field, "authorization")) {
		c->cur_hdr = HDR_AUTH;
		if (c->auth_seen)
			c->auth_bad = true;	/* two credentials: accept neither */
		c->auth_seen = true;
	} else if (!strcmp(c->field, "expect")) {
		c->cur_hdr = HDR_EXPECT;
		if (c->expect_seen)
			return set_error(c, 417, "more than one Expect header");
		c->expect_seen = true;
	}
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	struct ph_http_conn *c = p->data;
	char before = at > c->in ? at[-1] : c->prev_byte;

	/*
	 * llhttp accepts obsolete line folding and hands the continuation over
	 * as a second span that starts right after the line feed. RFC 9112
	 * 5.2 lets a server reject it; folded values are a smuggling vector.
	 */
	if (before == '\n')
		return set_error(c, 400, "obsolete line folding in a header");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)at[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return set_error(c, 400, "invalid character in a header value");
	}
	switch (c->cur_hdr) {
	case HDR_AUTH:
		if (n > sizeof(c->auth) - c->auth_len) {
			c->auth_bad = true;
			break;
		}
		memcpy(c->auth + c->auth_len, at, n);
		c->auth_len += n;
		break;
	case HDR_EXPECT:
		if (n >= sizeof(c->expect) - c->expect_len)
			return set_error(c, 417, "unsupported expectation");
		memcpy(c->expect + c->expect_len, at, n);
		c->expect_len += n;
		break;
	case HDR_OTHER:
		break;
	}
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	struct ph_http_conn *c = p->data;

	c->cur_hdr = HDR_OTHER;
	return 0;
}

/* Trailing whitespace is part of llhttp's value spans */
static size_t trim_len(const char *s, size_t n)
{
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return n;
}

static void queue(struct ph_http_conn *c, const void *p, size_t n);

static int on_headers_complete(llhttp_t *p)
{
	struct ph_http_conn *c = p->data;
	size_t elen;

	c->headers_done = true;
	c->method = p->method;
	c->major = p->http_major;
	c->minor = p->http_minor;
	c->upgrade = p->upgrade;
	if (c->major != 1) {
		set_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
		return -1;
	}
	/*
	 * Bodies must be framed by Content-Length: no endpoint takes a body,
	 * and refusing chunked request bodies keeps a whole class of framing
	 * disagreements away (RFC 9110 15.5.12 allows exactly this refusal).
	 */
	if (p->flags & F_CHUNKED) {
		set_error(c, 411, "a request body needs Content-Length");
		return -1;
	}
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->lim->max_body) {
		set_error(c, 413, "request body too large");
		return -1;
	}
	if (c->expect_seen) {
		elen = trim_len(c->expect, c->expect_len);
		if (elen != 12 || strncasecmp(c->expect, "100-continue", 12)) {
			set_error(c, 417, "unsupported expectation");
			return -1;
		}
		/* Only worth saying when a body is about to be held back */
		if (c->minor >= 1 && (p->flags & F_CONTENT_LENGTH) && p->content_length > 0)
			queue(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	struct ph_http_conn *c = p->data;

	(void)at;
	c->body_len += n;
	if (c->body_len > c->srv->lim->max_body)
		return set_error(c, 413, "request body too large");
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct ph_http_conn *c = p->data;

	c->msg_done = true;
	c->keep_alive = llhttp_should_keep_alive(p) && !c->upgrade;
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- output ---------------------------------------------------------- */

static void queue(struct ph_http_conn *c, const void *p, size_t n)
{
	/* reclaim written bytes before growing */
	if (c->out_off && (c->out_off == c->out.len || c->out_off > 65536)) {
		ph_buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
	ph_buf_add(&c->out, p, n);
}

/**
 * send_head() - queue a response head
 * @c:		connection
 * @status:	status code
 * @ctype:	Content-Type or NULL
 * @headers:	extra lines or NULL
 * @length:	Content-Length, or -1 for none
 */
static void send_head(struct ph_http_conn *c, int status, const char *ctype, const char *headers,
		      long long length)
{
	struct ph_buf *b = &c->out;

	queue(c, NULL, 0);
	ph_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\nCache-Control: no-store\r\n", status,
		      ph_http_reason(status), http_date());
	if (ctype)
		ph_buf_printf(b, "Content-Type: %s\r\n", ctype);
	if (length >= 0)
		ph_buf_printf(b, "Content-Length: %lld\r\n", length);
	if (c->close_after)
		ph_buf_puts(b, "Connection: close\r\n");
	else if (c->minor == 0)
		ph_buf_puts(b, "Connection: keep-alive\r\n");
	if (headers)
		ph_buf_puts(b, headers);
	ph_buf_add(b, "\r\n", 2);
	if (status > 0 && status < PH_HTTP_MAX_STATUS)
		c->srv->stats.responses[status]++;
}

/**
 * ph_http_send() - answer the current request
 * @c:		connection (inside the handler)
 * @r:		the response
 *
 * Return: 0, -EALREADY when already answered, -EPIPE when closed
 */
static void deferred_finish(struct ph_http_conn *c);

int ph_http_send(struct ph_http_conn *c, const struct ph_http_resp *r)
{
	bool bodyless = r->status == 204 || r->status == 304 || r->status < 200;
	bool late = c->deferred && !c->dispatching;
	int ret;

	if (c->dead)
		return -EPIPE;
	if (c->deferred) {
		c->deferred = false;
		c->gone = NULL;
		c->answered = false;
	}
	if (c->answered)
		return -EALREADY;
	c->answered = true;
	if (r->close)
		c->close_after = true;
	send_head(c, r->status, r->content_type, r->headers, bodyless ? -1 : (long long)r->body_len);
	if (!bodyless && c->method != HTTP_HEAD && r->body_len)
		queue(c, r->body, r->body_len);
	ret = c->out.oom ? -ENOMEM : 0;
	if (late)
		deferred_finish(c);	/* may close @c */
	return ret;
}

/**
 * ph_http_defer() - see http.h
 * @c:		connection, inside the handler
 * @gone:	called if the connection closes before the answer (may be NULL)
 * @ctx:	its argument
 *
 * Return: 0, -EALREADY when already answered, -EPIPE when closed
 */
int ph_http_defer(struct ph_http_conn *c, void (*gone)(struct ph_http_conn *c, void *ctx),
		  void *ctx)
{
	if (c->dead)
		return -EPIPE;
	if (c->answered)
		return -EALREADY;
	c->answered = true;	/* the handler's duty is done */
	c->deferred = true;
	c->gone = gone;
	c->gone_ctx = ctx;
	return 0;
}

int ph_http_send_error(struct ph_http_conn *c, int status, const char *msg, const char *headers,
		       bool close)
{
	struct ph_buf body = { 0 };
	struct ph_json j;
	int ret;

	ph_json_init(&j, &body);
	ph_json_obj_begin(&j);
	ph_json_key(&j, "error");
	ph_json_str(&j, msg);
	ph_json_obj_end(&j);
	ph_buf_add(&body, "\n", 1);
	ret = ph_http_send(c, &(struct ph_http_resp){
		.status = status, .content_type = "application/json", .headers = headers,
		.body = body.data, .body_len = body.len, .close = close,
	});
	ph_buf_free(&body);
	return ret;
}

void ph_http_set_close(struct ph_http_conn *c)
{
	c->close_after = true;
}

/**
 * ph_http_stream_begin() - see http.h
 *
 * Return: 0 streaming; 1 for a HEAD request, answered with the head alone
 * (no stream, @ops never called); -errno
 */
int ph_http_stream_begin(struct ph_http_conn *c, const char *content_type,
			 const struct ph_http_stream_ops *ops, void *ctx)
{
	if (c->dead)
		return -EPIPE;
	if (c->answered)
		return -EALREADY;
	c->answered = true;
	if (c->method == HTTP_HEAD) {
		send_head(c, 200, content_type, NULL, -1);
		c->close_after = true;	/* no length: the head is all there is */
		return 1;
	}
	c->close_after = true;		/* the stream is delimited by close */
	send_head(c, 200, content_type, NULL, -1);
	c->streaming = true;
	c->sops = ops;
	c->sctx = ctx;
	return c->out.oom ? -ENOMEM : 0;
}

int ph_http_stream_write(struct ph_http_conn *c, const void *data, size_t n)
{
	if (c->dead || c->failed || !c->streaming)
		return -EPIPE;
	queue(c, data, n);
	if (c->out.oom)
		return -ENOMEM;
	/*
	 * Producers run outside the connection's callbacks: write now, but a
	 * failure only marks the connection, which the timer then closes, so
	 * the producer never sees its context freed under it.
	 */
	flush(c, false);
	update_events(c);
	rearm(c);
	return 0;
}

void ph_http_stream_hold(struct ph_http_conn *c, bool hold)
{
	if (c->dead)
		return;
	c->hold = hold;
	if (!hold && c->fd >= 0 && !c->failed) {
		flush(c, false);
		update_events(c);
		rearm(c);
	}
}

void ph_http_stream_evict(struct ph_http_conn *c)
{
	if (c->dead || !c->streaming)
		return;
	c->srv->stats.streams_evicted++;
	if (c->sops && c->sops->evict)
		c->sops->evict(c, c->sctx);
	ph_http_conn_close(c);
}

void ph_http_stream_cut(struct ph_http_conn *c)
{
	if (c->dead || c->failed || !c->streaming)
		return;
	c->srv->stats.streams_cut++;
	ph_debug("API event stream not read, cut", PH_FU("conn", c->seq),
		 PH_FU("buffered", out_pending(c)));
	c->failed = true;	/* the timer closes it on the next turn */
	c->abort = true;
	rearm(c);
}

/* ---- connection lifecycle --------------------------------------------- */

static void idle_unlink(struct ph_http_conn *c)
{
	ph_list_del(&c->idle);
}

static bool is_idle(const struct ph_http_conn *c)
{
	return !c->dead && !c->in_req && !out_pending(c) && !c->streaming && !c->closing &&
	       !c->lingering && !c->rd_eof && !c->deferred;
}

static void update_idle(struct ph_http_conn *c)
{
	struct ph_http_server *s = c->srv;

	if (!is_idle(c)) {
		idle_unlink(c);
		return;
	}
	if (ph_list_linked(&c->idle))
		return;
	c->idle_since_ms = now_ms(c);
	ph_list_add_tail(&s->idle, &c->idle);
}

static void conn_release(struct ph_http_conn *c)
{
	ph_buf_free(&c->out);
	free(c);
}

/* Free every cached connection */
static void cache_drop(struct ph_http_server *s)
{
	while (s->cache) {
		struct ph_http_conn *c = s->cache;

		s->cache = c->next_free;
		conn_release(c);
	}
	s->n_cache = 0;
}

static void on_trim(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_http_server *s = ph_container_of(t, struct ph_http_server, trim_timer);

	if (s->cache_taken) {
		/* connections still come and go: keep the cache one more period */
		s->cache_taken = false;
		ph_timer_arm(loop, t, loop->now_ms + TRIM_DELAY_MS, on_trim);
		return;
	}
	s->freed += s->n_cache * sizeof(struct ph_http_conn);
	cache_drop(s);
	if (s->freed >= TRIM_BYTES) {
#ifdef __GLIBC__
		/* glibc keeps freed heap in its arenas until asked; musl's
		 * allocator returns freed memory by itself and has no trim */
		malloc_trim(0);
#endif
	}
	s->freed = 0;
}

/* Memory was released or cached: hand it back once the burst is over */
static void note_freed(struct ph_http_server *s, size_t n)
{
	s->freed += n;
	if ((s->freed >= TRIM_BYTES || s->n_cache) && !ph_timer_armed(&s->trim_timer))
		ph_timer_arm(s->loop, &s->trim_timer, s->loop->now_ms + TRIM_DELAY_MS, on_trim);
}

/* A zeroed connection, from the cache when it has one */
static struct ph_http_conn *conn_alloc(struct ph_http_server *s)
{
	struct ph_http_conn *c = s->cache;
	struct ph_buf out;

	if (!c)
		return calloc(1, sizeof(*c));
	s->cache = c->next_free;
	s->n_cache--;
	s->cache_taken = true;
	/* the arrays at the end (url, auth, input) need no zeroing: their
	 * lengths say what is valid; the output queue's memory is reused */
	out = c->out;
	memset(c, 0, offsetof(struct ph_http_conn, url));
	ph_buf_reset(&out);
	c->out = out;
	return c;
}

static void free_conn(struct ph_defer *d)
{
	struct ph_http_conn *c = ph_container_of(d, struct ph_http_conn, defer);
	struct ph_http_server *s;

	/* reuse is still set only while the server lives (see ph_http_server_fini) */
	if (!c->reuse) {
		conn_release(c);
		return;
	}
	s = c->srv;
	ph_list_del(&c->node);		/* s->dying */
	if (s->n_cache >= CONN_CACHE || c->out.cap > OUT_KEEP) {
		conn_release(c);
		return;
	}
	c->next_free = s->cache;
	s->cache = c;
	s->n_cache++;
	note_freed(s, 0);
}

/**
 * ph_http_conn_close() - close now; memory goes after the current batch
 * @c:		connection (may be closed already)
 */
void ph_http_conn_close(struct ph_http_conn *c)
{
	struct ph_http_server *s = c->srv;

	if (c->dead)
		return;
	c->dead = true;
	if (c->deferred && c->gone)
		c->gone(c, c->gone_ctx);
	c->deferred = false;
	if (c->streaming && c->sops && c->sops->closed)
		c->sops->closed(c, c->sctx);
	c->streaming = false;
	idle_unlink(c);
	ph_list_del(&c->node);
	ph_timer_cancel(s->loop, &c->timer);
	if (c->fd >= 0) {
		ph_loop_del(s->loop, &c->io);
		if (c->abort)
			setsockopt(c->fd, SOL_SOCKET, SO_LINGER,
				   &(struct linger){ .l_onoff = 1, .l_linger = 0 },
				   sizeof(struct linger));
		close(c->fd);
		c->fd = -1;
	}
	s->stats.conns_active--;
	if (c->rejected)
		s->rejecting--;
	/* once the server is finished its memory may be gone before the
	 * deferred free runs: such a connection is freed without the cache,
	 * and ph_http_server_fini() clears reuse on those still waiting */
	c->reuse = !s->finished;
	if (c->reuse)
		ph_list_add(&s->dying, &c->node);
	if (!c->reuse || s->n_cache >= CONN_CACHE || c->out.cap > OUT_KEEP)
		note_freed(s, sizeof(*c) + c->out.cap);
	ph_loop_defer(s->loop, &c->defer, free_conn);
}

/* Final response written: half-close and drain, or close at once */
static void finish(struct ph_http_conn *c)
{
	if (c->fd < 0 || c->rd_eof) {
		ph_http_conn_close(c);
		return;
	}
	if (c->lingering)
		return;
	shutdown(c->fd, SHUT_WR);
	c->lingering = true;
	c->linger_until_ms = now_ms(c) + LINGER_MS;
	c->in_pos = c->in_len = 0;
}

/**
 * flush() - write queued output
 * @c:		connection
 * @callbacks:	may call the stream's drained callback and finish a close
 *		(false when called from a producer, which must not see its
 *		own connection vanish under it)
 */
static void flush(struct ph_http_conn *c, bool callbacks)
{
	if (c->hold)
		return;
	while (!c->dead && out_pending(c)) {
		ssize_t n;

		if (c->fd < 0) {
			if (c->sink)
				ph_buf_add(c->sink, c->out.data + c->out_off, out_pending(c));
			c->out_off = c->out.len;
			break;
		}
		n = send(c->fd, c->out.data + c->out_off, out_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->write_blocked) {
				c->write_blocked = true;
				c->write_since_ms = now_ms(c);
			}
			return;
		}
		/* EPIPE, ECONNRESET: the peer is gone */
		if (callbacks)
			ph_http_conn_close(c);
		else
			c->failed = true;
		return;
	}
	if (c->dead)
		return;
	/* a queue that grew (stream backlog, large response) is not kept */
	if (c->out.cap > OUT_KEEP)
		ph_buf_free(&c->out);
	else
		ph_buf_reset(&c->out);
	c->out_off = 0;
	c->write_blocked = false;
	if (!callbacks)
		return;
	if (c->closing) {
		finish(c);
	} else if (c->streaming && c->sops && c->sops->drained) {
		c->sops->drained(c, c->sctx);
		/* the producer wrote without flushing: go on */
		if (!c->dead && out_pending(c))
			flush(c, true);
	}
}

static void update_events(struct ph_http_conn *c)
{
	uint32_t ev = 0;

	if (c->dead || c->fd < 0)
		return;
	if (!c->rd_eof) {
		if (c->streaming || c->lingering || c->closing)
			ev |= EPOLLIN;	/* only to notice the peer closing */
		else if (c->in_len < IN_CAP && out_pending(c) <= OUT_HIGH)
			ev |= EPOLLIN;
	}
	if (out_pending(c))
		ev |= EPOLLOUT;
	if (ph_loop_mod(c->srv->loop, &c->io, ev))
		ph_http_conn_close(c);
}

static void on_timer(struct ph_loop *loop, struct ph_timer *t);

/* Arm the earliest deadline that applies now */
static void rearm(struct ph_http_conn *c)
{
	const struct ph_http_limits *lim = c->srv->lim;
	uint64_t dl = UINT64_MAX, now = now_ms(c);

	if (c->dead)
		return;
	if (c->failed)
		dl = now;
	if (c->write_blocked && c->write_since_ms + lim->write_timeout_ms < dl)
		dl = c->write_since_ms + lim->write_timeout_ms;
	if (c->lingering) {
		if (c->linger_until_ms < dl)
			dl = c->linger_until_ms;
	} else if (!c->streaming) {
		if (c->in_req && c->req_start_ms + lim->head_timeout_ms < dl)
			dl = c->req_start_ms + lim->head_timeout_ms;
		if (ph_list_linked(&c->idle) && c->idle_since_ms + lim->idle_timeout_ms < dl)
			dl = c->idle_since_ms + lim->idle_timeout_ms;
	}
	if (dl == UINT64_MAX)
		ph_timer_cancel(c->srv->loop, &c->timer);
	else if (!ph_timer_armed(&c->timer) || c->timer.deadline_ms != dl)
		ph_timer_arm(c->srv->loop, &c->timer, dl, on_timer);
}

static void on_timer(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_http_conn *c = ph_container_of(t, struct ph_http_conn, timer);
	const struct ph_http_limits *lim = c->srv->lim;
	uint64_t now = loop->now_ms;

	if (c->failed || c->lingering) {
		if (c->failed || now >= c->linger_until_ms) {
			ph_http_conn_close(c);
			return;
		}
	}
	if (c->write_blocked && now >= c->write_since_ms + lim->write_timeout_ms) {
		c->srv->stats.timeouts_write++;
		ph_debug("API client does not read, dropped", PH_FU("conn", c->seq));
		ph_http_conn_close(c);
		return;
	}
	if (!c->streaming && !c->lingering && c->in_req &&
	    now >= c->req_start_ms + lim->head_timeout_ms) {
		c->srv->stats.timeouts_head++;
		ph_debug("API request too slow, cut", PH_FU("conn", c->seq));
		if (!out_pending(c) && !c->answered) {
			/* best effort: one non-blocking write, then a hard close */
			if (!c->headers_done)
				c->method = HTTP_GET;
			ph_http_send_error(c, 408, "request not received in time", NULL, true);
			flush(c, false);
		}
		ph_http_conn_close(c);
		return;
	}
	if (ph_list_linked(&c->idle) && now >= c->idle_since_ms + lim->idle_timeout_ms) {
		c->srv->stats.timeouts_idle++;
		ph_http_conn_close(c);
		return;
	}
	rearm(c);
}

/* ---- input ------------------------------------------------------------ */

static void reset_request(struct ph_http_conn *c)
{
	c->in_req = false;
	c->headers_done = false;
	c->msg_done = false;
	c->head_used = 0;
	c->err_status = 0;
	c->err_msg = NULL;
	c->answered = false;
	c->method = HTTP_GET;
	c->line_len = c->line_sp = 0;
	c->line_done = false;
}

/**
 * http09_line() - does the request line in @p end without a version?
 * @c:		connection (keeps the line's state across reads)
 * @p, @n:	the next head bytes
 *
 * "GET /path" CRLF is an HTTP/0.9 request. llhttp takes it as one, but only
 * decides when the byte after the line ending arrives, and then expects
 * headers: a 0.9 client waiting for its answer would wait for the head
 * deadline. A request line has exactly two spaces (llhttp in strict mode
 * allows no others), so one is enough to tell.
 * Return: true when the line is complete and has fewer than two spaces
 */
static bool http09_line(struct ph_http_conn *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !c->line_done; i++) {
		if (p[i] == '\n') {
			if (!c->line_len)
				continue;	/* an empty line before the request */
			c->line_done = true;
			return c->line_sp < 2;
		}
		if (p[i] == '\r')
			continue;
		c->line_len++;
		c->line_sp += p[i] == ' ';
	}
	return false;
}

/* A parse error or limit: answer it and close (no resync is possible) */
static void fail(struct ph_http_conn *c, int status, const char *msg)
{
	char buf[160];

	if (!msg) {
		snprintf(buf, sizeof(buf), "malformed request: %s",
			 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
							      : "parse error");
		msg = buf;
	}
	ph_debug("API request rejected", PH_FU("conn", c->seq), PH_FI("status", status),
		 PH_FS("reason", msg));
	c->answered = false;
	if (!c->headers_done)
		c->method = HTTP_GET;	/* not a HEAD: the error has a body */
	ph_http_send_error(c, status, msg, NULL, true);
	c->closing = true;
	c->in_req = false;
}

/* Hand a complete request to the handler */
static void dispatch(struct ph_http_conn *c)
{
	struct ph_http_req req = {
		.method = c->method,
		.method_name = llhttp_method_name((llhttp_method_t)c->method),
		.head = c->method == HTTP_HEAD,
		.http_minor = c->minor,
		.body_len = c->body_len,
		.path_too_long = c->url_long,
	};
	char *path = c->url, *q;

	c->msg_done = false;
	c->url[c->url_len] = '\0';
	/* absolute-form (RFC 9112 3.2.2): keep only the path */
	if (!strncasecmp(path, "http://", 7) || !strncasecmp(path, "https://", 8)) {
		path = strstr(path, "://") + 3;
		q = strchr(path, '/');
		path = q ? q : (char *)"/";
	}
	q = strchr(path, '#');
	if (q)
		*q = '\0';
	q = strchr(path, '?');
	if (q) {
		*q = '\0';
		req.query = q + 1;
	}
	req.path = path;
	if (c->auth_seen) {
		req.authorization = c->auth_bad ? "" : c->auth;
		req.auth_len = c->auth_bad ? 0 : trim_len(c->auth, c->auth_len);
	}
	c->close_after = !c->keep_alive;
	c->answered = false;
	c->dispatching = true;
	c->srv->handler(c->srv->arg, c, &req);
	c->dispatching = false;
	if (c->dead)
		return;
	if (c->deferred) {
		/* answered later: no request deadline, not idle, not evictable */
		c->in_req = false;
		return;
	}
	if (!c->answered)
		ph_http_send_error(c, 500, "no response", NULL, false);
	reset_request(c);
	if (c->close_after && !c->streaming)
		c->closing = true;
}

/* Parse buffered input and answer what is complete */
static void process(struct ph_http_conn *c)
{
	const struct ph_http_limits *lim = c->srv->lim;

	while (!c->dead && !c->closing && !c->streaming && !c->lingering && !c->deferred &&
	       c->in_pos < c->in_len) {
		const char *data = c->in + c->in_pos;
		size_t n = c->in_len - c->in_pos, used;
		llhttp_errno_t err;

		if (out_pending(c) > OUT_HIGH)
			break;
		if (!c->in_req) {
			c->in_req = true;
			c->req_start_ms = now_ms(c);
			idle_unlink(c);
		}
		if (!c->headers_done && n > lim->max_head - c->head_used)
			n = lim->max_head - c->head_used;
		if (!c->line_done && http09_line(c, data, n)) {
			fail(c, 400, "HTTP/0.9 request (no version): not supported");
			return;
		}
		err = llhttp_execute(&c->parser, data, n);
		used = n;
		if (err == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
			llhttp_resume(&c->parser);
		} else if (err != HPE_OK) {
			fail(c, c->err_status ? c->err_status : 400, c->err_msg);
			return;
		}
		if (!c->headers_done)
			c->head_used += used;
		c->in_pos += used;
		if (c->msg_done) {
			dispatch(c);
			continue;
		}
		if (!c->headers_done && c->head_used >= lim->max_head) {
			fail(c, 431, "request head too large");
			return;
		}
	}
}

/* Keep unparsed bytes at the front of the buffer */
static void compact(struct ph_http_conn *c)
{
	if (!c->in_pos)
		return;
	c->prev_byte = c->in[c->in_pos - 1];
	memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
	c->in_len -= c->in_pos;
	c->in_pos = 0;
}

/* Parse, write, repeat while written output lets more input be parsed */
static void conn_run(struct ph_http_conn *c)
{
	for (int i = 0; i < 16 && !c->dead; i++) {
		size_t before = c->in_pos;

		process(c);
		if (c->dead)
			return;
		flush(c, true);
		if (c->dead)
			return;
		if (c->in_pos == before || c->in_pos == c->in_len || out_pending(c))
			break;
	}
	compact(c);
	if (c->rd_eof && !c->closing && !c->streaming && !c->lingering && !c->deferred) {
		/* the peer sent all it will: answer what was complete, then close */
		c->closing = true;
		if (!out_pending(c))
			finish(c);
	}
}

/* A deferred request was answered (outside the handler): go on as dispatch() would */
static void deferred_finish(struct ph_http_conn *c)
{
	reset_request(c);
	if (c->close_after && !c->streaming)
		c->closing = true;
	conn_run(c);	/* write it; parse what was pipelined behind it */
	if (c->dead)
		return;
	update_idle(c);
	update_events(c);
	rearm(c);
}

/* Input on a connection whose requests are over: discard, watch for EOF */
static void drain(struct ph_http_conn *c)
{
	char buf[4096];

	for (int i = 0; i < 16; i++) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n > 0)
			continue;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->rd_eof = true;
		/* a stream or a finished close has nothing left for this peer */
		if (c->streaming || c->lingering || !out_pending(c))
			ph_http_conn_close(c);
		return;
	}
}

static void do_read(struct ph_http_conn *c)
{
	if (c->streaming || c->lingering || c->closing) {
		drain(c);
		return;
	}
	for (int i = 0; i < 4 && !c->dead && !c->rd_eof; i++) {
		ssize_t n;

		if (c->in_len == IN_CAP || out_pending(c) > OUT_HIGH)
			break;
		n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			ph_http_conn_close(c);
			return;
		}
		if (n == 0)
			c->rd_eof = true;
		c->in_len += (size_t)n;
		conn_run(c);
		if (c->streaming || c->closing || c->lingering)
			break;
	}
}

static void on_io(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct ph_http_conn *c = ph_container_of(io, struct ph_http_conn, io);

	(void)loop;
	if (events & EPOLLOUT) {
		flush(c, true);
		if (!c->dead && !c->streaming)
			conn_run(c);	/* parsing may have waited for room */
	}
	if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		do_read(c);
	if (c->dead)
		return;
	if ((events & EPOLLERR) && !(events & EPOLLIN)) {
		ph_http_conn_close(c);
		return;
	}
	update_idle(c);
	update_events(c);
	rearm(c);
}

/**
 * ph_http_conn_new() - adopt a connection
 * @s:		server
 * @fd:		accepted non-blocking socket, or -1 for a detached connection
 * @sink:	detached only: where output is appended (may be NULL)
 *
 * Return: the connection, or NULL (errno set; @fd is not closed)
 */
struct ph_http_conn *ph_http_conn_new(struct ph_http_server *s, int fd, struct ph_buf *sink)
{
	struct ph_http_conn *c = conn_alloc(s);
	int ret;

	if (!c)
		return NULL;
	ph_list_init(&c->node);
	ph_list_init(&c->idle);
	c->srv = s;
	c->fd = fd;
	c->sink = sink;
	c->minor = 1;
	llhttp_init(&c->parser, HTTP_REQUEST, &settings);
	c->parser.data = c;
	if (fd >= 0) {
		ret = ph_loop_add(s->loop, &c->io, fd, EPOLLIN, on_io);
		if (ret) {
			conn_release(c);
			errno = -ret;
			return NULL;
		}
	}
	c->seq = ++s->seq;
	ph_list_add(&s->conns, &c->node);
	s->stats.conns_active++;
	update_idle(c);
	rearm(c);
	return c;
}

int ph_http_conn_feed(struct ph_http_conn *c, const void *data, size_t n)
{
	const char *p = data;

	while (n && !c->dead) {
		size_t room, k;

		if (c->streaming || c->closing || c->lingering) {
			c->in_pos = c->in_len = 0;	/* input is over: discarded */
			break;
		}
		compact(c);
		room = IN_CAP - c->in_len;
		if (!room)
			break;
		k = n < room ? n : room;
		memcpy(c->in + c->in_len, p, k);
		c->in_len += k;
		p += k;
		n -= k;
		conn_run(c);
	}
	if (c->dead)
		return 1;
	update_idle(c);
	rearm(c);
	return 0;
}

int ph_http_conn_eof(struct ph_http_conn *c)
{
	if (!c->dead) {
		c->rd_eof = true;
		conn_run(c);
		flush(c, true);
		ph_http_conn_close(c);
	}
	return 1;
}

/* ---- server ----------------------------------------------------------- */

int ph_http_server_init(struct ph_http_server *s, struct ph_loop *loop,
			const struct ph_http_limits *lim, ph_http_handler_fn fn, void *arg)
{
	*s = (struct ph_http_server){ .loop = loop, .lim = lim, .handler = fn, .arg = arg, .lfd = -1 };
	ph_list_init(&s->conns);
	ph_list_init(&s->idle);
	ph_list_init(&s->dying);
	return 0;
}

/* Every slot is taken and nothing can be evicted: 503, the socket alone */
static void reject_now(struct ph_http_server *s, int fd)
{
	static const char body[] = "{\"error\":\"too many API connections\"}\n";
	char buf[512];
	int n;

	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nCache-Control: no-store\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\nRetry-After: 1\r\n"
		     "Connection: close\r\n\r\n%s", http_date(), sizeof(body) - 1, body);
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is gone already; nothing to tell */
	}
	shutdown(fd, SHUT_WR);
	/* what the client already sent would turn close() into a reset */
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	s->stats.responses[503]++;
}

/*
 * Every slot holds a response being written: answer 503 as a final
 * response of a connection that holds no slot, so that its request is read
 * (drained) before the close and the client sees the 503, not a reset.
 */
static void reject(struct ph_http_server *s, int fd)
{
	struct ph_http_conn *c = NULL;

	s->stats.conns_rejected++;
	if (s->rejecting < REJECT_MAX)
		c = ph_http_conn_new(s, fd, NULL);
	if (!c) {
		reject_now(s, fd);
		return;
	}
	c->rejected = true;
	s->rejecting++;
	idle_unlink(c);
	ph_http_send_error(c, 503, "too many API connections", "Retry-After: 1\r\n", true);
	c->closing = true;
	flush(c, true);
	if (c->dead)
		return;
	update_events(c);
	rearm(c);
}

/* Rank of @c as an eviction victim, lower goes first; -1: never (see top) */
static int evict_rank(const struct ph_http_conn *c)
{
	if (c->dead || c->rejected)
		return -1;
	if (c->lingering)
		return 0;
	if (c->streaming)
		return 3;
	if (c->in_req && !c->msg_done)
		return 1;
	if (ph_list_linked(&c->idle))
		return 2;
	return -1;
}

/**
 * eviction_victim() - the connection that gives its slot to a new one
 * @s:		server at its cap
 *
 * One pass over the connections (at most max_conns of them, and only when
 * the cap is reached). Within a rank the oldest goes: by accept order, and
 * for idle connections the one idle longest.
 * Return: the victim, or NULL when every slot is writing a response
 */
static struct ph_http_conn *eviction_victim(struct ph_http_server *s)
{
	struct ph_http_conn *best = NULL;
	struct ph_list *n, *tmp;
	int best_rank = 4;

	ph_list_for_each_safe(n, tmp, &s->conns) {
		struct ph_http_conn *c = ph_list_entry(n, struct ph_http_conn, node);
		int r = evict_rank(c);

		/* newest first: a later one of the same rank is older */
		if (r >= 0 && r <= best_rank) {
			best = c;
			best_rank = r;
		}
	}
	if (best_rank == 2)
		best = ph_list_entry(ph_list_first(&s->idle), struct ph_http_conn, idle);
	return best;
}

/* Make room for one more connection. Return: false when none can go */
static bool make_room(struct ph_http_server *s)
{
	struct ph_http_conn *v;

	if (s->stats.conns_active - s->rejecting < s->lim->max_conns)
		return true;
	v = eviction_victim(s);
	if (!v)
		return false;
	ph_debug("API connection evicted for a new one", PH_FU("conn", v->seq),
		 PH_FI("rank", evict_rank(v)));
	if (v->streaming) {
		ph_http_stream_evict(v);
	} else {
		s->stats.conns_evicted++;
		ph_http_conn_close(v);
	}
	return true;
}

static void on_accept(struct ph_loop *loop, struct ph_io *io, uint32_t events);

static void accept_resume(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_http_server *s = ph_container_of(t, struct ph_http_server, accept_backoff.timer);

	if (s->lfd >= 0)
		ph_loop_mod(loop, &s->lio, EPOLLIN);
}

static void on_accept(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct ph_http_server *s = ph_container_of(io, struct ph_http_server, lio);

	(void)events;
	/* cleared when accept4() finds the queue empty: see ph_http_server_backlogged() */
	s->backlogged = true;
	for (int i = 0; i < PH_ACCEPT_BATCH; i++) {
		struct ph_http_conn *c;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				s->backlogged = false;
			if (ph_accept_exhausted(errno)) {
				/* level-triggered: stop looking until descriptors free up */
				s->stats.accept_pauses++;
				ph_loop_mod(loop, &s->lio, 0);
				ph_accept_backoff(loop, &s->accept_backoff, errno, "API", 0,
						  accept_resume);
			}
			return;
		}
		s->stats.conns_total++;
		if (!make_room(s)) {
			reject(s, fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = ph_http_conn_new(s, fd, NULL);
		if (!c) {
			close(fd);
			continue;
		}
		/* the request often came with the handshake: serve it now */
		on_io(loop, &c->io, EPOLLIN);
	}
}

/**
 * ph_http_server_listen() - bind and listen on @sa
 * @s:		server
 * @sa:		address
 * @len:	its length
 *
 * Return: 0 or -errno
 */
int ph_http_server_listen(struct ph_http_server *s, const struct sockaddr *sa, socklen_t len)
{
	int fd, one = 1, ret;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* restart while old connections sit in TIME_WAIT */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) || listen(fd, 1024)) {
		ret = -errno;
		goto fail;
	}
	ret = ph_http_server_adopt(s, fd);
	if (ret)
		goto fail;
	return 0;
fail:
	close(fd);
	return ret;
}

/**
 * ph_http_server_adopt() - serve on a listening socket made elsewhere (one a
 * previous process left in the fd store: its waiting clients are served)
 * @s:		server
 * @fd:		a non-blocking listening socket; the server owns it on success
 *
 * Return: 0 or -errno (@fd is then still the caller's)
 */
int ph_http_server_adopt(struct ph_http_server *s, int fd)
{
	int ret = ph_loop_add(s->loop, &s->lio, fd, EPOLLIN, on_accept);

	if (ret)
		return ret;
	s->lfd = fd;
	return 0;
}

uint64_t ph_http_server_inode(const struct ph_http_server *s)
{
	struct stat st;

	if (s->lfd < 0 || fstat(s->lfd, &st))
		return 0;
	return st.st_ino;
}

unsigned ph_http_server_close_idle(struct ph_http_server *s, struct ph_http_conn *except,
				   bool streams)
{
	struct ph_list *n_, *tmp;
	unsigned n = 0;

	ph_list_for_each_safe(n_, tmp, &s->conns) {
		struct ph_http_conn *c = ph_list_entry(n_, struct ph_http_conn, node);

		if (c == except)
			continue;
		if (is_idle(c) || (streams && c->streaming)) {
			ph_http_conn_close(c);
			n++;
		}
	}
	return n;
}

unsigned ph_http_server_close_older(struct ph_http_server *s, uint64_t seq,
				    struct ph_http_conn *except)
{
	struct ph_list *n_, *tmp;
	unsigned n = 0;

	ph_list_for_each_safe(n_, tmp, &s->conns) {
		struct ph_http_conn *c = ph_list_entry(n_, struct ph_http_conn, node);

		/* a deferred request is being served: its answer comes */
		if (c != except && c->seq <= seq && !c->deferred) {
			ph_http_conn_close(c);
			n++;
		}
	}
	return n;
}

void ph_http_server_fini(struct ph_http_server *s)
{
	struct ph_list *n, *tmp;

	/* from here on closed connections are freed without the cache, and
	 * so are those whose deferred free has not run yet */
	s->finished = true;
	cache_drop(s);
	ph_list_for_each_safe(n, tmp, &s->dying) {
		struct ph_http_conn *c = ph_list_entry(n, struct ph_http_conn, node);

		c->reuse = false;
		ph_list_del(&c->node);
	}
	ph_list_for_each_safe(n, tmp, &s->conns)
		ph_http_conn_close(ph_list_entry(n, struct ph_http_conn, node));
	ph_timer_cancel(s->loop, &s->accept_backoff.timer);
	ph_timer_cancel(s->loop, &s->trim_timer);
	if (s->lfd >= 0) {
		ph_loop_del(s->loop, &s->lio);
		close(s->lfd);
		s->lfd = -1;
	}
}
