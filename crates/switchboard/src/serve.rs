//! Serving HTTP: our own accept loop over hyper, so that no client can hold a connection, or
//! all of them, for free.
//!
//! - A connection must send a request's headers within the header-read timeout: from its
//!   accept for the first request, and from the first byte of each later one.
//! - A connection with no request in flight is closed after the idle timeout; one whose
//!   request makes no progress (nothing read, nothing written) for longer than both the idle
//!   timeout and the request timeout is closed too, so a client that never reads its answer
//!   holds nothing for ever.
//! - A request in flight longer than the request timeout and a grace to write its answer is
//!   cut off (its connection closed), whatever bytes still move: an HTTP/2 client that
//!   advertises no flow-control window and keeps sending PINGs moves bytes without progress.
//! - At most `max_connections` are open at once. At the cap a new connection is still
//!   accepted, and room is made for it: the connection idle longest (no request in flight;
//!   one still waiting for its first request's headers counts as idle since its accept) is
//!   closed, oldest first, as nginx drains its keep-alive connections. A keep-alive
//!   connection that answered within the last [`KEEP_ALIVE_SHIELD`] is spared, so that a
//!   burst of new connections does not close one that its client is about to use again.
//!   Only when every open connection has a request in flight (or is so spared) does the loop
//!   stop accepting (the kernel's listen queue holds the rest) until one closes, goes idle
//!   or is spared no more.
//! - At most `max_connections_per_address` are open from one client address (IPv6 counted
//!   by its /64): past it, the oldest idle connection of that address is closed to make room,
//!   or, when all of that address's connections have a request in flight, the new one is
//!   closed at once. An address thus only ever competes with itself for its share.
//! - An accept error (such as running out of file descriptors) is met with a short, growing
//!   pause rather than a retry at once, and is logged at most once a second.
//!
//! HTTP/1.1 with keep-alive and HTTP/2 with prior knowledge (h2c) are both served, and every
//! request carries the peer's address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tower::Service;

/// How the server treats its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeConfig {
    /// Longest time to receive a request's headers.
    pub(crate) header_read_timeout: Duration,
    /// Longest time a connection stays open with no request in flight.
    pub(crate) idle_timeout: Duration,
    /// Longest time a request in flight may go without reading or writing a byte (the
    /// larger of the idle timeout and a little more than the request timeout).
    pub(crate) stall_timeout: Duration,
    /// Longest time a request may be in flight, bytes moving or not: the request timeout and
    /// a grace to write its answer.
    pub(crate) request_limit: Duration,
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// Most connections open at once from one client address (an IPv6 /64).
    pub(crate) max_connections_per_address: usize,
    /// Proxies in front of the server: every client behind one arrives from its address, so
    /// the cap per address does not apply to them (the cap on all connections still does).
    pub(crate) trusted_proxies: std::sync::Arc<[switchboard_domain::Cidr]>,
}

/// How long after its last answer a keep-alive connection is spared when room is made at the
/// cap. A client may send its next request on it at any moment, and a close that crosses a
/// request on the wire fails that request; a client busy enough to use its connection again
/// within this time is not an idle one.
const KEEP_ALIVE_SHIELD: Duration = Duration::from_secs(1);

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

