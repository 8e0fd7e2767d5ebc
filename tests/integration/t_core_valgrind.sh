# SPDX-License-Identifier: MIT
# t_core_valgrind.sh - a whole daemon life: start, traffic of every kind, SIGTERM
# valgrind: yes
#
# Under `run valgrind` portholed runs in valgrind (--leak-check=full, every
# leak kind an error) and daemon_stop requires zero errors and zero leaks.
# Without valgrind it is a plain lifecycle test. Traffic is kept small
# enough for valgrind's slowdown, but touches every relay path: v4 and v6
# backends, bulk data, half-close, resets both ways, refused backend,
# concurrent connections, a service going away with a connection open.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
export PH_PROBE_TIMEOUT_MS=$(scaled 3000)

serve_echo 127.0.0.1 7401
serve_echo ::1 7402
bg_guest "$probe" echo 127.0.0.1 7403
wait_listening 127.0.0.1 7403

daemon_start --log-level debug || exit 1
for p in 7401 7402 7403; do
	wait_for "$(scaled 1000)" exposed $p || fail "port $p exposed"
done
check "v4 relay echoes" roundtrip host "$GUEST_IP" 7401
check "v6 relay echoes" roundtrip host "$GUEST_IP" 7402

# bulk, 4 MiB up and back through the echo server
head -c 4194304 /dev/urandom >"$PH_TMP/bulk"
got=$(in_host timeout "$(scaled 10)" socat -b 65536 -t 5 - "TCP4:$GUEST_IP:7403" <"$PH_TMP/bulk" | sha256sum)
want=$(sha256sum <"$PH_TMP/bulk")
[ "$got" = "$want" ] && ok "4 MiB echoed through the relay intact" || fail "4 MiB echoed through the relay intact"

out=$(in_host "$probe" many "$GUEST_IP" 7403 50 8192 "$(scaled 10000)" 2>&1)
check "50 concurrent connections ($out)" grep -q 'verified 50 ' <<<"$out"

# half-close and resets with one-shot servers
shot()
{
	bg_guest "$probe" server 127.0.0.1 "$1" "$2" 2>>"$PH_TMP/probe.err"
	srv=$PH_LAST_PID
	wait_listening 127.0.0.1 "$1" && wait_for "$(scaled 1000)" exposed "$1"
}
shot 7410 'r:a,e,s:b,c' && check "half-close client first" in_host "$probe" client "$GUEST_IP" 7410 's:a,w,r:b,e'
shot 7411 's:a,w,r:b,e,c' && check "half-close service first" in_host "$probe" client "$GUEST_IP" 7411 'r:a,e,s:b,w'
shot 7412 'r:a,x' && check "service reset reaches the client" in_host "$probe" client "$GUEST_IP" 7412 's:a,R'
shot 7413 'r:a,R' && check "client reset" in_host "$probe" client "$GUEST_IP" 7413 's:a,z:50,x'
# a connection left open while its service's listener goes away (the
# one-shot server closes it at accept): torn down by SIGTERM below
shot 7414 'r:a,s:a,z:100000' && bg_host "$probe" client "$GUEST_IP" 7414 's:a,r:a,z:100000'
sleep 0.5

# a service that goes away: refused backend, then the exposure is removed
serve_echo 127.0.0.1 7420
s=$PH_LAST_PID
wait_for "$(scaled 1000)" exposed 7420
kill_now "$s"
in_host "$probe" client "$GUEST_IP" 7420 'R' 2>/dev/null	# may race the scan; either is fine
check "removed service's port closes" wait_until_not "$(scaled 2000)" exposed 7420

check "daemon alive after all that" daemon_alive
daemon_stop
