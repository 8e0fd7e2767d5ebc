// SPDX-License-Identifier: MIT
/* ports.c - the port subsystem: worker thread, port table, external listeners, lifecycle
 *
 * Theory of Operation
 * ===================
 * Discovery -> exposure -> relay, driven by one worker thread with one event
 * loop (which relays too, alongside the relay threads of shards.c):
 *
 *  1. Every scan_interval_ms a timer scans the namespace's TCP listeners
 *     (discovery.h). A failed scan changes nothing: the table stands, the
 *     error is counted and logged (rate-limited).
 *  2. The scan and the daemon's own socket inodes go through the exposure
 *     rules (rules.h), giving one decision per port; the difference from the
 *     previous decisions (ph_rules_diff) is applied to the port table:
 *     a new EXPOSE decision binds EXTERNAL:port (SO_REUSEADDR, non-blocking),
 *     a vanished one closes that listener, a restarted service (same port,
 *     new inode) changes nothing, so there is never a gap. A bind failure
 *     puts the port in CONFLICT; such ports are retried on every scan and
 *     logged only when their state changes.
 *  3. Each external listener accepts and hands the client to relay.c, which
 *     connects to the service's loopback address and splices both ways:
 *     on this loop, or (round-robin) on one of the relay threads of
 *     shards.c, with the service socket made before accept() and a
 *     reference on the port entry.
 *     Accepting pauses for ~100 ms on EMFILE/ENFILE (never a busy loop) and
 *     while max_connections relays are open; the kernel backlog holds clients
 *     meanwhile.
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
 *
 * Quiesce (before a VM snapshot): reset every relay, on this loop and on
 * every relay thread (waiting for each), stop scanning and stop accepting,
 * but keep the external listeners bound, so that after a restore the kernel
 * queues new clients at once. Resume: reset relays that existed at quiesce
 * time (the epoch tells), rescan now, accept what queued.
 *
 * Readers on other threads (ph_ports_list) see the table under table_lock;
 * the worker holds it only while it changes the table. Per-port connection
 * counts and all statistics are atomics.
 */
#include "porthole.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "discovery.h"
#include "log.h"
#include "loop.h"
#include "netutil.h"
#include "relay.h"
#include "rules.h"
#include "shards.h"
#include "array.h"

#define ACCEPT_BATCH		64
#define ACCEPT_PAUSE_MS		100
#define SCAN_ERR_BURST		3
#define SCAN_ERR_WINDOW_MS	60000

const unsigned ph_scan_hist_bounds_us[PH_SCAN_HIST_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 250000,
};

enum cmd { CMD_NONE, CMD_STOP, CMD_QUIESCE, CMD_RESUME };

/**
 * struct port_entry - one row of the port table
 * @owner:	relay accounting (connections on this port); embedded first
 * @d:		the decision it reflects
 * @state:	FORWARDED, CONFLICT, EXCLUDED or PUBLIC
 * @lfd:	external listener (FORWARDED only), else -1
 * @linode:	its inode, reported to the rules as the daemon's own
 * @io:		its loop registration
 * @target:	connect address of the service
 * @since_ms:	wall clock when @state was entered
 * @error:	bind error for CONFLICT
 * @cycle:	back pointer
 */
struct port_entry {
	struct ph_relay_owner owner;
	struct ph_decision d;
	enum ph_port_state state;
	int lfd;
	uint64_t linode;
	struct ph_io io;
	struct sockaddr_storage target;
	socklen_t tlen;
	int64_t since_ms;
	char error[64];
	struct cycle *cycle;
};

/**
 * struct cycle - everything one start..stop owns
 */
struct cycle {
	struct ph_ports *p;
	pthread_t thread;
	struct ph_loop loop;
	struct ph_scanner scanner;
	struct ph_scan scan;
	struct ph_relay_ctx relays;
	struct ph_shards shards;	/* relay threads besides this one */
	struct ph_timer scan_timer;
	struct ph_timer accept_timer;

	/* table: sorted by port; entries[i]->d.port ascending */
	struct port_entry **entries;
	size_t n_entries;
	struct ph_decision *decisions;
	size_t n_decisions;

	/* built during an apply: the next table */
	struct port_entry **next;
	size_t n_next;

