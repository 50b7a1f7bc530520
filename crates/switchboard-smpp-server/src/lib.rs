//! Switchboard's SMPP 3.4 server: customers' systems (ESMEs) bind to Switchboard over SMPP, as
//! they do to Jasmin or Kannel, and send through the same core as the HTTP dialects.
//!
//! [`SmppServer::start`] accepts connections (TCP, or TLS with a certificate and key) and runs
//! one session per connection ([`session`]):
//!
//! - An ESME binds as transmitter, receiver or transceiver with an account's SMPP credential
//!   ([`switchboard_core::smpp`]): `system_id` and password, checked with one HMAC and a cached
//!   read, failures spending the same budgets as failed API logins. A bind with wrong
//!   credentials, or one over the credential's or the account's bind limit, is answered
//!   `ESME_RBINDFAIL` and the connection closed; a second bind on a bound session is
//!   `ESME_RALYBND`.
//! - `submit_sm` becomes one message through [`switchboard_core::Core::send_smpp`]: the
//!   validation, sender rules, opt-outs, pricing, ledger and group commit of an HTTP send.
//!   `submit_sm_resp` goes out only once the message is durable, with its Switchboard id
//!   ([`submit`] reads the PDU and maps every refusal onto a command status). Concatenated
//!   parts (user data header with an 8- or 16-bit reference, or the SAR TLVs) are kept until
//!   the message is whole and sent as one message; every part is answered with its id.
//! - Each bind has a window (requests waiting for their answer; one more is `ESME_RMSGQFUL`)
//!   and a rate (`submit_sm` a second; over it, `ESME_RTHROTTLED`).
//! - `enquire_link` and `unbind` are answered; a session that sends nothing for the idle
//!   timeout is unbound and closed. Unknown commands and PDUs whose body does not parse are
//!   answered `generic_nack`; a command length out of bounds (under 16 octets, over
//!   [`MAX_PDU_LEN`]) cannot be framed, so it is answered `generic_nack` and that connection
//!   (only) is closed.
//! - Receipts and inbound messages for an account wait durably in the store (queued in the
//!   transaction of the change that causes them) and go out as `deliver_sm` to the account's
//!   receiver and transceiver binds on any node ([`deliver`]); each is removed once an ESME
//!   answers `ESME_ROK`, retried otherwise, and given up after the hold time.
//!
//! With the `testing` feature, `testing::Esme` is a small ESME for tests.

pub mod deliver;
pub mod session;
pub mod submit;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use switchboard_core::Core;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The longest PDU read (command length included): room for a `message_payload` of 64 KiB.
pub const MAX_PDU_LEN: usize = 70_000;
/// How long a client gets to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 10_000;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct SmppServerConfig {
    /// The `system_id` the server names itself with in bind answers.
    pub system_id: String,
    /// Most binds an account may hold at once on this node (a credential's own
    /// `max_binds` may lower it for that credential).
    pub max_binds_per_account: u32,
    /// Most requests an ESME may have waiting for their answer on one bind, by default.
    pub window: u32,
    /// Most `submit_sm` a second on one bind, by default.
    pub max_per_second: u32,
    /// A session that sends nothing for this long is unbound and closed; a connection that
    /// does not bind within it is closed.
    pub idle_timeout: Duration,
    /// How long the parts of a concatenated message wait for the rest.
    pub reassembly_timeout: Duration,
    /// How long a receipt or inbound message waits for a bind that receives before it is
    /// given up.
    pub receipt_hold: Duration,
    /// Most `deliver_sm` waiting for their answer on one bind.
    pub deliver_window: u32,
    /// How long an ESME has to answer a `deliver_sm` before it is sent again.
    pub deliver_timeout: Duration,
    /// How often the queue is looked at for each account with a receiving bind.
    pub deliver_poll: Duration,
    /// TLS: the certificate chain and key, or none for plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for SmppServerConfig {
    fn default() -> Self {
        Self {
            system_id: "switchboard".to_owned(),
            max_binds_per_account: 10,
            window: 100,
            max_per_second: 500,
            idle_timeout: Duration::from_secs(120),
            reassembly_timeout: Duration::from_secs(60),
            receipt_hold: Duration::from_secs(72 * 3600),
            deliver_window: 10,
            deliver_timeout: Duration::from_secs(30),
            deliver_poll: Duration::from_millis(200),
            tls: None,
        }
    }
}

/// Server settings for TLS that present the PEM certificate chain in `cert_file` (the
/// server's certificate first) with the PEM private key in `key_file`.
pub fn tls_config(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key: {e}"))?;
    Ok(Arc::new(config))
}

/// What every session of the server shares.
pub(crate) struct Shared {
    pub(crate) core: Core,
    pub(crate) config: SmppServerConfig,
    pub(crate) receivers: deliver::Receivers,
    /// Turns true when the server stops.
    pub(crate) stopping: watch::Receiver<bool>,
}

/// A running SMPP server.
pub struct SmppServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    deliverer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SmppServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl SmppServer {
    /// Serves SMPP on `listener` until [`SmppServer::shutdown`]. Must run inside a Tokio
    /// runtime.
    pub fn start(core: Core, config: SmppServerConfig, listener: TcpListener) -> std::io::Result<SmppServer> {
        let addr = listener.local_addr()?;
        let (stop, stopping) = watch::channel(false);
        let shared = Arc::new(Shared { core, config, receivers: deliver::Receivers::default(), stopping });
        let deliverer = tokio::spawn(deliver::run(shared.clone()));
        let accept = tokio::spawn(accept_loop(listener, shared));
        tracing::info!(%addr, "SMPP server listening");
        Ok(SmppServer { addr, stop, accept, deliverer })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: accepts no more connections, unbinds every session (the `submit_sm` already
    /// taken are stored and answered first, within 10 s), and stops delivering.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        let _ = self.deliverer.await;
    }
}

/// Returns once the server is stopping.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Accepts connections until the server stops, then waits for the sessions to end.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    let mut stopping = shared.stopping.clone();
    loop {
        while sessions.try_join_next().is_some() {}
        if sessions.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = sessions.join_next() => continue,
                _ = crate::stopped(&mut stopping) => break,
            }
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = crate::stopped(&mut stopping) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "SMPP server: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        sessions.spawn(async move {
            match shared.config.tls.clone() {
                None => {
                    let (read, write) = stream.into_split();
                    session::run(shared, peer, read, write).await;
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let (read, write) = tokio::io::split(stream);
                            session::run(shared, peer, read, write).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "SMPP server: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "SMPP server: TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}
