//! The two one-shot modes: `--config.check` (validate and summarise) and `--once` (poll every
//! line once, print a table or JSON, exit non-zero if any poll failed).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;

use crate::app::ConfigSource;
use crate::cli::OutputFormat;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::poll::Shard;
use crate::store::Store;

use crate::table::{self, TableLine};
use crate::web::api::LinesQuery;
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
        OutputFormat::Table | OutputFormat::Csv => {
            let (page, _) = query.page(&rows);
            let lines: Vec<TableLine> = page.into_iter().map(TableLine::of_row).collect();
            if output == OutputFormat::Csv {
                print!("{}", table::csv(&lines));
            } else {
                print!("{}", table::table(&lines, now, table::colour_wanted(std::io::stdout().is_terminal())));
            }
        }
    }
    eprintln!("{total} lines polled, {failed} failed");
    Ok(if failed == 0 { Outcome::Ok } else { Outcome::Failed })
}

/// On a terminal, a progress bar on stderr (cleared when done, so the table stands alone);
/// through a pipe or a file nothing, so logs and scripts see no control characters.
fn progress_reporter() -> Option<Box<dyn Fn(usize, usize) + Send + Sync>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    // The template is a constant: a failure would only lose the style, never the bar.
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} lines polled, {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("##-"));
    }
    Some(Box::new(move |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish_and_clear();
        }
    }))
}
