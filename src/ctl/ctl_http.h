/* SPDX-License-Identifier: MIT */
/* ctl_http.h - portholectl's minimal HTTP/1.1 client: one request per connection, deadlines on every step */
#ifndef PH_CTL_HTTP_H
#define PH_CTL_HTTP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PH_CTL_HTTP_MAX_HEAD	16384		/* response head, like the daemon's request limit */
#define PH_CTL_HTTP_MAX_LINE	256		/* chunk-size and trailer lines */
#define PH_CTL_HTTP_MAX_BODY	(64u << 20)	/* collected bodies (/ports of 65536 ports fits) */
#define PH_CTL_HTTP_NO_DEADLINE	UINT64_MAX

/* Set by the signal handler (or a test): blocking waits return -EINTR instead of resuming */
extern volatile sig_atomic_t ph_ctl_http_interrupted;

/**
 * ph_ctl_http_catch_signals() - let SIGINT and SIGTERM end blocking waits
 *
 * Installs a handler that sets ph_ctl_http_interrupted and blocks both signals
 * except while waiting in ppoll(), so a signal can never slip in between the
 * flag check and the wait (which would then sleep until the deadline).
 *
 * Return: 0 or -errno
 */
int ph_ctl_http_catch_signals(void);

/**
 * typedef ph_ctl_http_body_fn - receives decoded (de-chunked) body bytes as they arrive
 * Return: 0 to continue, or a negative errno that aborts the response
 */
typedef int (*ph_ctl_http_body_fn)(void *arg, const char *data, size_t len);

enum ph_ctl_http_resp_state {
	PH_CTL_RESP_HEAD = 0,	/* collecting the status line and header fields */
	PH_CTL_RESP_BODY_LENGTH,	/* Content-Length body, @remaining bytes to go */
	PH_CTL_RESP_BODY_CLOSE,	/* body delimited by the end of the connection */
	PH_CTL_RESP_CHUNK_SIZE,	/* chunk-size [; ext] CRLF */
	PH_CTL_RESP_CHUNK_DATA,	/* @remaining bytes of chunk data */
	PH_CTL_RESP_CHUNK_END,	/* the CRLF after chunk data */
	PH_CTL_RESP_TRAILER,	/* trailer fields until an empty line */
	PH_CTL_RESP_DONE,
};

/**
 * struct ph_ctl_http_resp - incremental parser of one HTTP/1.x response
 * @status:	status code (after the head is complete)
 * @reason:	reason phrase, truncated
 * @content_type: Content-Type value, truncated; empty when absent
 * @chunked:	Transfer-Encoding: chunked
 * @has_length:	Content-Length was given (@content_length valid)
 * @conn_close:	Connection: close
 * @head_done:	the final (non-1xx) head has been parsed
 * @state:	parser state
 * @head, @head_len: head bytes collected so far
 * @remaining:	bytes left in a Content-Length body or the current chunk
 * @line, @line_len: current chunk-size or trailer line
 * @on_body, @arg: body consumer; NULL discards the body
 *
 * Initialise with ph_ctl_http_resp_init(). Only the few headers portholectl
 * needs are interpreted; framing follows RFC 9112 section 6.
 */
struct ph_ctl_http_resp {
	int status;
	char reason[64];
	char content_type[128];
	bool chunked;
	bool has_length;
	uint64_t content_length;
	bool conn_close;
	bool head_done;

	enum ph_ctl_http_resp_state state;
	char head[PH_CTL_HTTP_MAX_HEAD];
	size_t head_len;
	uint64_t remaining;
	char line[PH_CTL_HTTP_MAX_LINE];
	size_t line_len;
	ph_ctl_http_body_fn on_body;
	void *arg;
};

void ph_ctl_http_resp_init(struct ph_ctl_http_resp *r, ph_ctl_http_body_fn on_body, void *arg);

/**
 * ph_ctl_http_resp_feed() - parse received bytes
 * @r:		parser
 * @data, @len:	bytes, in order, as received
 * @used:	set to the number of bytes consumed
 *
 * Return: 1 when the response is complete (bytes after it are not consumed),
 * 0 when all bytes were consumed and more are needed, -EPROTO for a malformed
 * response, -EMSGSIZE for a head or line over its limit, or the error
 * returned by @on_body
 */
int ph_ctl_http_resp_feed(struct ph_ctl_http_resp *r, const char *data, size_t len, size_t *used);

/**
 * ph_ctl_http_resp_eof() - the peer closed the connection
 * Return: 1 when that completes the response (body delimited by close),
 * -ECONNABORTED when the response was cut short
 */
