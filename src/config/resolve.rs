//! Raw tree → resolved [`Config`]: defaults, account inheritance, driver options through the
//! registry, name and label rules. Collects every problem instead of stopping at the first.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::diagnostics::{self, hint, Severity};
use super::discover;
use super::fields::{Fields, Sink};
use super::labels::{label_name_problem, Interner};
use super::raw::{Node, Pos, Value};
use super::{Account, AlertThresholds, Config, ConfigError, DriverOptions, Global, Labels, Line, Rate, Registry};
use crate::drivers::contract::DriverSpec;

/// Labels that belong to Prometheus target labels, not to each line (DESIGN §4).
const TARGET_LABELS: &[&str] = &["env", "region", "cluster", "job", "instance"];

const LINE_NAME_MAX: usize = 128;

/// Where the items of `lines:` come from.
pub(super) enum Items<'a> {
    /// From the tree itself, under `lines:`.
    InTree,
    /// Slice by slice from [`raw::parse_streamed`](super::raw::parse_streamed); the tree is the
    /// file's head, in which `lines` is null. Each slice is dropped as soon as it is resolved,
    /// so that the file's whole tree never exists.
    Streamed(&'a mut dyn Iterator<Item = Vec<Node>>),
}

pub(super) fn resolve(file: &str, tree: &Node, items: Items<'_>, drivers: Registry) -> Result<Config, ConfigError> {
    resolve_with(Sink::new(file), tree, items, drivers)
}

pub(super) fn resolve_with(
    sink: Sink,
    tree: &Node,
    items: Items<'_>,
    drivers: Registry,
) -> Result<Config, ConfigError> {
    let mut root = Fields::new(&sink, "", tree);
    let global = root.map("global").map(resolve_global).unwrap_or_default();
    let mut broken = HashSet::new();
    // Lines share their operator and label sets (and the strings in them) through this.
    let mut interner = Interner::default();
    let accounts = root
        .node("accounts")
        .map(|n| resolve_accounts(&sink, n, &global, (&mut broken, &mut interner), drivers))
        .unwrap_or_default();
    let lines_node = root.node("lines");
    root.finish("at the top level (expected global, accounts, lines)");

    let mut declared: Vec<Arc<Account>> = accounts.values().map(|(a, _)| a.clone()).collect();
    declared.sort_by(|a, b| a.name.cmp(&b.name));
    let mut implicit = Vec::new();
    let mut resolver = LineResolver::new(&sink, &global, (&accounts, &broken), (&mut implicit, &mut interner), drivers);
    match items {
        Items::InTree => match lines_node {
            Some(Node { value: Value::Seq(items), .. }) => {
                resolver.reserve(items.len());
                items.iter().for_each(|item| resolver.line(item));
            }
            Some(node) => {
                sink.error(Some(node.pos), "lines", format!("expected a list of lines, found {}", node.value.kind()))
            }
            None => {}
        },
        Items::Streamed(slices) => {
            for slice in slices {
                slice.iter().for_each(|item| resolver.line(item));
                // `slice` is dropped here, before the next one is taken.
            }
        }
    }
    let lines = resolver.finish();
    let discovering = accounts.values().any(|(a, _)| a.discover.is_some());
    if lines.is_empty() && !discovering && sink.error_count() == 0 {
        sink.error(Some(tree.pos), "lines", "the config has no lines to poll");
    }
    warn_unused_accounts(&sink, &accounts, &lines);
    warn_timeout_not_under_interval(&sink, &lines);

    let mut diagnostics = sink.diagnostics.into_inner();
    diagnostics::sort(&mut diagnostics);
    if diagnostics.iter().any(|d| d.severity == Severity::Error) {
        return Err(ConfigError { diagnostics });
    }
    declared.extend(implicit);
    Ok(Config {
        source: sink.file.clone().into(),
        global,
        accounts: declared,
        lines,
        warnings: diagnostics,
        holds_secrets: sink.holds_secrets.into_inner(),
    })
}

