# SPDX-License-Identifier: MIT
# t_core_threads.sh - relay threads: clients dealt across threads, limit and quiesce across them
# valgrind: yes
#
# With --relay-threads 3 the port worker relays every third client itself
# and hands the others to two relay threads. Checked: the threads exist
# (named), both extra threads carry traffic, bytes arrive intact, the
# connection limit counts relays on every thread (and a close on any thread
# lets a waiting client in), and a snapshot prepare resets the relays of
# every thread. --relay-threads 1 runs no extra thread.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 3000)
PORT=7301

bg_guest "$probe" echo 127.0.0.1 $PORT
wait_listening 127.0.0.1 $PORT || exit 1

threads_named() { grep -l "^$1" /proc/"$DAEMON_PID"/task/*/comm 2>/dev/null | wc -l; }
# voluntary context switches of the threads named $1*, one number per thread
switches() {
	local f
	for f in $(grep -l "^$1" /proc/"$DAEMON_PID"/task/*/comm 2>/dev/null); do
		awk '/^voluntary_ctxt_switches/ { print $2 }' "${f%/comm}/status"
	done
}
metric() { in_host curl -sf -m 2 "http://$GUEST_IP:$API_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# Held connections from the host, driven step by step (python: one socket
# per client, no helper process per connection). Prints one line per step.
held_clients() {
	in_host "$PH_PYTHON" - "$GUEST_IP" "$PORT" "$API_PORT" "$1" "$(scaled 5000 | awk '{ print $1 / 1000 }')" <<'EOF'
import select, socket, sys, time, urllib.request
addr, port, api, script = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
socks = []

def answered(socks, wait):
    """which sockets got their line back within WAIT seconds (all at once)"""
    got, end = set(), time.monotonic() + wait
    while len(got) < len(socks) and time.monotonic() < end:
        ready, _, _ = select.select([s for s in socks if s not in got], [], [],
                                    end - time.monotonic())
        for s in ready:
            try:
                if s.recv(64) == b"x\n":
                    got.add(s)
            except OSError:
                pass
    return [s in got for s in socks]

def closed(s, wait):
    """S sees EOF or a reset within WAIT seconds"""
    s.settimeout(wait)
    try:
        return s.recv(64) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False

def api_call(path, method="GET"):
    req = urllib.request.Request("http://%s:%d%s" % (addr, api, path), method=method)
    return urllib.request.urlopen(req, timeout=float(sys.argv[5]))

for step in script.split(","):
    op, arg = step.split(":")
    if op == "open":            # open N clients, each sends one line
        for _ in range(int(arg)):
            s = socket.create_connection((addr, port), timeout=3)
            s.sendall(b"x\n")
            socks.append(s)
    elif op == "answered":      # how many answer within ARG seconds
        got = answered(socks, float(arg))
        print("answered %d of %d" % (sum(got), len(got)), flush=True)
        socks = [s for s, g in zip(socks, got) if g] + [s for s, g in zip(socks, got) if not g]
    elif op == "close":         # close the first N (answered ones come first)
        for s in socks[:int(arg)]:
            s.close()
        socks = socks[int(arg):]
        time.sleep(0.2)
    elif op == "active":        # the daemon's count of open relays
        for l in api_call("/metrics").read().decode().splitlines():
            if l.startswith("porthole_connections_active "):
                print("active " + l.split()[1], flush=True)
    elif op == "prepare":       # POST /snapshot/prepare
        print("prepare %d" % api_call("/snapshot/prepare", "POST").status, flush=True)
    elif op == "closed":        # how many see EOF or a reset within ARG seconds
        got = [closed(s, float(arg)) for s in socks]
        print("closed %d of %d" % (sum(got), len(got)), flush=True)
EOF
}

# --- three relay threads --------------------------------------------------------
daemon_start --relay-threads 3 || exit 1
wait_for "$(scaled 1000)" exposed $PORT || fail "127.0.0.1:$PORT exposed"
check "log reports 3 relay threads" daemon_log_has '"relay_threads":3'
n=$(threads_named ph-relay-)
[ "$n" = 2 ] && ok "two extra threads named ph-relay-N" || fail "two extra threads named ph-relay-N (found $n)"
n=$(threads_named ph-ports)
[ "$n" = 1 ] && ok "one port worker thread named ph-ports" || fail "one port worker thread (found $n)"

before=$(switches ph-relay- | tr '\n' ' ')
conns=60 kib=64
[ "$PH_VALGRIND" = 1 ] && conns=12 kib=16	# same paths, a tenth of the time
out=$(in_host "$probe" many "$GUEST_IP" $PORT $conns $((kib * 1024)) "$(scaled 30000)" 2>&1)
[ $? = 0 ] && ok "$conns concurrent connections, $kib KiB echoed on each and verified" ||
	fail "$conns concurrent connections, $kib KiB echoed on each and verified" "$out"
after=$(switches ph-relay- | tr '\n' ' ')
busy=0
read -r -a b <<<"$before"
read -r -a a <<<"$after"
for i in "${!a[@]}"; do [ "${a[$i]}" -gt "${b[$i]:-0}" ] && busy=$((busy + 1)); done
[ "$busy" = 2 ] && ok "both relay threads carried connections (switches $before -> $after)" ||
	fail "both relay threads carried connections (switches $before -> $after)"
daemon_stop

# --- the connection limit counts every thread ------------------------------------
# One relay at a time, 4 clients: one answers, three wait in the backlog. Each
# close admits the next client; with one accept at a time the round-robin
# puts the admitted relays on each of the 3 threads in turn, so closes on the
# relay threads (which must wake the port worker) are covered, and a count
# that missed another thread's relays would admit more than one.
daemon_start --relay-threads 3 --max-connections 1 || exit 1
wait_for "$(scaled 1000)" exposed $PORT || fail "127.0.0.1:$PORT exposed (limit 1)"
t=$(scaled 500 | awk '{ print $1 / 1000 }')
out=$(held_clients "open:4,answered:$t,close:1,answered:$t,close:1,answered:$t,close:1,answered:$t" 2>&1)
want=$'answered 1 of 4\nanswered 1 of 3\nanswered 1 of 2\nanswered 1 of 1'
[ "$out" = "$want" ] && ok "limit 1 across 3 threads: one client at a time, each close admits the next" ||
	fail "limit 1 across 3 threads: one client at a time, each close admits the next" "$out"
daemon_stop

# --- prepare resets the relays of every thread --------------------------------------
daemon_start --relay-threads 3 || exit 1
wait_for "$(scaled 1000)" exposed $PORT || fail "127.0.0.1:$PORT exposed (prepare)"
t=$(scaled 2000 | awk '{ print $1 / 1000 }')
out=$(held_clients "open:6,answered:$t,active:-,prepare:-,closed:$t" 2>&1)
[[ $out == *"answered 6 of 6"* && $out == *"active 6"* ]] &&
	ok "6 relays open across 3 threads" || fail "6 relays open across 3 threads" "$out"
[[ $out == *"prepare 204"* && $out == *"closed 6 of 6"* ]] &&
	ok "prepare reset all 6, on every thread" || fail "prepare reset all 6, on every thread" "$out"
n=$(metric porthole_connections_active)
[ "$n" = 0 ] && ok "no relay left after prepare" || fail "no relay left after prepare ($n)"
in_host curl -sf -m 2 -X POST "http://$GUEST_IP:$API_PORT/snapshot/resume" >/dev/null
check "relays again after resume" roundtrip host "$GUEST_IP" $PORT
daemon_stop

# --- one thread ---------------------------------------------------------------------
daemon_start --relay-threads 1 || exit 1
wait_for "$(scaled 1000)" exposed $PORT || fail "127.0.0.1:$PORT exposed (1 thread)"
n=$(threads_named ph-relay-)
[ "$n" = 0 ] && ok "--relay-threads 1: no extra thread" || fail "--relay-threads 1: no extra thread ($n)"
check "--relay-threads 1 relays" roundtrip host "$GUEST_IP" $PORT
daemon_stop
