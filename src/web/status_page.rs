//! The `/` status page: one self-contained HTML page (inline CSS and JS, no external assets).
//! The server renders the summary tiles and the first page of rows from a snapshot (see
//! `api::snapshot`), so the page reads without JS; the script then drives sorting, filtering,
//! paging and auto-refresh through `/api/v1/lines`, keeping its state in the URL.
//! Every value from the config or an operator is HTML-escaped here and set as text by the JS.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::config::ByteSize;
use crate::drivers::onboarding::Waiting;
use crate::metrics::exporter_self::{REVISION, VERSION};

use super::api::{LineStatus, LinesQuery, Row, Summary};
use super::Links;

/// Rows per page on the status page.
pub const PAGE_ROWS: usize = 100;

/// What the page shows besides the rows.
pub struct PageContext<'a> {
    pub now: SystemTime,
    /// Hrefs are relative to the page (`./metrics`), so they work whether a proxy keeps or
    /// strips the prefix; text meant to be copied (a probe URL) is absolute when
    /// `--web.external-url` says where the exporter is.
    pub links: &'a Links,
    pub reload_ok: bool,
    pub waiting: &'a [Waiting],
}

pub fn render(summary: &Summary, page: &[&Row], total: usize, query: &LinesQuery, cx: &PageContext<'_>) -> String {
    let mut html = String::with_capacity(16 * 1024 + page.len() * 600);
    let telemetry = escape(&relative(&cx.links.telemetry_path));
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>esim-exporter · {lines} lines</title><style>{STYLE}</style></head>\n<body>\n\
<header><div class=\"brand\"><span class=\"logo\" aria-hidden=\"true\">◧</span><div><h1>esim-exporter</h1>\
<p class=\"sub\">Balance and data left on your mobile lines</p></div></div>\
<nav aria-label=\"Exporter\"><a href=\"{telemetry}\">Metrics</a><a href=\"api/v1/lines\">JSON API</a>\
<a href=\"-/ready\">Readiness</a></nav></header>\n<main>\n",
        lines = summary.lines,
    );
    if !cx.reload_ok {
        html.push_str("<p class=\"alert\" role=\"alert\">The last config reload <strong>failed</strong>: the exporter runs the previous config. See its log.</p>\n");
    }
    write_waiting(&mut html, cx.waiting, cx.now);
    write_tiles(&mut html, summary);
    write_controls(&mut html, summary, query);
    html.push_str(
        "<div class=\"table-wrap\"><table id=\"lines\"><caption class=\"sr\">Lines, one per row</caption><thead><tr>",
    );
    for (label, key, class) in COLUMNS {
        let sort = if key.is_empty() {
            String::new()
        } else if query.sort.as_str() == *key {
            format!(" aria-sort=\"{}\"", if query.descending { "descending" } else { "ascending" })
        } else {
            String::new()
        };
        if key.is_empty() {
            let _ = write!(html, "<th scope=\"col\" class=\"{class}\">{label}</th>");
        } else {
            let _ = write!(
                html,
                "<th scope=\"col\" class=\"{class}\"{sort}><button type=\"button\" data-sort=\"{key}\">{label}<span class=\"arrow\" aria-hidden=\"true\"></span></button></th>"
            );
        }
    }
    html.push_str("</tr></thead><tbody id=\"rows\">\n");
    for row in page {
        write_row(&mut html, row, cx.now);
    }
    if page.is_empty() {
        html.push_str("<tr class=\"empty\"><td colspan=\"9\">No line matches.</td></tr>\n");
    }
    let shown_to = (query.offset + page.len()).min(total);
    let _ = write!(
        html,
        "</tbody></table></div>\n<div class=\"pager\"><button type=\"button\" id=\"prev\">← Previous</button>\
<span id=\"range\" aria-live=\"polite\">{from}–{shown_to} of {total}</span><button type=\"button\" id=\"next\">Next →</button></div>\n\
<dialog id=\"detail\" aria-labelledby=\"detail-name\"><form method=\"dialog\" class=\"close\"><button type=\"submit\" aria-label=\"Close\">×</button></form><div id=\"detail-body\"></div></dialog>\n\
</main>\n<footer><span>esim-exporter {version} · revision {revision}</span>\
<span>Probe one line now: <code>{probe}</code> · <a href=\"{telemetry}\">{telemetry_text}</a></span>\
<span id=\"updated\" aria-live=\"polite\">Updated {at}</span></footer>\n\
<script id=\"config\" type=\"application/json\">{{\"telemetry\":\"{telemetry_js}\",\"pageRows\":{PAGE_ROWS},\"refreshSeconds\":10}}</script>\n\
<script>{SCRIPT}</script>\n</body></html>\n",
        from = if total == 0 { 0 } else { query.offset + 1 },
        version = escape(VERSION),
        revision = escape(REVISION),
        probe = escape(&probe_example(cx.links)),
        telemetry_text = escape(&cx.links.shown(&cx.links.telemetry_path)),
        telemetry_js = json_in_script(&relative(&cx.links.telemetry_path)),
        at = escape(&httpdate::fmt_http_date(cx.now)),
    );
    html
}

