# SPDX-License-Identifier: MIT
# t_core_expose.sh - which listeners portholed exposes, how fast, and when it lets go
#
# Services run in the guest; every reachability check is made from the host
# netns against 169.254.0.21, the way a client outside the VM would.

# daemon_pid_listens PORT: portholed itself owns a listener on GUEST_IP:PORT
daemon_listens()
{
	in_guest ss -Hltnp "sport = :$1" | grep -F "$GUEST_IP:$1 " | grep -q 'portholed\|valgrind\|memcheck'
}

# expose_time ADDR PORT: start an echo server; set ms to the time until it
# answers through 169.254.0.21 (empty on timeout). Not run inside $(...):
# the server would hold the substitution's pipe open.
expose_time()
{
	local t0
	ms=
	serve_echo "$1" "$2" || return 1
	t0=$(now_ms)
	wait_for "$(scaled 2000)" tcp_probe host "$GUEST_IP" "$2" || return 1
	ms=$(($(now_ms) - t0))
}

daemon_start --scan-interval 50 || exit 1

# --- 127.0.0.1-only server --------------------------------------------------
expose_time 127.0.0.1 7001
if [ -n "$ms" ] && [ "$ms" -le "$(scaled 500)" ]; then
	ok "127.0.0.1:7001 reachable on $GUEST_IP within 500 ms ($ms ms)"
else
	fail "127.0.0.1:7001 reachable on $GUEST_IP within 500 ms (${ms:-timeout})" "$(in_guest ss -ltnp)"
fi
figure v4_expose_ms "${ms:-timeout}" ms
check "relay to 127.0.0.1:7001 echoes" roundtrip host "$GUEST_IP" 7001
check "portholed owns the external listener $GUEST_IP:7001" daemon_listens 7001

# --- ::1-only server --------------------------------------------------------
expose_time ::1 7002
if [ -n "$ms" ] && [ "$ms" -le "$(scaled 500)" ]; then
	ok "::1:7002 reachable on $GUEST_IP within 500 ms ($ms ms)"
else
	fail "::1:7002 reachable on $GUEST_IP within 500 ms (${ms:-timeout})" "$(in_guest ss -ltnp)"
fi
figure v6_expose_ms "${ms:-timeout}" ms
check "relay to ::1:7002 echoes" roundtrip host "$GUEST_IP" 7002

# --- an exact 127.x address other than 127.0.0.1 ----------------------------
# The relay must connect to the address the service is bound to; a connect
# to 127.0.0.1 would be refused here.
serve_echo 127.0.0.2 7003
if wait_for "$(scaled 1000)" exposed 7003; then
	check "relay to 127.0.0.2:7003 (exact loopback address) echoes" roundtrip host "$GUEST_IP" 7003
else
	fail "127.0.0.2:7003 exposed"
fi

# --- ::ffff:127.0.0.1 (v4-mapped loopback on an AF_INET6 socket) -----------
bg_guest socat TCP6-LISTEN:7004,bind=[::ffff:127.0.0.1],reuseaddr,ipv6only=0,fork PIPE \
	2>>"$PH_TMP/servers.log"
if wait_for "$(scaled 1000)" exposed 7004; then
	check "relay to ::ffff:127.0.0.1:7004 echoes" roundtrip host "$GUEST_IP" 7004
else
	fail "::ffff:127.0.0.1:7004 exposed" "$(in_guest ss -ltn)"
fi

