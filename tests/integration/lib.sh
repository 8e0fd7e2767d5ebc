# SPDX-License-Identifier: MIT
# lib.sh - integration test harness: namespaces, daemon control, peers, assertions
#
# Sourced by tests/integration/run into a fresh bash for each t_*.sh file
# (never run directly). Sourcing builds the topology; an EXIT/INT/TERM trap
# tears it down again, however the test ends.
#
# Topology (one per test file; ids are unique so files may run in parallel)
#
#   guest netns phg-<id>                        host netns phh-<id>
#   eth0 169.254.0.21/30  <------ veth ------>  eth0 169.254.0.22/30
#   lo up, default route via 169.254.0.22        lo up
#
#   portholed runs in the guest (it autodetects 169.254.0.21 from the default
#   route); services run in the guest on loopback; clients run in the host.
#
# Environment
#   PH_BUILD      build dir holding portholed, portholectl, helpers/ (absolute
#                 after sourcing; default build/default)
#   PH_VALGRIND   1: daemon_start wraps portholed in valgrind (run valgrind)
#   PH_SLOW       factor for timeouts (1; 20 under valgrind) - use `scaled MS`
#   PH_ID         this file's id (the runner sets it, so it can clean up after
#                 a file that had to be killed); PH_GUEST_NS / PH_HOST_NS the
#                 namespace names phg-$PH_ID / phh-$PH_ID
#   PH_TMP        per-file scratch directory (removed on exit unless PH_KEEP=1)
#   GUEST_IP=169.254.0.21  HOST_IP=169.254.0.22  API_PORT=49982
#   DAEMON_PID, DAEMON_LOG  after daemon_start; PH_LAST_PID after serve_*/bg_*
#   PH_PYTHON     /usr/bin/python3 when present (fast start), else python3
#
# Namespaces
#   in_guest CMD...           run CMD in the guest netns (foreground)
#   in_host CMD...            run CMD in the host netns (foreground)
#   bg_guest CMD... / bg_host CMD...
#                             start CMD in the background in that netns; sets
#                             PH_LAST_PID; killed on cleanup
#
# Daemon
#   daemon_start [FLAGS...]   start $PH_BUILD/portholed in the guest (stderr
#                             -> $DAEMON_LOG) and wait until ready: GET /health
#                             on 169.254.0.21:49982 answers from the host, or
#                             the log says "portholed started". Returns 1 (and
#                             records a failure) if it died or never got ready.
#                             DAEMON_PREFIX=(prlimit --nofile=64:64) etc. is
#                             put before the binary when set.
#   daemon_stop [STATUS]      SIGTERM, wait (bounded), check the exit status
#                             (default 0); under valgrind also 0 errors and no
#                             leaks of any kind (log: $DAEMON_VGLOG)
#   daemon_alive              true while the daemon runs
#   daemon_log_has REGEX      grep -E the daemon log
#   daemon_cpu_ticks          utime+stime of the daemon (clock ticks)
#
# Waiting and time
#   now_ms                    monotonic-ish wall time in ms (EPOCHREALTIME)
#   wait_for MS CMD...        run CMD every 10 ms until it succeeds; 1 on timeout
#   wait_until_not MS CMD...  the opposite
#   scaled MS                 MS * PH_SLOW (use for every timeout)
#
# Assertions (each prints one line; counted by the runner)
#   ok DESC                   pass
#   fail DESC [DETAILS...]    failure; details indented underneath
#   skip DESC                 not run here (reason in DESC); neither pass nor fail
#   check DESC CMD...         ok if CMD succeeds, else fail with its output
#   check_not DESC CMD...     ok if CMD fails
#   figure NAME VALUE [UNIT]  print a measured figure ("# figure: ...")
#   note TEXT                 print a comment line
#   health_probes NAME OUT MIN DROPS OVERFLOWS
#                             the verdict on apiload's /health probe line OUT
#                             (its figures, then "every probe 200 within
#                             100 ms"); DROPS, OVERFLOWS: the kernel's backlog
#                             drops and the guest's listen overflows meanwhile
#                             ("-": not the API's alone); see its comment
#   softnet_drops, listen_overflows NS   the counters for it
#
# Peers (all started in the guest unless noted; pids tracked and killed)
#   serve_echo ADDR PORT      socat echo server bound to ADDR:PORT (ADDR may
#                             be IPv6, e.g. ::1); waits until it listens
#   serve_http ADDR PORT [DIR] python3 -m http.server --bind ADDR (DIR: cwd)
#   serve_sink ADDR PORT FILE  accept one connection, write what arrives to FILE
#   serve_source ADDR PORT FILE accept one connection, send FILE, close
#   kill_pid PID              SIGTERM a tracked process and wait (bounded)
#   kill_now PID              SIGKILL a tracked process and reap it
#   guest_listening ADDR PORT true if the guest has a TCP listener on ADDR:PORT
#   tcp_probe NS ADDR PORT    true if a TCP connect from netns NS ("host",
#                             "guest" or a netns name) succeeds within 1 s
#                             (connect only: an accept-then-reset counts)
#   sock_addr ADDR PORT       socat address TCP:a:p or TCP6:[a]:p
#   helper NAME               path of $PH_BUILD/helpers/NAME (fails if missing)
#   exposed PORT              the guest has a listener on 169.254.0.21:PORT
#                             (checked with ss: makes no connection)
#   listener_inode ADDR PORT  socket inode of the guest listener on ADDR:PORT
#   listener_count PORT       number of guest listeners on PORT (any address)
#   roundtrip NS ADDR PORT    from netns NS, send a line to an echo server on
#                             ADDR:PORT and check it comes back (tcpprobe)
#
# UDP peers (tests/integration/udp_peer.py; see its header for the commands)
#   udp_peer NS CMD ARGS...   run udp_peer.py CMD in netns NS (foreground)
#   serve_udp ADDR PORT [CMD] start udp_peer.py CMD (default echo) on ADDR:PORT
#                             in the guest; waits until the socket is bound
#   udp_bound ADDR PORT       the guest has a UDP socket bound to ADDR:PORT
#   udp_exposed PORT          the guest has a UDP socket on 169.254.0.21:PORT
#
# The API contract (docs/openapi.yaml)
#   api_conforms METHOD PATH STATUS HDR BODY
#                             ok/fail: the response (curl -D HDR, -o BODY)
#                             matches the spec (tests/integration/openapi_check.py)
#   api_curl_conforms STATUS CURL_ARGS...
#                             the same, method and path taken from curl's
#                             arguments (-X M, -I; the http:// URL), files
#                             $PH_TMP/hdr and $PH_TMP/out
#   metrics_conform FILE      ok/fail: promtool check metrics accepts FILE
#
# Writing a test: tests/integration/t_<area>_<what>.sh, plain bash using the
# functions above; no need to call anything at the end. Never start a
# server (serve_*, bg_*, daemon_start) inside $(...): the background process
# keeps the substitution's pipe open and the test hangs until the runner's
# per-file timeout; and its pid would be tracked in the subshell only. A line
# "# valgrind: yes" in the file makes `run valgrind` include it.

