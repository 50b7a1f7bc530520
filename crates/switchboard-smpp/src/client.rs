//! One SMPP connection as the client side (the ESME) sees it, built on rusmpp's codec.
//!
//! Each connection has its own tasks:
//! - a writer that owns the write half and drains a channel of commands, putting whatever is
//!   queued into one write;
//! - a reader that owns the read half, routes each response by its sequence number to the
//!   request waiting for it, answers `enquire_link` and `unbind` at once, and hands every other
//!   request of the SMSC (`deliver_sm` above all) to the session's handler;
//! - once bound, a keep-alive that sends `enquire_link` at a fixed interval.
//!
//! A request takes a sequence number, registers where its answer goes, queues the command for
//! the writer and waits for the answer within a timeout. When the connection ends (the SMSC
//! closes it or unbinds, a read or a write fails, an `enquire_link` goes unanswered, or this
//! side closes it), every request still waiting fails at once with the reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Encoder, FramedRead};

/// How many bytes of queued commands the writer puts into one write, at most (one command
/// more may go over it).
const WRITE_BATCH: usize = 64 * 1024;

/// The largest sequence number SMPP allows; numbers go from 1 to this and round again.
const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// The connection had already ended, so the command was not sent; why it ended.
    NotSent(String),
    /// The connection ended after the command was queued and before its answer; why.
    Closed(String),
    /// No answer within this long.
    Timeout(Duration),
}

/// The requests waiting for their answer, while the connection lives.
#[derive(Default)]
struct Pending {
    ended: bool,
    waiting: HashMap<u32, oneshot::Sender<Command>>,
}

/// What everything that sends on a connection shares: the writer's queue, the requests
/// waiting for their answer, and whether (and why) the connection ended.
pub(crate) struct Link {
    out: mpsc::UnboundedSender<Command>,
    pending: Mutex<Pending>,
    sequence: AtomicU32,
    ended: watch::Sender<Option<String>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("ended", &*self.ended.borrow()).finish_non_exhaustive()
    }
}

/// Forgets a request's entry when its wait ends in any way (answered, timed out, dropped).
struct Registered<'a> {
    link: &'a Link,
    sequence: u32,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.link.pending().waiting.remove(&self.sequence);
    }
}

impl Link {
    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_sequence(&self) -> u32 {
        self.sequence.fetch_add(1, Ordering::Relaxed) % MAX_SEQUENCE + 1
    }

    /// Sends a request and waits at most `timeout` for its answer, whatever its status.
    pub(crate) async fn request(&self, pdu: impl Into<Pdu>, timeout: Duration) -> Result<Command, RequestError> {
        let (answer, answered) = oneshot::channel();
        let sequence = {
            let mut pending = self.pending();
            if pending.ended {
                drop(pending);
                return Err(RequestError::NotSent(self.reason()));
            }
            let sequence = self.next_sequence();
            pending.waiting.insert(sequence, answer);
            sequence
        };
        let _registered = Registered { link: self, sequence };
        if self.out.send(Command::new(CommandStatus::EsmeRok, sequence, pdu)).is_err() {
            return Err(RequestError::NotSent(self.reason()));
        }
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(command)) => Ok(command),
            Ok(Err(_)) => Err(RequestError::Closed(self.reason())),
            Err(_) => Err(RequestError::Timeout(timeout)),
        }
    }

    /// Queues a command that needs no answer (an answer to the SMSC's own request).
    pub(crate) fn send(&self, command: Command) {
        // Fails only once the writer is gone, when nothing can be sent any more.
        let _ = self.out.send(command);
    }

    /// Ends the connection for `reason` (the first reason given stays): every request still
    /// waiting fails at once, and the connection's tasks stop.
    pub(crate) fn end(&self, reason: impl Into<String>) {
        let waiting = {
            let mut pending = self.pending();
            if pending.ended {
                return;
            }
            pending.ended = true;
            std::mem::take(&mut pending.waiting)
        };
        // The reason first, so that a request that sees its answer dropped can read it.
        self.ended.send_replace(Some(reason.into()));
        drop(waiting);
    }

    /// Why the connection ended; a general phrase while it has not.
    pub(crate) fn reason(&self) -> String {
        self.ended.borrow().clone().unwrap_or_else(|| "the connection closed".to_owned())
    }

    /// Hands a response to the request waiting for it.
    fn answer(&self, command: Command) {
        let sequence = command.sequence_number();
        let waiting = self.pending().waiting.remove(&sequence);
        match waiting {
            Some(answer) => {
                // The request may have stopped waiting in the meantime; its answer goes unused.
                let _ = answer.send(command);
            }
            None => {
                let id = command.id();
                tracing::debug!(?id, sequence, "late or unexpected response ignored");
            }
        }
    }
}

