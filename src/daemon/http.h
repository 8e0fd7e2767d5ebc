/* SPDX-License-Identifier: MIT */
/* http.h - HTTP/1.1 server connection layer on a ph_loop (llhttp, deadlines, limits) */
#ifndef PH_HTTP_H
#define PH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "accept.h"
#include "config.h"
#include "json.h"
#include "list.h"
#include "loop.h"

struct ph_http_conn;

/**
 * struct ph_http_req - one parsed request, valid during the handler call
 * @method:	llhttp method number (HTTP_GET, ...)
 * @method_name: its name
 * @path:	request path without query, NUL-terminated ("/health"); an
 *		absolute-form target is reduced to its path
 * @query:	text after '?', or NULL
 * @path_too_long: the target was longer than the layer keeps (@path is cut)
 * @head:	HEAD request: the layer sends headers only
 * @http_minor:	1 or 0
 * @authorization: Authorization header value, NULL when absent
 * @auth_len:	its length
 * @body_len:	body bytes received (the body itself is discarded)
 */
struct ph_http_req {
	unsigned method;
	const char *method_name;
	const char *path;
	const char *query;
	bool path_too_long;
	bool head;
	uint8_t http_minor;
	const char *authorization;
	size_t auth_len;
	size_t body_len;
};

/**
 * struct ph_http_resp - a complete response
 * @status:	status code
 * @content_type: Content-Type, NULL for none
 * @headers:	extra header lines, each ending in CRLF, or NULL
 * @body:	body bytes (not sent for HEAD requests, still counted)
 * @body_len:	their count
 * @close:	send "Connection: close" and close once it is written
 */
struct ph_http_resp {
	int status;
	const char *content_type;
	const char *headers;
	const void *body;
	size_t body_len;
	bool close;
};

/*
 * Called for every complete request, in order. It must answer exactly once,
 * before returning, with ph_http_send()/ph_http_send_error() or
 * ph_http_stream_begin(), or promise a later answer with ph_http_defer();
 * otherwise the layer answers 500.
 */
typedef void (*ph_http_handler_fn)(void *arg, struct ph_http_conn *c,
				   const struct ph_http_req *req);

/**
 * struct ph_http_stream_ops - callbacks of a streaming response (SSE)
 * @drained:	the output queue was written out completely: produce more
 * @evict:	the stream is about to be closed to make room: write a last
 *		word with ph_http_stream_write() (may be NULL)
 * @closed:	the connection is going away; release @ctx (no more calls)
 */
struct ph_http_stream_ops {
	void (*drained)(struct ph_http_conn *c, void *ctx);
	void (*evict)(struct ph_http_conn *c, void *ctx);
	void (*closed)(struct ph_http_conn *c, void *ctx);
};

#define PH_HTTP_MAX_STATUS 600

/**
 * struct ph_http_stats - counters of the layer (read by /metrics)
 */
struct ph_http_stats {
	uint64_t responses[PH_HTTP_MAX_STATUS];	/* by status code */
	uint64_t conns_total;		/* accepted */
	uint64_t conns_rejected;	/* 503 at accept: every slot busy */
	uint64_t conns_evicted;		/* idle, head-incomplete or lingering, closed to admit a new one */
	uint64_t streams_evicted;	/* event streams closed to admit a new one */
	uint64_t streams_cut;		/* event streams closed: their client stopped reading */
	uint64_t timeouts_head;
	uint64_t timeouts_idle;
	uint64_t timeouts_write;
	uint64_t accept_pauses;
	unsigned conns_active;
};

/**
 * struct ph_http_server - listener plus its connections
 * Zero-initialise, then ph_http_server_init(). All fields are private but
 * @stats, which may be read on the loop thread.
 */
struct ph_http_server {
	struct ph_loop *loop;
	const struct ph_http_limits *lim;
	ph_http_handler_fn handler;
	void *arg;
	int lfd;
	struct ph_io lio;
	struct ph_accept_backoff accept_backoff;
	struct ph_list conns;		/* all connections, newest first */
	struct ph_list idle;		/* idle keep-alive ones, oldest first */
	uint64_t seq;
	unsigned rejecting;		/* turned away with 503, lingering: hold no slot */
	size_t freed;			/* bytes released since the last malloc_trim() */
	struct ph_timer trim_timer;
	struct ph_list dying;		/* closed, memory not yet released */
	struct ph_http_conn *cache;	/* closed connections kept for reuse */
	unsigned n_cache;
	bool cache_taken;		/* the cache was used this trim period */
	bool finished;			/* ph_http_server_fini() ran */
	bool backlogged;		/* the last accept batch left clients queued */
	struct ph_http_stats stats;
};

int ph_http_server_init(struct ph_http_server *s, struct ph_loop *loop,
			const struct ph_http_limits *lim, ph_http_handler_fn fn, void *arg);
int ph_http_server_listen(struct ph_http_server *s, const struct sockaddr *sa, socklen_t len);
int ph_http_server_adopt(struct ph_http_server *s, int fd);
uint64_t ph_http_server_inode(const struct ph_http_server *s);
/* Close every connection and the listener. */
void ph_http_server_fini(struct ph_http_server *s);

