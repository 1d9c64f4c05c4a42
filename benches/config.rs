//! Config load of fleet-size files (issue 8: 100,000 lines load and resolve in ≤ 2 s): the
//! whole YAML tree on one thread (`yaml_tree`, the path of files that cannot be streamed), then
//! `config::parse` as a load runs it (`parse_and_resolve`: a fleet file streamed in slices,
//! parsed on two threads while resolved, driver options included).
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
    bencher.bench_local(|| config::parse("bench.yaml", &text, esim_exporter::drivers::REGISTRY).expect("resolves"));
}
