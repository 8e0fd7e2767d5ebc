# SPDX-License-Identifier: MIT
# t_steer.sh - --steer: connections handed by sk_lookup to the service's own listener
#
# nginx (answering with $remote_addr) and redis-server in the guest, curl and
# redis-cli in the host. Steered: the service sees the client's real address,
# portholed has no external listener, a restarted service keeps the port
# steered, a closed one leaves it refused, snapshot prepare destroys steered
# connections, /metrics and /ports count them; without CAP_SYS_PTRACE the
# port is relayed and /ports says why.

port_field()	# PORT FIELD: one field of the TCP row of PORT in /ports ("" if none)
{
	in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/ports" | "$PH_PYTHON" -c '
import json, sys
for p in json.load(sys.stdin)["ports"]:
    if p["port"] == int(sys.argv[1]) and p["proto"] == "tcp":
        print(p.get(sys.argv[2], ""))
' "$1" "$2"
}

state_is() { [ "$(port_field "$1" state)" = "$2" ]; }

# nginx on 127.0.0.1:PORT answering "$remote_addr" (its own prefix dir)
serve_nginx()
{
	local d=$PH_TMP/nginx-$1
	mkdir -p "$d/logs"
	cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d;
	uwsgi_temp_path $d; scgi_temp_path $d;
	server { listen 127.0.0.1:$1 reuseport; keepalive_timeout 60s; location / { return 200 "\$remote_addr\n"; } }
}
EOF
	bg_guest nginx -p "$d" -c "$d/nginx.conf" 2>>"$PH_TMP/servers.log"
	wait_listening 127.0.0.1 "$1"
}

steered_conns()	# connections of the guest on GUEST_IP:PORT (ss)
{
	in_guest ss -Htn state established "( sport = :$1 )" | awk -v a="$GUEST_IP:$1" '$3 == a' | wc -l
}

NETNS_INO=$(in_guest stat -L -c %i /proc/self/ns/net)
ns_links()	# sk_lookup links attached to the guest's namespace
{
	bpftool link show 2>/dev/null | grep -c "netns_ino $NETNS_INO *attach_type sk_lookup"
}

if ! command -v nginx >/dev/null || ! command -v redis-server >/dev/null; then
	skip "nginx or redis-server missing (scripts/deps --test)"
	exit 0
fi

serve_nginx 5501 || exit 1
NGINX_PID=$PH_LAST_PID
serve_echo 127.0.0.1 5505 || exit 1
bg_guest redis-server --port 5503 --bind 127.0.0.1 --protected-mode yes --save '' \
	--appendonly no >>"$PH_TMP/servers.log" 2>&1
wait_listening 127.0.0.1 5503 || exit 1
bg_guest redis-server --port 5504 --bind 127.0.0.1 --protected-mode yes --save '' \
	--appendonly no >>"$PH_TMP/servers.log" 2>&1
wait_listening 127.0.0.1 5504 || exit 1

daemon_start --steer 5501,5503,5505,5509 --scan-interval 50 || exit 1
check "the log says steering is on" daemon_log_has 'steering on'
if command -v bpftool >/dev/null; then
	check "one sk_lookup link on the guest namespace" [ "$(ns_links)" = 1 ]
fi
check "nginx on 127.0.0.1:5501 is steered" wait_for "$(scaled 2000)" state_is 5501 steered
check_not "... with no listener of portholed on $GUEST_IP:5501" exposed 5501
got=$(in_host curl -s -m 2 "http://$GUEST_IP:5501/")
check "nginx answers from the host and sees the client's own address ($got)" \
	[ "$got" = "$HOST_IP" ]
check "5504 (not in --steer) is forwarded" state_is 5504 forwarded
got=$(in_host redis-cli -h "$GUEST_IP" -p 5504 ping 2>&1)
check "relayed redis answers PONG (it sees 127.0.0.1: $got)" [ "$got" = PONG ]
check "redis on 5503 is steered" state_is 5503 steered
got=$(in_host redis-cli -h "$GUEST_IP" -p 5503 ping 2>&1)
check "steered redis in protected mode refuses the host's client (the trade)" \
	eval '[[ "$got" == *DENIED* ]]'

