//! The accept loop under the router: TLS (when the web config has a certificate), a cap on
//! connections, header-read and idle timeouts, a header size limit, graceful shutdown.
//!
//! axum::serve hides the connection, so this drives hyper directly. Each connection reports its
//! phase (waiting for a request, receiving one, being answered) to a registry; a reaper closes
//! connections that wait too long, and a new connection over the cap evicts the one that has
//! waited longest without being answered, so neither idle nor slow-loris clients hold slots
//! that a scrape needs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

use super::webconfig::WebConfigSource;

/// Connection limits and timeouts (`--web.max-connections`, `--web.read-header-timeout`,
/// `--web.idle-timeout`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// From the first byte of a request (or of the TLS handshake) to its complete headers.
    pub read_header_timeout: Duration,
    /// How long a connection may wait for its next request, and a response for its client to
    /// read on.
    pub idle_timeout: Duration,
    /// Request line plus headers.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_header_bytes: 64 * 1024,
        }
    }
}

/// hyper's smallest read buffer.
const MIN_HEADER_BUFFER: usize = 8192;

const IDLE: u8 = 0;
const RECEIVING: u8 = 1;
const BUSY: u8 = 2;
/// Told to close (evicted or timed out): never chosen again.
const CLOSING: u8 = 3;

/// What the reaper and the evictor know about one connection.
#[derive(Debug)]
struct ConnState {
    phase: AtomicU8,
    /// Milliseconds since the server's epoch when `phase` last changed.
    since: AtomicU64,
    kill: Notify,
    epoch: Instant,
    /// Milliseconds since the epoch + 1 when a write started to wait for the client (0: not
    /// waiting): a client that stops reading a response must not hold its slot forever.
    write_blocked: AtomicU64,
}

impl ConnState {
    fn new(epoch: Instant) -> ConnState {
        let state = ConnState {
            phase: AtomicU8::new(IDLE),
            since: AtomicU64::new(0),
            kill: Notify::new(),
            epoch,
            write_blocked: AtomicU64::new(0),
        };
        state.set(IDLE);
        state
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set(&self, phase: u8) {
        self.since.store(self.now_ms(), Ordering::Release);
        let _ = self.phase.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| (p != CLOSING).then_some(phase));
    }

    /// First bytes after a wait: the header clock starts.
    fn bytes_arrived(&self) {
        if self.phase.compare_exchange(IDLE, RECEIVING, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.since.store(self.now_ms(), Ordering::Release);
        }
    }

    /// A write waits for the client to read (`Pending`) or went through.
    fn write_waits(&self, waiting: bool) {
        if !waiting {
            self.write_blocked.store(0, Ordering::Release);
        } else if self.write_blocked.load(Ordering::Acquire) == 0 {
            self.write_blocked.store(self.now_ms() + 1, Ordering::Release);
        }
    }

    /// How long the current write has waited for the client, if it waits.
    fn write_stalled(&self) -> Option<Duration> {
        let at = self.write_blocked.load(Ordering::Acquire);
        (at != 0).then(|| Duration::from_millis(self.now_ms().saturating_sub(at - 1)))
    }

    /// Tells the connection to close, once.
    fn close(&self) {
        if self.phase.swap(CLOSING, Ordering::AcqRel) != CLOSING {
            self.kill.notify_one();
        }
    }

    /// How long it has waited for or on a request; `None` while a request is being answered
    /// or once it was told to close.
    fn waiting(&self) -> Option<(u8, Duration)> {
        let phase = self.phase.load(Ordering::Acquire);
        (phase == IDLE || phase == RECEIVING).then(|| {
            let since = self.since.load(Ordering::Acquire);
            (phase, Duration::from_millis(self.now_ms().saturating_sub(since)))
        })
    }
}

/// The live connections of every listener.
#[derive(Debug)]
struct Registry {
    conns: Mutex<Vec<(u64, Arc<ConnState>)>>,
    next_id: AtomicU64,
    slots: Arc<Semaphore>,
    epoch: Instant,
    limits: Limits,
}

