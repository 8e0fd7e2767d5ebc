// SPDX-License-Identifier: MIT
/* main.c - porthole-uffd: serve one Firecracker restore's page faults
 *
 * The main thread owns the process lifecycle: it opens the memory file,
 * listens (or takes a listening socket it is handed), accepts Firecracker's
 * connection within --connect-timeout, validates the handshake, starts the
 * fault thread (and the prefetch thread), then waits for the end of the
 * restore. The end is known from the Firecracker process only: its pidfd
 * (from SO_PEERCRED) becoming readable, or a worker seeing ESRCH from the
 * uffd ioctls. Never from the socket: Firecracker v1.1-v1.11 close it right
 * after the handshake, v1.12+ leave it open, and neither says anything about
 * the VM. SIGTERM/SIGINT/SIGHUP end serving too. It then joins the threads
 * and writes the trace and stats. Signals are blocked in every thread and
 * read through a signalfd, so no handler ever runs concurrently with the
 * workers.
 *
 * Once a userfaultfd has arrived the guest's memory is registered with it,
 * and a page server that gives up leaves the VM frozen with no error. So
 * every fatal condition from then on (a refused region table, a fault that
 * cannot be served, an I/O error on the memory file) is logged with its
 * cause and handled by --on-fatal: "kill" SIGKILLs Firecracker (as
 * Firecracker's example handler does from its panic hook) and exits 1,
 * "exit" leaves it alone and exits 1. A handshake refused before any
 * userfaultfd arrived just closes that connection and exits 1. A connection
 * that closes without sending anything (a liveness probe of another
 * porthole-uffd) is ignored and the next one accepted.
 *
 * Exit status: 0 when the restore ended (or on a signal), 1 when the
 * handshake was refused, serving failed, no Firecracker connected in time,
 * or the socket is in use; 2 on bad usage.
 */
#include "uffd.h"
#include "log.h"
#include "loop.h"
#include "parse.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HANDSHAKE_TIMEOUT_MS 10000
#define CONNECT_TIMEOUT_MS 60000
/* Two fill threads where there are two CPUs: on an idle 2-CPU host they
 * populated 1 GiB in 184-310 ms against 293-1147 ms for one (bench/uffd,
 * 7 rounds); a host that restores many VMs at once can pass 1. */
#define PREFETCH_THREADS_MAX_DEFAULT 2

struct opts {
	const char *socket, *mem_file, *trace, *record, *stats;
	enum ph_uffd_prefetch prefetch;
	bool prefetch_set, on_fatal_kill;
	int timeout_ms, socket_fd;
	uint64_t connect_ms;		/* 0: wait forever */
	unsigned pf_threads;
	bool pf_map;		/* --prefetch-source map */
	struct ph_uffd_sockopts so;
	enum ph_log_format log_format;
	enum ph_log_level log_level;
};

/* everything main() owns, so the steps can be functions */
struct run {
	struct opts o;
	struct ph_uffd_server srv;
	struct ph_uffd_memfile mf;
	struct ph_uffd_lsock ls;
	struct ph_uffd_region reg[PH_UFFD_MAX_REGIONS];
	size_t nreg;
	uint64_t *trace;
	size_t ntrace;
	int lfd, conn, sigfd, pidfd, uffd;
	pid_t peer;
	bool served;
	const char *reason;
};

static unsigned default_pf_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n >= PREFETCH_THREADS_MAX_DEFAULT ? PREFETCH_THREADS_MAX_DEFAULT : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: porthole-uffd (--socket PATH | --socket-fd N) --mem-file FILE\n"
		"                     [--prefetch none|all|trace|trace+all] [--trace FILE]\n"
		"                     [--record-trace FILE] [--stats-json FILE]\n"
		"                     [--prefetch-threads N] [--prefetch-source read|map]\n"
		"                     [--handshake-timeout MS]\n"
		"                     [--connect-timeout DURATION] [--on-fatal kill|exit]\n"
		"                     [--socket-owner UID[:GID]] [--socket-mode MODE]\n"
		"                     [--log-format json|text]\n"
		"                     [--log-level debug|info|warn|error]\n"
		"A socket passed by socket activation (LISTEN_PID/LISTEN_FDS) replaces --socket.\n");
}

