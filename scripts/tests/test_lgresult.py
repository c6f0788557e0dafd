"""scripts/lib/lgresult.py: reading schema-2 results."""
import io
import json
import unittest
from contextlib import redirect_stdout

from helpers import FIXTURES, RunDir

import lgresult as lr


class Reading(RunDir):
    def test_loads_the_summary(self):
        s = lr.summary(FIXTURES / "rate-ws.json")
        self.assertEqual(s["scenario"], "rate")
        self.assertEqual(s["messages"]["expected"], 200)

    def test_refuses_what_is_not_schema_2(self):
        old = self.write("old.json", json.dumps({"plan": {}, "totals": {}, "warnings": ["x"]}))
        with self.assertRaises(lr.ResultError):
            lr.load(old)
        self.assertIsNone(lr.read(old))
        self.assertIsNone(lr.read(self.out / "missing.json"))
        self.assertIsNone(lr.read(self.write("bad.json", "{not json")))

    def test_ramp_steps_are_whole_results(self):
        doc = lr.load(FIXTURES / "ramp-rate.json")
        steps = lr.steps(doc)
        self.assertEqual(len(steps), 3)
        self.assertEqual([lr.step(s)["rate"] for s in steps], [100, 200, 300])
        self.assertEqual([lr.step(s)["ok"] for s in steps], [True, True, False])
        self.assertEqual(lr.step(steps[2])["reason"], "p99 61.0ms > SLO 50.0ms")
        self.assertEqual(doc["summary"]["verdict"]["best_step"], 1)
        self.assertEqual(lr.planned(steps[0])["per_second"], 100)
        self.assertEqual(lr.step(lr.load(FIXTURES / "rate-ws.json")), {})
        self.assertEqual(lr.steps(lr.load(FIXTURES / "rate-ws.json")), [])


class Figures(unittest.TestCase):
    def test_latency_from_the_histograms(self):
        s = lr.summary(FIXTURES / "rate-ws.json")
        self.assertEqual(lr.latency_ms(s, "p99"), 6.2)
        self.assertEqual(lr.latency_ms(s, "p50"), 0.8)
        echo = lr.summary(FIXTURES / "echo.json")
        # The main histogram by default: rtt for echo.
        self.assertEqual(lr.latency_ms(echo, "p99"), 0.4)
        self.assertEqual(lr.latency_ms(echo, "p99", "connect"), 0.08)

    def test_missing_and_null_figures_are_none(self):
        s = lr.summary(FIXTURES / "rate-lossy.json")
        self.assertEqual(s["histograms"], {})
        self.assertIsNone(lr.latency_ms(s, "p99"))
        self.assertIsNone(s["server"])
        self.assertIsNone(lr.cpu_per_delivery_s(s))
        self.assertIsNone(lr.server_share(s))
        self.assertEqual(lr.delivered_ratio(s), 0.75)
        self.assertFalse(lr.all_delivered(s))
        idle = lr.summary(FIXTURES / "idle.json")
        self.assertIsNone(lr.delivered_ratio(idle), "nothing expected: no ratio")
        self.assertFalse(lr.all_delivered(idle), "nothing expected is not a success")

    def test_cpu_per_delivery_is_the_load_generators(self):
        s = lr.summary(FIXTURES / "rate-ws.json")
        self.assertAlmostEqual(lr.cpu_per_delivery_s(s), s["server"]["cpu_s_per_million_deliveries"] / 1e6)
        self.assertTrue(lr.all_delivered(s))

    def test_echo_round_trips(self):
        received, per_s, cpu_per_m = lr.round_trips(lr.summary(FIXTURES / "echo.json"))
        self.assertEqual(received, 90000)
        self.assertAlmostEqual(per_s, 90000 / 1.02)
        self.assertAlmostEqual(cpu_per_m, 0.13 / 90000 * 1e6)


class Warnings(unittest.TestCase):
    def test_by_kind(self):
        s = lr.summary(FIXTURES / "rate-poll.json")
        self.assertEqual(lr.kinds(s), ["loadgen_busy", "sends_late"])
        self.assertTrue(lr.busy(s))
        self.assertEqual(lr.short_warnings(s), "LOAD GENERATOR BUSY; sends late")
        self.assertIn("LOAD GENERATOR WAS BUSY", lr.full_warnings(s))
        self.assertFalse(lr.busy(lr.summary(FIXTURES / "rate-ws.json")))
        self.assertEqual(lr.short_warning({"kind": "something_new"}), "something_new")

    def test_busy_share_alone_counts(self):
        s = lr.summary(FIXTURES / "rate-ws.json")
        s["loadgen"]["busy_share"] = 0.9
        self.assertTrue(lr.busy(s))


