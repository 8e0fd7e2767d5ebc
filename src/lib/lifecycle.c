// SPDX-License-Identifier: MIT
/* lifecycle.c - the port worker's cycle, its commands, and the public ph_ports_* API
 *
 * Theory of Operation
 * ===================
 * Discovery -> rules -> exposure -> accept -> relay, driven by one worker
 * thread with one event loop (which relays too, alongside the relay threads
 * of relay_threads.c). A scan lists the namespace's TCP listeners and
 * applies the result (exposure.c). Scans run when the kernel reports a TCP
 * socket entering or leaving LISTEN (discovery_events.c; a burst of reports
 * is one scan, and a second scan follows SETTLE_MS later for a socket that
 * was reported just before the kernel hashed or unhashed it), and every
 * scan interval as a safety net (1 s). Without listen events (no BPF, no
 * privilege, --discovery poll) the interval scan is all there is (50 ms); the external listeners
 * accept and hand clients to relays (accept.c, relay.c), which connect to
 * the service's loopback address and move bytes both ways (small messages
 * copied, bulk transfers spliced).
 *
 * Lifecycle: struct ph_ports lives as long as its owner; each start builds
 * a fresh struct cycle (loop, scanner, table, relays, threads) and each stop
 * tears the whole cycle down on the worker thread before the thread is
 * joined, so a stop returns with nothing of that cycle left. life_lock
 * serialises the lifecycle calls; the worker never takes it, so callers may
 * wait for the worker while holding it.
 *
 * Commands (quiesce, resume, stop) are posted to the worker through a
 * mailbox and an eventfd wake; the caller waits for the worker's answer.
 * ph_ports_post() is the same without the wait, for the control API, whose
 * loop must keep answering while the worker is busy (a flood of relays can
 * keep it from its mailbox for a while): the worker adds 1 to the caller's
 * eventfd once the command ran, and the caller collects the result.
 * running and quiesced are atomics, readable by /health without a lock.
 *
 * Quiesce (before a VM snapshot): reset every relay, on this loop and on
 * every relay thread (waiting for each), stop reading the UDP sockets and
 * end every UDP flow, stop scanning and stop accepting, but keep the
 * external listeners and UDP sockets bound, so that after a restore the
 * kernel queues new clients (and datagrams) at once. Resume: reset relays
 * that existed at quiesce time (the epoch tells), rescan now, accept what
 * queued, read the UDP sockets again.
 *
 * UDP: the worker's loop also runs the UDP relay (relay_udp.c): one socket
 * per exposed UDP port and address, a flow per client. It has no accept
 * step and no relay threads; --udp off leaves it out (and UDP unscanned).
 *
 * Per-port connection counts and all statistics are atomics.
 */
#include "ports_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

const unsigned ph_scan_hist_bounds_us[PH_SCAN_HIST_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 250000,
};

/* The defaults of the fields a zeroed configuration leaves at 0 */
static void config_fill_defaults(struct ph_config *cfg)
{
	if (!cfg->max_connections)
		cfg->max_connections = PH_DEFAULT_MAX_CONNECTIONS;
	if (!cfg->backlog)
		cfg->backlog = PH_DEFAULT_BACKLOG;
	if (!cfg->half_close_timeout_ms)
		cfg->half_close_timeout_ms = PH_DEFAULT_HALF_CLOSE_TIMEOUT_MS;
	if (!cfg->udp_idle_timeout_ms)
		cfg->udp_idle_timeout_ms = PH_UDP_DEFAULT_IDLE_TIMEOUT_MS;
	if (!cfg->max_udp_flows)
		cfg->max_udp_flows = PH_UDP_DEFAULT_MAX_FLOWS;
}

void ph_config_defaults(struct ph_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	config_fill_defaults(cfg);
	cfg->relay_threads = 1;
	cfg->keepalive = (struct ph_keepalive){ .idle_s = 30, .interval_s = 10, .count = 3 };
}

/* ---- the safety net ------------------------------------------------------- */

/* With listen events, the periodic scan is a safety net. It starts at
 * PH_DEFAULT_SAFETY_SCAN_MS and doubles, up to SAFETY_MAX_MS, each time it
 * finds nothing the events had not already told (no change to the port
 * table); one that does find something, or a lost record, brings it back.
 * Without events, or with --scan-interval, the interval is fixed. */
#define SAFETY_MAX_MS	8000

static void safety_reset(struct cycle *c)
{
	c->safety_ms = c->scan_interval_ms;
}

static void on_scan_timer(struct ph_loop *loop, struct ph_timer *t)
{
	struct cycle *c = ph_container_of(t, struct cycle, scan_timer);

	if (c->quiesced)
		return;
	exposure_scan(c);
	if (c->safety_stretch) {
		if (c->scan_changes) {
			atomic_fetch_add_explicit(&c->p->stats.safety_catches, 1,
						  memory_order_relaxed);
			ph_debug("the safety-net scan found what the events did not tell",
				 PH_FU("changes", c->scan_changes));
			safety_reset(c);
		} else if (c->safety_ms < SAFETY_MAX_MS) {
			c->safety_ms = c->safety_ms * 2 > SAFETY_MAX_MS ? SAFETY_MAX_MS
									 : c->safety_ms * 2;
		}
	}
	ph_timer_arm(loop, t, ph_now_ms() + c->safety_ms, on_scan_timer);
}

