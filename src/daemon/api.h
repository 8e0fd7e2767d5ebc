/* SPDX-License-Identifier: MIT */
/* api.h - portholed's HTTP control API on the daemon's event loop */
#ifndef PH_API_H
#define PH_API_H

#include <sys/types.h>

#include "config.h"
#include "loop.h"
#include "porthole.h"

struct ph_api;

/**
 * ph_api_new() - bind the control socket and serve it on @loop
 * @out:	the API instance
 * @loop:	the daemon's main event loop (the API runs on its thread)
 * @cfg:	daemon configuration (kept by reference; must outlive the API)
 * @ports:	the port subsystem (for /ports, the snapshot endpoints, events, metrics)
 *
 * Return: 0 or -errno (e.g. -EADDRINUSE), logged by the caller
 */
int ph_api_new(struct ph_api **out, struct ph_loop *loop, const struct ph_daemon_config *cfg,
	       struct ph_ports *ports);

/**
 * ph_api_upgrade_fn - runs an upgrade (POST /daemon/upgrade)
 * @arg:	ph_api_set_upgrade()'s
 * @binary:	the new program, NULL for this one's path
 * @pid:	the new process on success
 * @why, @len:	the reason of a failure
 * Return: 0, -EBUSY (one is in progress) or another -errno
 */
typedef int (*ph_api_upgrade_fn)(void *arg, const char *binary, pid_t *pid, char *why,
				 size_t len);

/* Let POST /daemon/upgrade call @fn (without it the endpoint answers 503) */
void ph_api_set_upgrade(struct ph_api *api, ph_api_upgrade_fn fn, void *arg);

/**
 * ph_api_upgraded() - a new process took over: stop accepting, send every
 * event stream "event: upgrade" and close it (once written)
 * @api:	API
 * @pid:	the new process
 */
void ph_api_upgraded(struct ph_api *api, pid_t pid);

/* Inode of the listening control socket (so discovery never exposes it) */
uint64_t ph_api_listen_inode(const struct ph_api *api);

/* Close every API connection and the listener, free everything. NULL is fine. */
void ph_api_free(struct ph_api *api);

#endif /* PH_API_H */
