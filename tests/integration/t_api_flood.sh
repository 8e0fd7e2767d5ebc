# SPDX-License-Identifier: MIT
# t_api_flood.sh - the control plane under a connection flood on a forwarded port
# (issue #14): 2 x 10,000 connections from the host to a guest service that
# accepts slowly (backlog 8, 10 accepts/s), opened within about a second (10
# a millisecond per client process; see apiload's flood for why), every
# client closing 10 s after it connected; once with the daemon's default
# descriptor limit and once under prlimit --nofile=256. Meanwhile GET /health
# every 50 ms must answer 200 within 100 ms (p100), POST /snapshot/prepare +
# resume must succeed, another forwarded port must keep relaying, and
# afterwards the relays end and the daemon's VmRSS comes back within 1 MB of
# where it started.
#
# The daemon runs at its defaults (half-close timeout 60 s): once the clients
# left, their relays end within seconds anyway, because a client that sent
# its FIN without a byte while the service had not accepted is let go at once
# (reason "abandoned", t_core_abandon.sh), and the slow service takes the FIN
# of those it had queued. Both limits are checked: every relay ends and the
# flooded port accepts again.
#
# Bounded: 20,000 sockets in the host netns for 10 s, all to the guest.

API=http://$GUEST_IP:$API_PORT
N=10000
HOLD_S=10
PROBE_S=12
SLOW_PORT=7300
ECHO_PORT=7100

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
LOADER=$(helper apiload) || exit 1
probe=$(helper tcpprobe) || exit 1
metric() { in_host curl -sf -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$DAEMON_PID/status"; }
post() { in_host curl -s -m 2 -o /dev/null -w '%{http_code}' -X POST "$API$1"; }

# the guest's sockets of SLOW_PORT, counted by leg and state, on one line:
# "client" the daemon's external end, "relay" its connection to the
# service, "service" the service's end (accepted or still queued)
port_sockets()
{
	in_guest ss -Htan state all "( sport = :$SLOW_PORT or dport = :$SLOW_PORT )" |
		awk -v g="$GUEST_IP:$SLOW_PORT" -v s="127.0.0.1:$SLOW_PORT" '
			$4 == g { leg = "client" } $5 == s { leg = "relay" }
			$4 == s { leg = ($1 == "LISTEN") ? "listener" : "service" }
			{ n[leg " " $1 " q" $2 "/" $3]++ }
			END { for (k in n) printf "%s %d; ", k, n[k] }'
}

# 10 rounds of 8 concurrent connections echoing 16 KiB on the other port:
# milliseconds, or nothing when one failed
rounds() {
	local t0=$(now_ms) i
	for i in $(seq 10); do
		in_host "$probe" many "$GUEST_IP" "$ECHO_PORT" 8 16384 "$(scaled 5000)" 2>&1 |
			grep -q "verified 8 " || return 1
	done
	echo $(($(now_ms) - t0))
}

# flood NAME [DAEMON_PREFIX...]
flood()
{
	local name=$1 rss0 rss1 out pre res t0 base during svc f1 f2 prober
	shift
	DAEMON_PREFIX=("$@")
	daemon_start || return 1
	DAEMON_PREFIX=()
	local cap=$(grep -o '"max_conns_per_port":[0-9]*' "$DAEMON_LOG" | tail -1 | cut -d: -f2)
	bg_guest "$LOADER" slowsvc 127.0.0.1 "$SLOW_PORT" 8 10 $((HOLD_S + PROBE_S + 20)) >"$PH_TMP/$name.svc"
	svc=$PH_LAST_PID
	wait_listening 127.0.0.1 "$SLOW_PORT" || return 1
	wait_for "$(scaled 3000)" exposed "$SLOW_PORT" || fail "$name: slow service exposed"
	wait_for "$(scaled 3000)" exposed "$ECHO_PORT" || fail "$name: echo port exposed"
	# warm up: what the first requests and relays allocate once is not a leak
	roundtrip host "$GUEST_IP" "$ECHO_PORT" >/dev/null
	in_host "$LOADER" probe "$GUEST_IP" "$API_PORT" 1 >/dev/null
	in_host curl -sf -m 2 -o /dev/null "$API/metrics"
	base=$(rounds) || fail "$name: the other port relays before the flood"
	sleep 0.5
	rss0=$(rss_kb)
	local drops0=$(softnet_drops)

	bg_host "$LOADER" probe "$GUEST_IP" "$API_PORT" "$PROBE_S" >"$PH_TMP/$name.probe"
	prober=$PH_LAST_PID
	sleep 1
	bg_host "$LOADER" flood "$GUEST_IP" "$SLOW_PORT" "$N" "$HOLD_S" >"$PH_TMP/$name.f1"
	f1=$PH_LAST_PID
	bg_host "$LOADER" flood "$GUEST_IP" "$SLOW_PORT" "$N" "$HOLD_S" >"$PH_TMP/$name.f2"
	f2=$PH_LAST_PID
	sleep 2
	during=$(rounds) || during=
	sleep 1
	t0=$(now_ms)
	pre=$(post /snapshot/prepare)
	res=$(post /snapshot/resume)
	figure "${name}_prepare_resume_ms" "$(($(now_ms) - t0))" ms
	note "$name: relays $(metric porthole_connections_active), cap hits $(metric "porthole_port_cap_hits_total{port=\"$SLOW_PORT\"}"), accept pauses $(metric porthole_accept_pauses_total)"
	wait "$prober"
	wait "$f1"
	wait "$f2"
	out=$(cat "$PH_TMP/$name.probe")
	note "$name: flood: $(cat "$PH_TMP/$name.f1") / $(cat "$PH_TMP/$name.f2"); probe: $out"
	# the flood overflows the flooded port's queue: overflows are not the API's
	health_probes "$name" "$out" $((PROBE_S * 15)) "$(($(softnet_drops) - drops0))" -
	[ "$pre $res" = "204 204" ] && ok "$name: prepare and resume during the flood (204 204)" ||
		fail "$name: prepare and resume during the flood" "prepare $pre, resume $res"
	figure "${name}_other_port_rounds_before_ms" "$base" ms
	figure "${name}_other_port_rounds_during_ms" "${during:-failed}" ms
	# loose (2 shared cores, a flood's handshakes on them): at most 3x slower
	if [ -n "$during" ] && [ "$during" -le $((3 * base + 2000)) ]; then
		ok "$name: the other port keeps relaying ($during ms for 10 rounds, $base ms before)"
	else
		fail "$name: the other port keeps relaying" "${during:-a round failed} ms, $base ms before"
	fi
	# The clients are gone: their relays end and memory goes back. The
	# port's backlog still holds clients that left long ago; each is
	# accepted, finds the service's queue full and is let go at once
	# (abandoned: SYN_SENT at once, or within a second when the service's
	# kernel dropped the handshake's last ACK), so even at 256 descriptors
	# (the port's cap 24) the backlog drains in seconds, well inside one
	# half-close timeout (60 s).
	local open=$(metric porthole_connections_active) t0=$(now_ms)
	[ "${open:-99999}" -le "${cap:-0}" ] && ok "$name: relays stay within the port's cap ($open of $cap)" ||
		fail "$name: relays stay within the port's cap" "$open open, cap $cap"
	# every relay ended and the port's backlog is empty: nothing left over
	if wait_for "$(scaled 15000)" eval '[ "$(metric porthole_connections_active)" = 0 ] &&
		[ "$(in_guest ss -Hltn "sport = :$SLOW_PORT" src "$GUEST_IP" | awk "{ print \$2 }")" = 0 ]'; then
		figure "${name}_relays_drained_ms" "$(($(now_ms) - t0))" ms
		ok "$name: every relay ended $(($(now_ms) - t0)) ms after the flood's clients left (half-close timeout 60 s)"
	else
		fail "$name: every relay ended" "$(metric porthole_connections_active) still open; sockets of port $SLOW_PORT by leg and state: $(port_sockets)" \
			"$(in_guest ss -Htnoi state all "( sport = :$SLOW_PORT or dport = :$SLOW_PORT )" | head -40)"
	fi
	note "$name: relays abandoned $(metric 'porthole_relay_closed_total{reason="abandoned"}'), done $(metric 'porthole_relay_closed_total{reason="done"}'), half-close timeouts $(metric 'porthole_relay_closed_total{reason="half_close_timeout"}')"
	wait_for "$(scaled 3000)" tcp_probe host "$GUEST_IP" "$SLOW_PORT" &&
		ok "$name: the flooded port accepts again" || fail "$name: the flooded port accepts again"
	wait_for "$(scaled 3000)" bash -c "[ \$(awk '\$1 == \"VmRSS:\" { print \$2 }' /proc/$DAEMON_PID/status) -le $((rss0 + 1024)) ]"
	rss1=$(rss_kb)
	figure "${name}_rss_before" "$rss0" kB
	figure "${name}_rss_after" "$rss1" kB
	[ "$rss1" -le $((rss0 + 1024)) ] && ok "$name: VmRSS back within 1 MB ($rss0 -> $rss1 kB)" ||
		fail "$name: VmRSS back within 1 MB" "$rss0 -> $rss1 kB"
	kill_pid "$svc"
	daemon_stop
}

# The other port's echo service: one process with a 4096 backlog (socat's
# default backlog of 5 dropped SYNs of a round's 8 simultaneous connections,
# a 1 s retry each, and its fork per connection can stall: lib.sh serve_echo)
serve_echo 127.0.0.1 "$ECHO_PORT" || exit 1
flood default
flood nofile256 prlimit --nofile=256:256
