# SPDX-License-Identifier: MIT
# t_core_upgrade.sh - upgrades in place hand over every port and every relayed connection
#
# 200 connections stream checksummed data both ways through an echo service
# (stream_check.py) while the daemon is upgraded PH_UPGRADE_CYCLES (20)
# times, in turn by POST /daemon/upgrade, SIGUSR2 and portholectl upgrade,
# and a client connects every millisecond (connect_loop.py). Asserted: 0
# resets, 0 bytes lost, duplicated or reordered, every stream finishes; 0
# refused or timed-out connections; the listeners keep their inodes; the
# final process holds about the descriptors and memory of the first one with
# the same connections; portholectl watch reconnects by itself after
# "event: upgrade". Failures: a binary that exits at once, one that refuses
# the state version, one that hangs past the 5 s deadline: each answers 500
# (portholectl exit 1) with the reason, and the old daemon keeps serving
# every connection. --supervise (with 3 relay threads) adopts the upgraded
# daemon as its child.
# Under PH_VALGRIND=1 every new process runs under valgrind too (a wrapper
# binary), memory errors and definite leaks fail.
# valgrind: yes

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CYCLES=${PH_UPGRADE_CYCLES:-20}
CONNS=${PH_UPGRADE_CONNS:-200}
PORT=7601
API=http://$GUEST_IP:$API_PORT
CTL=$PH_BUILD/portholectl
if [ "$PH_VALGRIND" = 1 ]; then
	CYCLES=${PH_UPGRADE_CYCLES:-3}
	CONNS=${PH_UPGRADE_CONNS:-20}
fi

fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
health() { in_host curl -sf -m 2 -o /dev/null "$API/health"; }
alive() { kill -0 "$1" 2>/dev/null && ! proc_zombie "$1"; }
gone() { ! alive "$1"; }
# the pid the last successful upgrade logged (pgrep would see other namespaces' daemons)
last_new_pid() { grep -o 'new process took over pid=[0-9]*' "$DAEMON_LOG" | tail -n 1 | cut -d= -f2; }
# the machine's stolen time so far (USER_HZ): a hypervisor that stops the whole guest shows here
steal_ticks() { awk '$1 == "cpu" { print $9 }' /proc/stat; }
json_field() { "$PH_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# The binaries an upgrade starts. Under valgrind: the daemon again, under valgrind.
NEW_BIN=
if [ "$PH_VALGRIND" = 1 ]; then
	NEW_BIN=$PH_TMP/vg-portholed
	cat >"$NEW_BIN" <<EOF
#!/bin/sh
exec valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 \
	--track-fds=no --log-file=$PH_TMP/vg-upgrade.%p.log $PH_BUILD/portholed "\$@"
EOF
	chmod +x "$NEW_BIN"
fi
printf '#!/bin/sh\nexit 3\n' >"$PH_TMP/bin-exits"
printf '#!/bin/sh\nPORTHOLE_TEST_HANDOVER_VERSION=99 exec %s "$@"\n' "$PH_BUILD/portholed" \
	>"$PH_TMP/bin-refuses"
printf '#!/bin/sh\nexec sleep 60\n' >"$PH_TMP/bin-hangs"
chmod +x "$PH_TMP"/bin-*

# upgrade_api [BINARY]: POST /daemon/upgrade; prints the new pid; the answer in $PH_TMP/up.*
upgrade_api()
{
	local q=
	[ -n "${1:-}" ] && q="?binary=$1"
	in_host curl -s -m 30 -D "$PH_TMP/up.hdr" -o "$PH_TMP/up.body" -w '%{http_code}' \
		-X POST "$API/daemon/upgrade$q" >"$PH_TMP/up.code"
	[ "$(cat "$PH_TMP/up.code")" = 200 ] && json_field "$PH_TMP/up.body" pid
}

# upgrade_once N PID: the N-th upgrade of daemon PID, by the API, SIGUSR2 or portholectl
# in turn; prints the new pid once it serves and the old one is gone
upgrade_once()
{
	local n=$1 old=$2 new=
	case $((n % 3)) in
	0) new=$(upgrade_api "$NEW_BIN") ;;
	1)	if [ "$PH_VALGRIND" = 1 ]; then
			new=$(upgrade_api "$NEW_BIN")
		else
			kill -USR2 "$old"
			wait_for 5000 gone "$old" && new=$(last_new_pid)
		fi ;;
	2) new=$(in_host "$CTL" --addr "$GUEST_IP:$API_PORT" upgrade ${NEW_BIN:+--binary "$NEW_BIN"} |
		sed -n 's/^upgraded: pid //p') ;;
	esac
	[ -n "$new" ] && [ "$new" != "$old" ] && wait_for "$(scaled 5000)" gone "$old" &&
		wait_for "$(scaled 5000)" health && echo "$new"
}

