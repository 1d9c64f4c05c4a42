//! HTTP: the router (`router`, testable without a socket) and `serve` on one or more listeners
//! with graceful shutdown. Handlers only read pre-built state: `/metrics` never waits on an
//! operator.

pub mod api;
mod routes;
pub mod status_page;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::app::App;

/// The exporter's routes; `telemetry_path` is `--web.telemetry-path`.
pub fn router(app: Arc<App>, telemetry_path: &str) -> Router {
    let telemetry: Arc<str> = Arc::from(telemetry_path);
    Router::new()
        .route(telemetry_path, get(routes::metrics))
        .route("/", get(move |app, query| routes::status_page(app, query, telemetry.clone())))
        .route("/api/v1/lines", get(routes::lines))
        .route("/-/healthy", get(routes::healthy))
        .route("/-/ready", get(routes::ready))
        .route("/-/reload", post(routes::reload))
        .route("/probe", get(routes::probe))
        .fallback(routes::not_found)
        .with_state(app)
}

/// Serves `router` on every listener until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut rx = rx.clone();
        let router = router.clone();
        servers.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    while let Some(result) = servers.join_next().await {
        result.map_err(std::io::Error::other)??;
    }
    Ok(())
}
