// SPDX-License-Identifier: MIT
/* ctl_cmd.c - portholectl's command line and commands
 *
 * Theory of Operation
 * ===================
 * Every command is one or more HTTP exchanges, each on a fresh connection
 * and each bounded by an absolute deadline (http.c). The deadline belongs to
 * a command, or for restore to a phase:
 *
 *   restore = wait-ready (deadline A = start + --ready-timeout)
 *           + resume     (deadline B = end of wait-ready + --resume-timeout)
 *
 * B is computed only when wait-ready has finished, so a daemon that answers
 * /health late can use up A but never a millisecond of B. That is the whole
 * point of the command: a single shared timeout is how post-restore scripts
 * end up never telling the guest it was restored.
 *
 * wait-ready starts a /health attempt every PH_CTL_POLL_MS. "Connection
 * refused", "unreachable" and non-200 answers all mean "not ready yet"; only
 * the deadline ends the wait (exit 3). One attempt may take as long as the
 * deadline allows once connected (the first /health after a prepare performs
 * the resume before answering), but its connect is capped at PH_CTL_CONNECT_MS:
 * a SYN sent while the restored VM's network was not yet up is retransmitted
 * by the kernel only after 1 s, then 3 s; a new socket sends a new SYN now.
 */
#include "ctl_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ctl_http.h"
#include "ctl_json.h"
#include "ctl_output.h"
#include "ctl_sse.h"
#include "loop.h"
#include "parse.h"

#ifndef PH_VERSION
#define PH_VERSION "0"
#endif

static const char usage_text[] =
	"Usage: portholectl [--addr HOST:PORT] [--token-file FILE] [--timeout DUR] COMMAND\n"
	"Control portholed over its HTTP API.\n"
	"\n"
	"Commands:\n"
	"  health [--json]         print the daemon's state and version\n"
	"  ports [--json]          table of detected listeners (--json: the raw body)\n"
	"  watch [--json]          one line per port event until interrupted\n"
	"  prepare                 quiesce for a snapshot\n"
	"  resume                  recover after a restore\n"
	"  wait-ready [--timeout DUR] [--json]\n"
	"                          poll /health every 20 ms until it answers 200\n"
	"  restore [--ready-timeout DUR] [--resume-timeout DUR] [--json]\n"
	"                          wait-ready, then resume, each with its own deadline\n"
	"  upgrade [--binary PATH] [--json]\n"
	"                          replace the daemon in place by PATH (default: its own\n"
	"                          binary on disk), keeping every port and connection;\n"
	"                          prints the new pid (default --timeout 30s)\n"
	"--json prints what a command reports as one JSON object (per event for watch).\n"
	"Options:\n"
	"  --addr HOST:PORT        numeric daemon address (default $PORTHOLE_ADDR,\n"
	"                          else " PH_CTL_DEFAULT_ADDR ")\n"
	"  --token-file FILE       bearer token (default $PORTHOLE_TOKEN_FILE)\n"
	"  --timeout DUR           deadline of the command (default 5s); for restore,\n"
	"                          the default of each of its two deadlines\n"
	"  --help, --version\n"
	"DUR: 500ms, 5s, 2m (a bare number is seconds). Exit status: 0 ok, 1 the daemon\n"
	"answered with an error, 2 usage, 3 timeout, 4 cannot connect.\n";

static const char *const cmd_names[] = {
	[PH_CTL_HEALTH] = "health",	[PH_CTL_PORTS] = "ports",
	[PH_CTL_WATCH] = "watch",	[PH_CTL_PREPARE] = "prepare",
	[PH_CTL_RESUME] = "resume",	[PH_CTL_WAIT_READY] = "wait-ready",
	[PH_CTL_RESTORE] = "restore",	[PH_CTL_UPGRADE] = "upgrade",
};

enum { OPT_ADDR = 256, OPT_TOKEN, OPT_TIMEOUT, OPT_READY, OPT_RESUME, OPT_JSON, OPT_VERSION,
       OPT_BINARY };

static const struct option options[] = {
	{ "addr", required_argument, NULL, OPT_ADDR },
	{ "token-file", required_argument, NULL, OPT_TOKEN },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "ready-timeout", required_argument, NULL, OPT_READY },
	{ "resume-timeout", required_argument, NULL, OPT_RESUME },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "binary", required_argument, NULL, OPT_BINARY },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ 0 },
};