	uint64_t *own;		/* scratch: own inodes for the rules */
	size_t cap_own;

	struct in_addr external;
	bool external_known;
	bool external_warned;
	bool quiesced;
	bool accept_paused;	/* fd exhaustion back-off */
	bool accepting;		/* listeners registered for EPOLLIN */
	_Atomic bool limit_wait;	/* not accepting: relay threads' closes wake us */
	uint64_t quiesce_epoch;
	struct ph_ratelimit scan_rl;
	struct ph_ratelimit accept_rl;
};

struct ph_ports {
	struct ph_config cfg;
	pthread_mutex_t life_lock;	/* lifecycle calls, one at a time */
	pthread_mutex_t table_lock;	/* cycle's table vs readers */
	pthread_mutex_t own_lock;	/* own inodes added at run time */
	pthread_mutex_t cmd_lock;	/* mailbox */
	pthread_cond_t cmd_cond;
	enum cmd cmd;
	int cmd_result;
	bool cmd_done;
	uint64_t own[PH_MAX_OWN_INODES];
	size_t n_own;
	struct cycle *cycle;		/* NULL when stopped; changed under life_lock */
	_Atomic bool quiesced;
	struct ph_bus *bus;
	struct ph_stats stats;
};

void ph_config_defaults(struct ph_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->scan_interval_ms = 50;
	cfg->max_connections = 65536;
	cfg->backlog = 4096;
	cfg->relay_threads = 1;
	cfg->keepalive = (struct ph_keepalive){ .idle_s = 30, .interval_s = 10, .count = 3 };
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- events ------------------------------------------------------------ */

static void entry_info(const struct port_entry *e, struct ph_port_info *info)
{
	memset(info, 0, sizeof(*info));
	info->port = e->d.port;
	info->family = e->d.family;
	ph_addr_str(&e->d.addr, info->address, sizeof(info->address));
	info->state = e->state;
	info->connections = atomic_load_explicit(&e->owner.conns, memory_order_relaxed);
	info->since_ms = e->since_ms;
	memcpy(info->error, e->error, sizeof(info->error));
}

static void publish(struct cycle *c, enum ph_event_type type, const struct port_entry *e)
{
	struct ph_event ev = { .type = type };

	entry_info(e, &ev.port);
	ph_bus_publish(c->p->bus, &ev);
}

/* ---- accepting ---------------------------------------------------------- */

static bool should_accept(struct cycle *c)
{
	/* open relays on every thread, and clients on their way to one */
	uint64_t open = atomic_load_explicit(&c->p->stats.conns_active, memory_order_relaxed) +
			atomic_load_explicit(&c->shards.pending, memory_order_relaxed);

	return !c->quiesced && !c->accept_paused && open < c->p->cfg.max_connections;
}

/* Register or unregister every listener for input, to match should_accept(). */
static void update_accepting(struct cycle *c)
{
	bool want = should_accept(c);

	atomic_store_explicit(&c->limit_wait, !want, memory_order_relaxed);
	if (want == c->accepting)
		return;
	c->accepting = want;
	for (size_t i = 0; i < c->n_entries; i++) {
		struct port_entry *e = c->entries[i];

		if (e->lfd >= 0)
			ph_loop_mod(&c->loop, &e->io, want ? EPOLLIN : 0);
	}
}

static void on_accept_timer(struct ph_loop *loop, struct ph_timer *t)
{
	struct cycle *c = ph_container_of(t, struct cycle, accept_timer);

	(void)loop;
	c->accept_paused = false;
	update_accepting(c);
}

static void on_relay_closed(struct ph_relay_ctx *ctx)
{
	update_accepting(ph_container_of(ctx, struct cycle, relays));
}

/* On a relay thread: a relay closed. Only a worker that stopped accepting
 * needs to hear of it (the wake runs update_accepting() there). */
static void on_shard_relay_closed(void *arg)
{
	struct cycle *c = arg;

	if (atomic_load_explicit(&c->limit_wait, memory_order_relaxed))
		ph_loop_wake(&c->loop);
}

/* Out of descriptors or memory: clients stay queued in the backlog; try again
 * shortly instead of spinning on a listener that stays readable. */
static void pause_accepting(struct cycle *c, const struct port_entry *e, int err)
{
	atomic_fetch_add_explicit(&c->p->stats.accept_pauses, 1, memory_order_relaxed);
	if (ph_ratelimit_ok(&c->accept_rl, c->loop.now_ms, SCAN_ERR_BURST, SCAN_ERR_WINDOW_MS))
		ph_warn("accept paused", PH_FERR(err), PH_FU("port", e->d.port),
			PH_FU("pause_ms", ACCEPT_PAUSE_MS),
			PH_FU("suppressed", c->accept_rl.suppressed));
	c->accept_paused = true;
	ph_timer_arm(&c->loop, &c->accept_timer, c->loop.now_ms + ACCEPT_PAUSE_MS, on_accept_timer);
}

static void on_listener(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct port_entry *e = ph_container_of(io, struct port_entry, io);
	struct cycle *c = e->cycle;
	struct ph_shard *sh;

	(void)loop;
	(void)events;
	for (int i = 0; i < ACCEPT_BATCH && should_accept(c); i++) {
		/* Everything the relay needs exists before the client is
		 * accepted, so running out of descriptors leaves it queued. */
		int ret = ph_relay_reserve(&c->relays, e->target.ss_family), fd;

		if (ret) {
			pause_accepting(c, e, -ret);
			break;
		}
		fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(c, e, errno);
			break;	/* EAGAIN, ECONNABORTED, ...: next readiness */
		}
		sh = ph_shards_pick(&c->shards);
		if (sh)
			ph_shards_handoff(&c->shards, sh, fd,
					  ph_relay_take_spare(&c->relays, e->target.ss_family),
					  (struct sockaddr *)&e->target, e->tlen, &e->owner);
		else
			ph_relay_start(&c->relays, fd, (struct sockaddr *)&e->target, e->tlen,
				       &e->owner);
	}
	update_accepting(c);
}

