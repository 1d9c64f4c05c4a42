//! Units in config values: sizes (`500MB`, `1.5GiB`: SI and IEC), durations (humantime:
//! `15m`, `1h30m`) and rates (`1/s`, `60/m`).

use std::fmt;
use std::time::Duration;

/// A number of bytes. Parsed from SI (`kB`, `MB`, `GB`, `TB`: powers of 1000) and IEC
/// (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024) sizes, or a bare number of bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Parses `500MB`, `1.5GiB`, `0`, `1024` (bytes), `10 kB`. Case of the unit prefix is
    /// forgiven (`mb`, `Mb`), since users copy sizes from operator pages.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number = number.replace('_', "");
        if number.is_empty() {
            return Err(format!("`{text}` is not a size (expected e.g. 500MB, 1.5GiB)"));
        }
        let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (expected e.g. 500MB, 1.5GiB)"))?;
        let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "ki" | "kib" => 1024.0,
            "mi" | "mib" => 1024.0 * 1024.0,
            "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}` (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ))
            }
        };
        let bytes = value * multiplier;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("size `{text}` is too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// Human form with IEC units, as shown on the status page.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

/// Parses a humantime duration (`30s`, `15m`, `1h 30m`); zero is rejected by callers that need
/// a positive interval.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("`{text}` is not a duration: unknown unit `{unit}` (use ms, s, m, h, d, e.g. 30s, 15m, 1h)")
        }
        _ => format!("`{text}` is not a duration (expected e.g. 30s, 15m, 1h30m)"),
    })
}

/// A token-bucket rate: `burst` tokens refilled at `per` intervals each (`3/s`, `60/m`, `1/h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per `period`; also the bucket size (burst).
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("`{text}` is not a rate (expected N/s, N/m or N/h, e.g. 3/s)");
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 {
            return Err(format!("rate `{text}` allows no requests at all"));
        }
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => parse_duration(other).map_err(|_| bad())?,
        };
        if period.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }

    /// Time between two tokens at the sustained rate.
    pub fn interval(&self) -> Duration {
        self.period / self.count
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period.as_secs() {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/m", self.count),
            3600 => write!(f, "{}/h", self.count),
            86_400 => write!(f, "{}/d", self.count),
            _ => write!(f, "{}/{}", self.count, humantime::format_duration(self.period)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_si_and_iec_sizes() {
        let cases = [
            ("500MB", 500_000_000),
            ("1.5GiB", 1_610_612_736),
            ("0", 0),
            ("1024", 1024),
            ("10 kB", 10_000),
            ("2mib", 2_097_152),
            ("1_000B", 1000),
        ];
        for (text, bytes) in cases {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        for text in ["", "MB", "5 parsecs", "-1MB", "1e400GB", "1..2MB"] {
            assert!(ByteSize::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!(Rate::parse("3/s"), Ok(Rate { count: 3, period: Duration::from_secs(1) }));
        assert_eq!(Rate::parse("60/m").map(|r| r.interval()), Ok(Duration::from_secs(1)));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("3").is_err());
        assert!(Rate::parse("x/s").is_err());
        assert_eq!(Rate::parse("2/10s").map(|r| r.to_string()), Ok("2/10s".to_string()));
    }
}