int ph_ctl_http_resp_eof(struct ph_ctl_http_resp *r);

/**
 * struct ph_ctl_http_buf - growable body buffer, always NUL-terminated when non-empty
 * @data, @len, @cap: contents
 * @limit:	largest accepted size (0: PH_CTL_HTTP_MAX_BODY)
 */
struct ph_ctl_http_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t limit;
};

/* ph_ctl_http_body_fn that appends to a struct ph_ctl_http_buf. Return: 0, -ENOMEM, -EMSGSIZE */
int ph_ctl_http_buf_append(void *buf, const char *data, size_t len);
void ph_ctl_http_buf_free(struct ph_ctl_http_buf *b);

/**
 * struct ph_ctl_http_request - what to ask
 * @method, @path: request line
 * @host:	Host header value (the address as the user typed it)
 * @token:	bearer token, NULL or empty for none
 * @accept:	Accept header value, NULL for application/json
 */
struct ph_ctl_http_request {
	const char *method;
	const char *path;
	const char *host;
	const char *token;
	const char *accept;
};

/**
 * ph_ctl_http_format_request() - serialise a request (always Connection: close)
 * Return: length written (NUL-terminated), -ENOSPC when @size is too small,
 * -EINVAL for a field containing CR, LF or other control characters
 */
int ph_ctl_http_format_request(char *buf, size_t size, const struct ph_ctl_http_request *req);

/* Which step of an exchange failed (for messages) */
enum ph_ctl_http_phase { PH_CTL_PHASE_CONNECT, PH_CTL_PHASE_SEND, PH_CTL_PHASE_HEAD, PH_CTL_PHASE_BODY };

/**
 * struct ph_ctl_http_client - one connection with an absolute deadline
 * @fd:		non-blocking socket, -1 when closed
 * @deadline_ms: absolute CLOCK_MONOTONIC deadline of every step,
 *		PH_CTL_HTTP_NO_DEADLINE for none
 * @phase:	step in progress or failed
 *
 * Zero-initialise, then set @fd = -1 (or call ph_ctl_http_client_init()).
 */
struct ph_ctl_http_client {
	int fd;
	uint64_t deadline_ms;
	enum ph_ctl_http_phase phase;
};

void ph_ctl_http_client_init(struct ph_ctl_http_client *c, uint64_t deadline_ms);

/**
 * ph_ctl_http_connect() - non-blocking connect, waited for until the deadline
 * @c:		client (its @fd must be -1)
 * @sa, @salen:	numeric address
 * @deadline_ms: this connect's own limit (<= @c->deadline_ms is typical);
 *		when it passes the connect fails with -ETIMEDOUT
 *
 * Return: 0 or -errno (-ECONNREFUSED, -ENETUNREACH, -ETIMEDOUT, -EINTR, ...)
 */
int ph_ctl_http_connect(struct ph_ctl_http_client *c, const struct sockaddr *sa, socklen_t salen,
		    uint64_t deadline_ms);

/**
 * ph_ctl_http_exchange() - send a request and read its response head and body
 * @c:		connected client
 * @req:	request
 * @r:		initialised response parser; its body consumer gets the body
 *
 * For an endless body (event stream) use ph_ctl_http_send_request() and
 * ph_ctl_http_read_response() instead: the head within the deadline, then
 * the body with PH_CTL_HTTP_NO_DEADLINE.
 *
 * Return: 0 when the response is complete, -ETIMEDOUT, -EINTR, -EPROTO,
 * -EMSGSIZE, -ECONNABORTED (closed early) or another -errno
 */
int ph_ctl_http_exchange(struct ph_ctl_http_client *c, const struct ph_ctl_http_request *req,
		     struct ph_ctl_http_resp *r);

/**
 * ph_ctl_http_send_request() - only the sending half of ph_ctl_http_exchange()
 * Return: 0 or -errno
 */
int ph_ctl_http_send_request(struct ph_ctl_http_client *c, const struct ph_ctl_http_request *req);

/**
 * ph_ctl_http_read_response() - read into @r until complete
 * @c:		client
 * @r:		parser
 * @until_head:	stop (return 0) as soon as the head is parsed; a later call
 *		continues with the body
 *
 * Bytes read past the end of the head are fed to the parser before
 * returning, so nothing is lost. Return: 0 or -errno as ph_ctl_http_exchange()
 */
int ph_ctl_http_read_response(struct ph_ctl_http_client *c, struct ph_ctl_http_resp *r, bool until_head);

void ph_ctl_http_close(struct ph_ctl_http_client *c);

#endif /* PH_CTL_HTTP_H */
