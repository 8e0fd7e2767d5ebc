// SPDX-License-Identifier: MIT
/* relay.c - relayed TCP connections
 *
 * Theory of Operation
 * ===================
 * A relay joins two sockets: the client accepted on EXTERNAL:port (side 0)
 * and a connection to the loopback service (side 1). Each direction is a
 * tiny state machine:
 *
 *   fill:  when the source is readable, take what it has; 0 means EOF.
 *   drain: pass what was taken to the destination.
 *   shut:  once EOF was read and nothing is held, shutdown(dst, SHUT_WR):
 *          a half-close travels through, the other direction keeps flowing.
 *
 * Two ways to move bytes, chosen per direction. Every direction starts in
 * copy mode: recv() into one scratch buffer shared by all relays of the
 * loop and send() on at once, two system calls per message and no buffer
 * of its own. Small messages (requests, responses, keystrokes) cost less
 * this way than through a pipe (measured: 7-15% more keep-alive
 * requests/s, and no pipe per connection). A read that fills the scratch
 * buffer marks a bulk transfer: once nothing is held back, the direction
 * takes a pipe and moves to splice(2), socket -> pipe -> socket, never
 * copying to user space. A bulk direction that fills its 64 KiB pipe grows
 * it once to 256 KiB (measured: ~18% more throughput).
 *
 * Scheduling is level-triggered and the interest of each socket follows
 * the state: a socket is watched for input while its direction may read
 * and has no EOF, and for output only while the opposite direction holds
 * bytes the socket did not take. Backpressure: a direction holds at most
 * one pipe, or in copy mode the one read the destination did not take;
 * while it holds them it does not read its source.
 *
 * Half-closed: after the client's FIN the client leg stays registered
 * (with no interest, as long as its own write side is open), because epoll
 * reports EPOLLERR/EPOLLHUP whatever the mask: a client that vanishes
 * meanwhile (keepalive timeout) or resets still ends the relay. And once
 * the client sent its FIN, a relay on which nothing moved for
 * cfg->half_close_timeout_ms (a service that never answers) is reset: a
 * timer per relay, armed at the FIN, which re-arms itself while bytes move.
 *
 * Abandoned: a client that sends its FIN without a byte while the service
 * leg is still in SYN_SENT ends the relay at once, with a reset. On
 * loopback a connect() completes within the call unless the service's
 * accept queue is full, so SYN_SENT means the service cannot take the
 * connection now (its SYN is retried for up to about two minutes). The
 * same holds, found by the half-close timer looking every ABANDON_CHECK_MS
 * while the client is silent, for a connection whose handshake completed
 * on our side only: the service's kernel dropped its last ACK (queue
 * full), and our FIN stays unacknowledged (service_unaccepted()). The
 * client has nothing to deliver and the service never saw it; a client
 * that closed (a scanner, a health check, a flood's clients giving up) is
 * the usual case. Kept waiting, these held two descriptors each until the
 * half-close timeout, and a flood's queued clients that had left long ago
 * took the port's every slot for minutes. What this costs: a client that
 * only half-closed, to read a server-speaks-first banner (SSH, SMTP),
 * while the service's queue was full, is reset instead of getting the
 * banner once the service catches up; with the service accepting, the
 * connect has completed and the FIN is passed on as always, so the banner
 * comes (tests/integration/t_core_abandon.sh measures both with sshd). A
 * client that sent bytes keeps its relay: they are delivered once
 * connected.
 *
 * FIN: a source whose FIN has arrived (EPOLLRDHUP) is read to EOF in the
 * same event, the last bytes are written with MSG_MORE and shutdown() sets
 * FIN on their segment. The peer then sees the response and the end of the
 * stream together, as it would from the service directly, and an HTTP
 * client does not close first (which would leave it the TIME_WAIT).
 *
 * Errors: a reset or error on one leg (ECONNRESET, EPIPE, a keepalive
 * timeout) closes the other leg with SO_LINGER 0, so the peer sees a reset
 * too. A service that refuses the connection gets the client reset at once.
 * When both directions are shut, both sockets are closed normally. Every
 * end has a reason (enum ph_relay_end: which leg failed, and how), counted
 * in struct ph_stats.relay_closed and, unless normal, logged at debug with
 * the port: a failing system call names its leg (leg_fail()), and
 * end_reason() turns leg and errno into the reason.
 * If splice() is refused (EINVAL: a socket type it cannot handle), that
 * direction stays in copy mode.
 *
 * Lifetime: a relay is unlinked and its descriptors closed at once; its
 * memory is released through ph_loop_defer() after the current event batch.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "netutil.h"
#include "porthole.h"

#define DEFAULT_PIPE_CAP 65536
/* A direction that fills its default pipe is a bulk transfer: its pipe grows
 * once to this size, which cuts splice calls per byte (measured: ~+18%
 * throughput). Interactive connections keep 64 KiB. */
#define BULK_PIPE_CAP (256 * 1024)
/* Copy-mode leftovers up to this size keep their buffer for next time */
#define LEFTOVER_KEEP 4096

/**
 * struct relay_dir - one direction of a relay
 * @pipe:	splice pipe, [0] read end, [1] write end; -1 in copy mode
 * @buf:	copy mode: bytes the destination did not take yet, or NULL
 * @len:	bytes held (in the pipe, or in @buf up to @len)
 * @off:	copy mode: first unsent byte of @buf
 * @cap:	bytes the pipe (or @buf) can hold
 * @eof:	the source sent FIN
 * @shut:	shutdown(SHUT_WR) was done on the destination
 * @grown:	the pipe was enlarged for a bulk transfer (not pooled again)
 * @want_splice: a bulk transfer: move to splice once @buf is empty
 * @copy_only:	never splice (--relay copy, or splice refused the socket)
 * @fill_blocked: the pipe is full, or copy-mode leftovers wait: the source
 *		is not read until the destination takes them
 * @drain_blocked: the destination took less than was held: wait for it
 */
