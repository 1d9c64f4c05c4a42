//! Where a line sits in time and in the fleet: its phase within the poll interval (a stable hash
//! of the name, anchored at the Unix epoch so restarts keep it) and its `--shard i/n` membership
//! (rendezvous hashing of the name, so changing `n` moves as few lines as possible), and its part
//! of a split `/metrics?part=K&parts=N` (the same rendezvous hash under a seed of its own).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Distinct seeds keep the phase, the shard and the back-off jitter of a line independent.
const PHASE_SEED: u64 = 0x243f_6a88_85a3_08d3;
const SHARD_SEED: u64 = 0x1319_8a2e_0370_7344;
/// Parts of a split exposition are seeded apart from shards: with the shard's seed, every line
/// a process of `--shard i/n` owns would score highest for `i` among any first `m` parts too,
/// so part `i` would hold nearly all of the shard's lines and most other parts none (the
/// Kubernetes overlay runs 3 shards × 4 parts). Under its own seed each shard splits evenly.
const PART_SEED: u64 = 0xa409_3822_299f_31d0;

/// A hash that is the same on every platform, build and Rust version (std's `DefaultHasher`
/// promises none of that, and phases and shards must survive upgrades): FNV-1a, then the
/// SplitMix64 finaliser so that names differing in one character land far apart.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    mix(h)
}

/// SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The phase of a line: where in each interval it polls, in `[0, interval)`.
pub fn offset(line: &str, interval: Duration) -> Duration {
    let span = interval.as_nanos().min(u128::from(u64::MAX));
    let h = u128::from(stable_hash(line.as_bytes(), PHASE_SEED));
    // Multiply-shift maps the hash onto the interval without the bias of `%`.
    Duration::from_nanos(((h * span) >> 64) as u64)
}

/// Time from `now` to the line's next slot strictly after it. Slots are `offset + k·interval`
/// after the Unix epoch, so a restarted exporter polls each line at the same phase as before.
pub fn until_next_slot(now: SystemTime, offset: Duration, interval: Duration) -> Duration {
    let span = interval.as_nanos().max(1);
    let wall = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let offset = offset.as_nanos() % span;
    let into_slot = (wall % span + span - offset) % span;
    Duration::from_nanos(u64::try_from(span - into_slot).unwrap_or(u64::MAX))
}

