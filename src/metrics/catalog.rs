//! The metric catalogue: every family the exporter exposes, with its type, HELP text, unit and
//! family-specific labels. The renderer, the exporter's own registry, `docs/METRICS.md`, the
//! dashboards lint and the alert tests all read this one list (DESIGN §5 is the contract).

/// The type of a family. `Info` families have value 1 and carry their facts in labels; the
/// text format has no info type, so they are declared `gauge` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
    Info,
}

impl Kind {
    /// The `# TYPE` word in text format 0.0.4.
    pub fn text_type(self) -> &'static str {
        match self {
            Kind::Gauge | Kind::Info => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }

    /// The `# TYPE` word in OpenMetrics.
    pub fn openmetrics_type(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Info => "info",
        }
    }
}

/// Who produces a family's series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One or more series per line, rendered from the store; labels start with
    /// `line`, `operator`, `account` and the line's `labels`.
    Line,
    /// The exporter itself, through the `prometheus` registry of `SelfMetrics`.
    Exporter,
}

/// One metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// The sample name (counters keep `_total`, as in text format 0.0.4).
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Base unit, a suffix of the name (`bytes`, `seconds`), for OpenMetrics `# UNIT`.
    pub unit: Option<&'static str>,
    pub scope: Scope,
    /// Labels specific to this family, after the per-line ones for `Scope::Line`.
    pub labels: &'static [&'static str],
}

impl Family {
    /// The family name in OpenMetrics: counters drop `_total`, info families drop `_info`.
    pub fn openmetrics_name(&self) -> &'static str {
        let suffix = match self.kind {
            Kind::Counter => "_total",
            Kind::Info => "_info",
            Kind::Gauge | Kind::Histogram => "",
        };
        self.name.strip_suffix(suffix).unwrap_or(self.name)
    }
}

pub const ESIM_BALANCE: &str = "esim_balance";
pub const ESIM_DATA_REMAINING_BYTES: &str = "esim_data_remaining_bytes";
pub const ESIM_DATA_QUOTA_BYTES: &str = "esim_data_quota_bytes";
pub const ESIM_VOICE_REMAINING_SECONDS: &str = "esim_voice_remaining_seconds";
pub const ESIM_SMS_REMAINING: &str = "esim_sms_remaining";
pub const ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS: &str = "esim_quota_expiry_timestamp_seconds";
pub const ESIM_LINE_INFO: &str = "esim_line_info";
pub const ESIM_POLL_FAILING: &str = "esim_poll_failing";
pub const ESIM_POLL_DURATION_SECONDS: &str = "esim_poll_duration_seconds";
pub const ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS: &str = "esim_last_poll_success_timestamp_seconds";
pub const ESIM_POLLS_TOTAL: &str = "esim_polls_total";
pub const ESIM_POLL_ERRORS_TOTAL: &str = "esim_poll_errors_total";
pub const ESIM_SPENT_TOTAL: &str = "esim_spent_total";
pub const ESIM_TOPPED_UP_TOTAL: &str = "esim_topped_up_total";
pub const ESIM_DATA_USED_BYTES_TOTAL: &str = "esim_data_used_bytes_total";
pub const ESIM_BALANCE_ALERT_THRESHOLD: &str = "esim_balance_alert_threshold";
pub const ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES: &str = "esim_data_remaining_alert_threshold_bytes";