const COLUMNS: &[(&str, &str, &str)] = &[
    ("Line", "name", "c-name"),
    ("Operator", "operator", "c-op"),
    ("Account", "account", "c-acct"),
    ("Balance", "balance", "c-num"),
    ("Data left", "data", "c-data"),
    ("Expires", "expiry", "c-exp"),
    ("Last success", "last_success", "c-ago"),
    ("Status", "status", "c-status"),
    ("Last error", "", "c-err"),
];

/// `/metrics` → `./metrics`: relative, so the page works behind a path prefix.
fn relative(path: &str) -> String {
    format!("./{}", path.trim_start_matches('/'))
}

/// The probe URL to copy into a scrape config: absolute under `--web.external-url`, else
/// relative to the page like its links.
fn probe_example(links: &Links) -> String {
    match links.paths.external_url {
        Some(_) => links.shown("/probe?line=NAME"),
        None => "probe?line=NAME".to_string(),
    }
}

/// A string for a JSON literal inside `<script>`: no `"`, `\`, `<` or control characters.
fn json_in_script(text: &str) -> String {
    let json = serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    json[1..json.len() - 1].replace('<', "\\u003c")
}

fn write_tiles(html: &mut String, s: &Summary) {
    html.push_str("<section class=\"tiles\" aria-label=\"Summary\" id=\"tiles\">");
    let tile = |html: &mut String, id: &str, label: &str, value: String, tone: &str, state: &str| {
        let _ = write!(
            html,
            "<button type=\"button\" class=\"tile {tone}\" id=\"tile-{id}\" data-state=\"{state}\"><span class=\"v\">{value}</span><span class=\"l\">{label}</span></button>"
        );
    };
    tile(html, "lines", "Lines", s.lines.to_string(), "", "");
    tile(html, "pending", "Pending", s.pending.to_string(), if s.pending > 0 { "info" } else { "" }, "pending");
    tile(html, "failing", "Failing", s.failing.to_string(), if s.failing > 0 { "bad" } else { "good" }, "failing");
    tile(
        html,
        "low-balance",
        "Low balance",
        s.low_balance.to_string(),
        if s.low_balance > 0 { "warn" } else { "good" },
        "low",
    );
    tile(html, "low-data", "Low data", s.low_data.to_string(), if s.low_data > 0 { "warn" } else { "good" }, "low");
    for b in &s.balances {
        let _ = write!(
            html,
            "<div class=\"tile money\" data-currency=\"{c}\"><span class=\"v\">{amount} <small>{c}</small></span><span class=\"l\">total on {n} line{plural}</span></div>",
            c = escape(&b.currency),
            amount = group(b.total),
            n = b.lines,
            plural = if b.lines == 1 { "" } else { "s" },
        );
    }
    html.push_str("</section>\n");
}

