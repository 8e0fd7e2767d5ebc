// SPDX-License-Identifier: MIT
/* upgrade.c - portholed upgrading itself in place, live connections included
 *
 * Theory of Operation
 * ===================
 * The old process (ph_upgrade_run(), on the main thread: POST /daemon/upgrade,
 * SIGUSR2) starts the new binary with one end of a socketpair
 * (ph_ho_spawn()) and says which state version it will send. The new one
 * (ph_upgrade_receive(), first thing in main()) accepts or refuses it. Only
 * then does the old one freeze its port worker and relay threads (nothing is
 * accepted or relayed from here on), export the state (handover_ports.c),
 * encode it (handover_state.c) and send the descriptors in batches of at
 * most 252, then the state in chunks. The new process parses it, takes its
 * configuration from the old command line, adopts the listeners through the
 * fd store's pool (the API and the first scan take them instead of binding),
 * imports every relay, and answers "taken". The old one then exits 0 without
 * touching a socket: exiting closes its copies, and the sockets live on in the
 * new process. Any failure before "taken" (the binary cannot start, exits,
 * refuses the version, says it failed, or the deadline passes) kills the new
 * process, waits for it, and thaws the old one, which carries on where it
 * stopped: the two never relay the same connection at once.
 *
 * Service managers: the old process, still the main one, sends
 * MAINPID=<new pid> after "taken" and before it exits (main.c). systemd takes
 * it from its main pid (NotifyAccess=main or all; the new pid is in the
 * unit's cgroup) and reads it before the old pid's exit, which then restarts
 * nothing; --supervise (NotifyAccess=main semantics) takes it from its child.
 * The new process sends MAINPID=<its pid> and READY=1 too once the handover
 * socket reaches EOF (bounded): the old one closes it right after "taken", so
 * this races the old one's MAINPID=; systemd with NotifyAccess=all takes
 * whichever comes first (the new pid is in the unit's cgroup), with =main it
 * refuses the new one's when it is first. Under a service manager
 * (NOTIFY_SOCKET set: systemd, --supervise, the test's stand-in) the new
 * process is started as the manager's child, not ours (ph_ho_spawn()'s
 * sibling, clone CLONE_PARENT): systemd 252 marks a main pid that is not its
 * child when named as "not our child", logs a warning, and on a stop sends
 * it SIGTERM and at once SIGKILL instead of waiting (unit.c:4588; seen
 * under the real systemd, t_systemd_real.sh). The old process then waits
 * for and kills a failed new one through its pidfd; its exit status goes to
 * the manager. Without a manager it is our child (forked), as before, and
 * becomes PID 1's when we exit. See docs/design.md, Upgrades.
 */
#include "upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"

#define STATE_MAX	(256u << 20)	/* encoded state bytes accepted */
#define OLD_EXIT_WAIT_MS 2000	/* the new process waits this long for the old one's exit */
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424	/* Linux 5.1, the same number on every architecture */
#endif

/* ---- the old process ---------------------------------------------------------- */

/* The path of this program on disk (a replaced binary shows " (deleted)") */
static int self_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	static const char del[] = " (deleted)";

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	if ((size_t)n > sizeof(del) - 1 && !strcmp(buf + n - (sizeof(del) - 1), del))
		buf[n - (sizeof(del) - 1)] = '\0';
	return 0;
}

/* The new process is not going to take over: make sure it never relays,
 * and (@explain) say how it ended if it ended by itself. A sibling (@pidfd,
 * the service manager's child) is waited for through its pidfd; its exit
 * status goes to the manager, so only whether it ended by itself is known. */