# --- servers that are already reachable: left alone -------------------------
serve_echo 0.0.0.0 7010
bg_guest socat TCP6-LISTEN:7011,bind=[::],reuseaddr,ipv6only=0,fork PIPE 2>>"$PH_TMP/servers.log"
wait_listening :: 7011
serve_echo "$GUEST_IP" 7012
# A v6-only wildcard does not serve IPv4, so it does not count as "already
# served": a 127.0.0.1 service on the same port must still be exposed.
bg_guest socat TCP6-LISTEN:7013,bind=[::],reuseaddr,ipv6only=1,fork PIPE 2>>"$PH_TMP/servers.log"
wait_listening :: 7013
serve_echo 127.0.0.1 7013
sleep "$(awk "BEGIN { print $(scaled 300) / 1000 }")"	# six scans
for p in 7010 7011 7012; do
	check_not "server on port $p already reachable: daemon does not bind it" daemon_listens $p
	check "server on port $p still reachable directly" roundtrip host "$GUEST_IP" $p
done
n=$(in_guest ss -Hltn "sport = :7010" | wc -l)
[ "$n" = 1 ] && ok "0.0.0.0:7010: only the server listens" || fail "0.0.0.0:7010: only the server listens ($n listeners)" "$(in_guest ss -ltnp)"
check "[::] v6only + 127.0.0.1 on 7013: IPv4 side exposed" daemon_listens 7013
check "relay to 127.0.0.1:7013 echoes" roundtrip host "$GUEST_IP" 7013

# --- 127.0.0.1:P + ::1:P: one exposure --------------------------------------
serve_echo 127.0.0.1 7020
serve_echo ::1 7020
wait_for "$(scaled 1000)" exposed 7020
sleep "$(awk "BEGIN { print $(scaled 200) / 1000 }")"
n=$(in_guest ss -Hltn "sport = :7020" | grep -cF "$GUEST_IP:7020")
[ "$n" = 1 ] && ok "127.0.0.1:7020 + ::1:7020: exactly one external listener" ||
	fail "127.0.0.1:7020 + ::1:7020: exactly one external listener (got $n)" "$(in_guest ss -ltnp)"
check "relay to 7020 echoes" roundtrip host "$GUEST_IP" 7020

# --- restart on the same port: no gap, no rebind ----------------------------
# The new server binds (SO_REUSEPORT) before the old one exits, so at every
# scan some listener exists: what changes is only the socket inode.
bg_guest socat TCP4-LISTEN:7030,bind=127.0.0.1,reuseaddr,so-reuseport,fork PIPE 2>>"$PH_TMP/servers.log"
old_srv=$PH_LAST_PID
if wait_for "$(scaled 1000)" exposed 7030; then
	ext_ino=$(listener_inode "$GUEST_IP" 7030)
	srv_ino=$(listener_inode 127.0.0.1 7030)
	bg_guest socat TCP4-LISTEN:7030,bind=127.0.0.1,reuseaddr,so-reuseport,fork PIPE 2>>"$PH_TMP/servers.log"
	wait_for 2000 eval '[ "$(in_guest ss -Hltn "sport = :7030" | grep -c 127.0.0.1)" = 2 ]'
	kill_pid "$old_srv"
	wait_for 2000 eval '[ "$(in_guest ss -Hltn "sport = :7030" | grep -c 127.0.0.1)" = 1 ]'
	new_ino=$(listener_inode 127.0.0.1 7030)
	sleep "$(awk "BEGIN { print $(scaled 300) / 1000 }")"	# several scans see the new inode
	if [ -n "$new_ino" ] && [ "$new_ino" != "$srv_ino" ]; then
		ok "service restarted: new socket inode ($srv_ino -> $new_ino)"
	else
		fail "service restarted: new socket inode ($srv_ino -> $new_ino)"
	fi
	check "restarted service reachable through the relay" roundtrip host "$GUEST_IP" 7030
	now_ino=$(listener_inode "$GUEST_IP" 7030)
	[ -n "$ext_ino" ] && [ "$now_ino" = "$ext_ino" ] &&
		ok "external listener kept across the restart (inode $ext_ino)" ||
		fail "external listener kept across the restart (inode $ext_ino -> ${now_ino:-none})"
else
	fail "127.0.0.1:7030 exposed"
fi

