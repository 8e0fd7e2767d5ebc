#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/flame.py - flame graphs and CPU cost per request from perf samples

    bench/flame.py PERF_SCRIPT_TEXT OUT.svg [TITLE]

Theory of Operation

bench.py profiles whole-machine runs: `perf record -a -g` samples every CPU
at a fixed rate, whoever runs on it (the load generator, the server, the
forwarder, softirq work, the idle loop), and `perf script -F
comm,tid,period,ip,sym` prints each sample as a header line

    COMM TID PERIOD

followed by its call chain, innermost frame first, one "ADDRESS SYMBOL" line
per frame, and a blank line. fold() turns that text into folded stacks, the
format flame graph tools share: "root;outer;...;inner" -> nanoseconds. The
root frame is the thread's name, so a graph first splits the machine's time
by who used it; kernel frames (addresses in the top half of the address
space) get a "_[k]" suffix, as other tools do. Each sample weighs its
period (nanoseconds of cpu-clock), not 1, so that the sums are CPU time.

costs() turns folded stacks into CPU per request: each role's
(load, server, forwarder, idle, kernel threads) nanoseconds divided by the
requests the load generator completed in the window, and the forwarder's
time split by the system call it was in (or "user space" / "interrupts").
That is the answer to "where does a relayed request's time go" in numbers.

