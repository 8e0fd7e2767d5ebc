#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/bench.py - run the porthole benchmark suite; writes results.json for bench/report.py

Theory of Operation

bench/run (bash) creates nothing but a cgroup root and starts this driver;
its trap is the safety net that kills and deletes whatever is left. This
driver builds the topology itself:

    namespace G ("guest")                    namespace H ("host")
    servers + forwarder under test           load generators
    vg 169.254.0.21/30  <------ veth ------>  vh 169.254.0.22/30

and runs the contenders one at a time against servers inside G:

    direct    the server bound to 0.0.0.0: no forwarder (the physical limit)
    dnat      nftables DNAT 169.254.0.21:P -> 127.0.0.1:P, route_localnet=1
    socat     socat -d -d -d TCP4-LISTEN:P,bind=169.254.0.21,reuseaddr,fork TCP4:localhost:P
    porthole  $PH_BUILD/portholed, default settings
    floor     (request and UDP runs) $PH_BUILD/bench/floor_relay (TCP) and
              bench/floor_udp (UDP): the least a userspace relay can do, to
              tell porthole's cost from relaying's
    floor-unix (request runs) floor_relay with its service leg on nginx's Unix
              stream socket: the upper bound of issue 19 part 2 (a relay whose
              loopback leg leaves the TCP stack, client leg unchanged)
    steered   (bulk and request runs) portholed --steer P: no relay, a BPF
              sk_lookup program hands each connection to the server's own
              127.0.0.1 listener (issue 19)

A forwarder lives only for one run (start, wait until it listens, load,
stop), so contenders never see each other, and the DNAT table (which turns
on conntrack for the whole namespace) exists only during dnat runs.
Repetitions are interleaved (A B C D A B C D ...) so that drift of the
shared machine hits every contender alike; reports use medians, min-max and
ratios to direct taken within this one run.

Every process is started in a per-role cgroup v2 directory under
$PHB_CGROUP: the forwarder's CPU time is the cgroup's cpu.stat usage (socat's
forked children included), and stopping a role kills exactly the processes
in its cgroup. Without a writable cgroup2 mount the driver falls back to
process groups and /proc/PID/stat. Every load is capped in time (iperf3 -t,
wrk -d, subprocess timeouts) and in count (streams, connections, trials).
"""

import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import flame

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

EXT = "169.254.0.21"
HOSTIP = "169.254.0.22"
EXT_HEX = "1500FEA9"          # 169.254.0.21 as /proc/net/tcp prints it
LO_HEX = "0100007F"
ANY_HEX = "00000000"

# Ports (all below the ephemeral range 32768-60999)
P_IPERF_DIRECT, P_IPERF_FWD = 5201, 5202
P_HTTP_DIRECT, P_HTTP_FWD = 8081, 8082
P_UDP_DIRECT, P_UDP_FWD = 5301, 5302
P_ECHO = 9000
P_DETECT_PH, P_DETECT_REF = 22000, 23000
P_DETECT_UDP, P_RACE = 20000, 21000
P_SCALE = 24000
P_BURST, P_BURST_POLL = 26000, 28000
API_PORT = 49982

CONTENDERS = ["direct", "dnat", "socat", "porthole"]
# run after the contenders in the bulk and request steps (issue 19)
STEERED = "steered"
# request runs only: bench/floor_relay with a Unix stream socket as its
# service leg, the upper bound of issue 19 part 2's accelerated loopback leg
FLOOR_UNIX = "floor-unix"

# UDP: (datagram payload bytes, clients); paced runs offer this many datagrams/s in all
UDP_CONFIGS = [(64, 1), (64, 8), (1400, 1), (1400, 8)]
UDP_PACED = 20000

# TCP hash buckets of each namespace: what the kernel gives a 2 GiB guest
# (one bucket per 128 KiB of RAM), so that a /proc/net/tcp walk costs what
# it would in the VM rather than on this (bigger, shared) machine.
EHASH = 16384

MODES = {
    "full": dict(iperf_t=4, iperf_reps=4, wrk_t=5, wrk_reps=4,
                 scan_sizes=[100, 10000, 50000], scan_ms=3000,
                 detect_trials=200, ref_trials=200, ref_parallel=8,
                 snapshot_trials=20, mem_conns=[0, 100, 1000],
                 scale_ports=[10, 1000], idle_s=10, burst_n=1000, udp_t=3, udp_reps=3,
                 upgrades=20, upgrade_conns=1000, profile=True),
    "quick": dict(iperf_t=1, iperf_reps=1, wrk_t=2, wrk_reps=1,
                  scan_sizes=[100, 10000], scan_ms=800,
                  detect_trials=40, ref_trials=16, ref_parallel=8,
                  snapshot_trials=5, mem_conns=[0, 100],
                  scale_ports=[10, 200], idle_s=3, burst_n=200, udp_t=1, udp_reps=1,
                  upgrades=5, upgrade_conns=200),
}

BODY = "x" * 99 + "\n"        # the 100-byte response body


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(argv, timeout, check=True, **kw):
    """subprocess.run with a mandatory time cap; returns CompletedProcess."""
    r = subprocess.run(argv, timeout=timeout, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                  r.stderr.strip()[-300:]))
    return r


class Group:
    """A set of processes we started: one cgroup v2 directory, or (fallback)
    the process groups of the processes started into it."""

    def __init__(self, cgroot, name):
        self.name = name
        self.pgids = []
        self.cg = None
        if cgroot:
            self.cg = os.path.join(cgroot, name)
            os.makedirs(self.cg, exist_ok=True)

    def enter(self):
        """preexec_fn: move the new child into this cgroup."""
        if self.cg:
            with open(os.path.join(self.cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def pids(self):
        if self.cg:
            try:
                with open(os.path.join(self.cg, "cgroup.procs")) as f:
                    return [int(x) for x in f.read().split()]
            except OSError:
                return []
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(int(d))
                if st and st[2] in self.pgids:
                    out.append(int(d))
        return out

    def cpu_us(self):
        """CPU time (user+system) of everything that ever ran in the group."""
        if self.cg:
            with open(os.path.join(self.cg, "cpu.stat")) as f:
                for line in f:
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v)
            return 0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            st = proc_stat(pid)
            if st:
                # utime stime, plus cutime cstime of reaped children (socat's)
                total += sum(st[11:15]) * 1000000 // tick
        return total

    def kill(self):
        if self.cg and os.path.exists(os.path.join(self.cg, "cgroup.kill")):
            try:
                with open(os.path.join(self.cg, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.time() + 5
        while self.pids() and time.time() < deadline:
            time.sleep(0.02)
        self.pgids = []


def proc_stat(pid):
    """Fields of /proc/PID/stat after the comm: [state, ppid, pgrp, ...]
    (so index 11..14 are utime stime cutime cstime), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return [rest[0]] + [int(x) for x in rest[1:20]]


def machine_cpu():
    """Ticks of the whole machine from /proc/stat's "cpu" line:
    (busy, idle, softirq). Busy counts user, nice, system, irq, softirq and
    steal; idle counts idle and iowait. softirq is the part of busy that the
    tick found serving softirqs (network receive work, which loopback and veth
    run inline in the sending task, so the task's cgroup is charged too)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, idle + iowait, softirq


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def mem_kb(pid):
    """(Rss, Pss) in kB from /proc/PID/smaps_rollup, or None."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            txt = f.read()
    except OSError:
        return None
    rss = re.search(r"^Rss:\s+(\d+)", txt, re.M)
    pss = re.search(r"^Pss:\s+(\d+)", txt, re.M)
    if not rss or not pss:
        return None
    return int(rss.group(1)), int(pss.group(1))


