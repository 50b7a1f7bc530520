//! `switchboard-client` against the real server: a send whose connection is cut before its
//! answer is tried again and stored and charged once, every dialect's errors arrive typed, and
//! the Bird channels client sends, reads, lists and cancels.

use std::time::Duration;

use reqwest::StatusCode;
use switchboard_client::wire::bird::BirdSendRequest;
use switchboard_client::wire::{CreateChannel, TlSendRequest, TlStatus};
use switchboard_client::{
    BirdAuth, ClientError, Dialect, ErrorCode, MudbaseAuth, RetryPolicy, Switchboard, Timestamp, Uuid,
};
use switchboard_tests::{Backend, Tenant, TestApp, TestDb, on_both_backends};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

on_both_backends!(
    a_send_cut_before_its_answer_is_stored_and_charged_once,
    every_dialect_answers_typed_errors,
    the_bird_client_sends_reads_lists_and_cancels,
);

/// A proxy in front of `upstream` (`http://host:port`) that passes the first connection's
/// request on, waits for the server's answer to begin, and then closes the connection
/// without passing the answer back: the request took effect, and the client never learns
/// how. Later connections pass through. Returns its URL.
async fn cutting_proxy(upstream: &str) -> String {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.expect("connect to the server");
            if std::mem::take(&mut first) {
                tokio::spawn(cut_after_the_answer_begins(client, server));
            } else {
                tokio::spawn(async move {
                    let (mut client, mut server) = (client, server);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        }
    });
    url
}

async fn cut_after_the_answer_begins(client: TcpStream, server: TcpStream) {
    let (mut client_read, _client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match server_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 201"), "the server stored it: {}", String::from_utf8_lossy(&answer));
    // Dropping both halves closes the client's connection with no answer.
}

async fn a_send_cut_before_its_answer_is_stored_and_charged_once(backend: Backend) {
    let Some(db) = TestDb::new(backend, "client_cut_send").await else { return };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(10, 0).await;
    let proxy = cutting_proxy(&app.url).await;
    let (key_id, secret) = t.api_key.split_once(':').expect("id:secret");
    let client = Switchboard::builder(&proxy)
        .retry(RetryPolicy::default().base_delay(Duration::from_millis(20)))
        .build()
        .unwrap()
        .textingline(key_id, secret);
    let request = TlSendRequest {
        to: "+18005551234".into(),
        from: t.from.clone(),
        body: Some("once".into()),
        ..Default::default()
    };
    let sent = client.send(&request).await.expect("the send, tried again");
    assert_eq!((sent.attempts, sent.replayed, sent.status), (2, true, StatusCode::CREATED));
    let key = sent.idempotency_key.clone().expect("a generated key");

    let messages = app.admin.messages(t.account, 100, None).await.unwrap().data;
    assert_eq!(messages.len(), 1, "one message");
    assert_eq!((messages[0].id, messages[0].idempotency_key.as_deref()), (sent.message.id, Some(key.as_str())));
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 8, "charged once");
    let charges = app.admin.ledger(t.account, 100, None).await.unwrap().data;
    assert_eq!(charges.iter().filter(|e| e.kind == "charge").count(), 1);

    // Without a key to repeat it under, a cut send is not tried again: its error is returned.
    let proxy = cutting_proxy(&app.url).await;
    let once = Switchboard::builder(&proxy)
        .retry(RetryPolicy::default().generate_keys(false))
        .build()
        .unwrap()
        .textingline(key_id, secret);
    let err = once.send(&request).await.unwrap_err();
    assert!(matches!(err, ClientError::Http(_)) && err.is_transient(), "{err:?}");
    app.stop().await;
    db.remove().await;
}

async fn channel(app: &TestApp, t: &Tenant) -> Uuid {
    let create = CreateChannel { name: "sms".into(), sender: t.from.clone(), active: true };
    app.admin.create_channel(t.account, &create).await.expect("a channel").id
}

