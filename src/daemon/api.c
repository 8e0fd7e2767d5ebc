// SPDX-License-Identifier: MIT
/* api.c - portholed's HTTP control API: routes, authentication, snapshot prepare/resume
 *
 * Theory of Operation
 * ===================
 * The connection layer (http.c) hands every complete request to handle().
 * Most routes answer at once: they only read the port subsystem's state
 * (atomics and the table under its lock; never state only the worker
 * holds consistent). The snapshot commands need the port worker, which may
 * be busy (a flood of relays keeps it from its mailbox for a while), and
 * the API's loop must never wait for it: a prepare or resume is a waiter
 * in a FIFO, its request deferred (ph_http_defer()); the head waiter's
 * command is posted to the worker (ph_ports_post()), whose completion
 * writes our eventfd, and on_done() answers it and posts the next. The
 * loop serves every other request meanwhile. One command at a time, in
 * arrival order, so a prepare and a resume sent back to back take effect
 * in that order.
 *
 * /health after a restore resumes first (the reference design's contract):
 * an authenticated /health that finds the subsystem quiesced and no
 * command queued becomes a resume waiter and is answered "running" once
 * the resume ran. One arriving while a resume is queued rides on it (it is
 * answered when that resume is done, without a command of its own); one
 * arriving while a prepare is queued answers at once with the current
 * state: it cannot come after the restore, whose snapshot waits for the
 * prepare's answer. ph_ports_resume() is exactly-once per quiesce anyway.
 *
 * Snapshot prepare closes, besides the relayed connections (the subsystem
 * does that), every API connection that is not in the middle of a request,
 * event streams included: after a restore their peers are gone, and the
 * current response says "Connection: close" so the host's own connection
 * does not survive into the snapshot either. Resume closes API connections
 * that were accepted before the prepare and are still open (a request that
 * was half-sent when the VM froze).
 *
 * Authentication: with a token, everything but /health needs
 * "Authorization: Bearer TOKEN"; the comparison takes the same time
 * whatever the first differing byte. Unknown paths are checked too, so an
 * unauthenticated client cannot probe which paths exist. /health answers
 * anyone, but only changes state for a client that could call
 * /snapshot/resume itself: the resume-on-first-health after a restore is
 * done for an authenticated request (anyone when no token is configured);
 * without the token /health just reports "quiesced".
 */
#include "api.h"

#include <errno.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fdstore.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "sse.h"

struct ph_api {
	struct ph_http_server http;
	struct ph_loop *loop;
	const struct ph_daemon_config *cfg;
	struct ph_ports *ports;
	struct ph_sse_hub sse;
	uint64_t prepares;
	uint64_t resumes;
	uint64_t prepare_seq;	/* newest API connection when prepare ran */
	bool authed;		/* the current request may change state */
	ph_api_upgrade_fn upgrade;
	void *upgrade_arg;
	bool upgrading;		/* in an upgrade, or done: 409 for another */
	int done_fd;		/* eventfd: the posted command ran */
	struct ph_io done_io;
	struct ph_list waiters;	/* struct waiter, in arrival order */
	bool posted;		/* the head waiter's command is with the worker */
};

enum wait_kind { W_PREPARE, W_RESUME, W_HEALTH };

/**
 * struct waiter - a snapshot request waiting for the port worker
 * @node:	in api->waiters
 * @conn:	its connection, NULL once closed
 * @kind:	prepare, resume, or a /health that resumes
 * @ride:	a /health behind a resume: answered when that is done, no command
 * @was:	prepare: already quiesced when posted (for the log and counter)
 */
struct waiter {
	struct ph_list node;
	struct ph_http_conn *conn;
	enum wait_kind kind;
	bool ride;
	bool was;
};

struct route {
	const char *path;
	bool post;		/* POST only; otherwise GET and HEAD */
	bool public;		/* no token needed */
	void (*fn)(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req);
};

static void send_json(struct ph_http_conn *c, int status, struct ph_buf *body)
{
	ph_buf_add(body, "\n", 1);
	if (body->oom) {
		ph_http_send_error(c, 500, "out of memory", NULL, false);
		return;
	}
	ph_http_send(c, &(struct ph_http_resp){
		.status = status, .content_type = "application/json",
		.body = body->data, .body_len = body->len,
	});
}

