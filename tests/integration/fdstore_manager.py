#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fdstore_manager.py - a stand-in for systemd v252 running one Type=notify service

systemd cannot run as PID 1 in the test environment, so the crash and
upgrade tests run portholed under this: one service, as systemd v252 (Debian
12's) runs a unit with Type=notify, Restart=always, RestartSec=,
NotifyAccess=, FileDescriptorStoreMax=, KillMode=control-group (the default)
and TimeoutStopSec=. It speaks the protocol (sd_notify(3), sd_listen_fds(3))
and decides what systemd decides, behaviour by behaviour, each written from
the systemd source named next to it ("service.c:4113" is
src/core/service.c at tag v252, line 4113; the same for manager.c, unit.c,
cgroup.c; the functions cited are unchanged up to v252.31, so in Debian's
252.x). No systemd or porthole code is used: the daemon is tested against
the protocol, not against itself.

What is modelled
  notify socket   an abstract AF_UNIX datagram socket with SO_PASSCRED
                  (manager.c:1031); a datagram's sender is the pid of its
                  SCM_CREDENTIALS, one without is ignored, as are a
                  truncated one and one with a NUL inside
                  (manager.c:2443-2589, manager_dispatch_notify_fd()).
  NotifyAccess=   none | main | exec | all (service.c:4045-4077); no control
                  processes run here, so exec admits the main pid only.
  MAINPID=        service.c:4113-4142, 932-958, 157-182 (see on_mainpid()).
  READY=1, STOPPING=1, STATUS=   service.c:4144-4206.
  FDSTORE=1, FDSTOREREMOVE=1, FDNAME=, FDPOLL=0   service.c:4253-4275, 408-516.
  LISTEN_FDS      the store at every start, newest first (service.c:472,
                  1330-1353).
  the main pid's exit, and any other process's   service.c:3470-3825.
  stopping        KillMode=control-group: SIGTERM (then SIGKILL after
                  TimeoutStopSec=) to the main pid and every other process
                  of the unit (unit.c:4545-4662), then Restart=always
                  (service.c:1748-1796, 1811-1906, 2348-2393).
  the unit's cgroup   the processes this manager started and their
                  descendants: the manager is a child subreaper
                  (PR_SET_CHILD_SUBREAPER), so an orphan of the unit becomes
                  its child as it becomes PID 1's under systemd, and a process
                  belongs to the unit when its parent chain reaches the
                  manager. (A process that moves itself to another cgroup
                  would still count here; portholed --cgroup is not for
                  systemd and is not used under this stand-in.)
  ExecStop=       (--exec-stop) service.c:2029-2061 service_enter_stop(): a
                  stop of a running unit (service_stop(), service.c:2580-2617;
                  in start it signals at once) and a running unit whose main
                  process exited cleanly (service_enter_running(), 2083-2109;
                  after a failed one it signals at once, 2090-2091) run it
                  as a control process with $MAINPID in its environment when
                  there is a main pid (service_spawn(), 1556-1558) and arm
                  TimeoutStopSec= (1541); state stop. The main pid's exit
                  there changes nothing (3573-3575, "wait until the operation
                  is done"); the control process's exit, whatever its status
                  (it sets the result; a "-" prefix is not modelled), goes on to stop-sigterm
                  (3772-3774), where KillMode= signals what is left (nothing
                  once the daemon is gone: no SIGKILL); TimeoutStopSec= in
                  stop: "Stopping timed out. Terminating." (3878-3884). The
                  control pid is signalled after the main pid in stop-sigterm and later
                  (unit.c:4596-4613) and its exit there ends the phase when
                  the main pid is gone (service.c:3776-3781). Word expansion
                  (env-util.c:694-760 replace_env_argv()): a word "$VAR" is
                  replaced, "${VAR}" anywhere; a "$VAR" inside a longer word
                  (as in sh -c '... "$MAINPID"') is left to the shell.
  ordering        queued notify messages are handled before a child's exit
                  (manager.c:1045-1047, priority NORMAL-8 against SIGCHLD's
                  NORMAL-7 at manager.c:766), the exit is peeked with WNOWAIT
                  and reaped after its handling (manager.c:2612-2704).
Not modelled: ExecStartPre/Post/StopPost and ExecReload, the ExecStop=
control process's own sandbox (User=, capabilities: it runs as the stand-in's
user), NotifyAccess=exec for it, TimeoutStartSec=, watchdogs, RELOADING=1, socket units, the
start rate limit (the unit sets StartLimitIntervalSec=0), BARRIER=1.

usage: fdstore_manager.py --pidfile F --store-file F [--state-file F]
           [--notify-access all|main|exec|none] [--restart-ms MS]
           [--timeout-stop-ms MS] [--store-max N] [--argv-file F]
           [--exec-stop 'CMD ARGS'] -- CMD ARGS...

--pidfile      the main pid (systemctl show -p MainPID), rewritten when it
               changes (a start, an accepted MAINPID=); it keeps the last one
               while there is none (main_pid in the state file is 0 then)
--store-file   "name inode" lines, rewritten whenever the store changes
--state-file   "key value" lines, rewritten on every change: state, main_pid,
               main_pid_alien, n_restarts, starts, result, refused (messages
               refused by NotifyAccess=), status (STATUS=)
--notify-access  default all, as dist/portholed.service sets
--restart-ms   RestartSec= (default 0); --timeout-stop-ms TimeoutStopSec=
               (default 10000, the unit's 10s)
--argv-file    if it exists at a (re)start, its lines replace CMD ARGS
--exec-stop    ExecStop=, as written in the unit (split with shell quoting)
SIGTERM: "systemctl stop": no restart; ExecStop= runs if given (the unit is
running), then the unit's processes get SIGTERM; the manager exits with the
main process's exit status (1 if a signal killed it).
Log lines (systemd's own wording, prefixed "fdstore_manager: ") go to stderr.
"""
import argparse
import ctypes
import fcntl
import os
import re
import shlex
import select
import signal
import socket
import struct
import sys
import time

NOTIFY_BUFFER_MAX = 4096        # PIPE_BUF (src/basic/def.h:28 at v252)
NOTIFY_FD_MAX = 768             # src/basic/def.h:27 at v252
FDNAME_MAX = 255
PR_SET_CHILD_SUBREAPER = 36

SUCCESS, EXIT_CODE, SIGNAL, CORE_DUMP, TIMEOUT, PROTOCOL = (
    "success", "exit-code", "signal", "core-dump", "timeout", "protocol")


def log(*a):
    print("fdstore_manager:", *a, file=sys.stderr, flush=True)


def proc_stat(pid):
    """(state, ppid) of pid from /proc, or None once it is gone"""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[1])


def pid_is_alive(pid):
    """process-util.c:980-996: exists and is not a zombie"""
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


_PID_RE = re.compile(r"[ \t\n\r]*(?:0[bB]([01]+)|0[oO]([0-7]+)|[ \t\n\r\f\v]*([+-]?)"
                     r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*))")


def parse_pid(s):
    """parse-util.c:47-67 parse_pid(): safe_atolu() (parse-util.c:418-450: leading
    whitespace, "0b"/"0o", then strtoull base 0: sign, "0x", octal "0"), > 0, a pid_t"""
    m = _PID_RE.fullmatch(s)
    if not m:
        return None
    if m.group(1):
        v = int(m.group(1), 2)
    elif m.group(2):
        v = int(m.group(2), 8)
    else:
        d = m.group(4)
        v = int(d, 16) if d[:2] in ("0x", "0X") else int(d, 8) if d[0] == "0" else int(d)
        if m.group(3) == "-" and v:
            return None                             # -ERANGE
    return v if 0 < v <= 0x7fffffff else None


def fdname_is_valid(s):
    """fd names: printable ASCII but ':', at most FDNAME_MAX bytes"""
    return 0 < len(s) <= FDNAME_MAX and all(" " <= c < "\x7f" and c != ":" for c in s)


def sig_name(n):
    try:
        return signal.Signals(n).name[3:]
    except ValueError:
        return str(n)


class Manager:
    def __init__(self, args):
        self.args = args
        self.me = os.getpid()
        self.store = []            # [name, fd, (dev, ino), polled], newest first
        self.state = "dead"
        self.main_pid = 0
        self.main_pid_known = False
        self.main_pid_alien = False
        self.watch = set()         # pids watched besides the cgroup (unit_watch_pid)
        self.control_pid = 0       # the ExecStop= process
        self.result = SUCCESS
        self.forbid_restart = False
        self.exit_status = 0       # of the last main process, for our own exit
        self.last_main = 0         # the main pid when the unit went dead
        self.n_restarts = 0
        self.starts = 0
        self.refused = 0
        self.status_text = ""
        self.timer = None          # monotonic deadline of the state's timer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.name = "fdstore-test/%d" % self.me
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")

    # ---- what the tests read ----------------------------------------------
    def write_files(self):
        def put(path, text):
            with open(path + ".tmp", "w") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
        put(self.args.store_file, "".join("%s %d\n" % (e[0], e[2][1]) for e in self.store))
        if self.main_pid > 0:   # never 0: a test's kill -9 "$(cat pidfile)" must not hit pid 0
            put(self.args.pidfile, "%d\n" % self.main_pid)
        if self.args.state_file:
            put(self.args.state_file,
                "state %s\nmain_pid %d\nmain_pid_alien %d\nn_restarts %d\nstarts %d\n"
                "result %s\nrefused %d\nstatus %s\n" % (
                    self.state, self.main_pid, self.main_pid_alien, self.n_restarts,
                    self.starts, self.result, self.refused, self.status_text))

    def set_state(self, st):
        if st != self.state:
            log("state %s -> %s" % (self.state, st))
        self.state = st

    # ---- the unit's cgroup (see the top) ------------------------------------
    def in_unit(self, pid):
        seen = 0
        while pid > 1 and seen < 4096:
            st = proc_stat(pid)
            if st is None:
                return False
            if st[1] == self.me:
                return True
            pid, seen = st[1], seen + 1
        return False

    def members(self):
        """the unit's live processes: the manager's descendants, read from
        /proc/PID/task/TID/children (fast: systemd signals the main pid and the
        rest of the cgroup within microseconds, and so must this)"""
        out, seen, todo = [], {self.me}, [self.me]
        while todo:
            p = todo.pop()
            try:
                tasks = os.listdir("/proc/%d/task" % p)
            except OSError:
                continue
            for t in tasks:
                try:
                    with open("/proc/%d/task/%s/children" % (p, t)) as f:
                        kids = [int(k) for k in f.read().split()]
                except OSError:
                    continue
                for k in kids:
                    if k not in seen:
                        seen.add(k)
                        todo.append(k)
                        if pid_is_alive(k):   # a zombie has left its cgroup already
                            out.append(k)
        return out

    def unit_by_pid(self, pid):
        """cgroup.c:3569-3597 manager_get_unit_by_pid(), manager.c:2553-2556: the cgroup,
        then the watched pids"""
        if pid == self.me:
            return False
        return self.in_unit(pid) or pid in self.watch

    # ---- the main pid ------------------------------------------------------
    def main_pid_good(self):
        """service.c:1696-1718: 1 alive, 0 dead, -1 unknown"""
        if self.main_pid_known:
            if self.main_pid_alien and self.main_pid > 0:
                return 1 if pid_is_alive(self.main_pid) else 0
            return 1 if self.main_pid > 0 else 0
        return -1

    def set_main_pid(self, pid):
        """service.c:157-182"""
        if pid <= 1 or pid == self.me:
            return
        if self.main_pid == pid and self.main_pid_known:
            return
        if self.main_pid != pid:
            self.watch.discard(self.main_pid)       # service_unwatch_main_pid()
        self.main_pid = pid
        self.main_pid_known = True
        st = proc_stat(pid)
        self.main_pid_alien = not (st is not None and st[1] == self.me)  # pid_is_my_child() == 0
        if self.main_pid_alien:
            log("Supervising process %d which is not our child. "
                "We'll most likely not notice when it exits." % pid)

    def is_suitable_main_pid(self, pid):
        """service.c:932-958: <0 refuse, 0 suspicious (only root may), 1 good"""
        if pid == self.me or pid == 1:
            log("New main PID %d is the manager, refusing." % pid)
            return -1
        if not pid_is_alive(pid):
            log("New main PID %d does not exist or is a zombie." % pid)
            return -1
        if self.unit_by_pid(pid):
            log("New main PID %d belongs to service, we are happy." % pid)
            return 1
        return 0

    def on_mainpid(self, value, uid):
        """service.c:4113-4142: MAINPID= in START, START_POST, RUNNING, RELOAD only; a new
        pid of the unit is taken, another one only from a root sender (uid 0)"""
        if self.state not in ("start", "running"):
            return
        new = parse_pid(value)
        if new is None:
            log("Failed to parse MAINPID= field in notification message, ignoring: MAINPID=%s" % value)
            return
        if self.main_pid_known and new == self.main_pid:
            return
        r = self.is_suitable_main_pid(new)
        if r == 0:
            if uid == 0:
                log("New main PID %d does not belong to service, but we'll accept it as the "
                    "request to change it came from a privileged process." % new)
                r = 1
            else:
                log("New main PID %d does not belong to service, refusing." % new)
        if r > 0:
            old = self.main_pid
            self.set_main_pid(new)
            self.watch.add(new)                     # unit_watch_pid()
            log("main pid %d -> %d (MAINPID=)" % (old, new))

    # ---- notify messages -----------------------------------------------------
    def authorized(self, pid):
        """service.c:4045-4077"""
        na = self.args.notify_access
        if na == "none":
            log("Got notification message from PID %d, but reception is disabled." % pid)
            return False
        if na in ("main", "exec") and pid != self.main_pid:   # no control pid here
            if self.main_pid != 0:
                log("Got notification message from PID %d, but reception only permitted "
                    "for main PID %d" % (pid, self.main_pid))
            elif na == "main":
                log("Got notification message from PID %d, but reception only permitted "
                    "for main PID which is currently not known" % pid)
            else:
                log("Got notification message from PID %d, but reception only permitted "
                    "for main PID and control PID which are currently not known" % pid)
            return False
        return True

    def read_notify(self):
        """manager.c:2443-2589 manager_dispatch_notify_fd(), then service.c:4089-4280"""
        changed = False
        while True:
            try:
                data, anc, flags, _ = self.sock.recvmsg(
                    NOTIFY_BUFFER_MAX + 1,
                    socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * NOTIFY_FD_MAX),
                    socket.MSG_CMSG_CLOEXEC | socket.MSG_TRUNC)
            except BlockingIOError:
                break
            fds, cred = [], None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    n = len(cdata) // 4
                    fds += list(struct.unpack("%di" % n, cdata[:n * 4]))
                elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and len(cdata) == 12:
                    cred = struct.unpack("iII", cdata)
            try:
                if flags & socket.MSG_CTRUNC:
                    log("Got message with truncated control data (too many fds sent?), ignoring.")
                elif cred is None or cred[0] <= 0:
                    log("Received notify message without valid credentials. Ignoring.")
                elif len(data) > NOTIFY_BUFFER_MAX or flags & socket.MSG_TRUNC:
                    log("Received notify message exceeded maximum size. Ignoring.")
                elif len(data) > 1 and b"\0" in data[:-1]:
                    log("Received notify message with embedded NUL bytes. Ignoring.")
                elif not self.unit_by_pid(cred[0]):
                    # manager.c:2553-2583 (the cgroup, then the watched pids)
                    log("Cannot find unit for notify message of PID %d, ignoring." % cred[0])
                else:
                    changed |= self.notify_message(cred[0], cred[1],
                                                   data.rstrip(b"\0").decode("utf-8", "replace"),
                                                   fds)
            finally:
                if fds:
                    # manager.c:2585-2586: whatever was not stored is closed
                    log("Got extra auxiliary fds with notification message, closing them.")
                    for fd in fds:
                        os.close(fd)
        return changed

    def notify_message(self, pid, uid, text, fds):
        """service.c:4089-4280; stored fds are taken out of fds. Return: the store changed"""
        tags = text.split("\n")                     # strv_split_newlines()
        if tags and tags[-1] == "":
            tags.pop()
        if not self.authorized(pid):
            self.refused += 1
            log("(stand-in) the refused message: %s" % ", ".join(tags)[:200])
            return True

        def first(prefix):                          # strv_find_startswith()
            for t in tags:
                if t.startswith(prefix):
                    return t[len(prefix):]
            return None

        e = first("MAINPID=")
        if e is not None:
            self.on_mainpid(e, uid)
        for t in reversed(tags):                    # service.c:4144-4181, last one wins
            if t == "READY=1":
                if self.state == "start":           # start_post (no ExecStartPost) -> running
                    self.set_state("running")
                break
            if t == "STOPPING=1":
                if self.state == "running":         # service.c:2018-2027: no signal sent
                    self.set_state("stop-sigterm")
                    self.timer = time.monotonic() + self.args.timeout_stop_ms / 1000
                break
            if t == "RELOADING=1":
                break
        e = first("STATUS=")
        if e is not None:
            self.status_text = e
        changed = True
        if "FDSTOREREMOVE=1" in tags:               # service.c:4256-4264, before FDSTORE=1
            name = first("FDNAME=")
            if name is None or not fdname_is_valid(name):
                log("FDSTOREREMOVE=1 requested, but no valid file descriptor name passed, ignoring.")
            else:
                self.remove(name)
        elif "FDSTORE=1" in tags:                   # service.c:4265-4275
            name = first("FDNAME=")
            if name is not None and not fdname_is_valid(name):
                log("Passed FDNAME= name is invalid, ignoring.")
                name = None
            self.add_set(fds, name or "stored", "FDPOLL=0" not in tags)
        return changed

    # ---- the fd store ----------------------------------------------------------
    def remove(self, name):
        """service.c:505-516: every stored fd of that name"""
        keep = []
        for ent in self.store:
            if ent[0] == name:
                os.close(ent[1])
            else:
                keep.append(ent)
        self.store = keep

    def add_set(self, fds, name, poll):
        """service.c:422-503; consumes what it stores or refuses from fds (the rest is
        closed by the caller, manager.c:2585-2586)"""
        while fds:
            fd = fds.pop(0)
            if len(self.store) >= self.args.store_max:
                log("Cannot store more fds than FileDescriptorStoreMax=%d, closing remaining." %
                    self.args.store_max)
                os.close(fd)
                return
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if any(e[2] == ident for e in self.store):   # same_fd(): already stored
                os.close(fd)
                continue
            self.store.insert(0, [name, fd, ident, poll])  # LIST_PREPEND

    def poll_store(self, p_events):
        """service.c:408-420: a polled stored fd reporting EPOLLHUP or EPOLLERR is dropped"""
        dead = {fd for fd, ev in p_events if ev & (select.POLLERR | select.POLLHUP)}
        dead &= {e[1] for e in self.store if e[3]}
        if not dead:
            return False
        for ent in [e for e in self.store if e[1] in dead]:
            log("Received %s on stored fd %d (%s), closing." % (
                "EPOLLERR" if dict(p_events)[ent[1]] & select.POLLERR else "EPOLLHUP", ent[1], ent[0]))
            os.close(ent[1])
        self.store = [e for e in self.store if e[1] not in dead]
        return True

    # ---- starting ----------------------------------------------------------------
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
        def pass_store():
            hi = [fcntl_dupfd(os.dup(fd), 3 + n) for fd in fds]   # out of the way first
            for i, fd in enumerate(hi):
                os.dup2(fd, 3 + i, inheritable=True)
            if n:
                env["LISTEN_PID"] = str(os.getpid())
                env["LISTEN_FDS"] = str(n)
                env["LISTEN_FDNAMES"] = names
            os.closerange(3 + n, 65536)

        pid = fork_exec(argv, env, pass_store)
        self.starts += 1
        self.result = SUCCESS
        self.main_pid, self.main_pid_known, self.main_pid_alien = pid, True, False
        self.watch = {pid}
        self.timer = None
        self.set_state("start")
        log("started pid %d with %d stored descriptors (start %d)" % (pid, n, self.starts))

    # ---- stopping: service_enter_stop(), service_enter_signal() and what follows ----
    def expand(self, argv, env):
        """env-util.c:694-760 replace_env_argv(): a word "$VAR" becomes the variable's
        words (none if unset); "${VAR}" is replaced anywhere, "$$" is "$" (536-692)"""
        out = []
        for w in argv:
            if w.startswith("$") and w[1:2] not in ("{", "$"):
                out += env.get(w[1:], "").split()
                continue
            out.append(re.sub(r"\$\$|\$\{([^}]*)\}",
                              lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), ""), w))
        return out

    def enter_stop(self, f):
        """service.c:2029-2061; without ExecStop= straight to stop-sigterm"""
        if self.result == SUCCESS:
            self.result = f
        if not self.args.exec_stop:
            self.enter_signal("stop-sigterm", SUCCESS)
            return
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "MAINPID")}
        if self.main_pid > 0:                               # service.c:1556-1558
            env["MAINPID"] = str(self.main_pid)
        argv = self.expand(shlex.split(self.args.exec_stop), env)
        pid = fork_exec(argv, env, lambda: os.closerange(3, 65536))
        self.control_pid = pid
        self.timer = time.monotonic() + self.args.timeout_stop_ms / 1000   # service.c:1541
        self.set_state("stop")
        log("ExecStop= started: pid %d, MAINPID=%s" % (pid, env.get("MAINPID", "(unset)")))

    def kill_context(self, sig):
        """unit.c:4545-4662, KillMode=control-group: the main pid, then the rest of the
        cgroup but the main pid (with SIGCONT); SIGKILL is logged (log_kill(), unit.c:4499-4516,
        operation_to_signal(), 4518-4543). Return: something worth waiting for: the main
        pid only if it is our child (unit.c:4588), any other process signalled (the
        unified hierarchy, unit.c:4626-4635)"""
        def one(pid):
            if sig == signal.SIGKILL:
                try:
                    with open("/proc/%d/comm" % pid) as f:
                        comm = f.read().strip()
                except OSError:
                    comm = "n/a"
                log("Killing process %d (%s) with signal SIGKILL." % (pid, comm))
            try:
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        wait = False
        if self.main_pid > 0:
            one(self.main_pid)
            wait = not self.main_pid_alien
        if self.control_pid > 0:                    # unit.c:4596-4613
            one(self.control_pid)
            wait = True
        others = [p for p in self.members() if p not in (self.main_pid, self.control_pid)]
        for p in others:
            one(p)
        return wait or bool(others)

    def enter_signal(self, phase, f):
        """service.c:1965-2016 (stop-sigterm, stop-sigkill, final-sigterm, final-sigkill)"""
        if self.result == SUCCESS:
            self.result = f
        sig = signal.SIGKILL if phase.endswith("sigkill") else signal.SIGTERM
        if self.kill_context(sig):
            self.timer = time.monotonic() + self.args.timeout_stop_ms / 1000
            self.set_state(phase)
        elif phase == "stop-sigterm":
            self.enter_signal("stop-sigkill", SUCCESS)
        elif phase == "stop-sigkill":
            self.enter_stop_post(SUCCESS)
        elif phase == "final-sigterm":
            self.enter_signal("final-sigkill", SUCCESS)
        else:
            self.enter_dead(SUCCESS, True)

    def enter_stop_post(self, f):
        """service.c:1908-1939, no ExecStopPost="""
        if self.result == SUCCESS:
            self.result = f
        self.enter_signal("final-sigterm", SUCCESS)

    def enter_running(self, f):
        """service.c:2083-2109"""
        if self.result == SUCCESS:
            self.result = f
        if self.result != SUCCESS:
            self.enter_signal("stop-sigterm", f)
        elif self.service_good():
            self.set_state("running")
        else:
            self.enter_stop(SUCCESS)

    def service_good(self):
        """service.c:2063-2081"""
        ok = self.main_pid_good()
        if ok >= 0:
            return ok > 0
        return bool(self.members())

    def enter_dead(self, f, allow_restart):
        """service.c:1811-1906, with service_shall_restart() for Restart=always (1748-1796)"""
        if self.result == SUCCESS:
            self.result = f
        if self.result == SUCCESS:
            log("Deactivated successfully.")
        else:
            log("Failed with result '%s'." % self.result)
        self.timer = None
        if self.main_pid:
            self.last_main = self.main_pid
        self.main_pid, self.watch = 0, set()   # service.c:1098-1105, entering dead
        if allow_restart and not self.forbid_restart:
            log("Service will restart (restart setting)")
            self.set_state("auto-restart")
            self.timer = time.monotonic() + self.args.restart_ms / 1000
        else:
            self.set_state("dead")

    def on_timer(self):
        """service.c:3827-4022, for the states modelled"""
        self.timer = None
        st = self.state
        if st == "auto-restart":
            self.n_restarts += 1                 # service_enter_restart(), service.c:2348-2393
            log("Scheduled restart job, restart counter is at %d." % self.n_restarts)
            self.spawn()
        elif st == "stop":               # service.c:3878-3884
            log("Stopping timed out. Terminating.")
            self.enter_signal("stop-sigterm", TIMEOUT)
        elif st == "stop-sigterm":
            log("State 'stop-sigterm' timed out. Killing.")
            self.enter_signal("stop-sigkill", TIMEOUT)
        elif st == "stop-sigkill":
            log("Processes still around after SIGKILL. Ignoring.")
            self.enter_stop_post(TIMEOUT)
        elif st == "final-sigterm":
            log("State 'final-sigterm' timed out. Killing.")
            self.enter_signal("final-sigkill", TIMEOUT)
        elif st == "final-sigkill":
            log("Processes still around after final SIGKILL. Entering failed mode.")
            self.enter_dead(TIMEOUT, True)

    # ---- children ------------------------------------------------------------------
    def on_child(self, pid, code, status):
        """service.c:3470-3825 service_sigchld_event(), for a pid of the unit"""
        if code == os.CLD_EXITED:
            f = SUCCESS if status == 0 else EXIT_CODE
        elif code == os.CLD_KILLED:   # service.c:3486, is_clean_exit() (shared/exit-status.c:140)
            f = SUCCESS if status in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM,
                                      signal.SIGPIPE) else SIGNAL
        else:
            f = CORE_DUMP
        if pid == self.control_pid and pid != self.main_pid:
            self.on_control(pid, code, status, f)
            return
        if pid != self.main_pid:
            # service.c:3810-3811: neither control nor main pid: nothing happens
            log("Child %d belongs to the unit, not the main pid %d: exit %s %s ignored" % (
                pid, self.main_pid, "code" if code == os.CLD_EXITED else "signal",
                status if code == os.CLD_EXITED else sig_name(status)))
            return
        self.main_pid = 0
        self.watch.discard(pid)
        self.exit_status = status if code == os.CLD_EXITED else -status
        if code == os.CLD_EXITED:
            desc = "code=exited, status=%d/%s" % (status, "SUCCESS" if status == 0 else
                                                  "FAILURE" if status == 1 else str(status))
        else:
            desc = "code=%s, status=%d/%s" % ("killed" if code == os.CLD_KILLED else "dumped",
                                              status, sig_name(status))
        log("Main process exited, %s%s" % (desc, " (success)" if f == SUCCESS else ""))
        if self.result == SUCCESS:
            self.result = f
        st = self.state
        if st == "start":               # Type=notify, never ready (service.c:3586-3596)
            self.enter_signal("stop-sigterm", f if f != SUCCESS else PROTOCOL)
        elif st == "running":
            self.enter_running(f)
        elif st == "stop":              # service.c:3573-3575: wait for ExecStop=
            pass
        elif st in ("stop-sigterm", "stop-sigkill"):
            if self.control_pid_good() <= 0:     # service.c:3602-3610
                self.enter_stop_post(f)
        elif st in ("final-sigterm", "final-sigkill"):
            self.enter_dead(f, True)

    def control_pid_good(self):
        return 1 if self.control_pid > 0 else 0

    def on_control(self, pid, code, status, f):
        """service.c:3633-3800 for ExecStop= (a command, service.c:3481: a clean exit is
        status 0 only, no signal, shared/exit-status.c:140-155 EXIT_CLEAN_COMMAND)"""
        self.control_pid = 0
        if code == os.CLD_KILLED:
            f = SIGNAL
        elif code == os.CLD_DUMPED:
            f = CORE_DUMP
        log("Control process exited, code=%s, status=%d" % (
            "exited" if code == os.CLD_EXITED else "killed", status))
        if self.result == SUCCESS:
            self.result = f
        st = self.state
        if st == "stop":                         # service.c:3772-3774
            self.enter_signal("stop-sigterm", f)
        elif st in ("stop-sigterm", "stop-sigkill"):   # 3776-3781
            if self.main_pid_good() <= 0:
                self.enter_stop_post(f)
        elif st in ("final-sigterm", "final-sigkill"):
            if self.main_pid_good() <= 0:
                self.enter_dead(f, True)

    def on_cgroup_empty(self):
        """service.c:3336-3413 service_notify_cgroup_empty_event()"""
        st = self.state
        if st == "start":
            if self.main_pid_good() == 0:
                self.enter_stop_post(PROTOCOL)
        elif st == "running":
            self.enter_running(SUCCESS)
        elif st in ("stop-sigterm", "stop-sigkill"):
            if self.main_pid_good() <= 0 and self.control_pid_good() <= 0:
                self.enter_stop_post(SUCCESS)
        elif st in ("final-sigterm", "final-sigkill"):
            if self.main_pid_good() <= 0 and self.control_pid_good() <= 0:
                self.enter_dead(SUCCESS, True)

    def reap_one(self):
        """manager.c:2612-2704: peek (WNOWAIT), handle, then reap. Return: one was reaped"""
        try:
            si = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if si is None or si.si_pid <= 0:
            return False
        if si.si_code in (os.CLD_EXITED, os.CLD_KILLED, os.CLD_DUMPED):
            if self.in_unit(si.si_pid) or si.si_pid in self.watch:
                self.on_child(si.si_pid, si.si_code, si.si_status)
        os.waitid(os.P_PID, si.si_pid, os.WEXITED)
        return True

    # ---- the loop --------------------------------------------------------------------
    def run(self):
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        os.set_blocking(rfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGTERM, lambda *a: None)
        term = [False]
        self.spawn()
        self.write_files()
        while True:
            p = select.poll()
            p.register(self.sock, select.POLLIN)
            p.register(rfd, select.POLLIN)
            for e in self.store:
                if e[3]:
                    p.register(e[1], 0)
            timeout = None
            if self.timer is not None:
                timeout = max(0, int((self.timer - time.monotonic()) * 1000) + 1)
            events = p.poll(timeout)
            try:
                for b in os.read(rfd, 512):
                    if b == signal.SIGTERM:
                        term[0] = True
            except BlockingIOError:
                pass
            self.poll_store([ev for ev in events if ev[0] not in (self.sock.fileno(), rfd)])
            # notify messages before exits (see the top); one exit at a time
            self.read_notify()
            while self.reap_one():
                # the unit's last process exits as a child of ours (we are its subreaper)
                if self.state not in ("dead", "auto-restart") and not self.members():
                    self.on_cgroup_empty()
                self.read_notify()
            if term[0] and not self.forbid_restart:          # systemctl stop
                self.forbid_restart = True
                if self.state == "auto-restart":
                    self.enter_dead(SUCCESS, False)
                elif self.state == "start":     # service.c:2580-2617 service_stop()
                    self.enter_signal("stop-sigterm", SUCCESS)
                elif self.state == "running":
                    self.enter_stop(SUCCESS)
            if self.timer is not None and time.monotonic() >= self.timer:
                self.on_timer()
            self.write_files()
            if self.state == "dead":
                self.reap_rest()
                st = self.exit_status
                return 1 if st < 0 else st

    def reap_rest(self):
        """Stopped: reap what is left (at most 2 s), for our own exit status. A main pid
        that systemd no longer watched (it is dead to it already, see kill_context()) is
        reported as such: it is not a systemd log line."""
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                si = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            if si is None:
                time.sleep(0.01)
                continue
            if si.si_pid == self.last_main:
                self.exit_status = si.si_status if si.si_code == os.CLD_EXITED else -si.si_status
                log("(stand-in) pid %d, the main pid when the unit stopped, exited afterwards: %s" % (
                    si.si_pid, "status=%d" % si.si_status if si.si_code == os.CLD_EXITED
                    else "signal=%s" % sig_name(si.si_status)))


def fork_exec(argv, env, prepare):
    """Fork a process of the unit: in the child, the signal mask and handlers
    back to their defaults, prepare() (its descriptors), then exec argv.
    Return: the child's pid"""
    pid = os.fork()
    if pid == 0:
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for s in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(s, signal.SIG_DFL)
            prepare()
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid


def fcntl_dupfd(fd, low):
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    return new


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--store-file", required=True)
    ap.add_argument("--state-file")
    ap.add_argument("--argv-file")
    ap.add_argument("--notify-access", choices=("all", "main", "exec", "none"), default="all")
    ap.add_argument("--restart-ms", type=int, default=0)
    ap.add_argument("--timeout-stop-ms", type=int, default=10000)
    ap.add_argument("--store-max", type=int, default=4096)
    ap.add_argument("--exec-stop")
    ap.add_argument("cmd", nargs="+")
    args = ap.parse_args()
    m = Manager(args)
    sys.exit(m.run())


if __name__ == "__main__":
    main()
