# SPDX-License-Identifier: MIT
# t_net_address.sh - following the guest's network: address and route changes, IPv6, dual stack
#
# The guest's default route is a device route (no gateway); the host gets an
# address in every subnet the guest moves to. (Removing an interface's last
# IPv4 address flushes its routes, the default one too: an agent moving a
# guest adds the new address first, or adds the route again.) A second veth pair (eth1) carries the default
# route in the "moved" cases. Moves are timed by addr_move.py: from the
# first rtnetlink notification the change caused in the guest (the kernel
# sends it as it applies the change, so `ip`'s own start-up is not counted)
# to the first byte relayed back through the daemon on the new address.

G=$PH_GUEST_NS
H=$PH_HOST_NS
ip -n "$G" route replace default dev eth0
ip -n "$H" addr add 10.77.0.2/24 dev eth0
ip -n "$H" addr add 10.78.0.2/24 dev eth0
ip -n "$G" link add eth1 type veth peer name eth1 netns "$H"
ip -n "$G" link set eth1 up
ip -n "$H" link set eth1 up
ip -n "$H" addr add 10.79.0.2/24 dev eth1

move_ms=$(scaled 100)	# issue #15's target, from the change to the first relayed byte
# A packet of a move lost in the machine's shared input backlog (another
# test's flood; see addr_move.py) is retried by the client after 50 ms, not
# after the kernel's 1 s: addr_move.py resends a SYN itself, and the host
# resolves a new neighbour with 50 ms between solicitations.
for dev in eth0 eth1; do
	in_host sysctl -qw net.ipv4.neigh.$dev.retrans_time_ms=50 net.ipv6.neigh.$dev.retrans_time_ms=50
done
ADDR_MOVE=$(dirname "${BASH_SOURCE[0]}")/addr_move.py
daemon_listening() { in_guest ss -Hltnp "sport = :$2" | grep -F "$(is_v6 "$1" && echo "[$1]" || echo "$1"):$2" | grep -q portholed; }
no_listener() { ! guest_listening "$1" "$2"; }

# timed_move DESC ADDR PORT CMD...: run CMD (an executable: stdin is passed
# through), time the first relayed byte on ADDR:PORT from the change. The
# clock starts at CMD's first notification, so a change in several steps is
# one `ip -batch`: a second process's start-up would be counted otherwise.
timed_move()
{
	local desc=$1 addr=$2 port=$3 out ms
	shift 3
	if out=$(in_host "$PH_PYTHON" "$ADDR_MOVE" "$G" "$addr" "$port" "$(scaled 3000)" "$@" 2>&1); then
		read -r ms exit_ms nmsg refused try_ms conn_ms unanswered drops <<<"$out"
		figure "move_ms_${desc// /_}" "$ms" ms
		note "$desc: $ms ms from the change ($exit_ms ms after ip exited, $nmsg notifications;" \
			"$refused connects refused, $unanswered unanswered; the last began at $try_ms ms" \
			"and its connect took $conn_ms ms; $drops packets dropped in the machine's backlogs)"
		awk -v m="$ms" -v max="$move_ms" 'BEGIN { exit !(m <= max) }' &&
			ok "$desc: relayed on $addr:$port $ms ms after the change" ||
			fail "$desc: relayed on $addr:$port within $move_ms ms of the change (took $ms ms)"
		check "$desc: the listener on $addr:$port is the daemon's" daemon_listening "$addr" "$port"
	else
		fail "$desc: relayed on $addr:$port" "$out" "$(in_guest ss -ltnp)" "$(in_guest ip addr)"
	fi
}

serve_echo 127.0.0.1 7801
daemon_start || exit 1
wait_for "$(scaled 2000)" exposed 7801 && ok "start: exposed on $GUEST_IP" || fail "start: exposed on $GUEST_IP"

# --- ip addr del + add ------------------------------------------------------
timed_move "addr del/add" 10.77.0.1 7801 \
	ip -n "$G" -batch - <<<"addr add 10.77.0.1/24 dev eth0
addr del $GUEST_IP/30 dev eth0"
check "addr del/add: old address has no listener left" no_listener "$GUEST_IP" 7801
check "addr del/add: relay works on the new address" roundtrip host 10.77.0.1 7801
check "addr del/add: the log says old -> new" \
	grep -q '"msg":"external addresses changed".*"old":"169.254.0.21".*"new":"10.77.0.1"' "$DAEMON_LOG"

# --- ip addr replace (another subnet), then the old one goes ------------------
timed_move "addr replace" 10.78.0.1 7801 \
	ip -n "$G" -batch - <<<"addr replace 10.78.0.1/24 dev eth0
addr del 10.77.0.1/24 dev eth0"
check "addr replace: old address has no listener left" no_listener 10.77.0.1 7801
check "addr replace: relay works on the new address" roundtrip host 10.78.0.1 7801

# --- the default route moves to another interface ------------------------------
ip -n "$G" addr add 10.79.0.1/24 dev eth1
timed_move "default route moved" 10.79.0.1 7801 ip -n "$G" route replace default dev eth1
check "route moved: old address has no listener left" no_listener 10.78.0.1 7801
check "route moved: relay works over eth1" roundtrip host 10.79.0.1 7801

