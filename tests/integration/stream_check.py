#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""stream_check.py - N connections streaming checksummed data both ways through an echo service

usage: stream_check.py ADDR PORT N OUT [RATE_KIB_S]

Opens N connections to ADDR:PORT (an echo service behind portholed). Each
sends a stream of its own (8-byte big-endian counters, the connection's
number in the top bits, so a byte lost, duplicated or reordered anywhere
changes what comes back) at about RATE_KIB_S KiB/s (default 64), paced without catching up
after a stall (at most 16 KiB at once), and reads
the echo, comparing every byte with what it sent; at most 256 KiB are in
flight per connection. The longest time with no byte received on any
connection is recorded too (the pause). On SIGTERM each connection sends its
FIN, reads the rest of the echo to EOF, and OUT gets a JSON summary:
connections, resets (an error or early EOF), mismatches, bytes each way,
the worst gap (ms) with no byte arriving on any connection.
"""
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

addr, port, n, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rate = int(sys.argv[5]) * 1024 if len(sys.argv) > 5 else 64 * 1024
WINDOW = 256 * 1024
CHUNK = 4096
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def pattern(conn_id, off, length):
    """bytes off..off+length of connection conn_id's stream"""
    first = off // 8
    last = (off + length + 7) // 8
    words = b"".join(struct.pack(">Q", (conn_id << 48) | i) for i in range(first, last))
    s = off - first * 8
    return words[s:s + length]


class Conn:
    def __init__(self, i):
        self.i = i
        self.sent = 0
        self.recv = 0
        self.bad = False
        self.reset = False
        self.eof = False
        self.shut = False
        self.why = ""
        self.allow = 0
        self.s = socket.create_connection((addr, port), timeout=5)
        self.s.setblocking(False)


conns = []
for i in range(n):
    conns.append(Conn(i))
sel = selectors.DefaultSelector()
for c in conns:
    sel.register(c.s, selectors.EVENT_READ, c)

start = time.monotonic()
last_rx = start
max_gap = 0.0
gaps = []
budget = 0.0  # bytes each connection may send now: paced, no catching up
last = start
while True:
    now = time.monotonic()
    # after a stall of this client (a loaded machine) it does not burst to
    # catch up: bursts would read full 64 KiB buffers and turn the relays'
    # directions to splice, and the descriptor count would then say more
    # about this client's scheduling than about the daemon
    budget = min(budget + (now - last) * rate, CHUNK * 4)
    last = now
    allowed_step = int(budget)
    open_conns = 0
    for c in conns:
        if c.reset or c.eof:
            continue
        open_conns += 1
        if stop and not c.shut:
            if c.recv >= c.sent:
                try:
                    c.s.shutdown(socket.SHUT_WR)
                except OSError:
                    c.reset = True
                c.shut = True
            continue
        if c.shut:
            continue
        c.allow = min(c.allow + allowed_step, CHUNK * 4)
        while c.allow > 0 and c.sent - c.recv < WINDOW:
            want = min(CHUNK, c.allow)
            try:
                m = c.s.send(pattern(c.i, c.sent, want))
            except BlockingIOError:
                break
            except OSError as e:
                c.reset = True
                c.why = "send: %s at %.3f" % (e, time.time())
                break
            c.sent += m
            c.allow -= m
    budget -= allowed_step
    if stop and open_conns == 0:
        break
    got_any = False
    for key, _ in sel.select(timeout=0.005):
        c = key.data
        try:
            data = c.s.recv(65536)
        except BlockingIOError:
            continue
        except OSError as e:
            c.reset = True
            c.why = "recv: %s at %.3f" % (e, time.time())
            sel.unregister(c.s)
            continue
        if not data:
            c.eof = True
            if not c.shut or c.recv != c.sent:
                c.reset = True
                c.why = "eof at %.3f after %d of %d" % (time.time(), c.recv, c.sent)
            sel.unregister(c.s)
            continue
        if data != pattern(c.i, c.recv, len(data)):
            c.bad = True
        c.recv += len(data)
        got_any = True
    now = time.monotonic()
    if got_any:
        gap = now - last_rx
        if gap > max_gap:
            max_gap = gap
        if gap > 0.02:
            gaps.append(round(gap * 1000, 1))
        last_rx = now
    if stop and now - last_rx > 10:
        break

res = {
    "connections": n,
    "resets": sum(c.reset for c in conns),
    "mismatches": sum(c.bad for c in conns),
    "unfinished": sum(not c.eof for c in conns),
    "bytes_sent": sum(c.sent for c in conns),
    "bytes_echoed": sum(c.recv for c in conns),
    "max_gap_ms": round(max_gap * 1000, 1),
    "gaps_over_20ms": gaps[:200],
    "why": [c.why for c in conns if c.why][:20],
}
with open(out + ".tmp", "w") as f:
    json.dump(res, f)
os.rename(out + ".tmp", out)