# ---------------------------------------------------------------------------
# state

PH_PASS=0
PH_FAIL=0
PH_SKIP=0
PH_PIDS=()
DAEMON_PID=
DAEMON_LOG=
DAEMON_PREFIX=()
PH_LAST_PID=
GUEST_IP=169.254.0.21
HOST_IP=169.254.0.22
API_PORT=49982

: "${PH_BUILD:=build/default}"
PH_BUILD=$(cd "$PH_BUILD" 2>/dev/null && pwd || echo "$PH_BUILD")
: "${PH_VALGRIND:=0}"
if [ "$PH_VALGRIND" = 1 ]; then : "${PH_SLOW:=20}"; else : "${PH_SLOW:=1}"; fi
PH_TEST_NAME=${PH_TEST_NAME:-$(basename "${BASH_SOURCE[1]:-test}")}
PH_PYTHON=python3
[ -x /usr/bin/python3 ] && PH_PYTHON=/usr/bin/python3

# Short and unique: veth and netns names stay short, parallel runs never clash.
PH_ID=${PH_ID:-$(printf '%x%04x' $$ $((RANDOM)))}
PH_GUEST_NS=phg-$PH_ID
PH_HOST_NS=phh-$PH_ID
PH_TMP=$(mktemp -d "/tmp/ph-it.$PH_ID.XXXXXX")

# ---------------------------------------------------------------------------
# output and assertions

note() { printf '# %s\n' "$*"; }

