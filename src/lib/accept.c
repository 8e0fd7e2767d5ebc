// SPDX-License-Identifier: MIT
/* accept.c - from the external listeners to relays: limits, back-off, dealing clients out
 *
 * Theory of Operation
 * ===================
 * Each FORWARDED port's external listener is watched by the worker loop.
 * When it is readable, up to PH_ACCEPT_BATCH clients are accepted, each one
 * only after everything its relay needs exists (ph_relay_reserve(): the
 * service socket is made before accept()), so running out of descriptors
 * leaves the client queued in the kernel backlog instead of accepting it
 * and dropping it. The client is then relayed on this loop or handed,
 * round-robin, to one of the relay threads (relay_threads.h), with a
 * reference on its port entry.
 *
 * Accepting stops, by taking every listener out of the epoll set, while:
 *  - the daemon is quiesced for a snapshot;
 *  - max_connections relays are open (counting clients on their way to a
 *    relay thread); a relay closing on any thread wakes the worker to look
 *    again;
 *  - descriptors or memory ran out: ph_accept_backoff() rests for
 *    PH_ACCEPT_PAUSE_MS, never a busy loop.
 * Meanwhile the kernel backlog holds the clients.
 *
 * Descriptor reserve: relays never hold a descriptor numbered at or above
 * RLIMIT_NOFILE - PH_FD_RESERVE (64), read at cycle start (relay.h): the
 * control API always has those to accept with. The kernel hands out the
 * lowest free number, so each new descriptor's number tells: a service
 * socket that leaves no room below the ceiling for its client
 * (ph_relay_reserve()) or an accepted client at or above it (then reset:
 * the API took a number in between) counts as EMFILE, with the back-off
 * above; a pipe there leaves its direction copying (relay.c).
 *
 * Fairness: one port stops being watched alone (its listener only) while
 * it has per_port_cap relays open or queued (max_conns_per_port; by default
 * a quarter of max_connections or of the descriptor budget, the smaller),
 * so a flood on one port waits in that port's own backlog while the others
 * accept on. The port's owner.cap_wait tells a relay closing on it, on any
 * thread, to wake the worker, which looks again (accept_update()). The
 * flag is set before the count is read again, and relays decrement the
 * count before they read the flag, both sequentially consistent: one of the
 * two always sees the other.
 *
 * The back-off rule itself (ph_accept_exhausted, ph_accept_backoff) is also
 * the control API's (http.c): one rule for both accept loops.
 */
#include "ports_internal.h"

#include <errno.h>
#include <sys/socket.h>

#include "netutil.h"

/* ---- the back-off rule, shared with the control API ---------------------- */