const char *ph_ctl_fmt_ms(char *buf, size_t size, uint64_t ms)
{
	if (ms && ms % 1000 == 0)
		snprintf(buf, size, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, size, "%llums", (unsigned long long)ms);
	return buf;
}

int ph_ctl_exit_code(int err, int status)
{
	switch (err) {
	case 0:
		return status >= 200 && status < 300 ? PH_CTL_EXIT_OK : PH_CTL_EXIT_ERROR;
	case -ETIMEDOUT:
		return PH_CTL_EXIT_TIMEOUT;
	case -EINTR:
		return PH_CTL_EXIT_OK;
	case -EPROTO:
	case -EMSGSIZE:
	case -ENOMEM:
		return PH_CTL_EXIT_ERROR;
	default:
		return PH_CTL_EXIT_CONNECT;
	}
}

static int set_addr(struct ph_ctl_opts *o, const char *s)
{
	if (strlen(s) >= sizeof(o->host) ||
	    ph_parse_hostport(s, &o->addr, &o->addr_len, 0))
		return -EINVAL;
	strcpy(o->host, s);
	return 0;
}

static int set_duration(const char *s, uint64_t *out)
{
	uint64_t ms;

	if (ph_parse_duration_ms(s, &ms) || !ms)
		return -EINVAL;
	*out = ms;
	return 0;
}

static int read_token(struct ph_ctl_opts *o, const char *what, const char *path, FILE *err)
{
	size_t len;
	int ret = ph_token_read(path, o->token, sizeof(o->token), &len);

	if (!ret)
		return 0;
	fprintf(err, "portholectl: %s %s: %s\n", what, path,
		ret == -EINVAL ? "empty, or not a token68 bearer token" :
		ret == -EFBIG ? "token too long" : strerror(-ret));
	return ret;
}

/* Length: one getopt case per option, then the per-command argument checks;
 * kept together so every usage error is decided in one place. */