svg() draws the graph as one self-contained SVG file (no script): frames
are rectangles whose width is their share of the samples, stacked from the
root at the bottom; every frame has a <title> tooltip with its time and
share; labels are drawn only where they fit.
"""

import html
import re
import sys
import zlib

# thread name -> role; first match wins
ROLES = [
    (re.compile(r"^(ph-|portholed)"), "forwarder"),
    (re.compile(r"^socat"), "forwarder"),
    (re.compile(r"^nginx"), "server"),
    (re.compile(r"^wrk"), "load"),
    (re.compile(r"^swapper"), "idle"),
    (re.compile(r"^(ksoftirqd|kworker|rcu|migration|kdamond)"), "kernel threads"),
]

_HEAD = re.compile(r"^(.*?)\s+(\d+)\s+(\d+)\s*$")
_SYSCALL = re.compile(r"^__(?:x64|ia32|arm64)_sys_(\w+)_\[k\]$")


def thread_root(comm):
    """Root frame for a thread name: per-CPU kernel threads lose their
    numbers (kworker/u8:3-events -> kworker) so that they add up."""
    comm = comm.strip() or "?"
    m = re.match(r"^(kworker|ksoftirqd|migration|rcu\w*|cpuhp|swapper)\b", comm)
    return m.group(1) if m else comm


def role_of(root):
    for rx, role in ROLES:
        if rx.search(root):
            return role
    return "other"


def fold(text):
    """Folded stacks of `perf script -F comm,tid,period,ip,sym` output.

    Return: dict "root;outer;...;inner" -> nanoseconds.
    """
    out = {}
    head, frames = None, []

    def flush():
        if head is None:
            return
        comm, period = head
        # a binary without frame pointers unwinds into long runs of
        # [unknown] (wrk's LuaJIT does): one frame says as much
        chain = []
        for f in reversed(frames):
            if not (f == "[unknown]" and chain and chain[-1] == f):
                chain.append(f)
        key = ";".join([thread_root(comm)] + chain)
        out[key] = out.get(key, 0) + period

    for line in text.splitlines():
        if not line.strip():
            flush()
            head, frames = None, []
            continue
        if head is None:
            if line[:1] in " \t":
                continue        # a frame without a header: not ours
            # "COMM TID PERIOD": the name itself may contain spaces
            m = _HEAD.match(line)
            if m:
                head = (m.group(1), int(m.group(3)))
            continue
        parts = line.split(None, 1)
        addr = parts[0]
        sym = parts[1].strip() if len(parts) > 1 else "[unknown]"
        # "sym+0x1f (dso)" forms, if perf adds them
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.split(" (")[0]) or "[unknown]"
        if re.match(r"^f{8}[0-9a-f]{8}$", addr):
            sym += "_[k]"
        frames.append(sym.replace(";", ":"))
    flush()
    return out


def costs(folded, requests):
    """CPU per request, by role and by the forwarder's system calls.

    @folded: output of fold(); @requests: requests completed in the
    profiled window. Return: dict with "roles" {role: µs/request},
    "syscalls" [(name, µs/request), ...] of the forwarder, largest first,
    and "total_ms" (all sampled CPU time, idle included).
    """
    roles = {}
    calls = {}
    total = 0
    for key, ns in folded.items():
        total += ns
        frames = key.split(";")
        role = role_of(frames[0])
        roles[role] = roles.get(role, 0) + ns
        if role != "forwarder":
            continue
        name = "user space"
        for f in frames[1:]:
            m = _SYSCALL.match(f)
            if m:
                name = m.group(1)
                break
            if f.startswith("asm_") or f.startswith("handle_softirqs") or \
                    f.startswith("irq_exit"):
                name = "interrupts"
                break
        else:
            if any(f.startswith("entry_SYSCALL") for f in frames):
                name = "syscall entry/exit"
        calls[name] = calls.get(name, 0) + ns
    per = (lambda ns: ns / 1e3 / requests) if requests else (lambda ns: None)
    return dict(total_ms=total / 1e6,
                roles={r: per(ns) for r, ns in roles.items()},
                syscalls=sorted(((n, per(ns)) for n, ns in calls.items()),
                                key=lambda x: -(x[1] or 0)))


class _Node:
    __slots__ = ("name", "ns", "kids")

    def __init__(self, name):
        self.name, self.ns, self.kids = name, 0, {}


def _tree(folded):
    root = _Node("all")
    for key, ns in folded.items():
        node = root
        node.ns += ns
        for name in key.split(";"):
            node = node.kids.setdefault(name, _Node(name))
            node.ns += ns
    return root


def _colour(name, depth):
    if depth == 0:
        return "rgb(200,200,200)"
    h = zlib.crc32(name.encode()) & 0xffff
    if depth == 1:          # threads
        return "rgb(%d,%d,230)" % (120 + h % 60, 150 + h % 50)
    if name.endswith("_[k]"):
        return "rgb(230,%d,%d)" % (120 + h % 80, 40 + h % 40)
    return "rgb(240,%d,60)" % (190 + h % 50)


def svg(folded, title, width=1200, frame_h=16, min_px=0.5):
    """The flame graph of @folded as an SVG document (a string)."""
    root = _tree(folded)
    rows = []       # (depth, x, w, name, ns)

    def walk(node, depth, x):
        w = node.ns * width / root.ns if root.ns else 0
        if w < min_px:
            return
        rows.append((depth, x, w, node.name, node.ns))
        cx = x
        for kid in sorted(node.kids.values(), key=lambda n: n.name):
            walk(kid, depth + 1, cx)
            cx += kid.ns * width / root.ns

    walk(root, 0, 0.0)
    depth = max((r[0] for r in rows), default=0) + 1
    top = 40
    height = top + depth * frame_h + 10
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="monospace" font-size="11">'
           % (width, height, width, height),
           '<rect x="0" y="0" width="%d" height="%d" fill="rgb(250,250,245)"/>'
           % (width, height),
           '<text x="%d" y="20" text-anchor="middle" font-size="15">%s</text>'
           % (width // 2, html.escape(title)),
           '<text x="4" y="34" fill="rgb(90,90,90)">width = share of all CPU time '
           'sampled (%.0f ms); thread names at the bottom; _[k] = kernel</text>'
           % (root.ns / 1e6)]
    for d, x, w, name, ns in rows:
        y = height - 10 - (d + 1) * frame_h
        pct = 100.0 * ns / root.ns
        out.append('<g><title>%s (%.1f ms, %.2f%%)</title>'
                   '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" rx="1"/>'
                   % (html.escape(name), ns / 1e6, pct, x, y, w, frame_h - 1,
                      _colour(name, d)))
        chars = int((w - 4) / 6.6)
        if chars >= 3:
            label = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>' % (x + 2, y + frame_h - 5,
                                                             html.escape(label)))
        out.append('</g>')
    out.append('</svg>')
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: flame.py PERF_SCRIPT_TEXT OUT.svg [TITLE]\n")
        return 2
    with open(argv[1]) as f:
        folded = fold(f.read())
    if not folded:
        sys.stderr.write("flame.py: no samples in %s\n" % argv[1])
        return 1
    with open(argv[2], "w") as f:
        f.write(svg(folded, argv[3] if len(argv) > 3 else argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