/* UID[:GID], numeric */
static int parse_owner(const char *s, struct ph_uffd_sockopts *so)
{
	const char *colon = strchr(s, ':');
	char uid[32];
	uint64_t v;

	if (!colon) {
		if (ph_parse_uint(s, 0, UINT32_MAX - 1, &v))
			return -1;
		so->uid = (uid_t)v;
		so->owner_set = true;
		return 0;
	}
	if ((size_t)(colon - s) >= sizeof(uid))
		return -1;
	memcpy(uid, s, (size_t)(colon - s));
	uid[colon - s] = 0;
	if (ph_parse_uint(uid, 0, UINT32_MAX - 1, &v))
		return -1;
	so->uid = (uid_t)v;
	if (ph_parse_uint(colon + 1, 0, UINT32_MAX - 1, &v))
		return -1;
	so->gid = (gid_t)v;
	so->owner_set = so->gid_set = true;
	return 0;
}

/* octal permission bits, e.g. 0600 or 660 */
static int parse_mode(const char *s, struct ph_uffd_sockopts *so)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (errno || !*s || *end || v > 07777)
		return -1;
	so->mode = (mode_t)v;
	so->mode_set = true;
	return 0;
}

static int bad(const char *opt, const char *v)
{
	fprintf(stderr, "porthole-uffd: bad %s '%s'\n", opt, v);
	return -1;
}

/* one option; -1 on a bad value */
static int set_opt(struct opts *o, int c, const char *arg)
{
	uint64_t v;

	switch (c) {
	case 's': o->socket = arg; break;
	case 'm': o->mem_file = arg; break;
	case 't': o->trace = arg; break;
	case 'r': o->record = arg; break;
	case 'S': o->stats = arg; break;
	case 'p':
		if (ph_uffd_prefetch_parse(arg, &o->prefetch))
			return bad("--prefetch", arg);
		o->prefetch_set = true;
		break;
	case 'T':
		if (ph_parse_uint(arg, 1, INT_MAX, &v))
			return bad("--handshake-timeout", arg);
		o->timeout_ms = (int)v;
		break;
	case 'C':
		if (ph_parse_duration_ms(arg, &o->connect_ms))
			return bad("--connect-timeout", arg);
		break;
	case 'K':
		if (strcmp(arg, "kill") && strcmp(arg, "exit"))
			return bad("--on-fatal", arg);
		o->on_fatal_kill = !strcmp(arg, "kill");
		break;
	case 'O':
		if (parse_owner(arg, &o->so))
			return bad("--socket-owner", arg);
		break;
	case 'M':
		if (parse_mode(arg, &o->so))
			return bad("--socket-mode", arg);
		break;
	case 'D':
		if (ph_parse_uint(arg, 0, INT_MAX, &v))
			return bad("--socket-fd", arg);
		o->socket_fd = (int)v;
		break;
	case 'P':
		if (ph_parse_uint(arg, 1, PH_UFFD_MAX_PF_THREADS, &v)) {
			fprintf(stderr, "porthole-uffd: bad --prefetch-threads '%s' (1-%d)\n",
				arg, PH_UFFD_MAX_PF_THREADS);
			return -1;
		}
		o->pf_threads = (unsigned)v;
		break;
	case 'R':
		if (strcmp(arg, "read") && strcmp(arg, "map"))
			return bad("--prefetch-source", arg);
		o->pf_map = !strcmp(arg, "map");
		break;
	case 'F':
		if (ph_log_parse_format(arg, &o->log_format))
			return bad("--log-format", arg);
		break;
	case 'L':
		if (ph_log_parse_level(arg, &o->log_level))
			return bad("--log-level", arg);
		break;
	case 'h':
		usage(stdout);
		exit(0);
	case 'V':
		printf("porthole-uffd %s\n", PH_VERSION);
		exit(0);
	default:
		return -1;
	}
	return 0;
}

