//! The scheduler: when each line polls, under which limits, and what a result means for the
//! next attempt (DESIGN §8; policy numbers in `backoff.rs` and `docs/POLLING.md`).

pub mod backoff;
pub mod limiter;
pub mod spread;
pub mod telemetry;

pub use spread::{Shard, ShardError};