/*
 * Close connections: the idle ones (no request in progress, nothing to
 * write), event streams too when @streams, and never @except.
 * Return: how many were closed
 */
unsigned ph_http_server_close_idle(struct ph_http_server *s, struct ph_http_conn *except,
				   bool streams);
/* Close every connection accepted at or before sequence number @seq but @except
 * and those with a deferred request (ph_http_defer()). */
unsigned ph_http_server_close_older(struct ph_http_server *s, uint64_t seq,
				    struct ph_http_conn *except);
/*
 * True while clients wait in the listen queue: the last accept batch ended
 * without emptying it. Deferrable work (starting event streams) yields to
 * them, so requests that queued behind a flood are read and answered first.
 */
static inline bool ph_http_server_backlogged(const struct ph_http_server *s)
{
	return s->backlogged;
}
/* Sequence number of the newest connection accepted so far */
static inline uint64_t ph_http_server_seq(const struct ph_http_server *s) { return s->seq; }

/*
 * Connections. ph_http_conn_new() adopts an accepted non-blocking socket.
 * With @fd < 0 the connection is detached: input comes from
 * ph_http_conn_feed() and output is appended to @sink (unit tests, fuzzing).
 */
struct ph_http_conn *ph_http_conn_new(struct ph_http_server *s, int fd, struct ph_buf *sink);
/* Feed input to a detached connection. Return: 0, or 1 when it is now closed */
int ph_http_conn_feed(struct ph_http_conn *c, const void *data, size_t n);
/* Peer closed its side (detached connections). Return: 1 (it is closed) */
int ph_http_conn_eof(struct ph_http_conn *c);
void ph_http_conn_close(struct ph_http_conn *c);
bool ph_http_conn_closed(const struct ph_http_conn *c);
uint64_t ph_http_conn_seq(const struct ph_http_conn *c);

/* Answer the current request. Return: 0 or -errno (-EALREADY: already answered) */
int ph_http_send(struct ph_http_conn *c, const struct ph_http_resp *r);
/**
 * ph_http_defer() - answer the current request later
 * @c:		connection, inside the handler (which then returns)
 * @gone:	called if @c closes before it is answered (may be NULL)
 * @ctx:	its argument
 *
 * The answer is given on the loop's thread, outside the handler, with
 * ph_http_send() or ph_http_send_error(); @c must not be used after @gone
 * ran or after that answer (it may be closed and freed by it). Until then
 * the connection holds the request: not idle, never evicted, no request
 * deadline, and requests pipelined behind it wait.
 * Return: 0 or -errno
 */
int ph_http_defer(struct ph_http_conn *c, void (*gone)(struct ph_http_conn *c, void *ctx),
		  void *ctx);
/* Answer with a JSON error body {"error": @msg}. Return: as ph_http_send() */
int ph_http_send_error(struct ph_http_conn *c, int status, const char *msg, const char *headers,
		       bool close);
/* Ask that the connection be closed after the current response ("Connection: close"). */
void ph_http_set_close(struct ph_http_conn *c);

/**
 * ph_http_stream_begin() - answer with a streaming 200 response (delimited by close)
 * @c:		connection, inside the handler
 * @content_type: Content-Type
 * @ops:	callbacks
 * @ctx:	their argument
 *
 * After it, the connection only writes what ph_http_stream_write() queues;
 * input is read and discarded (to notice the peer closing). The write
 * deadline applies to the stream as to any response. For a HEAD request
 * only the head is sent and the connection closes after it.
 * Return: 0 streaming; 1 HEAD answered, no stream (@ops never called); -errno
 */
int ph_http_stream_begin(struct ph_http_conn *c, const char *content_type,
			 const struct ph_http_stream_ops *ops, void *ctx);
/* Queue stream bytes. Return: 0 or -errno (-EPIPE: closed) */
int ph_http_stream_write(struct ph_http_conn *c, const void *data, size_t n);
/*
 * While @hold, nothing queued on stream @c is sent: its head waits for its
 * first event (one send instead of two). Releasing sends what waits.
 */
void ph_http_stream_hold(struct ph_http_conn *c, bool hold);
/*
 * Close a stream to make room for another: ops->evict writes its last word,
 * one write is tried, then the connection closes at once. Safe to call on
 * another connection from inside a handler or stream callback.
 */
void ph_http_stream_evict(struct ph_http_conn *c);
/*
 * The stream's client does not read: close it with a reset on the next loop
 * turn (safe from a producer; the stream's closed callback still runs).
 */
void ph_http_stream_cut(struct ph_http_conn *c);
/* Bytes queued and not yet written */
size_t ph_http_out_pending(const struct ph_http_conn *c);

/* The control API's server (api.c): lets the fuzz harness and tests drive
 * the real router through detached connections. */
struct ph_api;
struct ph_http_server *ph_api_http_server(struct ph_api *api);

/* Reason phrase of a status code ("Not Found"), "Unknown" if not known */
const char *ph_http_reason(int status);

#endif /* PH_HTTP_H */
