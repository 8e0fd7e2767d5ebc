// SPDX-License-Identifier: MIT
/* main.c - porthole-uffd: serve one Firecracker restore's page faults
 *
 * The main thread owns the process lifecycle: it opens the memory file,
 * listens, accepts exactly one Firecracker connection, validates the
 * handshake, starts the fault thread (and the prefetch thread), then waits
 * for the end of the restore: the socket hanging up, the Firecracker process
 * exiting (a pidfd, for when a child inherited the socket), a worker reporting
 * ESRCH or a fatal error, or SIGTERM/SIGINT. It then joins the threads and
 * writes the trace and stats. Signals are blocked in every thread and read
 * through a signalfd, so no handler ever runs concurrently with the workers.
 *
 * Exit status: 0 when the restore ended (or on a signal), 1 when the
 * handshake was refused or serving failed, 2 on bad usage.
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
/* Two fill threads where there are two CPUs: on an idle 2-CPU host they
 * populated 1 GiB in 184-310 ms against 293-1147 ms for one (bench/uffd,
 * 7 rounds); a host that restores many VMs at once can pass 1. */
#define PREFETCH_THREADS_MAX_DEFAULT 2

struct opts {
	const char *socket, *mem_file, *trace, *record, *stats;
	enum ph_uffd_prefetch prefetch;
	bool prefetch_set;
	int timeout_ms;
	unsigned pf_threads;
	enum ph_log_format log_format;
	enum ph_log_level log_level;
};