static void send_errno(struct ph_http_conn *c, int err)
{
	if (err == -ESRCH)
		ph_http_send_error(c, 503, "port subsystem not running", NULL, false);
	else
		ph_http_send_error(c, 500, ph_strerror(err), NULL, false);
}

/* The /health document, from the state the worker published */
static void send_health(struct ph_api *api, struct ph_http_conn *c)
{
	struct ph_buf body = { 0 };
	struct ph_json j;
	bool running = ph_ports_running(api->ports);

	ph_json_init(&j, &body);
	ph_json_obj_begin(&j);
	ph_json_key(&j, "version");
	ph_json_str(&j, PH_VERSION);
	ph_json_key(&j, "state");
	ph_json_str(&j, !running ? "stopped" : ph_ports_quiesced(api->ports) ? "quiesced" : "running");
	ph_json_obj_end(&j);
	send_json(c, running ? 200 : 503, &body);
	ph_buf_free(&body);
}

/* ---- snapshot commands: waiters ------------------------------------------ */

static void waiter_gone(struct ph_http_conn *c, void *ctx)
{
	struct waiter *w = ctx;

	(void)c;
	/* a posted command still takes effect; one not posted yet is dropped:
	 * its client gave up (a prepare nobody waits for would quiesce the
	 * guest for a snapshot that is not coming) */
	w->conn = NULL;
}

static struct waiter *waiter_head(struct ph_api *api)
{
	if (ph_list_empty(&api->waiters))
		return NULL;
	return ph_list_entry(ph_list_first(&api->waiters), struct waiter, node);
}

static struct waiter *waiter_tail(struct ph_api *api)
{
	if (ph_list_empty(&api->waiters))
		return NULL;
	return ph_list_entry(api->waiters.prev, struct waiter, node);
}

/**
 * complete() - a waiter's command ran: apply the API's side and answer
 * @api:	API
 * @w:		the waiter, already unlinked (freed by the caller)
 * @ret:	ph_ports_quiesce()/ph_ports_resume() result; for a rider, 0
 *
 * The side effects (counters, closing API connections, the log) happen
 * even when the client is gone: the command took effect.
 */
static void complete(struct ph_api *api, struct waiter *w, int ret)
{
	struct ph_http_conn *c = w->conn;
	unsigned closed;

	if (ret < 0) {
		if (c)
			send_errno(c, ret);
		return;
	}
	if (w->kind == W_PREPARE) {
		if (!w->was)
			api->prepares++;
		api->prepare_seq = ph_http_server_seq(&api->http);
		closed = ph_http_server_close_idle(&api->http, c, true);
		ph_info("snapshot prepare", PH_FU("api_connections_closed", closed),
			PH_FS("state", w->was ? "already quiesced" : "quiesced"));
		if (c)
			ph_http_send(c, &(struct ph_http_resp){ .status = 204, .close = true });
		return;
	}
	if (ret == 1) {
		api->resumes++;
		closed = ph_http_server_close_older(&api->http, api->prepare_seq, c);
		ph_info("snapshot resume", PH_FS("trigger", w->kind == W_HEALTH ? "health" : "request"),
			PH_FU("api_connections_closed", closed), PH_FU("resumes", api->resumes));
	}
	if (!c)
		return;
	if (w->kind == W_HEALTH)
		send_health(api, c);
	else
		ph_http_send(c, &(struct ph_http_resp){ .status = 204 });
}

/* Post the head waiter's command, answering riders and failures on the way */
static void kick(struct ph_api *api)
{
	struct waiter *w;
	int ret;

	while (!api->posted && (w = waiter_head(api))) {
		if (w->conn && !w->ride) {
			w->was = ph_ports_quiesced(api->ports);
			ret = ph_ports_post(api->ports, w->kind == W_PREPARE ? PH_PORTS_QUIESCE
									: PH_PORTS_RESUME,
					    api->done_fd);
			if (!ret) {
				api->posted = true;
				return;
			}
		} else {
			ret = 0;	/* a rider's resume ran; a gone client needs nothing */
		}
		ph_list_del(&w->node);
		if (w->conn)
			complete(api, w, ret);
		free(w);
	}
}

