//! The one way this crate replaces a file (the `--storage.path` readings, login token files):
//! a temporary file in the same directory, created with its final mode, filled, synced, renamed
//! over the old file, then the directory synced, so that a crash leaves the old content or the
//! new, never half of either, and the rename itself survives a power cut.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with what `fill` writes, the file having `mode` (e.g. `0o600`) from its
/// creation on: no moment exists in which another user could open it.
pub fn replace(path: &Path, mode: u32, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let dir = directory_of(path);
    let tmp = temporary_beside(path)?;
    let result = (|| {
        // A leftover of a crashed run of this process id would make `create_new` fail.
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have taken bits away from `mode`; be exact.
        file.set_permissions(Permissions::from_mode(mode))?;
        fill(&mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename is an entry of the directory: only syncing the directory makes it last.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `.<name>.<pid>.tmp` in the same directory (a rename never crosses file systems). Always
/// another name than `path`'s own, even when that ends in `.tmp`: it is longer.
fn temporary_beside(path: &Path) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} names no file", path.display())))?;
    Ok(directory_of(path).join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id())))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("esim-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replaces_the_file_with_its_mode_and_leaves_no_temporary() {
        let dir = scratch("mode");
        let path = dir.join("state.json");
        std::fs::write(&path, "old").unwrap();
        replace(&path, 0o600, |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"], "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_ending_in_tmp_is_not_written_onto_itself() {
        let dir = scratch("tmp");
        let path = dir.join("readings.tmp");
        assert_ne!(temporary_beside(&path).unwrap(), path);
        replace(&path, 0o600, |f| f.write_all(b"saved")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "saved");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let dir = scratch("fail");
        let path = dir.join("token.json");
        std::fs::write(&path, "old").unwrap();
        let err = replace(&path, 0o600, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