/* ---- port table ----------------------------------------------------------- */

static void entry_release(struct ph_relay_owner *o)
{
	free(ph_container_of(o, struct port_entry, owner));
}

static void entry_close_listener(struct cycle *c, struct port_entry *e)
{
	if (e->lfd < 0)
		return;
	ph_loop_del(&c->loop, &e->io);
	close(e->lfd);
	e->lfd = -1;
	e->linode = 0;
}

/* Remove from service; relays still counted against it, on any thread,
 * keep it alive: the table's reference is dropped here. */
static void entry_destroy(struct cycle *c, struct port_entry *e)
{
	entry_close_listener(c, e);
	ph_relay_owner_put(&e->owner);
}

/**
 * entry_bind() - open EXTERNAL:port for a port to expose
 * @c:		cycle
 * @e:		entry; on failure @e->error says why
 *
 * Return: 0 or -errno
 */
static int entry_bind(struct cycle *c, struct port_entry *e)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(e->d.port),
				   .sin_addr = c->external };
	const char *cc;
	int one = 1, fd, ret;

	if (!c->external_known) {
		snprintf(e->error, sizeof(e->error), "external address not known yet");
		return -EADDRNOTAVAIL;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto fail;
	}
	/* inherited by accepted clients */
	ph_relay_sock_options(fd, &c->p->cfg, true);
	cc = ph_relay_client_cc(&c->p->cfg, c->external);
	if (cc && (ret = ph_sock_congestion(fd, cc)))
		/* checked at start; this only fails if the module went away */
		ph_debug("client congestion control not set", PH_FS("cc", cc), PH_FERR(ret));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
	    listen(fd, (int)c->p->cfg.backlog)) {
		ret = -errno;
		close(fd);
		goto fail;
	}
	ret = ph_loop_add(&c->loop, &e->io, fd, c->accepting ? EPOLLIN : 0, on_listener);
	if (ret) {
		close(fd);
		goto fail;
	}
	e->lfd = fd;
	e->linode = ph_sock_inode(fd);
	e->error[0] = '\0';
	return 0;
fail:
	snprintf(e->error, sizeof(e->error), "%s", ph_strerror(ret));
	return ret;
}

