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

/// Far above any real fleet (100,000 lines are ≈ 70 MB): the file is streamed, so the limit is
/// only there to refuse what is plainly not ours.
const MAX_FILE_BYTES: u64 = 16 << 30;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot read {path}: {source}")]
    Open { path: PathBuf, source: crate::fsutil::ReadError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a readings file: {source}")]
    Decode { path: PathBuf, source: serde_json::Error },
    #[error("{path} has format version {found}; this exporter reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// The file's shape as one serde type. `save` and `restore` stream it a batch of lines at a
/// time instead; tests check that they agree with it.
#[cfg(test)]
#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    lines: Vec<SavedLine>,
}

/// One line's state as stored; times are Unix seconds.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
pub(super) struct SavedLine {
    pub(super) name: String,
    reading: Option<SavedReading>,
    last_success: Option<f64>,
    last_attempt: Option<f64>,
    last_duration_seconds: Option<f64>,
    last_poll_ok: Option<bool>,
    last_error: Option<SavedError>,
    pub(super) polls_total: u64,
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
    /// `null` (a file written before non-finite values were kept out) restores nothing.
    amount: Option<f64>,
    /// ISO 4217 code.
    currency: String,
}

#[derive(Serialize, Deserialize)]
struct SavedMoney {
    currency: String,
    /// `null` or negative: this currency's totals are not restored (they restart at 0, which
    /// Prometheus reads as one reset) rather than the whole file being refused.
    spent: Option<f64>,
    topped_up: Option<f64>,
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

/// A saved time, or `None` when it is not one (negative, non-finite, or past what a
/// `SystemTime` can hold: a file that says `1e19` must not panic the start).
fn time(s: f64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(duration(s)?)
}

/// A saved duration in seconds, or `None` when it is not one.
fn duration(s: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(s).ok()
}

fn money_out(m: Money) -> SavedMoneyValue {
    SavedMoneyValue { amount: Some(m.amount), currency: m.currency.to_string() }
}

fn money_in(m: SavedMoneyValue) -> Option<Money> {
    let currency = Currency::parse(&m.currency)?;
    let amount = m.amount.filter(|a| a.is_finite())?;
    Some(Money { amount, currency })
}

impl SavedLine {
    pub(super) fn from_state(s: &LineState) -> SavedLine {
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
                .map(|m| SavedMoney {
                    currency: m.currency.to_string(),
                    spent: Some(m.spent),
                    topped_up: Some(m.topped_up),
                })
                .collect(),
            data_used_bytes_total: s.data_used_bytes_total,
            last_balance: s.last_balance.map(money_out),
            last_data_remaining: s.last_data_remaining,
        }
    }

    /// Overwrites `state` with what was saved; values that do not decode are left out.
    pub(super) fn restore_into(self, state: &mut LineState) {
        let reading = self.reading.map(|r| Reading {
            balance: r.balance.and_then(money_in),
            data_remaining: r.data_remaining_bytes.map(ByteSize),
            data_quota: r.data_quota_bytes.map(ByteSize),
            voice_remaining: r.voice_remaining_seconds.map(Duration::from_secs),
            sms_remaining: r.sms_remaining,
            quota_expiry: r.quota_expiry.and_then(time),
            plan: r.plan,
        });
        // A file written by an older version may hold what readings may no longer carry.
        state.reading = reading.and_then(|r| r.checked().ok());
        state.last_success = self.last_success.and_then(time);
        state.last_attempt = self.last_attempt.and_then(time);
        state.last_duration = self.last_duration_seconds.and_then(duration);
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
                let total = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
                Some(MoneyTotals { currency, spent: total(m.spent)?, topped_up: total(m.topped_up)? })
            })
            .collect();
        state.data_used_bytes_total = self.data_used_bytes_total.filter(|v| v.is_finite() && *v >= 0.0);
        state.last_balance = self.last_balance.and_then(money_in);
        state.last_data_remaining = self.last_data_remaining;
        state.version += 1;
    }
}

