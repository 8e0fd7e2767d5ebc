/* SPDX-License-Identifier: MIT */
/* metrics.h - /metrics: Prometheus text exposition (format 0.0.4) of porthole's counters */
#ifndef PH_METRICS_H
#define PH_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "json.h"
#include "porthole.h"

/**
 * struct ph_metrics_core - plain copy of struct ph_stats (see porthole.h)
 * @scan_hist:	per-bucket counts as the port subsystem keeps them (a scan is
 *		counted in the first bucket whose bound it does not exceed);
 *		rendering makes them cumulative
 */
struct ph_metrics_core {
	uint64_t scans, scan_errors, scan_ns_sum;
	uint64_t scan_hist[PH_SCAN_HIST_BUCKETS];
	uint64_t conns_active, conns_total, conns_refused, conns_reset;
	uint64_t bytes_to_service, bytes_to_client;
	uint64_t accept_pauses, bind_conflicts;
	uint64_t address_changes, netlink_resyncs;
	uint64_t relay_closed[PH_RELAY_END_COUNT];
	uint64_t listen_events, listen_events_lost, listen_events_own;
	int discovery_events;	/* enum ph_events_source: 0 polling, 1 bpf, 2 perf */
	int discovery_udp_events;	/* 1: UDP binds and closes are reported too */
	uint64_t safety_catches;
	/* UDP relay (struct ph_udp_counters) */
	uint64_t udp_flows_open, udp_flows_created, udp_flows_evicted, udp_flows_timed_out,
		 udp_flows_refused, udp_dgrams_in, udp_dgrams_out, udp_bytes_in, udp_bytes_out;
	uint64_t udp_drops[PH_UDP_DROP__COUNT];
};

/**
 * struct ph_metrics_input - everything one /metrics answer shows
 * @core:	port subsystem counters
 * @ports_by_state: current ports per enum ph_port_state (TCP and UDP)
 * @udp_ports_by_state: the UDP ones among them
 * @ports:	the port table (for per-port series), may be NULL
 * @n_ports:	its entries
 * @http:	API connection layer counters
 * @prepares:	snapshot prepares that quiesced
 * @resumes:	resumes that ran (explicit or via /health)
 * @quiesced:	state now
 * @sse_clients: event streams open
 * @sse_lost:	events dropped for slow event-stream clients
 */
struct ph_metrics_input {
	struct ph_metrics_core core;
	uint64_t ports_by_state[PH_PORT_STATES];
	uint64_t udp_ports_by_state[PH_PORT_STATES];
	const struct ph_port_info *ports;
	size_t n_ports;
	const struct ph_http_stats *http;
	uint64_t prepares, resumes;
	bool quiesced;
	uint64_t sse_clients, sse_lost;
};

/* Copy the live atomics of @st (relaxed loads) */
void ph_metrics_core_load(struct ph_metrics_core *out, struct ph_stats *st);

/* Append the exposition to @b. Return: 0 or -ENOMEM */
int ph_metrics_render(struct ph_buf *b, const struct ph_metrics_input *in);

#define PH_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* PH_METRICS_H */
