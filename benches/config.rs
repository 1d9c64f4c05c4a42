//! Config load of fleet-size files (issue 8: 100,000 lines load and resolve in ≤ 2 s): the
//! YAML tree alone, then the whole `config::parse` (tree, resolve, driver options).
//!
//! `cargo bench --bench config`; CI runs `cargo test --bench config -- --smoke`.

use divan::Bencher;
use esim_exporter::config;

#[path = "support/fleet.rs"]
mod fleet;

fn main() {
    fleet::main();
}

#[divan::bench(args = fleet::SIZES, sample_count = 5, sample_size = 1)]
fn yaml_tree(bencher: Bencher, n: usize) {
    let text = fleet::yaml(fleet::size(n));
    bencher.bench_local(|| config::raw::parse_tree("bench.yaml", &text).expect("parses"));
}

#[divan::bench(args = fleet::SIZES, sample_count = 5, sample_size = 1)]
fn parse_and_resolve(bencher: Bencher, n: usize) {
    let text = fleet::yaml(fleet::size(n));
    bencher.bench_local(|| config::parse("bench.yaml", &text).expect("resolves"));
}