/// The default cap on open connections from one client address: a quarter of the cap on all
/// connections, and at most 256 (64 of 256, 192 of 768, 256 from 1,024 on).
pub(crate) fn default_max_connections_per_address(max_connections: usize) -> usize {
    (max_connections / 4).clamp(1, 256)
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
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own timers watch the headers (hyper's would also close idle keep-alive connections
    // at the header timeout).
    builder.http1().header_read_timeout(None);
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut errors = AcceptErrors::default();
    let mut refused = Refused::default();
    'accept: loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                let pause = errors.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        errors.succeeded();
        let group = Group::of(peer.ip());
        // A dual-stack listener sees IPv4 peers as IPv4-mapped addresses: read them as IPv4, as
        // the failure budgets do.
        let (ip, canonical) = (peer.ip(), peer.ip().to_canonical());
        let per_address = if config.trusted_proxies.iter().any(|proxy| proxy.contains(canonical) || proxy.contains(ip))
        {
            usize::MAX
        } else {
            config.max_connections_per_address
        };
        if !registry.admit(group, per_address) {
            // Every connection of this address has a request in flight: this one gets none.
            refused.note(peer);
            drop(stream);
            continue;
        }
        // At the cap, make room: close the connection idle longest, or, when every connection
        // has a request in flight, wait for one to close or go idle.
        let permit = loop {
            if let Ok(permit) = permits.clone().try_acquire_owned() {
                break permit;
            }
            let look_again = registry.make_room();
            let wait = async {
                match look_again {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_) => break 'accept,
                },
                // A connection went idle, or the one told to close took a request after all:
                // look again.
                () = registry.changed.notified() => {}
                // A spared keep-alive connection may be closed now.
                () = wait => {}
                () = &mut shutdown => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        let entry = registry.register(group, permit);
        tokio::spawn(connection(stream, peer, router.clone(), builder.clone(), config.clone(), stop_rx.clone(), entry));
    }
    drop(listener);
    stop_tx.send_replace(true);
    // Every connection holds a permit until it closes.
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Serves one connection until it closes, times out, is closed to make room, or finishes
/// after shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    config: ServeConfig,
    mut stop: watch::Receiver<bool>,
    entry: Entry,
) {
    let activity = entry.activity.clone();
    let io = TokioIo::new(Tracked { io: stream, activity: activity.clone() });
    let service = ConnService { router, peer, activity: activity.clone() };
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    loop {
        if activity.evicted.load(Ordering::Acquire) {
            if activity.in_flight.load(Ordering::Acquire) == 0 {
                tracing::debug!(%peer, "closing an idle connection to make room for a new one");
                return;
            }
            // A request came just as it was chosen: let it finish, then close.
            if !stopping {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
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
            // A request started or ended, the first bytes of one came, or the connection is
            // to make room: look again.
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

/// Whom a cap per client address counts together: an IPv4 address (also when mapped into
/// IPv6), or an IPv6 /64, the smallest network one subscriber is usually given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    V4(Ipv4Addr),
    V6(u64),
}

impl Group {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6(u64::try_from(u128::from(v6) >> 64).unwrap_or(u64::MAX)),
            },
        }
    }
}

/// The open connections, and which of them are idle in the order they went idle: what the
/// accept loop closes to make room.
#[derive(Default)]
struct Registry {
    open: Mutex<Open>,
    /// Woken when a connection goes idle or closes, for an accept loop waiting at the cap.
    changed: Notify,
}

#[derive(Default)]
struct Open {
    /// The next connection id, and the next place in the idle order (both only grow).
    next: u64,
    connections: HashMap<u64, Registered>,
    /// Idle connections by when they went idle (their place in the idle order).
    idle: IdleSet,
    addresses: HashMap<Group, Address>,
    /// Connections told to close to make room that have not closed yet.
    closing: usize,
}

struct Registered {
    group: Group,
    /// Requests in flight (as the registry counts them, under its lock).
    in_flight: usize,
    /// Its place in the idle order while idle.
    idle_since: Option<u64>,
    /// Told to close and not yet closed, with no request in flight: counted in `closing`.
    closing: bool,
    activity: Arc<Activity>,
}

#[derive(Default)]
struct Address {
    open: usize,
    /// Of those, told to close to make room.
    closing: usize,
    idle: IdleSet,
}

/// Idle connections in the order they went idle: those still waiting for their first
/// request apart from the keep-alive ones, which are spared for a while after an answer.
#[derive(Default)]
struct IdleSet {
    /// Never served, by their place in the idle order: id.
    fresh: BTreeMap<u64, u64>,
    /// Served, by their place in the idle order: id, and when the last answer was written.
    kept: BTreeMap<u64, (u64, Instant)>,
}

impl IdleSet {
    fn insert(&mut self, place: u64, id: u64, answered: Option<Instant>) {
        match answered {
            None => self.fresh.insert(place, id),
            Some(at) => self.kept.insert(place, (id, at)).map(|(id, _)| id),
        };
    }

    fn remove(&mut self, place: u64) {
        if self.fresh.remove(&place).is_none() {
            self.kept.remove(&place);
        }
    }

    /// The connection idle longest, spared or not.
    fn oldest(&self) -> Option<u64> {
        let fresh = self.fresh.first_key_value().map(|(&place, &id)| (place, id));
        let kept = self.kept.first_key_value().map(|(&place, &(id, _))| (place, id));
        fresh.into_iter().chain(kept).min().map(|(_, id)| id)
    }

    /// The connection idle longest that is not spared at `now`; or else when the first
    /// spared one will no longer be.
    fn oldest_unspared(&self, now: Instant) -> Result<u64, Option<Instant>> {
        let fresh = self.fresh.first_key_value().map(|(&place, &id)| (place, id));
        let kept = self.kept.first_key_value();
        let kept_ready =
            kept.filter(|(_, (_, at))| *at + KEEP_ALIVE_SHIELD <= now).map(|(&place, &(id, _))| (place, id));
        match fresh.into_iter().chain(kept_ready).min() {
            Some((_, id)) => Ok(id),
            None => Err(kept.map(|(_, (_, at))| *at + KEEP_ALIVE_SHIELD)),
        }
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a new connection from `group` may be served: below the cap per address, or
    /// once the oldest idle connection of that address is told to close.
    fn admit(&self, group: Group, cap: usize) -> bool {
        let mut open = self.lock();
        let Some(address) = open.addresses.get(&group) else { return true };
        if address.open - address.closing < cap {
            return true;
        }
        // An address only competes with itself: its keep-alive connections are not spared.
        match address.idle.oldest() {
            Some(id) => {
                open.evict(id);
                true
            }
            None => false,
        }
    }

    /// At the cap: tells the connection idle longest (and not spared) to close, unless one is
    /// closing already (its permit is on its way). Does nothing when every connection has a
    /// request in flight or is spared; then returns when the first spared one will no longer
    /// be, if any is.
    fn make_room(&self) -> Option<Instant> {
        let mut open = self.lock();
        if open.closing > 0 {
            return None;
        }
        match open.idle.oldest_unspared(Instant::now()) {
            Ok(id) => {
                open.evict(id);
                None
            }
            Err(look_again) => look_again,
        }
    }

    /// Counts a new connection, idle from now, holding `permit` until it closes.
    fn register(self: &Arc<Self>, group: Group, permit: OwnedSemaphorePermit) -> Entry {
        let mut open = self.lock();
        let id = open.next;
        let since = id + 1;
        open.next += 2;
        let activity = Arc::new(Activity::new(id, self.clone()));
        open.connections.insert(
            id,
            Registered { group, in_flight: 0, idle_since: Some(since), closing: false, activity: activity.clone() },
        );
        open.idle.insert(since, id, None);
        let address = open.addresses.entry(group).or_default();
        address.open += 1;
        address.idle.insert(since, id, None);
        Entry { activity, permit: Some(permit), registry: self.clone() }
    }

    fn request_started(&self, id: u64) {
        let mut open = self.lock();
        let open = &mut *open;
        let Some(conn) = open.connections.get_mut(&id) else { return };
        conn.in_flight += 1;
        if let Some(since) = conn.idle_since.take() {
            open.idle.remove(since);
            if let Some(address) = open.addresses.get_mut(&conn.group) {
                address.idle.remove(since);
            }
        }
        if conn.closing {
            // It will not close soon after all: the accept loop looks for other room.
            conn.closing = false;
            open.closing -= 1;
            if let Some(address) = open.addresses.get_mut(&conn.group) {
                address.closing -= 1;
            }
            self.changed.notify_one();
        }
    }

    fn request_ended(&self, id: u64) {
        let mut open = self.lock();
        let open = &mut *open;
        let since = open.next;
        let Some(conn) = open.connections.get_mut(&id) else { return };
        conn.in_flight -= 1;
        if conn.in_flight > 0 {
            return;
        }
        if conn.activity.evicted.load(Ordering::Acquire) {
            // Told to close while busy: it closes now.
            if !conn.closing {
                conn.closing = true;
                open.closing += 1;
                if let Some(address) = open.addresses.get_mut(&conn.group) {
                    address.closing += 1;
                }
            }
            return;
        }
        open.next += 1;
        conn.idle_since = Some(since);
        let now = Some(Instant::now());
        open.idle.insert(since, id, now);
        if let Some(address) = open.addresses.get_mut(&conn.group) {
            address.idle.insert(since, id, now);
        }
        self.changed.notify_one();
    }

    fn closed(&self, id: u64) {
        let mut open = self.lock();
        let open = &mut *open;
        let Some(conn) = open.connections.remove(&id) else { return };
        if let Some(since) = conn.idle_since {
            open.idle.remove(since);
        }
        if conn.closing {
            open.closing -= 1;
        }
        if let Some(address) = open.addresses.get_mut(&conn.group) {
            address.open -= 1;
            if conn.closing {
                address.closing -= 1;
            }
            if let Some(since) = conn.idle_since {
                address.idle.remove(since);
            }
            if address.open == 0 {
                open.addresses.remove(&conn.group);
            }
        }
        drop(conn);
        self.changed.notify_one();
    }
}

impl Open {
    /// Tells idle connection `id` to close.
    fn evict(&mut self, id: u64) {
        let Some(conn) = self.connections.get_mut(&id) else { return };
        if let Some(since) = conn.idle_since.take() {
            self.idle.remove(since);
            if let Some(address) = self.addresses.get_mut(&conn.group) {
                address.idle.remove(since);
            }
        }
        if !conn.closing {
            conn.closing = true;
            self.closing += 1;
            if let Some(address) = self.addresses.get_mut(&conn.group) {
                address.closing += 1;
            }
        }
        conn.activity.evicted.store(true, Ordering::Release);
        conn.activity.changed.notify_one();
    }
}

/// A connection's place in the registry and its permit, given back when it closes.
struct Entry {
    activity: Arc<Activity>,
    permit: Option<OwnedSemaphorePermit>,
    registry: Arc<Registry>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The permit first: an accept loop waiting for room then finds it before it sees
        // that nothing is closing any more.
        drop(self.permit.take());
        self.registry.closed(self.activity.id);
    }
}

/// New connections closed at once because their address was at its cap: logged at most
/// once a second.
#[derive(Default)]
struct Refused {
    logged: Option<Instant>,
    unlogged: u64,
}

impl Refused {
    fn note(&mut self, peer: SocketAddr) {
        if self.logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(
                peer = %peer.ip(),
                more = self.unlogged,
                "closed a new connection: its address has its most connections open, each with a request in flight"
            );
            self.logged = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
    }
}

/// What a connection is doing, for its timers: written by its I/O and its requests, read by
/// the task that serves it. Times are milliseconds since `start`, plus one (0 is "never").
struct Activity {
    id: u64,
    registry: Arc<Registry>,
    start: Instant,
    /// Requests whose answers are not yet fully written.
    in_flight: AtomicUsize,
    /// When each request in flight started, by the order they started in (so the first is
    /// the oldest).
    requests: Mutex<BTreeMap<u64, u64>>,
    /// The next request's place in `requests`.
    next_request: AtomicU64,
    /// Whether a request has come on this connection.
    served: AtomicBool,
    /// Whether the connection speaks HTTP/2 (which sends frames between requests).
    http2: AtomicBool,
    /// Whether it is to close to make room for a new connection.
    evicted: AtomicBool,
    /// When the first byte came while no request was in flight (a request's headers began).
    head_since: AtomicU64,
    /// When the last request's answer was written.
    last_done: AtomicU64,
    /// When a byte was last read or written.
    last_io: AtomicU64,
    /// Woken when a request starts or ends or its headers begin, or the connection is to
    /// close, so the timers look again.
    changed: Notify,
}

impl Activity {
    fn new(id: u64, registry: Arc<Registry>) -> Self {
        Self {
            id,
            registry,
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: Mutex::new(BTreeMap::new()),
            next_request: AtomicU64::new(0),
            served: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
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

    fn requests(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Notes a request's start, and returns its place among the requests in flight.
    fn request_started(&self) -> u64 {
        let place = self.next_request.fetch_add(1, Ordering::Relaxed);
        self.requests().insert(place, self.now());
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        self.served.store(true, Ordering::Relaxed);
        self.registry.request_started(self.id);
        self.changed.notify_one();
        place
    }

    fn request_ended(&self, place: u64) {
        self.last_done.store(self.now(), Ordering::Relaxed);
        self.head_since.store(0, Ordering::Release);
        self.requests().remove(&place);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.registry.request_ended(self.id);
        self.changed.notify_one();
    }

    /// When the connection is to be closed if nothing changes before then.
    fn deadline(&self, config: &ServeConfig) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            let last = self.last_io.load(Ordering::Relaxed).max(1);
            let stalled = self.at(last) + config.stall_timeout;
            let oldest = self.requests().first_key_value().map(|(_, &started)| self.at(started) + config.request_limit);
            return Some(oldest.map_or(stalled, |oldest| oldest.min(stalled)));
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
struct InFlight(Arc<Activity>, u64);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        let place = activity.request_started();
        Self(activity.clone(), place)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended(self.1);
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
    fn the_default_cap_per_address_is_a_quarter_and_at_most_256() {
        assert_eq!(default_max_connections_per_address(256), 64);
        assert_eq!(default_max_connections_per_address(768), 192);
        assert_eq!(default_max_connections_per_address(49_152), 256);
        assert_eq!(default_max_connections_per_address(2), 1);
    }

    #[test]
    fn addresses_count_by_ipv4_address_or_ipv6_64() {
        let group = |s: &str| Group::of(s.parse().unwrap());
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff::9"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("::ffff:192.0.2.7"), group("192.0.2.7"));
        assert_ne!(group("192.0.2.7"), group("192.0.2.8"));
    }

    #[test]
    fn room_is_made_by_closing_the_connection_idle_longest() {
        let registry = Arc::new(Registry::default());
        let permits = Arc::new(Semaphore::new(8));
        let a = Group::of("192.0.2.1".parse().unwrap());
        let b = Group::of("192.0.2.2".parse().unwrap());
        let register = |group| registry.register(group, permits.clone().try_acquire_owned().unwrap());
        let (first, second, third) = (register(a), register(a), register(b));
        let evicted = |e: &Entry| e.activity.evicted.load(Ordering::Acquire);

        // The oldest is busy; the next oldest idle one goes, and only one at a time.
        let place = first.activity.request_started();
        registry.make_room();
        assert!(!evicted(&first) && evicted(&second) && !evicted(&third));
        registry.make_room();
        assert!(!evicted(&third), "one is closing already");
        drop(second);
        // Idle since its request ended, the first is now newer than the third.
        first.activity.request_ended(place);
        registry.make_room();
        assert!(evicted(&third) && !evicted(&first));
        drop(third);
        // The first has just answered: it is spared for a while, then not.
        let look_again = registry.make_room().expect("when to look again");
        assert!(!evicted(&first) && look_again > Instant::now());
        assert_eq!(registry.lock().idle.oldest_unspared(look_again), Ok(first.activity.id));

        // At its cap, an address's own idle connection makes room (spared or not); a busy one
        // does not.
        assert!(registry.admit(a, 2), "below the cap");
        assert!(registry.admit(a, 1) && evicted(&first), "its idle connection is closed");
        drop(first);
        let busy = register(a);
        busy.activity.request_started();
        assert!(!registry.admit(a, 1) && !evicted(&busy), "every connection of the address is busy");
        assert!(registry.admit(b, 1), "another address is not concerned");
        drop(busy);
        assert!(registry.lock().connections.is_empty() && registry.lock().addresses.is_empty());
        assert_eq!(permits.available_permits(), 8);
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
