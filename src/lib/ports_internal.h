/* SPDX-License-Identifier: MIT */
/* ports_internal.h - state shared by the port worker's files (exposure, accept, lifecycle)
 *
 * The port subsystem is one worker thread with one event loop, split by the
 * stage of the pipeline each file serves:
 *
 *   exposure.c   a scan's decisions -> the port table: bind EXTERNAL:port
 *                (a TCP listener, or a UDP socket handed to relay_udp.c),
 *                enter and leave states, publish events
 *   accept.c     external listeners -> relays: the connection limit, the
 *                pause on descriptor exhaustion, dealing clients to threads
 *   lifecycle.c  start/stop of a cycle, the command mailbox (quiesce,
 *                resume, stop), the scan timer, and the public ph_ports_* API
 *
 * Everything declared here runs on the worker thread unless it says
 * otherwise; nothing here is part of the library's public interface.
 */
#ifndef PH_PORTS_INTERNAL_H
#define PH_PORTS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "accept.h"
#include "discovery.h"
#include "discovery_events.h"
#include "fdstore.h"
#include "log.h"
#include "loop.h"
#include "porthole.h"
#include "relay.h"
#include "relay_threads.h"
#include "relay_udp.h"
#include "rtnl.h"
#include "rules.h"
#include "steer.h"

/* failed scans and accept pauses: at most this many warnings per window */
#define SCAN_ERR_BURST		3
#define SCAN_ERR_WINDOW_MS	60000

/* commands posted to the worker (lifecycle.c) */
enum cmd { CMD_NONE, CMD_STOP, CMD_QUIESCE, CMD_RESUME, CMD_FREEZE, CMD_IMPORT };

/* Sockets reported opening or closing that the next scan must show or not show (lifecycle.c) */
#define VERIFY_MAX	32

/**
 * struct own_expect - a listen-event record the worker's own bind or close will produce
 * @port:	local port
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP or IPPROTO_UDP
 * @listen:	entering LISTEN or bound (UDP), or leaving it (close)
 */
struct own_expect {
	uint16_t port;
	uint8_t family;
	uint8_t proto;
	bool listen;
};

/**
 * struct verify_item - what a report says the next scan must show
 * @port, @family, @proto: the socket's
 * @saddr:	its IPv4 address (network order; 0: IPv6, any address)
 * @gone:	reported closing: the scan must not show it (it is reported
 *		just before the kernel unhashes it); else reported listening
 *		(TCP: just before the kernel hashes it)
 */
struct verify_item {
	uint16_t port;
	uint8_t family;
	uint8_t proto;
	uint32_t saddr;
	bool gone;
};

/**
 * struct ext_listener - one external socket of a port, on one address
 * @io:		its loop registration (TCP: the listener; unused for UDP)
 * @fd:		the socket, -1 when this slot is free (UDP: owned by @ux,
 *		kept here only to say the slot is in use)
 * @inode:	its inode, reported to the rules as the daemon's own
 * @at:		the external address it is bound to
 * @e:		its port
 * @ux:		UDP: the relay's handle of the socket (relay_udp.h), else NULL
 */
struct ext_listener {
	struct ph_io io;
	int fd;
	uint64_t inode;
	struct ph_ext_addr at;
	struct port_entry *e;
	struct ph_udp_ext *ux;
};

/**
 * struct port_entry - one row of the port table: a (port, proto)
 * @owner:	relay accounting (TCP connections on this port); embedded first
 * @d:		the decision it reflects (d.port, d.proto: the row's key)
 * @state:	FORWARDED, CONFLICT, EXCLUDED or PUBLIC
 * @ls:		external listeners, one per external address of the families
 *		the port is exposed on (slots, not packed: each is registered
 *		with the loop by address)
 * @ext_gen:	cycle.ext_gen its listeners were last matched to
 * @target:	connect address of the service
 * @capped:	at the per-port cap: its listener is not watched
 * @cap_hits:	times it reached the cap (read by /ports under table_lock)
 * @udp_flows:	UDP: flows open on its external sockets (kept by relay_udp.c
 *		on the worker, read by /ports under table_lock)
 * @since_ms:	wall clock when @state was entered
 * @error:	bind error for CONFLICT
 * @steer_fams:	families (PH_FAM_*) steered now: the SOCKHASH holds the
 *		service's listener under (family, port); those external
 *		addresses get no listener of ours
 * @steer_inode: the listener in the SOCKHASH
 * @steer_tried: the listener last tried (steered or failed): tried again
 *		only when the service restarts
 * @steer_why:	why a port --steer names is relayed instead ("" otherwise)
 * @put:	drops the table's reference after the event batch (exposure.c)
 * @cycle:	back pointer
 */