int ph_ctl_parse_args(struct ph_ctl_opts *o, int argc, char **argv, FILE *out, FILE *err)
{
	const char *token_file = NULL, *env;
	bool have_addr = false, have_ready = false, have_resume = false, have_timeout = false;
	int c, ncmd = sizeof(cmd_names) / sizeof(cmd_names[0]);

	memset(o, 0, sizeof(*o));
	o->timeout_ms = PH_CTL_DEFAULT_TIMEOUT;
	o->poll_ms = PH_CTL_POLL_MS;
	o->connect_ms = PH_CTL_CONNECT_MS;

	optind = 0;	/* full getopt reset: tests parse many command lines */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
		switch (c) {
		case OPT_ADDR:
			if (set_addr(o, optarg)) {
				fprintf(err, "portholectl: --addr %s: expected a numeric ADDR:PORT or [V6]:PORT\n",
					optarg);
				return PH_CTL_EXIT_USAGE;
			}
			have_addr = true;
			break;
		case OPT_TOKEN:
			token_file = optarg;
			break;
		case OPT_TIMEOUT:
		case OPT_READY:
		case OPT_RESUME:
			if (set_duration(optarg, c == OPT_TIMEOUT ? &o->timeout_ms :
						 c == OPT_READY ? &o->ready_timeout_ms :
								  &o->resume_timeout_ms)) {
				fprintf(err, "portholectl: --%s %s: expected a duration > 0 such as 500ms or 5s\n",
					c == OPT_TIMEOUT ? "timeout" :
					c == OPT_READY ? "ready-timeout" : "resume-timeout", optarg);
				return PH_CTL_EXIT_USAGE;
			}
			have_ready |= c == OPT_READY;
			have_timeout |= c == OPT_TIMEOUT;
			have_resume |= c == OPT_RESUME;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_BINARY:
			if (!*optarg || strlen(optarg) >= sizeof(o->binary)) {
				fprintf(err, "portholectl: --binary: expected a path\n");
				return PH_CTL_EXIT_USAGE;
			}
			snprintf(o->binary, sizeof(o->binary), "%s", optarg);
			break;
		case 'h':
			fputs(usage_text, out);
			return PH_CTL_EXIT_OK;
		case OPT_VERSION:
			fputs("portholectl " PH_VERSION "\n", out);
			return PH_CTL_EXIT_OK;
		case ':':
			fprintf(err, "portholectl: %s needs a value\n", argv[optind - 1]);
			return PH_CTL_EXIT_USAGE;
		default:
			fprintf(err, "portholectl: unknown option %s (see --help)\n", argv[optind - 1]);
			return PH_CTL_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(err, "portholectl: missing COMMAND (see --help)\n");
		return PH_CTL_EXIT_USAGE;
	}
	if (optind + 1 < argc) {
		fprintf(err, "portholectl: unexpected argument %s\n", argv[optind + 1]);
		return PH_CTL_EXIT_USAGE;
	}
	for (c = 0; c < ncmd && strcmp(argv[optind], cmd_names[c]); c++)
		;
	if (c == ncmd) {
		fprintf(err, "portholectl: unknown command %s (see --help)\n", argv[optind]);
		return PH_CTL_EXIT_USAGE;
	}
	o->cmd = (enum ph_ctl_cmd)c;
	/* prepare and resume print nothing, so they have no --json */
	if (o->json && (o->cmd == PH_CTL_PREPARE || o->cmd == PH_CTL_RESUME)) {
		fprintf(err, "portholectl: --json is not an option of %s\n", cmd_names[c]);
		return PH_CTL_EXIT_USAGE;
	}
	if (o->binary[0] && o->cmd != PH_CTL_UPGRADE) {
		fprintf(err, "portholectl: --binary is an option of upgrade\n");
		return PH_CTL_EXIT_USAGE;
	}
	if (o->cmd == PH_CTL_UPGRADE && !have_timeout)
		o->timeout_ms = PH_CTL_UPGRADE_TIMEOUT;
	if ((have_ready || have_resume) && o->cmd != PH_CTL_RESTORE) {
		fprintf(err, "portholectl: --ready-timeout and --resume-timeout are options of restore\n");
		return PH_CTL_EXIT_USAGE;
	}
	if (!have_ready)
		o->ready_timeout_ms = o->timeout_ms;
	if (!have_resume)
		o->resume_timeout_ms = o->timeout_ms;

	if (!have_addr) {
		env = getenv("PORTHOLE_ADDR");
		if (env && *env && set_addr(o, env)) {
			fprintf(err, "portholectl: PORTHOLE_ADDR=%s: expected a numeric ADDR:PORT\n", env);
			return PH_CTL_EXIT_USAGE;
		}
		if (!env || !*env)
			set_addr(o, PH_CTL_DEFAULT_ADDR);
	}
	if (token_file) {
		if (read_token(o, "--token-file", token_file, err))
			return PH_CTL_EXIT_USAGE;
	} else {
		env = getenv("PORTHOLE_TOKEN_FILE");
		if (env && *env && read_token(o, "PORTHOLE_TOKEN_FILE", env, err))
			return PH_CTL_EXIT_USAGE;
	}
	return PH_CTL_RUN;
}

/**
 * struct call - one request on one connection and its outcome
 * @method, @path: request
 * @err:	0 or the transport's -errno
 * @phase:	step that failed (or the last one)
 * @resp:	parsed response (status valid when @err is 0)
 * @body:	collected body (non-stream responses)
 */
struct call {
	const char *method;
	const char *path;
	int err;
	enum ph_ctl_http_phase phase;
	struct ph_ctl_http_resp resp;
	struct ph_ctl_http_buf body;
};

/**
 * do_call() - connect, send, read the whole response
 * @o:		options (address, token)
 * @c:		call with @method and @path set
 * @deadline_ms: absolute deadline of the exchange
 * @connect_deadline_ms: absolute deadline of its connect (<= @deadline_ms)
 *
 * Return: 0 or -errno (also in @c->err)
 */
static int do_call(const struct ph_ctl_opts *o, struct call *c, uint64_t deadline_ms,
		   uint64_t connect_deadline_ms)
{
	struct ph_ctl_http_request req = {
		.method = c->method, .path = c->path, .host = o->host, .token = o->token,
	};
	struct ph_ctl_http_client cl;
	int ret;

	ph_ctl_http_client_init(&cl, deadline_ms);
	ph_ctl_http_buf_free(&c->body);
	ph_ctl_http_resp_init(&c->resp, ph_ctl_http_buf_append, &c->body);
	ret = ph_ctl_http_connect(&cl, (const struct sockaddr *)&o->addr, o->addr_len,
			      connect_deadline_ms);
	if (!ret)
		ret = ph_ctl_http_exchange(&cl, &req, &c->resp);
	c->err = ret;
	c->phase = cl.phase;
	ph_ctl_http_close(&cl);
	return ret;
}

