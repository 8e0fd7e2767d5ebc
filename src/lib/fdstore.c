// SPDX-License-Identifier: MIT
/* fdstore.c - the daemon's side of the fd store: adopt passed listeners, keep new ones, release closed ones
 *
 * Theory of Operation
 * ===================
 * A crash must not cost a port a gap. The service manager (systemd with
 * FileDescriptorStoreMax=, or portholed --supervise) keeps a copy of every
 * listening socket the daemon opens, and passes them all to the next
 * process it starts. A copy is the same socket: while no process of ours
 * runs, the kernel still completes handshakes into its backlog, and the
 * next process accepts them.
 *
 * The protocol is systemd's, spoken here without libsystemd:
 *  - sd_notify(3): a datagram to the AF_UNIX socket named by NOTIFY_SOCKET;
 *    "FDSTORE=1\nFDNAME=name\n" with the descriptor as SCM_RIGHTS keeps it,
 *    "FDSTOREREMOVE=1\nFDNAME=name\n" drops every stored one of that name;
 *  - sd_listen_fds(3): at start, descriptors 3 .. 3+LISTEN_FDS-1 are passed
 *    when LISTEN_PID is this process, named in LISTEN_FDNAMES.
 *
 * Adoption never trusts a name: a passed descriptor is kept only if it is a
 * socket of the right type, listening (TCP), and bound where its name says;
 * anything else is released (or, for a name this version does not know,
 * closed and removed from the store). Adopted sockets wait in a pool; the
 * API and the first scan take what they want (ph_fdstore_take) and the rest
 * is released (ph_fdstore_settle), so a port whose service went away while
 * no daemon ran closes at the first scan.
 *
 * Releasing shuts the socket down before closing it: shutdown() on a
 * listener unhashes it at once, for the store's copy too, so the port is
 * free and no longer looks served (the rules would read a listener on the
 * external address as "public") before the manager even reads the
 * FDSTOREREMOVE. A failed send loses nothing but the copy: the socket works,
 * a crash would only cost that port a gap (logged).
 */
#include "fdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "loop.h"
#include "netutil.h"

/* a send to the manager blocks at most this long (its queue is full) */
#define NOTIFY_SEND_TIMEOUT_MS	1000

/**
 * struct ph_fdstore_fd - one adopted descriptor in the pool
 * @fd:		the descriptor
 * @name:	its parsed name
 * @inode:	its socket inode
 */
struct ph_fdstore_fd {
	int fd;
	struct ph_fdname name;
	uint64_t inode;
};

bool ph_fdstore_active(const struct ph_fdstore *fs)
{
	return fs && fs->notify_fd >= 0;
}

/* Send @msg, with @fd as SCM_RIGHTS when >= 0. Caller holds the lock. */
static int send_locked(struct ph_fdstore *fs, const char *msg, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = strlen(msg) };
	struct msghdr mh = {
		.msg_name = &fs->addr, .msg_namelen = fs->addr_len,
		.msg_iov = &iov, .msg_iovlen = 1,
	};

	if (fs->notify_fd < 0)
		return 0;
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(fs->notify_fd, &mh, MSG_NOSIGNAL) < 0) {
		int err = -errno;

		if (ph_ratelimit_ok(&fs->send_rl, ph_now_ms(), 3, 60000))
			ph_warn("cannot tell the service manager (NOTIFY_SOCKET)", PH_FERR(err),
				PH_FU("suppressed", fs->send_rl.suppressed));
		return err;
	}
	return 0;
}