fn write_controls(html: &mut String, s: &Summary, q: &LinesQuery) {
    let _ = write!(
        html,
        "<form class=\"controls\" id=\"filters\" role=\"search\" onsubmit=\"return false\">\
<label>Search<input type=\"search\" id=\"q\" name=\"q\" placeholder=\"name, site, plan…\" value=\"{}\" autocomplete=\"off\"></label>",
        escape(q.q.as_deref().unwrap_or(""))
    );
    let select = |html: &mut String, id: &str, label: &str, all: &str, options: &[String], chosen: Option<&str>| {
        let _ = write!(html, "<label>{label}<select id=\"{id}\" name=\"{id}\"><option value=\"\">{all}</option>");
        for o in options {
            let sel = if chosen == Some(o.as_str()) { " selected" } else { "" };
            let _ = write!(html, "<option value=\"{v}\"{sel}>{v}</option>", v = escape(o));
        }
        html.push_str("</select></label>");
    };
    select(html, "operator", "Operator", "All operators", &s.operators, q.operator.as_deref());
    select(html, "account", "Account", "All accounts", &s.accounts, q.account.as_deref());
    let states = ["failing".to_string(), "low".to_string(), "pending".to_string()];
    let chosen = q.state.map(|st| match st {
        super::api::StateFilter::Failing => "failing",
        super::api::StateFilter::Low => "low",
        super::api::StateFilter::Pending => "pending",
    });
    select(html, "state", "State", "Any state", &states, chosen);
    html.push_str("<label class=\"check\"><input type=\"checkbox\" id=\"auto\" checked> Auto-refresh</label></form>\n");
}

/// Accounts that wait for a person: what happened and the one command that helps.
fn write_waiting(html: &mut String, waiting: &[Waiting], now: SystemTime) {
    if waiting.is_empty() {
        return;
    }
    html.push_str("<section id=\"needs-login\" class=\"alert\"><h2>Accounts waiting for a person to log in</h2><ul>\n");
    for w in waiting {
        let ago = now.duration_since(w.since).unwrap_or_default();
        let _ = writeln!(
            html,
            "<li data-account=\"{account}\"><strong>{account}</strong> ({driver}): {why}, {ago} ago. Not polled until then: run <code>esim-exporter login --account {account}</code>, then reload.</li>",
            account = escape(&w.account),
            driver = escape(w.driver),
            why = escape(&w.why),
            ago = humantime::format_duration(std::time::Duration::from_secs(ago.as_secs())),
        );
    }
    html.push_str("</ul></section>\n");
}

fn write_row(html: &mut String, row: &Row, now: SystemTime) {
    let status = row.state();
    let mut classes = Vec::new();
    if row.low() {
        classes.push("low");
    }
    if status == LineStatus::Failing {
        classes.push("failing");
    }
    let reading = row.reading.as_ref();
    let dash = "<span class=\"muted\">–</span>";
    let balance = match reading.and_then(|r| r.balance) {
        Some(m) => format!("{} <small>{}</small>", group(m.amount), escape(m.currency.as_str())),
        None => dash.to_string(),
    };
    let data = match reading.and_then(|r| r.data_remaining) {
        Some(remaining) => match reading.and_then(|r| r.data_quota).filter(|q| q.bytes() > 0) {
            Some(quota) => {
                let pct = (remaining.bytes() as f64 / quota.bytes() as f64 * 100.0).clamp(0.0, 100.0);
                format!(
                    "<div class=\"bar{}\" role=\"img\" aria-label=\"{pct:.0}% left\"><span style=\"width:{pct:.1}%\"></span></div><span class=\"dt\">{remaining} <span class=\"muted\">of {quota}</span></span>",
                    if row.low_data { " low" } else { "" }
                )
            }
            None => format!("<span class=\"dt\">{remaining}</span>"),
        },
        None => dash.to_string(),
    };
    let expiry = reading.and_then(|r| r.quota_expiry).map_or(dash.to_string(), |t| escape(&left(now, t)));
    let last_success = row.last_success.map_or("<span class=\"muted\">never</span>".to_string(), |t| ago(now, t));
    let error = match &row.last_error {
        Some(e) => format!(
            "<span class=\"reason\">{}</span> {} <span class=\"muted\">({})</span>",
            escape(e.reason.as_str()),
            escape(&e.message),
            ago(now, e.at)
        ),
        None => String::new(),
    };
    let status_text = match status {
        LineStatus::Ok if row.low() => "low",
        s => s.as_str(),
    };
    let line = &row.line;
    let _ = writeln!(
        html,
        "<tr class=\"{classes}\" data-line=\"{name}\"><th scope=\"row\" class=\"c-name\">{name}</th><td class=\"c-op\">{op}</td><td class=\"c-acct\">{acct}</td><td class=\"c-num\">{balance}</td><td class=\"c-data\">{data}</td><td class=\"c-exp\">{expiry}</td><td class=\"c-ago\">{last_success}</td><td class=\"c-status\"><span class=\"badge {status_text}\">{status_text}</span></td><td class=\"c-err\">{error}</td></tr>",
        classes = classes.join(" "),
        name = escape(&line.name),
        op = escape(&line.operator),
        acct = escape(line.account.label()),
    );
}

