# SPDX-License-Identifier: MIT
# t_core_modes.sh - the fallback paths end to end: /proc discovery, copy relay
# valgrind: yes
#
# --discovery proc makes the daemon parse /proc/net/tcp{,6} instead of
# sock_diag; --relay copy makes it recv/send instead of splice. Each mode
# gets the same short course: v4 and v6 exposure, bulk both ways with
# matching SHA-256, half-close, resets, removal of a closed service.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 5000)

head -c $((16 * 1048576)) /dev/urandom >"$PH_TMP/src"
want=$(sha256sum <"$PH_TMP/src" | cut -d' ' -f1)

# cc_of FILTER: congestion control of the one established guest socket
# matching the ss FILTER ("src ADDR:PORT", "dst ADDR:PORT")
cc_of()
{
	in_guest ss -Htin state established $1 | awk 'NR == 2 { print $1 }'
}

# legs_cc LABEL PORT WANT_CLIENT_LEG: hold one relayed connection, check both legs
legs_cc()
{
	local m=$1 port=$2 want=$3 cl ext svc
	serve_echo 127.0.0.1 "$port"
	wait_for "$(scaled 1000)" exposed "$port"
	bg_host "$probe" client "$GUEST_IP" "$port" "s:x,r:x,z:$(scaled 3000)" 2>/dev/null
	cl=$PH_LAST_PID
	wait_for "$(scaled 2000)" eval '[ -n "$(cc_of "dst 127.0.0.1:$port")" ]'
	ext=$(cc_of "src $GUEST_IP:$port")
	svc=$(cc_of "dst 127.0.0.1:$port")
	[ "$ext" = "$want" ] && ok "$m: client leg uses $want" ||
		fail "$m: client leg uses $want (got '$ext')"
	[ "$svc" = reno ] && ok "$m: loopback leg uses reno" ||
		fail "$m: loopback leg uses reno (got '$svc')"
	kill_now "$cl"
}

course()
{
	local m=$1 base=$2 t0 ms got
	serve_echo 127.0.0.1 $((base + 1))
	serve_echo ::1 $((base + 2))
	t0=$(now_ms)
	if wait_for "$(scaled 1000)" tcp_probe host "$GUEST_IP" $((base + 1)); then
		ok "$m: 127.0.0.1 service exposed ($(($(now_ms) - t0)) ms)"
	else
		fail "$m: 127.0.0.1 service exposed within 1 s"
	fi
	wait_for "$(scaled 1000)" exposed $((base + 2))
	check "$m: v4 relay echoes" roundtrip host "$GUEST_IP" $((base + 1))
	check "$m: v6 relay echoes" roundtrip host "$GUEST_IP" $((base + 2))

	serve_sink 127.0.0.1 $((base + 3)) "$PH_TMP/up"
	local sink=$PH_LAST_PID
	wait_for "$(scaled 1000)" exposed $((base + 3))
	t0=$(now_ms)
	in_host timeout "$(scaled 30)" socat -b 262144 -u "OPEN:$PH_TMP/src" "TCP4:$GUEST_IP:$((base + 3))"
	wait_until_not "$(scaled 10000)" kill -0 "$sink"
	ms=$(($(now_ms) - t0))
	got=$(sha256sum <"$PH_TMP/up" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "$m: 16 MiB host->guest intact ($ms ms)" || fail "$m: 16 MiB host->guest intact"
	serve_source ::1 $((base + 4)) "$PH_TMP/src"
	wait_for "$(scaled 1000)" exposed $((base + 4))
	t0=$(now_ms)
	in_host timeout "$(scaled 30)" socat -b 262144 -u "TCP4:$GUEST_IP:$((base + 4))" "CREATE:$PH_TMP/down"
	ms=$(($(now_ms) - t0))
	got=$(sha256sum <"$PH_TMP/down" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "$m: 16 MiB guest->host intact ($ms ms)" || fail "$m: 16 MiB guest->host intact"
	rm -f "$PH_TMP/up" "$PH_TMP/down"

	# A service that reads nothing for a second: the relay must hold what
	# its send did not take, stop reading the client, and resume in order.
	bg_guest socat -u "TCP4-LISTEN:$((base + 8)),bind=127.0.0.1,reuseaddr" \
		SYSTEM:"sleep $(scaled 1); exec cat >$PH_TMP/slow"
	sink=$PH_LAST_PID
	wait_listening 127.0.0.1 $((base + 8)) && wait_for "$(scaled 1000)" exposed $((base + 8))
	in_host timeout "$(scaled 30)" socat -b 4096 -u "OPEN:$PH_TMP/src" "TCP4:$GUEST_IP:$((base + 8))"
	wait_until_not "$(scaled 10000)" kill -0 "$sink"
	got=$(sha256sum <"$PH_TMP/slow" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "$m: 16 MiB to a service that stalls for 1 s, intact" ||
		fail "$m: 16 MiB to a service that stalls for 1 s, intact"
	rm -f "$PH_TMP/slow"

	bg_guest "$probe" server 127.0.0.1 $((base + 5)) 'r:ping,e,s:pong,c' 2>>"$PH_TMP/probe.err"
	wait_listening 127.0.0.1 $((base + 5)) && wait_for "$(scaled 1000)" exposed $((base + 5))
	check "$m: half-close, reply after EOF" in_host "$probe" client "$GUEST_IP" $((base + 5)) 's:ping,w,r:pong,e'
	bg_guest "$probe" server 127.0.0.1 $((base + 6)) 'r:hi,x' 2>>"$PH_TMP/probe.err"
	wait_listening 127.0.0.1 $((base + 6)) && wait_for "$(scaled 1000)" exposed $((base + 6))
	check "$m: service reset reaches the client" in_host "$probe" client "$GUEST_IP" $((base + 6)) 's:hi,R'

	serve_echo 127.0.0.1 $((base + 7))
	local s=$PH_LAST_PID
	wait_for "$(scaled 1000)" exposed $((base + 7))
	kill_now "$s"
	check "$m: closed service's port removed" wait_until_not "$(scaled 1000)" exposed $((base + 7))
}

# Congestion control: by default the client leg gets reno when the external
# address is link-local, as here; --client-congestion system keeps the
# system's. The loopback leg always gets reno.
sys_cc=$(in_guest cat /proc/sys/net/ipv4/tcp_congestion_control)

daemon_start --discovery proc || exit 1
course "discovery proc" 7500
legs_cc "default settings, link-local address" 7590 reno
daemon_stop

daemon_start --relay copy --client-congestion system || exit 1
course "relay copy" 7600
legs_cc "--client-congestion system" 7690 "$sys_cc"
daemon_stop