/// `--shard i/n`: this process polls the lines that rendezvous hashing gives shard `i` of `n`.
/// Shards count from 0, like the pod ordinals of a Kubernetes StatefulSet (`0/3`, `1/3`, `2/3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a `--shard` value was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("`{0}` is not a shard: expected i/n with 0 <= i < n, e.g. 0/3 (shards count from 0)")]
    Malformed(String),
    #[error("shard count must be at least 1 (got `{0}`)")]
    ZeroCount(String),
    #[error(
        "shard index {index} is out of range for {count} shards: valid are 0 to {} (shards count from 0)",
        .count - 1
    )]
    IndexOutOfRange { index: u32, count: u32 },
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 {
            return Err(ShardError::ZeroCount(format!("{index}/{count}")));
        }
        if index >= count {
            return Err(ShardError::IndexOutOfRange { index, count });
        }
        Ok(Shard { index, count })
    }

    /// Parses `i/n` (whitespace around the numbers is allowed).
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let malformed = || ShardError::Malformed(text.to_string());
        let (index, count) = text.split_once('/').ok_or_else(malformed)?;
        let index: u32 = index.trim().parse().map_err(|_| malformed())?;
        let count: u32 = count.trim().parse().map_err(|_| malformed())?;
        if count == 0 {
            return Err(ShardError::ZeroCount(text.to_string()));
        }
        Shard::new(index, count)
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this shard polls `line`.
    pub fn owns(&self, line: &str) -> bool {
        shard_of(line, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        Shard::parse(text)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard of `line` among `count`: the one with the highest score for this name. Going from
/// `n` to `n - 1` shards moves only the lines of the removed shard (their runner-up takes them).
pub fn shard_of(line: &str, count: u32) -> u32 {
    rendezvous(line, count, SHARD_SEED)
}

/// The part of `line` in a `/metrics` split into `count` parts (`?part=K&parts=N`): rendezvous
/// hashing like [`shard_of`], so a line keeps its part however the fleet around it changes and
/// going from `n` to `n + 1` parts moves only the lines the new part takes, but under its own
/// seed, so that the lines of any one shard spread over every part.
pub fn part_of(line: &str, count: u32) -> u32 {
    rendezvous(line, count, PART_SEED)
}

/// The bucket among `count` with the highest score for `line` under `seed` (0 when `count` is 0).
fn rendezvous(line: &str, count: u32, seed: u64) -> u32 {
    let mut best = (0u64, 0u32);
    for bucket in 0..count {
        let score = stable_hash(line.as_bytes(), mix(seed ^ u64::from(bucket)));
        if bucket == 0 || score > best.0 {
            best = (score, bucket);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("tracker-{i:05}")).collect()
    }

    #[test]
    fn offsets_are_deterministic_and_inside_the_interval() {
        for interval in [1, 59, 900, 3600, 86_400].map(Duration::from_secs) {
            for name in names(500) {
                let o = offset(&name, interval);
                assert!(o < interval, "{name}: {o:?} not within {interval:?}");
                assert_eq!(o, offset(&name, interval));
            }
        }
        assert_ne!(offset("gate-01", Duration::from_secs(900)), offset("gate-02", Duration::from_secs(900)));
    }

    #[test]
    fn a_thousand_lines_spread_evenly_over_their_interval() {
        let interval = Duration::from_secs(1000);
        let mut per_second = [0usize; 1000];
        for name in names(1000) {
            per_second[offset(&name, interval).as_secs() as usize] += 1;
        }
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        // A uniform spread gives about one line a second; 3 % of the fleet in one second would
        // mean the hash clusters.
        assert!(busiest <= 30, "{busiest} lines start in the same second");
        let quiet_quarters =
            per_second.chunks(250).map(|q| q.iter().sum::<usize>()).filter(|n| !(200..=300).contains(n)).count();
        assert_eq!(quiet_quarters, 0, "each quarter of the interval holds ~250 lines");
    }

    #[test]
    fn next_slot_lands_on_the_phase_strictly_after_now() {
        let interval = Duration::from_secs(900);
        let offset = Duration::from_secs(123);
        let epoch = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        // 1_800_000_000 is a multiple of 900, so the phase there is 0.
        assert_eq!(until_next_slot(epoch(1_800_000_000), offset, interval), Duration::from_secs(123));
        assert_eq!(
            until_next_slot(epoch(1_800_000_123), offset, interval),
            interval,
            "exactly on a slot: the next one, not this one"
        );
        assert_eq!(until_next_slot(epoch(1_800_000_124), offset, interval), Duration::from_secs(899));
        for start in [0u64, 7, 1_800_000_456, 1_800_086_399] {
            let wait = until_next_slot(epoch(start), offset, interval);
            assert!(wait > Duration::ZERO && wait <= interval);
            assert_eq!((start + wait.as_secs()) % 900, 123);
        }
    }

    #[test]
    fn parses_shards_counted_from_zero() {
        assert_eq!(Shard::parse("0/3"), Shard::new(0, 3));
        assert_eq!(Shard::parse(" 2 / 3 ").map(|s| s.to_string()), Ok("2/3".into()));
        assert_eq!("0/1".parse::<Shard>().map(|s| s.count()), Ok(1));
        assert_eq!(Shard::parse("3/3"), Err(ShardError::IndexOutOfRange { index: 3, count: 3 }));
        assert_eq!(Shard::parse("0/0"), Err(ShardError::ZeroCount("0/0".into())));
        for bad in ["", "1", "a/3", "1/b", "-1/3", "1/3/5", "1.0/3"] {
            assert_eq!(Shard::parse(bad), Err(ShardError::Malformed(bad.into())), "{bad}");
        }
        assert_eq!(
            Shard::parse("3/3").map_err(|e| e.to_string()),
            Err("shard index 3 is out of range for 3 shards: valid are 0 to 2 (shards count from 0)".into())
        );
    }

    #[test]
    fn every_line_belongs_to_exactly_one_shard_and_shards_are_balanced() {
        let lines = names(10_000);
        let shards: Vec<Shard> = (0..4).map(|i| Shard::new(i, 4).unwrap()).collect();
        let mut sizes = [0usize; 4];
        for line in &lines {
            let owners: Vec<u32> = shards.iter().filter(|s| s.owns(line)).map(|s| s.index()).collect();
            assert_eq!(owners.len(), 1, "{line} owned by {owners:?}");
            assert_eq!(owners[0], shard_of(line, 4), "deterministic");
            sizes[owners[0] as usize] += 1;
        }
        for size in sizes {
            assert!((2300..=2700).contains(&size), "unbalanced shards: {sizes:?}");
        }
    }

    #[test]
    fn removing_the_last_shard_moves_only_its_lines() {
        for line in names(5_000) {
            let before = shard_of(&line, 5);
            let after = shard_of(&line, 4);
            if before != 4 {
                assert_eq!(before, after, "{line} moved although its shard stayed");
            }
        }
    }

    #[test]
    fn parts_split_the_lines_of_every_shard_evenly() {
        // With the shard's own hash, the lines of shard 1 of 3 would all fall in parts 1 and 3
        // of 4; under the part seed each shard spreads over all four.
        let lines = names(30_000);
        for shard in 0..3 {
            let mut sizes = [0usize; 4];
            for line in lines.iter().filter(|l| shard_of(l, 3) == shard) {
                sizes[part_of(line, 4) as usize] += 1;
            }
            for size in sizes {
                assert!((2200..=2800).contains(&size), "shard {shard} splits unevenly: {sizes:?}");
            }
        }
    }

    #[test]
    fn a_line_keeps_its_part_when_lines_come_and_parts_are_added() {
        // A pure function of the name and the count: other lines cannot move it.
        let before: Vec<u32> = names(1_000).iter().map(|l| part_of(l, 4)).collect();
        let after: Vec<u32> = names(5_000).iter().take(1_000).map(|l| part_of(l, 4)).collect();
        assert_eq!(before, after);
        for line in names(5_000) {
            let (four, five) = (part_of(&line, 4), part_of(&line, 5));
            assert!(four == five || five == 4, "{line} moved from part {four} to {five}, not to the new part");
        }
        assert!(names(100).iter().all(|l| part_of(l, 1) == 0));
    }

    // Properties over any set of names (the fixed 10,000-name tests above only cover one set).
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn shards_partition_any_set_of_names_exactly(
            lines in proptest::collection::hash_set("[a-zA-Z0-9._-]{1,40}", 0..400),
            count in 1u32..17,
        ) {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut owned = 0;
            for line in &lines {
                let owners = shards.iter().filter(|s| s.owns(line)).count();
                proptest::prop_assert_eq!(owners, 1, "{} owned by {} shards of {}", line, owners, count);
                owned += owners;
            }
            proptest::prop_assert_eq!(owned, lines.len());
        }

        #[test]
        fn adding_a_shard_moves_about_one_in_n_plus_one_lines_and_only_to_it(
            lines in proptest::collection::hash_set("[a-z0-9-]{4,24}", 2000..2500),
            n in 1u32..12,
        ) {
            let mut moved = 0usize;
            for line in &lines {
                let (before, after) = (shard_of(line, n), shard_of(line, n + 1));
                if before != after {
                    proptest::prop_assert_eq!(after, n, "{} moved between old shards", line);
                    moved += 1;
                }
            }
            // Each line moves with probability p = 1/(n+1); allow five standard deviations.
            let (m, p) = (lines.len() as f64, 1.0 / f64::from(n + 1));
            let tolerance = 5.0 * (p * (1.0 - p) / m).sqrt();
            let fraction = moved as f64 / m;
            proptest::prop_assert!((fraction - p).abs() <= tolerance, "{n} -> {}: moved {fraction:.4}, expected {p:.4} ± {tolerance:.4}", n + 1);
        }
    }
}
