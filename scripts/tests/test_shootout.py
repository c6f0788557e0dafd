"""scripts/lib/shootout.py: the shootout's smoke check, ramp steps and report."""
import io
import json
import stat
import unittest
from contextlib import redirect_stderr, redirect_stdout

from helpers import FIXTURES, RunDir, rows

import shootout


class SmokeCheck(RunDir):
    def test_every_message_delivered(self):
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(shootout.smoke_check(str(FIXTURES / "rate-ws.json"), "node-ws"), 0)
            self.assertEqual(shootout.smoke_check(str(FIXTURES / "rate-lossy.json"), "socketio"), 1)
        self.assertIn("node-ws smoke: 20 clients, delivered 200 of 200 expected (0 reordered)\n", out.getvalue())
        self.assertIn("delivered 150 of 200 expected (0 reordered) FAILED", out.getvalue())

    def test_no_result(self):
        with redirect_stderr(io.StringIO()) as err:
            self.assertEqual(shootout.smoke_check(str(self.out / "smoke-x.json"), "x"), 1)
        self.assertIn("no result", err.getvalue())


class Steps(RunDir):
    def tool(self, p95_us):
        """A stand-in for tickcast-report: `percentile` prints p95_us."""
        path = self.write("report-tool", f"#!/bin/sh\necho {p95_us}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    def test_ramp_stopped_on_p99_alone_asks_for_the_next_step(self):
        prefix = str(self.out / "step-tickcast")
        with redirect_stdout(io.StringIO()) as out:
            shootout.steps(str(FIXTURES / "ramp-clients.json"), prefix, self.tool(120000.0), 250.0, 3000)
        self.assertEqual(out.getvalue().strip(), "9500")
        figs = [json.loads((self.out / f"step-tickcast-{c}.step.json").read_text()) for c in (500, 3500, 6500)]
        self.assertEqual([f["ok"] for f in figs], [True, True, False])
        self.assertEqual(figs[2]["reason"], "p99 80.0ms > SLO 50.0ms")
        self.assertTrue(figs[2]["p99_only"])
        self.assertEqual(figs[0]["p95_ms"], 120.0)
        self.assertEqual(figs[0]["rate"], 5)
        self.assertTrue(all(f["p95_pass"] for f in figs))
        # Each step's result is kept for tickcast-report.
        self.assertTrue((self.out / "step-tickcast-500.result.json").exists())

    def test_p95_over_the_slo_stops(self):
        prefix = str(self.out / "step-bare")
        with redirect_stdout(io.StringIO()) as out:
            shootout.steps(str(FIXTURES / "ramp-clients.json"), prefix, self.tool(300000.0), 250.0, 3000)
        self.assertEqual(out.getvalue().strip(), "")
        with redirect_stdout(io.StringIO()) as out:
            shootout.steps(str(FIXTURES / "ramp-clients.json"), prefix, self.tool(300000.0), 250.0, 0)
        self.assertEqual(out.getvalue().strip(), "fail")

    def test_no_p95_when_the_tool_fails(self):
        prefix = str(self.out / "step-x")
        with redirect_stdout(io.StringIO()):
            shootout.steps(str(FIXTURES / "ramp-clients.json"), prefix, str(self.out / "no-such-tool"), 250.0, 0)
        fig = json.loads((self.out / "step-x-6500.step.json").read_text())
        self.assertIsNone(fig["p95_ms"])
        self.assertEqual(fig["p95_failure"], "no p95 (no latency histogram)")


class P99Only(unittest.TestCase):
    def test_only_when_delivery_publishing_and_the_load_generator_were_fine(self):
        s = json.loads((FIXTURES / "rate-ws.json").read_text())["summary"]
        failed = {"ok": False, "delivered_ratio": 1.0, "reason": "p99 80.0ms > SLO 50.0ms"}
        self.assertTrue(shootout.p99_only(s, failed))
        self.assertFalse(shootout.p99_only(s, dict(failed, ok=True)))
        self.assertFalse(shootout.p99_only(s, dict(failed, delivered_ratio=0.95)))
        busy = json.loads((FIXTURES / "rate-poll.json").read_text())["summary"]
        self.assertFalse(shootout.p99_only(busy, failed))


class Report(RunDir):
    def test_tables_from_the_runs(self):
        for r in (1, 2):
            self.put("rate-ws", f"{r}-rate-1k-tickcast.json")
            self.put("saturate", f"{r}-saturate-1k-tickcast.json")
            self.put("rate-poll", f"{r}-rate-1k-bare.json")
        self.write("1-rate-1k-tickcast.rss-before", "5000")
        self.write("1-rate-1k-tickcast.rss-peak", "6000")
        env = {"clk_tck": 100, "wall": 2.0, "server_ticks": 20, "redis_ticks": 0, "server_core_busy_ticks": 60,
               "loadgen_core_busy_ticks": 100, "redis": False}
        self.write("1-rate-1k-tickcast.env.json", json.dumps(env))
        step = {"clients": 500, "rate": 5, "source": "ramp", "ok": True, "reason": None, "p99_only": False,
                "delivered_ratio": 1.0, "deliveries_per_second": 2500.0, "p50_ms": 2.0, "p95_ms": 9.0,
                "p99_ms": 12.0, "max_ms": 20.0, "busy": False, "warnings": [], "p95_failure": None,
                "p95_pass": True, "server_cpu_pct": 10.0, "loadgen_cpu_pct": 20.0, "cut_off": 0}
        self.write("step-tickcast-500.step.json", json.dumps(step))
        self.write("versions.tsv", "tickcast\ttickcast abc\nbare\tpeer-bare\n")
        md, js = self.out / "shootout.md", self.out / "shootout.json"
        self.assertEqual(shootout.report(self.out, md, js, ["tickcast", "bare"], "", ""), 0)
        text = md.read_text()
        tickcast = rows(text, "tickcast")
        # Fixed rate: delivered over both rounds, per-round p99, CPU per million deliveries.
        self.assertEqual(tickcast[0][2], "400 of 400 (0.00 %)")
        self.assertEqual(tickcast[0][4], "6.20 ms / 6.20 ms")
        self.assertEqual(tickcast[0][6], "650.00 / 650.00")
        self.assertEqual(tickcast[0][7], "51,200 B")
        # other work: (60 - 20) ticks of 2 s on the stack's core; 100 - 40 ticks on the loadgen's
        self.assertEqual(tickcast[0][8], "20 %, 30 %")
        self.assertIn("| tickcast | 95,000 / 95,000 |", text)
        self.assertIn("| tickcast | ≥ 500 | every step passed (end of the range) | ≥ 500 |", text)
        self.assertIn("- bare, rate-1k, round 1: LOAD GENERATOR WAS BUSY", text)
        result = json.loads(js.read_text())
        rounds = result["peers"]["tickcast"]["rate-1k"]["rounds"]
        self.assertEqual([r["round"] for r in rounds], [1, 2])
        self.assertEqual(rounds[0]["cpu_per_m"], 650.0)

    def test_run_names(self):
        self.assertEqual(shootout.run_name("2-rate-1k-node-ws.json"), (2, "rate-1k", "node-ws"))
        self.assertEqual(shootout.run_name("1-saturate-1k-tokio-tungstenite.json"),
                         (1, "saturate-1k", "tokio-tungstenite"))
        self.assertIsNone(shootout.run_name("1-rate-1k-bun.env.json"))
        self.assertIsNone(shootout.run_name("step-bun-500.result.json"))
        self.assertIsNone(shootout.run_name("ramp-bun.json"))


if __name__ == "__main__":
    unittest.main()
