//! Config findings: where (file, line, column, key path), what, and what would be valid.

use std::fmt;

/// A 1-based line and column in the config file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One config error or warning; `Display` is the one-line message users see.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub pos: Option<Pos>,
    /// The key path, e.g. `lines[3] (gate-01).alert.data_below`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, pos: Option<Pos>, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            pos,
            path: path.to_string(),
            message: message.into(),
        }
    }

    pub fn warning(file: &str, pos: Option<Pos>, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, pos, path, message) }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(pos) = self.pos {
            write!(f, ":{pos}")?;
        }
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {severity}: ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Sorts by position (file-level findings first), errors before warnings at one place.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.pos, d.severity));
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Suffix for messages: `` (did you mean `x`?)`` or nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default()
}

/// Optimal-string-alignment distance (`strsim`, which clap already builds): like Levenshtein,
/// with a swap of neighbours (`dmeo`) costing one edit, the commonest typo.
fn edit_distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(did_you_mean("pasword", ["password", "login"]), Some("password"));
        assert_eq!(did_you_mean("poll_intervall", ["poll_interval", "timeout"]), Some("poll_interval"));
        assert_eq!(did_you_mean("colour", ["password", "login"]), None);
        assert_eq!(did_you_mean("dmeo", ["demo", "mts"]), Some("demo"));
    }

    #[test]
    fn formats_file_position_path_and_message() {
        let d = Diagnostic::error("esim.yaml", Some(Pos { line: 3, column: 5 }), "lines[0] (a).msisdn", "bad");
        assert_eq!(d.to_string(), "esim.yaml:3:5: error: lines[0] (a).msisdn: bad");
    }
}
