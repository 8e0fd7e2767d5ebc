// SPDX-License-Identifier: MIT
/* handover.c - upgrades: start the new process and talk to it over an inherited socketpair
 *
 * The messages are listed in handover.h. SOCK_SEQPACKET keeps them apart
 * and each one's descriptors with it; every wait has the caller's deadline,
 * so a new binary that hangs costs the old process that long at most.
 */
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "loop.h"

extern char **environ;

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000	/* Linux 5.2; musl's headers may lack it */
#endif

/* clone() as fork() does it (no new stack: the child runs on a copy of
 * ours), with @flags, the pidfd written to @pidfd. parent_tid is the third
 * argument everywhere but s390, where the stack comes second: no sibling
 * there (-ENOSYS, so the caller forks). */
static pid_t clone_fork(unsigned long flags, int *pidfd)
{
#if defined(__s390__) || defined(__s390x__)
	(void)flags;
	(void)pidfd;
	errno = ENOSYS;
	return -1;
#else
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, pidfd, NULL, NULL);
#endif
}

/* Wait for @events on @sock until @deadline_ms. Return: 0, -ETIMEDOUT, -EPIPE */
static int wait_for(int sock, short events, uint64_t deadline_ms)
{
	for (;;) {
		struct pollfd pfd = { .fd = sock, .events = events };
		uint64_t now = ph_now_ms();
		int n;

		if (now >= deadline_ms)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, (int)(deadline_ms - now));
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && (pfd.revents & events))
			return 0;
		if (n > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)))
			return -EPIPE;
	}
}

int ph_ho_send(int sock, char type, const void *body, size_t len, const int *fds, size_t n_fds,
	       uint64_t deadline_ms)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * PH_HO_FDS_PER_MSG)];
	} ctl;
	struct iovec iov[2] = { { .iov_base = &type, .iov_len = 1 },
				{ .iov_base = (void *)body, .iov_len = len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };

	if (n_fds > PH_HO_FDS_PER_MSG)
		return -EINVAL;
	if (n_fds) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	for (;;) {
		int ret;

		if (sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno == EPIPE || errno == ECONNRESET)
			return -EPIPE;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		ret = wait_for(sock, POLLOUT, deadline_ms);
		if (ret)
			return ret;
	}
}

int ph_ho_recv(int sock, uint8_t *buf, size_t cap, size_t *len, int *fds, size_t *n_fds,
	       uint64_t deadline_ms)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * PH_HO_FDS_PER_MSG)];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	struct msghdr mh;
	ssize_t n;

	*n_fds = 0;
	for (;;) {
		int ret;

		mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				      .msg_controllen = sizeof(ctl.b) };
		n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == ECONNRESET)
			return -EPIPE;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		ret = wait_for(sock, POLLIN, deadline_ms);
		if (ret)
			return ret;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*n_fds < PH_HO_FDS_PER_MSG)
				fds[(*n_fds)++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0)
		return -EPIPE;	/* seqpacket: 0 bytes is the peer's close */
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < *n_fds; i++)
			close(fds[i]);
		*n_fds = 0;
		return -EMSGSIZE;
	}
	*len = (size_t)n;
	return 0;
}

int ph_ho_spawn(const char *binary, char *const argv[], bool sibling, int *sock, pid_t *pid,
		int *pidfd)
{
	char fdenv[64];
	size_t n = 0, k = 0;
	char **envp;
	int sv[2], ret;
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	while (environ[n])
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	if (!envp) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], PH_HO_ENV "=", sizeof(PH_HO_ENV)))
			envp[k++] = environ[i];
	snprintf(fdenv, sizeof(fdenv), PH_HO_ENV "=%d", sv[1]);
	envp[k++] = fdenv;
	envp[k] = NULL;

	/* A sibling is the service manager's child from its first instruction
	 * (and its pidfd is close-on-exec, as CLONE_PIDFD makes it):
	 * systemd, told MAINPID=<it>, supervises it as its own (it waits for
	 * its exit on a stop) instead of as a process that is "not our child",
	 * which it would be while it is ours. The raw clone runs no atfork
	 * handlers: the child does only async-signal-safe things anyway. */
	*pidfd = -1;
	child = -1;
	if (sibling)
		child = clone_fork(CLONE_PARENT | CLONE_PIDFD, pidfd);
	if (child < 0) {
		*pidfd = -1;
		child = fork();
	}
	if (child == 0) {
		sigset_t none;

		/* async-signal-safe only: this process has threads */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		fcntl(sv[1], F_SETFD, 0);	/* the one descriptor it inherits */
		execve(binary, argv, envp);
		_exit(127);
	}
	ret = child < 0 ? -errno : 0;
	free(envp);
	close(sv[1]);
	if (ret) {
		close(sv[0]);
		return ret;
	}
	*sock = sv[0];
	*pid = child;
	return 0;
}