static const char *phase_text(enum ph_ctl_http_phase p)
{
	switch (p) {
	case PH_CTL_PHASE_CONNECT:
		return "connecting";
	case PH_CTL_PHASE_SEND:
		return "sending the request";
	case PH_CTL_PHASE_HEAD:
		return "waiting for the answer";
	case PH_CTL_PHASE_BODY:
		return "reading the answer";
	}
	return "?";
}

/* One line (no prefix, no newline) saying what went wrong with @c */
static void describe(const struct ph_ctl_opts *o, const struct call *c, uint64_t limit_ms,
		     char *buf, size_t size)
{
	char text[256], dur[32];

	switch (c->err) {
	case 0:
		ph_ctl_error_text(c->body.data, text, sizeof(text));
		snprintf(buf, size, "%s %s: %d %s%s%s", c->method, c->path, c->resp.status,
			 c->resp.reason, *text ? ": " : "", text);
		break;
	case -ETIMEDOUT:
		snprintf(buf, size, "%s %s: no answer from %s within %s (timed out %s)", c->method,
			 c->path, o->host, ph_ctl_fmt_ms(dur, sizeof(dur), limit_ms),
			 phase_text(c->phase));
		break;
	case -EPROTO:
	case -EMSGSIZE:
		snprintf(buf, size, "%s %s: invalid HTTP answer from %s (%s)", c->method, c->path,
			 o->host, c->err == -EPROTO ? "malformed" : "too large");
		break;
	case -ECONNABORTED:
		snprintf(buf, size, "%s %s: %s closed the connection before answering in full",
			 c->method, c->path, o->host);
		break;
	default:
		if (c->phase == PH_CTL_PHASE_CONNECT)
			snprintf(buf, size, "cannot connect to %s: %s", o->host, strerror(-c->err));
		else
			snprintf(buf, size, "%s %s: connection to %s failed %s: %s", c->method,
				 c->path, o->host, phase_text(c->phase), strerror(-c->err));
		break;
	}
}

/* Print why @c failed (if it did). Return: its exit status */
static int report(const struct ph_ctl_opts *o, const struct call *c, uint64_t limit_ms, FILE *err)
{
	int code = ph_ctl_exit_code(c->err, c->resp.status);
	char msg[512];

	if (code != PH_CTL_EXIT_OK) {
		describe(o, c, limit_ms, msg, sizeof(msg));
		fprintf(err, "portholectl: %s\n", msg);
	}
	return code;
}

static void print_raw(FILE *out, const struct ph_ctl_http_buf *b)
{
	if (!b->len)
		return;
	fwrite(b->data, 1, b->len, out);
	if (b->data[b->len - 1] != '\n')
		fputc('\n', out);
}

/* health, ports, prepare, resume: one exchange within --timeout */
static int cmd_simple(const struct ph_ctl_opts *o, const char *method, const char *path,
		      uint64_t timeout_ms, FILE *out, FILE *err)
{
	struct call c = { .method = method, .path = path };
	uint64_t deadline = ph_now_ms() + timeout_ms;
	int code;

	do_call(o, &c, deadline, deadline);
	code = report(o, &c, timeout_ms, err);
	if (code != PH_CTL_EXIT_OK)
		goto out;
	if (o->json) {
		print_raw(out, &c.body);
	} else if ((o->cmd == PH_CTL_PORTS && ph_ctl_print_ports(out, c.body.data)) ||
		   (o->cmd == PH_CTL_HEALTH && ph_ctl_print_health(out, c.body.data))) {
		fprintf(err, "portholectl: %s %s: unexpected answer from %s (not the expected JSON)\n",
			method, path, o->host);
		code = PH_CTL_EXIT_ERROR;
	}
out:
	ph_ctl_http_buf_free(&c.body);
	return code;
}