static int check_opts(struct opts *o, bool activated)
{
	if (o->socket && !o->socket[0]) {
		fprintf(stderr, "porthole-uffd: --socket must not be empty\n");
		return -1;
	}
	if (!o->mem_file || (!o->socket && o->socket_fd < 0 && !activated)) {
		fprintf(stderr, "porthole-uffd: --mem-file and one of --socket, --socket-fd "
				"(or socket activation) are required\n");
		return -1;
	}
	if (o->socket_fd >= 0 && activated) {
		fprintf(stderr, "porthole-uffd: --socket-fd and socket activation exclude each other\n");
		return -1;
	}
	if ((o->socket_fd >= 0 || activated) && (o->so.owner_set || o->so.mode_set)) {
		fprintf(stderr, "porthole-uffd: --socket-owner and --socket-mode apply only to a "
				"socket porthole-uffd creates\n");
		return -1;
	}
	/* --trace alone means: the working set first, then everything */
	if (o->trace && !o->prefetch_set)
		o->prefetch = PH_PREFETCH_TRACE_ALL;
	if ((o->prefetch == PH_PREFETCH_TRACE || o->prefetch == PH_PREFETCH_TRACE_ALL) != !!o->trace) {
		fprintf(stderr, "porthole-uffd: --prefetch trace and trace+all need --trace, "
				"and --trace needs one of them\n");
		return -1;
	}
	return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o, bool activated)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "socket-fd", required_argument, NULL, 'D' },
		{ "socket-owner", required_argument, NULL, 'O' },
		{ "socket-mode", required_argument, NULL, 'M' },
		{ "mem-file", required_argument, NULL, 'm' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "trace", required_argument, NULL, 't' },
		{ "record-trace", required_argument, NULL, 'r' },
		{ "stats-json", required_argument, NULL, 'S' },
		{ "handshake-timeout", required_argument, NULL, 'T' },
		{ "connect-timeout", required_argument, NULL, 'C' },
		{ "on-fatal", required_argument, NULL, 'K' },
		{ "prefetch-threads", required_argument, NULL, 'P' },
		{ "prefetch-source", required_argument, NULL, 'R' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int c;

	*o = (struct opts){ .prefetch = PH_PREFETCH_ALL, .timeout_ms = HANDSHAKE_TIMEOUT_MS,
			    .connect_ms = CONNECT_TIMEOUT_MS, .on_fatal_kill = true,
			    .socket_fd = -1, .pf_threads = default_pf_threads(),
			    .log_format = PH_LOG_JSON, .log_level = PH_LOG_INFO };
	while ((c = getopt_long(argc, argv, "hV", lo, NULL)) != -1)
		if (set_opt(o, c, optarg))
			return -1;
	if (optind < argc) {
		fprintf(stderr, "porthole-uffd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	return check_opts(o, activated);
}

/* Firecracker's pid and a pidfd for it: its exit is the end of the restore */
static void peer_identify(struct run *r)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	long fd;

	r->peer = 0;
	r->pidfd = -1;
	if (getsockopt(r->conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0) {
		ph_warn("firecracker's pid is unknown (another pid namespace?): its exit is "
			"noticed only by ESRCH, and --on-fatal kill cannot work");
		return;
	}
	r->peer = cr.pid;
	fd = syscall(SYS_pidfd_open, cr.pid, 0);
	if (fd < 0)
		ph_warn("pidfd_open failed: firecracker's exit is noticed only by ESRCH",
			PH_FERR(errno));
	r->pidfd = fd < 0 ? -1 : (int)fd;
	ph_info("firecracker connected", PH_FI("pid", cr.pid), PH_FU("uid", cr.uid));
}

/* a fatal condition after the uffd arrived: never leave the guest hanging in silence */
static void fatal(struct run *r, const char *cause)
{
	r->reason = "fatal";
	if (!r->o.on_fatal_kill) {
		ph_error("fatal: exiting, firecracker left running (--on-fatal exit)",
			 PH_FS("cause", cause), PH_FI("pid", r->peer));
		return;
	}
	if (r->pidfd >= 0 && syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0) == 0) {
		ph_error("fatal: killed firecracker", PH_FS("cause", cause), PH_FI("pid", r->peer));
		return;
	}
	if (r->pidfd < 0 && r->peer > 0 && kill(r->peer, SIGKILL) == 0) {
		ph_error("fatal: killed firecracker", PH_FS("cause", cause), PH_FI("pid", r->peer));
		return;
	}
	ph_error("fatal: cannot kill firecracker", PH_FS("cause", cause), PH_FI("pid", r->peer),
		 PH_FERR(r->peer > 0 ? errno : ESRCH));
}

/* what a worker's fatal -errno means */
static const char *fatal_cause(int err)
{
	switch (err) {
	case -ERANGE: return "a fault outside every region Firecracker announced";
	case -EFAULT: return "I/O error reading the memory file";
	case -ENOMEM: return "out of memory installing a page (hugetlb pool exhausted?)";
	case -EBADFD: return "the userfaultfd is not usable";
	default: return "a fault could not be served";
	}
}

/* wait for the end of the restore: 0, or 1 after a fatal error */
static int wait_end(struct run *r)
{
	struct ph_uffd_server *s = &r->srv;
	struct pollfd p[3] = {
		{ .fd = r->sigfd, .events = POLLIN },
		{ .fd = s->done_efd, .events = POLLIN },
		{ .fd = r->pidfd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, r->pidfd >= 0 ? 3 : 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r->reason = "error";
			return 1;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(r->sigfd, &si, sizeof(si)) == sizeof(si))
				ph_info("signal received", PH_FU("signal", si.ssi_signo));
			r->reason = "signal";
			return 0;
		}
		if (p[1].revents) {
			int err = atomic_load(&s->end_err);

			if (err == -ESRCH) {
				r->reason = "owner-gone";
				return 0;
			}
			ph_error("serving failed", PH_FERR(err), PH_FS("cause", fatal_cause(err)));
			fatal(r, fatal_cause(err));
			return 1;
		}
		if (p[2].revents) {
			r->reason = "owner-exited";
			return 0;
		}
	}
}

