# SPDX-License-Identifier: MIT
# t_core_scale.sh - many connections at once, and running out of descriptors
# valgrind: yes
#
# 1,000 concurrent relayed connections, each checked byte for byte; the
# daemon's descriptor count returns to its baseline afterwards. Then the
# daemon under RLIMIT_NOFILE 256 is flooded with more connections than fit:
# it must not spin (CPU time stays low), relays must leave the top 64
# descriptors to the control API (PH_FD_RESERVE), which still answers, and
# it must serve again once they close.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 3000)
N=${PH_SCALE_CONNS:-1000}

fd_count() { ls "/proc/$DAEMON_PID/fd" 2>/dev/null | wc -l; }

bg_guest "$probe" echo 127.0.0.1 7201
wait_listening 127.0.0.1 7201 || exit 1

daemon_start || exit 1
wait_for "$(scaled 1000)" exposed 7201 || fail "127.0.0.1:7201 exposed"
check "echo through the relay" roundtrip host "$GUEST_IP" 7201
base_fds=$(fd_count)

# --- 1,000 concurrent connections, twice -------------------------------------
# After a burst each relay thread keeps up to PH_RELAY_PIPE_POOL (64, relay.h)
# spare pipes = 128 descriptors; anything beyond that, or growth from one
# burst to the next, is a leak.
threads=$(grep -o '"relay_threads":[0-9]*' "$DAEMON_LOG" | head -1 | cut -d: -f2)
pool_fds=$((128 * ${threads:-1}))
for round in 1 2; do
	out=$(in_host "$probe" many "$GUEST_IP" 7201 "$N" 4096 "$(scaled 30000)" 2>&1)
	if [ $? = 0 ]; then
		ok "round $round: $N concurrent connections, 4 KiB echoed on each and verified ($out)"
	else
		fail "round $round: $N concurrent connections, 4 KiB echoed on each and verified" "$out"
	fi
	figure "conns_${N}_round${round}_ms" "$(echo "$out" | awk '/^connected/ { print $6 }')" ms
	limit=$((base_fds + pool_fds))
	[ "$round" = 2 ] && limit=$after1
	if wait_for "$(scaled 3000)" eval '[ "$(fd_count)" -le "$limit" ]'; then
		ok "round $round: daemon descriptors settle at <= $limit ($(fd_count); $base_fds before any connection)"
	else
		fail "round $round: daemon descriptors settle at <= $limit (have $(fd_count))" \
			"$(ls -l "/proc/$DAEMON_PID/fd" | awk '{ print $NF }' | sed 's/:.*//' | sort | uniq -c)"
	fi
	after1=$(fd_count)
done
check "daemon still relays" roundtrip host "$GUEST_IP" 7201
daemon_stop

# --- descriptor exhaustion ----------------------------------------------------
# 256 descriptors, the top 64 kept for the control API: relays may use
# numbers below 192, a few taken by the daemon itself, 2 per relayed
# connection (two sockets; a pipe only once a direction turns bulk): about
# 85 connections fit, fewer than the 150 clients. (The per-port cap would
# stop them first: lifted here.)
NFLOOD=150
DAEMON_PREFIX=(prlimit --nofile=256:256)
daemon_start --max-connections-per-port 100000 || exit 1
DAEMON_PREFIX=()
wait_for "$(scaled 1000)" exposed 7201 || fail "127.0.0.1:7201 exposed (nofile 256)"
lim=$(awk '/Max open files/ { print $4 }' "/proc/$DAEMON_PID/limits")
[ "$lim" = 256 ] && ok "daemon runs with RLIMIT_NOFILE 256" || fail "daemon runs with RLIMIT_NOFILE 256 (got $lim)"