struct relay_dir {
	int pipe[2];
	char *buf;
	size_t len, off, cap;
	bool eof, shut, grown;
	bool want_splice, copy_only;
	bool fill_blocked, drain_blocked;
};

/**
 * struct ph_relay - one relayed connection
 * @node:	in ctx->relays
 * @ctx:	its loop's relay context
 * @owner:	counted against (a port entry)
 * @io:		loop registrations, indexed by enum ph_relay_leg
 * @fd:		the legs' sockets, indexed by enum ph_relay_leg
 * @dir:	[0] client -> service, [1] service -> client
 * @epoch:	ctx->epoch when it started (ph_relay_abort_all())
 * @half_close:	fires half_close_timeout_ms after the client's FIN, or
 *		after the last byte moved since (relay_half_closed())
 * @active_ms:	loop time a byte last moved, either way
 * @port:	the service's port, for the log
 * @fail_leg:	the leg whose system call failed last (leg_fail())
 * @connecting:	the service leg's connect() may still be under way
 * @imported:	taken over from a previous process (ph_relay_import()), which
 *		may still hold copies of its sockets: close() would then not
 *		unregister them from epoll, so relay_close() does
 * @client_spoke: a byte came from the client
 * @service_took: the service's kernel acknowledged our FIN, so it holds the
 *		connection: a silent client's relay stops looking (service_unaccepted())
 * @closed:	relay_close() ran; the memory waits for the deferred free
 * @defer:	the deferred free
 */
struct ph_relay {
	struct ph_list node;
	struct ph_relay_ctx *ctx;
	struct ph_relay_owner *owner;
	struct ph_io io[2];
	int fd[2];
	struct relay_dir dir[2];
	uint64_t epoch;
	struct ph_timer half_close;
	uint64_t active_ms;
	uint16_t port;
	enum ph_relay_leg fail_leg;
	bool connecting;
	bool imported;
	bool client_spoke;
	bool service_took;
	bool closed;
	struct ph_defer defer;
};

static const char *const end_names[PH_RELAY_END_COUNT] = {
	[PH_RELAY_END_DONE] = "done",
	[PH_RELAY_END_CLIENT_RESET] = "client_reset",
	[PH_RELAY_END_SERVICE_RESET] = "service_reset",
	[PH_RELAY_END_KEEPALIVE_TIMEOUT] = "keepalive_timeout",
	[PH_RELAY_END_HALF_CLOSE_TIMEOUT] = "half_close_timeout",
	[PH_RELAY_END_QUIESCE] = "quiesce",
	[PH_RELAY_END_REFUSED] = "refused",
	[PH_RELAY_END_ERROR] = "error",
	[PH_RELAY_END_ABANDONED] = "abandoned",
};

const char *ph_relay_end_name(enum ph_relay_end end)
{
	return (unsigned)end < PH_RELAY_END_COUNT ? end_names[end] : "?";
}

int ph_relay_ctx_init(struct ph_relay_ctx *ctx, struct ph_loop *loop, const struct ph_config *cfg,
		      struct ph_stats *stats)
{
	*ctx = (struct ph_relay_ctx){ .loop = loop, .cfg = cfg, .stats = stats, .epoch = 1,
				      .spare = { -1, -1 }, .fd_ceiling = ph_relay_fd_ceiling() };
	ph_list_init(&ctx->relays);
	ctx->pipe_cap = cfg->pipe_size ? cfg->pipe_size : DEFAULT_PIPE_CAP;
	/* only the pages a message touches become resident */
	ctx->scratch = malloc(PH_RELAY_SCRATCH);
	return ctx->scratch ? 0 : -ENOMEM;
}

int ph_relay_fd_ceiling(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (rlim_t)INT_MAX)
		return INT_MAX - PH_FD_RESERVE;
	return rl.rlim_cur > PH_FD_RESERVE ? (int)(rl.rlim_cur - PH_FD_RESERVE) : 0;
}

static int pipe_new(struct ph_relay_ctx *ctx, int p[2])
{
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	if (p[0] >= ctx->fd_ceiling || p[1] >= ctx->fd_ceiling) {
		/* the control plane's (PH_FD_RESERVE): keep copying */
		close(p[0]);
		close(p[1]);
		p[0] = p[1] = -1;
		return -EMFILE;
	}
	if (ctx->cfg->pipe_size) {
		int got = fcntl(p[1], F_SETPIPE_SZ, (int)ctx->cfg->pipe_size);

		/* a smaller pipe than asked (pipe-max-size) only lowers the bound */
		if (got > 0 && (size_t)got < ctx->pipe_cap)
			ctx->pipe_cap = (size_t)got;
	}
	return 0;
}

static int pipe_get(struct ph_relay_ctx *ctx, int p[2])
{
	if (!ctx->npool)
		return pipe_new(ctx, p);
	ctx->npool--;
	p[0] = ctx->pool[ctx->npool][0];
	p[1] = ctx->pool[ctx->npool][1];
	return 0;
}

static int new_service_socket(struct ph_relay_ctx *ctx, int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	if (fd >= ctx->fd_ceiling) {	/* the control plane's (PH_FD_RESERVE) */
		close(fd);
		return -EMFILE;
	}
	ph_relay_sock_options(fd, ctx->cfg, PH_LEG_SERVICE);
	return fd;
}

/* The reserved service socket of @family's slot */
static int *spare_slot(struct ph_relay_ctx *ctx, int family)
{
	return &ctx->spare[family == AF_INET6];
}

int ph_relay_reserve(struct ph_relay_ctx *ctx, int family)
{
	int *spare = spare_slot(ctx, family);

	if (*spare < 0) {
		int fd = new_service_socket(ctx, family);

		if (fd < 0)
			return fd;
		if (fd >= ctx->fd_ceiling - 1) {	/* no room left for the client */
			close(fd);
			return -EMFILE;
		}
		*spare = fd;
	}
	return 0;
}

