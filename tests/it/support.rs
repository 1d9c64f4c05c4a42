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

/// Whether `secret` stands in `text` on its own, not inside a longer number or word. The
/// MegaFon device PIN is 4 random digits and the SMS codes 6: a debug log full of timestamps
/// and durations holds them by chance (a CI run failed on `2026-12-04T01:59:12.977092Z TRACE`
/// with the PIN 7092), while a leaked code stands alone (`pin=7092`, `"7092"`).
pub fn shows_alone(text: &str, secret: &str) -> bool {
    let part_of_a_number = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
    text.match_indices(secret).any(|(i, _)| {
        !part_of_a_number(text[..i].chars().next_back()) && !part_of_a_number(text[i + secret.len()..].chars().next())
    })
}

#[test]
fn a_secret_is_found_alone_but_not_inside_a_timestamp() {
    assert!(shows_alone("login pin=7092 ok", "7092"));
    assert!(shows_alone(r#"{"pin":"7092"}"#, "7092"));
    assert!(!shows_alone("sent_at=2026-12-04T01:59:12.970920Z duration_seconds=0.170921", "7092"));
    assert!(!shows_alone("127.0.0.1:37092", "7092"));
    assert!(!shows_alone("2026-12-04T01:59:12.977092Z TRACE hyper_util::client::legacy::pool: take?", "7092"));
    assert!("2026-12-04T01:59:12.977092Z".contains("7092"), "what the test looked for before");
}
