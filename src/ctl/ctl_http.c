// SPDX-License-Identifier: MIT
/* ctl_http.c - portholectl's minimal HTTP/1.1 client
 *
 * Theory of Operation
 * ===================
 * portholectl makes one request per connection and must never wait longer
 * than the user allowed, whatever the peer does: a frozen guest, a SYN that
 * goes unanswered, a daemon that accepts and stays silent, or one that
 * trickles a byte a second. So the socket is non-blocking and every step
 * (connect, each write, each read) waits in poll() for at most the time left
 * until one absolute CLOCK_MONOTONIC deadline. A per-step timeout would let a
 * trickling peer stretch the exchange indefinitely; an absolute one cannot.
 *
 * The response parser is incremental and separate from the I/O so it can be
 * fed byte by byte in unit tests. It understands exactly what the daemon
 * sends and what RFC 9112 requires a client to understand: status line,
 * header fields, bodies framed by Content-Length, chunked coding, or the end
 * of the connection, 1xx interim responses (skipped). Decoded body bytes go
 * to a consumer callback, which either collects them (JSON answers) or parses
 * them as an event stream as they arrive (watch).
 */
#include "ctl_http.h"
#include "loop.h"
#include "parse.h"
#include "array.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef PH_VERSION
#define PH_VERSION "0"
#endif

volatile sig_atomic_t ph_ctl_http_interrupted;

/* Signal mask inside ppoll() once ph_ctl_http_catch_signals() ran, else NULL */
static sigset_t wait_mask;
static const sigset_t *wait_mask_p;

static void on_signal(int sig)
{
	(void)sig;
	ph_ctl_http_interrupted = 1;
}

int ph_ctl_http_catch_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t block;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &block, &wait_mask))
		return -errno;
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGTERM);
	if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
		return -errno;
	wait_mask_p = &wait_mask;
	return 0;
}

void ph_ctl_http_resp_init(struct ph_ctl_http_resp *r, ph_ctl_http_body_fn on_body, void *arg)
{
	memset(r, 0, sizeof(*r));
	r->on_body = on_body;
	r->arg = arg;
}

static bool is_tchar(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c);
}

/* Does the comma-separated list @v contain the token @tok (case-insensitive)? */
static bool list_has(const char *v, const char *tok)
{
	size_t n = strlen(tok);

	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (!strncasecmp(v, tok, n)) {
			const char *e = v + n;

			while (*e == ' ' || *e == '\t')
				e++;
			if (!*e || *e == ',')
				return true;
		}
		while (*v && *v != ',')
			v++;
	}
	return false;
}

/* Is the last coding of a Transfer-Encoding list "chunked"? */
static bool last_is_chunked(const char *v)
{
	const char *last = strrchr(v, ',');

	last = last ? last + 1 : v;
	while (*last == ' ' || *last == '\t')
		last++;
	return !strcasecmp(last, "chunked");
}

/**
 * parse_field() - interpret one "name: value" header line (NUL-terminated, no EOL)
 * Return: 0 or -EPROTO
 */
