# SPDX-License-Identifier: MIT
# t_api_deadlines.sh - API deadlines and the connection policy: a slowloris client is cut
# at the 5 s head deadline while /health keeps answering; 300 idle clients do not
# block /health (the oldest idle connection is evicted beyond 256); idle keep-alive
# timeout. Clients run in the host netns against 169.254.0.21:49982.

API=http://$GUEST_IP:$API_PORT

# Trickle a request head one byte every 300 ms; print the ms from the first
# byte until the server closed (or "never" after 15 s).
SLOW_PY='
import select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
head = b"GET /health HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 200
t0 = time.monotonic()
for i in range(50):
    try:
        s.send(head[i:i + 1])
    except OSError:
        break
    r, _, _ = select.select([s], [], [], 0.3)
    if r:
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        # a 408 may come first; the close follows at once
        while data:
            r, _, _ = select.select([s], [], [], 1)
            try:
                data = s.recv(4096) if r else b""
            except OSError:
                data = b""
        break
else:
    print("never"); sys.exit(0)
print(int((time.monotonic() - t0) * 1000))
'

# Hold N idle connections; once all are open touch READY; after HOLD s print
# how many the server closed.
IDLE_PY='
import socket, sys, time
host, port, n, ready, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
socks = []
for _ in range(n):
    socks.append(socket.create_connection((host, port)))
    time.sleep(0.002)
open(ready, "w").close()
time.sleep(hold)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print(closed)
'

health_ok() { [ "$(in_host curl -s -m 1 -o /dev/null -w '%{http_code}' "$API/health")" = 200 ]; }

metric() { in_host curl -s -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

daemon_start || exit 1

# --- slowloris ---------------------------------------------------------------
bg_host "$PH_PYTHON" -c "$SLOW_PY" "$GUEST_IP" "$API_PORT" >"$PH_TMP/slow.out"
slow=$PH_LAST_PID
served=0 missed=0
deadline=$(($(now_ms) + 7000))
while kill -0 "$slow" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
	if health_ok; then served=$((served + 1)); else missed=$((missed + 1)); fi
	sleep 0.2
done
wait "$slow" 2>/dev/null
ms=$(cat "$PH_TMP/slow.out")
if [[ $ms =~ ^[0-9]+$ ]] && [ "$ms" -ge 4900 ] && [ "$ms" -le 5800 ]; then
	ok "slowloris client cut at the 5 s head deadline, not kept alive by its bytes ($ms ms)"
else
	fail "slowloris client cut at the 5 s head deadline ($ms)"
fi
figure slowloris_cut_ms "$ms" ms
if [ "$missed" = 0 ] && [ "$served" -ge 10 ]; then
	ok "/health kept answering during the slowloris ($served requests)"
else
	fail "/health kept answering during the slowloris" "served $served, missed $missed"
fi
check "the cut is counted as a request timeout" \
	bash -c "[ \"\$(nsenter --net=/run/netns/$PH_HOST_NS curl -s $API/metrics | awk '\$1 == \"porthole_api_timeouts_total{kind=\\\"request\\\"}\" { print \$2 }')\" -ge 1 ]"

# --- 300 idle clients vs the 256-connection policy ----------------------------
rm -f "$PH_TMP/ready"
bg_host "$PH_PYTHON" -c "$IDLE_PY" "$GUEST_IP" "$API_PORT" 300 "$PH_TMP/ready" 3 >"$PH_TMP/idle.out"
idle=$PH_LAST_PID
if wait_for "$(scaled 10000)" test -e "$PH_TMP/ready"; then
	t0=$(now_ms)
	if health_ok; then
		ok "/health answered with 300 idle clients connected ($(($(now_ms) - t0)) ms)"
	else
		fail "/health answered with 300 idle clients connected"
	fi
	active=$(metric porthole_api_connections_active)
	if [ -n "$active" ] && [ "$active" -le 256 ]; then
		ok "API connections stay within 256 ($active active)"
	else
		fail "API connections stay within 256" "active: $active"
	fi
else
	fail "300 idle clients connected"
fi
wait "$idle" 2>/dev/null
closed=$(cat "$PH_TMP/idle.out")
# 300 + /health + /metrics*2 connections for 256 slots: at least 47 evicted
if [[ $closed =~ ^[0-9]+$ ]] && [ "$closed" -ge 44 ] && [ "$closed" -le 60 ]; then
	ok "the oldest idle clients were evicted to make room ($closed of 300 closed)"
else
	fail "the oldest idle clients were evicted to make room" "closed: $closed"
fi
ev=$(metric porthole_api_connections_evicted_total)
[ "${ev:-0}" -ge 44 ] && ok "evictions counted in metrics ($ev)" || fail "evictions counted in metrics" "$ev"
rej=$(metric porthole_api_connections_rejected_total)
[ "${rej:-1}" = 0 ] && ok "no 503 while idle connections could be evicted" || fail "no 503 while idle connections could be evicted" "$rej"
daemon_stop

# --- idle keep-alive timeout ---------------------------------------------------
daemon_start --idle-timeout 1s --head-timeout 1s || exit 1
rm -f "$PH_TMP/ready"
bg_host "$PH_PYTHON" -c "$IDLE_PY" "$GUEST_IP" "$API_PORT" 3 "$PH_TMP/ready" 2 >"$PH_TMP/idle.out"
idle=$PH_LAST_PID
wait "$idle" 2>/dev/null
[ "$(cat "$PH_TMP/idle.out")" = 3 ] && ok "idle connections closed after --idle-timeout 1s" ||
	fail "idle connections closed after --idle-timeout 1s" "closed: $(cat "$PH_TMP/idle.out")"
daemon_stop
