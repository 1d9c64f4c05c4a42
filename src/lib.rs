//! esim-exporter: polls mobile operators for the balance and data left on each configured line
//! and serves the latest readings to Prometheus.
//!
//! Data flow: `config::load` → `Config` → `poll::Scheduler` (per line, on its interval) →
//! `drivers::Driver::poll` → `store::Store` → `metrics` (pre-rendered body) → `web`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod drivers;
pub mod error;
pub mod metrics;
pub mod poll;
pub mod reading;
pub mod store;
pub mod web;
