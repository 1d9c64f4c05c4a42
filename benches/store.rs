//! Store writes (poll results) while the renderer scans the store as it does every second and
//! the status page reads it: the cost a poll pays for the one lock all readers share.
//!
//! `cargo bench --bench store`; CI runs `cargo test --bench store -- --smoke`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use divan::Bencher;
use esim_exporter::metrics::{Renderer, SelfMetrics, DEFAULT_GZIP_LEVEL};

#[path = "support/fleet.rs"]
mod fleet;

fn main() {
    fleet::main();
}

/// 1,000 poll results recorded, alone.
#[divan::bench(args = fleet::SIZES, sample_count = 20)]
fn record_1000(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let mut round = 2;
    bencher.bench_local(|| {
        for (i, line) in config.lines.iter().enumerate().take(1000) {
            fleet::record(&store, &line.name, i, round);
        }
        round += 1;
    });
}

/// 1,000 poll results recorded while another thread renders in a loop (scrapes never touch
/// the store: they read the last rendered body).
#[divan::bench(args = fleet::SIZES, sample_count = 20)]
fn record_1000_while_rendering(bencher: Bencher, n: usize) {
    let config = Arc::new(fleet::config(fleet::size(n)));
    let store = Arc::new(fleet::polled_store(&config));
    let stop = Arc::new(AtomicBool::new(false));
    let renderer = {
        let (config, store, stop) = (config.clone(), store.clone(), stop.clone());
        std::thread::spawn(move || {
            let metrics = SelfMetrics::new();
            let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
            let mut second = 10;
            while !stop.load(Ordering::Relaxed) {
                renderer.render(&store, &config.global, fleet::t(second), &metrics);
                second += 1;
            }
        })
    };
    let mut round = 2;
    bencher.bench_local(|| {
        for (i, line) in config.lines.iter().enumerate().take(1000) {
            fleet::record(&store, &line.name, i, round);
        }
        round += 1;
    });
    stop.store(true, Ordering::Relaxed);
    let _ = renderer.join();
}