fn api(err: ClientError) -> switchboard_client::ApiError {
    match err {
        ClientError::Api(api) => *api,
        other => panic!("not an error answer: {other:?}"),
    }
}

async fn every_dialect_answers_typed_errors(backend: Backend) {
    let Some(db) = TestDb::new(backend, "client_typed_errors").await else { return };
    let app = TestApp::start(db.settings()).await;
    let poor = app.provision(0, 0).await;
    let switchboard = Switchboard::new(&app.url).unwrap();
    let (key_id, secret) = poor.api_key.split_once(':').expect("id:secret");

    // TextingLine: a numeric code and its type.
    let tl = switchboard.textingline(key_id, secret);
    let request = TlSendRequest {
        to: "+18005551234".into(),
        from: poor.from.clone(),
        body: Some("x".into()),
        ..Default::default()
    };
    let e = api(tl.send(&request).await.unwrap_err());
    assert_eq!(
        (e.dialect, e.status, e.code.clone()),
        (Dialect::TextingLine, StatusCode::PAYMENT_REQUIRED, Some(ErrorCode::Number(33023)))
    );
    assert_eq!((e.kind.as_deref(), e.message.as_str()), (Some("insufficient_credits"), "Insufficient credits"));
    let e = api(switchboard.textingline(key_id, "sk_wrong").send(&request).await.unwrap_err());
    assert_eq!(
        (e.status, e.code.clone(), e.kind.as_deref()),
        (StatusCode::UNAUTHORIZED, Some(30401.into()), Some("unauthorized"))
    );
    let e = api(tl.message("msg_DsAdb4EBYBh3z25sBA1qnv").await.unwrap_err());
    assert_eq!((e.status, e.code.clone()), (StatusCode::NOT_FOUND, Some(30404.into())));

    // Mudbase: a named code.
    let mb = switchboard.mudbase(poor.account, MudbaseAuth::ApiKey(poor.api_key.clone()));
    let e = api(mb.send_sms(&["+18005551234"], "x", None).await.unwrap_err());
    assert_eq!(
        (e.dialect, e.status, e.code.clone()),
        (Dialect::Mudbase, StatusCode::FORBIDDEN, Some("INSUFFICIENT_CREDITS".into()))
    );
    let e = api(mb.send_sms(&["feed generate"], "x", None).await.unwrap_err());
    assert_eq!((e.status, e.code.clone()), (StatusCode::BAD_REQUEST, Some("VALIDATION_ERROR".into())));
    assert!(e.message.contains("feed generate"), "{e}");

    // Bird: a named code, and the problems by field.
    let channel = channel(&app, &poor).await;
    let bird = switchboard.bird(poor.account, BirdAuth::AccessKey(poor.api_key.clone()));
    let e = api(bird.send_text(channel, "+18005551234", "x").await.unwrap_err());
    assert_eq!(
        (e.dialect, e.status, e.code.clone()),
        (Dialect::Bird, StatusCode::CONFLICT, Some("InsufficientCredits".into()))
    );
    let e = api(bird.send_text(channel, "12", "x").await.unwrap_err());
    assert_eq!((e.status, e.code.clone()), (StatusCode::UNPROCESSABLE_ENTITY, Some("InvalidPayload".into())));
    assert!(e.details.contains_key("receiver.contacts[0].identifierValue"), "{e}");
    assert!(e.to_string().contains("receiver.contacts[0].identifierValue"), "{e}");
    let e = api(bird.message(Uuid::new_v4(), "msg_DsAdb4EBYBh3z25sBA1qnv").await.unwrap_err());
    assert_eq!((e.status, e.code.clone()), (StatusCode::NOT_FOUND, Some("NotFound".into())));

    // The admin API.
    let e = api(app.admin.account(Uuid::new_v4()).await.unwrap_err());
    assert_eq!(
        (e.dialect, e.status, e.code.clone()),
        (Dialect::Admin, StatusCode::NOT_FOUND, Some("not_found".into()))
    );
    let e = api(switchboard.admin("not-the-token").accounts(10, None).await.unwrap_err());
    assert_eq!((e.status, e.code.clone()), (StatusCode::UNAUTHORIZED, Some("unauthorized".into())));
    app.stop().await;
    db.remove().await;
}

