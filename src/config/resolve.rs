//! Raw tree → resolved [`Config`]: defaults, account inheritance, driver options through the
//! registry, name and label rules. Collects every problem instead of stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::diagnostics::{self, hint, Severity};
use super::discover;
use super::fields::{Fields, Sink};
use super::raw::{Node, Pos, Value};
use super::{Account, AlertThresholds, Config, ConfigError, DriverOptions, Global, Labels, Line};
use crate::drivers::{self, DriverSpec};

/// Labels the exporter sets itself; a user label with one of these names would clash.
const RESERVED_LABELS: &[&str] = &[
    "line", "operator", "account", "driver", "currency", "reason", "msisdn", "iccid", "plan", "code", "le", "quantile",
];

/// Labels that belong to Prometheus target labels, not to each line (DESIGN §4).
const TARGET_LABELS: &[&str] = &["env", "region", "cluster", "job", "instance"];

const LINE_NAME_MAX: usize = 128;

pub fn resolve(file: &str, tree: &Node) -> Result<Config, ConfigError> {
    resolve_with(Sink::new(file), tree)
}

pub(super) fn resolve_with(sink: Sink, tree: &Node) -> Result<Config, ConfigError> {
    let mut root = Fields::new(&sink, "", tree);
    let global = root.map("global").map(resolve_global).unwrap_or_default();
    let mut broken = HashSet::new();
    let accounts = root.node("accounts").map(|n| resolve_accounts(&sink, n, &global, &mut broken)).unwrap_or_default();
    let lines_node = root.node("lines");
    root.finish("at the top level (expected global, accounts, lines)");

    let mut declared: Vec<Arc<Account>> = accounts.values().map(|(a, _)| a.clone()).collect();
    declared.sort_by(|a, b| a.name.cmp(&b.name));
    let mut implicit = Vec::new();
    let lines = match lines_node {
        Some(node) => resolve_lines(&sink, node, &global, (&accounts, &broken), &mut implicit),
        None => Vec::new(),
    };
    let discovering = accounts.values().any(|(a, _)| a.discover.is_some());
    if lines.is_empty() && !discovering && sink.error_count() == 0 {
        sink.error(Some(tree.pos), "lines", "the config has no lines to poll");
    }
    warn_unused_accounts(&sink, &accounts, &lines);

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

/// Account-level keys shared by every driver; the rest belongs to the driver.
struct Common {
    labels: Labels,
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
    operator: Option<String>,
    poll_interval: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
}

/// Reads `accounts:`; names whose driver is missing or unknown go to `broken`, so that their
/// lines are not reported again as naming an unknown account.
fn resolve_accounts(sink: &Sink, node: &Node, global: &Global, broken: &mut HashSet<String>) -> AccountTable {
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
        let Some(spec) = driver_of(&mut f) else {
            broken.insert(key.name.clone());
            continue;
        };
        let common = take_common(&mut f);
        let rate_limit = f.rate("rate_limit").or(spec.default_rate_limit);
        let max_concurrency = f.u64_in("max_concurrency", 1, 10_000).map(|n| n as usize);
        let discover = match f.node("discover").map(|n| n.pos) {
            Some(pos) if !spec.can_discover => {
                f.error("discover", pos, format!("driver `{}` cannot discover lines", spec.name));
                None
            }
            Some(_) => f.map("discover").map(|d| {
                let defaults = discover::LineDefaults {
                    operator: common.operator.clone().unwrap_or_else(|| spec.default_operator.to_string()),
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
            labels: common.labels,
            rate_limit,
            max_concurrency,
            alert: common.alert.or(global.alert),
            discover,
        };
        let defaults = AccountDefaults {
            pos: key.pos,
            operator: common.operator,
            poll_interval: common.poll_interval,
            timeout: common.timeout,
        };
        table.insert(key.name.clone(), (Arc::new(account), defaults));
    }
    table
}

/// Takes `driver:` and finds it in the registry, reporting unknown names with a hint.
fn driver_of(f: &mut Fields<'_>) -> Option<&'static DriverSpec> {
    let Some(pos) = f.node("driver").map(|n| n.pos) else {
        let known = drivers::names().join(", ");
        f.sink().error(Some(f.pos()), f.path(), format!("missing required key `driver` (known: {known})"));
        return None;
    };
    let name = f.string("driver")?;
    match drivers::lookup(&name) {
        Some(spec) => Some(spec),
        None => {
            let known = drivers::names();
            let hint = hint(&name, known.iter().copied());
            f.error("driver", pos, format!("unknown driver `{name}`{hint}; known: {}", known.join(", ")));
            None
        }
    }
}

fn resolve_lines(
    sink: &Sink,
    node: &Node,
    global: &Global,
    accounts: (&AccountTable, &HashSet<String>),
    implicit: &mut Vec<Arc<Account>>,
) -> Vec<Arc<Line>> {
    let Value::Seq(items) = &node.value else {
        sink.error(Some(node.pos), "lines", format!("expected a list of lines, found {}", node.value.kind()));
        return Vec::new();
    };
    let mut lines = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, Pos> = HashMap::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let name_hint = line_name_hint(item);
        let path = match &name_hint {
            Some(name) => format!("lines[{index}] ({name})"),
            None => format!("lines[{index}]"),
        };
        let mut f = Fields::new(sink, path, item);
        if let Some(line) = resolve_line(&mut f, global, accounts, implicit) {
            match seen.get(&line.name) {
                Some(first) => f.error(
                    "name",
                    item.pos,
                    format!("duplicate line name `{}` (first used at line {})", line.name, first.line),
                ),
                None => {
                    seen.insert(line.name.clone(), item.pos);
                    lines.push(Arc::new(line));
                }
            }
        }
    }
    lines
}

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
    implicit: &mut Vec<Arc<Account>>,
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
            let spec = driver_of(f)?;
            if spec.needs_account {
                f.error(
                    "driver",
                    driver_pos.unwrap_or(f.pos()),
                    format!("driver `{}` needs an account: declare it under `accounts:` and set `account:`", spec.name),
                );
                return None;
            }
            let rate_limit = f.rate("rate_limit").or(spec.default_rate_limit);
            let options = (spec.account_options)(f);
            let account = Arc::new(Account {
                name: name.clone().unwrap_or_default(),
                implicit: true,
                driver: spec,
                options,
                labels: Vec::new(),
                rate_limit,
                max_concurrency: None,
                alert: global.alert,
                discover: None,
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
    Some(Line {
        operator: common.operator.or(defaults.operator).unwrap_or_else(|| spec.default_operator.to_string()),
        labels: merge_labels(&account.labels, common.labels),
        alert: common.alert.or(account.alert),
        name,
        account,
        msisdn,
        iccid,
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
    }
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

fn resolve_labels(f: &mut Fields<'_>) -> Labels {
    let mut labels = Labels::new();
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

/// Why `name` cannot be a user label, if it cannot.
pub(super) fn label_name_problem(name: &str) -> Option<String> {
    if !is_label_name(name) {
        Some(format!("`{name}` is not a valid label name (letters, digits and _, not starting with a digit)"))
    } else if name.starts_with("__") {
        Some("label names starting with `__` are reserved by Prometheus".to_string())
    } else if RESERVED_LABELS.contains(&name) {
        Some(format!("`{name}` is set by the exporter itself; choose another label name"))
    } else {
        None
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Account labels overlaid with the line's own (the line wins), sorted.
fn merge_labels(account: &Labels, line: Labels) -> Labels {
    let mut merged: BTreeMap<String, String> = account.iter().cloned().collect();
    merged.extend(line);
    merged.into_iter().collect()
}

fn warn_unused_accounts(sink: &Sink, accounts: &AccountTable, lines: &[Arc<Line>]) {
    for (name, (account, defaults)) in accounts {
        if account.discover.is_none() && !lines.iter().any(|l| Arc::ptr_eq(&l.account, account)) {
            sink.warning(Some(defaults.pos), &format!("accounts.{name}"), "account is not used by any line");
        }
    }
}
