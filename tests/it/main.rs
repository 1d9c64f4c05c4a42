//! The one integration-test binary: shared helpers live in `support`, each area in its module.

mod config;
mod support;