/// `12,345.67`.
pub fn group(amount: f64) -> String {
    let text = format!("{:.2}", amount.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, "00"));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}{out}.{frac}", if amount < 0.0 { "-" } else { "" })
}

/// "just now", "3 min ago", "5 h ago", "2 d ago".
pub fn ago(now: SystemTime, then: SystemTime) -> String {
    let secs = now.duration_since(then).map_or(0, |d| d.as_secs());
    match secs {
        0..=9 => "just now".into(),
        10..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86_399 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// "12 d left", "5 h left", "40 min left", "expired".
pub fn left(now: SystemTime, until: SystemTime) -> String {
    let Ok(d) = until.duration_since(now) else { return "expired".into() };
    let secs = d.as_secs();
    match secs {
        0..=3599 => format!("{} min left", secs.div_ceil(60)),
        3600..=172_799 => format!("{} h left", secs / 3600),
        _ => format!("{} d left", secs / 86_400),
    }
}

/// Human bytes with IEC units (`1.5 GiB`).
pub fn bytes(n: u64) -> String {
    ByteSize(n).to_string()
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

const STYLE: &str = include_str!("status_page.css");
const SCRIPT: &str = include_str!("status_page.js");

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(json_in_script("/a\"</script>"), "/a\\\"\\u003c/script>");
    }

    #[test]
    fn human_units() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(ago(now, now - Duration::from_secs(190)), "3 min ago");
        assert_eq!(ago(now, now), "just now");
        assert_eq!(left(now, now + Duration::from_secs(12 * 86_400 + 5)), "12 d left");
        assert_eq!(left(now, now - Duration::from_secs(1)), "expired");
        assert_eq!(group(1234567.891), "1,234,567.89");
        assert_eq!(group(-5.0), "-5.00");
        assert_eq!(relative("/metrics"), "./metrics");
    }

    #[test]
    fn copied_urls_are_absolute_only_under_an_external_url() {
        let links = |external: Option<&str>, prefix: Option<&str>| Links {
            telemetry_path: "/metrics".into(),
            paths: crate::cli::WebPaths::resolve(external, prefix).unwrap(),
        };
        assert_eq!(probe_example(&links(None, None)), "probe?line=NAME");
        assert_eq!(probe_example(&links(None, Some("/esim"))), "probe?line=NAME");
        let proxied = links(Some("https://ops.example/esim"), Some("/"));
        assert_eq!(probe_example(&proxied), "https://ops.example/esim/probe?line=NAME");
        assert_eq!(proxied.shown("/metrics"), "https://ops.example/esim/metrics");
        assert_eq!(links(None, Some("/esim")).shown("/metrics"), "/esim/metrics");
    }

    #[test]
    fn accounts_waiting_for_a_person_are_listed_with_the_command_that_helps() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut html = String::new();
        write_waiting(&mut html, &[], now);
        assert!(html.is_empty(), "nothing shown while nobody waits");
        let waiting = Waiting {
            account: "corp<mf>".into(),
            driver: "megafon",
            why: "MegaFon asks for a captcha".into(),
            since: now - Duration::from_secs(120),
        };
        write_waiting(&mut html, &[waiting], now);
        assert!(html.contains("esim-exporter login --account corp&lt;mf&gt;"), "{html}");
        assert!(html.contains("MegaFon asks for a captcha, 2m ago"), "{html}");
    }
}