/* ---- listen events ------------------------------------------------------ */

/* A listener is reported just before the kernel hashes it, a closing socket
 * just before it is unhashed: a scan that does not agree yet looks again
 * SETTLE_MS later, then twice as late, up to SETTLE_TRIES times (1 + 2 + ...
 * + 256 = 511 ms in all: a process preempted that long in between); the
 * safety net covers the rest */
#define SETTLE_MS	1
#define SETTLE_TRIES	9
/* Events within BURST_NS of the end of the last scan, after QUICK_SCANS
 * scans that each came that close behind the one before, are a burst: they
 * wait for one scan BURST_FIRST_MS later, then twice as long each time the
 * burst goes on, up to BURST_MAX_MS. A burst of 1,000 listeners is then a
 * handful of scans instead of one per drain. A lone listen scans at once,
 * and so does a close right after it (a service that fails at start-up, a
 * dev server restarting): the second scan in a row is not a burst yet. */
#define BURST_NS	1000000
#define QUICK_SCANS	2
#define BURST_FIRST_MS	2
#define BURST_MAX_MS	16

void events_expect_own(struct cycle *c, int family, int proto, uint16_t port, bool listen)
{
	if (c->events.source == PH_EVENTS_NONE ||
	    (proto == IPPROTO_UDP && !ph_events_udp(&c->events)))
		return;
	if (c->n_expect == c->cap_expect) {
		size_t cap = c->cap_expect ? 2 * c->cap_expect : 64;
		struct own_expect *n = realloc(c->expect, cap * sizeof(*n));

		if (!n)
			return;	/* its record will cause one scan more: harmless */
		c->expect = n;
		c->cap_expect = cap;
	}
	c->expect[c->n_expect++] = (struct own_expect){
		.port = port, .family = (uint8_t)family, .proto = (uint8_t)proto, .listen = listen,
	};
}

/* struct drain_ctx - what one drain of the event source found */
struct drain_ctx {
	struct cycle *c;
	size_t foreign;		/* records not of our own sockets */
	size_t own;
	bool tcp, udp;		/* foreign records of each protocol */
	uint64_t oldest_ns;	/* kernel time of the oldest foreign record */
};

static bool verify_same(const struct verify_item *a, const struct verify_item *b)
{
	return a->port == b->port && a->family == b->family && a->proto == b->proto &&
	       a->saddr == b->saddr;
}

/* Note what the next scan must show (@v->gone: must not show) */
static void verify_add(struct cycle *c, const struct verify_item *v)
{
	if (!v->port) {
		c->verify_blind = true;	/* not bound yet: the kernel picks the port */
		return;
	}
	for (unsigned i = 0; i < c->n_verify; i++)
		if (verify_same(&c->verify[i], v)) {
			c->verify[i].gone = v->gone;	/* the latest report counts */
			return;
		}
	if (c->n_verify == VERIFY_MAX)
		c->verify_blind = true;
	else
		c->verify[c->n_verify++] = *v;
}

/* Sort one record: ours (expected, in order: the worker made them) or a reason to scan */
static void on_record(const struct ph_listen_event *e, void *arg)
{
	struct drain_ctx *d = arg;
	struct cycle *c = d->c;
	bool udp = e->proto == IPPROTO_UDP;
	bool up = udp ? e->newstate == PH_UDP_BOUND : e->newstate == PH_TCP_LISTEN;
	struct verify_item v = {
		.port = e->port, .family = (uint8_t)e->family,
		.proto = udp ? IPPROTO_UDP : IPPROTO_TCP,
		.saddr = e->family == AF_INET ? e->saddr : 0, .gone = !up,
	};

	if (c->expect_head < c->n_expect) {
		const struct own_expect *x = &c->expect[c->expect_head];

		if (x->port == e->port && x->family == e->family && x->proto == v.proto &&
		    x->listen == up) {
			c->expect_head++;
			d->own++;
			return;
		}
	}
	d->foreign++;
	if (udp)
		d->udp = true;
	else
		d->tcp = true;
	if (!d->oldest_ns || e->ts_ns < d->oldest_ns)
		d->oldest_ns = e->ts_ns;
	/* a UDP socket is hashed before its bind is reported: nothing to wait for */
	if (!(udp && up))
		verify_add(c, &v);
}

/* Does the last scan agree with every report? Those it does are done. */
static bool verify_done(struct cycle *c)
{
	for (unsigned i = 0; i < c->n_verify;) {
		const struct verify_item *v = &c->verify[i];
		bool found = false;

		for (size_t j = 0; j < c->scan.len && !found; j++) {
			const struct ph_listener *l = &c->scan.v[j];

			found = l->port == v->port && l->proto == v->proto &&
				l->family == v->family &&
				(!v->saddr || !memcmp(&l->addr.s6_addr[12], &v->saddr, 4));
		}
		if (found != v->gone)
			c->verify[i] = c->verify[--c->n_verify];
		else
			i++;
	}
	return !c->n_verify && !c->verify_blind;
}

