// SPDX-License-Identifier: MIT
/* relay.c - relayed TCP connections
 *
 * Theory of Operation
 * ===================
 * A relay joins two sockets: the client accepted on EXTERNAL:port (side 0)
 * and a connection to the loopback service (side 1). Each direction has its
 * own pipe: data moves socket -> pipe -> socket with splice(2), so it is
 * never copied to user space. A direction is a tiny state machine:
 *
 *   fill:  while the source has not hit EOF and the pipe has room,
 *          splice(src -> pipe); 0 means EOF.
 *   drain: while the pipe holds data, splice(pipe -> dst).
 *   shut:  once EOF was read and the pipe is empty, shutdown(dst, SHUT_WR):
 *          a half-close travels through, the other direction keeps flowing.
 *
 * Both sockets are registered edge-triggered for input and output; any event
 * on either runs both directions until neither makes progress. That is all
 * the scheduling there is: a direction whose pipe is full stops reading its
 * source (backpressure, at most one pipe of data buffered per direction) and
 * is resumed by the output edge of its destination.
 *
 * Errors: a reset or error on one leg (ECONNRESET, EPIPE, a keepalive
 * timeout) closes the other leg with SO_LINGER 0, so the peer sees a reset
 * too. A service that refuses the connection gets the client reset at once.
 * When both directions are shut, both sockets are closed normally.
 *
 * If splice() is refused (EINVAL: a socket type it cannot handle), that
 * direction falls back to recv/send through a buffer of the pipe's size.
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
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "netutil.h"
#include "porthole.h"

#define RELAY_EVENTS (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)
#define DEFAULT_PIPE_CAP 65536

/**
 * struct relay_dir - one direction of a relay
 * @pipe:	splice pipe, [0] read end, [1] write end; -1 in copy mode
 * @buf:	copy-mode buffer (NULL in splice mode)
 * @len:	bytes buffered (in the pipe, or in @buf from @off)
 * @off:	copy mode: first unsent byte of @buf
 * @eof:	the source sent FIN
 * @shut:	shutdown(SHUT_WR) was done on the destination
 */
struct relay_dir {
	int pipe[2];
	char *buf;
	size_t len, off;
	bool eof, shut;
};

struct ph_relay {
	struct ph_relay *prev, *next;
	struct ph_relay_ctx *ctx;
	struct ph_relay_owner *owner;
	struct ph_io io[2];	/* [0] client, [1] service */
	int fd[2];
	struct relay_dir dir[2];	/* [0] client -> service, [1] service -> client */
	uint64_t epoch;
	bool connecting;
	bool closed;
	struct ph_defer defer;
};

void ph_relay_ctx_init(struct ph_relay_ctx *ctx, struct ph_loop *loop, const struct ph_config *cfg,
		       struct ph_stats *stats)
{
	*ctx = (struct ph_relay_ctx){ .loop = loop, .cfg = cfg, .stats = stats, .epoch = 1,
				      .spare = { -1, -1 } };
	ctx->pipe_cap = cfg->pipe_size ? cfg->pipe_size : DEFAULT_PIPE_CAP;
}

static int pipe_new(struct ph_relay_ctx *ctx, int p[2])
{
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC))
		return -errno;
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
	ph_relay_sock_options(fd, ctx->cfg);
	return fd;
}