/* The worker ran the posted command */
static void on_done(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct ph_api *api = ph_container_of(io, struct ph_api, done_io);
	struct waiter *w;
	uint64_t n;
	int ret;

	(void)loop;
	(void)events;
	if (read(api->done_fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: a spurious wake; the result says whether it ran */
	}
	ret = ph_ports_post_result(api->ports);
	if (!api->posted || ret == -EINPROGRESS || ret == -ENOENT)
		return;
	api->posted = false;
	w = waiter_head(api);
	ph_list_del(&w->node);
	complete(api, w, ret);	/* may dispatch pipelined requests: new waiters */
	free(w);
	kick(api);
}

/* Defer @c's request as a waiter of @kind (or answer an error) */
static void enqueue(struct ph_api *api, struct ph_http_conn *c, enum wait_kind kind, bool ride)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		ph_http_send_error(c, 500, "out of memory", NULL, false);
		return;
	}
	w->conn = c;
	w->kind = kind;
	w->ride = ride;
	if (ph_http_defer(c, waiter_gone, w)) {
		free(w);
		return;
	}
	ph_list_add_tail(&api->waiters, &w->node);
	kick(api);
}

static void r_health(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct waiter *tail = waiter_tail(api);

	(void)req;
	if (ph_ports_running(api->ports) && api->authed) {
		if (!tail && ph_ports_quiesced(api->ports)) {
			enqueue(api, c, W_HEALTH, false);	/* the first after a restore */
			return;
		}
		if (tail && tail->kind != W_PREPARE) {
			enqueue(api, c, W_HEALTH, true);	/* a resume is coming */
			return;
		}
	}
	send_health(api, c);
}

static void r_prepare(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	(void)req;
	enqueue(api, c, W_PREPARE, false);
}

static void r_resume(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	(void)req;
	enqueue(api, c, W_RESUME, false);
}

static int ports_doc(void *arg, struct ph_buf *out)
{
	struct ph_api *api = arg;
	struct ph_port_list l;
	struct ph_json j;
	int ret;

	ret = ph_ports_list(api->ports, &l);
	if (ret)
		return ret;
	ph_json_init(&j, out);
	ph_json_port_list(&j, &l);
	ph_port_list_free(&l);
	return ph_json_finish(&j);
}

static void r_ports(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct ph_buf body = { 0 };
	int ret;

	(void)req;
	ret = ports_doc(api, &body);
	if (ret)
		send_errno(c, ret);
	else
		send_json(c, 200, &body);
	ph_buf_free(&body);
}

static void r_events(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	int ret;

	(void)req;
	ret = ph_sse_start(&api->sse, c);
	if (ret)
		ph_http_send_error(c, 503, ph_strerror(ret), NULL, false);
}

static void r_metrics(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct ph_metrics_input in = {
		.http = &api->http.stats,
		.prepares = api->prepares,
		.resumes = api->resumes,
		.quiesced = ph_ports_quiesced(api->ports),
		.sse_clients = api->sse.clients,
		.sse_lost = api->sse.lost,
	};
	struct ph_buf body = { 0 };
	struct ph_port_list l;

	(void)req;
	ph_metrics_core_load(&in.core, ph_ports_stats(api->ports));
	if (ph_ports_list(api->ports, &l) == 0) {
		for (size_t i = 0; i < l.n; i++)
			if ((unsigned)l.ports[i].state < PH_PORT_STATES) {
				in.ports_by_state[l.ports[i].state]++;
				if (l.ports[i].proto == IPPROTO_UDP)
					in.udp_ports_by_state[l.ports[i].state]++;
			}
		in.ports = l.ports;
		in.n_ports = l.n;
	}
	/* this response is counted before it is rendered, so it shows itself */
	if (ph_metrics_render(&body, &in))
		ph_http_send_error(c, 500, "out of memory", NULL, false);
	else
		ph_http_send(c, &(struct ph_http_resp){
			.status = 200, .content_type = PH_METRICS_CONTENT_TYPE,
			.body = body.data, .body_len = body.len,
		});
	ph_buf_free(&body);
	ph_port_list_free(&l);
}

