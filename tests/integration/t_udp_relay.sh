# SPDX-License-Identifier: MIT
# t_udp_relay.sh - relayed UDP end to end: datagram integrity, order, flows, idle timeout,
# LRU eviction, snapshot prepare/resume, a service restarting on its port
#
# Services are udp_peer.py echo servers on loopback in the guest; clients
# run in the host against 169.254.0.21. Every flow count is read from
# /metrics (porthole_udp_*).

metric()
{
	in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

metric_is() { [ "$(metric "$1")" = "$2" ]; }

# The "flows" of PORT's UDP row in /ports ("null" when absent)
ports_flows()
{
	in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/ports" |
		jq -r --argjson p "$1" '.ports[] | select(.port == $p and .proto == "udp") | .flows'
}

daemon_start --scan-interval 50 --udp-idle-timeout 1s --max-udp-flows 8 || exit 1

# --- every size from 1 to 65,507 bytes, both ways --------------------------
serve_udp 127.0.0.1 5301 || exit 1
echo_pid=$PH_LAST_PID
if wait_for "$(scaled 1000)" udp_exposed 5301; then
	ok "127.0.0.1:5301/udp exposed on $GUEST_IP:5301"
else
	fail "127.0.0.1:5301/udp exposed" "$(in_guest ss -lunp)"
	exit 1
fi
t0=$(now_ms)
out=$(udp_peer host sizes "$GUEST_IP" 5301 1 65507 2>&1)
rc=$?
ms=$(($(now_ms) - t0))
if [ "$rc" = 0 ]; then
	ok "every datagram size 1..65,507 relayed intact both ways ($out; $ms ms)"
else
	fail "every datagram size 1..65,507 relayed intact both ways" "$out"
fi
figure sizes_1_65507_ms "$ms" ms
drops=$(in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" | awk '/^porthole_udp_drops_total/ { s += $2 } END { print s + 0 }')
check "no datagram dropped on the way ($drops)" [ "$drops" = 0 ]

# --- order per flow: 20,000 datagrams, 32 in flight ------------------------
out=$(udp_peer host order "$GUEST_IP" 5301 20000 32 2>&1)
check "20,000 datagrams of one flow come back in order ($out)" [ $? = 0 ]

# --- a flow per client: the service sees distinct peers --------------------
out=$(udp_peer host peers "$GUEST_IP" 5301 6 2>&1)
check "6 client ports are 6 distinct peers at the service (saw $out)" [ "$out" = 6 ]

# --- idle timeout (1 s) ------------------------------------------------------
if wait_for "$(scaled 3000)" metric_is porthole_udp_flows 0; then
	ok "every flow ended within 3 s of the last datagram (--udp-idle-timeout 1s)"
else
	fail "flows end after the idle timeout" "flows: $(metric porthole_udp_flows)"
fi
to=$(metric 'porthole_udp_flows_ended_total{reason="idle_timeout"}')
check "idle timeouts counted (>= 8: $to)" [ "${to:-0}" -ge 8 ]
udp_peer host ask "$GUEST_IP" 5301 41001 >/dev/null
check "one datagram opens one flow" metric_is porthole_udp_flows 1
sleep 0.5
udp_peer host ask "$GUEST_IP" 5301 41001 >/dev/null	# refreshes it
sleep 0.7
check "traffic refreshes the idle timer (flow alive 1.2 s after its first datagram)" \
	metric_is porthole_udp_flows 1

# --- LRU eviction at --max-udp-flows 8 ----------------------------------------
wait_for "$(scaled 3000)" metric_is porthole_udp_flows 0
ev0=$(metric 'porthole_udp_flows_ended_total{reason="evicted"}')
out=$(udp_peer host peers "$GUEST_IP" 5301 12 seq 2>&1)
check "12 clients one after another at a limit of 8 flows are all answered ($out peers)" \
	[ "$out" = 12 ]
check "at most 8 flows open (--max-udp-flows 8)" [ "$(metric porthole_udp_flows)" -le 8 ]
ev=$(( $(metric 'porthole_udp_flows_ended_total{reason="evicted"}') - ev0 ))
check "4 flows evicted, least recently used first ($ev)" [ "$ev" -eq 4 ]

# --- snapshot prepare / resume ---------------------------------------------
wait_for "$(scaled 3000)" metric_is porthole_udp_flows 0
udp_peer host peers "$GUEST_IP" 5301 3 >/dev/null
check "3 flows before prepare" metric_is porthole_udp_flows 3
check "/ports: the UDP row of 5301 has 3 flows ($(ports_flows 5301))" [ "$(ports_flows 5301)" = 3 ]
check "porthole_udp_port_flows{port=\"5301\"} is 3" metric_is 'porthole_udp_port_flows{port="5301"}' 3
in_host curl -s -m 2 -D "$PH_TMP/hdr" -o "$PH_TMP/out" "http://$GUEST_IP:$API_PORT/ports"
# prepare at once: the flows idle out after 1 s, and the schema check of
# that /ports answer (a Python start-up) took longer than that under load
code=$(in_host curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://$GUEST_IP:$API_PORT/snapshot/prepare")
api_conforms GET /ports 200 "$PH_TMP/hdr" "$PH_TMP/out"
check "POST /snapshot/prepare: 204" [ "$code" = 204 ]
check "prepare dropped every flow" metric_is porthole_udp_flows 0
check "/ports: 0 flows on 5301 after prepare" [ "$(ports_flows 5301)" = 0 ]
check "the external UDP socket stays bound while quiesced" udp_exposed 5301
check "prepare is logged with the flows dropped" daemon_log_has '"quiesced for snapshot".*"udp_flows_dropped":3'
# quiesced: a client's datagram is not relayed (no flow, nothing sent on),
# it waits in the external socket's buffer and is relayed after the resume
sent0=$(metric 'porthole_udp_datagrams_total{direction="to_service"}')
bg_host "$PH_PYTHON" "$PH_UDP_PEER" ask "$GUEST_IP" 5301 41005 "$(scaled 5000 | awk '{ print $1 / 1000 }')" \
	>"$PH_TMP/ask_quiesced" 2>&1
ask_pid=$PH_LAST_PID
sleep 0.5
check "quiesced: no flow made for a new client" metric_is porthole_udp_flows 0
check "quiesced: no datagram relayed" \
	metric_is 'porthole_udp_datagrams_total{direction="to_service"}' "$sent0"
check "quiesced: the client has no answer yet" [ ! -s "$PH_TMP/ask_quiesced" ]
code=$(in_host curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://$GUEST_IP:$API_PORT/snapshot/resume")
check "POST /snapshot/resume: 204" [ "$code" = 204 ]
wait "$ask_pid"
out=$(cat "$PH_TMP/ask_quiesced")
check "the datagram that waited while quiesced is relayed after resume ($out)" \
	[ "${out%:*}" = 127.0.0.1 ]
out=$(udp_peer host ask "$GUEST_IP" 5301 41002 2>&1)
check "after resume a client is relayed again ($out)" [ "${out%:*}" = 127.0.0.1 ]

# --- the service restarts on the same port ---------------------------------
kill_now "$echo_pid"
serve_udp 127.0.0.1 5301 || exit 1
echo_pid=$PH_LAST_PID
ok_after=
for i in $(seq 1 20); do
	out=$(udp_peer host ask "$GUEST_IP" 5301 41003 2>&1) && { ok_after=$i; break; }
	sleep 0.1
done
check "a restarted service on the same port answers through the relay again (try $ok_after)" \
	[ -n "$ok_after" ]
check "its external socket is still (or again) bound" udp_exposed 5301

# --- the service goes away: the port closes ---------------------------------
kill_now "$echo_pid"
if wait_until_not "$(scaled 1000)" udp_exposed 5301; then
	ok "the external UDP socket closes within 1 s of the service"
else
	fail "the external UDP socket closes with the service" "$(in_guest ss -lunp)"
fi
check "flows of a closed port are gone" wait_for "$(scaled 1000)" metric_is porthole_udp_flows 0

in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" >"$PH_TMP/metrics"
metrics_conform "$PH_TMP/metrics"
daemon_stop

# --- ICMP port unreachable ends a flow ---------------------------------------
# Polling once a minute: the port stays exposed after its service is gone,
# so the relay's flow socket gets the ICMP error (ECONNREFUSED).
serve_udp 127.0.0.1 5302 || exit 1
echo_pid=$PH_LAST_PID
daemon_start --discovery poll --scan-interval 60000 || exit 1
wait_for "$(scaled 2000)" udp_exposed 5302
out=$(udp_peer host ask "$GUEST_IP" 5302 41004 2>&1)
check "a flow to 127.0.0.1:5302 answers ($out)" [ "${out%:*}" = 127.0.0.1 ]
kill_now "$echo_pid"
udp_peer host ask "$GUEST_IP" 5302 41004 >/dev/null 2>&1
if wait_for "$(scaled 2000)" metric_is 'porthole_udp_flows_ended_total{reason="refused"}' 1; then
	ok "the service's ICMP port unreachable ended the flow (refused: 1)"
else
	fail "ICMP port unreachable ends the flow" "$(in_host curl -s "http://$GUEST_IP:$API_PORT/metrics" | grep udp)"
fi
check "no flow left open" metric_is porthole_udp_flows 0
daemon_stop
