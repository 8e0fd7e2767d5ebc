#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fdstore_manager.py - a stand-in for systemd's file descriptor store, for the crash tests

Runs a command the way systemd runs a service with Restart=always,
NotifyAccess=main and FileDescriptorStoreMax=N, written from systemd's
documentation only (no porthole code, so the daemon is tested against the
protocol, not against itself):

  sd_notify(3), "FDSTORE=1", "FDSTOREREMOVE=1", "FDNAME=...":
    the service sends datagrams to the AF_UNIX socket named in
    $NOTIFY_SOCKET ("@" = abstract namespace); FDSTORE=1 with SCM_RIGHTS
    descriptors stores them under FDNAME (default "stored"), FDSTOREREMOVE=1
    drops every stored descriptor of that name; a descriptor stored already
    is not stored twice; descriptors beyond FileDescriptorStoreMax= are
    refused (closed); a stored descriptor that reports POLLERR/POLLHUP is
    removed (systemd polls them unless FDPOLL=0).
  systemd.exec(5), NotifyAccess=main: only the main process may send.
  sd_listen_fds(3), sd_listen_fds_with_names(3): on every start the stored
    descriptors are passed at 3, 4, ... with LISTEN_PID=<the service's pid>,
    LISTEN_FDS=<count>, LISTEN_FDNAMES=<names joined by ':'>.
  systemd.service(5), Restart=always, RestartSec=: restart after any exit.

usage: fdstore_manager.py --pidfile F --store-file F [--restart-ms MS]
                          [--store-max N] [--argv-file F] -- CMD ARGS...

--pidfile     written with the service's pid at each start
--store-file  written with "name inode" lines whenever the store changes
--argv-file   if it exists at a (re)start, its lines replace CMD ARGS
SIGTERM: SIGTERM the service, wait for it, exit with its status (1 if it
was killed by a signal). The manager's own log lines go to stderr.
"""
import argparse
import os
import select
import signal
import socket
import struct
import sys
import time


def log(*a):
    print("fdstore_manager:", *a, file=sys.stderr, flush=True)


class Manager:
    def __init__(self, args):
        self.args = args
        self.store = []            # [name, fd, (dev, ino)]
        self.child = 0
        self.stopping = False
        self.starts = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.name = "fdstore-test/%d" % os.getpid()
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        self.restart_at = time.monotonic()

    def write_store(self):
        tmp = self.args.store_file + ".tmp"
        with open(tmp, "w") as f:
            for name, _fd, ident in self.store:
                f.write("%s %d\n" % (name, ident[1]))
        os.replace(tmp, self.args.store_file)

    def remove(self, name):
        keep = []
        for ent in self.store:
            if ent[0] == name:
                os.close(ent[1])
            else:
                keep.append(ent)
        self.store = keep

    def add(self, name, fd):
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if any(e[2] == ident for e in self.store):
            os.close(fd)
            return
        if len(self.store) >= self.args.store_max:
            log("store full, refusing", name)
            os.close(fd)
            return
        self.store.append([name, fd, ident])

    def read_notify(self):
        changed = False
        while True:
            try:
                data, anc, flags, _ = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(253 * 4) + socket.CMSG_SPACE(12))
            except BlockingIOError:
                break
            fds, pid = [], 0
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    n = len(cdata) // 4
                    fds += list(struct.unpack("%di" % n, cdata[:n * 4]))
                elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            if pid != self.child or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                log("message from pid %d ignored (main pid %d)" % (pid, self.child))
                for fd in fds:
                    os.close(fd)
                continue
            kv = {}
            for line in data.decode("ascii", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    kv[k] = v
            name = kv.get("FDNAME", "stored")
            if kv.get("FDSTOREREMOVE") == "1":
                self.remove(name)
                changed = True
            if kv.get("FDSTORE") == "1":
                for fd in fds:
                    self.add(name, fd)
                changed = True
            else:
                for fd in fds:
                    os.close(fd)
        # systemd polls stored descriptors and drops those that hang up
        if self.store:
            p = select.poll()
            for _n, fd, _i in self.store:
                p.register(fd, 0)
            dead = {fd for fd, ev in p.poll(0) if ev & (select.POLLERR | select.POLLHUP)}
            if dead:
                for ent in [e for e in self.store if e[1] in dead]:
                    log("stored descriptor hung up, removed:", ent[0])
                    os.close(ent[1])
                self.store = [e for e in self.store if e[1] not in dead]
                changed = True
        if changed:
            self.write_store()

    def argv(self):
        if self.args.argv_file and os.path.exists(self.args.argv_file):
            with open(self.args.argv_file) as f:
                return [l.rstrip("\n") for l in f if l.strip()]
        return self.args.cmd

    def spawn(self):
        argv = self.argv()
        n = len(self.store)
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")}
        env["NOTIFY_SOCKET"] = "@" + self.name
        fds = [e[1] for e in self.store]
        names = ":".join(e[0] for e in self.store)
        pid = os.fork()
        if pid == 0:
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                hi = [os.dup(fd) for fd in fds]          # out of the way first
                low = 3 + n
                hi = [fcntl_dupfd(fd, low) for fd in hi]
                for i, fd in enumerate(hi):
                    os.dup2(fd, 3 + i, inheritable=True)
                if n:
                    env["LISTEN_PID"] = str(os.getpid())
                    env["LISTEN_FDS"] = str(n)
                    env["LISTEN_FDNAMES"] = names
                os.closerange(3 + n, 65536)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.child = pid
        self.starts += 1
        with open(self.args.pidfile + ".tmp", "w") as f:
            f.write("%d\n" % pid)
        os.replace(self.args.pidfile + ".tmp", self.args.pidfile)
        log("started pid %d with %d stored descriptors (start %d)" % (pid, n, self.starts))

    def run(self):
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGTERM, self.on_term)
        status = 0
        while True:
            timeout = None
            if not self.child and not self.stopping:
                timeout = max(0.0, self.restart_at - time.monotonic())
            r, _, _ = select.select([self.sock, rfd], [], [], timeout)
            if rfd in r:
                try:
                    os.read(rfd, 512)
                except BlockingIOError:
                    pass
            self.read_notify()     # everything it said before it died counts
            if self.child:
                pid, st = os.waitpid(self.child, os.WNOHANG)
                if pid:
                    self.child = 0
                    status = os.waitstatus_to_exitcode(st)
                    log("pid %d exited (%d)" % (pid, status))
                    self.restart_at = time.monotonic() + self.args.restart_ms / 1000
            if self.stopping and not self.child:
                return 1 if status < 0 else status
            if not self.child and not self.stopping and time.monotonic() >= self.restart_at:
                self.spawn()

    def on_term(self, *a):
        self.stopping = True
        if self.child:
            os.kill(self.child, signal.SIGTERM)


def fcntl_dupfd(fd, low):
    import fcntl
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--store-file", required=True)
    ap.add_argument("--argv-file")
    ap.add_argument("--restart-ms", type=int, default=0)
    ap.add_argument("--store-max", type=int, default=4096)
    ap.add_argument("cmd", nargs="+")
    args = ap.parse_args()
    m = Manager(args)
    m.write_store()
    sys.exit(m.run())


if __name__ == "__main__":
    main()
