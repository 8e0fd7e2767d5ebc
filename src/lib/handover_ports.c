// SPDX-License-Identifier: MIT
/* handover_ports.c - the port subsystem's part of an upgrade: freeze, export, import
 *
 * Theory of Operation
 * ===================
 * An upgrade (handover.c) moves the whole running state into a new process.
 * Here the port subsystem's share of it:
 *
 *  - freeze: the port worker is sent CMD_FREEZE; it freezes every relay
 *    thread (each answers, then waits), answers, and waits itself. From then
 *    on nothing accepts, scans or moves a byte, so the caller may read every
 *    cycle structure from its own thread. Thaw lets them all go on, exactly
 *    where they stopped: an upgrade that fails changes nothing.
 *  - export (frozen): the external listeners and UDP sockets by their fd
 *    store names, the port table's rows, the counters, and every relay of
 *    every loop (ph_relay_export(): both legs, pipes, buffered bytes, the
 *    half-close and connect state). Descriptors are only listed, not
 *    duplicated: they travel by SCM_RIGHTS and this process closes its copies
 *    by exiting once the successor took them.
 *  - import (successor, after its first scan took the adopted listeners from
 *    the fd store pool): CMD_IMPORT on the worker restores rows' since/cap
 *    hits and the counters, and deals the relays round-robin to itself and
 *    the relay threads, each importing on its own loop. A relay whose port
 *    has no row any more (its service stopped listening meanwhile) is
 *    counted against an owner of its own: its connection still works.
 *
 * UDP flows are not handed over (their sockets are the flow table's, and a
 * flow is cheap to make again): the next datagram of a client makes a new
 * one in the successor.
 */
#include "handover.h"
#include "ports_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "array.h"
#include "netutil.h"

/* The counters handed over, in the state's order (append only: a successor
 * adds what it knows and ignores the rest) */
static _Atomic uint64_t *counter_at(struct ph_stats *st, size_t i)
{
	_Atomic uint64_t *fixed[] = {
		&st->scans, &st->scan_errors, &st->scan_ns_sum, &st->conns_total,
		&st->conns_refused, &st->conns_reset, &st->bytes_to_service,
		&st->bytes_to_client, &st->accept_pauses, &st->bind_conflicts,
		&st->address_changes, &st->netlink_resyncs, &st->listen_events,
		&st->listen_events_lost, &st->listen_events_own,
	};
	size_t nf = sizeof(fixed) / sizeof(fixed[0]);

	if (i < nf)
		return fixed[i];
	i -= nf;
	if (i < PH_SCAN_HIST_BUCKETS)
		return &st->scan_hist[i];
	i -= PH_SCAN_HIST_BUCKETS;
	if (i < PH_RELAY_END_COUNT)
		return &st->relay_closed[i];
	return NULL;
}

int ph_ho_fds_add(struct ph_ho_fds *f, int fd, uint32_t *index)
{
	if (ph_array_grow(&f->v, &f->cap, f->n + 1, sizeof(*f->v), 256))
		return -ENOMEM;
	*index = (uint32_t)f->n;
	f->v[f->n++] = fd;
	return 0;
}

void ph_ho_fds_free(struct ph_ho_fds *f)
{
	free(f->v);
	memset(f, 0, sizeof(*f));
}

/* ---- freeze ------------------------------------------------------------------ */

void handover_worker_freeze(struct cycle *c)
{
	struct ph_ports *p = c->p;

	ph_relay_threads_freeze(&c->threads);
	pthread_mutex_lock(&p->cmd_lock);
	p->frozen = true;
	p->cmd_result = 0;
	p->cmd_done = true;
	pthread_cond_broadcast(&p->cmd_cond);
	while (p->frozen)
		pthread_cond_wait(&p->cmd_cond, &p->cmd_lock);
	pthread_mutex_unlock(&p->cmd_lock);
	ph_relay_threads_thaw(&c->threads);
}

int ph_ports_freeze(struct ph_ports *p)
{
	return ports_cmd_if_started(p, CMD_FREEZE, NULL);
}

void ph_ports_thaw(struct ph_ports *p)
{
	pthread_mutex_lock(&p->cmd_lock);
	p->frozen = false;
	pthread_cond_broadcast(&p->cmd_cond);
	pthread_mutex_unlock(&p->cmd_lock);
}

/* ---- export ------------------------------------------------------------------ */

struct export_ctx {
	struct ph_ho_state *s;
	struct ph_ho_fds *fds;
	size_t cap_relays;
	int err;
};

static int add_fd(struct export_ctx *x, uint32_t *field)
{
	if (*field == PH_HO_NONE)
		return 0;
	return ph_ho_fds_add(x->fds, (int)*field, field);
}