static void child_stop(pid_t pid, int pidfd, char *why, size_t len, bool explain)
{
	bool killed = false;
	int st = 0;

	if (pidfd >= 0) {
		struct pollfd p = { .fd = pidfd, .events = POLLIN };

		/* after the socket's EOF (@explain) it is exiting: give it a moment */
		if (poll(&p, 1, explain ? 200 : 0) <= 0) {
			killed = syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0;
			poll(&p, 1, 5000);
		}
		close(pidfd);
		if (explain && !killed)
			snprintf(why, len, "the new binary ended before taking over (pid %d; its "
				 "status went to the service manager)", (int)pid);
		return;
	}
	if (waitpid(pid, &st, WNOHANG) == 0) {
		/* still there, or still exiting (its socket closes first) */
		killed = kill(pid, SIGKILL) == 0;
		waitpid(pid, &st, 0);
	}
	if (explain && WIFEXITED(st))
		snprintf(why, len, "the new binary exited with status %d before taking over",
			 WEXITSTATUS(st));
	else if (explain && WIFSIGNALED(st) && !(killed && WTERMSIG(st) == SIGKILL))
		snprintf(why, len, "the new binary was killed by %s before taking over",
			 strsignal(WTERMSIG(st)));
}

/* Send descriptors in batches, then the state in chunks, then 'E' */
static int send_state(int sock, const struct ph_ho_fds *fds, const uint8_t *blob, size_t len,
		      uint64_t deadline)
{
	int ret = 0;

	for (size_t i = 0; i < fds->n && !ret; i += PH_HO_FDS_PER_MSG) {
		size_t k = fds->n - i < PH_HO_FDS_PER_MSG ? fds->n - i : PH_HO_FDS_PER_MSG;
		uint32_t n32 = (uint32_t)k;

		ret = ph_ho_send(sock, 'F', &n32, sizeof(n32), fds->v + i, k, deadline);
	}
	for (size_t off = 0; off < len && !ret; off += PH_HO_CHUNK)
		ret = ph_ho_send(sock, 'S', blob + off, len - off < PH_HO_CHUNK ? len - off : PH_HO_CHUNK,
				 NULL, 0, deadline);
	if (!ret)
		ret = ph_ho_send(sock, 'E', NULL, 0, NULL, 0, deadline);
	return ret;
}

/* Wait for the answer to a step; 'R'/'X' carry a reason. Return: the type, or -errno */
static int answer(int sock, uint64_t deadline, char *why, size_t len)
{
	uint8_t buf[PH_HO_REASON_MAX + 8];
	int fds[PH_HO_FDS_PER_MSG];
	size_t n = 0, nf = 0;
	int ret = ph_ho_recv(sock, buf, sizeof(buf) - 1, &n, fds, &nf, deadline);

	for (size_t i = 0; i < nf; i++)
		close(fds[i]);
	if (ret)
		return ret;
	if (!n)
		return -EPROTO;
	buf[n] = '\0';
	if (buf[0] == 'R' || buf[0] == 'X')
		snprintf(why, len, "the new binary %s: %s", buf[0] == 'R' ? "refused the state" :
			 "failed", (char *)buf + 1);
	if (buf[0] == 'T' && n >= 5)
		return 'T';
	return buf[0];
}