/* the listening socket: handed over (--socket-fd, socket activation) or ours */
static int get_listener(struct run *r, int activated_fd)
{
	pid_t live;
	int ret;

	if (activated_fd >= 0 || r->o.socket_fd >= 0) {
		r->lfd = activated_fd >= 0 ? activated_fd : r->o.socket_fd;
		ret = ph_uffd_check_listener(r->lfd);
		if (ret) {
			ph_error("the socket handed over is not a listening Unix stream socket",
				 PH_FI("fd", r->lfd), PH_FERR(ret));
			r->lfd = -1;
			return ret;
		}
		ph_info("listening", PH_FI("socket_fd", r->lfd),
			PH_FS("from", activated_fd >= 0 ? "LISTEN_FDS" : "--socket-fd"));
		return 0;
	}
	ret = ph_uffd_listen(r->o.socket, &r->o.so, &r->ls, &live);
	if (ret == -EADDRINUSE) {
		ph_error("socket in use: another page server is accepting on it",
			 PH_FS("socket", r->o.socket), PH_FI("pid", live));
		return ret;
	}
	if (ret < 0) {
		ph_error("cannot listen", PH_FS("socket", r->o.socket), PH_FERR(ret));
		return ret;
	}
	r->lfd = ret;
	ph_info("listening", PH_FS("socket", r->o.socket));
	return 0;
}

/* accept one connection within the connect deadline: 1 connected, 0 signal, -errno */
static int accept_one(struct run *r, uint64_t deadline)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = r->lfd, .events = POLLIN },
				       { .fd = r->sigfd, .events = POLLIN } };
		uint64_t now = ph_now_ms();
		int wait = -1, n;

		if (deadline) {
			if (now >= deadline)
				return -ETIMEDOUT;
			wait = deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
		}
		n = poll(p, 2, wait);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[1].revents)
			return 0;
		if (!n)
			continue;
		r->conn = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (r->conn >= 0)
			return 1;
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
			return -errno;
	}
}

