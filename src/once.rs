//! The two one-shot modes: `--config.check` (validate and summarise) and `--once` (poll every
//! line once, print a table or JSON, exit non-zero if any poll failed).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use crate::app::ConfigSource;
use crate::cli::OutputFormat;
use crate::clock::SharedClock;
use crate::config::{ByteSize, Config};
use crate::poll::Shard;
use crate::store::Store;
use std::time::SystemTime;

use crate::web::api::{LineStatus, LinesQuery, Row};
use crate::web::status_page;
use crate::{Outcome, RunError};

/// `--config.check`: errors and warnings to stderr, the summary to stdout.
pub fn check_config(source: &ConfigSource) -> Outcome {
    match source.load() {
        Ok(mut config) => {
            // What the fleet asks of each operator: rate limits, monthly caps, floors.
            let budget = crate::poll::budget::warnings(&config, Arc::new(crate::clock::SystemClock));
            config.warnings.extend(budget);
            for warning in &config.warnings {
                eprintln!("{warning}");
            }
            print!("{}", summary(&config, &source.describe()));
            Outcome::Ok
        }
        Err(err) => {
            eprintln!("{err}");
            let errors = err.diagnostics.iter().filter(|d| d.is_error()).count();
            for warning in err.diagnostics.iter().filter(|d| !d.is_error()) {
                eprintln!("{warning}");
            }
            eprintln!("config {} is invalid: {errors} error(s)", source.describe());
            Outcome::Failed
        }
    }
}

/// Lines per driver and account, with the polling settings that matter for operator limits.
pub fn summary(config: &Config, source: &str) -> String {
    let mut per_account: BTreeMap<(&str, &str), (usize, std::time::Duration)> = BTreeMap::new();
    for line in &config.lines {
        let key = (line.driver().name, if line.account.implicit { "(none)" } else { line.account.name.as_str() });
        let entry = per_account.entry(key).or_insert((0, line.poll_interval));
        entry.0 += 1;
        entry.1 = entry.1.min(line.poll_interval);
    }
    // Accounts that discover their lines show even before any is listed.
    for account in config.accounts.iter().filter(|a| a.discover.is_some()) {
        let interval = account.discover.as_ref().map_or(config.global.poll_interval, |d| d.line.poll_interval);
        let entry = per_account.entry((account.driver.name, account.name.as_str())).or_insert((0, interval));
        entry.1 = entry.1.min(interval);
    }
    let declared = config.accounts.iter().filter(|a| !a.implicit).count();
    let mut out = format!(
        "config OK: {source}\n{} lines, {declared} accounts, {} warnings\n\n{:<12} {:<24} {:>7} {:>14}  {}\n",
        config.lines.len(),
        config.warnings.len(),
        "DRIVER",
        "ACCOUNT",
        "LINES",
        "MIN INTERVAL",
        "RATE LIMIT"
    );
    for ((driver, account), (lines, interval)) in &per_account {
        let rate = config
            .accounts
            .iter()
            .find(|a| a.name == *account && !a.implicit)
            .and_then(|a| a.rate_limit)
            .map_or("-".to_string(), |r| r.to_string());
        let discovers = config.accounts.iter().any(|a| a.name == *account && a.discover.is_some());
        let lines = if discovers { format!("{lines}+disc") } else { lines.to_string() };
        out.push_str(&format!(
            "{driver:<12} {account:<24} {lines:>7} {:>14}  {rate}\n",
            humantime::format_duration(*interval).to_string()
        ));
    }
    out
}

/// `--once`: polls every line once through the scheduler's own poll path (limits, timeouts),
/// prints the result, and fails if any poll failed.
pub async fn poll_all_once(
    source: &ConfigSource,
    clock: SharedClock,
    shard: Option<Shard>,
    output: OutputFormat,
) -> Result<Outcome, RunError> {
    let config = source.load().map_err(|e| RunError::Load { source_name: source.describe(), error: e.into() })?;
    let store = Arc::new(Store::new());
    let total = crate::poll::poll_once(&config, &store, clock.clone(), shard, progress_reporter())
        .await
        .map_err(|e| RunError::Load { source_name: source.describe(), error: e.into() })?;
    let now = clock.now();
    let rows = crate::web::api::snapshot(&store, &config.global, now);
    let failed = rows.iter().filter(|r| r.last_poll_ok != Some(true)).count();
    let query = LinesQuery { limit: usize::MAX, ..LinesQuery::default() };
    match output {
        OutputFormat::Json => {
            let mut response = crate::web::api::respond(&rows, &query, &config.global, now);
            response.limit = response.total;
            match serde_json::to_string_pretty(&response) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot encode JSON: {e}"),
            }
        }
        OutputFormat::Table => {
            let (page, _) = query.page(&rows);
            print!("{}", table(&page, now, std::io::stdout().is_terminal()));
        }
        OutputFormat::Csv => {
            let (page, _) = query.page(&rows);
            print!("{}", csv(&page));
        }
    }
    eprintln!("{total} lines polled, {failed} failed");
    Ok(if failed == 0 { Outcome::Ok } else { Outcome::Failed })
}