def pctl(values, p):
    """Nearest-rank percentile of a non-empty list."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Bench:
    def __init__(self, mode):
        self.mode = mode
        self.cfg = MODES[mode]
        self.ns_g = os.environ.get("PHB_NS_GUEST", "phb%dg" % os.getpid())
        self.ns_h = os.environ.get("PHB_NS_HOST", "phb%dh" % os.getpid())
        # scan costs run in a namespace of their own: TIME_WAIT sockets left
        # by the wrk runs in G would otherwise inflate every /proc parse
        self.ns_s = os.environ.get("PHB_NS_SCAN", "phb%ds" % os.getpid())
        # parent of the others, only there to size their TCP hash tables
        self.ns_p = os.environ.get("PHB_NS_PARENT", "phb%dp" % os.getpid())
        self.private_ehash = False
        self.cgroot = os.environ.get("PHB_CGROUP") or None
        self.build = os.environ.get("PH_BUILD", "build/default")
        if not os.path.isabs(self.build):
            self.build = os.path.join(ROOT, self.build)
        self.work = os.environ["PHB_WORK"]
        self.outdir = os.environ["PHB_OUT"]
        self.benchtool = os.path.join(self.build, "bench", "benchtool")
        self.scan_cost = os.path.join(self.build, "bench", "scan_cost")
        self.portholed = os.path.join(self.build, "portholed")
        self.floor_relay = os.path.join(self.build, "bench", "floor_relay")
        self.floor_udp = os.path.join(self.build, "bench", "floor_udp")
        # nginx's Unix listener for FLOOR_UNIX (the same server block's body)
        self.http_sock = os.path.join(self.work, "http.sock")
        self.groups = {}
        self.procs = []
        self.anchor = None
        self.res = dict(mode=mode, notes=[], started=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        self.contenders = list(CONTENDERS)
        self.skip = {}

    # --- processes -------------------------------------------------------

    def group(self, name):
        if name not in self.groups:
            self.groups[name] = Group(self.cgroot, name)
        return self.groups[name]

    def spawn(self, argv, ns, group, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              stdin=subprocess.DEVNULL, mounts=False):
        """@argv in netns @ns; @mounts: with this machine's mounts (nsenter),
        not ip netns exec's fresh /sys, which hides the cgroup v2 mount"""
        g = self.group(group)
        pre = (["nsenter", "--net=/run/netns/" + ns] if mounts else ["ip", "netns", "exec", ns])
        p = subprocess.Popen(pre + argv, preexec_fn=g.enter,
                             start_new_session=True, stdout=stdout, stderr=stderr,
                             stdin=stdin, text=True)
        g.pgids.append(p.pid)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=3.0):
        """Stop one process we started, and its process group (socat's children)."""
        if p is None:
            return
        try:
            os.killpg(p.pid, sig)
        except OSError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(5)
        # leftovers of the group (a forked socat child that ignored SIGTERM)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def nsrun(self, ns, argv, timeout, group="tools", check=True):
        g = self.group(group)
        r = subprocess.run(["ip", "netns", "exec", ns] + argv, preexec_fn=g.enter,
                           timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        if check and r.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                      (r.stderr or r.stdout).strip()[-300:]))
        return r

    # --- topology --------------------------------------------------------

    def add_ns(self, name):
        """Create namespace @name as a child of P, so that it gets a TCP
        hash table of its own (net.ipv4.tcp_child_ehash_entries of P)."""
        if self.private_ehash:
            run(["nsenter", "--net=/run/netns/" + self.ns_p, "ip", "netns", "add", name], 10)
        else:
            run(["ip", "netns", "add", name], 10)
        run(["ip", "-n", name, "link", "set", "lo", "up"], 10)

    def fresh_scan_ns(self):
        subprocess.run(["ip", "netns", "del", self.ns_s], stderr=subprocess.DEVNULL, timeout=10)
        self.add_ns(self.ns_s)

    def setup(self):
        g, h = self.ns_g, self.ns_h
        # Without a private hash table, /proc/net/tcp walks the sockets of
        # every namespace on the machine (other users' included) and the
        # scan costs would measure the neighbours; a VM guest has its own.
        run(["ip", "netns", "add", self.ns_p], 10)
        r = run(["ip", "netns", "exec", self.ns_p, "sysctl", "-qw",
                 "net.ipv4.tcp_child_ehash_entries=%d" % EHASH], 10, check=False)
        self.private_ehash = r.returncode == 0
        if not self.private_ehash:
            self.res["notes"].append("net.ipv4.tcp_child_ehash_entries unavailable: the "
                                     "namespaces share the machine's TCP hash table, /proc "
                                     "parse costs include every other namespace's sockets")
        self.add_ns(g)
        self.add_ns(h)
        run(["ip", "link", "add", "vh", "netns", h, "type", "veth", "peer", "name", "vg",
             "netns", g], 10)
        run(["ip", "-n", g, "addr", "add", EXT + "/30", "dev", "vg"], 10)
        run(["ip", "-n", h, "addr", "add", HOSTIP + "/30", "dev", "vh"], 10)
        for ns, dev in ((g, "vg"), (h, "vh")):
            run(["ip", "-n", ns, "link", "set", dev, "up"], 10)
        run(["ip", "-n", g, "route", "add", "default", "via", HOSTIP], 10)
        # DNAT to 127.0.0.1 arriving on vg is a martian unless route_localnet.
        self.nsrun(g, ["sysctl", "-qw", "net.ipv4.conf.vg.route_localnet=1"], 10)
        # UDP removal is timed by the sender's ICMP port unreachable: not rate-limited
        self.nsrun(g, ["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0",
                       "net.ipv4.icmp_msgs_per_sec=100000"], 10, check=False)
        # Something in G whose /proc/PID/net/tcp we can read at any time.
        self.anchor = self.spawn(["sleep", "3600"], g, "servers")
        self.wait_for(lambda: comm(self.anchor.pid) == "sleep", 5, "anchor in " + g)

    def wait_for(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return True
            time.sleep(0.005)
        raise RuntimeError("timed out waiting for " + what)

    def listening(self):
        """Set of (addr_hex, port) LISTENing in G (IPv4)."""
        out = set()
        with open("/proc/%d/net/tcp" % self.anchor.pid) as f:
            next(f)
            for line in f:
                parts = line.split(None, 4)
                if parts[3] == "0A":
                    a, p = parts[1].split(":")
                    out.add((a, int(p, 16)))
        return out

    def wait_listen(self, addr_hex, port, timeout=10):
        self.wait_for(lambda: (addr_hex, port) in self.listening(), timeout,
                      "listener %s:%d" % (addr_hex, port))

    # --- contenders ------------------------------------------------------

    def fwd_start(self, c, port):
        """Start contender @c for backend port @port; return a handle once it forwards."""
        if c == "direct":
            return None
        if c == "dnat":
            rules = ("table ip phbench {\n chain pre {\n"
                     "  type nat hook prerouting priority dstnat; policy accept;\n"
                     "  ip daddr %s tcp dport %d dnat to 127.0.0.1\n }\n}\n" % (EXT, port))
            path = os.path.join(self.work, "dnat.nft")
            with open(path, "w") as f:
                f.write(rules)
            self.nsrun(self.ns_g, ["nft", "-f", path], 10)
            return "dnat"
        if c == "socat":
            p = self.spawn(["socat", "-d", "-d", "-d",
                            "TCP4-LISTEN:%d,bind=%s,reuseaddr,fork" % (port, EXT),
                            "TCP4:localhost:%d" % port], self.ns_g, "fwd-socat")
            self.wait_listen(EXT_HEX, port, 5)
            return p
        if c == "porthole":
            p = self.porthole_start()
            self.wait_listen(EXT_HEX, port, 5)
            return p
        if c == STEERED:
            p = self.porthole_start(["--steer", str(port)], group="fwd-steered")
            self.wait_for(lambda: '"state":"steered"' in self.api_get_quiet("/ports"), 5,
                          "port %d steered" % port)
            return p
        if c == "ref":
            p = self.spawn([os.path.join(HERE, "ref-agent"), EXT, "1"], self.ns_g, "fwd-ref")
            return p
        if c == "floor":
            p = self.spawn([self.floor_relay, EXT, str(port)], self.ns_g, "fwd-floor")
            self.wait_listen(EXT_HEX, port, 5)
            return p
        if c == FLOOR_UNIX:
            # the service leg is nginx's Unix socket (bench_wrk only)
            p = self.spawn([self.floor_relay, EXT, str(port), "unix:" + self.http_sock],
                           self.ns_g, "fwd-" + FLOOR_UNIX)
            self.wait_listen(EXT_HEX, port, 5)
            return p
        raise ValueError(c)

    def porthole_start(self, extra=(), group="fwd-porthole"):
        logf = open(os.path.join(self.work, "portholed.log"), "a")
        # with the machine's mounts, as in a VM guest: the UDP bind hooks
        # attach to the cgroup v2 hierarchy, which ip netns exec's /sys hides
        p = self.spawn([self.portholed, "--external-addr", EXT] + list(extra), self.ns_g,
                       group, stderr=logf, stdout=logf, mounts=True)
        logf.close()
        return p

    def api_get(self, path):
        """GET @path of the control API (from inside G); the body."""
        return self.nsrun(self.ns_g, ["curl", "-sf", "--max-time", "5",
                                      "http://127.0.0.1:%d%s" % (API_PORT, path)], 10).stdout

    def api_get_quiet(self, path):
        """GET @path, or "" while the API does not answer yet."""
        r = self.nsrun(self.ns_g, ["curl", "-s", "--max-time", "1",
                                   "http://127.0.0.1:%d%s" % (API_PORT, path)], 5, check=False)
        return r.stdout if r.returncode == 0 else ""

    def metric(self, name):
        """(labelled key, value) of the first sample of metric @name, or (None, None)."""
        for line in self.api_get("/metrics").splitlines():
            k, _, v = line.rpartition(" ")
            if k == name or k.startswith(name + "{"):
                return k, float(v)
        return None, None

    def mechanism(self):
        """porthole_discovery_info's labels, e.g. 'mechanism="events",source="bpf"'."""
        k, _ = self.metric("porthole_discovery_info")
        return k[k.index("{") + 1:-1] if k and "{" in k else "?"

    def fwd_stop(self, c, h):
        if c == "dnat":
            self.nsrun(self.ns_g, ["nft", "delete", "table", "ip", "phbench"], 10, check=False)
        elif h is not None:
            self.stop(h)
            self.group("fwd-" + c).kill()

    def fwd_group(self, c):
        return (self.group("fwd-" + c)
                if c in ("socat", "porthole", "ref", "floor", FLOOR_UNIX, STEERED) else None)

    # --- profiling: flame graphs of the request runs -----------------------

    def profiling(self):
        """Profile after the measured runs? PHB_PERF=1/0 forces it; by
        default full runs do and quick runs do not."""
        env = os.environ.get("PHB_PERF")
        want = env == "1" if env in ("0", "1") else self.cfg.get("profile", False)
        if want and not shutil.which("perf"):
            self.res["notes"].append("profiles: perf not installed; skipped")
            return False
        return want

    def bench_profile(self):
        """One extra wrk run per mode for direct and porthole, under
        `perf record -a -g` (every CPU: load, server, forwarder, softirq,
        idle). Not part of the measured repetitions: sampling costs CPU.
        Writes perf/<mode>-<contender>.svg and the CPU per request by role
        and by the forwarder's system calls (bench/flame.py)."""
        window = max(2, self.cfg["wrk_t"] - 2)
        outdir = os.path.join(self.outdir, "perf")
        os.makedirs(outdir, exist_ok=True)
        out = {}
        for mode in ("keepalive", "close"):
            for c in ("direct", "porthole"):
                if c not in self.contenders:
                    continue
                try:
                    out.setdefault(mode, {})[c] = self.profile_once(c, mode, window, outdir)
                except Exception as e:
                    out.setdefault(mode, {})[c] = dict(error=str(e)[:300])
                log("profile %-9s %-8s: %s" % (mode, c, out[mode][c].get("error") or
                                               "%.0f req/s" % out[mode][c]["rps"]))
        self.res["profile"] = dict(window_s=window, runs=out)

    def profile_once(self, c, mode, window, outdir):
        port = P_HTTP_DIRECT if c == "direct" else P_HTTP_FWD
        data = os.path.join(self.work, "perf-%s-%s.data" % (mode, c))
        h = load = None
        try:
            h = self.fwd_start(c, port)
            load = self.spawn(wrk_argv(mode, port, window + 2), self.ns_h, "load",
                              stdout=subprocess.PIPE)
            # the window sits inside wrk's run: no ramp-up, no tail
            time.sleep(1)
            run(["perf", "record", "-q", "-a", "-g", "-F", "999", "-o", data, "--",
                 "sleep", str(window)], window + 30)
            text, _ = load.communicate(timeout=window + 22)
            res = parse_wrk(text or "")
            if res is None:
                raise RuntimeError("wrk printed no result")
            r = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,period,ip,sym"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=300)
            folded = flame.fold(r.stdout)
            if not folded:
                raise RuntimeError("perf recorded no samples")
            name = "%s-%s.svg" % (mode, c)
            label = "keep-alive" if mode == "keepalive" else "connection per request"
            with open(os.path.join(outdir, name), "w") as fh:
                fh.write(flame.svg(folded, "%s, %s: %.0f requests/s, whole machine, %d s"
                                   % (label, c, res["rps"], window)))
            cost = flame.costs(folded, res["rps"] * window)
            return dict(rps=res["rps"], svg="perf/" + name, total_ms=cost["total_ms"],
                        roles=cost["roles"], syscalls=cost["syscalls"][:10])
        finally:
            self.stop(load)
            self.fwd_stop(c, h)
            try:
                os.unlink(data)
            except OSError:
                pass
            time.sleep(0.2)

    # --- 1. bulk throughput ---------------------------------------------

    def bench_iperf(self):
        t = self.cfg["iperf_t"]
        configs = [("fwd", 1), ("fwd", 8), ("rev", 1), ("rev", 8)]
        out = {}
        for rep in range(self.cfg["iperf_reps"]):
            for direction, streams in configs:
                key = "%s-%d" % (direction, streams)
                for c in self.contenders + [STEERED]:
                    r = self.iperf_once(c, direction, streams, t)
                    out.setdefault(key, {}).setdefault(c, []).append(r)
                    log("iperf %s %-8s rep %d: %s" % (key, c, rep, fmt_iperf(r)))
        self.res["iperf"] = out

    def iperf_once(self, c, direction, streams, t):
        port = P_IPERF_DIRECT if c == "direct" else P_IPERF_FWD
        bind = "0.0.0.0" if c == "direct" else "127.0.0.1"
        srv = self.spawn(["iperf3", "-s", "-1", "-B", bind, "-p", str(port)], self.ns_g,
                         "servers")
        h = None
        try:
            self.wait_listen(ANY_HEX if c == "direct" else LO_HEX, port)
            h = self.fwd_start(c, port)
            g = self.fwd_group(c)
            cpu0 = g.cpu_us() if g else None
            argv = ["iperf3", "-c", EXT, "-p", str(port), "-t", str(t), "-P", str(streams),
                    "-J", "--connect-timeout", "3000"]
            if direction == "rev":
                argv.append("-R")
            r = self.nsrun(self.ns_h, argv, t + 20, group="load", check=False)
            cpu1 = g.cpu_us() if g else None
            j = json.loads(r.stdout) if r.stdout.strip() else {}
            if "error" in j or "end" not in j:
                return dict(error=j.get("error", r.stderr.strip()[-200:] or "no output"))
            s = j["end"]["sum_received"]
            res = dict(gbps=s["bits_per_second"] / 1e9, bytes=s["bytes"])
            if g is not None and s["bytes"] > 0:
                res["cpu_s"] = (cpu1 - cpu0) / 1e6
                res["cpu_s_per_gb"] = res["cpu_s"] / (s["bytes"] / 1e9)
            return res
        except Exception as e:  # one failed run must not end the suite
            return dict(error=str(e)[:300])
        finally:
            self.fwd_stop(c, h)
            self.stop(srv)

    # --- 1b. UDP datagrams (iperf3 -u) ------------------------------------

    def udp_bound(self, addr_hex, port):
        """True if a UDP socket in G is bound to addr_hex:port (IPv4)."""
        with open("/proc/%d/net/udp" % self.anchor.pid) as f:
            next(f)
            for line in f:
                a, p = line.split(None, 2)[1].split(":")
                if a == addr_hex and int(p, 16) == port:
                    return True
        return False

    def bench_udp(self):
        """iperf3 -u, 64 B and 1,400 B datagrams, 1 and 8 clients (-P: one
        UDP socket, so one client address, per stream), direct vs nftables
        DNAT vs porthole, interleaved. Two kinds of run: "max" (-b 0, the
        sender as fast as it can: datagrams/s delivered) and "paced" (a rate
        every contender should carry, UDP_PACED total: loss).

        iperf3's server makes its UDP socket only when a test starts, one
        round trip (tens of µs on this veth) before the client's first
        datagram; portholed learns of the bind from its cgroup hook within
        a fraction of a millisecond (bench_detect's UDP rows), still later
        than that datagram, which would be refused: so a placeholder socket (SO_REUSEADDR, unconnected, 127.0.0.1:P_UDP_FWD)
        is bound for the whole step, which gets the port exposed; iperf3's
        own sockets, bound later, sit before it in the kernel's lookup chain
        and take every datagram. It is there for every contender alike.

        floor: bench/floor_udp, the least a userspace UDP relay can do (with
        bench/floor_relay for iperf3's TCP control connection); a yardstick
        telling porthole's cost from relaying's, run before porthole in each
        round."""
        contenders = [c for c in ("direct", "dnat") if c in self.contenders]
        if all(os.access(x, os.X_OK) for x in (self.floor_relay, self.floor_udp)):
            contenders.append("floor")
        else:
            self.res["notes"].append("UDP floor relay: %s not built (make bench-tools); its "
                                     "rows are missing" % self.floor_udp)
        if "porthole" in self.contenders:
            contenders.append("porthole")
        hold = self.spawn(["python3", "-c",
                           "import socket,time\n"
                           "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                           "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                           "s.bind(('127.0.0.1',%d))\n"
                           "time.sleep(3600)\n" % P_UDP_FWD], self.ns_g, "servers")
        t = self.cfg["udp_t"]
        out = {}
        try:
            self.wait_for(lambda: self.udp_bound(LO_HEX, P_UDP_FWD), 5, "UDP placeholder")
            for rep in range(self.cfg["udp_reps"]):
                for size, clients in UDP_CONFIGS:
                    for kind in ("max", "paced"):
                        key = "%s-%d-%d" % (kind, size, clients)
                        for c in contenders:
                            r = self.udp_once(c, size, clients, kind, t)
                            out.setdefault(key, {}).setdefault(c, []).append(r)
                            log("udp %-13s %-8s rep %d: %s" % (key, c, rep, fmt_udp(r)))
        finally:
            self.stop(hold)
        self.res["udp"] = dict(runs=out, paced_dgrams_s=UDP_PACED, seconds=t)

    def udp_fwd_start(self, c, port):
        if c == "dnat":
            rules = ("table ip phbench {\n chain pre {\n"
                     "  type nat hook prerouting priority dstnat; policy accept;\n"
                     "  ip daddr %s tcp dport %d dnat to 127.0.0.1\n"
                     "  ip daddr %s udp dport %d dnat to 127.0.0.1\n }\n}\n"
                     % (EXT, port, EXT, port))
            path = os.path.join(self.work, "dnat.nft")
            with open(path, "w") as f:
                f.write(rules)
            self.nsrun(self.ns_g, ["nft", "-f", path], 10)
            return "dnat"
        if c == "porthole":
            p = self.porthole_start()
            self.wait_listen(EXT_HEX, port, 5)
            self.wait_for(lambda: self.udp_bound(EXT_HEX, port), 5, "porthole UDP " + str(port))
            return p
        if c == "floor":
            # the TCP relay for the control connection; fwd_stop's group
            # kill ends the UDP one with it
            p = self.fwd_start(c, port)
            self.spawn([self.floor_udp, EXT, str(port)], self.ns_g, "fwd-floor")
            self.wait_for(lambda: self.udp_bound(EXT_HEX, port), 5, "floor UDP " + str(port))
            return p
        return self.fwd_start(c, port)

    def udp_once(self, c, size, clients, kind, t):
        port = P_UDP_DIRECT if c == "direct" else P_UDP_FWD
        bind = "0.0.0.0" if c == "direct" else "127.0.0.1"
        srv = self.spawn(["iperf3", "-s", "-1", "-B", bind, "-p", str(port)], self.ns_g,
                         "servers")
        h = None
        try:
            self.wait_listen(ANY_HEX if c == "direct" else LO_HEX, port)
            h = self.udp_fwd_start(c, port)
            g = self.fwd_group(c)
            # -b is per stream
            rate = "0" if kind == "max" else str(UDP_PACED * size * 8 // clients)
            argv = ["iperf3", "-c", EXT, "-p", str(port), "-u", "-l", str(size), "-b", rate,
                    "-t", str(t), "-P", str(clients), "-J", "--connect-timeout", "3000"]
            cpu0 = g.cpu_us() if g else None
            r = self.nsrun(self.ns_h, argv, t + 20, group="load", check=False)
            cpu1 = g.cpu_us() if g else None
            j = json.loads(r.stdout) if r.stdout.strip() else {}
            if "error" in j or "end" not in j:
                return dict(error=j.get("error", r.stderr.strip()[-200:] or "no output"))
            s = j["end"]["sum_received"]
            sent = j["end"]["sum_sent"]["packets"]
            lost = s["lost_packets"]
            secs = s["seconds"] or t
            res = dict(sent=sent, lost=lost, loss_pct=100.0 * lost / sent if sent else 0.0,
                       dgrams_s=(s["packets"] - lost) / secs, seconds=secs)
            if g is not None and s["packets"] > lost:
                res["cpu_s"] = (cpu1 - cpu0) / 1e6
                res["cpu_us_per_dgram"] = (cpu1 - cpu0) / (s["packets"] - lost)
            return res
        except Exception as e:  # one failed run must not end the suite
            return dict(error=str(e)[:300])
        finally:
            self.fwd_stop(c, h)
            self.stop(srv)

    # --- 2. short requests (nginx + wrk) -----------------------------------

    def nginx_start(self):
        conf = os.path.join(self.work, "nginx.conf")
        os.makedirs(os.path.join(self.work, "nginx"), exist_ok=True)
        with open(conf, "w") as f:
            f.write("""daemon off;
worker_processes 1;
pid %(w)s/nginx.pid;
error_log %(w)s/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    client_body_temp_path %(w)s/nginx/body;
    proxy_temp_path %(w)s/nginx/proxy;
    fastcgi_temp_path %(w)s/nginx/fastcgi;
    uwsgi_temp_path %(w)s/nginx/uwsgi;
    scgi_temp_path %(w)s/nginx/scgi;
    default_type text/plain;
    server { listen 0.0.0.0:%(d)d backlog=4096; location / { return 200 "%(b)s"; } }
    server { listen 127.0.0.1:%(f)d backlog=4096; location / { return 200 "%(b)s"; } }
    server { listen unix:%(u)s backlog=4096; location / { return 200 "%(b)s"; } }
}
""" % dict(w=self.work, d=P_HTTP_DIRECT, f=P_HTTP_FWD, u=self.http_sock,
           b=BODY.replace("\n", "\\n")))
        self.nginx = self.spawn(["nginx", "-p", self.work, "-c", conf], self.ns_g, "servers")
        self.wait_listen(ANY_HEX, P_HTTP_DIRECT)
        self.wait_listen(LO_HEX, P_HTTP_FWD)
        self.wait_for(lambda: os.path.exists(self.http_sock), 10, "nginx " + self.http_sock)

    def bench_wrk(self):
        # floor: bench/floor_relay, the least a userspace relay can do; a
        # yardstick that tells porthole's cost from relaying's, not a target.
        # floor-unix: the same relay with a Unix service leg, the upper
        # bound of issue 19 part 2; a yardstick too
        extra = [STEERED]
        if os.access(self.floor_relay, os.X_OK):
            extra = ["floor", FLOOR_UNIX, STEERED]
        else:
            self.res["notes"].append("floor relay: %s not built (make bench-tools); its rows "
                                     "are missing" % self.floor_relay)
        self.nginx_start()
        t = self.cfg["wrk_t"]
        out = {}
        try:
            for rep in range(self.cfg["wrk_reps"]):
                for mode in ("keepalive", "close"):
                    for c in self.contenders + extra:
                        r = self.wrk_once(c, mode, t)
                        out.setdefault(mode, {}).setdefault(c, []).append(r)
                        log("wrk %-9s %-8s rep %d: %s" % (mode, c, rep, fmt_wrk(r)))
            if self.profiling():
                self.bench_profile()
        finally:
            self.stop(self.nginx)
        self.res["wrk"] = out

    def wrk_once(self, c, mode, t):
        port = P_HTTP_DIRECT if c == "direct" else P_HTTP_FWD
        h = None
        try:
            h = self.fwd_start(c, port)
            g = self.fwd_group(c)
            # Where the machine's CPU goes during the run: the forwarder,
            # the server (nginx), the load generator (wrk), and softirq
            # work charged to none of them (needs the cgroups).
            roles = [("fwd", g)]
            if self.cgroot:
                roles += [("server", self.group("servers")), ("load", self.group("load"))]
            cpu0 = [x.cpu_us() if x else None for _, x in roles]
            m0 = machine_cpu()
            r = self.nsrun(self.ns_h, wrk_argv(mode, port, t) + ["--latency"], t + 20,
                           group="load", check=False)
            m1 = machine_cpu()
            cpu1 = [x.cpu_us() if x else None for _, x in roles]
            res = parse_wrk(r.stdout)
            if res is None:
                return dict(error=(r.stderr or r.stdout).strip()[-200:] or "no output")
            if g is not None:
                res["cpu_s"] = (cpu1[0] - cpu0[0]) / 1e6
            for (name, x), a, b in zip(roles[1:], cpu0[1:], cpu1[1:]):
                res[name + "_cpu_s"] = (b - a) / 1e6
            tick = os.sysconf("SC_CLK_TCK")
            busy, idle = m1[0] - m0[0], m1[1] - m0[1]
            res["machine_busy_s"] = busy / tick
            res["machine_softirq_s"] = (m1[2] - m0[2]) / tick
            res["machine_idle_frac"] = idle / (busy + idle) if busy + idle else None
            return res
        except Exception as e:
            return dict(error=str(e)[:300])
        finally:
            self.fwd_stop(c, h)
            # connection-per-request leaves TIME_WAIT; let the next run start even
            time.sleep(0.2)

    # --- 3. discovery ------------------------------------------------------

    def bench_scan(self):
        out = {}
        if not os.access(self.scan_cost, os.X_OK):
            self.res["notes"].append("scan cost: %s not built (make bench-tools); skipped"
                                     % self.scan_cost)
            return
        for n in self.cfg["scan_sizes"]:
            try:
                self.fresh_scan_ns()   # no TIME_WAIT left over from the last size
                r = self.nsrun(self.ns_s, [self.scan_cost, "-c", str(n), "-i", "200", "-t",
                                           str(self.cfg["scan_ms"])], 180)
                out[str(n)] = json.loads(r.stdout)
            except Exception as e:
                out[str(n)] = dict(error=str(e)[:300])
            log("scan cost %d sockets: %s" % (n, fmt_scan(out[str(n)])))
        self.res["scan"] = out

    def restart_race(self, base, trials=30):
        """Issue 17's restart race: a service closes 127.0.0.1:P and binds
        0.0.0.0:P 5 ms later (a dev server restarted with --host 0.0.0.0);
        it wins when porthole's EXTERNAL:P is gone by then. Wins of @trials."""
        code = ("import socket, time\n"
                "ok = 0\n"
                "for i in range(%d):\n"
                "    p = %d + i\n"
                "    s = socket.socket(); s.bind(('127.0.0.1', p)); s.listen()\n"
                "    time.sleep(0.05)\n"
                "    s.close(); time.sleep(0.005)\n"
                "    t = socket.socket()\n"
                "    try:\n"
                "        t.bind(('0.0.0.0', p)); t.listen(); ok += 1\n"
                "    except OSError:\n"
                "        pass\n"
                "    t.close()\n"
                "print(ok)\n" % (trials, base))
        r = self.nsrun(self.ns_g, ["python3", "-c", code], trials + 30)
        return dict(wins=int(r.stdout.strip().splitlines()[-1]), trials=trials)

    def bench_detect(self):
        out = {}
        gpath = "/run/netns/" + self.ns_g
        tmo = 5000
        # porthole with its default discovery (listen events where the
        # kernel allows) and, next to it in the same run, polling (the
        # baseline: what porthole did before listen events)
        n = self.cfg["detect_trials"]
        for name, extra, base in (("porthole", [], P_DETECT_PH),
                                  ("porthole_poll", ["--discovery", "poll"], P_DETECT_PH + n)):
            if "porthole" in self.skip:
                break
            h = self.porthole_start(extra)
            try:
                self.wait_listen(ANY_HEX, API_PORT, 5)
                mech = self.mechanism()
                r = self.nsrun(self.ns_h, [self.benchtool, "detect", gpath, EXT, str(base),
                                           str(n), "100", str(tmo), "removal"],
                               n * 0.7 + 60)
                out[name] = parse_detect(r.stdout)
                out[name]["mechanism"] = mech
                # UDP: a bound socket, found by its bind (cgroup hook) with
                # events; removal seen as the sender's ICMP port unreachable
                _, ue = self.metric("porthole_discovery_udp_events")
                r = self.nsrun(self.ns_h, [self.benchtool, "detect", gpath, EXT,
                                           str(base - P_DETECT_PH + P_DETECT_UDP), str(n),
                                           "100", str(tmo), "udp,removal"], n * 0.7 + 60)
                out[name + "_udp"] = parse_detect(r.stdout)
                out[name + "_udp"]["mechanism"] = mech + (",udp_events" if ue else "")
                out[name]["restart_race"] = self.restart_race(
                    P_RACE + (0 if name == "porthole" else 100))
            except Exception as e:
                out[name] = dict(error=str(e)[:300])
            finally:
                self.fwd_stop("porthole", h)
            log("detect %s: %s" % (name, fmt_detect(out[name])))
            if name + "_udp" in out:
                log("detect %s_udp: %s" % (name, fmt_detect(out[name + "_udp"])))
        # Reference: 1 s scan + socat spawn. Trials run in parallel processes
        # (each with its own ports and a random 0-1 s start) to fit the time.
        h = self.fwd_start("ref", 0)
        try:
            time.sleep(0.5)
            k = self.cfg["ref_parallel"]
            per = (self.cfg["ref_trials"] + k - 1) // k
            ps = []
            for i in range(k):
                ps.append(self.spawn([self.benchtool, "detect", gpath, EXT,
                                      str(P_DETECT_REF + 100 * i), str(per), "1000", str(tmo)],
                                     self.ns_h, "load", stdout=subprocess.PIPE))
            text = ""
            deadline = time.time() + per * (tmo / 1000 + 1.2) + 30
            for p in ps:
                try:
                    o, _ = p.communicate(timeout=max(1, deadline - time.time()))
                    text += o
                except subprocess.TimeoutExpired:
                    self.stop(p)
            out["reference"] = parse_detect(text)
        except Exception as e:
            out["reference"] = dict(error=str(e)[:300])
        finally:
            self.fwd_stop("ref", h)
        log("detect reference: %s" % fmt_detect(out["reference"]))
        self.res["detect"] = out

    # --- 4. snapshot path --------------------------------------------------

    def echo_start(self):
        p = self.spawn([self.benchtool, "echo", "127.0.0.1", str(P_ECHO), "900"], self.ns_g,
                       "servers")
        self.wait_listen(LO_HEX, P_ECHO)
        return p

    def bench_snapshot(self):
        if "porthole" in self.skip:
            return
        echo = self.echo_start()
        h = None
        try:
            h = self.fwd_start("porthole", P_ECHO)
            n = self.cfg["snapshot_trials"]
            r = self.nsrun(self.ns_h, [self.benchtool, "snapshot", EXT, str(API_PORT), EXT,
                                       str(P_ECHO), str(n)], n * 12 + 20, group="load")
            trials = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
            self.res["snapshot"] = dict(trials=trials)
            log("snapshot: %s" % fmt_snapshot(trials))
        except Exception as e:
            self.res["snapshot"] = dict(error=str(e)[:300])
            log("snapshot: error %s" % e)
        finally:
            self.fwd_stop("porthole", h)
            self.stop(echo)

    # --- 5. memory --------------------------------------------------------

    def group_mem(self, c):
        g = self.fwd_group(c)
        rss = pss = n = 0
        for pid in g.pids():
            m = mem_kb(pid)
            if m:
                rss += m[0]
                pss += m[1]
                n += 1
        return dict(rss_kb=rss, pss_kb=pss, procs=n)

    def bench_memory(self):
        out = {}
        echo = self.echo_start()
        try:
            for c in ("socat", "porthole"):
                if c in self.skip:
                    continue
                h = None
                try:
                    h = self.fwd_start(c, P_ECHO)
                    for n in self.cfg["mem_conns"]:
                        out.setdefault(c, {})[str(n)] = self.mem_with(c, n)
                        log("memory %-8s %5d conns: %s" % (c, n, fmt_mem(out[c][str(n)])))
                except Exception as e:
                    out.setdefault(c, {})["error"] = str(e)[:300]
                finally:
                    self.fwd_stop(c, h)
        finally:
            self.stop(echo)
        self.res["memory"] = out

    def mem_with(self, c, n):
        hold = None
        if n:
            hold = self.spawn([self.benchtool, "hold", EXT, str(P_ECHO), str(n), "120"],
                              self.ns_h, "load", stdout=subprocess.PIPE, stdin=subprocess.PIPE)
            line = read_line(hold, 60)
            if not line.startswith("ready"):
                self.stop(hold)
                return dict(error="hold: " + (line.strip() or "no answer"))
        time.sleep(0.5)     # let forked children settle (socat) before reading
        m = self.group_mem(c)
        m["conns"] = n
        if hold:
            self.stop(hold)
            time.sleep(0.3)
        return m

    # --- upgrade: the pause of an in-place upgrade ---------------------------

    def bench_upgrade(self):
        """1,000 relayed connections (a few ping-ponging one byte, the rest
        sending now and then), N upgrades (POST /daemon/upgrade): per upgrade
        the longest time no echo came back on any probe while it ran; the
        baseline is the same measure over windows of the same length without
        an upgrade, in the same run."""
        if "porthole" in self.skip:
            return
        n_up, conns, probes = self.cfg["upgrades"], self.cfg["upgrade_conns"], 8
        echo = self.echo_start()
        h = load = None
        out = os.path.join(self.work, "upgrade_load.json")
        try:
            h = self.fwd_start("porthole", P_ECHO)
            load = self.spawn([sys.executable, os.path.join(HERE, "upgrade_load.py"), EXT,
                               str(P_ECHO), str(conns), str(probes), out],
                              self.ns_h, "load", stdout=subprocess.PIPE)
            if not read_line(load, 60).startswith("ready"):
                raise RuntimeError("upgrade_load: no connections")
            time.sleep(1)
            windows, base, answers = [], [], []
            for i in range(n_up):
                t0 = time.monotonic()
                r = self.nsrun(self.ns_g, ["curl", "-s", "--max-time", "30", "-X", "POST",
                                           "http://127.0.0.1:%d/daemon/upgrade" % API_PORT],
                               40, check=False)
                t1 = time.monotonic()
                windows.append((t0, t1))
                answers.append(r.stdout.strip()[:100])
                time.sleep(0.5)
                # a baseline window of the same length, no upgrade in it
                b0 = time.monotonic()
                time.sleep(t1 - t0)
                base.append((b0, time.monotonic()))
                time.sleep(0.3)
            self.stop(load, signal.SIGTERM, 10)
            load = None
            with open(out) as f:
                got = json.load(f)

            def worst(w0, w1):
                g = [min(e, w1) - max(s, w0) for s, e in got["gaps"] if e > w0 and s < w1]
                return round(max(g) * 1000, 2) if g else 0.0
            pauses = sorted(worst(a, b) for a, b in windows)
            quiet = sorted(worst(a, b) for a, b in base)
            ok = sum('"pid"' in a for a in answers)
            self.res["upgrade"] = dict(
                upgrades=n_up, succeeded=ok, connections=conns, probes=probes,
                pause_ms=pauses, baseline_ms=quiet,
                pause_p50_ms=pctl(pauses, 50), pause_p99_ms=pctl(pauses, 99),
                baseline_p50_ms=pctl(quiet, 50), baseline_p99_ms=pctl(quiet, 99),
                upgrade_ms_p50=pctl(sorted(round((b - a) * 1000, 1) for a, b in windows), 50),
                echoes=got["echoes"], errors=got["errors"], target_ms=50)
            log("upgrade: %d/%d with %d connections: longest stall p50 %.1f ms p99 %.1f ms "
                "(baseline p50 %.1f p99 %.1f), %d connection errors" %
                (ok, n_up, conns, pctl(pauses, 50), pctl(pauses, 99), pctl(quiet, 50),
                 pctl(quiet, 99), got["errors"]))
        except Exception as e:
            self.res["upgrade"] = dict(error=str(e)[:300])
            log("upgrade: error %s" % e)
        finally:
            if load:
                self.stop(load)
            self.fwd_stop("porthole", h)
            self.stop(echo)

    # --- 6. scale ---------------------------------------------------------

    def bench_scale(self):
        out = {}
        for n in self.cfg["scale_ports"]:
            for c in ("porthole", "porthole_poll", "ref"):
                if c.split("_")[0] in self.skip:
                    continue
                r = self.scale_once(c, n)
                out.setdefault(str(n), {})[c] = r
                log("scale %-8s %4d ports: %s" % (c, n, fmt_scale(r)))
        if os.access(self.scan_cost, os.X_OK):
            n = max(self.cfg["scale_ports"])
            try:
                self.fresh_scan_ns()
                r = self.nsrun(self.ns_s, [self.scan_cost, "-c", "0", "-l", str(n), "-i", "200",
                                           "-t", str(self.cfg["scan_ms"]), "-b",
                                           str(P_SCALE)], 120)
                out["scan_%d" % n] = json.loads(r.stdout)
            except Exception as e:
                out["scan_%d" % n] = dict(error=str(e)[:300])
            log("scan cost %d listeners: %s" % (n, fmt_scan(out["scan_%d" % n])))
        self.res["scale"] = out

    def scale_once(self, c, n):
        lst = self.spawn([self.benchtool, "listen", "127.0.0.1", str(P_SCALE), str(n), "600"],
                         self.ns_g, "servers", stdout=subprocess.PIPE)
        h = None
        res = {}
        try:
            if not read_line(lst, 20).startswith("ready"):
                return dict(error="listeners did not start")
            want = {(EXT_HEX, P_SCALE + i) for i in range(n)}
            t0 = time.time()
            h = self.fwd_start(c, 0) if c == "ref" else self.porthole_start(
                ["--discovery", "poll"] if c == "porthole_poll" else [])
            deadline = t0 + 60
            while time.time() < deadline:
                if want <= self.listening():
                    break
                time.sleep(0.01)
            else:
                res["error"] = "not all ports exposed after 60 s"
            res["setup_s"] = time.time() - t0
            r = self.nsrun(self.ns_h, [self.benchtool, "probe", EXT, str(P_SCALE), str(n),
                                       "1000"], n * 1.1 + 10, group="load")
            res["reachable"] = int(r.stdout.strip() or 0)
            time.sleep(1.0)     # probes done, forked socat children gone
            res.update(self.group_mem(c.split("_")[0]))
            if c != "ref":
                res["mechanism"] = self.mechanism()
            g = self.fwd_group(c.split("_")[0])
            cpu0, t1 = g.cpu_us(), time.time()
            time.sleep(self.cfg["idle_s"])
            res["idle_cpu_pct"] = 100.0 * (g.cpu_us() - cpu0) / 1e6 / (time.time() - t1)
            res["ports"] = n
            return res
        except Exception as e:
            res["error"] = str(e)[:300]
            return res
        finally:
            self.fwd_stop(c.split("_")[0], h)
            self.stop(lst)

    # --- 7. burst ---------------------------------------------------------

    def bench_burst(self):
        """N listeners opened at once in G: time from the first listen() to
        the last port forwarded (the daemon's own since time in /ports), and
        the scans it took; events (default) and polling."""
        out = {}
        if "porthole" in self.skip:
            return
        for name, extra, base in (("porthole", [], P_BURST),
                                  ("porthole_poll", ["--discovery", "poll"], P_BURST_POLL)):
            out[name] = self.burst_once(extra, base)
            log("burst %s: %s" % (name, fmt_burst(out[name])))
        self.res["burst"] = out

    def burst_once(self, extra, base):
        n = self.cfg["burst_n"]
        h = lst = None
        res = dict(ports=n)
        try:
            h = self.porthole_start(extra)
            self.wait_listen(ANY_HEX, API_PORT, 5)
            time.sleep(0.3)
            res["mechanism"] = self.mechanism()
            _, scans0 = self.metric("porthole_scans_total")
            lst = self.spawn([self.benchtool, "listen", "127.0.0.1", str(base), str(n), "120"],
                             self.ns_g, "servers", stdout=subprocess.PIPE)
            line = read_line(lst, 20).split()
            if len(line) != 3 or line[0] != "ready":
                return dict(error="listeners did not start: %r" % line)
            t0_ms, t1_ms = int(line[1]) / 1000.0, int(line[2]) / 1000.0
            res["listen_spread_ms"] = t1_ms - t0_ms
            deadline = time.time() + 30
            since = []
            while time.time() < deadline:
                ports = json.loads(self.api_get("/ports"))["ports"]
                since = [p.get("since") for p in ports
                         if base <= p["port"] < base + n and p["state"] == "forwarded"]
                if len(since) >= n:
                    break
                time.sleep(0.05)
            else:
                res["error"] = "%d of %d forwarded after 30 s" % (len(since), n)
            _, scans1 = self.metric("porthole_scans_total")
            res["scans"] = int(scans1 - scans0)
            if since:
                last = max(datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%S.%fZ")
                           .replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
                           for x in since if x)
                res["exposed_ms"] = last - t0_ms
            r = self.nsrun(self.ns_h, [self.benchtool, "probe", EXT, str(base), str(n), "1000"],
                           n * 1.1 + 10, group="load")
            res["reachable"] = int(r.stdout.strip() or 0)
            return res
        except Exception as e:
            res["error"] = str(e)[:300]
            return res
        finally:
            if h is not None:
                self.fwd_stop("porthole", h)
            if lst is not None:
                self.stop(lst)

    # --- driver -----------------------------------------------------------

    def versions(self):
        def first(argv):
            try:
                r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=10)
                return (r.stdout.strip().splitlines() or [""])[0]
            except Exception:
                return "?"
        cpu = "?"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        with open("/proc/meminfo") as f:
            mem = f.readline().split()[1]
        v = dict(kernel=platform.release(), cpu=cpu, cpus=os.cpu_count(),
                 mem_gb=round(int(mem) / 1048576, 1), loadavg=os.getloadavg(),
                 iperf3=first(["iperf3", "--version"]), wrk=first(["wrk", "-v"]),
                 socat=first(["sh", "-c", "socat -V | sed -n 2p"]),
                 nginx=first(["nginx", "-v"]), nft=first(["nft", "--version"]),
                 cc=first(["cc", "--version"]))
        if "porthole" not in self.skip:
            v["portholed"] = first([self.portholed, "--version"])
        try:
            v["git"] = first(["git", "-C", ROOT, "describe", "--always", "--dirty"])
        except Exception:
            v["git"] = "?"
        self.res["machine"] = v

    def main(self):
        if not os.access(self.portholed, os.X_OK):
            self.skip["porthole"] = "not built (%s missing)" % self.portholed
            self.contenders.remove("porthole")
            self.res["notes"].append("porthole: " + self.skip["porthole"] +
                                     "; its rows are empty")
            log("porthole skipped: " + self.skip["porthole"])
        if not os.access(self.benchtool, os.X_OK):
            raise RuntimeError("%s not built" % self.benchtool)
        self.res["skip"] = self.skip
        self.res["contenders"] = self.contenders
        self.res["config"] = self.cfg
        self.versions()
        t0 = time.time()
        self.setup()
        # wrk's connection-per-request runs leave tens of thousands of
        # TIME_WAIT sockets in G for a minute: they go last, after everything
        # that parses /proc/net/tcp (reference agent, readiness polls).
        steps = [("scan", self.bench_scan), ("detect", self.bench_detect),
                 ("snapshot", self.bench_snapshot), ("memory", self.bench_memory),
                 ("scale", self.bench_scale), ("burst", self.bench_burst),
                 ("upgrade", self.bench_upgrade),
                 ("iperf", self.bench_iperf), ("udp", self.bench_udp),
                 ("wrk", self.bench_wrk)]
        only = os.environ.get("PHB_ONLY")
        for name, fn in steps:
            if only and name not in only.split(","):
                continue
            ts = time.time()
            try:
                fn()
            except Exception as e:
                self.res["notes"].append("%s failed: %s" % (name, e))
                log("%s failed: %s" % (name, e))
            self.res.setdefault("durations", {})[name] = round(time.time() - ts, 1)
            self.save()
        self.res["duration_s"] = round(time.time() - t0, 1)
        self.save()

    def save(self):
        with open(os.path.join(self.outdir, "results.json"), "w") as f:
            json.dump(self.res, f, indent=1)

    def cleanup(self):
        for p in list(self.procs):
            self.stop(p, signal.SIGKILL, 2)
        for g in self.groups.values():
            g.kill()
        for ns in (self.ns_g, self.ns_h, self.ns_s, self.ns_p):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL, timeout=10)


