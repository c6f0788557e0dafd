"""scripts/lib/capacity.py and scripts/lib/sweep.py: the figures their reports are made of."""
import json
import unittest

from helpers import FIXTURES, RunDir

import capacity
import lgresult as lr
import sweep


class CapacityRamp(RunDir):
    def test_steps_and_where_it_stopped(self):
        self.put("ramp-rate", "ramp.json")
        steps, rows, best, stop, server_limited = capacity.ramp(self.out)
        self.assertEqual(len(steps), 3)
        self.assertEqual([r["offered_per_s"] for r in rows], [1000, 2000, 3000])
        self.assertEqual([r["ok"] for r in rows], [True, True, False])
        self.assertEqual(best["rate"], 200)
        self.assertEqual(best["p99_ms"], 2.0)
        self.assertEqual(stop, "p99 61.0ms > SLO 50.0ms")
        self.assertTrue(server_limited)
        self.assertAlmostEqual(rows[0]["deliveries_per_s"], 200 / 0.22)

    def test_a_busy_load_generator_is_not_the_servers_limit(self):
        doc = lr.load(FIXTURES / "ramp-rate.json")
        last = doc["steps"][-1]
        last["step"]["reason"] = "the load generator was busy: inconclusive"
        last["summary"]["warnings"] = [{"kind": "loadgen_busy", "message": "LOAD GENERATOR WAS BUSY", "share": 0.95}]
        self.write("ramp.json", json.dumps(doc))
        _, _, _, stop, server_limited = capacity.ramp(self.out)
        self.assertEqual(stop, "the load generator was busy: inconclusive")
        self.assertFalse(server_limited)

    def test_every_step_passed_is_a_lower_bound(self):
        doc = lr.load(FIXTURES / "ramp-rate.json")
        doc["steps"] = doc["steps"][:2]
        self.write("ramp.json", json.dumps(doc))
        _, _, best, stop, server_limited = capacity.ramp(self.out)
        self.assertIn("a lower bound", stop)
        self.assertFalse(server_limited)
        self.assertEqual(best["clients"], 10)


class CapacityRuns(RunDir):
    def test_cost(self):
        self.put("rate-poll", "cost-poll.json")
        f = capacity.cost(self.out, "cost-poll")
        self.assertEqual(f["rate"], 10)
        self.assertEqual(f["requests"], 250)
        self.assertAlmostEqual(f["cpu_per_delivery_s"], 650e-6)
        self.assertEqual(f["received_bytes_per_delivery"], 184.0)
        self.assertEqual(f["p99_ms"], 990.0)
        self.assertEqual([w["kind"] for w in f["warnings"]], ["loadgen_busy", "sends_late"])
        self.assertIsNone(capacity.cost(self.out, "cost-missing"))

    def test_idle(self):
        self.put("idle", "idle-200-t1.json")
        self.write("idle-200-t1.slab.json", json.dumps({"baseline": {"slab_bytes": 1000}, "peak": {"slab_bytes": 801000}}))
        [row] = capacity.idle_runs(self.out)
        self.assertEqual(row["threads"], 1)
        self.assertEqual(row["held"], 200)
        self.assertEqual(row["rss_per_connection"], 2000.0)
        self.assertEqual(row["tcp_mem_per_connection"], 409600 / 200 / 2)
        self.assertEqual(row["slab_per_connection"], 2000.0)

    def test_storm(self):
        self.put("connect", "storm.json")
        s = capacity.storm_figures(self.out)
        self.assertEqual(s["connects_per_s"], 9200.0)
        self.assertEqual(s["connect_p99_ms"], 1.5)
        self.assertEqual(s["handshake_p99_ms"], 2.5)
        self.assertFalse(s["busy"])
        self.assertEqual(s["other"], (None, None))


class Sweep(RunDir):
    def test_a_run(self):
        self.put("rate-ws", "rate-0-r1.json")
        self.write("rate-0-r1.metrics.json", json.dumps({"tickcast_sends_total": 10, "tickcast_frames_sent_total": 25}))
        f = sweep.run(self.out, "rate-0-r1")
        self.assertEqual(f["frames_per_send"], 2.5)
        self.assertEqual(f["p99_ms"], 6.2)
        self.assertAlmostEqual(f["server_util"], 0.12 / 1.02)
        self.assertFalse(f["busy"])
        self.assertIsNone(sweep.run(self.out, "rate-1-r1"))

    def test_echo_counts_round_trips(self):
        self.put("echo", "echo-0-r1.json")
        f = sweep.run(self.out, "echo-0-r1")
        self.assertAlmostEqual(f["deliveries_per_s"], 90000 / 1.02)
        self.assertAlmostEqual(f["cpu_per_delivery_s"], 0.13 / 90000)
        self.assertEqual(f["p99_ms"], 0.4, "echo's main histogram is rtt")

    def test_passes_combine_with_one_warning_per_kind(self):
        self.put("rate-poll", "rate-0-r1.json")
        self.put("rate-poll", "rate-0-r2.json")
        self.put("rate-ws", "rate-0-r3.json")
        c = sweep.combine([sweep.run(self.out, f"rate-0-r{k}") for k in (1, 2, 3)])
        self.assertEqual([w["kind"] for w in c["warnings"]], ["loadgen_busy", "sends_late"])
        self.assertTrue(c["busy"])
        self.assertEqual(c["p99_ms_all"], [990.0, 990.0, 6.2])


