//! `--shard` (or `ESIM_SHARD`) as given: a fixed `i/n`, or `auto/n`, whose index is the ordinal a
//! Kubernetes StatefulSet puts at the end of each pod name (`esim-exporter-3` is shard 3), so one
//! pod template serves every replica.

use std::fmt;

use super::spread::{Shard, ShardError};

/// What the flag said, before the host name is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    /// `auto/n`: shard index from the pod ordinal.
    Auto {
        count: u32,
    },
}

/// Why `auto/n` could not become a shard. Each message names the host name it read and says
/// what to change, because this is a start-up error read in `kubectl logs`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardSpecError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("`auto/{count}` takes the shard from the pod name, but the host name is unknown: set HOSTNAME or give the shard as i/{count}")]
    NoHostname { count: u32 },
    #[error("host name `{hostname}` does not end in -<ordinal> like a StatefulSet pod (e.g. esim-exporter-3): give the shard as i/{count} instead of auto/{count}")]
    NoOrdinal { hostname: String, count: u32 },
    #[error("pod `{hostname}` is ordinal {ordinal}, but auto/{count} has shards 0 to {}: make the StatefulSet's replicas and the shard count agree", .count - 1)]
    OrdinalOutOfRange { hostname: String, ordinal: u32, count: u32 },
}

impl ShardSpec {
    /// Parses `i/n` or `auto/n` (whitespace around the parts is allowed).
    pub fn parse(text: &str) -> Result<ShardSpec, ShardError> {
        match text.split_once('/') {
            Some((index, count)) if index.trim().eq_ignore_ascii_case("auto") => {
                let count: u32 = count.trim().parse().map_err(|_| ShardError::Malformed(text.to_string()))?;
                if count == 0 {
                    return Err(ShardError::ZeroCount(text.to_string()));
                }
                Ok(ShardSpec::Auto { count })
            }
            _ => Shard::parse(text).map(ShardSpec::Fixed),
        }
    }

    /// The shard, reading the pod ordinal from `hostname` for `auto/n`.
    pub fn resolve(self, hostname: Option<&str>) -> Result<Shard, ShardSpecError> {
        let count = match self {
            ShardSpec::Fixed(shard) => return Ok(shard),
            ShardSpec::Auto { count } => count,
        };
        let hostname = hostname.map(str::trim).filter(|h| !h.is_empty()).ok_or(ShardSpecError::NoHostname { count })?;
        let ordinal =
            pod_ordinal(hostname).ok_or_else(|| ShardSpecError::NoOrdinal { hostname: hostname.to_string(), count })?;
        if ordinal >= count {
            return Err(ShardSpecError::OrdinalOutOfRange { hostname: hostname.to_string(), ordinal, count });
        }
        Ok(Shard::new(ordinal, count)?)
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardSpec::Fixed(shard) => shard.fmt(f),
            ShardSpec::Auto { count } => write!(f, "auto/{count}"),
        }
    }
}

/// The ordinal of a StatefulSet pod name: the decimal digits after the last `-` of the first DNS
/// label (a host name may be fully qualified: `esim-exporter-3.esim-exporter.ns.svc`).
pub fn pod_ordinal(hostname: &str) -> Option<u32> {
    let label = hostname.split('.').next()?;
    let (name, digits) = label.rsplit_once('-')?;
    let plain = !name.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    // `web-03` is not what a StatefulSet names pods; refusing it catches hand-made names early.
    let canonical = digits == "0" || !digits.starts_with('0');
    if plain && canonical {
        digits.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_and_auto_shards() {
        assert_eq!(ShardSpec::parse("1/3"), Ok(ShardSpec::Fixed(Shard::new(1, 3).unwrap())));
        assert_eq!(ShardSpec::parse("auto/3"), Ok(ShardSpec::Auto { count: 3 }));
        assert_eq!(ShardSpec::parse(" AUTO / 4 "), Ok(ShardSpec::Auto { count: 4 }));
        assert_eq!(ShardSpec::parse("auto/0"), Err(ShardError::ZeroCount("auto/0".into())));
        assert_eq!(ShardSpec::parse("auto/x"), Err(ShardError::Malformed("auto/x".into())));
        assert_eq!(ShardSpec::parse("auto"), Err(ShardError::Malformed("auto".into())));
        assert_eq!(ShardSpec::Auto { count: 3 }.to_string(), "auto/3");
    }

    #[test]
    fn auto_takes_the_shard_from_the_statefulset_pod_ordinal() {
        let auto = ShardSpec::Auto { count: 4 };
        assert_eq!(auto.resolve(Some("esim-exporter-3")), Ok(Shard::new(3, 4).unwrap()));
        assert_eq!(auto.resolve(Some("esim-exporter-0")), Ok(Shard::new(0, 4).unwrap()));
        assert_eq!(auto.resolve(Some("esim-exporter-2.esim-exporter.monitoring.svc\n")), Ok(Shard::new(2, 4).unwrap()));
        let fixed = ShardSpec::Fixed(Shard::new(1, 2).unwrap());
        assert_eq!(fixed.resolve(None), Ok(Shard::new(1, 2).unwrap()), "a fixed shard needs no host name");
    }

    #[test]
    fn auto_refuses_host_names_without_a_usable_ordinal() {
        let auto = ShardSpec::Auto { count: 3 };
        assert_eq!(auto.resolve(None), Err(ShardSpecError::NoHostname { count: 3 }));
        assert_eq!(auto.resolve(Some("  ")), Err(ShardSpecError::NoHostname { count: 3 }));
        for bad in ["esim-exporter", "exporter3", "-3", "esim-exporter-", "esim-exporter-03", "esim-exporter-x1"] {
            assert_eq!(
                auto.resolve(Some(bad)),
                Err(ShardSpecError::NoOrdinal { hostname: bad.into(), count: 3 }),
                "{bad}"
            );
        }
        let err = auto.resolve(Some("esim-exporter-3")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pod `esim-exporter-3` is ordinal 3, but auto/3 has shards 0 to 2: make the StatefulSet's replicas and the shard count agree"
        );
        let err = auto.resolve(Some("my-laptop")).unwrap_err();
        assert!(err.to_string().contains("host name `my-laptop` does not end in -<ordinal>"), "{err}");
    }
}