/* Freeze, export, send, wait for "taken". Return: 0 or -errno, @why said */
static int hand_over(const struct ph_upgrade_src *u, int sock, uint64_t deadline, char *why,
		     size_t len, uint64_t *frozen_at)
{
	struct ph_ho_state st = { .version = PH_HO_VERSION };
	struct ph_ho_sock *api = NULL;
	struct ph_ho_fds fds = { 0 };
	uint8_t *blob = NULL;
	size_t blen = 0;
	int ret;

	*frozen_at = ph_now_ms();
	ret = ph_ports_freeze(u->ports);
	if (ret) {
		snprintf(why, len, "the port subsystem is not running");
		return ret;
	}
	st.argc = (size_t)u->argc;
	st.argv = u->argv;
	ret = ph_ports_export(u->ports, &st, &fds);
	if (!ret && u->api_fd >= 0) {
		api = realloc(st.socks, (st.n_socks + 1) * sizeof(*st.socks));
		if (!api) {
			ret = -ENOMEM;
		} else {
			st.socks = api;
			api = &st.socks[st.n_socks];
			snprintf(api->name, sizeof(api->name), "api");
			ret = ph_ho_fds_add(&fds, u->api_fd, &api->fd);
			st.n_socks += !ret;
		}
	}
	st.n_fds = (uint32_t)fds.n;
	if (!ret)
		ret = ph_ho_encode(&st, &blob, &blen);
	if (ret) {
		snprintf(why, len, "cannot export the state: %s", ph_strerror(ret));
		goto out;
	}
	ph_info("upgrade: handing over", PH_FU("relays", st.n_relays),
		PH_FU("listeners", st.n_socks), PH_FU("descriptors", fds.n),
		PH_FU("state_bytes", blen));
	ret = send_state(sock, &fds, blob, blen, deadline);
	if (!ret) {
		ret = answer(sock, deadline, why, len);
		ret = ret == 'T' ? 0 : ret < 0 ? ret : -EPROTO;
	}
	if (ret && !*why)
		snprintf(why, len, "handing over: %s", ret == -ETIMEDOUT ?
			 "the new binary did not take over in time" : ph_strerror(ret));
out:
	if (ret) {
		/* the state's relay buffers point into live relays: done with them
		 * before the thaw; the child must be gone first */
		free(blob);
		blob = NULL;
	}
	st.argv = NULL;
	st.argc = 0;
	free(st.socks);
	free(st.ports);
	free(st.relays);
	ph_ho_fds_free(&fds);
	free(blob);
	return ret;
}

int ph_upgrade_run(const struct ph_upgrade_src *u, const char *binary, pid_t *pid, char *why,
		   size_t len)
{
	char self[PATH_MAX];
	uint64_t t0 = ph_now_ms(), deadline = t0 + u->timeout_ms, frozen_at = 0;
	uint32_t version = PH_HO_VERSION;
	bool frozen = false;
	pid_t child;
	int sock, pidfd, ret;

	*why = '\0';
	if (!binary) {
		ret = self_path(self, sizeof(self));
		if (ret) {
			snprintf(why, len, "cannot find this binary: %s", ph_strerror(ret));
			return ret;
		}
		binary = self;
	}
	/* from the fork on, the child holds copies of every descriptor (until
	 * its exec; then of those it is sent): closing ours must unregister */
	atomic_fetch_add(&ph_loop_fds_shared, 1);
	/* under a service manager (NOTIFY_SOCKET, kept for this) the new
	 * process is started as its child, not ours: see the top */
	ret = ph_ho_spawn(binary, u->argv, getenv("NOTIFY_SOCKET") != NULL, &sock, &child, &pidfd);
	if (ret) {
		atomic_fetch_sub(&ph_loop_fds_shared, 1);
		snprintf(why, len, "cannot start %s: %s", binary, ph_strerror(ret));
		return ret;
	}
	ph_info("upgrade: started the new binary", PH_FS("binary", binary), PH_FI("pid", child));
	ret = ph_ho_send(sock, 'H', &version, sizeof(version), NULL, 0, deadline);
	if (!ret) {
		ret = answer(sock, deadline, why, len);
		ret = ret == 'A' ? 0 : ret < 0 ? ret : -EPROTO;
	}
	if (!ret) {
		frozen = true;
		ret = hand_over(u, sock, deadline, why, len, &frozen_at);
	}
	if (ret) {
		if (ret == -ETIMEDOUT)
			snprintf(why, len, "the new binary did not take over within %u ms",
				 u->timeout_ms);
		child_stop(child, pidfd, why, len, ret == -EPIPE);
		if (!*why)
			snprintf(why, len, "%s", ph_strerror(ret));
		/* first the descriptors still in flight go (the child is gone): a
		 * copy left anywhere would keep a closed relay's epoll registration */
		close(sock);
		atomic_fetch_sub(&ph_loop_fds_shared, 1);
		if (frozen)
			ph_ports_thaw(u->ports);
		ph_warn("upgrade failed; this process carries on", PH_FS("reason", why),
			PH_FU("ms", ph_now_ms() - t0));
		return ret;
	}
	close(sock);
	if (pidfd >= 0)
		close(pidfd);
	*pid = child;
	ph_info("upgrade: the new process took over", PH_FI("pid", child),
		PH_FU("ms", ph_now_ms() - t0), PH_FU("paused_ms", ph_now_ms() - frozen_at));
	return 0;
}

