"""scripts/summarize.py and scripts/lib/plots.py over a bench.sh / compare.sh directory."""
import unittest

from helpers import RunDir, rows

import plots
import summarize


class TransportTable(RunDir):
    def setUp(self):
        super().setUp()
        self.put("rate-ws", "transport-ws-20-10.json")
        self.put("rate-sse", "transport-sse-20-10.json")
        self.put("rate-poll", "transport-poll-1s-20-10.json")
        self.put("rate-lossy", "transport-longpoll-20-10.json")
        self.write("transport-ws-20-10.rss-before", "5000\n")
        self.write("transport-ws-20-10.rss-peak", "5100\n")
        self.md = summarize.transport_table(self.out)

    def test_rows_in_transport_order_with_the_summarys_figures(self):
        order = [line.split("|")[1].strip() for line in self.md.splitlines() if line.startswith("| ")][1:]
        self.assertEqual(order, ["ws", "sse", "longpoll", "poll-1s"])
        ws = rows(self.md, "ws")[0]
        # transport, clients, msg/s, p50, p99, p99.9, delivered, deliveries/s, wire, requests/s,
        # CPU per 1M, RSS per client, load generator CPU
        self.assertEqual(ws[:7], ["ws", "20", "10", "800 µs", "6.20 ms", "6.75 ms", "100.0 %"])
        self.assertEqual(ws[7], "196")          # summary.messages.deliveries_per_s
        self.assertEqual(ws[8], "199")          # 184 received + 15 sent per delivery
        self.assertEqual(ws[9], "-")            # no HTTP requests over WebSocket
        self.assertEqual(ws[10], "650.00")      # summary.server.cpu_s_per_million_deliveries
        self.assertEqual(ws[11], "5,120 B")     # (5100 - 5000) KiB / 20 clients
        poll = rows(self.md, "poll-1s")[0]
        self.assertEqual(poll[4], "990 ms")
        self.assertEqual(poll[9], "245")        # summary.requests.per_s
        self.assertEqual(poll[12], "93 %")

    def test_missing_figures_are_dashes(self):
        lossy = rows(self.md, "longpoll")[0]
        self.assertEqual(lossy[3:7], ["-", "-", "-", "75.0 %"])
        self.assertEqual(lossy[10], "-", "no --server-pid: no CPU figure")

    def test_warnings_by_run_with_their_messages(self):
        self.assertIn("- poll-1s x 20 at 10 msg/s: LOAD GENERATOR WAS BUSY: 93 %", self.md)
        self.assertIn("; 12.5% of sends left more than 1 ms", self.md)
        self.assertIn("LOAD GENERATOR WAS BUSY", self.md)
        self.assertNotIn("- ws x 20", self.md)

    def test_a_run_without_a_result_says_so(self):
        self.write("transport-ws-40-10.json", "")
        md = summarize.transport_table(self.out)
        self.assertIn("- ws x 40 at 10 msg/s: no result (see transport-ws-40-10.txt)", md)


class BroadcastTables(RunDir):
    def test_rounds_give_medians_and_ranges(self):
        self.put("rate-ws", "fanout-1k-tickcast-r1.json")
        self.put("rate-sse", "fanout-1k-tickcast-r2.json")
        self.put("rate-poll", "fanout-1k-bare-r1.json")
        md = summarize.broadcast_table(self.out, "fanout-1k", None)
        self.assertIn("### 20 subscribers x 10 msg/s (128 B) (medians of 2 rounds;", md)
        tickcast = rows(md, "tickcast")[0]
        self.assertEqual(tickcast[2], "154 ms (6.20 ms to 301 ms)")
        bare = rows(md, "bare")[0]
        self.assertEqual(bare[-1], "1.00x less CPU")

    def test_saturated_uses_the_sustained_figure(self):
        self.put("saturate", "saturate-1k-tickcast.json")
        md = summarize.broadcast_table(self.out, "saturate-1k", None)
        self.assertIn("### 50 subscribers, saturated (window of 8 messages)", md)
        row = rows(md, "tickcast")[0]
        self.assertEqual(row[6], "95,000")
        self.assertEqual(row[1], "300 µs")

    def test_no_runs_no_table(self):
        self.assertEqual(summarize.broadcast_table(self.out, "fanout-10k", None), "")

    def test_round_names(self):
        self.assertEqual(summarize.split_round("tickcast-r2"), ("tickcast", 2))
        self.assertEqual(summarize.split_round("tokio-tungstenite"), ("tokio-tungstenite", None))
        self.assertEqual(summarize.split_round("node-ws-r10"), ("node-ws", 10))


class EchoAndIdle(RunDir):
    def test_echo(self):
        self.put("echo", "echo-tickcast-10.json")
        row = rows(summarize.echo_table(self.out), "10")[0]
        self.assertEqual(row[:7], ["10", "tickcast", "90 µs", "400 µs", "650 µs", "900 µs", "88,235"])
        # (0.12 + 0.01) CPU-s over 90,000 round trips
        self.assertEqual(row[7], "1.44")

    def test_idle(self):
        self.put("idle", "idle-tickcast-200.json")
        row = rows(summarize.idle_table(self.out), "tickcast-200")[0]
        self.assertEqual(row[1:6], ["200", "200", "2,000 B", "10,000 B", "2,048 B"])


class Plots(RunDir):
    def test_latency_plots_use_hgrm_files_and_a_log_axis(self):
        self.put("rate-ws", "transport-ws-20-10.json")
        self.put("rate-poll", "transport-poll-1s-20-10.json")
        self.write("transport-ws-20-10.hgrm", "0.8 0.5 10\n")
        self.write("transport-poll-1s-20-10.hgrm", "500 0.5 10\n")
        cmds = dict(plots.commands(self.out, "REPORT"))
        args = cmds["latency-20-10.svg"]
        self.assertEqual(args[:3], ["REPORT", "plot-latency", "--log-y"])
        self.assertIn(f"ws={self.out / 'transport-ws-20-10.hgrm'}", args)
        self.assertIn(f"poll-1s={self.out / 'transport-poll-1s-20-10.hgrm'}", args)
        # One client count per transport: no lines against clients.
        self.assertNotIn("deliveries.svg", cmds)

    def test_lines_against_clients(self):
        self.put("rate-ws", "transport-ws-20-10.json")
        self.put("rate-ws", "transport-ws-200-10.json")
        cmds = dict(plots.commands(self.out, "REPORT"))
        self.assertIn("ws @ 10/s=20:196.1,200:196.1", cmds["deliveries.svg"])


if __name__ == "__main__":
    unittest.main()
