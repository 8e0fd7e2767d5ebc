// SPDX-License-Identifier: MIT
/* exposure.c - from a scan's decisions to the port table and its external listeners
 *
 * Theory of Operation
 * ===================
 * Every scan (discovery.h) and the daemon's own socket inodes go through the
 * exposure rules (rules.h), giving one decision per (port, proto). The
 * difference from the previous decisions (ph_rules_diff) is applied to the
 * port table, which is kept sorted by (port, proto) and rebuilt in one pass
 * per scan:
 *
 *  - a new EXPOSE decision binds EXTERNAL:port (TCP: a listener,
 *    SO_REUSEADDR, non-blocking, watched by accept.c; UDP: a datagram
 *    socket without SO_REUSEADDR, so that a port someone else holds is a
 *    conflict, handed to the UDP relay, which owns it from then on) and the
 *    port is FORWARDED; if the bind fails it is CONFLICT, retried on
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
	info->proto = ph_proto_norm(e->d.proto);
	info->family = e->d.family;
	ph_addr_str(&e->d.addr, info->address, sizeof(info->address));
	info->state = e->state;
	info->connections = atomic_load_explicit(&e->owner.conns, memory_order_relaxed);
	info->cap_hits = atomic_load_explicit(&e->cap_hits, memory_order_relaxed);
	info->flows = atomic_load_explicit(&e->udp_flows, memory_order_relaxed);
	info->since_ms = e->since_ms;
	_Static_assert(sizeof(info->error) >= sizeof(e->error), "error text fits");
	_Static_assert(sizeof(info->error) >= sizeof(e->steer_why), "steer text fits");
	memcpy(info->error, e->error, sizeof(e->error));
	if (e->state == PH_PORT_FORWARDED && e->steer_why[0])
		memcpy(info->error, e->steer_why, sizeof(e->steer_why));
	for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
		if (e->ls[i].fd >= 0)
			ph_addr_set_add(&info->addrs, &e->ls[i].at);
	info->steered_fams = e->steer_fams;
	for (uint32_t i = 0; e->steer_fams && i < e->cycle->ext.n; i++)
		if (ph_ext_addr_fam(&e->cycle->ext.a[i]) & e->steer_fams)
			ph_addr_set_add(&info->addrs, &e->cycle->ext.a[i]);
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

/**
 * listener_close() - stop listening on one external address
 * @c:		cycle
 * @x:		the listener (a free slot does nothing)
 * @for_good:	the port is withdrawn from that address: released from the
 *		fd store too, and shut down so that the store's copy stops
 *		listening now; false when only this process stops (a daemon
 *		stop: the next process takes the stored copy)
 */
static void listener_close(struct cycle *c, struct ext_listener *x, bool for_good)
{
	struct sockaddr_storage ss;

	if (x->fd < 0)
		return;
	if (x->ux) {	/* the UDP relay owns the socket: it ends its flows */
		ph_ext_addr_sockaddr(&x->at, x->e->d.port, &ss);
		ph_udp_ext_close(x->ux);
		events_expect_own(c, ss.ss_family, IPPROTO_UDP, x->e->d.port, false);
		x->ux = NULL;
	} else if (for_good) {
		ph_loop_del(&c->loop, &x->io);
		ph_ext_addr_sockaddr(&x->at, x->e->d.port, &ss);
		ph_fdstore_release(c->p->cfg.fdstore, PH_FDKIND_TCP, (struct sockaddr *)&ss, x->fd);
		/* shut down: a LISTEN -> CLOSE record, ours */
		events_expect_own(c, ss.ss_family, IPPROTO_TCP, x->e->d.port, false);
	} else {
		/* a stop: the store's copy (if any) keeps listening */
		ph_loop_del(&c->loop, &x->io);
		close(x->fd);
	}
	x->fd = -1;
	x->inode = 0;
}

/* ---- steering (--steer, steer.h) ------------------------------------------ */

static int fam_af(unsigned fam)
{
	return fam == PH_FAM_V4 ? AF_INET : AF_INET6;
}

/* Stop steering @e: its (family, port) keys leave the SOCKHASH */
static void steer_drop(struct cycle *c, struct port_entry *e)
{
	for (unsigned f = PH_FAM_V4; f <= PH_FAM_V6; f <<= 1)
		if (e->steer_fams & f)
			ph_steer_set(&c->steer, fam_af(f), e->d.port, -1);
	e->steer_fams = 0;
	e->steer_inode = 0;
}

