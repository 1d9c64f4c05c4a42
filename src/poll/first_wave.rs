//! The first wave: lines that have never polled (new, or not restored from `--storage.path`)
//! poll right away instead of waiting up to an interval for their phase slot, as fast as
//! their account's limits allow, and then settle into their phase.
//!
//! The account's gate (rate, concurrency) is what paces them; this queue only keeps the number
//! of poll tasks waiting at the gates small. Spawning a task per line at once would hold
//! 100,000 waiting futures for a fleet without storage; instead each account has at most its
//! concurrency limit plus one poll outstanding (one waiting for a token while the others run),
//! and all accounts together at most `limit`. Accounts take turns in a ring, so one account
//! with a slow `rate_limit` and 10,000 SIMs cannot hold back the others.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A line waiting for its first poll: its name and the scheduler's entry id when it was queued
/// (a reload that removed and re-added the line makes the old id stale).
pub type Queued = (Arc<str>, u64);

#[derive(Debug, Default)]
struct WaveAccount {
    queue: VecDeque<Queued>,
    outstanding: usize,
    cap: usize,
    in_ring: bool,
}

impl WaveAccount {
    fn has_room(&self) -> bool {
        !self.queue.is_empty() && self.outstanding < self.cap
    }
}

#[derive(Debug)]
pub struct FirstWave {
    accounts: HashMap<Arc<str>, WaveAccount>,
    /// Accounts with queued lines and room of their own, waiting for room overall.
    ring: VecDeque<Arc<str>>,
    outstanding: usize,
    limit: usize,
}

impl FirstWave {
    pub fn new(limit: usize) -> FirstWave {
        FirstWave { accounts: HashMap::new(), ring: VecDeque::new(), outstanding: 0, limit: limit.max(1) }
    }

    /// Changes the overall bound (a reload changed `global.max_concurrency`).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Lines queued and not yet handed out.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.accounts.values().map(|a| a.queue.len()).sum()
    }

    /// Queues a line of `account`, which may have `cap` first polls outstanding at once.
    pub fn push(&mut self, account: &str, cap: usize, line: Queued) {
        let key = match self.accounts.get_key_value(account) {
            Some((key, _)) => key.clone(),
            None => Arc::from(account),
        };
        let entry = self.accounts.entry(key.clone()).or_default();
        entry.cap = cap.max(1);
        entry.queue.push_back(line);
        if !entry.in_ring && entry.has_room() {
            entry.in_ring = true;
            self.ring.push_back(key);
        }
    }

    /// The next line to poll, if there is room: counted as outstanding until [`FirstWave::done`].
    pub fn next(&mut self) -> Option<(Arc<str>, Queued)> {
        while self.outstanding < self.limit {
            let account = self.ring.pop_front()?;
            let Some(entry) = self.accounts.get_mut(&account) else { continue };
            entry.in_ring = false;
            if !entry.has_room() {
                continue;
            }
            let Some(line) = entry.queue.pop_front() else { continue };
            entry.outstanding += 1;
            self.outstanding += 1;
            if entry.has_room() {
                entry.in_ring = true;
                self.ring.push_back(account.clone());
            }
            return Some((account, line));
        }
        None
    }

    /// A line handed out by [`FirstWave::next`] finished its first poll (or was not polled).
    pub fn done(&mut self, account: &str) {
        let Some(entry) = self.accounts.get_mut(account) else { return };
        if entry.outstanding == 0 {
            return;
        }
        entry.outstanding -= 1;
        self.outstanding = self.outstanding.saturating_sub(1);
        if entry.queue.is_empty() && entry.outstanding == 0 {
            self.accounts.remove(account);
        } else if !entry.in_ring && entry.has_room() {
            entry.in_ring = true;
            self.ring.push_back(account.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str) -> Queued {
        (Arc::from(name), 1)
    }

    fn drain(wave: &mut FirstWave) -> Vec<String> {
        std::iter::from_fn(|| wave.next()).map(|(_, (name, _))| name.to_string()).collect()
    }

    #[test]
    fn each_account_has_at_most_its_cap_outstanding() {
        let mut wave = FirstWave::new(100);
        for i in 0..5 {
            wave.push("a", 2, line(&format!("a{i}")));
        }
        assert_eq!(drain(&mut wave), ["a0", "a1"]);
        wave.done("a");
        assert_eq!(drain(&mut wave), ["a2"]);
        assert_eq!(wave.queued(), 2);
    }

    #[test]
    fn accounts_take_turns_and_the_overall_limit_holds() {
        let mut wave = FirstWave::new(3);
        for i in 0..3 {
            wave.push("slow", 10, line(&format!("s{i}")));
            wave.push("fast", 10, line(&format!("f{i}")));
        }
        assert_eq!(drain(&mut wave), ["s0", "f0", "s1"]);
        wave.done("slow");
        assert_eq!(drain(&mut wave), ["f1"], "the ring goes on where it stopped");
    }

    #[test]
    fn a_slow_account_at_its_cap_does_not_hold_back_the_others() {
        let mut wave = FirstWave::new(10);
        for i in 0..100 {
            wave.push("slow", 1, line(&format!("s{i}")));
        }
        for i in 0..3 {
            wave.push("other", 2, line(&format!("o{i}")));
        }
        assert_eq!(drain(&mut wave), ["s0", "o0", "o1"]);
        wave.done("other");
        assert_eq!(drain(&mut wave), ["o2"]);
    }

    #[test]
    fn done_for_an_unknown_account_or_twice_changes_nothing() {
        let mut wave = FirstWave::new(1);
        wave.push("a", 1, line("a0"));
        wave.push("a", 1, line("a1"));
        assert_eq!(drain(&mut wave), ["a0"]);
        wave.done("nobody");
        assert_eq!(drain(&mut wave), Vec::<String>::new());
        wave.done("a");
        wave.done("a");
        assert_eq!(drain(&mut wave), ["a1"]);
        wave.done("a");
        wave.done("a");
        assert_eq!(wave.outstanding, 0);
        assert!(wave.accounts.is_empty());
    }
}
