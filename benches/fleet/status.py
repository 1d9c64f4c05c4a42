#!/usr/bin/env python3
"""The status page benchmark of issue 16 (docs/PERFORMANCE.md), behind scripts/bench-status.

Runs the release exporter on a demo fleet of N lines (default 100,000) with polls landing
(200 readings a second, like bench.py) and times, with curl, on loopback:
  - `/` and `/api/v1/lines?limit=100&sort=balance`, each asked 1.1 s apart (polls changed
    the store since the last one: each finds the copy the refresher rebuilt) and back to
    back (answers reuse it);
  - the gzip scrape of /metrics alone, then while another client asks `/` and the API page
    10 times a second each (--page-rate): the issue's "a scrape at the same time is not
    slowed by more than 10%".
Prints one table of medians and maxima. Usage: status.py EXPORTER [--lines N] [--runs R] [--page-rate R]
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the fleet bench's process, config and curl helpers)

PAGES = {"/": "/", "api": "/api/v1/lines?limit=100&sort=balance"}


def pending(base):
    """Lines not yet polled, from the API's own count."""
    _, body = bench.http_get(base + "/api/v1/lines?state=pending&limit=1", timeout=60)
    return int(bench.json.loads(body)["total"])


def spaced(url, runs, gap):
    times = []
    for _ in range(runs):
        time.sleep(gap)
        times.extend(bench.curl_times(url, 1, True))
    return times


def loader(base, stop, counts, rate):
    """Asks the page and the API page in turn, `rate` of each a second, until `stop`: many
    people's browsers and scripts at once, so that scrapes meet both reused snapshots and
    rebuilds (a loop as fast as it can go would measure the loopback and curl, not the page)."""
    gap = 1.0 / rate
    while not stop.is_set():
        t = time.time()
        for path in PAGES.values():
            bench.http_get(base + path, {"Accept-Encoding": "gzip"}, timeout=60)
            counts[0] += 1
        time.sleep(max(0.0, gap - (time.time() - t)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exporter")
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=20, help="requests per figure")
    ap.add_argument("--page-rate", type=float, default=10, help="requests a second of each page while scraping")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="esim-bench-status-")
    n = args.lines
    interval = max(1, n // bench.READINGS_PER_SECOND)
    cfg = os.path.join(workdir, "fleet.yaml")
    bench.gen_config(cfg, n, interval, 256)
    port = bench.free_port()
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        ex = bench.Proc("exporter", [args.exporter, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                                     "--log.level", "error"], workdir)
        bench.wait_until_ready(base + "/-/ready", ex)
        t = time.time()
        while pending(base) > 0 and time.time() - t < 900:
            time.sleep(1)
        bench.log(f"{n} lines polled after {time.time() - t:.0f}s; measuring")
        time.sleep(2)
        for name, path in PAGES.items():
            rebuilt = spaced(base + path, args.runs, 1.1)
            reused = spaced(base + path, args.runs, 0.0)
            rows.append((f"{name} (1.1 s apart, polls landing)", rebuilt))
            rows.append((f"{name} (back to back, snapshot reused)", reused))
        metrics = base + "/metrics"
        alone = bench.curl_times(metrics, args.runs, True)
        stop, counts = threading.Event(), [0]
        th = threading.Thread(target=loader, args=(base, stop, counts, args.page_rate), daemon=True)
        t = time.time()
        th.start()
        time.sleep(1)
        loaded = bench.curl_times(metrics, args.runs, True)
        page_rate = counts[0] / (time.time() - t)
        stop.set()
        th.join()
        rows.append(("/metrics gzip, alone", alone))
        rows.append((f"/metrics gzip, while / and api are asked ({page_rate:.0f}/s in all)", loaded))
        readings = bench.family_values(bench.scrape_text(metrics), "esim_scheduler_queue_wait_seconds_count")
        bench.log(f"polls recorded so far: {readings[0]:.0f}" if readings else "no poll counter")
    finally:
        bench.stop_all()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(workdir, ignore_errors=True)
    load = open("/proc/loadavg").read().split()[0]
    print(f"status page at {n} lines, {bench.READINGS_PER_SECOND} readings/s landing, load {load}, {os.cpu_count()} CPUs")
    print(f"{'request':<72} {'median ms':>10} {'max ms':>8}")
    for label, times in rows:
        print(f"{label:<72} {bench.median(times) * 1e3:>10.1f} {max(times) * 1e3:>8.1f}")
    alone_ms, loaded_ms = bench.median(rows[-2][1]), bench.median(rows[-1][1])
    print(f"scrape slowed by {100 * (loaded_ms / alone_ms - 1):+.1f}% (median)")


if __name__ == "__main__":
    main()
