# SPDX-License-Identifier: MIT
# t_core_relay.sh - what the relay does to a connection's bytes, EOFs and resets
# valgrind: yes
#
# Bulk data both ways (SHA-256 checked, throughput relay vs direct), half-close
# in each direction, reset propagation in each direction, a refused backend,
# and connections that outlive the service's listener. One-shot tcpprobe
# servers are used where the exact event order matters; exposure is checked
# with ss (exposed) so that no probe connection reaches them first.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 5000)
MIB=${PH_RELAY_MIB:-64}

# one_shot PORT SCRIPT [ADDR]: tcpprobe server (accepts once) in the guest;
# waits until the daemon exposes it. Sets srv.
one_shot()
{
	bg_guest "$probe" server "${3:-127.0.0.1}" "$1" "$2"
	srv=$PH_LAST_PID
	wait_listening "${3:-127.0.0.1}" "$1" || return 1
	wait_for "$(scaled 1000)" exposed "$1" || { fail "port $1 exposed"; return 1; }
}

# server_ok DESC: the one-shot server's exit status (bounded wait)
server_ok()
{
	if wait_until_not "$(scaled 5000)" kill -0 "$srv"; then
		wait "$srv"
		local st=$?
		[ $st = 0 ] && ok "$1" || fail "$1" "$(tail -n 3 "$PH_TMP/probe.err")"
	else
		kill_now "$srv"
		fail "$1 (server still running)"
	fi
}

mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { if (ms < 1) ms = 1; printf "%.0f", b * 8 / ms / 1000 }'; }

daemon_start || exit 1

# --- bulk transfer both ways ------------------------------------------------
src="$PH_TMP/src.bin"
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$src"
want=$(sha256sum <"$src" | cut -d' ' -f1)