in_host curl -s -m 2 -o "$PH_TMP/out" -D "$PH_TMP/hdr" "http://$GUEST_IP:$API_PORT/ports"
api_conforms GET /ports 200 "$PH_TMP/hdr" "$PH_TMP/out"
check "/ports lists the external address as steered" \
	grep -q "\"addresses\":\[\"$GUEST_IP\"\]" "$PH_TMP/out"

in_host env PORTHOLE_ADDR="$GUEST_IP:$API_PORT" "$PH_BUILD/portholectl" ports >"$PH_TMP/ctl" 2>&1
check "portholectl ports shows 5501 steered" grep -Eq '^5501 +ipv4 +127.0.0.1 +169.254.0.21 +steered' "$PH_TMP/ctl"
check "... and states the trade" grep -q "the service sees each client's own address" "$PH_TMP/ctl"

# a held connection: counted by /metrics and /ports, destroyed by prepare
bg_host socat -u "$(sock_addr "$GUEST_IP" 5505)" "OPEN:$PH_TMP/held,creat" 2>/dev/null
HELD=$PH_LAST_PID
check "a held steered connection is established" \
	wait_for "$(scaled 2000)" eval '[ "$(steered_conns 5505)" = 1 ]'
check "/ports counts it" wait_for "$(scaled 1000)" eval '[ "$(port_field 5505 connections)" = 1 ]'
in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" >"$PH_TMP/metrics"
check "/metrics counts it" grep -q '^porthole_steered_connections{port="5505"} 1$' "$PH_TMP/metrics"
check "/metrics shows steered ports" grep -q '^porthole_ports{state="steered"} 3$' "$PH_TMP/metrics"
metrics_conform "$PH_TMP/metrics"
in_host curl -s -m 2 -X POST "http://$GUEST_IP:$API_PORT/snapshot/prepare" >/dev/null
check "snapshot prepare destroys the steered connection" \
	wait_for "$(scaled 1000)" eval '[ "$(steered_conns 5505)" = 0 ]'
check "... and its client sees the end" wait_until_not "$(scaled 2000)" kill -0 "$HELD"
check "the log counts it" daemon_log_has 'quiesced.*"steered_connections_destroyed":1'
got=$(in_host curl -s -m 2 "http://$GUEST_IP:5501/")
check "quiesced, new steered connections still reach nginx" [ "$got" = "$HOST_IP" ]
in_host curl -s -m 2 -X POST "http://$GUEST_IP:$API_PORT/snapshot/resume" >/dev/null

# the service restarts: a new listener, still steered (the new nginx binds
# with SO_REUSEPORT before the old one exits, so the port is never gone)
ino=$(listener_inode 127.0.0.1 5501)
OLD_PID=$NGINX_PID
serve_nginx 5501 || exit 1
NGINX_PID=$PH_LAST_PID
sleep 0.2
kill_pid "$OLD_PID"
check "nginx restarted with a new listener" \
	wait_for "$(scaled 1000)" eval '[ "$(listener_count 5501)" = 1 ] && [ "$(listener_inode 127.0.0.1 5501)" != "$ino" ]' 
check "... and the port answers through it" wait_for "$(scaled 2000)" \
	eval '[ "$(in_host curl -s -m 1 "http://$GUEST_IP:5501/")" = "$HOST_IP" ]'
check "... still steered" state_is 5501 steered
check "the log says the steered port followed the restart" \
	daemon_log_has 'steered port follows the restarted service'