/* POST /daemon/upgrade[?binary=PATH]: the new pid, or the reason it failed (exit 1) */
static int cmd_upgrade(const struct ph_ctl_opts *o, FILE *out, FILE *err)
{
	static const char hex[] = "0123456789ABCDEF";
	char path[3 * sizeof(o->binary) + 32];
	struct call c = { .method = "POST", .path = path };
	uint64_t deadline = ph_now_ms() + o->timeout_ms;
	struct ph_jv *j, *pid;
	size_t n;
	int code;

	n = (size_t)snprintf(path, sizeof(path), "/daemon/upgrade%s", o->binary[0] ? "?binary=" : "");
	for (const unsigned char *p = (const unsigned char *)o->binary; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("/-._~", *p)) {
			path[n++] = (char)*p;
		} else {
			path[n++] = '%';
			path[n++] = hex[*p >> 4];
			path[n++] = hex[*p & 15];
		}
	}
	path[n] = '\0';
	do_call(o, &c, deadline, deadline);
	code = report(o, &c, o->timeout_ms, err);
	if (code != PH_CTL_EXIT_OK)
		goto out;
	if (o->json) {
		print_raw(out, &c.body);
		goto out;
	}
	j = c.body.data ? ph_json_parse(c.body.data, false) : NULL;
	pid = j ? ph_json_get(j, "pid") : NULL;
	if (pid && pid->type == PH_J_INT) {
		fprintf(out, "upgraded: pid %lld\n", pid->i);
	} else {
		fprintf(err, "portholectl: POST /daemon/upgrade: unexpected answer from %s\n", o->host);
		code = PH_CTL_EXIT_ERROR;
	}
	ph_json_free(j);
out:
	ph_ctl_http_buf_free(&c.body);
	return code;
}

