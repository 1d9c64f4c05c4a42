//! The one integration-test binary: shared helpers live in `support`, each area in its module.

mod binary;
mod config;
mod discovery;
mod drivers;
mod fuzz;
mod golden;
mod lines;
#[path = "../support/mock_operator/mod.rs"]
mod mock_operator;
mod prefix;
mod reload;
mod shards;
mod soak;
mod split;
mod support;
mod support_modem;
mod tidy;
mod ussd;
mod websec;
