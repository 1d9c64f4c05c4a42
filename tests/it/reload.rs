//! Reloads and the async runtime: a reload's work (reading, parsing and resolving the file,
//! building the plan) must not occupy the runtime thread that took the request. It did: at
//! 10,000 lines 100–200 ms in which every task behind it on that thread (polls holding a
//! request token, scrapes) waited.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esim_exporter::app::{App, ConfigSource};
use esim_exporter::clock::SystemClock;

fn fleet(lines: usize, label: &str) -> String {
    let mut yaml = format!(
        "global:\n  poll_interval: 1h\n  timeout: 10s\naccounts:\n  demo:\n    driver: demo\n    seed: 1\n    labels: {{variant: \"{label}\"}}\nlines:\n"
    );
    for i in 0..lines {
        let _ = writeln!(yaml, "  - {{name: line-{i}, account: demo}}");
    }
    yaml
}

#[tokio::test(flavor = "current_thread")]
async fn a_reload_of_a_large_config_leaves_the_runtime_thread_free() {
    let dir = std::env::temp_dir().join(format!("esim-reload-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("esim.yaml");
    std::fs::write(&path, fleet(20_000, "a")).unwrap();
    let app = App::start(ConfigSource::File(path.clone()), Arc::new(SystemClock), None, None).expect("app starts");
    std::fs::write(&path, fleet(20_000, "b")).unwrap();

    // A task on the same (only) runtime thread that notes the longest gap between its ticks.
    let stop = Arc::new(AtomicBool::new(false));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let ticker = {
        let (stop, longest) = (stop.clone(), longest.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let gap = last.elapsed();
                let mut l = longest.lock().unwrap();
                *l = (*l).max(gap);
                last = Instant::now();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    *longest.lock().unwrap() = Duration::ZERO;
    let started = Instant::now();
    app.reload().await.expect("reload");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    ticker.await.unwrap();
    let longest = *longest.lock().unwrap();
    app.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert!(took >= Duration::from_millis(40), "the reload took only {took:?}: too small to tell");
    // Before the fix the ticker waited for the whole reload (the gap was `took`).
    assert!(longest < took / 3, "the runtime thread was blocked for {longest:?} of a {took:?} reload");
}
