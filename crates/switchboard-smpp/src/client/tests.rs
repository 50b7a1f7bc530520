//! Tests of the SMPP client over an in-memory stream.

use futures_util::StreamExt;
use rusmpp::pdus::{DeliverSm, SubmitSmResp};
use rusmpp::types::COctetString;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::FramedRead;

use super::*;

/// The other end of a connection, played by the test.
struct Peer {
    frames: FramedRead<ReadHalf<DuplexStream>, CommandCodec>,
    write: WriteHalf<DuplexStream>,
}

impl Peer {
    async fn next(&mut self) -> Command {
        tokio::time::timeout(Duration::from_secs(5), self.frames.next())
            .await
            .expect("a command in time")
            .expect("the connection open")
            .expect("a command that decodes")
    }

    async fn send(&mut self, command: Command) {
        let mut buf = BytesMut::new();
        CommandCodec::new().encode(&command, &mut buf).unwrap();
        self.write.write_all(&buf).await.unwrap();
    }
}

fn pair(grace: Duration) -> (Connection, Peer) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(ours);
    let connection = Connection::open(read, write, grace);
    let (read, write) = tokio::io::split(theirs);
    (connection, Peer { frames: FramedRead::new(read, CommandCodec::new()), write })
}

fn submit_resp(sequence: u32, id: &str) -> Command {
    let message_id = COctetString::from_string(id.to_owned()).unwrap();
    Command::new(CommandStatus::EsmeRok, sequence, SubmitSmResp::builder().message_id(message_id).build())
}

fn message_id(command: &Command) -> String {
    match command.pdu() {
        Some(Pdu::SubmitSmResp(resp)) => resp.message_id().as_str().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn waiting(link: &Link) -> usize {
    link.pending().waiting.len()
}

#[tokio::test]
async fn answers_reach_their_requests_whatever_their_order() {
    let (connection, mut peer) = pair(Duration::from_secs(1));
    let link = connection.link().clone();
    let timeout = Duration::from_secs(5);
    let first = tokio::spawn({
        let link = link.clone();
        async move { link.request(Pdu::EnquireLink, timeout).await }
    });
    let a = peer.next().await;
    let second = tokio::spawn({
        let link = link.clone();
        async move { link.request(Pdu::EnquireLink, timeout).await }
    });
    let b = peer.next().await;
    assert_ne!(a.sequence_number(), b.sequence_number());
    assert!(a.sequence_number() >= 1 && b.sequence_number() >= 1);
    peer.send(submit_resp(b.sequence_number(), "second")).await;
    peer.send(submit_resp(a.sequence_number(), "first")).await;
    assert_eq!(message_id(&first.await.unwrap().unwrap()), "first");
    assert_eq!(message_id(&second.await.unwrap().unwrap()), "second");
    assert_eq!(waiting(&link), 0);
}

#[tokio::test]
async fn queued_commands_go_out_together_and_all_are_answered() {
    let (connection, mut peer) = pair(Duration::from_secs(1));
    let link = connection.link().clone();
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let link = link.clone();
            tokio::spawn(async move { link.request(Pdu::EnquireLink, Duration::from_secs(10)).await })
        })
        .collect();
    for _ in 0..500 {
        let request = peer.next().await;
        let sequence = request.sequence_number();
        peer.send(submit_resp(sequence, &sequence.to_string())).await;
    }
    for request in requests {
        request.await.unwrap().unwrap();
    }
    assert_eq!(waiting(&link), 0);
}

#[tokio::test]
async fn a_closed_connection_fails_every_waiting_request_at_once() {
    let (connection, mut peer) = pair(Duration::from_secs(1));
    let link = connection.link().clone();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let link = link.clone();
            tokio::spawn(async move { link.request(Pdu::EnquireLink, Duration::from_secs(30)).await })
        })
        .collect();
    for _ in 0..3 {
        peer.next().await;
    }
    let started = tokio::time::Instant::now();
    drop(peer);
    for request in requests {
        let closed = RequestError::Closed("the SMSC closed the connection".to_owned());
        assert_eq!(request.await.unwrap(), Err(closed));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(waiting(&link), 0);
    let late = link.request(Pdu::EnquireLink, Duration::from_secs(30)).await;
    assert_eq!(late, Err(RequestError::NotSent("the SMSC closed the connection".to_owned())));
    drop(connection);
}

