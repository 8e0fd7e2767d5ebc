/* SPDX-License-Identifier: MIT */
/* porthole.h - the port subsystem: discovery, exposure, relay, lifecycle (public API) */
#ifndef PH_PORTHOLE_H
#define PH_PORTHOLE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrset.h"
#include "events.h"
#include "relay_udp.h"
#include "rules_portset.h"

#define PH_MAX_OWN_INODES 16
#define PH_SCAN_HIST_BUCKETS 12
#define PH_MAX_EXT_SPECS 8

struct ph_fdstore;

/**
 * struct ph_keepalive - TCP keepalive applied to both legs of a relay
 */
struct ph_keepalive {
	unsigned idle_s;	/* TCP_KEEPIDLE, default 30 */
	unsigned interval_s;	/* TCP_KEEPINTVL, default 10 */
	unsigned count;		/* TCP_KEEPCNT, default 3 */
};

/* Defaults of struct ph_config; ph_ports_new() also puts them in fields left 0 */
#define PH_DEFAULT_SCAN_INTERVAL_MS	50	/* polling: scans are the only way to learn */
#define PH_DEFAULT_SAFETY_SCAN_MS	1000	/* with listen events: a safety net */
#define PH_DEFAULT_MAX_CONNECTIONS	65536
#define PH_DEFAULT_BACKLOG		4096
#define PH_DEFAULT_HALF_CLOSE_TIMEOUT_MS 60000

/**
 * enum ph_discovery - when the worker scans
 * @PH_DISCOVERY_AUTO:	kernel listen events if they can be had (BPF, else the
 *			perf tracepoint), else polling
 * @PH_DISCOVERY_EVENTS: listen events (BPF, else perf) or fail to start
 * @PH_DISCOVERY_POLL:	periodic scans only
 * @PH_DISCOVERY_BPF:	listen events from the BPF program only, or fail (tests)
 * @PH_DISCOVERY_PERF:	listen events from the perf tracepoint only, or fail (tests)
 */
enum ph_discovery {
	PH_DISCOVERY_AUTO, PH_DISCOVERY_EVENTS, PH_DISCOVERY_POLL, PH_DISCOVERY_BPF,
	PH_DISCOVERY_PERF,
};

/**
 * struct ph_config - settings of the port subsystem (ph_config_defaults() first)
 * @external:		an external IPv4 address (an address spec besides @ext_specs)
 * @ext_specs:		--external-addr values: addresses or interface names,
 *			followed as they change; none (and no @external): the
 *			first IPv4 address of the interface with the IPv4 default
 *			route and the first global IPv6 address of the one with
 *			the IPv6 default route
 * @n_ext_specs:	how many
 * @scan_interval_ms:	time between periodic scans; 0 (default): 1000 ms with
 *			listen events, 50 ms when polling
 * @discovery:		how the worker learns of new listeners (enum ph_discovery)
 * @allow, @deny:	port filters (see rules.h)
 * @steer:		TCP ports to steer (steer.h) instead of relaying, where the
 *			kernel and our privileges allow it (else relayed)
 * @max_connections:	relayed connections at once; beyond it new clients are
 *			left in the kernel backlog (default 65536)
 * @max_conns_per_port: relayed connections at once on one port; beyond it that
 *			port's clients wait in its backlog, other ports go on;
 *			0: a quarter of @max_connections or of the descriptor
 *			budget ((RLIMIT_NOFILE - PH_FD_RESERVE) / 2), the smaller,
 *			computed at each start
 * @backlog:		listen() backlog of external listeners (default 4096)
 * @keepalive:		TCP keepalive of relayed connections
 * @pipe_size:		F_SETPIPE_SZ of relay pipes; 0: 64 KiB, grown to 256 KiB
 *			for a direction that fills it (bulk); bounds the bytes
 *			buffered per direction
 * @client_cc:		congestion control of the client leg: "" (auto: reno
 *			when @external is link-local, else the system's),
 *			"system", or an algorithm name (see ph_relay_client_cc())
 * @half_close_timeout_ms: once the client sent its FIN, a relay on which
 *			nothing moved for this long is reset (default 60000)
 * @udp_off:		expose TCP only: no UDP socket is scanned or relayed
 * @udp_idle_timeout_ms: a UDP flow with no datagram either way for this long
 *			ends (default 60000)
 * @max_udp_flows:	UDP flows at once over all ports; at the limit the least
 *			recently used one ends for a new client (default 4096)
 * @force_copy:		relay with recv/send instead of splice (tests)
 * @force_proc:		discover through /proc instead of sock_diag (tests)
 * @own_inodes:		sockets of the embedding program (control port) never exposed
 * @fdstore:		the service manager's fd store (fdstore.h), or NULL: new
 *			external listeners are kept in it, and the first scan
 *			takes the listeners a previous process left there
 *			instead of binding (owned by the caller; outlives the
 *			subsystem)
 */
