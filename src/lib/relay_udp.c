// SPDX-License-Identifier: MIT
/* relay_udp.c - relayed UDP: datagrams between external sockets and per-client flows
 *
 * Theory of Operation
 * ===================
 * An external socket (struct ph_udp_ext) is bound to EXTERNAL:P and is not
 * connected: every client sends to it. Each client address is a *flow*: a
 * socket of its own connected to the service's loopback address (the
 * target). Datagrams a client sends leave through its flow socket, so the
 * service sees one distinct peer per client; what the service sends back
 * arrives on that flow socket only (the socket is connected, the kernel
 * filters other senders) and leaves through the external socket to the
 * flow's client address. Nothing is reassembled, merged or cut: a datagram
 * is received whole into a 64 KiB slot (larger than any UDP payload) and
 * sent on as one datagram, or dropped and counted (MSG_TRUNC: never sent
 * truncated).
 *
 * Batching: both directions receive with recvmmsg() and send with
 * sendmmsg(), up to PH_UDP_BATCH datagrams per call, straight from the
 * slots they were received into: no copy, no allocation per datagram. The
 * slots are one buffer per relay (only the pages datagrams touch become
 * resident), shared by every socket of the loop, since each batch is sent
 * on before the next is read. Client -> service: the datagrams of one batch
 * are grouped by flow (a chain through the batch, first-seen order), and
 * each flow's group goes out in one sendmmsg(); order within a flow is the
 * arrival order. Service -> client: a flow's batch goes out in one
 * sendmmsg() on the external socket, each message addressed to the client.
 * Within a send, a run of datagrams of one size (the last may be shorter,
 * none empty, GSO_MAX_BYTES in all) is one message with UDP_SEGMENT: a GSO
 * train, one trip down the stack that the kernel cuts back into exactly
 * those datagrams (at the receiving socket on loopback, in or before the
 * device otherwise). The kernel is asked once whether it knows UDP_SEGMENT
 * (one that does not would send a train as one datagram); a path that
 * refuses a train gets single datagrams from then on (per flow and
 * direction: struct flow.gso_in, gso_out).
 * One readiness event moves at most ROUNDS batches, so a busy socket does
 * not starve the others (epoll is level-triggered: it comes back).
 *
 * Lookup: flows are hashed on (external socket, client address) with a
 * per-relay random seed (clients choose their ports: no chain they can
 * predict); chains are doubly linked for O(1) removal. Each external socket
 * remembers the last flow it used, which spares the hash for the common
 * run of datagrams from one client.
 *
 * Idle and limit: one LRU list over all flows of the relay, most recent
 * first; a flow moves to its head when a datagram passes either way (once
 * per batch). The list is therefore also the idle order, and a single timer
 * per relay serves every flow: it is armed at the tail's last activity plus
 * the idle timeout; when it fires, flows idle that long are ended from the
 * tail and it is re-armed for the new tail. (Activity moving the tail only
 * makes the timer early; it then re-arms.) At the flow limit a new client
 * ends the tail (evicted). Datagrams of the current batch already grouped
 * for a flow are sent before any flow is evicted, so an eviction never
 * strands them.
 *
 * Errors: EAGAIN/ENOBUFS on sending means the socket buffer is full: the
 * datagram is dropped and counted, the loop never waits (UDP semantics).
 * ECONNREFUSED on a flow socket (an ICMP port unreachable from the service,
 * reported on its next send or receive, or as EPOLLERR) ends the flow; the
 * client's next datagram makes a new one, which finds a service restarted
 * on the same port. External sockets are unconnected and get no such
 * errors (no IP_RECVERR); a failed send to one client drops that datagram
 * only.
 *
 * Buffers: an external socket gets a 2 MiB receive buffer (EXT_RCVBUF):
 * it is the one queue every client of the port shares, and the only one a
 * direct path to the service would not have; datagrams wait there while
 * the loop is busy or descheduled instead of being lost.
 *
 * Descriptors: a flow socket numbered at or above the relay descriptor
 * ceiling (RLIMIT_NOFILE - PH_FD_RESERVE, as for TCP relays) is closed
 * again and the datagram counted as PH_UDP_DROP_NO_FLOW, so the control
 * plane always has descriptors. Flow sockets are never duplicated: ending
 * a flow closes its socket (ph_loop_forget(), no epoll_ctl) and releases
 * its memory after the current event batch (ph_loop_defer()).
 */