/* ---- the new process ------------------------------------------------------------ */

/* The state version this binary reads (PORTHOLE_TEST_HANDOVER_VERSION: a
 * test's stand-in for a binary of another version) */
static uint32_t version_read(void)
{
	const char *v = getenv("PORTHOLE_TEST_HANDOVER_VERSION");

	return v && *v ? (uint32_t)strtoul(v, NULL, 10) : PH_HO_VERSION;
}

static int recv_all(struct ph_upgrade_in *in, char *why, size_t len)
{
	uint64_t deadline = ph_now_ms() + 60000;	/* the old one has its own */
	uint8_t *msg = malloc(PH_HO_CHUNK + 16);
	size_t blen = 0, cap = 0;
	int fds[PH_HO_FDS_PER_MSG], ret = 0;

	if (!msg)
		return -ENOMEM;
	for (;;) {
		size_t n = 0, nf = 0;

		ret = ph_ho_recv(in->sock, msg, PH_HO_CHUNK + 16, &n, fds, &nf, deadline);
		if (ret)
			break;
		if (nf) {
			int *v = realloc(in->fds, (in->n_fds + nf) * sizeof(*v));

			if (!v) {
				for (size_t i = 0; i < nf; i++)
					close(fds[i]);
				ret = -ENOMEM;
				break;
			}
			in->fds = v;
			memcpy(in->fds + in->n_fds, fds, nf * sizeof(int));
			in->n_fds += nf;
		}
		if (n && msg[0] == 'E')
			break;
		if (n && msg[0] == 'S') {
			if (blen + n - 1 > STATE_MAX) {
				ret = -E2BIG;
				break;
			}
			if (blen + n > cap) {
				uint8_t *b = realloc(in->blob, cap = 2 * (blen + n));

				if (!b) {
					ret = -ENOMEM;
					break;
				}
				in->blob = b;
			}
			memcpy(in->blob + blen, msg + 1, n - 1);
			blen += n - 1;
		}
	}
	free(msg);
	if (ret) {
		snprintf(why, len, "receiving the state: %s", ph_strerror(ret));
		return ret;
	}
	ret = ph_ho_parse(in->blob, blen, &in->st);
	if (!ret && in->st.n_fds != in->n_fds)
		ret = -EINVAL;
	if (!ret && !in->st.argc)
		ret = -EINVAL;
	if (ret)
		snprintf(why, len, "the state does not parse: %s", ph_strerror(ret));
	return ret;
}

int ph_upgrade_receive(struct ph_upgrade_in *in, char *why, size_t len)
{
	const char *env = getenv(PH_HO_ENV);
	uint8_t buf[64];
	int fds[PH_HO_FDS_PER_MSG];
	size_t n = 0, nf = 0;
	uint32_t v = 0, mine = version_read();
	char *end;
	long fd;
	int ret;

	memset(in, 0, sizeof(*in));
	in->sock = -1;
	if (!env)
		return 1;
	errno = 0;
	fd = strtol(env, &end, 10);
	unsetenv(PH_HO_ENV);
	if (errno || *end || fd < 0 || fd > INT_MAX) {
		snprintf(why, len, "%s is not a descriptor", PH_HO_ENV);
		return -EINVAL;
	}
	in->sock = (int)fd;
	fcntl(in->sock, F_SETFD, FD_CLOEXEC);
	ret = ph_ho_recv(in->sock, buf, sizeof(buf), &n, fds, &nf, ph_now_ms() + 60000);
	for (size_t i = 0; i < nf; i++)
		close(fds[i]);
	if (!ret && (n != 5 || buf[0] != 'H'))
		ret = -EPROTO;
	if (ret) {
		snprintf(why, len, "no upgrade greeting: %s", ph_strerror(ret));
		return ret;
	}
	memcpy(&v, buf + 1, sizeof(v));
	if (v != mine) {
		snprintf(why, len, "state version %u, this binary reads version %u", v, mine);
		ph_ho_send(in->sock, 'R', why, strlen(why), NULL, 0, ph_now_ms() + 1000);
		return -EPROTO;
	}
	ret = ph_ho_send(in->sock, 'A', NULL, 0, NULL, 0, ph_now_ms() + 1000);
	if (!ret)
		ret = recv_all(in, why, len);
	return ret;
}

