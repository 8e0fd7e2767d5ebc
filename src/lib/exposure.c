// SPDX-License-Identifier: MIT
/* exposure.c - from a scan's decisions to the port table and its external listeners
 *
 * Theory of Operation
 * ===================
 * Every scan (discovery.h) and the daemon's own socket inodes go through the
 * exposure rules (rules.h), giving one decision per port. The difference from
 * the previous decisions (ph_rules_diff) is applied to the port table, which
 * is kept sorted by port and rebuilt in one pass per scan:
 *
 *  - a new EXPOSE decision binds EXTERNAL:port (SO_REUSEADDR, non-blocking)
 *    and the port is FORWARDED; if the bind fails it is CONFLICT, retried on
 *    every scan and logged only when its state changes;
 *  - a vanished decision closes that listener (relays still open on the
 *    port keep the entry alive through its reference count);
 *  - a restarted service (same port, new inode) changes nothing, so there is
 *    never a gap in which clients are refused;
 *  - PUBLIC (already served on the external address) and EXCLUDED (--allow,
 *    --deny) ports are recorded, never bound.
 *
 * Each change of state is logged and published on the event bus. A failed
 * scan or apply leaves the table as it was: a failed scan is never read as
 * "every port closed".
 *
 * Readers on other threads (ph_ports_list) see the table under table_lock;
 * the worker holds it only while it swaps in the next table.
 */
#include "ports_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "netutil.h"

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void port_entry_info(const struct port_entry *e, struct ph_port_info *info)
{
	memset(info, 0, sizeof(*info));
	info->port = e->d.port;
	info->family = e->d.family;
	ph_addr_str(&e->d.addr, info->address, sizeof(info->address));
	info->state = e->state;
	info->connections = atomic_load_explicit(&e->owner.conns, memory_order_relaxed);
	info->cap_hits = atomic_load_explicit(&e->cap_hits, memory_order_relaxed);
	info->since_ms = e->since_ms;
	memcpy(info->error, e->error, sizeof(info->error));
}

static void publish(struct cycle *c, enum ph_event_type type, const struct port_entry *e)
{
	struct ph_event ev = { .type = type };

	port_entry_info(e, &ev.port);
	ph_bus_publish(c->p->bus, &ev);
}

static void entry_release(struct ph_relay_owner *o)
{
	free(ph_container_of(o, struct port_entry, owner));
}

static void entry_close_listener(struct cycle *c, struct port_entry *e)
{
	if (e->lfd < 0)
		return;
	accept_entry_uncap(c, e);
	ph_loop_del(&c->loop, &e->io);
	close(e->lfd);
	e->lfd = -1;
	e->linode = 0;
}

/* Remove from service; relays still counted against it, on any thread,
 * keep it alive: the table's reference is dropped here. */
void port_entry_destroy(struct cycle *c, struct port_entry *e)
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
	ph_relay_sock_options(fd, &c->p->cfg, PH_LEG_CLIENT);
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
	ret = ph_loop_add(&c->loop, &e->io, fd, c->accepting ? EPOLLIN : 0, accept_on_listener);
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
			port_entry_destroy(c, e);
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
		port_entry_destroy(c, e);
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

void exposure_scan(struct cycle *c)
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
