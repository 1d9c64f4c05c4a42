//! The file operations every part of the exporter must do the same careful way: writing a file
//! so that a crash at any moment leaves either the old or the new one, and reading a file that
//! a person pointed us at without hanging on a FIFO, swallowing `/dev/zero` or following a
//! planted symlink.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes `path` atomically: the bytes go to a new temporary file in the same directory
/// (created exclusively, never through a symlink, with `mode`), which is fsynced, renamed over
/// `path`, and the directory fsynced so the rename itself survives a power cut. On any error
/// the temporary file is removed and `path` is untouched.
///
/// `write` may be called once per attempt; it gets the file positioned at its start and empty.
pub fn write_atomically(path: &Path, mode: u32, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let tmp = temp_path_beside(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode)
        .open(&tmp)?;
    // The umask may have taken bits away from `mode`; be exact.
    let written = file
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .and_then(|()| write(&mut file))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_directory_of(path)
}

/// `.<name>.tmp-<pid>-<random>` beside `path`: a name nobody can plant in advance.
fn temp_path_beside(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}-{:016x}", std::process::id(), random.finish()))
}

/// fsyncs the directory holding `path`, so a rename into it is durable.
pub fn sync_directory_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Why a file we were told to read was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("is a symbolic link, which is not followed here")]
    Symlink,
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// How [`open_regular`] treats a symlink at the path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Symlinks {
    /// Follow it (config and secret files: Kubernetes mounts them as symlinks).
    Follow,
    /// Refuse it (files the exporter itself writes: a link there was planted).
    Refuse,
}

/// Opens `path` for reading only if it is a regular file of at most `limit` bytes. The open
/// never blocks: a FIFO is refused instead of waiting for a writer forever.
pub fn open_regular(path: &Path, limit: u64, symlinks: Symlinks) -> Result<File, ReadError> {
    let mut flags = libc::O_NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| {
        // O_NOFOLLOW on a symlink fails with ELOOP.
        if e.raw_os_error() == Some(libc::ELOOP) && symlinks == Symlinks::Refuse {
            ReadError::Symlink
        } else {
            ReadError::Io(e)
        }
    })?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        None
    };
    if let Some(what) = not_regular {
        return Err(ReadError::NotRegular(what));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes (see [`open_regular`]); a file that
/// grows past the limit while it is read is refused too.
pub fn read_regular(path: &Path, limit: u64, symlinks: Symlinks) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path, limit, symlinks)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64, symlinks: Symlinks) -> Result<String, ReadError> {
    let bytes = read_regular(path, limit, symlinks)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io(io::Error::new(io::ErrorKind::InvalidData, e.utf8_error())))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("esim-fsutil-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = scratch("write");
        let path = dir.join("state.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, 0o600, |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let failed = write_atomically(&path, 0o600, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new", "a failed write keeps the old file");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")], "no temporary file left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_old_temporary_name_is_not_written_through() {
        let dir = scratch("plant");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("state.json");
        std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();
        write_atomically(&path, 0o600, |f| f.write_all(b"state")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A symlink at the path itself is replaced, not followed.
        std::os::unix::fs::symlink(&victim, dir.join("link.json")).unwrap();
        write_atomically(&dir.join("link.json"), 0o600, |f| f.write_all(b"state")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fifos_devices_directories_big_files_and_refused_links_are_clear_errors() {
        let dir = scratch("read");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = |p: &Path, limit, links| read_regular(p, limit, links).unwrap_err().to_string();
        assert_eq!(err(&fifo, 100, Symlinks::Follow), "is a FIFO, not a regular file");
        assert_eq!(err(Path::new("/dev/zero"), 100, Symlinks::Follow), "is a character device, not a regular file");
        assert_eq!(err(&dir, 100, Symlinks::Follow), "is a directory, not a regular file");
        std::fs::write(dir.join("big"), vec![b'x'; 101]).unwrap();
        assert_eq!(err(&dir.join("big"), 100, Symlinks::Follow), "is larger than the limit of 100 bytes");
        assert_eq!(read_regular(&dir.join("big"), 101, Symlinks::Follow).unwrap().len(), 101);
        std::os::unix::fs::symlink(dir.join("big"), dir.join("link")).unwrap();
        assert_eq!(err(&dir.join("link"), 1000, Symlinks::Refuse), "is a symbolic link, which is not followed here");
        assert_eq!(read_regular(&dir.join("link"), 1000, Symlinks::Follow).unwrap().len(), 101);
        assert!(read_regular(&dir.join("absent"), 1, Symlinks::Follow).unwrap_err().is_not_found());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
