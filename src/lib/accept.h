/* SPDX-License-Identifier: MIT */
/* accept.h - accepting without spinning when descriptors or memory run out
 *
 * Both accept loops of the daemon (the port worker's external listeners and
 * the control API's listener) are level-triggered: a listener whose queue is
 * not empty stays readable. If accept4() fails for want of descriptors or
 * memory, retrying at once would spin; instead the caller stops watching its
 * listener(s), the clients wait in the kernel backlog, and a timer resumes
 * accepting after PH_ACCEPT_PAUSE_MS. This header is that one rule.
 */
#ifndef PH_ACCEPT_H
#define PH_ACCEPT_H

#include <stdbool.h>

#include "log.h"
#include "loop.h"

/* accept4() calls per readiness, so one busy listener cannot starve the loop */
#define PH_ACCEPT_BATCH		64
/* how long a listener rests after running out of descriptors or memory */
#define PH_ACCEPT_PAUSE_MS	100

/**
 * struct ph_accept_backoff - one accept loop's pause timer and log limiter
 * @timer:	fires PH_ACCEPT_PAUSE_MS after a pause; its callback resumes
 * @rl:		the "accept paused" warning, at most 3 a minute
 */
struct ph_accept_backoff {
	struct ph_timer timer;
	struct ph_ratelimit rl;
};

/**
 * ph_accept_exhausted() - is @err (positive errno) a shortage, not a client's fault?
 *
 * EMFILE, ENFILE, ENOBUFS and ENOMEM: trying again at once would fail again.
 * Anything else (EAGAIN, ECONNABORTED, EINTR...) concerns one client only.
 */
bool ph_accept_exhausted(int err);

/**
 * ph_accept_backoff() - log the pause (rate-limited) and arm the resume timer
 * @loop:	the accept loop's event loop
 * @b:		its back-off state
 * @err:	the shortage (positive errno)
 * @what:	which listener, for the log ("API", or NULL for a port)
 * @port:	the port for the log, 0 for none
 * @resume:	timer callback that watches the listener(s) again
 *
 * The caller has stopped (or stops now) watching its listener(s) for input.
 */
void ph_accept_backoff(struct ph_loop *loop, struct ph_accept_backoff *b, int err,
		       const char *what, unsigned port, ph_timer_fn resume);

#endif /* PH_ACCEPT_H */