#include "relay_udp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "list.h"
#include "relay.h"

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103	/* Linux 4.18 */
#endif

/* Receive slot: larger than the largest UDP payload (65,527 over IPv6) */
#define SLOT_SIZE 65536
/* Batches moved per readiness event, at most */
#define ROUNDS 4
/* Receive buffer of an external socket: every client's datagrams queue
 * there while the loop is busy or descheduled (SO_RCVBUFFORCE when the
 * daemon may, else SO_RCVBUF up to net.core.rmem_max) */
#define EXT_RCVBUF (2 << 20)
/* A GSO train: at most this many payload bytes (a UDP datagram's limit
 * over IPv4) and PH_UDP_BATCH datagrams (below every kernel's UDP_MAX_SEGMENTS) */
#define GSO_MAX_BYTES 65507
#define MIN_BUCKETS 16
#define MAX_BUCKETS (1u << 16)

/* A client or target address */
union udp_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/**
 * struct flow - one client address of one external socket
 * @hnext, @hpprev: hash chain (@hpprev: the pointer that points at this flow)
 * @lru:	in relay->lru, most recently active first
 * @xnode:	in ext->flows
 * @x:		its external socket
 * @io:		loop registration of @fd
 * @fd:		socket connected to the target
 * @active_ms:	loop time of the last datagram either way
 * @hash:	hash of (@x, @client)
 * @gso_in, @gso_out: GSO trains allowed towards the service, towards the
 *		client (cleared when the kernel refused one on that path)
 * @bgen, @btail: batch grouping: @btail is the last slot of this flow in
 *		the batch numbered @bgen
 * @client:	the client's address; @alen its length
 * @closed:	flow_end() ran; the memory waits for the deferred free
 * @defer:	the deferred free
 */
struct flow {
	struct flow *hnext, **hpprev;
	struct ph_list lru;
	struct ph_list xnode;
	struct ph_udp_ext *x;
	struct ph_io io;
	int fd;
	uint64_t active_ms;
	uint64_t hash;
	bool gso_in, gso_out;
	uint64_t bgen;
	unsigned btail;
	socklen_t alen;
	union udp_addr client;
	bool closed;
	struct ph_defer defer;
};

/**
 * struct ph_udp_ext - an external socket
 * @r:		its relay
 * @node:	in r->exts
 * @io:		loop registration of @fd
 * @fd:		bound to EXTERNAL:P, unconnected
 * @target:	the service's address; @tlen its length
 * @flows:	its flows (struct flow.xnode); @nflows how many
 * @last:	the flow last used, or NULL (lookup shortcut)
 * @port_flows:	the owner's count of flows open, or NULL (read by other threads)
 * @defer:	the deferred free
 */
struct ph_udp_ext {
	struct ph_udp_relay *r;
	struct ph_list node;
	struct ph_io io;
	int fd;
	union udp_addr target;
	socklen_t tlen;
	struct ph_list flows;
	size_t nflows;
	struct flow *last;
	_Atomic uint32_t *port_flows;
	struct ph_defer defer;
};

/**
 * struct ph_udp_relay - all flows of one loop
 * @loop:	the loop
 * @ctr:	counters
 * @max_flows:	the flow limit; @idle_ms the idle timeout
 * @fd_ceiling:	flows hold no descriptor numbered this or higher
 * @exts:	external sockets
 * @lru:	every flow, most recently active first
 * @nflows:	flows open
 * @paused:	no socket is watched (ph_udp_relay_pause())
 * @buckets:	hash table of @mask + 1 chains
 * @seed:	hash key
 * @idle:	fires when the LRU tail's idle time is up
 * @bgen:	current batch number (struct flow.bgen)
 * @slots:	PH_UDP_BATCH receive slots of SLOT_SIZE bytes
 * @rx:		receive headers; @riov their buffers; @names the senders
 * @tx:		send headers (messages); @tiov their buffers (one per datagram)
 * @tsegs:	datagrams of each message (more than one: a GSO train)
 * @tbytes:	payload bytes of each message
 * @tctl:	each message's UDP_SEGMENT control message
 * @gso:	the kernel takes UDP_SEGMENT (probed once)
 * @bflow:	client -> service: the flow of each received datagram, NULL
 *		when dropped or already sent; @bnext the next slot of the
 *		same flow in the batch (chain)
 */
