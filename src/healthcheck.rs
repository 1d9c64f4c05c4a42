//! `esim-exporter healthcheck`: asks a running exporter's `/-/healthy` and exits 0 or 1, for
//! container `HEALTHCHECK`s and probes in images without curl or a shell (distroless, scratch).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::HealthcheckArgs;

/// The status line is all we read; a healthy answer is tiny, so this bounds a misbehaving peer.
const MAX_RESPONSE: u64 = 16 * 1024;

/// Why the exporter did not answer healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("{0}")]
    Flag(#[from] crate::cli::WebPathError),
    #[error("invalid address `{address}`: {reason}")]
    Address { address: String, reason: String },
    #[error("{url}: {error}")]
    Io { url: String, error: std::io::Error },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: not an HTTP response")]
    NotHttp { url: String },
    #[error("{url}: HTTP {status}")]
    Unhealthy { url: String, status: u16 },
}

/// Runs the check once: `Ok(())` when the endpoint answered 200. The path is asked under the
/// route prefix the exporter's own flags give, so the check repeats them rather than a path.
pub async fn run(args: &HealthcheckArgs) -> Result<(), HealthcheckError> {
    let paths = crate::cli::WebPaths::resolve(args.external_url.as_deref(), args.route_prefix.as_deref())?;
    let path = paths.prefix.join(&args.path);
    let addr = crate::cli::parse_listen_address(&args.address)
        .map_err(|reason| HealthcheckError::Address { address: args.address.clone(), reason })?;
    // `:10063` means every interface to a listener; to a client it means this host.
    let host =
        if addr.ip().is_unspecified() { std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    let url = format!("http://{host}{path}");
    let timeout = args.timeout;
    match tokio::time::timeout(timeout, get_status(host, &path)).await {
        Err(_) => Err(HealthcheckError::Timeout { url, timeout }),
        Ok(Err(error)) => Err(HealthcheckError::Io { url, error }),
        Ok(Ok(None)) => Err(HealthcheckError::NotHttp { url }),
        Ok(Ok(Some(200))) => Ok(()),
        Ok(Ok(Some(status))) => Err(HealthcheckError::Unhealthy { url, status }),
    }
}

/// One HTTP/1.1 GET; the status code, or `None` when the answer is not HTTP.
async fn get_status(addr: std::net::SocketAddr, path: &str) -> std::io::Result<Option<u16>> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: esim-exporter-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut answer).await?;
    Ok(status_code(&answer))
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_code(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_once(answer: &'static str) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        addr
    }

    fn args(address: String) -> HealthcheckArgs {
        HealthcheckArgs {
            address,
            path: "/-/healthy".into(),
            route_prefix: None,
            external_url: None,
            timeout: Duration::from_secs(2),
        }
    }

    /// The first request line a one-answer server received, for asserting the path asked.
    async fn serve_once_recording(
        answer: &'static str,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            let _ = tx.send(head.lines().next().unwrap_or("").to_string());
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn asks_under_the_route_prefix_of_the_exporters_flags() {
        const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let (addr, asked) = serve_once_recording(OK).await;
        let a = HealthcheckArgs { route_prefix: Some("/esim/".into()), ..args(addr.to_string()) };
        assert!(run(&a).await.is_ok());
        assert_eq!(asked.await.unwrap(), "GET /esim/-/healthy HTTP/1.1");
        let (addr, asked) = serve_once_recording(OK).await;
        let a = HealthcheckArgs { external_url: Some("https://ops.example/ops/esim".into()), ..args(addr.to_string()) };
        assert!(run(&a).await.is_ok());
        assert_eq!(asked.await.unwrap(), "GET /ops/esim/-/healthy HTTP/1.1");
        let bad = HealthcheckArgs { route_prefix: Some("/{x}".into()), ..args(addr.to_string()) };
        assert!(run(&bad).await.unwrap_err().to_string().starts_with("invalid --web.route-prefix `/{x}`"));
    }

    #[tokio::test]
    async fn passes_on_200_and_fails_naming_the_status_otherwise() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nHealthy\n").await;
        assert!(run(&args(ok.to_string())).await.is_ok());
        let bad = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = run(&args(bad.to_string())).await.unwrap_err();
        assert_eq!(err.to_string(), format!("http://{bad}/-/healthy: HTTP 503"));
        let garbage = serve_once("SSH-2.0-OpenSSH\r\n").await;
        assert!(matches!(run(&args(garbage.to_string())).await, Err(HealthcheckError::NotHttp { .. })));
    }

    #[tokio::test]
    async fn fails_when_nothing_listens_or_the_address_is_bad() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let free = listener.local_addr().unwrap();
        drop(listener);
        assert!(matches!(run(&args(free.to_string())).await, Err(HealthcheckError::Io { .. })));
        let err = run(&args("nowhere".into())).await.unwrap_err();
        assert!(err.to_string().starts_with("invalid address `nowhere`"), "{err}");
    }

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some(404));
        assert_eq!(status_code(b"200 OK"), None);
        assert_eq!(status_code(b""), None);
    }
}
