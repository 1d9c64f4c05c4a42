//! `/metrics` rendering (docs/PERFORMANCE.md): one line's fragments, a full render of the
//! fleet (every line rendered, every chunk compressed), an incremental render with 1% of the
//! lines re-polled (what the renderer does every second), and one with nothing changed; the
//! same with the body also split into 4 parts (`/metrics?part=K&parts=4`), and what the first
//! request for a new part count costs.
//!
//! `cargo bench --bench render`; CI runs `cargo test --bench render -- --smoke`.

use divan::Bencher;
use esim_exporter::metrics::{render_line_text, Format, Renderer, SelfMetrics, DEFAULT_GZIP_LEVEL};

#[path = "support/fleet.rs"]
mod fleet;

fn main() {
    fleet::main();
}

#[divan::bench]
fn one_line_fragments(bencher: Bencher) {
    let config = fleet::config(10);
    let store = fleet::polled_store(&config);
    let state = store.get("sim-000003").expect("line");
    bencher.bench_local(|| render_line_text(&state, &config.global, fleet::t(10)));
}

#[divan::bench(args = fleet::SIZES, sample_count = 10, sample_size = 1)]
fn full_render(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    bencher.bench_local(|| Renderer::new(DEFAULT_GZIP_LEVEL).render(&store, &config.global, fleet::t(10), &metrics));
}

#[divan::bench(args = fleet::SIZES, sample_count = 20, sample_size = 1)]
fn one_percent_repolled(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.render(&store, &config.global, fleet::t(10), &metrics);
    let mut round = 2;
    bencher.bench_local(|| {
        for (i, line) in config.lines.iter().enumerate().skip(round as usize % 100).step_by(100) {
            fleet::record(&store, &line.name, i, round);
        }
        round += 1;
        renderer.render(&store, &config.global, fleet::t(round), &metrics)
    });
}

#[divan::bench(args = fleet::SIZES, sample_count = 20, sample_size = 1)]
fn nothing_changed(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.render(&store, &config.global, fleet::t(10), &metrics);
    bencher.bench_local(|| renderer.render(&store, &config.global, fleet::t(11), &metrics));
}

/// Decompressing the whole identity body into one buffer: what an identity scrape costs in CPU
/// (`/metrics` decompresses the same LZ4 blocks frame by frame while it sends).
#[divan::bench(args = fleet::SIZES, sample_count = 10, sample_size = 1)]
fn decompress_identity_body(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let exposition =
        Renderer::new(DEFAULT_GZIP_LEVEL).render(&store, &config.global, fleet::t(10), &SelfMetrics::new());
    bencher.bench_local(|| exposition.parts(Format::Text, false).flatten().expect("decompresses"));
}

/// `one_percent_repolled` while scrapes ask for 4 parts: the whole body and its 4 parts.
#[divan::bench(args = fleet::SIZES, sample_count = 20, sample_size = 1)]
fn one_percent_repolled_with_4_parts(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.set_splits(&[4]);
    renderer.render(&store, &config.global, fleet::t(10), &metrics);
    let mut round = 2;
    bencher.bench_local(|| {
        for (i, line) in config.lines.iter().enumerate().skip(round as usize % 100).step_by(100) {
            fleet::record(&store, &line.name, i, round);
        }
        round += 1;
        renderer.render(&store, &config.global, fleet::t(round), &metrics)
    });
}

/// `nothing_changed` while scrapes ask for 4 parts.
#[divan::bench(args = fleet::SIZES, sample_count = 20, sample_size = 1)]
fn nothing_changed_with_4_parts(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.set_splits(&[4]);
    renderer.render(&store, &config.global, fleet::t(10), &metrics);
    bencher.bench_local(|| renderer.render(&store, &config.global, fleet::t(11), &metrics));
}

/// The render after the first request for 4 parts: every part block built from the whole
/// body's chunks (decompressed, cut by line, compressed), no line rendered again.
#[divan::bench(args = fleet::SIZES, sample_count = 10, sample_size = 1)]
fn first_render_of_4_parts(bencher: Bencher, n: usize) {
    let config = fleet::config(fleet::size(n));
    let store = fleet::polled_store(&config);
    let metrics = SelfMetrics::new();
    let mut renderer = Renderer::new(DEFAULT_GZIP_LEVEL);
    renderer.render(&store, &config.global, fleet::t(10), &metrics);
    bencher.bench_local(|| {
        renderer.set_splits(&[]);
        renderer.set_splits(&[4]);
        renderer.render(&store, &config.global, fleet::t(10), &metrics)
    });
}
