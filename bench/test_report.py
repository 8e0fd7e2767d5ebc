#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/test_report.py - tests of report.py's verdicts on hand-made results

    python3 bench/test_report.py

report.py decides pass or FAIL for the targets of issue 4 and computes each
forwarder's CPU ceiling; a slip there would misreport a whole benchmark run.
Each test writes a small results.json (the shape bench.py writes), builds the
report without plots, and checks the verdicts and the numbers in results.md.
Prints "report: N passed, N failed" for tests/check.
"""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402


class NoPlots(report.Report):
    """gnuplot is a benchmark tool, not a test dependency."""

    def plots(self):
        return []


def wrk_run(rps, p99=2.0, busy_s=None, fwd_cpu_s=None, idle=0.05, t=5):
    r = dict(rps=rps, requests=int(rps * t), p50_ms=0.5, p99_ms=p99, errors=0,
             machine_busy_s=busy_s, machine_softirq_s=busy_s * 0.2 if busy_s else None,
             machine_idle_frac=idle, server_cpu_s=busy_s * 0.4 if busy_s else None,
             load_cpu_s=busy_s * 0.3 if busy_s else None)
    if fwd_cpu_s is not None:
        r["cpu_s"] = fwd_cpu_s
    return r


def results(ka, close, iperf=None, contenders=("direct", "dnat", "socat", "porthole")):
    """ka/close: {contender: [run, ...]}"""
    return dict(mode="full", started="test", contenders=list(contenders), skip={}, notes=[],
                machine={}, config=dict(wrk_t=5, wrk_reps=3, iperf_t=4, iperf_reps=3),
                wrk=dict(keepalive=ka, close=close), iperf=iperf or {})


def udp_results(rows):
    """Results whose UDP step ran every configuration of both kinds, 3 repetitions, each
    contender in @rows (name: one run's figures) the same in every one; returns (results,
    runs), runs keyed as bench.py keys them, for a test to change one configuration."""
    runs = {"%s-%d-%d" % (kind, size, clients): {c: [dict(r)] * 3 for c, r in rows.items()}
            for size, clients in report.UDP_CFG for kind in ("max", "paced")}
    res = results({"direct": [wrk_run(1)]}, {"direct": [wrk_run(1)]})
    res["udp"] = dict(runs=runs, paced_dgrams_s=20000, seconds=3)
    res["config"]["udp_reps"] = 3
    return res, runs


def self_ka():
    return {"direct": [wrk_run(100000)] * 3, "porthole": [wrk_run(60000)] * 3}


def self_close():
    return {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(14000)] * 3}


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ph-report-test.")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def build(self, res):
        with open(os.path.join(self.dir, "results.json"), "w") as f:
            json.dump(res, f)
        rows = NoPlots(self.dir).build()
        with open(os.path.join(self.dir, "results.md")) as f:
            self.md = f.read()
        return {r[0]: r for r in rows}

    def std_close(self):
        return {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(14000)] * 3}

    def test_keepalive_edges(self):
        for ratio, p99, verdict in ((0.61, 1.9, "**pass**"), (0.59, 1.0, "**FAIL**"),
                                    (0.80, 2.1, "**FAIL**"), (0.60, 2.0, "**pass**")):
            rows = self.build(results(
                {"direct": [wrk_run(100000, p99=1.0)] * 3,
                 "porthole": [wrk_run(100000 * ratio, p99=p99)] * 3}, self.std_close()))
            self.assertEqual(rows["keep-alive requests/s vs direct"][-1], verdict,
                             "ratio %.2f p99 %.1fx" % (ratio, p99))

    def test_new_connections_edges(self):
        for rps, verdict in ((14000, "**pass**"), (13999, "**FAIL**")):
            rows = self.build(results(
                {"direct": [wrk_run(100000)] * 3, "porthole": [wrk_run(70000)] * 3},
                {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(rps)] * 3}))
            self.assertEqual(rows["new connections/s vs direct"][-1], verdict, str(rps))

    def test_ratio_is_of_medians_and_skips_failed_runs(self):
        ph = [wrk_run(60000), dict(error="wrk died"), wrk_run(70000), wrk_run(10000)]
        rows = self.build(results(
            {"direct": [wrk_run(100000), wrk_run(100000), wrk_run(100000), wrk_run(100000)],
             "porthole": ph}, self.std_close()))
        # median of 60k, 70k, 10k = 60k: 0.60x, a pass; the failed run is not a zero
        self.assertIn("0.60x", rows["keep-alive requests/s vs direct"][2])
        self.assertEqual(rows["keep-alive requests/s vs direct"][-1], "**pass**")

    def test_cpu_ceiling(self):
        # direct: 2.0 CPU-s for 500k requests = 4 µs; porthole: 2.0 CPU-s for 250k = 8 µs
        ka = {"direct": [wrk_run(100000, busy_s=2.0)] * 3,
              "porthole": [wrk_run(50000, busy_s=2.0, fwd_cpu_s=0.5, idle=0.2)] * 3}
        close = {"direct": [wrk_run(20000, busy_s=1.9)] * 3,
                 "porthole": [wrk_run(10000, busy_s=1.9, fwd_cpu_s=0.6)] * 3}
        self.build(results(ka, close))
        section = self.md.split("### Where the CPU goes")[1].split("\n## ")[0]
        cells = {}
        for x in section.splitlines():
            c = [v.strip() for v in x.strip("|").split("|")]
            if len(c) == 10:
                cells[(c[0], c[1])] = c[2:]
        # busy, total µs, forwarder, server, load, other, softirq, ceiling
        self.assertEqual(cells[("keep-alive", "porthole")],
                         ["80%", "8.0", "2.0", "3.2", "2.4", "0.4", "1.6", "0.50x"])
        # the roles add up to more than the tick-sampled total: other is 0, not negative
        self.assertEqual(cells[("connection per request", "porthole")],
                         ["95%", "38.0", "12.0", "15.2", "11.4", "0.0", "7.6", "0.50x"])
        self.assertIn("keep-alive 0.50x, connection per request 0.50x", self.md)

    def test_no_cpu_section_without_machine_figures(self):
        self.build(results({"direct": [wrk_run(100000)] * 3,
                            "porthole": [wrk_run(70000)] * 3}, self.std_close()))
        self.assertNotIn("Where the CPU goes", self.md)
        self.assertNotIn("CPU ceilings", self.md)

    def test_bulk_worst_of_four(self):
        iperf = {}
        for key, _ in report.IPERF_CFG:
            iperf[key] = {"direct": [dict(gbps=20.0)] * 3, "porthole": [dict(gbps=19.0)] * 3}
        iperf["rev-1"]["porthole"] = [dict(gbps=14.0)] * 3   # 0.70x: below 0.75x
        rows = self.build(results({"direct": [wrk_run(1)]}, {"direct": [wrk_run(1)]}, iperf))
        row = rows["bulk throughput vs direct (worst of 4 tests)"]
        self.assertEqual(row[2], "0.70x")
        self.assertEqual(row[-1], "**FAIL**")

    def test_udp_verdicts(self):
        res, runs = udp_results({"direct": dict(dgrams_s=100000.0, loss_pct=0.5),
                                 "dnat": dict(dgrams_s=100000.0, loss_pct=0.5),
                                 "porthole": dict(dgrams_s=80000.0, loss_pct=0.6,
                                                  cpu_us_per_dgram=2.0)})
        # 64 B, 8 clients: 0.69x of DNAT (the worst of the two counts); 1,400 B: 0.80x
        runs["max-64-8"]["porthole"] = [dict(dgrams_s=69000.0, loss_pct=9.0)] * 3
        # one failed run does not count, the others' median does
        runs["max-1400-1"]["porthole"] = [dict(error="x")] + [dict(dgrams_s=80000.0,
                                                                    loss_pct=1.0)] * 2
        rows = self.build(res)
        r64 = rows["UDP datagrams/s vs DNAT, 64 B (worst of 1 and 8 clients)"]
        self.assertEqual((r64[2], r64[-1]), ("0.69x", "**FAIL**"))
        r1400 = rows["UDP datagrams/s vs DNAT, 1400 B (worst of 1 and 8 clients)"]
        self.assertEqual((r1400[2], r1400[-1]), ("0.80x", "**pass**"))
        loss = rows["UDP loss, paced (worst configuration)"]
        self.assertEqual(loss[-1], "**pass**")       # 0.6 <= 0.5 + 0.1
        runs["paced-1400-8"]["porthole"] = [dict(dgrams_s=1.0, loss_pct=0.7)] * 3
        rows = self.build(res)
        self.assertEqual(rows["UDP loss, paced (worst configuration)"][-1], "**FAIL**")
        self.assertIn("## 1b. UDP datagrams", self.md)

    def test_udp_floor_rows_are_not_verdicts(self):
        res, runs = udp_results({"direct": dict(dgrams_s=100000.0, loss_pct=0.5),
                                 "dnat": dict(dgrams_s=100000.0, loss_pct=0.5),
                                 "floor": dict(dgrams_s=90000.0, loss_pct=9.0,
                                               cpu_us_per_dgram=3.0),
                                 "porthole": dict(dgrams_s=60000.0, loss_pct=0.5,
                                                  cpu_us_per_dgram=5.0)})
        # the floor's worst at 1,400 B: 0.75x (8 clients), porthole's: 0.60x
        runs["max-1400-8"]["floor"] = [dict(dgrams_s=75000.0, loss_pct=1.0,
                                            cpu_us_per_dgram=4.0)] * 3
        rows = self.build(res)
        # a floor at 0.90x must not turn porthole's 0.60x into a pass, nor its
        # 9% loss turn porthole's paced loss (direct's) into a FAIL
        r64 = rows["UDP datagrams/s vs DNAT, 64 B (worst of 1 and 8 clients)"]
        self.assertEqual(r64[1:], ["dnat 1.00x, floor 0.90x", "0.60x", "≥ 0.7x", "**FAIL**"])
        r1400 = rows["UDP datagrams/s vs DNAT, 1400 B (worst of 1 and 8 clients)"]
        self.assertEqual(r1400[1:3], ["dnat 1.00x, floor 0.75x", "0.60x"])
        self.assertEqual(rows["UDP loss, paced (worst configuration)"][-1], "**pass**")
        self.assertIn("| 64 B, 1 client, max | floor | 90000 (90000–90000) | 0.90x | 9.000 "
                      "(9.000–9.000) | 3.00 (3.00–3.00) |  |", self.md)
        # DNAT, floor, porthole; floor/DNAT, porthole/DNAT, porthole/floor; loss; CPU
        self.assertIn("### UDP: DNAT, the floor and porthole", self.md)
        self.assertIn("| 1400 B, 8 clients, max | 100000 | 75000 | 60000 | 0.75x (0.75–0.75) | "
                      "0.60x (0.60–0.60) | 0.80x (0.80–0.80) | 4.00 | 5.00 |", self.md)
        self.assertIn("| 64 B, 1 client, paced | 100000 | 90000 | 60000 | 0.90x (0.90–0.90) | "
                      "0.60x (0.60–0.60) | 0.67x (0.67–0.67) | 3.00 | 5.00 |", self.md)
        # per-round ratios pair each repetition with the same round's run
        runs["max-64-8"]["floor"] = [dict(dgrams_s=x, cpu_us_per_dgram=1.0)
                                     for x in (50000.0, 100000.0, 80000.0)]
        runs["max-64-8"]["porthole"] = [dict(dgrams_s=x) for x in (50000.0, 50000.0, 60000.0)]
        runs["max-64-8"]["dnat"] = [dict(dgrams_s=x) for x in (100000.0, 200000.0, 100000.0)]
        self.build(res)
        # medians: dnat 100k, floor 80k, porthole 50k; rounds 0.50/0.50/0.80,
        # 0.50/0.25/0.60, 1.00/0.50/0.75
        self.assertIn("| 64 B, 8 clients, max | 100000 | 80000 | 50000 | 0.80x (0.50–0.80) | "
                      "0.50x (0.25–0.60) | 0.62x (0.50–1.00) | 1.00 | — |", self.md)
        # without floor runs, no floor table and the reference is DNAT alone
        for r in runs.values():
            del r["floor"]
        rows = self.build(res)
        self.assertNotIn("the floor and porthole", self.md)
        self.assertEqual(rows["UDP datagrams/s vs DNAT, 64 B (worst of 1 and 8 clients)"][1],
                         "dnat 1.00x")

    def test_steered_verdicts(self):
        ka = {"direct": [wrk_run(100000)] * 3, "porthole": [wrk_run(60000)] * 3,
              "steered": [wrk_run(90000)] * 3}
        close = {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(10000)] * 3,
                 "steered": [wrk_run(17999)] * 3}
        iperf = {}
        for key, _ in report.IPERF_CFG:
            iperf[key] = {"direct": [dict(gbps=20.0)] * 3, "porthole": [dict(gbps=19.0)] * 3,
                          "steered": [dict(gbps=19.0)] * 3}
        rows = self.build(results(ka, close, iperf))
        self.assertEqual(rows["steered (--steer): keep-alive requests/s vs direct"][2:],
                         ["0.90x", "≥ 0.9x", "**pass**"])
        self.assertEqual(rows["steered (--steer): new connections/s vs direct"][-1], "**FAIL**")
        self.assertEqual(rows["steered (--steer): bulk throughput vs direct (worst of 4 tests)"]
                         [2:], ["0.95x", "≥ 0.95x", "**pass**"])
        # the relay's own verdicts stay the relay's
        self.assertEqual(rows["keep-alive requests/s vs direct"][-1], "**pass**")
        self.assertIn("| keep-alive | steered | 90000 (90000–90000) | 0.90x |", self.md)

    def test_upgrade_pause_verdicts(self):
        res = results(self_ka(), self_close())
        res["upgrade"] = dict(upgrades=20, succeeded=20, connections=1000, probes=8,
                              pause_p50_ms=18.3, pause_p99_ms=50.0, baseline_p50_ms=1.6,
                              baseline_p99_ms=11.2, upgrade_ms_p50=102.0, echoes=5, errors=0)
        row = self.build(res)["upgrade pause p99, 1000 relayed connections"]
        self.assertEqual(row[-1], "**pass**")
        self.assertIn("| 20 of 20 | 18.3 | 50.0 |", self.md)
        res["upgrade"]["pause_p99_ms"] = 50.1
        self.assertEqual(self.build(res)["upgrade pause p99, 1000 relayed connections"][-1],
                         "**FAIL**")
        res["upgrade"].update(pause_p99_ms=20.0, errors=1)
        self.assertEqual(self.build(res)["upgrade pause p99, 1000 relayed connections"][-1],
                         "**FAIL**")
        res["upgrade"].update(errors=0, succeeded=19)
        self.assertEqual(self.build(res)["upgrade pause p99, 1000 relayed connections"][-1],
                         "**FAIL**")

    def test_floor_rows_are_not_verdicts(self):
        ka = {"direct": [wrk_run(100000, busy_s=9.0)] * 3,
              "porthole": [wrk_run(50000, busy_s=9.0, fwd_cpu_s=3.0)] * 3,
              "floor": [wrk_run(90000, busy_s=9.0, fwd_cpu_s=2.0)] * 3}
        close = {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(10000)] * 3,
                 "floor": [wrk_run(19000)] * 3}
        rows = self.build(results(ka, close))
        # a floor at 0.90x/0.95x must not turn porthole's 0.50x into a pass
        self.assertEqual(rows["keep-alive requests/s vs direct"][-1], "**FAIL**")
        self.assertEqual(rows["new connections/s vs direct"][-1], "**FAIL**")
        self.assertIn("| keep-alive | floor | 90000 (90000–90000) | 0.90x |", self.md)
        self.assertIn("| connection per request | floor | 19000 (19000–19000) | 0.95x |",
                      self.md)
        self.assertIn("*floor* is `bench/floor_relay`", self.md)
        # its CPU per request is shown like a forwarder's: 2.0 s / 450,000 requests
        self.assertRegex(self.md, r"\| keep-alive \| floor \| [^\n]*\| 4\.4 \|")

    def test_floor_unix_rows_and_upper_bound(self):
        ka = {"direct": [wrk_run(100000, busy_s=9.0)] * 3,
              "porthole": [wrk_run(50000, busy_s=9.0, fwd_cpu_s=2.5)] * 3,
              "floor": [wrk_run(60000, busy_s=9.0, fwd_cpu_s=3.0)] * 3,
              "floor-unix": [wrk_run(70000, busy_s=9.0, fwd_cpu_s=2.1)] * 3}
        close = {"direct": [wrk_run(20000)] * 3, "porthole": [wrk_run(10000)] * 3,
                 "floor": [wrk_run(10000)] * 3, "floor-unix": [wrk_run(12000)] * 3}
        rows = self.build(results(ka, close))
        # a yardstick: porthole's verdicts stay porthole's
        self.assertEqual(rows["keep-alive requests/s vs direct"][-1], "**FAIL**")
        self.assertIn("| keep-alive | floor-unix | 70000 (70000–70000) | 0.70x |", self.md)
        self.assertIn("| connection per request | floor-unix | 12000 (12000–12000) | 0.60x |",
                      self.md)
        self.assertIn("*floor-unix* is the same `bench/floor_relay`", self.md)
        # relay CPU per request like a forwarder's: 2.1 s / 350,000 requests = 6.0 µs
        self.assertRegex(self.md, r"\| keep-alive \| floor-unix \| [^\n]*\| 6\.0 \|")
        # floor-unix is in the machine CPU table: 9.0 s / 350,000 = 25.7 µs
        self.assertRegex(self.md, r"\| keep-alive \| floor-unix \| 95% \| 25\.7 \| 6\.0 \|")
        section = self.md.split("### Issue 19 part 2")[1].split("\n## ")[0]
        # porthole 2.5 s / 250k = 10.0 µs, floor 3.0 s / 300k = 10.0 µs, floor-unix 6.0 µs
        self.assertIn("| keep-alive | 0.50x | 0.60x | 0.70x | 1.17x (1.17–1.17) | 10.0 | 10.0 "
                      "| 6.0 | -40% | -40% | 30.0 | 25.7 |", section)
        self.assertIn("| connection per request | 0.50x | 0.50x | 0.60x | 1.20x (1.20–1.20) |",
                      section)
        # without floor-unix runs, no such section
        for r in (ka, close):
            del r["floor-unix"]
        self.build(results(ka, close))
        self.assertNotIn("Issue 19 part 2", self.md)
        self.assertNotIn("floor-unix", self.md)

    def test_profile_tables(self):
        res = results({"direct": [wrk_run(1)]}, {"direct": [wrk_run(1)]})
        prof = lambda rps, fwd, calls: dict(
            rps=rps, svg="perf/x.svg", total_ms=6000.0, syscalls=calls,
            roles=dict(load=10.0, server=9.0, forwarder=fwd, idle=1.0, other=0.5))
        res["profile"] = dict(window_s=3, runs=dict(
            keepalive=dict(porthole=prof(50000, 14.4, [["sendto", 9.7], ["recvfrom", 1.8],
                                                       ["accept4", 0.1]]),
                           direct=prof(100000, None, [])),
            close=dict(direct=dict(error="wrk printed no result"))))
        self.build(res)
        self.assertIn("### Profiles: where a request's CPU goes", self.md)
        lines = self.md.splitlines()
        direct = lines.index(next(x for x in lines if x.startswith("| keep-alive | direct |")))
        ph = lines.index(next(x for x in lines if x.startswith("| keep-alive | porthole |")))
        self.assertLess(direct, ph)                        # direct first, as in every table
        self.assertIn("| keep-alive | porthole | 50000 | 10.0 | 9.0 | 14.4 | — | 0.5 | 1.0 | "
                      "33.9 | [svg](perf/x.svg) |", self.md)   # busy leaves idle out
        # calls under 2% of the forwarder's time are left out
        self.assertIn("| keep-alive | porthole | 14.4 | sendto 9.7, recvfrom 1.8 |", self.md)
        self.assertIn("| connection per request | direct | failed: wrk printed no result", self.md)

    def test_without_porthole_every_verdict_is_na(self):
        rows = self.build(results({"direct": [wrk_run(100000)] * 3,
                                   "socat": [wrk_run(20000)] * 3},
                                  {"direct": [wrk_run(20000)] * 3,
                                   "socat": [wrk_run(2000)] * 3},
                                  contenders=("direct", "socat")))
        self.assertTrue(rows)
        for name, row in rows.items():
            self.assertEqual(row[-1], "n/a", name)


if __name__ == "__main__":
    res = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(ReportTest))
    bad = len(res.failures) + len(res.errors)
    print("report: %d passed, %d failed" % (res.testsRun - bad, bad))
    sys.exit(1 if bad else 0)
