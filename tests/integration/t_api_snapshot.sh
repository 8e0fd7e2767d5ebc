# SPDX-License-Identifier: MIT
# t_api_snapshot.sh - POST /snapshot/prepare and /snapshot/resume through the API:
# prepare resets relayed connections on both legs, closes idle API connections and
# keeps the external listener; a client that connects while quiesced is served after
# resume (time measured); resume runs exactly once under 50 concurrent /health calls.
# valgrind: yes

API=http://$GUEST_IP:$API_PORT

# Relay client: connect, echo one line, then wait for the relay to end; print
# "echo" and later "eof"/"rst" with epoch ms.
HOLD_PY='
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"one\n")
print("echo" if s.recv(16) == b"one\n" else "bad", flush=True)
s.settimeout(float(sys.argv[3]))
try:
    d = s.recv(16)
    print("eof" if not d else "data", int(time.time() * 1000), flush=True)
except ConnectionResetError:
    print("rst", int(time.time() * 1000), flush=True)
except socket.timeout:
    print("open", flush=True)
'

# Late client: connect (the kernel completes it on the kept listener), send a
# line at once, print "connected" then "echo <epoch ms>" when it comes back.
LATE_PY='
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.sendall(b"late\n")
print("connected", flush=True)
s.settimeout(float(sys.argv[3]))
try:
    d = s.recv(16)
    print("echo" if d == b"late\n" else "bad %r" % d, int(time.time() * 1000), flush=True)
except Exception as e:
    print("error", e, flush=True)
'

# An idle keep-alive API client: one request, then hold; print "closed" if the
# server closes it within HOLD s, else "open".
KA_PY='
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /health HTTP/1.1\r\n\r\n")
time.sleep(0.2); s.recv(4096)
open(sys.argv[4], "w").close()
s.settimeout(float(sys.argv[3]))
try:
    print("closed" if s.recv(16) == b"" else "data", flush=True)
except socket.timeout:
    print("open", flush=True)
'

