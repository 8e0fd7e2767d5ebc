# SPDX-License-Identifier: MIT
# t_core_abandon.sh - relays whose client leaves before the service accepted (issue #14)
#
# A client that sends its FIN without a byte while the relay's connection to
# the service is still in SYN_SENT (the service's accept queue is full) ends
# the relay at once with a reset, instead of holding two descriptors until
# --half-close-timeout. Measured against a real server-speaks-first service,
# OpenSSH's sshd:
#  - sshd accepting: a client that half-closes at once, without a byte,
#    still gets the SSH banner through the relay (the connect completed, the
#    FIN is passed on, sshd answers);
#  - sshd stopped (SIGSTOP) with its accept queue full: such a client is
#    reset within a second, and the relay counts as "abandoned"; a direct
#    client in the same state cannot even connect;
#  - a client that sent bytes before its FIN keeps its relay, and gets the
#    banner once sshd runs again;
#  - 300 clients that connect to the stopped sshd through the relay and close
#    after 1 s leave no relay behind within seconds, at the default
#    half-close timeout (60 s).
# Bounded: at most ~450 sockets, all to the guest; sshd on 127.0.0.1 only.

SSHD=/usr/sbin/sshd
SSH_PORT=7422
API="http://$GUEST_IP:$API_PORT"
metric() { in_host curl -sf -m 2 "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
active() { metric porthole_connections_active; }
abandoned() { metric 'porthole_relay_closed_total{reason="abandoned"}'; }

if [ ! -x "$SSHD" ] || ! command -v ssh-keygen >/dev/null; then
	skip "sshd (openssh-server) not installed"
	exit 0
fi

# client ADDR PORT SEND HOLD_S: connect, send SEND (may be empty), half-close,
# read until EOF, a reset or HOLD_S; print "<outcome> <ms> <first line read>"
CLIENT_PY='
import socket, sys, time
addr, port, send, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.create_connection((addr, port), timeout=hold)
t0 = time.monotonic()
if send:
    s.sendall(send.encode() + b"\r\n")
s.shutdown(socket.SHUT_WR)
got, outcome = b"", "timeout"
try:
    while True:
        b = s.recv(4096)
        if not b:
            outcome = "eof"
            break
        got += b
except ConnectionResetError:
    outcome = "reset"
except socket.timeout:
    pass
line = got.split(b"\n")[0].decode("ascii", "replace").strip() or "-"
print(outcome, int((time.monotonic() - t0) * 1000), line)
'
# crowd ADDR PORT N HOLD_S: N non-blocking connects, held HOLD_S, then closed
CROWD_PY='
import socket, sys, time
addr, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((addr, port))
    except BlockingIOError:
        pass
    socks.append(s)
print("connecting", n, flush=True)
time.sleep(hold)
for s in socks:
    s.close()
'
client() { "$PH_PYTHON" -c "$CLIENT_PY" "$@"; }

mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$PH_TMP/hostkey" </dev/null || { fail "ssh-keygen"; exit 1; }
bg_guest "$SSHD" -D -e -f /dev/null -o "ListenAddress=127.0.0.1:$SSH_PORT" \
	-o "HostKey=$PH_TMP/hostkey" -o PidFile=none -o MaxStartups=1000 2>>"$PH_TMP/sshd.log"
sshd_pid=$PH_LAST_PID
wait_listening 127.0.0.1 "$SSH_PORT" || exit 1
daemon_start || exit 1
wait_for "$(scaled 3000)" exposed "$SSH_PORT" || fail "sshd's port exposed"

# --- sshd accepting: a half-closed silent client still gets the banner ---------
out=$(in_host "$PH_PYTHON" -c "$CLIENT_PY" "$GUEST_IP" "$SSH_PORT" "" 5)
note "sshd accepting, client half-closed without a byte: $out"
[[ $out == eof\ *\ SSH-2.0-* ]] && ok "server speaks first: a half-closed client gets sshd's banner through the relay" ||
	fail "server speaks first: a half-closed client gets sshd's banner through the relay" "$out"

# --- sshd stopped, its accept queue full -------------------------------------
kill -STOP "$sshd_pid"
bg_guest "$PH_PYTHON" -c "$CROWD_PY" 127.0.0.1 "$SSH_PORT" 200 "$(scaled 30)" >"$PH_TMP/fill.out"
filler=$PH_LAST_PID
wait_for "$(scaled 3000)" eval '[ "$(in_guest ss -Hltn "sport = :$SSH_PORT" src 127.0.0.1 | awk "{ print \$2 }")" -ge 129 ]' ||
	fail "sshd's accept queue is full" "$(in_guest ss -Hltn "sport = :$SSH_PORT")"
# a direct client in this state: its connect does not complete
if in_guest timeout 2 "$PH_PYTHON" -c "$CLIENT_PY" 127.0.0.1 "$SSH_PORT" "" 1 >/dev/null 2>&1; then
	note "a direct client connected to the stopped sshd"
else
	note "a direct client cannot connect to the stopped sshd within 2 s (its SYN is dropped)"
fi

a0=$(abandoned)
out=$(in_host "$PH_PYTHON" -c "$CLIENT_PY" "$GUEST_IP" "$SSH_PORT" "" 10)
note "sshd stopped, client half-closed without a byte: $out"
read -r how ms _ <<<"$out"
figure abandoned_client_reset_ms "${ms:-none}" ms
[ "$how" = reset ] && [ "${ms:-99999}" -le "$(scaled 1000)" ] &&
	ok "service not accepting: a silent half-closed client is reset at once ($ms ms)" ||
	fail "service not accepting: a silent half-closed client is reset at once" "$out"
a1=$(abandoned)
[ "${a1:-0}" -gt "${a0:-0}" ] && ok "counted as abandoned ($a0 -> $a1)" ||
	fail "counted as abandoned" "$a0 -> $a1"

# a client that said something keeps its relay; sshd answers once it runs
bg_host "$PH_PYTHON" -c "$CLIENT_PY" "$GUEST_IP" "$SSH_PORT" "SSH-2.0-porthole_test" 20 >"$PH_TMP/spoke.out"
spoke=$PH_LAST_PID
sleep 1
[ "$(active)" -ge 1 ] && ok "a client that sent bytes before its FIN keeps its relay" ||
	fail "a client that sent bytes before its FIN keeps its relay" "$(active) relays"

# --- 300 clients leave the stopped service: no relay stays ---------------------
bg_host "$PH_PYTHON" -c "$CROWD_PY" "$GUEST_IP" "$SSH_PORT" 300 1 >/dev/null
crowd=$PH_LAST_PID
wait "$crowd"
t0=$(now_ms)
if wait_for "$(scaled 3000)" eval '[ "$(active)" -le 1 ]'; then
	figure abandoned_crowd_drain_ms "$(($(now_ms) - t0))" ms
	ok "300 clients gone from a service that does not accept: their relays end within seconds ($(($(now_ms) - t0)) ms after they closed)"
else
	fail "300 clients gone from a service that does not accept: their relays end within seconds" \
		"$(active) relays still open"
fi

kill_now "$filler"
kill -CONT "$sshd_pid"
wait "$spoke"
out=$(cat "$PH_TMP/spoke.out")
note "the client that spoke, after sshd resumed: $out"
[[ $out == *\ SSH-2.0-* ]] && ok "its bytes were delivered once sshd ran again: banner received" ||
	fail "its bytes were delivered once sshd ran again" "$out"
kill_pid "$sshd_pid"
daemon_stop
