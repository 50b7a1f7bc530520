//! The SMPP upstream: sessions kept bound by supervisor tasks, and sends through them within a
//! window and a rate cap.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use switchboard_provider::{
    EventSink, NotStored, OutboundMessage, Provider, ProviderError, ProviderEvent, Submission, UpstreamStatus,
    async_trait,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Connection, Link, RequestError};
use crate::config::{BindMode, ConfigError, SmppConfig};
use crate::pace::Pace;
use crate::pdu::{self, Delivery};

/// One kind of session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Transceiver,
    Transmitter,
    Receiver,
}

impl Role {
    fn sends(self) -> bool {
        matches!(self, Role::Transceiver | Role::Transmitter)
    }

    fn name(self) -> &'static str {
        match self {
            Role::Transceiver => "transceiver",
            Role::Transmitter => "transmitter",
            Role::Receiver => "receiver",
        }
    }
}

/// A bound session that sends, with its window.
struct TxSession {
    link: Arc<Link>,
    window: Arc<Semaphore>,
}

/// How one session stands, for [`Provider::status`].
#[derive(Debug, Clone, Default)]
struct LinkState {
    bound: bool,
    error: Option<String>,
}

/// Why one `submit_sm` did not give a part id.
enum Refused {
    /// The SMSC throttled it (`ESME_RTHROTTLED`, `ESME_RMSGQFUL`): the part may go again.
    Throttled(ProviderError),
    /// Anything else.
    Other(ProviderError),
}

impl From<ProviderError> for Refused {
    fn from(e: ProviderError) -> Self {
        Refused::Other(e)
    }
}

/// What the upstream's tasks share.
struct Inner {
    config: SmppConfig,
    /// The upstream's own TLS client settings, built from `tls_ca_file`; `None` for the shared
    /// default ones (or no TLS).
    tls: Option<Arc<rustls::ClientConfig>>,
    events: EventSink,
    roles: Vec<Role>,
    tx: RwLock<Option<Arc<TxSession>>>,
    links: Mutex<Vec<LinkState>>,
    in_flight: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    pace: Pace,
    shutdown: watch::Sender<bool>,
    /// The parts of concatenated inbound messages waiting for the rest, each with where and
    /// how to answer it: its link, sequence number and command (see [`Inner::incoming`]).
    #[allow(clippy::type_complexity)]
    reassembly: Arc<Mutex<crate::reassembly::Reassembler<(Arc<Link>, u32, CommandId)>>>,
}

/// An upstream that sends through an SMSC over SMPP 3.4. See the crate documentation.
pub struct SmppUpstream {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SmppUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppUpstream").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl SmppUpstream {
    /// Starts the upstream: spawns the tasks that connect, bind, keep the binds alive and bind
    /// again after any drop, and sends receipts and inbound messages to `events`. Must be
    /// called within a tokio runtime.
    ///
    /// Returns at once, before the first bind; until a bind succeeds, [`Provider::send`] answers
    /// `unavailable`. A configuration that fails [`SmppConfig::validate`] never connects, and
    /// [`Provider::status`] says why. The `tls_ca_file`, when set, is read here, once.
    pub fn start(config: SmppConfig, events: EventSink) -> Arc<SmppUpstream> {
        let roles = match config.bind {
            BindMode::Transceiver => vec![Role::Transceiver],
            BindMode::TransmitterReceiver => vec![Role::Transmitter, Role::Receiver],
        };
        let (tls, invalid) = match check_and_build_tls(&config) {
            Ok(tls) => (tls, None),
            Err(e) => (None, Some(e)),
        };
        let links = roles
            .iter()
            .map(|_| LinkState { bound: false, error: invalid.as_ref().map(|e| format!("invalid configuration: {e}")) })
            .collect();
        let inner = Arc::new(Inner {
            reassembly: Arc::new(Mutex::new(crate::reassembly::Reassembler::new(
                config.reassembly_timeout(),
                crate::reassembly::MAX_INCOMPLETE,
            ))),
            pace: Pace::new(config.max_per_second, Duration::from_millis(config.throttling_sleep_ms)),
            config,
            tls,
            events,
            roles: roles.clone(),
            tx: RwLock::new(None),
            links: Mutex::new(links),
            in_flight: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            shutdown: watch::Sender::new(false),
        });
        let tasks = match invalid {
            Some(e) => {
                tracing::error!(upstream = %inner.config.name, error = %e, "invalid SMPP settings; not connecting");
                Vec::new()
            }
            None => roles
                .into_iter()
                .enumerate()
                .map(|(slot, role)| tokio::spawn(supervise(inner.clone(), slot, role)))
                .collect(),
        };
        Arc::new(SmppUpstream { inner, tasks: Mutex::new(tasks) })
    }