static int parse_field(struct ph_ctl_http_resp *r, char *line)
{
	char *colon = strchr(line, ':'), *v, *end;

	if (!colon || colon == line)
		return -EPROTO;
	for (char *p = line; p < colon; p++)
		if (!is_tchar((unsigned char)*p))
			return -EPROTO;	/* also rejects obs-fold and "name :" */
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	for (char *p = v; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return -EPROTO;

	if (!strcasecmp(line, "content-length")) {
		uint64_t n = 0;

		if (!*v)
			return -EPROTO;
		for (char *p = v; *p; p++) {
			if (!isdigit((unsigned char)*p) || n > (UINT64_MAX - 9) / 10)
				return -EPROTO;
			n = n * 10 + (uint64_t)(*p - '0');
		}
		if (r->has_length && r->content_length != n)
			return -EPROTO;	/* conflicting lengths: no safe framing */
		r->has_length = true;
		r->content_length = n;
	} else if (!strcasecmp(line, "transfer-encoding")) {
		/* A coding we cannot undo (or chunked not last) has no usable framing */
		if (!last_is_chunked(v))
			return -EPROTO;
		r->chunked = true;
	} else if (!strcasecmp(line, "connection")) {
		if (list_has(v, "close"))
			r->conn_close = true;
	} else if (!strcasecmp(line, "content-type")) {
		snprintf(r->content_type, sizeof(r->content_type), "%s", v);
	}
	return 0;
}

/**
 * parse_head() - parse the complete head in r->head (ends with an empty line)
 * Return: 0, or -EPROTO
 */
static int parse_head(struct ph_ctl_http_resp *r)
{
	char *p = r->head, *eol;
	int ret;

	r->head[r->head_len] = '\0';
	/* "HTTP/1.x SSS[ reason]" */
	if (strncmp(p, "HTTP/1.", 7) || !isdigit((unsigned char)p[7]) || p[8] != ' ' ||
	    !isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) ||
	    !isdigit((unsigned char)p[11]) || p[9] == '0')
		return -EPROTO;
	r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	p += 12;
	if (*p != ' ' && *p != '\r' && *p != '\n')
		return -EPROTO;
	eol = strchr(p, '\n');
	if (eol > p && eol[-1] == '\r')
		eol[-1] = '\0';
	*eol = '\0';
	snprintf(r->reason, sizeof(r->reason), "%s", *p == ' ' ? p + 1 : p);

	/* header fields until the empty line; the head is known to end with one */
	for (p = eol + 1; *p && *p != '\n' && strncmp(p, "\r\n", 2); p = eol + 1) {
		eol = strchr(p, '\n');
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		*eol = '\0';
		ret = parse_field(r, p);
		if (ret)
			return ret;
	}
	return 0;
}

/* Head is complete: choose the body framing (RFC 9112 6.3). Return: 0, 1 (interim), -EPROTO */
static int begin_body(struct ph_ctl_http_resp *r)
{
	if (r->status / 100 == 1) {
		if (r->status == 101)
			return -EPROTO;	/* we never ask to switch protocols */
		return 1;
	}
	r->head_done = true;
	if (r->status == 204 || r->status == 304)
		r->state = PH_CTL_RESP_DONE;
	else if (r->chunked)
		r->state = PH_CTL_RESP_CHUNK_SIZE;
	else if (r->has_length)
		r->state = r->content_length ? PH_CTL_RESP_BODY_LENGTH : PH_CTL_RESP_DONE;
	else
		r->state = PH_CTL_RESP_BODY_CLOSE;
	r->remaining = r->content_length;
	return 0;
}

static int deliver(struct ph_ctl_http_resp *r, const char *data, size_t len)
{
	if (!len || !r->on_body)
		return 0;
	return r->on_body(r->arg, data, len);
}

/**
 * line_byte() - collect one byte of a chunk-size or trailer line
 * Return: 1 when @r->line holds a complete line (EOL stripped), 0 for more,
 * -EMSGSIZE when the line is too long
 */
static int line_byte(struct ph_ctl_http_resp *r, char c)
{
	if (c == '\n') {
		if (r->line_len && r->line[r->line_len - 1] == '\r')
			r->line_len--;
		r->line[r->line_len] = '\0';
		r->line_len = 0;
		return 1;
	}
	if (r->line_len + 1 >= sizeof(r->line))
		return -EMSGSIZE;
	r->line[r->line_len++] = c;
	return 0;
}

/* "1a2b[;ext...]" Return: 0 or -EPROTO */
static int parse_chunk_size(const char *s, uint64_t *out)
{
	uint64_t n = 0;
	const char *p = s;

	for (int d; (d = ph_hexval(*p)) >= 0; p++) {
		if (n >> 60)
			return -EPROTO;
		n = n * 16 + (uint64_t)d;
	}
	if (p == s)
		return -EPROTO;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p && *p != ';')
		return -EPROTO;
	*out = n;
	return 0;
}

/*
 * One byte of the response head. At its end ("\n\n" or "\n\r\n") the head is
 * parsed and the body begins; an interim (1xx) response starts over.
 * Return: 0 or -errno
 */
static int head_byte(struct ph_ctl_http_resp *r, char c)
{
	int ret;

	if (r->head_len + 1 >= sizeof(r->head))
		return -EMSGSIZE;
	if (c == '\0')
		return -EPROTO;
	r->head[r->head_len++] = c;
	if (c != '\n')
		return 0;
	if (r->head_len == 1)
		return -EPROTO;	/* empty line before the status line */
	if (r->head[r->head_len - 2] != '\n' &&
	    !(r->head_len >= 3 && r->head[r->head_len - 2] == '\r' &&
	      r->head[r->head_len - 3] == '\n'))
		return 0;
	ret = parse_head(r);
	if (ret)
		return ret;
	ret = begin_body(r);
	if (ret == 1)	/* interim: start over, keep the body consumer */
		ph_ctl_http_resp_init(r, r->on_body, r->arg);
	return ret < 0 ? ret : 0;
}

