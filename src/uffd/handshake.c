// SPDX-License-Identifier: MIT
/* handshake.c - the Unix socket Firecracker connects to, and its one message
 *
 * Firecracker connects to the socket given as the Uffd backend path and sends
 * a single message: the region table as JSON plus the userfaultfd as one
 * SCM_RIGHTS descriptor. It is a stream socket, so the bytes and the
 * descriptor may in principle arrive in more than one read; Firecracker's own
 * example handlers retry when the first read carries no descriptor, and so do
 * we: bytes are accumulated and descriptors collected until both a
 * userfaultfd and a complete, valid table are in hand, within a deadline.
 *
 * Firecracker v1.1-v1.11 close the socket right after the message (the
 * stream is a local that goes out of scope), v1.12+ keep it open; EOF after
 * the message is therefore normal and the socket is never consulted again.
 * Forks may send more than one descriptor (E2B's sends a memfd too): the
 * first descriptor that is a userfaultfd is taken, the others are closed and
 * counted. More than PH_UFFD_MAX_FDS descriptors (a truncated control
 * message), bytes that do not form a table, or no userfaultfd at all are
 * refused with a reason. A connection that closes without sending anything
 * (a liveness probe, see socket.c) is reported as -ENOMSG.
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
#include <unistd.h>

#define MAX_READS	16	/* "retry a few times" */
#define GRACE_MS	200	/* wait for the rest of a table that does not parse yet */
#define FD_GRACE_MS	1000	/* wait for a descriptor after a complete table */

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

/* take the descriptors of one message: the first userfaultfd is kept in *fd,
 * everything else is closed and counted in *ignored */
static void take_fds(struct msghdr *msg, int *fd, unsigned *ignored)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		const int *fds = (const int *)(const void *)CMSG_DATA(c);

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < k; i++) {
			int f;

			memcpy(&f, &fds[i], sizeof(f));
			if (*fd < 0 && is_userfaultfd(f)) {
				*fd = f;
			} else {
				close(f);
				(*ignored)++;
			}
		}
	}
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
 * @uffd:	receives the userfaultfd (caller closes), also when the handshake
 *		is refused after it arrived: the guest's memory is registered
 *		with it, so the caller must treat that refusal as fatal; else -1
 * @ignored:	receives how many other descriptors were received and closed
 * @err:	receives the reason on failure
 * @errlen:	size of @err
 *
 * Return: 0, -EINVAL (refused: @err says why), -ETIMEDOUT, -ENOMSG (closed
 *	   without sending anything), or -errno
 */
/* Length: the handshake is one recvmsg and its validation in order (control
 * messages, descriptors, the region table); each step's refusal message is
 * written where it is checked. */
int ph_uffd_handshake(int conn, uint64_t file_size, int timeout_ms,
		      struct ph_uffd_region *out, size_t max, size_t *n, int *uffd,
		      unsigned *ignored, char *err, size_t errlen)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * PH_UFFD_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	uint64_t deadline = ph_now_ms() + (uint64_t)timeout_ms;
	char *buf = malloc(PH_UFFD_HANDSHAKE_MAX);
	size_t len = 0;
	int fd = -1, ret = -EINVAL, reads = 0;
	bool eof = false, parsed = false;

	*uffd = -1;
	*n = 0;
	*ignored = 0;
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
		take_fds(&msg, &fd, ignored);
		if (msg.msg_flags & MSG_CTRUNC) {
			ret = refuse(err, errlen, "control message truncated (more than 8 descriptors)");
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
		if (eof && fd < 0 && !*ignored) {
			ret = -ENOMSG;
			snprintf(err, errlen, "connection closed without a handshake");
		} else if (eof) {
			ret = refuse(err, errlen, "connection closed before the region table");
		} else {
			ret = -ETIMEDOUT;
			snprintf(err, errlen, "no handshake within %d ms", timeout_ms);
		}
		goto fail;
	}
	if (!parsed) {
		ret = -EINVAL;	/* err holds the parser's reason */
		goto fail;
	}
	if (fd < 0) {
		ret = *ignored ? refuse(err, errlen, "no userfaultfd among the descriptors received")
			       : refuse(err, errlen, "no userfaultfd descriptor received");
		goto fail;
	}
	free(buf);
	*uffd = fd;
	return 0;
fail:
	*uffd = fd;	/* the caller decides: a registered guest must not hang in silence */
	*n = 0;
	free(buf);
	return ret;
}