pub const ESIM_EXPORTER_BUILD_INFO: &str = "esim_exporter_build_info";
pub const ESIM_LINES: &str = "esim_lines";
pub const ESIM_DEFAULT_BALANCE_ALERT_THRESHOLD: &str = "esim_default_balance_alert_threshold";
pub const ESIM_DEFAULT_DATA_REMAINING_ALERT_THRESHOLD_BYTES: &str = "esim_default_data_remaining_alert_threshold_bytes";
pub const ESIM_SHARD_INFO: &str = "esim_shard_info";
pub const ESIM_CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "esim_config_last_reload_successful";
pub const ESIM_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: &str = "esim_config_last_reload_success_timestamp_seconds";
pub const ESIM_STORAGE_LAST_SAVE_SUCCESS_TIMESTAMP_SECONDS: &str = "esim_storage_last_save_success_timestamp_seconds";
pub const ESIM_STORAGE_SAVE_FAILURES_TOTAL: &str = "esim_storage_save_failures_total";
pub const ESIM_OPERATOR_REQUESTS_TOTAL: &str = "esim_operator_requests_total";
pub const ESIM_OPERATOR_REQUEST_DURATION_SECONDS: &str = "esim_operator_request_duration_seconds";
pub const ESIM_SCHEDULER_POLLS_IN_FLIGHT: &str = "esim_scheduler_polls_in_flight";
pub const ESIM_SCHEDULER_QUEUE_WAIT_SECONDS: &str = "esim_scheduler_queue_wait_seconds";
pub const ESIM_SCHEDULER_BACKOFF_LINES: &str = "esim_scheduler_backoff_lines";
pub const ESIM_ACCOUNT_LOCKED_OUT: &str = "esim_account_locked_out";
pub const ESIM_ACCOUNT_RATE_LIMITED_UNTIL_TIMESTAMP_SECONDS: &str = "esim_account_rate_limited_until_timestamp_seconds";
pub const ESIM_ACCOUNT_NEEDS_LOGIN: &str = "esim_account_needs_login";

/// Labels every per-line series starts with, in this order (an empty value is omitted),
/// followed by the line's own `labels` and then the family's labels.
pub const LINE_LABELS: [&str; 3] = ["line", "operator", "account"];

const fn line(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    unit: Option<&'static str>,
    labels: &'static [&'static str],
) -> Family {
    Family { name, kind, help, unit, scope: Scope::Line, labels }
}

const fn exporter(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    unit: Option<&'static str>,
    labels: &'static [&'static str],
) -> Family {
    Family { name, kind, help, unit, scope: Scope::Exporter, labels }
}

const BYTES: Option<&str> = Some("bytes");
const SECONDS: Option<&str> = Some("seconds");

