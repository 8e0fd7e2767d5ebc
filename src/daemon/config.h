/* SPDX-License-Identifier: MIT */
/* config.h - portholed's settings and command-line parsing */
#ifndef PH_DAEMON_CONFIG_H
#define PH_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"
#include "porthole.h"
#include "token.h"

/**
 * struct ph_http_limits - deadlines and limits of the HTTP control API
 * @head_timeout_ms:	a request head must be complete this long after its first byte
 * @idle_timeout_ms:	keep-alive connection with no request in progress
 * @write_timeout_ms:	a response (or SSE stream) the client does not read is dropped
 * @max_conns:		API connections at once (see http.c: eviction, then 503)
 * @max_streams:	event streams at once; a new one evicts the oldest (0: no cap)
 * @max_head:		request head bytes (431 beyond)
 * @max_body:		request body bytes (413 beyond)
 * @sse_ping_ms:	interval of ": ping" comments on event streams
 * @sse_queue:		events queued per event-stream client before it loses some
 */
struct ph_http_limits {
	uint64_t head_timeout_ms;
	uint64_t idle_timeout_ms;
	uint64_t write_timeout_ms;
	unsigned max_conns;
	unsigned max_streams;
	size_t max_head;
	size_t max_body;
	uint64_t sse_ping_ms;
	size_t sse_queue;
};

/**
 * struct ph_daemon_config - everything portholed is told on its command line
 * @ports:	the port subsystem's settings
 * @listen:	control API address (--listen, default 0.0.0.0:49982)
 * @listen_len:	its length
 * @listen_str:	as given, for logs
 * @token:	bearer token read from --token-file (NUL-terminated); empty: no auth
 * @token_len:	its length
 * @token_path:	--token-file, re-read on SIGHUP; NULL when not given
 * @http:	API deadlines and limits
 * @log_format, @log_level: logging
 * @cgroup_dir:	cgroup v2 directory to move into at start, NULL for none
 * @supervise_arg: --supervise (run as the supervisor of a portholed child):
 *		the argv string that said it (getopt accepts abbreviations),
 *		left out of the child's command line; NULL when not given
 * @upgrade_timeout_ms: --upgrade-timeout: an upgrade's new process must
 *		have taken everything over within this long (default 5000)
 */
struct ph_daemon_config {
	struct ph_config ports;
	struct sockaddr_storage listen;
	socklen_t listen_len;
	char listen_str[64];
	char token[PH_TOKEN_MAX];
	size_t token_len;
	const char *token_path;
	struct ph_http_limits http;
	enum ph_log_format log_format;
	enum ph_log_level log_level;
	const char *cgroup_dir;
	const char *supervise_arg;
	unsigned upgrade_timeout_ms;
};

enum ph_config_result { PH_CONFIG_RUN, PH_CONFIG_EXIT_OK, PH_CONFIG_USAGE };

/**
 * ph_daemon_config_parse() - defaults, then the command line
 * @cfg:	result
 * @argc, @argv: arguments
 * @out:	where --help and --version print
 * @err:	where errors are printed (one line naming the flag)
 *
 * Return: PH_CONFIG_RUN; PH_CONFIG_EXIT_OK after --help/--version;
 * PH_CONFIG_USAGE for an invalid flag or value (exit status 2)
 */
enum ph_config_result ph_daemon_config_parse(struct ph_daemon_config *cfg, int argc, char **argv,
					     FILE *out, FILE *err);

#endif /* PH_DAEMON_CONFIG_H */