serve_echo 127.0.0.1 $PORT || exit 1
daemon_start --log-format text || exit 1
PID=$DAEMON_PID
wait_for "$(scaled 3000)" exposed $PORT || { fail "port exposed"; exit 1; }
ino0=$(listener_inode "$GUEST_IP" $PORT)
steal0=$(steal_ticks) ovf0=$(listen_overflows "$PH_GUEST_NS") drops0=$(softnet_drops)
api0=$(listener_inode 0.0.0.0 $API_PORT)

# --- the streams, the connecting client, the watcher ------------------------------
bg_host "$PH_PYTHON" "$here/stream_check.py" "$GUEST_IP" $PORT "$CONNS" "$PH_TMP/streams.json" 16
STREAMS=$PH_LAST_PID
bg_host "$PH_PYTHON" "$here/connect_loop.py" "$GUEST_IP" $PORT "$PH_TMP/loop.json" "$PH_TMP/pause"
LOOP=$PH_LAST_PID
bg_host "$CTL" --addr "$GUEST_IP:$API_PORT" watch >"$PH_TMP/watch.out" 2>"$PH_TMP/watch.err"
WATCH=$PH_LAST_PID
relays() { in_guest ss -Htn state established "sport = :$PORT" | wc -l; }
wait_for "$(scaled 15000)" bash -c "[ \$(nsenter --net=/run/netns/$PH_GUEST_NS ss -Htn state established 'dport = :$PORT' | wc -l) -ge $CONNS ]" ||
	fail "the $CONNS streams are connected" "$(in_guest ss -Htn state established "dport = :$PORT" | wc -l)"
sleep 1
touch "$PH_TMP/pause"; sleep 0.1
fds0=$(fd_count "$PID"); rss0=$(rss_kb "$PID")
rm -f "$PH_TMP/pause"
note "first daemon with $CONNS streams: $fds0 descriptors, RSS $rss0 kB"

# --- 20 upgrades -------------------------------------------------------------------
done_n=0
for ((i = 0; i < CYCLES; i++)); do
	new=$(upgrade_once "$i" "$PID")
	if [ -z "$new" ]; then
		fail "upgrade $((i + 1)) (way $((i % 3)): api, SIGUSR2, portholectl)" \
			"$(cat "$PH_TMP/up.code" "$PH_TMP/up.body" 2>/dev/null)" "$(tail -n 20 "$DAEMON_LOG")"
		break
	fi
	PID=$new
	track "$PID"
	echo "$(date +%s.%N | cut -c1-14) upgrade $((i + 1)) pid $new" >>"$PH_TMP/upgrades.txt"
	done_n=$((done_n + 1))
	sleep 0.3
done
DAEMON_PID=$PID
[ "$done_n" = "$CYCLES" ] && ok "$CYCLES upgrades in a row (API, SIGUSR2, portholectl in turn)"
api_conforms POST /daemon/upgrade "$(cat "$PH_TMP/up.code")" "$PH_TMP/up.hdr" "$PH_TMP/up.body"
sleep 1
touch "$PH_TMP/pause"; sleep 0.1
fds1=$(fd_count "$PID"); rss1=$(rss_kb "$PID")
rm -f "$PH_TMP/pause"
note "after $done_n upgrades: $fds1 descriptors, RSS $rss1 kB"
figure upgrade_final_fds "$fds1"
figure upgrade_final_rss_kb "$rss1" kB
# the pipe pool is not handed over, and the echo service's turns leave a few pipes either way
[ $((fds1 - fds0)) -le 16 ] && [ $((fds0 - fds1)) -le 70 ] &&
	ok "the final process holds about the descriptors of the first ($fds1 vs $fds0)" ||
	fail "the final process holds about the descriptors of the first" "$fds0 -> $fds1" \
		"$(ls -l /proc/$PID/fd | awk '{print $NF}' | sed 's/[0-9]//g' | sort | uniq -c)"