/// Per-line families first (the order of `/metrics`), then the exporter's own.
static ALL: [Family; 34] = [
    line(
        ESIM_BALANCE,
        Kind::Gauge,
        "Balance of the line in currency units (not cents), from the last successful poll.",
        None,
        &["currency"],
    ),
    line(
        ESIM_DATA_REMAINING_BYTES,
        Kind::Gauge,
        "Data left in the current package(s), from the last successful poll.",
        BYTES,
        &[],
    ),
    line(
        ESIM_DATA_QUOTA_BYTES,
        Kind::Gauge,
        "Total data of the current package(s), from the last successful poll.",
        BYTES,
        &[],
    ),
    line(ESIM_VOICE_REMAINING_SECONDS, Kind::Gauge, "Voice time left, from the last successful poll.", SECONDS, &[]),
    line(ESIM_SMS_REMAINING, Kind::Gauge, "SMS left, from the last successful poll.", None, &[]),
    line(
        ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS,
        Kind::Gauge,
        "Unix time when the current package ends, from the last successful poll.",
        SECONDS,
        &[],
    ),
    line(
        ESIM_LINE_INFO,
        Kind::Info,
        "Facts about the line (value 1); plan from the last successful poll.",
        None,
        &["driver", "msisdn", "iccid", "plan"],
    ),
    line(
        ESIM_POLL_FAILING,
        Kind::Gauge,
        "1 while the last poll of the line failed, with its reason; absent while polls succeed or before the first.",
        None,
        &["reason"],
    ),
    line(
        ESIM_LAST_POLL_SUCCESS_TIMESTAMP_SECONDS,
        Kind::Gauge,
        "Unix time of the last successful poll of the line.",
        SECONDS,
        &[],
    ),
    line(
        ESIM_SPENT_TOTAL,
        Kind::Counter,
        "Sum of balance decreases between successful polls, in currency units.",
        None,
        &["currency"],
    ),
    line(
        ESIM_TOPPED_UP_TOTAL,
        Kind::Counter,
        "Sum of balance increases between successful polls, in currency units.",
        None,
        &["currency"],
    ),
    line(
        ESIM_DATA_USED_BYTES_TOTAL,
        Kind::Counter,
        "Sum of data-remaining decreases between successful polls.",
        BYTES,
        &[],
    ),
    line(
        ESIM_BALANCE_ALERT_THRESHOLD,
        Kind::Gauge,
        "Balance under which the line should alert, in currency units: only for a line whose own alert.balance_below differs from its account's (see esim_default_balance_alert_threshold).",
        None,
        &[],
    ),
    line(
        ESIM_DATA_REMAINING_ALERT_THRESHOLD_BYTES,
        Kind::Gauge,
        "Data remaining under which the line should alert: only for a line whose own alert.data_below differs from its account's (see esim_default_data_remaining_alert_threshold_bytes).",
        BYTES,
        &[],
    ),
    exporter(
        ESIM_EXPORTER_BUILD_INFO,
        Kind::Info,
        "Version, git revision and rustc of the exporter (value 1).",
        None,
        &["version", "revision", "rustc"],
    ),
    exporter(ESIM_LINES, Kind::Gauge, "Configured lines, by driver.", None, &["driver"]),
    exporter(
        ESIM_POLLS_TOTAL,
        Kind::Counter,
        "Polls attempted, by operator and account (lines without an account: no account label).",
        None,
        &["operator", "account"],
    ),
    exporter(
        ESIM_POLL_ERRORS_TOTAL,
        Kind::Counter,
        "Failed polls, by operator, account and reason; every reason of every account is pre-created at 0.",
        None,
        &["operator", "account", "reason"],
    ),
    exporter(
        ESIM_POLL_DURATION_SECONDS,
        Kind::Histogram,
        "Duration of polls (driver call, all its requests), by operator and account.",
        SECONDS,
        &["operator", "account"],
    ),
    exporter(
        ESIM_DEFAULT_BALANCE_ALERT_THRESHOLD,
        Kind::Gauge,
        "alert.balance_below of the lines of an account that do not set their own, in currency units (no account label: lines without an account).",
        None,
        &["account"],
    ),
    exporter(
        ESIM_DEFAULT_DATA_REMAINING_ALERT_THRESHOLD_BYTES,
        Kind::Gauge,
        "alert.data_below of the lines of an account that do not set their own (no account label: lines without an account).",
        BYTES,
        &["account"],
    ),
    exporter(
        ESIM_SHARD_INFO,
        Kind::Info,
        "The --shard this process polls (value 1): shard i of shards n, 0 of 1 when not sharded.",
        None,
        &["shard", "shards"],
    ),
    exporter(
        ESIM_CONFIG_LAST_RELOAD_SUCCESSFUL,
        Kind::Gauge,
        "1 if the last config load or reload succeeded, 0 if it failed.",
        None,
        &[],
    ),
    exporter(
        ESIM_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
        Kind::Gauge,
        "Unix time of the last successful config load or reload.",
        SECONDS,
        &[],
    ),
    exporter(
        ESIM_STORAGE_LAST_SAVE_SUCCESS_TIMESTAMP_SECONDS,
        Kind::Gauge,
        "Unix time of the last successful save of --storage.path (snapshot or journal append); 0 before the first or without --storage.path.",
        SECONDS,
        &[],
    ),
    exporter(
        ESIM_STORAGE_SAVE_FAILURES_TOTAL,
        Kind::Counter,
        "Failed writes of --storage.path, by file (snapshot: the minute's full save; journal: the changes appended before each render).",
        None,
        &["file"],
    ),
    exporter(
        ESIM_OPERATOR_REQUESTS_TOTAL,
        Kind::Counter,
        "Requests to operator APIs, by account, driver and response code.",
        None,
        &["account", "driver", "code"],
    ),
    exporter(
        ESIM_OPERATOR_REQUEST_DURATION_SECONDS,
        Kind::Histogram,
        "Duration of requests to operator APIs, by driver.",
        SECONDS,
        &["driver"],
    ),
    exporter(
        ESIM_SCHEDULER_POLLS_IN_FLIGHT,
        Kind::Gauge,
        "Polls currently calling an operator (admitted, not yet finished).",
        None,
        &[],
    ),
    exporter(
        ESIM_SCHEDULER_QUEUE_WAIT_SECONDS,
        Kind::Histogram,
        "Time a due poll waited for a concurrency permit and a rate-limit token.",
        SECONDS,
        &[],
    ),
    exporter(
        ESIM_SCHEDULER_BACKOFF_LINES,
        Kind::Gauge,
        "Lines whose last poll failed and that are retrying on the back-off schedule.",
        None,
        &[],
    ),
    exporter(
        ESIM_ACCOUNT_LOCKED_OUT,
        Kind::Gauge,
        "1 while an account is locked out after an authentication failure (no polls until it passes or the config is reloaded).",
        None,
        &["account", "driver"],
    ),
    exporter(
        ESIM_ACCOUNT_RATE_LIMITED_UNTIL_TIMESTAMP_SECONDS,
        Kind::Gauge,
        "When the operator's last rate limit (429, Retry-After) of the account ends; no polls of the account before.",
        SECONDS,
        &["account", "driver"],
    ),
    exporter(
        ESIM_ACCOUNT_NEEDS_LOGIN,
        Kind::Gauge,
        "1 while an account waits for a person to log in again (esim-exporter login --account NAME); it is not polled until then.",
        None,
        &["account"],
    ),
];