struct ph_config {
	struct in_addr external;
	struct ph_ext_spec ext_specs[PH_MAX_EXT_SPECS];
	unsigned n_ext_specs;
	unsigned scan_interval_ms;
	enum ph_discovery discovery;
	struct ph_portset allow;
	struct ph_portset deny;
	struct ph_portset steer;
	unsigned max_connections;
	unsigned max_conns_per_port;
	unsigned backlog;
	struct ph_keepalive keepalive;
	unsigned pipe_size;
	char client_cc[16];
	unsigned relay_threads;		/* 1 (default); 0: one per CPU we may run on, at most 8 */
	unsigned half_close_timeout_ms;
	bool udp_off;
	unsigned udp_idle_timeout_ms;
	unsigned max_udp_flows;
	bool force_copy;
	bool force_proc;
	uint64_t own_inodes[PH_MAX_OWN_INODES];
	size_t n_own_inodes;
	struct ph_fdstore *fdstore;
};

void ph_config_defaults(struct ph_config *cfg);

/**
 * enum ph_relay_end - why a relay ended (struct ph_stats.relay_closed, the log)
 * @PH_RELAY_END_DONE:		both directions finished (FIN each way): closed normally
 * @PH_RELAY_END_CLIENT_RESET:	the client leg failed: reset by the client, or
 *				another error on it (EPIPE, EHOSTUNREACH, ...)
 * @PH_RELAY_END_SERVICE_RESET:	the service leg failed the same way
 * @PH_RELAY_END_KEEPALIVE_TIMEOUT: the client leg timed out (ETIMEDOUT: keepalive
 *				probes or TCP_USER_TIMEOUT): the client vanished
 * @PH_RELAY_END_HALF_CLOSE_TIMEOUT: the client was gone (its FIN) and nothing moved
 *				for half_close_timeout_ms
 * @PH_RELAY_END_ABANDONED:	the client sent its FIN without a byte before the
 *				service accepted the connection (it was still in
 *				SYN_SENT: the service's accept queue is full)
 * @PH_RELAY_END_QUIESCE:	reset by ph_relay_abort_all(): a snapshot prepare,
 *				a resume (relays older than the prepare) or a stop
 * @PH_RELAY_END_REFUSED:	the service refused the connection (or could not be reached)
 * @PH_RELAY_END_ERROR:		the relay itself failed (memory, epoll registration)
 * Every end but DONE resets both legs (SO_LINGER 0).
 */
enum ph_relay_end {
	PH_RELAY_END_DONE,
	PH_RELAY_END_CLIENT_RESET,
	PH_RELAY_END_SERVICE_RESET,
	PH_RELAY_END_KEEPALIVE_TIMEOUT,
	PH_RELAY_END_HALF_CLOSE_TIMEOUT,
	PH_RELAY_END_QUIESCE,
	PH_RELAY_END_REFUSED,
	PH_RELAY_END_ERROR,
	PH_RELAY_END_ABANDONED,
	PH_RELAY_END_COUNT
};

/* "done", "client_reset", ... (metrics labels, log fields); "?" when out of range */
const char *ph_relay_end_name(enum ph_relay_end end);

/**
 * struct ph_stats - counters for metrics; live for the subsystem's whole life
 * (across start/stop cycles). All fields are updated with relaxed atomics.
 */
struct ph_stats {
	_Atomic uint64_t scans;
	_Atomic uint64_t scan_errors;
	_Atomic uint64_t scan_ns_sum;
	/* scan durations, per bucket (not cumulative): bucket i counts scans in
	 * (bounds_us[i-1], bounds_us[i]]; slower than the last bound: scans minus all */
	_Atomic uint64_t scan_hist[PH_SCAN_HIST_BUCKETS];
	_Atomic uint64_t conns_active;
	_Atomic uint64_t conns_total;
	_Atomic uint64_t conns_refused;		/* backend refused or unreachable */
	_Atomic uint64_t conns_reset;		/* ended by a reset on either leg */
	/* relays ended, by reason; a client refused before its relay started
	 * (connect() failed at once) counts as REFUSED (or ERROR) here too */
	_Atomic uint64_t relay_closed[PH_RELAY_END_COUNT];
	_Atomic uint64_t bytes_to_service;	/* client -> loopback service */
	_Atomic uint64_t bytes_to_client;	/* loopback service -> client */
	_Atomic uint64_t accept_pauses;		/* EMFILE/ENFILE/ENOBUFS back-offs */
	_Atomic uint64_t bind_conflicts;	/* ports entering CONFLICT */
	_Atomic uint64_t address_changes;	/* the external addresses changed */
	_Atomic uint64_t netlink_resyncs;	/* full re-dumps: lost notifications */
	_Atomic uint64_t listen_events;		/* listen/close records from the kernel */
	_Atomic uint64_t listen_events_lost;	/* records the ring buffer had no room for */
	_Atomic uint64_t listen_events_own;	/* records of our own listeners: no scan */
	_Atomic int discovery_events;		/* enum ph_events_source: 0 polls */
	_Atomic int discovery_udp_events;	/* UDP binds and closes reported (cgroup hooks) */
	_Atomic uint64_t safety_catches;	/* safety-net scans that changed the table (events on) */
	struct ph_udp_counters udp;		/* the UDP relay's (relay_udp.h) */
};

