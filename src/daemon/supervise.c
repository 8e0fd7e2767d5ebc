// SPDX-License-Identifier: MIT
/* supervise.c - portholed --supervise: start the daemon as a child, restart it when it dies, keep its fd store
 *
 * Theory of Operation
 * ===================
 * Without systemd, a crash of portholed would close every external listener
 * until something restarted it and it had scanned and bound again: clients
 * in that gap are refused. The supervisor is the fd store systemd would
 * otherwise be. It speaks systemd's protocol (sd_notify(3),
 * sd_listen_fds(3)), so the daemon has one code path for both (fdstore.c):
 *
 *  - it binds an abstract AF_UNIX datagram socket (SO_PASSCRED) and gives
 *    its name to the child as NOTIFY_SOCKET;
 *  - FDSTORE=1 (+ FDNAME=) from the child: it keeps the descriptors sent
 *    with the message (a descriptor it holds already is not kept twice);
 *    FDSTOREREMOVE=1 + FDNAME=: it closes the ones of that name;
 *    READY=1: the child is up;
 *  - when the child dies it starts a new one with every stored descriptor
 *    at 3.. and LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, at once when the
 *    child had been ready for STABLE_MS, else after a back-off (100 ms,
 *    doubling up to 10 s) so that a daemon failing at start does not spin.
 *
 * Messages are read before a death is handled, so that everything the
 * child said before it died counts; only the child's own messages are
 * taken (the sender's pid, as NotifyAccess=main). The supervisor does
 * nothing else: it never reads or writes a client connection or a
 * listener, so nothing a client sends can crash it along with the child.
 *
 * Signals: SIGTERM or SIGINT stop the child (SIGTERM; SIGKILL after
 * STOP_TIMEOUT_MS) and then the supervisor, which exits with the child's
 * status when the child exited by itself, else 1. SIGHUP and SIGUSR2 are
 * passed on to the child. A child that exits 2 (its command line was
 * refused) is not restarted. The child gets PR_SET_PDEATHSIG SIGTERM: a
 * supervisor killed outright takes its daemon with it, so a new supervisor
 * never finds the old daemon holding the ports.
 *
 * Upgrades (SIGUSR2 passed on, or POST /daemon/upgrade to the child): the
 * child starts the new binary itself and hands it everything (upgrade.c);
 * before it exits it sends MAINPID=<new pid>, which is taken from the child
 * like any message. The new process is the supervisor's child from the
 * start (the child starts it with CLONE_PARENT under a manager, upgrade.c);
 * the supervisor is a child subreaper too, for a new process that had to be
 * forked, which it inherits when the old one exits. The old one's exit is then no child's
 * exit (its pid is no longer the child's), so nothing restarts; the store
 * is untouched (the same sockets). Going through the parent instead (the
 * supervisor starting the new binary) would have needed a second hand-over
 * channel through a process that must stay free of client data.
 */
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "sdnotify.h"

extern char **environ;

#define STABLE_MS		1000	/* ready this long: a death restarts at once */
#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		10000
#define STOP_TIMEOUT_MS		10000	/* SIGTERM, then SIGKILL */
#define STORE_MAX		16384	/* descriptors kept at most */
#define SCM_MAX_FDS		253	/* the kernel's SCM_MAX_FD */

/**
 * struct stored - one descriptor in the store
 * @fd:		our copy (close-on-exec)
 * @dev, @ino:	its identity: the same socket is stored once
 * @name:	FDNAME, "stored" when none was given
 */
struct stored {
	int fd;
	dev_t dev;
	ino_t ino;
	char name[PH_FDNAME_MAX + 1];
};

struct sup {
	char exe[PATH_MAX];
	char **argv;
	char notify_env[128];
	int nfd;
	int sigfd;
	struct stored *st;
	size_t n, cap;
	pid_t child;
	bool ready;
	uint64_t ready_ms;
	unsigned backoff_ms;
	bool restart_pending;
	uint64_t restart_at;
	bool stopping, killed;
	uint64_t kill_at;
	int status;		/* exit status of the supervisor */
	unsigned starts;
};

/* ---- the store ---------------------------------------------------------- */

static void store_remove(struct sup *s, const char *name)
{
	size_t k = 0, removed = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (!strcmp(s->st[i].name, name)) {
			close(s->st[i].fd);
			removed++;
		} else {
			s->st[k++] = s->st[i];
		}
	}
	s->n = k;
	ph_debug("supervise: fd store remove", PH_FS("fdname", name), PH_FU("removed", removed),
		 PH_FU("stored", s->n));
}

