/* SPDX-License-Identifier: MIT */
/* upgrade.h - portholed upgrading itself in place: the old process's side and the new one's */
#ifndef PH_DAEMON_UPGRADE_H
#define PH_DAEMON_UPGRADE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fdstore.h"
#include "handover.h"
#include "porthole.h"

#define PH_UPGRADE_WHY_MAX 256

/**
 * struct ph_upgrade_src - what the old process hands over besides the port subsystem
 * @ports:	the port subsystem
 * @api_fd:	the control API's listener, -1 when none
 * @argc, @argv: the daemon's command line (its configuration)
 * @timeout_ms: --upgrade-timeout
 */
struct ph_upgrade_src {
	struct ph_ports *ports;
	int api_fd;
	int argc;
	char **argv;
	unsigned timeout_ms;
};

/**
 * ph_upgrade_run() - start @binary and hand it everything
 * @u:		what to hand over
 * @binary:	the new program, NULL for the path of this one on disk
 * @pid:	the new process, on success
 * @why, @len:	on failure, the reason (for the API, portholectl and the log)
 *
 * Freezes the port subsystem only once the new process accepted the state
 * version, and thaws it on any failure (after killing the new process, so
 * that the two never relay the same connection at once): the daemon then
 * goes on as if nothing happened. On success this process must close its
 * copies and exit without touching any socket (no reset, no shutdown).
 * Return: 0 or -errno
 */
int ph_upgrade_run(const struct ph_upgrade_src *u, const char *binary, pid_t *pid, char *why,
		   size_t len);

/**
 * struct ph_upgrade_in - the new process's side
 * @sock:	the socketpair end (PORTHOLE_HANDOVER_FD), -1 when not an upgrade
 * @st:		the parsed state
 * @blob:	its bytes (@st points into them)
 * @fds:	received descriptors, in order; -1 once taken
 * @n_fds:	how many
 */
struct ph_upgrade_in {
	int sock;
	struct ph_ho_state st;
	uint8_t *blob;
	int *fds;
	size_t n_fds;
};

/**
 * ph_upgrade_receive() - when started by an upgrade, take the state
 * @in:		filled
 * @why, @len:	the reason of a failure (also told to the old process)
 * Return: 1 when this is no upgrade (no PORTHOLE_HANDOVER_FD), 0 when the
 * state was received and parsed (@in->st.argv is the configuration), -errno
 */
int ph_upgrade_receive(struct ph_upgrade_in *in, char *why, size_t len);

/* Put the handed-over listeners (API, TCP, UDP) in the fd store's pool,
 * where the API and the first scan take them instead of binding */
void ph_upgrade_adopt_listeners(struct ph_upgrade_in *in, struct ph_fdstore *fs);

/**
 * ph_upgrade_finish() - import the relays, tell the old process "taken",
 * wait (bounded) until it closed the handover socket, then tell the service
 * manager the new main pid (MAINPID=, READY=1)
 * @in:		state; released
 * @ports:	the started port subsystem
 * @fs:		the fd store (the notify socket)
 * Return: 0 or -errno (the old process then carries on; this one must exit)
 */
int ph_upgrade_finish(struct ph_upgrade_in *in, struct ph_ports *ports, struct ph_fdstore *fs);

/* Tell the old process why this one gives up, release @in */
void ph_upgrade_fail(struct ph_upgrade_in *in, const char *why);

/* At exit: free the command line an upgrade handed over (the configuration
 * points into it until then) */
void ph_upgrade_argv_free(void);

#endif /* PH_DAEMON_UPGRADE_H */