static void settle_reset(struct cycle *c)
{
	c->n_verify = 0;
	c->verify_blind = false;
	c->settle_tries = 0;
}

static void on_settle_timer(struct ph_loop *loop, struct ph_timer *t)
{
	struct cycle *c = ph_container_of(t, struct cycle, settle_timer);

	if (c->quiesced)
		return;
	c->verify_blind = false;	/* this is the second look it asked for */
	exposure_scan(c);
	c->event_scan_end_ns = ph_now_ns();
	if (verify_done(c) || ++c->settle_tries >= SETTLE_TRIES) {
		settle_reset(c);
		return;
	}
	ph_timer_arm(loop, t, ph_now_ms() + (SETTLE_MS << c->settle_tries), on_settle_timer);
}

/* The event source is readable: take every record, scan once unless all
 * were our own, look again soon if the scan missed a reported listener */
static void on_events(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct cycle *c = ph_container_of(io, struct cycle, events_io);
	struct ph_stats *st = &c->p->stats;
	struct drain_ctx d = { .c = c };
	size_t n = ph_events_drain(&c->events, on_record, &d);
	uint64_t lost = ph_events_lost_delta(&c->events), t0;
	bool done;

	(void)events;
	/* our records are in the ring before we drain (made by this thread);
	 * one not found by now was lost, and the loss scans anyway */
	c->n_expect = c->expect_head = 0;
	atomic_fetch_add_explicit(&st->listen_events, n, memory_order_relaxed);
	if (d.own)
		atomic_fetch_add_explicit(&st->listen_events_own, d.own, memory_order_relaxed);
	if (lost) {
		atomic_fetch_add_explicit(&st->listen_events_lost, lost, memory_order_relaxed);
		c->verify_blind = true;
		if (c->safety_stretch && c->safety_ms > c->scan_interval_ms) {
			safety_reset(c);	/* not healthy: the safety net at its base again */
			ph_timer_arm(loop, &c->scan_timer, ph_now_ms() + c->safety_ms,
				     on_scan_timer);
		}
	}
	if (c->quiesced || (!d.foreign && !lost))
		return;
	t0 = ph_now_ns();
	if (!c->event_scan_end_ns || t0 - c->event_scan_end_ns >= BURST_NS +
	    (uint64_t)c->burst_gap_ms * 1000000u)
		c->quick_scans = 0;	/* quiet long enough: not a burst */
	else if (c->quick_scans >= QUICK_SCANS) {
		/* a burst: one scan at the end of the gap takes these too */
		c->burst_gap_ms = c->burst_gap_ms ? c->burst_gap_ms * 2 : BURST_FIRST_MS;
		if (c->burst_gap_ms > BURST_MAX_MS)
			c->burst_gap_ms = BURST_MAX_MS;
		if (!ph_timer_armed(&c->settle_timer)) {
			c->settle_tries = 0;
			ph_timer_arm(loop, &c->settle_timer, ph_now_ms() + c->burst_gap_ms,
				     on_settle_timer);
		}
		return;
	}
	c->quick_scans++;
	c->burst_gap_ms = 0;
	/* with both protocols reported, only the one reported changed: a TCP
	 * listen does not walk the UDP table (half the kernel's work with
	 * few sockets); anything else, a lost record say, scans both */
	if (!lost && ph_events_udp(&c->events))
		exposure_scan_some(c, d.tcp, d.udp);
	else
		exposure_scan(c);
	c->event_scan_end_ns = ph_now_ns();
	done = verify_done(c);
	ph_debug("listen events", PH_FU("records", n), PH_FU("own", d.own),
		 PH_FU("wake_us", d.oldest_ns && t0 > d.oldest_ns ? (t0 - d.oldest_ns) / 1000 : 0),
		 PH_FU("scan_us", (ph_now_ns() - t0) / 1000), PH_FU("unseen", c->n_verify),
		 PH_FU("blind", c->verify_blind));
	if (done) {
		settle_reset(c);
		ph_timer_cancel(loop, &c->settle_timer);
		return;
	}
	c->settle_tries = 0;
	ph_timer_arm(loop, &c->settle_timer, ph_now_ms() + SETTLE_MS, on_settle_timer);
}

/* Open the source @want (BPF or perf) and put it on the loop. Return: 0 or -errno, @why said */
static int events_try(struct cycle *c, enum ph_events_source want, char *why, size_t len)
{
	int ret = want == PH_EVENTS_BPF ? ph_events_open(&c->events, why, len)
				       : ph_events_open_perf(&c->events, why, len);

	if (ret)
		return ret;
	ret = ph_loop_add(&c->loop, &c->events_io, ph_events_fd(&c->events), EPOLLIN, on_events);
	if (ret) {
		snprintf(why, len, "epoll: %s", ph_strerror(ret));
		ph_events_close(&c->events);
	}
	return ret;
}