epoch_ms() { date +%s%3N; }
metric() { in_host curl -s -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
established_to() { in_guest ss -Htn state established "( sport = :$1 )" | wc -l; }

daemon_start || exit 1
serve_echo 127.0.0.1 7400
wait_for "$(scaled 2000)" exposed 7400 || fail "127.0.0.1:7400 exposed"
ino0=$(listener_inode "$GUEST_IP" 7400)

bg_host "$PH_PYTHON" -u -c "$HOLD_PY" "$GUEST_IP" 7400 "$(scaled 10)" >"$PH_TMP/hold.out"
wait_for "$(scaled 2000)" grep -q echo "$PH_TMP/hold.out" || fail "relayed connection echoes" "$(cat "$PH_TMP/hold.out")"
[ "$(established_to 7400)" -ge 1 ] || fail "service leg established before prepare"
rm -f "$PH_TMP/ka.ready"
bg_host "$PH_PYTHON" -u -c "$KA_PY" "$GUEST_IP" "$API_PORT" "$(scaled 5)" "$PH_TMP/ka.ready" >"$PH_TMP/ka.out"
wait_for "$(scaled 2000)" test -e "$PH_TMP/ka.ready" || fail "keep-alive API client ready"

in_host curl -s -D "$PH_TMP/hdr" -o /dev/null -w '%{http_code}' -X POST "$API/snapshot/prepare" >"$PH_TMP/code"
check "prepare: 204" grep -qx 204 "$PH_TMP/code"
check "prepare: answered with Connection: close" grep -qi '^Connection: close' "$PH_TMP/hdr"
api_conforms POST /snapshot/prepare "$(cat "$PH_TMP/code")" "$PH_TMP/hdr" /dev/null
if wait_for "$(scaled 2000)" grep -qE '^(rst|eof)' "$PH_TMP/hold.out"; then
	ok "prepare: relayed connection reset on the client leg ($(cut -d' ' -f1 <(tail -1 "$PH_TMP/hold.out")))"
else
	fail "prepare: relayed connection reset on the client leg" "$(cat "$PH_TMP/hold.out")"
fi
if wait_for "$(scaled 2000)" bash -c "[ \$(nsenter --net=/run/netns/$PH_GUEST_NS ss -Htn state established '( sport = :7400 )' | wc -l) = 0 ]"; then
	ok "prepare: service leg closed too"
else
	fail "prepare: service leg closed too" "$(in_guest ss -tn)"
fi
wait_for "$(scaled 2000)" grep -q . "$PH_TMP/ka.out"
check "prepare: idle API keep-alive connection closed" grep -qx closed "$PH_TMP/ka.out"
check "prepare: external listener kept (same socket)" test "$(listener_inode "$GUEST_IP" 7400)" = "$ino0"
check "prepare: quiesced (metrics)" test "$(metric porthole_quiesced)" = 1
code=$(in_host curl -s -o /dev/null -w '%{http_code}' -X POST "$API/snapshot/prepare")
check "prepare again: 204 (idempotent)" test "$code" = 204

# --- a client arriving while quiesced is served after resume -------------------
bg_host "$PH_PYTHON" -u -c "$LATE_PY" "$GUEST_IP" 7400 "$(scaled 10)" >"$PH_TMP/late.out"
wait_for "$(scaled 2000)" grep -q connected "$PH_TMP/late.out" &&
	ok "while quiesced: a new client's connect completes (kernel queues it)" ||
	fail "while quiesced: a new client's connect completes" "$(cat "$PH_TMP/late.out")"
sleep 0.3
check_not "while quiesced: it is not served yet" grep -q echo "$PH_TMP/late.out"
t0=$(epoch_ms)
code=$(in_host curl -s -o /dev/null -w '%{http_code}' -X POST "$API/snapshot/resume")
check "resume: 204" test "$code" = 204
if wait_for "$(scaled 2000)" grep -q '^echo' "$PH_TMP/late.out"; then
	t1=$(awk '/^echo/ { print $2 }' "$PH_TMP/late.out")
	ok "after resume: the queued client is served ($((t1 - t0)) ms from resume to its echo)"
	figure resume_to_first_relayed_byte_ms $((t1 - t0)) ms
else
	fail "after resume: the queued client is served" "$(cat "$PH_TMP/late.out")"
fi
check "after resume: running" bash -c "nsenter --net=/run/netns/$PH_HOST_NS curl -s $API/health | grep -q '\"state\":\"running\"'"
code=$(in_host curl -s -o /dev/null -w '%{http_code}' -X POST "$API/snapshot/resume")
check "resume again: 204 (no-op)" test "$code" = 204

# --- resume exactly once under 50 concurrent /health -----------------------------
in_host curl -s -o /dev/null -X POST "$API/snapshot/prepare"
r0=$(metric porthole_snapshot_resumes_total)
l0=$(grep -c '"msg":"snapshot resume"' "$DAEMON_LOG")
hpids=()
for i in $(seq 1 50); do
	in_host curl -s -m "$(scaled 5)" "$API/health" >"$PH_TMP/h.$i" &
	hpids+=($!)
done
wait "${hpids[@]}"	# not a bare wait: the servers are background jobs too
bad=0
for i in $(seq 1 50); do grep -q '"state":"running"' "$PH_TMP/h.$i" || bad=$((bad + 1)); done
[ "$bad" = 0 ] && ok "50 concurrent /health after prepare: all answer running" ||
	fail "50 concurrent /health after prepare: all answer running ($bad did not)"
r1=$(metric porthole_snapshot_resumes_total)
l1=$(grep -c '"msg":"snapshot resume"' "$DAEMON_LOG")
check "50 concurrent /health: resume ran exactly once (metric $r0 -> $r1)" test $((r1 - r0)) = 1
check "50 concurrent /health: one 'snapshot resume' log line" test $((l1 - l0)) = 1
check "50 concurrent /health: the core resumed once" test "$(grep -c '"msg":"resumed"' "$DAEMON_LOG")" = 2
check "relay works after the second resume" roundtrip host "$GUEST_IP" 7400
daemon_stop