[ "$rss1" -le $((rss0 * 3 / 2 + 2048)) ] &&
	ok "the final process's memory is about the first one's (RSS $rss1 vs $rss0 kB)" ||
	fail "the final process's memory is about the first one's" "$rss0 -> $rss1 kB"

# --- the streams' verdict --------------------------------------------------------------
kill -TERM "$STREAMS"; wait "$STREAMS"
kill -TERM "$LOOP"; wait "$LOOP"
note "streams: $(cat "$PH_TMP/streams.json")"
read -r resets bad unfinished sent echoed gap < <("$PH_PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["resets"], r["mismatches"], r["unfinished"], r["bytes_sent"], r["bytes_echoed"], r["max_gap_ms"])' "$PH_TMP/streams.json")
[ "$resets" = 0 ] && [ "$unfinished" = 0 ] &&
	ok "$CONNS streams through $done_n upgrades: 0 resets, every one finished" ||
	fail "$CONNS streams through $done_n upgrades: 0 resets" "$(cat "$PH_TMP/streams.json")"
[ "$bad" = 0 ] && [ "$sent" = "$echoed" ] && [ "$sent" -gt 0 ] &&
	ok "0 bytes lost, duplicated or reordered ($sent bytes each way)" ||
	fail "0 bytes lost, duplicated or reordered" "$(cat "$PH_TMP/streams.json")"
figure upgrade_stream_max_gap_ms "$gap" ms
read -r lok refused lost timeout maxms < <(connect_loop_counts "$PH_TMP/loop.json")
figure upgrade_slowest_connection_ms "$maxms" ms
note "connections of 200 ms or more [start, connect ms, echo ms]: $("$PH_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["slow"])' "$PH_TMP/loop.json")"
note "upgrades at: $(cut -d' ' -f1,3 "$PH_TMP/upgrades.txt" | tr '\n' ' ')"
[ "$refused" = 0 ] && [ "$timeout" = 0 ] && [ "$lost" = 0 ] && [ "$lok" -gt 100 ] &&
	ok "a client connecting every ms: $lok ok, 0 refused, 0 lost, 0 timed out" ||
	fail "a client connecting every ms: 0 refused, 0 lost, 0 timed out" "$(cat "$PH_TMP/loop.json")" \
		"daemon warnings: $(grep -E ' (warn|error) ' "$DAEMON_LOG" | tail -n 8 | cut -c12-200 | tr '\n' ';')" \
		"echo service: $(tail -n 3 "$PH_TMP/servers.log" | tr '\n' ';') listener: $(in_guest ss -Htln "sport = :$PORT" | tr -s ' ')" \
		"stolen $(( $(steal_ticks) - steal0 )) ticks, guest listen overflows $(( $(listen_overflows "$PH_GUEST_NS") - ovf0 )), softnet drops $(( $(softnet_drops) - drops0 )), streams' worst gap $gap ms"
[ "$(listener_inode "$GUEST_IP" $PORT)" = "$ino0" ] && [ "$(listener_inode 0.0.0.0 $API_PORT)" = "$api0" ] &&
	ok "the external and API listeners were never rebound" ||
	fail "the listeners were never rebound" "$ino0/$api0 -> $(listener_inode "$GUEST_IP" $PORT)/$(listener_inode 0.0.0.0 $API_PORT)"