/// On a terminal, a one-line progress counter on stderr; elsewhere nothing.
fn progress_reporter() -> Option<Box<dyn Fn(usize, usize) + Send + Sync>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(Box::new(|done, total| {
        eprint!("\rpolled {done}/{total}");
        if done == total {
            eprintln!();
        }
    }))
}

const HEADERS: [&str; 9] =
    ["LINE", "OPERATOR", "ACCOUNT", "BALANCE", "DATA LEFT", "QUOTA", "EXPIRES", "STATUS", "ERROR"];

/// The cells of one line: what the table and the CSV show.
fn cells(row: &Row, now: SystemTime, human: bool) -> [String; 9] {
    let reading = row.reading.as_ref();
    let balance = reading.and_then(|r| r.balance).map_or("-".to_string(), |m| {
        if human {
            format!("{} {}", status_page::group(m.amount), m.currency)
        } else {
            format!("{:.2} {}", m.amount, m.currency)
        }
    });
    let size = |b: Option<ByteSize>| {
        b.map_or("-".to_string(), |b| if human { status_page::bytes(b.bytes()) } else { b.bytes().to_string() })
    };
    let expiry = reading.and_then(|r| r.quota_expiry).map_or("-".to_string(), |t| {
        if human {
            status_page::left(now, t)
        } else {
            httpdate::fmt_http_date(t)
        }
    });
    let status = match row.state() {
        LineStatus::Ok if row.low() => "low",
        LineStatus::Failing => "failed",
        s => s.as_str(),
    };
    let error = row.last_error.as_ref().filter(|_| row.last_poll_ok == Some(false));
    [
        row.line.name.clone(),
        row.line.operator.to_string(),
        row.line.account.label().to_string(),
        balance,
        size(reading.and_then(|r| r.data_remaining)),
        size(reading.and_then(|r| r.data_quota)),
        expiry,
        status.to_string(),
        error.map_or(String::new(), |e| format!("{}: {}", e.reason, e.message)),
    ]
}

/// Aligned columns (numbers right-aligned); colour only when `colour` (stdout is a terminal).
fn table(rows: &[&Row], now: SystemTime, colour: bool) -> String {
    let body: Vec<[String; 9]> = rows.iter().map(|r| cells(r, now, true)).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for cells in &body {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let right = |i: usize| matches!(i, 3..=5);
    let mut out = String::new();
    let mut line = |cells: &[String], paint: &dyn Fn(usize, &str) -> String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i == cells.len() - 1;
            let pad = widths[i].saturating_sub(cell.chars().count());
            let painted = paint(i, cell);
            if right(i) {
                text.push_str(&" ".repeat(pad));
                text.push_str(&painted);
            } else {
                text.push_str(&painted);
                if !last {
                    text.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                text.push_str("  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    let header: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    line(&header, &|_, c| if colour { format!("\x1b[1m{c}\x1b[0m") } else { c.to_string() });
    for cells in &body {
        let status = cells[7].clone();
        line(cells, &|i, c| {
            if !colour {
                return c.to_string();
            }
            let code = match (i, status.as_str()) {
                (7, "ok") => "32",
                (7, "failed") | (8, "failed") => "31",
                (7, "low") | (3, "low") | (4, "low") => "33",
                (7, "pending") => "2",
                _ => return c.to_string(),
            };
            format!("\x1b[{code}m{c}\x1b[0m")
        });
    }
    out
}

/// RFC 4180 CSV with plain numbers (bytes, amounts) and HTTP dates.
fn csv(rows: &[&Row]) -> String {
    let quote = |c: &str| {
        if c.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", c.replace('"', "\"\""))
        } else {
            c.to_string()
        }
    };
    let mut out = HEADERS.map(|h| h.to_lowercase().replace(' ', "_")).join(",");
    out.push('\n');
    let now = SystemTime::now();
    for row in rows {
        let cells = cells(row, now, false);
        out.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let config =
            crate::config::parse("t.yaml", "lines:\n  - {name: \"a,b\", driver: demo}\n", crate::drivers::REGISTRY)
                .unwrap();
        let store = Store::new();
        store.apply_plan(&config.lines);
        let rows = crate::web::api::snapshot(&store, &config.global, SystemTime::now());
        let refs: Vec<&Row> = rows.iter().collect();
        let text = csv(&refs);
        assert!(text.starts_with("line,operator,account,balance,data_left,quota,expires,status,error\n"), "{text}");
        assert!(text.contains("\"a,b\",demo,,-,-,-,-,pending,"), "{text}");
        let table = table(&refs, SystemTime::now(), false);
        assert!(!table.contains('\x1b'), "{table}");
        assert!(table.lines().nth(1).unwrap().starts_with("a,b   "), "{table}");
        let coloured = super::table(&refs, SystemTime::now(), true);
        assert!(coloured.contains("\x1b[1mLINE\x1b[0m") && coloured.contains("\x1b[2mpending\x1b[0m"), "{coloured}");
    }
}