/**
 * discovery_choose() - listen events (BPF, else the perf tracepoint) or polling, and the scan interval
 * @c:		cycle being started (its loop exists, the worker does not run yet)
 *
 * Each source that cannot be had is logged with why (once per process).
 * Return: 0, or -errno when --discovery events|bpf|perf was asked for and cannot be had
 */
static int discovery_choose(struct cycle *c)
{
	struct ph_ports *p = c->p;
	const struct ph_config *cfg = &p->cfg;
	enum ph_discovery d = cfg->force_proc ? PH_DISCOVERY_POLL : cfg->discovery;
	bool try_bpf = d == PH_DISCOVERY_AUTO || d == PH_DISCOVERY_EVENTS || d == PH_DISCOVERY_BPF;
	bool try_perf = d == PH_DISCOVERY_AUTO || d == PH_DISCOVERY_EVENTS || d == PH_DISCOVERY_PERF;
	char why[256], bpf_why[256] = "";
	int ret = -EOPNOTSUPP;

	snprintf(why, sizeof(why), cfg->force_proc ? "--discovery proc" : "--discovery poll");
	ph_events_init(&c->events);
	if (try_bpf) {
		ret = events_try(c, PH_EVENTS_BPF, bpf_why, sizeof(bpf_why));
		if (ret && try_perf && !p->poll_said)
			ph_info("listen events: no BPF program, trying the perf tracepoint",
				PH_FS("reason", bpf_why));
		snprintf(why, sizeof(why), "%s", bpf_why);
	}
	if (ret && try_perf) {
		ret = events_try(c, PH_EVENTS_PERF, why, sizeof(why));
		if (ret && try_bpf) {
			char both[sizeof(why)];

			snprintf(both, sizeof(both), "bpf: %.100s; perf: %.140s", bpf_why, why);
			memcpy(why, both, sizeof(why));
		}
	}
	if (ret && d != PH_DISCOVERY_AUTO && d != PH_DISCOVERY_POLL) {
		ph_error("listen events unavailable", PH_FS("reason", why));
		return ret;
	}
	c->scan_interval_ms = cfg->scan_interval_ms ? cfg->scan_interval_ms :
			      ret ? PH_DEFAULT_SCAN_INTERVAL_MS : PH_DEFAULT_SAFETY_SCAN_MS;
	atomic_store(&p->stats.discovery_events, (int)c->events.source);
	if (ret && !p->poll_said) {
		p->poll_said = true;
		ph_info("discovery polls: no listen events", PH_FS("reason", why),
			PH_FU("scan_interval_ms", c->scan_interval_ms));
	}
	if (!ret && !cfg->udp_off && c->events.source == PH_EVENTS_BPF &&
	    ph_events_open_udp(&c->events, why, sizeof(why)) && !p->udp_events_said) {
		p->udp_events_said = true;
		ph_info("UDP binds have no events: UDP services are found by the periodic scan",
			PH_FS("reason", why));
	} else if (!ret && !cfg->udp_off && c->events.source != PH_EVENTS_BPF &&
		   !p->udp_events_said) {
		p->udp_events_said = true;
		ph_info("UDP binds have no events: UDP services are found by the periodic scan",
			PH_FS("reason", "the UDP hooks need the BPF source"));
	}
	atomic_store(&p->stats.discovery_udp_events, ph_events_udp(&c->events));
	/* the safety net stretches only when every protocol scanned has events */
	c->safety_stretch = !ret && !cfg->scan_interval_ms &&
			    (cfg->udp_off || ph_events_udp(&c->events));
	safety_reset(c);
	return 0;
}

/* ---- steering ------------------------------------------------------------- */

/* --steer: load and attach the sk_lookup program, or say once why the
 * named ports are relayed instead */
static void steer_choose(struct cycle *c)
{
	struct ph_ports *p = c->p;
	int ret;

	ph_steer_init(&c->steer);
	if (!p->cfg.steer.set)
		return;
	ret = ph_steer_open(&c->steer, c->steer_off, sizeof(c->steer_off));
	if (ret && !p->steer_said) {
		p->steer_said = true;
		ph_warn("steering is off; the --steer ports are relayed", PH_FS("reason", c->steer_off));
	} else if (!ret) {
		ph_info("steering on: a BPF sk_lookup program hands the --steer ports' connections "
			"to their services");
	}
}

/* ---- commands ------------------------------------------------------------- */

