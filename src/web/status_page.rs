//! The `/` status page: one server-rendered HTML table of every line (no JS build), sortable
//! by a `sort` query parameter, with lines at or under a threshold highlighted, and above it
//! the accounts that wait for a person to log in again.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::config::{ByteSize, Global};
use crate::drivers::onboarding::Waiting;
use crate::store::StoreView;

use super::api::LineView;

/// Columns the table can be sorted by (`/?sort=balance`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Operator,
    Balance,
    Data,
    LastSuccess,
    Status,
}

impl SortKey {
    pub fn parse(text: Option<&str>) -> SortKey {
        match text.unwrap_or("") {
            "operator" => SortKey::Operator,
            "balance" => SortKey::Balance,
            "data" => SortKey::Data,
            "last_success" => SortKey::LastSuccess,
            "status" => SortKey::Status,
            _ => SortKey::Name,
        }
    }
}

pub fn render(
    view: &StoreView<'_>,
    global: &Global,
    now: SystemTime,
    sort: SortKey,
    reload_ok: bool,
    waiting: &[Waiting],
) -> String {
    let mut lines: Vec<LineView> = view.lines().map(|s| LineView::new(s, global, now)).collect();
    sort_lines(&mut lines, sort);
    let failing = lines.iter().filter(|l| l.last_poll_success == Some(false)).count();
    let low = lines.iter().filter(|l| l.low).count();

    let mut html = String::with_capacity(4096 + lines.len() * 512);
    html.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>esim-exporter</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}",
        "table{border-collapse:collapse;width:100%}th,td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left}",
        "th a{color:inherit}td.num{text-align:right;font-variant-numeric:tabular-nums}",
        "tr.low{background:#fde2e1}tr.failing td.status{color:#b00020;font-weight:600}",
        ".muted{color:#777}#needs-login{border:2px solid #b00020;padding:.2em 1em;margin-bottom:1em}</style></head><body>\n",
        "<h1>esim-exporter</h1>\n"
    ));
    let _ = writeln!(
        html,
        "<p id=\"summary\">{} lines · <span id=\"failing\">{failing}</span> failing · <span id=\"low\">{low}</span> at or under a threshold · config reload {} · <a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/lines\">JSON</a></p>",
        lines.len(),
        if reload_ok { "ok" } else { "<strong>failed</strong>" },
    );
    write_waiting(&mut html, waiting, now);
    html.push_str("<table id=\"lines\"><thead><tr>");
    for (label, key) in [
        ("Line", "name"),
        ("Operator", "operator"),
        ("Account", ""),
        ("Balance", "balance"),
        ("Data left", "data"),
        ("Last success", "last_success"),
        ("Status", "status"),
        ("Last error", ""),
    ] {
        if key.is_empty() {
            let _ = write!(html, "<th>{label}</th>");
        } else {
            let _ = write!(html, "<th><a href=\"/?sort={key}\">{label}</a></th>");
        }
    }
    html.push_str("</tr></thead><tbody>\n");
    for line in &lines {
        write_row(&mut html, line, now);
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    html
}

/// Accounts that wait for a person: what happened and the one command that helps.
fn write_waiting(html: &mut String, waiting: &[Waiting], now: SystemTime) {
    if waiting.is_empty() {
        return;
    }
    html.push_str("<section id=\"needs-login\"><h2>Accounts waiting for a person to log in</h2><ul>\n");
    for w in waiting {
        let since = crate::clock::unix_seconds(w.since);
        let _ = writeln!(
            html,
            "<li data-account=\"{account}\"><strong>{account}</strong> ({driver}): {why}, {ago} ago. Not polled until then: run <code>esim-exporter login --account {account}</code>, then reload.</li>",
            account = escape(&w.account),
            driver = escape(w.driver),
            why = escape(&w.why),
            ago = age(now, since),
        );
    }
    html.push_str("</ul></section>\n");
}