    /// Stops the upstream: new sends answer `unavailable`; each bound session waits for the
    /// answers to the `submit_sm` in flight (at most the response timeout), is unbound (waiting
    /// at most the response timeout for `unbind_resp`) and closed; and the tasks end.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Whether the session that sends is bound now.
    pub fn is_bound(&self) -> bool {
        self.inner.current().is_some()
    }

    /// Its settings.
    pub fn config(&self) -> &SmppConfig {
        &self.inner.config
    }
}

/// Checks the settings as [`SmppConfig::validate`] does, reading `tls_ca_file` only once, and
/// builds the upstream's own TLS client settings when it has a CA file.
fn check_and_build_tls(config: &SmppConfig) -> Result<Option<Arc<rustls::ClientConfig>>, ConfigError> {
    config.validate_values()?;
    let Some(roots) = config.tls_ca_roots()? else { return Ok(None) };
    crate::client::tls_config_with_roots(roots).map(Some).map_err(ConfigError)
}

impl Drop for SmppUpstream {
    fn drop(&mut self) {
        // The tasks see this, unbind and end.
        self.inner.shutdown.send_replace(true);
    }
}

impl Inner {
    fn current(&self) -> Option<Arc<TxSession>> {
        self.tx.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_link(&self, slot: usize, bound: bool, error: Option<String>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get_mut(slot) {
            link.bound = bound;
            if error.is_some() || bound {
                link.error = error;
            }
        }
    }

    /// The bind went away before a `submit_sm` was written: the SMSC never saw it.
    fn lost_before_sending(&self) -> ProviderError {
        ProviderError::unavailable(format!("the bind to {} was lost before the message went out", self.config.peer()))
    }

    fn unavailable_now(&self) -> ProviderError {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let why = links
            .iter()
            .zip(&self.roles)
            .find_map(|(l, role)| l.error.clone().filter(|_| role.sends()))
            .unwrap_or_else(|| "binding".to_owned());
        ProviderError::unavailable(format!("not bound to the SMSC at {}: {why}", self.config.peer()))
    }

    /// Sends every part of `message` that no earlier attempt got taken, one after the other,
    /// reporting each part of a long message as it is taken. A part the SMSC throttles is sent
    /// again, alone, once the bind's pace allows, for up to `throttled_wait_ms`; then the
    /// message goes back to the queue as `unavailable`, which uses up no attempt.
    async fn send(self: &Arc<Self>, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let parts = pdu::build_submits(message, &self.config)?;
        let Some(session) = self.current() else {
            return Err(self.unavailable_now());
        };
        let give_up = Instant::now() + Duration::from_millis(self.config.throttled_wait_ms);
        let count = parts.len();
        let mut ids = Vec::with_capacity(count);
        for (n, sm) in (1u32..).zip(parts) {
            // A part an earlier attempt got taken is not sent again.
            if let Some((_, id)) = message.sent_parts.iter().find(|(part, _)| *part == n) {
                ids.push(id.clone());
                continue;
            }
            let id = loop {
                let part = (count > 1).then_some((message.id, n));
                match self.submit(&session, sm.clone(), give_up, part).await {
                    Ok(id) => break id,
                    Err(Refused::Throttled(e)) if Instant::now() < give_up && !session.window.is_closed() => {
                        tracing::debug!(upstream = %self.config.name, error = %e.message, "throttled; sending the part again");
                    }
                    Err(refused) => {
                        let e = match refused {
                            Refused::Throttled(e) => ProviderError::unavailable(format!(
                                "{}; the message waits for the bind's pace (its attempts are not used up)",
                                e.message
                            )),
                            Refused::Other(e) => e,
                        };
                        // The parts taken stay with this upstream: the rest must follow them.
                        let taken = !ids.is_empty();
                        return Err(if taken { e.after_parts_taken() } else { e });
                    }
                }
            };
            ids.push(id);
        }
        let provider_message_id = ids.first().cloned().unwrap_or_default();
        Ok(Submission { provider_message_id, parts: ids })
    }

    /// Sends one `submit_sm` within the window and the bind's pace, and reads its answer. A send
    /// that would get no room in the window or no turn of the pace by `give_up` goes back to the
    /// queue as `unavailable` (using up no attempt) without being sent.
    ///
    /// The submission runs in its own task holding the window permit, so that a caller that
    /// gives up early does not free the slot while the SMSC still owes the answer.
    async fn submit(
        self: &Arc<Self>,
        session: &Arc<TxSession>,
        sm: SubmitSm,
        give_up: Instant,
        part: Option<(switchboard_domain::MessageId, u32)>,
    ) -> Result<String, Refused> {
        let lost = || self.lost_before_sending();
        let no_turn = || {
            ProviderError::unavailable(format!(
                "no turn on the bind to {} within throttled_wait_ms; the message waits in the queue \
                 (its attempts are not used up)",
                self.config.peer()
            ))
        };
        let permit = match tokio::time::timeout_at(give_up, session.window.clone().acquire_owned()).await {
            Ok(permit) => permit.map_err(|_| lost())?,
            Err(_) => return Err(no_turn().into()),
        };
        if !self.pace.until_ready_by(give_up).await {
            return Err(no_turn().into());
        }
        if session.window.is_closed() {
            return Err(lost().into());
        }
        let link = session.link.clone();
        let timeout = self.config.response_timeout();
        let inner = self.clone();
        // The answer is read, and a taken part of a long message reported, by the task, so
        // that both happen even when the caller has given up meanwhile.
        let task = tokio::spawn(async move {
            inner.in_flight.fetch_add(1, Ordering::Relaxed);
            let answer = link.request(sm, timeout).await;
            inner.in_flight.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            let result = match answer {
                Ok(resp) => inner.submit_answer(&resp),
                Err(RequestError::NotSent(_)) => Err(inner.lost_before_sending().into()),
                Err(e) => Err(inner.submit_error(e).into()),
            };
            if let (Ok(id), Some((message, part))) = (&result, part) {
                // Stored before the next part goes, so that no later attempt sends it again.
                let sent = ProviderEvent::PartSent { message, part, provider_ref: id.clone() };
                if let Ok(stored) = inner.events.report(sent) {
                    let _ = tokio::time::timeout(inner.config.response_timeout(), stored.wait()).await;
                }
            }
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(ProviderError::unavailable(format!("the submission task failed: {e}")).into()),
        }
    }

    /// The part's id from a `submit_sm_resp`, or the error its status means. Throttling slows
    /// the bind; an accepted part lets its pace probe upward.
    fn submit_answer(&self, resp: &Command) -> Result<String, Refused> {
        let status = resp.status();
        if matches!(status, CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful) {
            self.pace.throttled();
            return Err(Refused::Throttled(pdu::submit_status_error(status)));
        }
        if status != CommandStatus::EsmeRok {
            return Err(pdu::submit_status_error(status).into());
        }
        self.pace.accepted();
        match resp.pdu() {
            Some(Pdu::SubmitSmResp(answer)) => Ok(self.config.msg_id_format.submit_id(answer.message_id().as_str())),
            _ => Err(ProviderError::permanent_with(
                switchboard_domain::ErrorType::ProviderError,
                format!("the SMSC answered submit_sm with {:?}", resp.id()),
            )
            .into()),
        }
    }

    fn submit_error(&self, error: RequestError) -> ProviderError {
        match error {
            RequestError::Timeout(timeout) => ProviderError::unavailable(format!(
                "no submit_sm_resp from {} within {} ms; the SMSC may or may not have taken the message",
                self.config.peer(),
                timeout.as_millis()
            )),
            RequestError::NotSent(reason) | RequestError::Closed(reason) => ProviderError::unavailable(format!(
                "the connection to {} failed before the answer ({reason}); {}",
                self.config.peer(),
                "the SMSC may or may not have taken the message"
            )),
        }
    }

    /// Handles a request the SMSC sent on its own (`enquire_link` and `unbind` are answered
    /// as they are read). A `deliver_sm` or `data_sm` that reports something is answered
    /// (`deliver_sm_resp` or `data_sm_resp`) once the core has stored it, by a task that holds
    /// `permit` (one of the session's receive window) until then; anything else is answered at
    /// once.
    ///
    /// A part of a concatenated inbound message waits, unanswered, for the other parts without
    /// holding its permit, so that a message of more parts than the receive window still
    /// completes (the incomplete messages are bounded by [`crate::reassembly::MAX_INCOMPLETE`]
    /// instead). The part that completes the message keeps its permit until the whole message
    /// is stored; then every part (each copy of a part received twice included) is answered
    /// with the message's outcome. Parts still waiting `reassembly_timeout_ms` after their
    /// message's first part came, the parts of the oldest incomplete message when one more
    /// starts past the cap, and the oldest copy of a part received more than
    /// [`crate::reassembly::MAX_COPIES`] times, are answered `ESME_RX_T_APPN`, so that the
    /// SMSC delivers them again.
    fn incoming(&self, link: &Arc<Link>, command: Command, permit: OwnedSemaphorePermit) {
        /// Where and how to answer one request: its link, sequence number and command.
        type Held = (Arc<Link>, u32, CommandId);
        fn answer((link, sequence, id): &Held, status: CommandStatus) {
            let resp: Pdu = match id {
                CommandId::DataSm => rusmpp::pdus::DataSmResp::default().into(),
                _ => DeliverSmResp::default().into(),
            };
            link.send(Command::new(status, *sequence, resp));
        }
        let sequence = command.sequence_number();
        let format = self.config.msg_id_format;
        let (delivery, what) = match command.pdu() {
            Some(Pdu::DeliverSm(deliver)) => (pdu::read_deliver_sm(deliver, format), "deliver_sm"),
            Some(Pdu::DataSm(data)) => (pdu::read_data_sm(data, format), "data_sm"),
            _ if command.id() == CommandId::AlertNotification || command.id() == CommandId::Outbind => return,
            _ => {
                link.send(Command::new(CommandStatus::EsmeRinvcmdid, sequence, Pdu::GenericNack));
                return;
            }
        };
        let name = &self.config.name;
        let held: Held = (link.clone(), sequence, command.id());
        let (event, held) = match delivery {
            Delivery::Event(event) => (event, vec![held]),
            Delivery::Part(part) => {
                let now = Instant::now();
                let added = self.reassembly.lock().unwrap_or_else(PoisonError::into_inner).add(part, held, now);
                if !added.released.is_empty() {
                    let parts = added.released.len();
                    tracing::warn!(upstream = %name, parts, "too many inbound parts waiting for the rest; asking the SMSC to deliver the oldest again");
                }
                for held in &added.released {
                    answer(held, CommandStatus::EsmeRxTAppn);
                }
                if let Some(deadline) = added.deadline {
                    // The message's deadline: whatever is still incomplete then is given up.
                    let reassembly = self.reassembly.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(deadline).await;
                        let expired = reassembly.lock().unwrap_or_else(PoisonError::into_inner).expire(Instant::now());
                        if !expired.is_empty() {
                            let parts = expired.len();
                            tracing::warn!(upstream = %name, parts, "concatenated inbound message incomplete in time; asking the SMSC to deliver its parts again");
                        }
                        for held in &expired {
                            answer(held, CommandStatus::EsmeRxTAppn);
                        }
                    });
                }
                match added.complete {
                    Some((message, held)) => (switchboard_provider::ProviderEvent::Inbound(message), held),
                    // It waits for the other parts without a slot of the receive window.
                    None => return,
                }
            }
            Delivery::Pending { provider_ref, stat } => {
                tracing::debug!(upstream = %name, %provider_ref, %stat, "receipt of a state that is not final");
                answer(&held, CommandStatus::EsmeRok);
                return;
            }
            Delivery::Skipped(why) => {
                tracing::warn!(upstream = %name, "{what} not reported: {why}");
                answer(&held, CommandStatus::EsmeRok);
                return;
            }
        };
        match self.events.report(event) {
            Ok(acknowledgement) => {
                let name = name.clone();
                tokio::spawn(async move {
                    let status = match acknowledgement.wait().await {
                        Ok(_) => CommandStatus::EsmeRok,
                        // Not stored (storage failed, or the server is stopping): the SMSC
                        // delivers it again later.
                        Err(NotStored) => {
                            tracing::warn!(upstream = %name, sequence, "{what} not stored; asking the SMSC to deliver it again");
                            CommandStatus::EsmeRxTAppn
                        }
                    };
                    for held in &held {
                        answer(held, status);
                    }
                    drop(permit);
                });
            }
            // Nobody reads events any more (the server is stopping): ask the SMSC to deliver it
            // again later.
            Err(_) => {
                for held in &held {
                    answer(held, CommandStatus::EsmeRxTAppn);
                }
            }
        }
    }
}