#[tokio::test]
async fn a_request_not_answered_in_time_times_out_and_is_forgotten() {
    let (connection, mut peer) = pair(Duration::from_secs(1));
    let link = connection.link().clone();
    let request = tokio::spawn({
        let link = link.clone();
        async move { link.request(Pdu::EnquireLink, Duration::from_millis(50)).await }
    });
    let sent = peer.next().await;
    assert_eq!(request.await.unwrap(), Err(RequestError::Timeout(Duration::from_millis(50))));
    assert_eq!(waiting(&link), 0);
    // The late answer is dropped, and the connection stays up.
    peer.send(submit_resp(sent.sequence_number(), "late")).await;
    let again = tokio::spawn({
        let link = link.clone();
        async move { link.request(Pdu::EnquireLink, Duration::from_secs(5)).await }
    });
    let sent = peer.next().await;
    peer.send(submit_resp(sent.sequence_number(), "on time")).await;
    assert_eq!(message_id(&again.await.unwrap().unwrap()), "on time");
}

#[tokio::test]
async fn enquire_link_is_answered_and_requests_reach_the_handler() {
    let (mut connection, mut peer) = pair(Duration::from_secs(1));
    peer.send(Command::new(CommandStatus::EsmeRok, 7, Pdu::EnquireLink)).await;
    let answer = peer.next().await;
    assert_eq!((answer.id(), answer.sequence_number()), (CommandId::EnquireLinkResp, 7));
    peer.send(Command::new(CommandStatus::EsmeRok, 8, DeliverSm::default())).await;
    let request = connection.next_request().await.unwrap();
    assert_eq!((request.id(), request.sequence_number()), (CommandId::DeliverSm, 8));
}

#[tokio::test]
async fn an_unbind_is_answered_and_ends_the_connection_after_the_requests_before_it() {
    let (mut connection, mut peer) = pair(Duration::from_secs(1));
    peer.send(Command::new(CommandStatus::EsmeRok, 3, DeliverSm::default())).await;
    peer.send(Command::new(CommandStatus::EsmeRok, 4, Pdu::Unbind)).await;
    let answer = peer.next().await;
    assert_eq!((answer.id(), answer.sequence_number()), (CommandId::UnbindResp, 4));
    // The writer closes its side after the answer.
    assert!(tokio::time::timeout(Duration::from_secs(5), peer.frames.next()).await.unwrap().is_none());
    assert_eq!(connection.next_request().await.unwrap().sequence_number(), 3);
    assert_eq!(connection.next_request().await.unwrap_err(), "the SMSC unbound the session");
}

#[tokio::test]
async fn an_unanswered_enquire_link_ends_the_connection() {
    let (mut connection, mut peer) = pair(Duration::from_secs(1));
    connection.keep_alive(Duration::from_millis(50), Duration::from_millis(100));
    let enquire = peer.next().await;
    peer.send(Command::new(CommandStatus::EsmeRok, enquire.sequence_number(), Pdu::EnquireLinkResp)).await;
    assert_eq!(peer.next().await.id(), CommandId::EnquireLink);
    let reason = tokio::time::timeout(Duration::from_secs(5), connection.next_request()).await.unwrap();
    assert_eq!(reason.unwrap_err(), "no answer to enquire_link within 100 ms");
}

#[tokio::test]
async fn closing_writes_what_is_queued_then_closes() {
    let (connection, mut peer) = pair(Duration::from_secs(1));
    connection.link().send(Command::new(CommandStatus::EsmeRok, 9, Pdu::EnquireLinkResp));
    connection.close().await;
    assert_eq!(peer.next().await.sequence_number(), 9);
    assert!(tokio::time::timeout(Duration::from_secs(5), peer.frames.next()).await.unwrap().is_none());
}

#[test]
fn sequence_numbers_stay_within_what_smpp_allows() {
    let (out, _commands) = mpsc::unbounded_channel();
    let link = Link {
        out,
        pending: Mutex::new(Pending::default()),
        sequence: AtomicU32::new(MAX_SEQUENCE - 1),
        ended: watch::Sender::new(None),
    };
    assert_eq!(link.next_sequence(), MAX_SEQUENCE);
    assert_eq!(link.next_sequence(), 1);
    link.sequence.store(u32::MAX, Ordering::Relaxed);
    let wrapped = [link.next_sequence(), link.next_sequence()];
    assert!(wrapped.iter().all(|n| (1..=MAX_SEQUENCE).contains(n)), "{wrapped:?}");
}

#[tokio::test]
async fn tls_settings_load_and_a_server_without_tls_fails_the_handshake() {
    assert!(default_tls_config().is_ok());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let unnamed = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // Not TLS: a plain SMPP command, then the connection closes.
        let mut buf = BytesMut::new();
        CommandCodec::new().encode(&Command::new(CommandStatus::EsmeRok, 1, Pdu::EnquireLink), &mut buf).unwrap();
        let _ = stream.write_all(&buf).await;
    });
    let error = start_tls("localhost", plain, None).await.unwrap_err();
    assert!(error.starts_with("TLS handshake failed"), "{error}");
    let error = start_tls("not a host name", unnamed, None).await.unwrap_err();
    assert!(error.contains("cannot name a TLS server"), "{error}");
    server.await.unwrap();
}
