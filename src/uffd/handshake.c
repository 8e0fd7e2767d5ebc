// SPDX-License-Identifier: MIT
/* handshake.c - the Unix socket Firecracker connects to, and its one message
 *
 * Firecracker connects to the socket given as the Uffd backend path and sends
 * a single message: the region table as JSON plus the userfaultfd as one
 * SCM_RIGHTS descriptor. It is a stream socket, so the bytes and the
 * descriptor may in principle arrive in more than one read; Firecracker's own
 * example handlers retry when the first read carries no descriptor, and so do
 * we: bytes are accumulated and the descriptor collected until both a
 * descriptor and a complete, valid table are in hand, within a deadline.
 * Anything else (two descriptors, a truncated control message, bytes that do
 * not form a table, EOF before the descriptor) is refused with a reason.
 */
#include "uffd.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FDS		8	/* room to notice (and refuse) extra descriptors */
#define MAX_READS	16	/* "retry a few times" */
#define GRACE_MS	200	/* wait for the rest of a table that does not parse yet */
#define FD_GRACE_MS	1000	/* wait for a descriptor after a complete table */

/**
 * ph_uffd_listen() - create the listening socket Firecracker connects to
 * @path:	socket path; a stale socket there is replaced, any other file is not
 *
 * Return: listening descriptor or -errno
 */
int ph_uffd_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* is @fd a userfaultfd? (its anon inode name says so) */
static bool is_userfaultfd(int fd)
{
	char p[64], l[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	n = readlink(p, l, sizeof(l) - 1);
	if (n < 0)
		return true;	/* no /proc: cannot tell, let the ioctls decide */
	l[n] = 0;
	return !strcmp(l, "anon_inode:[userfaultfd]");
}

static int refuse(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EINVAL;
}

/**
 * ph_uffd_handshake() - receive and validate Firecracker's handshake
 * @conn:	connected socket
 * @file_size:	memory file size (regions must lie inside)
 * @timeout_ms:	overall deadline
 * @out:	receives the regions, sorted by base
 * @max:	capacity of @out
 * @n:		receives the number of regions
 * @uffd:	receives the userfaultfd (caller closes); -1 on failure
 * @err:	receives the reason on failure
 * @errlen:	size of @err
 *
 * Return: 0, -EINVAL (refused: @err says why), -ETIMEDOUT, or -errno
 */
int ph_uffd_handshake(int conn, uint64_t file_size, int timeout_ms,
		      struct ph_uffd_region *out, size_t max, size_t *n, int *uffd,
		      char *err, size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	uint64_t deadline = ph_now_ms() + (uint64_t)timeout_ms;
	char *buf = malloc(PH_UFFD_HANDSHAKE_MAX);
	size_t len = 0;
	int fd = -1, ret = -EINVAL, reads = 0;
	bool eof = false, parsed = false;

	*uffd = -1;
	*n = 0;
	err[0] = 0;
	if (!buf)
		return -ENOMEM;
	while (!eof && reads < MAX_READS) {
		uint64_t now = ph_now_ms();
		int wait = now >= deadline ? 0 : (int)(deadline - now);
		struct pollfd pfd = { .fd = conn, .events = POLLIN };
		struct iovec iov = { buf + len, PH_UFFD_HANDSHAKE_MAX - len };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *c;
		bool extra = false;
		ssize_t r;

		/* a table that failed to parse only gets a short grace for more bytes */
		if (len && !parsed && fd >= 0 && wait > GRACE_MS)
			wait = GRACE_MS;
		/* a complete table without the descriptor: it came with the first byte or never */
		if (parsed && fd < 0 && wait > FD_GRACE_MS)
			wait = FD_GRACE_MS;
		r = poll(&pfd, 1, wait);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto fail;
		}
		if (r == 0)
			break;
		r = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0) {
			ret = -errno;
			goto fail;
		}
		reads++;
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int *fds = (int *)(void *)CMSG_DATA(c);

			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < k; i++) {
				int f;

				memcpy(&f, &fds[i], sizeof(f));
				if (fd < 0) {
					fd = f;
				} else {
					close(f);
					extra = true;
				}
			}
		}
		if (msg.msg_flags & MSG_CTRUNC) {
			ret = refuse(err, errlen, "control message truncated (too many descriptors)");
			goto fail;
		}
		if (extra) {
			ret = refuse(err, errlen, "more than one descriptor sent");
			goto fail;
		}
		if (r == 0) {
			eof = true;
		} else {
			len += (size_t)r;
			if (len == PH_UFFD_HANDSHAKE_MAX) {
				ret = refuse(err, errlen, "handshake larger than 64 KiB");
				goto fail;
			}
		}
		if (len && !parsed) {
			parsed = !ph_uffd_regions_parse(buf, len, file_size, out, max, n, err, errlen);
			if (!parsed)
				*n = 0;
		}
		if (parsed && fd >= 0)
			break;
	}
	if (!len) {
		ret = eof ? refuse(err, errlen, "connection closed before the handshake")
			  : -ETIMEDOUT;
		if (ret == -ETIMEDOUT)
			snprintf(err, errlen, "no handshake within %d ms", timeout_ms);
		goto fail;
	}
	if (!parsed) {
		ret = -EINVAL;	/* err holds the parser's reason */
		goto fail;
	}
	if (fd < 0) {
		ret = refuse(err, errlen, "no userfaultfd descriptor received");
		goto fail;
	}
	if (!is_userfaultfd(fd)) {
		ret = refuse(err, errlen, "the descriptor received is not a userfaultfd");
		goto fail;
	}
	free(buf);
	*uffd = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	*n = 0;
	free(buf);
	return ret;
}
