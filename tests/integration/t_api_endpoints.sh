# SPDX-License-Identifier: MIT
# t_api_endpoints.sh - every control API endpoint and error code, auth, pipelining,
# keep-alive rules; all requests are made from the host netns to 169.254.0.21:49982
# valgrind: yes

API=http://$GUEST_IP:$API_PORT

# raw_http [WAIT_S]: send stdin as-is on one connection, print everything the
# server sends until it closes or is quiet for WAIT_S (default 1) seconds.
RAW_PY='
import socket, sys, time
host, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((host, port), timeout=3)
s.sendall(sys.stdin.buffer.read())
s.settimeout(wait)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            out += b"<EOF>"
            break
        out += b
except socket.timeout:
    pass
except ConnectionResetError:
    out += b"<RST>"
sys.stdout.buffer.write(out)
'
raw_http() { in_host "$PH_PYTHON" -c "$RAW_PY" "$GUEST_IP" "$API_PORT" "$(scaled "${1:-1}")"; }

# hcurl ARGS...: curl from the host, head and body to $PH_TMP/out, status in
# $CODE; every answer is checked against docs/openapi.yaml
hcurl()
{
	CODE=$(in_host curl -s -o "$PH_TMP/out" -D "$PH_TMP/hdr" -w '%{http_code}' -m "$(scaled 5)" "$@")
	api_curl_conforms "$CODE" "$@"
}

# expect DESC CODE [BODY_REGEX] [HEADER_REGEX]: judge the last hcurl
expect()
{
	local bad=
	[ "$CODE" = "$2" ] || bad="status $CODE, want $2"
	if [ -z "$bad" ] && [ -n "${3:-}" ] && ! grep -qE -- "$3" "$PH_TMP/out"; then bad="body lacks /$3/"; fi
	if [ -z "$bad" ] && [ -n "${4:-}" ] && ! grep -qiE -- "$4" "$PH_TMP/hdr"; then bad="headers lack /$4/"; fi
	if [ -z "$bad" ] && ! grep -qi '^Cache-Control: no-store' "$PH_TMP/hdr"; then bad="no Cache-Control: no-store"; fi
	if [ -z "$bad" ]; then ok "$1"; else fail "$1" "$bad" "$(cat "$PH_TMP/hdr" "$PH_TMP/out")"; fi
}

daemon_start || exit 1
serve_echo 127.0.0.1 7100
wait_for "$(scaled 2000)" exposed 7100 || fail "echo service on 127.0.0.1:7100 exposed"

# --- endpoints -------------------------------------------------------------
# The event stream against docs/openapi.yaml: snapshot, open, close and a ping
# comment, captured while a port comes and goes.
bg_host curl -sN -m "$(scaled 4)" -D "$PH_TMP/sse.hdr" -o "$PH_TMP/sse.out" "$API/ports/events"
sse_pid=$PH_LAST_PID
wait_for "$(scaled 2000)" grep -q '^event: snapshot' "$PH_TMP/sse.out"
serve_echo 127.0.0.1 7190
wait_for "$(scaled 2000)" exposed 7190
kill_pid "$PH_LAST_PID"
wait_until_not "$(scaled 2000)" exposed 7190
wait_for "$(scaled 2000)" grep -q '^event: close' "$PH_TMP/sse.out"
kill_pid "$sse_pid"
check "GET /ports/events: snapshot, open and close seen" \
	bash -c "grep -q '^event: open' '$PH_TMP/sse.out' && grep -q '^event: close' '$PH_TMP/sse.out'"
api_conforms GET /ports/events 200 "$PH_TMP/sse.hdr" "$PH_TMP/sse.out"
check "docs/openapi.yaml: OpenAPI 3.1, every $ref resolves" "$PH_PYTHON" "$PH_OPENAPI_CHECK" --spec

hcurl "$API/health"
expect "GET /health: 200 with version and state" 200 '^\{"version":"[0-9]+\.[0-9]+\.[0-9]+","state":"running"\}$' \
	'^Content-Type: application/json'

