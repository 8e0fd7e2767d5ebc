# SPDX-License-Identifier: MIT
# t_api_stream_cut.sh - an event-stream client that stops reading is cut (reset) once
# its unread bytes pass the bound (64 KiB beyond the snapshot), long before the
# write deadline, and the daemon gives the memory back (issue #14).
#
# The guest opens and closes 150 listeners at a time, so events arrive far faster
# than the 10 per second of ordinary churn; the stalled client has a 4 KiB receive
# buffer and never reads. --write-timeout is 120 s, so only the bound can end it
# within the test's wait; a client that reads the same stream stays connected.

API=http://$GUEST_IP:$API_PORT
metric() { in_host curl -sf -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$DAEMON_PID/status"; }

# Open 150 listeners (7400-7549), close them, again, until killed
BURST_PY='
import socket, time
while True:
    socks = []
    for p in range(7400, 7550):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", p)); s.listen(1); socks.append(s)
    time.sleep(0.15)
    for s in socks:
        s.close()
    time.sleep(0.15)
'

# Connect, never read (4 KiB receive buffer); print how the stream ended:
# "reset MS" (ms after connecting), "eof MS", or "open" after SECS
STALL_PY='
import errno, select, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((sys.argv[1], int(sys.argv[2])))
t0 = time.monotonic()
s.sendall(b"GET /ports/events HTTP/1.1\r\nHost: x\r\n\r\n")
p = select.poll()
p.register(s, select.POLLRDHUP | select.POLLERR | select.POLLHUP)
end = t0 + float(sys.argv[3])
while time.monotonic() < end:
    ev = p.poll(50)
    if not ev:
        continue
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    ms = int((time.monotonic() - t0) * 1000)
    if err == errno.ECONNRESET:
        print("reset %d" % ms, flush=True)
    else:
        print("eof %d %s" % (ms, errno.errorcode.get(err, err)), flush=True)
    sys.exit(0)
print("open", flush=True)
'

# Read the stream and count its bytes; print "bytes N open|closed" at the end
READ_PY='
import select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /ports/events HTTP/1.1\r\nHost: x\r\n\r\n")
n, end, state = 0, time.monotonic() + float(sys.argv[3]), "open"
while time.monotonic() < end:
    r, _, _ = select.select([s], [], [], 0.1)
    if r:
        try:
            d = s.recv(65536)
        except OSError:
            d = b""
        if not d:
            state = "closed"
            break
        n += len(d)
print("bytes %d %s" % (n, state), flush=True)
'

daemon_start --write-timeout 120s --scan-interval 50 || exit 1
in_host curl -sf -m 2 -o /dev/null "$API/metrics"	# what a first request allocates once
rss0=$(rss_kb)
cut0=$(metric porthole_api_event_streams_cut_total)
wto0=$(metric 'porthole_api_timeouts_total{kind="write"}')

bg_guest "$PH_PYTHON" -c "$BURST_PY"
burst=$PH_LAST_PID
WAIT_S=$((20 * PH_SLOW))
bg_host "$PH_PYTHON" -u -c "$READ_PY" "$GUEST_IP" "$API_PORT" 12 >"$PH_TMP/reader.out"
reader=$PH_LAST_PID
in_host "$PH_PYTHON" -u -c "$STALL_PY" "$GUEST_IP" "$API_PORT" "$WAIT_S" >"$PH_TMP/stall.out" 2>&1
note "stalled client: $(cat "$PH_TMP/stall.out")"
if read -r how ms _ <"$PH_TMP/stall.out" && [ "$how" = reset ]; then
	figure stream_cut_ms "$ms" ms
	ok "a client that stopped reading is cut with a reset ($ms ms, write deadline 120 s)"
else
	fail "a client that stopped reading is cut with a reset" "$(cat "$PH_TMP/stall.out")"
fi
cut1=$(metric porthole_api_event_streams_cut_total)
wto1=$(metric 'porthole_api_timeouts_total{kind="write"}')
[ "${cut1:-0}" -gt "${cut0:-0}" ] && ok "the cut is counted (porthole_api_event_streams_cut_total $cut0 -> $cut1)" ||
	fail "the cut is counted" "porthole_api_event_streams_cut_total $cut0 -> $cut1"
[ "${wto1:-1}" = "${wto0:-0}" ] && ok "not by the write deadline (write timeouts $wto1)" ||
	fail "not by the write deadline" "write timeouts $wto0 -> $wto1"

kill_pid "$burst"
wait "$reader"
note "reading client: $(cat "$PH_TMP/reader.out")"
if read -r _ bytes state <"$PH_TMP/reader.out" && [ "$state" = open ] && [ "${bytes:-0}" -gt 65536 ]; then
	ok "a client that reads the same stream is not cut ($bytes bytes)"
else
	fail "a client that reads the same stream is not cut" "$(cat "$PH_TMP/reader.out")"
fi
# what the stalled stream held is given back (its output queue and bus queue)
wait_for "$(scaled 3000)" bash -c "[ \$(awk '\$1 == \"VmRSS:\" { print \$2 }' /proc/$DAEMON_PID/status) -le $((rss0 + 1024)) ]"
rss1=$(rss_kb)
figure stream_cut_rss_before "$rss0" kB
figure stream_cut_rss_after "$rss1" kB
[ "$rss1" -le $((rss0 + 1024)) ] && ok "VmRSS back within 1 MB ($rss0 -> $rss1 kB)" ||
	fail "VmRSS back within 1 MB" "$rss0 -> $rss1 kB"
check "/health still answers" in_host curl -sf -m 2 -o /dev/null "$API/health"
daemon_stop
