/* SPDX-License-Identifier: MIT */
/* relay.h - relayed TCP connections: client <-> loopback service, messages copied, bulk spliced */
#ifndef PH_RELAY_H
#define PH_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "handover_state.h"
#include "list.h"
#include "loop.h"
#include "porthole.h"

struct ph_relay;

/**
 * enum ph_relay_leg - the two sockets of a relay (also their index in it)
 * @PH_LEG_CLIENT:	accepted on EXTERNAL:port; the peer may be far away and
 *			may vanish (keepalive)
 * @PH_LEG_SERVICE:	connected to the loopback service
 */
enum ph_relay_leg { PH_LEG_CLIENT, PH_LEG_SERVICE };

/**
 * struct ph_relay_owner - what a relay counts itself against (a port entry)
 * @conns:	relays open now; read by other threads
 * @queued:	clients handed to a relay thread whose relay has not started
 *		yet (ph_relay_threads_handoff()); with @conns, what the owner's
 *		cap counts
 * @cap_wait:	the owner stopped accepting at its cap: a relay closing on
 *		any thread must tell it (struct ph_relay_ctx.on_closed)
 * @refs:	references: the owner's table holds one, each relay one, each
 *		client on its way to another relay thread one; relays on
 *		several threads drop theirs concurrently
 * @release:	called by whoever drops the last reference (ph_relay_owner_put())
 */
struct ph_relay_owner {
	_Atomic uint32_t conns;
	_Atomic uint32_t queued;
	_Atomic bool cap_wait;
	_Atomic uint32_t refs;
	void (*release)(struct ph_relay_owner *o);
};