/* accept Firecracker and take its handshake: -1 ready to serve, else the exit status */
static int connect_firecracker(struct run *r)
{
	uint64_t deadline = r->o.connect_ms ? ph_now_ms() + r->o.connect_ms : 0;
	unsigned ignored;
	char err[256];
	int ret;

	for (;;) {
		ret = accept_one(r, deadline);
		if (ret == 0) {
			r->reason = "signal";
			return 0;	/* nothing served */
		}
		if (ret == -ETIMEDOUT) {
			ph_error("no firecracker connected in time: giving up",
				 PH_FU("connect_timeout_ms", r->o.connect_ms));
			r->reason = "connect-timeout";
			return 1;
		}
		if (ret < 0) {
			ph_error("accept", PH_FERR(ret));
			return 1;
		}
		peer_identify(r);
		ret = ph_uffd_handshake(r->conn, r->mf.size, r->o.timeout_ms, r->reg,
					PH_UFFD_MAX_REGIONS, &r->nreg, &r->uffd, &ignored,
					err, sizeof(err));
		if (ret != -ENOMSG)
			break;
		ph_debug("connection closed without a handshake (a probe): still listening",
			 PH_FI("pid", r->peer));
		close(r->conn);
		r->conn = -1;
		if (r->pidfd >= 0)
			close(r->pidfd);
		r->pidfd = -1;
	}
	if (ignored)
		ph_info("extra descriptors in the handshake closed", PH_FU("ignored", ignored));
	if (ret) {
		const char *why = err[0] ? err : ph_strerror(ret);

		ph_error("handshake refused", PH_FS("reason", why));
		r->reason = "handshake-refused";
		if (r->uffd >= 0)
			fatal(r, why);
		return 1;
	}
	return -1;
}

/* tests only: PORTHOLE_UFFD_TEST_REMOVE_DELAY_MS stalls the fault thread
 * between reading a REMOVE and applying it (tests/uffd/run uses it to force
 * the REMOVE/prefetch overlap on every run); 0 when unset or malformed */
static unsigned test_remove_delay_ms(void)
{
	const char *v = getenv("PORTHOLE_UFFD_TEST_REMOVE_DELAY_MS");
	char *end;
	unsigned long ms;

	if (!v || !*v)
		return 0;
	errno = 0;
	ms = strtoul(v, &end, 10);
	if (errno || *end || !ms || ms > 10000)
		return 0;
	ph_warn("test hook: REMOVE events applied late", PH_FU("delay_ms", ms));
	return (unsigned)ms;
}

/* set up and start serving; 0 or 1 (fatal, already handled) */
static int start_serving(struct run *r)
{
	int ret;

	for (size_t i = 0; i < r->nreg; i++)
		ph_info("region", PH_FU("index", i), PH_FU("base", r->reg[i].base),
			PH_FU("size", r->reg[i].size), PH_FU("offset", r->reg[i].offset),
			PH_FU("page_size", r->reg[i].page_size));
	ret = ph_uffd_server_init(&r->srv, r->uffd, &r->mf, r->reg, r->nreg);
	if (!ret) {
		r->srv.prefetch = r->o.prefetch;
		r->srv.trace = r->trace;
		r->srv.ntrace = r->ntrace;
		r->srv.record = !!r->o.record;
		r->srv.pf_threads = r->o.pf_threads;
		r->srv.test_remove_delay_ms = test_remove_delay_ms();
		r->srv.copy_read = !r->o.pf_map;
		ph_info("uffd features", PH_FS("event_remove", r->srv.gate.on ? "yes" : "no"));
		ret = ph_uffd_server_start(&r->srv);
	}
	if (ret) {
		ph_error("cannot start serving", PH_FERR(ret));
		fatal(r, "cannot start serving");
		return 1;
	}
	r->served = true;
	/* the socket has done its job; whether Firecracker keeps its end open
	 * (v1.12+) or not (v1.1-v1.11) says nothing about the VM */
	close(r->conn);
	r->conn = -1;
	return 0;
}

