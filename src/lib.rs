//! esim-exporter: polls mobile operators for the balance and data left on each configured line
//! and serves the latest readings to Prometheus.
//!
//! Data flow: `config::load` → `Config` → `poll::Scheduler` (per line, on its interval) →
//! `drivers::Driver::poll` → `store::Store` → `metrics` (pre-rendered body) → `web`.
//! `run` is the whole program; `main.rs` only parses flags and reports errors.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod drivers;
pub mod error;
pub mod fsutil;
pub mod healthcheck;
mod heap;
pub mod lines;
pub mod logging;
mod login;
pub mod metrics;
mod once;
pub mod poll;
pub mod reading;
pub mod redact;
pub mod store;
pub mod table;
pub mod web;

use std::path::Path;
use std::sync::Arc;

use crate::app::{App, ConfigSource};
use crate::cli::Flags;
use crate::clock::{SharedClock, SystemClock};
use crate::poll::{Shard, ShardSpec};

/// How often `--storage.path` is written while running (and once more at shutdown).
const STATE_SAVE_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// How the program ended, for the process exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything worked.
    Ok,
    /// The work ran but something failed (`--config.check` found errors, a `--once` poll failed).
    Failed,
}

/// A problem that stops the program, reported by `main` with its context.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot load config from {source_name}: {error}")]
    Load { source_name: String, error: app::ApplyError },
    #[error("{0}")]
    Flag(String),
    #[error("{0}")]
    WebPath(#[from] cli::WebPathError),
    #[error("{0}")]
    Listen(#[from] web::server::ListenError),
    #[error("--web.config.file {0}")]
    WebConfig(#[from] web::webconfig::WebConfigError),
    #[error("unhealthy: {0}")]
    Healthcheck(healthcheck::HealthcheckError),
    #[error("lines: {0}")]
    Lines(lines::LinesError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs the program the flags describe.
pub async fn run(flags: Flags) -> Result<Outcome, RunError> {
    if let Some(cli::Command::Login(args)) = &flags.command {
        return login::run(&flags, args).await;
    }
    if let Some(cli::Command::Healthcheck(args)) = &flags.command {
        return healthcheck::run(args).await.map(|()| Outcome::Ok).map_err(RunError::Healthcheck);
    }
    if let Some(cli::Command::Lines(args)) = &flags.command {
        return lines::run(args).await.map_err(RunError::Lines);
    }
    let source = config_source(&flags);
    if flags.config_check {
        return Ok(once::check_config(&source));
    }
    let shard = match &flags.shard {
        Some(text) => Some(resolve_shard(text)?),
        None => None,
    };
    let clock: SharedClock = Arc::new(SystemClock);
    if flags.once {
        return once::poll_all_once(&source, clock, shard, flags.output).await;
    }
    serve(flags, source, clock, shard).await
}

/// `--shard` / `ESIM_SHARD`; `auto/n` reads the pod name, which Kubernetes puts in `HOSTNAME`
/// (and in the kernel's host name, the fallback for shells that do not export `HOSTNAME`).
fn resolve_shard(text: &str) -> Result<Shard, RunError> {
    let flag_error = |e: &dyn std::fmt::Display| RunError::Flag(format!("--shard {text} (or ESIM_SHARD): {e}"));
    let spec = ShardSpec::parse(text).map_err(|e| flag_error(&e))?;
    let hostname = match spec {
        ShardSpec::Fixed(_) => None,
        ShardSpec::Auto { .. } => std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok()),
    };
    let shard = spec.resolve(hostname.as_deref()).map_err(|e| flag_error(&e))?;
    tracing::info!(shard = %shard, spec = %spec, "sharded: polling this shard's lines only");
    Ok(shard)
}

/// The default `esim.yaml`, when absent, falls back to the embedded demo fleet so that a
/// first run needs no file; any path given explicitly must exist.
fn config_source(flags: &Flags) -> ConfigSource {
    let default = Path::new("esim.yaml");
    if flags.config_file == default && !default.exists() {
        tracing::warn!("esim.yaml not found: running the embedded demo fleet (config/demo.yaml)");
        ConfigSource::Embedded
    } else {
        ConfigSource::File(flags.config_file.clone())
    }
}

async fn serve(
    flags: Flags,
    source: ConfigSource,
    clock: SharedClock,
    shard: Option<Shard>,
) -> Result<Outcome, RunError> {
    cli::check_telemetry_path(&flags.telemetry_path).map_err(RunError::Flag)?;
    let paths = cli::WebPaths::resolve(flags.external_url.as_deref(), flags.route_prefix.as_deref())?;
    // The web config first: a bad file must stop the start before anything listens.
    let web = match &flags.web_config_file {
        Some(path) => Some(Arc::new(web::WebConfigSource::open(path)?)),
        None => None,
    };
    let mut listeners = Vec::new();
    for address in &flags.listen_addresses {
        listeners.push(web::server::bind(address)?);
    }
    let source_name = source.describe();
    let app = App::start(source, clock, shard, flags.storage_path.clone())
        .map_err(|error| RunError::Load { source_name: source_name.clone(), error })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let renderer = app.spawn_renderer(flags.render_interval, flags.gzip_level, stop_rx.clone());
    app.spawn_saver(STATE_SAVE_PERIOD, stop_rx.clone());
    for listener in &listeners {
        if let Ok(addr) = listener.local_addr() {
            let tls = web.as_ref().is_some_and(|w| w.current().tls.is_some());
            tracing::info!(address = %addr, tls, route_prefix = %paths.prefix, config = %source_name, lines = app.config().lines.len(), "listening");
        }
    }
    let options = web::RouterOptions { enable_lifecycle: flags.enable_lifecycle, web: web.clone(), paths };
    let router = web::router(app.clone(), &flags.telemetry_path, options);
    let limits = web::Limits {
        max_connections: flags.max_connections as usize,
        read_header_timeout: flags.read_header_timeout,
        idle_timeout: flags.idle_timeout,
        ..web::Limits::default()
    };
    let signals = tokio::spawn(handle_signals(app.clone(), stop_tx));
    let mut shutdown_rx = stop_rx;
    let served = web::serve(listeners, router, web, limits, async move {
        let _ = shutdown_rx.wait_for(|stop| *stop).await;
    })
    .await;
    signals.abort();
    let _ = renderer.await;
    app.shutdown().await;
    tracing::info!("stopped");
    served.map_err(RunError::Serve)?;
    Ok(Outcome::Ok)
}

/// SIGHUP reloads; SIGTERM and SIGINT stop the server gracefully.
async fn handle_signals(app: Arc<App>, stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::hangup()), signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; SIGHUP reload and graceful stop are unavailable");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = app.reload().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping: finishing in-flight requests");
    let _ = stop.send(true);
}
