# SPDX-License-Identifier: MIT
# t_api_load.sh - the control plane under hostile API load (issue #14). In each scenario a
# probe sends GET /health every 50 ms from the host; every probe must answer 200 within
# 100 ms (p100), POST /snapshot/prepare + resume must succeed during the load, the
# daemon's VmRSS must come back within 1 MB of where it started, and a forwarded port
# must keep relaying. Ports open and close in the guest throughout (event traffic).
# Scenarios: 1,000 event-stream clients that never read; 256 that read; 300 slowloris
# clients all at once; 300 ramping up (one per 20 ms).

API=http://$GUEST_IP:$API_PORT
LOAD_S=10	# each load runs this long; the probe runs inside it
PROBE_S=8
ECHO_PORT=7100

# 1,000 clients plus the daemon's own descriptors: more than the usual 1024
ulimit -n 8192 || { fail "ulimit -n 8192"; exit 1; }

# Open and close 127.0.0.1:7200-7209 in turn, every 100 ms, until killed
CHURN_PY='
import socket, time
socks = {}
i = 0
while True:
    p = 7200 + i % 10
    if p in socks:
        socks.pop(p).close()
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", p)); s.listen(8); socks[p] = s
    i += 1
    time.sleep(0.1)
'

rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$DAEMON_PID/status"; }
post() { in_host curl -s -m 2 -o /dev/null -w '%{http_code}' -X POST "$API$1"; }

LOADER=$(helper apiload) || exit 1
daemon_start || exit 1
serve_echo 127.0.0.1 "$ECHO_PORT"
wait_for "$(scaled 3000)" exposed "$ECHO_PORT" || fail "echo port exposed"
bg_guest "$PH_PYTHON" -c "$CHURN_PY"
churn=$PH_LAST_PID
# warm up: what the first requests and streams allocate once is not a leak
in_host "$LOADER" streams "$GUEST_IP" "$API_PORT" 8 1 read >/dev/null
in_host "$LOADER" probe "$GUEST_IP" "$API_PORT" 1 >/dev/null
sleep 0.5

# scenario NAME LOADER_ARGS...
scenario()
{
	local name=$1 load rss0 rss1 out pre res t0
	shift
	rss0=$(rss_kb)
	local drops0=$(softnet_drops) over0=$(listen_overflows guest)
	bg_host "$LOADER" "$@" >"$PH_TMP/$name.load"
	load=$PH_LAST_PID
	sleep 1
	bg_host "$LOADER" probe "$GUEST_IP" "$API_PORT" "$PROBE_S" >"$PH_TMP/$name.probe"
	local prober=$PH_LAST_PID
	sleep $((PROBE_S / 2))
	t0=$(now_ms)
	pre=$(post /snapshot/prepare)
	res=$(post /snapshot/resume)
	figure "${name}_prepare_resume_ms" "$(($(now_ms) - t0))" ms
	wait "$prober"
	wait "$load"
	out=$(cat "$PH_TMP/$name.probe")
	note "$name: load: $(cat "$PH_TMP/$name.load"); probe: $out"
	health_probes "$name" "$out" $((PROBE_S * 15)) "$(($(softnet_drops) - drops0))" \
		"$(($(listen_overflows guest) - over0))"
	[ "$pre $res" = "204 204" ] && ok "$name: prepare and resume during the load (204 204)" ||
		fail "$name: prepare and resume during the load" "prepare $pre, resume $res"
	# the loader is gone: what it held must be given back
	wait_for "$(scaled 3000)" bash -c "[ \$(awk '\$1 == \"VmRSS:\" { print \$2 }' /proc/$DAEMON_PID/status) -le $((rss0 + 1024)) ]"
	rss1=$(rss_kb)
	figure "${name}_rss_before" "$rss0" kB
	figure "${name}_rss_after" "$rss1" kB
	[ "$rss1" -le $((rss0 + 1024)) ] && ok "$name: VmRSS back within 1 MB ($rss0 -> $rss1 kB)" ||
		fail "$name: VmRSS back within 1 MB" "$rss0 -> $rss1 kB"
	check "$name: the forwarded port still relays" roundtrip host "$GUEST_IP" "$ECHO_PORT"
}

scenario streams_noread streams "$GUEST_IP" "$API_PORT" 1000 "$LOAD_S" noread
scenario streams_read streams "$GUEST_IP" "$API_PORT" 256 "$LOAD_S" read
scenario slowloris_eager slow "$GUEST_IP" "$API_PORT" 300 "$LOAD_S" 0
scenario slowloris_lazy slow "$GUEST_IP" "$API_PORT" 300 "$LOAD_S" 20

metrics=$(in_host curl -s -m 2 "$API/metrics")
note "$(grep -E '^porthole_api_(connections_(evicted|rejected)|event_streams_(evicted|cut))_total' <<<"$metrics" | tr '\n' ' ')"
kill_pid "$churn"
daemon_stop
