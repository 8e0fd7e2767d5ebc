// SPDX-License-Identifier: MIT
/* metrics.c - /metrics: Prometheus text exposition (format 0.0.4) of porthole's counters
 *
 * Every family gets "# HELP" and "# TYPE" lines; names follow Prometheus
 * conventions (counters end in _total, durations are in seconds). The scan
 * histogram's buckets are cumulative as the format requires, so they are
 * summed here from the subsystem's per-bucket counts; because those atomics
 * are read one by one while scans go on, the sum is clamped so that
 * buckets never decrease and +Inf equals _count.
 */
#include "metrics.h"
#include "discovery_events.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdatomic.h>

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void ph_metrics_core_load(struct ph_metrics_core *out, struct ph_stats *st)
{
	out->scans = LD(st->scans);
	out->scan_errors = LD(st->scan_errors);
	out->scan_ns_sum = LD(st->scan_ns_sum);
	for (int i = 0; i < PH_SCAN_HIST_BUCKETS; i++)
		out->scan_hist[i] = LD(st->scan_hist[i]);
	out->conns_active = LD(st->conns_active);
	out->conns_total = LD(st->conns_total);
	out->conns_refused = LD(st->conns_refused);
	out->conns_reset = LD(st->conns_reset);
	out->bytes_to_service = LD(st->bytes_to_service);
	out->bytes_to_client = LD(st->bytes_to_client);
	out->accept_pauses = LD(st->accept_pauses);
	out->bind_conflicts = LD(st->bind_conflicts);
	out->address_changes = LD(st->address_changes);
	out->netlink_resyncs = LD(st->netlink_resyncs);
	for (int i = 0; i < PH_RELAY_END_COUNT; i++)
		out->relay_closed[i] = LD(st->relay_closed[i]);
	out->listen_events = LD(st->listen_events);
	out->listen_events_lost = LD(st->listen_events_lost);
	out->listen_events_own = LD(st->listen_events_own);
	out->discovery_events = (int)LD(st->discovery_events);
	out->discovery_udp_events = (int)LD(st->discovery_udp_events);
	out->safety_catches = LD(st->safety_catches);
	out->udp_flows_open = LD(st->udp.flows_open);
	out->udp_flows_created = LD(st->udp.flows_created);
	out->udp_flows_evicted = LD(st->udp.flows_evicted);
	out->udp_flows_timed_out = LD(st->udp.flows_timed_out);
	out->udp_flows_refused = LD(st->udp.flows_refused);
	out->udp_dgrams_in = LD(st->udp.dgrams_in);
	out->udp_dgrams_out = LD(st->udp.dgrams_out);
	out->udp_bytes_in = LD(st->udp.bytes_in);
	out->udp_bytes_out = LD(st->udp.bytes_out);
	for (int i = 0; i < PH_UDP_DROP__COUNT; i++)
		out->udp_drops[i] = LD(st->udp.drops[i]);
}

