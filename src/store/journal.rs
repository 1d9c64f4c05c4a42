//! The storage journal: what makes "no counter a scraper has seen ever goes backwards across
//! `kill -9`" true.
//!
//! The snapshot (`persist.rs`) is written once a minute; a crash between two snapshots used to
//! roll every counter back to the last one, which Prometheus reads as a reset (and shows as a
//! spend spike). So, as Prometheus' own WAL does, every change is logged before it is exposed:
//! each render appends the lines whose state changed since the last append (one complete
//! [`SavedLine`] per text line, the same record the snapshot holds) and fsyncs, and only then
//! is the new exposition published. A start loads the snapshot, then replays the journals.
//!
//! Compaction: a snapshot save first *rotates* the journal (`<path>.journal` becomes
//! `<path>.journal.old`, appends go to a new journal), writes the snapshot, and on success
//! deletes the old journal. A crash at any point leaves files whose replay gives every line its
//! newest state: records are whole line states, and a record is applied only when its
//! `polls_total` (which every poll increments) is not behind the line's current one, so an old
//! record never overwrites a newer snapshot.

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::persist::SavedLine;
use super::Store;

/// Lines serialised under one hold of the store's read lock (as for the snapshot).
const BATCH_LINES: usize = 1024;

pub struct Journal {
    path: PathBuf,
    old: PathBuf,
    state: Mutex<Appender>,
}

#[derive(Default)]
struct Appender {
    file: Option<File>,
    /// The store layout the versions belong to; another layout (a reload) starts over.
    layout: Option<u64>,
    /// Per store position: the line's version last written to the journal.
    versions: Vec<u64>,
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records applied to configured lines.
    pub applied: usize,
    /// Records that were not whole (a crash mid-append) or not records at all.
    pub skipped: usize,
}

