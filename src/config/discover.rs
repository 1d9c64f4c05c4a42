//! `discover:` on an account: how the SIMs an account lists become lines. Parsed here at load
//! (templates, label mapping, filters, intervals); applied by `config::materialize` to each
//! listing (`poll::discovery` runs the listings). Explicitly listed lines override discovered
//! ones.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::alert::AlertThresholds;
use super::fields::Fields;
use super::raw::Value;

/// How often an account lists its SIMs unless `discover.interval` says.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// How long one listing (every page) may take unless `discover.timeout` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The line name of a discovered SIM unless `discover.name` says.
pub const DEFAULT_NAME: &str = "{account}-{id}";

/// The longest line name a template may make.
pub(super) const NAME_MAX: usize = 128;

/// A resolved `discover:` block.
#[derive(Debug, Clone)]
pub struct Discover {
    pub interval: Duration,
    pub timeout: Duration,
    pub name: Template,
    /// Label name → template (a literal value is a template without fields), sorted by name.
    pub labels: Vec<(String, Template)>,
    /// Every filter must match for a SIM to be kept.
    pub include: Vec<Filter>,
    /// A SIM matching any of these is dropped.
    pub exclude: Vec<Filter>,
    /// At most this many lines (a safety cap); also the fleet size `--config.check` plans for.
    pub max_lines: Option<usize>,
    /// What discovered lines inherit, as a configured line of the account would.
    pub line: LineDefaults,
}

/// The settings a line of the account inherits (the account's, else global ones).
#[derive(Debug, Clone)]
pub struct LineDefaults {
    pub operator: Arc<str>,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub alert: AlertThresholds,
}

/// A text with `{field}` references (`{{` and `}}` stand for braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' => field.push(c),
                            Some(c) => return Err(format!("`{text}`: `{c}` cannot be part of a field name")),
                            None => return Err(format!("`{text}`: `{{` is never closed (write `{{{{` for a brace)")),
                        }
                    }
                    if field.is_empty() {
                        return Err(format!("`{text}`: empty field `{{}}`"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                }
                '}' => return Err(format!("`{text}`: unmatched `}}` (write `}}}}` for a brace)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with each field's value (an unknown field is empty).
    pub fn render(&self, fields: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => out.push_str(&fields(f).unwrap_or_default()),
            }
        }
        out
    }

    /// Names of the fields referenced.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.as_str()),
            Part::Text(_) => None,
        })
    }
}

/// `field: pattern` (or `field: [pattern, ...]`): the field's whole value must match one of the
/// regular expressions.
#[derive(Debug, Clone)]
pub struct Filter {
    pub field: String,
    pattern: Regex,
}

impl Filter {
    pub fn new(field: &str, patterns: &[String]) -> Result<Filter, String> {
        let alternatives: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
        let pattern = Regex::new(&format!("^(?:{})$", alternatives.join("|"))).map_err(|e| {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or("").trim_start_matches("error: ").to_string();
            format!("not a regular expression ({last})")
        })?;
        Ok(Filter { field: field.to_string(), pattern })
    }

    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.pattern.is_match(&fields(&self.field).unwrap_or_default())
    }
}

/// Parses `discover:`; `defaults` is what the account's lines inherit.
pub fn parse(mut f: Fields<'_>, defaults: LineDefaults) -> Discover {
    let interval = f.duration("interval").unwrap_or(DEFAULT_INTERVAL);
    let timeout = f.duration("timeout").unwrap_or(DEFAULT_TIMEOUT);
    let name = template(&mut f, "name").unwrap_or_else(|| Template::parse(DEFAULT_NAME).expect("valid default"));
    let mut labels = Vec::new();
    for (key_pos, label, value_pos, text) in f.string_map("labels") {
        let path = format!("{}.{label}", f.path_of("labels"));
        if let Some(problem) = super::labels::label_name_problem(&label) {
            f.sink().error(Some(key_pos), &path, problem);
            continue;
        }
        match Template::parse(&text) {
            Ok(t) => labels.push((label, t)),
            Err(e) => f.sink().error(Some(value_pos), &path, e),
        }
    }
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    let include = filters(&mut f, "include");
    let exclude = filters(&mut f, "exclude");
    let max_lines = f.u64_in("max_lines", 1, 10_000_000).map(|n| n as usize);
    f.finish("in discover (expected interval, timeout, name, labels, include, exclude, max_lines)");
    Discover { interval, timeout, name, labels, include, exclude, max_lines, line: defaults }
}

fn template(f: &mut Fields<'_>, key: &'static str) -> Option<Template> {
    let pos = f.node(key).map(|n| n.pos)?;
    let text = f.string(key)?;
    match Template::parse(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            f.error(key, pos, e);
            None
        }
    }
}

fn filters(f: &mut Fields<'_>, key: &'static str) -> Vec<Filter> {
    let Some(node) = f.node(key) else {
        return Vec::new();
    };
    let path = f.path_of(key);
    let Value::Map(entries) = &node.value else {
        f.error(key, node.pos, format!("expected a mapping of field: pattern, found {}", node.value.kind()));
        return Vec::new();
    };
    let scalar = |v: &Value| match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let entry_path = format!("{path}.{}", k.name);
        let patterns: Option<Vec<String>> = match &v.value {
            Value::Seq(items) => items.iter().map(|i| scalar(&i.value)).collect(),
            other => scalar(other).map(|s| vec![s]),
        };
        let Some(patterns) = patterns.filter(|p| !p.is_empty()) else {
            f.sink().error(Some(v.pos), &entry_path, "expected a pattern or a list of patterns");
            continue;
        };
        match Filter::new(&k.name, &patterns) {
            Ok(filter) => out.push(filter),
            Err(e) => f.sink().error(Some(v.pos), &entry_path, e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_reference_fields_and_escape_braces() {
        let t = Template::parse("{account}-{label}{{x}}").unwrap();
        let out = t.render(&|f| match f {
            "account" => Some("fleet".into()),
            "label" => Some("tracker-7".into()),
            _ => None,
        });
        assert_eq!(out, "fleet-tracker-7{x}");
        assert_eq!(t.fields().collect::<Vec<_>>(), ["account", "label"]);
        assert!(Template::parse("{open").is_err());
        assert!(Template::parse("a}b").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("{a b}").is_err());
        assert_eq!(Template::parse("plain").unwrap().render(&|_| None), "plain");
        assert_eq!(Template::parse("{missing}").unwrap().render(&|_| None), "");
    }

    #[test]
    fn filters_match_whole_values_against_any_pattern() {
        let f = Filter::new("status", &["Enabled".into(), "Activ.*".into()]).unwrap();
        let with = |v: &'static str| move |_: &str| Some(v.to_string());
        assert!(f.matches(&with("Enabled")));
        assert!(f.matches(&with("Activated")));
        assert!(!f.matches(&with("Enabled2")), "anchored at both ends");
        assert!(!f.matches(&|_| None));
        assert!(Filter::new("x", &["(".into()]).is_err());
    }
}