/* Takes @fd: kept, or closed */
static void store_add(struct sup *s, int fd, const char *name)
{
	struct stat sb;

	if (fstat(fd, &sb)) {
		close(fd);
		return;
	}
	for (size_t i = 0; i < s->n; i++) {
		if (s->st[i].dev == sb.st_dev && s->st[i].ino == sb.st_ino) {
			close(fd);	/* stored already */
			return;
		}
	}
	if (s->n >= STORE_MAX) {
		ph_warn("supervise: fd store full; descriptor not kept", PH_FS("fdname", name),
			PH_FU("max", STORE_MAX));
		close(fd);
		return;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct stored *st = realloc(s->st, cap * sizeof(*st));

		if (!st) {
			close(fd);
			return;
		}
		s->st = st;
		s->cap = cap;
	}
	s->st[s->n] = (struct stored){ .fd = fd, .dev = sb.st_dev, .ino = sb.st_ino };
	snprintf(s->st[s->n].name, sizeof(s->st[s->n].name), "%s", name);
	s->n++;
	ph_debug("supervise: fd store add", PH_FS("fdname", name), PH_FU("stored", s->n));
}

/* ---- notify messages ------------------------------------------------------ */

static void close_all(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* One datagram: Return: false when there is none left */
static bool notify_one(struct sup *s)
{
	char buf[PH_NOTIFY_MSG_MAX];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * SCM_MAX_FDS)];
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b) };
	struct ucred cred = { .pid = 0 };
	int fds[SCM_MAX_FDS];
	size_t nfds = 0;
	struct ph_notify m;
	ssize_t n;

	n = recvmsg(s->nfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EINTR;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < k && nfds < SCM_MAX_FDS; i++)
				memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
		} else if (c->cmsg_type == SCM_CREDENTIALS &&
			   c->cmsg_len >= CMSG_LEN(sizeof(cred))) {
			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		ph_warn("supervise: notify message truncated; ignored");
		close_all(fds, nfds);
		return true;
	}
	if (!s->child || cred.pid != s->child) {
		ph_debug("supervise: notify message not from the daemon; ignored",
			 PH_FI("pid", cred.pid));
		close_all(fds, nfds);
		return true;
	}
	if (ph_notify_parse(buf, (size_t)n, &m)) {
		ph_warn("supervise: malformed notify message; ignored");
		close_all(fds, nfds);
		return true;
	}
	if (m.ready && !s->ready) {
		s->ready = true;
		s->ready_ms = ph_now_ms();
		ph_info("supervise: portholed is ready", PH_FI("pid", s->child),
			PH_FU("stored", s->n));
	}
	if (m.fdstore_remove && m.has_fdname)
		store_remove(s, m.fdname);
	if (nfds && m.fdstore) {
		for (size_t i = 0; i < nfds; i++)
			store_add(s, fds[i], m.has_fdname ? m.fdname : "stored");
	} else {
		close_all(fds, nfds);	/* descriptors without FDSTORE=1 */
	}
	if (m.mainpid && m.mainpid != s->child) {
		/* an upgrade: the child handed everything to a new process,
		 * ours already (CLONE_PARENT) or once the old one exits (we are
		 * a child subreaper); from now on that one is the daemon, and
		 * the old one's exit is no reason to restart */
		ph_info("supervise: portholed upgraded", PH_FI("old_pid", s->child),
			PH_FI("pid", m.mainpid));
		s->child = m.mainpid;
	}
	return true;
}

static void notify_drain(struct sup *s)
{
	while (notify_one(s))
		;
}

/* ---- the child -------------------------------------------------------------- */

static bool env_ours(const char *e)
{
	static const char *const ours[] = { "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=",
					    "NOTIFY_SOCKET=" };

	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (!strncmp(e, ours[i], strlen(ours[i])))
			return true;
	return false;
}

/* Close every descriptor from @lowest up (close_range(2), or one by one) */
static void close_from(int lowest)
{
	long max;

	if (!syscall(SYS_close_range, (unsigned)lowest, ~0U, 0))
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 1 << 20)
		max = 1 << 20;
	for (long fd = lowest; fd < max; fd++)
		close((int)fd);
}

