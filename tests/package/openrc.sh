# SPDX-License-Identifier: MIT
# tests/package/openrc.sh - dist/openrc/portholed under the real OpenRC
# (Debian 12's openrc 0.45.2: openrc-run, rc-service, supervise-daemon)
#
# Sourced by tests/package/run after its purge check, in the same clean root
# (ok/fail/check/in_root, $root, $deb, $top come from there). Issue #18 asks
# that upgrade and crash-restart work the same under systemd, OpenRC and
# busybox init; this is the OpenRC third, with OpenRC's own programs.
#
# How OpenRC runs here, outside PID 1:
#   - apt installs the package again, with openrc, into the chroot (never on
#     the machine itself: it would touch the host's init setup);
#   - the chroot's /run is a tmpfs of its own, holding OpenRC's state
#     (/run/openrc) and supervise-daemon's pid file; OpenRC was not booted,
#     so /run/openrc/softlevel is created by hand, as openrc-run.sh's
#     verify_boot() says to ("touch /run/openrc/softlevel");
#   - no /sys in the chroot: openrc-run's cgroup steps (rc-cgroup.sh) find
#     no /sys/fs/cgroup and do nothing, instead of moving the host's
#     processes between the host's cgroups;
#   - every rc-service runs in a network namespace of the test (guest,
#     169.254.0.21/30, a veth to the host namespace's 169.254.0.22, the
#     topology of tests/integration/lib.sh); clients run in the host one;
#   - supervise-daemon detaches (its parent becomes the machine's init), so
#     the run's cleanup kills whatever still has the chroot as its root.
# The script is dist/openrc/portholed from the tree (the package ships the
# systemd unit only), installed as /etc/init.d/portholed, with
# PORTHOLED_ARGS="--external-addr 169.254.0.21 --log-format text".
#
# Checks: 1 start (supervise-daemon -> portholed --supervise -> portholed,
# /health, a loopback service exposed), 2 status, 3 upgrade with streams
# running through a forwarded port (bytes checked, new daemon pid, same
# supervisor), 4 kill -9 of the daemon with a client connecting every ms
# (0 refused), and of the supervisor (supervise-daemon respawns it),
# 5 stop (nothing left, port closed, clean stop in the log) and start again,
# 6 the descriptor limit of rc_ulimit in the daemon, 7 PORTHOLED_USER (the
# capability supervise-daemon may not be able to grant).
# shellcheck shell=bash disable=SC2154,SC2034 # root, top, deb, work: set by tests/package/run; netns read there

orc_gns=phorc-g-$$ orc_hns=phorc-h-$$
orc_gip=169.254.0.21 orc_port=7811 orc_api=49982
orc_log=$root/var/log/portholed.log
orc_it=$top/tests/integration
orc_py=/usr/bin/python3; [ -x "$orc_py" ] || orc_py=python3	# as lib.sh: the fast-starting one
netns="$orc_gns $orc_hns"	# deleted by the run's cleanup

orc_guest() { nsenter --net="/run/netns/$orc_gns" "$@"; }
orc_host() { nsenter --net="/run/netns/$orc_hns" "$@"; }
# rc ARGS...: rc-service portholed ARGS in the chroot and the guest namespace,
# from the descriptor limits $orc_nofile (soft:hard)
rc() {
	orc_guest prlimit --nofile="$orc_nofile" chroot "$root" /usr/bin/env -i \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 rc-service portholed "$@"
}
# wait_for MS CMD...: CMD every 20 ms until it succeeds; 1 after MS
wait_for() { local n=$(($1 / 20)); shift; until "$@"; do ((n-- > 0)) || return 1; sleep 0.02; done; }
health() { orc_host curl -sf -m 2 -o /dev/null "http://$orc_gip:$orc_api/health"; }
# exposed PORT: a client in the host namespace connects to the external address
exposed() { orc_host timeout 2 bash -c "exec 3<>/dev/tcp/$orc_gip/$1" 2>/dev/null; }
# echo_through PORT: a line sent through the forwarded port comes back
echo_through() { [ "$(echo "through-$1" | orc_host socat -t 2 - "TCP4:$orc_gip:$1" 2>/dev/null)" = "through-$1" ]; }
first_child() { local c; c=$(cat "/proc/$1/task/$1/children" 2>/dev/null); echo "${c%% *}"; }
sd_pid() { cat "$root/run/supervise-portholed.pid" 2>/dev/null; }	# supervise-daemon's own
supervisor() { first_child "$(sd_pid)"; }	# portholed --supervise
daemon_pid() { first_child "$(supervisor)"; }	# portholed
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }
# every live process whose root is the chroot
root_procs() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && alive "${p#/proc/}" &&
			echo "${p#/proc/} $(cmdline "${p#/proc/}")"
	done
}
nofile() { awk '/Max open files/ { print $4 ":" $5 }' "/proc/$1/limits" 2>/dev/null; }
log_since() { tail -n +"$(($1 + 1))" "$orc_log" 2>/dev/null; }
log_lines() { wc -l <"$orc_log" 2>/dev/null || echo 0; }
conf() { printf 'PORTHOLED_ARGS="--external-addr %s --log-format text"\n%s' "$orc_gip" "${1:-}" \
	>"$root/etc/conf.d/portholed"; }