# the service goes away: refused, not relayed
kill_pid "$NGINX_PID"
check "nginx gone: the row goes" wait_for "$(scaled 2000)" eval '[ -z "$(port_field 5501 state)" ]'
check_not "... and $GUEST_IP:5501 refuses" tcp_probe host "$GUEST_IP" 5501
serve_nginx 5501 || exit 1
NGINX_PID=$PH_LAST_PID
check "nginx back: steered again" wait_for "$(scaled 2000)" state_is 5501 steered
got=$(in_host curl -s -m 2 "http://$GUEST_IP:5501/")
check "... and answering ($got)" [ "$got" = "$HOST_IP" ]
daemon_stop
command -v bpftool >/dev/null &&
check "stopped: the guest namespace has no sk_lookup link left" [ "$(ns_links)" = 0 ]

# without CAP_SYS_PTRACE the listener cannot be taken: relayed, and /ports says why
if command -v setpriv >/dev/null; then
	DAEMON_PREFIX=(setpriv --bounding-set=-sys_ptrace --inh-caps=-sys_ptrace)
	daemon_start --steer 5501 --scan-interval 50 || exit 1
	DAEMON_PREFIX=()
	check "without CAP_SYS_PTRACE 5501 is forwarded" wait_for "$(scaled 2000)" \
		state_is 5501 forwarded
	why=$(port_field 5501 steer_error)
	check "... and steer_error says why ($why)" eval '[[ "$why" == *CAP_SYS_PTRACE* ]]'
	got=$(in_host curl -s -m 2 "http://$GUEST_IP:5501/")
	check "... relayed: nginx sees 127.0.0.1 ($got)" [ "$got" = 127.0.0.1 ]
	check "the log says it is relayed" daemon_log_has 'port relayed, not steered'
	in_host env PORTHOLE_ADDR="$GUEST_IP:$API_PORT" "$PH_BUILD/portholectl" ports >"$PH_TMP/ctl" 2>&1
	check "portholectl ports says why 5501 is not steered" grep -q 'not steered: .*CAP_SYS_PTRACE' "$PH_TMP/ctl"
	in_host curl -s -m 2 -o "$PH_TMP/out" -D "$PH_TMP/hdr" "http://$GUEST_IP:$API_PORT/ports"
	api_conforms GET /ports 200 "$PH_TMP/hdr" "$PH_TMP/out"
	daemon_stop
	# what the unit's --steer drop-in grants: an unprivileged user with
	# these capabilities only steers a root service's port
	caps=-all,+net_admin,+bpf,+sys_ptrace,+perfmon,+net_bind_service
	DAEMON_PREFIX=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=$caps
		--ambient-caps=$caps --bounding-set=$caps)
	daemon_start --steer 5501 --scan-interval 50 || exit 1
	DAEMON_PREFIX=()
	check "as nobody with the drop-in's capabilities, 5501 is steered" \
		wait_for "$(scaled 2000)" state_is 5501 steered
	got=$(in_host curl -s -m 2 "http://$GUEST_IP:5501/")
	check "... and nginx (root) sees the client's address ($got)" [ "$got" = "$HOST_IP" ]
	daemon_stop

	DAEMON_PREFIX=(setpriv --bounding-set=-net_admin,-sys_admin --inh-caps=-net_admin,-sys_admin)
	daemon_start --steer 5501 --scan-interval 50 || true
	DAEMON_PREFIX=()
	if daemon_alive; then
		check "without CAP_NET_ADMIN: steering off, and the log says why" \
			daemon_log_has 'steering is off.*(CAP_NET_ADMIN|not permitted)'
		check "... 5501 relayed" wait_for "$(scaled 2000)" state_is 5501 forwarded
		daemon_stop
	else
		fail "daemon starts without CAP_NET_ADMIN" "$(tail -5 "$DAEMON_LOG")"
	fi
else
	skip "setpriv missing: the fallbacks are not tested"
fi

got=$(in_guest "$PH_BUILD/portholed" --steer udp:53 2>&1)
check "--steer udp:53 is refused (exit 2) and says UDP is relayed ($got)" \
	eval '[[ "$got" == *"TCP only"* ]]'