hcurl "$API/ports"
expect "GET /ports: 200 with external address" 200 '"external_address":"169\.254\.0\.21"'
check "GET /ports: echo port forwarded, with connections and RFC 3339 since" \
	jq -e '.ports[] | select(.port == 7100) | .state == "forwarded" and .family == "ipv4"
		and .address == "127.0.0.1" and (.connections | type) == "number"
		and (.since | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")) and (has("error") | not)' "$PH_TMP/out"

hcurl "$API/metrics"
expect "GET /metrics: 200 in text format 0.0.4" 200 '^porthole_scans_total [0-9]+$' \
	'^Content-Type: text/plain; version=0\.0\.4'
metrics_conform "$PH_TMP/out"
for m in porthole_scan_errors_total 'porthole_scan_duration_seconds_bucket\{le="\+Inf"\}' \
	porthole_scan_duration_seconds_sum porthole_scan_duration_seconds_count \
	'porthole_ports\{state="forwarded"\} [1-9]' porthole_connections_active porthole_connections_total \
	porthole_connections_refused_total 'porthole_relayed_bytes_total\{direction="to_service"\}' \
	'porthole_relayed_bytes_total\{direction="to_client"\}' porthole_accept_pauses_total \
	'porthole_api_requests_total\{code="200"\} [1-9]'; do
	grep -qE "^$m" "$PH_TMP/out" || fail "metrics has $m" "$(cat "$PH_TMP/out")"
done
ok "GET /metrics: scans, histogram, ports by state, connections, bytes, pauses, requests by code"
check "GET /metrics: every family has HELP and TYPE" bash -c \
	"[ \$(grep -c '^# HELP ' '$PH_TMP/out') -eq \$(grep -c '^# TYPE ' '$PH_TMP/out') ] &&
	 grep -q '^# TYPE porthole_scan_duration_seconds histogram' '$PH_TMP/out'"

hcurl -I "$API/health"
expect "HEAD /health: 200, headers only" 200 '' '^Content-Length: [0-9]+'
# curl --head writes the head to the output too: anything more would be a body
cmp -s "$PH_TMP/out" "$PH_TMP/hdr" || fail "HEAD /health has no body" "$(cat "$PH_TMP/out")"

hcurl -X POST "$API/snapshot/resume"
expect "POST /snapshot/resume while running: 204 (no-op)" 204

# --- errors ----------------------------------------------------------------
hcurl "$API/nope"
expect "unknown path: 404 with a JSON error" 404 '^\{"error":".+"\}$'
hcurl "$API/snapshot/prepare"
expect "GET on a POST endpoint: 405 with Allow: POST" 405 '"error"' '^Allow: POST'
hcurl -X POST "$API/ports"
expect "POST on a GET endpoint: 405 with Allow: GET, HEAD" 405 '"error"' '^Allow: GET, HEAD'
hcurl -X POST -H 'Transfer-Encoding: chunked' --data-binary abc "$API/snapshot/resume"
expect "chunked request body: 411" 411 '"error"' '^Connection: close'
head -c 70000 /dev/zero >"$PH_TMP/big"
hcurl -X POST --data-binary @"$PH_TMP/big" -H 'Expect:' "$API/snapshot/resume"
expect "body over 64 KiB: 413" 413 '"error"' '^Connection: close'
hcurl -H "X-Pad: $(head -c 17000 /dev/zero | tr '\0' a)" "$API/health"
expect "head over 16 KiB: 431" 431 '"error"' '^Connection: close'

out=$(printf 'GET /health HTTP/1.1\nHost: x\n\n' | raw_http)
[[ $out == "HTTP/1.1 400 "*'"error"'*"<EOF>" ]] && ok "bare LF: 400 and close" || fail "bare LF: 400 and close" "$out"
out=$(printf 'POST /snapshot/resume HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' | raw_http)
[[ $out == "HTTP/1.1 400 "*"<EOF>" ]] && ok "Content-Length with Transfer-Encoding: 400 and close" || fail "CL+TE: 400" "$out"
out=$(printf 'GET /health HTTP/1.1\r\nHo st: x\r\n\r\n' | raw_http)
[[ $out == "HTTP/1.1 400 "*"<EOF>" ]] && ok "bad header name token: 400" || fail "bad header token: 400" "$out"
out=$(printf 'GET /health HTTP/1.1\r\nX: a\r\n folded\r\n\r\n' | raw_http)
[[ $out == "HTTP/1.1 400 "*"<EOF>" ]] && ok "obsolete line folding: 400" || fail "obs-fold: 400" "$out"

# --- pipelining and keep-alive ---------------------------------------------
out=$(printf 'GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nPOST /snapshot/resume HTTP/1.1\r\n\r\nGET /ports HTTP/1.1\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n' | raw_http)
codes=$(printf '%s' "$out" | grep -ao '^HTTP/1.1 [0-9]*' | awk '{print $2}' | tr '\n' ' ')
if [ "$codes" = "200 404 204 200 " ] && [[ $out == *"<EOF>" ]]; then
	ok "pipelined requests answered in order, closed after Connection: close ($codes)"
else
	fail "pipelined requests answered in order" "codes: $codes" "$out"
fi
out=$(printf 'GET /health HTTP/1.0\r\n\r\n' | raw_http)
[[ $out == *"Connection: close"*"<EOF>" ]] && ok "HTTP/1.0 without keep-alive: closed" || fail "HTTP/1.0 closes" "$out"
out=$(printf 'GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' | raw_http)
[[ $out == *"Connection: keep-alive"* && $out != *"<EOF>" ]] && ok "HTTP/1.0 keep-alive: kept open" ||
	fail "HTTP/1.0 keep-alive kept open" "$out"

# --- the connection limit: slow requests are evicted, 503 only when every slot writes
daemon_stop
daemon_start --max-api-connections 4 || exit 1
# MODE slow: 4 half-sent requests (evictable); MODE unread: 4 clients that
# pipeline /metrics requests and never read (responses being written: not
# evictable, bounded by the write deadline)
BUSY_PY='
import socket, sys, time
host, port, mode, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
socks = []
for _ in range(4):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    if mode == "slow":
        s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
    else:
        s.setblocking(False)
        try:
            s.send(b"GET /metrics HTTP/1.1\r\n\r\n" * 400)
        except BlockingIOError:
            pass
    socks.append(s)
time.sleep(hold)
'
bg_host "$PH_PYTHON" -c "$BUSY_PY" "$GUEST_IP" "$API_PORT" slow 3
busy=$PH_LAST_PID
sleep 0.5
hcurl "$API/health"
expect "every slot holding a half-sent request: the oldest is evicted, /health 200" 200 '"state"'
kill_now "$busy"
bg_host "$PH_PYTHON" -c "$BUSY_PY" "$GUEST_IP" "$API_PORT" unread 3
busy=$PH_LAST_PID
sleep 0.5
hcurl "$API/health"
expect "every slot writing a response nobody reads: 503 with Retry-After" 503 '"error"' '^Retry-After: 1'
kill_now "$busy"
wait_for "$(scaled 2000)" bash -c "[ \"\$(nsenter --net=/run/netns/$PH_HOST_NS curl -s -o /dev/null -w '%{http_code}' $API/health)\" = 200 ]" &&
	ok "slots freed: /health answers 200 again" || fail "slots freed: /health answers 200 again"

# --- auth --------------------------------------------------------------------
daemon_stop
echo "tok-$PH_ID" >"$PH_TMP/token"
daemon_start --token-file "$PH_TMP/token" || exit 1
hcurl "$API/health"
expect "auth: /health needs no token" 200 '"state":"running"'
for ep in /ports /metrics /ports/events /nope; do
	hcurl "$API$ep"
	expect "auth: GET $ep without a token: 401 with WWW-Authenticate: Bearer" 401 '"error"' '^WWW-Authenticate: Bearer'
done
hcurl -X POST "$API/snapshot/prepare"
expect "auth: POST /snapshot/prepare without a token: 401" 401
hcurl -H "Authorization: Bearer wrong-$PH_ID" "$API/ports"
expect "auth: wrong token: 401" 401 '' '^WWW-Authenticate: Bearer'
hcurl -H "Authorization: Bearer tok-$PH_ID" "$API/ports"
expect "auth: right token: 200" 200 '"ports"'
hcurl -H "Authorization: Basic tok-$PH_ID" "$API/ports"
expect "auth: other scheme: 401" 401
check_not "auth: state still running (unauthenticated prepare did nothing)" \
	grep -q quiesced <(in_host curl -s "$API/health")
daemon_stop
