/* SPDX-License-Identifier: MIT */
/* fdstore.h - keep listening sockets in the service manager's fd store; adopt them at start
 *
 * The one place where portholed meets the service manager (systemd, or its
 * own supervisor, portholed --supervise, which speaks the same protocol):
 *
 *  - at start, the descriptors passed in LISTEN_FDS/LISTEN_FDNAMES (for this
 *    process: LISTEN_PID) are checked (a listening socket bound where its
 *    name says) and put in a pool; ph_fdstore_take() hands one out instead
 *    of a fresh bind, so clients already waiting in its backlog are served;
 *    ph_fdstore_settle() releases what nobody took (after the first scan);
 *  - ph_fdstore_keep() sends a new listener to the store (FDSTORE=1,
 *    FDNAME=), ph_fdstore_release() closes one for good: FDSTOREREMOVE=1,
 *    and shutdown() so that the store's copy stops listening at once too.
 *
 * Every function takes NULL for "no fd store" (then take finds nothing,
 * keep does nothing, release just closes). Thread-safe: the pool has a lock.
 */
#ifndef PH_FDSTORE_H
#define PH_FDSTORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "sdnotify.h"

struct ph_fdstore_fd;

/**
 * struct ph_fdstore - the daemon's side of the fd store
 * @lock:	guards everything below
 * @notify_fd:	datagram socket towards NOTIFY_SOCKET, -1 when there is none
 * @addr, @addr_len: NOTIFY_SOCKET
 * @pool:	adopted descriptors nobody has taken yet
 * @n_pool:	how many
 * @settled:	ph_fdstore_settle() ran: the pool is empty for good
 * @adopted:	descriptors adopted at start (all kinds)
 * @send_rl:	rate limit of "notify failed" warnings
 */
struct ph_fdstore {
	pthread_mutex_t lock;
	int notify_fd;
	struct sockaddr_un addr;
	socklen_t addr_len;
	struct ph_fdstore_fd *pool;
	size_t n_pool;
	bool settled;
	unsigned adopted;
	struct ph_ratelimit send_rl;
};

/**
 * ph_fdstore_init() - from the environment: NOTIFY_SOCKET, and the
 * descriptors passed to this process (LISTEN_PID, LISTEN_FDS,
 * LISTEN_FDNAMES, which are then unset)
 * @fs:		state to fill
 *
 * Return: 0, or -errno when the state cannot be set up at all (the
 * daemon then runs without a store); bad passed descriptors are logged
 * and closed, never fatal
 */
int ph_fdstore_init(struct ph_fdstore *fs);

/**
 * ph_fdstore_init_from() - ph_fdstore_init() with explicit inputs (tests)
 * @fs:		state
 * @notify:	NOTIFY_SOCKET or NULL
 * @listen_pid, @listen_fds, @listen_fdnames: the variables, or NULL
 * @first_fd:	where the passed descriptors start (PH_LISTEN_FDS_START)
 */
int ph_fdstore_init_from(struct ph_fdstore *fs, const char *notify, const char *listen_pid,
			 const char *listen_fds, const char *listen_fdnames, int first_fd);

/**
 * ph_fdstore_adopt() - check and pool one more descriptor, as if passed at
 * start (an upgrade's: the old process handed it over by name)
 * @fs:		state
 * @fd:		the descriptor (consumed)
 * @name:	its fd store name
 * Return: 0 when pooled, -errno when dropped
 */
int ph_fdstore_adopt(struct ph_fdstore *fs, int fd, const char *name);

/* Close the notify socket and whatever is still in the pool (without
 * removing it from the store: a later start may take it). */
void ph_fdstore_fini(struct ph_fdstore *fs);

/* A service manager listens (NOTIFY_SOCKET was usable) */
bool ph_fdstore_active(const struct ph_fdstore *fs);

/**
 * ph_fdstore_take() - an adopted socket of @kind bound to @sa, out of the pool
 * @fs:		state or NULL
 * @kind:	PH_FDKIND_API (@sa: the API address), _TCP or _UDP
 * @sa:		the address wanted
 *
 * The caller owns the descriptor (non-blocking, close-on-exec); it is still
 * in the store. Return: the descriptor, or -ENOENT
 */
int ph_fdstore_take(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa);

/**
 * ph_fdstore_pool_inodes() - socket inodes of the pool (the daemon's own:
 * the rules must not read them as a service's listeners)
 * @fs:		state or NULL
 * @out:	room for @max
 * @max:	capacity
 *
 * Return: how many there are (may exceed @max: then only @max were written)
 */
size_t ph_fdstore_pool_inodes(struct ph_fdstore *fs, uint64_t *out, size_t max);

/**
 * ph_fdstore_settle() - release (ph_fdstore_release()) every pooled
 * descriptor nobody took; later calls do nothing
 * @fs:		state or NULL
 * @kinds:	bit mask (1u << kind) of the kinds to settle now
 *
 * Return: how many were released
 */
size_t ph_fdstore_settle(struct ph_fdstore *fs, unsigned kinds);

/**
 * ph_fdstore_keep() - send @fd to the store (FDSTORE=1, FDNAME=its name)
 * @fs:		state or NULL
 * @kind:	PH_FDKIND_API, _TCP or _UDP
 * @sa:		its bound address (TCP, UDP)
 * @fd:		the descriptor (the caller keeps its own)
 *
 * Return: 0 (also when there is no store), or -errno (logged, rate-limited:
 * the socket works, only a crash would now cost its port a gap)
 */
int ph_fdstore_keep(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa, int fd);

/**
 * ph_fdstore_release() - close @fd for good: FDSTOREREMOVE=1 with its
 * name, shutdown() (the store's copy is the same socket: it stops
 * listening now, not when the manager gets round to the message), close()
 * @fs:		state or NULL
 * @kind, @sa:	as for ph_fdstore_keep()
 * @fd:		the descriptor; -1 does nothing
 */
void ph_fdstore_release(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa,
			int fd);

/**
 * ph_fdstore_notify() - send a plain notify message ("READY=1", "STOPPING=1")
 * Return: 0 (also when there is no manager) or -errno
 */
int ph_fdstore_notify(struct ph_fdstore *fs, const char *msg);

#endif /* PH_FDSTORE_H */
