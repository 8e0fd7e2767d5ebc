#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""connect_loop.py - a client that connects again and again, and says how each attempt ended

usage: connect_loop.py ADDR PORT OUT [PAUSE_FILE]

Every 1 ms (after the previous attempt ended): connect to ADDR:PORT, send a
line, read the echo, close. Each attempt ends as one of
  ok        the echo came back
  refused   the connect was refused (RST to the SYN: no listener)
  lost      connected, then reset or EOF before the echo (a relayed
            connection whose relay died)
  timeout   no connect or no echo within 5 s (or connect failed otherwise)
While PAUSE_FILE exists no attempt starts. On SIGTERM it writes a JSON
summary to OUT: the counts, the slowest ok attempt (ms), each ok attempt
that took 200 ms or more ([start time, connect ms, echo ms]), and for each
attempt that was not ok its kind, start time, the stage it ended in
("connect" or "echo"), the error and how long it took (ms), so a failure
says whether the SYN or the relaying was slow.
"""
import errno
import json
import os
import signal
import socket
import sys
import time

addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pause = sys.argv[4] if len(sys.argv) > 4 else None
res = {"ok": 0, "refused": 0, "lost": 0, "timeout": 0, "max_ok_ms": 0.0, "events": [], "slow": []}
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)


def attempt(n):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((addr, port), timeout=5)
    except ConnectionRefusedError:
        return "refused", t0, "connect", "ECONNREFUSED"
    except socket.timeout:
        return "timeout", t0, "connect", "no answer"
    except OSError as e:
        return "timeout", t0, "connect", errname(e)
    try:
        msg = b"ping-%d\n" % n
        t1 = time.monotonic()
        s.sendall(msg)
        got = b""
        while not got.endswith(b"\n"):
            b = s.recv(256)
            if not b:
                return "lost", t0, "echo", "EOF"
            got += b
        if got != msg:
            return "lost", t0, "echo", "wrong echo"
        ms = (time.monotonic() - t0) * 1000
        res["max_ok_ms"] = max(res["max_ok_ms"], round(ms, 1))
        if ms >= 200:
            res["slow"].append([round(time.time() - ms / 1000, 3), round((t1 - t0) * 1000),
                                round(ms - (t1 - t0) * 1000)])
        return "ok", t0, "", ""
    except socket.timeout:
        return "timeout", t0, "echo", "no echo"
    except OSError as e:
        return "lost", t0, "echo", errname(e)
    finally:
        s.close()


n = 0
while not stop:
    if pause and os.path.exists(pause):
        time.sleep(0.001)
        continue
    wall0 = time.time()
    kind, t0, stage, err = attempt(n)
    res[kind] += 1
    if kind != "ok":
        res["events"].append([kind, round(wall0, 3), stage, err,
                              round((time.monotonic() - t0) * 1000)])
    n += 1
    time.sleep(0.001)

with open(out + ".tmp", "w") as f:
    json.dump(res, f)
os.replace(out + ".tmp", out)