/* --steer names @e, a loopback-only TCP service */
static bool steer_wanted(const struct cycle *c, const struct port_entry *e)
{
	return e->d.kind == PH_DECIDE_EXPOSE && e->d.proto != IPPROTO_UDP &&
	       ph_portset_has(&c->p->cfg.steer, e->d.port);
}

/* Relay @e after all, and say why (once per listener) */
static void steer_fail(struct cycle *c, struct port_entry *e, const char *why)
{
	steer_drop(c, e);
	snprintf(e->steer_why, sizeof(e->steer_why), "%s", why);
	ph_warn("port relayed, not steered", PH_FU("port", e->d.port), PH_FS("reason", why));
}

/**
 * steer_sync() - steer @e if --steer names it and steering is on: put its
 * listener in the SOCKHASH for each family it can take (its own, unless a
 * public listener covers that family), taking the listener again when the
 * service restarted; else relay it, with the reason in @e->steer_why
 * @c:		cycle
 * @e:		an EXPOSE entry
 *
 * A new listener replaces the old one in place: no moment without one.
 */
static void steer_sync(struct cycle *c, struct port_entry *e)
{
	unsigned want, f;
	char why[160];
	int fd, ret = 0;

	if (!steer_wanted(c, e)) {
		steer_drop(c, e);
		e->steer_why[0] = '\0';
		return;
	}
	if (!ph_steer_on(&c->steer)) {
		snprintf(e->steer_why, sizeof(e->steer_why), "steering is off: %.120s", c->steer_off);
		return;
	}
	want = (e->d.family == AF_INET ? PH_FAM_V4 : PH_FAM_V6) & ~e->d.public_fams;
	if (e->steer_tried == e->d.inode && (e->steer_fams == want || e->steer_why[0]))
		return;	/* steered as wanted, or this listener failed already */
	e->steer_tried = e->d.inode;
	if (!want) {
		steer_drop(c, e);
		return;
	}
	fd = ph_steer_take_listener(e->d.inode, why, sizeof(why));
	if (fd < 0) {
		steer_fail(c, e, why);
		return;
	}
	for (f = PH_FAM_V4; f <= PH_FAM_V6 && !ret; f <<= 1)
		if (want & f)
			ret = ph_steer_set(&c->steer, fam_af(f), e->d.port, fd);
	close(fd);	/* the map holds the socket now */
	if (ret) {
		snprintf(why, sizeof(why), "SOCKHASH update: %s", ph_strerror(ret));
		steer_fail(c, e, why);
		return;
	}
	for (f = PH_FAM_V4; f <= PH_FAM_V6; f <<= 1)
		if ((e->steer_fams & f) && !(want & f))
			ph_steer_set(&c->steer, fam_af(f), e->d.port, -1);
	if (e->steer_inode)
		ph_info("steered port follows the restarted service", PH_FU("port", e->d.port));
	e->steer_fams = (uint8_t)want;
	e->steer_inode = e->d.inode;
	e->steer_why[0] = '\0';
}

size_t exposure_steer_destroy(struct cycle *c)
{
	uint16_t *ports;
	uint8_t *fams;
	size_t n = 0, total = 0;
	int ret;

	if (!ph_steer_on(&c->steer))
		return 0;
	ports = malloc(c->n_entries * sizeof(*ports) + 1);
	fams = malloc(c->n_entries + 1);
	if (ports && fams) {
		for (size_t i = 0; i < c->n_entries; i++)
			if (c->entries[i]->steer_fams) {
				ports[n] = c->entries[i]->d.port;
				fams[n++] = c->entries[i]->steer_fams;
			}
		ret = ph_steer_conns(&(struct ph_steer_sel){ .ext = &c->ext, .ports = ports,
							     .fams = fams, .n = n },
				     true, NULL, &total);
	} else {
		ret = -ENOMEM;
	}
	if (ret)
		ph_warn("destroying steered connections failed", PH_FERR(ret),
			PH_FU("destroyed", total));
	free(ports);
	free(fams);
	return total;
}

static void entry_close_listeners(struct cycle *c, struct port_entry *e, bool for_good)
{
	steer_drop(c, e);
	accept_entry_uncap(c, e);
	for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
		listener_close(c, &e->ls[i], for_good);
}