impl Registry {
    /// No connections yet; `slots` connections at most at once.
    fn new(slots: usize, limits: Limits) -> Registry {
        Registry {
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(slots.max(1))),
            epoch: Instant::now(),
            limits,
        }
    }

    fn add(&self) -> (u64, Arc<ConnState>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new(self.epoch));
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).push((id, state.clone()));
        (id, state)
    }

    fn remove(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != id);
    }

    /// Closes the connection that has waited longest without being answered; false if every
    /// connection is busy answering.
    fn evict_one(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let victim = conns.iter().filter_map(|(_, c)| c.waiting().map(|(_, d)| (d, c))).max_by_key(|(d, _)| *d);
        match victim {
            Some((_, c)) => {
                // Under the registry lock, so concurrent evictions pick different victims.
                c.close();
                true
            }
            None => false,
        }
    }

    /// Closes connections past their header-read or idle timeout.
    fn reap(&self) {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for (_, c) in conns.iter() {
            if c.write_stalled().is_some_and(|d| d > self.limits.idle_timeout) {
                tracing::debug!("closing a connection whose client stopped reading its response");
                c.close();
                continue;
            }
            match c.waiting() {
                Some((IDLE, d)) if d > self.limits.idle_timeout => c.close(),
                Some((RECEIVING, d)) if d > self.limits.read_header_timeout => c.close(),
                _ => {}
            }
        }
    }
}

/// Serves `router` on every listener until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    web: Option<Arc<WebConfigSource>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let registry = Arc::new(Registry::new(limits.max_connections, limits));
    let reaper = tokio::spawn(reap_loop(registry.clone()));
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        loops.spawn(accept_loop(listener, router.clone(), web.clone(), registry.clone(), stop_rx.clone()));
    }
    let mut result = Ok(());
    while let Some(done) = loops.join_next().await {
        if let Err(e) = done.map_err(io::Error::other).and_then(|r| r) {
            result = Err(e);
        }
    }
    reaper.abort();
    result
}

async fn reap_loop(registry: Arc<Registry>) {
    let tick = (registry.limits.read_header_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        registry.reap();
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    web: Option<Arc<WebConfigSource>>,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning, as Go does.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let router = router.clone();
        let web = web.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let Some(permit) = take_slot(&registry).await else {
                tracing::warn!(%peer, "connection refused: --web.max-connections reached and every connection is busy");
                return;
            };
            let (id, state) = registry.add();
            handle(stream, peer, router, web, state, &registry.limits, stop).await;
            registry.remove(id);
            drop(permit);
        });
    }
    // Let in-flight connections finish (each got the stop signal).
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// A connection slot: free, or freed by evicting the longest-waiting connection, or (when
/// every connection is answering a request) the first to free up within the header timeout.
async fn take_slot(registry: &Registry) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(permit) = registry.slots.clone().try_acquire_owned() {
        return Some(permit);
    }
    registry.evict_one();
    tokio::time::timeout(registry.limits.read_header_timeout, registry.slots.clone().acquire_owned()).await.ok()?.ok()
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    web: Option<Arc<WebConfigSource>>,
    state: Arc<ConnState>,
    limits: &Limits,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let tracked = Tracked { inner: stream, state: state.clone() };
    let tls = web.as_ref().and_then(|w| w.current().tls.as_ref().map(|t| t.server_config.clone()));
    match tls {
        None => serve_http(tracked, router, state, limits, stop).await,
        Some(config) => {
            let accept = async {
                let mut tracked = tracked;
                if !looks_like_tls(&mut tracked).await {
                    refuse_plain_http(&mut tracked.inner).await;
                    return None;
                }
                match tokio_rustls::TlsAcceptor::from(config).accept(tracked).await {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        None
                    }
                }
            };
            let handshake = tokio::select! {
                tls = accept => tls,
                _ = state.kill.notified() => None,
            };
            if let Some(tls) = handshake {
                serve_http(tls, router, state, limits, stop).await;
            }
        }
    }
}

