//! Drivers turn a line into a [`Reading`](crate::reading::Reading) or a
//! [`PollError`](crate::error::PollError). This module holds [`REGISTRY`], the one list of
//! drivers (one line each, alphabetical), which the app hands to `config::load`. Nothing else
//! names drivers.
//!
//! Operator files speak the [`contract`] ([`Driver`], [`DriverSpec`], [`PollContext`],
//! [`BuildContext`]) and build on the [`kit`] (transport, value decoding, sessions, the pager,
//! token files); they never import one another.

pub mod airalo;
pub mod beeline;
pub mod contract;
pub mod demo;
pub mod emnify;
pub mod hologram;
pub mod http_json;
pub mod kit;
pub mod megafon;
pub mod mts;
pub mod onboarding;
pub mod onence;
pub mod t2;
pub mod ussd;

// The kit's session, token file and remainders, where the rest of the crate finds them.
pub use kit::{remainders, session, token_file};

// The contract's names, where the rest of the crate has always found them.
pub use contract::{
    account_options, BoxFuture, BuildContext, BuildError, BuildFn, Cost, DiscoveredLine, Driver, DriverSpec,
    NoRequestObserver, Pacer, PollContext, RequestObserver,
};

/// Every driver, alphabetical, one line each.
pub static REGISTRY: &[&DriverSpec] = &[
    &onence::SPEC,
    &airalo::SPEC,
    &beeline::SPEC,
    &demo::SPEC,
    &emnify::SPEC,
    &hologram::SPEC,
    &http_json::SPEC,
    &megafon::SPEC,
    &mts::SPEC,
    &t2::SPEC,
    &ussd::SPEC,
];

/// Finds a driver by its `driver:` name or one of its aliases.
pub fn lookup(name: &str) -> Option<&'static DriverSpec> {
    REGISTRY.iter().copied().find(|spec| spec.name == name || spec.aliases.contains(&name))
}

/// Names of every driver, for "known: ..." hints.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|spec| spec.name).collect()
}
