// SPDX-License-Identifier: MIT
/* main.c - portholed: process setup, then the port subsystem and the control API
 *
 * Theory of Operation
 * ===================
 * Two threads. The port subsystem (src/lib, ph_ports_*) runs its own worker
 * thread: scans, external listeners, relays. This main thread runs the
 * daemon's event loop: the HTTP control API (api.c), event streams, and the
 * signalfd that turns SIGTERM/SIGINT into a clean stop. Setup is linear with
 * one cleanup path; every failure before serving exits 1 with a log line.
 *
 * Crashes (fdstore.c): first of all, the sockets a service manager passed
 * (systemd's fd store, or the --supervise parent, supervise.c) are adopted;
 * the API and the port worker take them instead of binding, and every new
 * listener is handed to the store, so a crash costs no port a gap. READY=1
 * is sent once the API and the port worker run. With --supervise this
 * process only supervises (ph_supervise()) and never serves.
 *
 * Signals: SIGTERM and SIGINT stop cleanly (exit 0). SIGHUP re-reads what
 * can be re-read, the --token-file (a bad file keeps the old token), and
 * logs it. SIGUSR2 upgrades in place (as POST /daemon/upgrade; the result
 * is logged). SIGPIPE (EPIPE is handled where it happens) and SIGUSR1 are
 * ignored, so neither can kill the daemon uncleanly.
 *
 * Upgrades (upgrade.c): started by an upgrade (PORTHOLE_HANDOVER_FD), this
 * process first receives the old one's state and takes its configuration
 * from the old command line; the handed-over listeners go into the fd
 * store's pool like passed ones, and the relays are imported once the port
 * subsystem runs. Any failure before it said "taken" exits 1 at once,
 * touching no socket (the old process carries on). After a successful
 * upgrade of its own, this process answers the request, closes the event
 * streams (event: upgrade) and exits 0 without any teardown: the sockets
 * live on in the new process, so none may be reset or shut down here.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "http.h"
#include "fdstore.h"
#include "log.h"
#include "loop.h"
#include "porthole.h"
#include "supervise.h"
#include "upgrade.h"

#define API_NICE	-10	/* the control API thread's nice value (see api_priority()) */
#define UPGRADE_FLUSH_MS 100	/* after an upgrade: time to send the last answers */

struct daemon {
	struct ph_daemon_config *cfg;
	struct ph_loop loop;
	struct ph_io sig_io;
	struct ph_timer exit_timer;
	struct ph_ports *ports;
	struct ph_api *api;
	struct ph_fdstore *fdstore;
	int argc;
	char **argv;
	int sigfd;
	int exit_signal;
	bool upgraded;		/* a new process took over: exit without teardown */
};

static void on_exit_timer(struct ph_loop *loop, struct ph_timer *t)
{
	(void)t;
	ph_loop_break(loop);
}

/* ph_api_upgrade_fn: see upgrade.c. After success the caller's answer and
 * the streams' last events get UPGRADE_FLUSH_MS, then the process exits. */
static int do_upgrade(void *arg, const char *binary, pid_t *pid, char *why, size_t len)
{
	struct daemon *d = arg;
	struct ph_upgrade_src u = {
		.ports = d->ports, .api_fd = ph_api_http_server(d->api)->lfd,
		.argc = d->argc, .argv = d->argv, .timeout_ms = d->cfg->upgrade_timeout_ms,
	};
	char msg[64];
	int ret;

	if (d->upgraded) {
		snprintf(why, len, "an upgrade is in progress");
		return -EBUSY;
	}
	ret = ph_upgrade_run(&u, binary, pid, why, len);
	if (ret)
		return ret;
	d->upgraded = true;
	/* the service manager (systemd, --supervise) takes the new main pid
	 * from its main pid (this one) and before this one's exit */
	snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)*pid);
	ph_fdstore_notify(d->fdstore, msg);
	ph_api_upgraded(d->api, *pid);
	ph_timer_arm(&d->loop, &d->exit_timer, ph_now_ms() + UPGRADE_FLUSH_MS, on_exit_timer);
	return 0;
}

