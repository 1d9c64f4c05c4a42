#!/usr/bin/env python3
"""The fleet benchmark behind scripts/bench-fleet (issue 8, docs/PERFORMANCE.md).

Runs the release exporter on generated demo fleets of 1k, 10k and 100k lines while polls land,
serves the very bytes it produced from nginx (static, gzip_static) and node_exporter's textfile
collector, drives the HTTP poll path against the mock operator and wrk against the same
endpoint, and prints one table of medians and ratios. Loopback only; every figure comes from
this run. Usage: bench.py EXPORTER MOCK_OPERATOR [--sizes 1000,10000,100000] [--out DIR]

Issue 15 adds, in the same table: exporter RSS on lines with labels of their own at a 3-minute
interval (--own-labels-sizes), and a real Prometheus (--prometheus-bin, a fresh TSDB per mode)
scraping such a fleet (poll_interval 60s) every 30 s, whole and in --prom-parts parts, until
--prom-scrapes scrapes: samples per line, head series, Prometheus RSS, scrape durations and
`up`, all read from Prometheus (--prom-sizes; --no-prometheus skips it).
"""

import argparse
import base64
import ctypes
import gzip
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
RENDER_INTERVAL = 1.0
READINGS_PER_SECOND = 200  # demo fleets poll every line once per N / 200 seconds
T_START = time.time()
PROCS = []  # every process started, stopped by stop_all() on any exit
try:
    LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    LIBC = None