static enum ph_port_state passive_state(enum ph_decision_kind k)
{
	return k == PH_DECIDE_PUBLIC ? PH_PORT_PUBLIC : PH_PORT_EXCLUDED;
}

static void entry_set_target(struct port_entry *e)
{
	e->tlen = ph_sockaddr_from(&e->target, &e->d.addr, e->d.port);
}

/**
 * entry_enter() - bring @e to the state its decision asks for, with events
 * @c:		cycle
 * @e:		entry (new, or whose decision changed, or in CONFLICT)
 * @is_new:	no state yet: always publish
 */
static void entry_enter(struct cycle *c, struct port_entry *e, bool is_new)
{
	enum ph_port_state old = e->state, want;
	char addr[INET6_ADDRSTRLEN];

	if (e->d.kind == PH_DECIDE_EXPOSE) {
		entry_set_target(e);
		if (e->lfd >= 0 || entry_bind(c, e) == 0) {
			want = PH_PORT_FORWARDED;
		} else {
			want = PH_PORT_CONFLICT;
		}
	} else {
		entry_close_listener(c, e);
		want = passive_state(e->d.kind);
		e->error[0] = '\0';
	}
	if (!is_new && want == old)
		return;
	e->state = want;
	e->since_ms = wall_ms();
	ph_addr_str(&e->d.addr, addr, sizeof(addr));
	switch (want) {
	case PH_PORT_FORWARDED:
		ph_info("port forwarded", PH_FU("port", e->d.port), PH_FS("target", addr));
		publish(c, PH_EV_OPEN, e);
		break;
	case PH_PORT_CONFLICT:
		atomic_fetch_add_explicit(&c->p->stats.bind_conflicts, 1, memory_order_relaxed);
		ph_warn("port conflict", PH_FU("port", e->d.port), PH_FS("error", e->error));
		publish(c, PH_EV_CONFLICT, e);
		break;
	default:
		ph_debug("port seen", PH_FU("port", e->d.port), PH_FS("address", addr),
			 PH_FS("state", ph_port_state_name(want)));
		publish(c, PH_EV_OPEN, e);
		break;
	}
}

static void next_push(struct cycle *c, struct port_entry *e)
{
	/* c->next has room for n_entries + n_decisions: reserved before the diff */
	c->next[c->n_next++] = e;
}

/*
 * Diff callback. Changes arrive in port order, so the next table is built by
 * walking the old table alongside: unchanged entries are carried over.
 */
struct apply {
	struct cycle *c;
	size_t old_i;		/* next old entry not yet carried over */
};

static void carry_until(struct apply *a, unsigned int port)
{
	struct cycle *c = a->c;

	while (a->old_i < c->n_entries && c->entries[a->old_i]->d.port < port)
		next_push(c, c->entries[a->old_i++]);
}

