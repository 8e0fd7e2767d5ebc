// SPDX-License-Identifier: MIT
/* socket.c - the listening socket Firecracker connects to: create it, or take
 * one that is handed over, and clean it up
 *
 * Theory of Operation
 * ===================
 * One page server per socket path. A socket file left at the path is either
 * live (another porthole-uffd, or anything else, accepts on it) or stale (its
 * owner died without unlinking it). The two are told apart by connecting to
 * it: ECONNREFUSED means nothing listens, so the file is replaced; a
 * connection (or EAGAIN, a full backlog) means it is live, and we refuse,
 * naming the listener's pid from SO_PEERCRED. The probe connection closes
 * without sending a byte; a porthole-uffd on the other end ignores such a
 * connection and keeps accepting (see main.c), so probing does not disturb it.
 *
 * Ownership and mode are set between bind() and listen(): nobody can connect
 * before the socket has its final permissions. On exit the path is unlinked
 * only if it is still the inode we bound, so an instance that replaced a
 * stale socket never has its own socket deleted by the one it replaced.
 *
 * Under a supervisor the socket can be handed to us instead: --socket-fd N,
 * or systemd socket activation (LISTEN_PID = our pid, LISTEN_FDS = 1, the
 * socket at descriptor 3). A handed socket is used as is and never unlinked.
 */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SD_LISTEN_FDS_START 3

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	if (!len)
		return -EINVAL;
	if (len >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}

/**
 * ph_uffd_sock_probe() - is a socket file live (something accepts on it)?
 * @path:	socket path
 * @pid:	receives the listener's pid when live and known, else 0
 *
 * Return: 1 live, 0 stale (connection refused), or -errno (cannot tell)
 */
int ph_uffd_sock_probe(const char *path, pid_t *pid)
{
	struct sockaddr_un sa;
	struct ucred cr;
	socklen_t crl = sizeof(cr);
	int fd, ret;

	*pid = 0;
	ret = fill_addr(&sa, path);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		if (!getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl))
			*pid = cr.pid;
		ret = 1;
	} else if (errno == EAGAIN || errno == EINPROGRESS) {
		ret = 1;	/* backlog full: very much alive */
	} else if (errno == ECONNREFUSED) {
		ret = 0;
	} else {
		ret = -errno;
	}
	close(fd);
	return ret;
}

/* apply --socket-owner / --socket-mode to the bound, not yet listening socket */
static int set_perms(const char *path, const struct ph_uffd_sockopts *o)
{
	if (o->owner_set && lchown(path, o->uid, o->gid_set ? o->gid : (gid_t)-1) < 0)
		return -errno;
	if (o->mode_set && chmod(path, o->mode) < 0)
		return -errno;
	return 0;
}

/**
 * ph_uffd_listen() - create the listening socket Firecracker connects to
 * @path:	socket path; a stale socket there is replaced, a live one or any
 *		other file is not
 * @o:		owner and mode to give the socket (fields unset: leave as is)
 * @ls:		receives the socket's identity, for ph_uffd_unlink_ours()
 * @live_pid:	receives the pid listening on a live socket (-EADDRINUSE), or 0
 *
 * Return: listening descriptor, -EADDRINUSE (live), -EEXIST (not a socket),
 *	   -EINVAL (empty path) or -errno
 */
int ph_uffd_listen(const char *path, const struct ph_uffd_sockopts *o, struct ph_uffd_lsock *ls,
		   pid_t *live_pid)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, ret;

	*live_pid = 0;
	*ls = (struct ph_uffd_lsock){ 0 };
	ret = fill_addr(&sa, path);
	if (ret)
		return ret;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		ret = ph_uffd_sock_probe(path, live_pid);
		if (ret == 1)
			return -EADDRINUSE;
		if (ret < 0)
			return ret;
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	if (lstat(path, &st) == 0) {
		ls->dev = st.st_dev;
		ls->ino = st.st_ino;
		ls->bound = true;
	}
	ret = set_perms(path, o);
	if (ret || listen(fd, 8) < 0) {
		ret = ret ? ret : -errno;
		ph_uffd_unlink_ours(path, ls);
		close(fd);
		return ret;
	}
	return fd;
}

/**
 * ph_uffd_unlink_ours() - remove the socket file if it is still the one we bound
 * @path:	socket path
 * @ls:		identity recorded by ph_uffd_listen(); nothing happens if unbound
 */
void ph_uffd_unlink_ours(const char *path, struct ph_uffd_lsock *ls)
{
	struct stat st;

	if (!ls->bound)
		return;
	ls->bound = false;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == ls->dev &&
	    st.st_ino == ls->ino)
		unlink(path);
}

/**
 * ph_uffd_check_listener() - is @fd a listening Unix stream socket?
 * @fd:		descriptor handed to us
 *
 * Sets close-on-exec on it, so the descriptor does not leak further.
 *
 * Return: 0, -EBADF (not open), -ENOTSOCK, or -EINVAL (not listening AF_UNIX stream)
 */
int ph_uffd_check_listener(int fd)
{
	int v, fl;
	socklen_t l = sizeof(v);

	fl = fcntl(fd, F_GETFD);
	if (fl < 0)
		return -errno;
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0)
		return -errno;
	if (v != AF_UNIX)
		return -EINVAL;
	l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != SOCK_STREAM)
		return -EINVAL;
	l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) < 0 || !v)
		return -EINVAL;
	fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	return 0;
}

/**
 * ph_uffd_listen_fds() - the socket passed by systemd-style socket activation
 * @fd:		receives the listening descriptor
 *
 * Reads LISTEN_PID and LISTEN_FDS and unsets them (and LISTEN_FDNAMES), so
 * they are not inherited.
 *
 * Return: 1 with *fd set, 0 when no socket is passed to this process,
 *	   -EINVAL when more than one is passed or the variables are malformed
 */
int ph_uffd_listen_fds(int *fd)
{
	const char *p = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	char *end;
	long pid, cnt;
	int ret;

	*fd = -1;
	if (!p || !n)
		return 0;
	errno = 0;
	pid = strtol(p, &end, 10);
	if (errno || *end || pid <= 0)
		return -EINVAL;
	if (pid != (long)getpid())
		return 0;	/* meant for another process */
	cnt = strtol(n, &end, 10);
	if (errno || *end || cnt < 0)
		return -EINVAL;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (cnt == 0)
		return 0;
	if (cnt != 1)
		return -EINVAL;
	ret = ph_uffd_check_listener(SD_LISTEN_FDS_START);
	if (ret)
		return ret;
	*fd = SD_LISTEN_FDS_START;
	return 1;
}