# Packets the kernel dropped, since boot, because a CPU's input backlog
# (net.core.netdev_max_backlog) was full: how veth hands packets across
# namespaces, so a test's own burst can lose a probe's packet there
softnet_drops()
{
	local n=0 _p d _r
	while read -r _p d _r; do n=$((n + 16#$d)); done </proc/net/softnet_stat
	echo "$n"
}

# health_probes NAME OUT MIN DROPS OVERFLOWS - see the header. Every probe
# must answer 200, at least MIN were sent, and every one whose connection
# sent nothing again (TCP_INFO) answered within 100 ms. A probe that had to
# retransmit lost a packet: to the daemon only if an accept queue overflowed
# (its handshake's ACK dropped), and then it counts; to the test's veth
# topology if the kernel's input backlog dropped packets meanwhile and no
# listener overflowed, which a guest's virtio path does not do: then it is
# reported with its time, and need only be answered (200 within 1 s).
health_probes()
{
	local name=$1 out=$2 min=$3 drops=$4 over=$5
	local sent okn bad p50 p99 p100 lost clean plost _rest
	read -r _ sent _ okn _ bad _ p50 _ p99 _ p100 _ lost _ clean _ plost _rest <<<"$out"
	figure "${name}_probes" "$sent"
	figure "${name}_health_p50" "$p50" ms
	figure "${name}_health_p99" "$p99" ms
	figure "${name}_health_p100" "$p100" ms
	local within=$p100 why=
	if [ "${lost:-0}" -gt 0 ] && [ "${drops:-0}" -gt 0 ] && [ "$over" = 0 ]; then
		within=$clean
		why="; $lost retransmitted (p100 $plost ms) while the kernel's input backlog dropped $drops packets and no listener overflowed"
	fi
	if [ "${bad:-1}" = 0 ] && [ "${sent:-0}" -ge "$min" ] &&
		awk -v m="${within:-9999}" 'BEGIN { exit !(m <= 100) }'; then
		ok "$name: every /health probe 200 within 100 ms ($sent probes, p50 $p50 p99 $p99 p100 $within ms$why)"
	else
		fail "$name: every /health probe 200 within 100 ms" \
			"$out; kernel backlog drops $drops, guest listen overflows $over"
	fi
}

# listen_overflows NS: connections NS's listeners had no room for
# (TcpExt ListenOverflows: a full accept queue dropped the handshake's ACK)
listen_overflows()
{
	in_ns "$1" cat /proc/net/netstat |
		awk '$1 == "TcpExt:" { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 }
			else for (i = 2; i <= NF; i++) if (k[i] == "ListenOverflows") print $i }'
}

# connect_loop_counts FILE: "OK REFUSED LOST TIMEOUT MAX_OK_MS" from connect_loop.py's summary
connect_loop_counts()
{
	"$PH_PYTHON" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print(r["ok"], r["refused"], r["lost"], r["timeout"], r["max_ok_ms"])' "$1"
}

# connect_loop_through LABEL PID FILE MIN FIGURE WHAT: stop connect_loop.py PID
# (summary in FILE) and judge a client that connected every ms through WHAT
# (a kill, a restart): at least MIN ok, 0 refused, 0 timed out, and at most
# the one connection in flight lost (a sequential client: a kill can cost
# that one); its slowest connection as figure FIGURE
connect_loop_through()
{
	local label=$1 pid=$2 file=$3 min=$4 fig=$5 what=$6 lok refused lost timeout maxms
	kill -TERM "$pid"
	wait "$pid"
	read -r lok refused lost timeout maxms < <(connect_loop_counts "$file")
	note "$label: client: $lok ok, $refused refused, $lost lost, $timeout timed out, slowest $maxms ms"
	[ "$refused" = 0 ] && [ "$timeout" = 0 ] && [ "${lok:-0}" -gt "$min" ] &&
		ok "$label: a client connecting every ms through $what: $lok ok, 0 refused, 0 timed out" ||
		fail "$label: 0 refused, 0 timed out through $what" "$(cat "$file")"
	[ "${lost:-9}" -le 1 ] && ok "$label: at most the connection in flight lost ($lost)" ||
		fail "$label: at most one connection lost" "lost $lost"
	figure "$fig" "$maxms" ms
}

ok()
{
	PH_PASS=$((PH_PASS + 1))
	printf 'ok   - %s\n' "$1"
}

fail()
{
	local desc=$1
	shift
	PH_FAIL=$((PH_FAIL + 1))
	printf 'FAIL - %s\n' "$desc"
	# the runner repeats these in its summary (the end of a long log is what CI shows)
	[ -n "${PH_FAILS_FILE:-}" ] && printf '%s: %s\n' "$PH_TEST_NAME" "$desc" >>"$PH_FAILS_FILE"
	local l
	for l in "$@"; do
		printf '%s\n' "$l" | sed 's/^/       | /' | head -n 40
	done
	# with the first lines of what it saw, so the summary alone tells why
	[ -n "${PH_FAILS_FILE:-}" ] && [ $# -gt 0 ] &&
		printf '%s\n' "$@" | head -n 6 | cut -c1-300 | sed 's/^/    | /' >>"$PH_FAILS_FILE"
	return 1
}

skip()
{
	PH_SKIP=$((PH_SKIP + 1))
	printf 'skip - %s\n' "$1"
}

check()
{
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		fail "$desc" "command: $*" "$out"
	fi
}

check_not()
{
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "$desc" "command unexpectedly succeeded: $*" "$out"
	else
		ok "$desc"
	fi
}

figure()
{
	printf '# figure: %s %s = %s %s\n' "$PH_TEST_NAME" "$1" "$2" "${3:-}"
}

# ---------------------------------------------------------------------------
# time

now_ms()
{
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}

scaled() { echo $(($1 * PH_SLOW)); }

wait_for()
{
	local ms=$1 deadline
	shift
	deadline=$(($(now_ms) + ms))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		[ "$(now_ms)" -ge "$deadline" ] && return 1
		sleep 0.01
	done
}

wait_until_not()
{
	local ms=$1 deadline
	shift
	deadline=$(($(now_ms) + ms))
	while :; do
		"$@" >/dev/null 2>&1 || return 0
		[ "$(now_ms)" -ge "$deadline" ] && return 1
		sleep 0.01
	done
}

# ---------------------------------------------------------------------------
# namespaces

ns_name()
{
	case $1 in
	guest) echo "$PH_GUEST_NS" ;;
	host) echo "$PH_HOST_NS" ;;
	*) echo "$1" ;;
	esac
}