static void on_change(void *arg, const struct ph_change *ch)
{
	struct apply *a = arg;
	struct cycle *c = a->c;
	uint16_t port = ch->new ? ch->new->port : ch->old->port;
	struct port_entry *e = NULL;

	carry_until(a, port);
	if (a->old_i < c->n_entries && c->entries[a->old_i]->d.port == port)
		e = c->entries[a->old_i++];

	switch (ch->kind) {
	case PH_CHANGE_ADDED:
		if (e) /* cannot happen: the table mirrors the old decisions */
			entry_destroy(c, e);
		e = calloc(1, sizeof(*e));
		if (!e) {
			ph_error("out of memory for a port entry", PH_FU("port", port));
			return;
		}
		e->lfd = -1;
		e->cycle = c;
		e->owner.release = entry_release;
		atomic_init(&e->owner.refs, 1);	/* the table's */
		e->d = *ch->new;
		entry_enter(c, e, true);
		next_push(c, e);
		break;
	case PH_CHANGE_REMOVED:
		if (!e)
			return;
		ph_info("port closed", PH_FU("port", port),
			PH_FS("state", ph_port_state_name(e->state)));
		publish(c, PH_EV_CLOSE, e);
		entry_destroy(c, e);
		break;
	case PH_CHANGE_UPDATED:
	case PH_CHANGE_RESTARTED:
		if (!e)
			return;
		e->d = *ch->new;	/* a restart keeps the listener: no gap */
		if (ch->kind == PH_CHANGE_UPDATED)
			entry_enter(c, e, false);
		next_push(c, e);
		break;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Own inodes: the embedding program's plus every external listener's. */
static int collect_own(struct cycle *c, size_t *n)
{
	struct ph_ports *p = c->p;
	size_t need = p->cfg.n_own_inodes + PH_MAX_OWN_INODES + c->n_entries, k = 0;

	if (ph_array_grow(&c->own, &c->cap_own, need, sizeof(*c->own), 64))
		return -ENOMEM;
	for (size_t i = 0; i < p->cfg.n_own_inodes; i++)
		c->own[k++] = p->cfg.own_inodes[i];
	pthread_mutex_lock(&p->own_lock);
	for (size_t i = 0; i < p->n_own; i++)
		c->own[k++] = p->own[i];
	pthread_mutex_unlock(&p->own_lock);
	for (size_t i = 0; i < c->n_entries; i++)
		if (c->entries[i]->linode)
			c->own[k++] = c->entries[i]->linode;
	qsort(c->own, k, sizeof(*c->own), cmp_u64);
	*n = k;
	return 0;
}

static void detect_external(struct cycle *c)
{
	int ret;

	if (c->external_known)
		return;
	ret = ph_default_ipv4(&c->external, "/proc/net/route");
	if (ret == 0) {
		char buf[INET_ADDRSTRLEN];

		c->external_known = true;
		inet_ntop(AF_INET, &c->external, buf, sizeof(buf));
		ph_info("external address detected", PH_FS("address", buf));
	} else if (!c->external_warned) {
		c->external_warned = true;
		ph_warn("no external address yet (no default route with an IPv4 address); "
			"retrying every scan", PH_FERR(ret));
	}
}

/**
 * apply_scan() - turn the latest scan into the port table
 * @c:		cycle
 *
 * Return: 0 or -ENOMEM (the table is left as it was)
 */
static int apply_scan(struct cycle *c)
{
	struct ph_ports *p = c->p;
	struct ph_rules_input in = {
		.scan = &c->scan, .external = c->external_known ? c->external : (struct in_addr){ 0 },
		.allow = &p->cfg.allow, .deny = &p->cfg.deny,
	};
	struct ph_decision *dec = NULL;
	struct apply a = { .c = c };
	size_t n_dec = 0, n_own, need;
	int ret;

	ret = collect_own(c, &n_own);
	if (ret)
		return ret;
	in.own_inodes = c->own;
	in.n_own = n_own;
	ret = ph_rules_decide(&in, &dec, &n_dec);
	if (ret)
		return ret;

	need = c->n_entries + n_dec + 1;
	c->next = malloc(need * sizeof(*c->next));
	if (!c->next) {
		free(dec);
		return -ENOMEM;
	}
	c->n_next = 0;

	pthread_mutex_lock(&p->table_lock);
	ph_rules_diff(c->decisions, c->n_decisions, dec, n_dec, on_change, &a);
	carry_until(&a, UINT16_MAX + 1u);	/* the rest, port 65535 included */
	/* ports in CONFLICT are retried on every scan */
	for (size_t i = 0; i < c->n_next; i++)
		if (c->next[i]->state == PH_PORT_CONFLICT)
			entry_enter(c, c->next[i], false);
	free(c->entries);
	c->entries = c->next;
	c->n_entries = c->n_next;
	c->next = NULL;
	pthread_mutex_unlock(&p->table_lock);

	free(c->decisions);
	c->decisions = dec;
	c->n_decisions = n_dec;
	return 0;
}

static void scan_now(struct cycle *c)
{
	struct ph_ports *p = c->p;
	uint64_t t0 = ph_now_ns(), us;
	int ret;

	detect_external(c);
	ret = ph_scanner_run(&c->scanner, &c->scan);
	us = (ph_now_ns() - t0) / 1000;
	atomic_fetch_add_explicit(&p->stats.scans, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->stats.scan_ns_sum, (ph_now_ns() - t0), memory_order_relaxed);
	for (int i = 0; i < PH_SCAN_HIST_BUCKETS; i++) {
		if (us <= ph_scan_hist_bounds_us[i]) {
			atomic_fetch_add_explicit(&p->stats.scan_hist[i], 1, memory_order_relaxed);
			break;
		}
	}
	if (!ret)
		ret = apply_scan(c);
	if (ret) {
		/* The previous table stands: a failed scan is not "no ports". */
		atomic_fetch_add_explicit(&p->stats.scan_errors, 1, memory_order_relaxed);
		if (ph_ratelimit_ok(&c->scan_rl, c->loop.now_ms, SCAN_ERR_BURST, SCAN_ERR_WINDOW_MS))
			ph_warn("scan failed; keeping the previous port table", PH_FERR(ret),
				PH_FS("method", ph_scanner_method(&c->scanner)),
				PH_FU("suppressed", c->scan_rl.suppressed));
	}
}

static void on_scan_timer(struct ph_loop *loop, struct ph_timer *t)
{
	struct cycle *c = ph_container_of(t, struct cycle, scan_timer);

	if (c->quiesced)
		return;
	scan_now(c);
	ph_timer_arm(loop, t, ph_now_ms() + c->p->cfg.scan_interval_ms, on_scan_timer);
}

/* ---- commands ------------------------------------------------------------- */

static int do_quiesce(struct cycle *c)
{
	size_t n;

	if (c->quiesced)
		return 0;
	c->quiesced = true;
	ph_timer_cancel(&c->loop, &c->scan_timer);
	update_accepting(c);
	/* relays tagged with an older epoch existed before the freeze */
	c->quiesce_epoch = ++c->relays.epoch;
	n = ph_relay_abort_all(&c->relays, UINT64_MAX);
	n += ph_shards_quiesce(&c->shards);
	atomic_store(&c->p->quiesced, true);
	ph_info("quiesced for snapshot", PH_FU("connections_reset", n));
	return 0;
}

static int do_resume(struct cycle *c)
{
	size_t n;

	if (!c->quiesced)
		return 0;
	n = ph_relay_abort_all(&c->relays, c->quiesce_epoch);
	n += ph_shards_resume(&c->shards);
	c->quiesced = false;
	atomic_store(&c->p->quiesced, false);
	scan_now(c);
	update_accepting(c);
	ph_timer_arm(&c->loop, &c->scan_timer, ph_now_ms() + c->p->cfg.scan_interval_ms,
		     on_scan_timer);
	ph_info("resumed", PH_FU("stale_connections_reset", n));
	return 1;
}

static void on_wake(struct ph_loop *loop, void *arg)
{
	struct cycle *c = arg;
	struct ph_ports *p = c->p;
	enum cmd cmd;
	int ret = 0;

	pthread_mutex_lock(&p->cmd_lock);
	cmd = p->cmd;
	p->cmd = CMD_NONE;
	pthread_mutex_unlock(&p->cmd_lock);

	switch (cmd) {
	case CMD_NONE:
		/* a relay thread freed room under the connection limit */
		update_accepting(c);
		return;
	case CMD_STOP:
		ph_loop_break(loop);
		break;
	case CMD_QUIESCE:
		ret = do_quiesce(c);
		break;
	case CMD_RESUME:
		ret = do_resume(c);
		break;
	}
	pthread_mutex_lock(&p->cmd_lock);
	p->cmd_result = ret;
	p->cmd_done = true;
	pthread_cond_broadcast(&p->cmd_cond);
	pthread_mutex_unlock(&p->cmd_lock);
}

/* Post @cmd to the worker and wait for its answer. Caller holds life_lock. */
static int send_cmd(struct ph_ports *p, enum cmd cmd)
{
	int ret;

	pthread_mutex_lock(&p->cmd_lock);
	p->cmd = cmd;
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

	ph_shards_stop(&c->shards);	/* their relays hold entry references */
	ph_relay_ctx_fini(&c->relays);
	pthread_mutex_lock(&p->table_lock);
	for (size_t i = 0; i < c->n_entries; i++)
		entry_destroy(c, c->entries[i]);
	free(c->entries);
	c->entries = NULL;
	c->n_entries = 0;
	pthread_mutex_unlock(&p->table_lock);
	ph_timer_cancel(&c->loop, &c->scan_timer);
	ph_timer_cancel(&c->loop, &c->accept_timer);
	ph_scanner_fini(&c->scanner);
	ph_scan_free(&c->scan);
	free(c->decisions);
	free(c->own);
	ph_loop_fini(&c->loop);
}

static void *worker(void *arg)
{
	struct cycle *c = arg;
	int ret;

	pthread_setname_np(pthread_self(), "ph-ports");
	scan_now(c);
	ph_timer_arm(&c->loop, &c->scan_timer, ph_now_ms() + c->p->cfg.scan_interval_ms,
		     on_scan_timer);
	ret = ph_loop_run(&c->loop);
	if (ret)
		ph_error("port worker loop failed", PH_FERR(ret));
	cycle_teardown(c);	/* the stopper joins us: then nothing is left */
	return NULL;
}

static int cycle_start(struct ph_ports *p)
{
	struct cycle *c;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->p = p;
	c->external = p->cfg.external;
	c->external_known = p->cfg.external.s_addr != 0;
	c->accepting = true;
	ret = ph_loop_init(&c->loop, on_wake, c);
	if (ret)
		goto fail_free;
	ret = ph_scanner_init(&c->scanner, p->cfg.force_proc);
	if (ret)
		goto fail_loop;
	ret = ph_relay_ctx_init(&c->relays, &c->loop, &p->cfg, &p->stats);
	if (ret)
		goto fail_relays;
	c->relays.on_closed = on_relay_closed;
	c->shards.on_closed = on_shard_relay_closed;
	c->shards.arg = c;
	ret = ph_shards_start(&c->shards, ph_relay_thread_count(&p->cfg) - 1, &p->cfg, &p->stats);
	if (ret)
		goto fail_relays;
	ph_info("port subsystem starting", PH_FS("discovery", ph_scanner_method(&c->scanner)),
		PH_FS("relay", p->cfg.force_copy ? "copy" : "copy+splice"),
		PH_FU("relay_threads", c->shards.n + 1));

	ret = ph_loop_thread_start(&c->thread, worker, c);
	if (ret)
		goto fail_shards;
	p->cycle = c;
	atomic_store(&p->quiesced, false);
	return 0;

fail_shards:
	ph_shards_stop(&c->shards);
fail_relays:
	ph_relay_ctx_fini(&c->relays);
	ph_scanner_fini(&c->scanner);
fail_loop:
	ph_loop_fini(&c->loop);
fail_free:
	free(c);
	return ret;
}

static void cycle_stop(struct ph_ports *p)
{
	struct cycle *c = p->cycle;

	send_cmd(p, CMD_STOP);
	pthread_join(c->thread, NULL);
	p->cycle = NULL;
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
	if (!p->cfg.scan_interval_ms)
		p->cfg.scan_interval_ms = 50;
	if (!p->cfg.backlog)
		p->cfg.backlog = 4096;
	if (!p->cfg.max_connections)
		p->cfg.max_connections = 65536;
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
	bool running;

	pthread_mutex_lock(&p->life_lock);
	running = p->cycle != NULL;
	pthread_mutex_unlock(&p->life_lock);
	return running;
}

int ph_ports_quiesce(struct ph_ports *p)
{
	int ret = -ESRCH;

	pthread_mutex_lock(&p->life_lock);
	if (p->cycle)
		ret = send_cmd(p, CMD_QUIESCE);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

int ph_ports_resume(struct ph_ports *p)
{
	int ret = 0;

	pthread_mutex_lock(&p->life_lock);
	if (p->cycle)
		ret = send_cmd(p, CMD_RESUME);
	pthread_mutex_unlock(&p->life_lock);
	return ret;
}

bool ph_ports_quiesced(struct ph_ports *p)
{
	return atomic_load(&p->quiesced);
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
	if (c->external_known)
		inet_ntop(AF_INET, &c->external, out->external, sizeof(out->external));
	if (c->n_entries) {
		out->ports = calloc(c->n_entries, sizeof(*out->ports));
		if (!out->ports)
			ret = -ENOMEM;
		else
			out->n = c->n_entries;
	}
	for (size_t i = 0; i < out->n; i++)
		entry_info(c->entries[i], &out->ports[i]);
	pthread_mutex_unlock(&p->table_lock);
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
