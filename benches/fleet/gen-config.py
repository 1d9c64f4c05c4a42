#!/usr/bin/env python3
"""Writes a fleet config of N demo lines: 10 accounts, an MSISDN, an ICCID and a site label per
line, polls spread over POLL_INTERVAL so that N / interval readings land every second.

usage: gen-config.py N POLL_INTERVAL_SECONDS [MAX_CONCURRENCY] > fleet.yaml
"""
import sys

PROFILES = ["steady"] * 8 + ["heavy", "low"]


def main():
    n, interval = int(sys.argv[1]), int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    out = sys.stdout
    out.write(
        "global:\n"
        f"  poll_interval: {interval}s\n"
        "  timeout: 10s\n"
        f"  max_concurrency: {concurrency}\n"
        "  stale_after: 6h\n"
        "  alert: {balance_below: 100, data_below: 500MB}\n"
        "accounts:\n"
    )
    for a in range(10):
        out.write(
            f"  fleet-{a}:\n    driver: demo\n    seed: {a + 1}\n    operator: op{a}\n"
            f"    labels: {{fleet: fleet-{a}}}\n"
        )
    out.write("lines:\n")
    for i in range(n):
        out.write(
            f"  - {{name: sim-{i:06d}, account: fleet-{i % 10}, msisdn: \"+7926{i:07d}\", "
            f"iccid: \"89701{i:014d}\", profile: {PROFILES[i % len(PROFILES)]}, "
            f"labels: {{site: site-{i % 50}}}}}\n"
        )


if __name__ == "__main__":
    main()