/// Waits until the connection has ended.
async fn until_ended(ended: &mut watch::Receiver<Option<String>>) {
    // An error means the link is gone, which ends the connection as well.
    let _ = ended.wait_for(Option::is_some).await;
}

/// An open connection, owned by the session that runs it. Dropping it ends the connection.
pub(crate) struct Connection {
    link: Arc<Link>,
    incoming: mpsc::Receiver<Command>,
    ended: watch::Receiver<Option<String>>,
    writer: Option<JoinHandle<()>>,
    grace: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("link", &self.link).finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts the reader and the writer on the two halves of a connected stream. Once the
    /// connection ends, the writer gets `grace` to write what is still queued and close its
    /// side.
    pub(crate) fn open<R, W>(read: R, write: W, grace: Duration) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, commands) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        let link = Arc::new(Link {
            out,
            pending: Mutex::new(Pending::default()),
            sequence: AtomicU32::new(0),
            ended: ended_tx,
        });
        let (requests, incoming) = mpsc::channel(REQUEST_QUEUE);
        let writer = tokio::spawn(write_loop(link.clone(), write, commands, grace));
        tokio::spawn(read_loop(link.clone(), read, requests));
        Connection { link, incoming, ended, writer: Some(writer), grace }
    }

    /// What sends on the connection.
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Sends `enquire_link` every `interval` from now on, and ends the connection when one
    /// gets no answer within `timeout`.
    pub(crate) fn keep_alive(&self, interval: Duration, timeout: Duration) {
        tokio::spawn(keep_alive(self.link.clone(), interval, timeout));
    }

    /// The next request the SMSC sent that its handler must see (not responses, not
    /// `enquire_link`, not `unbind`), in the order they came; once the connection has ended
    /// and every request read before the end has been taken, why it ended.
    pub(crate) async fn next_request(&mut self) -> Result<Command, String> {
        let next = tokio::select! {
            biased;
            command = self.incoming.recv() => command,
            () = until_ended(&mut self.ended) => None,
        };
        next.ok_or_else(|| self.link.reason())
    }

    /// Waits until the connection has ended (requests read before the end may still be
    /// waiting in [`Connection::next_request`]).
    pub(crate) async fn ended(&mut self) {
        until_ended(&mut self.ended).await;
    }

    /// Closes the connection from this side: ends it, and waits (at most the grace time) for
    /// the writer to write what is queued and close its side.
    pub(crate) async fn close(mut self) {
        self.link.end("the connection was closed");
        if let Some(writer) = self.writer.take() {
            let _ = tokio::time::timeout(self.grace, writer).await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.link.end("the connection was closed");
    }
}

