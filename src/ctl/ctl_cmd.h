/* SPDX-License-Identifier: MIT */
/* ctl_cmd.h - portholectl's command line and commands */
#ifndef PH_CTL_CMD_H
#define PH_CTL_CMD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "token.h"

#define PH_CTL_DEFAULT_ADDR	"127.0.0.1:49982"
#define PH_CTL_DEFAULT_TIMEOUT	5000	/* ms, per command (and per restore phase) */
#define PH_CTL_POLL_MS		20	/* wait-ready: one /health attempt started every 20 ms */
#define PH_CTL_CONNECT_MS	1000	/* wait-ready: one attempt's connect, then a fresh SYN */
#define PH_CTL_UPGRADE_TIMEOUT	30000	/* upgrade's default deadline (the daemon's own is 5 s) */
#define PH_CTL_WATCH_BACKOFF_MIN_MS 50	/* watch: first wait before reconnecting after an upgrade */
#define PH_CTL_WATCH_BACKOFF_MAX_MS 2000
#define PH_CTL_WATCH_RECONNECT_MS 30000	/* watch: give up reconnecting after this long */

/* Exit status of portholectl */
enum ph_ctl_exit {
	PH_CTL_EXIT_OK = 0,
	PH_CTL_EXIT_ERROR = 1,		/* the daemon answered with an error (or garbage) */
	PH_CTL_EXIT_USAGE = 2,
	PH_CTL_EXIT_TIMEOUT = 3,
	PH_CTL_EXIT_CONNECT = 4,	/* cannot connect, or the connection broke */
};

/* Returned by ph_ctl_parse_args() when the command should run */
#define PH_CTL_RUN (-1)

enum ph_ctl_cmd {
	PH_CTL_HEALTH,
	PH_CTL_PORTS,
	PH_CTL_WATCH,
	PH_CTL_PREPARE,
	PH_CTL_RESUME,
	PH_CTL_WAIT_READY,
	PH_CTL_RESTORE,
	PH_CTL_UPGRADE,
};

/**
 * struct ph_ctl_opts - a parsed command line
 * @cmd:	the command
 * @addr, @addr_len: daemon address (--addr, else $PORTHOLE_ADDR, else 127.0.0.1:49982)
 * @host:	the address as given (Host header and messages)
 * @token:	bearer token, empty for none
 * @timeout_ms:	--timeout: deadline of the command (default 5 s)
 * @ready_timeout_ms: restore: deadline of its wait-ready phase
 * @resume_timeout_ms: restore: deadline of its resume phase, counted from
 *		the end of the first phase
 * @poll_ms:	wait-ready: interval between /health attempts
 * @connect_ms:	wait-ready: limit of one attempt's connect
 * @json:	--json: raw JSON output
 */
struct ph_ctl_opts {
	enum ph_ctl_cmd cmd;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char host[80];
	char token[PH_TOKEN_MAX];
	uint64_t timeout_ms;
	uint64_t ready_timeout_ms;
	uint64_t resume_timeout_ms;
	uint64_t poll_ms;
	uint64_t connect_ms;
	bool json;
	char binary[4096];
};

/**
 * ph_ctl_parse_args() - defaults, environment, then the command line
 * @o:		result
 * @argc, @argv: arguments (options may come before or after the command)
 * @out:	where --help and --version print
 * @err:	where usage errors are printed
 *
 * Reads $PORTHOLE_ADDR and $PORTHOLE_TOKEN_FILE, and the token file.
 *
 * Return: PH_CTL_RUN, PH_CTL_EXIT_OK after --help/--version, or
 * PH_CTL_EXIT_USAGE
 */
int ph_ctl_parse_args(struct ph_ctl_opts *o, int argc, char **argv, FILE *out, FILE *err);

/**
 * ph_ctl_run() - run the parsed command
 * @o:		options
 * @out:	results
 * @err:	error messages (one line each, prefixed "portholectl: ")
 *
 * Return: an exit status (enum ph_ctl_exit)
 */
int ph_ctl_run(const struct ph_ctl_opts *o, FILE *out, FILE *err);

/**
 * ph_ctl_exit_code() - exit status for the outcome of one exchange
 * @err:	0 or the -errno of the transport
 * @status:	HTTP status when @err is 0
 *
 * Return: 0 for 2xx; 1 for another status or a malformed answer (-EPROTO,
 * -EMSGSIZE); 3 for -ETIMEDOUT; 0 for -EINTR (interrupted by the user);
 * 4 for everything else (refused, unreachable, reset, closed early)
 */
int ph_ctl_exit_code(int err, int status);

/* "5s", "1500ms": a duration for messages. Return: @buf */
const char *ph_ctl_fmt_ms(char *buf, size_t size, uint64_t ms);

#endif /* PH_CTL_CMD_H */