static int do_quiesce(struct cycle *c)
{
	size_t n, flows, steered;

	if (c->quiesced)
		return 0;
	c->quiesced = true;
	ph_timer_cancel(&c->loop, &c->scan_timer);
	ph_timer_cancel(&c->loop, &c->settle_timer);
	settle_reset(c);	/* the scan at resume looks at everything */
	accept_update(c);
	/* relays tagged with an older epoch existed before the freeze */
	c->quiesce_epoch = ++c->relays.epoch;
	n = ph_relay_abort_all(&c->relays, UINT64_MAX);
	n += ph_relay_threads_quiesce(&c->threads);
	steered = exposure_steer_destroy(c);	/* the service's own connections */
	flows = c->udp ? ph_udp_relay_flows(c->udp) : 0;
	if (c->udp) {
		/* no datagram moves while frozen, as no byte does over TCP */
		(void)ph_udp_relay_pause(c->udp, true);	/* unregistering cannot fail */
		/* their clients are on the other side of the snapshot */
		ph_udp_relay_drop_flows(c->udp);
	}
	atomic_store(&c->p->quiesced, true);
	ph_info("quiesced for snapshot", PH_FU("connections_reset", n),
		PH_FU("steered_connections_destroyed", steered), PH_FU("udp_flows_dropped", flows));
	return 0;
}

static int do_resume(struct cycle *c)
{
	size_t n;

	if (!c->quiesced)
		return 0;
	n = ph_relay_abort_all(&c->relays, c->quiesce_epoch);
	n += ph_relay_threads_resume(&c->threads);
	c->quiesced = false;
	atomic_store(&c->p->quiesced, false);
	exposure_addresses_recheck(c);	/* a restored clone may have a new address */
	exposure_scan(c);
	accept_update(c);
	if (c->udp) {
		int err = ph_udp_relay_pause(c->udp, false);

		if (err)
			ph_warn("UDP socket not watched after resume", PH_FERR(-err));
	}
	safety_reset(c);
	ph_timer_arm(&c->loop, &c->scan_timer, ph_now_ms() + c->safety_ms, on_scan_timer);
	ph_info("resumed", PH_FU("stale_connections_reset", n));
	return 1;
}

static int run_cmd(struct cycle *c, enum cmd cmd)
{
	return cmd == CMD_QUIESCE ? do_quiesce(c) : cmd == CMD_RESUME ? do_resume(c) : 0;
}