# nsenter (not `ip netns exec`): no mount namespace, so it is cheap enough
# to sit inside 10 ms polling loops.
in_ns() { local ns; ns=$(ns_name "$1"); shift; nsenter --net="/run/netns/$ns" -- "$@"; }
in_guest() { in_ns guest "$@"; }
in_host() { in_ns host "$@"; }

track() { PH_PIDS+=("$1"); }

bg_guest()
{
	nsenter --net="/run/netns/$PH_GUEST_NS" -- "$@" &
	PH_LAST_PID=$!
	track "$PH_LAST_PID"
}

bg_host()
{
	nsenter --net="/run/netns/$PH_HOST_NS" -- "$@" &
	PH_LAST_PID=$!
	track "$PH_LAST_PID"
}

setup_topology()
{
	ip netns add "$PH_GUEST_NS" || return 1
	ip netns add "$PH_HOST_NS" || return 1
	# Created inside the guest with its peer inside the host: the names
	# never exist in the root namespace, so parallel files cannot clash.
	ip -n "$PH_GUEST_NS" link add eth0 type veth peer name eth0 netns "$PH_HOST_NS" || return 1
	ip -n "$PH_GUEST_NS" addr add "$GUEST_IP/30" dev eth0 || return 1
	ip -n "$PH_HOST_NS" addr add "$HOST_IP/30" dev eth0 || return 1
	ip -n "$PH_GUEST_NS" link set lo up || return 1
	ip -n "$PH_HOST_NS" link set lo up || return 1
	ip -n "$PH_GUEST_NS" link set eth0 up || return 1
	ip -n "$PH_HOST_NS" link set eth0 up || return 1
	ip -n "$PH_GUEST_NS" route add default via "$HOST_IP" || return 1
	# IPv6 on lo only; no DAD delays matter since we never use v6 on eth0.
	in_guest sysctl -qw net.ipv6.conf.lo.disable_ipv6=0 2>/dev/null || true
	# The veth must carry packets before any test starts (no ping here:
	# operstate UP on both ends is what the kernel needs).
	wait_for 3000 link_up guest || return 1
	wait_for 3000 link_up host || return 1
}

link_up() { [ "$(in_ns "$1" cat /sys/class/net/eth0/operstate)" = up ]; }

