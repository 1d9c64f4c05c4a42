//! The one integration-test binary: shared helpers live in `support`, each area in its module.

mod binary;
mod config;
mod golden;
mod support;
mod tidy;