static unsigned default_pf_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n >= PREFETCH_THREADS_MAX_DEFAULT ? PREFETCH_THREADS_MAX_DEFAULT : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: porthole-uffd --socket PATH --mem-file FILE [--prefetch none|all|trace|trace+all]\n"
		"                     [--trace FILE] [--record-trace FILE] [--stats-json FILE]\n"
		"                     [--prefetch-threads N] [--handshake-timeout MS]\n"
		"                     [--log-format json|text]\n"
		"                     [--log-level debug|info|warn|error]\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "mem-file", required_argument, NULL, 'm' },
		{ "prefetch", required_argument, NULL, 'p' },
		{ "trace", required_argument, NULL, 't' },
		{ "record-trace", required_argument, NULL, 'r' },
		{ "stats-json", required_argument, NULL, 'S' },
		{ "handshake-timeout", required_argument, NULL, 'T' },
		{ "prefetch-threads", required_argument, NULL, 'P' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int c;

	*o = (struct opts){ .prefetch = PH_PREFETCH_ALL, .timeout_ms = HANDSHAKE_TIMEOUT_MS,
			    .pf_threads = default_pf_threads(),
			    .log_format = PH_LOG_JSON, .log_level = PH_LOG_INFO };
	while ((c = getopt_long(argc, argv, "hV", lo, NULL)) != -1) {
		uint64_t v;

		switch (c) {
		case 's': o->socket = optarg; break;
		case 'm': o->mem_file = optarg; break;
		case 't': o->trace = optarg; break;
		case 'r': o->record = optarg; break;
		case 'S': o->stats = optarg; break;
		case 'p':
			if (ph_uffd_prefetch_parse(optarg, &o->prefetch)) {
				fprintf(stderr, "porthole-uffd: bad --prefetch '%s'\n", optarg);
				return -1;
			}
			o->prefetch_set = true;
			break;
		case 'T':
			if (ph_parse_uint(optarg, 1, INT_MAX, &v)) {
				fprintf(stderr, "porthole-uffd: bad --handshake-timeout '%s'\n", optarg);
				return -1;
			}
			o->timeout_ms = (int)v;
			break;
		case 'P':
			if (ph_parse_uint(optarg, 1, PH_UFFD_MAX_PF_THREADS, &v)) {
				fprintf(stderr, "porthole-uffd: bad --prefetch-threads '%s' (1-%d)\n",
					optarg, PH_UFFD_MAX_PF_THREADS);
				return -1;
			}
			o->pf_threads = (unsigned)v;
			break;
		case 'F':
			if (ph_log_parse_format(optarg, &o->log_format)) {
				fprintf(stderr, "porthole-uffd: bad --log-format '%s'\n", optarg);
				return -1;
			}
			break;
		case 'L':
			if (ph_log_parse_level(optarg, &o->log_level)) {
				fprintf(stderr, "porthole-uffd: bad --log-level '%s'\n", optarg);
				return -1;
			}
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
	}
	if (optind < argc) {
		fprintf(stderr, "porthole-uffd: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!o->socket || !o->mem_file) {
		fprintf(stderr, "porthole-uffd: --socket and --mem-file are required\n");
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

/* Firecracker's pid as a pidfd, or -1: its exit ends the restore even if a
 * child process inherited the socket and keeps it open */
static int peer_pidfd(int conn)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	long fd;

	if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.pid <= 0)
		return -1;
	fd = syscall(SYS_pidfd_open, cr.pid, 0);
	ph_info("firecracker connected", PH_FI("pid", cr.pid));
	return fd < 0 ? -1 : (int)fd;
}

/* wait for the end of the restore; returns the reason */
static const char *wait_end(struct ph_uffd_server *s, int conn, int sigfd, int pidfd, int *rc)
{
	struct pollfd p[4] = {
		{ .fd = conn, .events = POLLIN | POLLRDHUP },
		{ .fd = sigfd, .events = POLLIN },
		{ .fd = s->done_efd, .events = POLLIN },
		{ .fd = pidfd, .events = POLLIN },
	};

	for (;;) {
		if (poll(p, pidfd >= 0 ? 4 : 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			*rc = 1;
			return "error";
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;

			if (read(sigfd, &si, sizeof(si)) == sizeof(si))
				ph_info("signal received", PH_FU("signal", si.ssi_signo));
			return "signal";
		}
		if (p[2].revents) {
			int err = atomic_load(&s->end_err);

			if (err == -ESRCH)
				return "owner-gone";
			ph_error("serving failed", PH_FERR(err));
			*rc = 1;
			return "error";
		}
		if (pidfd >= 0 && p[3].revents)
			return "owner-exited";
		if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR))
			return "hangup";
		if (p[0].revents & POLLIN) {
			char junk[256];
			ssize_t r = recv(conn, junk, sizeof(junk), MSG_DONTWAIT);

			if (r == 0)
				return "hangup";
			if (r < 0 && errno != EAGAIN && errno != EINTR)
				return "hangup";
		}
	}
}

int main(int argc, char **argv)
{
	struct ph_uffd_server srv = { .stop_efd = -1, .done_efd = -1 };
	struct ph_uffd_region reg[PH_UFFD_MAX_REGIONS];
	struct ph_uffd_memfile mf = { .fd = -1 };
	const char *reason = "error";
	uint64_t *trace = NULL;
	size_t ntrace = 0, nreg = 0;
	int lfd = -1, conn = -1, sigfd = -1, pidfd = -1, uffd = -1, rc = 1, ret;
	struct ph_uffd_memfile_warmer warmer = { .mf = &mf };
	bool served = false, listened = false, warming = false;
	pthread_t warm_thr;
	struct opts o;
	char err[256];
	sigset_t ss;

	if (parse_opts(argc, argv, &o)) {
		usage(stderr);
		return 2;
	}
	ph_log_setup(o.log_format, o.log_level);
	srv.prefetch = o.prefetch;

	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &ss, NULL);	/* inherited by the workers */
	signal(SIGPIPE, SIG_IGN);
	sigfd = signalfd(-1, &ss, SFD_CLOEXEC);
	if (sigfd < 0) {
		ph_error("signalfd", PH_FERR(errno));
		goto out;
	}

	ret = ph_uffd_memfile_open(&mf, o.mem_file);
	if (ret) {
		ph_error("cannot open memory file", PH_FS("path", o.mem_file), PH_FERR(ret));
		goto out;
	}
	warming = !pthread_create(&warm_thr, NULL, ph_uffd_memfile_warm, &warmer);
	if (o.trace) {
		err[0] = 0;
		ret = ph_uffd_trace_load(o.trace, &trace, &ntrace, err, sizeof(err));
		if (ret) {
			ph_error("cannot load trace", PH_FS("path", o.trace),
				 PH_FS("reason", err[0] ? err : ph_strerror(ret)));
			goto out;
		}
	}
	lfd = ph_uffd_listen(o.socket);
	if (lfd < 0) {
		ph_error("cannot listen", PH_FS("socket", o.socket), PH_FERR(lfd));
		goto out;
	}
	listened = true;
	ph_info("listening", PH_FS("socket", o.socket), PH_FS("mem_file", o.mem_file),
		PH_FU("file_bytes", mf.size), PH_FU("data_bytes", ph_uffd_memfile_data_bytes(&mf)),
		PH_FS("prefetch", ph_uffd_prefetch_name(o.prefetch)), PH_FU("trace_pages", ntrace));

	for (;;) {
		struct pollfd p[2] = { { .fd = lfd, .events = POLLIN },
				       { .fd = sigfd, .events = POLLIN } };

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			ph_error("poll", PH_FERR(errno));
			goto out;
		}
		if (p[1].revents) {
			reason = "signal";
			rc = 0;
			goto out;
		}
		conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (conn >= 0)
			break;
		if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
			ph_error("accept", PH_FERR(errno));
			goto out;
		}
	}
	close(lfd);	/* exactly one connection is served */
	lfd = -1;
	pidfd = peer_pidfd(conn);

	ret = ph_uffd_handshake(conn, mf.size, o.timeout_ms, reg, PH_UFFD_MAX_REGIONS, &nreg,
				&uffd, err, sizeof(err));
	if (ret) {
		ph_error("handshake refused", PH_FS("reason", err[0] ? err : ph_strerror(ret)));
		reason = "handshake-refused";
		goto out;
	}
	for (size_t i = 0; i < nreg; i++)
		ph_info("region", PH_FU("index", i), PH_FU("base", reg[i].base),
			PH_FU("size", reg[i].size), PH_FU("offset", reg[i].offset),
			PH_FU("page_size", reg[i].page_size));

	ret = ph_uffd_server_init(&srv, uffd, &mf, reg, nreg);
	if (ret) {
		ph_error("cannot set up the server", PH_FERR(ret));
		goto out;
	}
	srv.prefetch = o.prefetch;
	srv.trace = trace;
	srv.ntrace = ntrace;
	srv.record = !!o.record;
	srv.pf_threads = o.pf_threads;
	ret = ph_uffd_server_start(&srv);
	if (ret) {
		ph_error("cannot start threads", PH_FERR(ret));
		goto out;
	}
	served = true;
	rc = 0;
	reason = wait_end(&srv, conn, sigfd, pidfd, &rc);