class Verdicts(unittest.TestCase):
    def test_thresholds(self):
        s = lr.summary(FIXTURES / "rate-ws.json")
        self.assertIsNone(lr.verdict(s), "no thresholds: passed")
        s["thresholds"] = [{"name": "p99", "limit": 5000.0, "value": 6200.0, "unit": "us", "passed": False},
                           {"name": "loss", "limit": 0.0, "value": 0.0, "unit": "messages", "passed": True}]
        s["passed"] = False
        self.assertEqual(lr.verdict(s), "p99 6.20 ms over the limit 5.00 ms")
        s["thresholds"][1].update(value=3.0, passed=False)
        self.assertEqual(lr.verdict(s), "p99 6.20 ms over the limit 5.00 ms; loss 3 messages over the limit 0 messages")

    def test_failed_without_a_threshold_is_busy_or_failed(self):
        s = lr.summary(FIXTURES / "rate-poll.json")
        s["passed"] = False
        self.assertEqual(lr.verdict(s), "the load generator was busy: inconclusive")
        s = lr.summary(FIXTURES / "rate-ws.json")
        s["passed"] = False
        self.assertEqual(lr.verdict(s), "failed")


class Formatting(unittest.TestCase):
    def test_milliseconds(self):
        self.assertEqual(lr.fmt_ms(None), "-")
        self.assertEqual(lr.fmt_ms(1500), "1.50 s")
        self.assertEqual(lr.fmt_ms(162.4), "162 ms")
        self.assertEqual(lr.fmt_ms(67.04), "67.0 ms")
        self.assertEqual(lr.fmt_ms(6.2), "6.20 ms")
        self.assertEqual(lr.ms(0.5), "500 µs")
        self.assertEqual(lr.pct(None), "-")
        self.assertEqual(lr.pct(0.934), "93 %")

    def test_table(self):
        t = lr.table(["a", "b"], [[1, 2]])
        self.assertEqual(t, "| a | b |\n|---|---:|\n| 1 | 2 |\n")

    def test_load_range_of_noise_lines(self):
        lines = ["idle: load average 1.20 1.0 0.9; CPU busy cpu0 3 %", "ramp: load average 3.5 2 1; x"]
        self.assertEqual(lr.load_range(lines), (1.2, 3.5))
        self.assertEqual(lr.load_range(["nothing here"]), (None, None))


class CommandLine(RunDir):
    def test_all_delivered(self):
        good = str(FIXTURES / "rate-ws.json")
        lossy = str(FIXTURES / "rate-lossy.json")
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(lr.main(["all-delivered", good]), 0)
            self.assertEqual(lr.main(["all-delivered", good, lossy]), 1)
            self.assertEqual(lr.main(["all-delivered", str(self.out / "none.json")]), 1)
        self.assertIn("delivered 150 of 200 expected FAILED", out.getvalue())

    def test_other_work(self):
        self.put("rate-ws", "run.json")
        snap = {"hz": 100, "cpus": {"0": [100, 1000], "1": [0, 1000]}, "pid_ticks": 10}
        end = {"hz": 100, "cpus": {"0": [400, 2000], "1": [200, 2000]}, "pid_ticks": 110}
        self.write("run.cpu.jsonl", json.dumps(snap) + "\n" + json.dumps(end) + "\n")
        server, loadgen = lr.other_work(self.out, "run", lr.summary(self.out / "run.json"))
        # 300 busy ticks of 1000, 100 of them the server's own: 20 % other work.
        self.assertAlmostEqual(server, 0.2)
        # 200 busy ticks, 40 the load generator's (0.4 CPU-s at 100 Hz).
        self.assertAlmostEqual(loadgen, 0.16)
        with redirect_stdout(io.StringIO()) as out:
            lr.main(["other-work", str(self.out), "run"])
        self.assertEqual(out.getvalue().strip(), "0.200")


if __name__ == "__main__":
    unittest.main()