int ph_relay_take_spare(struct ph_relay_ctx *ctx, int family)
{
	int *spare = spare_slot(ctx, family), fd = *spare;

	*spare = -1;
	return fd;
}

void ph_relay_give_spare(struct ph_relay_ctx *ctx, int family, int fd)
{
	int *spare = spare_slot(ctx, family);

	if (*spare >= 0)
		close(*spare);
	*spare = fd;
}

static void pipe_put(struct ph_relay_ctx *ctx, int p[2], bool empty)
{
	if (p[0] < 0)
		return;
	if (empty && ctx->npool < PH_RELAY_PIPE_POOL) {
		ctx->pool[ctx->npool][0] = p[0];
		ctx->pool[ctx->npool][1] = p[1];
		ctx->npool++;
	} else {
		close(p[0]);
		close(p[1]);
	}
	p[0] = p[1] = -1;
}

static void relay_free(struct ph_defer *d)
{
	free(ph_container_of(d, struct ph_relay, defer));
}

/* Count (and, unless normal, log) why a relay on @port ended */
static void count_end(struct ph_relay_ctx *ctx, unsigned port, enum ph_relay_end end, int err)
{
	atomic_fetch_add_explicit(&ctx->stats->relay_closed[end], 1, memory_order_relaxed);
	if (end == PH_RELAY_END_REFUSED)
		atomic_fetch_add_explicit(&ctx->stats->conns_refused, 1, memory_order_relaxed);
	if (end == PH_RELAY_END_DONE)
		return;
	if (err)
		ph_debug("relay closed", PH_FU("port", port), PH_FS("reason", ph_relay_end_name(end)),
			 PH_FERR(err));
	else
		ph_debug("relay closed", PH_FU("port", port), PH_FS("reason", ph_relay_end_name(end)));
}

/**
 * relay_close() - close both legs and release the relay
 * @r:		relay
 * @end:	why; anything but PH_RELAY_END_DONE resets both legs
 *		(SO_LINGER 0) instead of closing them normally
 * @err:	the error behind it (positive errno), 0 for none, for the log
 */
static void relay_close(struct ph_relay *r, enum ph_relay_end end, int err)
{
	struct ph_relay_ctx *ctx = r->ctx;
	bool rst = end != PH_RELAY_END_DONE;

	if (r->closed)
		return;
	r->closed = true;
	ph_timer_cancel(ctx->loop, &r->half_close);
	for (int i = 0; i < 2; i++) {
		if (r->imported)	/* another copy may keep the registration */
			ph_loop_del(ctx->loop, &r->io[i]);
		else	/* close() below unregisters it */
			ph_loop_forget(ctx->loop, &r->io[i]);
		if (rst)
			ph_sock_abort(r->fd[i]);
		else if (r->fd[i] >= 0)
			close(r->fd[i]);
		r->fd[i] = -1;
		pipe_put(ctx, r->dir[i].pipe, r->dir[i].len == 0 && !r->dir[i].grown);
		free(r->dir[i].buf);
		r->dir[i].buf = NULL;
	}
	ph_list_del(&r->node);
	/* sequentially consistent, like the worker's limit_wait and cap_wait
	 * checks, so that either the worker sees the room or on_closed sees
	 * that it waits (accept.c) */
	atomic_fetch_sub(&ctx->stats->conns_active, 1);
	if (rst)
		atomic_fetch_add_explicit(&ctx->stats->conns_reset, 1, memory_order_relaxed);
	count_end(ctx, r->port, end, err);
	atomic_fetch_sub(&r->owner->conns, 1);
	ph_loop_defer(ctx->loop, &r->defer, relay_free);
	if (ctx->on_closed)
		ctx->on_closed(ctx, r->owner);
	ph_relay_owner_put(r->owner);
}

/**
 * leg_fail() - note that a system call on @leg failed, for end_reason()
 * @r:		relay
 * @leg:	the socket the call was made on
 * @err:	its errno
 * Return: -@err
 */
static int leg_fail(struct ph_relay *r, enum ph_relay_leg leg, int err)
{
	r->fail_leg = leg;
	return -err;
}

/**
 * end_reason() - why a relay ends after @err (positive errno) on @leg
 * @r:		relay
 * @leg:	the leg the error came from
 * @err:	the error
 * Return: ERROR for a shortage of the relay's own; for the service leg
 * REFUSED when its connect() failed (refused, or another error before any
 * byte moved), else SERVICE_RESET (a service that accepted, then reset);
 * for the client leg KEEPALIVE_TIMEOUT when it timed out, else CLIENT_RESET
 */
static enum ph_relay_end end_reason(const struct ph_relay *r, enum ph_relay_leg leg, int err)
{
	if (err == ENOMEM)
		return PH_RELAY_END_ERROR;
	if (leg == PH_LEG_SERVICE)
		return err == ECONNREFUSED ||
		       (r->connecting && err != ECONNRESET && err != EPIPE) ?
			       PH_RELAY_END_REFUSED : PH_RELAY_END_SERVICE_RESET;
	return err == ETIMEDOUT ? PH_RELAY_END_KEEPALIVE_TIMEOUT : PH_RELAY_END_CLIENT_RESET;
}

/* An error that ends the relay, as opposed to "try again later" */
static bool fatal(int err)
{
	return err != EAGAIN && err != EWOULDBLOCK && err != EINTR;
}

/* Enlarge a full default-size pipe once (not with --pipe-size). */
static void dir_grow(struct ph_relay_ctx *ctx, struct relay_dir *d)
{
	int got;

	if (d->grown || ctx->cfg->pipe_size)
		return;
	d->grown = true;
	got = fcntl(d->pipe[1], F_SETPIPE_SZ, BULK_PIPE_CAP);
	if (got > 0 && (size_t)got > d->cap)
		d->cap = (size_t)got;
}