def read_line(p, timeout):
    """First line of a child's stdout, or "" after @timeout seconds."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline() if r else ""


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def wrk_argv(mode, port, secs):
    """wrk for @secs seconds against EXT:@port: 2 threads, 50 connections,
    keep-alive or (@mode "close") a connection per request."""
    argv = ["wrk", "-t2", "-c50", "-d%ds" % secs, "--timeout", "2s"]
    if mode == "close":
        argv += ["-H", "Connection: close"]
    return argv + ["http://%s:%d/" % (EXT, port)]


def parse_wrk(text):
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        return None
    res = dict(rps=float(rps.group(1)))
    for p in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M)
        res["p%s_ms" % p] = to_ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else None
    errs = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs += sum(int(x) for x in m.groups())
        res["timeouts"] = int(m.group(4))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errs += int(m.group(1))
    res["errors"] = errs
    return res


def parse_detect(text):
    lat, rm, errs, aborted = [], [], [], False
    for line in text.splitlines():
        line = line.strip()
        if line.isdigit():
            lat.append(int(line) / 1000.0)
        elif re.match(r"^\d+ \d+$", line):
            a, b = line.split()
            lat.append(int(a) / 1000.0)
            rm.append(int(b) / 1000.0)
        elif line.startswith("abort"):
            aborted = True
        elif line:
            errs.append(line)
    res = dict(ms=sorted(lat), errors=len(errs), aborted=aborted)
    if errs:
        res["first_error"] = errs[0]
    if lat:
        res["p50_ms"] = pctl(lat, 50)
        res["p99_ms"] = pctl(lat, 99)
        res["max_ms"] = max(lat)
    if rm:
        res["removal_ms"] = sorted(rm)
        res["removal_p50_ms"] = pctl(rm, 50)
        res["removal_p99_ms"] = pctl(rm, 99)
        res["removal_max_ms"] = max(rm)
    return res


def fmt_iperf(r):
    if "error" in r:
        return "error " + r["error"]
    s = "%.2f Gbit/s" % r["gbps"]
    if "cpu_s_per_gb" in r:
        s += ", %.2f CPU-s/GB" % r["cpu_s_per_gb"]
    return s


def fmt_udp(r):
    if "error" in r:
        return "error " + r["error"]
    s = "%.0f dgrams/s, loss %.3f%%" % (r["dgrams_s"], r["loss_pct"])
    if "cpu_us_per_dgram" in r:
        s += ", %.2f CPU-us/dgram" % r["cpu_us_per_dgram"]
    return s


def fmt_wrk(r):
    if "error" in r:
        return "error " + r["error"]
    return "%.0f req/s p50 %.2f ms p99 %.2f ms errors %d" % (r["rps"], r["p50_ms"],
                                                            r["p99_ms"], r["errors"])


def fmt_scan(r):
    if "error" in r:
        return "error " + r["error"]
    return ", ".join("%s %s" % (k, ("%.1f us" % r[k]["median_us"]) if "median_us" in r[k]
                                 else r[k].get("error", "?"))
                     for k in ("sock_diag", "proc_porthole", "proc_reference"))


def fmt_burst(r):
    if "error" in r:
        return "error " + r["error"]
    return "%d listeners exposed %.1f ms after the first listen() in %d scans (%s), reachable %s" % (
        r["ports"], r.get("exposed_ms", -1), r.get("scans", -1), r.get("mechanism"),
        r.get("reachable"))


def fmt_detect(r):
    if "p50_ms" not in r:
        return "error " + str(r.get("error") or r.get("first_error"))
    s = "n=%d p50 %.2f ms p99 %.2f ms errors %d" % (len(r["ms"]), r["p50_ms"], r["p99_ms"],
                                                   r["errors"])
    if "removal_p99_ms" in r:
        s += ", removal p50 %.2f ms p99 %.2f ms" % (r["removal_p50_ms"], r["removal_p99_ms"])
    if "restart_race" in r:
        s += ", restart race %d/%d" % (r["restart_race"]["wins"], r["restart_race"]["trials"])
    if "mechanism" in r:
        s += " (%s)" % r["mechanism"]
    return s


def fmt_snapshot(trials):
    ok = [t for t in trials if t.get("fresh_first_byte_us", -1) >= 0]
    return "%d trials, %d fresh ok, %d quiesced served" % (
        len(trials), len(ok), sum(1 for t in trials if t.get("quiesced_first_byte_us", -1) >= 0))


def fmt_mem(r):
    if "error" in r:
        return "error " + r["error"]
    return "RSS %d kB PSS %d kB in %d procs" % (r["rss_kb"], r["pss_kb"], r["procs"])


def fmt_scale(r):
    if "setup_s" not in r:
        return "error " + r.get("error", "?")
    return "setup %.2f s, reachable %s, PSS %s kB, idle CPU %s%%%s" % (
        r["setup_s"], r.get("reachable"), r.get("pss_kb"),
        "%.2f" % r["idle_cpu_pct"] if "idle_cpu_pct" in r else "?",
        " (" + r["error"] + ")" if "error" in r else "")


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        print("usage: bench.py full|quick", file=sys.stderr)
        return 2
    b = Bench(sys.argv[1])

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        b.main()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