void ph_upgrade_adopt_listeners(struct ph_upgrade_in *in, struct ph_fdstore *fs)
{
	for (size_t i = 0; i < in->st.n_socks; i++) {
		uint32_t k = in->st.socks[i].fd;

		ph_fdstore_adopt(fs, in->fds[k], in->st.socks[i].name);
		in->fds[k] = -1;
	}
}

/* The old command line, the configuration's strings point into it: kept for
 * the process's life (and handed to the next upgrade) */
static char **kept_argv;

void ph_upgrade_argv_free(void)
{
	for (size_t i = 0; kept_argv && kept_argv[i]; i++)
		free(kept_argv[i]);
	free(kept_argv);
	kept_argv = NULL;
}

static void in_release(struct ph_upgrade_in *in)
{
	if (in->st.argv) {
		kept_argv = in->st.argv;
		in->st.argv = NULL;
		in->st.argc = 0;
	}
	ph_ho_state_free(&in->st);
	free(in->blob);
	free(in->fds);
	in->blob = NULL;
	in->fds = NULL;
	in->n_fds = 0;
	if (in->sock >= 0)
		close(in->sock);
	in->sock = -1;
}

void ph_upgrade_fail(struct ph_upgrade_in *in, const char *why)
{
	if (in->sock >= 0)
		ph_ho_send(in->sock, 'X', why, strlen(why), NULL, 0, ph_now_ms() + 1000);
	in_release(in);
}

/* Wait until the old process closed its end (right after "taken", or at its
 * exit), at most @ms */
static void wait_old(int sock, unsigned ms)
{
	uint8_t b[16];
	int fds[PH_HO_FDS_PER_MSG];
	size_t n, nf;
	uint64_t deadline = ph_now_ms() + ms;

	while (!ph_ho_recv(sock, b, sizeof(b), &n, fds, &nf, deadline))
		for (size_t i = 0; i < nf; i++)
			close(fds[i]);
}

int ph_upgrade_finish(struct ph_upgrade_in *in, struct ph_ports *ports, struct ph_fdstore *fs)
{
	uint32_t pid = (uint32_t)getpid();
	char msg[64];
	int ret;

	ret = ph_ports_import(ports, &in->st, in->fds);
	if (ret < 0) {
		ph_upgrade_fail(in, ph_strerror(ret));
		return ret;
	}
	for (size_t i = 0; i < in->st.n_relays; i++) {	/* consumed by the import */
		const struct ph_ho_relay *r = &in->st.relays[i];

		in->fds[r->fd[0]] = in->fds[r->fd[1]] = -1;
		for (int d = 0; d < 2; d++)
			if (r->dir[d].pipe[0] != PH_HO_NONE)
				in->fds[r->dir[d].pipe[0]] = in->fds[r->dir[d].pipe[1]] = -1;
	}
	for (size_t i = 0; i < in->n_fds; i++)	/* named by nothing */
		if (in->fds[i] >= 0)
			close(in->fds[i]);
	ph_info("upgrade: took over", PH_FI("relays", ret), PH_FU("handed", in->st.n_relays),
		PH_FU("listeners", in->st.n_socks));
	ret = ph_ho_send(in->sock, 'T', &pid, sizeof(pid), NULL, 0, ph_now_ms() + 1000);
	if (ret) {
		in_release(in);
		return ret;
	}
	wait_old(in->sock, OLD_EXIT_WAIT_MS);
	snprintf(msg, sizeof(msg), "MAINPID=%u\nREADY=1\nSTATUS=serving\n", pid);
	ph_fdstore_notify(fs, msg);
	in_release(in);
	return 0;
}