/// Go's answer to plain HTTP on a TLS port. The request is drained briefly after the answer
/// (as Go's closeWriteAndWait does): closing with unread input would send a reset that can
/// destroy the answer before the client reads it.
async fn refuse_plain_http(stream: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ =
        stream.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n").await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async {
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// Whether the first byte is a TLS handshake record (0x16); waits for it (the reaper bounds
/// the wait).
async fn looks_like_tls(stream: &mut Tracked<TcpStream>) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.inner.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

async fn serve_http<S>(io: S, router: Router, state: Arc<ConnState>, limits: &Limits, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let router = router.clone();
        let state = service_state.clone();
        async move {
            state.set(BUSY);
            let response = router.oneshot(request).await?;
            // The connection waits again once the whole body is written (or dropped).
            let (parts, body) = response.into_parts();
            let body = axum::body::Body::new(DoneGuard { inner: body, state: Some(state) });
            Ok::<_, std::convert::Infallible>(hyper::Response::from_parts(parts, body))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BUFFER) * 2)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = state.kill.notified() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// The socket, reporting arriving bytes to the connection's state.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_arrived();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.write_waits(polled.is_pending());
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.write_waits(polled.is_pending());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that marks its connection as waiting again when it is done or dropped.
struct DoneGuard {
    inner: axum::body::Body,
    state: Option<Arc<ConnState>>,
}

impl DoneGuard {
    fn done(&mut self) {
        if let Some(state) = self.state.take() {
            state.set(IDLE);
        }
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for DoneGuard {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why a listen address cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("invalid listen address `{0}` (expected host:port or :port)")]
    Address(String),
    #[error("cannot listen on {address}: {error}")]
    Bind { address: String, error: io::Error },
}

/// Binds `text` (`host:port` or `:port`). `:port` is every address, IPv6 and IPv4 on one
/// dual-stack socket as Go does; where IPv6 is unavailable it falls back to IPv4 alone.
pub fn bind(text: &str) -> Result<TcpListener, ListenError> {
    let failed = |error| ListenError::Bind { address: text.to_string(), error };
    if let Some(port) = text.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| ListenError::Address(text.to_string()))?;
        return match bind_socket(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)), true) {
            Ok(listener) => Ok(listener),
            Err(e) if ipv6_unavailable(&e) => {
                tracing::info!(error = %e, "IPv6 unavailable: listening on IPv4 only");
                bind_socket(SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)), false).map_err(failed)
            }
            Err(e) => Err(failed(e)),
        };
    }
    let addr: SocketAddr = text.parse().map_err(|_| ListenError::Address(text.to_string()))?;
    bind_socket(addr, false).map_err(failed)
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    // EAFNOSUPPORT (no IPv6 in the kernel) and EADDRNOTAVAIL (disabled on every interface).
    matches!(e.raw_os_error(), Some(97) | Some(99)) || e.kind() == io::ErrorKind::AddrNotAvailable
}

fn bind_socket(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_evicts_the_longest_waiting_and_spares_busy_ones() {
        let registry = Registry::new(2, Limits::default());
        let (_, busy) = registry.add();
        busy.set(BUSY);
        assert!(!registry.evict_one(), "a busy connection is never evicted");
        let (_, idle) = registry.add();
        assert!(registry.evict_one());
        // The kill notification is stored for the idle one.
        let notified = idle.kill.notified();
        tokio_test_now(notified);
    }

    fn tokio_test_now(f: impl Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(100), f).await.expect("notified") });
    }

    #[tokio::test]
    async fn bytes_start_the_header_clock_and_the_reaper_closes_late_ones() {
        let limits = Limits { read_header_timeout: Duration::from_millis(10), ..Limits::default() };
        let registry = Registry::new(2, limits);
        let (_, c) = registry.add();
        c.bytes_arrived();
        assert_eq!(c.waiting().map(|w| w.0), Some(RECEIVING));
        tokio::time::sleep(Duration::from_millis(30)).await;
        registry.reap();
        tokio::time::timeout(Duration::from_millis(100), c.kill.notified()).await.expect("reaped");
    }

    #[tokio::test]
    async fn a_response_the_client_does_not_read_is_closed_at_the_idle_timeout() {
        let limits = Limits { idle_timeout: Duration::from_millis(10), ..Limits::default() };
        let registry = Registry::new(2, limits);
        let (_, c) = registry.add();
        c.set(BUSY);
        c.write_waits(true);
        registry.reap();
        assert!(c.waiting().is_none(), "a write that just started waiting is left alone");
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.write_waits(true);
        registry.reap();
        tokio::time::timeout(Duration::from_millis(100), c.kill.notified()).await.expect("closed");
        let (_, d) = registry.add();
        d.set(BUSY);
        d.write_waits(true);
        d.write_waits(false);
        tokio::time::sleep(Duration::from_millis(30)).await;
        registry.reap();
        assert_eq!(d.phase.load(Ordering::Acquire), BUSY, "writes that go through keep it open");
    }

    #[tokio::test]
    async fn listen_address_forms() {
        assert!(bind("[::1]:0").is_ok() || bind("127.0.0.1:0").is_ok());
        assert!(matches!(bind("nope"), Err(ListenError::Address(_))));
        assert!(matches!(bind(":99999"), Err(ListenError::Address(_))));
    }

    #[tokio::test]
    async fn colon_port_is_dual_stack_or_ipv4() {
        let listener = bind(":0").unwrap();
        let addr = listener.local_addr().unwrap();
        let v4 = tokio::net::TcpStream::connect(("127.0.0.1", addr.port())).await;
        assert!(v4.is_ok(), "IPv4 reaches {addr}");
        if addr.is_ipv6() {
            assert!(tokio::net::TcpStream::connect(("::1", addr.port())).await.is_ok(), "IPv6 reaches {addr}");
        }
    }
}
