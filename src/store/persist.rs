//! `--storage.path`: the last readings and counters of every line, saved to a JSON file and
//! restored at start, so counters continue (no reset seen by Prometheus) and the status page
//! is filled before the first poll. Written atomically (temporary file, then rename), mode 0600.
//! The file format is a promise across versions, so it has its own serde types here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{LastError, LineState, MoneyTotals, Store};
use crate::config::ByteSize;
use crate::error::Reason;
use crate::reading::{Currency, Money, Reading};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a readings file: {source}")]
    Decode { path: PathBuf, source: serde_json::Error },
    #[error("{path} has format version {found}; this exporter reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    lines: Vec<SavedLine>,
}

/// One line's state as stored; times are Unix seconds.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct SavedLine {
    name: String,
    reading: Option<SavedReading>,
    last_success: Option<f64>,
    last_attempt: Option<f64>,
    last_duration_seconds: Option<f64>,
    last_poll_ok: Option<bool>,
    last_error: Option<SavedError>,
    polls_total: u64,
    /// By reason label.
    errors_total: Vec<(String, u64)>,
    money: Vec<SavedMoney>,
    data_used_bytes_total: Option<f64>,
    last_balance: Option<SavedMoneyValue>,
    last_data_remaining: Option<u64>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct SavedReading {
    balance: Option<SavedMoneyValue>,
    data_remaining_bytes: Option<u64>,
    data_quota_bytes: Option<u64>,
    voice_remaining_seconds: Option<u64>,
    sms_remaining: Option<u64>,
    quota_expiry: Option<f64>,
    plan: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct SavedMoneyValue {
    amount: f64,
    /// ISO 4217 code.
    currency: String,
}

#[derive(Serialize, Deserialize)]
struct SavedMoney {
    currency: String,
    spent: f64,
    topped_up: f64,
}

#[derive(Serialize, Deserialize)]
struct SavedError {
    reason: String,
    message: String,
    at: f64,
}

fn secs(t: SystemTime) -> f64 {
    crate::clock::unix_seconds(t)
}

fn time(s: f64) -> Option<SystemTime> {
    (s.is_finite() && s >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(s))
}

fn money_out(m: Money) -> SavedMoneyValue {
    SavedMoneyValue { amount: m.amount, currency: m.currency.to_string() }
}

fn money_in(m: SavedMoneyValue) -> Option<Money> {
    let currency = Currency::parse(&m.currency)?;
    m.amount.is_finite().then_some(Money { amount: m.amount, currency })
}

impl SavedLine {
    fn from_state(s: &LineState) -> SavedLine {
        SavedLine {
            name: s.line.name.clone(),
            reading: s.reading.as_ref().map(|r| SavedReading {
                balance: r.balance.map(money_out),
                data_remaining_bytes: r.data_remaining.map(ByteSize::bytes),
                data_quota_bytes: r.data_quota.map(ByteSize::bytes),
                voice_remaining_seconds: r.voice_remaining.map(|d| d.as_secs()),
                sms_remaining: r.sms_remaining,
                quota_expiry: r.quota_expiry.map(secs),
                plan: r.plan.clone(),
            }),
            last_success: s.last_success.map(secs),
            last_attempt: s.last_attempt.map(secs),
            last_duration_seconds: s.last_duration.map(|d| d.as_secs_f64()),
            last_poll_ok: s.last_poll_ok,
            last_error: s.last_error.as_ref().map(|e| SavedError {
                reason: e.reason.as_str().to_string(),
                message: e.message.clone(),
                at: secs(e.at),
            }),
            polls_total: s.polls_total,
            errors_total: Reason::ALL.iter().map(|r| (r.as_str().to_string(), s.errors_total[r.index()])).collect(),
            money: s
                .money
                .iter()
                .map(|m| SavedMoney { currency: m.currency.to_string(), spent: m.spent, topped_up: m.topped_up })
                .collect(),
            data_used_bytes_total: s.data_used_bytes_total,
            last_balance: s.last_balance.map(money_out),
            last_data_remaining: s.last_data_remaining,
        }
    }

    /// Overwrites `state` with what was saved; values that do not decode are left out.
    fn restore_into(self, state: &mut LineState) {
        state.reading = self.reading.map(|r| Reading {
            balance: r.balance.and_then(money_in),
            data_remaining: r.data_remaining_bytes.map(ByteSize),
            data_quota: r.data_quota_bytes.map(ByteSize),
            voice_remaining: r.voice_remaining_seconds.map(Duration::from_secs),
            sms_remaining: r.sms_remaining,
            quota_expiry: r.quota_expiry.and_then(time),
            plan: r.plan,
        });
        state.last_success = self.last_success.and_then(time);
        state.last_attempt = self.last_attempt.and_then(time);
        state.last_duration =
            self.last_duration_seconds.filter(|d| d.is_finite() && *d >= 0.0).map(Duration::from_secs_f64);
        state.last_poll_ok = self.last_poll_ok;
        state.last_error = self.last_error.and_then(|e| {
            let reason = Reason::ALL.into_iter().find(|r| r.as_str() == e.reason)?;
            Some(LastError { reason, message: e.message, at: time(e.at)? })
        });
        state.polls_total = self.polls_total;
        for (label, count) in self.errors_total {
            if let Some(reason) = Reason::ALL.into_iter().find(|r| r.as_str() == label) {
                state.errors_total[reason.index()] = count;
            }
        }
        state.money = self
            .money
            .into_iter()
            .filter_map(|m| {
                let currency = Currency::parse(&m.currency)?;
                Some(MoneyTotals { currency, spent: m.spent, topped_up: m.topped_up })
            })
            .collect();
        state.data_used_bytes_total = self.data_used_bytes_total;
        state.last_balance = self.last_balance.and_then(money_in);
        state.last_data_remaining = self.last_data_remaining;
        state.version += 1;
    }
}

/// Saves every line of `store` to `path` atomically.
pub fn save(store: &Store, path: &Path) -> Result<(), PersistError> {
    let lines: Vec<SavedLine> = store.view().lines().map(SavedLine::from_state).collect();
    let json = serde_json::to_vec(&File { version: FORMAT_VERSION, lines })
        .map_err(|e| PersistError::Write { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| PersistError::Write { path: path.to_path_buf(), source })
}

/// Restores the saved state of lines that are configured now; returns how many were restored.
/// A missing file is not an error (first start).
pub fn restore(store: &Store, path: &Path) -> Result<usize, PersistError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(PersistError::Read { path: path.to_path_buf(), source }),
    };
    let file: File =
        serde_json::from_slice(&bytes).map_err(|source| PersistError::Decode { path: path.to_path_buf(), source })?;
    if file.version != FORMAT_VERSION {
        return Err(PersistError::Version { path: path.to_path_buf(), found: file.version });
    }
    Ok(store.update_each(file.lines.into_iter().map(|l| (l.name.clone(), l)), |saved, state| saved.restore_into(state)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::PollError;
    use crate::store::PollOutcome;

    fn store_with(names: &[&str]) -> Store {
        let yaml: String = names.iter().map(|n| format!("  - {{name: {n}, driver: demo}}\n")).collect();
        let config = crate::config::parse("t.yaml", &format!("lines:\n{yaml}")).expect("config");
        let store = Store::new();
        store.apply_plan(&config.lines.iter().map(Arc::clone).collect::<Vec<_>>());
        store
    }

    fn record(store: &Store, line: &str, secs: u64, result: Result<Reading, PollError>) {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs);
        store.record(line, PollOutcome { at, duration: Duration::from_millis(40), result });
    }

    fn rub(amount: f64) -> Reading {
        Reading {
            balance: Some(Money { amount, currency: Currency::RUB }),
            data_remaining: Some(ByteSize(5_000)),
            plan: Some("Тариф «Умный»".into()),
            ..Reading::default()
        }
    }

    #[test]
    fn counters_and_readings_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("esim-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.json");
        let before = store_with(&["a", "b"]);
        record(&before, "a", 0, Ok(rub(100.0)));
        record(&before, "a", 60, Ok(rub(80.0)));
        record(&before, "a", 120, Err(PollError::Timeout(Duration::from_secs(5))));
        record(&before, "b", 0, Ok(rub(10.0)));
        save(&before, &path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        // After a restart, "b" is no longer configured and "c" is new.
        let after = store_with(&["a", "c"]);
        assert_eq!(restore(&after, &path).unwrap(), 1);
        let a = after.get("a").unwrap();
        let was = before.get("a").unwrap();
        assert_eq!(a.reading, was.reading);
        assert_eq!((a.polls_total, a.errors_total, a.last_poll_ok), (3, was.errors_total, Some(false)));
        assert_eq!(a.money, was.money);
        assert_eq!(a.last_error.as_ref().map(|e| e.reason), Some(Reason::Timeout));
        // The next poll's delta is taken against the restored balance.
        record(&after, "a", 180, Ok(rub(75.0)));
        assert_eq!(after.get("a").unwrap().money[0].spent, 25.0);
        assert!(after.get("b").is_none());
        assert_eq!(after.get("c").unwrap().polls_total, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_a_missing_one_is_fine() {
        let dir = std::env::temp_dir().join(format!("esim-persist-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = store_with(&["a"]);
        assert_eq!(restore(&store, &dir.join("absent.json")).unwrap(), 0);
        std::fs::write(dir.join("junk.json"), "{not json").unwrap();
        let err = restore(&store, &dir.join("junk.json")).unwrap_err().to_string();
        assert!(err.contains("junk.json is not a readings file"), "{err}");
        std::fs::write(dir.join("v9.json"), r#"{"version": 9, "lines": []}"#).unwrap();
        assert!(restore(&store, &dir.join("v9.json")).unwrap_err().to_string().contains("format version 9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