fn write_row(html: &mut String, line: &LineView, now: SystemTime) {
    let mut classes = Vec::new();
    if line.low {
        classes.push("low");
    }
    if line.last_poll_success == Some(false) {
        classes.push("failing");
    }
    let reading = line.reading.as_ref();
    let balance = match reading.and_then(|r| r.balance.zip(r.currency.as_ref())) {
        Some((amount, currency)) => format!("{amount:.2} {}", escape(currency)),
        None => "<span class=\"muted\">–</span>".to_string(),
    };
    let data = match reading.and_then(|r| r.data_remaining_bytes) {
        Some(remaining) => match reading.and_then(|r| r.data_quota_bytes) {
            Some(quota) => format!("{} of {}", ByteSize(remaining), ByteSize(quota)),
            None => ByteSize(remaining).to_string(),
        },
        None => "<span class=\"muted\">–</span>".to_string(),
    };
    let last_success = match line.last_success_timestamp {
        Some(ts) => format!("{} ago", age(now, ts)),
        None => "<span class=\"muted\">never</span>".to_string(),
    };
    let status = match line.last_poll_success {
        Some(true) => "ok",
        Some(false) => "failing",
        None => "pending",
    };
    let error = match &line.last_error {
        Some(e) => format!("{}: {} ({} ago)", e.reason, escape(&e.message), age(now, e.timestamp)),
        None => String::new(),
    };
    let _ = writeln!(
        html,
        "<tr class=\"{}\" data-line=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{balance}</td><td class=\"num\">{data}</td><td>{last_success}</td><td class=\"status\">{status}</td><td>{error}</td></tr>",
        classes.join(" "),
        escape(&line.name),
        escape(&line.name),
        escape(&line.operator),
        escape(&line.account),
    );
}

fn sort_lines(lines: &mut [LineView], sort: SortKey) {
    let balance = |l: &LineView| l.reading.as_ref().and_then(|r| r.balance).unwrap_or(f64::INFINITY);
    let data = |l: &LineView| l.reading.as_ref().and_then(|r| r.data_remaining_bytes).unwrap_or(u64::MAX);
    match sort {
        SortKey::Name => lines.sort_by(|a, b| a.name.cmp(&b.name)),
        SortKey::Operator => lines.sort_by(|a, b| (&a.operator, &a.name).cmp(&(&b.operator, &b.name))),
        SortKey::Balance => lines.sort_by(|a, b| balance(a).total_cmp(&balance(b)).then(a.name.cmp(&b.name))),
        SortKey::Data => lines.sort_by(|a, b| data(a).cmp(&data(b)).then(a.name.cmp(&b.name))),
        SortKey::LastSuccess => lines.sort_by(|a, b| {
            let (x, y) = (a.last_success_timestamp.unwrap_or(0.0), b.last_success_timestamp.unwrap_or(0.0));
            x.total_cmp(&y).then(a.name.cmp(&b.name))
        }),
        SortKey::Status => lines.sort_by_key(|l| (l.last_poll_success != Some(false), !l.low, l.name.clone())),
    }
}

fn age(now: SystemTime, timestamp: f64) -> String {
    let secs = (crate::clock::unix_seconds(now) - timestamp).max(0.0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn accounts_waiting_for_a_person_are_listed_with_the_command_that_helps() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let mut html = String::new();
        write_waiting(&mut html, &[], now);
        assert!(html.is_empty(), "nothing shown while nobody waits");
        let waiting = Waiting {
            account: "corp<mf>".into(),
            driver: "megafon",
            why: "MegaFon asks for a captcha".into(),
            since: now - std::time::Duration::from_secs(120),
        };
        write_waiting(&mut html, &[waiting], now);
        assert!(html.contains("esim-exporter login --account corp&lt;mf&gt;"), "{html}");
        assert!(html.contains("MegaFon asks for a captcha, 2m ago"), "{html}");
    }

    #[test]
    fn unknown_sort_keys_sort_by_name() {
        assert_eq!(SortKey::parse(Some("nonsense")), SortKey::Name);
        assert_eq!(SortKey::parse(Some("balance")), SortKey::Balance);
        assert_eq!(SortKey::parse(None), SortKey::Name);
    }
}