/**
 * dir_try_splice() - move a bulk direction from copy mode to splice
 * @ctx:	context (pipe pool)
 * @d:		direction, in copy mode, holding nothing
 *
 * Called only once its leftovers are gone: dir_fill() does not run while
 * fill_blocked, which dir_keep() sets and dir_drain() clears only when the
 * last kept byte is sent, so no byte can overtake another (one guard, not
 * three: test_leftovers_in_parts_copy fails if it goes). Without a pipe
 * (descriptors ran out) the direction simply stays in copy mode and tries
 * again at its next read.
 */
static void dir_try_splice(struct ph_relay_ctx *ctx, struct relay_dir *d)
{
	if (!d->want_splice || pipe_get(ctx, d->pipe))
		return;
	d->want_splice = false;
	free(d->buf);
	d->buf = NULL;
	d->len = d->off = 0;
	d->cap = ctx->pipe_cap;
}

/**
 * dir_keep() - hold the bytes a destination did not take
 * @d:		direction, with no leftovers yet
 * @p:		first byte not sent
 * @n:		bytes not sent
 *
 * The source is not read again until they are gone (backpressure).
 * Return: 0 or -ENOMEM
 */
static int dir_keep(struct relay_dir *d, const char *p, size_t n)
{
	if (d->cap < n) {
		char *b = realloc(d->buf, n);

		if (!b)
			return -ENOMEM;
		d->buf = b;
		d->cap = n;
	}
	memcpy(d->buf, p, n);
	d->off = 0;
	d->len = n;
	d->fill_blocked = true;
	d->drain_blocked = true;
	return 0;
}

/**
 * dir_write() - write bytes of direction @i to its destination
 * @r:		relay
 * @i:		direction (destination fd[1 - i])
 * @p:		bytes to send, or NULL to splice from the direction's pipe
 * @n:		how many
 *
 * The last bytes before a FIN are held back (MSG_MORE) so that the
 * shutdown() of dir_drain() sets FIN on their segment: the peer reads
 * response and end of stream at once. An HTTP client that saw the response
 * first would close first and keep the TIME_WAIT (at 10k connections/s its
 * ephemeral ports run out); a lone segment is pushed by the next write
 * anyway.
 * Return: bytes written (0: the destination takes nothing now), or -errno
 * when the relay must be reset (ECONNREFUSED if connect() failed)
 */
static ssize_t dir_write(struct ph_relay *r, int i, const char *p, size_t n)
{
	struct ph_relay_ctx *ctx = r->ctx;
	struct relay_dir *d = &r->dir[i];
	_Atomic uint64_t *bytes = i ? &ctx->stats->bytes_to_client : &ctx->stats->bytes_to_service;
	bool more = d->eof && !r->connecting;
	ssize_t m;

	if (p)
		m = send(r->fd[1 - i], p, n, MSG_DONTWAIT | MSG_NOSIGNAL | (more ? MSG_MORE : 0));
	else
		m = splice(d->pipe[0], NULL, r->fd[1 - i], NULL, n,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (more ? SPLICE_F_MORE : 0));
	if (m < 0)
		return fatal(errno) ? leg_fail(r, (enum ph_relay_leg)(1 - i), errno) : 0;
	if (m > 0) {
		r->connecting = false;	/* it took data: connected */
		r->active_ms = ctx->loop->now_ms;
		atomic_fetch_add_explicit(bytes, (uint64_t)m, memory_order_relaxed);
	}
	return m;
}

/**
 * dir_copy() - copy mode: read what the source has and send it on at once
 * @r:		relay
 * @i:		direction (source fd[i], destination fd[1 - i])
 * @fin_seen:	the source's FIN has arrived (EPOLLRDHUP)
 *
 * Through the context's scratch buffer, so an idle or interactive relay
 * holds no buffer of its own; only bytes the destination refuses are kept
 * (dir_keep()). A read that fills the scratch buffer marks a bulk transfer,
 * which moves to splice.
 * Return: 0, or -errno when the relay must be reset
 */
static int dir_copy(struct ph_relay *r, int i, bool fin_seen)
{
	struct relay_dir *d = &r->dir[i];
	char *buf = r->ctx->scratch;
	ssize_t n, m;

	n = recv(r->fd[i], buf, PH_RELAY_SCRATCH, MSG_DONTWAIT);
	if (n == 0) {
		d->eof = true;
		return 0;
	}
	if (n < 0)
		return fatal(errno) ? leg_fail(r, (enum ph_relay_leg)i, errno) : 0;
	r->client_spoke |= i == PH_LEG_CLIENT;
	if ((size_t)n == PH_RELAY_SCRATCH) {
		d->want_splice = !d->copy_only;
	} else if (fin_seen) {
		/* the FIN is queued behind these bytes: take it now (see dir_write()) */
		ssize_t e = recv(r->fd[i], buf + n, PH_RELAY_SCRATCH - (size_t)n, MSG_DONTWAIT);

		if (e == 0)
			d->eof = true;
		else if (e > 0)
			n += e;
		else if (fatal(errno))
			return leg_fail(r, (enum ph_relay_leg)i, errno);
	}

	m = dir_write(r, i, buf, (size_t)n);
	if (m < 0)
		return (int)m;
	if (m < n)
		return dir_keep(d, buf + m, (size_t)(n - m));
	return 0;
}

/**
 * dir_fill() - read from the source of direction @i
 * @r:		relay
 * @i:		direction (source fd[i])
 * @fin_seen:	the source's FIN has arrived (EPOLLRDHUP)
 *
 * Called when fd[i] was reported readable. Level-triggered epoll reports it
 * again while data is left, so one read per event is enough; a short read
 * is not retried here. In copy mode the bytes are also sent on; in splice
 * mode they wait in the pipe for dir_drain().
 * Return: 0, or -errno when the relay must be reset
 */
