# SPDX-License-Identifier: MIT
# t_api_events.sh - GET /ports/events: snapshot first, an open event within 500 ms of a
# guest port appearing, close events, pings; a stalled event-stream client slows
# neither scanning nor the API. Clients run in the host netns.

API=http://$GUEST_IP:$API_PORT

# Read the event stream; print "<epoch ms> <event> <data>" per event, flushed.
SSE_PY='
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /ports/events HTTP/1.1\r\nHost: x\r\n\r\n")
buf = b""
head_done = False
while True:
    d = s.recv(65536)
    if not d:
        print("EOF", flush=True)
        break
    buf += d
    if not head_done:
        if b"\r\n\r\n" not in buf:
            continue
        head, buf = buf.split(b"\r\n\r\n", 1)
        print("HEAD", head.split(b"\r\n")[0].decode(), flush=True)
        head_done = True
    while b"\n\n" in buf:
        ev, buf = buf.split(b"\n\n", 1)
        name, data = "message", ""
        for line in ev.decode().split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith(":"):
                name = "comment" + line[1:]
        print(int(time.time() * 1000), name, data, flush=True)
'

# Connect to the stream and never read a byte (tiny receive buffer).
STALL_PY='
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /ports/events HTTP/1.1\r\n\r\n")
time.sleep(float(sys.argv[3]))
'

epoch_ms() { date +%s%3N; }

daemon_start --sse-ping 1s || exit 1

bg_host "$PH_PYTHON" -u -c "$SSE_PY" "$GUEST_IP" "$API_PORT" >"$PH_TMP/sse.out"
if wait_for "$(scaled 2000)" grep -q ' snapshot ' "$PH_TMP/sse.out"; then
	ok "event stream starts with a snapshot event"
else
	fail "event stream starts with a snapshot event" "$(cat "$PH_TMP/sse.out")"
fi
check "stream answered 200" grep -q '^HEAD HTTP/1.1 200 OK' "$PH_TMP/sse.out"
check "snapshot data is the /ports document" bash -c \
	"grep ' snapshot ' '$PH_TMP/sse.out' | cut -d' ' -f3- | jq -e '.external_address == \"169.254.0.21\" and (.ports | type) == \"array\"'"

t0=$(epoch_ms)
serve_echo 127.0.0.1 7201
echo_pid=$PH_LAST_PID
if wait_for "$(scaled 2000)" grep -q ' open {"port":7201' "$PH_TMP/sse.out"; then
	t1=$(grep ' open {"port":7201' "$PH_TMP/sse.out" | head -1 | cut -d' ' -f1)
	d=$((t1 - t0))
	if [ "$d" -le "$(scaled 500)" ]; then
		ok "open event for a new guest port within 500 ms ($d ms, including the server's start)"
	else
		fail "open event for a new guest port within 500 ms ($d ms)"
	fi
	figure sse_open_event_ms "$d" ms
else
	fail "open event for a new guest port" "$(cat "$PH_TMP/sse.out")"
fi
check "open event data is one port object" bash -c \
	"grep ' open {\"port\":7201' '$PH_TMP/sse.out' | head -1 | cut -d' ' -f3- |
	 jq -e '.port == 7201 and .state == \"forwarded\" and .address == \"127.0.0.1\"'"
kill_pid "$echo_pid"
if wait_for "$(scaled 2000)" grep -q ' close {"port":7201' "$PH_TMP/sse.out"; then
	ok "close event when the guest port goes away"
else
	fail "close event when the guest port goes away" "$(cat "$PH_TMP/sse.out")"
fi
if wait_for "$(scaled 2500)" grep -q ' comment ping' "$PH_TMP/sse.out"; then
	ok "': ping' comment with --sse-ping 1s"
else
	fail "': ping' comment with --sse-ping 1s" "$(cat "$PH_TMP/sse.out")"
fi

# --- a stalled client ----------------------------------------------------------
bg_host "$PH_PYTHON" -c "$STALL_PY" "$GUEST_IP" "$API_PORT" 30
sleep 0.3
scans0=$(in_host curl -s "$API/metrics" | awk '$1 == "porthole_scans_total" { print $2 }')
t0=$(now_ms)
# churn: 20 listeners come and go, 40+ events the stalled client never reads
for i in $(seq 0 19); do
	bg_guest socat TCP4-LISTEN:$((7300 + i)),bind=127.0.0.1,reuseaddr PIPE 2>/dev/null
	pids[i]=$PH_LAST_PID
done
sleep 0.5
for i in $(seq 0 19); do kill_now "${pids[i]}"; done
t1=$(epoch_ms)
serve_echo 127.0.0.1 7202
if wait_for "$(scaled 1000)" grep -q ' open {"port":7202' "$PH_TMP/sse.out"; then
	t2=$(grep ' open {"port":7202' "$PH_TMP/sse.out" | head -1 | cut -d' ' -f1)
	d=$((t2 - t1))
	[ "$d" -le "$(scaled 500)" ] && ok "with a stalled stream client: a reading client still gets events within 500 ms ($d ms)" ||
		fail "with a stalled stream client: events within 500 ms ($d ms)"
else
	fail "with a stalled stream client: the reading client still gets events" "$(tail "$PH_TMP/sse.out")"
fi
check "with a stalled stream client: the new port is relayed" roundtrip host "$GUEST_IP" 7202
scans1=$(in_host curl -s "$API/metrics" | awk '$1 == "porthole_scans_total" { print $2 }')
el=$(($(now_ms) - t0))
rate=$(( (scans1 - scans0) * 1000 / (el > 0 ? el : 1) ))
# 50 ms interval: about 20 scans/s when nothing holds the scanner back
if [ "$rate" -ge 12 ]; then
	ok "with a stalled stream client: scanning keeps its pace ($rate scans/s)"
else
	fail "with a stalled stream client: scanning keeps its pace ($rate scans/s)"
fi
t0=$(now_ms)
check "with a stalled stream client: /health answers" in_host curl -sf -m 1 -o /dev/null "$API/health"
figure health_with_stalled_sse_ms $(($(now_ms) - t0)) ms
daemon_stop
