// SPDX-License-Identifier: MIT
/* config.c - portholed's command line: defaults, flags, validation
 *
 * Every flag is checked here, before anything starts: an invalid value is
 * reported in one line that names the flag, and the daemon exits with 2.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netutil.h"
#include "parse.h"
#include "relay_threads.h"
#include "token.h"

enum {
	OPT_EXTERNAL = 256, OPT_SCAN, OPT_ALLOW, OPT_DENY, OPT_MAXCONN, OPT_LOGFMT, OPT_LOGLVL,
	OPT_CGROUP, OPT_VERSION, OPT_HELP, OPT_LISTEN, OPT_TOKEN, OPT_KA_IDLE, OPT_KA_INTVL,
	OPT_KA_CNT, OPT_HEAD_TO, OPT_IDLE_TO, OPT_WRITE_TO, OPT_MAX_API, OPT_PIPE, OPT_BACKLOG,
	OPT_SSE_PING, OPT_DISCOVERY, OPT_RELAY, OPT_CLIENT_CC, OPT_RELAY_THREADS,
	OPT_MAX_STREAMS,
	OPT_MAXCONN_PORT, OPT_HALF_CLOSE_TO, OPT_UDP, OPT_UDP_IDLE_TO, OPT_MAX_UDP_FLOWS,
	OPT_SUPERVISE, OPT_UPGRADE_TO, OPT_STEER,
};

static const struct option options[] = {
	{ "external-addr", required_argument, NULL, OPT_EXTERNAL },
	{ "scan-interval", required_argument, NULL, OPT_SCAN },
	{ "allow", required_argument, NULL, OPT_ALLOW },
	{ "deny", required_argument, NULL, OPT_DENY },
	{ "steer", required_argument, NULL, OPT_STEER },
	{ "max-connections", required_argument, NULL, OPT_MAXCONN },
	{ "max-connections-per-port", required_argument, NULL, OPT_MAXCONN_PORT },
	{ "half-close-timeout", required_argument, NULL, OPT_HALF_CLOSE_TO },
	{ "udp", required_argument, NULL, OPT_UDP },
	{ "udp-idle-timeout", required_argument, NULL, OPT_UDP_IDLE_TO },
	{ "max-udp-flows", required_argument, NULL, OPT_MAX_UDP_FLOWS },
	{ "log-format", required_argument, NULL, OPT_LOGFMT },
	{ "log-level", required_argument, NULL, OPT_LOGLVL },
	{ "cgroup", required_argument, NULL, OPT_CGROUP },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "token-file", required_argument, NULL, OPT_TOKEN },
	{ "keepalive-idle", required_argument, NULL, OPT_KA_IDLE },
	{ "keepalive-interval", required_argument, NULL, OPT_KA_INTVL },
	{ "keepalive-count", required_argument, NULL, OPT_KA_CNT },
	{ "head-timeout", required_argument, NULL, OPT_HEAD_TO },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TO },
	{ "write-timeout", required_argument, NULL, OPT_WRITE_TO },
	{ "max-api-connections", required_argument, NULL, OPT_MAX_API },
	{ "sse-ping", required_argument, NULL, OPT_SSE_PING },
	{ "max-event-streams", required_argument, NULL, OPT_MAX_STREAMS },
	{ "pipe-size", required_argument, NULL, OPT_PIPE },
	{ "backlog", required_argument, NULL, OPT_BACKLOG },
	{ "discovery", required_argument, NULL, OPT_DISCOVERY },
	{ "relay", required_argument, NULL, OPT_RELAY },
	{ "client-congestion", required_argument, NULL, OPT_CLIENT_CC },
	{ "relay-threads", required_argument, NULL, OPT_RELAY_THREADS },
	{ "supervise", no_argument, NULL, OPT_SUPERVISE },
	{ "upgrade-timeout", required_argument, NULL, OPT_UPGRADE_TO },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, OPT_HELP },
	{ 0 },
};

static const char usage_text[] =
	"Usage: portholed [OPTION]...\n"
	"Expose loopback-only TCP listeners and UDP sockets on the external address and relay\n"
	"connections and datagrams.\n"
	"\n"
	"Ports:\n"
	"  --external-addr IP|IF    address to expose ports on: IPv4, IPv6 (fe80::1%eth0), or\n"
	"                           an interface (all its global and link-local addresses);\n"
	"                           repeatable; followed as they change (default: the first\n"
	"                           IPv4 address of the IPv4 default route's interface and\n"
	"                           the first global IPv6 address of the IPv6 one's)\n"
	"  --scan-interval MS       milliseconds between periodic listener scans (default:\n"
	"                           1000 with listen events, a safety net; 50 polling)\n"
	"  --allow PORTS            expose only these ports, e.g. 22,udp:53,tcp:5000-5999\n"
	"                           (a bare port or range means TCP and UDP)\n"
	"  --deny PORTS             never expose these ports (wins over --allow)\n"
	"  --steer PORTS            TCP ports to steer instead of relaying: a BPF sk_lookup\n"
	"                           program hands each connection to the service's own\n"
	"                           listener, which sees the client's real address (CAP_BPF,\n"
	"                           CAP_NET_ADMIN, CAP_SYS_PTRACE; else they are relayed);\n"
	"                           UDP is always relayed: a udp: item is an error\n"
	"  --max-connections N      relayed connections at once (default 65536)\n"
	"  --max-connections-per-port N\n"
	"                           relayed connections at once on one port (default: a\n"
	"                           quarter of --max-connections or of (RLIMIT_NOFILE-64)/2)\n"
	"  --half-close-timeout DUR reset a relay whose client sent its FIN once nothing\n"
	"                           moved for DUR (default 60s)\n"
	"  --udp on|off             expose loopback-only UDP sockets too (default on)\n"
	"  --udp-idle-timeout DUR   end a UDP flow after DUR without a datagram either\n"
	"                           way (default 60s)\n"
	"  --max-udp-flows N        UDP flows at once; at the limit the least recently\n"
	"                           used one ends (default 4096)\n"
	"  --keepalive-idle S       TCP keepalive idle time of relayed legs (default 30)\n"
	"  --keepalive-interval S   keepalive probe interval (default 10)\n"
	"  --keepalive-count N      keepalive probes before the peer is dead (default 3)\n"
	"  --backlog N              listen backlog of external listeners (default 4096)\n"
	"  --pipe-size BYTES        relay pipe size per direction (default: kernel's, 64 KiB)\n"
	"  --discovery auto|events|bpf|perf|poll|proc\n"
	"                           auto: scan when the kernel reports a listen or close\n"
	"                           (a BPF program: CAP_BPF, CAP_PERFMON; else the perf\n"
	"                           tracepoint: CAP_PERFMON, tracefs mounted), else poll\n"
	"                           (default); events: the same, but fail to start\n"
	"                           without either; bpf, perf: only that source (tests);\n"
	"                           poll: periodic scans only; proc: poll, parsing\n"
	"                           /proc/net/tcp instead of sock_diag (old kernels, tests)\n"
	"  --relay splice|copy      splice: small messages copied, bulk transfers spliced\n"
	"                           (default); copy: recv/send only (tests)\n"
	"  --relay-threads N|auto   threads relaying connections, 1 to 64 (default 1);\n"
	"                           auto: one per CPU this process may run on, at most 8\n"
	"  --client-congestion auto|system|NAME\n"
	"                           TCP congestion control of the client leg; auto: reno\n"
	"                           if the external address is link-local, else the\n"
	"                           system's (default)\n"
	"Control API:\n"
	"  --listen ADDR:PORT       HTTP control API address (default 0.0.0.0:49982); ADDR\n"
	"                           numeric, [IPv6], or localhost (127.0.0.1, no other name)\n"
	"  --token-file FILE        require 'Authorization: Bearer <token>' (not for /health,\n"
	"                           which resumes only with it); SIGHUP re-reads FILE\n"
	"  --head-timeout DUR       request head deadline from its first byte (default 5s)\n"
	"  --idle-timeout DUR       keep-alive idle timeout (default 640s)\n"
	"  --write-timeout DUR      drop a client that does not read its response (default 30s)\n"
	"  --max-api-connections N  API connection slots (default 256); at the cap a new\n"
	"                           connection evicts an idle, slow or streaming one\n"
	"  --max-event-streams N    event streams at once, the oldest evicted (default 64)\n"
	"  --sse-ping DUR           interval of event-stream pings (default 15s)\n"
	"Process:\n"
	"  --cgroup DIR             move into this cgroup v2 directory at start\n"
	"  --supervise              run portholed as a child and restart it when it dies,\n"
	"                           keeping its listening sockets meanwhile (without systemd)\n"
	"  --upgrade-timeout DUR    an upgrade's new process must take over within DUR, or\n"
	"                           this one carries on (default 5s)\n"
	"  --log-format json|text   log format on stderr (default json)\n"
	"  --log-level L            debug, info, warn or error (default info)\n"
	"  --version                print the version and exit\n"
	"  --help                   print this help and exit\n"
	"DUR: 500ms, 5s, 2m, 1h (a bare number is seconds). Exit status: 0 stopped by\n"
	"SIGTERM/SIGINT, 1 runtime failure, 2 invalid usage. SIGHUP re-reads the token\n"
	"file; SIGUSR1, SIGUSR2 and SIGPIPE are ignored.\n";

static void defaults(struct ph_daemon_config *cfg)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&cfg->listen;

	memset(cfg, 0, sizeof(*cfg));
	ph_config_defaults(&cfg->ports);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(49982);
	cfg->listen_len = sizeof(*sin);
	cfg->upgrade_timeout_ms = 5000;
	strcpy(cfg->listen_str, "0.0.0.0:49982");
	cfg->http = (struct ph_http_limits){
		.head_timeout_ms = 5000,
		.idle_timeout_ms = 640000,
		.write_timeout_ms = 30000,
		.max_conns = 256,
		.max_streams = 64,
		.max_head = 16384,
		.max_body = 65536,
		.sse_ping_ms = 15000,
		.sse_queue = 1024,
	};
	cfg->log_format = PH_LOG_JSON;
	cfg->log_level = PH_LOG_INFO;
}

static const char *opt_name(int val)
{
	for (const struct option *o = options; o->name; o++)
		if (o->val == val)
			return o->name;
	return "?";
}

/*
 * An algorithm name is tried on a scratch socket, so that a typo or an
 * algorithm this process may not use fails at start with the reason, not
 * silently on every listener.
 */