static int export_relay(void *arg, const struct ph_ho_relay *r, struct ph_relay_owner *owner)
{
	struct export_ctx *x = arg;
	const struct port_entry *e = ph_container_of(owner, struct port_entry, owner);
	struct ph_ho_relay *o;

	if (ph_array_grow(&x->s->relays, &x->cap_relays, x->s->n_relays + 1, sizeof(*o), 256)) {
		x->err = -ENOMEM;
		return 1;
	}
	o = &x->s->relays[x->s->n_relays++];
	*o = *r;
	o->target = e->target;
	o->tlen = e->tlen;
	if (add_fd(x, &o->fd[0]) || add_fd(x, &o->fd[1]) || add_fd(x, &o->dir[0].pipe[0]) ||
	    add_fd(x, &o->dir[0].pipe[1]) || add_fd(x, &o->dir[1].pipe[0]) ||
	    add_fd(x, &o->dir[1].pipe[1])) {
		x->err = -ENOMEM;
		return 1;
	}
	return 0;
}

static int export_table(struct cycle *c, struct ph_ho_state *s, struct ph_ho_fds *fds)
{
	size_t cap_socks = 0;

	s->ports = calloc(c->n_entries ? c->n_entries : 1, sizeof(*s->ports));
	if (!s->ports)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_entries; i++) {
		struct port_entry *e = c->entries[i];

		s->ports[s->n_ports++] = (struct ph_ho_port){
			.port = e->d.port, .proto = (uint8_t)e->d.proto, .state = (uint8_t)e->state,
			.since_ms = e->since_ms, .cap_hits = atomic_load(&e->cap_hits),
		};
		for (unsigned j = 0; j < PH_MAX_EXT_ADDRS; j++) {
			struct ext_listener *l = &e->ls[j];
			struct sockaddr_storage ss;
			struct ph_ho_sock *k;

			if (l->fd < 0)
				continue;
			if (ph_array_grow(&s->socks, &cap_socks, s->n_socks + 1, sizeof(*k), 64))
				return -ENOMEM;
			k = &s->socks[s->n_socks];
			ph_ext_addr_sockaddr(&l->at, e->d.port, &ss);
			if (ph_fdname_format(k->name, sizeof(k->name),
					     e->d.proto == IPPROTO_UDP ? PH_FDKIND_UDP : PH_FDKIND_TCP,
					     (struct sockaddr *)&ss))
				continue;
			if (ph_ho_fds_add(fds, l->fd, &k->fd))
				return -ENOMEM;
			s->n_socks++;
		}
	}
	return 0;
}

int ph_ports_export(struct ph_ports *p, struct ph_ho_state *s, struct ph_ho_fds *fds)
{
	struct cycle *c = p->cycle;	/* frozen: nothing changes it */
	struct export_ctx x = { .s = s, .fds = fds };
	size_t i = 0;
	_Atomic uint64_t *ctr;
	int ret;

	bool frozen;

	pthread_mutex_lock(&p->cmd_lock);
	frozen = p->frozen;
	pthread_mutex_unlock(&p->cmd_lock);
	if (!c || !frozen)
		return -ESRCH;
	while ((ctr = counter_at(&p->stats, i)) && i < PH_HO_MAX_COUNTERS)
		s->counters[i++] = atomic_load(ctr);
	s->n_counters = i;
	ret = export_table(c, s, fds);
	if (ret)
		return ret;
	ph_relay_export(&c->relays, export_relay, &x);
	for (size_t t = 0; t < c->threads.n && !x.err; t++)
		ph_relay_export(ph_relay_threads_ctx(&c->threads, t), export_relay, &x);
	return x.err;
}

/* ---- import ------------------------------------------------------------------ */

/* A relay whose port is gone from the table: an entry of its own, outside
 * the table (so a later upgrade exports it like any other) */
static void orphan_release(struct ph_relay_owner *o)
{
	free(ph_container_of(o, struct port_entry, owner));
}

static struct ph_relay_owner *orphan_new(const struct ph_ho_relay *r)
{
	struct port_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->target = r->target;
	e->tlen = r->tlen;
	e->owner.release = orphan_release;
	atomic_store(&e->owner.refs, 1);
	return &e->owner;
}

static struct port_entry *entry_find(struct cycle *c, uint16_t port, uint8_t proto)
{
	for (size_t i = 0; i < c->n_entries; i++)
		if (c->entries[i]->d.port == port && c->entries[i]->d.proto == proto)
			return c->entries[i];
	return NULL;
}

/* struct import_batch - the relays one loop takes (descriptors translated) */
struct import_batch {
	struct ph_ho_relay *v;
	struct ph_relay_owner **owners;
	size_t n;
};

