//! The person-made login that megafon and t2 share: the [`Latch`] that keeps a dead login off
//! the network until `esim-exporter login` writes a new token file, and [`Latch::pass`], the
//! check each poll makes first.

use super::token_file::TokenFile;
use crate::drivers::contract::PollContext;
use crate::error::PollError;
use std::sync::Mutex;

/// A driver's memory that its account waits for a person: once closed, polls get the same
/// error without a request, until the token file changes (a new `esim-exporter login`) or a
/// reload builds the account with another token. This is what keeps a dead login from being
/// retried: the scheduler's lock-out spaces the polls, the latch keeps them off the network.
#[derive(Debug, Default)]
pub struct Latch {
    closed: Mutex<Option<Closed>>,
}

#[derive(Debug)]
struct Closed {
    error: PollError,
    /// A hash of the token file when the latch closed (`None`: no file), never its contents.
    file: Option<u64>,
}

/// What [`Latch::gate`] says about a poll.
#[derive(Debug, PartialEq)]
pub enum Gate {
    /// Not waiting for anyone: go on.
    Open,
    /// Was waiting, and the token file changed since: read it again, then go on.
    Reopened,
    /// Still waiting: answer this, send nothing.
    Closed(PollError),
}

impl Latch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Closed>> {
        self.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the latch with the error every poll gets until a person acts.
    pub fn close(&self, error: PollError, file: Option<&TokenFile>) {
        *self.lock() = Some(Closed { error, file: file.and_then(file_hash) });
    }

    pub fn gate(&self, file: Option<&TokenFile>) -> Gate {
        let mut closed = self.lock();
        let Some(c) = &*closed else { return Gate::Open };
        let now = file.and_then(file_hash);
        if now.is_some() && now != c.file {
            *closed = None;
            return Gate::Reopened;
        }
        Gate::Closed(c.error.clone())
    }

    pub fn is_closed(&self) -> bool {
        self.lock().is_some()
    }
}

fn file_hash(file: &TokenFile) -> Option<u64> {
    use std::hash::{BuildHasher, Hasher};
    let bytes = std::fs::read(file.path()).ok()?;
    // One hasher per process, so the hash says nothing outside it.
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write(&bytes);
    Some(h.finish())
}

impl Latch {
    /// The first step of every poll of a person-login driver: `Err` (the error a person must
    /// clear) while waiting, without a request; `Ok(true)` when the token file changed since
    /// (the driver reads the new login from it before going on); `Ok(false)` otherwise.
    pub fn pass(&self, file: Option<&TokenFile>, cx: &PollContext) -> Result<bool, PollError> {
        match self.gate(file) {
            Gate::Open => Ok(false),
            Gate::Closed(error) => {
                cx.note("waiting for `esim-exporter login`: nothing sent");
                Err(error)
            }
            Gate::Reopened => {
                cx.note("the token file changed: using the new login");
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latch_stays_closed_until_the_token_file_changes() {
        let dir = std::env::temp_dir().join(format!("esim-latch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = TokenFile::new(dir.join("t.json"));
        std::fs::write(file.path(), "{\"token\":\"dead\"}").unwrap();
        let latch = Latch::default();
        assert_eq!(latch.gate(Some(&file)), Gate::Open);
        let error = PollError::Auth("needs a person".into());
        latch.close(error.clone(), Some(&file));
        assert_eq!(latch.gate(Some(&file)), Gate::Closed(error.clone()));
        assert_eq!(latch.gate(None), Gate::Closed(error.clone()), "no file: nothing new");
        std::fs::write(file.path(), "{\"token\":\"new\"}").unwrap();
        assert_eq!(latch.gate(Some(&file)), Gate::Reopened);
        assert_eq!(latch.gate(Some(&file)), Gate::Open);
        // Closed while no file existed: the first file written reopens it.
        std::fs::remove_file(file.path()).unwrap();
        latch.close(error.clone(), Some(&file));
        assert_eq!(latch.gate(Some(&file)), Gate::Closed(error));
        std::fs::write(file.path(), "{}").unwrap();
        assert_eq!(latch.gate(Some(&file)), Gate::Reopened);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
