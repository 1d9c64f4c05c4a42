//! [`Fields`]: typed reading of one YAML mapping, for `resolve` and for drivers' own options.
//! Every getter takes a key once, converts its value, and on a problem records a diagnostic
//! naming file, position, key path and the valid form; `finish` reports keys nobody took.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostics::{hint, Diagnostic};
use super::raw::{Key, Node, Pos, Value};
use super::secret::{self, Secret};
use super::units::{parse_duration, ByteSize, Rate};

/// Where diagnostics of one load go, plus what the load learned on the way.
#[derive(Debug)]
pub struct Sink {
    pub file: String,
    /// The config file's directory: relative `*_file` paths resolve against it.
    pub base_dir: PathBuf,
    pub diagnostics: RefCell<Vec<Diagnostic>>,
    /// Whether any secret came into the config (for the file-permission warning).
    pub holds_secrets: RefCell<bool>,
    /// Environment lookup, injectable for tests.
    pub env: fn(&str) -> Option<String>,
}

impl Sink {
    pub fn new(file: &str) -> Sink {
        let base_dir = Path::new(file).parent().map(Path::to_path_buf).unwrap_or_default();
        Sink {
            file: file.to_string(),
            base_dir,
            diagnostics: RefCell::new(Vec::new()),
            holds_secrets: RefCell::new(false),
            env: |name| std::env::var(name).ok(),
        }
    }

    pub fn error(&self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.diagnostics.borrow_mut().push(Diagnostic::error(&self.file, pos, path, message));
    }

    pub fn warning(&self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.diagnostics.borrow_mut().push(Diagnostic::warning(&self.file, pos, path, message));
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.borrow().iter().filter(|d| d.is_error()).count()
    }
}

/// The keys of one mapping, taken one by one.
pub struct Fields<'a> {
    sink: &'a Sink,
    path: String,
    pos: Pos,
    entries: Vec<(&'a Key, &'a Node, bool)>,
    asked: Vec<&'static str>,
    /// Every secret read through these fields (see [`Fields::credentials`], [`Fields::redactor`]).
    secrets: std::cell::RefCell<Vec<Secret>>,
}