# Kill everything left in our namespaces (all of it was started by this
# file), then the namespaces and scratch files. Runs on any exit.
ph_cleanup()
{
	local rc=$? pid ns i
	trap - EXIT INT TERM
	exec 2>/dev/null	# no "Killed" job notices from bash
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -KILL "$DAEMON_PID" 2>/dev/null
	fi
	for pid in "${PH_PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
	for ns in "$PH_GUEST_NS" "$PH_HOST_NS"; do
		[ -e "/run/netns/$ns" ] || continue
		for i in 1 2 3 4 5; do
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -z "$pids" ] && break
			kill -KILL $pids 2>/dev/null
			sleep 0.05
		done
	done
	wait 2>/dev/null
	ip netns del "$PH_GUEST_NS" 2>/dev/null
	ip netns del "$PH_HOST_NS" 2>/dev/null
	if [ "$PH_FAIL" -gt 0 ] && [ -n "$DAEMON_LOG" ] && [ -s "$DAEMON_LOG" ]; then
		note "last lines of the daemon log ($DAEMON_LOG):"
		tail -n 30 "$DAEMON_LOG" | sed 's/^/#   /'
	fi
	if [ "${PH_KEEP:-0}" = 1 ]; then
		note "scratch files kept in $PH_TMP"
	else
		rm -rf "$PH_TMP"
	fi
	[ -n "${PH_RESULT_FILE:-}" ] && echo "$PH_PASS $PH_FAIL $PH_SKIP" >"$PH_RESULT_FILE"
	exit "$rc"
}

ph_interrupted()
{
	fail "interrupted by a signal"
	exit 130
}

trap ph_cleanup EXIT
trap ph_interrupted INT TERM

# ---------------------------------------------------------------------------
# the daemon

helper()
{
	local p="$PH_BUILD/helpers/$1"
	if [ ! -x "$p" ]; then
		echo "missing helper $p (make O=$PH_BUILD all)" >&2
		return 1
	fi
	echo "$p"
}