/* The posted command ran with @ret: publish it and tell the poster */
static void post_done(struct ph_ports *p, int ret)
{
	uint64_t one = 1;

	pthread_mutex_lock(&p->cmd_lock);
	p->aresult = ret;
	p->adone = true;
	if (p->anotify >= 0 && write(p->anotify, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only at a count near 2^64 */
	}
	pthread_mutex_unlock(&p->cmd_lock);
}

static void on_wake(struct ph_loop *loop, void *arg)
{
	struct cycle *c = arg;
	struct ph_ports *p = c->p;
	enum cmd cmd, acmd;
	void *cmd_arg;
	int ret = 0;

	pthread_mutex_lock(&p->cmd_lock);
	cmd = p->cmd;
	cmd_arg = p->cmd_arg;
	p->cmd = CMD_NONE;
	acmd = p->acmd;
	p->acmd = CMD_NONE;
	pthread_mutex_unlock(&p->cmd_lock);

	/* a posted command runs first: it was there before a stop */
	if (acmd != CMD_NONE)
		post_done(p, run_cmd(c, acmd));
	switch (cmd) {
	case CMD_NONE:
		/* a relay thread freed room under the connection limit */
		accept_update(c);
		return;
	case CMD_STOP:
		ph_loop_break(loop);
		break;
	case CMD_QUIESCE:
	case CMD_RESUME:
		ret = run_cmd(c, cmd);
		break;
	case CMD_FREEZE:	/* answers itself, then waits for the thaw */
		handover_worker_freeze(c);
		return;
	case CMD_IMPORT:
		ret = handover_worker_import(c, cmd_arg);
		break;
	}
	pthread_mutex_lock(&p->cmd_lock);
	p->cmd_result = ret;
	p->cmd_done = true;
	pthread_cond_broadcast(&p->cmd_cond);
	pthread_mutex_unlock(&p->cmd_lock);
}

int ports_send_cmd(struct ph_ports *p, enum cmd cmd, void *arg)
{
	int ret;

	pthread_mutex_lock(&p->cmd_lock);
	if (p->frozen) {	/* an upgrade holds the worker: it would never answer */
		pthread_mutex_unlock(&p->cmd_lock);
		return -EBUSY;
	}
	p->cmd = cmd;
	p->cmd_arg = arg;
	p->cmd_done = false;
	ph_loop_wake(&p->cycle->loop);
	while (!p->cmd_done)
		pthread_cond_wait(&p->cmd_cond, &p->cmd_lock);
	ret = p->cmd_result;
	pthread_mutex_unlock(&p->cmd_lock);
	return ret;
}

/* ---- cycle ---------------------------------------------------------------- */

/* Release everything of a cycle. Runs on the worker thread (or the caller when
 * the thread never started). */
static void cycle_teardown(struct cycle *c)
{
	struct ph_ports *p = c->p;

	ph_relay_threads_stop(&c->threads);	/* their relays hold entry references */
	ph_relay_ctx_fini(&c->relays);
	pthread_mutex_lock(&p->table_lock);
	for (size_t i = 0; i < c->n_entries; i++)
		port_entry_destroy(c, c->entries[i], false);	/* the store keeps them */
	free(c->entries);
	c->entries = NULL;
	c->n_entries = 0;
	pthread_mutex_unlock(&p->table_lock);
	ph_udp_relay_free(c->udp);	/* its sockets were closed with the entries */
	c->udp = NULL;
	ph_steer_close(&c->steer);	/* detach; the maps' listener references go */
	ph_timer_cancel(&c->loop, &c->scan_timer);
	ph_timer_cancel(&c->loop, &c->settle_timer);
	ph_timer_cancel(&c->loop, &c->accept_backoff.timer);
	ph_loop_del(&c->loop, &c->rtnl_io);
	ph_rtnl_watch_close(&c->rtnl);
	if (c->events.source != PH_EVENTS_NONE)
		ph_loop_del(&c->loop, &c->events_io);
	ph_events_close(&c->events);
	free(c->expect);
	c->expect = NULL;
	ph_scanner_fini(&c->scanner);
	ph_scan_free(&c->scan);
	free(c->decisions);
	free(c->own);
	ph_loop_fini(&c->loop);
}

/* struct sched_attr of sched_setattr(2) (glibc 2.36 has no wrapper, and
 * <linux/sched/types.h> clashes with <sched.h>) */
struct worker_sched_attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

/* The worker asks EEVDF (Linux 6.12+) for a short time slice: its virtual
 * deadline comes early, so a listen event wakes it ahead of tasks that ran
 * longer. Measured on a loaded 2-core machine: from the tracepoint to the
 * worker draining the ring, median 190 -> 70-85 µs. Older kernels ignore
 * the slice of a SCHED_OTHER thread; a failure changes nothing else. */
#define WORKER_SLICE_NS	100000

static void worker_slice(void)
{
	struct worker_sched_attr a = { .size = sizeof(a), .runtime = WORKER_SLICE_NS };

	if (syscall(SYS_sched_setattr, 0, &a, 0))
		ph_debug("no short time slice for the port worker", PH_FERR(-errno));
}

static void *worker(void *arg)
{
	struct cycle *c = arg;
	int ret;

	pthread_setname_np(pthread_self(), "ph-ports");
	worker_slice();
	ret = ph_loop_add(&c->loop, &c->rtnl_io, c->rtnl.sub_fd, EPOLLIN, exposure_on_rtnl);
	if (ret)	/* then the scans' re-dumps alone follow the addresses */
		ph_error("cannot watch the network configuration", PH_FERR(ret));
	exposure_addresses_init(c);
	exposure_scan(c);
	ph_timer_arm(&c->loop, &c->scan_timer, ph_now_ms() + c->safety_ms, on_scan_timer);
	ret = ph_loop_run(&c->loop);
	if (ret)
		ph_error("port worker loop failed", PH_FERR(ret));
	cycle_teardown(c);	/* the stopper joins us: then nothing is left */
	return NULL;
}

/* The --external-addr values, the legacy single IPv4 address last */
static void cycle_specs(struct cycle *c)
{
	const struct ph_config *cfg = &c->p->cfg;

	for (unsigned i = 0; i < cfg->n_ext_specs && i < PH_MAX_EXT_SPECS; i++)
		c->specs[c->n_specs++] = cfg->ext_specs[i];
	if (cfg->external.s_addr) {
		struct ph_ext_spec *s = &c->specs[c->n_specs++];

		memset(s, 0, sizeof(*s));
		ph_addr_from_v4(&s->addr, cfg->external);
	}
}

/* The start-up line: which mechanisms this cycle runs with, and its limits */
static void cycle_log_start(const struct cycle *c)
{
	const struct ph_ports *p = c->p;

	ph_info("port subsystem starting",
		PH_FS("discovery", c->events.source != PH_EVENTS_NONE ? "events" : "poll"),
		PH_FS("events_source", ph_events_source_name(c->events.source)),
		PH_FS("udp_events", ph_events_udp(&c->events) ? "yes" : "no"),
		PH_FS("scanner", ph_scanner_method(&c->scanner)),
		PH_FU("scan_interval_ms", c->scan_interval_ms),
		PH_FS("relay", p->cfg.force_copy ? "copy" : "copy+splice"),
		PH_FU("relay_threads", c->threads.n + 1), PH_FU("max_conns_per_port", c->per_port_cap),
		PH_FI("relay_fd_ceiling", c->relays.fd_ceiling), PH_FS("udp", c->udp ? "on" : "off"),
		PH_FS("udp_scanner", !c->udp ? "-" : c->scanner.udp_proc ? "proc" : "sock_diag"),
		PH_FU("max_udp_flows", c->udp ? p->cfg.max_udp_flows : 0),
		PH_FU("udp_idle_timeout_ms", c->udp ? p->cfg.udp_idle_timeout_ms : 0));
}

static int cycle_start(struct ph_ports *p)
{
	struct cycle *c;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->p = p;
	cycle_specs(c);
	c->accepting = true;
	ret = ph_loop_init(&c->loop, on_wake, c);
	if (ret)
		goto fail_free;
	ret = ph_rtnl_watch_open(&c->rtnl);
	if (ret) {
		ph_error("cannot read the network configuration (rtnetlink)", PH_FERR(ret));
		goto fail_loop;
	}
	ret = ph_scanner_init(&c->scanner, p->cfg.force_proc);
	if (ret)
		goto fail_rtnl;
	if (!p->cfg.udp_off) {
		ret = ph_scanner_enable_udp(&c->scanner);
		if (!ret)
			ret = ph_udp_relay_new(&c->loop, p->cfg.max_udp_flows,
					       p->cfg.udp_idle_timeout_ms, &p->stats.udp, &c->udp);
		if (ret)
			goto fail_scanner;
	}
	ret = discovery_choose(c);
	if (ret)
		goto fail_scanner;
	steer_choose(c);
	ret = ph_relay_ctx_init(&c->relays, &c->loop, &p->cfg, &p->stats);
	if (ret)
		goto fail_relays;
	c->relays.on_closed = accept_on_relay_closed;
	c->per_port_cap = accept_per_port_cap(&p->cfg, c->relays.fd_ceiling);
	c->threads.on_closed = accept_on_thread_relay_closed;
	c->threads.arg = c;
	ret = ph_relay_threads_start(&c->threads, ph_relay_thread_count(&p->cfg) - 1, &p->cfg, &p->stats);
	if (ret)
		goto fail_relays;
	cycle_log_start(c);

	ret = ph_loop_thread_start(&c->thread, worker, c);
	if (ret)
		goto fail_threads;
	p->cycle = c;
	atomic_store(&p->running, true);
	atomic_store(&p->quiesced, false);
	return 0;

fail_threads:
	ph_relay_threads_stop(&c->threads);
fail_relays:
	ph_relay_ctx_fini(&c->relays);
	ph_steer_close(&c->steer);
	if (c->events.source != PH_EVENTS_NONE)
		ph_loop_del(&c->loop, &c->events_io);
	ph_events_close(&c->events);
fail_scanner:
	ph_udp_relay_free(c->udp);
	ph_scanner_fini(&c->scanner);
fail_rtnl:
	ph_rtnl_watch_close(&c->rtnl);
fail_loop:
	ph_loop_fini(&c->loop);
fail_free:
	free(c);
	return ret;
}

static void cycle_stop(struct ph_ports *p)
{
	struct cycle *c = p->cycle;

	atomic_store(&p->running, false);
	ports_send_cmd(p, CMD_STOP, NULL);
	pthread_join(c->thread, NULL);
	p->cycle = NULL;
	pthread_mutex_lock(&p->cmd_lock);
	if (p->apending && !p->adone) {
		/* posted after the worker's last turn: it never ran */
		p->acmd = CMD_NONE;
		pthread_mutex_unlock(&p->cmd_lock);
		post_done(p, -ESRCH);
	} else {
		pthread_mutex_unlock(&p->cmd_lock);
	}
	atomic_store(&p->quiesced, false);
	free(c);
}

/* ---- public API ------------------------------------------------------------- */

struct ph_ports *ph_ports_new(const struct ph_config *cfg)
{
	struct ph_ports *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->cfg = *cfg;
	config_fill_defaults(&p->cfg);
	p->bus = ph_bus_new();
	if (!p->bus) {
		free(p);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&p->life_lock, NULL);
	pthread_mutex_init(&p->table_lock, NULL);
	pthread_mutex_init(&p->own_lock, NULL);
	pthread_mutex_init(&p->cmd_lock, NULL);
	pthread_cond_init(&p->cmd_cond, NULL);
	p->anotify = -1;
	return p;
}

void ph_ports_free(struct ph_ports *p)
{
	if (!p)
		return;
	ph_ports_stop(p);
	ph_bus_free(p->bus);
	pthread_cond_destroy(&p->cmd_cond);
	pthread_mutex_destroy(&p->cmd_lock);
	pthread_mutex_destroy(&p->own_lock);
	pthread_mutex_destroy(&p->table_lock);
	pthread_mutex_destroy(&p->life_lock);
	free(p);
}

int ph_ports_start(struct ph_ports *p)
{
	int ret = 0;

	pthread_mutex_lock(&p->life_lock);
	if (!p->cycle)
		ret = cycle_start(p);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

int ph_ports_stop(struct ph_ports *p)
{
	pthread_mutex_lock(&p->life_lock);
	if (p->cycle)
		cycle_stop(p);
	pthread_mutex_unlock(&p->life_lock);
	return 0;
}

int ph_ports_restart(struct ph_ports *p)
{
	int ret;

	pthread_mutex_lock(&p->life_lock);
	if (p->cycle)
		cycle_stop(p);
	ret = cycle_start(p);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

bool ph_ports_running(struct ph_ports *p)
{
	return atomic_load(&p->running);
}

int ports_cmd_if_started(struct ph_ports *p, enum cmd cmd, void *arg)
{
	int ret = -ESRCH;

	pthread_mutex_lock(&p->life_lock);
	if (p->cycle)
		ret = ports_send_cmd(p, cmd, arg);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

int ph_ports_quiesce(struct ph_ports *p)
{
	return ports_cmd_if_started(p, CMD_QUIESCE, NULL);
}

int ph_ports_resume(struct ph_ports *p)
{
	int ret = ports_cmd_if_started(p, CMD_RESUME, NULL);

	return ret == -ESRCH ? 0 : ret;	/* nothing runs: nothing to resume */
}

bool ph_ports_quiesced(struct ph_ports *p)
{
	return atomic_load(&p->quiesced);
}

int ph_ports_post(struct ph_ports *p, enum ph_ports_op op, int notify_fd)
{
	int ret = 0;

	pthread_mutex_lock(&p->life_lock);
	pthread_mutex_lock(&p->cmd_lock);
	if (!p->cycle) {
		ret = -ESRCH;
	} else if (p->apending) {
		ret = -EBUSY;
	} else {
		p->acmd = op == PH_PORTS_QUIESCE ? CMD_QUIESCE : CMD_RESUME;
		p->apending = true;
		p->adone = false;
		p->anotify = notify_fd;
		ph_loop_wake(&p->cycle->loop);
	}
	pthread_mutex_unlock(&p->cmd_lock);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

int ph_ports_post_result(struct ph_ports *p)
{
	int ret;

	pthread_mutex_lock(&p->cmd_lock);
	if (!p->apending) {
		ret = -ENOENT;
	} else if (!p->adone) {
		ret = -EINPROGRESS;
	} else {
		ret = p->aresult;
		p->apending = false;
	}
	pthread_mutex_unlock(&p->cmd_lock);
	return ret;
}

void ph_ports_post_forget(struct ph_ports *p)
{
	pthread_mutex_lock(&p->cmd_lock);
	p->anotify = -1;
	pthread_mutex_unlock(&p->cmd_lock);
}

/* The connections of the steered ports in @l, counted with sock_diag (the
 * relay counts its own; these are the services') */
static void list_steered_conns(struct ph_port_list *l)
{
	uint16_t *ports = NULL;
	uint8_t *fams = NULL;
	uint32_t *per = NULL;
	size_t *idx = NULL, n = 0, total;
	int ret;

	for (size_t i = 0; i < l->n; i++)
		n += l->ports[i].state == PH_PORT_STEERED;
	if (!n)
		return;
	ports = malloc(n * sizeof(*ports));
	fams = malloc(n);
	per = calloc(n, sizeof(*per));
	idx = malloc(n * sizeof(*idx));
	if (ports && fams && per && idx) {
		n = 0;
		for (size_t i = 0; i < l->n; i++)
			if (l->ports[i].state == PH_PORT_STEERED) {
				idx[n] = i;
				ports[n] = l->ports[i].port;
				fams[n++] = l->ports[i].steered_fams;
			}
		ret = ph_steer_conns(&(struct ph_steer_sel){ .ext = &l->external_addrs,
							     .ports = ports, .fams = fams, .n = n },
				     false, per, &total);
		if (ret)
			ph_debug("counting steered connections failed", PH_FERR(ret));
		for (size_t k = 0; k < n; k++)
			l->ports[idx[k]].connections = per[k];
	}
	free(ports);
	free(fams);
	free(per);
	free(idx);
}

int ph_ports_list(struct ph_ports *p, struct ph_port_list *out)
{
	struct cycle *c;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->life_lock);
	c = p->cycle;
	if (!c)
		goto out;
	pthread_mutex_lock(&p->table_lock);
	out->external_addrs = c->ext;
	for (uint32_t i = c->ext.n; i-- > 0;)	/* the first IPv4 one, else the first */
		if (!i || ph_ext_addr_fam(&c->ext.a[i]) == PH_FAM_V4)
			ph_ext_addr_str(&c->ext.a[i], out->external, sizeof(out->external));
	if (c->n_entries) {
		out->ports = calloc(c->n_entries, sizeof(*out->ports));
		if (!out->ports)
			ret = -ENOMEM;
		else
			out->n = c->n_entries;
	}
	for (size_t i = 0; i < out->n; i++)
		port_entry_info(c->entries[i], &out->ports[i]);
	pthread_mutex_unlock(&p->table_lock);
	if (!ret)
		list_steered_conns(out);
out:
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

void ph_port_list_free(struct ph_port_list *l)
{
	free(l->ports);
	l->ports = NULL;
	l->n = 0;
}

struct ph_bus *ph_ports_bus(struct ph_ports *p)
{
	return p->bus;
}

struct ph_stats *ph_ports_stats(struct ph_ports *p)
{
	return &p->stats;
}

int ph_ports_add_own_inode(struct ph_ports *p, uint64_t inode)
{
	int ret = 0;

	if (!inode)
		return -EINVAL;
	pthread_mutex_lock(&p->own_lock);
	if (p->n_own < PH_MAX_OWN_INODES)
		p->own[p->n_own++] = inode;
	else
		ret = -ENOSPC;
	pthread_mutex_unlock(&p->own_lock);
	return ret;
}