/* The value of @key in a query string, percent-decoded into @out. Return: true when present */
static bool query_param(const char *q, const char *key, char *out, size_t cap)
{
	size_t klen = strlen(key);

	for (; q && *q; q = strchr(q, '&') ? strchr(q, '&') + 1 : NULL) {
		size_t n = 0;

		if (strncmp(q, key, klen) || q[klen] != '=')
			continue;
		for (const char *p = q + klen + 1; *p && *p != '&'; p++) {
			unsigned v;
			char c = *p;

			if (c == '%' && sscanf(p + 1, "%2x", &v) == 1 && p[1] && p[2]) {
				c = (char)v;
				p += 2;
			} else if (c == '+') {
				c = ' ';
			}
			if (n + 1 >= cap || !c)
				return false;
			out[n++] = c;
		}
		out[n] = '\0';
		return true;
	}
	return false;
}

static void r_upgrade(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	char binary[4096], why[256];
	struct ph_buf body = { 0 };
	struct ph_json j;
	bool has_binary = query_param(req->query, "binary", binary, sizeof(binary));
	pid_t pid = 0;
	int ret;

	if (req->query && strstr(req->query, "binary=") && !has_binary) {
		ph_http_send_error(c, 400, "binary: not a usable path", NULL, false);
		return;
	}
	if (!api->upgrade) {
		ph_http_send_error(c, 503, "upgrades are not available", NULL, false);
		return;
	}
	if (api->upgrading) {
		ph_http_send_error(c, 409, "an upgrade is in progress", NULL, false);
		return;
	}
	api->upgrading = true;
	ret = api->upgrade(api->upgrade_arg, has_binary ? binary : NULL, &pid, why, sizeof(why));
	if (ret) {
		api->upgrading = false;
		ph_http_send_error(c, ret == -EBUSY ? 409 : 500, why, NULL, false);
		return;
	}
	ph_json_init(&j, &body);
	ph_json_obj_begin(&j);
	ph_json_key(&j, "pid");
	ph_json_int(&j, pid);
	ph_json_obj_end(&j);
	ph_http_set_close(c);	/* the new process serves the next request */
	send_json(c, 200, &body);
	ph_buf_free(&body);
}

static const struct route routes[] = {
	{ "/health", false, true, r_health },
	{ "/snapshot/prepare", true, false, r_prepare },
	{ "/snapshot/resume", true, false, r_resume },
	{ "/ports", false, false, r_ports },
	{ "/ports/events", false, false, r_events },
	{ "/metrics", false, false, r_metrics },
	{ "/daemon/upgrade", true, false, r_upgrade },
};

/**
 * authorized() - does @req carry "Authorization: Bearer <token>"?
 * @api:	API (holds the token)
 * @req:	request
 *
 * The scheme is case-insensitive (RFC 9110 11.1); the token is compared
 * in time that depends only on the configured token's length.
 * Return: true when it matches
 */
static bool authorized(const struct ph_api *api, const struct ph_http_req *req)
{
	const char *v = req->authorization, *tok;
	size_t len = req->auth_len, tlen = api->cfg->token_len, given;
	unsigned char diff;

	if (!v || len < 7 || strncasecmp(v, "Bearer ", 7))
		return false;
	tok = v + 7;
	given = len - 7;
	while (given && *tok == ' ') {
		tok++;
		given--;
	}
	diff = given != tlen;
	for (size_t i = 0; i < tlen; i++)
		diff |= (unsigned char)(api->cfg->token[i] ^ (i < given ? tok[i] : 0));
	return diff == 0;
}

static void handle(void *arg, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct ph_api *api = arg;
	const struct route *r = NULL;
	bool ok;

	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && !req->path_too_long; i++)
		if (!strcmp(req->path, routes[i].path))
			r = &routes[i];
	api->authed = !api->cfg->token_len || authorized(api, req);
	if (!api->authed && !(r && r->public)) {
		ph_http_send_error(c, 401, "missing or wrong bearer token",
				   "WWW-Authenticate: Bearer realm=\"portholed\"\r\n", false);
		return;
	}
	if (!r) {
		ph_http_send_error(c, 404, "no such endpoint", NULL, false);
		return;
	}
	ok = r->post ? req->method == HTTP_POST
		     : req->method == HTTP_GET || req->method == HTTP_HEAD;
	if (!ok) {
		ph_http_send_error(c, 405, "method not allowed",
				   r->post ? "Allow: POST\r\n" : "Allow: GET, HEAD\r\n", false);
		return;
	}
	r->fn(api, c, req);
}