impl Journal {
    /// The journal of the storage file at `storage`.
    pub fn beside(storage: &Path) -> Journal {
        let with = |suffix: &str| {
            let mut name = storage.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        Journal { path: with(".journal"), old: with(".journal.old"), state: Mutex::new(Appender::default()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn appender(&self) -> std::sync::MutexGuard<'_, Appender> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the store as it is now as already durable (right after a restore: it came from
    /// these files), so the first append writes only what changes afterwards.
    pub fn mark_current(&self, store: &Store) {
        let mut appender = self.appender();
        let view = store.view();
        appender.layout = Some(view.layout());
        appender.versions = (0..view.len()).map(|p| view.at(p).map_or(u64::MAX, |s| s.version)).collect();
    }

    /// Appends every line that changed since the last call and makes it durable; returns how
    /// many lines were written. Call it after rendering and before publishing the rendering.
    pub fn append_changes(&self, store: &Store) -> std::io::Result<usize> {
        let mut appender = self.appender();
        let mut buffer = Vec::new();
        let mut written = 0;
        let mut at = 0;
        loop {
            buffer.clear();
            let more = {
                let view = store.view();
                if appender.layout != Some(view.layout()) {
                    appender.layout = Some(view.layout());
                    appender.versions = vec![u64::MAX; view.len()];
                }
                let end = view.len().min(at + BATCH_LINES);
                for position in at..end {
                    let Some(state) = view.at(position) else { continue };
                    if appender.versions[position] == state.version {
                        continue;
                    }
                    appender.versions[position] = state.version;
                    serde_json::to_writer(&mut buffer, &SavedLine::from_state(state)).map_err(std::io::Error::other)?;
                    buffer.push(b'\n');
                    written += 1;
                }
                at = end;
                end < view.len()
            };
            if !buffer.is_empty() {
                let file = match &mut appender.file {
                    Some(f) => f,
                    slot => slot.insert(open_for_append(&self.path)?),
                };
                if let Err(e) = file.write_all(&buffer) {
                    // What was written of this batch is not known: write these lines again.
                    appender.layout = None;
                    appender.file = None;
                    return Err(e);
                }
            }
            if !more {
                break;
            }
        }
        if written > 0 {
            if let Some(file) = &appender.file {
                if let Err(e) = file.sync_data() {
                    appender.layout = None;
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    /// Before a snapshot: moves the journal aside so that appends during the snapshot go to a
    /// new one. An old journal left by a failed snapshot gets the current one appended to it.
    pub fn rotate(&self) -> std::io::Result<()> {
        let mut appender = self.appender();
        appender.file = None;
        if !self.path.exists() {
            return Ok(());
        }
        if self.old.exists() {
            let mut old = open_for_append(&self.old)?;
            let mut current = crate::fsutil::open_regular(&self.path, u64::MAX, crate::fsutil::Symlinks::Refuse)
                .map_err(std::io::Error::other)?;
            std::io::copy(&mut current, &mut old)?;
            old.sync_data()?;
            std::fs::remove_file(&self.path)?;
        } else {
            std::fs::rename(&self.path, &self.old)?;
        }
        crate::fsutil::sync_directory_of(&self.path)
    }

    /// After a snapshot was written: what the old journal held is in it.
    pub fn snapshot_written(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => crate::fsutil::sync_directory_of(&self.old),
        }
    }

    /// Replays the old journal, then the current one, onto the store (after the snapshot was
    /// restored). Unreadable records are skipped and counted, never fatal: the journal's last
    /// record may be torn by the crash that the journal exists for.
    pub fn replay(&self, store: &Store) -> std::io::Result<Replayed> {
        let mut replayed = Replayed::default();
        for path in [&self.old, &self.path] {
            let file = match crate::fsutil::open_regular(path, u64::MAX, crate::fsutil::Symlinks::Refuse) {
                Ok(f) => f,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(std::io::Error::other(format!("{}: {e}", path.display()))),
            };
            replay_file(file, store, &mut replayed)?;
        }
        Ok(replayed)
    }
}

fn replay_file(file: File, store: &Store, replayed: &mut Replayed) -> std::io::Result<()> {
    let mut batch = Vec::with_capacity(BATCH_LINES);
    let mut lines = std::io::BufReader::with_capacity(256 * 1024, file).split(b'\n');
    loop {
        let record = lines.next().transpose()?;
        match record.as_deref().map(serde_json::from_slice::<SavedLine>) {
            Some(Ok(line)) => batch.push(line),
            Some(Err(_)) => replayed.skipped += 1,
            None => {}
        }
        if batch.len() == BATCH_LINES || (record.is_none() && !batch.is_empty()) {
            let items = batch.drain(..).map(|l| (l.name.clone(), l));
            replayed.applied += store.update_each(items, |saved, state| {
                if saved.polls_total >= state.polls_total {
                    saved.restore_into(state);
                }
            });
        }
        if record.is_none() {
            return Ok(());
        }
    }
}

/// Opens (creating, 0600, never through a symlink) `path` for appending, and ends a torn last
/// record with a newline so the next record starts a line of its own.
fn open_for_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::persist::tests::{record, rub, scratch_dir, store_with};
    use crate::store::persist::{restore, save};

    fn polls(store: &Store, line: &str) -> u64 {
        store.get(line).unwrap().polls_total
    }

    #[test]
    fn changes_appended_since_the_snapshot_replay_onto_it() {
        let dir = scratch_dir("journal-replay");
        let path = dir.join("state.json");
        let before = store_with(&["a", "b"]);
        let journal = Journal::beside(&path);
        record(&before, "a", 0, Ok(rub(100.0)));
        save(&before, &path).unwrap();
        journal.mark_current(&before);
        assert_eq!(journal.append_changes(&before).unwrap(), 0, "nothing changed since the snapshot");
        record(&before, "a", 60, Ok(rub(90.0)));
        record(&before, "b", 60, Ok(rub(5.0)));
        assert_eq!(journal.append_changes(&before).unwrap(), 2);
        record(&before, "a", 120, Ok(rub(70.0)));
        assert_eq!(journal.append_changes(&before).unwrap(), 1, "only the changed line");
        // kill -9 here: the snapshot is old, the journal has the rest.
        let after = store_with(&["a", "b"]);
        restore(&after, &path).unwrap();
        assert_eq!(polls(&after, "a"), 1);
        let replayed = Journal::beside(&path).replay(&after).unwrap();
        assert_eq!(replayed, Replayed { applied: 3, skipped: 0 });
        assert_eq!((polls(&after, "a"), polls(&after, "b")), (3, 1));
        assert_eq!(after.get("a").unwrap().money, before.get("a").unwrap().money);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_the_next_append_starts_a_new_line() {
        let dir = scratch_dir("journal-torn");
        let path = dir.join("state.json");
        let store = store_with(&["a"]);
        let journal = Journal::beside(&path);
        record(&store, "a", 0, Ok(rub(100.0)));
        journal.append_changes(&store).unwrap();
        // The crash tore the next record.
        let mut torn = std::fs::OpenOptions::new().append(true).open(journal.path()).unwrap();
        torn.write_all(br#"{"name":"a","polls_to"#).unwrap();
        drop(torn);
        let restarted = Journal::beside(&path);
        record(&store, "a", 60, Ok(rub(90.0)));
        restarted.append_changes(&store).unwrap();
        let after = store_with(&["a"]);
        assert_eq!(restarted.replay(&after).unwrap(), Replayed { applied: 2, skipped: 1 });
        assert_eq!(polls(&after, "a"), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_old_journal_never_rolls_back_a_newer_snapshot_and_a_failed_snapshot_keeps_both() {
        let dir = scratch_dir("journal-rotate");
        let path = dir.join("state.json");
        let store = store_with(&["a"]);
        let journal = Journal::beside(&path);
        record(&store, "a", 0, Ok(rub(100.0)));
        journal.append_changes(&store).unwrap();
        // A snapshot that failed after the rotation: the old journal stays.
        journal.rotate().unwrap();
        record(&store, "a", 60, Ok(rub(90.0)));
        journal.append_changes(&store).unwrap();
        // The next save rotates onto the old journal, and this snapshot succeeds, but the
        // crash comes before the old journal is removed.
        journal.rotate().unwrap();
        assert!(!journal.path().exists());
        record(&store, "a", 120, Ok(rub(80.0)));
        save(&store, &path).unwrap();
        let after = store_with(&["a"]);
        restore(&after, &path).unwrap();
        let replayed = journal.replay(&after).unwrap();
        assert_eq!((replayed.applied, replayed.skipped), (2, 0));
        assert_eq!(polls(&after, "a"), 3, "the snapshot is newer than every old record");
        journal.snapshot_written().unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the snapshot is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_that_changes_the_lines_writes_them_again() {
        let dir = scratch_dir("journal-layout");
        let store = store_with(&["a"]);
        let journal = Journal::beside(&dir.join("s.json"));
        record(&store, "a", 0, Ok(rub(1.0)));
        assert_eq!(journal.append_changes(&store).unwrap(), 1);
        let lines = crate::config::parse(
            "t.yaml",
            "lines:\n  - {name: a, driver: demo}\n  - {name: b, driver: demo}\n",
            crate::drivers::REGISTRY,
        )
        .unwrap()
        .lines;
        store.apply_plan(&lines);
        assert_eq!(journal.append_changes(&store).unwrap(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