static int cc_check(const char *name, char *why, size_t len)
{
	int fd, ret;

	if (!strcmp(name, "system"))
		return 0;
	if (!*name || strlen(name) >= sizeof(((struct ph_config *)0)->client_cc) ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(name)) {
		snprintf(why, len, "expected auto, system or an algorithm name");
		return -EINVAL;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(why, len, "cannot check it: %s", strerror(-ret));
		return ret;
	}
	ret = ph_sock_congestion(fd, name);
	if (ret)
		snprintf(why, len, "%s (see net.ipv4.tcp_allowed_congestion_control)",
			 ret == -ENOENT ? "no such algorithm" : strerror(-ret));
	close(fd);
	return ret;
}

#define BAD(what) do { fprintf(err, "portholed: invalid --%s '%s': %s\n", \
			       opt_name(opt), optarg, (what)); \
		return PH_CONFIG_USAGE; } while (0)

/* Length: one getopt case per flag, each a parse and a range check; split,
 * the flags would be spread over several switch statements. */
enum ph_config_result ph_daemon_config_parse(struct ph_daemon_config *cfg, int argc, char **argv,
					     FILE *out, FILE *err)
{
	char why[128];
	uint64_t v;
	int opt, ret;

	defaults(cfg);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
		switch (opt) {
		case OPT_EXTERNAL:
			if (cfg->ports.n_ext_specs >= PH_MAX_EXT_SPECS)
				BAD("given more than 8 times");
			if (ph_ext_spec_parse(optarg, &cfg->ports.ext_specs[cfg->ports.n_ext_specs]))
				BAD("expected an IPv4 or IPv6 address (fe80::1%IF for a link-local "
				    "one) or an interface name");
			cfg->ports.n_ext_specs++;
			break;
		case OPT_SCAN:
			if (ph_parse_uint(optarg, 1, 60000, &v))
				BAD("expected milliseconds, 1 to 60000");
			cfg->ports.scan_interval_ms = (unsigned)v;
			break;
		case OPT_ALLOW:
		case OPT_DENY:
			if (ph_portset_parse(opt == OPT_ALLOW ? &cfg->ports.allow : &cfg->ports.deny,
					     optarg, why, sizeof(why)))
				BAD(why);
			break;
		case OPT_STEER: {
			struct ph_portset t = { 0 };

			if (ph_portset_parse(&t, optarg, why, sizeof(why)))
				BAD(why);
			for (unsigned w = 0; w < sizeof(t.bits) / sizeof(t.bits[0]); w++)
				if (t.udp[w] & ~t.bits[w])
					BAD("steering is TCP only (UDP ports are always relayed); "
					    "remove the udp: items");
			ph_portset_parse(&cfg->ports.steer, optarg, why, sizeof(why));
			break;
		}
		case OPT_MAXCONN:
			if (ph_parse_uint(optarg, 1, 1000000, &v))
				BAD("expected a number, 1 to 1000000");
			cfg->ports.max_connections = (unsigned)v;
			break;
		case OPT_MAXCONN_PORT:
			if (ph_parse_uint(optarg, 1, 1000000, &v))
				BAD("expected a number, 1 to 1000000");
			cfg->ports.max_conns_per_port = (unsigned)v;
			break;
		case OPT_HALF_CLOSE_TO:
			if (ph_parse_duration_ms(optarg, &v) || !v || v > 86400000)
				BAD("expected a duration such as 500ms, 30s or 2m, at most 24h");
			cfg->ports.half_close_timeout_ms = (unsigned)v;
			break;
		case OPT_UDP:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				BAD("expected on or off");
			cfg->ports.udp_off = !strcmp(optarg, "off");
			break;
		case OPT_UDP_IDLE_TO:
			if (ph_parse_duration_ms(optarg, &v) || !v || v > 86400000)
				BAD("expected a duration such as 500ms, 30s or 2m, at most 24h");
			cfg->ports.udp_idle_timeout_ms = (unsigned)v;
			break;
		case OPT_MAX_UDP_FLOWS:
			if (ph_parse_uint(optarg, 1, 1000000, &v))
				BAD("expected a number, 1 to 1000000");
			cfg->ports.max_udp_flows = (unsigned)v;
			break;
		case OPT_LOGFMT:
			if (ph_log_parse_format(optarg, &cfg->log_format))
				BAD("expected json or text");
			break;
		case OPT_LOGLVL:
			if (ph_log_parse_level(optarg, &cfg->log_level))
				BAD("expected debug, info, warn or error");
			break;
		case OPT_CGROUP:
			if (!*optarg)
				BAD("empty path");
			cfg->cgroup_dir = optarg;
			break;
		case OPT_LISTEN:
			if (strlen(optarg) >= sizeof(cfg->listen_str) ||
			    ph_parse_hostport(optarg, &cfg->listen, &cfg->listen_len, 1))
				BAD("expected ADDR:PORT: a numeric address, [IPv6] or localhost");
			strcpy(cfg->listen_str, optarg);
			break;
		case OPT_TOKEN:
			ret = ph_token_read(optarg, cfg->token, sizeof(cfg->token), &cfg->token_len);
			if (ret)
				BAD(ret == -EINVAL ? "empty, or not a token68 bearer token" :
				    ret == -EFBIG ? "token too long" : ph_strerror(ret));
			cfg->token_path = optarg;
			break;
		case OPT_KA_IDLE:
		case OPT_KA_INTVL:
			if (ph_parse_uint(optarg, 1, 32767, &v))
				BAD("expected seconds, 1 to 32767");
			*(opt == OPT_KA_IDLE ? &cfg->ports.keepalive.idle_s :
					       &cfg->ports.keepalive.interval_s) = (unsigned)v;
			break;
		case OPT_KA_CNT:
			if (ph_parse_uint(optarg, 1, 127, &v))
				BAD("expected a count, 1 to 127");
			cfg->ports.keepalive.count = (unsigned)v;
			break;
		case OPT_HEAD_TO:
		case OPT_IDLE_TO:
		case OPT_WRITE_TO:
		case OPT_SSE_PING:
			if (ph_parse_duration_ms(optarg, &v) || !v)
				BAD("expected a duration such as 500ms, 5s or 2m");
			*(opt == OPT_HEAD_TO ? &cfg->http.head_timeout_ms :
			  opt == OPT_IDLE_TO ? &cfg->http.idle_timeout_ms :
			  opt == OPT_WRITE_TO ? &cfg->http.write_timeout_ms :
						&cfg->http.sse_ping_ms) = v;
			break;
		case OPT_MAX_API:
			if (ph_parse_uint(optarg, 1, 65536, &v))
				BAD("expected a number, 1 to 65536");
			cfg->http.max_conns = (unsigned)v;
			break;
		case OPT_MAX_STREAMS:
			if (ph_parse_uint(optarg, 1, 65536, &v))
				BAD("expected a number, 1 to 65536");
			cfg->http.max_streams = (unsigned)v;
			break;
		case OPT_PIPE:
			if (ph_parse_uint(optarg, 4096, 1 << 24, &v))
				BAD("expected bytes, 4096 to 16777216");
			cfg->ports.pipe_size = (unsigned)v;
			break;
		case OPT_RELAY_THREADS:
			if (!strcmp(optarg, "auto"))
				v = 0;
			else if (ph_parse_uint(optarg, 1, PH_RELAY_THREADS_MAX, &v))
				BAD("expected auto or a number, 1 to 64");
			cfg->ports.relay_threads = (unsigned)v;
			break;
		case OPT_BACKLOG:
			if (ph_parse_uint(optarg, 1, 65535, &v))
				BAD("expected a number, 1 to 65535");
			cfg->ports.backlog = (unsigned)v;
			break;
		case OPT_DISCOVERY:
			if (!strcmp(optarg, "auto"))
				cfg->ports.discovery = PH_DISCOVERY_AUTO;
			else if (!strcmp(optarg, "events"))
				cfg->ports.discovery = PH_DISCOVERY_EVENTS;
			else if (!strcmp(optarg, "bpf"))
				cfg->ports.discovery = PH_DISCOVERY_BPF;
			else if (!strcmp(optarg, "perf"))
				cfg->ports.discovery = PH_DISCOVERY_PERF;
			else if (!strcmp(optarg, "poll") || !strcmp(optarg, "proc"))
				cfg->ports.discovery = PH_DISCOVERY_POLL;
			else
				BAD("expected auto, events, bpf, perf, poll or proc");
			cfg->ports.force_proc = !strcmp(optarg, "proc");
			break;
		case OPT_RELAY:
			if (strcmp(optarg, "splice") && strcmp(optarg, "copy"))
				BAD("expected splice or copy");
			cfg->ports.force_copy = !strcmp(optarg, "copy");
			break;
		case OPT_CLIENT_CC:
			if (strcmp(optarg, "auto") && cc_check(optarg, why, sizeof(why)))
				BAD(why);
			snprintf(cfg->ports.client_cc, sizeof(cfg->ports.client_cc), "%s",
				 strcmp(optarg, "auto") ? optarg : "");
			break;
		case OPT_UPGRADE_TO:
			if (ph_parse_duration_ms(optarg, &v) || !v || v > 600000)
				BAD("expected a duration such as 500ms, 5s or 1m, at most 10m");
			cfg->upgrade_timeout_ms = (unsigned)v;
			break;
		case OPT_SUPERVISE:
			if (cfg->supervise_arg) {
				fprintf(err, "portholed: --supervise given twice\n");
				return PH_CONFIG_USAGE;
			}
			/* getopt permutes argv; the string itself is what the
			 * supervisor leaves out of its child's command line */
			cfg->supervise_arg = argv[optind - 1];
			break;
		case OPT_VERSION:
			fprintf(out, "portholed %s\n", PH_VERSION);
			return PH_CONFIG_EXIT_OK;
		case OPT_HELP:
			fputs(usage_text, out);
			return PH_CONFIG_EXIT_OK;
		case ':':
			fprintf(err, "portholed: option '%s' needs a value\n", argv[optind - 1]);
			return PH_CONFIG_USAGE;
		default:
			fprintf(err, "portholed: unknown option '%s' (see --help)\n", argv[optind - 1]);
			return PH_CONFIG_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(err, "portholed: unexpected argument '%s' (see --help)\n", argv[optind]);
		return PH_CONFIG_USAGE;
	}
	return PH_CONFIG_RUN;
}