fn resolve_global(mut g: Fields<'_>) -> Global {
    let defaults = Global::default();
    let global = Global {
        poll_interval: g.duration("poll_interval").unwrap_or(defaults.poll_interval),
        timeout: g.duration("timeout").unwrap_or(defaults.timeout),
        max_concurrency: g
            .u64_in("max_concurrency", 1, 100_000)
            .map(|n| n as usize)
            .unwrap_or(defaults.max_concurrency),
        stale_after: g.duration("stale_after").unwrap_or(defaults.stale_after),
        alert: g.map("alert").map(resolve_alert).unwrap_or_default(),
        expose_msisdn: g.bool("expose_msisdn").unwrap_or(false),
    };
    g.finish("in global");
    global
}

fn resolve_alert(mut a: Fields<'_>) -> AlertThresholds {
    let balance_below = a.f64("balance_below");
    let data_below = a.size("data_below");
    a.finish("in alert (expected balance_below, data_below)");
    AlertThresholds { balance_below, data_below }
}

/// `labels:` as written, sorted by name.
type OwnLabels = Vec<(String, String)>;

/// Account-level keys shared by every driver; the rest belongs to the driver.
struct Common {
    labels: OwnLabels,
    alert: AlertThresholds,
    operator: Option<String>,
    poll_interval: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
}

fn take_common(f: &mut Fields<'_>) -> Common {
    Common {
        labels: resolve_labels(f),
        alert: f.map("alert").map(resolve_alert).unwrap_or_default(),
        operator: f.string("operator"),
        poll_interval: f.duration("poll_interval"),
        timeout: f.duration("timeout"),
    }
}

type AccountTable = BTreeMap<String, (Arc<Account>, AccountDefaults)>;

/// What an account passes down to its lines besides the `Account` itself.
#[derive(Clone)]
struct AccountDefaults {
    /// Where the account is declared, for warnings about it.
    pos: Pos,
    operator: Option<Arc<str>>,
    poll_interval: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
}