daemon_alive() { [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null && ! proc_zombie "$DAEMON_PID"; }

proc_zombie()
{
	local st
	st=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$st" = Z ]
}

daemon_ready()
{
	grep -q 'portholed started' "$DAEMON_LOG" 2>/dev/null && return 0
	in_host curl -sf -m 1 -o /dev/null "http://$GUEST_IP:$API_PORT/health"
}

daemon_start()
{
	local bin="$PH_BUILD/portholed" n=${PH_DAEMON_SEQ:-0}
	if [ ! -x "$bin" ]; then
		fail "daemon_start: $bin does not exist (make O=$PH_BUILD all)"
		return 1
	fi
	PH_DAEMON_SEQ=$((n + 1))
	DAEMON_LOG="$PH_TMP/portholed.$n.log"
	DAEMON_VGLOG=
	local cmd=("${DAEMON_PREFIX[@]}")
	if [ "$PH_VALGRIND" = 1 ]; then
		DAEMON_VGLOG="$PH_TMP/valgrind.$n.log"
		cmd+=(valgrind --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all
			--error-exitcode=99 --track-fds=no --log-file="$DAEMON_VGLOG")
	fi
	cmd+=("$bin" "$@")
	nsenter --net="/run/netns/$PH_GUEST_NS" -- "${cmd[@]}" 2>"$DAEMON_LOG" &
	DAEMON_PID=$!
	track "$DAEMON_PID"
	local deadline=$(($(now_ms) + $(scaled 5000)))
	while :; do
		if ! daemon_alive; then
			wait "$DAEMON_PID" 2>/dev/null
			fail "daemon_start: portholed exited during startup (status $?)" \
				"$(tail -n 20 "$DAEMON_LOG")"
			DAEMON_PID=
			return 1
		fi
		daemon_ready && return 0
		if [ "$(now_ms)" -ge "$deadline" ]; then
			fail "daemon_start: portholed not ready after $(scaled 5000) ms" \
				"$(tail -n 20 "$DAEMON_LOG")"
			return 1
		fi
		sleep 0.01
	done
}

# daemon_stop [EXPECTED_STATUS]: SIGTERM and check the exit (default 0).
daemon_stop()
{
	local want=${1:-0} st pid=$DAEMON_PID
	if [ -z "$pid" ]; then
		fail "daemon_stop: no daemon running"
		return 1
	fi
	kill -TERM "$pid" 2>/dev/null
	if ! wait_until_not "$(scaled 5000)" daemon_alive; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		DAEMON_PID=
		fail "daemon_stop: portholed did not exit within $(scaled 5000) ms of SIGTERM" \
			"$(tail -n 20 "$DAEMON_LOG")"
		return 1
	fi
	wait "$pid" 2>/dev/null
	st=$?
	DAEMON_PID=
	local bad=0
	if [ "$st" != "$want" ]; then
		fail "daemon exits with status $want on SIGTERM (got $st)" "$(tail -n 20 "$DAEMON_LOG")"
		bad=1
	else
		ok "daemon exits with status $want on SIGTERM"
	fi
	if [ "$PH_VALGRIND" = 1 ]; then
		valgrind_verdict "$DAEMON_VGLOG" || bad=1
	fi
	return $bad
}

# The summary lines valgrind prints with --leak-check=full; a missing line
# means that kind is 0 (valgrind omits "All heap blocks were freed" cases).
valgrind_verdict()
{
	local f=$1 bad=0 kind
	if ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
		fail "valgrind: zero errors" "$(grep -E -A12 'Invalid|uninitialised|Syscall param|Mismatched|are definitely lost|are indirectly lost|are possibly lost|still reachable in' "$f" | head -n 60)"
		bad=1
	else
		ok "valgrind: zero errors"
	fi
	for kind in 'definitely lost' 'indirectly lost' 'possibly lost' 'still reachable'; do
		if grep -E "$kind: [1-9]" "$f" >/dev/null; then
			fail "valgrind: $kind 0 bytes" "$(grep -E "$kind:" "$f")"
			bad=1
		fi
	done
	[ $bad = 0 ] && ok "valgrind: no leaks (definitely/indirectly/possibly lost, still reachable: 0)"
	note "valgrind: $(grep -E 'in use at exit|ERROR SUMMARY' "$f" | sed 's/==[0-9]*== //' | tr '\n' ' ')"
	return $bad
}

daemon_log_has() { grep -Eq "$1" "$DAEMON_LOG" 2>/dev/null; }

daemon_cpu_ticks()
{
	awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$DAEMON_PID/stat"
}

# ---------------------------------------------------------------------------
# peers

is_v6() { [[ $1 == *:* ]]; }

sock_addr()
{
	if is_v6 "$1"; then echo "TCP6:[$1]:$2"; else echo "TCP4:$1:$2"; fi
}

listen_addr()
{
	if is_v6 "$1"; then
		echo "TCP6-LISTEN:$2,bind=[$1],reuseaddr,ipv6only=1"
	else
		echo "TCP4-LISTEN:$2,bind=$1,reuseaddr"
	fi
}

# guest_listening ADDR PORT: ss prints v6 addresses in brackets, a
# wildcard that is not v6only as "*", and bound devices as "%dev".
guest_listening()
{
	local a=$1
	is_v6 "$a" && a="[$a]"
	in_guest ss -Hltn "sport = :$2" | awk -v want="$a" -v port="$2" '
		{ l = $4; sub(/%[^:]*:/, ":", l)
		  if (l == want ":" port) f = 1
		  if (l == "*:" port && (want == "0.0.0.0" || want == "[::]")) f = 1 }
		END { exit !f }'
}

wait_listening()
{
	if ! wait_for "$(scaled 3000)" guest_listening "$1" "$2"; then
		fail "server on $1:$2 did not start listening" "$(in_guest ss -ltnp)"
		return 1
	fi
}

# serve_echo ADDR PORT: an echo service in the guest, a single process that
# serves every connection (tcpprobe echo; socat's fork per connection can take
# seconds on a machine whose kernel runs DAMON: see mode_echo() in tcpprobe.c)
serve_echo()
{
	local p
	p=$(helper tcpprobe) || return 1
	bg_guest "$p" echo "$1" "$2" 2>>"$PH_TMP/servers.log"
	wait_listening "$1" "$2"
}

# http.server's own server_bind() does a reverse lookup (getfqdn) that
# hangs on resolver timeouts inside a namespace with a default route; this
# one binds and nothing else.
PH_HTTP_PY='
import http.server, socket, socketserver, sys, functools
addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = addr, port
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass
Server((addr, port), functools.partial(Quiet, directory=root)).serve_forever()
'

serve_http()
{
	local dir=${3:-$PWD}
	bg_guest "$PH_PYTHON" -c "$PH_HTTP_PY" "$1" "$2" "$dir" >>"$PH_TMP/servers.log" 2>&1
	wait_listening "$1" "$2"
}

serve_sink()
{
	bg_guest socat -u "$(listen_addr "$1" "$2")" "CREATE:$3" 2>>"$PH_TMP/servers.log"
	wait_listening "$1" "$2"
}

serve_source()
{
	bg_guest socat -u "OPEN:$3" "$(listen_addr "$1" "$2")" 2>>"$PH_TMP/servers.log"
	wait_listening "$1" "$2"
}

kill_now()
{
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null	# reaped here: no "Killed" notice later
	return 0
}

kill_pid()
{
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	if ! wait_until_not 3000 kill -0 "$pid"; then
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}

exposed() { guest_listening "$GUEST_IP" "$1"; }

listener_inode()
{
	local a=$1
	is_v6 "$a" && a="[$a]"
	in_guest ss -Hltne "sport = :$2" | awk -v want="$a:$2" '
		$4 == want { for (i = 5; i <= NF; i++) if ($i ~ /^ino:/) { sub(/^ino:/, "", $i); print $i; exit } }'
}

listener_count() { in_guest ss -Hltn "sport = :$1" | wc -l; }

roundtrip()
{
	local p msg="hello-$RANDOM"
	p=$(helper tcpprobe) || return 1
	in_ns "$1" env PH_PROBE_TIMEOUT_MS="$(scaled 3000)" "$p" client "$2" "$3" "s:$msg,r:$msg"
}

# ---------------------------------------------------------------------------
# UDP peers

PH_UDP_PEER=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/udp_peer.py

udp_peer()
{
	local ns=$1
	shift
	in_ns "$ns" "$PH_PYTHON" "$PH_UDP_PEER" "$@"
}

udp_bound()
{
	local a=$1
	is_v6 "$a" && a="[$a]"
	in_guest ss -Hlun "sport = :$2" | awk -v want="$a:$2" '{ l = $4; sub(/%[^:]*:/, ":", l); if (l == want) f = 1 } END { exit !f }'
}

udp_exposed() { udp_bound "$GUEST_IP" "$1"; }

serve_udp()
{
	bg_guest "$PH_PYTHON" "$PH_UDP_PEER" "${3:-echo}" "$1" "$2" >>"$PH_TMP/servers.log" 2>&1
	if ! wait_for "$(scaled 3000)" udp_bound "$1" "$2"; then
		fail "UDP server on $1:$2 did not bind" "$(in_guest ss -lunp)"
		return 1
	fi
}

# Only the connect counts: a relay that accepts and then resets (backend
# gone) still means "the port is open".
tcp_probe()
{
	local p
	if p=$(helper tcpprobe 2>/dev/null); then
		in_ns "$1" env PH_PROBE_TIMEOUT_MS=1000 "$p" client "$2" "$3" c 2>/dev/null
	else
		local a=$2
		is_v6 "$a" && a="[$a]"
		in_ns "$1" timeout 2 bash -c "exec 3<>/dev/tcp/$a/$3" 2>/dev/null
	fi
}

# ---------------------------------------------------------------------------
# the API contract

PH_OPENAPI_CHECK=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/openapi_check.py

api_conforms()
{
	local out
	if out=$("$PH_PYTHON" "$PH_OPENAPI_CHECK" "$@" 2>&1); then
		ok "openapi: $1 $2 $3 conforms"
	else
		fail "openapi: $1 $2 $3 conforms" "$out"
	fi
}

api_curl_conforms()
{
	local status=$1 method=GET url= a prev=
	shift
	for a in "$@"; do
		case $prev in -X) method=$a ;; esac
		case $a in -I | --head) method=HEAD ;; http://*) url=$a ;; esac
		prev=$a
	done
	[ -n "$url" ] && [ "$status" != 000 ] || return 0	# no answer: nothing to check
	url=${url#http://}
	url=/${url#*/}
	api_conforms "$method" "$url" "$status" "$PH_TMP/hdr" "$PH_TMP/out"
}

metrics_conform()
{
	local out
	if ! command -v promtool >/dev/null; then
		fail "promtool check metrics" "promtool not installed (scripts/deps --test: prometheus)"
	elif out=$(promtool check metrics <"$1" 2>&1); then
		ok "promtool check metrics: no complaints"
	else
		fail "promtool check metrics" "$out"
	fi
}

# ---------------------------------------------------------------------------
# start

if [ "$(id -u)" != 0 ]; then
	echo "lib.sh: integration tests need root (network namespaces)" >&2
	exit 2
fi
if ! setup_topology; then
	fail "harness: cannot build the namespace topology"
	exit 1
fi