/* open the memory file, load the trace, set up signals; 0 or -1 */
static int prepare(struct run *r)
{
	char err[256];
	sigset_t ss;
	int ret;

	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);	/* inherited by the workers */
	signal(SIGPIPE, SIG_IGN);
	r->sigfd = signalfd(-1, &ss, SFD_CLOEXEC);
	if (r->sigfd < 0) {
		ph_error("signalfd", PH_FERR(errno));
		return -1;
	}
	ret = ph_uffd_memfile_open(&r->mf, r->o.mem_file);
	if (ret) {
		ph_error("cannot open memory file", PH_FS("path", r->o.mem_file), PH_FERR(ret));
		return -1;
	}
	if (r->o.trace) {
		err[0] = 0;
		ret = ph_uffd_trace_load(r->o.trace, &r->trace, &r->ntrace, err, sizeof(err));
		if (ret) {
			ph_error("cannot load trace", PH_FS("path", r->o.trace),
				 PH_FS("reason", err[0] ? err : ph_strerror(ret)));
			return -1;
		}
	}
	return 0;
}

/* join, write the trace and stats, release everything; returns the exit status */
static int finish(struct run *r, int rc)
{
	int ret;

	ph_uffd_server_stop(&r->srv);
	if (r->served && r->o.record) {
		ret = ph_uffd_trace_save(r->o.record, r->srv.rec, r->srv.nrec);
		if (ret) {
			ph_error("cannot write trace", PH_FS("path", r->o.record), PH_FERR(ret));
			rc = 1;
		}
	}
	if (r->o.stats && (ret = ph_uffd_stats_write(&r->srv, r->o.stats, r->reason))) {
		ph_error("cannot write stats", PH_FS("path", r->o.stats), PH_FERR(ret));
		rc = 1;
	}
	ph_info("exiting", PH_FS("reason", r->reason),
		PH_FU("faults", atomic_load(&r->srv.c.faults)),
		PH_FU("bytes_prefetched", atomic_load(&r->srv.c.bytes_prefetched)),
		PH_FU("populated_ms", atomic_load(&r->srv.populated_ns) / 1000000));
	ph_uffd_server_destroy(&r->srv);
	{
		int *fds[] = { &r->lfd, &r->conn, &r->sigfd, &r->pidfd, &r->uffd };

		for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
			if (*fds[i] >= 0)
				close(*fds[i]);
	}
	if (r->o.socket)
		ph_uffd_unlink_ours(r->o.socket, &r->ls);
	ph_uffd_memfile_close(&r->mf);
	free(r->trace);
	return rc;
}

int main(int argc, char **argv)
{
	static struct run r = { .lfd = -1, .conn = -1, .sigfd = -1, .pidfd = -1, .uffd = -1,
				.srv = { .stop_efd = -1, .done_efd = -1 }, .mf = { .fd = -1 },
				.reason = "error" };
	struct ph_uffd_memfile_warmer warmer = { .mf = &r.mf };
	int activated_fd = -1, act, rc = 1;
	bool warming = false;
	pthread_t warm_thr;

	act = ph_uffd_listen_fds(&activated_fd);
	if (parse_opts(argc, argv, &r.o, act != 0)) {
		usage(stderr);
		if (activated_fd >= 0)
			close(activated_fd);
		return 2;
	}
	ph_log_setup(r.o.log_format, r.o.log_level);
	if (act < 0) {
		ph_error("bad LISTEN_PID/LISTEN_FDS (one listening socket expected)", PH_FERR(act));
		return 1;
	}
	if (prepare(&r))
		goto out;
	warming = !pthread_create(&warm_thr, NULL, ph_uffd_memfile_warm, &warmer);
	if (get_listener(&r, activated_fd))
		goto out;
	ph_info("serving", PH_FS("mem_file", r.o.mem_file), PH_FU("file_bytes", r.mf.size),
		PH_FU("data_bytes", ph_uffd_memfile_data_bytes(&r.mf)),
		PH_FS("prefetch", ph_uffd_prefetch_name(r.o.prefetch)),
		PH_FU("trace_pages", r.ntrace),
		PH_FS("on_fatal", r.o.on_fatal_kill ? "kill" : "exit"));
	rc = connect_firecracker(&r);
	if (rc >= 0)
		goto out;
	close(r.lfd);	/* exactly one restore is served */
	r.lfd = -1;
	rc = start_serving(&r);
	if (!rc)
		rc = wait_end(&r);
out:
	ph_uffd_server_stop(&r.srv);
	if (warming) {
		atomic_store(&warmer.stop, true);
		pthread_join(warm_thr, NULL);
	}
	return finish(&r, rc);
}