/* Take a reference on @o (the caller already holds one) */
static inline void ph_relay_owner_get(struct ph_relay_owner *o)
{
	atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

/* Drop a reference on @o; the last one releases it */
static inline void ph_relay_owner_put(struct ph_relay_owner *o)
{
	if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
		o->release(o);
}

/*
 * Descriptors kept for the control plane: relays never hold a descriptor
 * numbered at or above RLIMIT_NOFILE - PH_FD_RESERVE. The kernel hands out
 * the lowest free number, so checking the number of each new one is exact
 * enough: a service socket, accepted client or pipe that lands there is
 * closed again and counts as exhaustion (accept back-off; a bulk direction
 * keeps copying). The HTTP API then always finds descriptors to accept.
 */
#define PH_FD_RESERVE 64

#define PH_RELAY_PIPE_POOL 64
/* copy mode reads up to this much at once; a full read means bulk: splice */
#define PH_RELAY_SCRATCH 65536

/**
 * struct ph_relay_ctx - all relays of one worker loop
 * @loop:	the loop they run on
 * @cfg:	keepalive, pipe size, copy mode
 * @stats:	counters
 * @relays:	open relays (struct ph_relay.node)
 * @epoch:	tag given to new relays (ph_relay_abort_all() selects by it)
 * @on_closed:	called after a relay closed (e.g. to resume accepting), with
 *		its owner, which is still referenced during the call; may be NULL
 * @pool:	spare empty pipes, so a bulk transfer costs no pipe2() calls
 * @scratch:	copy-mode buffer of PH_RELAY_SCRATCH bytes, shared by all
 *		relays of the loop (each message is sent on before the next)
 * @spare:	a service socket made in advance, per family ([0] AF_INET,
 *		[1] AF_INET6), -1 when none (see ph_relay_reserve())
 * @fd_ceiling:	relays hold no descriptor numbered this or higher:
 *		RLIMIT_NOFILE - PH_FD_RESERVE, read by ph_relay_ctx_init()
 */
struct ph_relay_ctx {
	struct ph_loop *loop;
	const struct ph_config *cfg;
	struct ph_stats *stats;
	struct ph_list relays;
	uint64_t epoch;
	void (*on_closed)(struct ph_relay_ctx *ctx, struct ph_relay_owner *owner);
	int pool[PH_RELAY_PIPE_POOL][2];
	size_t npool;
	size_t pipe_cap;
	int spare[2];
	int fd_ceiling;
	char *scratch;
};

/* RLIMIT_NOFILE (soft) - PH_FD_RESERVE, at least 0, at most INT_MAX */
int ph_relay_fd_ceiling(void);

/* Return: 0 or -ENOMEM */
int ph_relay_ctx_init(struct ph_relay_ctx *ctx, struct ph_loop *loop, const struct ph_config *cfg,
		      struct ph_stats *stats);
/* Resets every relay and frees the pipe pool */
void ph_relay_ctx_fini(struct ph_relay_ctx *ctx);

/**
 * ph_relay_reserve() - make sure the next relay of @family needs no new descriptor
 * @ctx:	context
 * @family:	AF_INET or AF_INET6 (the service's)
 *
 * Creates the service socket in advance. Called before accept(): when
 * descriptors run out, the client is then never accepted only to be
 * dropped, it stays in the listen backlog until there is room. (Pipes are
 * taken later, by bulk transfers; without one a direction keeps copying.)
 * A socket numbered @ctx->fd_ceiling - 1 or higher leaves no room below the
 * ceiling for the client and is closed again: -EMFILE.
 * Return: 0 or -errno (EMFILE, ENFILE, ENOMEM)
 */
int ph_relay_reserve(struct ph_relay_ctx *ctx, int family);

/**
 * ph_relay_take_spare() - take the service socket ph_relay_reserve() made
 * @ctx:	context
 * @family:	AF_INET or AF_INET6
 * For a client handed to another relay thread (ph_relay_give_spare()
 * there), so that thread needs no new descriptor either.
 * Return: the socket (the caller owns it), or -1 when none was reserved
 */
int ph_relay_take_spare(struct ph_relay_ctx *ctx, int family);

/**
 * ph_relay_give_spare() - let the next relay of @family use @fd as its service socket
 * @ctx:	context
 * @family:	AF_INET or AF_INET6
 * @fd:		a socket from ph_relay_take_spare(); always consumed
 */
void ph_relay_give_spare(struct ph_relay_ctx *ctx, int family, int fd);

/**
 * ph_relay_sock_options() - TCP_NODELAY, and what the leg needs besides
 * @fd:		socket; on a listener, accepted sockets inherit the options
 * @cfg:	keepalive timings
 * @leg:	PH_LEG_CLIENT: keepalive with a matching TCP_USER_TIMEOUT (the
 *		peer may vanish); PH_LEG_SERVICE: reno congestion control
 */
void ph_relay_sock_options(int fd, const struct ph_config *cfg, enum ph_relay_leg leg);

/**
 * ph_relay_client_cc() - congestion control for the client leg, if not the system's
 * @cfg:	@cfg->client_cc: "" (auto), "system" or an algorithm name
 * @external:	the external address: IPv6, or IPv4 as v4-mapped (::ffff:a.b.c.d)
 *
 * Auto picks reno when @external is link-local (169.254.0.0/16 or fe80::/10):
 * the client is then one virtual hop away (a microVM's host), there is no
 * congestion to control, and a pacing algorithm only costs the relay CPU and
 * throughput (measured with bbr: 0.70x of direct to the client, 0.9x and
 * more with reno). Elsewhere the client may be across the Internet, and the
 * administrator's choice stands.
 * Return: the name to set with TCP_CONGESTION, or NULL for the system's
 */
const char *ph_relay_client_cc(const struct ph_config *cfg, const struct in6_addr *external);

/**
 * ph_relay_start() - relay an accepted client to a loopback service
 * @ctx:	context
 * @client_fd:	accepted, non-blocking socket, with the options of
 *		ph_relay_sock_options() inherited from its listener; always
 *		consumed (closed on error)
 * @target:	service address
 * @tlen:	its length
 * @owner:	counted while the relay lives
 *
 * The client gets an RST at once when the service refuses. Every failure
 * is counted in @ctx->stats->relay_closed (REFUSED or ERROR).
 * Return: 0, or -errno (the client was reset)
 */
int ph_relay_start(struct ph_relay_ctx *ctx, int client_fd, const struct sockaddr *target,
		   socklen_t tlen, struct ph_relay_owner *owner);

/**
 * ph_relay_abort_all() - reset relays whose epoch is below @before_epoch
 * @ctx:	context
 * @before_epoch: UINT64_MAX for all
 *
 * Both legs are closed with RST; each counts as PH_RELAY_END_QUIESCE.
 * Return: number of relays reset
 */
size_t ph_relay_abort_all(struct ph_relay_ctx *ctx, uint64_t before_epoch);

/**
 * ph_relay_export() - describe every open relay of @ctx, for an upgrade
 * @ctx:	context; its loop must not run meanwhile (frozen)
 * @fn:		called per relay with its state, whose descriptor fields hold
 *		the descriptors themselves (PH_HO_NONE for none) and whose
 *		buffers point into the relay; non-zero stops the walk
 * @arg:	its argument
 * Nothing changes: after a failed upgrade the relays go on as they were.
 * Return: relays described
 */
size_t ph_relay_export(struct ph_relay_ctx *ctx,
		       int (*fn)(void *arg, const struct ph_ho_relay *s, struct ph_relay_owner *owner),
		       void *arg);

/**
 * ph_relay_import() - go on relaying a connection a previous process relayed
 * @ctx:	context (on its loop's thread, or before the loop runs)
 * @s:		its state, descriptor fields holding descriptors (as
 *		ph_relay_export() gives them); buffers are copied
 * @owner:	counted against, like ph_relay_start()
 * Every descriptor is consumed; on failure both legs are reset.
 * Return: 0 or -errno
 */
int ph_relay_import(struct ph_relay_ctx *ctx, const struct ph_ho_relay *s,
		    struct ph_relay_owner *owner);

#endif /* PH_RELAY_H */