bg_host "$probe" hold "$GUEST_IP" 7201 "$NFLOOD" 4 >"$PH_TMP/hold.out" 2>&1
holder=$PH_LAST_PID
wait_for "$(scaled 10000)" grep -q held "$PH_TMP/hold.out"
note "$(cat "$PH_TMP/hold.out")"
# While the kernel keeps handing it connections it cannot take, the daemon
# must back off, not loop on EMFILE.
t0=$(daemon_cpu_ticks)
sleep 2
t1=$(daemon_cpu_ticks)
hz=$(getconf CLK_TCK)
cpu_pct=$(((t1 - t0) * 100 / (2 * hz)))
figure emfile_cpu_percent "$cpu_pct" %
if [ "$cpu_pct" -le $((10 * PH_SLOW)) ]; then
	ok "out of descriptors: daemon does not spin ($cpu_pct% CPU over 2 s)"
else
	fail "out of descriptors: daemon does not spin ($cpu_pct% CPU over 2 s)"
fi
check "out of descriptors: daemon still alive" daemon_alive
# proof that the flood really ran the relays out of descriptors, and that
# they left the reserve alone (valgrind keeps a few for itself)
nfd=$(fd_count)
# (sockets only: the harness passes down a pipe of its own, numbered high)
maxfd=$(find "/proc/$DAEMON_PID/fd" -mindepth 1 -lname 'socket:*' -printf '%f\n' | sort -n | tail -1)
figure emfile_daemon_fds "$nfd" "of 256"
[ "$nfd" -ge 170 ] && ok "flood used the relays' descriptors ($nfd of 256 in use)" ||
	fail "flood used the relays' descriptors (only $nfd of 256 in use)"
[ "$maxfd" -lt 192 ] && ok "relays left the top 64 descriptors to the API (highest $maxfd)" ||
	fail "relays left the top 64 descriptors to the API (highest $maxfd)"
t0=$(now_ms)
if in_host curl -sf -m "$(((PH_SLOW * 2)))" -o /dev/null "http://$GUEST_IP:$API_PORT/health"; then
	ok "out of descriptors: GET /health answers ($(($(now_ms) - t0)) ms)"
else
	fail "out of descriptors: GET /health answers"
fi
est=$(in_host ss -Htn state established "( dport = :7201 )" | wc -l)
figure emfile_clients_still_connected "$est" "of $NFLOOD"
# The daemon reserves a relay's descriptors before accept(), so the clients it
# has no room for wait in the backlog (still established from their side)
# instead of being accepted and dropped.
# Not under valgrind: it keeps the top of the descriptor range for itself,
# and when accept() returns a number there it closes the new connection (a
# FIN to the client) and reports EMFILE. Without valgrind the kernel refuses
# the accept and the client stays queued, which is what this checks.
if [ "$PH_VALGRIND" = 1 ]; then
	skip "out of descriptors: no client dropped (valgrind drops accepted descriptors past its own limit)"
elif [ "$est" -eq "$NFLOOD" ]; then
	ok "out of descriptors: no client dropped ($est of $NFLOOD still connected)"
else
	fail "out of descriptors: no client dropped ($est of $NFLOOD still connected)" \
		"client states: $(in_host ss -Htan "( dport = :7201 )" | awk '{ print $1 }' | sort | uniq -c | xargs)" \
		"service side: $(in_guest ss -Htan "( sport = :7201 )" | awk '{ print $1 }' | sort | uniq -c | xargs)"
fi
check "out of descriptors: the daemon logged that it paused accepting" daemon_log_has 'accept paused'

# Once the flood closes, descriptors come back and new clients are served.
kill_now "$holder"
if wait_for "$(scaled 5000)" roundtrip host "$GUEST_IP" 7201; then
	ok "after the flood closes, new connections are relayed again"
else
	fail "after the flood closes, new connections are relayed again" "$(tail -n 5 "$DAEMON_LOG")"
fi
out=$(in_host "$probe" many "$GUEST_IP" 7201 5 1024 "$(scaled 5000)" 2>&1)
check "five concurrent connections fit again ($out)" grep -q 'verified 5 ' <<<"$out"
daemon_stop