# bg_guest/bg_host CMD...: CMD in the background in that namespace; $! is
# CMD's pid (nsenter execs it), which the run's cleanup kills
bg_guest() { nsenter --net="/run/netns/$orc_gns" "$@" & bg="$bg $!"; }
bg_host() { nsenter --net="/run/netns/$orc_hns" "$@" & bg="$bg $!"; }
json_get() { "$orc_py" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(*(r[k] for k in sys.argv[2:]))' "$@"; }

# Raising a hard limit needs CAP_SYS_RESOURCE (bit 24), which a guest's
# root has; this CI machine's root may lack it. With it, rc-service starts
# from 1024:4096 and rc_ulimit must raise both to 1048576; without it, from
# 1024:<the hard limit here>, and OpenRC cannot apply the shipped value.
hard0=$(ulimit -Hn)
if (($(printf '%d' "0x$(awk '/^CapEff/ {print $2}' /proc/self/status)") >> 24 & 1)); then
	orc_cap=1 orc_nofile=1024:4096 nofile2=8192
else
	orc_cap=0 orc_nofile=1024:$hard0 nofile2=$((hard0 > 16384 ? 8192 : hard0 / 2))
fi

t_orc=$SECONDS
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
d="OpenRC: apt-get install ./$(basename "$deb") openrc (Debian 12's openrc) in the root"
if out=$(in_root "apt-get install -y -qq --no-install-recommends /tmp/$(basename "$deb") openrc" 2>&1); then
	ok "$d"
else
	fail "$d" "$out"
	return 0	# nothing below could run
fi
ver=$(in_root "dpkg-query -W -f='\${Version}' openrc" 2>/dev/null)
echo "# openrc $ver"
install -m 0755 "$top/dist/openrc/portholed" "$root/etc/init.d/portholed"
mkdir -p "$root/etc/conf.d"	# Debian's openrc does not ship it
conf
mkdir -p "$root/run/openrc" && touch "$root/run/openrc/softlevel"
ip netns add "$orc_gns" && ip netns add "$orc_hns" &&
	ip link add eth0 netns "$orc_gns" type veth peer name eth0 netns "$orc_hns" &&
	ip -n "$orc_gns" addr add "$orc_gip/30" dev eth0 && ip -n "$orc_hns" addr add 169.254.0.22/30 dev eth0 &&
	ip -n "$orc_gns" link set lo up && ip -n "$orc_hns" link set lo up &&
	ip -n "$orc_gns" link set eth0 up && ip -n "$orc_hns" link set eth0 up &&
	ip -n "$orc_gns" route add default via 169.254.0.22 ||
	{ fail "OpenRC: the test's network namespaces"; return 0; }

# --- 1. start ------------------------------------------------------------------------------
start_out=$(rc start 2>&1); st=$?
if [ "$st" = 0 ] && [[ $start_out == *"Starting portholed ..."*"[ ok ]"* ]] && wait_for 5000 health; then
	ok "1 start: rc-service portholed start [ ok ], /health answers on $orc_gip"
else
	fail "1 start: rc-service portholed start, /health answers" "exit $st" "$start_out" "$(tail -n 15 "$orc_log")"
fi
sd=$(sd_pid) sup=$(supervisor) dmn=$(daemon_pid)
if [[ $(cmdline "$sd") == "supervise-daemon portholed --start "* ]] &&
	[[ $(cmdline "$sup") == "/usr/sbin/portholed --supervise --external-addr $orc_gip --log-format text " ]] &&
	[[ $(cmdline "$dmn") == "/usr/sbin/portholed --external-addr $orc_gip --log-format text " ]] &&
	[ "$(readlink "/proc/$dmn/exe")" = "$root/usr/sbin/portholed" ]; then
	ok "1 start: supervise-daemon ($sd) runs portholed --supervise ($sup), whose child is the daemon ($dmn)"
else
	fail "1 start: supervise-daemon -> portholed --supervise -> portholed" "$(root_procs)"
fi
bg_guest socat "TCP4-LISTEN:$orc_port,bind=127.0.0.1,reuseaddr,fork" PIPE
if wait_for 5000 exposed $orc_port && echo_through $orc_port; then
	ok "1 start: a loopback-only service started afterwards is exposed on $orc_gip:$orc_port (echo through it)"
else
	fail "1 start: a loopback-only service is exposed" "$(tail -n 10 "$orc_log")"
fi
grep -q ' info  portholed started version=' "$orc_log" && ! grep -q '^{' "$orc_log" &&
	ok "1 start: the daemon logs to /var/log/portholed.log in the text format PORTHOLED_ARGS asks for" ||
	fail "1 start: the log (text format) in /var/log/portholed.log" "$(head -n 5 "$orc_log")"

# --- 2. status -----------------------------------------------------------------------------
out=$(rc status 2>&1); st=$?
[ "$st" = 0 ] && [[ $out == *"status: started"* ]] && ok "2 status: started (exit 0)" ||
	fail "2 status: started" "exit $st" "$out"

# --- 6 (first start). the shipped rc_ulimit ---------------------------------------------
lim=$(nofile "$(daemon_pid)")
if [ "$orc_cap" = 1 ]; then
	[ "$lim" = 1048576:1048576 ] && ok "6 rc_ulimit: the daemon's descriptor limit is 1048576 (from 1024:4096)" ||
		fail "6 rc_ulimit: the daemon's descriptor limit is 1048576" "$lim"
else
	echo "# no CAP_SYS_RESOURCE here: OpenRC cannot apply the shipped rc_ulimit (1048576 > hard $hard0)"
	[[ $start_out == *"unable to apply RC_ULIMIT settings"* ]] && [ "$lim" = "$hard0:$hard0" ] &&
		ok "6 without CAP_SYS_RESOURCE OpenRC says it cannot apply rc_ulimit; the daemon runs, soft limit raised to the hard one ($lim)" ||
		fail "6 without CAP_SYS_RESOURCE: OpenRC's error, the daemon at the hard limit" "$lim" "$start_out"
fi

# --- 3. upgrade with streams running through the forwarded port ---------------------------
bg_host "$orc_py" "$orc_it/stream_check.py" "$orc_gip" $orc_port 4 "$work/streams.json" 256
streams=$!
sleep 1
n0=$(log_lines)
out=$(rc upgrade 2>&1); st=$?
new_daemon() { local d; d=$(daemon_pid); [ -n "$d" ] && [ "$d" != "$dmn" ] && ! alive "$dmn"; }
if [ "$st" = 0 ] && [[ $out == *"Upgrading portholed in place (SIGUSR2) ..."*"[ ok ]"* ]] &&
	wait_for 5000 new_daemon; then
	dmn1=$(daemon_pid)
	ok "3 upgrade: rc-service portholed upgrade [ ok ]; the daemon's pid $dmn -> $dmn1, the old one gone"
else
	dmn1=$(daemon_pid)
	fail "3 upgrade: rc-service portholed upgrade replaces the daemon" "exit $st" "$out" "$(log_since "$n0")"
fi
log_since "$n0" | grep -q "supervise: portholed upgraded old_pid=$dmn pid=$dmn1" &&
	ok "3 upgrade: the supervisor adopted the new daemon (log)" ||
	fail "3 upgrade: the supervisor adopts the new daemon" "$(log_since "$n0")"
[ "$(sd_pid)" = "$sd" ] && [ "$(supervisor)" = "$sup" ] &&
	ok "3 upgrade: supervise-daemon and the supervisor kept their pids (nothing respawned)" ||
	fail "3 upgrade: nothing respawned" "sd $sd -> $(sd_pid), supervisor $sup -> $(supervisor)"
sleep 1	# the streams go on through the new daemon
kill -TERM "$streams"
wait "$streams"
read -r resets bad unfinished sent echoed gap < <(json_get "$work/streams.json" resets mismatches unfinished \
	bytes_sent bytes_echoed max_gap_ms 2>/dev/null)
[ "${resets:-x}" = 0 ] && [ "$unfinished" = 0 ] && [ "$bad" = 0 ] && [ "$sent" = "$echoed" ] && [ "$sent" -gt 0 ] &&
	ok "3 upgrade: 4 streams through it survived, 0 bytes lost or changed ($sent bytes each way, longest pause $gap ms)" ||
	fail "3 upgrade: the streams survive, every byte echoed" "$(cat "$work/streams.json" 2>/dev/null)"
echo "# figure: openrc_upgrade_stream_max_gap_ms $gap ms"
out=$(rc status 2>&1)
[[ $out == *"status: started"* ]] && exposed $orc_port && echo_through $orc_port &&
	ok "3 upgrade: status still started, the port still exposed" ||
	fail "3 upgrade: status started, port exposed" "$out"

# --- 4. crashes: kill -9 of the daemon, then of the supervisor -----------------------------
bg_host "$orc_py" "$orc_it/connect_loop.py" "$orc_gip" $orc_port "$work/loop.json"
loop=$!
sleep 0.5
n0=$(log_lines)
kill -KILL "$dmn1"
restarted() { local d; d=$(daemon_pid); [ -n "$d" ] && [ "$d" != "$dmn1" ] && health; }
if wait_for 5000 restarted; then
	dmn2=$(daemon_pid)
	ok "4 kill -9 of the daemon ($dmn1): the supervisor restarted it ($dmn2), /health answers"
else
	fail "4 kill -9 of the daemon: restarted by the supervisor" "$(root_procs)" "$(log_since "$n0")"
fi
sleep 0.5
kill -TERM "$loop"
wait "$loop"
read -r lok refused lost timeout maxms < <(json_get "$work/loop.json" ok refused lost timeout max_ok_ms 2>/dev/null)
# a sequential client: the kill can cost the one connection in flight
[ "${refused:-x}" = 0 ] && [ "$timeout" = 0 ] && [ "$lost" -le 1 ] && [ "$lok" -gt 100 ] &&
	ok "4 a client connecting every ms meanwhile: $lok ok, 0 refused, 0 timed out, $lost lost (slowest $maxms ms)" ||
	fail "4 a client connecting every ms: 0 refused, 0 timed out" \
		"$lok ok, $refused refused, $lost lost, $timeout timed out"
[ "$(sd_pid)" = "$sd" ] && [ "$(supervisor)" = "$sup" ] && [[ $(rc status 2>&1) == *"status: started"* ]] &&
	ok "4 the restart was the supervisor's (supervise-daemon respawned nothing); status started" ||
	fail "4 the supervisor restarts the daemon, supervise-daemon nothing" "$(root_procs)"
# respawn_max=0, respawn_delay=1: a killed supervisor comes back after about a second
t0=$SECONDS
kill -KILL "$sup"
respawned() { local s; s=$(supervisor); [ -n "$s" ] && [ "$s" != "$sup" ] && [ -n "$(daemon_pid)" ] && health; }
if wait_for 8000 respawned; then
	sup=$(supervisor)
	ok "4 kill -9 of portholed --supervise: supervise-daemon respawned it ($sup, $((SECONDS - t0)) s), /health answers"
else
	fail "4 kill -9 of the supervisor: supervise-daemon respawns it" "$(root_procs)" "$(tail -n 10 "$orc_log")"
fi
wait_for 5000 exposed $orc_port && echo_through $orc_port &&
	ok "4 the port is exposed by the respawned supervisor's daemon" || fail "4 the port is exposed after the respawn"

# --- 5. stop, and start again ------------------------------------------------------------
n0=$(log_lines)
out=$(rc stop 2>&1); st=$?
left=$(root_procs)
[ "$st" = 0 ] && [[ $out == *"Stopping portholed ..."*"[ ok ]"* ]] && [ -z "$left" ] &&
	ok "5 stop: rc-service portholed stop [ ok ]; no process left in the root" ||
	fail "5 stop: [ ok ], every porthole process gone" "exit $st" "$out" "left: $left"
! exposed $orc_port && ! health &&
	ok "5 stop: port $orc_port and the API are no longer exposed (connections refused)" ||
	fail "5 stop: the port is no longer exposed"
log_since "$n0" | grep -q 'info  portholed stopping signal=Terminated' &&
	log_since "$n0" | grep -q 'supervise: portholed stopped status=0' &&
	log_since "$n0" | grep -q 'supervise: exiting status=0' && ! log_since "$n0" | grep -q 'SIGKILL\|error' &&
	ok "5 stop: the log shows a clean stop (daemon stopping, status 0, supervisor exiting 0)" ||
	fail "5 stop: a clean stop in the log" "$(log_since "$n0")"
out=$(rc status 2>&1); st=$?
[ "$st" = 3 ] && [[ $out == *"status: stopped"* ]] && ok "5 status after stop: stopped (exit 3)" ||
	fail "5 status after stop: stopped" "exit $st" "$out"

# --- 6. PORTHOLED_NOFILE -> rc_ulimit -> the daemon --------------------------------------------
conf "PORTHOLED_NOFILE=$nofile2"
out=$(rc start 2>&1); st=$?
if [ "$st" = 0 ] && wait_for 5000 health && wait_for 5000 exposed $orc_port && echo_through $orc_port &&
	[[ $(rc status 2>&1) == *"status: started"* ]]; then
	ok "5 start again: [ ok ], /health answers, the port is exposed again, status started"
else
	fail "5 start again" "exit $st" "$out" "$(tail -n 10 "$orc_log")"
fi
dmn=$(daemon_pid) sup=$(supervisor)
[ "$(nofile "$dmn")" = "$nofile2:$nofile2" ] && [ "$(nofile "$sup")" = "$nofile2:$nofile2" ] &&
	[[ $out != *"unable to apply RC_ULIMIT"* ]] &&
	ok "6 rc_ulimit (PORTHOLED_NOFILE=$nofile2, from $orc_nofile) reaches the supervisor and the daemon ($(nofile "$dmn"))" ||
	fail "6 rc_ulimit reaches the daemon" "daemon $(nofile "$dmn"), supervisor $(nofile "$sup"), want $nofile2:$nofile2" "$out"
rc stop >/dev/null 2>&1

# --- 7. PORTHOLED_USER -----------------------------------------------------------------------------
# The daemon as an unprivileged user, given CAP_NET_BIND_SERVICE by
# supervise-daemon when it can (libcap); a loopback service on port 80 tells.
in_root "useradd --system --no-create-home --shell /usr/sbin/nologin porthole"
conf 'PORTHOLED_USER=porthole'
bg_guest socat TCP4-LISTEN:80,bind=127.0.0.1,reuseaddr,fork PIPE
n0=$(log_lines)
out=$(rc start 2>&1); st=$?
uid=$(in_root "id -u porthole")
if [ "$st" = 0 ] && wait_for 5000 health && wait_for 5000 exposed $orc_port &&
	[ "$(awk '/^Uid:/ {print $2}' "/proc/$(daemon_pid)/status" 2>/dev/null)" = "$uid" ]; then
	ok "7 PORTHOLED_USER=porthole: started, the daemon runs as uid $uid, port $orc_port exposed"
else
	fail "7 PORTHOLED_USER=porthole: started as that user" "exit $st" "$out" "$(log_since "$n0")"
fi
if [[ $out == *"cannot grant ^cap_net_bind_service"* ]]; then
	log_since "$n0" | grep -q 'port conflict port=80 proto=tcp error="169.254.0.21: Permission denied"' && ! exposed 80 &&
		ok "7 this supervise-daemon has no libcap: the start warns, port 80 stays unexposed (logged)" ||
		fail "7 without libcap: port 80 unexposed and logged" "$(log_since "$n0")"
else
	wait_for 5000 exposed 80 &&
		ok "7 supervise-daemon granted CAP_NET_BIND_SERVICE: port 80 is exposed" ||
		fail "7 the capability lets the daemon expose port 80" "$out" "$(log_since "$n0")"
fi
out=$(rc stop 2>&1); st=$?
[ "$st" = 0 ] && [ -z "$(root_procs)" ] && ok "7 stop: nothing left" || fail "7 stop: nothing left" "$out" "$(root_procs)"
echo "# figure: openrc part $((SECONDS - t_orc)) s"