static int dir_fill(struct ph_relay *r, int i, bool fin_seen)
{
	struct ph_relay_ctx *ctx = r->ctx;
	struct relay_dir *d = &r->dir[i];
	ssize_t n;

	if (d->eof || d->fill_blocked)
		return 0;
	if (d->pipe[0] < 0) {
		dir_try_splice(ctx, d);
		if (d->pipe[0] < 0)
			return dir_copy(r, i, fin_seen);
	}
	if (d->len >= d->cap)
		return 0;

	n = splice(r->fd[i], NULL, d->pipe[1], NULL, d->cap - d->len,
		   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n < 0 && (errno == EINVAL || errno == ENOSYS) && !d->len) {
		/* a socket splice cannot handle: copy from now on */
		pipe_put(ctx, d->pipe, true);
		d->copy_only = true;
		d->cap = 0;
		return dir_copy(r, i, fin_seen);
	}
	if (n > 0) {
		d->len += (size_t)n;
		r->client_spoke |= i == PH_LEG_CLIENT;
		if (d->len >= d->cap) {
			dir_grow(ctx, d);
			d->fill_blocked = d->len >= d->cap;
		} else if (fin_seen) {
			/* The FIN is queued behind these bytes: read it now, so
			 * the drain sends data and FIN together instead of the
			 * FIN one loop turn later (see dir_write()). */
			return dir_fill(r, i, false);
		}
	} else if (n == 0) {
		d->eof = true;
	} else if (fatal(errno)) {
		return leg_fail(r, (enum ph_relay_leg)i, errno);
	} else if (d->len) {
		/* readable, yet nothing moved: the pipe is full (in slots,
		 * if not in bytes); stop reading until it drains */
		d->fill_blocked = true;
		dir_grow(ctx, d);
	}
	return 0;
}

/**
 * dir_drain() - write what direction @i holds to its destination
 * @r:		relay
 * @i:		direction (destination fd[1 - i])
 *
 * Sends the pipe's bytes (splice mode) or the leftovers of dir_copy(), and
 * passes the FIN on once everything before it was delivered.
 * Return: 0, or -errno when the relay must be reset
 */
static int dir_drain(struct ph_relay *r, int i)
{
	struct relay_dir *d = &r->dir[i];
	ssize_t n;

	if (d->len > d->off) {
		bool spliced = d->pipe[0] >= 0;

		n = dir_write(r, i, spliced ? NULL : d->buf + d->off, d->len - d->off);
		if (n < 0)
			return (int)n;
		if (n > 0) {
			if (spliced)
				d->len -= (size_t)n;
			else
				d->off += (size_t)n;
			if (d->off == d->len)
				d->off = d->len = 0;
			/* a pipe takes more as soon as it has room; leftovers of
			 * copy mode must all be gone first (dir_keep()) */
			d->fill_blocked = !spliced && d->len > d->off;
		}
		/* what is left waits for the destination's output readiness */
		d->drain_blocked = d->len > d->off;
		if (!d->drain_blocked && !spliced && d->cap > LEFTOVER_KEEP) {
			/* a slow reader caught up: do not keep its big buffer */
			free(d->buf);
			d->buf = NULL;
			d->cap = 0;
		}
	}

	/* Half-close travels once everything before the FIN was delivered
	 * (and the service leg is connected: shutdown() would abort a
	 * connection still in SYN_SENT). When the other direction is
	 * already shut, the relay closes now and close() sends this FIN. */
	if (d->eof && d->len == d->off && !d->shut && !r->connecting) {
		if (!r->dir[1 - i].shut && shutdown(r->fd[1 - i], SHUT_WR) && errno != ENOTCONN)
			return leg_fail(r, (enum ph_relay_leg)(1 - i), errno);
		d->shut = true;
	}
	return 0;
}

static void on_client(struct ph_loop *loop, struct ph_io *io, uint32_t events);
static void on_service(struct ph_loop *loop, struct ph_io *io, uint32_t events);

/*
 * Interest follows state (level-triggered): read fd[s] while its direction
 * has room and no EOF; watch output of fd[s] while the opposite direction
 * has bytes it could not write. A service leg with no interest at all
 * leaves the loop until it has some again: epoll reports EPOLLHUP whatever
 * the mask, and a half-closed leg waiting for the other one to drain must
 * not spin. A client leg stays with an empty mask, for its errors, until
 * its own write side is shut: before that it cannot hang up without an
 * error (see "Half-closed" above).
 * The service leg's connect() is optimistic: on loopback the handshake is
 * over when connect() returns EINPROGRESS, so the client's first bytes are
 * simply written to it; only if that answers EAGAIN (still in SYN_SENT) is
 * output watched, like any blocked drain, or when a client FIN waits for
 * the connection. A refusal shows as EPOLLERR/EPOLLHUP, which epoll reports
 * whatever the mask, or as ECONNREFUSED from that first write. There is
 * always a registered leg while anything is pending: a blocked fill waits
 * for a drain, which waits for output readiness.
 */
static int relay_update(struct ph_relay *r)
{
	for (int s = 0; s < 2; s++) {
		const struct relay_dir *in = &r->dir[s], *out = &r->dir[1 - s];
		uint32_t ev = 0;
		int ret;

		if (!in->eof && !in->fill_blocked)
			ev |= EPOLLIN | EPOLLRDHUP;
		if (out->drain_blocked || (s == 1 && r->connecting && r->dir[0].eof))
			ev |= EPOLLOUT;
		/* A client leg stays, for its errors, until its write side is
		 * shut (then EPOLLHUP would be reported, and spin, once it
		 * sends its FIN): see "Half-closed" above. */
		if (!ev && (s == PH_LEG_SERVICE || out->shut)) {
			ph_loop_del(r->ctx->loop, &r->io[s]);
			continue;
		}
		if (r->io[s].live)
			ret = ph_loop_mod(r->ctx->loop, &r->io[s], ev);
		else
			ret = ph_loop_add(r->ctx->loop, &r->io[s], r->fd[s], ev,
					  s ? on_service : on_client);
		if (ret)
			return ret;
	}
	return 0;
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		return errno;
	return err;
}

