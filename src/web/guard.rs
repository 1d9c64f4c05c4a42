//! The layer every request passes before any route: request body size, basic auth from the
//! current web config, and the configured response headers (also on refusals).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::basic_credentials;
use super::webconfig::WebConfigSource;

/// No endpoint reads a body (`POST /-/reload` has none): anything bigger is refused unread.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// The guard's state: the web config, when `--web.config.file` is given.
#[derive(Clone)]
pub struct Guard {
    pub web: Option<Arc<WebConfigSource>>,
}

pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let too_big = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES);
    let Some(web) = guard.web else {
        if too_big {
            return payload_too_large();
        }
        return next.run(request).await;
    };
    let config = web.current();
    let mut response = if too_big {
        payload_too_large()
    } else if config.users.is_empty()
        || authorized(&config.users, request.headers().get(header::AUTHORIZATION).cloned()).await
    {
        next.run(request).await
    } else {
        let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// Takes the header by value: the request body is not `Sync`, so no borrow of the request may
/// live across the bcrypt wait.
async fn authorized(users: &Arc<super::auth::Users>, authorization: Option<HeaderValue>) -> bool {
    match basic_credentials(authorization.as_ref()) {
        Some((user, password)) => users.verify(&user, &password).await,
        // No credentials at all: refused without bcrypt, there is nothing to guess at.
        None => false,
    }
}

fn payload_too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY_BYTES} bytes\n")).into_response()
}
