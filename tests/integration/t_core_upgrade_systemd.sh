# SPDX-License-Identifier: MIT
# t_core_upgrade_systemd.sh - an upgrade under systemd (v252, emulated): the main pid moves, the old one's exit restarts nothing
#
# portholed runs under fdstore_manager.py, a stand-in for systemd v252 with
# the settings of dist/portholed.service (Type=notify, Restart=always,
# RestartSec=200ms, FileDescriptorStoreMax=, KillMode=control-group) that
# decides on MAINPID=, NotifyAccess= and process exits as systemd's source
# does, in every test run (the real systemd 252 runs the packaged unit in a
# container in t_systemd_real.sh, tests/systemd/run, only in that CI step).
# A client in the host connects every millisecond throughout (connect_loop.py).
#   a) NotifyAccess=all, as the unit ships: PH_SD_UPGRADES (3) x
#      `portholectl upgrade`: each time the manager's main pid becomes the
#      new daemon's pid, the old pid's exit restarts nothing, the new daemon
#      is the manager's child (started with CLONE_PARENT under a manager);
#      then kill -9 of the (upgraded) main pid: exactly one restart, which
#      takes the stored listeners (same inodes); 0 refused, 0 timed out.
#   b) NotifyAccess=main: the same upgrade. systemd takes MAINPID= from the
#      main pid, and the old daemon (still the main pid) names the new one
#      before it exits, so the main pid moves here too; what the new process
#      said before that is refused (counted, shown: its own MAINPID= when it
#      comes first, a race). Without the old daemon's MAINPID= this part
#      fails (systemd stops and restarts the unit); without both MAINPID=
#      sends part a fails too. The new main pid is the manager's child when
#      it is named, so it is not marked "not our child", and a stop without
#      ExecStop= waits for its clean shutdown: no SIGKILL. A daemon that
#      forked the new process itself (the new one its child, not the
#      manager's, until the old one exits) fails this part whenever the
#      MAINPID= is read before the old daemon's exit, as it is under the
#      real systemd every time (t_systemd_real.sh): systemd v252 does not
#      wait for such a pid (unit.c:4588) and sends SIGKILL right after
#      SIGTERM.
#   c) the unit's ExecStop= (read from dist/portholed.service; parts a and c
#      run with it): an upgrade, then a stop: ExecStop= gets the new pid in
#      $MAINPID, sends it SIGTERM and waits; the daemon shuts down cleanly
#      ("portholed stopping", exit 0), no SIGKILL is sent, the manager exits 0;
#      the main process's exit comes before ExecStop='s (it waits until the pid
#      is reaped). An ExecStop= that only signals fails here when the daemon's
#      shutdown is slower than the manager (2 of 5 runs tried); none fails
#      this part every time.
#      The stand-in runs ExecStop= as the test's user, not DynamicUser's.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UPGRADES=${PH_SD_UPGRADES:-3}
PORT=7611
CTL=$PH_BUILD/portholectl
EXEC_STOP=$(sed -n 's/^ExecStop=//p' "$here/../../dist/portholed.service")

health() { in_host curl -sf -m 2 -o /dev/null "http://$GUEST_IP:$API_PORT/health"; }
alive() { kill -0 "$1" 2>/dev/null && ! proc_zombie "$1"; }
gone() { ! alive "$1"; }
ppid_of() { awk '{ sub(/.*\) /, ""); print $2 }' "/proc/$1/stat" 2>/dev/null; }
# mgr_get NAME KEY: a field of the manager's state file
mgr_get() { awk -v k="$2" '$1 == k { print $2 }' "$PH_TMP/$1.state" 2>/dev/null; }
main_pid() { cat "$PH_TMP/$1.pid" 2>/dev/null; }
stored() { grep -q "^$2 " "$PH_TMP/$1.store" 2>/dev/null; }
# mgr_running NAME: a main pid, ready (state running), and the API answers
mgr_running() { [ "$(mgr_get "$1" state)" = running ] && [ "$(main_pid "$1")" -gt 0 ] 2>/dev/null && health; }
mgr_log_count() { grep -c -- "$2" "$PH_TMP/$1.log" 2>/dev/null; }

