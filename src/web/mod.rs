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
pub mod snapshot;
pub mod status_page;
pub mod tls;
pub mod webconfig;

use std::future::Future;
use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;
use crate::cli::WebPaths;

pub use server::Limits;
pub use webconfig::WebConfigSource;

/// What the routes need besides the app.
#[derive(Clone, Default)]
pub struct RouterOptions {
    /// `--web.enable-lifecycle`: `POST /-/reload` reloads; otherwise it answers 403.
    pub enable_lifecycle: bool,
    /// `--web.config.file`, behind which every route sits.
    pub web: Option<Arc<WebConfigSource>>,
    /// `--web.route-prefix` (every route is under it) and `--web.external-url`.
    pub paths: WebPaths,
}

/// The state handlers share: the app, the per-line `/probe` limiter and where things are.
#[derive(Clone)]
pub struct Routes {
    pub app: Arc<App>,
    pub probes: Arc<probe_limit::ProbeLimiter>,
    pub enable_lifecycle: bool,
    pub links: Arc<Links>,
    /// The rows of `/` and `/api/v1/lines`, shared between requests.
    pub snapshots: Arc<snapshot::SnapshotCache>,
}

/// Handlers that need only the app take it straight from the shared state.
impl FromRef<Routes> for Arc<App> {
    fn from_ref(routes: &Routes) -> Arc<App> {
        routes.app.clone()
    }
}

/// Where the exporter's endpoints are, for the pages and messages that name them.
#[derive(Debug)]
pub struct Links {
    /// `--web.telemetry-path`, under the prefix.
    pub telemetry_path: String,
    pub paths: WebPaths,
}

impl Links {
    /// How `path` (`/metrics`) is shown to a person: under the external URL when there is one,
    /// else under the route prefix.
    pub fn shown(&self, path: &str) -> String {
        match &self.paths.external_url {
            Some(url) => url.join(path.trim_start_matches('/')).map_or_else(|_| path.to_string(), String::from),
            None => self.paths.prefix.join(path),
        }
    }
}

/// The exporter's routes, each under `--web.route-prefix`; `telemetry_path` is
/// `--web.telemetry-path` (itself under the prefix). Anything else is a 404, apart from the
/// bare prefix, which redirects to the prefix with its slash (where the page's relative links
/// resolve).
pub fn router(app: Arc<App>, telemetry_path: &str, options: RouterOptions) -> Router {
    let prefix = options.paths.prefix.clone();
    let routes = Routes {
        app,
        probes: Arc::new(probe_limit::ProbeLimiter::new(probe_limit::PROBE_MIN_INTERVAL)),
        enable_lifecycle: options.enable_lifecycle,
        links: Arc::new(Links { telemetry_path: telemetry_path.to_string(), paths: options.paths }),
        snapshots: Arc::default(),
    };
    let at = |path: &str| prefix.join(path);
    let mut router = Router::new()
        .route(&at(telemetry_path), get(routes::metrics))
        .route(&at("/"), get(routes::status_page))
        .route(&at("/api/v1/lines"), get(routes::lines))
        .route(&at("/api/v1/line"), get(routes::line))
        .route(&at("/-/healthy"), get(routes::healthy))
        .route(&at("/-/ready"), get(routes::ready))
        .route(&at("/-/reload"), post(routes::reload))
        .route(&at("/probe"), get(routes::probe));
    if !prefix.is_root() {
        router = router.route(prefix.as_str(), get(routes::to_prefix_with_slash));
    }
    router
        .fallback(routes::not_found)
        .with_state(routes)
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
