# SPDX-License-Identifier: MIT
# t_core_latency.sh - detection and removal latency of exposures over 100 trials
#
# tcpprobe's latency mode listens on 127.0.0.1:P in the guest and polls
# 169.254.0.21:P from the host every millisecond: listen() -> first
# successful connect is the detection latency, close() -> first refused
# connect the removal latency. Both from one process, so one clock.

probe=$(helper tcpprobe) || { fail "tcpprobe helper missing"; exit 1; }
TRIALS=${PH_LATENCY_TRIALS:-100}
INTERVAL=50

daemon_start --scan-interval $INTERVAL || exit 1
out=$("$probe" latency "/run/netns/$PH_GUEST_NS" "/run/netns/$PH_HOST_NS" "$GUEST_IP" 7301 "$TRIALS" 2>&1)
st=$?
if [ $st != 0 ]; then
	fail "latency: $TRIALS expose/remove trials completed" "$out"
	exit 1
fi
ok "latency: $TRIALS expose/remove trials completed"
val() { echo "$out" | awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }'; }
for k in open_p50_ms open_p99_ms open_max_ms close_p50_ms close_p99_ms close_max_ms; do
	figure "$k" "$(val $k)" ms
done
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
# The bound is 500 ms. The design promises one scan interval (plus
# the scan itself): the medians must show that (a daemon that needed two
# scans would have medians above one interval); the tails get a margin for
# a loaded 2-core CI machine.
I=$INTERVAL
le "$(val open_max_ms)" "$(scaled 500)" && ok "every detection within 500 ms (max $(val open_max_ms) ms)" ||
	fail "every detection within 500 ms (max $(val open_max_ms) ms)"
le "$(val open_p50_ms)" "$(scaled $((I + 10)))" && ok "detection p50 within one scan + 10 ms (p50 $(val open_p50_ms) ms)" ||
	fail "detection p50 within one scan + 10 ms ($((I + 10)) ms; p50 $(val open_p50_ms) ms)"
le "$(val open_p99_ms)" "$(scaled $((2 * I + 50)))" && ok "detection p99 within two scans + 50 ms (p99 $(val open_p99_ms) ms)" ||
	fail "detection p99 within two scans + 50 ms ($((2 * I + 50)) ms; p99 $(val open_p99_ms) ms)"
le "$(val close_p50_ms)" "$(scaled $((I + 10)))" && ok "removal p50 within one scan + 10 ms (p50 $(val close_p50_ms) ms)" ||
	fail "removal p50 within one scan + 10 ms ($((I + 10)) ms; p50 $(val close_p50_ms) ms)"
le "$(val close_p99_ms)" "$(scaled $((2 * I + 50)))" && ok "removal p99 within two scans + 50 ms (p99 $(val close_p99_ms) ms)" ||
	fail "removal p99 within two scans + 50 ms ($((2 * I + 50)) ms; p99 $(val close_p99_ms) ms)"
le "$(val close_max_ms)" "$(scaled 500)" && ok "every removal within 500 ms (max $(val close_max_ms) ms)" ||
	fail "every removal within 500 ms (max $(val close_max_ms) ms)"
daemon_stop
