# SPDX-License-Identifier: MIT
# t_ctl_restore.sh - portholectl's deadlines: restore's two separate deadlines,
# wait-ready polling through refusals, timeouts against a fake slow daemon
# (tests/helpers/slowhttpd in the guest, portholectl on the host).

CTL=$PH_BUILD/portholectl
SLOW=$(helper slowhttpd) || { fail "slowhttpd helper is built"; exit 1; }
ADDR=$GUEST_IP:$API_PORT
SLOW_PID=
# Upper bounds allow for starting processes on a loaded machine (nsenter,
# portholectl itself); each stays below what the wrong behaviour would take.
SLACK=$(scaled 500)

# slow_start [slowhttpd flags...]: fresh fake daemon recording into $REC
slow_start()
{
	REC=$PH_TMP/rec.$((++SLOW_SEQ))
	: >"$REC"
	bg_guest "$SLOW" --listen "$ADDR" --record "$REC" "$@"
	SLOW_PID=$PH_LAST_PID
}

slow_stop() { [ -n "$SLOW_PID" ] && kill_pid "$SLOW_PID"; SLOW_PID=; }

# ctl ARGS...: run portholectl on the host; sets RC, OUT, ERR, MS (elapsed)
ctl()
{
	local t0
	t0=$(now_ms)
	in_host "$CTL" --addr "$ADDR" "$@" >"$PH_TMP/out" 2>"$PH_TMP/err"
	RC=$?
	MS=$(($(now_ms) - t0))
	OUT=$(cat "$PH_TMP/out")
	ERR=$(cat "$PH_TMP/err")
}

# expect DESC RC MIN_MS MAX_MS: the last ctl's status and elapsed time
expect()
{
	if [ "$RC" = "$2" ] && [ "$MS" -ge "$3" ] && [ "$MS" -le "$4" ]; then
		ok "$1 (exit $RC after $MS ms)"
	else
		fail "$1" "want exit $2 within [$3, $4] ms, got exit $RC after $MS ms" \
			"stdout: $OUT" "stderr: $ERR" "server saw:" "$(cat "$REC" 2>/dev/null)"
	fi
}

# rec_ms WHAT: first record time of a line matching WHAT, empty if none
rec_ms() { awk -v w="$1" 'index($0, w) { print $1; exit }' "$REC"; }

SLOW_SEQ=0

# 1. /health answers at 2.5 s; resume takes 0.8 s. With one shared 3 s budget
#    resume would have 0.5 s and fail; with its own fresh 1 s it succeeds.
slow_start --health-delay 2500ms --resume-delay 800ms
wait_listening "$GUEST_IP" "$API_PORT"
ctl restore --ready-timeout 3s --resume-timeout 1s
expect "restore: late /health (2.5 s of 3 s) does not starve a 0.8 s resume (fresh 1 s)" 0 2900 $((3800 + SLACK))
h=$(rec_ms "sent GET /health 200")
r=$(rec_ms "recv POST /snapshot/resume")
if [ -n "$h" ] && [ -n "$r" ] && [ "$r" -ge "$h" ] && [ -n "$(rec_ms "sent POST /snapshot/resume 204")" ]; then
	ok "restore: resume sent after /health answered, and answered"
else
	fail "restore: resume sent after /health answered, and answered" "$(cat "$REC")"
fi
slow_stop

# 1b. the brief's case: resume immediate
slow_start --health-delay 2500ms
wait_listening "$GUEST_IP" "$API_PORT"
ctl restore --ready-timeout 3s --resume-timeout 1s
expect "restore: /health at 2.5 s, immediate resume: success" 0 2000 $((3000 + SLACK))
slow_stop

# 2. /health answers only at 4 s: wait-ready's 3 s pass, exit 3, no resume sent
slow_start --health-delay 4s
wait_listening "$GUEST_IP" "$API_PORT"
ctl restore --ready-timeout 3s --resume-timeout 1s
expect "restore: /health at 4 s misses the 3 s ready deadline -> exit 3" 3 2950 $((3000 + SLACK))
if [ -z "$(rec_ms "recv POST /snapshot/resume")" ]; then
	ok "restore: no resume after a failed wait-ready"
else
	fail "restore: no resume after a failed wait-ready" "$(cat "$REC")"
fi
check "restore: the timeout message names the ready deadline" grep -q "not ready within 3s" "$PH_TMP/err"
slow_stop

# 3. resume hangs: exit 3 within resume's own 1 s, counted from when wait-ready ended
slow_start --health-delay 500ms --resume-delay 60s
wait_listening "$GUEST_IP" "$API_PORT"
ctl restore --ready-timeout 3s --resume-timeout 1s
expect "restore: a hanging resume ends at its own 1 s deadline -> exit 3" 3 1200 $((1600 + SLACK))
if [ -n "$(rec_ms "recv POST /snapshot/resume")" ]; then
	ok "restore: the hanging resume was sent"
else
	fail "restore: the hanging resume was sent" "$(cat "$REC")"
fi
slow_stop

# 4. --timeout sets both deadlines when the specific ones are absent
slow_start --health-delay 1500ms --resume-delay 1500ms
wait_listening "$GUEST_IP" "$API_PORT"
ctl --timeout 2s restore
expect "restore --timeout 2s: 1.5 s + 1.5 s fits two separate 2 s deadlines" 0 2700 $((3200 + SLACK))
slow_stop

# 5. wait-ready keeps polling through "connection refused" until the daemon listens
slow_start --listen-delay 1s
ctl wait-ready --timeout 4s
expect "wait-ready: refused until the daemon listens at ~1 s, then ready" 0 900 $((1200 + SLACK))
slow_stop

# 6. nobody listens: wait-ready ends at its deadline with 3, health fails at once with 4
ctl wait-ready --timeout 700ms
expect "wait-ready: nothing listening -> exit 3 at its deadline" 3 690 $((700 + SLACK))
check "wait-ready: the message says what the last attempt saw" grep -q "Connection refused" "$PH_TMP/err"
ctl health
expect "health: connection refused -> exit 4 at once" 4 0 $((0 + SLACK))

# 7. a connected but silent daemon: the single-shot commands end at --timeout with 3
slow_start --health-delay 60s --prepare-delay 60s
wait_listening "$GUEST_IP" "$API_PORT"
ctl --timeout 600ms health
expect "health: silent daemon -> exit 3 at --timeout" 3 590 $((600 + SLACK))
ctl prepare --timeout 800ms
expect "prepare: silent daemon -> exit 3 at --timeout" 3 790 $((800 + SLACK))
ctl --timeout 1s wait-ready
expect "wait-ready: held /health -> exit 3 at --timeout" 3 990 $((1000 + SLACK))
slow_stop

# 8. SYNs dropped while the "restored VM's network" comes up (1.2 s): the kernel
#    would retransmit the first SYN at 1 s (dropped) and next at 3 s; wait-ready
#    cuts each connect at 1 s and sends a new SYN, so it is ready at ~2 s.
if in_guest nft -f - <<'NFT'
table inet ph_ctl_syn {
	chain input {
		type filter hook input priority 0;
		tcp dport 49982 drop
	}
}
NFT
then
	slow_start
	wait_listening "$GUEST_IP" "$API_PORT"
	(sleep 1.2; in_guest nft delete table inet ph_ctl_syn) &
	track $!
	ctl wait-ready --timeout 2700ms
	expect "wait-ready: SYNs dropped for 1.2 s -> a fresh SYN per second, ready before the 3 s retransmit" \
		0 1900 $((2100 + SLACK))
	slow_stop
else
	skip "wait-ready with dropped SYNs (nftables unavailable in the namespace)"
fi
