#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""addr_move.py GUEST_NS ADDR PORT TIMEOUT_MS CMD... - time an address move.

Run in the host namespace by t_net_address.sh. Before CMD runs, it
subscribes to the guest namespace's rtnetlink address, route and link groups
(the socket is opened there with setns, the same groups portholed listens
to); while CMD runs it notes the monotonic time of each notification as it
arrives (netlink messages carry no kernel timestamp). CMD
(`ip -n GUEST ...`, stdin passed through) makes the change; then ADDR:PORT
is connected to until one byte sent to the echo service behind the relay
comes back (a refused connect is retried after 0.2 ms; one with no answer
in ATTEMPT_S is abandoned and retried with a fresh SYN: see below).

The clock starts at the FIRST notification CMD caused: the kernel sends
them as it applies each change, so this is the moment the guest's network
changed, without `ip`'s own start-up cost; with several changes (add the new
address, then delete the old one) the relevant one may be later, so the time
printed is an upper bound. Prints "CHANGE_MS EXIT_MS NOTIFICATIONS REFUSED
LAST_TRY_MS CONNECT_MS UNANSWERED DROPS": from the first notification and
from CMD's exit to the relayed byte; connects refused (no listener yet); when
the successful attempt began, from the first notification; how long its
connect took; attempts abandoned unanswered; packets the kernel dropped in
its per-CPU input backlogs meanwhile (/proc/net/softnet_stat). Exit 1 when
no byte comes back within TIMEOUT_MS, 2 when CMD fails or caused no
notification."""
import ctypes, os, select, socket, subprocess, sys, time

CLONE_NEWNET = 0x40000000
# RTMGRP_LINK, IPV4_IFADDR, IPV4_ROUTE, IPV6_IFADDR, IPV6_ROUTE
GROUPS = 0x1 | 0x10 | 0x40 | 0x100 | 0x400

ns, addr, port, timeout_ms, cmd = (sys.argv[1], sys.argv[2], int(sys.argv[3]),
                                   int(sys.argv[4]), sys.argv[5:])

libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
guest = os.open(f"/run/netns/{ns}", os.O_RDONLY)
if libc.setns(guest, CLONE_NEWNET) != 0:
    sys.exit(f"addr_move.py: setns {ns}: {os.strerror(ctypes.get_errno())}")
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
nl.bind((0, GROUPS))
nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
if libc.setns(home, CLONE_NEWNET) != 0:
    sys.exit(f"addr_move.py: setns back: {os.strerror(ctypes.get_errno())}")

# One thread: select() on the netlink socket and on CMD's pidfd, so each
# notification is stamped as soon as it is readable.
seen = []
proc = subprocess.Popen(cmd)
pidfd = os.pidfd_open(proc.pid)
while True:
    r, _, _ = select.select([nl, pidfd], [], [])
    if nl in r:
        seen.append(time.monotonic())
        nl.recv(65536)
    elif pidfd in r:
        t_exit = time.monotonic()
        break
nl.setblocking(False)
try:  # sent before the exit, not yet stamped: count them, stamp as exit
    while nl.recv(65536):
        seen.append(t_exit)
except BlockingIOError:
    pass
if proc.wait() != 0:
    sys.exit(2)
n_cmd = len(seen)
if not n_cmd:
    print("addr_move.py: the command caused no rtnetlink notification", file=sys.stderr)
    sys.exit(2)
t_change = seen[0]

def softnet_drops():
    """Packets dropped so far in the per-CPU input backlogs (all namespaces)"""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)

# A veth pair delivers through the per-CPU input backlog that every namespace
# on the machine shares (netdev_max_backlog packets): another test's flood
# can drop this move's SYN (or, for a new IPv6 address, the neighbour
# solicitation before it), and the kernel retries those only after 1 s (the
# initial RTO; the neighbour table's retransmit time). That second is the
# kernel's, not the move's: an attempt unanswered after ATTEMPT_S is
# abandoned and a fresh SYN sent, and the caller sets the host's neighbour
# retransmit time short. The drops are reported with the result.
ATTEMPT_S = 0.05
drops0 = softnet_drops()
unanswered = 0
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
deadline = t_exit + timeout_ms / 1000
refused = 0
while True:
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(max(0.01, min(ATTEMPT_S, deadline - time.monotonic())))
    t_try = time.monotonic()
    try:
        s.connect((addr, port))
        s.settimeout(max(0.01, deadline - time.monotonic()))
        t_conn = time.monotonic()
        s.sendall(b"x")
        if s.recv(1) == b"x":
            t_done = time.monotonic()
            break
    except ConnectionRefusedError:
        refused += 1
    except socket.timeout:
        unanswered += 1
    except OSError:
        pass
    finally:
        s.close()
    if time.monotonic() >= deadline:
        print(f"addr_move.py: no relayed byte on {addr}:{port} within {timeout_ms} ms",
              file=sys.stderr)
        sys.exit(1)
    time.sleep(0.0002)
# How the time splits: until the last attempt began (the refused ones: no
# listener on ADDR:PORT yet; the unanswered ones: a packet lost on the way),
# that attempt's connect(), then the echo through the relay.
print(f"{(t_done - t_change) * 1000:.1f} {(t_done - t_exit) * 1000:.1f} {n_cmd} "
      f"{refused} {(t_try - t_change) * 1000:.1f} {(t_conn - t_try) * 1000:.1f} "
      f"{unanswered} {softnet_drops() - drops0}")