struct ph_udp_relay {
	struct ph_loop *loop;
	struct ph_udp_counters *ctr;
	unsigned max_flows, idle_ms;
	int fd_ceiling;
	struct ph_list exts;
	struct ph_list lru;
	size_t nflows;
	bool paused;
	struct flow **buckets;
	size_t mask;
	uint64_t seed;
	struct ph_timer idle;
	uint64_t bgen;
	char *slots;
	struct mmsghdr rx[PH_UDP_BATCH];
	struct iovec riov[PH_UDP_BATCH];
	union udp_addr names[PH_UDP_BATCH];
	struct mmsghdr tx[PH_UDP_BATCH];
	struct iovec tiov[PH_UDP_BATCH];
	unsigned tsegs[PH_UDP_BATCH];
	size_t tbytes[PH_UDP_BATCH];
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(uint16_t))];
	} tctl[PH_UDP_BATCH];
	bool gso;
	struct flow *bflow[PH_UDP_BATCH];
	unsigned bnext[PH_UDP_BATCH];
};

static const char *const drop_names[PH_UDP_DROP__COUNT] = {
	[PH_UDP_DROP_TRUNCATED] = "truncated",
	[PH_UDP_DROP_BUFFER_FULL] = "buffer_full",
	[PH_UDP_DROP_NO_FLOW] = "no_flow",
	[PH_UDP_DROP_REFUSED] = "refused",
	[PH_UDP_DROP_ERROR] = "error",
};

const char *ph_udp_drop_name(enum ph_udp_drop d)
{
	return (unsigned)d < PH_UDP_DROP__COUNT ? drop_names[d] : "?";
}

static inline void ctr_add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void drop(struct ph_udp_relay *r, enum ph_udp_drop why, uint64_t n)
{
	ctr_add(&r->ctr->drops[why], n);
}

/* ---- hashing ---------------------------------------------------------- */

static inline uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t addr_hash(const struct ph_udp_relay *r, const struct ph_udp_ext *x,
			  const union udp_addr *a)
{
	uint64_t h = mix64(r->seed ^ (uint64_t)(uintptr_t)x);
	uint64_t w[2];

	if (a->sa.sa_family == AF_INET)
		return mix64(h ^ ((uint64_t)a->in.sin_addr.s_addr << 16 | a->in.sin_port));
	memcpy(w, &a->in6.sin6_addr, sizeof(w));
	h = mix64(h ^ w[0]);
	h = mix64(h ^ w[1]);
	return mix64(h ^ ((uint64_t)a->in6.sin6_scope_id << 16 | a->in6.sin6_port));
}

static inline bool addr_eq(const union udp_addr *a, const union udp_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return false;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return a->in6.sin6_port == b->in6.sin6_port &&
	       a->in6.sin6_scope_id == b->in6.sin6_scope_id &&
	       !memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof(a->in6.sin6_addr));
}

bool ph_udp_addr_eq(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != AF_INET && a->sa_family != AF_INET6)
		return false;
	return addr_eq((const union udp_addr *)(const void *)a,
		       (const union udp_addr *)(const void *)b);
}

static struct flow *flow_find(struct ph_udp_ext *x, const union udp_addr *a, uint64_t h)
{
	struct ph_udp_relay *r = x->r;

	for (struct flow *f = r->buckets[h & r->mask]; f; f = f->hnext)
		if (f->hash == h && f->x == x && addr_eq(&f->client, a))
			return f;
	return NULL;
}

/* ---- flow lifetime ---------------------------------------------------- */

static void flow_free(struct ph_defer *d)
{
	free(ph_container_of(d, struct flow, defer));
}

