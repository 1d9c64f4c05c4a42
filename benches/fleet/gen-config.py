#!/usr/bin/env python3
"""Writes a fleet config of N demo lines: 10 accounts, an MSISDN, an ICCID and a site label per
line, polls spread over POLL_INTERVAL so that N / interval readings land every second.

With --own-labels (issue 15's fleet shape) every line carries two labels of its own instead:
`site` (one of 2,000) and `fleet` (one of 20, the site's fleet), so the fleet has 2,000
distinct label sets from 2,000 lines on, and the accounts carry no labels.

usage: gen-config.py [--own-labels] N POLL_INTERVAL_SECONDS [MAX_CONCURRENCY] > fleet.yaml
"""
import sys

PROFILES = ["steady"] * 8 + ["heavy", "low"]
SITES, FLEETS = 2000, 20


def main():
    argv = sys.argv[1:]
    own_labels = "--own-labels" in argv
    argv = [a for a in argv if a != "--own-labels"]
    n, interval = int(argv[0]), int(argv[1])
    concurrency = int(argv[2]) if len(argv) > 2 else 64
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
        out.write(f"  fleet-{a}:\n    driver: demo\n    seed: {a + 1}\n    operator: op{a}\n")
        if not own_labels:
            out.write(f"    labels: {{fleet: fleet-{a}}}\n")
    out.write("lines:\n")
    for i in range(n):
        if own_labels:
            site = i % SITES
            labels = f"{{fleet: fleet-{site % FLEETS:02d}, site: site-{site:04d}}}"
        else:
            labels = f"{{site: site-{i % 50}}}"
        out.write(
            f"  - {{name: sim-{i:06d}, account: fleet-{i % 10}, msisdn: \"+7926{i:07d}\", "
            f"iccid: \"89701{i:014d}\", profile: {PROFILES[i % len(PROFILES)]}, "
            # The own-labels fleet is an IoT fleet: data-only SIMs (issue 15's healthy line
            # reports balance, data, quota and expiry).
            + ("data_only: true, " if own_labels else "")
            + f"labels: {labels}}}\n"
        )


if __name__ == "__main__":
    main()