static void sleep_until(uint64_t t_ms)
{
	uint64_t now = ph_now_ms();
	struct timespec ts;

	if (t_ms <= now)
		return;
	ts.tv_sec = (time_t)((t_ms - now) / 1000);
	ts.tv_nsec = (long)((t_ms - now) % 1000) * 1000000;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/**
 * wait_ready() - poll /health until it answers 200 or @timeout_ms passes
 * @ready_ms:	result: milliseconds until the 200
 *
 * Prints "ready after N ms", or with --json {"ready_ms":N,"attempts":A}
 * unless @quiet (restore prints one object of its own).
 * Return: PH_CTL_EXIT_OK, or PH_CTL_EXIT_TIMEOUT (whatever the attempts failed with)
 */
static int wait_ready(const struct ph_ctl_opts *o, uint64_t timeout_ms, FILE *out, FILE *err,
		      bool quiet, uint64_t *ready_ms)
{
	uint64_t start = ph_now_ms(), deadline = start + timeout_ms, now;
	struct call c = { .method = "GET", .path = "/health" };
	char last[512] = "", dur[32];
	unsigned attempts = 0;
	int code = PH_CTL_EXIT_TIMEOUT;

	for (;;) {
		uint64_t t0 = ph_now_ms();
		uint64_t cdl = t0 + o->connect_ms < deadline ? t0 + o->connect_ms : deadline;

		attempts++;
		do_call(o, &c, deadline, cdl);
		if (!c.err && c.resp.status == 200) {
			*ready_ms = ph_now_ms() - start;
			if (!o->json)
				fprintf(out, "ready after %llu ms\n", (unsigned long long)*ready_ms);
			else if (!quiet)
				fprintf(out, "{\"ready_ms\":%llu,\"attempts\":%u}\n",
					(unsigned long long)*ready_ms, attempts);
			code = PH_CTL_EXIT_OK;
			break;
		}
		/*
		 * Remember why this attempt failed. An attempt cut short by the
		 * overall deadline says nothing new when an earlier one had a
		 * real answer ("refused", a 503): keep that one for the message.
		 */
		if (c.err == -ETIMEDOUT && c.phase == PH_CTL_PHASE_CONNECT && ph_now_ms() < deadline)
			snprintf(last, sizeof(last), "no connection within %s",
				 ph_ctl_fmt_ms(dur, sizeof(dur), o->connect_ms));
		else if (c.err != -ETIMEDOUT || !last[0])
			describe(o, &c, timeout_ms, last, sizeof(last));
		now = ph_now_ms();
		if (now >= deadline)
			break;
		sleep_until(t0 + o->poll_ms < deadline ? t0 + o->poll_ms : deadline);
		if (ph_now_ms() >= deadline)
			break;
	}
	if (code != PH_CTL_EXIT_OK)
		fprintf(err, "portholectl: %s not ready within %s after %u attempts (last: %s)\n",
			o->host, ph_ctl_fmt_ms(dur, sizeof(dur), timeout_ms), attempts, last);
	ph_ctl_http_buf_free(&c.body);
	return code;
}

static int cmd_restore(const struct ph_ctl_opts *o, FILE *out, FILE *err)
{
	struct call c = { .method = "POST", .path = "/snapshot/resume" };
	uint64_t t0, deadline, ready_ms = 0, resumed_ms;
	int code;

	code = wait_ready(o, o->ready_timeout_ms, out, err, true, &ready_ms);
	if (code != PH_CTL_EXIT_OK)
		return code;
	/* a fresh deadline, never what the first phase left over */
	t0 = ph_now_ms();
	deadline = t0 + o->resume_timeout_ms;
	do_call(o, &c, deadline, deadline);
	code = report(o, &c, o->resume_timeout_ms, err);
	resumed_ms = ph_now_ms() - t0;
	if (code == PH_CTL_EXIT_OK && o->json)
		fprintf(out, "{\"ready_ms\":%llu,\"resumed_ms\":%llu}\n",
			(unsigned long long)ready_ms, (unsigned long long)resumed_ms);
	else if (code == PH_CTL_EXIT_OK)
		fprintf(out, "resumed after %llu ms\n", (unsigned long long)resumed_ms);
	ph_ctl_http_buf_free(&c.body);
	return code;
}

/**
 * struct watch - state of portholectl watch
 * @out:	where events go
 * @resp:	the response (its status tells the body consumer what it gets)
 * @sse:	event-stream parser (2xx)
 * @body:	error body (other statuses)
 * @json:	print events as JSON lines
 */
struct watch {
	FILE *out;
	struct ph_ctl_http_resp *resp;
	struct ph_ctl_sse sse;
	struct ph_ctl_http_buf body;
	bool json;
	bool upgraded;	/* the daemon said "event: upgrade": reconnect */
};

static int watch_event(void *arg, const char *event, const char *data)
{
	struct watch *w = arg;

	if (!strcmp(event, "upgrade"))
		w->upgraded = true;

	if (w->json) {
		/* {"event":E,"data":D}: D as sent when it is JSON (its line
		 * breaks are whitespace then, so they become blanks), else as a string */
		struct ph_jv *d = ph_json_parse(data, false);

		fputs("{\"event\":", w->out);
		ph_json_put_string(w->out, event);
		fputs(",\"data\":", w->out);
		if (d) {
			for (const char *c = data; *c; c++)
				fputc(*c == '\n' || *c == '\r' || *c == '\t' ? ' ' : *c, w->out);
		} else {
			ph_json_put_string(w->out, data);
		}
		fputs("}\n", w->out);
		ph_json_free(d);
	} else {
		ph_ctl_print_event(w->out, event, data);
	}
	/* one line per event as it happens, even into a pipe */
	if (fflush(w->out) || ferror(w->out))
		return -EPIPE;
	return 0;
}

static int watch_body(void *arg, const char *data, size_t len)
{
	struct watch *w = arg;

	if (w->resp->status / 100 == 2)
		return ph_ctl_sse_feed(&w->sse, data, len);
	return ph_ctl_http_buf_append(&w->body, data, len);
}

/* One event stream; *@upgraded: it ended after "event: upgrade" */
static int watch_once(const struct ph_ctl_opts *o, FILE *out, FILE *err, bool *upgraded)
{
	struct ph_ctl_http_request req = {
		.method = "GET", .path = "/ports/events", .host = o->host, .token = o->token,
		.accept = "text/event-stream",
	};
	struct call c = { .method = "GET", .path = "/ports/events" };
	struct watch w = { .out = out, .resp = &c.resp, .json = o->json };
	uint64_t deadline = ph_now_ms() + o->timeout_ms;
	struct ph_ctl_http_client cl;
	int ret, code;

	ph_ctl_sse_init(&w.sse, watch_event, NULL, &w);
	ph_ctl_http_resp_init(&c.resp, watch_body, &w);
	ph_ctl_http_client_init(&cl, deadline);
	ret = ph_ctl_http_catch_signals();
	if (!ret)
		ret = ph_ctl_http_connect(&cl, (const struct sockaddr *)&o->addr, o->addr_len, deadline);
	if (!ret)
		ret = ph_ctl_http_send_request(&cl, &req);
	/* --timeout covers the answer's head; the stream itself has no end */
	if (!ret)
		ret = ph_ctl_http_read_response(&cl, &c.resp, true);
	if (!ret && c.resp.status / 100 == 2 &&
	    strncasecmp(c.resp.content_type, "text/event-stream", 17)) {
		fprintf(err, "portholectl: GET /ports/events: answer from %s is not an event stream\n",
			o->host);
		code = PH_CTL_EXIT_ERROR;
		goto out;
	}
	if (!ret) {
		if (c.resp.status / 100 != 2)
			cl.deadline_ms = deadline;	/* an error body: still bounded */
		else
			cl.deadline_ms = PH_CTL_HTTP_NO_DEADLINE;
		ret = ph_ctl_http_read_response(&cl, &c.resp, false);
	}
	c.err = ret;
	c.phase = cl.phase;
	if (ret == -EPIPE && ferror(out)) {
		code = PH_CTL_EXIT_OK;	/* our reader went away (watch | head) */
		goto out;
	}
	*upgraded = w.upgraded;
	if (w.upgraded && (!ret || ret == -ECONNRESET || ret == -EPIPE)) {
		code = PH_CTL_EXIT_CONNECT;	/* the caller reconnects */
		goto out;
	}
	if (!ret && c.resp.status / 100 == 2) {
		/* the daemon ended the stream (it stopped, or a prepare closed it) */
		fprintf(err, "portholectl: GET /ports/events: %s ended the event stream\n", o->host);
		code = PH_CTL_EXIT_CONNECT;
		goto out;
	}
	c.body = w.body;
	code = report(o, &c, o->timeout_ms, err);
	c.body = (struct ph_ctl_http_buf){ 0 };
out:
	ph_ctl_http_close(&cl);
	ph_ctl_sse_free(&w.sse);
	ph_ctl_http_buf_free(&w.body);
	return code;
}

/*
 * watch: one stream, and after an upgrade (the daemon sends "event: upgrade"
 * and closes it) the next one from the new process: retried with a back-off
 * (PH_CTL_WATCH_BACKOFF_MIN_MS doubling to _MAX_MS) for up to
 * PH_CTL_WATCH_RECONNECT_MS, each success said on stderr. The new stream
 * starts with a snapshot of the ports, so nothing is missed for good.
 */
static int cmd_watch(const struct ph_ctl_opts *o, FILE *out, FILE *err)
{
	bool upgraded = false;
	int code = watch_once(o, out, err, &upgraded);

	while (upgraded) {
		uint64_t backoff = PH_CTL_WATCH_BACKOFF_MIN_MS;
		uint64_t give_up = ph_now_ms() + PH_CTL_WATCH_RECONNECT_MS;
		unsigned attempt = 0;
		FILE *quiet = tmpfile();

		upgraded = false;
		for (;;) {
			attempt++;
			sleep_until(ph_now_ms() + backoff);
			fprintf(err, "portholectl: the daemon was upgraded; reconnecting to %s "
				"(attempt %u)\n", o->host, attempt);
			fflush(err);
			code = watch_once(o, out, quiet ? quiet : err, &upgraded);
			if (upgraded || code != PH_CTL_EXIT_CONNECT || ph_now_ms() >= give_up)
				break;
			backoff = backoff * 2 > PH_CTL_WATCH_BACKOFF_MAX_MS ?
				  PH_CTL_WATCH_BACKOFF_MAX_MS : backoff * 2;
		}
		if (quiet)
			fclose(quiet);
		if (!upgraded && code == PH_CTL_EXIT_CONNECT)
			fprintf(err, "portholectl: GET /ports/events: could not reconnect to %s\n",
				o->host);
	}
	return code;
}

int ph_ctl_run(const struct ph_ctl_opts *o, FILE *out, FILE *err)
{
	switch (o->cmd) {
	case PH_CTL_HEALTH:
		return cmd_simple(o, "GET", "/health", o->timeout_ms, out, err);
	case PH_CTL_PORTS:
		return cmd_simple(o, "GET", "/ports", o->timeout_ms, out, err);
	case PH_CTL_PREPARE:
		return cmd_simple(o, "POST", "/snapshot/prepare", o->timeout_ms, out, err);
	case PH_CTL_RESUME:
		return cmd_simple(o, "POST", "/snapshot/resume", o->timeout_ms, out, err);
	case PH_CTL_WAIT_READY:
		return wait_ready(o, o->timeout_ms, out, err, false, &(uint64_t){ 0 });
	case PH_CTL_RESTORE:
		return cmd_restore(o, out, err);
	case PH_CTL_WATCH:
		return cmd_watch(o, out, err);
	case PH_CTL_UPGRADE:
		return cmd_upgrade(o, out, err);
	}
	return PH_CTL_EXIT_USAGE;
}