/* SIGHUP: re-read the token file; the old token stays if the new one is bad */
static void reload(struct ph_daemon_config *cfg)
{
	char tok[PH_TOKEN_MAX];
	size_t len;
	int ret;

	if (!cfg->token_path) {
		ph_info("SIGHUP: nothing to reload (no --token-file)");
		return;
	}
	ret = ph_token_read(cfg->token_path, tok, sizeof(tok), &len);
	if (ret) {
		ph_warn("SIGHUP: token file not reloaded, the old token stays",
			PH_FS("token_file", cfg->token_path), PH_FERR(ret));
		return;
	}
	memcpy(cfg->token, tok, len + 1);
	cfg->token_len = len;
	ph_info("SIGHUP: token file reloaded", PH_FS("token_file", cfg->token_path));
}

static void on_signal(struct ph_loop *loop, struct ph_io *io, uint32_t events)
{
	struct daemon *d = ph_container_of(io, struct daemon, sig_io);
	struct signalfd_siginfo si;

	(void)events;
	while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(d->cfg);
			continue;
		}
		if (si.ssi_signo == SIGUSR2) {
			char why[PH_UPGRADE_WHY_MAX];
			pid_t pid;

			if (!do_upgrade(d, NULL, &pid, why, sizeof(why)))
				ph_info("SIGUSR2: upgraded", PH_FI("pid", pid));
			else
				ph_warn("SIGUSR2: upgrade failed", PH_FS("reason", why));
			continue;
		}
		d->exit_signal = (int)si.ssi_signo;
		ph_loop_break(loop);
	}
}

/* Relayed connections need 6 descriptors each; take all the kernel allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			ph_warn("cannot raise the descriptor limit", PH_FERR(errno));
	}
}

/**
 * join_cgroup() - move this process into a cgroup v2 directory
 * @dir:	the cgroup directory (must exist, with a cgroup.procs file)
 *
 * Return: 0 or -errno
 */