def die_with_parent():
    """In the child before exec: SIGTERM when this script dies, even by SIGKILL."""
    if LIBC is not None:
        LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def log(msg):
    print(f"[{time.time() - T_START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Proc:
    def __init__(self, name, cmd, workdir, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env={**os.environ, **(env or {})}, preexec_fn=die_with_parent)
        self.pid = self.p.pid
        PROCS.append(self)

    def alive(self):
        return self.p.poll() is None

    def stop(self, timeout=60):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def stop_all():
    for proc in reversed(PROCS):
        if proc.alive():
            log(f"stopping {proc.name} (pid {proc.pid})")
            proc.stop(timeout=20)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def http_get(url, headers=None, timeout=600):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_until_ready(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise SystemExit(f"{proc.name} exited early; see {proc.log_path}")
        try:
            status, _ = http_get(url, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{proc.name} not ready after {timeout}s; see {proc.log_path}")


def curl_times(url, runs, gzip_accepted, timeout=900):
    """Seconds per request, as curl sees it (connect to last byte, body thrown away)."""
    times = []
    for _ in range(runs):
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code} %{size_download}",
               "--max-time", str(timeout), url]
        if gzip_accepted:
            cmd[1:1] = ["-H", "Accept-Encoding: gzip"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.split()
        if len(out) != 3 or out[1] != "200":
            raise SystemExit(f"scrape of {url} failed: {out}")
        times.append(float(out[0]))
    return times


WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format('WRK {"p50_us":%d,"requests":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"bytes":%d}\\n',
    latency:percentile(50), summary.requests, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, summary.bytes))
end
"""


def wrk(workdir, url, seconds, threads=1, connections=1, headers=()):
    script = os.path.join(workdir, "report.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRK "))
    result = json.loads(line[4:])
    result["rps"] = result["requests"] / seconds
    result["failed"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def gen_config(path, n, interval, concurrency, own_labels=False):
    with open(path, "w") as f:
        subprocess.run([sys.executable, os.path.join(HERE, "gen-config.py"), *(["--own-labels"] if own_labels else []),
                        str(n), str(interval), str(concurrency)], stdout=f, check=True)


def family_values(body, name):
    """Values of every sample named `name` in a text body."""
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb"(?:\{[^}\n]*\})? (\S+)$", re.M)
    return [float(v) for v in pattern.findall(body)]


def scrape_text(url):
    _, body = http_get(url, {"Accept-Encoding": "gzip"})
    return gzip.decompress(body)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def nginx_times(workdir, tag, www, runs_gzip, runs_identity):
    """Median scrape times (gzip_static, static) of the bytes in www/metrics{,.gz} from nginx."""
    nginx_port = free_port()
    conf = os.path.join(workdir, "nginx.conf")
    with open(os.path.join(HERE, "nginx.conf")) as f:
        text = f.read().replace("@WORKDIR@", workdir).replace("@ROOT@", www).replace("@PORT@", str(nginx_port))
    with open(conf, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(workdir, "nginx-tmp"), exist_ok=True)
    ngx = Proc(f"nginx-{tag}", ["nginx", "-c", conf, "-p", workdir, "-e", os.path.join(workdir, "nginx-error.log")],
               workdir)
    url = f"http://127.0.0.1:{nginx_port}/metrics"
    wait_until_ready(url, ngx)
    gzip_s = median(curl_times(url, runs_gzip, True))
    identity_s = median(curl_times(url, runs_identity, False))
    ngx.stop()
    return gzip_s, identity_s


def bench_size(args, workdir, n, results):
    r = results.setdefault(n, {})
    interval = max(1, n // READINGS_PER_SECOND)
    cfg = os.path.join(workdir, f"fleet-{n}.yaml")
    warm_cfg = os.path.join(workdir, f"fleet-{n}-warm.yaml")
    gen_config(cfg, n, interval, 256)
    warm_interval = max(2, n // 10_000)
    gen_config(warm_cfg, n, warm_interval, 3000)
    r["config_bytes"] = os.path.getsize(cfg)

    # Config load and check: the whole command, median of 3.
    checks = []
    for _ in range(3):
        t = time.time()
        subprocess.run([args.exporter, "--config.file", cfg, "--config.check"], capture_output=True, check=True)
        checks.append(time.time() - t)
    r["config_check_s"] = median(checks)
    log(f"{n}: --config.check {r['config_check_s']:.2f}s")

    # Warm-up: every line polled at least once, state saved at shutdown, so that the
    # measured run starts with a full fleet as a restarted production exporter does.
    state = os.path.join(workdir, f"state-{n}.json")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    warm = Proc(f"exporter-{n}-warm", [args.exporter, "--config.file", warm_cfg, "--web.listen-address",
                                       f"127.0.0.1:{port}", "--log.level", "error", "--storage.path", state,
                                       "--web.enable-lifecycle"], workdir)
    wait_until_ready(base + "/-/ready", warm)
    # The first wave (issue 12): no storage yet, so every line polls right after start, paced
    # only by its account's limits. Measured from ready until every line has a poll outcome.
    t = time.time()
    polled = 0
    while time.time() - t < 600:
        polled = polled_lines(scrape_text(base + "/metrics"))
        if polled >= n:
            break
        time.sleep(0.25)
    r["first_wave_s"] = time.time() - t if polled >= n else float("nan")
    log(f"{n}: first wave {polled}/{n} lines in {r['first_wave_s']:.2f}s after ready")
    time.sleep(2)
    warm.stop()
    log(f"{n}: warm-up done, state {os.path.getsize(state) >> 20} MiB")

    # The measured run: start to ready (config load, restore, first render).
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics = base + "/metrics"
    t = time.time()
    ex = Proc(f"exporter-{n}", [args.exporter, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                                "--log.level", "error", "--storage.path", state, "--web.enable-lifecycle",
                                "--web.render-interval", f"{RENDER_INTERVAL:g}s"], workdir)
    wait_until_ready(base + "/-/ready", ex)
    r["ready_s"] = time.time() - t
    log(f"{n}: ready in {r['ready_s']:.2f}s")
    time.sleep(2)
    window_start = time.time()

    # Background cost: polls landing and renders, nobody scraping.
    c0, t0 = proc_cpu_seconds(ex.pid), time.time()
    polls0 = family_values(scrape_text(metrics), "esim_scheduler_queue_wait_seconds_count")[0]
    time.sleep(10)
    body = scrape_text(metrics)
    c1, t1 = proc_cpu_seconds(ex.pid), time.time()
    polls1 = family_values(body, "esim_scheduler_queue_wait_seconds_count")[0]
    r["readings_per_s"] = (polls1 - polls0) / (t1 - t0)
    r["cpu_pct"] = 100 * (c1 - c0) / (t1 - t0)
    r["cpu_us_per_poll"] = 1e6 * (c1 - c0) / max(1, polls1 - polls0)

    # Scrapes while polls keep landing.
    runs_gzip, runs_identity = (15, 9) if n >= 100_000 else (25, 15)
    r["gzip_s"] = median(curl_times(metrics, runs_gzip, True))
    r["identity_s"] = median(curl_times(metrics, runs_identity, False))
    _, identity = http_get(metrics)
    _, gz = http_get(metrics, {"Accept-Encoding": "gzip"})
    r["body_bytes"], r["gzip_bytes"] = len(identity), len(gz)
    log(f"{n}: scrape gzip {r['gzip_s'] * 1e3:.1f} ms, identity {r['identity_s'] * 1e3:.1f} ms")

    # Freshness: how old the newest reading in a body is when the body is fetched.
    lags = []
    for i in range(5):
        time.sleep(0.37 * (i + 1))
        at = time.time()
        body = scrape_text(metrics)
        lags.append(at - max(family_values(body, "esim_last_poll_success_timestamp_seconds")))
    r["lag_median_s"], r["lag_max_s"] = median(lags), max(lags)
    # Spread: polls per second, from each line's last success time. A line polls once per
    # interval, so the last interval before the scrape (or the whole measured window, if
    # shorter) holds every poll made in it.
    first = max(window_start, at - interval) + 1
    bins = {}
    for s in family_values(body, "esim_last_poll_success_timestamp_seconds"):
        if first <= s < at - 1:
            bins[int(s)] = bins.get(int(s), 0) + 1
    full = [bins.get(sec, 0) for sec in range(int(first) + 1, int(at - 1))]
    r["spread_max_min"] = (max(full) / min(full)) if full and min(full) > 0 else float("nan")
    r["spread_window_s"] = len(full)

    r["rss_steady_mib"] = proc_status_kib(ex.pid, "VmRSS") / 1024
    r["rss_peak_before_reload_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024

    # A reload of the same file under wrk load: no request may fail.
    result = {}

    def run_wrk():
        result.update(wrk(workdir, metrics, 8, 1, 2, ["Accept-Encoding: gzip"]))

    th = threading.Thread(target=run_wrk)
    th.start()
    time.sleep(2.5)
    t = time.time()
    req = urllib.request.Request(base + "/-/reload", method="POST")
    with urllib.request.urlopen(req, timeout=120) as resp:
        reload_status = resp.status
    r["reload_s"] = time.time() - t
    th.join()
    r["reload_failed"] = result["failed"] + (0 if reload_status == 200 else 1)
    r["reload_requests"] = result["requests"]
    r["rss_peak_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    r["rss_mib"] = proc_status_kib(ex.pid, "VmRSS") / 1024
    log(f"{n}: reload {r['reload_s']:.2f}s under load, {result['requests']} scrapes, {r['reload_failed']} failed; "
        f"peak RSS {r['rss_peak_mib']:.0f} MiB")
    ex.stop()

    # The same run with glibc limited to two malloc arenas (an environment setting, no rebuild):
    # freed config-parse memory then stays reusable by whichever thread loads the next config.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ex = Proc(f"exporter-{n}-arenas", [args.exporter, "--config.file", cfg, "--web.listen-address",
                                       f"127.0.0.1:{port}", "--log.level", "error", "--storage.path", state,
                                       "--web.enable-lifecycle"],
              workdir, {"MALLOC_ARENA_MAX": "2"})
    wait_until_ready(base + "/-/ready", ex)
    time.sleep(8)
    for _ in range(2):
        with urllib.request.urlopen(urllib.request.Request(base + "/-/reload", method="POST"), timeout=120):
            pass
        time.sleep(2)
    r["rss_peak_arenas2_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    ex.stop()

    # The same bytes from nginx and node_exporter.
    www = os.path.join(workdir, f"www-{n}")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "metrics"), "wb") as f:
        f.write(identity)
    with open(os.path.join(www, "metrics.gz"), "wb") as f:
        f.write(gz)
    del body
    r["nginx_gzip_s"], r["nginx_identity_s"] = nginx_times(workdir, str(n), www, runs_gzip, runs_identity)
    log(f"{n}: nginx gzip_static {r['nginx_gzip_s'] * 1e3:.1f} ms, static {r['nginx_identity_s'] * 1e3:.1f} ms")

    textfile = os.path.join(workdir, f"textfile-{n}")
    os.makedirs(textfile, exist_ok=True)
    shutil.copy(os.path.join(www, "metrics"), os.path.join(textfile, "esim.prom"))
    node_port = free_port()
    node = Proc(f"node-exporter-{n}", [args.node_exporter, "--collector.disable-defaults", "--collector.textfile",
                                       f"--collector.textfile.directory={textfile}", "--web.disable-exporter-metrics",
                                       f"--web.listen-address=127.0.0.1:{node_port}"], workdir)
    url = f"http://127.0.0.1:{node_port}/metrics"
    wait_until_ready(url.replace("/metrics", "/"), node)
    node_runs = 1 if n >= 100_000 else 3
    r["node_gzip_s"] = median(curl_times(url, node_runs, True))
    r["node_identity_s"] = median(curl_times(url, node_runs, False))
    r["node_rss_peak_mib"] = proc_status_kib(node.pid, "VmHWM") / 1024
    node.stop()
    log(f"{n}: node_exporter gzip {r['node_gzip_s']:.2f}s, identity {r['node_identity_s']:.2f}s, "
        f"peak RSS {r['node_rss_peak_mib']:.0f} MiB")

    # Correctness of what was measured: promtool on the exporter's own text body.
    t = time.time()
    check = subprocess.run(["promtool", "check", "metrics"], stdin=open(os.path.join(www, "metrics"), "rb"),
                           capture_output=True, text=True, check=False)
    r["promtool"] = "pass" if check.returncode == 0 else "FAIL"
    if check.returncode != 0:
        print(check.stdout[-2000:], check.stderr[-2000:], file=sys.stderr)
    log(f"{n}: promtool check metrics: {r['promtool']} ({time.time() - t:.0f}s)")
    shutil.rmtree(www)
    shutil.rmtree(textfile)


# ---- issue 15: the Prometheus side and the exporter's memory on fleets with labels of their own ----

PROM_SCRAPE_INTERVAL = 30  # seconds; scrape_timeout stays Prometheus's default, 10 s
PROM_POLL_INTERVAL = 60  # the fleet Prometheus scrapes: own labels, poll_interval 60s


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (clear_refs 5), so that a peak belongs to one phase."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def line_names(body, name):
    """The `line` label of every sample named `name` in a text body."""
    pattern = re.compile(rb"^" + re.escape(name.encode()) + rb'\{line="([^"]*)"', re.M)
    return set(pattern.findall(body))


def polled_lines(body):
    """Lines with a poll outcome in a body: a last success, or failing (issue 15's series; the
    contract before it had esim_poll_success for every polled line)."""
    before = len(family_values(body, "esim_poll_success"))
    now = line_names(body, "esim_last_poll_success_timestamp_seconds") | line_names(body, "esim_poll_failing")
    return max(before, len(now))


def ok_lines(body):
    """Lines whose last poll succeeded."""
    before = sum(family_values(body, "esim_poll_success"))
    now = line_names(body, "esim_last_poll_success_timestamp_seconds") - line_names(body, "esim_poll_failing")
    return max(before, len(now))


def start_own_labels_exporter(args, workdir, n, interval, tag):
    """An exporter on the own-labels fleet, no saved state (the first wave polls every line),
    returned once every line has a poll outcome (or two poll intervals, at least 3 min, passed)."""
    cfg = os.path.join(workdir, f"fleet-{n}-{tag}.yaml")
    gen_config(cfg, n, interval, 256, own_labels=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ex = Proc(f"exporter-{n}-{tag}", [args.exporter, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                                      "--log.level", "error", "--web.render-interval", f"{RENDER_INTERVAL:g}s"], workdir)
    wait_until_ready(base + "/-/ready", ex)
    t = time.time()
    polled = 0
    while time.time() - t < max(180, 2 * interval):
        polled = polled_lines(scrape_text(base + "/metrics"))
        if polled >= n:
            break
        time.sleep(1)
    log(f"{n} {tag}: {polled}/{n} lines polled {time.time() - t:.1f}s after ready")
    return ex, base


def bench_own_labels_rss(args, workdir, n, results):
    """Issue 15, target 3: peak RSS on n lines with labels of their own, poll_interval 3m, while
    scraped gzip and identity; the same bytes from nginx for the ratios."""
    r = results.setdefault(n, {})
    t0 = time.time()
    ex, base = start_own_labels_exporter(args, workdir, n, 180, "own3m")
    metrics = base + "/metrics"
    time.sleep(2)
    r["own3m_first_peak_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    r["own3m_hwm_reset"] = reset_peak_rss(ex.pid)
    try:
        polls0 = family_values(scrape_text(metrics), "esim_scheduler_queue_wait_seconds_count")[0]
    except IndexError:
        polls0 = None
    t1 = time.time()
    runs_gzip, runs_identity = (15, 9) if n >= 100_000 else (25, 15)
    r["own3m_gzip_s"] = median(curl_times(metrics, runs_gzip, True))
    r["own3m_identity_s"] = median(curl_times(metrics, runs_identity, False))
    if polls0 is not None:
        time.sleep(max(0.0, 10 - (time.time() - t1)))  # a window of 10 s at least
        polls1 = family_values(scrape_text(metrics), "esim_scheduler_queue_wait_seconds_count")[0]
        r["own3m_readings_per_s"] = (polls1 - polls0) / (time.time() - t1)
    r["own3m_rss_mib"] = proc_status_kib(ex.pid, "VmRSS") / 1024
    r["own3m_scraped_peak_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    www = os.path.join(workdir, f"www-{n}-own3m")
    os.makedirs(www, exist_ok=True)
    _, identity = http_get(metrics)
    with open(os.path.join(www, "metrics"), "wb") as f:
        f.write(identity)
    del identity
    _, gz = http_get(metrics, {"Accept-Encoding": "gzip"})
    with open(os.path.join(www, "metrics.gz"), "wb") as f:
        f.write(gz)
    del gz
    r["own3m_peak_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    ex.stop()
    r["own3m_nginx_gzip_s"], r["own3m_nginx_identity_s"] = nginx_times(workdir, f"{n}-own3m", www, runs_gzip,
                                                                       runs_identity)
    shutil.rmtree(www)
    r["own3m_wall_s"] = time.time() - t0
    log(f"{n} own3m: gzip {r['own3m_gzip_s'] * 1e3:.1f} ms (nginx {r['own3m_nginx_gzip_s'] * 1e3:.1f}), identity "
        f"{r['own3m_identity_s'] * 1e3:.1f} ms (nginx {r['own3m_nginx_identity_s'] * 1e3:.1f}); peak RSS "
        f"{r['own3m_first_peak_mib']:.0f} MiB to the first wave, {r['own3m_peak_mib']:.0f} MiB while scraped")


def prom_result(base, query):
    """The `result` of an instant query evaluated now; fails the bench when Prometheus refuses."""
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    _, body = http_get(url, timeout=120)
    data = json.loads(body)
    if data.get("status") != "success":
        raise SystemExit(f"Prometheus query {query!r} failed: {data}")
    return data["data"]["result"]


def prom_query(base, query):
    """An instant query now; [(labels, value)]."""
    return [(x["metric"], float(x["value"][1])) for x in prom_result(base, query)]


def prom_samples(base, query):
    """A range-vector selector evaluated now; {target's part or instance: [values in time order]}."""
    return {x["metric"].get("part", x["metric"].get("instance", "")): [float(v) for _, v in x["values"]]
            for x in prom_result(base, query)}


def prom_scalar(base, query):
    result = prom_query(base, query)
    return result[0][1] if result else None


def parts_support(metrics, parts):
    """(True, "") when /metrics?part=0&parts=N serves a part; (False, why) when the build ignores
    the parameters (the body is the whole body) or refuses them."""
    def text(url):
        status, body = http_get(url, {"Accept-Encoding": "gzip"})
        return status, gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body

    try:
        status, part = text(f"{metrics}?part=0&parts={parts}")
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code} for part=0&parts={parts}"
    if status != 200:
        return False, f"HTTP {status}"
    whole = text(metrics)[1]
    samples = lambda b: b.count(b"\n") - b.count(b"\n#")
    if samples(part) >= 0.9 * samples(whole):
        return False, f"part 0 of {parts} is the whole body ({samples(part)} of {samples(whole)} lines)"
    return True, ""


def prom_config(path, port, parts):
    """One target for the whole /metrics (parts == 1), else `parts` targets, one per part."""
    out = ["global:", f"  scrape_interval: {PROM_SCRAPE_INTERVAL}s", f"  evaluation_interval: {PROM_SCRAPE_INTERVAL}s",
           "scrape_configs:", "  - job_name: esim", "    metrics_path: /metrics", "    static_configs:"]
    if parts == 1:
        out.append(f"      - targets: ['127.0.0.1:{port}']")
    else:
        for k in range(parts):
            out += [f"      - targets: ['127.0.0.1:{port}']", f"        labels: {{part: '{k}'}}"]
        out += ["    relabel_configs:",
                "      - source_labels: [part]",
                "        target_label: __param_part",
                "      - target_label: __param_parts",
                f"        replacement: '{parts}'"]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def prom_mode(args, workdir, n, ex, exporter_port, mode, parts, r):
    """A fresh Prometheus (own TSDB) scraping the exporter until every target has args.prom_scrapes
    scrapes or args.prom_max_seconds pass; what it reports goes into r under prom_<mode>_*."""
    key = f"prom_{mode}_"
    d = os.path.join(workdir, f"prometheus-{n}-{mode}")
    os.makedirs(os.path.join(d, "data"))
    conf = os.path.join(d, "prometheus.yml")
    prom_config(conf, exporter_port, parts)
    check = subprocess.run(["promtool", "check", "config", conf], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"promtool check config {conf}: {check.stdout}{check.stderr}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    reset_peak_rss(ex.pid)
    t0 = time.time()
    prom = Proc(f"prometheus-{n}-{mode}", [args.prometheus, f"--config.file={conf}",
                                           f"--storage.tsdb.path={os.path.join(d, 'data')}",
                                           f"--web.listen-address=127.0.0.1:{port}",
                                           "--storage.tsdb.retention.time=1d", "--log.level=warn"], workdir)
    wait_until_ready(base + "/-/ready", prom)
    log(f"{n} {mode}: Prometheus {prom.pid} ready in {time.time() - t0:.1f}s, {parts} target(s)")
    deadline = t0 + args.prom_max_seconds
    done = 0
    while True:
        counts = [v for _, v in prom_query(base, 'count_over_time(up{job="esim"}[1h])')]
        done = min(counts) if len(counts) == parts else 0
        if done >= args.prom_scrapes:
            break
        if time.time() > deadline:
            log(f"{n} {mode}: only {done:.0f} of {args.prom_scrapes} scrapes in {args.prom_max_seconds}s; "
                "reporting what there is")
            break
        time.sleep(3)
    window = f'[{int(time.time() - t0) + 60}s]'
    sel = '{job="esim"}'
    q = lambda expr: prom_scalar(base, expr)
    r[key + "scrapes"] = done
    r[key + "failed"] = q(f"sum(count_over_time(up{sel}{window})) - sum(sum_over_time(up{sel}{window}))")
    r[key + "up_min"] = q(f"min(min_over_time(up{sel}{window}))")
    r[key + "samples"] = q(f"sum(max_over_time(scrape_samples_scraped{sel}{window}))")
    r[key + "samples_per_line"] = r[key + "samples"] / n if r[key + "samples"] is not None else None
    r[key + "dur_median_s"] = q(f"max(quantile_over_time(0.5, scrape_duration_seconds{sel}{window}))")
    r[key + "dur_worst_s"] = q(f"max(max_over_time(scrape_duration_seconds{sel}{window}))")
    # The first scrape into a fresh TSDB creates every series, a cost Prometheus pays once (and
    # after its own restarts); the scrapes after it are the steady state.
    durations = prom_samples(base, f"scrape_duration_seconds{sel}{window}")
    later = [d for ds in durations.values() for d in ds[1:]]
    r[key + "dur_steady_worst_s"] = max(later) if later else None
    r[key + "dur_first_s"] = max((ds[0] for ds in durations.values() if ds), default=None)
    log(f"{n} {mode}: scrape_duration_seconds per target: "
        + "; ".join(f"{t or '-'}: " + ", ".join(f"{d:.2f}" for d in ds) for t, ds in sorted(durations.items())))
    _, own = http_get(base + "/metrics", timeout=60)
    head = family_values(own, "prometheus_tsdb_head_series")
    r[key + "head_series"] = head[0] if head else None
    rss = family_values(own, "process_resident_memory_bytes")
    r[key + "prom_rss_self_bytes"] = rss[0] if rss else None
    r[key + "prom_rss_bytes"] = proc_status_kib(prom.pid, "VmRSS") * 1024
    r[key + "prom_peak_bytes"] = proc_status_kib(prom.pid, "VmHWM") * 1024
    r[key + "exporter_peak_mib"] = proc_status_kib(ex.pid, "VmHWM") / 1024
    prom.stop(timeout=60)
    shutil.rmtree(d, ignore_errors=True)
    r[key + "wall_s"] = time.time() - t0
    f = lambda v, spec: format(v, spec) if v is not None else "-"
    log(f"{n} {mode}: {done:.0f} scrapes ({f(r[key + 'failed'], '.0f')} failed, min up {f(r[key + 'up_min'], '.0f')}), "
        f"{f(r[key + 'samples_per_line'], '.2f')} samples/line, head series {f(r[key + 'head_series'], ',.0f')}, "
        f"Prometheus RSS {r[key + 'prom_rss_bytes'] / 2**30:.2f} GiB (peak {r[key + 'prom_peak_bytes'] / 2**30:.2f}), "
        f"scrape median {f(r[key + 'dur_median_s'], '.2f')}s worst {f(r[key + 'dur_worst_s'], '.2f')}s, exporter peak "
        f"{r[key + 'exporter_peak_mib']:.0f} MiB; {r[key + 'wall_s']:.0f}s")


def bench_prometheus(args, workdir, n, results):
    """Issue 15: a real Prometheus scraping n own-labels lines (poll_interval 60s) every 30 s,
    first the whole /metrics as one target, then in args.prom_parts parts as as many targets."""
    r = results.setdefault(n, {})
    t0 = time.time()
    ex, base = start_own_labels_exporter(args, workdir, n, PROM_POLL_INTERVAL, "prom")
    port = int(base.rsplit(":", 1)[1])
    r["prom_exporter_start_s"] = time.time() - t0
    r["prom_lines"] = n
    prom_mode(args, workdir, n, ex, port, "whole", 1, r)
    ok, why = parts_support(base + "/metrics", args.prom_parts)
    if ok:
        prom_mode(args, workdir, n, ex, port, "parts", args.prom_parts, r)
    else:
        r["prom_parts_note"] = "not supported by this build"
        log(f"{n}: parts: not supported by this build ({why})")
    ex.stop()


def bench_poll_path(args, workdir, results, lines=4000):
    """The HTTP poll path: mts lines against the mock operator vs wrk on the same endpoint."""
    r = results.setdefault("poll", {})
    port = free_port()
    mock = Proc("mock-operator", [args.mock, "--listen", f"127.0.0.1:{port}", "--lines", str(lines)], workdir)
    base_url = None
    deadline = time.time() + 30
    while time.time() < deadline and base_url is None:
        with open(mock.log_path) as f:
            for line in f:
                if line.startswith("mts: base_url "):
                    base_url = line.split()[2]
        time.sleep(0.05)
    if base_url is None:
        raise SystemExit(f"mock operator did not start; see {mock.log_path}")
    cfg = os.path.join(workdir, "poll-path.yaml")
    with open(cfg, "w") as f:
        f.write("global:\n  poll_interval: 1s\n  timeout: 10s\n  max_concurrency: 256\n  stale_after: 6h\n")
        f.write(f"accounts:\n  bench-mts:\n    driver: mts\n    client_id: mock-consumer-key\n"
                f"    client_secret: mock-consumer-secret-3f9a1c\n    base_url: {base_url}\n"
                f"    rate_limit: 1000000/s\n    max_concurrency: 256\nlines:\n")
        for i in range(lines):
            f.write(f"  - {{name: mts-{i:05d}, account: bench-mts, msisdn: \"+7916{i + 1:07d}\"}}\n")
    eport = free_port()
    ebase = f"http://127.0.0.1:{eport}"
    ex = Proc("exporter-poll-path", [args.exporter, "--config.file", cfg, "--web.listen-address",
                                     f"127.0.0.1:{eport}", "--log.level", "error"], workdir)
    wait_until_ready(ebase + "/-/ready", ex)
    time.sleep(4)
    c0, t0 = proc_cpu_seconds(ex.pid), time.time()
    p0 = family_values(scrape_text(ebase + "/metrics"), "esim_scheduler_queue_wait_seconds_count")[0]
    time.sleep(10)
    body = scrape_text(ebase + "/metrics")
    c1, t1 = proc_cpu_seconds(ex.pid), time.time()
    p1 = family_values(body, "esim_scheduler_queue_wait_seconds_count")[0]
    ok = ok_lines(body)
    ex.stop()
    r["lines"] = lines
    r["polls_per_s"] = (p1 - p0) / (t1 - t0)
    r["cpu_us_per_poll"] = 1e6 * (c1 - c0) / max(1, p1 - p0)
    r["ok_lines"] = ok
    # wrk against the endpoint a poll starts with, with a token from the mock.
    token_req = urllib.request.Request(
        base_url + "/token", data=b"grant_type=client_credentials", method="POST",
        headers={"Authorization": "Basic " + base64.b64encode(b"mock-consumer-key:mock-consumer-secret-3f9a1c").decode(),
                 "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(token_req, timeout=10) as resp:
        token = json.loads(resp.read())["access_token"]
    url = base_url + "/b2b/v1/Bills/CheckBalanceByMSISDN?characteristic.value=79160000001"
    w = wrk(workdir, url, 10, 2, 64, [f"Authorization: Bearer {token}"])
    mock.stop()
    r["wrk_rps"] = w["rps"]
    r["wrk_failed"] = w["failed"]
    log(f"poll path: {r['polls_per_s']:.0f} polls/s ({r['cpu_us_per_poll']:.0f} µs CPU each, {ok:.0f}/{lines} lines ok); "
        f"wrk {w['rps']:.0f} req/s on the same mock endpoint")


def table(results, load, parts=4):
    sizes = sorted(k for k in results if isinstance(k, int))
    rows = []

    def row(label, fmt, key, target=""):
        cells = []
        for n in sizes:
            try:
                v = key(results[n]) if callable(key) else results[n].get(key)
                cells.append(fmt(v) if v is not None else "-")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")  # not measured at this size (another flag's sizes)
        if any(c != "-" for c in cells):
            rows.append((label, cells, target))

    ms = lambda v: f"{v * 1e3:.1f} ms"
    sec = lambda v: f"{v:.2f} s"
    ratio = lambda v: f"{v:.2f}x"
    mib = lambda v: f"{v / 2**20:.1f} MiB"
    row("body (text 0.0.4) / gzip", lambda v: v, lambda x: f"{x['body_bytes'] / 2**20:.0f} / {x['gzip_bytes'] / 2**20:.1f} MiB")
    row("readings landing during scrapes", lambda v: f"{v:.0f}/s", "readings_per_s", ">= 100/s")
    row("scrape gzip: exporter", ms, "gzip_s")
    row("scrape gzip: nginx gzip_static", ms, "nginx_gzip_s")
    row("  ratio exporter / nginx", ratio, lambda x: x["gzip_s"] / x["nginx_gzip_s"], "<= 2x")
    row("scrape identity: exporter", ms, "identity_s")
    row("scrape identity: nginx static", ms, "nginx_identity_s")
    row("  ratio exporter / nginx", ratio, lambda x: x["identity_s"] / x["nginx_identity_s"], "<= 2x")
    row("node_exporter textfile: gzip", sec, "node_gzip_s")
    row("node_exporter textfile: identity", sec, "node_identity_s")
    row("  ratio node_exporter / exporter (gzip)", lambda v: f"{v:.0f}x", lambda x: x["node_gzip_s"] / x["gzip_s"])
    row("newest reading age at scrape (median/max)", lambda v: v,
        lambda x: f"{x['lag_median_s']:.2f} / {x['lag_max_s']:.2f} s", "<= 2 s")
    row("RSS exporter, steady (polls, renders, scrapes)", lambda v: f"{v:.0f} MiB", "rss_steady_mib")
    row("peak RSS exporter before reload", lambda v: f"{v:.0f} MiB", "rss_peak_before_reload_mib", "<= 350 MB at 100k")
    row("peak RSS exporter incl. reload", lambda v: f"{v:.0f} MiB", "rss_peak_mib")
    row("  same, MALLOC_ARENA_MAX=2, 2 reloads", lambda v: f"{v:.0f} MiB", "rss_peak_arenas2_mib")
    row("peak RSS node_exporter", lambda v: f"{v:.0f} MiB", "node_rss_peak_mib")
    row("--config.check (whole command)", sec, "config_check_s", "<= 2 s at 100k")
    row("start to ready (load, restore, render)", sec, "ready_s", "<= 3 s at 100k")
    row("first wave, no storage: ready -> every line polled", sec, "first_wave_s", "report")
    row("reload under wrk: time / failed requests", lambda v: v,
        lambda x: f"{x['reload_s']:.2f} s / {x['reload_failed']} of {x['reload_requests']}", "0 failed")
    row("background CPU (polls + renders)", lambda v: f"{v:.0f}% of a core", "cpu_pct")
    row("CPU per demo poll (incl. renders)", lambda v: f"{v:.0f} us", "cpu_us_per_poll")
    row("polls/s max/min over 1 s bins", lambda v: v,
        lambda x: f"{x['spread_max_min']:.2f} ({x['spread_window_s']} s)", "report")
    row("promtool check metrics", lambda v: v, "promtool", "pass")

    # Issue 15, target 3: the exporter on lines with labels of their own, poll_interval 3m.
    row("own labels (fleet, site), poll 3m: readings landing", lambda v: f"{v:.0f}/s", "own3m_readings_per_s")
    row("  scrape gzip: exporter / nginx (ratio)", lambda v: v,
        lambda x: f"{x['own3m_gzip_s'] * 1e3:.1f} / {x['own3m_nginx_gzip_s'] * 1e3:.1f} ms "
                  f"({x['own3m_gzip_s'] / x['own3m_nginx_gzip_s']:.2f}x)", "<= 2x")
    row("  scrape identity: exporter / nginx (ratio)", lambda v: v,
        lambda x: f"{x['own3m_identity_s'] * 1e3:.1f} / {x['own3m_nginx_identity_s'] * 1e3:.1f} ms "
                  f"({x['own3m_identity_s'] / x['own3m_nginx_identity_s']:.2f}x)", "<= 2x")
    row("  peak RSS exporter: to the first wave / while scraped", lambda v: v,
        lambda x: f"{x['own3m_first_peak_mib']:.0f} / {x['own3m_peak_mib']:.0f} MiB", "<= 350 MB at 100k")
    row("  RSS exporter after the scrapes", lambda v: f"{v:.0f} MiB", "own3m_rss_mib")

    # Issue 15: a real Prometheus scraping own-labels lines (poll_interval 60s) every 30 s.
    gib = lambda b: f"{b / 2**30:.2f}"
    for mode, title in (("whole", "Prometheus, whole /metrics as 1 target"),
                        ("parts", f"Prometheus, {parts} parts as {parts} targets")):
        k = f"prom_{mode}_"
        row(f"{title}: scrapes (failed)", lambda v: v,
            lambda x: x["prom_parts_note"] if mode == "parts" and "prom_parts_note" in x
            else f"{x[k + 'scrapes']:.0f} ({x[k + 'failed']:.0f} failed)")
        row("  samples per line (scrape_samples_scraped / lines)", lambda v: f"{v:.2f}", k + "samples_per_line",
            "<= 10")
        row("  Prometheus head series", lambda v: f"{v:,.0f}", k + "head_series", "<= 1.1 M at 100k")
        row("  Prometheus RSS / peak (VmRSS / VmHWM)", lambda v: v,
            lambda x: f"{gib(x[k + 'prom_rss_bytes'])} / {gib(x[k + 'prom_peak_bytes'])} GiB", "<= 3.5 GiB at 100k")
        row("  Prometheus RSS per head series / per line", lambda v: v,
            lambda x: f"{x[k + 'prom_rss_bytes'] / x[k + 'head_series'] / 1024:.1f} / "
                      f"{x[k + 'prom_rss_bytes'] / x['prom_lines'] / 1024:.0f} KiB")
        row("  scrape_duration_seconds first / worst after it" + (" (slowest part)" if mode == "parts" else ""),
            lambda v: v, lambda x: f"{x[k + 'dur_first_s']:.2f} / {x[k + 'dur_steady_worst_s']:.2f} s",
            "<= 5 s at 100k" if mode == "parts" else "< 10 s (timeout)")
        row("  scrape_duration_seconds median / worst" + (" (slowest part)" if mode == "parts" else ""),
            lambda v: v, lambda x: f"{x[k + 'dur_median_s']:.2f} / {x[k + 'dur_worst_s']:.2f} s",
            "<= 5 s at 100k" if mode == "parts" else "< 10 s (timeout)")
        row("  up, min over the run", lambda v: f"{v:.0f}", k + "up_min", "1")
        row("  exporter peak RSS (VmHWM) while scraped", lambda v: f"{v:.0f} MiB", k + "exporter_peak_mib")
        row("  wall time (Prometheus start to stop)", lambda v: f"{v:.0f} s", k + "wall_s")

    if not rows:
        return "no figures (nothing finished)"
    width = max(len(r[0]) for r in rows)
    tw = max(len(r[2]) for r in rows)
    cw = [max(len(str(n)) + 6, *(len(r[1][i]) for r in rows)) for i, n in enumerate(sizes)]
    head = f"| {'lines':<{width}} | " + " | ".join(f"{n:>{cw[i]},}" for i, n in enumerate(sizes)) + f" | {'target':<{tw}} |"
    out = [head, "|" + "-" * (width + 2) + "|" + "|".join("-" * (c + 2) for c in cw) + "|" + "-" * (tw + 2) + "|"]
    for label, cells, target in rows:
        out.append(f"| {label:<{width}} | " + " | ".join(f"{c:>{cw[i]}}" for i, c in enumerate(cells))
                   + f" | {target:<{tw}} |")
    p = results.get("poll")
    if p:
        out.append("")
        out.append(f"poll path ({p['lines']} mts lines, 1 s interval, mock operator on loopback): "
                   f"{p['polls_per_s']:.0f} polls/s ({2 * p['polls_per_s']:.0f} requests/s), "
                   f"{p['cpu_us_per_poll']:.0f} us CPU per poll; wrk on the same endpoint {p['wrk_rps']:.0f} req/s "
                   f"({p['wrk_failed']} failed): polls/s = {100 * p['polls_per_s'] / p['wrk_rps']:.0f}% of wrk "
                   f"(target >= 25%)")
    out.append(f"load average before / after: {load[0]} / {load[1]}; {os.cpu_count()} CPUs; "
               f"{time.time() - T_START:.0f} s")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exporter")
    ap.add_argument("mock")
    ap.add_argument("--node-exporter", default=shutil.which("prometheus-node-exporter") or "node_exporter")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--poll-lines", type=int, default=4000)
    ap.add_argument("--out", default="")
    ap.add_argument("--prometheus", dest="with_prometheus", action=argparse.BooleanOptionalAction, default=True,
                    help="the Prometheus side of issue 15 (--no-prometheus: skip it)")
    ap.add_argument("--prometheus-bin", dest="prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    ap.add_argument("--prom-sizes", default="10000,100000", help="lines of the fleets Prometheus scrapes")
    ap.add_argument("--prom-scrapes", type=int, default=5, help="scrapes of every target before reading figures")
    ap.add_argument("--prom-parts", type=int, default=4, help="N of /metrics?part=K&parts=N in the parts mode")
    ap.add_argument("--prom-max-seconds", type=int, default=360, help="bound of one mode, Prometheus start to stop")
    ap.add_argument("--own-labels-sizes", default="100000",
                    help="issue 15 target 3: exporter RSS on own-labels lines, poll_interval 3m ('' to skip)")
    args = ap.parse_args()
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]
    if args.with_prometheus and ints(args.prom_sizes) and not os.access(args.prometheus, os.X_OK):
        raise SystemExit(f"prometheus not found at {args.prometheus} (Debian package 'prometheus')")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    load_before = open("/proc/loadavg").read().split()[0]
    workdir = tempfile.mkdtemp(prefix="bench-fleet-")
    os.chmod(workdir, 0o755)  # nginx workers read the bodies
    results = {}
    failed = True
    try:
        for n in ints(args.sizes):
            bench_size(args, workdir, n, results)
        if args.poll_lines > 0:
            bench_poll_path(args, workdir, results, args.poll_lines)
        for n in ints(args.own_labels_sizes):
            bench_own_labels_rss(args, workdir, n, results)
        if args.with_prometheus:
            for n in ints(args.prom_sizes):
                bench_prometheus(args, workdir, n, results)
        failed = False
    finally:
        stop_all()
        keep = os.environ.get("BENCH_KEEP")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
        if failed and results:
            print("partial results (the run failed or was interrupted):", file=sys.stderr)
            print(table(results, (load_before, "-"), args.prom_parts), file=sys.stderr)
    load_after = open("/proc/loadavg").read().split()[0]
    text = table(results, (load_before, load_after), args.prom_parts)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
