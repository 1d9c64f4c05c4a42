#!/usr/bin/env bash
# End-to-end test of the alert rules and dashboards with the real tools, loopback only:
#
#   tests/e2e/alerting.sh [path/to/esim-exporter]     (default: target/debug/esim-exporter)
#
# 1. starts the exporter on a temp copy of tests/e2e/alerting-demo.yaml (low-line runs low
#    under its account's default threshold, healthy-line is fine with a threshold of its own,
#    nodata-line reports no data figures, down-line fails every poll).
#    Demo packages renew every 30 days on the wall clock, so on some days any given demo line is
#    rightly within EsimQuotaExpiringSoon's 3 days: the copy sets healthy-line's demo `seed`
#    to the first of 1..12 whose reading is clear of every alert condition now (e2e.py
#    comfortable), checked on the exporter's own /metrics;
# 2. starts a real Alertmanager (clustering off, storage in a temp dir) and a real Prometheus
#    (scrape and evaluation every 2s) loading config/alerts.yml — in a temp copy whose `for:`
#    durations are all rewritten to 4s, since the real ones (5m to 1h) would not fit in a test;
# 3. waits until Alertmanager's API shows EsimBalanceLow for low-line (with its account's
#    default threshold of 120 in the description: the join with the exporter's
#    esim_default_balance_alert_threshold) and EsimPollFailing for down-line (naming the
#    reason from esim_poll_failing and the per-operator failure counts), then asserts that
#    healthy-line has no alert at all (pending or firing, in Prometheus or Alertmanager) and
#    nodata-line no EsimDataLow;
# 4. sends every expression of every dashboard panel and variable to Prometheus's query API
#    (scripts/check-dashboards --live): each must parse and return data for this fleet.
#
# Bounded: gives up after E2E_TIMEOUT seconds (default 170) in all. Children are killed on exit;
# on failure the logs of the three processes are printed. E2E_KEEP=1 keeps the temp dir.
# Needs: prometheus, promtool (Debian `prometheus`), prometheus-alertmanager, python3, timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${1:-target/debug/esim-exporter}
if [[ $BIN != /* ]]; then
    if [[ -e $BIN ]]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
TIMEOUT=${E2E_TIMEOUT:-170}
START=$SECONDS
E2E="python3 $ROOT/tests/e2e/e2e.py"

log() { printf '[e2e %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { log "FAIL: $*"; exit 1; }
left() { local n=$((TIMEOUT - (SECONDS - START))); ((n > 0)) || die "out of time (${TIMEOUT}s)"; echo "$n"; }

[[ -x $BIN ]] || die "exporter binary $BIN not found or not executable (build it: cargo build)"
AM_BIN=$(command -v prometheus-alertmanager || command -v alertmanager || true)
[[ -n $AM_BIN ]] || die "alertmanager not found (apt-get install -y prometheus-alertmanager)"
command -v prometheus >/dev/null || die "prometheus not found (apt-get install -y prometheus)"
command -v python3 >/dev/null || die "python3 not found"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/esim-e2e.XXXXXX")
EXPORTER_PID= PROM_PID= AM_PID= WATCHDOG_PID=
OK=0

stop() {
    local pid
    for pid in "$@"; do
        [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop "$WATCHDOG_PID" "$PROM_PID" "$AM_PID" "$EXPORTER_PID"
    if ((OK == 0)); then
        local f
        for f in exporter alertmanager prometheus; do
            if [[ -s $TMP/$f.log ]]; then
                echo "----- $f log (last 80 lines) -----"
                tail -n 80 "$TMP/$f.log"
            fi
        done
        echo "----- end of logs -----"
        ((rc != 0)) || rc=1
    fi
    if [[ ${E2E_KEEP:-} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'die "interrupted"' INT TERM

# The overall bound. Every foreground step below is bounded itself (bash runs a trap only
# once the foreground command returns); this watchdog is the last resort.
(
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$TIMEOUT" & sleeper=$!
    wait "$sleeper"
    echo "[e2e] timed out after ${TIMEOUT}s" >&2
    kill -TERM $$ 2>/dev/null
) &
WATCHDOG_PID=$!

read -r EXP_PORT PROM_PORT AM_PORT < <($E2E free-ports 3)
EXP=http://127.0.0.1:$EXP_PORT
PROM=http://127.0.0.1:$PROM_PORT
AM=http://127.0.0.1:$AM_PORT
log "exporter $EXP, prometheus $PROM, alertmanager $AM, temp dir $TMP"
timeout 5 "$BIN" --version 2>&1 | head -n 3 | sed 's/^/    /' || true

# ---------------------------------------------------------------------------- exporter
start_exporter() {
    "$BIN" --config.file "$TMP/alerting-demo.yaml" --web.listen-address "127.0.0.1:$EXP_PORT" \
        >>"$TMP/exporter.log" 2>&1 &
    EXPORTER_PID=$!
    $E2E wait-http "$EXP/metrics" "$(left)" 'line="healthy-line"' || die "exporter did not serve healthy-line"
    $E2E wait-http "$EXP/metrics" "$(left)" 'line="low-line"' || die "exporter did not serve low-line"
}

healthy=
for seed in 1 2 3 4 5 6 7 8 9 10 11 12; do
    sed -E "s/^(    seed:).*/\1 $seed/" "$ROOT/tests/e2e/alerting-demo.yaml" >"$TMP/alerting-demo.yaml"
    grep -q "seed: $seed\$" "$TMP/alerting-demo.yaml" || die "could not set the healthy-line seed"
    start_exporter
    if why=$($E2E comfortable "$EXP/metrics" healthy-line "$(left)"); then
        healthy=$seed
        break
    fi
    log "seed $seed: $why; trying the next seed"
    stop "$EXPORTER_PID"
    EXPORTER_PID=
done
[[ -n $healthy ]] || die "no demo seed gives a comfortable healthy-line today"
log "exporter up (healthy-line seed $healthy)"

# ---------------------------------------------------------------------------- alertmanager
cat >"$TMP/alertmanager.yml" <<'EOF'
route:
  receiver: blackhole
  group_by: [alertname, line]
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: blackhole
EOF
"$AM_BIN" --config.file="$TMP/alertmanager.yml" --storage.path="$TMP/alertmanager" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
    >"$TMP/alertmanager.log" 2>&1 &
AM_PID=$!
$E2E wait-http "$AM/-/ready" "$(left)" || die "alertmanager did not become ready"
log "alertmanager up"

# ---------------------------------------------------------------------------- prometheus
# the rule file as shipped, with every `for:` shortened so that alerts fire within seconds
sed -E 's/^([[:space:]]*for:[[:space:]]*)[0-9smhdw]+[[:space:]]*$/\14s/' "$ROOT/config/alerts.yml" >"$TMP/alerts.yml"
grep -Eq '^[[:space:]]*for: 4s$' "$TMP/alerts.yml" || die "could not rewrite the for: durations"
if grep -E '^[[:space:]]*for:' "$TMP/alerts.yml" | grep -vq 'for: 4s$'; then die "a for: duration was not rewritten"; fi
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
rule_files:
  - alerts.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$AM_PORT']
scrape_configs:
  - job_name: esim
    static_configs:
      - targets: ['127.0.0.1:$EXP_PORT']
EOF
timeout 20 promtool check config "$TMP/prometheus.yml" >"$TMP/promtool.log" 2>&1 || { cat "$TMP/promtool.log"; die "promtool rejects the e2e config"; }
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
$E2E wait-http "$PROM/-/ready" "$(left)" || die "prometheus did not become ready"
log "prometheus up"

# ---------------------------------------------------------------------------- assertions
$E2E wait-alert "$AM" "$(left)" EsimBalanceLow line=low-line account=e2e-demo severity=warning \
    'description~=at or under its alert threshold of 120.00.' \
    || die "EsimBalanceLow for low-line (account default 120) did not reach alertmanager"
$E2E wait-alert "$AM" "$(left)" EsimPollFailing line=down-line severity=warning \
    'description~=the last one with reason unavailable.' \
    'description~=Failed polls of the lines of operator demo without an account in the last 3 hours by reason:' \
    || die "EsimPollFailing for down-line did not reach alertmanager"

# every rule has had a few more evaluations with `for: 4s` than low-line needed
sleep 6
$E2E alerts-for "$AM" "$PROM" healthy-line >"$TMP/healthy.txt" \
    || { cat "$TMP/healthy.txt"; die "healthy-line raised alerts"; }
$E2E alerts-for "$AM" "$PROM" nodata-line EsimDataLow >"$TMP/nodata.txt" \
    || { cat "$TMP/nodata.txt"; die "nodata-line raised EsimDataLow without reporting data"; }
log "healthy-line raised nothing; nodata-line raised no EsimDataLow"

# the rule evaluation itself must be clean (no errors from a bad join, for instance)
rule_health=$(timeout 20 $E2E rules-health "$PROM")
[[ -z $rule_health ]] || die "rules failing to evaluate: $rule_health"

# ---------------------------------------------------------------------------- dashboards
# The demo driver makes no operator HTTP requests, so the operator request metrics are absent.
timeout "$(left)" python3 "$ROOT/scripts/check-dashboards" --live "$PROM" --var line=low-line \
    --allow-empty esim_operator_requests_total \
    --allow-empty esim_operator_request_duration_seconds_bucket \
    || die "dashboard expressions failed against the live Prometheus"

OK=1
log "PASS"