struct port_entry {
	struct ph_relay_owner owner;
	struct ph_decision d;
	enum ph_port_state state;
	struct ext_listener ls[PH_MAX_EXT_ADDRS];
	uint32_t ext_gen;
	bool capped;
	_Atomic uint64_t cap_hits;
	_Atomic uint32_t udp_flows;
	struct sockaddr_storage target;
	socklen_t tlen;
	int64_t since_ms;
	char error[80];
	uint8_t steer_fams;
	uint64_t steer_inode;
	uint64_t steer_tried;
	char steer_why[160];
	struct ph_defer put;
	struct cycle *cycle;
};

/**
 * struct cycle - everything one start..stop owns
 */
struct cycle {
	struct ph_ports *p;
	pthread_t thread;
	struct ph_loop loop;
	struct ph_scanner scanner;
	struct ph_scan scan;
	struct ph_relay_ctx relays;
	struct ph_relay_threads threads;	/* relay threads besides this one */
	struct ph_udp_relay *udp;	/* UDP flows of every UDP port; NULL with --udp off */
	struct ph_timer scan_timer;
	unsigned scan_interval_ms;	/* the configured one, or the mechanism's default */
	unsigned safety_ms;	/* the safety net's current interval (events: it stretches) */
	size_t scan_changes;	/* port table changes the last apply made */
	bool scan_valid;	/* @scan is the last successful scan (a base for a partial one) */
	bool safety_stretch;	/* events cover every protocol: the safety net may stretch */
	struct ph_events events;	/* listen events; ring_fd -1 when polling */
	struct ph_io events_io;
	struct ph_timer settle_timer;	/* the second look after an event (lifecycle.c) */
	/* our own binds and closes, in order: their records cause no scan */
	struct own_expect *expect;
	size_t n_expect, cap_expect, expect_head;
	/* sockets reported listening (closing), to be found (not found) by
	 * the next scan; else the worker looks again (the report precedes
	 * the hashing or unhashing) */
	struct verify_item verify[VERIFY_MAX];
	unsigned n_verify;
	bool verify_blind;	/* too many, or port 0: look again without checking */
	unsigned settle_tries;
	uint64_t event_scan_end_ns;	/* when the last scan on events ended */
	unsigned burst_gap_ms;	/* in a burst: events wait this long for their scan */
	unsigned quick_scans;	/* event scans in a row, each close behind the last */
	struct ph_accept_backoff accept_backoff;	/* out of descriptors */
	struct ph_steer steer;		/* --steer: off (link_fd -1) when not asked or refused */
	char steer_off[160];		/* why steering is off although --steer asked */

	/* table: sorted by (d.port, d.proto), TCP before UDP on a port */
	struct port_entry **entries;
	size_t n_entries;
	struct ph_decision *decisions;
	size_t n_decisions;

	/* built during an apply: the next table */
	struct port_entry **next;
	size_t n_next;

	uint64_t *own;		/* scratch: own inodes for the rules */
	size_t cap_own;

	/* external addresses (rtnl.h): written under table_lock */
	struct ph_rtnl_watch rtnl;
	struct ph_io rtnl_io;
	bool rtnl_stale;	/* a dump failed: the model may be old; dump at the next scan */
	struct ph_ext_spec specs[PH_MAX_EXT_SPECS + 1];
	size_t n_specs;
	struct ph_addr_set ext;
	uint32_t ext_gen;	/* bumped whenever @ext changes */
	uint32_t specs_missing;	/* specs warned about as not configured */
	bool ext_warned;	/* warned that there is no external address */
	struct ph_ratelimit rtnl_rl;
	bool quiesced;
	bool adoption_settled;	/* adopted listeners not taken by the first scan released */
	bool accept_paused;	/* fd exhaustion back-off */
	bool accepting;		/* listeners registered for EPOLLIN */
	_Atomic bool limit_wait;	/* not accepting: relay threads' closes wake us */
	unsigned per_port_cap;	/* max_conns_per_port, or its default for this cycle */
	size_t n_capped;	/* entries at the cap */
	uint64_t quiesce_epoch;
	struct ph_ratelimit scan_rl;
};

struct ph_ports {
	struct ph_config cfg;
	pthread_mutex_t life_lock;	/* lifecycle calls, one at a time */
	pthread_mutex_t table_lock;	/* cycle's table vs readers */
	pthread_mutex_t own_lock;	/* own inodes added at run time */
	pthread_mutex_t cmd_lock;	/* mailbox */
	pthread_cond_t cmd_cond;
	enum cmd cmd;
	void *cmd_arg;			/* CMD_IMPORT's */
	bool frozen;			/* CMD_FREEZE: the worker waits until cleared */
	int cmd_result;
	bool cmd_done;
	/* the posted (asynchronous) command: one at a time, see ph_ports_post() */
	enum cmd acmd;			/* posted, not yet taken by the worker */
	bool apending;			/* posted, result not yet collected */
	bool adone;			/* the worker ran it: @aresult is valid */
	int aresult;
	int anotify;			/* eventfd written when done, -1: none */
	uint64_t own[PH_MAX_OWN_INODES];
	size_t n_own;
	struct cycle *cycle;		/* NULL when stopped; changed under life_lock */
	_Atomic bool quiesced;
	_Atomic bool running;		/* @cycle != NULL, readable without a lock */
	struct ph_bus *bus;
	struct ph_stats stats;
	bool poll_said;			/* "polling, because ..." logged once */
	bool steer_said;		/* "steering is off, because ..." logged once */
	bool udp_events_said;		/* "no UDP events, because ..." logged once */
};


