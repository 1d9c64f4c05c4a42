//! Split exposition: `/metrics?part=K&parts=N` serves only the lines of part `K` of `N`
//! ([`crate::poll::spread::part_of`]), the exporter's own series in part 0 only, so that
//! Prometheus ingests a big fleet as `N` targets in parallel (one target is ingested by one
//! goroutine). This file parses the parameters and remembers which part counts scrapes ask
//! for ([`SplitDemand`]): the renderer builds the parts of those counts only (`render.rs`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most parts a body may be split into. Past a few dozen, parts of a 100,000-line fleet
/// hold fewer lines than a block (less compression, more pieces) and the scrape config more
/// targets than anyone maintains; `scripts/gen-split-servicemonitor` stops at the same number.
pub const MAX_PARTS: u32 = 64;

/// How many different part counts are rendered at once. Each costs about the memory and the
/// compression of the whole body again; two are enough to move a scrape config from one count
/// to another.
pub const MAX_SPLITS: usize = 4;

/// A part count nobody asked for in this long stops being rendered: longer than any sane
/// scrape interval, so a count in use never lapses between two scrapes.
pub const SPLIT_IDLE: Duration = Duration::from_secs(15 * 60);

/// One part of a split body: `part` of `parts`, `0 <= part < parts <= MAX_PARTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitPart {
    part: u32,
    parts: u32,
}

/// Why the `part`/`parts` parameters of a `/metrics` request were refused (a 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("parameter `{given}` needs `{missing}` too: /metrics?part=K&parts=N with 0 <= K < N")]
    Missing { given: &'static str, missing: &'static str },
    #[error("parameter `{0}` is given more than once; give it once")]
    Repeated(&'static str),
    #[error("parameter `{name}`: `{value}` is not a whole number")]
    NotANumber { name: &'static str, value: String },
    #[error("parameter `parts`: must be at least 1 (got 0)")]
    NoParts,
    #[error("parameter `parts`: at most {MAX_PARTS} parts (got {0})")]
    TooManyParts(String),
    #[error("parameter `part`: {part} is out of range for parts={parts}: valid are 0 to {} (parts count from 0)", .parts - 1)]
    OutOfRange { part: String, parts: u32 },
}

impl SplitPart {
    pub fn new(part: u32, parts: u32) -> Result<SplitPart, SplitError> {
        if parts == 0 {
            return Err(SplitError::NoParts);
        }
        if parts > MAX_PARTS {
            return Err(SplitError::TooManyParts(parts.to_string()));
        }
        if part >= parts {
            return Err(SplitError::OutOfRange { part: part.to_string(), parts });
        }
        Ok(SplitPart { part, parts })
    }

    /// The split a request's query string asks for: `None` without `part` and `parts` (the
    /// whole body; other parameters are ignored, as they always were).
    pub fn from_query(query: Option<&str>) -> Result<Option<SplitPart>, SplitError> {
        let (mut part, mut parts) = (None, None);
        for (key, value) in query.into_iter().flat_map(pairs) {
            let (slot, name) = match key.as_str() {
                "part" => (&mut part, "part"),
                "parts" => (&mut parts, "parts"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SplitError::Repeated(name));
            }
        }
        match (part, parts) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(SplitError::Missing { given: "part", missing: "parts" }),
            (None, Some(_)) => Err(SplitError::Missing { given: "parts", missing: "part" }),
            (Some(part), Some(parts)) => {
                let count = number("parts", &parts)?.ok_or_else(|| SplitError::TooManyParts(parts.clone()))?;
                if count == 0 {
                    return Err(SplitError::NoParts);
                }
                if count > MAX_PARTS {
                    return Err(SplitError::TooManyParts(parts));
                }
                let index = number("part", &part)?;
                match index {
                    Some(index) if index < count => Ok(Some(SplitPart { part: index, parts: count })),
                    _ => Err(SplitError::OutOfRange { part, parts: count }),
                }
            }
        }
    }

    pub fn part(&self) -> u32 {
        self.part
    }

    pub fn parts(&self) -> u32 {
        self.parts
    }
}

/// Decoded `key=value` pairs of a query string (`+` is a space, as in HTML forms).
fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query.split('&').filter(|p| !p.is_empty()).map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

/// `value` as a number of ASCII digits only (no sign, no spaces); `Ok(None)` when it is one
/// but does not fit a `u32`.
fn number(name: &'static str, value: &str) -> Result<Option<u32>, SplitError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SplitError::NotANumber { name, value: value.to_string() });
    }
    Ok(value.parse().ok())
}

/// The part counts scrapes asked for, each with when it was last asked: shared between the
/// `/metrics` handler, which notes each request, and the renderer, which builds their parts.
#[derive(Debug, Default)]
pub struct SplitDemand {
    counts: Mutex<Vec<(u32, Instant)>>,
}

/// A new part count while [`MAX_SPLITS`] others are in use (a 503: it may pass once one of them
/// lapses after [`SPLIT_IDLE`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "parts={wanted} cannot be served now: {MAX_SPLITS} other part counts ({in_use}) were asked for in the last {} minutes; use one of them",
    SPLIT_IDLE.as_secs() / 60
)]
pub struct TooManySplits {
    pub wanted: u32,
    pub in_use: String,
}

/// Why a valid split cannot be served now (a 503).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitUnavailable {
    #[error(transparent)]
    TooMany(#[from] TooManySplits),
    #[error("the parts of parts={0} are not rendered yet; retry in a second")]
    NotRendered(u32),
}