async fn the_bird_client_sends_reads_lists_and_cancels(backend: Backend) {
    let Some(db) = TestDb::new(backend, "client_bird").await else { return };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(10, 0).await;
    let channel = channel(&app, &t).await;
    // One given reqwest::Client serves every dialect.
    let switchboard = Switchboard::builder(&app.url).http_client(reqwest::Client::new()).build().unwrap();
    let bird = switchboard.bird(t.account, BirdAuth::AccessKey(t.api_key.clone()));

    let sent = bird.send_text(channel, "+18005551234", "Your table is ready").await.unwrap();
    assert_eq!((sent.status.as_str(), sent.channel_id), ("accepted", channel));
    let read = bird.message(channel, &sent.id.to_string()).await.unwrap();
    assert_eq!(read.id, sent.id);
    // The other dialects' id for it reads the same message, in TextingLine too.
    let msg_id = switchboard_domain::MessageId::from_uuid(sent.id).to_string();
    assert_eq!(bird.message(channel, &msg_id).await.unwrap().id, sent.id);
    let (key_id, secret) = t.api_key.split_once(':').expect("id:secret");
    let tl = switchboard.textingline(key_id, secret).message(&msg_id).await.unwrap();
    assert_ne!(tl.status, TlStatus::Failed);

    // A scheduled message is canceled and refunded; canceling again is NotScheduled.
    let later = Timestamp::now().plus_millis(3_600_000).to_string();
    let scheduled =
        BirdSendRequest { scheduled_for: Some(later), reference: Some("order-1".into()), ..text_to("+18005551234") };
    let scheduled = bird.send(channel, &scheduled).await.unwrap();
    assert_eq!(bird.message(channel, &scheduled.id.to_string()).await.unwrap().status, "scheduled");
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 6);
    let canceled = bird.cancel(channel, &scheduled.id.to_string()).await.unwrap();
    assert_eq!(canceled.status, "canceled");
    assert_eq!(app.admin.balance(t.account).await.unwrap().sms_credits, 8, "refunded");
    let e = bird.cancel(channel, &scheduled.id.to_string()).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (Some(StatusCode::CONFLICT), Some(&"NotScheduled".into())));

    // Pages, newest first.
    let first = bird.messages(channel, Some(1), None).await.unwrap();
    assert_eq!(first.results.iter().map(|m| m.id).collect::<Vec<_>>(), [scheduled.id]);
    let token = first.next_page_token.expect("another page");
    let second = bird.messages(channel, Some(1), Some(&token)).await.unwrap();
    assert_eq!(second.results.iter().map(|m| m.id).collect::<Vec<_>>(), [sent.id]);
    let all = bird.messages(channel, None, None).await.unwrap();
    assert_eq!((all.results.len(), all.next_page_token), (2, None));

    // An access token from the Mudbase dialect works here too.
    let token = switchboard.mudbase(t.account, MudbaseAuth::ApiKey(t.api_key.clone())).issue_token().await.unwrap();
    let by_token = bird.with_auth(BirdAuth::Bearer(token.access_token));
    assert_eq!(by_token.message(channel, &sent.id.to_string()).await.unwrap().id, sent.id);
    app.stop().await;
    db.remove().await;
}

/// A Bird text message to `to`.
fn text_to(to: &str) -> BirdSendRequest {
    use switchboard_client::wire::bird::{BirdBody, BirdContact, BirdReceiver, BirdTextBody};
    BirdSendRequest {
        receiver: Some(BirdReceiver {
            contacts: vec![BirdContact { identifier_value: Some(to.into()), ..Default::default() }],
        }),
        body: Some(BirdBody {
            kind: "text".into(),
            text: Some(BirdTextBody { text: "Your table is ready".into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
