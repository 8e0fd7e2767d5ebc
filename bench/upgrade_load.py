#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/upgrade_load.py - relayed connections for the upgrade pause: where bytes stop moving

usage: upgrade_load.py ADDR PORT CONNS PROBES OUT

Opens CONNS connections to an echo service at ADDR:PORT (through the
forwarder). PROBES of them ping-pong one byte after another as fast as the
echo comes back; the others send 64 bytes every second each (so every relay
holds live traffic). Prints "ready" once all are connected. Every interval
of more than 1 ms between two echoes on a probe is recorded (CLOCK_MONOTONIC,
comparable with the driver's time.monotonic()). On SIGTERM it writes OUT:
{"gaps": [[start, end], ...], "echoes": N, "errors": N}.
"""
import json
import os
import selectors
import signal
import socket
import sys
import time

addr, port, n, probes, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
socks = []
for i in range(n):
    s = socket.create_connection((addr, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    socks.append(s)
sel = selectors.DefaultSelector()
for i, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, i)
print("ready", flush=True)

gaps, echoes, errors = [], 0, 0
last = {}
now = time.monotonic()
for i in range(probes):
    socks[i].send(b"p")
    last[i] = now
next_bulk = now + 1.0
bulk_i = probes
while not stop:
    for key, _ in sel.select(timeout=0.05):
        i = key.data
        try:
            data = socks[i].recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            errors += 1
            sel.unregister(socks[i])
            continue
        if not data:
            errors += 1
            sel.unregister(socks[i])
            continue
        if i < probes:
            t = time.monotonic()
            if t - last[i] > 0.001:
                gaps.append([last[i], t])
            last[i] = t
            echoes += 1
            try:
                socks[i].send(b"p")
            except OSError:
                errors += 1
    # the others: 64 bytes a second each, spread over the second
    t = time.monotonic()
    per_tick = max(1, (n - probes) // 20)
    while t >= next_bulk and n > probes:
        for _ in range(per_tick):
            try:
                socks[bulk_i].send(b"b" * 64)
            except OSError:
                pass
            bulk_i = bulk_i + 1 if bulk_i + 1 < n else probes
        next_bulk += 0.05
with open(out + ".tmp", "w") as f:
    json.dump({"gaps": gaps, "echoes": echoes, "errors": errors}, f)
os.rename(out + ".tmp", out)