int ph_ctl_http_resp_feed(struct ph_ctl_http_resp *r, const char *data, size_t len, size_t *used)
{
	size_t i = 0;
	int ret = 0;

	while (i < len && r->state != PH_CTL_RESP_DONE) {
		switch (r->state) {
		case PH_CTL_RESP_HEAD:
			ret = head_byte(r, data[i++]);
			if (ret)
				goto out;
			break;
		case PH_CTL_RESP_BODY_LENGTH:
		case PH_CTL_RESP_CHUNK_DATA: {
			size_t n = len - i;

			if (n > r->remaining)
				n = (size_t)r->remaining;
			ret = deliver(r, data + i, n);
			if (ret)
				goto out;
			i += n;
			r->remaining -= n;
			if (!r->remaining)
				r->state = r->state == PH_CTL_RESP_BODY_LENGTH ? PH_CTL_RESP_DONE :
									     PH_CTL_RESP_CHUNK_END;
			break;
		}
		case PH_CTL_RESP_BODY_CLOSE:
			ret = deliver(r, data + i, len - i);
			if (ret)
				goto out;
			i = len;
			break;
		case PH_CTL_RESP_CHUNK_SIZE:
			ret = line_byte(r, data[i++]);
			if (ret < 0)
				goto out;
			if (ret == 1) {
				ret = parse_chunk_size(r->line, &r->remaining);
				if (ret)
					goto out;
				r->state = r->remaining ? PH_CTL_RESP_CHUNK_DATA : PH_CTL_RESP_TRAILER;
			}
			ret = 0;
			break;
		case PH_CTL_RESP_CHUNK_END:
			ret = line_byte(r, data[i++]);
			if (ret < 0)
				goto out;
			if (ret == 1) {
				if (r->line[0]) {	/* data longer than its chunk-size */
					ret = -EPROTO;
					goto out;
				}
				r->state = PH_CTL_RESP_CHUNK_SIZE;
			}
			ret = 0;
			break;
		case PH_CTL_RESP_TRAILER:
			ret = line_byte(r, data[i++]);
			if (ret < 0)
				goto out;
			if (ret == 1 && !r->line[0])
				r->state = PH_CTL_RESP_DONE;	/* trailer fields are ignored */
			ret = 0;
			break;
		case PH_CTL_RESP_DONE:
			break;
		}
	}
out:
	*used = i;
	if (ret)
		return ret;
	return r->state == PH_CTL_RESP_DONE;
}

int ph_ctl_http_resp_eof(struct ph_ctl_http_resp *r)
{
	if (r->state == PH_CTL_RESP_DONE)
		return 1;
	if (r->state == PH_CTL_RESP_BODY_CLOSE) {
		r->state = PH_CTL_RESP_DONE;
		return 1;
	}
	return -ECONNABORTED;
}