/// Lines serialised under one hold of the store's read lock, and restored under one hold of
/// its write lock: polls wait for at most one batch, and neither a save nor a restore ever
/// holds every line's saved form at once (at 100,000 lines the file is ≈ 70 MB and its lines
/// decoded ≈ 90 MB: holding both was the largest memory peak of a start).
const BATCH_LINES: usize = 1024;

/// How many times a save starts over when a reload changes the set of lines under it.
const SAVE_ATTEMPTS: usize = 3;

/// Saves every line of `store` to `path` atomically (see [`crate::fsutil::write_atomically`]),
/// a batch of lines at a time.
pub fn save(store: &Store, path: &Path) -> Result<(), PersistError> {
    use std::io::Seek;
    crate::fsutil::write_atomically(path, 0o600, |file| {
        for attempt in 1..=SAVE_ATTEMPTS {
            file.set_len(0)?;
            file.rewind()?;
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut *file);
            // The last attempt takes what it gets: lines that moved mid-save are saved again
            // a minute later.
            let whole = write_lines(store, &mut out)?;
            out.flush()?;
            if whole || attempt == SAVE_ATTEMPTS {
                break;
            }
        }
        Ok(())
    })
    .map_err(|source| PersistError::Write { path: path.to_path_buf(), source })
}

/// Writes the file's JSON (`{"version":1,"lines":[...]}`, as `File` would serialise) a batch
/// at a time; false when a reload changed the set of lines meanwhile.
fn write_lines(store: &Store, out: &mut impl Write) -> std::io::Result<bool> {
    write!(out, r#"{{"version":{FORMAT_VERSION},"lines":["#)?;
    let layout = store.view().layout();
    let mut batch = Vec::new();
    let mut at = 0;
    loop {
        batch.clear();
        {
            let view = store.view();
            if view.layout() != layout {
                return Ok(false);
            }
            for state in (at..view.len().min(at + BATCH_LINES)).filter_map(|p| view.at(p)) {
                if at > 0 || !batch.is_empty() {
                    batch.push(b',');
                }
                serde_json::to_writer(&mut batch, &SavedLine::from_state(state)).map_err(std::io::Error::other)?;
            }
            at += BATCH_LINES;
        }
        if batch.is_empty() {
            break;
        }
        out.write_all(&batch)?;
    }
    out.write_all(b"]}")?;
    Ok(true)
}

/// Restores the saved state of lines that are configured now; returns how many were restored.
/// A missing file is not an error (first start). The file is read as a stream and applied a
/// batch at a time, so a file that turns out broken part-way leaves the lines before the
/// break restored (each line's state is whole: it comes from one complete record) and
/// reports the error with its position.
pub fn restore(store: &Store, path: &Path) -> Result<usize, PersistError> {
    // The exporter wrote this file itself: a symlink or a FIFO there was planted.
    let file = match crate::fsutil::open_regular(path, MAX_FILE_BYTES, crate::fsutil::Symlinks::Refuse) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(0),
        Err(source) => return Err(PersistError::Open { path: path.to_path_buf(), source }),
    };
    let mut json = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(256 * 1024, file));
    let restorer = Restorer { store, version: std::cell::Cell::new(None), restored: std::cell::Cell::new(0) };
    let decoded = serde::de::DeserializeSeed::deserialize(&restorer, &mut json).and_then(|()| json.end());
    match (decoded, restorer.version.get()) {
        (Ok(()), _) => Ok(restorer.restored.get()),
        (Err(_), Some(found)) if found != FORMAT_VERSION => {
            Err(PersistError::Version { path: path.to_path_buf(), found })
        }
        (Err(source), _) => Err(PersistError::Decode { path: path.to_path_buf(), source }),
    }
}

/// Reads the top-level object: `version` first (as `save` writes it), then `lines` restored
/// batch by batch.
struct Restorer<'a> {
    store: &'a Store,
    version: std::cell::Cell<Option<u32>>,
    restored: std::cell::Cell<usize>,
}