/* The listener a previous process left in the fd store for this address, or
 * a fresh one, then kept in the store; a stored one for another address
 * (--listen changed) is released */
static int api_listen(struct ph_api *api)
{
	struct ph_fdstore *fs = api->cfg->ports.fdstore;
	const struct sockaddr *sa = (const struct sockaddr *)&api->cfg->listen;
	int fd, ret;

	fd = ph_fdstore_take(fs, PH_FDKIND_API, sa);
	ph_fdstore_settle(fs, 1u << PH_FDKIND_API);
	if (fd >= 0) {
		ret = ph_http_server_adopt(&api->http, fd);
		if (!ret) {
			ph_info("control API listener adopted from the fd store");
			return 0;
		}
		ph_fdstore_release(fs, PH_FDKIND_API, sa, fd);
	}
	ret = ph_http_server_listen(&api->http, sa, api->cfg->listen_len);
	if (ret)
		return ret;
	ph_fdstore_keep(fs, PH_FDKIND_API, sa, api->http.lfd);
	return 0;
}

int ph_api_new(struct ph_api **out, struct ph_loop *loop, const struct ph_daemon_config *cfg,
	       struct ph_ports *ports)
{
	struct ph_api *api;
	int ret;

	api = calloc(1, sizeof(*api));
	if (!api)
		return -ENOMEM;
	api->loop = loop;
	api->cfg = cfg;
	api->done_fd = -1;
	api->ports = ports;
	api->sse = (struct ph_sse_hub){
		.loop = loop, .bus = ph_ports_bus(ports), .queue = cfg->http.sse_queue,
		.ping_ms = cfg->http.sse_ping_ms, .snapshot = ports_doc, .arg = api,
		.max_streams = cfg->http.max_streams, .srv = &api->http,
	};
	ph_list_init(&api->sse.streams);
	ph_list_init(&api->sse.pending);
	ph_list_init(&api->waiters);
	ret = ph_http_server_init(&api->http, loop, &cfg->http, handle, api);
	if (ret)
		goto fail;
	api->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (api->done_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = ph_loop_add(loop, &api->done_io, api->done_fd, EPOLLIN, on_done);
	if (ret)
		goto fail;
	ret = api_listen(api);
	if (ret)
		goto fail;
	*out = api;
	return 0;
fail:
	ph_http_server_fini(&api->http);
	if (api->done_fd >= 0)
		close(api->done_fd);
	free(api);
	return ret;
}

void ph_api_set_upgrade(struct ph_api *api, ph_api_upgrade_fn fn, void *arg)
{
	api->upgrade = fn;
	api->upgrade_arg = arg;
}

void ph_api_upgraded(struct ph_api *api, pid_t pid)
{
	char msg[96];
	unsigned n;

	api->upgrading = true;
	/* the listener is the new process's now: accept nothing more here */
	if (api->http.lfd >= 0)
		ph_loop_del(api->loop, &api->http.lio);
	snprintf(msg, sizeof(msg), "event: upgrade\ndata: {\"pid\":%d}\n\n", (int)pid);
	n = ph_sse_end_all(&api->sse, msg);
	/* idle keep-alive connections: their next request is the new process's */
	ph_http_server_close_idle(&api->http, NULL, false);
	ph_info("upgrade: event streams closed", PH_FU("streams", n));
}

uint64_t ph_api_listen_inode(const struct ph_api *api)
{
	return ph_http_server_inode(&api->http);
}

struct ph_http_server *ph_api_http_server(struct ph_api *api)
{
	return &api->http;
}

void ph_api_free(struct ph_api *api)
{
	struct ph_list *n, *tmp;

	if (!api)
		return;
	ph_ports_post_forget(api->ports);
	ph_sse_hub_fini(&api->sse);
	ph_http_server_fini(&api->http);	/* the waiters' connections go */
	ph_list_for_each_safe(n, tmp, &api->waiters) {
		ph_list_del(n);
		free(ph_list_entry(n, struct waiter, node));
	}
	ph_loop_del(api->loop, &api->done_io);
	close(api->done_fd);
	free(api);
}