/// Reads `accounts:`; names whose driver is missing or unknown go to `broken`, so that their
/// lines are not reported again as naming an unknown account.
fn resolve_accounts(
    sink: &Sink,
    node: &Node,
    global: &Global,
    (broken, interner): (&mut HashSet<String>, &mut Interner),
    drivers: Registry,
) -> AccountTable {
    let mut table = AccountTable::new();
    let Value::Map(entries) = &node.value else {
        sink.error(
            Some(node.pos),
            "accounts",
            format!("expected a mapping of account names, found {}", node.value.kind()),
        );
        return table;
    };
    for (key, value) in entries {
        let path = format!("accounts.{}", key.name);
        if table.contains_key(&key.name) {
            sink.error(Some(key.pos), &path, "duplicate account name");
            continue;
        }
        let mut f = Fields::new(sink, path.clone(), value);
        let Some(spec) = driver_of(&mut f, drivers) else {
            broken.insert(key.name.clone());
            continue;
        };
        let common = take_common(&mut f);
        let operator = common.operator.as_deref().map(|op| interner.text(op));
        let rate_limit = f.rate("rate_limit").or(spec.default_rate_limit);
        let rate_burst = rate_burst(&mut f, rate_limit);
        let max_concurrency = f.u64_in("max_concurrency", 1, 10_000).map(|n| n as usize);
        let discover = match f.node("discover").map(|n| n.pos) {
            Some(pos) if !spec.can_discover => {
                f.error("discover", pos, format!("driver `{}` cannot discover lines", spec.name));
                None
            }
            Some(_) => f.map("discover").map(|d| {
                let defaults = discover::LineDefaults {
                    operator: operator.clone().unwrap_or_else(|| interner.text(spec.default_operator)),
                    poll_interval: common.poll_interval.unwrap_or(global.poll_interval),
                    timeout: common.timeout.unwrap_or(global.timeout),
                    alert: common.alert.or(global.alert),
                };
                Arc::new(discover::parse(d, defaults))
            }),
            None => None,
        };
        let options = (spec.account_options)(&mut f);
        f.finish(&format!("for an account of driver `{}`", spec.name));
        let account = Account {
            name: key.name.clone(),
            implicit: false,
            driver: spec,
            options,
            labels: interner.labels(common.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            rate_limit,
            rate_burst,
            max_concurrency,
            alert: common.alert.or(global.alert),
            discover,
            credentials: f.credentials(),
            redactor: f.redactor(),
        };
        let defaults =
            AccountDefaults { pos: key.pos, operator, poll_interval: common.poll_interval, timeout: common.timeout };
        table.insert(key.name.clone(), (Arc::new(account), defaults));
    }
    table
}

/// Takes `driver:` and finds it in the registry, reporting unknown names with a hint.
/// `rate_burst`: at most the `rate_limit` count (the window caps a larger one anyway, so a
/// larger value says the user misread the key) and only beside a `rate_limit`.
fn rate_burst(f: &mut Fields<'_>, rate_limit: Option<Rate>) -> Option<u32> {
    let pos = f.node("rate_burst")?.pos;
    let burst = f.u64_in("rate_burst", 1, u64::from(u32::MAX))? as u32;
    match rate_limit {
        None => {
            f.error("rate_burst", pos, "`rate_burst` needs a `rate_limit` (the sustained rate it bursts above)");
            None
        }
        Some(rate) if burst > rate.count => {
            f.error(
                "rate_burst",
                pos,
                format!(
                    "`rate_burst: {burst}` is more than `rate_limit: {rate}` allows in one period ({})",
                    rate.count
                ),
            );
            None
        }
        Some(_) => Some(burst),
    }
}

/// The spec `driver:` names, looked up in the registry the app handed to `load` (by name or
/// alias), so that config never imports an operator file.
fn driver_of(f: &mut Fields<'_>, drivers: Registry) -> Option<&'static DriverSpec> {
    let names = || drivers.iter().map(|spec| spec.name).collect::<Vec<_>>();
    let Some(pos) = f.node("driver").map(|n| n.pos) else {
        let known = names().join(", ");
        f.sink().error(Some(f.pos()), f.path(), format!("missing required key `driver` (known: {known})"));
        return None;
    };
    let name = f.string("driver")?;
    match drivers.iter().copied().find(|spec| spec.name == name || spec.aliases.contains(&name.as_str())) {
        Some(spec) => Some(spec),
        None => {
            let known = names();
            let hint = hint(&name, known.iter().copied());
            f.error("driver", pos, format!("unknown driver `{name}`{hint}; known: {}", known.join(", ")));
            None
        }
    }
}

/// Resolves the items of `lines:` one at a time, in file order, whatever holds them: the
/// index in key paths, duplicate names and implicit accounts span all of them.
struct LineResolver<'a> {
    sink: &'a Sink,
    global: &'a Global,
    accounts: (&'a AccountTable, &'a HashSet<String>),
    implicit: &'a mut Vec<Arc<Account>>,
    interner: &'a mut Interner,
    drivers: Registry,
    lines: Vec<Arc<Line>>,
    /// Where each name was first used; keyed by the line itself, so that 100,000 names are not
    /// copied once more.
    seen: HashMap<ByName, Pos>,
    index: usize,
}

impl<'a> LineResolver<'a> {
    fn new(
        sink: &'a Sink,
        global: &'a Global,
        accounts: (&'a AccountTable, &'a HashSet<String>),
        (implicit, interner): (&'a mut Vec<Arc<Account>>, &'a mut Interner),
        drivers: Registry,
    ) -> Self {
        LineResolver {
            sink,
            global,
            accounts,
            implicit,
            interner,
            drivers,
            lines: Vec::new(),
            seen: HashMap::new(),
            index: 0,
        }
    }

    fn reserve(&mut self, items: usize) {
        self.lines.reserve_exact(items);
        self.seen.reserve(items);
    }

    fn line(&mut self, item: &Node) {
        let index = self.index;
        self.index += 1;
        let path = match line_name_hint(item) {
            Some(name) => format!("lines[{index}] ({name})"),
            None => format!("lines[{index}]"),
        };
        let mut f = Fields::new(self.sink, path, item);
        let Some(line) = resolve_line(&mut f, self.global, self.accounts, (self.implicit, self.interner), self.drivers)
        else {
            return;
        };
        match self.seen.get(line.name.as_str()) {
            Some(first) => f.error(
                "name",
                item.pos,
                format!("duplicate line name `{}` (first used at line {})", line.name, first.line),
            ),
            None => {
                let line = Arc::new(line);
                self.seen.insert(ByName(line.clone()), item.pos);
                self.lines.push(line);
            }
        }
    }

    fn finish(self) -> Vec<Arc<Line>> {
        let mut lines = self.lines;
        // Streamed items come without a count, so the vector grew by doubling.
        lines.shrink_to_fit();
        lines
    }
}

/// A line that hashes and compares as its name.
struct ByName(Arc<Line>);

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl Hash for ByName {
    // As `str` hashes, which `Borrow<str>` requires.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.as_str().hash(state);
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

fn line_name_hint(item: &Node) -> Option<String> {
    let Value::Map(entries) = &item.value else {
        return None;
    };
    entries.iter().find(|(k, _)| k.name == "name").and_then(|(_, v)| match &v.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    })
}

fn resolve_line(
    f: &mut Fields<'_>,
    global: &Global,
    (accounts, broken): (&AccountTable, &HashSet<String>),
    (implicit, interner): (&mut Vec<Arc<Account>>, &mut Interner),
    drivers: Registry,
) -> Option<Line> {
    let errors_before = f.sink().error_count();
    let name_pos = f.node("name").map(|n| n.pos).unwrap_or(f.pos());
    let name = f.required_string("name");
    if let Some(name) = &name {
        check_line_name(f, name, name_pos);
    }
    let account_pos = f.node("account").map(|n| n.pos);
    let account_name = f.string("account");
    let driver_pos = f.node("driver").map(|n| n.pos);
    let msisdn_pos = f.node("msisdn").map(|n| n.pos).unwrap_or(f.pos());
    let msisdn = f.string("msisdn").and_then(|m| check_msisdn(f, m, msisdn_pos));
    let iccid_pos = f.node("iccid").map(|n| n.pos).unwrap_or(f.pos());
    let iccid = f.string("iccid").and_then(|i| check_iccid(f, i, iccid_pos));
    let common = take_common(f);

    let (account, defaults) = match (account_name, driver_pos) {
        (Some(_), Some(pos)) => {
            f.error("driver", pos, "give either `account` or `driver`, not both (the account names the driver)");
            return None;
        }
        (None, None) => {
            f.sink().error(Some(f.pos()), f.path(), "missing `account` (or `driver` for drivers without accounts)");
            return None;
        }
        (Some(account_name), None) => match accounts.get(&account_name) {
            Some((account, defaults)) => (account.clone(), defaults.clone()),
            None if broken.contains(&account_name) => return None,
            None => {
                let hint = hint(&account_name, accounts.keys().map(String::as_str));
                let pos = account_pos.unwrap_or(f.pos());
                f.error("account", pos, format!("unknown account `{account_name}`{hint}"));
                return None;
            }
        },
        (None, Some(_)) => {
            let spec = driver_of(f, drivers)?;
            if spec.needs_account {
                f.error(
                    "driver",
                    driver_pos.unwrap_or(f.pos()),
                    format!("driver `{}` needs an account: declare it under `accounts:` and set `account:`", spec.name),
                );
                return None;
            }
            let rate_limit = f.rate("rate_limit").or(spec.default_rate_limit);
            let rate_burst = rate_burst(f, rate_limit);
            let options = (spec.account_options)(f);
            let account = Arc::new(Account {
                name: name.clone().unwrap_or_default(),
                implicit: true,
                driver: spec,
                options,
                labels: interner.labels([]),
                rate_limit,
                rate_burst,
                max_concurrency: None,
                alert: global.alert,
                discover: None,
                credentials: f.credentials(),
                redactor: f.redactor(),
            });
            implicit.push(account.clone());
            (account, AccountDefaults { pos: f.pos(), operator: None, poll_interval: None, timeout: None })
        }
    };
    let spec = account.driver;
    let options: DriverOptions = (spec.line_options)(f);
    f.finish(&format!("for a line of driver `{}`", spec.name));
    let name = name?;
    let poll_interval = common.poll_interval.or(defaults.poll_interval).unwrap_or(global.poll_interval);
    let timeout = common.timeout.or(defaults.timeout).unwrap_or(global.timeout);
    if f.sink().error_count() > errors_before {
        return None;
    }
    let operator = match common.operator {
        Some(operator) => interner.text(&operator),
        None => defaults.operator.unwrap_or_else(|| interner.text(spec.default_operator)),
    };
    Some(Line {
        operator,
        labels: merge_labels(interner, &account.labels, &common.labels),
        alert: common.alert.or(account.alert),
        name,
        account,
        msisdn: msisdn.map(String::into_boxed_str),
        iccid: iccid.map(String::into_boxed_str),
        poll_interval,
        timeout,
        options,
    })
}

fn check_line_name(f: &Fields<'_>, name: &str, pos: Pos) {
    if name.trim().is_empty() {
        f.error("name", pos, "line name is empty");
    } else if name.chars().count() > LINE_NAME_MAX {
        f.error("name", pos, format!("line name is longer than {LINE_NAME_MAX} characters"));
    } else if name.chars().any(char::is_control) {
        f.error("name", pos, "line name contains control characters");
    } else if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        f.error(
            "name",
            pos,
            format!("line name contains the bidirectional control character U+{:04X}, which can make it display as another name", c as u32),
        );
    }
}

