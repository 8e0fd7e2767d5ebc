// SPDX-License-Identifier: MIT
/* fuzz_http.c - libFuzzer harness: arbitrary bytes through the API's connection layer and router
 *
 * Each input goes to a fresh detached connection (no socket) of the real
 * control API, backed by a port subsystem that is created but never started
 * (so every route runs, deterministically, without threads). Byte 0 picks
 * whether a bearer token is required; byte 1 the size of the pieces the
 * rest is fed in, so request boundaries fall everywhere. Whatever comes in,
 * what goes out must be a sequence of HTTP/1.1 responses.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "config.h"
#include "http.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ph_loop loop;
static struct ph_daemon_config cfg;
static struct ph_ports *ports;
static struct ph_api *api;

static void init(void)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg.listen;

	ph_log_setup(PH_LOG_TEXT, PH_LOG_ERROR);
	ph_config_defaults(&cfg.ports);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin->sin_port = 0;	/* bound, never connected to */
	cfg.listen_len = sizeof(*sin);
	cfg.http = (struct ph_http_limits){
		.head_timeout_ms = 5000, .idle_timeout_ms = 640000, .write_timeout_ms = 30000,
		.max_conns = 256, .max_head = 16384, .max_body = 65536, .sse_ping_ms = 15000,
		.sse_queue = 8,
	};
	strcpy(cfg.token, "fuzz-token");
	if (ph_loop_init(&loop, NULL, NULL))
		abort();
	ports = ph_ports_new(&cfg.ports);
	if (!ports || ph_api_new(&api, &loop, &cfg, ports))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ph_buf out = { 0 };
	struct ph_http_conn *c;
	size_t piece;
	int closed = 0;

	if (!api)
		init();
	if (size < 2)
		return 0;
	cfg.token_len = data[0] & 1 ? strlen(cfg.token) : 0;
	piece = data[1] ? data[1] : size;
	data += 2;
	size -= 2;
	c = ph_http_conn_new(ph_api_http_server(api), -1, &out);
	if (!c)
		abort();
	while (size && !closed) {
		size_t n = size < piece ? size : piece;

		closed = ph_http_conn_feed(c, data, n);
		data += n;
		size -= n;
	}
	if (!closed)
		ph_http_conn_eof(c);
	ph_loop_run_once(&loop, 0);	/* deferred frees */
	if (out.len && (out.len < 12 || memcmp(out.data, "HTTP/1.1 ", 9)))
		abort();
	if (out.len && !strstr(out.data, "\r\nCache-Control: no-store\r\n"))
		abort();
	ph_buf_free(&out);
	return 0;
}
