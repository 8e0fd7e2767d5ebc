#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/test_flame.py - tests of flame.py on hand-written perf script text

    python3 bench/test_flame.py

flame.py turns `perf script` output into the flame graphs and the "CPU per
request" tables of a benchmark run; a slip in folding or attribution would
put a forwarder's time in the wrong row. The samples here are written by
hand in the format perf prints with -F comm,tid,period,ip,sym.
Prints "flame: N passed, N failed" for tests/check.
"""

import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flame  # noqa: E402

K = "ffffffff8100%04x"      # a kernel address
U = "55d0c0de%04x"          # a user address


def sample(comm, tid, period, frames):
    """perf script text of one sample; @frames innermost first, each
    (symbol, kernel?)."""
    lines = ["%s %d %10d " % (comm, tid, period)]
    for i, (sym, kern) in enumerate(frames):
        lines.append("\t%16s %s" % ((K if kern else U) % i, sym))
    return "\n".join(lines) + "\n\n"


SEND = [("tcp_sendmsg", True), ("__x64_sys_sendto", True), ("do_syscall_64", True),
        ("entry_SYSCALL_64_after_hwframe", True), ("__send", False), ("relay_event", False)]
CONNECT = [("tcp_v4_connect", True), ("__x64_sys_connect", True), ("do_syscall_64", True),
           ("entry_SYSCALL_64_after_hwframe", True), ("__libc_connect", False)]


class FoldTest(unittest.TestCase):
    def test_weights_roots_and_kernel_marks(self):
        text = (sample("ph-ports", 10, 1000000, SEND) +
                sample("ph-ports", 10, 3000000, SEND) +
                sample("nginx", 11, 500000, [("ngx_http_process", False)]))
        folded = flame.fold(text)
        key = ("ph-ports;relay_event;__send;entry_SYSCALL_64_after_hwframe_[k];"
               "do_syscall_64_[k];__x64_sys_sendto_[k];tcp_sendmsg_[k]")
        self.assertEqual(folded[key], 4000000)          # periods add up, not sample counts
        self.assertEqual(folded["nginx;ngx_http_process"], 500000)
        self.assertEqual(len(folded), 2)

    def test_thread_names_with_spaces_and_numbers(self):
        text = (sample("Web Content", 12, 100, [("f", False)]) +
                sample("kworker/u8:3-events", 13, 200, [("worker_thread", True)]) +
                sample("kworker/1:0-mm", 14, 300, [("worker_thread", True)]) +
                sample("swapper", 0, 400, [("default_idle", True)]))
        folded = flame.fold(text)
        self.assertEqual(folded["Web Content;f"], 100)
        self.assertEqual(folded["kworker;worker_thread_[k]"], 500)   # per-CPU names merged
        self.assertEqual(folded["swapper;default_idle_[k]"], 400)

    def test_unknown_runs_collapse(self):
        frames = [("[unknown]", False)] * 40 + [("main", False)]
        folded = flame.fold(sample("wrk", 20, 7, frames))
        self.assertEqual(folded, {"wrk;main;[unknown]": 7})

    def test_garbage_and_missing_blank_line(self):
        text = ("\tffffffff81000000 orphan_frame\n\n" +       # a frame with no header
                "not a header line\n\n" +
                sample("nginx", 11, 5, [("a;b", False)]).rstrip("\n"))   # no final blank
        self.assertEqual(flame.fold(text), {"nginx;a:b": 5})


class CostsTest(unittest.TestCase):
    def test_roles_and_syscalls_per_request(self):
        us = 1000      # ns
        text = (sample("ph-ports", 10, 30 * us, SEND) +
                sample("ph-relay-1", 15, 10 * us, CONNECT) +
                sample("ph-ports", 10, 4 * us, [("entry_SYSCALL_64", True)]) +
                sample("ph-ports", 10, 6 * us, [("relay_event", False)]) +
                sample("ph-ports", 10, 2 * us, [("handle_softirqs", True),
                                                ("asm_sysvec_apic_timer_interrupt", True),
                                                ("relay_event", False)]) +
                sample("nginx", 11, 20 * us, [("ngx", False)]) +
                sample("wrk", 12, 25 * us, [("main", False)]) +
                sample("swapper", 0, 8 * us, [("default_idle", True)]) +
                sample("perf", 30, 1 * us, [("main", False)]))
        c = flame.costs(flame.fold(text), requests=2)
        self.assertAlmostEqual(c["total_ms"], 0.106)
        self.assertEqual(c["roles"], {"forwarder": 26.0, "server": 10.0, "load": 12.5,
                                      "idle": 4.0, "other": 0.5})
        self.assertEqual(c["syscalls"], [("sendto", 15.0), ("connect", 5.0),
                                         ("user space", 3.0), ("syscall entry/exit", 2.0),
                                         ("interrupts", 1.0)])

    def test_no_requests(self):
        c = flame.costs(flame.fold(sample("ph-ports", 1, 5, SEND)), requests=0)
        self.assertIsNone(c["roles"]["forwarder"])


class SvgTest(unittest.TestCase):
    def rects(self, doc):
        root = ET.fromstring(doc)
        ns = "{http://www.w3.org/2000/svg}"
        out = {}
        for g in root.iter(ns + "g"):
            title = g.find(ns + "title").text
            r = g.find(ns + "rect")
            out[title.split(" (")[0]] = (float(r.get("x")), float(r.get("width")),
                                        float(r.get("y")))
        return out

    def test_widths_follow_time(self):
        folded = {"nginx;work": 3000, "wrk;main": 1000, "wrk;main;tiny": 1}
        r = self.rects(flame.svg(folded, "t <&> test", width=1000))
        self.assertAlmostEqual(r["all"][1], 1000, places=0)
        self.assertAlmostEqual(r["nginx"][1], 1000 * 3000 / 4001, places=0)
        self.assertAlmostEqual(r["wrk"][1], 1000 * 1001 / 4001, places=0)
        self.assertAlmostEqual(r["wrk"][0], r["nginx"][1], places=0)   # side by side
        self.assertLess(r["work"][2], r["nginx"][2])                    # callee above caller
        self.assertNotIn("tiny", r)                                     # under min_px

    def test_names_are_escaped(self):
        folded = {"app;std::vector<int>::push_back&": 10}
        doc = flame.svg(folded, "x")
        r = self.rects(doc)                                             # parses as XML
        self.assertIn("std::vector<int>::push_back&", r)


if __name__ == "__main__":
    suite = unittest.TestSuite()
    for case in (FoldTest, CostsTest, SvgTest):
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    res = unittest.TextTestRunner(verbosity=2).run(suite)
    bad = len(res.failures) + len(res.errors)
    print("flame: %d passed, %d failed" % (res.testsRun - bad, bad))
    sys.exit(1 if bad else 0)
