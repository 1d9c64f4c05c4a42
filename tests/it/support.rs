//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The repository root (tests run with the package root as the working directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the golden file at `path`; `UPDATE_GOLDEN=1` rewrites the file.
/// Returns a description of the mismatch instead of panicking, so a caller can collect all.
pub fn check_golden(path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!("{}: cannot read golden file ({e}); run with UPDATE_GOLDEN=1 to create it", path.display())
    })?;
    if expected == actual {
        Ok(())
    } else {
        Err(format!("{}:\n--- expected\n{expected}\n+++ actual\n{actual}", path.display()))
    }
}

/// Files in `dir` with extension `ext`, sorted.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}
