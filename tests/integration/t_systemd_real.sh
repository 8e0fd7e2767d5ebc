# SPDX-License-Identifier: MIT
# t_systemd_real.sh - portholed.service under the real systemd 252: boot, upgrade, crash restart from the fd store, stop
#
# The stand-in (fdstore_manager.py, t_core_upgrade_systemd.sh) decides as
# systemd's source does; this file asks systemd itself. tests/systemd/run
# prepares PH_SD_ROOT: a minbase Debian 12 root with systemd, systemd-sysv,
# dbus and the project's .deb, whose postinst enabled portholed.service as
# shipped (dist/portholed.service). Here systemd-nspawn boots it (systemd as
# the container's PID 1) inside this file's guest network namespace, so the
# guest address 169.254.0.21 and the clients in the host namespace are the
# usual ones. systemctl and journalctl run in the container (nsenter into
# all its namespaces: no machined on this host); pids are the container's.
# The echo service is the host's tcpprobe echo in the container's network namespace
# (the minbase root has none): portholed sees what it would see of any
# loopback-only service there.
#   1. after boot: the unit enabled and active/running, Type= as the unit
#      says, STATUS=serving (sent with READY=1), /health answers from the
#      host; a service on 127.0.0.1 is exposed on 169.254.0.21 (echo
#      round trip) and its listener and the API's are in systemd's fd store.
#   2. portholectl upgrade while 4 connections stream through the port:
#      every byte comes back in order, no reset; MainPID is the new process,
#      the unit stays active, no restart, no "Supervising process ... not
#      our child" warning in the journal.
#   2b. failed upgrades (a binary that exits at once, one that hangs): the
#      daemon answers why and goes on as the main pid, no restart; the hung
#      one, systemd's child (CLONE_PARENT), is killed through its pidfd.
#   3. kill -9 of the (upgraded) main pid: one restart (Restart=always); the
#      new process takes both listeners from the fd store (same socket
#      inodes); a client connecting every ms meanwhile: 0 refused, 0 timed
#      out, at most the connection in flight lost.
#   4. another upgrade, then systemctl stop: Result=success, no SIGKILL in
#      the journal, the daemon's own clean shutdown, no process left.
#   5. the same with ExecStop= removed (a drop-in): systemd waits for the
#      upgraded main pid itself, as for any child of its own.
# Without PH_SD_ROOT (the plain integration runs) the file is skipped.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=7641
CTL=$PH_BUILD/portholectl
ROOT=${PH_SD_ROOT:-}
if [ -z "$ROOT" ]; then
	skip "the real systemd: needs the root tests/systemd/run prepares (PH_SD_ROOT)"
	exit 0
fi
UNIT=$ROOT/lib/systemd/system/portholed.service

sd() { nsenter -t "$INIT" -a -- "$@"; }
prop() { sd systemctl show -p "$1" --value portholed.service; }
# the unit's journal (systemd's lines about it and the daemon's), from line $1 on
journal() { sd journalctl --sync 2>/dev/null; sd journalctl -u portholed.service --no-pager -q | tail -n +"${1:-1}"; }
journal_lines() { journal | wc -l; }
sd_alive() { sd sh -c "kill -0 $1" 2>/dev/null; }
sd_gone() { ! sd_alive "$1"; }
health() { in_host curl -sf -m 2 "http://$GUEST_IP:$API_PORT/health" | grep -q '"state":"running"'; }
active() { [ "$(prop ActiveState)/$(prop SubState)" = active/running ]; }
main_is_new() { local p; p=$(prop MainPID); [ "$p" -gt 0 ] && [ "$p" != "$1" ] && active; }
upgrade() { in_host "$CTL" --addr "$GUEST_IP:$API_PORT" upgrade | sed -n 's/^upgraded: pid //p'; }
not_our_child() { journal "$1" | grep 'Supervising process'; }

# --- boot --------------------------------------------------------------------------
t0=$(now_ms)
systemd-nspawn -q -D "$ROOT" -M "ph-$PH_ID" --register=no --keep-unit \
	--network-namespace-path="/run/netns/$PH_GUEST_NS" --console=pipe -b \
	</dev/null >"$PH_TMP/nspawn.log" 2>&1 &
NSPAWN=$!
track "$NSPAWN"
INIT=
# the container's init: nspawn's child once it has exec'd systemd (before
# that, a child of nspawn may be its short-lived outer helper)
init_up() { INIT=$(pgrep -P "$NSPAWN" -x systemd | head -n 1); [ -n "$INIT" ]; }
booted() { init_up && case $(sd systemctl is-system-running 2>/dev/null) in running | degraded) ;; *) false ;; esac; }
if ! wait_for "$(scaled 60000)" booted; then
	fail "systemd boots in the container (systemd-nspawn -b)" "$(cat "$PH_TMP/nspawn.log")" \
		"$(sd systemctl list-jobs --no-pager 2>&1)"
	exit 1