/// Connects and binds `role`, keeps the session while it lives, and binds again after a drop
/// or a failure, waiting longer after each failure, until shutdown.
async fn supervise(inner: Arc<Inner>, slot: usize, role: Role) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut failures: u32 = 0;
    let name = inner.config.name.clone();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let bound = tokio::select! {
            bound = connect_and_bind(&inner.config, inner.tls.as_ref(), role) => bound,
            _ = shutdown.changed() => break,
        };
        match bound {
            Ok(mut connection) => {
                failures = 0;
                tracing::info!(upstream = %name, role = role.name(), peer = %inner.config.peer(), "SMPP bound");
                let session = role.sends().then(|| {
                    Arc::new(TxSession {
                        link: connection.link().clone(),
                        window: Arc::new(Semaphore::new(inner.config.window as usize)),
                    })
                });
                if let Some(session) = &session {
                    *inner.tx.write().unwrap_or_else(PoisonError::into_inner) = Some(session.clone());
                }
                inner.set_link(slot, true, None);
                if session.is_some() {
                    // Messages that found the bind down may go now.
                    let _ = inner.events.send(ProviderEvent::Ready { upstream: name.clone() });
                }
                let ended = run_session(&inner, &mut connection, &mut shutdown).await;
                if let Some(session) = &session {
                    let mut tx = inner.tx.write().unwrap_or_else(PoisonError::into_inner);
                    if tx.as_ref().is_some_and(|t| Arc::ptr_eq(t, session)) {
                        *tx = None;
                    }
                    drop(tx);
                    session.window.close();
                }
                match ended {
                    Some(reason) => {
                        tracing::warn!(upstream = %name, role = role.name(), %reason, "SMPP session dropped");
                        inner.set_link(slot, false, Some(format!("{} session dropped: {reason}", role.name())));
                        connection.close().await;
                    }
                    None => {
                        inner.set_link(slot, false, Some("shut down".to_owned()));
                        if session.is_some() {
                            drain(&inner).await;
                        }
                        unbind(&inner.config, connection).await;
                        break;
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(upstream = %name, role = role.name(), error = %e, "SMPP bind failed");
                inner.set_link(slot, false, Some(e));
            }
        }
        let delay = backoff(&inner.config, failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// Waits until no `submit_sm` waits for its answer, at most the response timeout.
async fn drain(inner: &Inner) {
    let until = Instant::now() + inner.config.response_timeout();
    while inner.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Unbinds cleanly, waiting at most the response timeout, and closes the connection.
async fn unbind(config: &SmppConfig, connection: Connection) {
    match connection.link().request(Pdu::Unbind, config.response_timeout()).await {
        Ok(resp) if resp.id() == CommandId::UnbindResp && resp.status() == CommandStatus::EsmeRok => {}
        Ok(resp) => {
            let (id, status) = (resp.id(), pdu::status_text(resp.status()));
            tracing::debug!(upstream = %config.name, ?id, %status, "unbind not acknowledged");
        }
        Err(e) => tracing::debug!(upstream = %config.name, error = ?e, "unbind not acknowledged"),
    }
    connection.close().await;
}

/// Handles what the SMSC sends until the connection ends (returning why) or shutdown (`None`).
///
/// At most `receive_window` `deliver_sm` wait to be stored at once: while that many do, the
/// next request is not read (the SMSC's own window then holds it back).
async fn run_session(
    inner: &Inner,
    connection: &mut Connection,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let receiving = Arc::new(Semaphore::new(inner.config.receive_window.max(1) as usize));
    loop {
        let permit = tokio::select! {
            permit = receiving.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return Some("the session's receive window closed".to_owned()),
            },
            () = connection.ended() => return Some(connection.link().reason()),
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow_and_update() {
                    return None;
                }
                continue;
            }
        };
        tokio::select! {
            request = connection.next_request() => match request {
                Ok(command) => inner.incoming(connection.link(), command, permit),
                Err(reason) => return Some(reason),
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow_and_update() {
                    return None;
                }
            }
        }
    }
}

/// Opens the connection (TCP, or TLS when configured, with `tls` when the upstream has its own
/// TLS settings), binds as `role`, and starts the keep-alive.
async fn connect_and_bind(
    config: &SmppConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    role: Role,
) -> Result<Connection, String> {
    let timeout = config.response_timeout();
    let peer = config.peer();
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((config.host.as_str(), config.port)))
        .await
        .map_err(|_| format!("no TCP connection to {peer} within {} ms", timeout.as_millis()))?
        .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let connection = if config.tls {
        let stream = tokio::time::timeout(timeout, crate::client::start_tls(&config.host, stream, tls))
            .await
            .map_err(|_| format!("no TLS connection to {peer} within {} ms", timeout.as_millis()))?
            .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
        let (read, write) = tokio::io::split(stream);
        Connection::open(read, write, timeout)
    } else {
        let (read, write) = stream.into_split();
        Connection::open(read, write, timeout)
    };
    let field = |name: &str, value: &str| format!("{name} `{value}` cannot go in a bind");
    let system_id =
        COctetString::from_string(config.system_id.clone()).map_err(|_| field("system_id", &config.system_id))?;
    let password = COctetString::from_string(config.password.clone()).map_err(|_| field("password", "***"))?;
    let system_type =
        COctetString::from_string(config.system_type.clone()).map_err(|_| field("system_type", &config.system_type))?;
    let (bind, answer_id): (Pdu, CommandId) = match role {
        Role::Transceiver => (
            BindTransceiver::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build()
                .into(),
            CommandId::BindTransceiverResp,
        ),
        Role::Transmitter => (
            BindTransmitter::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build()
                .into(),
            CommandId::BindTransmitterResp,
        ),
        Role::Receiver => (
            BindReceiver::builder()
                .system_id(system_id)
                .password(password)
                .system_type(system_type)
                .interface_version(InterfaceVersion::Smpp3_4)
                .addr_ton(Ton::Unknown)
                .addr_npi(Npi::Unknown)
                .address_range(COctetString::empty())
                .build()
                .into(),
            CommandId::BindReceiverResp,
        ),
    };
    // A failed bind drops `connection`, which closes it.
    match connection.link().request(bind, timeout).await {
        Ok(resp) if resp.status() != CommandStatus::EsmeRok => {
            Err(format!("{} bind refused by {peer}: {}", role.name(), pdu::status_text(resp.status())))
        }
        Ok(resp) if resp.id() != answer_id => {
            Err(format!("{} bind to {peer} answered with {:?}", role.name(), resp.id()))
        }
        Ok(_) => {
            connection.keep_alive(Duration::from_secs(config.enquire_link_secs.max(1)), timeout);
            Ok(connection)
        }
        Err(RequestError::Timeout(_)) => Err(format!("no answer to the {} bind from {peer}", role.name())),
        Err(RequestError::NotSent(reason) | RequestError::Closed(reason)) => {
            Err(format!("{} bind to {peer} failed: {reason}", role.name()))
        }
    }
}

/// The wait before bind attempt number `failures + 1`: `reconnect_min_ms` doubled per failure
/// up to `reconnect_max_ms`, give or take a quarter at random.
fn backoff(config: &SmppConfig, failures: u32) -> Duration {
    let min = config.reconnect_min_ms.max(1);
    let max = config.reconnect_max_ms.max(min);
    let base = min.saturating_mul(1u64 << failures.saturating_sub(1).min(20)).min(max);
    // A random factor in [0.75, 1.25).
    let random = RandomState::new().hash_one(failures) % 500;
    let jittered = base * (750 + random) / 1000;
    Duration::from_millis(jittered.clamp(min, max))
}

#[async_trait]
impl Provider for SmppUpstream {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// Sends the message as one `submit_sm` per part, waiting for a free slot in the window
    /// and for the rate cap.
    ///
    /// Errors:
    /// - not bound: `unavailable`, at once;
    /// - the connection lost, or no `submit_sm_resp` within `response_timeout_ms`:
    ///   `unavailable` — the SMSC may or may not have taken the part, so a retry may send it
    ///   twice;
    /// - a refusal: see [`crate::pdu::submit_status_error`];
    /// - a later part refused after earlier parts were accepted: that part's error, and a retry
    ///   sends the earlier parts again.
    async fn send(&self, message: &OutboundMessage) -> Result<Submission, ProviderError> {
        let result = self.inner.send(message).await;
        let counter = if result.is_ok() { &self.inner.sent } else { &self.inner.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn shutdown(&self) {
        SmppUpstream::shutdown(self).await;
    }

    fn sends_parts(&self) -> bool {
        true
    }

    fn status(&self) -> Vec<UpstreamStatus> {
        let inner = &self.inner;
        let links = inner.links.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let connected = inner.current().is_some();
        let trouble: Vec<String> = links
            .iter()
            .zip(&inner.roles)
            .filter(|(l, _)| !l.bound)
            .map(|(l, role)| {
                l.error.clone().unwrap_or_else(|| format!("{} binding to {}", role.name(), inner.config.peer()))
            })
            .collect();
        let detail = if trouble.is_empty() {
            format!("bound to {}", inner.config.peer())
        } else if connected {
            format!("bound to {}; {}", inner.config.peer(), trouble.join("; "))
        } else {
            trouble.join("; ")
        };
        vec![UpstreamStatus {
            name: inner.config.name.clone(),
            kind: "smpp".to_owned(),
            connected,
            in_flight: inner.in_flight.load(Ordering::Relaxed),
            window: u64::from(inner.config.window),
            sent: inner.sent.load(Ordering::Relaxed),
            failed: inner.failed.load(Ordering::Relaxed),
            detail: Some(detail),
            rate_per_second: inner.pace.rate(),
            throttled: inner.pace.throttled_count(),
            last_error: None,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let config =
            SmppConfig { reconnect_min_ms: 100, reconnect_max_ms: 1000, ..SmppConfig::new("a", "h", 1, "s", "p") };
        for _ in 0..50 {
            let first = backoff(&config, 0).as_millis();
            assert!((100..=125).contains(&first), "{first}");
            let third = backoff(&config, 3).as_millis();
            assert!((300..=500).contains(&third), "{third}");
            let late = backoff(&config, 40).as_millis();
            assert!((750..=1000).contains(&late), "{late}");
        }
    }
}