impl<'a> Fields<'a> {
    /// Opens a mapping; anything else is reported and read as empty.
    pub fn new(sink: &'a Sink, path: impl Into<String>, node: &'a Node) -> Fields<'a> {
        let path = path.into();
        let mut entries = Vec::new();
        match &node.value {
            Value::Map(map) => {
                for (key, value) in map {
                    if entries.iter().any(|(k, _, _): &(&Key, &Node, bool)| k.name == key.name) {
                        sink.error(Some(key.pos), &join(&path, &key.name), "duplicate key");
                        continue;
                    }
                    entries.push((key, value, false));
                }
            }
            Value::Null => {}
            other => sink.error(Some(node.pos), &path, format!("expected a mapping of keys, found {}", other.kind())),
        }
        Fields { sink, path, pos: node.pos, entries, asked: Vec::new(), secrets: Default::default() }
    }

    pub fn sink(&self) -> &'a Sink {
        self.sink
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The key path of `key` inside this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether `key` is present (without taking it).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _, _)| k.name == key)
    }

    /// Takes the raw node of `key`; `null` counts as absent.
    pub fn node(&mut self, key: &'static str) -> Option<&'a Node> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        let entry = self.entries.iter_mut().find(|(k, _, _)| k.name == key)?;
        entry.2 = true;
        (entry.1.value != Value::Null).then_some(entry.1)
    }

    /// Reports a problem with the value of `key`.
    pub fn error(&self, key: &str, pos: Pos, message: impl Into<String>) {
        self.sink.error(Some(pos), &self.path_of(key), message);
    }

    pub fn warning(&self, key: &str, pos: Pos, message: impl Into<String>) {
        self.sink.warning(Some(pos), &self.path_of(key), message);
    }

    /// A string (numbers are taken as their text, since YAML reads `79261234567` as one),
    /// with `${ENV}` expanded.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        let node = self.node(key)?;
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => {
                self.error(key, node.pos, format!("expected a string, found {}", other.kind()));
                return None;
            }
        };
        // Most strings (every name, MSISDN, ICCID of a fleet) have nothing to expand: keep them
        // rather than copy them once more.
        if !text.contains('$') {
            return Some(text);
        }
        match secret::expand_env(&text, self.sink.env) {
            Ok(expanded) => Some(expanded),
            Err(e) => {
                self.error(key, node.pos, e);
                None
            }
        }
    }

    /// An identifier an operator gives as a number (`endpoint_id: 11379224`,
    /// `orgid: "1234"`): an integer or a string of digits (after `${ENV}`), as its digits.
    /// `what` names it in the error.
    pub fn numeric_id(&mut self, key: &'static str, what: &str) -> Option<String> {
        let node = self.node(key)?;
        let expected = format!("expected {what} (a whole number)");
        if !matches!(node.value, Value::Int(_) | Value::Str(_)) {
            self.error(key, node.pos, expected);
            return None;
        }
        let text = self.string(key).map(|s| s.trim().to_string())?;
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        match text.parse::<u64>() {
            Ok(n) if digits && n > 0 => Some(text),
            // Only digits, yet no u64: too many of them.
            Err(_) if digits => {
                self.error(key, node.pos, format!("{expected}; {} digits is too large", text.len()));
                None
            }
            _ => {
                self.error(key, node.pos, expected);
                None
            }
        }
    }

    /// A required string.
    pub fn required_string(&mut self, key: &'static str) -> Option<String> {
        let value = self.string(key);
        if value.is_none() && !self.has(key) {
            self.sink.error(Some(self.pos), &self.path, format!("missing required key `{key}`"));
        }
        value
    }

    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        let node = self.node(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            ref other => {
                self.error(key, node.pos, format!("expected true or false, found {}", other.kind()));
                None
            }
        }
    }

    pub fn f64(&mut self, key: &'static str) -> Option<f64> {
        let node = self.node(key)?;
        match node.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) if f.is_finite() => Some(f),
            ref other => {
                self.error(key, node.pos, format!("expected a number, found {}", describe(other)));
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub fn u64_in(&mut self, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let node = self.node(key)?;
        match node.value {
            Value::Int(i) if i >= 0 && (i as u64) >= min && (i as u64) <= max => Some(i as u64),
            Value::Int(i) => {
                self.error(key, node.pos, format!("{i} is out of range (expected {min} to {max})"));
                None
            }
            // A whole number past i64 arrives as a float.
            Value::Float(f) if f.fract() == 0.0 && f.abs() > i64::MAX as f64 => {
                self.error(key, node.pos, format!("number is too large (expected {min} to {max})"));
                None
            }
            ref other => {
                self.error(key, node.pos, format!("expected a whole number, found {}", describe(other)));
                None
            }
        }
    }

    /// A size such as `500MB` or `1.5GiB` (a bare number is bytes).
    pub fn size(&mut self, key: &'static str) -> Option<ByteSize> {
        let node = self.node(key)?;
        let parsed = match &node.value {
            Value::Int(i) if *i >= 0 => Ok(ByteSize(*i as u64)),
            Value::Str(s) => ByteSize::parse(s),
            other => Err(format!("expected a size such as 500MB or 1.5GiB, found {}", describe(other))),
        };
        self.report(key, node.pos, parsed)
    }

    /// A positive duration such as `30s` or `15m`.
    pub fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let node = self.node(key)?;
        let parsed = match &node.value {
            Value::Str(s) => parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err(format!("`{s}` must be longer than zero"))
                } else {
                    Ok(d)
                }
            }),
            other => Err(format!("expected a duration such as 30s, 15m or 1h, found {}", describe(other))),
        };
        self.report(key, node.pos, parsed)
    }

    /// A rate such as `1/s` or `60/m`.
    pub fn rate(&mut self, key: &'static str) -> Option<Rate> {
        let node = self.node(key)?;
        let parsed = match &node.value {
            Value::Str(s) => Rate::parse(s),
            other => Err(format!("expected a rate such as 3/s or 60/m, found {}", describe(other))),
        };
        self.report(key, node.pos, parsed)
    }

    /// A secret, from `key` (`${ENV}` or, with a warning, literal) or from `key_file`. Giving
    /// both is an error. `key_file` is a `&'static str` so that unknown-key hints know it.
    pub fn secret(&mut self, key: &'static str, key_file: &'static str) -> Option<Secret> {
        let secret = self.read_secret(key, key_file)?;
        self.secrets.borrow_mut().push(secret.clone());
        Some(secret)
    }

    /// The top-level string values (logins, client ids, URLs).
    fn scalars(&self) -> impl Iterator<Item = (&str, String)> {
        self.entries.iter().filter_map(|(key, node, _)| {
            let scalar = match &node.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((key.name.as_str(), scalar))
        })
    }

    /// Recognises the secrets read so far in an operator's text, also as the Basic
    /// credentials of any top-level value (the login or client id) with them.
    pub fn redactor(&self) -> crate::redact::Redactor {
        let secrets = self.secrets.borrow();
        let users: Vec<String> = self.scalars().map(|(_, v)| v).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        crate::redact::Redactor::new(secrets.iter().map(Secret::expose), &users)
    }

    /// What makes these fields' credentials: every top-level scalar (logins, client ids, base
    /// URLs) and every secret read so far, as one digest that means something only within this
    /// process. Two loads of an account with the same credentials give the same digest, so a
    /// reload can tell "the password was fixed" from "the same password again".
    pub fn credentials(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for secret in self.secrets.borrow().iter() {
            secret.expose().hash(&mut h);
        }
        for scalar in self.scalars() {
            scalar.hash(&mut h);
        }
        h.finish()
    }

    fn read_secret(&mut self, key: &'static str, key_file: &'static str) -> Option<Secret> {
        let inline_node = self.node(key);
        let file_node = self.node(key_file);
        match (inline_node, file_node) {
            (Some(a), Some(_)) => {
                self.error(key, a.pos, format!("give either `{key}` or `{key_file}`, not both"));
                None
            }
            (Some(node), None) => {
                let Value::Str(raw) = &node.value else {
                    self.error(key, node.pos, format!("expected a string, found {}", node.value.kind()));
                    return None;
                };
                if !secret::is_reference(raw) {
                    self.warning(
                        key,
                        node.pos,
                        format!("literal secret in the config file; use `{key}: ${{ENV_VAR}}` or `{key_file}:`"),
                    );
                }
                *self.sink.holds_secrets.borrow_mut() = true;
                match secret::expand_env(raw, self.sink.env) {
                    Ok(value) if value.is_empty() => {
                        self.error(key, node.pos, "secret is empty");
                        None
                    }
                    Ok(value) => Some(Secret::new(value)),
                    Err(e) => {
                        self.error(key, node.pos, e);
                        None
                    }
                }
            }
            (None, Some(node)) => {
                let Value::Str(path) = &node.value else {
                    self.error(key_file, node.pos, format!("expected a file path, found {}", node.value.kind()));
                    return None;
                };
                let path = self.sink.base_dir.join(path);
                let result = secret::read_secret_file(&path);
                if result.is_ok() {
                    let mut warnings = Vec::new();
                    secret::warn_if_readable_by_others(&path, "secret file", &mut warnings);
                    for w in warnings {
                        self.warning(key_file, node.pos, w.message);
                    }
                }
                self.report(key_file, node.pos, result)
            }
            (None, None) => None,
        }
    }

    /// A nested mapping.
    pub fn map(&mut self, key: &'static str) -> Option<Fields<'a>> {
        let node = self.node(key)?;
        Some(Fields::new(self.sink, self.path_of(key), node))
    }

    /// A plain `name: value` mapping of strings (labels).
    pub fn string_map(&mut self, key: &'static str) -> Vec<(Pos, String, Pos, String)> {
        let Some(node) = self.node(key) else {
            return Vec::new();
        };
        let path = self.path_of(key);
        let Value::Map(entries) = &node.value else {
            self.error(key, node.pos, format!("expected a mapping of names to values, found {}", node.value.kind()));
            return Vec::new();
        };
        let mut out: Vec<(Pos, String, Pos, String)> = Vec::new();
        for (k, v) in entries {
            let text = match &v.value {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    self.sink.error(
                        Some(v.pos),
                        &join(&path, &k.name),
                        format!("expected a string, found {}", other.kind()),
                    );
                    continue;
                }
            };
            if out.iter().any(|(_, name, _, _)| *name == k.name) {
                self.sink.error(Some(k.pos), &join(&path, &k.name), "duplicate key");
                continue;
            }
            out.push((k.pos, k.name.clone(), v.pos, text));
        }
        out
    }

    /// Reports every key nobody took, with the closest known key as a hint.
    pub fn finish(&self, what: &str) {
        for (key, _, taken) in &self.entries {
            if !taken {
                let hint = hint(&key.name, self.asked.iter().copied());
                self.sink.error(
                    Some(key.pos),
                    &self.path_of(&key.name),
                    format!("unknown key `{}` {what}{hint}", key.name),
                );
            }
        }
    }

    fn report<T>(&self, key: &str, pos: Pos, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, pos, e);
                None
            }
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Str(s) => format!("`{s}`"),
        other => other.kind().to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::parse_tree;

    fn sink() -> Sink {
        let mut sink = Sink::new("/nonexistent/t.yaml");
        sink.env = |name| (name == "PW").then(|| "from-env".to_string());
        sink
    }

    fn secret_of(sink: &Sink, yaml: &str) -> Option<Secret> {
        let tree = parse_tree("t.yaml", yaml).expect("yaml");
        let mut f = Fields::new(sink, "acct", &tree);
        let secret = f.secret("password", "password_file");
        f.finish("here");
        secret
    }

    fn messages(sink: &Sink) -> Vec<String> {
        sink.diagnostics.borrow().iter().map(|d| d.to_string()).collect()
    }

    fn numeric_id_of(yaml: &str) -> (Option<String>, Vec<String>) {
        let sink = sink();
        let tree = parse_tree("t.yaml", yaml).expect("yaml");
        let mut f = Fields::new(&sink, "acct", &tree);
        let id = f.numeric_id("orgid", "the organisation's id");
        drop(f);
        let messages = messages(&sink);
        (id, messages)
    }

    #[test]
    fn numeric_ids_are_whole_numbers_as_text_and_anything_else_is_named() {
        assert_eq!(numeric_id_of("orgid: 1234\n"), (Some("1234".into()), vec![]));
        assert_eq!(numeric_id_of("orgid: \" 0042 \"\n"), (Some("0042".into()), vec![]));
        for bad in ["orgid: 0\n", "orgid: -5\n", "orgid: 1.5\n", "orgid: abc\n", "orgid: \"\"\n", "orgid: [1]\n"] {
            let (id, messages) = numeric_id_of(bad);
            assert_eq!(id, None, "{bad}");
            assert!(
                messages.len() == 1
                    && messages[0].contains("acct.orgid: expected the organisation's id (a whole number)"),
                "{bad}: {messages:?}"
            );
        }
        let (id, messages) = numeric_id_of("orgid: \"123456789012345678901234\"\n");
        assert_eq!(id, None);
        assert!(messages[0].contains("24 digits is too large"), "{messages:?}");
    }

    #[test]
    fn secret_from_env_reference_is_quiet() {
        let sink = sink();
        assert_eq!(secret_of(&sink, "password: ${PW}\n").map(|s| s.expose().to_string()), Some("from-env".into()));
        assert!(messages(&sink).is_empty());
        assert!(*sink.holds_secrets.borrow());
    }

    #[test]
    fn literal_secret_is_a_warning_that_never_shows_the_value() {
        let sink = sink();
        assert!(secret_of(&sink, "password: hunter2\n").is_some());
        let msgs = messages(&sink);
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains("warning: acct.password: literal secret"), "{msgs:?}");
        assert!(!msgs[0].contains("hunter2"));
    }

    #[test]
    fn secret_file_is_read_relative_to_the_config_and_checked_for_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("esim-secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "s3cret\n").unwrap();
        std::fs::set_permissions(dir.join("pw"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut sink = sink();
        sink.base_dir = dir.clone();
        let secret = secret_of(&sink, "password_file: pw\n");
        assert_eq!(secret.map(|s| s.expose().to_string()), Some("s3cret".into()));
        let msgs = messages(&sink);
        assert!(msgs.iter().any(|m| m.contains("readable by group or others")), "{msgs:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_errors_name_the_key() {
        let sink = sink();
        assert!(secret_of(&sink, "password: x\npassword_file: y\n").is_none());
        assert!(secret_of(&sink, "password_file: /nonexistent/secret\n").is_none());
        assert!(secret_of(&sink, "password: ${UNSET_THING}\n").is_none());
        let msgs = messages(&sink).join("\n");
        assert!(msgs.contains("give either `password` or `password_file`, not both"), "{msgs}");
        assert!(msgs.contains("acct.password_file: cannot read secret file `/nonexistent/secret`"), "{msgs}");
        assert!(msgs.contains("environment variable `UNSET_THING` is not set"), "{msgs}");
    }

    #[test]
    fn unknown_keys_get_a_hint_from_the_keys_asked_for() {
        let sink = sink();
        assert!(secret_of(&sink, "pasword: ${PW}\n").is_none());
        assert_eq!(
            messages(&sink),
            vec!["/nonexistent/t.yaml:1:1: error: acct.pasword: unknown key `pasword` here (did you mean `password`?)"
                .to_string()]
        );
    }
}