/* A silent half-closed client's relay looks again this often whether the
 * service's kernel has taken the connection (see "Abandoned" above) */
#define ABANDON_CHECK_MS 1000

/**
 * service_unaccepted() - has the service's kernel not taken the connection yet?
 * @r:		relay
 * @settled:	our FIN went out at least ABANDON_CHECK_MS ago (from the timer)
 *
 * Still in SYN_SENT: the SYN was dropped (accept queue full). Or, looked at
 * later, our FIN still unacknowledged (FIN_WAIT1): the handshake completed
 * on our side, but the service's kernel dropped its last ACK (queue full
 * then too) and holds it as a half-open request; on loopback a FIN to a
 * connection that exists, even one not accepted yet, is acknowledged at once.
 * Once it has been (FIN_WAIT2 and later, or the service's own FIN came), the
 * answer cannot change: @r->service_took is set and the relay stops asking.
 * Without that, every silent half-closed relay cost a TCP_INFO a second
 * until its half-close timeout: 1,000 of them, left by a port scan, kept an
 * otherwise idle daemon at 0.5% of a core.
 * Return: true when the service has not taken the connection
 */
static bool service_unaccepted(struct ph_relay *r, bool settled)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(r->fd[PH_LEG_SERVICE], IPPROTO_TCP, TCP_INFO, &ti, &len))
		return false;
	switch (ti.tcpi_state) {
	case TCP_SYN_SENT:
		return true;
	case TCP_FIN_WAIT1:
		return settled && ti.tcpi_unacked;
	case TCP_FIN_WAIT2: case TCP_TIME_WAIT: case TCP_CLOSE_WAIT: case TCP_LAST_ACK:
	case TCP_CLOSING:
		r->service_took = true;
		return false;
	default:
		return false;
	}
}

static void on_half_close(struct ph_loop *loop, struct ph_timer *t)
{
	struct ph_relay *r = ph_container_of(t, struct ph_relay, half_close);
	uint64_t deadline = r->active_ms + r->ctx->cfg->half_close_timeout_ms;

	if (!r->client_spoke && !r->service_took && service_unaccepted(r, true)) {
		relay_close(r, PH_RELAY_END_ABANDONED, 0);
		return;
	}
	if (loop->now_ms >= deadline) {
		relay_close(r, PH_RELAY_END_HALF_CLOSE_TIMEOUT, 0);
		return;
	}
	/* bytes moved since, or a silent client's relay looks again */
	if (!r->client_spoke && !r->service_took && loop->now_ms + ABANDON_CHECK_MS < deadline)
		deadline = loop->now_ms + ABANDON_CHECK_MS;
	ph_timer_arm(loop, t, deadline, on_half_close);
}

/**
 * relay_half_closed() - the client sent its FIN: bound the wait for the service
 * @r:		relay
 *
 * Arms the half-close timer: if nothing moves either way for
 * half_close_timeout_ms, the relay is reset (the service leg gets an RST).
 * A service that is still sending keeps it open. For a client that sent
 * no byte the timer looks every ABANDON_CHECK_MS on the way whether the
 * service's kernel has taken the connection at all (service_unaccepted()).
 */
static void relay_half_closed(struct ph_relay *r)
{
	struct ph_loop *loop = r->ctx->loop;

	uint64_t timeout = r->ctx->cfg->half_close_timeout_ms;

	r->active_ms = loop->now_ms;
	if (!r->client_spoke && timeout > ABANDON_CHECK_MS)
		timeout = ABANDON_CHECK_MS;	/* see service_unaccepted() */
	ph_timer_arm(loop, &r->half_close, loop->now_ms + timeout, on_half_close);
}

/**
 * relay_event() - one readiness report for leg @s
 * @r:		relay
 * @s:		the leg
 * @events:	epoll mask
 *
 * Input on fd[s] feeds direction s (and is passed on at once); output
 * readiness on fd[s] drains direction 1 - s.
 */
static void relay_event(struct ph_relay *r, enum ph_relay_leg s, uint32_t events)
{
	int ret = 0, err;

	if (r->connecting && s == PH_LEG_SERVICE) {
		/* the outcome of connect(): refused, or any readiness once
		 * connected (see relay_update() for when output is watched) */
		if (events & (EPOLLERR | EPOLLHUP)) {
			err = sock_error(r->fd[s]);
			relay_close(r, end_reason(r, s, err ? err : ECONNREFUSED), err);
			return;
		}
		r->connecting = false;
	}
	if ((events & EPOLLERR) && (err = sock_error(r->fd[s]))) {
		relay_close(r, end_reason(r, s, err), err);
		return;
	}
	if ((events & EPOLLHUP) && !r->io[s].events) {
		/* watched for errors only (its write side open): only a dead
		 * connection hangs up, even if its error was already taken */
		relay_close(r, end_reason(r, s, ECONNRESET), ECONNRESET);
		return;
	}
	if (events & EPOLLOUT)
		ret = dir_drain(r, 1 - s);
	if (!ret && (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))) {
		ret = dir_fill(r, s, events & (EPOLLRDHUP | EPOLLHUP));
		if (!ret)
			ret = dir_drain(r, s);
	}
	if (ret) {
		/* a failed first write to a service leg still connecting met
		 * the failed connect(): end_reason() calls that refused */
		relay_close(r, end_reason(r, r->fail_leg, -ret), -ret);
		return;
	}
	if (r->dir[0].shut && r->dir[1].shut) {
		relay_close(r, PH_RELAY_END_DONE, 0);
		return;
	}
	if (r->dir[PH_LEG_CLIENT].eof && !r->client_spoke && r->connecting &&
	    service_unaccepted(r, false)) {
		relay_close(r, PH_RELAY_END_ABANDONED, 0);	/* see "Abandoned" above */
		return;
	}
	if (r->dir[PH_LEG_CLIENT].eof && !ph_timer_armed(&r->half_close))
		relay_half_closed(r);
	ret = relay_update(r);
	if (ret) {
		ph_warn("relay registration failed", PH_FERR(ret));
		relay_close(r, PH_RELAY_END_ERROR, -ret);
	}
}

