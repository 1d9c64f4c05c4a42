//! `discover:` on an account: how the SIMs an account lists become lines. Parsed here at load
//! (templates, label mapping, filters, intervals); applied by [`materialize`] to each listing
//! (`poll::discovery` runs the listings). Explicitly listed lines override discovered ones.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

use super::fields::Fields;
use super::labels::Interner;
use super::raw::Value;
use super::{Account, AlertThresholds, Line};
use crate::drivers::DiscoveredLine;

/// How often an account lists its SIMs unless `discover.interval` says.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// How long one listing (every page) may take unless `discover.timeout` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The line name of a discovered SIM unless `discover.name` says.
pub const DEFAULT_NAME: &str = "{account}-{id}";

const NAME_MAX: usize = 128;

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
        if let Some(problem) = super::resolve::label_name_problem(&label) {
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

/// What [`materialize`] needs to know about the configured lines: they win over discovered ones.
#[derive(Debug, Default)]
pub struct Configured {
    names: HashSet<String>,
    /// (account, ICCID or MSISDN digits) of configured lines.
    sims: HashSet<(String, String)>,
}

impl Configured {
    pub fn new<'a>(lines: impl IntoIterator<Item = &'a Arc<Line>>) -> Configured {
        let mut configured = Configured::default();
        for line in lines {
            configured.names.insert(line.name.clone());
            for sim in [&line.iccid, &line.msisdn].into_iter().flatten() {
                configured.sims.insert((line.account.name.clone(), digits(sim)));
            }
        }
        configured
    }

    fn covers(&self, account: &str, sim: &DiscoveredLine) -> bool {
        [&sim.iccid, &sim.msisdn].into_iter().flatten().any(|s| self.sims.contains(&(account.to_string(), digits(s))))
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// What came of one account's listing.
#[derive(Debug, Default)]
pub struct Materialized {
    pub lines: Vec<Arc<Line>>,
    /// SIMs left out by `include`/`exclude`.
    pub filtered: usize,
    /// SIMs left out because a configured line covers them.
    pub overridden: usize,
    /// Problems worth a log line (a name that is not valid, the `max_lines` cap).
    pub problems: Vec<String>,
}

/// Turns `account`'s listing into lines: filters, then names and labels from the templates,
/// skipping SIMs that a configured line covers (same name, or same ICCID or MSISDN in the
/// account) and names `taken` by another account's discovered lines. Lines come sorted by
/// name; two SIMs whose names collide are told apart by their id.
pub fn materialize(
    account: &Arc<Account>,
    listed: &[DiscoveredLine],
    configured: &Configured,
    taken: &mut HashSet<String>,
) -> Materialized {
    let mut out = Materialized::default();
    let Some(discover) = account.discover.as_deref() else {
        return out;
    };
    let mut sims: Vec<&DiscoveredLine> = listed.iter().collect();
    sims.sort_by(|a, b| a.id.cmp(&b.id));
    sims.dedup_by(|a, b| a.id == b.id);
    let mut lines: BTreeMap<String, Line> = BTreeMap::new();
    // The listing's lines share their label sets (and the strings in them).
    let mut interner = Interner::default();
    for sim in sims {
        let facts: BTreeMap<&str, &str> = sim.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let msisdn_digits = sim.msisdn.as_deref().map(digits);
        let lookup = |field: &str| -> Option<String> {
            match field {
                "account" => Some(account.name.clone()),
                "id" => Some(sim.id.clone()),
                "iccid" => sim.iccid.clone(),
                "msisdn" => msisdn_digits.clone(),
                other => facts.get(other).map(|v| v.to_string()),
            }
        };
        if !discover.include.iter().all(|f| f.matches(&lookup)) || discover.exclude.iter().any(|f| f.matches(&lookup)) {
            out.filtered += 1;
            continue;
        }
        if configured.covers(&account.name, sim) {
            out.overridden += 1;
            continue;
        }
        let mut name = clean_name(&discover.name.render(&lookup));
        if name.is_empty() {
            name = format!("{}-{}", account.name, sim.id);
        }
        if configured.names.contains(&name) {
            out.overridden += 1;
            continue;
        }
        if lines.contains_key(&name) || taken.contains(&name) {
            name = format!("{name}-{}", sim.id);
        }
        if name.chars().count() > NAME_MAX || lines.contains_key(&name) || taken.contains(&name) {
            out.problems.push(format!("SIM {} left out: its line name is too long or not unique", sim.id));
            continue;
        }
        if discover.max_lines.is_some_and(|max| lines.len() >= max) {
            out.problems.push(format!(
                "the listing has more SIMs than discover.max_lines ({}): the rest are left out",
                discover.max_lines.unwrap_or(0)
            ));
            break;
        }
        let mut labels: BTreeMap<&str, String> = account.labels.iter().map(|(n, v)| (n, v.to_string())).collect();
        for (label, template) in &discover.labels {
            let value = template.render(&lookup);
            if value.is_empty() {
                labels.remove(label.as_str());
            } else {
                labels.insert(label, value);
            }
        }
        let line = Line {
            name: name.clone(),
            account: account.clone(),
            operator: discover.line.operator.clone(),
            msisdn: sim.msisdn.as_deref().map(Box::from),
            iccid: sim.iccid.as_deref().map(Box::from),
            labels: interner.labels(labels.iter().map(|(n, v)| (*n, v.as_str()))),
            alert: discover.line.alert,
            poll_interval: discover.line.poll_interval,
            timeout: discover.line.timeout,
            options: sim.options.clone(),
        };
        lines.insert(name, line);
    }
    taken.extend(lines.keys().cloned());
    out.lines = lines.into_values().map(Arc::new).collect();
    out
}

/// Control characters dropped and whitespace trimmed: what a platform's free-text label may
/// need before it can name a line.
fn clean_name(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DriverOptions, Labels};

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

    fn account(discover: Discover) -> Arc<Account> {
        Arc::new(Account {
            name: "fleet".into(),
            implicit: false,
            driver: crate::drivers::lookup("demo").expect("demo driver"),
            options: DriverOptions::none(),
            labels: [("team", "iot")].into_iter().collect(),
            rate_limit: None,
            rate_burst: None,
            max_concurrency: None,
            alert: AlertThresholds::default(),
            discover: Some(Arc::new(discover)),
            credentials: 0,
            redactor: Default::default(),
        })
    }

    fn discover(name: &str) -> Discover {
        Discover {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            name: Template::parse(name).unwrap(),
            labels: vec![
                ("site".into(), Template::parse("{label}").unwrap()),
                ("team".into(), Template::parse("fleet-{status}").unwrap()),
            ],
            include: vec![Filter::new("status", &["Enabled".into()]).unwrap()],
            exclude: vec![Filter::new("label", &["test-.*".into()]).unwrap()],
            max_lines: None,
            line: LineDefaults {
                operator: "1nce".into(),
                poll_interval: Duration::from_secs(3600),
                timeout: Duration::from_secs(30),
                alert: AlertThresholds::default(),
            },
        }
    }

    fn sim(id: &str, label: &str, status: &str) -> DiscoveredLine {
        DiscoveredLine {
            id: id.into(),
            msisdn: None,
            iccid: Some(id.into()),
            labels: vec![("label".into(), label.into()), ("status".into(), status.into())],
            options: DriverOptions::none(),
        }
    }

    #[test]
    fn listings_become_named_labelled_filtered_lines() {
        let account = account(discover("{label}"));
        let listed = vec![
            sim("8900000000000000003", "tracker-3", "Enabled"),
            sim("8900000000000000001", "tracker-1", "Enabled"),
            sim("8900000000000000002", "tracker-2", "Disabled"),
            sim("8900000000000000004", "test-4", "Enabled"),
            sim("8900000000000000005", "tracker-1", "Enabled"),
            sim("8900000000000000006", "", "Enabled"),
        ];
        let out = materialize(&account, &listed, &Configured::default(), &mut HashSet::new());
        let names: Vec<&str> = out.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fleet-8900000000000000006", "tracker-1", "tracker-1-8900000000000000005", "tracker-3"]);
        assert_eq!(out.filtered, 2);
        let t1 = &out.lines[1];
        assert_eq!(t1.labels, vec![("site".into(), "tracker-1".into()), ("team".into(), "fleet-Enabled".into())]);
        assert_eq!(t1.iccid.as_deref(), Some("8900000000000000001"));
        assert_eq!(&*t1.operator, "1nce");
        // An empty label value leaves the label out.
        assert_eq!(out.lines[0].labels, vec![("team".into(), "fleet-Enabled".into())]);
    }

    #[test]
    fn configured_lines_override_discovered_ones() {
        let account = account(discover("{label}"));
        let configured_line = Arc::new(Line {
            name: "my-own-name".into(),
            account: account.clone(),
            operator: "1nce".into(),
            msisdn: None,
            iccid: Some("8900000000000000001".into()),
            labels: Labels::default(),
            alert: AlertThresholds::default(),
            poll_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            options: DriverOptions::none(),
        });
        let named = Arc::new(Line { name: "tracker-3".into(), iccid: None, ..clone_line(&configured_line) });
        let configured = Configured::new([&configured_line, &named]);
        let listed = vec![
            sim("8900000000000000001", "tracker-1", "Enabled"),
            sim("8900000000000000003", "tracker-3", "Enabled"),
            sim("8900000000000000007", "tracker-7", "Enabled"),
        ];
        let out = materialize(&account, &listed, &configured, &mut HashSet::new());
        assert_eq!(out.lines.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["tracker-7"]);
        assert_eq!(out.overridden, 2);
    }

    fn clone_line(l: &Line) -> Line {
        Line {
            name: l.name.clone(),
            account: l.account.clone(),
            operator: l.operator.clone(),
            msisdn: l.msisdn.clone(),
            iccid: l.iccid.clone(),
            labels: l.labels.clone(),
            alert: l.alert,
            poll_interval: l.poll_interval,
            timeout: l.timeout,
            options: l.options.clone(),
        }
    }

    #[test]
    fn max_lines_caps_a_listing() {
        let mut d = discover("{id}");
        d.include.clear();
        d.max_lines = Some(2);
        let account = account(d);
        let listed: Vec<_> = (1..=5).map(|i| sim(&format!("89000000000000000{i:02}"), "x", "Enabled")).collect();
        let out = materialize(&account, &listed, &Configured::default(), &mut HashSet::new());
        assert_eq!(out.lines.len(), 2);
        assert!(out.problems[0].contains("max_lines"), "{:?}", out.problems);
    }
}
