# SPDX-License-Identifier: MIT
# t_udp_rules.sh - which UDP sockets portholed exposes: clients, ephemeral ports, lists,
# public and conflicting ports, --udp off, the /proc fallback
#
# /ports rows are read with a small Python filter: port_state PORT PROTO
# prints the row's state ("" when the row does not exist).
# valgrind: yes

port_state()
{
	in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/ports" | "$PH_PYTHON" -c '
import json, sys
for p in json.load(sys.stdin)["ports"]:
    if p["port"] == int(sys.argv[1]) and p["proto"] == sys.argv[2]:
        print(p["state"], p.get("error", ""))
' "$1" "$2"
}

state_is() { [ "$(port_state "$1" "$2" | cut -d' ' -f1)" = "$3" ]; }

ask_ok()
{
	local out
	out=$(udp_peer host ask "$GUEST_IP" "$1" 2>&1) && [ "${out%:*}" = 127.0.0.1 ]
}

read -r eph_lo eph_hi < <(in_guest cat /proc/sys/net/ipv4/ip_local_port_range)
EPH=$((eph_lo + 123))
note "ephemeral range $eph_lo-$eph_hi; the client-like socket uses $EPH"

# services: plain UDP (5401), UDP and TCP on one port (5402), a connected UDP
# client socket (5403), a port held by a connected socket on the external
# address (5404), a port already public on 0.0.0.0 (5405), an ephemeral port
serve_udp 127.0.0.1 5401 || exit 1
serve_udp 127.0.0.1 5402 || exit 1
serve_echo 127.0.0.1 5402 || exit 1
bg_guest "$PH_PYTHON" "$PH_UDP_PEER" connected 127.0.0.1 5403 127.0.0.1 9 >/dev/null
wait_for "$(scaled 3000)" eval "in_guest ss -Hun state established 'sport = :5403' | grep -q ."
serve_udp 127.0.0.1 5404 || exit 1
bg_guest "$PH_PYTHON" "$PH_UDP_PEER" connected "$GUEST_IP" 5404 "$HOST_IP" 9 >/dev/null
wait_for "$(scaled 3000)" eval "in_guest ss -Hun state established 'sport = :5404' | grep -q ."
serve_udp 127.0.0.1 5405 || exit 1
serve_udp 0.0.0.0 5405 hold || exit 1
serve_udp 127.0.0.1 "$EPH" || exit 1

# --- default rules ----------------------------------------------------------
daemon_start --scan-interval 50 || exit 1
check "127.0.0.1:5401/udp is forwarded" wait_for "$(scaled 1000)" state_is 5401 udp forwarded
check "... and answers through $GUEST_IP:5401" ask_ok 5401
check "5402 has a tcp row, forwarded" state_is 5402 tcp forwarded
check "5402 has a udp row, forwarded" state_is 5402 udp forwarded
check "5402/udp answers" ask_ok 5402
check "5402/tcp echoes" roundtrip host "$GUEST_IP" 5402
check "a connected UDP socket (a client) on 127.0.0.1:5403 is not listed" \
	[ -z "$(port_state 5403 udp)" ]
check_not "... nor bound on $GUEST_IP:5403" udp_exposed 5403
st=$(port_state 5404 udp)
check "a port held on the external address by a connected socket is a conflict ($st)" \
	[ "${st%% *}" = conflict ]
check "... whose error says the address is in use" eval '[[ "$st" == *"in use"* ]]'
check "a UDP port served on 0.0.0.0 is public" state_is 5405 udp public
check "an ephemeral-range UDP socket ($EPH) is not listed" [ -z "$(port_state "$EPH" udp)" ]
check_not "... nor bound on $GUEST_IP:$EPH" udp_exposed "$EPH"
in_host curl -s -m 2 -D "$PH_TMP/hdr" -o "$PH_TMP/out" "http://$GUEST_IP:$API_PORT/ports"
api_conforms GET /ports 200 "$PH_TMP/hdr" "$PH_TMP/out"
in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" >"$PH_TMP/metrics"
check "porthole_udp_ports counts the UDP rows by state" \
	grep -q '^porthole_udp_ports{state="forwarded"} 2$' "$PH_TMP/metrics"
metrics_conform "$PH_TMP/metrics"
ctl_out=$(in_host "$PH_BUILD/portholectl" --addr "$GUEST_IP:$API_PORT" ports 2>&1)
check "portholectl ports shows 5401/udp" eval '[[ "$ctl_out" == *"5401/udp "* ]]'
daemon_stop

# --- --allow naming an ephemeral port; udp:/tcp: lists ------------------------
daemon_start --scan-interval 50 --allow "udp:5401,tcp:5402,udp:$EPH" || exit 1
check "--allow udp:$EPH exposes the ephemeral-range socket" \
	wait_for "$(scaled 1000)" state_is "$EPH" udp forwarded
check "... which answers" ask_ok "$EPH"
check "--allow udp:5401: 5401/udp forwarded" state_is 5401 udp forwarded
check "--allow tcp:5402: 5402/tcp forwarded" state_is 5402 tcp forwarded
check "--allow tcp:5402: 5402/udp excluded" state_is 5402 udp excluded
check_not "... and not bound" udp_exposed 5402
daemon_stop

daemon_start --scan-interval 50 --deny "udp:5401,tcp:5402" || exit 1
check "--deny udp:5401: 5401/udp excluded" wait_for "$(scaled 1000)" state_is 5401 udp excluded
check "--deny tcp:5402: 5402/tcp excluded" state_is 5402 tcp excluded
check "--deny tcp:5402: 5402/udp still forwarded" state_is 5402 udp forwarded
daemon_stop

daemon_start --scan-interval 50 --allow 5402 || exit 1
check "--allow 5402 (both protocols): 5402/tcp forwarded" \
	wait_for "$(scaled 1000)" state_is 5402 tcp forwarded
check "--allow 5402 (both protocols): 5402/udp forwarded" state_is 5402 udp forwarded
daemon_stop

# --- --udp off ----------------------------------------------------------------
daemon_start --scan-interval 50 --udp off || exit 1
check "--udp off: TCP still forwarded" wait_for "$(scaled 1000)" state_is 5402 tcp forwarded
sleep 0.2
check "--udp off: no udp row at all" eval \
	'! in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/ports" | grep -q "\"proto\":\"udp\""'
check_not "--udp off: 5401 not bound" udp_exposed 5401
daemon_stop

# --- /proc fallback: UDP read from /proc/net/udp -------------------------------
daemon_start --discovery proc --scan-interval 50 || exit 1
check "--discovery proc: 5401/udp forwarded" wait_for "$(scaled 1000)" state_is 5401 udp forwarded
check "--discovery proc: the connected socket is not listed" [ -z "$(port_state 5403 udp)" ]
check "--discovery proc: 5405/udp public" state_is 5405 udp public
check "--discovery proc: 5401/udp answers" ask_ok 5401
daemon_stop

# --- bad lists are refused, naming the item ------------------------------------
msg=$(in_guest "$PH_BUILD/portholed" --allow "sctp:5" 2>&1)
rc=$?
check "--allow sctp:5 exits 2 naming the item ($msg)" eval '[ $rc = 2 ] && [[ "$msg" == *"sctp:5"* ]]'
msg=$(in_guest "$PH_BUILD/portholed" --udp maybe 2>&1)
rc=$?
check "--udp maybe exits 2" [ $rc = 2 ]
