#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""udp_peer.py - UDP peers for the integration tests (servers in the guest, clients in the host)

  echo ADDR PORT              echo server: every datagram back to its sender, after
                              checking its content (a datagram that is not
                              pattern(len) is answered with b"BAD"); prints "ready"
  hold ADDR PORT              bind an unconnected socket and sleep (a service that
                              never answers; or a port taken); prints "ready"
  connected ADDR PORT PEER_ADDR PEER_PORT
                              bind ADDR:PORT, connect() to PEER:PEER_PORT, sleep
                              (a client's socket, not a service); prints "ready"
  sizes ADDR PORT MIN MAX     client: one datagram of every size MIN..MAX, each
                              answered before the next; exit 0 when every echo is
                              the exact datagram sent (checked both ways: the
                              server checks what it got)
  order ADDR PORT N WINDOW    client: N numbered datagrams, WINDOW in flight at a
                              time; exit 0 when all come back, in order
  ask ADDR PORT [SRCPORT [SECONDS]]
                              client: one datagram, print the answer ("timeout"
                              after SECONDS, default 1)
  peers ADDR PORT N [seq]     client: N sockets (N client ports) each ask once,
                              all at once (seq: each answered before the next
                              asks; the sockets stay open); prints how many
                              distinct peer addresses the server saw (the echo
                              server answers b"peer?" with the address)

Content of a datagram of length n: bytes (i * 131 + n) mod 251, so a datagram
cut short, merged, reordered inside or swapped with another of another size
never passes.
"""
import socket
import sys
import time

BUF = 1 << 22


def pattern(n):
    """(i * 131 + n) mod 251 for i < n: one period of 251 bytes, repeated"""
    base = bytes((i * 131 + n) % 251 for i in range(251))
    return (base * (n // 251 + 1))[:n]


def sock_for(addr, bind_port=0):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    # a wildcard and a loopback socket may then share a port (both set it)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    return s, fam


def ready():
    print("ready", flush=True)


def echo(addr, port):
    s, _ = sock_for(addr)
    s.bind((addr, port))
    ready()
    while True:
        d, peer = s.recvfrom(65536)
        if d == b"peer?":
            s.sendto(("%s:%d" % (peer[0], peer[1])).encode(), peer)
        elif d[:5] == b"seq: ":
            s.sendto(d, peer)
        elif d == pattern(len(d)):
            s.sendto(d, peer)
        else:
            s.sendto(b"BAD", peer)


def hold(addr, port):
    s, _ = sock_for(addr)
    s.bind((addr, port))
    ready()
    while True:
        time.sleep(3600)


def connected(addr, port, paddr, pport):
    s, _ = sock_for(addr)
    s.bind((addr, port))
    s.connect((paddr, pport))
    ready()
    while True:
        time.sleep(3600)


def sizes(addr, port, lo, hi):
    s, _ = sock_for(addr)
    s.settimeout(2.0)
    s.connect((addr, port))
    bad = 0
    for n in range(lo, hi + 1):
        d = pattern(n)
        for attempt in range(3):
            s.send(d)
            try:
                r = s.recv(65536)
            except socket.timeout:
                continue
            break
        else:
            print("size %d: no answer" % n)
            return 1
        if r != d:
            bad += 1
            if bad <= 5:
                print("size %d: got %d bytes back%s" % (n, len(r), " (server: BAD)" if r == b"BAD" else ""))
    print("sizes %d..%d: %d wrong" % (lo, hi, bad))
    return 1 if bad else 0


def order(addr, port, n, window):
    s, _ = sock_for(addr)
    s.settimeout(3.0)
    s.connect((addr, port))
    sent = got = 0
    while got < n:
        while sent < n and sent - got < window:
            s.send(b"seq: %08d" % sent + b"x" * (sent % 1000))
            sent += 1
        try:
            r = s.recv(65536)
        except socket.timeout:
            print("order: timeout after %d of %d" % (got, n))
            return 1
        want = b"seq: %08d" % got
        if r[:13] != want:
            print("order: expected %r, got %r" % (want, r[:13]))
            return 1
        got += 1
    print("order: %d datagrams in order" % n)
    return 0


def ask(addr, port, srcport=0, seconds=1.0):
    s, fam = sock_for(addr)
    s.settimeout(seconds)
    if srcport:
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", srcport))
    s.connect((addr, port))
    s.send(b"peer?")
    try:
        print(s.recv(65536).decode(errors="replace"))
    except (socket.timeout, ConnectionRefusedError) as e:
        print("timeout" if isinstance(e, socket.timeout) else "refused")
        return 1
    return 0


def peers(addr, port, n, one_by_one=False):
    socks = []
    for _ in range(n):
        s, _ = sock_for(addr)
        s.settimeout(2.0)
        s.connect((addr, port))
        socks.append(s)
    seen = set()
    for s in socks:
        s.send(b"peer?")
        if not one_by_one:
            continue
        try:
            seen.add(s.recv(65536).decode())
        except socket.timeout:
            print("timeout")
            return 1
    for s in socks if not one_by_one else []:
        try:
            seen.add(s.recv(65536).decode())
        except socket.timeout:
            print("timeout")
            return 1
    print(len(seen))
    return 0


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "echo":
        return echo(args[0], int(args[1]))
    if cmd == "hold":
        return hold(args[0], int(args[1]))
    if cmd == "connected":
        return connected(args[0], int(args[1]), args[2], int(args[3]))
    if cmd == "sizes":
        return sizes(args[0], int(args[1]), int(args[2]), int(args[3]))
    if cmd == "order":
        return order(args[0], int(args[1]), int(args[2]), int(args[3]))
    if cmd == "ask":
        return ask(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 0,
                   float(args[3]) if len(args) > 3 else 1.0)
    if cmd == "peers":
        return peers(args[0], int(args[1]), int(args[2]), len(args) > 3 and args[3] == "seq")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