/// How many of [`all`] are per-line families (they come first).
pub const LINE_FAMILY_COUNT: usize = 14;

/// Every family, per-line ones first in `/metrics` order.
pub fn all() -> &'static [Family] {
    &ALL
}

/// The per-line families, in `/metrics` order.
pub fn line_families() -> &'static [Family] {
    &ALL[..LINE_FAMILY_COUNT]
}

/// The exporter's own families.
pub fn exporter_families() -> &'static [Family] {
    &ALL[LINE_FAMILY_COUNT..]
}

/// Looks a family up by its sample name (`esim_polls_total`, not `esim_polls`).
pub fn find(name: &str) -> Option<&'static Family> {
    ALL.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_valid_and_prefixed() {
        let mut seen = HashSet::new();
        for f in all() {
            assert!(seen.insert(f.name), "duplicate family {}", f.name);
            assert!(f.name.starts_with("esim_"), "{}", f.name);
            assert!(f.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", f.name);
        }
    }

    #[test]
    fn scopes_split_at_line_family_count() {
        assert!(line_families().iter().all(|f| f.scope == Scope::Line));
        assert!(exporter_families().iter().all(|f| f.scope == Scope::Exporter));
    }

    #[test]
    fn suffixes_match_types_and_units() {
        for f in all() {
            assert_eq!(f.name.ends_with("_total"), f.kind == Kind::Counter, "only counters end in _total: {}", f.name);
            assert_eq!(f.name.ends_with("_info"), f.kind == Kind::Info, "{}", f.name);
            if let Some(unit) = f.unit {
                let suffix = format!("_{unit}");
                assert!(f.openmetrics_name().ends_with(&suffix), "{} must end with its unit", f.name);
            }
            for unit in ["bytes", "seconds"] {
                if f.openmetrics_name().ends_with(&format!("_{unit}")) {
                    assert_eq!(f.unit, Some(unit), "{} should declare its unit", f.name);
                }
            }
        }
    }

    #[test]
    fn per_line_help_texts_say_where_values_come_from() {
        // Families filled from the reading itself (not poll status, counters or config).
        let from_reading = [
            ESIM_BALANCE,
            ESIM_DATA_REMAINING_BYTES,
            ESIM_DATA_QUOTA_BYTES,
            ESIM_VOICE_REMAINING_SECONDS,
            ESIM_SMS_REMAINING,
            ESIM_QUOTA_EXPIRY_TIMESTAMP_SECONDS,
            ESIM_LINE_INFO,
        ];
        for name in from_reading {
            let help = find(name).map(|f| f.help).unwrap_or_default();
            assert!(help.contains("last successful poll"), "{name}: {help}");
        }
    }

    #[test]
    fn help_texts_need_no_escaping() {
        for f in all() {
            assert!(!f.help.contains(['\\', '"', '\n']), "{}", f.name);
        }
    }

    #[test]
    fn openmetrics_names_drop_type_suffixes() {
        let cases = [
            (ESIM_POLLS_TOTAL, "esim_polls"),
            (ESIM_DATA_USED_BYTES_TOTAL, "esim_data_used_bytes"),
            (ESIM_LINE_INFO, "esim_line"),
            (ESIM_BALANCE, "esim_balance"),
            (ESIM_OPERATOR_REQUEST_DURATION_SECONDS, "esim_operator_request_duration_seconds"),
        ];
        for (name, om) in cases {
            assert_eq!(find(name).map(Family::openmetrics_name), Some(om));
        }
    }
}
