# SPDX-License-Identifier: MIT
# t_core_events.sh - listen events: detection and removal at event latency
# (TCP, and UDP through the cgroup bind/release hooks), the mechanism named in
# the log and /metrics, other namespaces ignored (TCP and UDP), a burst of
# listeners in a few scans (the daemon's own listeners cause none), the perf
# tracepoint source, and the fallbacks (no cgroup v2 for the UDP hooks: TCP
# events stay; --discovery poll; no CAP_BPF/CAP_PERFMON; no tracefs)

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
metric() { in_guest curl -s "http://$GUEST_IP:$API_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

daemon_start || exit 1
if ! daemon_log_has '"discovery":"events"|discovery=events'; then
	skip "listen events unavailable here: $(grep -m1 -E 'discovery polls' "$DAEMON_LOG")"
	daemon_stop
	exit 0
fi
ok "default discovery uses listen events (start-up log)"
[ "$(metric 'porthole_discovery_info{mechanism="events",source="bpf"}')" = 1 ] && ok "/metrics names the mechanism" ||
	fail "/metrics names the mechanism"

out=$("$probe" latency "/run/netns/$PH_GUEST_NS" "/run/netns/$PH_HOST_NS" "$GUEST_IP" 7401 50 2>&1) ||
	fail "events: 50 expose/remove trials completed" "$out"
val() { echo "$out" | awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
for k in open_p50_ms open_p99_ms close_p50_ms close_p99_ms; do figure "events_$k" "$(val $k)" ms; done
# target 2 ms; loose here (shared 2-core CI), still far below one 1 s safety-net scan
le "$(val open_p99_ms)" "$(scaled 50)" && ok "events: detection p99 $(val open_p99_ms) ms <= 50 ms" ||
	fail "events: detection p99 $(val open_p99_ms) ms <= 50 ms"
le "$(val close_p99_ms)" "$(scaled 50)" && ok "events: removal p99 $(val close_p99_ms) ms <= 50 ms" ||
	fail "events: removal p99 $(val close_p99_ms) ms <= 50 ms"

# UDP: a bound socket is reported by the cgroup post-bind hook, its close by
# the release hook. Removal is the sender's ICMP port unreachable: lift the
# guest's ICMP rate limit (the namespace is the test's own)
if [ "$(metric porthole_discovery_udp_events)" = 1 ]; then
	ok "UDP binds and closes are events too (/metrics)"
	in_guest sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_msgs_per_sec=100000
	out=$("$probe" udplatency "/run/netns/$PH_GUEST_NS" "/run/netns/$PH_HOST_NS" "$GUEST_IP" 7451 30 2>&1) ||
		fail "UDP events: 30 expose/remove trials completed" "$out"
	for k in open_p50_ms open_p99_ms close_p50_ms close_p99_ms; do figure "udp_events_$k" "$(val $k)" ms; done
	# the safety net alone (1 s, stretching to 8 s) would give a median of
	# hundreds of ms; the 2 ms target is the bench's. The p99 of 30 is their
	# maximum: one preempted trial on a loaded CI machine must not fail it
	for k in open close; do
		what=$([ $k = open ] && echo detection || echo removal)
		le "$(val ${k}_p50_ms)" "$(scaled 20)" && le "$(val ${k}_p99_ms)" "$(scaled 250)" &&
			ok "UDP events: $what p50 $(val ${k}_p50_ms) ms <= 20 ms, p99 $(val ${k}_p99_ms) ms <= 250 ms" ||
			fail "UDP events: $what p50 $(val ${k}_p50_ms) ms <= 20 ms, p99 $(val ${k}_p99_ms) ms <= 250 ms"
	done
else
	fail "UDP binds and closes are events too (/metrics)" "$(grep -m1 'UDP binds have no events' "$DAEMON_LOG")"
fi

# the restart race: close 127.0.0.1:P, bind 0.0.0.0:P 5 ms later
wins=$(in_guest "$PH_PYTHON" -c 'import socket, time
ok = 0
for i in range(30):
    p = 7600 + i
    s = socket.socket(); s.bind(("127.0.0.1", p)); s.listen()
    time.sleep(0.05)
    s.close(); time.sleep(0.005)
    t = socket.socket()
    try:
        t.bind(("0.0.0.0", p)); t.listen(); ok += 1
    except OSError:
        pass
    t.close()
print(ok)')
figure restart_race_wins "$wins" "/30"
# the target, 30 of 30, is measured by bench/ on a quiet machine; here, on a
# shared CI machine, one preempted worker can lose a trial (polling loses
# all 30): at least 27
[ "$wins" -ge 27 ] && ok "restart race: 0.0.0.0:P bound 5 ms after closing 127.0.0.1:P, $wins of 30 (>= 27)" ||
	fail "restart race: 0.0.0.0:P bound 5 ms after closing 127.0.0.1:P ($wins of 30, < 27)"
daemon_stop

# a listener in another namespace: no event reaches us, so no scan (a 60 s
# safety net, so that the periodic scan cannot interfere)
daemon_start --scan-interval 60000 || exit 1
sleep 0.3
ip netns add "phx-$PH_ID"
s0=$(metric porthole_scans_total)
e0=$(metric porthole_listen_events_total)
ip netns exec "phx-$PH_ID" "$PH_PYTHON" -c 'import socket
for p in range(7500, 7520):
    s = socket.socket(); s.bind(("127.0.0.1", p)); s.listen(); s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); u.close()'
sleep 0.3
s1=$(metric porthole_scans_total)
e1=$(metric porthole_listen_events_total)
ip netns del "phx-$PH_ID"
[ "$e1" = "$e0" ] && [ "$s1" = "$s0" ] && ok "another namespace's TCP listeners and UDP binds: no event, no scan ($s0 -> $s1 scans)" ||
	fail "another namespace's TCP listeners and UDP binds: no event, no scan" "scans $s0 -> $s1, events $e0 -> $e1"
# ... while the same in ours is seen (the check above can fail)
in_guest "$PH_PYTHON" -c 'import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 7521)); u.close()'
sleep 0.3
e2=$(metric porthole_listen_events_total)
[ "$e2" -ge $((e1 + 2)) ] && ok "a UDP bind and close in our namespace: two events ($e1 -> $e2)" ||
	fail "a UDP bind and close in our namespace: two events" "$e1 -> $e2"


# a burst of listeners: one scan (and perhaps a second look), not one per
# record; the external listeners the daemon opens in answer report
# themselves too, and are recognised as its own (no scan)
s0=$(metric porthole_scans_total)
o0=$(metric porthole_listen_events_own_total)
in_guest "$PH_PYTHON" -c 'import socket, time, urllib.request
ss = []
for p in range(7700, 7750):
    s = socket.socket(); s.bind(("127.0.0.1", p)); s.listen(); ss.append(s)
end = time.time() + 5
while time.time() < end:
    body = urllib.request.urlopen("http://127.0.0.1:'"$API_PORT"'/ports").read().decode()
    if body.count("\"forwarded\"") >= 50:
        break
    time.sleep(0.01)
time.sleep(0.1)
for s in ss:
    s.close()
time.sleep(0.3)'
s1=$(metric porthole_scans_total)
o1=$(metric porthole_listen_events_own_total)
figure burst50_scans "$((s1 - s0))" scans
# 50 binds and 50 closes of external listeners, all recognised
[ "$((o1 - o0))" -ge 100 ] && ok "burst: the daemon's own 100 listen/close records recognised ($((o1 - o0)))" ||
	fail "burst: the daemon's own listen/close records recognised" "$o0 -> $o1"
# listen burst: 1 scan + up to 5 second looks; the close burst the same
[ "$((s1 - s0))" -le 12 ] && ok "burst of 50 listeners opened and closed: $((s1 - s0)) scans (<= 12)" ||
	fail "burst of 50 listeners opened and closed: $((s1 - s0)) scans (<= 12)"
daemon_stop

# the perf tracepoint source (where BPF is unavailable): tracefs mounted in a
# mount namespace of the daemon's own, as systemd mounts it at boot (unless
# it is mounted already: mounting it twice fails with EBUSY)
if grep -qw tracefs /proc/filesystems; then
	DAEMON_PREFIX=(unshare -m --propagation private sh -c \
		'{ mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; } &&
		exec "$@"' sh)
	daemon_start --discovery perf || exit 1
	DAEMON_PREFIX=()
	check "--discovery perf: the start-up log names the perf source" \
		daemon_log_has '"events_source":"perf"|events_source=perf'
	[ "$(metric 'porthole_discovery_info{mechanism="events",source="perf"}')" = 1 ] &&
		ok "perf: /metrics names the source" || fail "perf: /metrics names the source"
	out=$("$probe" latency "/run/netns/$PH_GUEST_NS" "/run/netns/$PH_HOST_NS" "$GUEST_IP" 7801 30 2>&1) ||
		fail "perf: 30 expose/remove trials completed" "$out"
	figure perf_open_p99_ms "$(val open_p99_ms)" ms
	figure perf_close_p99_ms "$(val close_p99_ms)" ms
	le "$(val open_p99_ms)" "$(scaled 50)" && ok "perf: detection p99 $(val open_p99_ms) ms <= 50 ms" ||
		fail "perf: detection p99 $(val open_p99_ms) ms <= 50 ms"
	le "$(val close_p99_ms)" "$(scaled 50)" && ok "perf: removal p99 $(val close_p99_ms) ms <= 50 ms" ||
		fail "perf: removal p99 $(val close_p99_ms) ms <= 50 ms"
	daemon_stop
	# without CAP_BPF and without tracefs (hidden under empty mounts): auto
	# falls back to polling and says why, naming both sources
	DAEMON_PREFIX=(unshare -m --propagation private sh -c 'mount -t tmpfs none /sys/kernel/tracing &&
		mount -t tmpfs none /sys/kernel/debug && exec "$@"' sh
		setpriv --bounding-set=-bpf,-sys_admin --inh-caps=-bpf,-sys_admin)
	daemon_start || exit 1
	DAEMON_PREFIX=()
	check "no BPF, no tracefs: polls, and the log says why for both sources" \
		daemon_log_has 'discovery polls.*bpf: .*perf: .*tracefs'
	daemon_stop
else
	skip "no tracefs in this kernel: the perf source is not tested"
fi

# no cgroup v2 hierarchy to attach the UDP hooks to (an empty tmpfs over its
# mount point): TCP events stay, UDP falls back to the periodic scan, the log says so
cg2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -n "$cg2" ]; then
	DAEMON_PREFIX=(unshare -m --propagation private sh -c "mount -t tmpfs none '$cg2' && exec \"\$@\"" sh)
	daemon_start || exit 1
	DAEMON_PREFIX=()
	check "no cgroup v2: TCP listen events stay" daemon_log_has '"discovery":"events"|discovery=events'
	check "no cgroup v2: the log says UDP is found by the periodic scan" \
		daemon_log_has 'UDP binds have no events'
	[ "$(metric porthole_discovery_udp_events)" = 0 ] && ok "no cgroup v2: /metrics says no UDP events" ||
		fail "no cgroup v2: /metrics says no UDP events"
	daemon_stop
else
	skip "no cgroup v2 mount: the UDP hooks are not tested"
fi

daemon_start --discovery poll || exit 1
check "--discovery poll: polls, and says why" daemon_log_has 'discovery polls.*--discovery poll'
daemon_stop

if command -v setpriv >/dev/null; then
	# root without these three in its bounding set: what capsh --drop= does
	DAEMON_PREFIX=(setpriv --bounding-set=-bpf,-perfmon,-sys_admin --inh-caps=-bpf,-perfmon,-sys_admin)
	daemon_start || true
	DAEMON_PREFIX=()
	if daemon_alive; then
		check "without CAP_BPF/CAP_PERFMON: polls, and says so" \
			daemon_log_has 'discovery polls.*(CAP_BPF|not permitted)'
		daemon_stop
	else
		fail "daemon starts without CAP_BPF/CAP_PERFMON" "$(tail -5 "$DAEMON_LOG")"
	fi
else
	skip "setpriv missing: the unprivileged fallback is not tested"
fi
