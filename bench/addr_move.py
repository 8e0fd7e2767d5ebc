#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""addr_move.py GUEST_NS TRIALS PORT - run in the host namespace by bench/addr_move.

Each trial: the guest's eth0 gets 10.90.<i>.1/24 by `ip addr replace` (the
host side gets 10.90.<i>.2/24 first, untimed); the clock starts just before
`ip` runs; then connect to the new address until one byte sent comes back
(a refused connect is retried after 0.2 ms). The previous address is
removed after the trial."""
import socket, statistics, subprocess, sys, time

ns, trials, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def ip(*args):
    subprocess.run(["ip", *args], check=True)

def first_byte(addr, deadline):
    while time.monotonic() < deadline:
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect((addr, port))
            s.sendall(b"x")
            if s.recv(1) == b"x":
                return True
        except OSError:
            time.sleep(0.0002)
        finally:
            s.close()
    return False

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]

from_start, from_exit, prev = [], [], "169.254.0.21/30"
for i in range(1, trials + 1):
    new = f"10.90.{i}.1"
    ip("addr", "add", f"10.90.{i}.2/24", "dev", "eth0")
    t0 = time.monotonic()
    ip("-n", ns, "addr", "replace", f"{new}/24", "dev", "eth0")
    t1 = time.monotonic()
    ok = first_byte(new, t1 + 5)
    t2 = time.monotonic()
    if not ok:
        print(f"trial {i}: no relayed byte on {new} within 5 s")
        sys.exit(1)
    from_start.append((t2 - t0) * 1000)
    from_exit.append((t2 - t1) * 1000)
    print(f"trial {i:2d}: {new:12s} {from_start[-1]:7.2f} ms from ip start, "
          f"{from_exit[-1]:7.2f} ms from ip exit")
    ip("-n", ns, "addr", "del", prev, "dev", "eth0")
    if i > 1:
        ip("addr", "del", f"10.90.{i - 1}.2/24", "dev", "eth0")
    prev = f"{new}/24"

for name, v in (("from ip start", from_start), ("from ip exit", from_exit)):
    print(f"# figure: addr_move {name}: n={len(v)} p50={pct(v, 50):.2f} ms "
          f"p90={pct(v, 90):.2f} ms p99={pct(v, 99):.2f} ms max={max(v):.2f} ms "
          f"mean={statistics.mean(v):.2f} ms")
