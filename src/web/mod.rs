//! HTTP: the router (`router`, testable without a socket) and `serve` on one or more listeners
//! with graceful shutdown. Handlers only read pre-built state: `/metrics` never waits on an
//! operator. `--web.config.file` (TLS, basic auth, headers) is `webconfig.rs`, `tls.rs`,
//! `auth.rs`, applied to every route by `guard.rs`; the connection level (limits, timeouts,
//! TLS handshakes, dual-stack listening) is `server.rs`.

pub mod api;
pub mod auth;
pub mod guard;
pub mod probe_limit;
mod routes;
pub mod server;
pub mod status_page;
pub mod tls;
pub mod webconfig;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;

pub use server::Limits;
pub use webconfig::WebConfigSource;

/// What the routes need besides the app.
#[derive(Clone, Default)]
pub struct RouterOptions {
    /// `--web.enable-lifecycle`: `POST /-/reload` reloads; otherwise it answers 403.
    pub enable_lifecycle: bool,
    /// `--web.config.file`, behind which every route sits.
    pub web: Option<Arc<WebConfigSource>>,
}

/// The state handlers share: the app and the per-line `/probe` limiter.
#[derive(Clone)]
pub struct Routes {
    pub app: Arc<App>,
    pub probes: Arc<probe_limit::ProbeLimiter>,
    pub enable_lifecycle: bool,
}

/// The exporter's routes; `telemetry_path` is `--web.telemetry-path`.
pub fn router(app: Arc<App>, telemetry_path: &str, options: RouterOptions) -> Router {
    let telemetry: Arc<str> = Arc::from(telemetry_path);
    let routes = Routes {
        app: app.clone(),
        probes: Arc::new(probe_limit::ProbeLimiter::new(probe_limit::PROBE_MIN_INTERVAL)),
        enable_lifecycle: options.enable_lifecycle,
    };
    let lifecycle =
        Router::new().route("/-/reload", post(routes::reload)).route("/probe", get(routes::probe)).with_state(routes);
    Router::new()
        .route(telemetry_path, get(routes::metrics))
        .route("/", get(move |app, query| routes::status_page(app, query, telemetry.clone())))
        .route("/api/v1/lines", get(routes::lines))
        .route("/api/v1/line", get(routes::line))
        .route("/-/healthy", get(routes::healthy))
        .route("/-/ready", get(routes::ready))
        .fallback(routes::not_found)
        .with_state(app)
        .merge(lifecycle)
        .layer(axum::middleware::from_fn_with_state(guard::Guard { web: options.web }, guard::guard))
}

/// Serves `router` on every listener until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    web: Option<Arc<WebConfigSource>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listeners, router, web, limits, shutdown).await
}