# start_mgr NAME ACCESS [EXECSTOP]: portholed under the stand-in; sets MGR
start_mgr()
{
	local name=$1
	DAEMON_LOG=$PH_TMP/$name.log
	bg_guest "$PH_PYTHON" "$here/fdstore_manager.py" --notify-access "$2" --restart-ms 200 \
		${3:+--exec-stop "$3"} \
		--pidfile "$PH_TMP/$name.pid" --store-file "$PH_TMP/$name.store" \
		--state-file "$PH_TMP/$name.state" -- \
		"$PH_BUILD/portholed" --log-format text 2>>"$DAEMON_LOG"
	MGR=$PH_LAST_PID
	if ! wait_for "$(scaled 5000)" mgr_running "$name" || ! wait_for "$(scaled 3000)" exposed $PORT ||
		! wait_for "$(scaled 3000)" stored "$name" "tcp/$GUEST_IP/$PORT" ||
		! stored "$name" api; then
		fail "$name: daemon up under the stand-in, port exposed, listeners stored" \
			"$(cat "$PH_TMP/$name.state" "$PH_TMP/$name.store")" "$(tail -n 20 "$DAEMON_LOG")"
		return 1
	fi
}

# upgrade NAME: portholectl upgrade; prints the new pid once the old one is gone
upgrade()
{
	local old new
	old=$(main_pid "$1")
	new=$(in_host "$CTL" --addr "$GUEST_IP:$API_PORT" upgrade | sed -n 's/^upgraded: pid //p')
	[ -n "$new" ] && [ "$new" != "$old" ] && wait_for "$(scaled 5000)" gone "$old" && echo "$new"
}

# the upgrade's verdict: main pid, restarts, parent; $1 name, $2 old pid, $3 new pid, $4 which
upgrade_verdict()
{
	local name=$1 old=$2 new=$3 n=$4
	# RestartSec=200ms: a restart the old pid's exit caused would have started by now
	wait_for "$(scaled 2000)" bash -c "[ \"\$(cat $PH_TMP/$name.pid)\" = $new ]"
	sleep 0.5
	if [ "$(main_pid "$name")" = "$new" ] && [ "$(mgr_get "$name" n_restarts)" = 0 ] &&
		[ "$(mgr_get "$name" starts)" = 1 ] && [ "$(mgr_get "$name" state)" = running ] &&
		alive "$new" && health; then
		ok "$name: upgrade $n: the main pid is the new daemon's ($old -> $new), nothing restarted"
	else
		fail "$name: upgrade $n: the main pid becomes the new daemon's, nothing restarts" \
			"old $old new $new; manager: $(tr '\n' ' ' <"$PH_TMP/$name.state")" \
			"$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 15)"
		return 1
	fi
	grep -q "Child $old belongs to the unit, not the main pid $new" "$DAEMON_LOG" &&
		ok "$name: upgrade $n: the old pid's exit was seen and ignored (not the main pid)" ||
		fail "$name: upgrade $n: the old pid's exit is no main process exit" \
			"$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 15)"
	[ "$(ppid_of "$new")" = "$MGR" ] &&
		ok "$name: upgrade $n: the new daemon is the manager's child (CLONE_PARENT)" ||
		fail "$name: upgrade $n: the new daemon is the manager's child" "ppid $(ppid_of "$new"), manager $MGR"
}

if [ -z "$EXEC_STOP" ]; then
	fail "dist/portholed.service has an ExecStop= line"
	exit 1
fi
serve_echo 127.0.0.1 $PORT || exit 1