static void on_client(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	(void)loop;
	relay_event(ph_container_of(io, struct ph_relay, io[PH_LEG_CLIENT]), PH_LEG_CLIENT, events);
}

static void on_service(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	(void)loop;
	relay_event(ph_container_of(io, struct ph_relay, io[PH_LEG_SERVICE]), PH_LEG_SERVICE,
		    events);
}

void ph_relay_sock_options(int fd, const struct ph_config *cfg, enum ph_relay_leg leg)
{
	int one = 1;

	/* The endpoints already coalesce their writes; Nagle here would only
	 * add a delayed-ACK stall to each request/response turn. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Keepalive only where the peer can vanish (a VM restored without
	 * its clients). A loopback peer cannot: the kernel closes or resets
	 * a dead process's connections and answers probes for a live one,
	 * so on the service leg probes would never fire, and setting them
	 * would cost four system calls per connection. */
	if (leg == PH_LEG_CLIENT) {
		ph_sock_keepalive(fd, &cfg->keepalive, true);
		return;
	}
	/* Loopback neither loses nor queues packets, so congestion control
	 * has nothing to do there, yet a pacing one (bbr, a common default)
	 * arms a timer per burst: reno on the service leg (measured: +13%
	 * client -> service bulk throughput). The client leg keeps the
	 * system's choice. Best effort: reno is always built in. */
	ph_sock_congestion(fd, "reno");
}

const char *ph_relay_client_cc(const struct ph_config *cfg, const struct in6_addr *external)
{
	const uint8_t *b = external->s6_addr;
	bool link_local;

	if (!strcmp(cfg->client_cc, "system"))
		return NULL;
	if (cfg->client_cc[0])
		return cfg->client_cc;
	link_local = IN6_IS_ADDR_V4MAPPED(external) ? b[12] == 169 && b[13] == 254
						    : IN6_IS_ADDR_LINKLOCAL(external);
	return link_local ? "reno" : NULL;
}

/* The port of an AF_INET or AF_INET6 address, 0 for another family */
static unsigned sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

int ph_relay_start(struct ph_relay_ctx *ctx, int client_fd, const struct sockaddr *target,
		   socklen_t tlen, struct ph_relay_owner *owner)
{
	enum ph_relay_end end = PH_RELAY_END_ERROR;
	unsigned port = sockaddr_port(target);
	struct ph_relay *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r) {
		ph_sock_abort(client_fd);
		count_end(ctx, port, end, ENOMEM);
		return -ENOMEM;
	}
	r->ctx = ctx;
	r->owner = owner;
	r->epoch = ctx->epoch;
	r->port = (uint16_t)port;
	r->fd[0] = client_fd;
	for (int i = 0; i < 2; i++)
		r->dir[i].pipe[0] = r->dir[i].pipe[1] = -1;

	/* the client leg inherited its options from the listener */
	r->fd[1] = ph_relay_take_spare(ctx, target->sa_family);
	if (r->fd[1] < 0) {
		r->fd[1] = new_service_socket(ctx, target->sa_family);
		if (r->fd[1] < 0) {
			ret = r->fd[1];
			goto fail;
		}
	}
	for (int i = 0; i < 2; i++)
		r->dir[i].copy_only = ctx->cfg->force_copy;

	if (connect(r->fd[1], target, tlen) == 0) {
		r->connecting = false;
	} else if (errno == EINPROGRESS) {
		r->connecting = true;
	} else {
		ret = -errno;
		end = PH_RELAY_END_REFUSED;
		goto fail;
	}

	/* A client may speak before the service leg is up: the send answers
	 * EAGAIN until connected, so what it sent is kept in its direction's
	 * own buffer (dir_keep()) and written when the service leg turns
	 * writable. */
	ret = ph_loop_add(ctx->loop, &r->io[0], r->fd[0], EPOLLIN | EPOLLRDHUP, on_client);
	if (!ret)
		ret = ph_loop_add(ctx->loop, &r->io[1], r->fd[1], EPOLLIN | EPOLLRDHUP, on_service);
	if (ret) {
		ph_loop_del(ctx->loop, &r->io[0]);
		goto fail;
	}

	ph_list_add(&ctx->relays, &r->node);
	atomic_fetch_add_explicit(&owner->conns, 1, memory_order_relaxed);
	ph_relay_owner_get(owner);
	atomic_fetch_add_explicit(&ctx->stats->conns_active, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&ctx->stats->conns_total, 1, memory_order_relaxed);
	return 0;

fail:
	ph_sock_abort(r->fd[0]);
	if (r->fd[1] >= 0)
		close(r->fd[1]);
	free(r);
	count_end(ctx, port, end, -ret);
	return ret;
}

size_t ph_relay_abort_all(struct ph_relay_ctx *ctx, uint64_t before_epoch)
{
	struct ph_list *n_, *tmp;
	size_t n = 0;

	ph_list_for_each_safe(n_, tmp, &ctx->relays) {
		struct ph_relay *r = ph_list_entry(n_, struct ph_relay, node);

		if (r->epoch < before_epoch) {
			relay_close(r, PH_RELAY_END_QUIESCE, 0);
			n++;
		}
	}
	return n;
}

void ph_relay_ctx_fini(struct ph_relay_ctx *ctx)
{
	void (*on_closed)(struct ph_relay_ctx *, struct ph_relay_owner *) = ctx->on_closed;

	ctx->on_closed = NULL;	/* nothing to resume while tearing down */
	ph_relay_abort_all(ctx, UINT64_MAX);
	ctx->on_closed = on_closed;
	while (ctx->npool) {
		ctx->npool--;
		close(ctx->pool[ctx->npool][0]);
		close(ctx->pool[ctx->npool][1]);
	}
	for (int i = 0; i < 2; i++) {
		if (ctx->spare[i] >= 0)
			close(ctx->spare[i]);
		ctx->spare[i] = -1;
	}
	free(ctx->scratch);
	ctx->scratch = NULL;
}