static void entry_put_table_ref(struct ph_defer *d)
{
	ph_relay_owner_put(&ph_container_of(d, struct port_entry, put)->owner);
}

/* Remove from service; relays still counted against it, on any thread,
 * keep it alive. The table's reference is dropped after the current event
 * batch: a listener closed here may still have an event later in the batch,
 * and reading its ph_io must not meet freed memory when a relay closed in
 * the same batch (here or on a relay thread) held the last other reference. */
void port_entry_destroy(struct cycle *c, struct port_entry *e, bool for_good)
{
	entry_close_listeners(c, e, for_good);
	ph_loop_defer(&c->loop, &e->put, entry_put_table_ref);
}

/**
 * udp_bind() - open EXTERNAL:port for UDP on one address, hand it to the relay
 * @c:		cycle
 * @e:		a UDP entry (its target set)
 * @x:		a free slot of @e
 * @ss, @sl:	the external address and port
 *
 * No SO_REUSEADDR: with it, a UDP bind succeeds next to another socket
 * that set it too, and the two would share the port's datagrams.
 * Return: 0 or -errno
 */
static int udp_bind(struct cycle *c, struct port_entry *e, struct ext_listener *x,
		    const struct sockaddr_storage *ss, socklen_t sl)
{
	int one = 1, fd, ret;
	uint64_t inode;

	if (!c->udp)
		return -EPROTONOSUPPORT;	/* cannot happen: --udp off scans no UDP */
	/* an upgrade's predecessor handed it over: datagrams queued meanwhile are kept */
	fd = ph_fdstore_take(c->p->cfg.fdstore, PH_FDKIND_UDP, (const struct sockaddr *)ss);
	if (fd >= 0)
		goto adopted;
	fd = socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if ((ss->ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	    bind(fd, (const struct sockaddr *)ss, sl)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	events_expect_own(c, ss->ss_family, IPPROTO_UDP, e->d.port, true);
adopted:
	inode = ph_sock_inode(fd);
	ret = ph_udp_ext_open(c->udp, fd, (struct sockaddr *)&e->target, e->tlen, &e->udp_flows,
			      &x->ux);
	if (ret) {	/* @fd is closed */
		events_expect_own(c, ss->ss_family, IPPROTO_UDP, e->d.port, false);
		return ret;
	}
	x->fd = fd;
	x->inode = inode;
	return 0;
}

/**
 * listener_adopt() - the listener a previous process left in the fd store
 * for @ss, made ready for this cycle (options and backlog as configured now)
 * @c:		cycle
 * @ss:		the address wanted
 *
 * Return: the descriptor, or -ENOENT when the store had none
 */
static int listener_adopt(struct cycle *c, const struct sockaddr_storage *ss)
{
	int fd = ph_fdstore_take(c->p->cfg.fdstore, PH_FDKIND_TCP, (const struct sockaddr *)ss);

	if (fd >= 0 && listen(fd, (int)c->p->cfg.backlog))
		ph_debug("adopted listener: backlog not changed", PH_FERR(errno));
	return fd;
}

/**
 * listener_bind() - open EXTERNAL:port on one external address
 * @c:		cycle
 * @e:		entry
 * @x:		a free slot of @e
 * @a:		the address
 *
 * IPv6 sockets are IPV6_V6ONLY: each family's addresses get their own.
 * Return: 0 or -errno
 */
static int listener_bind(struct cycle *c, struct port_entry *e, struct ext_listener *x,
			 const struct ph_ext_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t sl = ph_ext_addr_sockaddr(a, e->d.port, &ss);
	const char *cc;
	int one = 1, fd, ret;
	bool adopted;

	if (e->d.proto == IPPROTO_UDP) {
		ret = udp_bind(c, e, x, &ss, sl);
		if (!ret) {
			x->at = *a;
			x->e = e;
		}
		return ret;
	}

	fd = listener_adopt(c, &ss);
	adopted = fd >= 0;
	if (!adopted)
		fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* inherited by accepted clients */
	ph_relay_sock_options(fd, &c->p->cfg, PH_LEG_CLIENT);
	cc = ph_relay_client_cc(&c->p->cfg, &a->addr);
	if (cc && (ret = ph_sock_congestion(fd, cc)))
		/* checked at start; this only fails if the module went away */
		ph_debug("client congestion control not set", PH_FS("cc", cc), PH_FERR(ret));
	if (!adopted &&
	    (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	     (ss.ss_family == AF_INET6 &&
	      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one))) ||
	     bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, (int)c->p->cfg.backlog))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (!adopted)	/* an adopted listener was listening already: no record */
		events_expect_own(c, ss.ss_family, IPPROTO_TCP, e->d.port, true);
	ret = ph_loop_add(&c->loop, &x->io, fd, c->accepting ? EPOLLIN : 0, accept_on_listener);
	if (ret) {
		ph_fdstore_release(c->p->cfg.fdstore, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd);
		if (!adopted)
			events_expect_own(c, ss.ss_family, IPPROTO_TCP, e->d.port, false);
		return ret;
	}
	/* a copy for the service manager: after a crash the next process
	 * takes it, and clients wait in its backlog meanwhile */
	if (!adopted)
		ph_fdstore_keep(c->p->cfg.fdstore, PH_FDKIND_TCP, (struct sockaddr *)&ss, fd);
	else
		ph_debug("listener adopted", PH_FU("port", e->d.port));
	x->fd = fd;
	x->inode = ph_sock_inode(fd);
	x->at = *a;
	x->e = e;
	return 0;
}