impl SplitDemand {
    /// Notes a request for `parts` parts at `now`. A count of 1 is the whole body and is not
    /// noted.
    pub fn note(&self, parts: u32, now: Instant) -> Result<(), TooManySplits> {
        if parts <= 1 {
            return Ok(());
        }
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.retain(|&(_, at)| now.saturating_duration_since(at) < SPLIT_IDLE);
        if let Some(entry) = counts.iter_mut().find(|(count, _)| *count == parts) {
            entry.1 = entry.1.max(now);
            return Ok(());
        }
        if counts.len() >= MAX_SPLITS {
            let in_use = counts.iter().map(|(c, _)| c.to_string()).collect::<Vec<_>>().join(", ");
            return Err(TooManySplits { wanted: parts, in_use });
        }
        counts.push((parts, now));
        Ok(())
    }

    /// The part counts asked for within [`SPLIT_IDLE`] of `now`, in ascending order.
    pub fn current(&self, now: Instant) -> Vec<u32> {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.retain(|&(_, at)| now.saturating_duration_since(at) < SPLIT_IDLE);
        let mut current: Vec<u32> = counts.iter().map(|&(c, _)| c).collect();
        current.sort_unstable();
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Option<(u32, u32)>, String> {
        SplitPart::from_query(Some(query)).map(|s| s.map(|s| (s.part(), s.parts()))).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_part_and_parts_and_ignores_other_parameters() {
        assert_eq!(SplitPart::from_query(None), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("debug=1&x"), Ok(None));
        assert_eq!(parse("part=0&parts=1"), Ok(Some((0, 1))));
        assert_eq!(parse("parts=4&part=3"), Ok(Some((3, 4))));
        assert_eq!(parse("part=%32&parts=4&foo=bar"), Ok(Some((2, 4))));
        assert_eq!(parse("part=007&parts=64"), Ok(Some((7, 64))));
        assert_eq!(SplitPart::new(1, 4).map(|s| (s.part(), s.parts())), Ok((1, 4)));
    }

    #[test]
    fn refuses_bad_values_with_a_message_naming_the_parameter() {
        let cases = [
            (
                "part=5&parts=4",
                "parameter `part`: 5 is out of range for parts=4: valid are 0 to 3 (parts count from 0)",
            ),
            ("part=4&parts=4", "parameter `part`: 4 is out of range for parts=4: valid are 0 to 3"),
            ("part=99999999999&parts=4", "parameter `part`: 99999999999 is out of range for parts=4"),
            ("part=0&parts=0", "parameter `parts`: must be at least 1 (got 0)"),
            ("part=x&parts=4", "parameter `part`: `x` is not a whole number"),
            ("part=-1&parts=4", "parameter `part`: `-1` is not a whole number"),
            ("part=%2B1&parts=4", "parameter `part`: `+1` is not a whole number"),
            ("part=+1&parts=4", "parameter `part`: ` 1` is not a whole number"),
            ("part=&parts=4", "parameter `part`: `` is not a whole number"),
            ("part=0&parts=four", "parameter `parts`: `four` is not a whole number"),
            ("part=0&parts=2.0", "parameter `parts`: `2.0` is not a whole number"),
            ("part=0&parts=%204", "parameter `parts`: ` 4` is not a whole number"),
            ("part=0", "parameter `part` needs `parts` too: /metrics?part=K&parts=N with 0 <= K < N"),
            ("parts=4", "parameter `parts` needs `part` too"),
            ("part=0&part=1&parts=4", "parameter `part` is given more than once; give it once"),
            ("part=0&parts=4&parts=4", "parameter `parts` is given more than once"),
            ("part=0&parts=65", "parameter `parts`: at most 64 parts (got 65)"),
            ("part=0&parts=4294967296", "parameter `parts`: at most 64 parts (got 4294967296)"),
        ];
        for (query, says) in cases {
            match parse(query) {
                Err(message) => assert!(message.starts_with(says), "{query}: {message}"),
                Ok(split) => panic!("{query} accepted as {split:?}"),
            }
        }
        assert_eq!(SplitPart::new(0, 0), Err(SplitError::NoParts));
        assert_eq!(SplitPart::new(0, 65), Err(SplitError::TooManyParts("65".into())));
        assert_eq!(SplitPart::new(4, 4), Err(SplitError::OutOfRange { part: "4".into(), parts: 4 }));
    }

    #[test]
    fn demand_is_bounded_and_lapses() {
        let demand = SplitDemand::default();
        let t0 = Instant::now();
        assert_eq!(demand.note(1, t0), Ok(()), "one part is the whole body");
        assert!(demand.current(t0).is_empty());
        for parts in [4, 2, 8, 4, 3] {
            assert_eq!(demand.note(parts, t0), Ok(()));
        }
        assert_eq!(demand.current(t0), [2, 3, 4, 8]);
        let refused = demand.note(16, t0 + Duration::from_secs(60));
        assert_eq!(refused.as_ref().map_err(|e| e.wanted), Err(16));
        assert!(refused.is_err_and(|e| e.to_string().contains("4 other part counts (4, 2, 8, 3)")));
        // 4 stays in use; the others lapse and make room.
        let later = t0 + SPLIT_IDLE - Duration::from_secs(1);
        assert_eq!(demand.note(4, later), Ok(()));
        let lapsed = t0 + SPLIT_IDLE;
        assert_eq!(demand.current(lapsed), [4]);
        assert_eq!(demand.note(16, lapsed), Ok(()));
        assert_eq!(demand.current(lapsed), [4, 16]);
    }
}
