//! The lines table of `--once` and of the `lines` subcommand: aligned text (colour on a
//! terminal) and RFC 4180 CSV. Both commands turn what they have (`--once` a store snapshot,
//! `lines` the API's JSON) into [`TableLine`]s and print them here, so the two look the same.

use std::time::SystemTime;

use crate::web::api::{LineStatus, Row};
use crate::web::status_page;

/// What the table shows of one line, whatever it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableLine {
    pub name: String,
    pub operator: String,
    pub account: String,
    pub balance: Option<f64>,
    pub currency: Option<String>,
    pub data_remaining: Option<u64>,
    pub data_quota: Option<u64>,
    pub expiry: Option<SystemTime>,
    pub status: TableStatus,
    /// `reason: message` of the last poll, only when it failed.
    pub error: Option<String>,
}

/// The STATUS column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TableStatus {
    Ok,
    /// The last poll succeeded and a value is at or under its threshold.
    Low,
    Failed,
    #[default]
    Pending,
}

impl TableStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TableStatus::Ok => "ok",
            TableStatus::Low => "low",
            TableStatus::Failed => "failed",
            TableStatus::Pending => "pending",
        }
    }
}

impl TableLine {
    /// A row of a store snapshot (`--once`).
    pub fn of_row(row: &Row) -> TableLine {
        let reading = row.reading.as_ref();
        let status = match row.state() {
            LineStatus::Ok if row.low() => TableStatus::Low,
            LineStatus::Ok => TableStatus::Ok,
            LineStatus::Failing => TableStatus::Failed,
            LineStatus::Pending => TableStatus::Pending,
        };
        let error = row.last_error.as_ref().filter(|_| row.last_poll_ok == Some(false));
        TableLine {
            name: row.line.name.clone(),
            operator: row.line.operator.to_string(),
            account: row.line.account.label().to_string(),
            balance: reading.and_then(|r| r.balance).map(|m| m.amount),
            currency: reading.and_then(|r| r.balance).map(|m| m.currency.to_string()),
            data_remaining: reading.and_then(|r| r.data_remaining).map(|b| b.bytes()),
            data_quota: reading.and_then(|r| r.data_quota).map(|b| b.bytes()),
            expiry: reading.and_then(|r| r.quota_expiry),
            status,
            error: error.map(|e| format!("{}: {}", e.reason, e.message)),
        }
    }
}

/// Colour for a stream: only on a terminal, and never when `NO_COLOR` is set to anything
/// non-empty (<https://no-color.org>).
pub fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

const HEADERS: [&str; 9] =
    ["LINE", "OPERATOR", "ACCOUNT", "BALANCE", "DATA LEFT", "QUOTA", "EXPIRES", "STATUS", "ERROR"];

/// The cells of one line: human units for the table, plain numbers and HTTP dates for CSV.
fn cells(line: &TableLine, now: SystemTime, human: bool) -> [String; 9] {
    let balance = line.balance.map_or("-".to_string(), |amount| {
        let number = if human { status_page::group(amount) } else { format!("{amount:.2}") };
        match &line.currency {
            Some(currency) => format!("{number} {currency}"),
            None => number,
        }
    });
    let size =
        |b: Option<u64>| b.map_or("-".to_string(), |b| if human { status_page::bytes(b) } else { b.to_string() });
    let expiry =
        line.expiry.map_or(
            "-".to_string(),
            |t| {
                if human {
                    status_page::left(now, t)
                } else {
                    httpdate::fmt_http_date(t)
                }
            },
        );
    [
        line.name.clone(),
        line.operator.clone(),
        line.account.clone(),
        balance,
        size(line.data_remaining),
        size(line.data_quota),
        expiry,
        line.status.as_str().to_string(),
        line.error.clone().unwrap_or_default(),
    ]
}

/// Aligned columns (numbers right-aligned); ANSI colour only when `colour`.
pub fn table(lines: &[TableLine], now: SystemTime, colour: bool) -> String {
    let body: Vec<[String; 9]> = lines.iter().map(|l| cells(l, now, true)).collect();
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
pub fn csv(lines: &[TableLine]) -> String {
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
    for line in lines {
        let cells = cells(line, now, false);
        out.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn csv_quotes_what_needs_it_and_the_table_aligns() {
        let config =
            crate::config::parse("t.yaml", "lines:\n  - {name: \"a,b\", driver: demo}\n", crate::drivers::REGISTRY)
                .unwrap();
        let store = Store::new();
        store.apply_plan(&config.lines);
        let rows = crate::web::api::snapshot(&store, &config.global, SystemTime::now());
        let lines: Vec<TableLine> = rows.iter().map(TableLine::of_row).collect();
        let text = csv(&lines);
        assert!(text.starts_with("line,operator,account,balance,data_left,quota,expires,status,error\n"), "{text}");
        assert!(text.contains("\"a,b\",demo,,-,-,-,-,pending,"), "{text}");
        let plain = table(&lines, SystemTime::now(), false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.lines().nth(1).unwrap().starts_with("a,b   "), "{plain}");
        let coloured = table(&lines, SystemTime::now(), true);
        assert!(coloured.contains("\x1b[1mLINE\x1b[0m") && coloured.contains("\x1b[2mpending\x1b[0m"), "{coloured}");
    }

    #[test]
    fn a_balance_without_currency_and_a_failed_line() {
        let line = TableLine {
            name: "x".into(),
            balance: Some(1234.5),
            status: TableStatus::Failed,
            error: Some("timeout: no answer".into()),
            ..TableLine::default()
        };
        let text = table(std::slice::from_ref(&line), SystemTime::now(), false);
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(" 1,234.50  "), "a balance without a currency shows the number only: {text}");
        assert!(row.ends_with("failed  timeout: no answer"), "{text}");
        assert_eq!(csv(&[line]).lines().nth(1).unwrap(), "x,,,1234.50,-,-,-,failed,timeout: no answer");
    }
}