static struct ext_listener *entry_listener(struct port_entry *e, const struct ph_ext_addr *a)
{
	for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
		if (e->ls[i].fd >= 0 && !memcmp(&e->ls[i].at, a, sizeof(*a)))
			return &e->ls[i];
	return NULL;
}

static struct ext_listener *entry_free_slot(struct port_entry *e)
{
	for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
		if (e->ls[i].fd < 0)
			return &e->ls[i];
	return NULL;	/* cannot happen: as many slots as addresses */
}

/* An exposed port is bound to every external address of the families no
 * listener of its own covers */
static bool entry_wants(const struct cycle *c, const struct port_entry *e,
			const struct ph_ext_addr *a)
{
	return !(ph_ext_addr_fam(a) & (e->d.public_fams | e->steer_fams)) &&
	       ph_addr_set_has(&c->ext, a);
}

/**
 * entry_sync() - match @e's listeners to the external addresses: close
 * those on addresses that went, bind the missing ones
 * @c:		cycle
 * @e:		an entry to expose; on failure @e->error says why
 *
 * Return: 0 when every address is bound; 1 when there is no address to bind
 * (not an error of this port); else the first bind error (-errno), while
 * the other addresses stay bound
 */
static int entry_sync(struct cycle *c, struct port_entry *e)
{
	unsigned wanted = 0;
	int first = 0;

	e->ext_gen = c->ext_gen;
	for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
		if (e->ls[i].fd >= 0 && !entry_wants(c, e, &e->ls[i].at))
			listener_close(c, &e->ls[i], true);
	for (uint32_t i = 0; i < c->ext.n; i++) {
		const struct ph_ext_addr *a = &c->ext.a[i];
		char at[PH_ADDR_STRLEN];
		int ret;

		if (!entry_wants(c, e, a))
			continue;
		wanted++;
		if (entry_listener(e, a))
			continue;
		ret = listener_bind(c, e, entry_free_slot(e), a);
		if (ret && !first) {
			first = ret;
			snprintf(e->error, sizeof(e->error), "%s: %s",
				 ph_ext_addr_str(a, at, sizeof(at)), ph_strerror(ret));
		}
	}
	if (!wanted) {
		snprintf(e->error, sizeof(e->error), "no external address");
		return 1;
	}
	if (!first)
		e->error[0] = '\0';
	return first;
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
	const char *proto = ph_proto_name(e->d.proto);
	char addr[INET6_ADDRSTRLEN];
	int ret = 0;

	if (e->d.kind == PH_DECIDE_EXPOSE) {
		struct sockaddr_storage was = e->target;
		socklen_t was_len = e->tlen;

		entry_set_target(e);
		/* a UDP socket's flows connect to the target it was opened
		 * with (TCP reads it per client): a new target, new sockets */
		if (e->d.proto == IPPROTO_UDP &&
		    (was_len != e->tlen || memcmp(&was, &e->target, was_len)))
			entry_close_listeners(c, e, true);
		steer_sync(c, e);	/* before the binds: steered addresses get none */
		ret = entry_sync(c, e);
		if (e->steer_fams & ph_addr_set_fams(&c->ext))
			want = PH_PORT_STEERED;	/* a relay on the other family may have failed */
		else
			want = ret ? PH_PORT_CONFLICT : PH_PORT_FORWARDED;
	} else {
		entry_close_listeners(c, e, true);
		want = passive_state(e->d.kind);
		e->error[0] = '\0';
	}
	if (!is_new && want == old)
		return;
	e->state = want;
	e->since_ms = wall_ms();
	ph_addr_str(&e->d.addr, addr, sizeof(addr));
	switch (want) {
	case PH_PORT_STEERED:
		ph_info("port steered", PH_FU("port", e->d.port), PH_FS("target", addr),
			PH_FS("note", "the service sees the clients' own addresses"));
		publish(c, PH_EV_OPEN, e);
		break;
	case PH_PORT_FORWARDED:
		ph_info("port forwarded", PH_FU("port", e->d.port), PH_FS("proto", proto),
			PH_FS("target", addr));
		publish(c, PH_EV_OPEN, e);
		break;
	case PH_PORT_CONFLICT:
		if (ret == 1) {	/* no address at all: said once, not per port */
			ph_debug("port waits for an external address", PH_FU("port", e->d.port),
				 PH_FS("proto", proto));
		} else {
			atomic_fetch_add_explicit(&c->p->stats.bind_conflicts, 1,
						  memory_order_relaxed);
			ph_warn("port conflict", PH_FU("port", e->d.port), PH_FS("proto", proto),
				PH_FS("error", e->error));
		}
		publish(c, PH_EV_CONFLICT, e);
		break;
	default:
		ph_debug("port seen", PH_FU("port", e->d.port), PH_FS("proto", proto),
			 PH_FS("address", addr), PH_FS("state", ph_port_state_name(want)));
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
 * Diff callback. Changes arrive in (port, proto) order, so the next table is
 * built by walking the old table alongside: unchanged entries are carried over.
 */
struct apply {
	struct cycle *c;
	size_t old_i;		/* next old entry not yet carried over */
};

/* Compare the old table's next entry with (port, proto) */
static int old_cmp(const struct apply *a, uint16_t port, uint8_t proto)
{
	const struct ph_decision *d = &a->c->entries[a->old_i]->d;

	return ph_decision_cmp(d->port, d->proto, port, proto);
}

static void carry_until(struct apply *a, uint16_t port, uint8_t proto)
{
	struct cycle *c = a->c;

	while (a->old_i < c->n_entries && old_cmp(a, port, proto) < 0)
		next_push(c, c->entries[a->old_i++]);
}

static void carry_rest(struct apply *a)
{
	while (a->old_i < a->c->n_entries)
		next_push(a->c, a->c->entries[a->old_i++]);
}

static void on_change(void *arg, const struct ph_change *ch)
{
	struct apply *a = arg;
	struct cycle *c = a->c;
	const struct ph_decision *d = ch->new ? ch->new : ch->old;
	uint16_t port = d->port;
	struct port_entry *e = NULL;

	c->scan_changes++;
	carry_until(a, port, d->proto);
	if (a->old_i < c->n_entries && !old_cmp(a, port, d->proto))
		e = c->entries[a->old_i++];

	switch (ch->kind) {
	case PH_CHANGE_ADDED:
		if (e) /* cannot happen: the table mirrors the old decisions */
			port_entry_destroy(c, e, true);
		e = calloc(1, sizeof(*e));
		if (!e) {
			ph_error("out of memory for a port entry", PH_FU("port", port),
				 PH_FS("proto", ph_proto_name(d->proto)));
			return;
		}
		for (unsigned i = 0; i < PH_MAX_EXT_ADDRS; i++)
			e->ls[i].fd = -1;
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
		ph_info("port closed", PH_FU("port", port), PH_FS("proto", ph_proto_name(d->proto)),
			PH_FS("state", ph_port_state_name(e->state)));
		publish(c, PH_EV_CLOSE, e);
		port_entry_destroy(c, e, true);
		break;
	case PH_CHANGE_UPDATED:
	case PH_CHANGE_RESTARTED:
		if (!e)
			return;
		e->d = *ch->new;	/* a restart keeps the listener: no gap */
		/* a steered port takes the new listener (steer_sync) */
		if (ch->kind == PH_CHANGE_UPDATED || steer_wanted(c, e))
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
	size_t need = p->cfg.n_own_inodes + PH_MAX_OWN_INODES + c->n_entries * PH_MAX_EXT_ADDRS,
	       k = 0, pooled;

	/* adopted listeners not taken yet are ours too (or a restarted daemon
	 * would read its own stored listener as a public service) */
	pooled = ph_fdstore_pool_inodes(p->cfg.fdstore, NULL, 0);
	need += pooled;
	if (ph_array_grow(&c->own, &c->cap_own, need, sizeof(*c->own), 64))
		return -ENOMEM;
	k = ph_fdstore_pool_inodes(p->cfg.fdstore, c->own, pooled);
	if (k > pooled)	/* the pool only shrinks; never more than counted */
		k = pooled;
	for (size_t i = 0; i < p->cfg.n_own_inodes; i++)
		c->own[k++] = p->cfg.own_inodes[i];
	pthread_mutex_lock(&p->own_lock);
	for (size_t i = 0; i < p->n_own; i++)
		c->own[k++] = p->own[i];
	pthread_mutex_unlock(&p->own_lock);
	for (size_t i = 0; i < c->n_entries; i++)
		for (unsigned j = 0; j < PH_MAX_EXT_ADDRS; j++)
			if (c->entries[i]->ls[j].inode)
				c->own[k++] = c->entries[i]->ls[j].inode;
	qsort(c->own, k, sizeof(*c->own), cmp_u64);
	*n = k;
	return 0;
}

static bool addresses_refresh(struct cycle *c);

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
		.scan = &c->scan, .ext = &c->ext,
		.allow = &p->cfg.allow, .deny = &p->cfg.deny,
		.ephemeral_lo = c->scanner.ephemeral_lo, .ephemeral_hi = c->scanner.ephemeral_hi,
	};
	struct ph_decision *dec = NULL;
	struct apply a = { .c = c };
	size_t n_dec = 0, n_own, need;
	int ret;

	c->scan_changes = 0;
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
	carry_rest(&a);
	/* ports in CONFLICT are retried on every scan; after an address
	 * change every exposed port follows */
	for (size_t i = 0; i < c->n_next; i++)
		if (c->next[i]->state == PH_PORT_CONFLICT ||
		    (c->next[i]->d.kind == PH_DECIDE_EXPOSE && c->next[i]->ext_gen != c->ext_gen))
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
	exposure_scan_some(c, true, true);
}

void exposure_scan_some(struct cycle *c, bool tcp, bool udp)
{
	struct ph_ports *p = c->p;
	uint64_t t0 = ph_now_ns(), us;
	int ret;

	if (c->rtnl_stale)
		addresses_refresh(c);	/* this scan follows any change */
	/* a part only on top of a whole picture */
	ret = c->scan_valid && !(tcp && udp) ? ph_scanner_run_some(&c->scanner, &c->scan, tcp, udp)
					     : ph_scanner_run(&c->scanner, &c->scan);
	c->scan_valid = !ret;
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
	if (!ret && !c->adoption_settled) {
		/* the first scan took the adopted listeners it wants: the rest
		 * are ports that went away while no daemon ran */
		c->adoption_settled = true;
		ph_fdstore_settle(p->cfg.fdstore, (1u << PH_FDKIND_TCP) | (1u << PH_FDKIND_UDP));
	}
	if (ret) {
		/* The previous table stands: a failed scan is not "no ports". */
		atomic_fetch_add_explicit(&p->stats.scan_errors, 1, memory_order_relaxed);
		if (ph_ratelimit_ok(&c->scan_rl, c->loop.now_ms, SCAN_ERR_BURST, SCAN_ERR_WINDOW_MS))
			ph_warn("scan failed; keeping the previous port table", PH_FERR(ret),
				PH_FS("method", ph_scanner_method(&c->scanner)),
				PH_FU("suppressed", c->scan_rl.suppressed));
	}
}

/* ---- following the external addresses -------------------------------------- */

/* Say once which --external-addr values name nothing configured now, and
 * when they appear */
static void warn_missing(struct cycle *c, uint32_t missing)
{
	for (size_t i = 0; i < c->n_specs && i < 32; i++) {
		uint32_t bit = 1u << i;
		char spec[PH_ADDR_STRLEN];

		if ((missing & bit) == (c->specs_missing & bit))
			continue;
		ph_ext_spec_str(&c->specs[i], spec, sizeof(spec));
		if (missing & bit)
			ph_warn("--external-addr is not configured on any interface; nothing is "
				"exposed on it until it appears", PH_FS("external_addr", spec));
		else
			ph_info("--external-addr appeared", PH_FS("external_addr", spec));
	}
	c->specs_missing = missing;
}

/**
 * addresses_update() - read the external addresses off the model; on a
 * change log old -> new, count it and publish an address event
 * @c:		cycle
 *
 * Return: true when they changed (cycle.ext_gen was bumped)
 */
static bool addresses_update(struct cycle *c)
{
	struct ph_ports *p = c->p;
	struct ph_event ev = { .type = PH_EV_ADDRESS };
	char was[256], now[256];
	uint32_t missing;

	missing = ph_rtnl_select(&c->rtnl.m, c->specs, c->n_specs, &ev.addresses.now);
	warn_missing(c, missing);
	if (ph_addr_set_equal(&c->ext, &ev.addresses.now))
		return false;
	ev.addresses.old = c->ext;
	pthread_mutex_lock(&p->table_lock);
	c->ext = ev.addresses.now;
	c->ext_gen++;
	pthread_mutex_unlock(&p->table_lock);
	if (ph_steer_set_addrs(&c->steer, &c->ext))
		ph_warn("steering: the address map was not updated; some external addresses "
			"are not steered");
	atomic_fetch_add_explicit(&p->stats.address_changes, 1, memory_order_relaxed);
	ph_info("external addresses changed", PH_FS("old", ph_addr_set_str(&ev.addresses.old, was,
									sizeof(was))),
		PH_FS("new", ph_addr_set_str(&c->ext, now, sizeof(now))));
	if (!c->ext.n && !c->ext_warned) {
		c->ext_warned = true;
		ph_warn("no external address; exposed ports are withdrawn until one appears");
	}
	if (c->ext.n)
		c->ext_warned = false;
	ph_bus_publish(p->bus, &ev);
	return true;
}

/* The addresses changed: every exposed port follows at once. Quiesced, the
 * rules wait for the resume's scan, but listeners move now, so that clients
 * of a restored clone queue on its new address. */
static void addresses_follow(struct cycle *c)
{
	if (!c->quiesced) {
		exposure_scan(c);
		return;
	}
	pthread_mutex_lock(&c->p->table_lock);
	for (size_t i = 0; i < c->n_entries; i++)
		if (c->entries[i]->d.kind == PH_DECIDE_EXPOSE)
			entry_enter(c, c->entries[i], false);
	pthread_mutex_unlock(&c->p->table_lock);
}

static void note_resyncs(struct cycle *c, uint64_t before)
{
	if (c->rtnl.resyncs != before)
		atomic_fetch_add_explicit(&c->p->stats.netlink_resyncs, c->rtnl.resyncs - before,
					  memory_order_relaxed);
}

static void rtnl_failed(struct cycle *c, int err)
{
	c->rtnl_stale = true;	/* the next scan dumps again */
	if (ph_ratelimit_ok(&c->rtnl_rl, c->loop.now_ms, SCAN_ERR_BURST, SCAN_ERR_WINDOW_MS))
		ph_warn("reading the network configuration failed; retrying every scan",
			PH_FERR(err), PH_FU("suppressed", c->rtnl_rl.suppressed));
}

void exposure_addresses_init(struct cycle *c)
{
	if (!addresses_update(c) && !c->ext.n && !c->ext_warned) {
		c->ext_warned = true;
		ph_warn(c->n_specs ? "no external address yet; waiting for one to appear"
				   : "no external address yet (no default route with an address); "
				     "waiting for one to appear");
	}
}

/* Dump again and read the addresses off. Return: true when they changed */
static bool addresses_refresh(struct cycle *c)
{
	int ret = ph_rtnl_watch_dump(&c->rtnl);

	if (ret) {
		rtnl_failed(c, ret);
		return false;
	}
	c->rtnl_stale = false;
	return addresses_update(c);
}

void exposure_addresses_recheck(struct cycle *c)
{
	if (addresses_refresh(c))
		addresses_follow(c);
}

void exposure_on_rtnl(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct cycle *c = ph_container_of(io, struct cycle, rtnl_io);
	uint64_t before = c->rtnl.resyncs;
	int ret;

	(void)loop;
	(void)events;
	ret = ph_rtnl_watch_read(&c->rtnl);
	note_resyncs(c, before);
	if (ret < 0) {
		rtnl_failed(c, ret);
		return;
	}
	if (ret > 0 && addresses_update(c))
		addresses_follow(c);
}