fi
boot_ms=$(($(now_ms) - t0))
state=$(sd systemctl is-system-running)
[ "$state" = running ] && ok "systemd $(sd systemctl --version | sed -n '1s/^systemd //p') booted as the container's PID 1: $state ($boot_ms ms)" ||
	fail "systemd booted: running" "$state" "$(sd systemctl --failed --no-pager)"
figure systemd_boot_ms "$boot_ms" ms

# --- 1. enabled and active after boot --------------------------------------------------
check "1: the package enabled the unit (systemctl is-enabled)" \
	test "$(sd systemctl is-enabled portholed.service)" = enabled
want_type=$(sed -n 's/^Type=//p' "$UNIT")
if active && [ "$(prop Type)" = "$want_type" ] && [ "$(prop StatusText)" = serving ] &&
	[ "$(prop NRestarts)" = 0 ]; then
	ok "1: active (running) after boot, Type=$want_type as the unit says, READY=1 with STATUS=serving"
else
	fail "1: active after boot, Type=$want_type, STATUS=serving" \
		"$(sd systemctl status --no-pager portholed.service 2>&1)"
fi
wait_for "$(scaled 3000)" health && ok "1: /health answers on $GUEST_IP:$API_PORT from the host" ||
	fail "1: /health answers from the host" "$(journal | tail -n 20)"
serve_echo 127.0.0.1 $PORT || exit 1
if wait_for "$(scaled 3000)" exposed $PORT && roundtrip host "$GUEST_IP" $PORT; then
	ok "1: a service on 127.0.0.1:$PORT in the container is exposed on $GUEST_IP:$PORT (echo round trip)"
else
	fail "1: the loopback-only service is exposed" "$(journal | tail -n 20)"
fi
wait_for "$(scaled 3000)" bash -c "[ \"\$(nsenter -t $INIT -a -- systemctl show -p NFileDescriptorStore --value portholed.service)\" = 2 ]" &&
	ok "1: systemd's fd store holds the two listeners (API, port $PORT): NFileDescriptorStore=2" ||
	fail "1: the fd store holds the API's and the port's listener" "NFileDescriptorStore=$(prop NFileDescriptorStore)"
ino0=$(listener_inode "$GUEST_IP" $PORT 2>/dev/null)
api0=$(listener_inode 0.0.0.0 $API_PORT 2>/dev/null)

# --- 2. upgrade under streaming connections ---------------------------------------------
mark=$(($(journal_lines) + 1))
pid0=$(prop MainPID)
bg_host "$PH_PYTHON" "$here/stream_check.py" "$GUEST_IP" $PORT 4 "$PH_TMP/streams.json" 64
STREAMS=$PH_LAST_PID
wait_for "$(scaled 5000)" bash -c "[ \$(nsenter --net=/run/netns/$PH_GUEST_NS ss -Htn state established 'dport = :$PORT' | wc -l) -ge 4 ]" ||
	fail "2: the 4 streams are connected"
sleep 1
pid1=$(upgrade)
if [ -n "$pid1" ] && wait_for "$(scaled 5000)" sd_gone "$pid0" && wait_for "$(scaled 3000)" main_is_new "$pid0"; then
	sleep 0.5	# RestartSec=200ms: a restart the old pid's exit caused would show by now
	[ "$(prop MainPID)" = "$pid1" ] && active && [ "$(prop NRestarts)" = 0 ] && health &&
		ok "2: portholectl upgrade: MainPID $pid0 -> $pid1 (the new process), still active, no restart" ||
		fail "2: after the upgrade MainPID is the new process, active, no restart" \
			"new $pid1, MainPID $(prop MainPID), NRestarts $(prop NRestarts)" "$(journal "$mark")"
else
	fail "2: portholectl upgrade under systemd" "new pid '$pid1'" "$(journal "$mark" | tail -n 20)"
fi
warn=$(not_our_child "$mark")
[ -z "$warn" ] && ok "2: no \"Supervising process ... which is not our child\" warning" ||
	fail "2: no \"Supervising process ... not our child\" warning about the new main pid" "$warn"