impl<'de> serde::de::DeserializeSeed<'de> for &Restorer<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &Restorer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a readings file: {\"version\": 1, \"lines\": [...]}")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut lines_seen = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => {
                    let version = map.next_value::<u32>()?;
                    self.version.set(Some(version));
                    if version != FORMAT_VERSION {
                        return Err(A::Error::custom(format!("format version {version}")));
                    }
                }
                "lines" if self.version.get().is_none() => {
                    return Err(A::Error::custom("`version` must come before `lines`"));
                }
                "lines" => {
                    map.next_value_seed(self.lines())?;
                    lines_seen = true;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        match (self.version.get(), lines_seen) {
            (None, _) => Err(A::Error::missing_field("version")),
            (_, false) => Err(A::Error::missing_field("lines")),
            _ => Ok(()),
        }
    }
}

impl Restorer<'_> {
    fn lines(&self) -> LinesRestorer<'_, '_> {
        LinesRestorer(self)
    }

    /// Applies a batch of saved lines to the store.
    fn apply(&self, batch: &mut Vec<SavedLine>) {
        let items = batch.drain(..).map(|l| (l.name.clone(), l));
        let restored = self.store.update_each(items, |saved, state| saved.restore_into(state));
        self.restored.set(self.restored.get() + restored);
    }
}

