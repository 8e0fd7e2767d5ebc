// SPDX-License-Identifier: MIT
/* api.c - portholed's HTTP control API: routes, authentication, snapshot prepare/resume
 *
 * Theory of Operation
 * ===================
 * The connection layer (http.c) hands every complete request to handle(),
 * which answers synchronously: the routes only read the port subsystem's
 * state or send it a command that returns once the worker has executed it
 * (ph_ports_quiesce/resume). Everything runs on the main loop's single
 * thread, so concurrent /health calls after a restore are served one after
 * the other: the first finds the subsystem quiesced and resumes it, the
 * others find it running. ph_ports_resume() is itself exactly-once per
 * quiesce, which also covers a resume racing with a /health.
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
#include <strings.h>

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

/**
 * resume() - ph_ports_resume() plus the API's own zombie cleanup
 * @api:	API
 * @c:		connection asking (kept open)
 * @trigger:	"health" or "request", for the log
 *
 * Return: 1 resumed now, 0 was running, -errno
 */
static int resume(struct ph_api *api, struct ph_http_conn *c, const char *trigger)
{
	unsigned closed;
	int ret;

	ret = ph_ports_resume(api->ports);
	if (ret != 1)
		return ret;
	api->resumes++;
	closed = ph_http_server_close_older(&api->http, api->prepare_seq, c);
	ph_info("snapshot resume", PH_FS("trigger", trigger), PH_FU("api_connections_closed", closed),
		PH_FU("resumes", api->resumes));
	return 1;
}

static void r_health(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	struct ph_buf body = { 0 };
	struct ph_json j;
	bool running = ph_ports_running(api->ports);
	int ret;

	(void)req;
	if (running && api->authed && ph_ports_quiesced(api->ports)) {
		ret = resume(api, c, "health");
		if (ret < 0) {
			send_errno(c, ret);
			return;
		}
	}
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

static void r_prepare(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	bool was = ph_ports_quiesced(api->ports);
	unsigned closed;
	int ret;

	(void)req;
	ret = ph_ports_quiesce(api->ports);
	if (ret) {
		send_errno(c, ret);
		return;
	}
	if (!was)
		api->prepares++;
	api->prepare_seq = ph_http_server_seq(&api->http);
	closed = ph_http_server_close_idle(&api->http, c, true);
	ph_info("snapshot prepare", PH_FU("api_connections_closed", closed),
		PH_FS("state", was ? "already quiesced" : "quiesced"));
	ph_http_send(c, &(struct ph_http_resp){ .status = 204, .close = true });
}

static void r_resume(struct ph_api *api, struct ph_http_conn *c, const struct ph_http_req *req)
{
	int ret;

	(void)req;
	ret = resume(api, c, "request");
	if (ret < 0) {
		send_errno(c, ret);
		return;
	}
	ph_http_send(c, &(struct ph_http_resp){ .status = 204 });
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

static const struct route routes[] = {
	{ "/health", false, true, r_health },
	{ "/snapshot/prepare", true, false, r_prepare },
	{ "/snapshot/resume", true, false, r_resume },
	{ "/ports", false, false, r_ports },
	{ "/ports/events", false, false, r_events },
	{ "/metrics", false, false, r_metrics },
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
	api->ports = ports;
	api->sse = (struct ph_sse_hub){
		.loop = loop, .bus = ph_ports_bus(ports), .queue = cfg->http.sse_queue,
		.ping_ms = cfg->http.sse_ping_ms, .snapshot = ports_doc, .arg = api,
		.max_streams = cfg->http.max_streams, .srv = &api->http,
	};
	ph_list_init(&api->sse.streams);
	ph_list_init(&api->sse.pending);
	ret = ph_http_server_init(&api->http, loop, &cfg->http, handle, api);
	if (ret)
		goto fail;
	ret = api_listen(api);
	if (ret)
		goto fail;
	*out = api;
	return 0;
fail:
	ph_http_server_fini(&api->http);
	free(api);
	return ret;
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
	if (!api)
		return;
	ph_sse_hub_fini(&api->sse);
	ph_http_server_fini(&api->http);
	free(api);
}
