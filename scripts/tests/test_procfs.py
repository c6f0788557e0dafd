"""scripts/lib/procfs.py against this machine's /proc."""
import os
import unittest

from helpers import RunDir

import procfs


class Proc(RunDir):
    def test_this_process(self):
        self.assertGreater(procfs.rss_kib(os.getpid()), 0)
        self.assertIsNotNone(procfs.pid_ticks(os.getpid()))
        self.assertIsNone(procfs.rss_kib(2**22 + 1), "no such process")
        self.assertIsNone(procfs.pid_ticks(2**22 + 1))

    def test_cpus(self):
        times = procfs.cpu_times()
        self.assertIn("0", times)
        busy, total = times["0"]
        self.assertLessEqual(busy, total)

    def test_rss_peak_ends_with_the_process(self):
        peak = self.out / "peak"
        procfs.rss_peak(2**22 + 1, peak, 5)
        self.assertFalse(peak.exists(), "a process that is gone has no peak")
        procfs.rss_peak(os.getpid(), peak, 0.3)
        self.assertGreater(int(peak.read_text()), 0)

    def test_kernel_memory(self):
        self.assertIn("slab_bytes", procfs.meminfo_bytes("Slab"))
        self.assertIn("inuse", procfs.sockstat_tcp())
        self.assertEqual(len(procfs.tcp_mem_pages()), 3)
        self.assertEqual(len(procfs.loadavg()), 3)


if __name__ == "__main__":
    unittest.main()