/// The `lines` array, applied [`BATCH_LINES`] at a time as it is read.
struct LinesRestorer<'r, 'a>(&'r Restorer<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for LinesRestorer<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LinesRestorer<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of saved lines")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(BATCH_LINES);
        let result = loop {
            match seq.next_element::<SavedLine>() {
                Ok(Some(line)) => {
                    batch.push(line);
                    if batch.len() == BATCH_LINES {
                        self.0.apply(&mut batch);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Complete records before an error are restored too.
        self.0.apply(&mut batch);
        result
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::PollError;
    use crate::store::PollOutcome;

    pub(in crate::store) fn store_with(names: &[&str]) -> Store {
        let yaml: String = names.iter().map(|n| format!("  - {{name: {n}, driver: demo}}\n")).collect();
        let config =
            crate::config::parse("t.yaml", &format!("lines:\n{yaml}"), crate::drivers::REGISTRY).expect("config");
        let store = Store::new();
        store.apply_plan(&config.lines.iter().map(Arc::clone).collect::<Vec<_>>());
        store
    }

    pub(in crate::store) fn record(store: &Store, line: &str, secs: u64, result: Result<Reading, PollError>) {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs);
        store.record(line, PollOutcome { at, duration: Duration::from_millis(40), result });
    }

    pub(in crate::store) fn rub(amount: f64) -> Reading {
        Reading {
            balance: Some(Money { amount, currency: Currency::RUB }),
            data_remaining: Some(ByteSize(5_000)),
            plan: Some("Тариф «Умный»".into()),
            ..Reading::default()
        }
    }

    #[test]
    fn counters_and_readings_survive_a_restart() {
        let dir = scratch_dir("state");
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

    /// An empty directory of this test's own (removed by the test when it passes).
    pub(in crate::store) fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("esim-persist-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line-{i:05}")).collect()
    }

    fn polled_store(names: &[String]) -> Store {
        let store = store_with(&names.iter().map(String::as_str).collect::<Vec<_>>());
        for (i, name) in names.iter().enumerate() {
            record(&store, name, i as u64, Ok(rub(i as f64)));
        }
        store
    }

    #[test]
    fn a_save_over_several_batches_is_the_documented_file_and_restores_every_line() {
        let dir = scratch_dir("batches");
        let path = dir.join("state.json");
        let names = names(2 * BATCH_LINES + 7);
        let before = polled_store(&names);
        save(&before, &path).unwrap();
        let file: File = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("the file is one JSON document");
        assert_eq!(file.version, FORMAT_VERSION);
        assert_eq!(file.lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>(), names);
        let after = store_with(&names.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(restore(&after, &path).unwrap(), names.len());
        for name in &names {
            assert_eq!(after.get(name).unwrap().reading, before.get(name).unwrap().reading, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_broken_part_way_restores_the_whole_records_before_the_break_and_says_where() {
        let dir = scratch_dir("broken");
        let path = dir.join("state.json");
        let names = names(BATCH_LINES + 10);
        save(&polled_store(&names), &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Cut inside the record of the last line.
        let cut = text.rfind(&format!("\"{}\"", names[names.len() - 1])).unwrap() + 5;
        std::fs::write(&path, &text[..cut]).unwrap();
        let after = store_with(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let err = restore(&after, &path).unwrap_err().to_string();
        assert!(err.contains("state.json is not a readings file") && err.contains("line 1 column"), "{err}");
        let restored = names.iter().filter(|n| after.get(n).unwrap().reading.is_some()).count();
        assert_eq!(restored, names.len() - 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lines_before_the_version_or_a_missing_part_are_refused() {
        let dir = scratch_dir("order");
        let store = store_with(&["a"]);
        for (file, expected) in [
            (r#"{"lines": [], "version": 1}"#, "`version` must come before `lines`"),
            (r#"{"version": 1}"#, "missing field `lines`"),
            (r#"{"lines_": []}"#, "missing field `version`"),
            (r#"[1, 2]"#, "expected a readings file"),
            (r#"{"version": 1, "lines": []} trailing"#, "trailing characters"),
        ] {
            std::fs::write(dir.join("s.json"), file).unwrap();
            let err = restore(&store, &dir.join("s.json")).unwrap_err().to_string();
            assert!(err.contains(expected), "{file}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_a_missing_one_is_fine() {
        let dir = scratch_dir("bad");
        let store = store_with(&["a"]);
        assert_eq!(restore(&store, &dir.join("absent.json")).unwrap(), 0);
        std::fs::write(dir.join("junk.json"), "{not json").unwrap();
        let err = restore(&store, &dir.join("junk.json")).unwrap_err().to_string();
        assert!(err.contains("junk.json is not a readings file"), "{err}");
        std::fs::write(dir.join("v9.json"), r#"{"version": 9, "lines": []}"#).unwrap();
        assert!(restore(&store, &dir.join("v9.json")).unwrap_err().to_string().contains("format version 9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn out_of_range_times_and_durations_restore_as_absent_without_a_panic() {
        let dir = scratch_dir("range");
        let path = dir.join("state.json");
        std::fs::write(
            &path,
            r#"{"version":1,"lines":[{"name":"a","last_success":1e19,"last_attempt":1e300,
               "last_duration_seconds":1e30,"reading":{"quota_expiry":1e25,"data_remaining_bytes":18446744073709551615},
               "last_error":{"reason":"timeout","message":"m","at":-5},
               "money":[{"currency":"RUB","spent":null,"topped_up":1},{"currency":"EUR","spent":-1,"topped_up":0}],
               "data_used_bytes_total":null,"last_balance":{"amount":null,"currency":"RUB"},"polls_total":7}]}"#,
        )
        .unwrap();
        let store = store_with(&["a"]);
        assert_eq!(restore(&store, &path).unwrap(), 1);
        let a = store.get("a").unwrap();
        assert_eq!((a.last_success, a.last_attempt, a.last_duration), (None, None, None));
        assert_eq!(a.reading, None, "a reading beyond the plausible bounds is not restored");
        assert!(a.last_error.is_none() && a.money.is_empty() && a.last_balance.is_none());
        assert_eq!(a.polls_total, 7, "what is sane in the record is kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_or_fifo_at_the_storage_path_is_refused_not_followed() {
        let dir = scratch_dir("link");
        let victim = dir.join("victim.json");
        save(&polled_store(&names(3)), &victim).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("state.json")).unwrap();
        let err = restore(&store_with(&["line-00000"]), &dir.join("state.json")).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let fifo = std::ffi::CString::new(dir.join("fifo.json").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = restore(&store_with(&["a"]), &dir.join("fifo.json")).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_counter_restores_to_exactly_the_value_it_had() {
        let dir = scratch_dir("exact");
        let path = dir.join("state.json");
        let store = store_with(&["a"]);
        record(&store, "a", 0, Ok(rub(100.0)));
        // This total parsed one ULP low with serde_json's default float parser.
        store.update_each([("a".to_string(), ())], |(), s| s.money[0].spent = 0.009999999999990905);
        save(&store, &path).unwrap();
        let after = store_with(&["a"]);
        restore(&after, &path).unwrap();
        assert_eq!(after.get("a").unwrap().money[0].spent.to_bits(), 0.009999999999990905f64.to_bits());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