static int join_cgroup(const char *dir)
{
	char path[4096], pid[32];
	int fd, n, ret = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (write(fd, pid, (size_t)n) != n)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * The control plane's thread (this one) gets a higher scheduling weight
 * than the port worker and relay threads, which were started before and
 * keep the process's nice value: under a flood every thread of ours is
 * runnable, and /health must not wait its turn behind them (nor, on a
 * loaded guest, behind everybody else). API_NICE below the process's nice
 * needs CAP_SYS_NICE (or RLIMIT_NICE); without it the thread keeps its
 * priority, which is only logged. The API's own work is bounded per turn
 * of its loop, so the boost cannot starve the relays.
 */
static void api_priority(void)
{
	pid_t tid = (pid_t)syscall(SYS_gettid);
	int cur;

	errno = 0;
	cur = getpriority(PRIO_PROCESS, (id_t)tid);
	if (errno || cur <= API_NICE)
		return;
	if (setpriority(PRIO_PROCESS, (id_t)tid, API_NICE))
		ph_info("control API thread keeps its priority", PH_FI("nice", cur), PH_FERR(errno));
}

/* Serving: say so in the log, then to the old process after an upgrade
 * (which exits once it hears), or else to the service manager */
static void announce_started(struct daemon *d, struct ph_upgrade_in *up)
{
	int ret;

	ph_info("portholed started", PH_FS("version", PH_VERSION), PH_FS("listen", d->cfg->listen_str),
		PH_FU("scan_interval_ms", d->cfg->ports.scan_interval_ms),
		PH_FU("adopted", d->fdstore->adopted), PH_FS("upgrade", up->sock >= 0 ? "yes" : "no"));
	if (up->sock < 0) {
		ph_fdstore_notify(d->fdstore, "READY=1\nSTATUS=serving\n");
		return;
	}
	ret = ph_upgrade_finish(up, d->ports, d->fdstore);
	if (ret) {	/* the old process carries on: touch nothing */
		ph_error("upgrade: cannot take over", PH_FERR(ret));
		_exit(1);
	}
}

/* Signals (see the top): SIGTERM, SIGINT, SIGHUP and SIGUSR2 arrive on a
 * signalfd, blocked here before any thread starts, so that every thread
 * inherits the mask; SIGPIPE and SIGUSR1 are ignored.
 * Return: the signalfd, or -errno */
static int signals_setup(void)
{
	sigset_t mask;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Length: the process's start-up in order (flags, log, limits, port subsystem,
 * API listener, signals, loop) and the reverse teardown on every exit path. */
int main(int argc, char **argv)
{
	struct ph_daemon_config cfg;
	struct ph_ports *ports = NULL;
	struct ph_api *api = NULL;
	struct daemon d = { .cfg = &cfg, .sigfd = -1, .argc = argc, .argv = argv };
	struct ph_upgrade_in up;
	struct ph_fdstore fdstore;
	char why[PH_UPGRADE_WHY_MAX];
	int ret, status = 1;

	/* started by an upgrade: the old process's state, its command line first */
	ret = ph_upgrade_receive(&up, why, sizeof(why));
	if (ret < 0) {
		ph_error("upgrade: cannot take over", PH_FS("reason", why));
		ph_upgrade_fail(&up, why);
		return 1;
	}
	if (ret == 0) {
		argc = d.argc = (int)up.st.argc;
		argv = d.argv = up.st.argv;
	}
	switch (ph_daemon_config_parse(&cfg, argc, argv, stdout, stderr)) {
	case PH_CONFIG_RUN:
		break;
	case PH_CONFIG_EXIT_OK:
		return 0;
	case PH_CONFIG_USAGE:
		ph_upgrade_fail(&up, "the old command line is refused");
		return 2;
	}
	ph_log_setup(cfg.log_format, cfg.log_level);
	if (cfg.supervise_arg && up.sock < 0)
		return ph_supervise(&cfg, argc, argv);

	/* first: the descriptors a service manager passed are at 3.. */
	ph_fdstore_init(&fdstore);
	cfg.ports.fdstore = &fdstore;
	d.fdstore = &fdstore;
	if (up.sock >= 0)	/* or the ones the old process handed over */
		ph_upgrade_adopt_listeners(&up, &fdstore);

	if (cfg.cgroup_dir) {
		ret = join_cgroup(cfg.cgroup_dir);
		if (ret) {
			ph_error("cannot join cgroup", PH_FS("cgroup", cfg.cgroup_dir), PH_FERR(ret));
			goto out_fdstore;
		}
	}
	raise_nofile();

	d.sigfd = signals_setup();
	if (d.sigfd < 0) {
		ph_error("signalfd failed", PH_FERR(-d.sigfd));
		goto out_fdstore;
	}

	ret = ph_loop_init(&d.loop, NULL, NULL);
	if (ret) {
		ph_error("cannot create the event loop", PH_FERR(ret));
		goto out_sigfd;
	}
	ret = ph_loop_add(&d.loop, &d.sig_io, d.sigfd, EPOLLIN, on_signal);
	if (ret)
		goto out_loop;

	ports = ph_ports_new(&cfg.ports);
	if (!ports) {
		ph_error("cannot create the port subsystem", PH_FERR(errno));
		goto out_loop;
	}
	ret = ph_api_new(&api, &d.loop, &cfg, ports);
	if (ret) {
		ph_error("cannot start the control API", PH_FS("listen", cfg.listen_str), PH_FERR(ret));
		goto out_ports;
	}
	ph_ports_add_own_inode(ports, ph_api_listen_inode(api));
	d.ports = ports;
	d.api = api;
	ph_api_set_upgrade(api, do_upgrade, &d);

	ret = ph_ports_start(ports);
	if (ret) {
		ph_error("cannot start the port subsystem", PH_FERR(ret));
		goto out_api;
	}
	api_priority();
	announce_started(&d, &up);

	ret = ph_loop_run(&d.loop);
	if (ret)
		ph_error("event loop failed", PH_FERR(ret));
	else
		status = 0;
	if (d.upgraded) {
		/* every socket lives on in the new process: no teardown, which
		 * would reset relays and shut listeners down */
		ph_info("portholed exiting after the upgrade");
		_exit(0);
	}
	ph_info("portholed stopping", PH_FS("signal", d.exit_signal ? strsignal(d.exit_signal) : "none"));
	ph_fdstore_notify(&fdstore, "STOPPING=1\n");
	ph_ports_stop(ports);
out_api:
	ph_api_free(api);
out_ports:
	ph_ports_free(ports);
out_loop:
	ph_loop_del(&d.loop, &d.sig_io);
	ph_loop_fini(&d.loop);
out_sigfd:
	close(d.sigfd);
out_fdstore:
	ph_upgrade_fail(&up, "the new process could not start (see its log)");
	/* stored listeners stay in the store: the next process takes them */
	ph_fdstore_fini(&fdstore);
	ph_upgrade_argv_free();
	return status;
}