kill -TERM "$WATCH" 2>/dev/null; wait "$WATCH" 2>/dev/null
check "watch printed the upgrade event" grep -q '^upgrade' "$PH_TMP/watch.out"
check "watch reconnected by itself and said so" grep -q 'upgraded; reconnecting' "$PH_TMP/watch.err"
[ "$(grep -c '^snapshot' "$PH_TMP/watch.out")" -gt 1 ] &&
	ok "watch: a new stream (snapshot) after the upgrade" ||
	fail "watch: a new stream after the upgrade" "$(head -n 20 "$PH_TMP/watch.out")" "$(cat "$PH_TMP/watch.err")"

# --- failures: the old daemon carries on ----------------------------------------------------
bg_host "$PH_PYTHON" "$here/stream_check.py" "$GUEST_IP" $PORT 20 "$PH_TMP/streams2.json" 16
STREAMS=$PH_LAST_PID
sleep 1
fail_case()
{
	local name=$1 bin=$2 want=$3 code out st
	upgrade_api "$bin" >/dev/null
	code=$(cat "$PH_TMP/up.code")
	[ "$code" = 500 ] && grep -q "$want" "$PH_TMP/up.body" && alive "$PID" &&
		ok "$name: POST /daemon/upgrade answers 500 with the reason, the daemon goes on" ||
		fail "$name: 500 with the reason ($want)" "$code $(cat "$PH_TMP/up.body")"
	api_conforms POST /daemon/upgrade "$code" "$PH_TMP/up.hdr" "$PH_TMP/up.body"
	out=$(in_host "$CTL" --addr "$GUEST_IP:$API_PORT" upgrade --binary "$bin" 2>&1)
	st=$?
	[ "$st" = 1 ] && grep -q "$want" <<<"$out" &&
		ok "$name: portholectl upgrade exits 1 and says why" ||
		fail "$name: portholectl upgrade exits 1 with the reason" "status $st: $out"
}
fail_case "a binary that exits at once" "$PH_TMP/bin-exits" "exited with status 3"
fail_case "a binary that refuses the state version" "$PH_TMP/bin-refuses" "refused the state"
t0=$(now_ms)
fail_case "a binary that hangs" "$PH_TMP/bin-hangs" "did not take over within 5000 ms"
figure upgrade_hang_answer_ms $(( ($(now_ms) - t0) / 2 )) ms
left=
for p in $(grep -o 'binary=[^ ]*bin-[a-z]* pid=[0-9]*' "$DAEMON_LOG" | sed 's/.*pid=//'); do
	alive "$p" && left+=" $p"
done
[ -z "$left" ] && ok "the failed upgrades' new processes are gone" ||
	fail "the failed upgrades' new processes are gone" "alive:$left"
kill -TERM "$STREAMS"; wait "$STREAMS"
[ "$(json_field "$PH_TMP/streams2.json" resets)" = 0 ] &&
	[ "$(json_field "$PH_TMP/streams2.json" mismatches)" = 0 ] &&
	[ "$(json_field "$PH_TMP/streams2.json" unfinished)" = 0 ] &&
	ok "through the failed upgrades every connection went on (0 resets, 0 bytes wrong)" ||
	fail "through the failed upgrades every connection went on" "$(cat "$PH_TMP/streams2.json")"
new=$(upgrade_api "$NEW_BIN")
[ -n "$new" ] && wait_for 5000 gone "$PID" && ok "after the failures an upgrade still works" ||
	fail "after the failures an upgrade still works" "$(cat "$PH_TMP/up.body")"
PID=${new:-$PID}
DAEMON_PID=$PID
track "$PID"
wait_for 5000 health
roundtrip_ok() { in_host bash -c "exec 3<>/dev/tcp/$GUEST_IP/$PORT; echo hi >&3; read -t 2 l <&3; [ \"\$l\" = hi ]"; }
check "the daemon serves after the failures and an upgrade" roundtrip_ok

# the last daemon stops cleanly (its imported relays torn down like its own)
kill -TERM "$PID"
if wait_for "$(scaled 10000)" gone "$PID"; then ok "the upgraded daemon stops on SIGTERM"
else fail "the upgraded daemon stops on SIGTERM" "$(tail -n 20 "$DAEMON_LOG")"; fi
DAEMON_PID=