int ph_ctl_http_buf_append(void *arg, const char *data, size_t len)
{
	struct ph_ctl_http_buf *b = arg;
	size_t limit = b->limit ? b->limit : PH_CTL_HTTP_MAX_BODY;

	if (len > limit - b->len)
		return -EMSGSIZE;
	if (ph_array_grow(&b->data, &b->cap, b->len + len + 1, 1, 4096))
		return -ENOMEM;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

void ph_ctl_http_buf_free(struct ph_ctl_http_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Request fields go into the head verbatim, so they must not break it */
static bool field_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x21 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

int ph_ctl_http_format_request(char *buf, size_t size, const struct ph_ctl_http_request *req)
{
	bool auth = req->token && *req->token;
	const char *accept = req->accept ? req->accept : "application/json";
	int n;

	if (!field_ok(req->method) || !field_ok(req->path) || req->path[0] != '/' ||
	    !field_ok(req->host) || (auth && !field_ok(req->token)) || !field_ok(accept))
		return -EINVAL;
	n = snprintf(buf, size,
		     "%s %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "User-Agent: portholectl/" PH_VERSION "\r\n"
		     "Accept: %s\r\n"
		     "%s%s%s"
		     "%s"
		     "Connection: close\r\n"
		     "\r\n",
		     req->method, req->path, req->host, accept,
		     auth ? "Authorization: Bearer " : "", auth ? req->token : "", auth ? "\r\n" : "",
		     !strcmp(req->method, "POST") || !strcmp(req->method, "PUT") ?
			     "Content-Length: 0\r\n" : "");
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= size)
		return -ENOSPC;
	return n;
}

void ph_ctl_http_client_init(struct ph_ctl_http_client *c, uint64_t deadline_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->deadline_ms = deadline_ms;
}

/**
 * wait_fd() - poll one descriptor until an event or the deadline
 * Return: 0 when ready, -ETIMEDOUT, -EINTR (interrupted by request), -errno
 */
static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	for (;;) {
		struct timespec ts, *tsp = NULL;
		int n;

		if (ph_ctl_http_interrupted)
			return -EINTR;
		if (deadline_ms != PH_CTL_HTTP_NO_DEADLINE) {
			uint64_t now = ph_now_ms();

			if (now >= deadline_ms)
				return -ETIMEDOUT;
			ts.tv_sec = (time_t)((deadline_ms - now) / 1000);
			ts.tv_nsec = (long)((deadline_ms - now) % 1000) * 1000000;
			tsp = &ts;
		}
		n = ppoll(&pfd, 1, tsp, wait_mask_p);
		if (n < 0) {
			if (errno == EINTR)
				continue;	/* re-check the flag and the clock */
			return -errno;
		}
		if (n > 0)
			return 0;
	}
}

int ph_ctl_http_connect(struct ph_ctl_http_client *c, const struct sockaddr *sa, socklen_t salen,
		    uint64_t deadline_ms)
{
	int fd, err = 0;
	socklen_t elen = sizeof(err);

	c->phase = PH_CTL_PHASE_CONNECT;
	if (deadline_ms > c->deadline_ms)
		deadline_ms = c->deadline_ms;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	c->fd = fd;
	if (connect(fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		err = -errno;
		goto fail;
	}
	err = wait_fd(fd, POLLOUT, deadline_ms);
	if (err)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen)) {
		err = -errno;
		goto fail;
	}
	if (err) {
		err = -err;
		goto fail;
	}
	return 0;
fail:
	ph_ctl_http_close(c);
	return err;
}

int ph_ctl_http_send_request(struct ph_ctl_http_client *c, const struct ph_ctl_http_request *req)
{
	char buf[2048];
	size_t off = 0;
	int len, ret;

	c->phase = PH_CTL_PHASE_SEND;
	len = ph_ctl_http_format_request(buf, sizeof(buf), req);
	if (len < 0)
		return len;
	while (off < (size_t)len) {
		ssize_t n = send(c->fd, buf + off, (size_t)len - off, MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		ret = wait_fd(c->fd, POLLOUT, c->deadline_ms);
		if (ret)
			return ret;
	}
	return 0;
}

int ph_ctl_http_read_response(struct ph_ctl_http_client *c, struct ph_ctl_http_resp *r, bool until_head)
{
	char buf[16384];
	int ret;

	for (;;) {
		ssize_t n;
		size_t used;

		if (r->state == PH_CTL_RESP_DONE)
			return 0;
		if (until_head && r->head_done)
			return 0;
		c->phase = r->head_done ? PH_CTL_PHASE_BODY : PH_CTL_PHASE_HEAD;
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0) {
			ret = ph_ctl_http_resp_eof(r);
			return ret < 0 ? ret : 0;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			ret = wait_fd(c->fd, POLLIN, c->deadline_ms);
			if (ret)
				return ret;
			continue;
		}
		ret = ph_ctl_http_resp_feed(r, buf, (size_t)n, &used);
		if (ret < 0)
			return ret;
		/* bytes after a complete response are ignored: we sent Connection: close */
	}
}

int ph_ctl_http_exchange(struct ph_ctl_http_client *c, const struct ph_ctl_http_request *req,
		     struct ph_ctl_http_resp *r)
{
	int ret = ph_ctl_http_send_request(c, req);

	if (ret)
		return ret;
	return ph_ctl_http_read_response(c, r, false);
}

void ph_ctl_http_close(struct ph_ctl_http_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