extern const unsigned ph_scan_hist_bounds_us[PH_SCAN_HIST_BUCKETS];

/**
 * struct ph_port_list - a copy of the port table (ph_ports_list())
 * @external:	the first external IPv4 address (else the first one) as text,
 *		"" when there is none
 * @external_addrs: all external addresses
 * @ports:	one entry per (port, proto), sorted by port, TCP first
 * @n:		entries
 */
struct ph_port_list {
	char external[PH_ADDR_STRLEN];
	struct ph_addr_set external_addrs;
	struct ph_port_info *ports;
	size_t n;
};

void ph_port_list_free(struct ph_port_list *l);

struct ph_ports;

/**
 * ph_ports_new() - create a stopped subsystem
 * @cfg:	configuration (copied)
 *
 * Return: handle, or NULL with errno set
 */
struct ph_ports *ph_ports_new(const struct ph_config *cfg);

/* Stops it if running, then frees everything (the bus too). */
void ph_ports_free(struct ph_ports *p);

/*
 * Lifecycle. Safe from any thread, concurrently, any number of times:
 * start when running and stop when stopped are no-ops (return 0).
 * stop returns once the worker thread has exited and every socket, pipe and
 * allocation of that cycle is released. They must not be called from the
 * worker thread itself (event subscribers run on their own threads).
 * Return: 0 or -errno
 */
int ph_ports_start(struct ph_ports *p);
int ph_ports_stop(struct ph_ports *p);
int ph_ports_restart(struct ph_ports *p);
bool ph_ports_running(struct ph_ports *p);

/**
 * ph_ports_quiesce() - get ready for a VM snapshot
 * @p:		subsystem
 *
 * Resets every relayed connection (both legs, RST), ends every UDP flow,
 * stops scanning and accepting; the external listeners and UDP sockets stay
 * open so that, after a restore, the kernel queues new clients at once.
 * Idempotent.
 * Return: 0, or -ESRCH when not running
 */
int ph_ports_quiesce(struct ph_ports *p);

/**
 * ph_ports_resume() - recover after a restore (or cancel a quiesce)
 * @p:		subsystem
 *
 * Closes every connection that existed at quiesce time, rescans at once,
 * accepts what queued. Exactly once per quiesce, whoever calls.
 * Return: 1 when this call resumed, 0 when not quiesced, -errno on error
 */
int ph_ports_resume(struct ph_ports *p);
bool ph_ports_quiesced(struct ph_ports *p);

/* Commands that ph_ports_post() hands to the worker without waiting */
enum ph_ports_op { PH_PORTS_QUIESCE = 1, PH_PORTS_RESUME };

/**
 * ph_ports_post() - hand ph_ports_quiesce() or ph_ports_resume() to the
 * worker without waiting for it
 * @p:		subsystem
 * @op:		the command
 * @notify_fd:	an eventfd the worker adds 1 to once the command ran
 *
 * For a caller that must stay responsive (the control API's loop): the
 * worker runs the command on its next turn, writes @notify_fd, and the
 * caller collects the result with ph_ports_post_result(). One posted
 * command at a time; the synchronous calls may run meanwhile.
 * Return: 0 posted; -ESRCH not running; -EBUSY one is posted and not collected
 */
int ph_ports_post(struct ph_ports *p, enum ph_ports_op op, int notify_fd);

/**
 * ph_ports_post_result() - the result of the posted command
 * @p:		subsystem
 *
 * Return: -EINPROGRESS while it runs (or nothing was posted: -ENOENT);
 * otherwise what ph_ports_quiesce()/ph_ports_resume() would have returned,
 * and the slot is free for the next post
 */
int ph_ports_post_result(struct ph_ports *p);

/* Never write the posted command's eventfd again (its owner goes away) */
void ph_ports_post_forget(struct ph_ports *p);

/**
 * ph_ports_list() - copy the current port table
 * @p:		subsystem
 * @out:	filled; free with ph_port_list_free()
 *
 * Return: 0 or -ENOMEM. When stopped, the list is empty.
 */
int ph_ports_list(struct ph_ports *p, struct ph_port_list *out);

struct ph_bus *ph_ports_bus(struct ph_ports *p);
struct ph_stats *ph_ports_stats(struct ph_ports *p);

/* Add a socket of the embedding program that must never be exposed. */
int ph_ports_add_own_inode(struct ph_ports *p, uint64_t inode);

#endif /* PH_PORTHOLE_H */
