//! Turns an account's listing into lines by its `discover:` block (parsed in
//! `config::discover`): filters, names and labels from the templates, configured lines first.
//! Apart from the parsing so that `discover:` (which the driver contract's `Account` holds) does
//! not import the contract's `Line` and `DiscoveredLine`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::discover::NAME_MAX;
use super::labels::Interner;
use crate::drivers::contract::{Account, DiscoveredLine, Line};

/// What [`materialize`] needs to know about the configured lines: they win over discovered ones.
#[derive(Debug, Default)]
pub struct Configured {
    names: HashSet<String>,
    /// (account, ICCID or MSISDN digits) of configured lines.
    sims: HashSet<(String, String)>,
    /// `global.expose_msisdn`: discovered line names may carry full ICCIDs and MSISDNs.
    expose_identifiers: bool,
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

    /// With `global.expose_msisdn` (otherwise identifiers in discovered names are masked).
    pub fn exposing(mut self, expose_identifiers: bool) -> Configured {
        self.expose_identifiers = expose_identifiers;
        self
    }

    fn covers(&self, account: &str, sim: &DiscoveredLine) -> bool {
        [&sim.iccid, &sim.msisdn].into_iter().flatten().any(|s| self.sims.contains(&(account.to_string(), digits(s))))
    }
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// An ICCID or MSISDN as a line name may carry it without `expose_msisdn`: its last four
/// digits (`*0001`). A line name is a label on every series and is shown everywhere, so it
/// must not hold the whole number; the tail is enough to find the SIM in the platform.
fn name_form(id: &str) -> String {
    let digits = digits(id);
    let tail = &digits[digits.len().saturating_sub(4)..];
    format!("*{tail}")
}

/// A short, stable tag that tells apart SIMs whose masked names collide.
fn tag(id: &str) -> String {
    // FNV-1a: stable across runs and versions (std's hasher is not).
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:06x}", hash & 0xff_ffff)
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
        // Names and labels show identifiers masked unless `expose_msisdn`; filters see them whole.
        let personal_id = [&sim.iccid, &sim.msisdn].into_iter().flatten().any(|s| digits(s) == digits(&sim.id));
        let mask = !configured.expose_identifiers;
        let shown_id = if mask && personal_id { name_form(&sim.id) } else { sim.id.clone() };
        let shown = |field: &str| -> Option<String> {
            match field {
                "id" => Some(shown_id.clone()),
                "iccid" | "msisdn" if mask => lookup(field).map(|v| name_form(&v)),
                other => lookup(other),
            }
        };
        let disambiguator = if mask && personal_id { tag(&sim.id) } else { sim.id.clone() };
        if !discover.include.iter().all(|f| f.matches(&lookup)) || discover.exclude.iter().any(|f| f.matches(&lookup)) {
            out.filtered += 1;
            continue;
        }
        if configured.covers(&account.name, sim) {
            out.overridden += 1;
            continue;
        }
        let mut name = clean_name(&discover.name.render(&shown));
        if name.is_empty() {
            name = format!("{}-{shown_id}", account.name);
        }
        if configured.names.contains(&name) {
            out.overridden += 1;
            continue;
        }
        if lines.contains_key(&name) || taken.contains(&name) {
            name = format!("{name}-{disambiguator}");
        }
        if name.chars().count() > NAME_MAX || lines.contains_key(&name) || taken.contains(&name) {
            out.problems.push(format!("SIM {shown_id} left out: its line name is too long or not unique"));
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
            let value = template.render(&shown);
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
    use std::time::Duration;

    use super::*;
    use crate::config::alert::AlertThresholds;
    use crate::config::discover::{Discover, Filter, LineDefaults, Template, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
    use crate::config::labels::Labels;
    use crate::drivers::contract::DriverOptions;

    fn account(discover: Discover) -> Arc<Account> {
        Arc::new(Account {
            name: "fleet".into(),
            implicit: false,
            driver: &crate::drivers::demo::SPEC,
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
        let exposed = Configured::default().exposing(true);
        let out = materialize(&account, &listed, &exposed, &mut HashSet::new());
        let names: Vec<&str> = out.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fleet-8900000000000000006", "tracker-1", "tracker-1-8900000000000000005", "tracker-3"]);
        // Without expose_msisdn the ICCIDs in names are masked; collisions get a stable tag.
        let masked = materialize(&account, &listed, &Configured::default(), &mut HashSet::new());
        let names: Vec<&str> = masked.lines.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fleet-*0006", "tracker-1", "tracker-1-bcff5d", "tracker-3"]);
        assert!(masked.lines.iter().all(|l| !l.name.contains("8900000000")), "{names:?}");
        let by_iccid = self::account(discover("sim-{iccid}"));
        let masked = materialize(&by_iccid, &listed, &Configured::default(), &mut HashSet::new());
        assert!(masked.lines.iter().all(|l| l.name.starts_with("sim-*000")), "{:?}", masked.lines);
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