/// Unicode's explicit directional formatting characters (UAX #9): invisible, and able to show
/// `evil\u{202E}gnp` as `evilpng` on a status page or in Grafana.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Normalises an MSISDN to `+` and digits (spaces, dashes and brackets dropped).
fn check_msisdn(f: &mut Fields<'_>, raw: String, pos: Pos) -> Option<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let body = digits.strip_prefix('+').unwrap_or(&digits);
    if body.len() < 5 || body.len() > 15 || !body.chars().all(|c| c.is_ascii_digit()) {
        f.error("msisdn", pos, format!("`{raw}` is not a phone number (expected 5 to 15 digits, e.g. +79261234567)"));
        return None;
    }
    Some(if digits.starts_with('+') { digits } else { format!("+{digits}") })
}

fn check_iccid(f: &mut Fields<'_>, raw: String, pos: Pos) -> Option<String> {
    let iccid = raw.trim().to_string();
    if iccid.len() < 18 || iccid.len() > 22 || !iccid.chars().all(|c| c.is_ascii_digit()) {
        f.error("iccid", pos, format!("`{raw}` is not an ICCID (expected 18 to 22 digits)"));
        return None;
    }
    Some(iccid)
}

fn resolve_labels(f: &mut Fields<'_>) -> OwnLabels {
    let mut labels = OwnLabels::new();
    for (key_pos, name, _, value) in f.string_map("labels") {
        let path = format!("{}.{name}", f.path_of("labels"));
        let sink = f.sink();
        if let Some(problem) = label_name_problem(&name) {
            sink.error(Some(key_pos), &path, problem);
        } else {
            if TARGET_LABELS.contains(&name.as_str()) {
                sink.warning(
                    Some(key_pos),
                    &path,
                    format!("`{name}` is common to every series: set it as a target label in Prometheus instead"),
                );
            }
            labels.push((name, value));
        }
    }
    labels.sort();
    labels
}

