# SPDX-License-Identifier: MIT
# t_udp_dns.sh - a real DNS server (dnsmasq) bound to 127.0.0.1 only answers dig from the host
#
# dnsmasq serves 1,000 names from a hosts file on 127.0.0.1:53 (UDP and
# TCP) in the guest. From the host, 50 dig processes, each from its own
# client port, ask 20 names each through 169.254.0.21:53: every one of the
# 1,000 answers must be the right address. /ports shows port 53 twice
# (tcp and udp), /metrics counts the flows and datagrams.

metric()
{
	in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'
}

for t in dnsmasq dig; do
	if ! command -v "$t" >/dev/null; then
		fail "$t installed (scripts/deps --test: dnsmasq-base, bind9-dnsutils)"
		exit 1
	fi
done

hosts=$PH_TMP/hosts
for i in $(seq 0 999); do
	echo "10.$((i / 250)).$((i % 250)).$((i % 7 + 1)) h$i.test"
done >"$hosts"

daemon_start --scan-interval 50 || exit 1

bg_guest dnsmasq --keep-in-foreground --no-daemon --conf-file=/dev/null --no-resolv --no-hosts \
	--addn-hosts="$hosts" --listen-address=127.0.0.1 --bind-interfaces --port=53 \
	--user=root --group=root --pid-file="$PH_TMP/dnsmasq.pid" --log-facility=- \
	--cache-size=2000 >>"$PH_TMP/servers.log" 2>&1
if ! wait_for "$(scaled 3000)" udp_bound 127.0.0.1 53; then
	fail "dnsmasq bound to 127.0.0.1:53" "$(cat "$PH_TMP/servers.log")"
	exit 1
fi

if wait_for "$(scaled 1000)" udp_exposed 53; then
	ok "127.0.0.1:53/udp (dnsmasq) exposed on $GUEST_IP:53 within 1 s"
else
	fail "127.0.0.1:53/udp exposed on $GUEST_IP:53" "$(in_guest ss -lunp)"
fi

# one query first: the path works at all
ans=$(in_host dig @"$GUEST_IP" -p 53 h7.test A +short +tries=2 +time=2)
check "dig @$GUEST_IP h7.test answers 10.0.7.1" [ "$ans" = "10.0.7.1" ]

# /ports: one row per protocol of port 53
in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/ports" >"$PH_TMP/ports.json"
check "/ports lists 53/udp forwarded to 127.0.0.1" "$PH_PYTHON" -c '
import json, sys
d = json.load(open(sys.argv[1]))
rows = [p for p in d["ports"] if p["port"] == 53]
protos = sorted(p["proto"] for p in rows)
udp = [p for p in rows if p["proto"] == "udp"][0]
assert protos == ["tcp", "udp"], protos
assert udp["state"] == "forwarded" and udp["address"] == "127.0.0.1", udp
assert "connections" not in udp, udp
' "$PH_TMP/ports.json"
in_host curl -s -m 2 -D "$PH_TMP/hdr" -o "$PH_TMP/out" "http://$GUEST_IP:$API_PORT/ports"
api_conforms GET /ports 200 "$PH_TMP/hdr" "$PH_TMP/out"

created0=$(metric porthole_udp_flows_created_total)

# 1,000 queries: 50 dig processes (client ports 40001..40050), 20 names each,
# five at a time
t0=$(now_ms)
for batch in 0 1 2 3 4 5 6 7 8 9; do
	pids=()
	for j in 0 1 2 3 4; do
		k=$((batch * 5 + j))
		for q in $(seq 0 19); do echo "h$((k * 20 + q)).test A"; done >"$PH_TMP/q.$k"
		in_host dig @"$GUEST_IP" -p 53 -b "$HOST_IP#$((40001 + k))" +noall +answer +tries=3 \
			+time=2 -f "$PH_TMP/q.$k" >"$PH_TMP/a.$k" 2>&1 &
		pids+=($!)
	done
	wait "${pids[@]}"	# not a bare wait: the daemon is a child too
done
ms=$(($(now_ms) - t0))
cat "$PH_TMP"/a.* | awk '$4 == "A" { sub(/\.$/, "", $1); print $1, $5 }' | sort >"$PH_TMP/got"
awk '{ print $2, $1 }' "$hosts" | sort >"$PH_TMP/want"
right=$(comm -12 "$PH_TMP/got" "$PH_TMP/want" | wc -l)
wrong=$(comm -23 "$PH_TMP/got" "$PH_TMP/want" | wc -l)
if [ "$right" = 1000 ] && [ "$wrong" = 0 ]; then
	ok "1,000 queries from 50 client ports through $GUEST_IP:53: 1,000 right answers ($ms ms)"
else
	fail "1,000 queries from 50 client ports: all answers right" "right $right, wrong $wrong" \
		"$(comm -3 "$PH_TMP/got" "$PH_TMP/want" | head -5)" "$(head -5 "$PH_TMP/a.0")"
fi
figure dns_1000_queries_ms "$ms" ms

created=$(( $(metric porthole_udp_flows_created_total) - created0 ))
check "50 client ports made 50 flows (made $created)" [ "$created" -eq 50 ]
din=$(metric 'porthole_udp_datagrams_total{direction="to_service"}')
dout=$(metric 'porthole_udp_datagrams_total{direction="to_client"}')
check "datagrams counted both ways (to_service $din, to_client $dout, >= 1,001 each)" \
	[ "${din:-0}" -ge 1001 ] && [ "${dout:-0}" -ge 1001 ]

# the TCP side of dnsmasq's port 53 is exposed as its own row and works
ans=$(in_host dig @"$GUEST_IP" -p 53 h999.test A +short +tcp +tries=2 +time=2)
check "dig +tcp @$GUEST_IP h999.test answers 10.3.249.6 (the TCP row)" [ "$ans" = "10.3.249.6" ]

in_host curl -s -m 2 "http://$GUEST_IP:$API_PORT/metrics" >"$PH_TMP/metrics"
metrics_conform "$PH_TMP/metrics"
check "daemon logs the UDP port forwarded with proto" daemon_log_has '"port forwarded","port":53,"proto":"udp"'
daemon_stop
