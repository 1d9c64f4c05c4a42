#!/usr/bin/env python3
"""Helpers for tests/e2e/alerting.sh (Python 3 standard library only, loopback only).

    e2e.py free-ports N                      print N free TCP ports on 127.0.0.1
    e2e.py wait-http URL SECONDS [TEXT]      wait until URL answers 200 (and contains TEXT)
    e2e.py comfortable METRICS_URL LINE SECONDS
                                             wait up to SECONDS for LINE's first reading; exit 0
                                             if it is far from every alert condition (see
                                             below), else print why and exit 1
    e2e.py wait-alert AM_URL SECONDS NAME LABEL=VALUE... [ANNOTATION~=TEXT...]
                                             wait until Alertmanager has an active alert NAME
                                             with these labels (and annotations containing TEXT)
    e2e.py rules-health PROM_URL             print every rule whose last evaluation failed
    e2e.py alerts-for AM_URL PROM_URL LINE [NAME]
                                             print the alerts for LINE (optionally only NAME)
                                             in Alertmanager and Prometheus (pending and
                                             firing); exit 1 if there are any
"""

import json
import re
import socket
import sys
import time
import urllib.error
import urllib.request


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def wait_http(url, seconds, text=None):
    deadline, last = time.monotonic() + float(seconds), "no answer"
    while time.monotonic() < deadline:
        try:
            status, body = get(url, timeout=2)
            if status == 200 and (text is None or text in body):
                return 0
            last = f"HTTP {status}" + (f", no {text!r} yet" if text else "")
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.3)
    print(f"{url} not ready after {seconds}s: {last}", file=sys.stderr)
    return 1


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """(metric name, labels, value) of every sample in a text exposition."""
    for raw in text.splitlines():
        m = SAMPLE.match(raw)
        if m and not raw.startswith("#"):
            yield m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))


def line_values(text, line):
    """{metric name: value} of the series of one line in a text exposition, with the alert
    thresholds in effect for it: the line's own series where it has one (it overrides its
    account's), else its account's esim_default_* series (account "": lines without one)."""
    values, account = {}, None
    for name, labels, value in samples(text):
        if labels.get("line") == line:
            values[name] = value
            account = labels.get("account", "")
    defaults = {"esim_default_balance_alert_threshold": "esim_balance_alert_threshold",
                "esim_default_data_remaining_alert_threshold_bytes": "esim_data_remaining_alert_threshold_bytes"}
    for name, labels, value in samples(text):
        if name in defaults and account is not None and labels.get("account", "") == account:
            values.setdefault(defaults[name], value)
    return values


def comfortable(metrics_url, line, seconds):
    """The demo fleet runs on the wall clock: every demo package renews every 30 days, so on
    3 days in 30 any line is legitimately within EsimQuotaExpiringSoon's horizon (and near the
    end of a package its data may drop under 10% of the quota). The e2e picks a demo seed for
    its healthy line that is comfortably clear of every alert condition right now."""
    deadline = time.monotonic() + float(seconds)
    while True:  # until the first poll of the line has succeeded
        _, text = get(metrics_url)
        v = line_values(text, line)
        if "esim_balance" in v or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    now, problems = time.time(), []
    if "esim_balance" not in v:
        problems.append("no esim_balance yet")
    elif v["esim_balance"] <= 1.5 * v.get("esim_balance_alert_threshold", 0):
        problems.append(f"balance {v['esim_balance']} near its threshold")
    expiry = v.get("esim_quota_expiry_timestamp_seconds")
    if expiry is not None and expiry - now < 4 * 86400:
        problems.append(f"package ends in {(expiry - now) / 86400:.1f} days (alert horizon 3 days)")
    remaining, quota = v.get("esim_data_remaining_bytes"), v.get("esim_data_quota_bytes")
    if remaining is not None and quota and remaining < 0.15 * quota:
        problems.append(f"data {remaining:.0f} of {quota:.0f} bytes (alert under 10%)")
    threshold = v.get("esim_data_remaining_alert_threshold_bytes")
    if remaining is not None and threshold is not None and remaining <= 1.5 * threshold:
        problems.append(f"data {remaining:.0f} bytes near its threshold {threshold:.0f}")
    if problems:
        print(f"{line}: " + "; ".join(problems))
        return 1
    return 0


def am_alerts(am_url):
    _, body = get(am_url.rstrip("/") + "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
    return json.loads(body)


def wait_alert(am_url, seconds, name, *pairs):
    texts = dict(p.split("~=", 1) for p in pairs if "~=" in p)
    want = dict(p.split("=", 1) for p in pairs if "~=" not in p)
    want["alertname"] = name
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            for a in am_alerts(am_url):
                if all(a["labels"].get(k) == v for k, v in want.items()) and \
                        all(t in a["annotations"].get(k, "") for k, t in texts.items()):
                    print(f"alertmanager has {name}: " + json.dumps(a["labels"], sort_keys=True))
                    print(f"  summary: {a['annotations'].get('summary')}")
                    print(f"  description: {a['annotations'].get('description')}")
                    return 0
        except (OSError, ValueError, urllib.error.URLError):
            pass
        time.sleep(1)
    print(f"no {name} with {want}" + (f" and annotations containing {texts}" if texts else "") +
          f" reached alertmanager within {seconds}s", file=sys.stderr)
    return 1


def alerts_for(am_url, prom_url, line, name=None):
    found = []
    for a in am_alerts(am_url):
        if a["labels"].get("line") == line and name in (None, a["labels"].get("alertname")):
            found.append(f"alertmanager: {a['labels'].get('alertname')} {json.dumps(a['labels'], sort_keys=True)}")
    _, body = get(prom_url.rstrip("/") + "/api/v1/alerts")
    for a in json.loads(body)["data"]["alerts"]:
        if a["labels"].get("line") == line and name in (None, a["labels"].get("alertname")):
            found.append(f"prometheus ({a['state']}): {a['labels'].get('alertname')} "
                         f"{json.dumps(a['labels'], sort_keys=True)}")
    for f in found:
        print(f)
    return 1 if found else 0


def rules_health(prom_url):
    _, body = get(prom_url.rstrip("/") + "/api/v1/rules")
    for g in json.loads(body)["data"]["groups"]:
        for r in g["rules"]:
            if r.get("health") != "ok":
                print(f"{r['name']}: health {r.get('health')}: {r.get('lastError')}")
    return 0


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if cmd == "free-ports":
        free_ports(int(args[0]))
        return 0
    if cmd == "wait-http":
        return wait_http(*args)
    if cmd == "comfortable":
        return comfortable(*args)
    if cmd == "wait-alert":
        return wait_alert(*args)
    if cmd == "rules-health":
        return rules_health(*args)
    if cmd == "alerts-for":
        return alerts_for(*args)
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
