#!/usr/bin/env python3
"""Prints a tickcast server's /metrics as one JSON object, every series summed over workers:
{"tickcast_sends_total": 123, ...}. Stdlib only.

    scrape_metrics.py PORT
"""
import http.client
import json
import sys


def main():
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    totals = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        totals[name] = totals.get(name, 0) + float(value)
    print(json.dumps(totals, sort_keys=True))


if __name__ == "__main__":
    main()