if __name__ == "__main__":
    unittest.main()


class WholeReports(RunDir):
    """capacity.py and sweep.py end to end over fixture runs; `true` stands in for
    tickcast-report (the plots are its own tests' business)."""

    def run_main(self, module, *args):
        import sys
        argv = sys.argv
        sys.argv = ["x", str(self.out), *args]
        try:
            module.main()
        finally:
            sys.argv = argv

    def test_capacity(self):
        self.write("machine.txt", "machine: test\ncommit: abc\nmode: smoke; RLIMIT_NOFILE 1024\n")
        self.write("noise.txt", "idle: load average 0.5 0.4 0.3; CPU busy cpu0 1 %\n")
        self.put("idle", "idle-200-t1.json")
        self.put("ramp-rate", "ramp.json")
        for name, fixture in (("cost-ws-128", "rate-ws"), ("cost-ws-4096", "rate-ws"), ("cost-sse", "rate-sse"),
                              ("cost-longpoll", "rate-ws"), ("cost-poll", "rate-poll"), ("cost-publish", "rate-ws")):
            self.put(fixture, f"{name}.json")
        self.put("connect", "storm.json")
        self.run_main(capacity, "smoke", "true", "50ms")
        cal = json.loads((self.out / "calibration.json").read_text())["inputs"]
        self.assertAlmostEqual(cal["ws_cpu_s_per_delivery"]["value"], 650e-6)
        self.assertEqual(cal["wire_overhead_bytes"]["value"], 184.0 - 128)
        self.assertEqual(cal["connects_per_s_per_core"]["value"], 9200.0)
        self.assertEqual(cal["poll_cpu_s_per_request"]["value"], 0.12 / 250)
        self.assertAlmostEqual(cal["slo_deliveries_per_s_per_core"]["value"], 400 / 0.22)
        self.assertEqual(cal["connections_per_worker"]["value"], 1024)
        report = (self.out / "report.md").read_text()
        self.assertIn("TCP connect p99 1.50 ms, handshake p99 2.50 ms", report)
        self.assertIn("The ramp stopped because: p99 61.0ms > SLO 50.0ms", report)
        self.assertIn("| poll | 20 x 10 |", report)
        self.assertIn("LOAD GENERATOR BUSY; sends late", report)

    def test_capacity_with_an_unmeasurably_short_run(self):
        self.write("machine.txt", "machine: test\n")
        self.put("idle", "idle-200-t1.json")
        self.put("ramp-rate", "ramp.json")
        doc = json.loads((FIXTURES / "rate-ws.json").read_text())
        doc["summary"]["server"].update(cpu_s=0.0, drain_cpu_s=0.0, cpu_s_per_million_deliveries=None)
        for name in ("cost-ws-128", "cost-sse", "cost-longpoll", "cost-poll", "cost-publish"):
            self.write(f"{name}.json", json.dumps(doc))
        self.put("connect", "storm.json")
        self.run_main(capacity, "smoke", "true", "50ms")
        ws = json.loads((self.out / "calibration.json").read_text())["inputs"]["ws_cpu_s_per_delivery"]
        self.assertEqual(ws["value"], 0.0)
        self.assertIn("below the clock's resolution", ws["note"])

    def test_sweep(self):
        self.write("machine.txt", "machine: test\n")
        self.write("rows.tsv", "sweep\tindex\tlabel\tflags\tparam\nrate\t0\tdefaults\t\tring-entries=4096\n"
                               "rate\t1\t--pin\t--pin\t\necho\t0\tdefaults\t\tbuf-count=1024\n")
        self.put("rate-ws", "rate-0-r1.json")
        self.put("rate-poll", "rate-1-r1.json")
        self.put("echo", "echo-0-r1.json")
        self.run_main(sweep, "smoke", "true", "1")
        report = (self.out / "report.md").read_text()
        self.assertIn("| --pin | 196 (+0 %) | 500 ms | 990 ms |", report)
        self.assertIn("LOAD GENERATOR BUSY", report)
        self.assertIn("| defaults | 88,235 (+0 %) | 90 µs | 400 µs |", report)
        summary = json.loads((self.out / "summary.json").read_text())
        self.assertEqual([r["label"] for r in summary["sweeps"]["rate"]], ["defaults", "--pin"])