/* The child's side of the fork: descriptors to 3.., environment, exec. */
static void child_exec(struct sup *s, char **envp, char *pid_env, size_t pid_env_len, int *tmp,
		       pid_t parent)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);	/* the supervisor died before the line above */
	/* first out of the way (above the target range), then into place:
	 * dup2 clears close-on-exec on 3..3+n-1, the rest close at exec */
	for (size_t i = 0; i < s->n; i++) {
		tmp[i] = fcntl(s->st[i].fd, F_DUPFD_CLOEXEC, PH_LISTEN_FDS_START + (int)s->n);
		if (tmp[i] < 0)
			_exit(126);
	}
	for (size_t i = 0; i < s->n; i++)
		if (dup2(tmp[i], PH_LISTEN_FDS_START + (int)i) < 0)
			_exit(126);
	/* nothing else: descriptors the supervisor inherited stay with it */
	close_from(PH_LISTEN_FDS_START + (int)s->n);
	snprintf(pid_env, pid_env_len, "LISTEN_PID=%d", (int)getpid());
	execve(s->exe, s->argv, envp);
	_exit(127);
}

/* Return: 0 or -errno */
static int spawn(struct sup *s)
{
	size_t n_env = 0, names_len = sizeof("LISTEN_FDNAMES=");
	char **envp = NULL, *names = NULL, fds_env[32], pid_env[32] = "LISTEN_PID=0";
	int *tmp = NULL, ret = 0;
	pid_t pid, parent = getpid();

	for (char **e = environ; *e; e++)
		n_env++;
	for (size_t i = 0; i < s->n; i++)
		names_len += strlen(s->st[i].name) + 1;
	envp = calloc(n_env + 5, sizeof(*envp));
	names = malloc(names_len);
	tmp = calloc(s->n + 1, sizeof(*tmp));
	if (!envp || !names || !tmp) {
		ret = -ENOMEM;
		goto out;
	}
	n_env = 0;
	for (char **e = environ; *e; e++)
		if (!env_ours(*e))
			envp[n_env++] = *e;
	envp[n_env++] = s->notify_env;
	if (s->n) {
		char *p = names + sprintf(names, "LISTEN_FDNAMES=");

		for (size_t i = 0; i < s->n; i++)
			p += sprintf(p, "%s%s", i ? ":" : "", s->st[i].name);
		snprintf(fds_env, sizeof(fds_env), "LISTEN_FDS=%zu", s->n);
		envp[n_env++] = fds_env;
		envp[n_env++] = names;
		envp[n_env++] = pid_env;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		goto out;
	}
	if (pid == 0)
		child_exec(s, envp, pid_env, sizeof(pid_env), tmp, parent);
	s->child = pid;
	s->ready = false;
	s->starts++;
	ph_info("supervise: portholed started", PH_FI("pid", pid), PH_FU("passed", s->n),
		PH_FU("start", s->starts));
out:
	free(tmp);
	free(names);
	free(envp);
	return ret;
}

static void restart_later(struct sup *s, unsigned delay_ms)
{
	s->restart_pending = true;
	s->restart_at = ph_now_ms() + delay_ms;
}

static void child_exited(struct sup *s, int wstatus)
{
	bool clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
	int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
	int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
	unsigned delay;

	s->child = 0;
	if (s->stopping) {
		s->status = WIFEXITED(wstatus) ? code : 1;
		ph_info("supervise: portholed stopped", PH_FI("status", code),
			PH_FS("signal", sig ? strsignal(sig) : "none"));
		return;
	}
	if (code == 2) {
		ph_error("supervise: portholed refused its command line; not restarted");
		s->status = 2;
		s->stopping = true;
		return;
	}
	if (s->ready && ph_now_ms() - s->ready_ms >= STABLE_MS) {
		delay = 0;
		s->backoff_ms = BACKOFF_MIN_MS;
	} else {
		delay = s->backoff_ms;
		s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
	}
	ph_log(clean ? PH_LOG_INFO : PH_LOG_WARN, "supervise: portholed exited; restarting",
	       PH_FI("status", code), PH_FS("signal", sig ? strsignal(sig) : "none"),
	       PH_FU("delay_ms", delay), PH_FU("stored", s->n));
	restart_later(s, delay);
}

static void reap(struct sup *s)
{
	int wstatus;
	pid_t pid;

	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)
		if (pid == s->child)
			child_exited(s, wstatus);
}

/* ---- signals and the loop ------------------------------------------------- */

static void on_signals(struct sup *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			notify_drain(s);	/* what it said before it died counts */
			reap(s);
			break;
		case SIGHUP:
		case SIGUSR2:
			if (s->child)
				kill(s->child, (int)si.ssi_signo);
			break;
		default:	/* SIGTERM, SIGINT */
			if (s->stopping)
				break;
			s->stopping = true;
			s->restart_pending = false;
			ph_info("supervise: stopping", PH_FS("signal", strsignal((int)si.ssi_signo)));
			if (s->child) {
				kill(s->child, SIGTERM);
				s->kill_at = ph_now_ms() + STOP_TIMEOUT_MS;
			} else {
				s->status = 0;	/* between two children */
			}
			break;
		}
	}
}