# --- closed server: external port closed within two scans -------------------
serve_echo 127.0.0.1 7040
srv=$PH_LAST_PID
if wait_for "$(scaled 1000)" exposed 7040; then
	t0=$(now_ms)
	kill_now "$srv"
	if wait_until_not "$(scaled 2000)" tcp_probe host "$GUEST_IP" 7040; then
		ms=$(($(now_ms) - t0))
		# two scans of 50 ms, plus the probes' own cost and a loaded CI
		# machine; t_core_latency.sh measures the distribution precisely
		[ "$ms" -le "$(scaled 200)" ] && ok "closed server: port closed within two scans + margin ($ms ms)" ||
			fail "closed server: port closed within two scans + 100 ms margin ($ms ms)"
		figure close_ms "$ms" ms
	else
		fail "closed server: external port still open after 2 s"
	fi
	check_not "closed server: external listener gone" exposed 7040
else
	fail "127.0.0.1:7040 exposed"
fi

# --- bind conflict: someone holds GUEST_IP:P without listening --------------
# A bound, non-listening socket is invisible to the LISTEN dump but makes
# the daemon's bind fail; the port is retried every scan, logged once.
bg_guest "$PH_PYTHON" -c '
import socket, sys, time
s = socket.socket(); s.bind(("169.254.0.21", 7050)); open(sys.argv[1], "w").close(); time.sleep(60)' \
	"$PH_TMP/bound.7050"
blocker=$PH_LAST_PID
wait_for 3000 test -e "$PH_TMP/bound.7050" || fail "conflict: blocker socket bound"
serve_echo 127.0.0.1 7050
sleep "$(awk "BEGIN { print $(scaled 500) / 1000 }")"	# ten scans
check_not "conflicting port 7050 not exposed while the address is taken" daemon_listens 7050
n=$(grep -c '7050' "$DAEMON_LOG")
[ "$n" -ge 1 ] && [ "$n" -le 3 ] && ok "conflict on 7050 logged once per state change ($n lines over 10 scans)" ||
	fail "conflict on 7050 logged once per state change ($n log lines mention 7050 over 10 scans)" \
		"$(grep 7050 "$DAEMON_LOG" | head -5)"
kill_pid "$blocker"
if wait_for "$(scaled 1000)" daemon_listens 7050; then
	ok "conflict resolved: 7050 exposed on a later scan"
	check "relay to 7050 echoes" roundtrip host "$GUEST_IP" 7050
else
	fail "conflict resolved: 7050 exposed on a later scan"
fi

daemon_stop

# --- --deny and --allow -----------------------------------------------------
# servers still running: 7001 (127.0.0.1), 7002 (::1), 7020, 7030, 7050
daemon_start --deny 7001,7020-7029 || exit 1
wait_for "$(scaled 1000)" exposed 7002
sleep "$(awk "BEGIN { print $(scaled 200) / 1000 }")"
check "--deny 7001,7020-7029: 7002 exposed" daemon_listens 7002
check "--deny 7001,7020-7029: 7030 exposed" daemon_listens 7030
check_not "--deny 7001,7020-7029: 7001 not exposed" daemon_listens 7001
check_not "--deny 7001,7020-7029: 7020 (in a denied range) not exposed" daemon_listens 7020
daemon_stop

daemon_start --allow 7001-7002,7050 --deny 7002 || exit 1
wait_for "$(scaled 1000)" exposed 7001
sleep "$(awk "BEGIN { print $(scaled 200) / 1000 }")"
check "--allow 7001-7002,7050: 7001 exposed" daemon_listens 7001
check "--allow 7001-7002,7050: 7050 exposed" daemon_listens 7050
check_not "--allow 7001-7002,7050: 7030 (not allowed) not exposed" daemon_listens 7030
check_not "--allow 7001-7002,7050 --deny 7002: deny wins, 7002 not exposed" daemon_listens 7002
check "--allow: allowed port relays" roundtrip host "$GUEST_IP" 7001
daemon_stop