# --- a) NotifyAccess=all -------------------------------------------------------------
start_mgr a all "$EXEC_STOP" || exit 1
ino0=$(listener_inode "$GUEST_IP" $PORT)
api0=$(listener_inode 0.0.0.0 $API_PORT)
bg_host "$PH_PYTHON" "$here/connect_loop.py" "$GUEST_IP" $PORT "$PH_TMP/a.json"
LOOP=$PH_LAST_PID
sleep 0.5
pid=$(main_pid a)
for ((i = 1; i <= UPGRADES; i++)); do
	new=$(upgrade a)
	if [ -z "$new" ]; then
		fail "a: portholectl upgrade $i under the stand-in" "$(tail -n 20 "$DAEMON_LOG")"
		break
	fi
	track "$new"
	upgrade_verdict a "$pid" "$new" "$i" || break
	pid=$new
	sleep 0.3
done
n=$(mgr_log_count a "Supervising process")
[ "$n" = 0 ] && ok "a: no \"Supervising process N which is not our child\" in $UPGRADES upgrades" ||
	fail "a: no upgraded main pid is \"not our child\"" "$(grep 'Supervising process' "$DAEMON_LOG")"
[ "$(mgr_get a refused)" = 0 ] && ok "a: NotifyAccess=all: no notify message refused" ||
	fail "a: NotifyAccess=all: no notify message refused" "$(grep 'reception only' "$DAEMON_LOG")"

# kill -9 of the upgraded main pid: exactly one restart, with the stored sockets
sleep 0.3
kill -KILL "$pid"
wait_for "$(scaled 5000)" bash -c "p=\$(cat $PH_TMP/a.pid); [ \"\$p\" -gt 0 ] && [ \"\$p\" != $pid ]" &&
	wait_for "$(scaled 5000)" mgr_running a
restarted=$(main_pid a)
track "$restarted"
sleep 1.5	# several RestartSec: a second restart would show
if [ "$(mgr_get a n_restarts)" = 1 ] && [ "$(mgr_get a starts)" = 2 ] && [ "$restarted" != "$pid" ] &&
	[ "$(main_pid a)" = "$restarted" ] && alive "$restarted" &&
	[ "$(mgr_log_count a "Scheduled restart job")" = 1 ] &&
	[ "$(mgr_log_count a "Main process exited, code=killed, status=9/KILL")" = 1 ]; then
	ok "a: kill -9 of the upgraded main pid $pid: exactly one restart (pid $restarted)"
else
	fail "a: kill -9 of the upgraded main pid: exactly one restart" \
		"manager: $(tr '\n' ' ' <"$PH_TMP/a.state")" "$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 20)"
fi
check "a: the restarted daemon took the stored sockets" \
	grep -q "adopted sockets from the fd store sockets=2" "$DAEMON_LOG"
[ "$(listener_inode "$GUEST_IP" $PORT)" = "$ino0" ] && [ "$(listener_inode 0.0.0.0 $API_PORT)" = "$api0" ] &&
	[ -n "$ino0" ] && ok "a: the external and API listeners were never rebound" ||
	fail "a: the listeners were never rebound" "$ino0/$api0 -> $(listener_inode "$GUEST_IP" $PORT)/$(listener_inode 0.0.0.0 $API_PORT)"
sleep 0.3
connect_loop_through a "$LOOP" "$PH_TMP/a.json" 200 sd_upgrade_slowest_connection_ms \
	"$UPGRADES upgrades and a kill -9"
kill -TERM "$MGR"
wait "$MGR"
st=$?
[ "$st" = 0 ] && ! alive "$restarted" && grep -q "portholed stopping" "$DAEMON_LOG" &&
	! grep -q "with signal SIGKILL" "$DAEMON_LOG" &&
	ok "a: stop (SIGTERM to the manager): the restarted daemon stops cleanly, status 0" ||
	fail "a: stop: the daemon stops cleanly" "status $st" "$(tail -n 10 "$DAEMON_LOG")"

# upgrade_under PART ACCESS [EXEC_STOP]: a new manager, one upgrade under it;
# sets pid (the first daemon) and new (the upgraded one)
upgrade_under()
{
	wait_until_not "$(scaled 3000)" exposed $PORT
	start_mgr "$1" "$2" ${3:+"$3"} || exit 1
	pid=$(main_pid "$1")
	new=$(upgrade "$1")
	if [ -n "$new" ]; then
		track "$new"
		upgrade_verdict "$1" "$pid" "$new" 1
	else
		fail "$1: portholectl upgrade under NotifyAccess=$2${3:+ with ExecStop=}" "$(tail -n 20 "$DAEMON_LOG")"
	fi
}