static int run(struct sup *s)
{
	for (;;) {
		struct pollfd pfd[2] = { { .fd = s->sigfd, .events = POLLIN },
					 { .fd = s->nfd, .events = POLLIN } };
		uint64_t now = ph_now_ms(), at = 0;
		int timeout = -1;

		if (s->stopping && !s->child)
			return s->status;
		if (s->stopping && !s->killed)
			at = s->kill_at;
		else if (!s->stopping && !s->child && s->restart_pending)
			at = s->restart_at;
		if (at)
			timeout = at > now ? (int)(at - now) : 0;
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			return 1;
		if (pfd[1].revents)
			notify_drain(s);
		if (pfd[0].revents)
			on_signals(s);
		now = ph_now_ms();
		if (s->stopping && s->child && !s->killed && now >= s->kill_at) {
			ph_warn("supervise: portholed did not stop; SIGKILL", PH_FI("pid", s->child));
			kill(s->child, SIGKILL);
			s->killed = true;
		}
		if (!s->stopping && !s->child && s->restart_pending && now >= s->restart_at) {
			int ret = spawn(s);

			s->restart_pending = false;
			if (ret) {
				ph_error("supervise: cannot start portholed", PH_FERR(ret));
				restart_later(s, s->backoff_ms);
			}
		}
	}
}

/* The abstract notify socket: "@porthole-supervise/PID/RANDOM" */
static int notify_open(struct sup *s)
{
	struct sockaddr_un sa;
	socklen_t len;
	uint32_t rnd = 0;
	int one = 1;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)ph_now_ns();
	snprintf(s->notify_env, sizeof(s->notify_env), "NOTIFY_SOCKET=@porthole-supervise/%d/%08x",
		 (int)getpid(), rnd);
	if (ph_notify_addr(strchr(s->notify_env, '=') + 1, &sa, &len))
		return -EINVAL;
	s->nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->nfd < 0)
		return -errno;
	if (setsockopt(s->nfd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ||
	    bind(s->nfd, (struct sockaddr *)&sa, len))
		return -errno;
	return 0;
}

/* Length: setup in order (program, argv, signals, socket), the loop, and the
 * one teardown. */
int ph_supervise(const struct ph_daemon_config *cfg, int argc, char **argv)
{
	struct sup s = { .nfd = -1, .sigfd = -1, .backoff_ms = BACKOFF_MIN_MS };
	struct rlimit rl;
	sigset_t mask;
	ssize_t l;
	int ret, k = 0;

	l = readlink("/proc/self/exe", s.exe, sizeof(s.exe) - 1);
	if (l <= 0) {
		ph_error("supervise: cannot find its own program", PH_FERR(errno));
		return 1;
	}
	s.exe[l] = '\0';
	s.argv = calloc((size_t)argc + 1, sizeof(*s.argv));
	if (!s.argv)
		return 1;
	for (int i = 0; i < argc; i++)
		if (argv[i] != cfg->supervise_arg)
			s.argv[k++] = argv[i];
	s.status = 1;

	/* the store may hold many descriptors */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	/* an upgrade's new process is the child's child: when the old one
	 * exits it becomes ours (see MAINPID= in notify_one()) */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1))
		ph_warn("supervise: cannot become a child subreaper; upgrades will look like exits",
			PH_FERR(errno));
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	s.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s.sigfd < 0) {
		ph_error("supervise: signalfd failed", PH_FERR(errno));
		goto out;
	}
	ret = notify_open(&s);
	if (ret) {
		ph_error("supervise: cannot open the notify socket", PH_FERR(ret));
		goto out;
	}
	ph_info("supervise: started", PH_FS("program", s.exe),
		PH_FS("notify_socket", strchr(s.notify_env, '=') + 1));
	restart_later(&s, 0);
	ret = run(&s);
	s.status = ret;
out:
	for (size_t i = 0; i < s.n; i++)
		close(s.st[i].fd);
	free(s.st);
	if (s.nfd >= 0)
		close(s.nfd);
	if (s.sigfd >= 0)
		close(s.sigfd);
	free(s.argv);
	ph_info("supervise: exiting", PH_FI("status", s.status));
	return s.status;
}
