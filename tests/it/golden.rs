//! Golden exposition: the embedded demo fleet, polled once on a paused clock from a fixed
//! instant, renders exactly `tests/golden/demo.metrics` (text 0.0.4) and
//! `tests/golden/demo.openmetrics`. Only the per-line families are compared: the exporter's
//! own metrics (process figures, git revision) differ from build to build.
//! `UPDATE_GOLDEN=1` rewrites the files; CI also runs promtool on the text file.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use esim_exporter::clock::{SharedClock, TokioClock};
use esim_exporter::metrics::{catalog, Format, Renderer, SelfMetrics};
use esim_exporter::store::Store;

use crate::support::{check_golden, repo};

/// 2026-06-01T00:00:00Z.
const START: u64 = 1_780_272_000;

async fn demo_exposition(format: Format) -> String {
    let config = esim_exporter::config::parse(
        "config/demo.yaml",
        esim_exporter::cli::EMBEDDED_DEMO_CONFIG,
        esim_exporter::drivers::REGISTRY,
    )
    .expect("demo");
    let clock: SharedClock = Arc::new(TokioClock::starting_at(UNIX_EPOCH + Duration::from_secs(START)));
    let store = Arc::new(Store::new());
    esim_exporter::poll::poll_once(&config, &store, clock.clone(), None, None).await.expect("plan builds");
    let exposition = Renderer::new(1).render(&store, &config.global, clock.now(), &SelfMetrics::new());
    let body = exposition.body(format, false).expect("the body decompresses");
    per_line_part(std::str::from_utf8(&body).expect("utf-8"), format)
}

/// Keeps the HELP/TYPE/UNIT lines and samples of per-line families (and `# EOF`).
fn per_line_part(body: &str, format: Format) -> String {
    let family_of = |name: &str| {
        catalog::line_families().iter().any(|f| {
            let family = if format == Format::OpenMetrics { f.openmetrics_name() } else { f.name };
            name == family || name == f.name
        })
    };
    body.lines()
        .filter(|line| {
            if let Some(meta) = line.strip_prefix("# ") {
                meta == "EOF" || meta.split(' ').nth(1).is_some_and(family_of)
            } else {
                family_of(line.split(['{', ' ']).next().unwrap_or(""))
            }
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn demo_fleet_renders_the_golden_text_exposition() {
    let text = demo_exposition(Format::Text).await;
    assert!(text.lines().filter(|l| l.starts_with("esim_balance{")).count() >= 24, "most lines report a balance");
    if let Err(diff) = check_golden(&repo().join("tests/golden/demo.metrics"), &text) {
        panic!("{diff}");
    }
    crate::binary::promtool_check_metrics(&text);
}

#[tokio::test(start_paused = true)]
async fn demo_fleet_renders_the_golden_openmetrics_exposition() {
    let om = demo_exposition(Format::OpenMetrics).await;
    assert!(om.ends_with("# EOF\n"));
    if let Err(diff) = check_golden(&repo().join("tests/golden/demo.openmetrics"), &om) {
        panic!("{diff}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_demo_fleet_is_deterministic() {
    assert_eq!(demo_exposition(Format::Text).await, demo_exposition(Format::Text).await);
    let _ = SystemTime::now();
}
