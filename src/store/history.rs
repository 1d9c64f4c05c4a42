//! The last [`HISTORY_LEN`] polls of one line, in memory only (not saved by `--storage.path`,
//! not in `/metrics`): what the status page's per-line sparkline and `/api/v1/line` show.
//!
//! Kept small because a fleet has 100,000 of them: one fixed ring per line, allocated at its
//! first poll, column by column (no padding): a poll is 13 bytes — time (`u32` Unix seconds,
//! good until 2106), balance and data remaining (`f32`, about 7 significant digits, NaN when
//! the operator did not say) and the outcome (`u8`: 0 success, else 1 + the reason's index).
//! 32 polls are 418 bytes (420 with alignment; `size_of` is pinned by a test), plus the
//! 8-byte pointer in `LineState`: with the allocator's header, about 440 bytes a line,
//! 44 MB at 100,000 lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Reason;

/// Polls kept per line.
pub const HISTORY_LEN: usize = 32;

/// A ring of the last [`HISTORY_LEN`] polls, oldest overwritten first.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    at: [u32; HISTORY_LEN],
    balance: [f32; HISTORY_LEN],
    data: [f32; HISTORY_LEN],
    outcome: [u8; HISTORY_LEN],
    /// Where the next poll goes.
    next: u8,
    len: u8,
}

/// One poll of the history, as readers see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Poll {
    /// When the poll finished, to the second.
    pub at: SystemTime,
    /// `None` when the poll succeeded, else why it failed.
    pub failure: Option<Reason>,
    pub balance: Option<f32>,
    pub data_remaining_bytes: Option<f32>,
}

impl Default for History {
    fn default() -> Self {
        History {
            at: [0; HISTORY_LEN],
            balance: [f32::NAN; HISTORY_LEN],
            data: [f32::NAN; HISTORY_LEN],
            outcome: [0; HISTORY_LEN],
            next: 0,
            len: 0,
        }
    }
}

impl History {
    /// Adds a poll: a success with what it read (absent values stay absent), or a failure.
    pub fn push(&mut self, at: SystemTime, result: Result<(Option<f64>, Option<u64>), Reason>) {
        let i = usize::from(self.next);
        self.at[i] = at.duration_since(UNIX_EPOCH).map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let (balance, data, outcome) = match result {
            // Clamped first (`as` would round past f32::MAX to infinity): a finite reading stays
            // finite. u64 → f32 is always finite.
            Ok((balance, data)) => {
                let balance = balance.map_or(f32::NAN, |b| b.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32);
                (balance, data.map_or(f32::NAN, |d| d as f32), 0)
            }
            Err(reason) => (f32::NAN, f32::NAN, 1 + reason.index() as u8),
        };
        self.balance[i] = balance;
        self.data[i] = data;
        self.outcome[i] = outcome;
        self.next = ((i + 1) % HISTORY_LEN) as u8;
        self.len = (usize::from(self.len) + 1).min(HISTORY_LEN) as u8;
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The polls, oldest first.
    pub fn polls(&self) -> impl Iterator<Item = Poll> + '_ {
        let len = self.len();
        let start = (usize::from(self.next) + HISTORY_LEN - len) % HISTORY_LEN;
        (0..len).map(move |k| {
            let i = (start + k) % HISTORY_LEN;
            let value = |v: f32| (!v.is_nan()).then_some(v);
            Poll {
                at: UNIX_EPOCH + Duration::from_secs(u64::from(self.at[i])),
                failure: self.outcome[i].checked_sub(1).and_then(|r| Reason::ALL.get(usize::from(r)).copied()),
                balance: value(self.balance[i]),
                data_remaining_bytes: value(self.data[i]),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_the_last_polls_oldest_first_and_overwrites_the_oldest() {
        let mut h = History::default();
        assert!(h.is_empty() && h.polls().next().is_none());
        h.push(t(10), Ok((Some(100.5), Some(1 << 30))));
        h.push(t(20), Err(Reason::Timeout));
        h.push(t(30), Ok((None, Some(5))));
        let polls: Vec<Poll> = h.polls().collect();
        assert_eq!(polls.len(), 3);
        assert_eq!(
            polls[0],
            Poll { at: t(10), failure: None, balance: Some(100.5), data_remaining_bytes: Some(1073741824.0) }
        );
        assert_eq!(
            polls[1],
            Poll { at: t(20), failure: Some(Reason::Timeout), balance: None, data_remaining_bytes: None }
        );
        assert_eq!((polls[2].balance, polls[2].failure), (None, None), "absent stays absent");

        for k in 0..(HISTORY_LEN as u64 + 5) {
            h.push(t(100 + k), Ok((Some(k as f64), None)));
        }
        assert_eq!(h.len(), HISTORY_LEN);
        let polls: Vec<Poll> = h.polls().collect();
        assert_eq!(polls.first().unwrap().at, t(105), "the oldest five went");
        assert_eq!(polls.last().unwrap().at, t(100 + HISTORY_LEN as u64 + 4));
        assert!(polls.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    }

    #[test]
    fn every_reason_round_trips_and_odd_values_stay_sane() {
        let mut h = History::default();
        for reason in Reason::ALL {
            h.push(t(1), Err(reason));
        }
        let back: Vec<Reason> = h.polls().filter_map(|p| p.failure).collect();
        assert_eq!(back, Reason::ALL.to_vec());
        h.push(UNIX_EPOCH - Duration::from_secs(5), Ok((Some(f64::MAX), Some(u64::MAX))));
        h.push(t(u64::MAX / 2), Ok((Some(-3.25), None)));
        let polls: Vec<Poll> = h.polls().collect();
        let before_epoch = polls[polls.len() - 2];
        assert_eq!(before_epoch.at, UNIX_EPOCH);
        assert_eq!(before_epoch.balance, Some(f32::MAX), "saturates, never NaN or infinite");
        assert!(before_epoch.data_remaining_bytes.is_some_and(f32::is_finite));
        assert_eq!(polls.last().unwrap().at, t(u64::from(u32::MAX)), "clamped to what u32 holds");
        assert_eq!(polls.last().unwrap().balance, Some(-3.25));
    }

    #[test]
    fn a_line_history_is_small() {
        // 13 bytes a poll, no padding between columns: documented in docs/STATUS_PAGE.md.
        assert_eq!(std::mem::size_of::<History>(), 420);
        assert_eq!(std::mem::size_of::<Option<Box<History>>>(), 8);
    }
}