/// Writes the queued commands, as many per write as are queued, until the connection ends;
/// then writes what is left (within `grace`) and closes the sending side.
async fn write_loop<W>(link: Arc<Link>, mut write: W, mut commands: mpsc::UnboundedReceiver<Command>, grace: Duration)
where
    W: AsyncWrite + Unpin,
{
    let mut ended = link.ended.subscribe();
    let mut codec = CommandCodec::new();
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        let next = tokio::select! {
            biased;
            command = commands.recv() => command,
            () = until_ended(&mut ended) => None,
        };
        // `None` only once the connection has ended: the link keeps a sender while it lives.
        let Some(command) = next else { break };
        let mut encoded = codec.encode(&command, &mut buf);
        while encoded.is_ok() && buf.len() < WRITE_BATCH {
            let Ok(command) = commands.try_recv() else { break };
            encoded = codec.encode(&command, &mut buf);
        }
        if let Err(e) = encoded {
            link.end(format!("cannot encode a command: {e}"));
            return;
        }
        let written = tokio::select! {
            biased;
            written = write.write_all(&buf) => written,
            // A write the SMSC does not take in time after the end is abandoned.
            () = async {
                until_ended(&mut ended).await;
                tokio::time::sleep(grace).await;
            } => return,
        };
        if let Err(e) = written {
            link.end(format!("cannot write to the SMSC: {e}"));
            return;
        }
        buf.clear();
    }
    // What was queued before the end (the answer to an `unbind`, say) still goes out.
    while let Ok(command) = commands.try_recv() {
        if codec.encode(&command, &mut buf).is_err() {
            break;
        }
    }
    let _ = tokio::time::timeout(grace, async {
        if !buf.is_empty() {
            write.write_all(&buf).await?;
        }
        write.shutdown().await
    })
    .await;
}

/// The SMSC's requests read ahead of their handler. Past them the reader waits, and so reads
/// nothing more from the SMSC (answers included) until the handler takes one: an SMSC that
/// ignores its window cannot make the session hold more than this.
const REQUEST_QUEUE: usize = 64;

/// Reads commands until the connection ends, routing responses to their requests, answering
/// `enquire_link` and `unbind`, and handing the SMSC's other requests to `requests`.
async fn read_loop<R>(link: Arc<Link>, read: R, requests: mpsc::Sender<Command>)
where
    R: AsyncRead + Unpin,
{
    let mut ended = link.ended.subscribe();
    let mut frames = FramedRead::new(read, CommandCodec::new());
    let reason = loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = until_ended(&mut ended) => return,
        };
        let command = match frame {
            Some(Ok(command)) => command,
            Some(Err(e)) => break format!("cannot read from the SMSC: {e}"),
            None => break "the SMSC closed the connection".to_owned(),
        };
        let sequence = command.sequence_number();
        match command.id() {
            id if id.is_response() => link.answer(command),
            CommandId::EnquireLink => link.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp)),
            CommandId::Unbind => {
                link.send(Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp));
                break "the SMSC unbound the session".to_owned();
            }
            _ => {
                // The handler is gone only when the session is over.
                tokio::select! {
                    _ = requests.send(command) => {}
                    () = until_ended(&mut ended) => return,
                }
            }
        }
    };
    link.end(reason);
}

/// Sends `enquire_link` every `interval` until the connection ends, and ends it when one gets
/// no answer within `timeout`.
async fn keep_alive(link: Arc<Link>, interval: Duration, timeout: Duration) {
    let mut ended = link.ended.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = until_ended(&mut ended) => return,
        }
        match link.request(Pdu::EnquireLink, timeout).await {
            Ok(_) => {}
            Err(RequestError::Timeout(timeout)) => {
                link.end(format!("no answer to enquire_link within {} ms", timeout.as_millis()));
                return;
            }
            Err(RequestError::NotSent(_) | RequestError::Closed(_)) => return,
        }
    }
}

/// The client settings that check the SMSC's certificate against `roots`, with the aws-lc-rs
/// provider.
pub(crate) fn tls_config_with_roots(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("no usable TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The default TLS settings, shared by every upstream with no CA file of its own: the
/// system's root certificates and the webpki roots, loaded once.
fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            if !native.errors.is_empty() {
                tracing::warn!(errors = ?native.errors, "some of the system's root certificates could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system root certificates loaded for SMPP over TLS");
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            tls_config_with_roots(roots)
        })
        .clone()
}

/// Starts TLS on a connected stream, checking the SMSC's certificate against `host` with
/// `config` (the upstream's own settings, built from its CA file), or with the default
/// settings when it is `None`.
pub(crate) async fn start_tls(
    host: &str,
    stream: tokio::net::TcpStream,
    config: Option<&Arc<rustls::ClientConfig>>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` cannot name a TLS server: {e}"))?;
    let config = match config {
        Some(config) => config.clone(),
        None => default_tls_config()?,
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    connector.connect(name, stream).await.map_err(|e| format!("TLS handshake failed: {e}"))
}

#[cfg(test)]
mod tests;