/* Make @f the most recently active flow */
static inline void flow_touch(struct ph_udp_relay *r, struct flow *f)
{
	f->active_ms = r->loop->now_ms;
	if (r->lru.next != &f->lru) {
		ph_list_del(&f->lru);
		ph_list_add(&r->lru, &f->lru);
	}
}

/**
 * flow_end() - close a flow's socket, unlink it, free it after the batch
 * @f:		flow (a closed one is left alone)
 * @why:	counter of the reason, or NULL (ended on request)
 */
static void flow_end(struct flow *f, _Atomic uint64_t *why)
{
	struct ph_udp_ext *x = f->x;
	struct ph_udp_relay *r = x->r;

	if (f->closed)
		return;
	f->closed = true;
	*f->hpprev = f->hnext;
	if (f->hnext)
		f->hnext->hpprev = f->hpprev;
	ph_list_del(&f->lru);
	ph_list_del(&f->xnode);
	x->nflows--;
	r->nflows--;
	if (x->port_flows)
		atomic_fetch_sub_explicit(x->port_flows, 1, memory_order_relaxed);
	if (x->last == f)
		x->last = NULL;
	ph_loop_forget(r->loop, &f->io);
	close(f->fd);
	f->fd = -1;
	atomic_fetch_sub_explicit(&r->ctr->flows_open, 1, memory_order_relaxed);
	if (why)
		ctr_add(why, 1);
	ph_loop_defer(r->loop, &f->defer, flow_free);
}

static struct flow *lru_tail(struct ph_udp_relay *r)
{
	return ph_list_empty(&r->lru) ? NULL : ph_list_entry(r->lru.prev, struct flow, lru);
}

static void idle_arm(struct ph_udp_relay *r);

static void idle_fire(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_udp_relay *r = ph_container_of(t, struct ph_udp_relay, idle);
	struct flow *f;

	while ((f = lru_tail(r)) && f->active_ms + r->idle_ms <= loop->now_ms)
		flow_end(f, &r->ctr->flows_timed_out);
	idle_arm(r);
}

/* Arm the idle timer for the LRU tail, unless it is armed (early is fine) */
static void idle_arm(struct ph_udp_relay *r)
{
	struct flow *f = lru_tail(r);

	if (f && !ph_timer_armed(&r->idle))
		ph_timer_arm(r->loop, &r->idle, f->active_ms + r->idle_ms, idle_fire);
}

static void flow_io(struct ph_loop *loop, struct ph_io *io, uint32_t events);
static void flush_pending(struct ph_udp_ext *x, unsigned from, unsigned to);

/**
 * flow_new() - make the flow of client @a on @x
 * @x:		external socket
 * @a:		client address; @alen its length
 * @h:		its hash
 * @i:		slot of the datagram being resolved: datagrams grouped before
 *		it (@pend .. @i-1) are sent first if a flow must be evicted
 * @pend:	first slot of the batch not sent yet
 * Return: the flow, or NULL (no descriptor, no memory: the caller drops)
 */
