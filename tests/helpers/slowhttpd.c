// SPDX-License-Identifier: MIT
/* slowhttpd.c - a fake portholed control API with injectable delays, for portholectl's tests
 *
 * Usage: slowhttpd --listen ADDR:PORT [--listen-delay DUR] [--health-delay DUR]
 *                  [--prepare-delay DUR] [--resume-delay DUR] [--fail-status CODE]
 *                  [--token TOKEN] [--garbage] [--record FILE]
 *
 *   --listen-delay DUR   bind and listen only DUR after start (connects are refused until then)
 *   --health-delay DUR   GET /health is answered no earlier than DUR after start (held, not refused)
 *   --prepare-delay DUR, --resume-delay DUR
 *                        POST /snapshot/{prepare,resume} are answered DUR after they arrive
 *   --fail-status CODE   prepare and resume answer CODE with {"error":"injected failure"}
 *   --token TOKEN        everything but /health needs "Authorization: Bearer TOKEN" (else 401)
 *   --garbage            answer every request with a malformed status line
 *   --record FILE        append "MS recv METHOD PATH auth=yes|no" when a request head
 *                        arrives and "MS sent METHOD PATH STATUS" when it is answered
 *                        (MS: milliseconds since start)
 *
 * Also serves a canned GET /ports (chunked) and GET /ports/events (an event
 * stream: snapshot, open, a ping, lost, close, then pings every 100 ms,
 * written in awkward pieces) so portholectl's parsing is tested without the
 * real daemon. One thread per connection, one request per connection.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"

static struct {
	uint64_t start_ms;
	uint64_t listen_delay_ms, health_delay_ms, prepare_delay_ms, resume_delay_ms;
	int fail_status;
	const char *token;
	bool garbage;
	FILE *record;
	pthread_mutex_t lock;
	bool quiesced;
} srv = { .lock = PTHREAD_MUTEX_INITIALIZER };

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void record(const char *fmt, ...)
{
	va_list ap;

	if (!srv.record)
		return;
	pthread_mutex_lock(&srv.lock);
	fprintf(srv.record, "%llu ", (unsigned long long)(now_ms() - srv.start_ms));
	va_start(ap, fmt);
	vfprintf(srv.record, fmt, ap);
	va_end(ap);
	fputc('\n', srv.record);
	fflush(srv.record);
	pthread_mutex_unlock(&srv.lock);
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_str(int fd, const char *s)
{
	return send_all(fd, s, strlen(s));
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Whatever";
	}
}

/* A complete answer with Content-Length (or none for 204) */
static void answer(int fd, int status, const char *extra, const char *body)
{
	char head[512];

	if (status == 204)
		snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\nConnection: close\r\n%s\r\n",
			 extra ? extra : "");
	else
		snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
			 status, reason(status), strlen(body), extra ? extra : "");
	if (!send_str(fd, head) && status != 204)
		send_str(fd, body);
}

/* One chunk of chunked coding */
static int chunk(int fd, const char *data)
{
	char size[32];

	snprintf(size, sizeof(size), "%zx\r\n", strlen(data));
	if (send_str(fd, size) || send_str(fd, data))
		return -EPIPE;
	return send_str(fd, "\r\n");
}

static const char ports_body[] =
	"{\"external_address\":\"169.254.0.21\",\"external_addresses\":[\"169.254.0.21\"],\"ports\":["
	"{\"port\":8000,\"family\":\"ipv4\",\"address\":\"127.0.0.1\",\"state\":\"forwarded\","
	"\"connections\":2,\"addresses\":[\"169.254.0.21\"],\"since\":\"2024-05-01T12:00:00Z\"},"
	"{\"port\":5432,\"family\":\"ipv6\",\"address\":\"::1\",\"state\":\"conflict\","
	"\"error\":\"Address already in use\"}]}";

static void serve_ports(int fd)
{
	size_t half = sizeof(ports_body) / 2;
	char first[sizeof(ports_body)];

	memcpy(first, ports_body, half);
	first[half] = '\0';
	if (send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n") ||
	    chunk(fd, first) || chunk(fd, ports_body + half))
		return;
	send_str(fd, "0\r\nX-Trailer: yes\r\n\r\n");
}