# --- b) NotifyAccess=main --------------------------------------------------------------
upgrade_under b main
grep -q "New main PID $new belongs to service" "$DAEMON_LOG" &&
	ok "b: NotifyAccess=main: the old daemon's MAINPID=$new (the main pid's own message) was taken" ||
	fail "b: NotifyAccess=main: the old daemon's MAINPID= is taken" "$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 15)"
note "b: NotifyAccess=main refused $(mgr_get b refused) messages:" \
	"$(grep -o 'Got notification message from PID [0-9]*, but.*' "$DAEMON_LOG" | sort | uniq -c | tr '\n' ';')"
# The new process was started as the manager's child (CLONE_PARENT), so the
# MAINPID= names a child of the manager whenever it is read.
if grep -q "Supervising process $new which is not our child" "$DAEMON_LOG"; then
	fail "b: the new main pid is the manager's child when named (not \"not our child\")" \
		"$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 15)"
else
	ok "b: the new main pid $new is the manager's child when named (no \"not our child\")"
fi
# stop after an upgrade without ExecStop=: v252 waits for a main pid that is its child
kill -TERM "$MGR"
wait "$MGR"
st=$?
wait_for "$(scaled 3000)" gone "$new"
if [ "$st" = 0 ] && gone "$new" && ! grep -q "with signal SIGKILL" "$DAEMON_LOG" &&
	[ "$(grep -c "portholed stopping" "$DAEMON_LOG")" = 1 ]; then
	ok "b: stop after an upgrade without ExecStop=: the upgraded daemon's clean shutdown, no SIGKILL"
else
	fail "b: stop after an upgrade without ExecStop=: clean shutdown, no SIGKILL" \
		"status $st" "$(grep 'fdstore_manager' "$DAEMON_LOG" | tail -n 10)"
fi

# --- c) the unit's ExecStop=: a stop after an upgrade is a clean one ------------------------
upgrade_under c all "$EXEC_STOP"
# (the new main pid is the manager's child here, as in part b; ExecStop= is
# for a new process that had to be forked, which v252 would SIGKILL)
t0=$(date +%s%N)
kill -TERM "$MGR"
wait "$MGR"
st=$?
ms=$((($(date +%s%N) - t0) / 1000000))
wait_for "$(scaled 3000)" gone "$new"
if [ "$st" = 0 ] && gone "$new" && grep -q "ExecStop= started: pid [0-9]*, MAINPID=$new\$" "$DAEMON_LOG" &&
	[ "$(grep -c "portholed stopping" "$DAEMON_LOG")" = 1 ] &&
	grep -q "Main process exited, code=exited, status=0/SUCCESS" "$DAEMON_LOG" &&
	grep -q "Control process exited, code=exited, status=0" "$DAEMON_LOG" &&
	grep -E "Main process exited|Control process exited" "$DAEMON_LOG" | head -n 1 | grep -q "Main process" &&
	! grep -q "with signal SIGKILL" "$DAEMON_LOG" && grep -q "Deactivated successfully" "$DAEMON_LOG"; then
	ok "c: stop after an upgrade with the unit's ExecStop=: clean shutdown of pid $new, exit 0, no SIGKILL ($ms ms)"
else
	fail "c: stop after an upgrade with ExecStop=: the daemon's clean shutdown, exit 0, no SIGKILL" \
		"status $st, $ms ms" "$(tail -n 25 "$DAEMON_LOG")"
fi
figure sd_stop_after_upgrade_ms "$ms" ms

if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' "$PH_TMP/a.log" "$PH_TMP/b.log" "$PH_TMP/c.log"; then
	fail "no sanitizer report" "$(grep -h -E -A12 'Sanitizer|runtime error' "$PH_TMP/a.log" "$PH_TMP/b.log" "$PH_TMP/c.log" | head -n 40)"
else
	ok "no sanitizer report in the daemons' logs"
fi