static struct flow *flow_new(struct ph_udp_ext *x, const union udp_addr *a, socklen_t alen,
			     uint64_t h, unsigned i, unsigned *pend)
{
	struct ph_udp_relay *r = x->r;
	struct flow *f, **b;
	int fd;

	if (r->nflows >= r->max_flows) {
		if (*pend < i) {
			flush_pending(x, *pend, i);
			*pend = i;
		}
		flow_end(lru_tail(r), &r->ctr->flows_evicted);
	}
	fd = socket(x->target.sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (fd >= r->fd_ceiling || connect(fd, &x->target.sa, x->tlen) < 0)
		goto fail;
	f = calloc(1, sizeof(*f));
	if (!f)
		goto fail;
	f->x = x;
	f->fd = fd;
	f->hash = h;
	f->gso_in = f->gso_out = true;
	f->alen = alen;
	memcpy(&f->client, a, alen);
	if (r->paused)
		f->io.fd = -1;	/* registered by ph_udp_relay_pause(r, false) */
	else if (ph_loop_add(r->loop, &f->io, fd, EPOLLIN, flow_io) < 0) {
		free(f);
		goto fail;
	}
	b = &r->buckets[h & r->mask];
	f->hnext = *b;
	if (*b)
		(*b)->hpprev = &f->hnext;
	f->hpprev = b;
	*b = f;
	f->active_ms = r->loop->now_ms;
	ph_list_add(&r->lru, &f->lru);
	ph_list_add_tail(&x->flows, &f->xnode);
	x->nflows++;
	r->nflows++;
	if (x->port_flows)
		atomic_fetch_add_explicit(x->port_flows, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->ctr->flows_open, 1, memory_order_relaxed);
	ctr_add(&r->ctr->flows_created, 1);
	idle_arm(r);
	return f;
fail:
	close(fd);
	return NULL;
}

/* ---- sending ---------------------------------------------------------- */

/* One message of r->tx: @segs datagrams (a GSO train when more than one) */
static inline void msg_set(struct ph_udp_relay *r, unsigned k, unsigned first, unsigned segs,
			   size_t size, size_t total, const union udp_addr *to, socklen_t tolen)
{
	struct msghdr *m = &r->tx[k].msg_hdr;

	r->tbytes[k] = total;
	*m = (struct msghdr){ .msg_name = (void *)to, .msg_namelen = to ? tolen : 0,
			      .msg_iov = &r->tiov[first], .msg_iovlen = segs };
	r->tsegs[k] = segs;
	if (segs > 1) {
		struct cmsghdr *c = &r->tctl[k].hdr;

		c->cmsg_level = SOL_UDP;
		c->cmsg_type = UDP_SEGMENT;
		c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
		*(uint16_t *)(void *)CMSG_DATA(c) = (uint16_t)size;
		m->msg_control = c;
		m->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
	}
}

/**
 * send_dgrams() - send the @n datagrams of r->tiov on @fd, in order
 * @r:		relay
 * @fd:		socket
 * @n:		datagrams, one per r->tiov entry
 * @to:		destination (unconnected socket), or NULL; @tolen its length
 * @gso:	in: trains allowed; out: cleared when the kernel refused one
 *		(the datagrams then go one by one)
 * @bytes:	out: payload bytes sent
 *
 * Runs of datagrams of one size (the last of a run may be shorter) leave as
 * one GSO train (UDP_SEGMENT): one trip down the stack, cut back into the
 * same datagrams by the kernel (at the receiving socket on loopback, in the
 * device or before it otherwise); every other datagram as one message, all
 * in one sendmmsg(). Buffer full drops the rest; another error drops the
 * failing message's datagrams and goes on with the next.
 * Return: datagrams sent, or -ECONNREFUSED (with the datagrams sent before
 * it in *@bytes, and the unsent ones dropped as REFUSED) for a flow socket
 * whose service is gone
 */
static int send_dgrams(struct ph_udp_relay *r, int fd, unsigned n, const union udp_addr *to,
		       socklen_t tolen, bool *gso, uint64_t *bytes)
{
	unsigned k = 0, done = 0, sent = 0, left = n;

	*bytes = 0;
	for (unsigned i = 0, j; i < n; i = j) {
		size_t size = r->tiov[i].iov_len, total = size;

		j = i + 1;
		if (*gso && r->gso && size)
			while (j < n && r->tiov[j].iov_len && r->tiov[j].iov_len <= size &&
			       total + r->tiov[j].iov_len <= GSO_MAX_BYTES) {
				total += r->tiov[j++].iov_len;
				if (r->tiov[j - 1].iov_len < size)
					break;	/* a shorter one ends the train; an
						 * empty one cannot be in one */
			}
		msg_set(r, k++, i, j - i, size, total, to, tolen);
	}
	while (done < k) {
		int m = sendmmsg(fd, r->tx + done, k - done, MSG_DONTWAIT);

		if (m < 0) {
			int err = errno;

			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == ENOBUFS || err == ENOMEM) {
				drop(r, PH_UDP_DROP_BUFFER_FULL, left);
				break;
			}
			if (err == ECONNREFUSED) {
				drop(r, PH_UDP_DROP_REFUSED, left);
				return -ECONNREFUSED;
			}
			if (r->tsegs[done] > 1 && (err == EINVAL || err == EIO || err == EMSGSIZE)) {
				/* no train on this path (a datagram above its MTU, no
				 * checksum offload): this one and later ones one by one */
				unsigned first = (unsigned)(r->tx[done].msg_hdr.msg_iov - r->tiov);

				*gso = false;
				k = done;	/* done <= first: the rebuilt ones fit */
				for (unsigned q = first; q < n; q++, k++)
					msg_set(r, k, q, 1, 0, r->tiov[q].iov_len, to, tolen);
				continue;
			}
			drop(r, PH_UDP_DROP_ERROR, r->tsegs[done]);
			left -= r->tsegs[done];
			done++;
			continue;
		}
		for (int q = 0; q < m; q++) {
			*bytes += r->tbytes[done + q];
			sent += r->tsegs[done + q];
			left -= r->tsegs[done + q];
		}
		done += (unsigned)m;
	}
	return (int)sent;
}