# xfer_up ADDR PORT DST-ADDR: host -> guest sink; prints ms and checks digest
xfer_up()
{
	local port=$1 connect=$2 label=$3 t0 ms got
	rm -f "$PH_TMP/up.bin"
	serve_sink "$4" "$port" "$PH_TMP/up.bin" || return 1
	local sink=$PH_LAST_PID
	[ "$4" != 0.0.0.0 ] && ! wait_for "$(scaled 1000)" exposed "$port" && { fail "$label: exposed"; return 1; }
	t0=$(now_ms)
	if ! in_host timeout "$(scaled 60)" socat -b 262144 -u "OPEN:$src" "TCP4:$connect:$port"; then
		fail "$label: client transfer"
		kill_now "$sink"
		return 1
	fi
	wait_until_not "$(scaled 30000)" kill -0 "$sink"
	ms=$(($(now_ms) - t0))
	kill_now "$sink"
	got=$(sha256sum <"$PH_TMP/up.bin" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "$label: $MIB MiB host->guest, SHA-256 matches ($ms ms)" ||
		fail "$label: $MIB MiB host->guest, SHA-256 matches" "size $(stat -c %s "$PH_TMP/up.bin")"
	figure "${label}_up_mbit_s" "$(mbps $((MIB * 1048576)) "$ms")" Mbit/s
}

xfer_down()
{
	local port=$1 connect=$2 label=$3 t0 ms got
	rm -f "$PH_TMP/down.bin"
	serve_source "$4" "$port" "$src" || return 1
	local source=$PH_LAST_PID
	[ "$4" != 0.0.0.0 ] && ! wait_for "$(scaled 1000)" exposed "$port" && { fail "$label: exposed"; return 1; }
	t0=$(now_ms)
	if ! in_host timeout "$(scaled 60)" socat -b 262144 -u "TCP4:$connect:$port" "CREATE:$PH_TMP/down.bin"; then
		fail "$label: client transfer"
		kill_now "$source"
		return 1
	fi
	ms=$(($(now_ms) - t0))
	kill_now "$source"
	got=$(sha256sum <"$PH_TMP/down.bin" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "$label: $MIB MiB guest->host, SHA-256 matches ($ms ms)" ||
		fail "$label: $MIB MiB guest->host, SHA-256 matches" "size $(stat -c %s "$PH_TMP/down.bin")"
	figure "${label}_down_mbit_s" "$(mbps $((MIB * 1048576)) "$ms")" Mbit/s
}

# Same tool, same veth, same run: the only difference is the relay.
xfer_up 7101 "$GUEST_IP" relay 127.0.0.1
xfer_up 7102 "$GUEST_IP" direct 0.0.0.0
xfer_down 7103 "$GUEST_IP" relay 127.0.0.1
xfer_down 7104 "$GUEST_IP" direct 0.0.0.0
rm -f "$src" "$PH_TMP/up.bin" "$PH_TMP/down.bin"

# --- half-close, client side first -------------------------------------------
# The client shuts its write side; the service must see EOF, and its reply,
# sent after that EOF, must still reach the client, followed by EOF.
one_shot 7110 'r:ping,e,s:pong-after-eof,c' 2>"$PH_TMP/probe.err" &&
	check "half-close client->server: EOF arrives, reply still flows" \
		in_host "$probe" client "$GUEST_IP" 7110 's:ping,w,r:pong-after-eof,e' &&
	server_ok "half-close client->server: service saw data then EOF"

# --- half-close, service side first -----------------------------------------
one_shot 7111 's:hello,w,r:late-data,e,c' ::1 2>"$PH_TMP/probe.err" &&
	check "half-close server->client: client sees EOF, can still send" \
		in_host "$probe" client "$GUEST_IP" 7111 'r:hello,e,s:late-data,w' &&
	server_ok "half-close server->client: service got the late data and EOF"

# --- a response and its FIN arrive together ----------------------------------
# A service that answers and closes must look the same through the relay as
# directly: response and FIN in one segment. (Sent apart, an HTTP client
# reads the response, closes first and keeps the TIME_WAIT; under load its
# ephemeral ports run out.) The daemon is stopped while the service answers
# and closes, so both are queued when it resumes; the client counts the
# segments that reach it after its request was acknowledged.
one_shot 7114 "r:go,g:$PH_TMP/gate7114,s:response,c" 2>"$PH_TMP/probe.err" && {
	rm -f "$PH_TMP/gate7114"
	bg_host "$probe" client "$GUEST_IP" 7114 "s:go,z:$(scaled 300),i,r:response,e,I:1" \
		2>"$PH_TMP/fin.err"
	cl=$PH_LAST_PID
	sleep "$(awk -v s="$(scaled 600)" 'BEGIN { print s / 1000 }')"
	kill -STOP "$DAEMON_PID"
	touch "$PH_TMP/gate7114"
	wait_until_not 2000 kill -0 "$srv"
	kill -CONT "$DAEMON_PID"
	if wait "$cl"; then
		ok "response and FIN reach the client in one segment"
	else
		fail "response and FIN reach the client in one segment" "$(cat "$PH_TMP/fin.err")"
	fi
	server_ok "service answered and closed"
}

# --- reset from the service -------------------------------------------------
one_shot 7112 'r:hi,x' 2>"$PH_TMP/probe.err" &&
	check "service aborts (SO_LINGER 0): client sees ECONNRESET, not EOF" \
		in_host "$probe" client "$GUEST_IP" 7112 's:hi,R' &&
	server_ok "service abort done"

# --- reset from the client --------------------------------------------------
one_shot 7113 'r:hi,R' 2>"$PH_TMP/probe.err" &&
	check "client aborts" in_host "$probe" client "$GUEST_IP" 7113 's:hi,z:50,x' &&
	server_ok "client aborts (SO_LINGER 0): service sees ECONNRESET, not EOF"

# --- connections outlive the service's listener -----------------------------
# The one-shot server closes its listener right after accept; the daemon
# drops the external listener within a scan or two while the relayed
# connection keeps working in both directions.
if one_shot 7114 'r:one,s:one,z:600,r:two,s:two,c' 2>"$PH_TMP/probe.err"; then
	bg_host "$probe" client "$GUEST_IP" 7114 's:one,r:one,z:400,s:two,r:two,e' 2>"$PH_TMP/client.err"
	cl=$PH_LAST_PID
	if wait_until_not "$(scaled 1000)" exposed 7114; then
		ok "listener closed by the service: external listener removed"
	else
		fail "listener closed by the service: external listener removed"
	fi
	if wait_until_not "$(scaled 5000)" kill -0 "$cl"; then
		wait "$cl" && ok "relayed connection survives its service's listener closing" ||
			fail "relayed connection survives its service's listener closing" "$(cat "$PH_TMP/client.err")"
	else
		kill_now "$cl"
		fail "relayed connection survives its service's listener closing (client hung)"
	fi
	server_ok "service side of the surviving connection completed"
fi
daemon_stop

# --- backend refused: client gets RST at once, not a hang -------------------
# With a long scan interval the external listener outlives the service by
# up to 10 s; a client connecting then must be reset right away.
serve_echo 127.0.0.1 7120
srv=$PH_LAST_PID
daemon_start --scan-interval 10000 || exit 1
if wait_for "$(scaled 2000)" exposed 7120; then
	kill_now "$srv"
	t0=$(now_ms)
	out=$(in_host env PH_PROBE_TIMEOUT_MS=3000 "$probe" client "$GUEST_IP" 7120 'R' 2>&1)
	st=$?
	ms=$(($(now_ms) - t0))
	if [ $st = 0 ] && [ "$ms" -le "$(scaled 500)" ]; then
		ok "backend refused: client gets ECONNRESET in $ms ms"
	elif exposed 7120; then
		fail "backend refused: client gets ECONNRESET quickly (status $st, $ms ms)" "$out"
	else
		skip "backend refused: a scan removed the listener first (retry the test)"
	fi
	figure refused_reset_ms "$ms" ms
else
	fail "127.0.0.1:7120 exposed at the first scan"
fi
daemon_stop
