# SPDX-License-Identifier: MIT
# t_api_signals.sh - signals never kill portholed uncleanly: SIGHUP re-reads the token
# file (a bad one keeps the old token), SIGUSR1 and SIGPIPE are ignored; after
# each the daemon keeps serving, and SIGTERM still stops it with status 0. SIGUSR2
# upgrades in place: a new process serves, the old one exits (t_core_upgrade.sh has
# the rest). Also the
# control API's small flags: --listen takes a numeric address or "localhost" (only),
# --max-event-streams a positive count.

API=http://$GUEST_IP:$API_PORT

code() { in_host curl -s -m 2 -o /dev/null -w '%{http_code}' "$@"; }

echo "tok-a-$PH_ID" >"$PH_TMP/token"
daemon_start --token-file "$PH_TMP/token" || exit 1

for sig in USR1 PIPE HUP; do
	kill -"$sig" "$DAEMON_PID"
	sleep 0.2
	if daemon_alive && [ "$(code "$API/health")" = 200 ]; then
		ok "SIG$sig: the daemon keeps serving"
	else
		fail "SIG$sig: the daemon keeps serving" "alive: $(daemon_alive && echo yes || echo no)"
	fi
done
check "SIGHUP without a change is logged" daemon_log_has 'SIGHUP: token file reloaded'

echo "tok-b-$PH_ID" >"$PH_TMP/token"
kill -HUP "$DAEMON_PID"
wait_for "$(scaled 2000)" bash -c "[ \$(grep -c 'token file reloaded' '$DAEMON_LOG') -ge 2 ]"
[ "$(code -H "Authorization: Bearer tok-b-$PH_ID" "$API/ports")" = 200 ] &&
	ok "SIGHUP: the new token is accepted" || fail "SIGHUP: the new token is accepted"
[ "$(code -H "Authorization: Bearer tok-a-$PH_ID" "$API/ports")" = 401 ] &&
	ok "SIGHUP: the old token is refused" || fail "SIGHUP: the old token is refused"

: >"$PH_TMP/token"	# empty: invalid
kill -HUP "$DAEMON_PID"
wait_for "$(scaled 2000)" daemon_log_has 'token file not reloaded'
check "SIGHUP with a bad token file: logged, not fatal" daemon_alive
[ "$(code -H "Authorization: Bearer tok-b-$PH_ID" "$API/ports")" = 200 ] &&
	ok "SIGHUP with a bad token file: the previous token stays" ||
	fail "SIGHUP with a bad token file: the previous token stays"
daemon_stop

# --- --listen: numeric or localhost, no other name ---------------------------------
for args in "--listen example.com:1" "--listen localhost:0x" "--max-event-streams 0"; do
	out=$(in_guest "$PH_BUILD/portholed" $args 2>&1)
	st=$?
	[ $st = 2 ] && [[ $out == *"${args%% *}"* ]] && ok "invalid '$args': exit 2" ||
		fail "invalid '$args': exit 2 (got $st)" "$out"
done
daemon_start --listen localhost:49990 || exit 1
check "--listen localhost:49990 listens on 127.0.0.1:49990" guest_listening 127.0.0.1 49990
daemon_stop

# --- SIGUSR2: an upgrade in place ------------------------------------------------
daemon_start --log-format text || exit 1
old=$DAEMON_PID
kill -USR2 "$old"
if wait_for "$(scaled 5000)" daemon_log_has 'SIGUSR2: upgraded pid=' &&
	wait_until_not "$(scaled 5000)" daemon_alive; then
	new=$(grep -o 'SIGUSR2: upgraded pid=[0-9]*' "$DAEMON_LOG" | tail -n 1 | cut -d= -f2)
	wait "$old" 2>/dev/null
	st=$?
	DAEMON_PID=
	[ "$st" = 0 ] && [ "$(code "$API/health")" = 200 ] && kill -0 "$new" 2>/dev/null &&
		ok "SIGUSR2: a new process ($new) serves, the old one exits 0" ||
		fail "SIGUSR2: a new process serves, the old one exits 0" "status $st" "$(tail -n 5 "$DAEMON_LOG")"
	track "$new"
	kill -TERM "$new"
	wait_for "$(scaled 5000)" bash -c "! kill -0 $new 2>/dev/null" &&
		ok "SIGUSR2: the upgraded daemon stops on SIGTERM" ||
		fail "SIGUSR2: the upgraded daemon stops on SIGTERM"
else
	fail "SIGUSR2: the daemon upgrades in place" "$(tail -n 10 "$DAEMON_LOG")"
fi