/* ---- lifecycle.c --------------------------------------------------------- */

/**
 * events_expect_own() - note that the worker just made one of its own
 * sockets enter (@listen) or leave LISTEN, so that its record causes no scan
 * @c:		cycle (no-op when it has no listen events)
 * @family:	AF_INET or AF_INET6
 * @proto:	IPPROTO_TCP or IPPROTO_UDP
 * @port:	the socket's port
 * @listen:	true after listen() (TCP) or bind() (UDP), false after close()
 */
void events_expect_own(struct cycle *c, int family, int proto, uint16_t port, bool listen);

/**
 * ports_send_cmd() - post @cmd (with @arg) to the worker and wait for its
 * answer; the caller holds life_lock and p->cycle is set
 * Return: the command's result, or -EBUSY while an upgrade holds the worker
 * frozen (ph_ports_freeze(): it would never answer)
 */
int ports_send_cmd(struct ph_ports *p, enum cmd cmd, void *arg);

/* ports_send_cmd() under life_lock when a cycle runs. Return: its result, or
 * -ESRCH when the port subsystem is not started */
int ports_cmd_if_started(struct ph_ports *p, enum cmd cmd, void *arg);

/* ---- handover_ports.c ---------------------------------------------------- */

/* CMD_FREEZE on the worker: freeze the relay threads, answer, wait for the thaw */
void handover_worker_freeze(struct cycle *c);

/* CMD_IMPORT on the worker: Return: relays imported */
int handover_worker_import(struct cycle *c, void *arg);

/* ---- exposure.c ---------------------------------------------------------- */

/** port_entry_info() - the public view of @e (caller holds table_lock or is the worker) */
void port_entry_info(const struct port_entry *e, struct ph_port_info *info);

/**
 * port_entry_destroy() - take @e out of service: close its listener, drop
 * the table's reference (relays still open on it, on any thread, keep it alive)
 * @for_good: the port is withdrawn (its listeners leave the fd store and stop
 *	listening in every copy); false for a stop, which leaves the stored
 *	copies to the next process
 */
void port_entry_destroy(struct cycle *c, struct port_entry *e, bool for_good);

/**
 * exposure_scan() - scan now and apply the result to the port table
 * @c:		cycle
 *
 * A failed scan changes nothing (the previous table stands) and is counted
 * and logged, rate-limited.
 */
void exposure_scan(struct cycle *c);
/* exposure_scan() dumping only @tcp and/or @udp sockets again, the last
 * picture of the other protocol kept (a full scan if there is none) */
void exposure_scan_some(struct cycle *c, bool tcp, bool udp);

/**
 * exposure_addresses_init() - choose the first external addresses (worker,
 * before the first scan)
 */
void exposure_addresses_init(struct cycle *c);

/**
 * exposure_addresses_recheck() - dump addresses and routes again and follow
 * any change (on resume: the VM may have been restored as a clone)
 */
void exposure_addresses_recheck(struct cycle *c);

/**
 * exposure_steer_destroy() - SOCK_DESTROY every steered connection (snapshot prepare)
 * Return: how many were destroyed
 */
size_t exposure_steer_destroy(struct cycle *c);

/* ph_io_fn of the rtnetlink subscription (cycle.rtnl_io) */
void exposure_on_rtnl(struct ph_loop *loop, struct ph_io *io, uint32_t events);

/* ---- accept.c ------------------------------------------------------------ */

/**
 * accept_update() - watch every external listener for input, or none,
 * as the limit, the quiesce state and the descriptor back-off allow
 */
void accept_update(struct cycle *c);

/* ph_io_fn of an external listener (struct port_entry.io) */
void accept_on_listener(struct ph_loop *loop, struct ph_io *io, uint32_t events);

/* struct ph_relay_ctx.on_closed of the worker's own relays */
void accept_on_relay_closed(struct ph_relay_ctx *ctx, struct ph_relay_owner *owner);

/* struct ph_relay_threads.on_closed: runs on a relay thread */
void accept_on_thread_relay_closed(void *arg, struct ph_relay_owner *owner);

/* The cap of one port: max_conns_per_port, or its default (see porthole.h) */
unsigned accept_per_port_cap(const struct ph_config *cfg, int fd_ceiling);

/* @e's listener closes: it no longer counts as capped */
void accept_entry_uncap(struct cycle *c, struct port_entry *e);

#endif /* PH_PORTS_INTERNAL_H */