int ph_fdstore_notify(struct ph_fdstore *fs, const char *msg)
{
	int ret;

	if (!fs)
		return 0;
	pthread_mutex_lock(&fs->lock);
	ret = send_locked(fs, msg, -1);
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/* "FDSTORE=1\nFDNAME=..." or the remove; Return: 0 or -errno */
static int store_msg(char *buf, size_t len, bool remove, enum ph_fdkind kind,
		     const struct sockaddr *sa)
{
	char name[PH_FDNAME_MAX + 1];
	int ret = ph_fdname_format(name, sizeof(name), kind, sa), n;

	if (ret)
		return ret;
	n = snprintf(buf, len, "%s=1\nFDNAME=%s\n", remove ? "FDSTOREREMOVE" : "FDSTORE", name);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

int ph_fdstore_keep(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa, int fd)
{
	char msg[PH_FDNAME_MAX + 64];
	int ret;

	if (!ph_fdstore_active(fs))
		return 0;
	ret = store_msg(msg, sizeof(msg), false, kind, sa);
	if (ret)
		return ret;
	pthread_mutex_lock(&fs->lock);
	ret = send_locked(fs, msg, fd);
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/* remove by name and shut down; caller holds the lock (or owns @fs alone) */
static void release_locked(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa,
			   int fd)
{
	char msg[PH_FDNAME_MAX + 64];

	if (fd < 0)
		return;
	if (fs && !store_msg(msg, sizeof(msg), true, kind, sa))
		send_locked(fs, msg, -1);
	shutdown(fd, SHUT_RDWR);	/* a listener: unhashed now, in every copy */
	close(fd);
}

void ph_fdstore_release(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa,
			int fd)
{
	if (!fs) {
		release_locked(NULL, kind, sa, fd);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	release_locked(fs, kind, sa, fd);
	pthread_mutex_unlock(&fs->lock);
}

/* Close a passed descriptor we will not use, and drop it from the store by
 * its name (an unknown kind is not shut down: it may not be ours to stop) */
static void drop_passed(struct ph_fdstore *fs, int fd, const char *name, const char *why)
{
	char msg[PH_FDNAME_MAX + 64];

	ph_warn("passed descriptor not adopted; closed and removed from the fd store",
		PH_FS("fdname", name), PH_FI("fd", fd), PH_FS("reason", why));
	if (snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s\n", name) < (int)sizeof(msg))
		send_locked(fs, msg, -1);
	close(fd);
}

static int sock_int(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l))
		return -1;
	return v;
}

/**
 * adopt_one() - check one passed descriptor and pool it
 * @fs:		state (not yet shared)
 * @fd:		the descriptor
 * @name:	its name from LISTEN_FDNAMES
 *
 * Return: 0 when pooled, -errno when dropped (closed)
 */
static int adopt_one(struct ph_fdstore *fs, int fd, const char *name)
{
	struct ph_fdstore_fd *slot;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ph_fdname n;
	struct stat st;
	int fl, want_type;

	fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
		drop_passed(fs, fd, name, "not a socket");
		return -ENOTSOCK;
	}
	if (ph_fdname_parse(name, &n) || n.kind == PH_FDKIND_OTHER) {
		drop_passed(fs, fd, name, "not a name portholed gives");
		return -EINVAL;
	}
	want_type = n.kind == PH_FDKIND_UDP ? SOCK_DGRAM : SOCK_STREAM;
	if (sock_int(fd, SO_TYPE) != want_type || getsockname(fd, (struct sockaddr *)&ss, &sl) ||
	    (n.kind != PH_FDKIND_API && !ph_sockaddr_same((struct sockaddr *)&ss,
							  (struct sockaddr *)&n.sa)) ||
	    (want_type == SOCK_STREAM && sock_int(fd, SO_ACCEPTCONN) != 1)) {
		/* ours by its name, but not what it says (or no longer listening) */
		ph_warn("passed socket is not what its name says; released", PH_FS("fdname", name));
		release_locked(fs, n.kind, (struct sockaddr *)&n.sa, fd);
		return -EINVAL;
	}
	if (n.kind == PH_FDKIND_API)
		n.sa = ss, n.len = sl;	/* matched by its address when taken */
	fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	slot = realloc(fs->pool, (fs->n_pool + 1) * sizeof(*fs->pool));
	if (!slot) {
		close(fd);	/* still in the store: the next start may have it */
		return -ENOMEM;
	}
	fs->pool = slot;
	fs->pool[fs->n_pool++] = (struct ph_fdstore_fd){ .fd = fd, .name = n, .inode = st.st_ino };
	fs->adopted++;
	ph_debug("adopted a passed socket", PH_FS("fdname", name), PH_FI("fd", fd));
	return 0;
}

int ph_fdstore_adopt(struct ph_fdstore *fs, int fd, const char *name)
{
	int ret;

	pthread_mutex_lock(&fs->lock);
	ret = adopt_one(fs, fd, name);
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/* the passed descriptors, when they are for this process */
static void adopt_passed(struct ph_fdstore *fs, const char *listen_pid, const char *listen_fds,
			 const char *listen_fdnames, int first_fd)
{
	char (*names)[PH_FDNAME_MAX + 1];
	long pid, n;
	char *end;

	if (!listen_pid || !listen_fds)
		return;
	errno = 0;
	pid = strtol(listen_pid, &end, 10);
	if (errno || *end || pid != (long)getpid())
		return;		/* for another process: not ours to touch */
	n = strtol(listen_fds, &end, 10);
	if (errno || *end || n <= 0 || n > 65536) {
		if (n)
			ph_warn("LISTEN_FDS is malformed; passed descriptors ignored",
				PH_FS("LISTEN_FDS", listen_fds));
		return;
	}
	names = calloc((size_t)n, sizeof(*names));
	if (!names || ph_fdnames_split(listen_fdnames, (size_t)n, names)) {
		/* no names, no adoption: they are closed so no socket lingers */
		ph_warn("LISTEN_FDNAMES does not match LISTEN_FDS; passed descriptors closed",
			PH_FI("LISTEN_FDS", n));
		for (long i = 0; i < n; i++)
			close(first_fd + (int)i);
		free(names);
		return;
	}
	for (long i = 0; i < n; i++)
		adopt_one(fs, first_fd + (int)i, names[i]);
	free(names);
	if (fs->adopted)
		ph_info("adopted sockets from the fd store", PH_FU("sockets", fs->adopted),
			PH_FI("passed", n));
}

static int notify_open(struct ph_fdstore *fs, const char *notify)
{
	struct timeval tv = { .tv_sec = NOTIFY_SEND_TIMEOUT_MS / 1000,
			      .tv_usec = (NOTIFY_SEND_TIMEOUT_MS % 1000) * 1000 };
	int ret;

	if (!notify || !*notify)
		return 0;
	ret = ph_notify_addr(notify, &fs->addr, &fs->addr_len);
	if (ret) {
		ph_warn("NOTIFY_SOCKET is not a path or an abstract name; no fd store",
			PH_FS("NOTIFY_SOCKET", notify));
		return 0;
	}
	fs->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fs->notify_fd < 0) {
		ret = -errno;
		ph_warn("cannot open a socket for NOTIFY_SOCKET; no fd store", PH_FERR(ret));
		return ret;
	}
	setsockopt(fs->notify_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

int ph_fdstore_init_from(struct ph_fdstore *fs, const char *notify, const char *listen_pid,
			 const char *listen_fds, const char *listen_fdnames, int first_fd)
{
	memset(fs, 0, sizeof(*fs));
	fs->notify_fd = -1;
	pthread_mutex_init(&fs->lock, NULL);
	notify_open(fs, notify);
	adopt_passed(fs, listen_pid, listen_fds, listen_fdnames, first_fd);
	return 0;
}

int ph_fdstore_init(struct ph_fdstore *fs)
{
	int ret = ph_fdstore_init_from(fs, getenv("NOTIFY_SOCKET"), getenv("LISTEN_PID"),
				       getenv("LISTEN_FDS"), getenv("LISTEN_FDNAMES"),
				       PH_LISTEN_FDS_START);

	/* not for our children; NOTIFY_SOCKET stays (a successor may need it) */
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return ret;
}

void ph_fdstore_fini(struct ph_fdstore *fs)
{
	if (!fs)
		return;
	for (size_t i = 0; i < fs->n_pool; i++)
		close(fs->pool[i].fd);
	free(fs->pool);
	fs->pool = NULL;
	fs->n_pool = 0;
	if (fs->notify_fd >= 0)
		close(fs->notify_fd);
	fs->notify_fd = -1;
	pthread_mutex_destroy(&fs->lock);
}

int ph_fdstore_take(struct ph_fdstore *fs, enum ph_fdkind kind, const struct sockaddr *sa)
{
	int fd = -ENOENT;

	if (!fs)
		return -ENOENT;
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->n_pool; i++) {
		struct ph_fdstore_fd *p = &fs->pool[i];

		if (p->name.kind != kind || !ph_sockaddr_same((struct sockaddr *)&p->name.sa, sa))
			continue;
		fd = p->fd;
		fs->pool[i] = fs->pool[--fs->n_pool];
		break;
	}
	pthread_mutex_unlock(&fs->lock);
	return fd;
}

size_t ph_fdstore_pool_inodes(struct ph_fdstore *fs, uint64_t *out, size_t max)
{
	size_t n;

	if (!fs)
		return 0;
	pthread_mutex_lock(&fs->lock);
	n = fs->n_pool;
	for (size_t i = 0; i < n && i < max; i++)
		out[i] = fs->pool[i].inode;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

size_t ph_fdstore_settle(struct ph_fdstore *fs, unsigned kinds)
{
	size_t n = 0, i = 0;

	if (!fs)
		return 0;
	pthread_mutex_lock(&fs->lock);
	while (i < fs->n_pool) {
		struct ph_fdstore_fd p = fs->pool[i];
		char name[PH_FDNAME_MAX + 1] = "?";

		if (!(kinds & (1u << p.name.kind))) {
			i++;
			continue;
		}
		fs->pool[i] = fs->pool[--fs->n_pool];
		ph_fdname_format(name, sizeof(name), p.name.kind, (struct sockaddr *)&p.name.sa);
		ph_info("adopted socket not wanted any more; released", PH_FS("fdname", name));
		release_locked(fs, p.name.kind, (struct sockaddr *)&p.name.sa, p.fd);
		n++;
	}
	if (!fs->n_pool)
		fs->settled = true;
	pthread_mutex_unlock(&fs->lock);
	return n;
}
