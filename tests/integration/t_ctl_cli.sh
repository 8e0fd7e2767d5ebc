# SPDX-License-Identifier: MIT
# t_ctl_cli.sh - portholectl's output, auth, error answers and exit codes, against
# the fake daemon tests/helpers/slowhttpd (guest) with portholectl on the host.

CTL=$PH_BUILD/portholectl
SLOW=$(helper slowhttpd) || { fail "slowhttpd helper is built"; exit 1; }
ADDR=$GUEST_IP:$API_PORT
SLOW_PID=
SLOW_SEQ=0

slow_start()
{
	REC=$PH_TMP/rec.$((++SLOW_SEQ))
	: >"$REC"
	bg_guest "$SLOW" --listen "$ADDR" --record "$REC" "$@"
	SLOW_PID=$PH_LAST_PID
	wait_listening "$GUEST_IP" "$API_PORT"
}

slow_stop() { [ -n "$SLOW_PID" ] && kill_pid "$SLOW_PID"; SLOW_PID=; }

# ctl ARGS...: portholectl on the host (address from the environment); RC, OUT, ERR
ctl()
{
	in_host env PORTHOLE_ADDR="$ADDR" "$CTL" "$@" >"$PH_TMP/out" 2>"$PH_TMP/err"
	RC=$?
	OUT=$(cat "$PH_TMP/out")
	ERR=$(cat "$PH_TMP/err")
}

# is DESC WANT_RC [GREP_STDOUT [GREP_STDERR]]
is()
{
	local bad=
	[ "$RC" = "$2" ] || bad="exit $RC, want $2"
	if [ -z "$bad" ] && [ -n "${3:-}" ] && ! grep -qE -- "$3" "$PH_TMP/out"; then bad="stdout lacks /$3/"; fi
	if [ -z "$bad" ] && [ -n "${4:-}" ] && ! grep -qE -- "$4" "$PH_TMP/err"; then bad="stderr lacks /$4/"; fi
	if [ -z "$bad" ]; then
		ok "$1"
	else
		fail "$1" "$bad" "stdout: $OUT" "stderr: $ERR"
	fi
}

echo s3cret-token >"$PH_TMP/token"
echo wrong-token >"$PH_TMP/wrong"

# --- usage (exit 2, nothing sent) ---
ctl
is "no command -> exit 2" 2 "" "missing COMMAND"
ctl frobnicate
is "unknown command -> exit 2" 2 "" "unknown command"
ctl --timeout soon health
is "bad duration -> exit 2" 2 "" "--timeout soon"
ctl --addr example.com:80 health
is "names are not resolved (numeric addresses only) -> exit 2" 2 "" "numeric"
ctl --token-file "$PH_TMP/missing" ports
is "unreadable token file -> exit 2" 2 "" "No such file"
ctl --help
is "--help -> exit 0, usage on stdout" 0 "^Usage: portholectl"

# --- against the fake daemon, with a token ---
slow_start --token s3cret-token
ctl health
is "health needs no token; prints state and version" 0 "^running \(portholed 9\.9\.9\)$"
ctl ports
is "ports without the token -> exit 1 with the server's error text" 1 "" \
	"GET /ports: 401 Unauthorized: missing or invalid token"
ctl --token-file "$PH_TMP/wrong" ports
is "ports with a wrong token -> exit 1" 1 "" "401"
ctl --token-file "$PH_TMP/token" ports
is "ports with the token: table header" 0 "^PORT +FAMILY +ADDRESS +EXTERNAL +STATE +CONNS +FLOWS +SINCE +ERROR$"
check "ports table: conflict row with its error" grep -qE "^5432 +ipv6 +::1 +- +conflict +- +- +- +Address already in use$" "$PH_TMP/out"
check "ports table: forwarded row with conns and since" grep -qE "^8000 +ipv4 +127\.0\.0\.1 +169\.254\.0\.21 +forwarded +2 +- +2024-05-01T12:00:00Z +-$" "$PH_TMP/out"
in_host env PORTHOLE_ADDR="$ADDR" PORTHOLE_TOKEN_FILE="$PH_TMP/token" "$CTL" ports --json >"$PH_TMP/json" 2>&1
check "ports --json (token via PORTHOLE_TOKEN_FILE): the raw body, valid JSON" \
	jq -e '.external_address == "169.254.0.21" and (.ports | length) == 2' "$PH_TMP/json"
check "the token went out as a bearer header" grep -q "recv GET /ports auth=yes" "$REC"