/* Client -> service: send the group of flow @f starting at slot @i */
static void send_group(struct ph_udp_relay *r, struct flow *f, unsigned i)
{
	unsigned n = 0;
	uint64_t bytes;
	int sent;

	for (;;) {
		r->tiov[n++] = (struct iovec){ r->riov[i].iov_base, r->rx[i].msg_len };
		r->bflow[i] = NULL;
		if (i == f->btail)
			break;
		i = r->bnext[i];
	}
	sent = send_dgrams(r, f->fd, n, NULL, 0, &f->gso_in, &bytes);
	if (sent == -ECONNREFUSED) {
		flow_end(f, &r->ctr->flows_refused);
		return;
	}
	ctr_add(&r->ctr->dgrams_in, (uint64_t)sent);
	ctr_add(&r->ctr->bytes_in, bytes);
}

/* Send every group that starts in slots @from .. @to-1 (whole groups) */
static void flush_pending(struct ph_udp_ext *x, unsigned from, unsigned to)
{
	struct ph_udp_relay *r = x->r;

	for (unsigned i = from; i < to; i++) {
		struct flow *f = r->bflow[i];

		if (f)
			send_group(r, f, i);
	}
}

/* ---- client -> service ------------------------------------------------ */

/* The flow of the sender of slot @i, made if new; NULL: drop the datagram */
static struct flow *resolve(struct ph_udp_ext *x, unsigned i, unsigned *pend)
{
	struct ph_udp_relay *r = x->r;
	const union udp_addr *a = &r->names[i];
	socklen_t alen = r->rx[i].msg_hdr.msg_namelen;
	struct flow *f = x->last;
	uint64_t h;

	if (f && addr_eq(&f->client, a))
		return f;
	if (alen > sizeof(*a) || (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6))
		return NULL;
	h = addr_hash(r, x, a);
	f = flow_find(x, a, h);
	if (!f)
		f = flow_new(x, a, alen, h, i, pend);
	x->last = f;
	return f;
}

static void ext_io(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct ph_udp_ext *x = ph_container_of(io, struct ph_udp_ext, io);
	struct ph_udp_relay *r = x->r;

	(void)loop;
	(void)events;
	for (int round = 0; round < ROUNDS; round++) {
		unsigned pend = 0;
		int n;

		for (unsigned i = 0; i < PH_UDP_BATCH; i++) {
			r->rx[i].msg_hdr.msg_name = &r->names[i];
			r->rx[i].msg_hdr.msg_namelen = sizeof(r->names[i]);
		}
		n = recvmmsg(x->fd, r->rx, PH_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;	/* EAGAIN; anything else was consumed by the call */
		}
		r->bgen++;
		for (unsigned i = 0; i < (unsigned)n; i++) {
			struct flow *f;

			r->bflow[i] = NULL;
			if (r->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
				drop(r, PH_UDP_DROP_TRUNCATED, 1);
				continue;
			}
			f = resolve(x, i, &pend);
			if (!f) {
				drop(r, PH_UDP_DROP_NO_FLOW, 1);
				continue;
			}
			r->bflow[i] = f;
			if (f->bgen == r->bgen) {
				r->bnext[f->btail] = i;
			} else {
				f->bgen = r->bgen;
				flow_touch(r, f);
			}
			f->btail = i;
		}
		flush_pending(x, pend, (unsigned)n);
		if (n < PH_UDP_BATCH)
			return;
	}
}

