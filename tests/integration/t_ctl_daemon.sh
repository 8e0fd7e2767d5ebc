# SPDX-License-Identifier: MIT
# t_ctl_daemon.sh - portholectl against the real portholed: health, ports, watch,
# prepare/restore, auth, exit codes. portholectl runs on the host and talks to
# the guest's external address, as it does in production.
# valgrind: yes

CTL=$PH_BUILD/portholectl
ADDR=$GUEST_IP:$API_PORT
echo "tok-$PH_ID" >"$PH_TMP/token"
echo "wrong" >"$PH_TMP/wrong"

# ctl ARGS...: portholectl on the host with the token; RC, OUT, ERR
ctl()
{
	in_host "$CTL" --addr "$ADDR" --token-file "$PH_TMP/token" --timeout "$(scaled 5000)ms" "$@" \
		>"$PH_TMP/out" 2>"$PH_TMP/err"
	RC=$?
	OUT=$(cat "$PH_TMP/out")
	ERR=$(cat "$PH_TMP/err")
}

is()
{
	local bad=
	[ "$RC" = "$2" ] || bad="exit $RC, want $2"
	if [ -z "$bad" ] && [ -n "${3:-}" ] && ! grep -qE -- "$3" "$PH_TMP/out"; then bad="stdout lacks /$3/"; fi
	if [ -z "$bad" ] && [ -n "${4:-}" ] && ! grep -qE -- "$4" "$PH_TMP/err"; then bad="stderr lacks /$4/"; fi
	if [ -z "$bad" ]; then ok "$1"; else fail "$1" "$bad" "stdout: $OUT" "stderr: $ERR"; fi
}

port_state() { ctl ports --json && jq -e --argjson p "$1" --arg s "$2" \
	'any(.ports[]; .port == $p and .state == $s)' "$PH_TMP/out" >/dev/null; }

daemon_start --token-file "$PH_TMP/token" || exit 1

ctl health
is "health: running, with the daemon's version" 0 "^running \(portholed [0-9]+\.[0-9]+\.[0-9]+\)$"

serve_http 127.0.0.1 8000 "$PH_TMP"
if wait_for "$(scaled 3000)" port_state 8000 forwarded; then
	ok "ports --json: a loopback listener shows up as forwarded"
else
	fail "ports --json: a loopback listener shows up as forwarded" "$OUT" "$ERR"
fi
ctl ports
is "ports: table with the forwarded port and its external address" 0 "^8000 +ipv4 +127\.0\.0\.1 +${GUEST_IP//./\\.} +forwarded "
head -n 1 "$PH_TMP/out" | grep -qE "^PORT +FAMILY +ADDRESS +EXTERNAL +STATE +CONNS +FLOWS +SINCE +ERROR$" &&
	ok "ports: table header" || fail "ports: table header" "$OUT"

in_host "$CTL" --addr "$ADDR" --token-file "$PH_TMP/wrong" ports >/dev/null 2>"$PH_TMP/err"
RC=$? ERR=$(cat "$PH_TMP/err") OUT=
is "ports with a wrong token -> exit 1, the daemon's error text" 1 "" "401"

# watch: the snapshot first, then an open event for a port opened now
bg_host "$CTL" --addr "$ADDR" --token-file "$PH_TMP/token" watch >"$PH_TMP/watch" 2>"$PH_TMP/watch.err"
WATCH_PID=$PH_LAST_PID
if wait_for "$(scaled 3000)" grep -q "^snapshot " "$PH_TMP/watch"; then
	ok "watch: starts with the snapshot line"
else
	fail "watch: starts with the snapshot line" "$(cat "$PH_TMP/watch" "$PH_TMP/watch.err")"
fi
serve_echo 127.0.0.1 8001
if wait_for "$(scaled 3000)" grep -q "^open 8001 ipv4 127.0.0.1 forwarded" "$PH_TMP/watch"; then
	ok "watch: an open line for a port opened in the guest"
else
	fail "watch: an open line for a port opened in the guest" "$(cat "$PH_TMP/watch" "$PH_TMP/watch.err")"
fi
kill -INT "$WATCH_PID" 2>/dev/null
wait "$WATCH_PID"
RC=$?
[ "$RC" = 0 ] && ok "watch: SIGINT -> exit 0" || fail "watch: SIGINT -> exit 0" "exit $RC" "$(cat "$PH_TMP/watch.err")"

# the host's snapshot sequence (without the actual VM snapshot)
ctl prepare
is "prepare -> exit 0" 0
in_host "$CTL" --addr "$ADDR" health >"$PH_TMP/out" 2>&1
RC=$? OUT=$(cat "$PH_TMP/out") ERR=
# the first /health after a prepare performs the resume, so either state is right
is "health after prepare answers (no token needed)" 0 "^(quiesced|running) "
ctl prepare
ctl restore --ready-timeout "$(scaled 10000)ms" --resume-timeout "$(scaled 5000)ms"
is "restore after prepare -> exit 0" 0 "^resumed after [0-9]+ ms$"
figure restore_wait_ready "$(sed -n 's/^ready after \([0-9]*\) ms$/\1/p' "$PH_TMP/out")" ms
figure restore_resume "$(sed -n 's/^resumed after \([0-9]*\) ms$/\1/p' "$PH_TMP/out")" ms
ctl health
is "health after restore: running" 0 "^running "
if wait_for "$(scaled 3000)" port_state 8000 forwarded; then
	ok "after restore the port is forwarded again"
else
	fail "after restore the port is forwarded again" "$OUT"
fi
ctl resume
is "resume while running is a no-op -> exit 0" 0

# --json: one JSON object on stdout for every command that prints data
ctl health --json
is "health --json -> exit 0" 0 && check "health --json: the /health body" \
	jq -e '.state == "running" and (.version | type) == "string"' "$PH_TMP/out"
ctl wait-ready --json
is "wait-ready --json -> exit 0" 0 && check "wait-ready --json: ready_ms and attempts" \
	jq -e '(.ready_ms | type) == "number" and .attempts >= 1' "$PH_TMP/out"
ctl prepare
ctl restore --json
is "restore --json -> exit 0" 0 && check "restore --json: ready_ms and resumed_ms" \
	jq -e '(.ready_ms | type) == "number" and (.resumed_ms | type) == "number"' "$PH_TMP/out"

daemon_stop
ctl health
is "health with the daemon gone -> exit 4" 4 "" "cannot connect"
ctl wait-ready --timeout 300ms
is "wait-ready with the daemon gone -> exit 3" 3 "" "not ready within 300ms"
