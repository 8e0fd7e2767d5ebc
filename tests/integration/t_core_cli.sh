# SPDX-License-Identifier: MIT
# t_core_cli.sh - portholed as a process: flags, signals, address detection, cgroup

bin=$PH_BUILD/portholed

# --- flags --------------------------------------------------------------------
out=$("$bin" --version 2>&1)
[ $? = 0 ] && [[ $out == portholed\ * ]] && ok "--version prints the version, exit 0 ($out)" ||
	fail "--version prints the version, exit 0" "$out"
out=$("$bin" --help 2>&1)
[ $? = 0 ] && [[ $out == *--scan-interval* ]] && ok "--help lists the flags, exit 0" || fail "--help lists the flags, exit 0"
for args in "--bogus" "--scan-interval 0" "--scan-interval abc" "--allow 70000" "--deny 5-" \
	"--external-addr 1.2.3" "--log-format xml" "--max-connections -1" \
	"--client-congestion nosuch" "--client-congestion a/b" "--relay-threads 0" \
	"--relay-threads 65" "--relay-threads many"; do
	flag=${args%% *}
	out=$(in_guest "$bin" $args 2>&1)
	st=$?
	if [ $st = 2 ] && [[ $out == *"${flag#--}"* ]]; then
		ok "invalid '$args': exit 2, message names the flag"
	else
		fail "invalid '$args': exit 2, message names the flag (exit $st)" "$out"
	fi
done

# --- SIGINT stops cleanly too -------------------------------------------------
daemon_start || exit 1
kill -INT "$DAEMON_PID"
if wait_until_not "$(scaled 5000)" daemon_alive; then
	wait "$DAEMON_PID"
	st=$?
	[ $st = 0 ] && ok "SIGINT: exit 0" || fail "SIGINT: exit 0 (got $st)"
else
	fail "SIGINT: daemon exits"
fi
DAEMON_PID=

# --- text logs ---------------------------------------------------------------
daemon_start --log-format text || exit 1
check_not "--log-format text: no JSON lines" grep -q '^{' "$DAEMON_LOG"
daemon_stop
daemon_start || exit 1
check "default log format: every line is a JSON object with ts, level, msg" \
	jq -e 'has("ts") and has("level") and has("msg")' "$DAEMON_LOG"
daemon_stop

# --- no default route at start: warn, keep going, detect later ---------------
ip -n "$PH_GUEST_NS" route del default
serve_echo 127.0.0.1 7701
daemon_start || exit 1
sleep "$(awk "BEGIN { print $(scaled 200) / 1000 }")"
check "no default route: daemon keeps running" daemon_alive
check "no default route: a warning is logged" daemon_log_has '"level":"warn"'
check_not "no default route: nothing exposed yet" exposed 7701
ip -n "$PH_GUEST_NS" route add default via "$HOST_IP"
if wait_for "$(scaled 1000)" exposed 7701; then
	ok "default route appears: address detected at a later scan, port exposed"
	check "relay works after late detection" roundtrip host "$GUEST_IP" 7701
else
	fail "default route appears: address detected at a later scan, port exposed"
fi
daemon_stop

# --- --external-addr ------------------------------------------------------------
ip -n "$PH_GUEST_NS" addr add 10.213.0.1/24 dev eth0
ip -n "$PH_HOST_NS" addr add 10.213.0.2/24 dev eth0
daemon_start --external-addr 10.213.0.1 || exit 1
if wait_for "$(scaled 1000)" guest_listening 10.213.0.1 7701; then
	ok "--external-addr 10.213.0.1: exposed there"
	check "--external-addr: relay works" roundtrip host 10.213.0.1 7701
else
	fail "--external-addr 10.213.0.1: exposed there" "$(in_guest ss -ltn)"
fi
check_not "--external-addr: not on the autodetected address" exposed 7701
daemon_stop

# --- the daemon's own loopback control socket is never exposed ---------------
daemon_start --listen 127.0.0.1:49983 || exit 1
wait_for "$(scaled 1000)" exposed 7701
sleep "$(awk "BEGIN { print $(scaled 200) / 1000 }")"
check "loopback --listen: the daemon's control port is listening" guest_listening 127.0.0.1 49983
check_not "loopback --listen: the daemon's control port 49983 is not exposed" exposed 49983
daemon_stop

# --- --cgroup -----------------------------------------------------------------
out=$(in_guest "$bin" --cgroup /nonexistent/cg 2>&1)
st=$?
[ $st = 1 ] && [[ $out == *cgroup* ]] && ok "--cgroup on a missing directory: exit 1 with a clear error" ||
	fail "--cgroup on a missing directory: exit 1 with a clear error (exit $st)" "$out"
cg_root=$(findmnt -n -t cgroup2 -o TARGET | head -n 1)
if [ -n "$cg_root" ] && mkdir "$cg_root/ph-it-$PH_ID" 2>/dev/null; then
	cg=$cg_root/ph-it-$PH_ID
	daemon_start --cgroup "$cg" || { rmdir "$cg"; exit 1; }
	rel=${cg#"$cg_root"}
	check "--cgroup: the daemon moved into $rel" grep -q "^0::$rel\$" "/proc/$DAEMON_PID/cgroup"
	daemon_stop
	wait_for 2000 rmdir "$cg" || fail "cgroup $cg removed"
else
	skip "--cgroup: no writable cgroup v2 hierarchy here"
fi