/* ---- upgrades: a relay's state out of this process and into the next ----- */

/* Export: everything a relay holds, descriptors as they are (not indexes) */
static void relay_state(const struct ph_relay *r, struct ph_ho_relay *s, uint64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	s->fd[0] = (uint32_t)r->fd[0];
	s->fd[1] = (uint32_t)r->fd[1];
	s->flags = (r->connecting ? PH_HO_CONNECTING : 0) |
		   (ph_timer_armed(&r->half_close) ? PH_HO_HALF_CLOSE : 0);
	s->idle_ms = now_ms > r->active_ms ? (uint32_t)(now_ms - r->active_ms) : 0;
	for (int i = 0; i < 2; i++) {
		const struct relay_dir *d = &r->dir[i];
		struct ph_ho_dir *x = &s->dir[i];

		x->flags = (d->eof ? PH_HO_EOF : 0) | (d->shut ? PH_HO_SHUT : 0) |
			   (d->grown ? PH_HO_GROWN : 0) | (d->want_splice ? PH_HO_WANT_SPLICE : 0) |
			   (d->copy_only ? PH_HO_COPY_ONLY : 0) |
			   (d->fill_blocked ? PH_HO_FILL_BLOCKED : 0) |
			   (d->drain_blocked ? PH_HO_DRAIN_BLOCKED : 0);
		if (d->pipe[0] >= 0) {
			x->pipe[0] = (uint32_t)d->pipe[0];
			x->pipe[1] = (uint32_t)d->pipe[1];
			x->pipe_len = (uint32_t)d->len;
			x->pipe_cap = (uint32_t)d->cap;
		} else {
			x->pipe[0] = x->pipe[1] = PH_HO_NONE;
			x->buf = (const uint8_t *)d->buf + d->off;
			x->buf_len = (uint32_t)(d->len - d->off);
		}
	}
}

size_t ph_relay_export(struct ph_relay_ctx *ctx,
		       int (*fn)(void *arg, const struct ph_ho_relay *s, struct ph_relay_owner *owner),
		       void *arg)
{
	struct ph_list *n_, *tmp;
	uint64_t now = ph_now_ms();
	size_t n = 0;

	ph_list_for_each_safe(n_, tmp, &ctx->relays) {
		struct ph_relay *r = ph_list_entry(n_, struct ph_relay, node);
		struct ph_ho_relay s;

		if (r->closed)
			continue;
		relay_state(r, &s, now);
		if (fn(arg, &s, r->owner))
			break;
		n++;
	}
	return n;
}

int ph_relay_import(struct ph_relay_ctx *ctx, const struct ph_ho_relay *s,
		    struct ph_relay_owner *owner)
{
	struct ph_relay *r = calloc(1, sizeof(*r));
	int ret = -ENOMEM;

	if (r) {
		r->ctx = ctx;
		r->owner = owner;
		r->epoch = ctx->epoch;
		r->port = (uint16_t)sockaddr_port((const struct sockaddr *)&s->target);
		r->connecting = s->flags & PH_HO_CONNECTING;
		r->imported = true;
		r->active_ms = ctx->loop->now_ms > s->idle_ms ? ctx->loop->now_ms - s->idle_ms : 0;
		for (int i = 0; i < 2; i++) {
			const struct ph_ho_dir *x = &s->dir[i];
			struct relay_dir *d = &r->dir[i];

			r->fd[i] = (int)s->fd[i];
			d->eof = x->flags & PH_HO_EOF;
			d->shut = x->flags & PH_HO_SHUT;
			d->grown = x->flags & PH_HO_GROWN;
			d->want_splice = x->flags & PH_HO_WANT_SPLICE;
			d->copy_only = x->flags & PH_HO_COPY_ONLY;
			d->fill_blocked = x->flags & PH_HO_FILL_BLOCKED;
			d->drain_blocked = x->flags & PH_HO_DRAIN_BLOCKED;
			d->pipe[0] = x->pipe[0] == PH_HO_NONE ? -1 : (int)x->pipe[0];
			d->pipe[1] = x->pipe[1] == PH_HO_NONE ? -1 : (int)x->pipe[1];
			if (d->pipe[0] >= 0) {
				d->len = x->pipe_len;
				d->cap = x->pipe_cap;
			} else if (x->buf_len) {
				d->buf = malloc(x->buf_len);
				if (!d->buf)
					goto fail;
				memcpy(d->buf, x->buf, x->buf_len);
				d->len = d->cap = x->buf_len;
			}
		}
		ret = relay_update(r);
		if (ret)
			goto fail;
		if (s->flags & PH_HO_HALF_CLOSE)
			ph_timer_arm(ctx->loop, &r->half_close,
				     r->active_ms + ctx->cfg->half_close_timeout_ms, on_half_close);
		ph_list_add(&ctx->relays, &r->node);
		atomic_fetch_add_explicit(&owner->conns, 1, memory_order_relaxed);
		ph_relay_owner_get(owner);
		atomic_fetch_add_explicit(&ctx->stats->conns_active, 1, memory_order_relaxed);
		return 0;
	}
	/* no relay: reset both legs, close the pipes */
	ph_sock_abort((int)s->fd[0]);
	ph_sock_abort((int)s->fd[1]);
	for (int i = 0; i < 2; i++)
		if (s->dir[i].pipe[0] != PH_HO_NONE) {
			close((int)s->dir[i].pipe[0]);
			close((int)s->dir[i].pipe[1]);
		}
	return ret;
fail:
	for (int i = 0; i < 2; i++) {
		ph_loop_del(ctx->loop, &r->io[i]);
		ph_sock_abort(r->fd[i]);
		pipe_put(ctx, r->dir[i].pipe, false);
		free(r->dir[i].buf);
	}
	free(r);
	return ret;
}