static void family(struct ph_buf *b, const char *name, const char *type, const char *help)
{
	ph_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void single(struct ph_buf *b, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	family(b, name, type, help);
	ph_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void scan_histogram(struct ph_buf *b, const struct ph_metrics_core *c)
{
	const char *name = "porthole_scan_duration_seconds";
	uint64_t cum = 0, count = c->scans;

	family(b, name, "histogram", "Duration of listener scans.");
	for (int i = 0; i < PH_SCAN_HIST_BUCKETS; i++) {
		unsigned us = ph_scan_hist_bounds_us[i];

		cum += c->scan_hist[i];
		if (cum > count)
			count = cum;
		ph_buf_printf(b, "%s_bucket{le=\"%u.%06u\"} %" PRIu64 "\n", name, us / 1000000,
			      us % 1000000, cum);
	}
	ph_buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, count);
	ph_buf_printf(b, "%s_sum %" PRIu64 ".%09" PRIu64 "\n", name, c->scan_ns_sum / 1000000000u,
		      c->scan_ns_sum % 1000000000u);
	ph_buf_printf(b, "%s_count %" PRIu64 "\n", name, count);
}

static bool tcp_forwarded(const struct ph_port_info *pi)
{
	return pi->state == PH_PORT_FORWARDED && pi->proto != IPPROTO_UDP;
}

/* Per forwarded TCP port: connections open now, and how often it hit its cap */
static void port_series(struct ph_buf *b, const struct ph_metrics_input *in)
{
	family(b, "porthole_port_connections", "gauge",
	       "Relayed connections open now, per forwarded TCP port.");
	for (size_t i = 0; i < in->n_ports; i++)
		if (tcp_forwarded(&in->ports[i]))
			ph_buf_printf(b, "porthole_port_connections{port=\"%u\"} %u\n",
				      in->ports[i].port, in->ports[i].connections);
	family(b, "porthole_port_cap_hits_total", "counter",
	       "Times a forwarded TCP port reached --max-connections-per-port.");
	for (size_t i = 0; i < in->n_ports; i++)
		if (tcp_forwarded(&in->ports[i]))
			ph_buf_printf(b, "porthole_port_cap_hits_total{port=\"%u\"} %" PRIu64 "\n",
				      in->ports[i].port, in->ports[i].cap_hits);
	family(b, "porthole_steered_connections", "gauge",
	       "Connections of the service open now on the external addresses, per steered "
	       "port (--steer; counted with sock_diag, not relayed).");
	for (size_t i = 0; i < in->n_ports; i++)
		if (in->ports[i].state == PH_PORT_STEERED)
			ph_buf_printf(b, "porthole_steered_connections{port=\"%u\"} %u\n",
				      in->ports[i].port, in->ports[i].connections);
}

/* The UDP relay: ports, flows, datagrams, bytes, drops */
static void udp_series(struct ph_buf *b, const struct ph_metrics_input *in)
{
	const struct ph_metrics_core *c = &in->core;

	family(b, "porthole_udp_ports", "gauge", "Detected loopback-only UDP sockets by state.");
	for (int s = PH_PORT_FORWARDED; s <= PH_PORT_PUBLIC; s++)
		ph_buf_printf(b, "porthole_udp_ports{state=\"%s\"} %" PRIu64 "\n",
			      ph_port_state_name((enum ph_port_state)s), in->udp_ports_by_state[s]);
	single(b, "porthole_udp_flows", "gauge", "UDP flows (client addresses relayed) open now.",
	       c->udp_flows_open);
	family(b, "porthole_udp_port_flows", "gauge",
	       "UDP flows open now, per forwarded UDP port (their sum is porthole_udp_flows).");
	for (size_t i = 0; i < in->n_ports; i++)
		if (in->ports[i].state == PH_PORT_FORWARDED && in->ports[i].proto == IPPROTO_UDP)
			ph_buf_printf(b, "porthole_udp_port_flows{port=\"%u\"} %u\n",
				      in->ports[i].port, in->ports[i].flows);
	single(b, "porthole_udp_flows_created_total", "counter", "UDP flows created.",
	       c->udp_flows_created);
	family(b, "porthole_udp_flows_ended_total", "counter",
	       "UDP flows ended, by reason: evicted (least recently used, at --max-udp-flows), "
	       "idle_timeout (--udp-idle-timeout), refused (ICMP port unreachable from the "
	       "service). Flows ended by a snapshot prepare, a closed port or a stop are not "
	       "counted here.");
	ph_buf_printf(b, "porthole_udp_flows_ended_total{reason=\"evicted\"} %" PRIu64 "\n"
		      "porthole_udp_flows_ended_total{reason=\"idle_timeout\"} %" PRIu64 "\n"
		      "porthole_udp_flows_ended_total{reason=\"refused\"} %" PRIu64 "\n",
		      c->udp_flows_evicted, c->udp_flows_timed_out, c->udp_flows_refused);
	family(b, "porthole_udp_datagrams_total", "counter", "UDP datagrams relayed, by direction.");
	ph_buf_printf(b, "porthole_udp_datagrams_total{direction=\"to_service\"} %" PRIu64 "\n"
		      "porthole_udp_datagrams_total{direction=\"to_client\"} %" PRIu64 "\n",
		      c->udp_dgrams_in, c->udp_dgrams_out);
	family(b, "porthole_udp_bytes_total", "counter",
	       "UDP payload bytes relayed, by direction.");
	ph_buf_printf(b, "porthole_udp_bytes_total{direction=\"to_service\"} %" PRIu64 "\n"
		      "porthole_udp_bytes_total{direction=\"to_client\"} %" PRIu64 "\n",
		      c->udp_bytes_in, c->udp_bytes_out);
	family(b, "porthole_udp_drops_total", "counter",
	       "UDP datagrams not relayed, by reason.");
	for (int i = 0; i < PH_UDP_DROP__COUNT; i++)
		ph_buf_printf(b, "porthole_udp_drops_total{reason=\"%s\"} %" PRIu64 "\n",
			      ph_udp_drop_name((enum ph_udp_drop)i), c->udp_drops[i]);
}

/* ph_metrics_render() is long because it is the exposition itself: one
 * HELP/TYPE/value group per metric, in the order they are documented. */
/**
 * ph_metrics_render() - append the whole exposition
 * @b:		destination
 * @in:		values
 *
 * Return: 0 or -ENOMEM
 */
int ph_metrics_render(struct ph_buf *b, const struct ph_metrics_input *in)
{
	const struct ph_metrics_core *c = &in->core;
	const struct ph_http_stats *h = in->http;

	single(b, "porthole_scans_total", "counter", "Listener scans performed.", c->scans);
	single(b, "porthole_scan_errors_total", "counter",
	       "Scans that failed (the previous port table was kept).", c->scan_errors);
	scan_histogram(b, c);
	family(b, "porthole_discovery_info", "gauge",
	       "How listeners are discovered: events (scan on each kernel listen/close report; "
	       "source bpf: a BPF program, perf: the perf tracepoint) or poll (periodic scans "
	       "only, source none).");
	ph_buf_printf(b, "porthole_discovery_info{mechanism=\"%s\",source=\"%s\"} 1\n",
		      c->discovery_events ? "events" : "poll",
		      ph_events_source_name((enum ph_events_source)c->discovery_events));
	single(b, "porthole_discovery_udp_events", "gauge",
	       "1 when UDP binds and closes are reported too (cgroup socket hooks); 0: UDP "
	       "services are found by the periodic scan.", (uint64_t)c->discovery_udp_events);
	single(b, "porthole_safety_scan_catches_total", "counter",
	       "Safety-net scans (listen events on) that changed the port table: something "
	       "the events did not report.", c->safety_catches);
	single(b, "porthole_listen_events_total", "counter",
	       "TCP listen/close and UDP bind/close reports from the kernel (each burst "
	       "triggers one scan).",
	       c->listen_events);
	single(b, "porthole_listen_events_own_total", "counter",
	       "Listen/close reports of portholed's own external listeners (no scan).",
	       c->listen_events_own);
	single(b, "porthole_listen_events_lost_total", "counter",
	       "Listen/close reports dropped on a full ring buffer (a scan followed anyway).",
	       c->listen_events_lost);

	family(b, "porthole_ports", "gauge",
	       "Detected loopback listeners by state (TCP and UDP; porthole_udp_ports: UDP).");
	for (int s = PH_PORT_FORWARDED; s < PH_PORT_STATES; s++)
		ph_buf_printf(b, "porthole_ports{state=\"%s\"} %" PRIu64 "\n",
			      ph_port_state_name((enum ph_port_state)s), in->ports_by_state[s]);

	single(b, "porthole_connections_active", "gauge", "Relayed connections open now.",
	       c->conns_active);
	port_series(b, in);
	single(b, "porthole_connections_total", "counter", "Relayed connections accepted.",
	       c->conns_total);
	single(b, "porthole_connections_refused_total", "counter",
	       "Relayed connections the loopback service refused or could not be reached for.",
	       c->conns_refused);
	single(b, "porthole_connections_reset_total", "counter",
	       "Relayed connections ended by a reset on either leg.", c->conns_reset);
	family(b, "porthole_relay_closed_total", "counter",
	       "Relayed connections ended, by reason (clients refused before relaying included).");
	for (int i = 0; i < PH_RELAY_END_COUNT; i++)
		ph_buf_printf(b, "porthole_relay_closed_total{reason=\"%s\"} %" PRIu64 "\n",
			      ph_relay_end_name((enum ph_relay_end)i), c->relay_closed[i]);
	family(b, "porthole_relayed_bytes_total", "counter", "Bytes relayed, by direction.");
	ph_buf_printf(b, "porthole_relayed_bytes_total{direction=\"to_service\"} %" PRIu64 "\n",
		      c->bytes_to_service);
	ph_buf_printf(b, "porthole_relayed_bytes_total{direction=\"to_client\"} %" PRIu64 "\n",
		      c->bytes_to_client);
	single(b, "porthole_accept_pauses_total", "counter",
	       "Accept back-offs on external listeners (descriptor or memory shortage).",
	       c->accept_pauses);
	single(b, "porthole_bind_conflicts_total", "counter",
	       "Ports that could not be exposed because the external port was taken.",
	       c->bind_conflicts);
	single(b, "porthole_address_changes_total", "counter",
	       "Changes of the set of external addresses (ports moved to the new ones).",
	       c->address_changes);
	single(b, "porthole_netlink_resyncs_total", "counter",
	       "Full re-reads of addresses and routes after lost or malformed rtnetlink messages.",
	       c->netlink_resyncs);
	udp_series(b, in);

	single(b, "porthole_quiesced", "gauge", "1 between a snapshot prepare and the resume.",
	       in->quiesced);
	single(b, "porthole_snapshot_prepares_total", "counter", "Snapshot prepares that quiesced.",
	       in->prepares);
	single(b, "porthole_snapshot_resumes_total", "counter",
	       "Resumes performed (explicit or by the first /health after a prepare).",
	       in->resumes);

	if (h) {
		family(b, "porthole_api_requests_total", "counter",
		       "Control API responses by status code.");
		for (int code = 0; code < PH_HTTP_MAX_STATUS; code++)
			if (h->responses[code])
				ph_buf_printf(b, "porthole_api_requests_total{code=\"%d\"} %" PRIu64 "\n",
					      code, h->responses[code]);
		single(b, "porthole_api_connections_active", "gauge",
		       "Control API connections open now.", h->conns_active);
		single(b, "porthole_api_connections_total", "counter",
		       "Control API connections accepted.", h->conns_total);
		single(b, "porthole_api_connections_rejected_total", "counter",
		       "Control API connections answered 503 because every slot was busy.",
		       h->conns_rejected);
		single(b, "porthole_api_connections_evicted_total", "counter",
		       "Idle, head-incomplete or lingering control API connections closed to admit a new one.",
		       h->conns_evicted);
		single(b, "porthole_api_event_streams_evicted_total", "counter",
		       "Event streams closed to admit a new one (stream cap or connection cap).",
		       h->streams_evicted);
		single(b, "porthole_api_event_streams_cut_total", "counter",
		       "Event streams closed because their client stopped reading.", h->streams_cut);
		family(b, "porthole_api_timeouts_total", "counter",
		       "Control API connections closed by a deadline.");
		ph_buf_printf(b, "porthole_api_timeouts_total{kind=\"request\"} %" PRIu64 "\n"
			      "porthole_api_timeouts_total{kind=\"idle\"} %" PRIu64 "\n"
			      "porthole_api_timeouts_total{kind=\"write\"} %" PRIu64 "\n",
			      h->timeouts_head, h->timeouts_idle, h->timeouts_write);
	}
	single(b, "porthole_api_event_streams", "gauge", "Event-stream clients connected.",
	       in->sse_clients);
	single(b, "porthole_api_events_lost_total", "counter",
	       "Port events dropped for event-stream clients that read too slowly.", in->sse_lost);
	family(b, "porthole_build_info", "gauge", "Version of portholed.");
	ph_buf_printf(b, "porthole_build_info{version=\"%s\"} 1\n", PH_VERSION);
	return b->oom ? -ENOMEM : 0;
}