out:
	ph_uffd_server_stop(&srv);
	if (warming) {
		atomic_store(&warmer.stop, true);
		pthread_join(warm_thr, NULL);
	}
	if (served && o.record) {
		ret = ph_uffd_trace_save(o.record, srv.rec, srv.nrec);
		if (ret) {
			ph_error("cannot write trace", PH_FS("path", o.record), PH_FERR(ret));
			rc = 1;
		}
	}
	if (o.stats && (ret = ph_uffd_stats_write(&srv, o.stats, reason))) {
		ph_error("cannot write stats", PH_FS("path", o.stats), PH_FERR(ret));
		rc = 1;
	}
	ph_info("exiting", PH_FS("reason", reason), PH_FU("faults", atomic_load(&srv.c.faults)),
		PH_FU("bytes_prefetched", atomic_load(&srv.c.bytes_prefetched)),
		PH_FU("populated_ms", atomic_load(&srv.populated_ns) / 1000000));
	ph_uffd_server_destroy(&srv);
	if (uffd >= 0)
		close(uffd);
	if (conn >= 0)
		close(conn);
	if (pidfd >= 0)
		close(pidfd);
	if (lfd >= 0)
		close(lfd);
	if (listened)
		unlink(o.socket);
	if (sigfd >= 0)
		close(sigfd);
	ph_uffd_memfile_close(&mf);
	free(trace);
	return rc;
}
