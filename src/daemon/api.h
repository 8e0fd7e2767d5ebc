/* SPDX-License-Identifier: MIT */
/* api.h - portholed's HTTP control API on the daemon's event loop */
#ifndef PH_API_H
#define PH_API_H

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

/* Inode of the listening control socket (so discovery never exposes it) */
uint64_t ph_api_listen_inode(const struct ph_api *api);

/* Close every API connection and the listener, free everything. NULL is fine. */
void ph_api_free(struct ph_api *api);

#endif /* PH_API_H */