sleep 1
kill -TERM "$STREAMS"
wait "$STREAMS"
read -r resets bad unfinished sent echoed gap < <("$PH_PYTHON" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["resets"], r["mismatches"], r["unfinished"], r["bytes_sent"], r["bytes_echoed"], r["max_gap_ms"])' "$PH_TMP/streams.json")
[ "$resets" = 0 ] && [ "$bad" = 0 ] && [ "$unfinished" = 0 ] && [ "$sent" = "$echoed" ] && [ "${sent:-0}" -gt 100000 ] &&
	ok "2: 4 connections streamed through the upgrade: $echoed of $sent bytes back in order, no reset (longest gap $gap ms)" ||
	fail "2: the streamed connections survive the upgrade byte for byte" "$(cat "$PH_TMP/streams.json")"
figure sd_real_upgrade_stream_gap_ms "$gap" ms

# --- 2b. failed upgrades: the new process is systemd's child, stopped through its pidfd ---------
printf '#!/bin/sh\nexec sleep 60\n' >"$ROOT/usr/local/bin/ph-hang"
chmod 755 "$ROOT/usr/local/bin/ph-hang"
mark=$(($(journal_lines) + 1))
sd_comm_count() { sd sh -c 'for p in /proc/[0-9]*; do cat "$p/comm"; done' 2>/dev/null | grep -c "^$1\$"; }
failed_upgrade()
{
	local name=$1 bin=$2 want=$3 out st
	out=$(in_host "$CTL" --addr "$GUEST_IP:$API_PORT" upgrade --binary "$bin" 2>&1)
	st=$?
	if [ "$st" = 1 ] && grep -q "$want" <<<"$out" && [ "$(prop MainPID)" = "$pid1" ] && active &&
		[ "$(prop NRestarts)" = 0 ] && health; then
		ok "2b: $name: portholectl upgrade exits 1 ($want), MainPID $pid1 goes on, no restart"
	else
		fail "2b: $name: the upgrade fails, the daemon goes on" "status $st: $out" \
			"MainPID $(prop MainPID), NRestarts $(prop NRestarts)" "$(journal "$mark" | tail -n 10)"
	fi
}
failed_upgrade "a binary that exits at once (/bin/false)" /bin/false "ended before taking over"
t0=$(now_ms)
failed_upgrade "a binary that hangs" /usr/local/bin/ph-hang "did not take over within"
figure sd_real_upgrade_hang_answer_ms $(($(now_ms) - t0)) ms
wait_for "$(scaled 2000)" bash -c "[ \$(nsenter -t $INIT -a -- sh -c 'for p in /proc/[0-9]*; do cat \$p/comm; done' | grep -c '^sleep\$') = 0 ]" &&
	ok "2b: the hanging binary was killed through its pidfd (no sleep left in the container)" ||
	fail "2b: the hanging new process is gone" "$(sd_comm_count sleep) left"

# --- 3. kill -9: a restart that takes the stored listeners --------------------------------
mark=$(($(journal_lines) + 1))
bg_host "$PH_PYTHON" "$here/connect_loop.py" "$GUEST_IP" $PORT "$PH_TMP/loop.json"
LOOP=$PH_LAST_PID
sleep 0.5
sd sh -c "kill -KILL $pid1"
if wait_for "$(scaled 5000)" main_is_new "$pid1" && wait_for "$(scaled 3000)" health; then
	pid2=$(prop MainPID)
	sleep 1.5	# several RestartSec: a second restart would show
	[ "$(prop NRestarts)" = 1 ] && [ "$(prop MainPID)" = "$pid2" ] && active &&
		journal "$mark" | grep -q 'Main process exited, code=killed, status=9/KILL' &&
		ok "3: kill -9 of main pid $pid1: one restart (Restart=always), main pid $pid2" ||
		fail "3: kill -9: exactly one restart" "NRestarts $(prop NRestarts)" "$(journal "$mark" | tail -n 20)"
else
	fail "3: kill -9 of the main pid: systemd restarts the daemon" "$(journal "$mark" | tail -n 20)"
	pid2=$(prop MainPID)
fi
journal "$mark" | grep "portholed\[$pid2\]" | grep -q '"msg":"portholed started".*"adopted":2' &&
	ok "3: the restarted daemon took both listeners from systemd's fd store (adopted 2)" ||
	fail "3: the restarted daemon adopts the stored listeners" "$(journal "$mark" | grep "portholed\[$pid2\]" | head -n 5)"
# (ss cannot name the container's cgroup: "Failed to open cgroup2 by ID" on stderr)
ino1=$(listener_inode "$GUEST_IP" $PORT 2>/dev/null)
api1=$(listener_inode 0.0.0.0 $API_PORT 2>/dev/null)
[ -n "$ino0" ] && [ "$ino1" = "$ino0" ] && [ "$api1" = "$api0" ] &&
	ok "3: the port's and the API's listeners are the first daemon's sockets (inodes $ino0, $api0)" ||
	fail "3: the listeners were never rebound" "$ino0/$api0 -> $ino1/$api1"