# --- --supervise adopts the upgraded daemon ------------------------------------------------
if [ "$PH_VALGRIND" != 1 ]; then
	SUPLOG=$PH_TMP/sup.log
	# with relay threads: relays are exported from and imported into every loop
	bg_guest "$PH_BUILD/portholed" --supervise --log-format text --relay-threads 3 2>>"$SUPLOG"
	SUP=$PH_LAST_PID
	child() { local c; c=$(cat "/proc/$SUP/task/$SUP/children" 2>/dev/null); echo "${c%% *}"; }
	wait_for 5000 health && wait_for 3000 exposed $PORT || fail "--supervise: daemon up" "$(tail "$SUPLOG")"
	c0=$(child)
	bg_host "$PH_PYTHON" "$here/stream_check.py" "$GUEST_IP" $PORT 10 "$PH_TMP/streams3.json" 16
	STREAMS=$PH_LAST_PID
	sleep 1
	for ((i = 0; i < 3; i++)); do
		c=$(child)
		kill -USR2 "$SUP"
		wait_for 5000 bash -c "c=\$(cat /proc/$SUP/task/$SUP/children); [ -n \"\$c\" ] && [ \"\${c%% *}\" != $c ]" ||
			fail "--supervise: SIGUSR2 to the supervisor upgrades its daemon ($((i + 1)))" "$(tail "$SUPLOG")"
		sleep 0.5
	done
	c1=$(child)
	[ -n "$c1" ] && [ "$c1" != "$c0" ] && alive "$c1" && grep -q 'supervise: portholed upgraded' "$SUPLOG" &&
		! grep -q 'restarting' "$SUPLOG" &&
		ok "--supervise: the upgraded daemon is the supervisor's child, nothing restarted" ||
		fail "--supervise: adopts the upgraded daemon" "$c0 -> $c1" "$(tail -n 30 "$SUPLOG")"
	kill -TERM "$STREAMS"; wait "$STREAMS"
	[ "$(json_field "$PH_TMP/streams3.json" resets)" = 0 ] && [ "$(json_field "$PH_TMP/streams3.json" mismatches)" = 0 ] &&
		ok "--supervise: streams through 3 upgrades, 0 resets" ||
		fail "--supervise: streams through the upgrades" "$(cat "$PH_TMP/streams3.json")"
	kill -KILL "$c1"
	wait_for 5000 bash -c "c=\$(cat /proc/$SUP/task/$SUP/children); [ -n \"\$c\" ] && [ \"\${c%% *}\" != $c1 ]" &&
		wait_for 5000 health &&
		ok "--supervise: a crash of the upgraded daemon is restarted" ||
		fail "--supervise: restarts the upgraded daemon after a crash" "$(tail -n 20 "$SUPLOG")"
	kill -TERM "$SUP"; wait "$SUP"
	st=$?
	[ "$st" = 0 ] && ok "--supervise: stops cleanly after upgrades" || fail "--supervise: stops cleanly" "status $st"
fi

if [ "$PH_VALGRIND" = 1 ]; then
	# only logs with a summary: a daemon under valgrind forks the failing
	# binaries under its log name too, and those exec out of valgrind
	bad=$(grep -l 'ERROR SUMMARY' "$PH_TMP"/vg-upgrade.*.log 2>/dev/null |
		xargs -r grep -L 'ERROR SUMMARY: 0 errors')
	n=$(grep -l 'ERROR SUMMARY' "$PH_TMP"/vg-upgrade.*.log 2>/dev/null | wc -l)
	[ "$n" -gt 0 ] && [ -z "$bad" ] && ok "valgrind: $n upgraded processes, 0 errors" ||
		fail "valgrind: upgraded processes without errors" "$(for f in $bad; do tail -n 30 "$f"; done)"
fi
if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' "$DAEMON_LOG" "$PH_TMP"/sup.log 2>/dev/null; then
	fail "no sanitizer report" "$(grep -E -A12 'Sanitizer|runtime error' "$DAEMON_LOG" | head -n 40)"
else
	ok "no sanitizer report in the daemons' logs"
fi