/* ---- service -> client ------------------------------------------------ */

static void flow_io(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct flow *f = ph_container_of(io, struct flow, io);
	struct ph_udp_ext *x = f->x;
	struct ph_udp_relay *r = x->r;

	(void)loop;
	(void)events;	/* EPOLLERR: recvmmsg() reports the error */
	for (int round = 0; round < ROUNDS; round++) {
		unsigned k = 0;
		uint64_t bytes;
		int n, sent;

		for (unsigned i = 0; i < PH_UDP_BATCH; i++) {
			r->rx[i].msg_hdr.msg_name = NULL;
			r->rx[i].msg_hdr.msg_namelen = 0;
		}
		n = recvmmsg(f->fd, r->rx, PH_UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ECONNREFUSED)
				flow_end(f, &r->ctr->flows_refused);
			return;
		}
		flow_touch(r, f);
		for (unsigned i = 0; i < (unsigned)n; i++) {
			if (r->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
				drop(r, PH_UDP_DROP_TRUNCATED, 1);
				continue;
			}
			r->tiov[k++] = (struct iovec){ r->riov[i].iov_base, r->rx[i].msg_len };
		}
		sent = send_dgrams(r, x->fd, k, &f->client, f->alen, &f->gso_out, &bytes);
		ctr_add(&r->ctr->dgrams_out, (uint64_t)(sent > 0 ? sent : 0));
		ctr_add(&r->ctr->bytes_out, bytes);
		if (n < PH_UDP_BATCH)
			return;
	}
}

/* ---- the relay -------------------------------------------------------- */

/*
 * Does the kernel take UDP_SEGMENT? The option and the control message came
 * together (Linux 4.18); a kernel without them would ignore the control
 * message and send a train as one large datagram, so it is asked first.
 */
static bool gso_probe(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), size = 1000;
	bool ok;

	if (fd < 0)
		return false;
	ok = !setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof(size));
	close(fd);
	return ok;
}

int ph_udp_relay_new(struct ph_loop *loop, unsigned max_flows, unsigned idle_timeout_ms,
		     struct ph_udp_counters *ctr, struct ph_udp_relay **out)
{
	struct ph_udp_relay *r;
	size_t nb = MIN_BUCKETS;

	if (!loop || !ctr || !out || !max_flows || !idle_timeout_ms)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	while (nb < max_flows && nb < MAX_BUCKETS)
		nb *= 2;
	r->buckets = calloc(nb, sizeof(*r->buckets));
	/* only the pages datagrams touch become resident */
	r->slots = malloc((size_t)PH_UDP_BATCH * SLOT_SIZE);
	if (!r->buckets || !r->slots) {
		free(r->buckets);
		free(r->slots);
		free(r);
		return -ENOMEM;
	}
	r->mask = nb - 1;
	r->loop = loop;
	r->ctr = ctr;
	r->max_flows = max_flows;
	r->idle_ms = idle_timeout_ms;
	r->fd_ceiling = ph_relay_fd_ceiling();
	ph_list_init(&r->exts);
	ph_list_init(&r->lru);
	r->gso = gso_probe();
	if (getrandom(&r->seed, sizeof(r->seed), GRND_NONBLOCK) != sizeof(r->seed))
		r->seed = ph_now_ns() ^ (uint64_t)(uintptr_t)r;
	for (unsigned i = 0; i < PH_UDP_BATCH; i++) {
		r->riov[i] = (struct iovec){ r->slots + (size_t)i * SLOT_SIZE, SLOT_SIZE };
		r->rx[i].msg_hdr.msg_iov = &r->riov[i];
		r->rx[i].msg_hdr.msg_iovlen = 1;
	}
	*out = r;
	return 0;
}

void ph_udp_relay_drop_flows(struct ph_udp_relay *r)
{
	struct flow *f;

	while ((f = lru_tail(r)))
		flow_end(f, NULL);
	ph_timer_cancel(r->loop, &r->idle);
}