sleep 0.5
connect_loop_through 3 "$LOOP" "$PH_TMP/loop.json" 200 sd_real_restart_slowest_connection_ms \
	"the kill and the restart"

# --- 4. upgrade, then systemctl stop ----------------------------------------------------------
mark=$(($(journal_lines) + 1))
pid3=$(upgrade)
if [ -z "$pid3" ] || ! wait_for "$(scaled 5000)" sd_gone "$pid2" || ! wait_for "$(scaled 3000)" main_is_new "$pid2"; then
	fail "4: the upgrade before the stop" "new pid '$pid3'" "$(journal "$mark" | tail -n 20)"
fi
warn=$(not_our_child "$mark")
[ -z "$warn" ] || fail "4: no \"not our child\" warning about the upgraded main pid" "$warn"
sleep 0.3
t0=$(now_ms)
sd systemctl stop portholed.service
st=$?
stop_ms=$(($(now_ms) - t0))
if [ "$st" = 0 ] && [ "$(prop ActiveState)" = inactive ] && [ "$(prop Result)" = success ] &&
	sd_gone "$pid3" && sd_gone "$pid2" && ! journal "$mark" | grep -q 'SIGKILL' &&
	journal "$mark" | grep "portholed\[$pid3\]" | grep -q '"msg":"portholed stopping"' &&
	journal "$mark" | grep -q 'portholed.service: Deactivated successfully'; then
	ok "4: systemctl stop after an upgrade: Result=success, pid $pid3 shut down cleanly, no SIGKILL ($stop_ms ms)"
else
	fail "4: systemctl stop after an upgrade: success, clean shutdown, no SIGKILL" \
		"status $st, $(prop ActiveState), Result=$(prop Result)" "$(journal "$mark" | tail -n 15)"
fi
left=$(sd sh -c 'for p in /proc/[0-9]*; do cat "$p/comm"; done' 2>/dev/null | grep -c '^portholed$')
[ "$(prop MainPID)" = 0 ] && [ "$left" = 0 ] && ok "4: no portholed process left in the container" ||
	fail "4: no portholed process left" "MainPID $(prop MainPID), $left portholed processes"
figure sd_real_stop_after_upgrade_ms "$stop_ms" ms

# --- 5. the same without ExecStop=: systemd itself waits for the upgraded main pid --------------
# (the new process is systemd's child; one that was the old daemon's would
# get SIGTERM and at once SIGKILL from v252 here: t_core_upgrade_systemd.sh b)
mkdir -p "$ROOT/etc/systemd/system/portholed.service.d"
printf '[Service]\nExecStop=\n' >"$ROOT/etc/systemd/system/portholed.service.d/no-execstop.conf"
sd systemctl daemon-reload
sd systemctl start portholed.service
mark=$(($(journal_lines) + 1))
pid4=$(prop MainPID)
pid5=
if [ "$(prop ExecStop)" = "" ] && active && wait_for "$(scaled 3000)" health; then
	pid5=$(upgrade)
	[ -n "$pid5" ] && wait_for "$(scaled 5000)" sd_gone "$pid4" && wait_for "$(scaled 3000)" main_is_new "$pid4"
fi
sleep 0.3
sd systemctl stop portholed.service
st=$?
if [ -n "$pid5" ] && [ "$st" = 0 ] && [ "$(prop Result)" = success ] && sd_gone "$pid5" &&
	! journal "$mark" | grep -q -e 'SIGKILL' -e 'Supervising process' &&
	journal "$mark" | grep "portholed\[$pid5\]" | grep -q '"msg":"portholed stopping"'; then
	ok "5: without ExecStop=: upgrade ($pid4 -> $pid5), systemctl stop: success, clean shutdown, no SIGKILL"
else
	fail "5: without ExecStop=: a stop after an upgrade is a clean one" \
		"status $st, upgraded to '$pid5', Result=$(prop Result), ExecStop='$(prop ExecStop)'" "$(journal "$mark" | tail -n 15)"
fi

# --- the container goes down cleanly -------------------------------------------------------
sd systemctl poweroff >/dev/null 2>&1
down() { ! kill -0 "$NSPAWN" 2>/dev/null; }
if wait_for "$(scaled 20000)" down; then
	wait "$NSPAWN"
	st=$?
	[ "$st" = 0 ] && ok "the container powered off (systemd-nspawn exited 0)" ||
		fail "the container powered off cleanly" "systemd-nspawn exited $st" "$(tail -n 20 "$PH_TMP/nspawn.log")"
else
	fail "the container powers off within 20 s" "$(tail -n 20 "$PH_TMP/nspawn.log")"
fi
