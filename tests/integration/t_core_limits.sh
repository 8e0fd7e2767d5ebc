# SPDX-License-Identifier: MIT
# t_core_limits.sh - fairness between ports, and relays whose client is gone
#
# One port flooded past --max-connections-per-port waits in its own backlog
# while another port keeps relaying; /ports and /metrics show the cap hits.
# A relay whose client sent its FIN and whose service never answers is
# reset after --half-close-timeout; one whose client then vanishes (the
# host's address removed) is reset by the client leg's keepalive, which is
# still watched after the FIN.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 5000)
API="http://$GUEST_IP:$API_PORT"
metric() { in_host curl -sf -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
CAP=10

bg_guest "$probe" echo 127.0.0.1 7301
bg_guest "$probe" echo 127.0.0.1 7302
wait_listening 127.0.0.1 7301 || exit 1
wait_listening 127.0.0.1 7302 || exit 1
daemon_start --max-connections-per-port "$CAP" --half-close-timeout 2s || exit 1
wait_for "$(scaled 2000)" exposed 7301 || fail "127.0.0.1:7301 exposed"
wait_for "$(scaled 2000)" exposed 7302 || fail "127.0.0.1:7302 exposed"

# --- one port at its cap, the other keeps going --------------------------------
# rounds of $CAP concurrent connections (the other port's own cap), 16 KiB
# echoed on each: milliseconds for 20 rounds, or nothing on failure
rounds() {
	local t0=$(now_ms) i
	for i in $(seq 20); do
		in_host "$probe" many "$GUEST_IP" 7302 "$CAP" 16384 "$(scaled 5000)" 2>&1 |
			grep -q "verified $CAP " || return 1
	done
	echo $(($(now_ms) - t0))
}
base=$(rounds) || fail "the other port relays before the flood"
figure other_port_rounds_before_ms "$base" ms
bg_host "$probe" hold "$GUEST_IP" 7301 50 "$(((PH_SLOW * 20)))" >"$PH_TMP/hold.out" 2>&1
holder=$PH_LAST_PID
wait_for "$(scaled 10000)" grep -q held "$PH_TMP/hold.out" || fail "50 clients connected to 7301"
wait_for "$(scaled 2000)" eval '[ "$(metric "porthole_port_connections{port=\"7301\"}")" = "$CAP" ]'
got=$(metric 'porthole_port_connections{port="7301"}')
[ "$got" = "$CAP" ] && ok "flooded port holds exactly its cap ($got of 50 relayed)" ||
	fail "flooded port holds exactly its cap (got '$got', want $CAP)"
hits=$(metric 'porthole_port_cap_hits_total{port="7301"}')
[ "${hits:-0}" -ge 1 ] && ok "/metrics counts the cap hits ($hits)" || fail "/metrics counts the cap hits (got '$hits')"
check "/ports shows cap_hits" eval 'in_host curl -sf -m 2 "$API/ports" | grep -Eq "\"port\":7301,[^}]*\"cap_hits\":[1-9]"'
# loose (2 shared cores): the flooded port costs the other no more than 3x
if during=$(rounds); then
	figure other_port_rounds_during_ms "$during" ms
	[ "$during" -le $((3 * base + 2000)) ] &&
		ok "the other port keeps relaying at its rate ($during ms for 20 rounds, $base ms before)" ||
		fail "the other port keeps relaying at its rate ($during ms for 20 rounds, $base ms before)"
else
	fail "the other port keeps relaying during the flood"
fi
[ "$(metric 'porthole_port_connections{port="7301"}')" = "$CAP" ] &&
	ok "the flooded port is still at its cap" || fail "the flooded port is still at its cap"
kill_now "$holder"
if wait_for "$(scaled 5000)" roundtrip host "$GUEST_IP" 7301; then
	ok "once the flood leaves, the capped port relays again"
else
	fail "once the flood leaves, the capped port relays again"
fi

# --- half-closed relay, silent service: reset after --half-close-timeout ------
bg_guest "$probe" server 127.0.0.1 7311 "z:$(scaled 30000)"
wait_listening 127.0.0.1 7311 || exit 1
wait_for "$(scaled 2000)" exposed 7311 || fail "127.0.0.1:7311 exposed"
before=$(metric 'porthole_relay_closed_total{reason="half_close_timeout"}')
t0=$(now_ms)
bg_host "$probe" client "$GUEST_IP" 7311 "s:hello,w,R"
client=$PH_LAST_PID
if wait_for "$(scaled 8000)" eval '[ "$(metric "porthole_relay_closed_total{reason=\"half_close_timeout\"}")" -gt "${before:-0}" ]'; then
	dt=$(($(now_ms) - t0))
	figure half_close_reset_ms "$dt" ms
	[ "$dt" -ge 1500 ] && ok "half-closed relay with a silent service reset after ~2 s ($dt ms)" ||
		fail "half-closed relay with a silent service reset after ~2 s (too early: $dt ms)"
else
	fail "half-closed relay with a silent service reset after ~2 s"
fi
wait "$client" 2>/dev/null && ok "the client saw the reset" || fail "the client saw the reset"
daemon_stop

# --- the client vanishes after its FIN: keepalive still ends the relay ---------
bg_guest "$probe" server 127.0.0.1 7312 "z:$(scaled 60000)"
wait_listening 127.0.0.1 7312 || exit 1
daemon_start --keepalive-idle 2 --keepalive-interval 1 --keepalive-count 2 || exit 1
wait_for "$(scaled 2000)" exposed 7312 || fail "127.0.0.1:7312 exposed"
bg_host "$probe" client "$GUEST_IP" 7312 "s:hello,w,z:$(scaled 60000)"
wait_for "$(scaled 2000)" eval '[ "$(metric porthole_connections_active)" = 1 ]' ||
	fail "relay open"
in_host ip addr del "$HOST_IP/30" dev eth0
t0=$(now_ms)
if wait_for "$(scaled 15000)" eval '[ "$(in_guest curl -sf -m 2 "http://127.0.0.1:$API_PORT/metrics" | awk '\''$1 == "porthole_relay_closed_total{reason=\"keepalive_timeout\"}" { print $2 }'\'')" = 1 ]'; then
	ok "client gone after its FIN: keepalive reset the relay ($(($(now_ms) - t0)) ms)"
else
	fail "client gone after its FIN: keepalive reset the relay"
fi
in_host ip addr add "$HOST_IP/30" dev eth0
daemon_stop