/* Watch @io (@fd, for @fn) again, or stop watching it: unregistered, not a
 * mask of 0, as epoll reports EPOLLERR regardless. Return: 0 or -errno */
static int watch_set(struct ph_udp_relay *r, struct ph_io *io, int fd, ph_io_fn fn, bool paused)
{
	int err;

	if (paused) {
		ph_loop_del(r->loop, io);
		return 0;
	}
	err = ph_loop_add(r->loop, io, fd, EPOLLIN, fn);
	return err < 0 ? err : 0;
}

int ph_udp_relay_pause(struct ph_udp_relay *r, bool paused)
{
	struct ph_list *n, *nt, *m, *mt;
	int ret = 0, err;

	if (r->paused == paused)
		return 0;
	r->paused = paused;
	ph_list_for_each_safe(n, nt, &r->exts) {
		struct ph_udp_ext *x = ph_list_entry(n, struct ph_udp_ext, node);

		err = watch_set(r, &x->io, x->fd, ext_io, paused);
		if (err && !ret)
			ret = err;
		ph_list_for_each_safe(m, mt, &x->flows) {
			struct flow *f = ph_list_entry(m, struct flow, xnode);

			err = watch_set(r, &f->io, f->fd, flow_io, paused);
			if (err && !ret)
				ret = err;
		}
	}
	return ret;
}

bool ph_udp_relay_paused(const struct ph_udp_relay *r)
{
	return r->paused;
}

size_t ph_udp_relay_flows(const struct ph_udp_relay *r)
{
	return r->nflows;
}

void ph_udp_relay_free(struct ph_udp_relay *r)
{
	struct ph_list *n, *tmp;

	if (!r)
		return;
	ph_list_for_each_safe(n, tmp, &r->exts)
		ph_udp_ext_close(ph_list_entry(n, struct ph_udp_ext, node));
	ph_timer_cancel(r->loop, &r->idle);
	free(r->buckets);
	free(r->slots);
	free(r);
}

/* ---- external sockets ------------------------------------------------- */

static void ext_free(struct ph_defer *d)
{
	free(ph_container_of(d, struct ph_udp_ext, defer));
}

int ph_udp_ext_open(struct ph_udp_relay *r, int fd, const struct sockaddr *target, socklen_t tlen,
		    _Atomic uint32_t *port_flows, struct ph_udp_ext **out)
{
	struct ph_udp_ext *x;
	int err;

	if (!target || !((target->sa_family == AF_INET && tlen >= sizeof(struct sockaddr_in)) ||
			 (target->sa_family == AF_INET6 && tlen >= sizeof(struct sockaddr_in6))) ||
	    tlen > sizeof(union udp_addr)) {
		close(fd);
		return -EINVAL;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		close(fd);
		return -ENOMEM;
	}
	x->r = r;
	x->fd = fd;
	x->port_flows = port_flows;
	{
		int sz = EXT_RCVBUF;

		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
			(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	memcpy(&x->target, target, tlen);
	x->tlen = tlen;
	ph_list_init(&x->flows);
	x->io.fd = -1;
	err = r->paused ? 0 : ph_loop_add(r->loop, &x->io, fd, EPOLLIN, ext_io);
	if (err < 0) {
		close(fd);
		free(x);
		return err;
	}
	ph_list_add_tail(&r->exts, &x->node);
	*out = x;
	return 0;
}

void ph_udp_ext_close(struct ph_udp_ext *x)
{
	struct ph_udp_relay *r;
	struct ph_list *n, *tmp;

	if (!x)
		return;
	r = x->r;
	ph_list_for_each_safe(n, tmp, &x->flows)
		flow_end(ph_list_entry(n, struct flow, xnode), NULL);
	ph_list_del(&x->node);
	ph_loop_del(r->loop, &x->io);
	close(x->fd);
	x->fd = -1;
	if (ph_list_empty(&r->lru))
		ph_timer_cancel(r->loop, &r->idle);
	ph_loop_defer(r->loop, &x->defer, ext_free);
}

size_t ph_udp_ext_flows(const struct ph_udp_ext *x)
{
	return x->nflows;
}