ctl --token-file "$PH_TMP/token" prepare
is "prepare -> exit 0, silent" 0
[ -z "$OUT" ] && ok "prepare prints nothing on success" || fail "prepare prints nothing on success" "$OUT"
ctl health
is "health after prepare reports quiesced" 0 "^quiesced "
ctl --token-file "$PH_TMP/token" resume
is "resume -> exit 0" 0
ctl health
is "health after resume reports running" 0 "^running "

# watch: the fake stream has snapshot, open, a ping, lost (7), close, then pings
in_host env PORTHOLE_ADDR="$ADDR" timeout --preserve-status -s INT 1.5 "$CTL" \
	--token-file "$PH_TMP/token" watch >"$PH_TMP/watch" 2>"$PH_TMP/watch.err"
RC=$?
OUT=$(cat "$PH_TMP/watch")
ERR=$(cat "$PH_TMP/watch.err")
want='snapshot 2 ports: 8000 ipv4 127.0.0.1 forwarded conns=2, 5432 ipv6 ::1 conflict error="Address already in use"
open 9000 ipv4 127.0.0.1 forwarded conns=0
warning: 7 events lost (watch too slow); the state shown may be stale
close 9000 ipv4 127.0.0.1 forwarded'
if [ "$RC" = 0 ] && [ "$OUT" = "$want" ]; then
	ok "watch: one line per event (pings silent, lost as a warning), SIGINT -> exit 0"
else
	fail "watch: one line per event (pings silent, lost as a warning), SIGINT -> exit 0" \
		"exit $RC" "got:" "$OUT" "want:" "$want" "stderr: $ERR"
fi
in_host env PORTHOLE_ADDR="$ADDR" timeout --preserve-status -s TERM 1 "$CTL" \
	--token-file "$PH_TMP/token" watch --json >"$PH_TMP/watch" 2>/dev/null
RC=$?
if [ "$RC" = 0 ] && [ "$(jq -r .event "$PH_TMP/watch" | tr '\n' ' ')" = "snapshot open lost close " ] &&
	[ "$(jq -r 'select(.event == "open") | .data.port' "$PH_TMP/watch")" = 9000 ]; then
	ok "watch --json: one JSON object per event; SIGTERM -> exit 0"
else
	fail "watch --json: one JSON object per event; SIGTERM -> exit 0" "exit $RC" "$(cat "$PH_TMP/watch")"
fi
ctl watch
is "watch without the token -> exit 1" 1 "" "401"
in_host env PORTHOLE_ADDR="$ADDR" "$CTL" --token-file "$PH_TMP/token" watch 2>/dev/null | head -n 1 >"$PH_TMP/first"
RC=${PIPESTATUS[0]}
if [ "$RC" = 0 ] && grep -q "^snapshot 2 ports" "$PH_TMP/first"; then
	ok "watch | head -n 1: ends quietly when its reader goes away"
else
	fail "watch | head -n 1: ends quietly when its reader goes away" "exit $RC" "$(cat "$PH_TMP/first")"
fi
slow_stop

# --- the daemon answers with an error ---
slow_start --fail-status 500
ctl prepare
is "prepare answered 500 -> exit 1 with the error text" 1 "" "POST /snapshot/prepare: 500 .*: injected failure"
ctl resume
is "resume answered 500 -> exit 1" 1 "" "injected failure"
ctl restore --ready-timeout 2s --resume-timeout 1s
is "restore whose resume is answered 500 -> exit 1" 1 "" "injected failure"
slow_stop

slow_start --garbage
ctl health
is "malformed HTTP answer -> exit 1" 1 "" "invalid HTTP answer"
slow_stop

# --- IPv6 address form (fake daemon on the guest's loopback, client in the guest) ---
REC=$PH_TMP/rec.v6
bg_guest "$SLOW" --listen "[::1]:$API_PORT" --record "$REC"
SLOW_PID=$PH_LAST_PID
wait_listening ::1 "$API_PORT"
check "--addr [::1]:PORT works (in the guest)" in_guest "$CTL" --addr "[::1]:$API_PORT" health
slow_stop

# --- bash completion (dist/bash-completion/portholectl) ---------------------
COMP_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/dist/bash-completion/portholectl
complete_words() { bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
	_portholectl; echo "${COMPREPLY[*]}"' sh "$COMP_SRC" "$@"; }
check "completion: every command" \
	test "$(complete_words portholectl '')" = "health ports watch prepare resume wait-ready restore upgrade"
check "completion: a command after a global option" \
	test "$(complete_words portholectl --addr 1.2.3.4:5 re)" = "resume restore"
check "completion: restore's own options" \
	grep -q -- '--ready-timeout --resume-timeout --json' <(complete_words portholectl restore --)
check_not "completion: prepare has no --json" \
	grep -q -- '--json' <(complete_words portholectl prepare --)