bool ph_accept_exhausted(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

void ph_accept_backoff(struct ph_loop *loop, struct ph_accept_backoff *b, int err,
		       const char *what, unsigned port, ph_timer_fn resume)
{
	if (ph_ratelimit_ok(&b->rl, loop->now_ms, SCAN_ERR_BURST, SCAN_ERR_WINDOW_MS)) {
		if (what)
			ph_warn("accept paused", PH_FERR(err), PH_FS("listener", what),
				PH_FU("pause_ms", PH_ACCEPT_PAUSE_MS),
				PH_FU("suppressed", b->rl.suppressed));
		else
			ph_warn("accept paused", PH_FERR(err), PH_FU("port", port),
				PH_FU("pause_ms", PH_ACCEPT_PAUSE_MS),
				PH_FU("suppressed", b->rl.suppressed));
	}
	ph_timer_arm(loop, &b->timer, loop->now_ms + PH_ACCEPT_PAUSE_MS, resume);
}

/* ---- the port worker's accepting ----------------------------------------- */

unsigned accept_per_port_cap(const struct ph_config *cfg, int fd_ceiling)
{
	uint64_t base = cfg->max_connections, budget = (uint64_t)fd_ceiling / 2;

	if (cfg->max_conns_per_port)
		return cfg->max_conns_per_port;
	if (budget < base)	/* two descriptors per relay */
		base = budget;
	return base / 4 ? (unsigned)(base / 4) : 1;
}

/* Relays open on @e, and clients on their way to one (seq_cst: see above) */
static uint64_t entry_open(struct port_entry *e)
{
	return (uint64_t)atomic_load(&e->owner.conns) + atomic_load(&e->owner.queued);
}

void accept_entry_uncap(struct cycle *c, struct port_entry *e)
{
	if (!e->capped)
		return;
	e->capped = false;
	c->n_capped--;
	atomic_store(&e->owner.cap_wait, false);
}

/**
 * entry_watch() - watch @e's listener for input iff the cycle accepts and
 * the port is below its cap
 * @c:		cycle
 * @e:		entry
 */
static void entry_watch(struct cycle *c, struct port_entry *e)
{
	bool capped, any = false;

	if (e->d.proto == IPPROTO_UDP)
		return;		/* nothing to accept: the UDP relay reads its sockets */
	for (unsigned j = 0; j < PH_MAX_EXT_ADDRS; j++)
		any |= e->ls[j].fd >= 0;
	if (!any)
		return;
	capped = entry_open(e) >= c->per_port_cap;
	if (capped && !e->capped) {
		/* publish the wait first, then look again (see above) */
		atomic_store(&e->owner.cap_wait, true);
		capped = entry_open(e) >= c->per_port_cap;
		if (capped) {
			e->capped = true;
			c->n_capped++;
			atomic_fetch_add_explicit(&e->cap_hits, 1, memory_order_relaxed);
			ph_debug("port at its connection cap", PH_FU("port", e->d.port),
				 PH_FU("cap", c->per_port_cap));
		} else {
			atomic_store(&e->owner.cap_wait, false);
		}
	} else if (!capped) {
		accept_entry_uncap(c, e);
	}
	for (unsigned j = 0; j < PH_MAX_EXT_ADDRS; j++)
		if (e->ls[j].fd >= 0)
			ph_loop_mod(&c->loop, &e->ls[j].io,
				    c->accepting && !e->capped ? EPOLLIN : 0);
}

static bool should_accept(struct cycle *c)
{
	/* open relays on every thread, and clients on their way to one */
	uint64_t open = atomic_load_explicit(&c->p->stats.conns_active, memory_order_relaxed) +
			atomic_load_explicit(&c->threads.pending, memory_order_relaxed);

	return !c->quiesced && !c->accept_paused && open < c->p->cfg.max_connections;
}

/* Register or unregister every listener for input, to match should_accept(). */
void accept_update(struct cycle *c)
{
	bool want = should_accept(c);

	atomic_store_explicit(&c->limit_wait, !want, memory_order_relaxed);
	if (want == c->accepting && !(want && c->n_capped))
		return;
	c->accepting = want;
	for (size_t i = 0; i < c->n_entries; i++)
		entry_watch(c, c->entries[i]);
}

static void on_accept_resume(struct ph_loop *loop, struct ph_timer *t)
{
	struct cycle *c = ph_container_of(t, struct cycle, accept_backoff.timer);

	(void)loop;
	c->accept_paused = false;
	accept_update(c);
}

void accept_on_relay_closed(struct ph_relay_ctx *ctx, struct ph_relay_owner *owner)
{
	struct cycle *c = ph_container_of(ctx, struct cycle, relays);
	struct port_entry *e = ph_container_of(owner, struct port_entry, owner);

	if (e->capped)
		entry_watch(c, e);
	accept_update(c);
}

/* On a relay thread: a relay closed. Only a worker that stopped accepting,
 * at the limit or at this port's cap, needs to hear of it (the wake runs
 * accept_update() there). */
void accept_on_thread_relay_closed(void *arg, struct ph_relay_owner *owner)
{
	struct cycle *c = arg;

	if (atomic_load_explicit(&c->limit_wait, memory_order_relaxed) ||
	    atomic_load(&owner->cap_wait))
		ph_loop_wake(&c->loop);
}

/* Out of descriptors or memory: clients stay queued in the backlog; try again
 * shortly instead of spinning on a listener that stays readable. */
static void pause_accepting(struct cycle *c, const struct port_entry *e, int err)
{
	atomic_fetch_add_explicit(&c->p->stats.accept_pauses, 1, memory_order_relaxed);
	c->accept_paused = true;
	ph_accept_backoff(&c->loop, &c->accept_backoff, err, NULL, e->d.port, on_accept_resume);
}

void accept_on_listener(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct ext_listener *x = ph_container_of(io, struct ext_listener, io);
	struct port_entry *e = x->e;
	struct cycle *c = e->cycle;
	struct ph_relay_thread *sh;

	(void)loop;
	(void)events;
	for (int i = 0; i < PH_ACCEPT_BATCH && should_accept(c) &&
			entry_open(e) < c->per_port_cap; i++) {
		/* Everything the relay needs exists before the client is
		 * accepted, so running out of descriptors leaves it queued. */
		int ret = ph_relay_reserve(&c->relays, e->target.ss_family), fd;

		if (ret) {
			pause_accepting(c, e, -ret);
			break;
		}
		fd = accept4(x->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (ph_accept_exhausted(errno))
				pause_accepting(c, e, errno);
			break;	/* EAGAIN, ECONNABORTED, ...: next readiness */
		}
		if (fd >= c->relays.fd_ceiling) {	/* the control plane's */
			ph_sock_abort(fd);
			pause_accepting(c, e, EMFILE);
			break;
		}
		sh = ph_relay_threads_pick(&c->threads);
		if (sh)
			ph_relay_threads_handoff(&c->threads, sh, fd,
					  ph_relay_take_spare(&c->relays, e->target.ss_family),
					  (struct sockaddr *)&e->target, e->tlen, &e->owner);
		else
			ph_relay_start(&c->relays, fd, (struct sockaddr *)&e->target, e->tlen,
				       &e->owner);
	}
	entry_watch(c, e);
	accept_update(c);
}