static size_t import_batch_run(struct ph_relay_ctx *ctx, void *arg)
{
	struct import_batch *b = arg;
	size_t ok = 0;

	for (size_t i = 0; i < b->n; i++) {
		if (!ph_relay_import(ctx, &b->v[i], b->owners[i]))
			ok++;
		ph_relay_owner_put(b->owners[i]);	/* the relay holds its own */
	}
	return ok;
}

static uint32_t fd_of(const int *fds, uint32_t i)
{
	return i == PH_HO_NONE ? PH_HO_NONE : (uint32_t)fds[i];
}

/* On the worker: see the top. Return: relays imported */
static size_t do_import(struct cycle *c, const struct ph_ho_state *s, const int *fds)
{
	size_t loops = c->threads.n + 1, imported = 0;
	struct import_batch *b = calloc(loops, sizeof(*b));
	_Atomic uint64_t *ctr;

	for (size_t i = 0; i < s->n_ports; i++) {
		struct port_entry *e = entry_find(c, s->ports[i].port, s->ports[i].proto);

		if (e && (uint8_t)e->state == s->ports[i].state)
			e->since_ms = s->ports[i].since_ms;
		if (e)
			atomic_fetch_add(&e->cap_hits, s->ports[i].cap_hits);
	}
	for (size_t i = 0; i < s->n_counters && (ctr = counter_at(&c->p->stats, i)); i++)
		atomic_fetch_add_explicit(ctr, s->counters[i], memory_order_relaxed);

	for (size_t k = 0; b && k < loops; k++) {
		b[k].v = calloc(s->n_relays / loops + 1, sizeof(*b[k].v));
		b[k].owners = calloc(s->n_relays / loops + 1, sizeof(*b[k].owners));
		if (!b[k].v || !b[k].owners) {
			for (size_t j = 0; j <= k; j++) {
				free(b[j].v);
				free(b[j].owners);
			}
			free(b);
			b = NULL;
		}
	}
	for (size_t i = 0; i < s->n_relays; i++) {
		const struct ph_ho_relay *r = &s->relays[i];
		struct ph_ho_relay t = *r;
		struct port_entry *e = entry_find(c, (uint16_t)ntohs(((const struct sockaddr_in *)
							     &r->target)->sin_port), IPPROTO_TCP);
		struct ph_relay_owner *o = e ? &e->owner : orphan_new(r);
		struct import_batch *bk = b ? &b[i % loops] : NULL;

		t.fd[0] = fd_of(fds, r->fd[0]);
		t.fd[1] = fd_of(fds, r->fd[1]);
		for (int d = 0; d < 2; d++) {
			t.dir[d].pipe[0] = fd_of(fds, r->dir[d].pipe[0]);
			t.dir[d].pipe[1] = fd_of(fds, r->dir[d].pipe[1]);
		}
		if (e)
			ph_relay_owner_get(o);
		if (!o || !bk) {	/* no memory: the connection is reset */
			t.flags = 0;
			if (o)
				ph_relay_owner_put(o);
			ph_sock_abort((int)t.fd[0]);
			ph_sock_abort((int)t.fd[1]);
			for (int d = 0; d < 2; d++)
				if (t.dir[d].pipe[0] != PH_HO_NONE) {
					close((int)t.dir[d].pipe[0]);
					close((int)t.dir[d].pipe[1]);
				}
			continue;
		}
		bk->v[bk->n] = t;
		bk->owners[bk->n++] = o;
	}
	if (!b)
		return 0;
	imported = import_batch_run(&c->relays, &b[0]);
	for (size_t k = 1; k < loops; k++)
		imported += ph_relay_threads_run(&c->threads, k - 1, import_batch_run, &b[k]);
	for (size_t k = 0; k < loops; k++) {
		free(b[k].v);
		free(b[k].owners);
	}
	free(b);
	accept_update(c);	/* the caps count the imported relays */
	return imported;
}

/* struct import_arg - CMD_IMPORT's argument */
struct import_arg {
	const struct ph_ho_state *s;
	const int *fds;
};

int handover_worker_import(struct cycle *c, void *arg)
{
	struct import_arg *a = arg;
	size_t n = do_import(c, a->s, a->fds);

	if (n < a->s->n_relays)
		ph_warn("upgrade: some relayed connections could not be taken over",
			PH_FU("taken", n), PH_FU("handed", a->s->n_relays));
	return (int)n;
}

int ph_ports_import(struct ph_ports *p, const struct ph_ho_state *s, const int *fds)
{
	struct import_arg a = { .s = s, .fds = fds };

	return ports_cmd_if_started(p, CMD_IMPORT, &a);
}