# --- the interface goes down (the kernel flushes its routes silently) and up ---
ip -n "$G" link set eth1 down
wait_for "$(scaled 1000)" no_listener 10.79.0.1 7801 && ok "link down: port withdrawn" ||
	fail "link down: port withdrawn" "$(in_guest ss -ltnp)"
check "link down: daemon alive" daemon_alive
timed_move "link up" 10.79.0.1 7801 \
	ip -n "$G" -batch - <<<"link set eth1 up
route replace default dev eth1"
check "link up: relay works" roundtrip host 10.79.0.1 7801

# --- the address removed entirely, then restored --------------------------------
warns0=$(grep -c '"level":"warn"' "$DAEMON_LOG")
ip -n "$G" addr del 10.79.0.1/24 dev eth1
wait_for "$(scaled 1000)" no_listener 10.79.0.1 7801 && ok "address removed: port withdrawn" ||
	fail "address removed: port withdrawn" "$(in_guest ss -ltnp)"
sleep "$(awk "BEGIN { print $(scaled 500) / 1000 }")"	# ten scans
warns=$(($(grep -c '"level":"warn"' "$DAEMON_LOG") - warns0))
[ "$warns" -le 1 ] && ok "address removed: no error storm ($warns warning over 10 scans)" ||
	fail "address removed: no error storm ($warns warnings)" "$(tail -n 20 "$DAEMON_LOG")"
curl_ports() { in_host curl -sf -m 2 "http://169.254.0.21:$API_PORT/ports" 2>/dev/null || in_guest curl -sf -m 2 "http://127.0.0.1:$API_PORT/ports"; }
timed_move "address restored" 10.79.0.1 7801 \
	ip -n "$G" -batch - <<<"addr add 10.79.0.1/24 dev eth1
route replace default dev eth1"
check "address restored: relay works" roundtrip host 10.79.0.1 7801
check "/ports shows the port's addresses" \
	bash -c "$(declare -f in_ns in_guest ns_name curl_ports); PH_GUEST_NS=$G PH_HOST_NS=$H API_PORT=$API_PORT; curl_ports | jq -e '(.external_addresses == [\"10.79.0.1\"]) and (.ports[] | select(.port == 7801) | .addresses == [\"10.79.0.1\"])'"
daemon_stop

# --- IPv6-only guest: a ::1 service reached over IPv6 ------------------------------
ip -n "$G" route del default 2>/dev/null
ip -n "$G" addr flush dev eth0
ip -n "$G" addr flush dev eth1
in_guest sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
in_host sysctl -qw net.ipv6.conf.eth0.disable_ipv6=0
ip -n "$G" -6 addr add fd00::1/64 dev eth0 nodad
ip -n "$H" -6 addr add fd00::2/64 dev eth0 nodad
ip -n "$G" -6 route add default via fd00::2 dev eth0
serve_echo ::1 7811
daemon_start || exit 1
if wait_for "$(scaled 2000)" daemon_listening fd00::1 7811; then
	ok "IPv6 only: ::1 service exposed on fd00::1"
	check "IPv6 only: reached from the host over IPv6" roundtrip host fd00::1 7811
else
	fail "IPv6 only: ::1 service exposed on fd00::1" "$(in_guest ss -ltnp)" "$(tail -n 5 "$DAEMON_LOG")"
fi
timed_move "IPv6 addr replace" fd00::5 7811 \
	ip -n "$G" -batch - <<<"addr replace fd00::5/64 dev eth0 nodad
addr del fd00::1/64 dev eth0"
check "IPv6 addr replace: old address has no listener left" no_listener fd00::1 7811
check "IPv6 addr replace: relay works" roundtrip host fd00::5 7811

# --- dual stack: a 127.0.0.1 service reached over both families ---------------------
ip -n "$G" addr add "$GUEST_IP/30" dev eth0
ip -n "$G" route add default via "$HOST_IP"
serve_echo 127.0.0.1 7812
wait_for "$(scaled 2000)" daemon_listening "$GUEST_IP" 7812 && ok "dual stack: 127.0.0.1 service on $GUEST_IP" ||
	fail "dual stack: 127.0.0.1 service on $GUEST_IP" "$(in_guest ss -ltnp)"
wait_for "$(scaled 2000)" daemon_listening fd00::5 7812 && ok "dual stack: 127.0.0.1 service on fd00::5" ||
	fail "dual stack: 127.0.0.1 service on fd00::5" "$(in_guest ss -ltnp)"
check "dual stack: reached over IPv4" roundtrip host "$GUEST_IP" 7812
check "dual stack: reached over IPv6" roundtrip host fd00::5 7812

# --- :: with V6ONLY plus 127.0.0.1 on the same port ---------------------------------
serve_echo :: 7813
serve_echo 127.0.0.1 7813
wait_for "$(scaled 2000)" daemon_listening "$GUEST_IP" 7813 && ok ":: v6only + 127.0.0.1: exposed on IPv4" ||
	fail ":: v6only + 127.0.0.1: exposed on IPv4" "$(in_guest ss -ltnp)"
check_not ":: v6only + 127.0.0.1: not bound on IPv6 (public there)" daemon_listening fd00::5 7813
check ":: v6only + 127.0.0.1: IPv4 relayed" roundtrip host "$GUEST_IP" 7813
check ":: v6only + 127.0.0.1: IPv6 reaches the service's own socket" roundtrip host fd00::5 7813
daemon_stop
