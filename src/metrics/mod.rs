//! The exposition: every metric family ([`catalog`]), the incremental renderer that turns the
//! store into `/metrics` bodies ([`Renderer`] → [`Exposition`], text 0.0.4 and OpenMetrics,
//! plain and gzipped, whole or split into parts), the exporter's own metrics ([`SelfMetrics`])
//! and format negotiation.

mod account_polls;
mod body;
pub mod catalog;
mod chunk;
mod encode;
pub mod exporter_self;
mod line;
pub mod login_gauge;
mod negotiate;
#[cfg(target_os = "linux")]
mod process;
mod proto;
pub mod render;
mod render_split;
pub mod split;

pub use body::{CorruptBlock, Parts, PartsBody};
pub use exporter_self::SelfMetrics;
pub use negotiate::{negotiate, Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub use render::{render_line_text, Exposition, Renderer, DEFAULT_GZIP_LEVEL};
pub use split::{SplitDemand, SplitError, SplitPart, SplitUnavailable, TooManySplits};

#[cfg(test)]
mod tests;