/* Event stream in pieces that split lines, CRLFs and chunk boundaries */
static void serve_events(int fd)
{
	static const char *const pieces[] = {
		"event: snapshot\ndata: ", ports_body, "\n\n",
		": ping\n\n",
		"event: open\r\ndata: {\"port\":9000,\"family\":\"ipv4\",\"addr",
		"ess\":\"127.0.0.1\",\"state\":\"forwarded\",\"connections\":0}\r",
		"\n\r\n",
		"event: lost\ndata: 7\n\n",
		"event: close\rdata: {\"port\":9000,\"family\":\"ipv4\",\"address\":\"127.0.0.1\","
		"\"state\":\"forwarded\"}\r\r",
	};

	if (send_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			 "Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n\r\n"))
		return;
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		if (chunk(fd, pieces[i]))
			return;
		sleep_ms(5);
	}
	/* until the client goes away, bounded */
	for (int i = 0; i < 600; i++) {
		sleep_ms(100);
		if (chunk(fd, ": ping\n\n"))
			return;
	}
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg, status = 0;
	char req[8192], method[16] = "", path[256] = "", auth[600];
	size_t len = 0;
	bool authed;
	char *p;

	/* read the head (our client sends no body) */
	while (len < sizeof(req) - 1) {
		ssize_t n = recv(fd, req + len, sizeof(req) - 1 - len, 0);

		if (n <= 0)
			goto out;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (sscanf(req, "%15s %255s", method, path) != 2)
		goto out;
	snprintf(auth, sizeof(auth), "\r\nAuthorization: Bearer %s\r\n", srv.token ? srv.token : "");
	authed = srv.token && strstr(req, auth);
	p = strcasestr(req, "\r\nauthorization:");
	record("recv %s %s auth=%s", method, path, p ? "yes" : "no");

	if (srv.garbage) {
		send_str(fd, "HTTP/1.1 2x0 Broken\r\n\r\n");
		status = -1;
		goto done;
	}
	if (strcmp(path, "/health") && srv.token && !authed) {
		status = 401;
		answer(fd, status, "WWW-Authenticate: Bearer\r\n",
		       "{\"error\":\"missing or invalid token\"}");
		goto done;
	}
	if (!strcmp(path, "/health")) {
		uint64_t due = srv.start_ms + srv.health_delay_ms, now = now_ms();
		char body[128];

		if (due > now)
			sleep_ms(due - now);
		pthread_mutex_lock(&srv.lock);
		snprintf(body, sizeof(body), "{\"version\":\"9.9.9\",\"state\":\"%s\"}",
			 srv.quiesced ? "quiesced" : "running");
		pthread_mutex_unlock(&srv.lock);
		status = 200;
		answer(fd, status, NULL, body);
	} else if (!strcmp(path, "/snapshot/prepare") || !strcmp(path, "/snapshot/resume")) {
		bool prepare = !strcmp(path, "/snapshot/prepare");

		if (strcmp(method, "POST")) {
			status = 405;
			answer(fd, status, "Allow: POST\r\n", "{\"error\":\"method not allowed\"}");
			goto done;
		}
		sleep_ms(prepare ? srv.prepare_delay_ms : srv.resume_delay_ms);
		if (srv.fail_status) {
			status = srv.fail_status;
			answer(fd, status, NULL, "{\"error\":\"injected failure\"}");
			goto done;
		}
		pthread_mutex_lock(&srv.lock);
		srv.quiesced = prepare;
		pthread_mutex_unlock(&srv.lock);
		status = 204;
		answer(fd, status, NULL, "");
	} else if (!strcmp(path, "/ports")) {
		status = 200;
		serve_ports(fd);
	} else if (!strcmp(path, "/ports/events")) {
		status = 200;
		serve_events(fd);
	} else {
		status = 404;
		answer(fd, status, NULL, "{\"error\":\"not found\"}");
	}
done:
	record("sent %s %s %d", method, path, status);
out:
	close(fd);
	return NULL;
}

static int duration(const char *s, uint64_t *out)
{
	if (ph_parse_duration_ms(s, out)) {
		fprintf(stderr, "slowhttpd: bad duration %s\n", s);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "listen-delay", required_argument, NULL, 'L' },
		{ "health-delay", required_argument, NULL, 'H' },
		{ "prepare-delay", required_argument, NULL, 'P' },
		{ "resume-delay", required_argument, NULL, 'R' },
		{ "fail-status", required_argument, NULL, 'f' },
		{ "token", required_argument, NULL, 't' },
		{ "garbage", no_argument, NULL, 'g' },
		{ "record", required_argument, NULL, 'r' },
		{ 0 },
	};
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	int c, lfd, one = 1;

	srv.start_ms = now_ms();
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (ph_parse_hostport(optarg, &ss, &sslen, 0)) {
				fprintf(stderr, "slowhttpd: bad address %s\n", optarg);
				return 2;
			}
			break;
		case 'L':
			if (duration(optarg, &srv.listen_delay_ms))
				return 2;
			break;
		case 'H':
			if (duration(optarg, &srv.health_delay_ms))
				return 2;
			break;
		case 'P':
			if (duration(optarg, &srv.prepare_delay_ms))
				return 2;
			break;
		case 'R':
			if (duration(optarg, &srv.resume_delay_ms))
				return 2;
			break;
		case 'f':
			srv.fail_status = atoi(optarg);
			break;
		case 't':
			srv.token = optarg;
			break;
		case 'g':
			srv.garbage = true;
			break;
		case 'r':
			srv.record = fopen(optarg, "a");
			if (!srv.record) {
				perror(optarg);
				return 2;
			}
			break;
		default:
			return 2;
		}
	}
	if (!sslen) {
		fprintf(stderr, "slowhttpd: --listen ADDR:PORT is required\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sleep_ms(srv.listen_delay_ms);
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&ss, sslen) || listen(lfd, 128)) {
		perror("slowhttpd: listen");
		return 1;
	}
	record("listening");
	for (;;) {
		pthread_t t;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("slowhttpd: accept");
			return 1;
		}
		if (pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd)) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
}