/// Account labels overlaid with the line's own (the line wins), sorted.
fn merge_labels(interner: &mut Interner, account: &Labels, line: &OwnLabels) -> Labels {
    if line.is_empty() {
        return account.clone();
    }
    let mut merged: BTreeMap<&str, &str> = account.iter().collect();
    merged.extend(line.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    interner.labels(merged)
}

/// A timeout at or over the poll interval means a hanging operator keeps a line's polls
/// overlapping its schedule; one warning for the whole config (fleets have many lines).
fn warn_timeout_not_under_interval(sink: &Sink, lines: &[Arc<Line>]) {
    let mut over = lines.iter().filter(|l| l.timeout >= l.poll_interval);
    let Some(first) = over.next() else { return };
    let others = over.count();
    let and_others = match others {
        0 => String::new(),
        1 => " (and 1 more line)".to_string(),
        n => format!(" (and {n} more lines)"),
    };
    sink.warning(
        None,
        "",
        format!(
            "line `{}`{and_others}: timeout {} is not shorter than poll_interval {}; polls may overlap their schedule",
            first.name,
            humantime::format_duration(first.timeout),
            humantime::format_duration(first.poll_interval),
        ),
    );
}

fn warn_unused_accounts(sink: &Sink, accounts: &AccountTable, lines: &[Arc<Line>]) {
    // One pass over the lines, not one per account: fleets have many of both.
    let used: HashSet<*const Account> = lines.iter().map(|l| Arc::as_ptr(&l.account)).collect();
    for (name, (account, defaults)) in accounts {
        if account.discover.is_none() && !used.contains(&Arc::as_ptr(account)) {
            sink.warning(Some(defaults.pos), &format!("accounts.{name}"), "account is not used by any line");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{self, Limits};

    const NO_LIMITS: Limits = Limits { nodes: usize::MAX, events: usize::MAX, depth: usize::MAX };

    /// A fleet whose items include, when `broken`, errors and warnings every few items, so that
    /// slices of 7 put them in many slices (and a duplicate name in a later slice than its
    /// first use).
    fn fleet(items: usize, broken: bool) -> String {
        let mut text = String::from(
            "global:\n  poll_interval: 10m\n  alert: {balance_below: 50}\naccounts:\n  \
             a: {driver: demo, operator: op-a, labels: {fleet: a, site: hq}}\n  \
             spare: {driver: demo}\nlines:\n",
        );
        for i in 0..items {
            let line = match i % 10 {
                0 => format!("  - name: line-{i}\n    account: a\n    labels: {{site: s{i}, env: x}}\n"),
                1 => format!("  # note {i}\n  - {{name: line-{i}, driver: demo, profile: heavy}}\n"),
                2 if broken => format!("  - {{name: line-{i}, account: a, msisdn: \"12\"}}\n"),
                3 if broken => format!("  - {{name: line-{i}, account: nobody}}\n"),
                4 if broken => format!("  - {{name: line-{}, account: a}}\n", i.saturating_sub(13)),
                5 if broken => format!("  - {{name: line-{i}, account: a, profle: steady}}\n"),
                6 if broken => "  - {name: 12345, driver: demo, timeout: soon}\n".to_string(),
                7 if broken => "  - {account: a}\n".to_string(),
                8 if broken => format!("  - [line-{i}]\n"),
                _ => format!("  - {{name: line-{i}, account: a, msisdn: \"+7926{i:07}\", timeout: 5s}}\n"),
            };
            text += &line;
        }
        text
    }

    fn whole(text: &str) -> Result<Config, ConfigError> {
        resolve("t.yaml", &raw::parse_tree("t.yaml", text).expect("parses"), Items::InTree, crate::drivers::REGISTRY)
    }

    fn streamed(text: &str, slice_items: usize) -> Result<Config, ConfigError> {
        raw::stream(text, slice_items, NO_LIMITS, |head, slices| {
            resolve("t.yaml", head, Items::Streamed(slices), crate::drivers::REGISTRY)
        })
        .expect("this shape streams")
    }

    #[test]
    fn streamed_lines_resolve_as_the_whole_tree_does() {
        let text = fleet(100, false);
        let expected = whole(&text).expect("resolves");
        assert_eq!(expected.lines.len(), 100);
        assert!(!expected.warnings.is_empty());
        for slice_items in [1, 7, 100] {
            let config = streamed(&text, slice_items).expect("resolves");
            // Names, accounts (implicit ones too), labels, options, warnings with positions.
            assert_eq!(format!("{config:#?}"), format!("{expected:#?}"), "slices of {slice_items}");
        }
    }

    #[test]
    fn streamed_lines_report_as_the_whole_tree_does() {
        let text = fleet(100, true);
        let expected = whole(&text).expect_err("has errors");
        let text_of = |e: &ConfigError| e.diagnostics.iter().map(|d| format!("{d}\n")).collect::<String>();
        let expected = text_of(&expected);
        // Every kind, with the global index in key paths and a duplicate across slices.
        for wanted in [
            "lines[92] (line-92).msisdn",
            "lines[93] (line-93).account: unknown account `nobody`",
            "lines[94] (line-81).name: duplicate line name `line-81` (first used at line 116)",
            "lines[95] (line-95).profle: unknown key",
            "lines[96] (12345).timeout",
            "lines[97]: missing required key `name`",
            "lines[98]: expected a mapping of keys, found a list",
            "warning: lines[90] (line-90).labels.env",
            "warning: accounts.spare: account is not used by any line",
        ] {
            assert!(expected.contains(wanted), "{wanted} in\n{expected}");
        }
        for slice_items in [1, 7, 100] {
            let streamed = streamed(&text, slice_items).expect_err("has errors");
            assert_eq!(text_of(&streamed), expected, "slices of {slice_items}");
        }
    }

    #[test]
    fn lines_share_their_operator_and_equal_label_sets() {
        let config = whole(&fleet(30, false)).expect("resolves");
        let (a, b, c) = (&config.lines[2], &config.lines[3], &config.lines[10]);
        assert_eq!((&*a.operator, &*b.operator), ("op-a", "op-a"));
        assert!(Arc::ptr_eq(&a.operator, &b.operator));
        // Lines without labels of their own hold their account's set.
        assert_eq!(a.labels, vec![("fleet".to_string(), "a".to_string()), ("site".to_string(), "hq".to_string())]);
        assert!(Labels::ptr_eq(&a.labels, &b.labels) && Labels::ptr_eq(&a.labels, &a.account.labels));
        // A set of its own (the line sets `site`), yet the same strings for what it shares.
        assert_eq!(c.labels.get("site"), Some("s10"));
        assert!(!Labels::ptr_eq(&a.labels, &c.labels));
        assert_eq!(a.labels.get("fleet").map(str::as_ptr), c.labels.get("fleet").map(str::as_ptr));
    }

    #[test]
    fn a_fleet_file_is_streamed_by_parse_and_resolves_as_the_whole_tree_does() {
        let text = fleet(16_000, false);
        assert!(raw::parse_streamed(&text, |_, _| ()).is_some(), "{} bytes stream", text.len());
        let config = crate::config::parse("t.yaml", &text, crate::drivers::REGISTRY).expect("resolves");
        assert_eq!(format!("{config:?}"), format!("{:?}", whole(&text).expect("resolves")));
    }

    #[test]
    fn the_credentials_digest_changes_with_a_secret_or_login_and_not_with_a_line() {
        let digest = |login: &str, password: &str, extra_line: bool| {
            let extra = if extra_line { "  - {name: second, account: b, msisdn: \"+79031234568\"}\n" } else { "" };
            let text = format!(
                "accounts:\n  b: {{driver: beeline, login: \"{login}\", password: {password}}}\nlines:\n  - {{name: x, account: b, msisdn: \"+79031234567\"}}\n{extra}"
            );
            crate::config::parse("t.yaml", &text, crate::drivers::REGISTRY).expect("config").accounts[0].credentials
        };
        let base = digest("9031234567", "secret-1", false);
        assert_eq!(base, digest("9031234567", "secret-1", true), "lines are not credentials");
        assert_ne!(base, digest("9031234567", "secret-2", false), "a new password");
        assert_ne!(base, digest("9031234568", "secret-1", false), "a new login");
    }
}
