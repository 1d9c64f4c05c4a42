//! Logging setup: `--log.level` and `--log.format` (logfmt, the Prometheus ecosystem's
//! default, or JSON). The logfmt formatter is ours: a dozen lines, no extra dependency.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{LogFormat, LogLevel};

/// Installs the global subscriber, writing to stderr. Safe to call once per process.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    // Our own crate logs at the chosen level; dependencies only from warn up, so debug logs
    // never dump HTTP internals (which could include headers).
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("esim_exporter", level)
        .with_default(Level::WARN.min(level));
    // (tracing orders levels by verbosity: `min` is the quieter of the two.)
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Logfmt => {
            registry.with(tracing_subscriber::fmt::layer().event_format(Logfmt).with_writer(std::io::stderr)).try_init()
        }
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

/// `ts=… level=… msg="…" key=value …`, one event per line.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _cx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        write!(writer, "ts={ts} level={level}")?;
        let mut visitor = LogfmtFields { writer: &mut writer, result: Ok(()) };
        event.record(&mut visitor);
        visitor.result?;
        writeln!(writer)
    }
}

struct LogfmtFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl LogfmtFields<'_, '_> {
    fn pair(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let key = if field.name() == "message" { "msg" } else { field.name() };
        self.result = write!(self.writer, " {key}={}", quote(value));
    }
}

impl Visit for LogfmtFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, &format!("{value:?}"));
    }
}

/// Quotes a logfmt value when it holds spaces, quotes, `=` or control characters.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("gate-01"), "gate-01");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("Привет"), "\"Привет\"");
    }
}
