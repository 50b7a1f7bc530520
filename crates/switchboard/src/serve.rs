//! Serving HTTP: our own accept loop over hyper, so that no client can hold a connection, or
//! all of them, for free.
//!
//! - A connection must send a request's headers within the header-read timeout: from its
//!   accept for the first request, and from the first byte of each later one.
//! - A connection with no request in flight is closed after the idle timeout; one whose
//!   request makes no progress (nothing read, nothing written) for longer than both the idle
//!   timeout and the request timeout is closed too, so a client that never reads its answer
//!   holds nothing for ever.
//! - At most `max_connections` are open at once: at the cap the loop stops accepting (the
//!   kernel's listen queue holds the rest) and takes the next one when a connection closes.
//! - An accept error (such as running out of file descriptors) is met with a short, growing
//!   pause rather than a retry at once, and is logged at most once a second.
//!
//! HTTP/1.1 with keep-alive and HTTP/2 with prior knowledge (h2c) are both served, and every
//! request carries the peer's address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::Service;

/// How the server treats its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServeConfig {
    /// Longest time to receive a request's headers.
    pub(crate) header_read_timeout: Duration,
    /// Longest time a connection stays open with no request in flight.
    pub(crate) idle_timeout: Duration,
    /// Longest time a request in flight may go without reading or writing a byte (the
    /// larger of the idle timeout and a little more than the request timeout).
    pub(crate) stall_timeout: Duration,
    /// Most connections open at once.
    pub(crate) max_connections: usize,
}

/// Connections the kernel may hold for the server before it accepts them (the system's own
/// cap, `net.core.somaxconn`, applies too). Past a full queue the kernel drops connections
/// that the server never sees, so it is larger than the 128 of `TcpListener::bind`: it holds
/// the clients that wait while the server is at its cap.
const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `address` (an IP address and port, or a host name and port: the first of its
/// addresses that can be bound), with a listen queue of [`LISTEN_BACKLOG`].
pub(crate) async fn bind(address: &str) -> io::Result<TcpListener> {
    let mut failed = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As `TcpListener::bind` does: a restart need not wait for the old connections'
        // TIME-WAIT to pass.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")))
}

/// Raises the soft limit on open files to the hard limit, and returns the soft limit now in
/// force (`None` where the platform has no such limit or it cannot be read).
///
/// The `rlimit` crate does the system calls, so this crate stays free of `unsafe` code.
pub(crate) fn raise_fd_limit() -> Option<u64> {
    if !cfg!(unix) {
        return None;
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft)
        }
    }
}

/// The default cap on open connections for a file-descriptor limit: the limit less a reserve
/// for everything else the process opens (database connections and files, upstream and
/// webhook sockets, logs). The reserve is a quarter of the limit, and at least 256 (or half
/// the limit, if that is smaller): 768 of 1,024, 256 of 512, 49,152 of 65,536. An unknown or
/// unlimited limit counts as 2^20.
pub(crate) fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let limit = fd_limit.unwrap_or(1 << 20).min(1 << 20);
    let reserve = (limit / 4).max(256.min(limit / 2));
    usize::try_from(limit - reserve).unwrap_or(1).max(1)
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to finish its requests in flight and close, and returns once all have closed.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own timers watch the headers (hyper's would also close idle keep-alive connections
    // at the header timeout).
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut errors = AcceptErrors::default();
    loop {
        // At the cap, wait for a connection to close before taking another from the queue.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                let pause = errors.failed(&e);
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        errors.succeeded();
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, router.clone(), builder.clone(), config, stop_rx.clone(), permit));
    }
    drop(listener);
    stop_tx.send_replace(true);
    // Every connection holds a permit until it closes.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Serves one connection until it closes, times out or finishes after shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    config: ServeConfig,
    mut stop: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked { io: stream, activity: activity.clone() });
    let service = ConnService { router, peer, activity: activity.clone() };
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&config);
        let wait = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = wait => {
                if activity.deadline(&config).is_some_and(|at| at <= Instant::now()) {
                    tracing::debug!(%peer, "closing a connection that was idle or slow too long");
                    return;
                }
            }
            // A request started or ended, or the first bytes of one came: look again.
            () = activity.changed.notified() => {}
            changed = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection is doing, for its timers: written by its I/O and its requests, read by
