//! Accounts whose login needs a person: the [`Person`] a driver talks to during
//! `esim-exporter login` (an SMS code, once), and the [`LoginBoard`] where drivers say that an
//! account waits for one again. The board logs each change once, lists the waiting accounts for
//! the status page, and reports each change to a [`LoginObserver`]: the metrics side turns
//! those events into `esim_account_needs_login{account}`, so drivers never register a series.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use std::sync::Arc;

/// The person at the terminal during `esim-exporter login`.
pub trait Person: Send {
    /// Shows a step or a hint.
    fn tell(&mut self, text: &str);
    /// Asks for one line (an SMS code), trimmed; `None` when the input ended.
    fn ask(&mut self, prompt: &str) -> Option<String>;
}

/// An account that waits for a person, as the status page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub account: String,
    pub driver: &'static str,
    /// What happened, never a secret (e.g. "the stored login was refused").
    pub why: String,
    pub since: SystemTime,
}

/// Where the board reports that an account started or stopped waiting for a person (the
/// framework's `esim_account_needs_login` gauge; nothing in tests and `--once`).
pub trait LoginObserver: Send + Sync {
    /// The account waits for a person (`true`) or is fine (`false`).
    fn needs_login(&self, account: &str, waiting: bool);
    /// The account left the config.
    fn forget(&self, account: &str);
}

/// Which accounts wait for a person. One per process, shared by every build (a reload keeps
/// what it knows until the account logs in or leaves the config).
#[derive(Default)]
pub struct LoginBoard {
    observer: Option<Arc<dyn LoginObserver>>,
    /// Accounts of drivers with a person-made login, by name: `Some` while waiting.
    accounts: Mutex<BTreeMap<String, Option<Waiting>>>,
}

impl LoginBoard {
    /// A board that reports every change to `observer`.
    pub fn observed(observer: Arc<dyn LoginObserver>) -> LoginBoard {
        LoginBoard { observer: Some(observer), accounts: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<Waiting>>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_gauge(&self, account: &str, waiting: bool) {
        if let Some(observer) = &self.observer {
            observer.needs_login(account, waiting);
        }
    }

    /// An account whose driver may come to need a person: its series starts at 0, so an alert
    /// can tell "fine" from "not known".
    pub fn track(&self, account: &str) {
        let mut accounts = self.lock();
        if !accounts.contains_key(account) {
            accounts.insert(account.to_string(), None);
            drop(accounts);
            self.set_gauge(account, false);
        }
    }

    /// The account cannot log in without a person (`esim-exporter login --account NAME`).
    /// Logged once per episode, however many polls find the same.
    pub fn needs_person(&self, account: &str, driver: &'static str, why: &str, now: SystemTime) {
        let mut accounts = self.lock();
        if matches!(accounts.get(account), Some(Some(_))) {
            return;
        }
        // `why` is operator text; credential-named fields in it (a refresh token echoed back)
        // are redacted before the status page or a log shows it.
        let why = crate::redact::Redactor::default().redact(why.to_string());
        let waiting = Waiting { account: account.to_string(), driver, why: why.clone(), since: now };
        accounts.insert(account.to_string(), Some(waiting));
        drop(accounts);
        self.set_gauge(account, true);
        tracing::warn!(
            account,
            driver,
            why = %why,
            "the account needs a person to log in again: run `esim-exporter login --account {account}`, then reload; it is not polled until then",
        );
    }

    /// The account polled fine again.
    pub fn logged_in(&self, account: &str) {
        let mut accounts = self.lock();
        let was_waiting = matches!(accounts.get(account), Some(Some(_)));
        if was_waiting || !accounts.contains_key(account) {
            accounts.insert(account.to_string(), None);
            drop(accounts);
            self.set_gauge(account, false);
            if was_waiting {
                tracing::info!(account, "the account is logged in again");
            }
        }
    }

    /// Accounts waiting for a person, by name.
    pub fn waiting(&self) -> Vec<Waiting> {
        self.lock().values().flatten().cloned().collect()
    }

    /// Whether `account` waits for a person.
    pub fn is_waiting(&self, account: &str) -> bool {
        matches!(self.lock().get(account), Some(Some(_)))
    }

    /// Forgets accounts `keep` says are gone (a reload removed them), with their series.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut accounts = self.lock();
        let gone: Vec<String> = accounts.keys().filter(|a| !keep(a)).cloned().collect();
        for account in &gone {
            accounts.remove(account);
        }
        drop(accounts);
        if let Some(observer) = &self.observer {
            for account in &gone {
                observer.forget(account);
            }
        }
    }
}

impl std::fmt::Debug for LoginBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBoard").field("accounts", &self.accounts).finish_non_exhaustive()
    }
}

/// Unpredictable bits for device ids, PINs and request ids (std's hash keys come from the
/// operating system's random source; a counter and the time make each call differ).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish()
}

/// A random UUID (version 4), the shape of the device ids mobile apps send.
pub fn random_uuid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let hex = format!("{a:016x}{b:016x}");
    let variant = ["8", "9", "a", "b"][(b >> 62) as usize];
    format!("{}-{}-4{}-{variant}{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_differ_and_look_like_uuids() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(a.split('-').map(str::len).eq([8, 4, 4, 4, 12]), "{a}");
    }
}