int ph_relay_reserve(struct ph_relay_ctx *ctx, int family)
{
	int *spare = &ctx->spare[family == AF_INET6];

	if (!ctx->cfg->force_copy) {
		while (ctx->npool < 2) {
			int p[2];
			int ret = pipe_new(ctx, p);

			if (ret)
				return ret;
			ctx->pool[ctx->npool][0] = p[0];
			ctx->pool[ctx->npool][1] = p[1];
			ctx->npool++;
		}
	}
	if (*spare < 0) {
		int fd = new_service_socket(ctx, family);

		if (fd < 0)
			return fd;
		*spare = fd;
	}
	return 0;
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

/**
 * relay_close() - close both legs and release the relay
 * @r:		relay
 * @rst:	reset both legs (SO_LINGER 0) instead of closing normally
 */
static void relay_close(struct ph_relay *r, bool rst)
{
	struct ph_relay_ctx *ctx = r->ctx;

	if (r->closed)
		return;
	r->closed = true;
	for (int i = 0; i < 2; i++) {
		ph_loop_del(ctx->loop, &r->io[i]);
		if (rst)
			ph_sock_abort(r->fd[i]);
		else if (r->fd[i] >= 0)
			close(r->fd[i]);
		r->fd[i] = -1;
		pipe_put(ctx, r->dir[i].pipe, r->dir[i].len == 0);
		free(r->dir[i].buf);
		r->dir[i].buf = NULL;
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		ctx->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	ctx->count--;
	atomic_fetch_sub_explicit(&ctx->stats->conns_active, 1, memory_order_relaxed);
	if (rst)
		atomic_fetch_add_explicit(&ctx->stats->conns_reset, 1, memory_order_relaxed);
	if (atomic_fetch_sub(&r->owner->conns, 1) == 1 && r->owner->detached)
		r->owner->release(r->owner);
	ph_loop_defer(ctx->loop, &r->defer, relay_free);
	if (ctx->on_closed)
		ctx->on_closed(ctx);
}

/* An error that ends the relay, as opposed to "try again later" */
static bool fatal(int err)
{
	return err != EAGAIN && err != EWOULDBLOCK && err != EINTR;
}

/**
 * dir_to_copy_mode() - give up on splice for one direction
 * @ctx:	context (for the buffer size)
 * @d:		direction, with an empty pipe
 *
 * Return: 0 or -ENOMEM
 */
static int dir_to_copy_mode(struct ph_relay_ctx *ctx, struct relay_dir *d)
{
	d->buf = malloc(ctx->pipe_cap);
	if (!d->buf)
		return -ENOMEM;
	pipe_put(ctx, d->pipe, true);
	d->len = d->off = 0;
	return 0;
}

/**
 * dir_step() - move what can be moved in one direction without blocking
 * @r:		relay
 * @i:		direction index (source fd[i], destination fd[1 - i])
 * @progress:	set when anything moved or changed state
 *
 * Return: 0, or -errno when the relay must be reset
 */
static int dir_step(struct ph_relay *r, int i, bool *progress)
{
	struct ph_relay_ctx *ctx = r->ctx;
	struct relay_dir *d = &r->dir[i];
	int src = r->fd[i], dst = r->fd[1 - i];
	_Atomic uint64_t *bytes = i ? &ctx->stats->bytes_to_client : &ctx->stats->bytes_to_service;
	ssize_t n;

	/* fill */
	if (!d->eof && d->len < ctx->pipe_cap) {
		if (!d->buf) {
			n = splice(src, NULL, d->pipe[1], NULL, ctx->pipe_cap - d->len,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0 && (errno == EINVAL || errno == ENOSYS) && !d->len) {
				if (dir_to_copy_mode(ctx, d))
					return -ENOMEM;
				*progress = true;
				return 0;
			}
		} else {
			if (d->off == d->len)
				d->off = d->len = 0;
			n = recv(src, d->buf + d->len, ctx->pipe_cap - d->len, MSG_DONTWAIT);
		}
		if (n > 0) {
			d->len += (size_t)n;
			*progress = true;
		} else if (n == 0) {
			d->eof = true;
			*progress = true;
		} else if (fatal(errno)) {
			return -errno;
		}
	}

	/* drain */
	if (d->len > d->off) {
		if (!d->buf)
			n = splice(d->pipe[0], NULL, dst, NULL, d->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		else
			n = send(dst, d->buf + d->off, d->len - d->off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			if (d->buf)
				d->off += (size_t)n;
			else
				d->len -= (size_t)n;
			if (d->buf && d->off == d->len)
				d->off = d->len = 0;
			atomic_fetch_add_explicit(bytes, (uint64_t)n, memory_order_relaxed);
			*progress = true;
		} else if (n < 0 && fatal(errno)) {
			return -errno;
		}
	}

	/* half-close travels once everything before the FIN was delivered */
	if (d->eof && d->len == d->off && !d->shut) {
		if (shutdown(dst, SHUT_WR) && errno != ENOTCONN)
			return -errno;
		d->shut = true;
		*progress = true;
	}
	return 0;
}

static void relay_pump(struct ph_relay *r)
{
	bool progress;
	int ret;

	do {
		progress = false;
		for (int i = 0; i < 2; i++) {
			ret = dir_step(r, i, &progress);
			if (ret) {
				ph_debug("relay reset", PH_FERR(ret), PH_FI("direction", i));
				relay_close(r, true);
				return;
			}
		}
	} while (progress);

	if (r->dir[0].shut && r->dir[1].shut)
		relay_close(r, false);
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len))
		return errno;
	return err;
}

static void relay_event(struct ph_relay *r, int side, uint32_t events)
{
	if (r->connecting) {
		if (side == 0) {
			/* the client gave up before the service answered */
			if (events & (EPOLLERR | EPOLLHUP))
				relay_close(r, true);
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (sock_error(r->fd[1])) {
			atomic_fetch_add_explicit(&r->ctx->stats->conns_refused, 1,
						  memory_order_relaxed);
			relay_close(r, true);
			return;
		}
		r->connecting = false;
	} else if ((events & EPOLLERR) && sock_error(r->fd[side])) {
		relay_close(r, true);
		return;
	}
	relay_pump(r);
}

static void on_client(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	(void)loop;
	relay_event(ph_container_of(io, struct ph_relay, io[0]), 0, events);
}

static void on_service(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	(void)loop;
	relay_event(ph_container_of(io, struct ph_relay, io[1]), 1, events);
}

void ph_relay_sock_options(int fd, const struct ph_config *cfg)
{
	int one = 1;

	/* The endpoints already coalesce their writes; Nagle here would only
	 * add a delayed-ACK stall to each request/response turn. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ph_sock_keepalive(fd, &cfg->keepalive);
}

int ph_relay_start(struct ph_relay_ctx *ctx, int client_fd, const struct sockaddr *target,
		   socklen_t tlen, struct ph_relay_owner *owner)
{
	struct ph_relay *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r) {
		ph_sock_abort(client_fd);
		return -ENOMEM;
	}
	r->ctx = ctx;
	r->owner = owner;
	r->epoch = ctx->epoch;
	r->fd[0] = client_fd;
	r->fd[1] = -1;
	for (int i = 0; i < 2; i++)
		r->dir[i].pipe[0] = r->dir[i].pipe[1] = -1;

	/* the client leg inherited its options from the listener */
	if (ctx->spare[target->sa_family == AF_INET6] >= 0) {
		r->fd[1] = ctx->spare[target->sa_family == AF_INET6];
		ctx->spare[target->sa_family == AF_INET6] = -1;
	} else {
		r->fd[1] = new_service_socket(ctx, target->sa_family);
		if (r->fd[1] < 0) {
			ret = r->fd[1];
			goto fail;
		}
	}
	for (int i = 0; i < 2; i++) {
		if (ctx->cfg->force_copy) {
			r->dir[i].buf = malloc(ctx->pipe_cap);
			ret = r->dir[i].buf ? 0 : -ENOMEM;
		} else {
			ret = pipe_get(ctx, r->dir[i].pipe);
		}
		if (ret)
			goto fail;
	}

	if (connect(r->fd[1], target, tlen) == 0) {
		r->connecting = false;
	} else if (errno == EINPROGRESS) {
		r->connecting = true;
	} else {
		ret = -errno;
		atomic_fetch_add_explicit(&ctx->stats->conns_refused, 1, memory_order_relaxed);
		goto fail;
	}

	ret = ph_loop_add(ctx->loop, &r->io[0], r->fd[0], RELAY_EVENTS, on_client);
	if (!ret)
		ret = ph_loop_add(ctx->loop, &r->io[1], r->fd[1], RELAY_EVENTS, on_service);
	if (ret) {
		ph_loop_del(ctx->loop, &r->io[0]);
		goto fail;
	}

	r->next = ctx->head;
	if (ctx->head)
		ctx->head->prev = r;
	ctx->head = r;
	ctx->count++;
	atomic_fetch_add(&owner->conns, 1);
	atomic_fetch_add_explicit(&ctx->stats->conns_active, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&ctx->stats->conns_total, 1, memory_order_relaxed);
	if (!r->connecting)
		relay_pump(r);
	return 0;

fail:
	ph_sock_abort(r->fd[0]);
	if (r->fd[1] >= 0)
		close(r->fd[1]);
	for (int i = 0; i < 2; i++) {
		pipe_put(ctx, r->dir[i].pipe, true);
		free(r->dir[i].buf);
	}
	free(r);
	return ret;
}

size_t ph_relay_abort_all(struct ph_relay_ctx *ctx, uint64_t before_epoch)
{
	struct ph_relay *r = ctx->head, *next;
	size_t n = 0;

	for (; r; r = next) {
		next = r->next;
		if (r->epoch < before_epoch) {
			relay_close(r, true);
			n++;
		}
	}
	return n;
}

void ph_relay_ctx_fini(struct ph_relay_ctx *ctx)
{
	void (*on_closed)(struct ph_relay_ctx *) = ctx->on_closed;

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
}