/// the task that serves it. Times are milliseconds since `start`, plus one (0 is "never").
struct Activity {
    start: Instant,
    /// Requests whose answers are not yet fully written.
    in_flight: AtomicUsize,
    /// Whether a request has come on this connection.
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2 (which sends frames between requests).
    http2: AtomicBool,
    /// When the first byte came while no request was in flight (a request's headers began).
    head_since: AtomicU64,
    /// When the last request's answer was written.
    last_done: AtomicU64,
    /// When a byte was last read or written.
    last_io: AtomicU64,
    /// Woken when a request starts or ends or its headers begin, so the timers look again.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            head_since: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            last_io: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.start + Duration::from_millis(stamp.saturating_sub(1))
    }

    fn read(&self, first: bool, bytes: &[u8]) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if first && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.http2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        self.served.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn request_ended(&self) {
        self.last_done.store(self.now(), Ordering::Relaxed);
        self.head_since.store(0, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// When the connection is to be closed if nothing changes before then.
    fn deadline(&self, config: &ServeConfig) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let last = self.last_io.load(Ordering::Relaxed).max(1);
            return Some(self.at(last) + config.stall_timeout);
        }
        if !self.served.load(Ordering::Relaxed) {
            return Some(self.start + config.header_read_timeout);
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 && !self.http2.load(Ordering::Relaxed) {
            return Some(self.at(head) + config.header_read_timeout);
        }
        Some(self.at(self.last_done.load(Ordering::Relaxed).max(1)) + config.idle_timeout)
    }
}

/// Counts a request in flight from the call until its answer's body is written or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.request_started();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The router for one connection: adds the peer's address and counts requests in flight.
#[derive(Clone)]
struct ConnService {
    router: axum::Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(&self.activity);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // The router is always ready, and a clone of it is cheap (it is behind an `Arc`).
        let mut router = self.router.clone();
        let answer = router.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(move |body| {
                axum::body::Body::new(body.map_err(move |e| {
                    // The guard lives as long as the body: until hyper has written it all.
                    let _ = &guard;
                    e
                }))
            }))
        })
    }
}

/// A connection's socket, noting when bytes move.
struct Tracked {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let first = self.activity.last_io.load(Ordering::Relaxed) == 0;
            self.activity.read(first, &buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An error that concerns one connection only, which the next accept does not repeat.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Accept errors in a row: how long to pause, and when the last was logged.
#[derive(Default)]
struct AcceptErrors {
    in_a_row: u32,
    logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// Notes a failed accept (such as `EMFILE`: too many open files) and returns how long to
    /// pause before the next: 10 ms, doubling to 1 s. Logs at most once a second.
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::error!(error = %e, more = self.unlogged, "accept failed; pausing before the next");
            self.logged = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        Duration::from_millis(10u64 << (self.in_a_row - 1).min(7)).min(Duration::from_secs(1))
    }

    fn succeeded(&mut self) {
        self.in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_everything_else() {
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(512)), 256);
        assert_eq!(default_max_connections(Some(256)), 128);
        assert_eq!(default_max_connections(Some(65_536)), 49_152);
        assert_eq!(default_max_connections(Some(u64::MAX)), 786_432);
        assert_eq!(default_max_connections(None), 786_432);
        assert_eq!(default_max_connections(Some(1)), 1);
    }

    #[test]
    fn accept_errors_back_off_and_log_rarely() {
        let mut errors = AcceptErrors::default();
        let e = io::Error::other("too many open files");
        let pauses: Vec<_> = (0..9).map(|_| errors.failed(&e).as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(errors.unlogged, 8, "one line a second at most");
        errors.succeeded();
        assert_eq!(errors.failed(&e), Duration::from_millis(10));
    }
}
