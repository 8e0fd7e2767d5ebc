#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""vmctl.py: host-side control of the VM-test guest (QMP and the command agent).

Python standard library only. Subcommands:

  qmp SOCK CMD [ARGS-JSON]      run one QMP command, print its "return" as JSON
  snapshot SOCK FILE            stop the VM and migrate its state into FILE
  restore SOCK FILE             load FILE into a QEMU started with -incoming defer
                                (the VM stays paused; "qmp SOCK cont" runs it)
  exec SOCK [-t SEC] CMD        run CMD in the guest through the ph-agent port;
                                print its output, exit with its status
  wait-agent SOCK SEC           wait until the agent answers
  cont-probe QMP HOST PORT SEC [-- CMD...]
                                cont the VM, connect to HOST:PORT and send an
                                HTTP GET at once, then run CMD (the host's
                                restore call); print JSON with the times from
                                cont to connect and to the first byte, and CMD's
                                exit status

Snapshot and restore use exec: migration URIs (cat to and from the file)
because QEMU 7.2 has no file: URI.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time


class QMP:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError("QMP %s: %s" % (name, reply["error"].get("desc")))
            return reply.get("return")


def wait_migration(q, deadline, incoming=False):
    """Poll until a migration ends; return its final status.

    Outgoing: query-migrate's status. Incoming: the run state, which leaves
    "inmigrate" when the stream is loaded ("paused" under -S)."""
    while time.monotonic() < deadline:
        if incoming:
            st = q.cmd("query-status")["status"]
            if st != "inmigrate":
                return st
        else:
            st = q.cmd("query-migrate").get("status")
            if st in ("completed", "failed", "cancelled"):
                return st
        time.sleep(0.02)
    raise TimeoutError("migration did not finish")


def shell_quote(s):
    """Quote for /bin/sh, which runs exec: migration URIs."""
    return "'" + s.replace("'", "'\\''") + "'"


def do_snapshot(sock, path):
    """stop, then migrate the whole VM state into path."""
    q = QMP(sock)
    t0 = time.monotonic()
    q.cmd("stop")
    q.cmd("migrate", {"uri": "exec:cat > " + shell_quote(path)})
    st = wait_migration(q, time.monotonic() + 120)
    if st != "completed":
        raise RuntimeError("snapshot migration " + st)
    print(json.dumps({"snapshot_ms": round((time.monotonic() - t0) * 1000, 1)}))


def do_restore(sock, path):
    """Load path into a QEMU waiting with -incoming defer; it stays paused."""
    q = QMP(sock)
    t0 = time.monotonic()
    q.cmd("migrate-incoming", {"uri": "exec:cat " + shell_quote(path)})
    st = wait_migration(q, time.monotonic() + 120, incoming=True)
    if st != "paused":
        raise RuntimeError("restore ended in state " + st)
    print(json.dumps({"restore_ms": round((time.monotonic() - t0) * 1000, 1)}))


END = re.compile(rb"\n@@PH-AGENT-END (\d+)@@\n")


def agent_exec(path, command, timeout):
    """Run one command line in the guest; return (status, output bytes)."""
    if "\n" in command:
        raise ValueError("agent commands are one line")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(command.encode() + b"\n")
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        m = END.search(buf)
        if m:
            s.close()
            return int(m.group(1)), buf[:m.start()]
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("agent channel closed")
        buf += chunk


def do_exec(argv):
    timeout = 30.0
    if argv and argv[0] == "-t":
        timeout = float(argv[1])
        argv = argv[2:]
    sock, command = argv[0], " ".join(argv[1:])
    try:
        rc, out = agent_exec(sock, command, timeout)
    except (OSError, ConnectionError) as e:
        print("vmctl: agent: %s" % e, file=sys.stderr)
        return 255
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return rc


def do_wait_agent(sock, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            rc, _ = agent_exec(sock, "true", max(0.5, deadline - time.monotonic()))
            if rc == 0:
                return 0
        except (OSError, ConnectionError):
            pass
        time.sleep(0.1)
    print("vmctl: agent did not answer within %ss" % secs, file=sys.stderr)
    return 1


def spawn(argv):
    """Start the host call of a probe with its output captured."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def do_cont_probe(qmp_sock, host, port, secs, then):
    """cont, then connect at once: the guest kernel's backlog must take the
    connection before any host call; the reply needs portholed relaying."""
    q = QMP(qmp_sock)
    q.cmd("cont")
    t0 = time.monotonic()
    res = {"connect_ms": None, "first_byte_ms": None, "then_rc": None, "reply": ""}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(secs)
    proc = None
    try:
        s.connect((host, int(port)))
        res["connect_ms"] = round((time.monotonic() - t0) * 1000, 1)
        s.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
        if then:
            proc = spawn(then)
        data = s.recv(4096)
        if data:
            res["first_byte_ms"] = round((time.monotonic() - t0) * 1000, 1)
            while True:
                more = s.recv(4096)
                if not more:
                    break
                data += more
        res["reply"] = data.decode("latin-1").split("\r\n", 1)[0]
    except OSError as e:
        res["error"] = str(e)
    finally:
        s.close()
    if then and proc is None:
        proc = spawn(then)
    if proc is not None:
        try:
            out, _ = proc.communicate(timeout=secs)
            res["then_rc"] = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            res["then_rc"] = -1
        res["then_out"] = out.decode("utf-8", "replace").strip()
    print(json.dumps(res))
    return 0 if res["first_byte_ms"] is not None else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, rest = argv[1], argv[2:]
    try:
        if cmd == "qmp":
            args = json.loads(rest[2]) if len(rest) > 2 else None
            print(json.dumps(QMP(rest[0]).cmd(rest[1], args)))
            return 0
        if cmd == "snapshot":
            do_snapshot(rest[0], rest[1])
            return 0
        if cmd == "restore":
            do_restore(rest[0], rest[1])
            return 0
        if cmd == "exec":
            return do_exec(rest)
        if cmd == "wait-agent":
            return do_wait_agent(rest[0], float(rest[1]))
        if cmd == "cont-probe":
            then = rest[5:] if len(rest) > 4 and rest[4] == "--" else []
            return do_cont_probe(rest[0], rest[1], rest[2], float(rest[3]), then)
    except (OSError, RuntimeError, TimeoutError, ConnectionError, IndexError, ValueError) as e:
        print("vmctl: %s: %s" % (cmd, e), file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
