//! The SMPP server, driven by an ESME over loopback: binds in every mode and their refusals,
//! `submit_sm` through the core (encodings, concatenation, payloads, schedules, the error
//! statuses), the window and rate of a bind, malformed PDUs, receipts and inbound messages as
//! `deliver_sm` (held while no receiver is bound), and an independent client, Python's
//! `smpplib`.

use std::net::SocketAddr;
use std::time::Duration;

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{AnyOctetString, EmptyOrFullCOctetString};
use rusmpp::values::{EsmClass, MessagePayload};
use rusmpp::{CommandId, CommandStatus, Pdu};
use switchboard_domain::wire::webhooks::InjectInbound;
use switchboard_domain::wire::{CreateSmppCredential, SmppCredentialCreated};
use switchboard_domain::{MessageId, MessageStatus};
use switchboard_smpp_server::testing::{Esme, Mode, short_text, submit_sm, text_sm};
use switchboard_tests::{Backend, Tenant, TestApp, TestDb, eventually, on_both_backends, test_python};
use uuid::Uuid;

on_both_backends!(
    smpp_sends_through_the_core_and_returns_receipts,
    smpp_binds_in_every_mode_within_limits,
    smpp_receipts_wait_for_a_receiver,
    smpp_windows_rates_and_credits,
    smpp_malformed_pdus_close_only_their_bind,
);

const TO: &str = "+18005551234";
const LIMIT: Duration = Duration::from_secs(20);

async fn start(backend: Backend, test: &str) -> Option<(TestDb, TestApp)> {
    let db = TestDb::new(backend, test).await?;
    let mut settings = db.settings();
    settings.smpp_server.enabled = true;
    settings.smpp_server.listen = "127.0.0.1:0".into();
    settings.smpp_server.deliver_poll_ms = 20;
    settings.smpp_server.reassembly_timeout_secs = 2;
    settings.simulator_receipt_delay_ms = 50;
    let app = TestApp::start(settings).await;
    Some((db, app))
}

fn addr(app: &TestApp) -> SocketAddr {
    app.smpp.expect("the SMPP server is enabled")
}

/// A fresh `system_id` (at most 15 characters).
fn system_id() -> String {
    format!("e{}", &Uuid::new_v4().simple().to_string()[..12])
}

async fn credential(app: &TestApp, tenant: &Tenant, body: CreateSmppCredential) -> SmppCredentialCreated {
    app.admin.create_smpp_credential(tenant.account, &body).await.expect("create an SMPP credential")
}

async fn plain_credential(app: &TestApp, tenant: &Tenant) -> SmppCredentialCreated {
    credential(app, tenant, CreateSmppCredential { system_id: system_id(), ..Default::default() }).await
}

/// The receipted_message_id and message_state TLVs of a receipt.
fn receipt_tlvs(d: &DeliverSm) -> (Option<String>, Option<u8>) {
    let mut id = None;
    let mut state = None;
    for tlv in d.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(v)) => id = Some(v.as_str().to_owned()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            _ => {}
        }
    }
    (id, state)
}

async fn stored(app: &TestApp, id: &str) -> switchboard_domain::wire::Message {
    let id: MessageId = id.parse().expect("a Switchboard message id");
    app.admin.message(id).await.expect("read the message")
}

async fn smpp_sends_through_the_core_and_returns_receipts(backend: Backend) {
    let Some((db, app)) = start(backend, "smpp_sends").await else { return };
    let tenant = app.provision(1000, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    assert_eq!(cred.password.len(), 8);
    let listed = app.admin.smpp_credentials(tenant.account).await.unwrap().data;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].system_id, cred.credential.system_id);
    let mut esme = Esme::connect(addr(&app)).await;
    let bind = rusmpp::pdus::BindTransceiver::builder()
        .system_id(rusmpp::types::COctetString::from_string(cred.credential.system_id.clone()).unwrap())
        .password(rusmpp::types::COctetString::from_string(cred.password.clone()).unwrap())
        .interface_version(rusmpp::values::InterfaceVersion::Smpp3_4)
        .build();
    let answer = esme.request(bind).await;
    let Some(Pdu::BindTransceiverResp(resp)) = answer.pdu() else { panic!("{answer:?}") };
    assert_eq!((answer.status(), resp.system_id.as_str()), (CommandStatus::EsmeRok, "switchboard"));
    assert_eq!(resp.sc_interface_version(), Some(rusmpp::values::InterfaceVersion::Smpp3_4));
    assert_eq!(esme.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);
    assert_eq!(
        esme.bind(Mode::Transceiver, &cred.credential.system_id, &cred.password).await,
        CommandStatus::EsmeRalybnd
    );

    // GSM-7, with its receipt.
    let (status, id) = esme.submit(text_sm(&tenant.from, TO, "Hello over SMPP")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let id = id.expect("a message id");
    assert!(id.starts_with("msg_"), "{id}");
    let (sequence, receipt) = esme.next_deliver().await;
    esme.answer(sequence, CommandStatus::EsmeRok).await;
    assert_eq!(u8::from(receipt.esm_class), 0x04);
    assert_eq!(receipt_tlvs(&receipt), (Some(id.clone()), Some(2)));
    let text = short_text(&receipt);
    assert!(text.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:")), "{text}");
    assert!(text.contains(" stat:DELIVRD err:000 text:Hello over SMPP"), "{text}");
    assert_eq!(receipt.source_addr.as_str(), TO.trim_start_matches('+'));
    let m = stored(&app, &id).await;
    assert_eq!((m.body.as_deref(), m.status), (Some("Hello over SMPP"), MessageStatus::Delivered));

    // UCS-2 and Latin-1.
    let ucs2: Vec<u8> = "Привет ☺".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let (status, id) = esme.submit(submit_sm(&tenant.from, TO, 8, &ucs2)).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert_eq!(stored(&app, &id.unwrap()).await.body.as_deref(), Some("Привет ☺"));
    let (status, id) = esme.submit(submit_sm(&tenant.from, TO, 3, b"caf\xe9")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert_eq!(stored(&app, &id.unwrap()).await.body.as_deref(), Some("café"));

    // Three parts with an 8-bit reference, sent at once: one message, every part answered
    // with its id.
    let parts = ["first part, ", "second part, ", "third part."];
    let mut sequences = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let mut octets = vec![0x05, 0x00, 0x03, 0x7A, 0x03, i as u8 + 1];
        octets.extend_from_slice(part.as_bytes());
        let mut sm = submit_sm(&tenant.from, TO, 0, &octets);
        sm.esm_class = EsmClass::from(0x40);
        sequences.push(esme.send(sm).await);
    }
    let mut ids = Vec::new();
    for s in sequences {
        let answer = esme.answer_to(s).await;
        assert_eq!(answer.status(), CommandStatus::EsmeRok);
        ids.push(switchboard_smpp_server::testing::message_id(&answer).unwrap());
    }
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let m = stored(&app, &ids[0]).await;
    assert_eq!(m.body.as_deref(), Some("first part, second part, third part."));

    // Two parts with a 16-bit reference and SAR TLVs.
    let mut octets = vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x02];
    octets.extend_from_slice(b" and the end");
    let mut second = submit_sm(&tenant.from, TO, 0, &octets);
    second.esm_class = EsmClass::from(0x40);
    let s2 = esme.send(second).await;
    let mut first = submit_sm(&tenant.from, TO, 0, b"UDH-16 start");
    first.push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(0x1234));
    first.push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2));
    first.push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(1));
    let (status, id) = esme.submit(first).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    assert_eq!(esme.answer_to(s2).await.status(), CommandStatus::EsmeRok);
    assert_eq!(stored(&app, &id.unwrap()).await.body.as_deref(), Some("UDH-16 start and the end"));

    // A part whose message never completes is refused after the reassembly timeout.
    let mut lonely = vec![0x05, 0x00, 0x03, 0x01, 0x02, 0x01];
    lonely.extend_from_slice(b"alone");
    let mut sm = submit_sm(&tenant.from, TO, 0, &lonely);
    sm.esm_class = EsmClass::from(0x40);
    assert_eq!(esme.submit(sm).await.0, CommandStatus::EsmeRsubmitfail);

    // message_payload, and a schedule an hour ahead with a validity of two.
    let long = "x".repeat(400);
    let mut sm = submit_sm(&tenant.from, TO, 0, b"");
    sm.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(
        long.clone().into_bytes(),
    ))));
    sm.schedule_delivery_time = EmptyOrFullCOctetString::from_string("000000010000000R".into()).unwrap();
    sm.validity_period = EmptyOrFullCOctetString::from_string("000000020000000R".into()).unwrap();
    let (status, id) = esme.submit(sm).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let m = stored(&app, &id.unwrap()).await;
    assert_eq!((m.body.as_deref(), m.status), (Some(long.as_str()), MessageStatus::Scheduled));

    // Refusals.
    let statuses = [
        (text_sm(&tenant.from, "+12", "x"), CommandStatus::EsmeRinvdstadr),
        (text_sm("+18005550000", TO, "x"), CommandStatus::EsmeRinvsrcadr),
        (submit_sm(&tenant.from, TO, 4, b"x"), CommandStatus::EsmeRinvdcs),
        (text_sm(&tenant.from, TO, ""), CommandStatus::EsmeRinvmsglen),
    ];
    for (sm, want) in statuses {
        assert_eq!(esme.submit(sm).await.0, want);
    }
    assert_eq!(esme.request(rusmpp::pdus::SubmitMulti::default()).await.status(), CommandStatus::EsmeRinvcmdid);

    // An opted-out recipient: accepted, stored failed and free, and a REJECTD receipt.
    let before = app.admin.balance(tenant.account).await.unwrap().sms_credits;
    app.admin.add_opt_out(tenant.account, &tenant.from, "+18005554321").await.unwrap();
    let (status, id) = esme.submit(text_sm(&tenant.from, "+18005554321", "to no one")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let id = id.unwrap();
    // Receipts of the earlier messages may come first.
    let receipt = loop {
        let (sequence, d) = esme.next_deliver().await;
        esme.answer(sequence, CommandStatus::EsmeRok).await;
        if receipt_tlvs(&d).0.as_deref() == Some(id.as_str()) {
            break d;
        }
    };
    assert!(short_text(&receipt).contains("stat:REJECTD err:007"), "{}", short_text(&receipt));
    assert_eq!(receipt_tlvs(&receipt).1, Some(8));
    assert_eq!(app.admin.balance(tenant.account).await.unwrap().sms_credits, before);

    // The bind, as the admin API lists it.
    let binds = app.admin.smpp_binds().await.unwrap().data;
    let bind = binds.iter().find(|b| b.system_id == cred.credential.system_id).expect("the bind is listed");
    assert_eq!((bind.mode.as_str(), bind.account_id), ("transceiver", tenant.account));
    assert!(bind.accepted >= 7 && bind.submits > bind.accepted && bind.delivered >= 2, "{bind:?}");
    // And in the metrics (the recorder is the process's, shared by the tests running in it).
    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    for family in [
        "switchboard_smpp_binds{mode=\"transceiver\"}",
        "switchboard_smpp_deliveries_waiting",
        "switchboard_smpp_submits_total{status=\"ESME_ROK\"}",
    ] {
        assert!(metrics.contains(family), "{family} in\n{metrics}");
    }

    let answer = esme.request(Pdu::Unbind).await;
    assert_eq!(answer.id(), CommandId::UnbindResp);
    assert!(esme.closed().await);
    eventually("the bind to go", LIMIT, || async {
        let binds = app.admin.smpp_binds().await.unwrap().data;
        binds.iter().all(|b| b.system_id != cred.credential.system_id).then_some(())
    })
    .await;
    app.stop().await;
    db.remove().await;
}

async fn smpp_binds_in_every_mode_within_limits(backend: Backend) {
    let Some((db, app)) = start(backend, "smpp_binds").await else { return };
    let tenant = app.provision(100, 0).await;
    let body = CreateSmppCredential { system_id: system_id(), max_binds: Some(2), ..Default::default() };
    let cred = credential(&app, &tenant, body).await;
    let (sid, pw) = (cred.credential.system_id.as_str(), cred.password.as_str());

    // Wrong password, unknown system_id: refused, and the connection closed.
    let mut wrong = Esme::connect(addr(&app)).await;
    assert_eq!(wrong.bind(Mode::Transceiver, sid, "nope").await, CommandStatus::EsmeRbindfail);
    assert!(wrong.closed().await);
    let mut unknown = Esme::connect(addr(&app)).await;
    assert_eq!(unknown.bind(Mode::Transmitter, "nobody", pw).await, CommandStatus::EsmeRbindfail);
    assert!(unknown.closed().await);

    // Nothing but binding before a bind.
    let mut early = Esme::connect(addr(&app)).await;
    assert_eq!(early.submit(text_sm(&tenant.from, TO, "early")).await.0, CommandStatus::EsmeRinvbndsts);

    let mut transmitter = Esme::bound(addr(&app), Mode::Transmitter, sid, pw).await;
    let mut receiver = Esme::bound(addr(&app), Mode::Receiver, sid, pw).await;
    // A third bind is over the credential's limit of two.
    let mut third = Esme::connect(addr(&app)).await;
    assert_eq!(third.bind(Mode::Transceiver, sid, pw).await, CommandStatus::EsmeRbindfail);
    assert!(third.closed().await);
    assert_eq!(receiver.submit(text_sm(&tenant.from, TO, "no")).await.0, CommandStatus::EsmeRinvbndsts);

    // The transmitter sends; the receiver gets the receipt.
    let (status, id) = transmitter.submit(text_sm(&tenant.from, TO, "split binds")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let (sequence, receipt) = receiver.next_deliver().await;
    receiver.answer(sequence, CommandStatus::EsmeRok).await;
    assert_eq!(receipt_tlvs(&receipt), (id, Some(2)));

    // An inbound message to the account's number reaches the receiver.
    let inbound = InjectInbound {
        from: "+18005557777".into(),
        to: tenant.from.clone(),
        body: Some("Hi back".into()),
        media_urls: Vec::new(),
        provider_ref: None,
    };
    app.admin.inject_inbound(&inbound).await.unwrap();
    let (sequence, d) = receiver.next_deliver().await;
    receiver.answer(sequence, CommandStatus::EsmeRok).await;
    assert_eq!((d.source_addr.as_str(), d.destination_addr.as_str()), ("18005557777", &tenant.from[1..]));
    assert_eq!((short_text(&d).as_str(), u8::from(d.esm_class)), ("Hi back", 0));

    // Once revoked, the credential binds no more; the binds it made stay.
    app.admin.revoke_smpp_credential(tenant.account, sid).await.unwrap();
    drop(receiver);
    let mut after = Esme::connect(addr(&app)).await;
    assert_eq!(after.bind(Mode::Receiver, sid, pw).await, CommandStatus::EsmeRbindfail);
    assert_eq!(transmitter.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);
    app.stop().await;
    db.remove().await;
}

async fn smpp_receipts_wait_for_a_receiver(backend: Backend) {
    let Some((db, app)) = start(backend, "smpp_held").await else { return };
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let (sid, pw) = (cred.credential.system_id.as_str(), cred.password.as_str());
    let mut transmitter = Esme::bound(addr(&app), Mode::Transmitter, sid, pw).await;
    let (status, id) = transmitter.submit(text_sm(&tenant.from, TO, "held receipt")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let id = id.unwrap();
    eventually("the message to be delivered", LIMIT, || async {
        (stored(&app, &id).await.status == MessageStatus::Delivered).then_some(())
    })
    .await;
    // No bind receives: the receipt waits. A receiver that answers with an error gets it
    // again; one that answers ESME_ROK takes it.
    let mut receiver = Esme::bound(addr(&app), Mode::Receiver, sid, pw).await;
    let (sequence, first) = receiver.next_deliver().await;
    assert_eq!(receipt_tlvs(&first).0.as_deref(), Some(id.as_str()));
    receiver.answer(sequence, CommandStatus::EsmeRxTAppn).await;
    drop(receiver);
    let mut receiver = Esme::bound(addr(&app), Mode::Transceiver, sid, pw).await;
    let (sequence, again) = receiver.next_deliver().await;
    assert_eq!(receipt_tlvs(&again).0.as_deref(), Some(id.as_str()));
    receiver.answer(sequence, CommandStatus::EsmeRok).await;
    assert_eq!(transmitter.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);
    app.stop().await;
    db.remove().await;
}

async fn smpp_windows_rates_and_credits(backend: Backend) {
    let Some((db, app)) = start(backend, "smpp_limits").await else { return };
    let tenant = app.provision(10_000, 0).await;
    let body = CreateSmppCredential { system_id: system_id(), window: Some(2), ..Default::default() };
    let narrow = credential(&app, &tenant, body).await;
    let mut esme = Esme::bound(addr(&app), Mode::Transmitter, &narrow.credential.system_id, &narrow.password).await;
    // Thirty at once into a window of two: the ones past it are refused, every one answered.
    let mut sequences = Vec::new();
    for i in 0..30 {
        sequences.push(esme.send(text_sm(&tenant.from, TO, &format!("w{i}"))).await);
    }
    let mut counts = std::collections::BTreeMap::new();
    for s in sequences {
        *counts.entry(format!("{:?}", esme.answer_to(s).await.status())).or_insert(0) += 1;
    }
    assert!(counts.get("EsmeRmsgqful").copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get("EsmeRok").copied().unwrap_or(0) >= 2, "{counts:?}");
    assert_eq!(counts.values().sum::<i32>(), 30);

    let body = CreateSmppCredential { system_id: system_id(), max_per_second: Some(3), ..Default::default() };
    let slow = credential(&app, &tenant, body).await;
    let mut esme = Esme::bound(addr(&app), Mode::Transmitter, &slow.credential.system_id, &slow.password).await;
    let mut throttled = 0;
    for i in 0..10 {
        if esme.submit(text_sm(&tenant.from, TO, &format!("r{i}"))).await.0 == CommandStatus::EsmeRthrottled {
            throttled += 1;
        }
    }
    assert!(throttled > 0, "ten a burst over a rate of three a second");

    // No credits: refused, nothing stored, nothing charged.
    let poor = app.provision(0, 0).await;
    let cred = plain_credential(&app, &poor).await;
    let mut esme = Esme::bound(addr(&app), Mode::Transceiver, &cred.credential.system_id, &cred.password).await;
    assert_eq!(esme.submit(text_sm(&poor.from, TO, "on credit")).await, (CommandStatus::EsmeRsubmitfail, None));
    assert_eq!(app.admin.balance(poor.account).await.unwrap().sms_credits, 0);
    assert!(app.admin.messages(poor.account, 10, None).await.unwrap().data.is_empty());
    app.stop().await;
    db.remove().await;
}

async fn smpp_malformed_pdus_close_only_their_bind(backend: Backend) {
    let Some((db, app)) = start(backend, "smpp_malformed").await else { return };
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let (sid, pw) = (cred.credential.system_id.as_str(), cred.password.as_str());
    let mut bystander = Esme::bound(addr(&app), Mode::Transceiver, sid, pw).await;
    let mut esme = Esme::bound(addr(&app), Mode::Transceiver, sid, pw).await;

    // A submit_sm whose sm_length runs past its body: generic_nack, and the bind goes on.
    let mut pdu = Vec::new();
    let body: Vec<u8> = [&b"\0\x01\x011555\0\x01\x011800\0\0\0\0\0\0\x01\0\0\0"[..], &[200], b"short"].concat();
    pdu.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    pdu.extend_from_slice(&0x0000_0004u32.to_be_bytes());
    pdu.extend_from_slice(&0u32.to_be_bytes());
    pdu.extend_from_slice(&77u32.to_be_bytes());
    pdu.extend_from_slice(&body);
    esme.write_raw(&pdu).await;
    let nack = esme.answer_to(77).await;
    assert_eq!((nack.id(), nack.status()), (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen));
    // An unknown command: generic_nack.
    let unknown =
        [&16u32.to_be_bytes()[..], &0x0000_0099u32.to_be_bytes(), &0u32.to_be_bytes(), &78u32.to_be_bytes()].concat();
    esme.write_raw(&unknown).await;
    let nack = esme.answer_to(78).await;
    assert_eq!((nack.id(), nack.status()), (CommandId::GenericNack, CommandStatus::EsmeRinvcmdid));
    assert_eq!(esme.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);

    // A command length under a header's: generic_nack, and this connection alone closes.
    let short =
        [&8u32.to_be_bytes()[..], &0x0000_0015u32.to_be_bytes(), &0u32.to_be_bytes(), &79u32.to_be_bytes()].concat();
    esme.write_raw(&short).await;
    let nack = esme.read().await.expect("a generic_nack");
    assert_eq!((nack.id(), nack.status()), (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen));
    assert!(esme.closed().await);
    // One over the largest PDU: the same.
    let mut huge = Esme::bound(addr(&app), Mode::Transmitter, sid, pw).await;
    huge.write_raw(&[&10_000_000u32.to_be_bytes()[..], &0x0000_0004u32.to_be_bytes()].concat()).await;
    assert!(huge.closed().await);
    // A truncated PDU followed by the client going away.
    let mut cut = Esme::bound(addr(&app), Mode::Transmitter, sid, pw).await;
    cut.write_raw(&[&100u32.to_be_bytes()[..], &0x0000_0004u32.to_be_bytes()].concat()).await;
    drop(cut);

    assert_eq!(bystander.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);
    assert_eq!(bystander.submit(text_sm(&tenant.from, TO, "still here")).await.0, CommandStatus::EsmeRok);
    app.stop().await;
    db.remove().await;
}

/// Switchboard's own SMPP upstream as the ESME: a second server relays its messages to the
/// first over SMPP (a transmitter and a receiver bind), and the first's receipts, as
/// `deliver_sm`, settle them on the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_chains_two_switchboards() {
    let Some((db_a, a)) = start(Backend::Sqlite, "smpp_chain_a").await else { return };
    let tenant_a = a.provision(100, 0).await;
    let cred = plain_credential(&a, &tenant_a).await;
    let Some(db_b) = TestDb::new(Backend::Sqlite, "smpp_chain_b").await else { return };
    let mut settings = db_b.settings();
    settings.upstreams = vec![switchboard::settings::UpstreamSettings::Smpp(
        serde_json::from_value::<switchboard_smpp::SmppConfig>(serde_json::json!({
            "name": "switchboard-a",
            "host": "127.0.0.1",
            "port": addr(&a).port(),
            "system_id": cred.credential.system_id,
            "password": cred.password,
            "bind": "transmitter_receiver",
        }))
        .unwrap()
        .into(),
    )];
    let b = TestApp::start(settings).await;
    let tenant_b = b.provision(100, 0).await;
    // A knows B's sender as its account's.
    let sender =
        switchboard_domain::wire::CreateSender { address: tenant_b.from.clone(), active: true, sms: true, mms: false };
    a.admin.add_sender(tenant_a.account, &sender).await.unwrap();
    eventually("B's binds to A", LIMIT, || async {
        let binds = a.admin.smpp_binds().await.unwrap().data;
        (binds.len() == 2).then_some(())
    })
    .await;

    let request = switchboard_domain::wire::TlSendRequest {
        to: TO.into(),
        from: tenant_b.from.clone(),
        body: Some("relayed over SMPP".into()),
        ..Default::default()
    };
    let sent = tenant_b.client.send(&request).await.unwrap().message;
    let on_b = eventually("delivered on B", LIMIT, || async {
        let m = b.admin.message(sent.id).await.unwrap();
        (m.status == MessageStatus::Delivered).then_some(m)
    })
    .await;
    // On A: one message from B's sender, charged to A's account, delivered.
    let on_a = a.admin.messages(tenant_a.account, 10, None).await.unwrap().data;
    assert_eq!(on_a.len(), 1);
    assert_eq!((on_a[0].body.as_deref(), on_a[0].status), (Some("relayed over SMPP"), MessageStatus::Delivered));
    assert_eq!(on_b.body.as_deref(), Some("relayed over SMPP"));
    b.stop().await;
    a.stop().await;
    db_b.remove().await;
    db_a.remove().await;
}

/// Failed binds spend the failure budgets of API logins: past the address's budget, even the
/// right password is refused from that address until it refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_failed_binds_are_throttled() {
    let Some((db, app)) = start(Backend::Sqlite, "smpp_guess").await else { return };
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let sid = cred.credential.system_id.as_str();
    for i in 0..30 {
        let mut guess = Esme::connect(addr(&app)).await;
        assert_eq!(guess.bind(Mode::Transmitter, sid, &format!("g{i}")).await, CommandStatus::EsmeRbindfail);
    }
    let mut right = Esme::connect(addr(&app)).await;
    assert_eq!(right.bind(Mode::Transmitter, sid, &cred.password).await, CommandStatus::EsmeRbindfail);
    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_auth_throttled_total"), "{metrics}");
    app.stop().await;
    db.remove().await;
}

/// A bind that sends nothing for the idle timeout is unbound; a server that stops unbinds its
/// binds once it has answered what they sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_idle_binds_and_stopping_servers_unbind() {
    let Some(db) = TestDb::new(Backend::Sqlite, "smpp_idle").await else { return };
    let mut settings = db.settings();
    settings.smpp_server.enabled = true;
    settings.smpp_server.listen = "127.0.0.1:0".into();
    settings.smpp_server.idle_timeout_secs = 1;
    let app = TestApp::start(settings).await;
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let (sid, pw) = (cred.credential.system_id.as_str(), cred.password.as_str());

    let mut idle = Esme::bound(addr(&app), Mode::Transceiver, sid, pw).await;
    let unbind = idle.read().await.expect("an unbind");
    assert_eq!(unbind.id(), CommandId::Unbind);
    assert!(idle.closed().await);

    let mut busy = Esme::bound(addr(&app), Mode::Transmitter, sid, pw).await;
    let sequence = busy.send(text_sm(&tenant.from, TO, "just before the stop")).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(busy.answer_to(sequence).await.status(), CommandStatus::EsmeRok, "answered before the unbind");
    assert!(busy.closed().await, "unbound and closed as the server stops");
    stopping.await.unwrap();
    db.remove().await;
}

/// A peer that sends and never reads what it is sent is disconnected once its answers fill
/// the queue, rather than held in memory without end; others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_peers_that_do_not_read_are_disconnected() {
    use tokio::io::AsyncWriteExt;
    let Some((db, app)) = start(Backend::Sqlite, "smpp_stall").await else { return };
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let mut stream = tokio::net::TcpStream::connect(addr(&app)).await.unwrap();
    // enquire_link after enquire_link, 1 MiB at a time, up to 256 MiB: the server's answers
    // fill the socket buffers, then its queue.
    let chunk: Vec<u8> =
        (0..65_536u32).flat_map(|i| [16u32, 0x15, 0, i + 1].into_iter().flat_map(u32::to_be_bytes)).collect();
    let mut written = 0usize;
    let cut = tokio::time::timeout(LIMIT, async {
        while written < 256 << 20 {
            if stream.write_all(&chunk).await.is_err() {
                return true;
            }
            written += chunk.len();
        }
        false
    })
    .await;
    assert_eq!(cut, Ok(true), "the connection was cut after {written} bytes");
    let mut other = Esme::bound(addr(&app), Mode::Transceiver, &cred.credential.system_id, &cred.password).await;
    assert_eq!(other.request(Pdu::EnquireLink).await.status(), CommandStatus::EsmeRok);
    app.stop().await;
    db.remove().await;
}

/// With a certificate and key, the server speaks TLS only: an ESME that trusts the certificate
/// binds and sends; one that speaks plain SMPP to it gets no answer but a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_over_tls() {
    let Some(db) = TestDb::new(Backend::Sqlite, "smpp_tls").await else { return };
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("switchboard-smpp-tls-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let mut settings = db.settings();
    settings.smpp_server.enabled = true;
    settings.smpp_server.listen = "127.0.0.1:0".into();
    settings.smpp_server.tls_cert_file = Some(dir.join("cert.pem"));
    settings.smpp_server.tls_key_file = Some(dir.join("key.pem"));
    settings.smpp_server.deliver_poll_ms = 20;
    settings.simulator_receipt_delay_ms = 50;
    let app = TestApp::start(settings).await;
    let tenant = app.provision(100, 0).await;
    let cred = plain_credential(&app, &tenant).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr(&app)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("the TLS handshake");
    let mut esme = Esme::over(Box::new(tls));
    assert_eq!(esme.bind(Mode::Transceiver, &cred.credential.system_id, &cred.password).await, CommandStatus::EsmeRok);
    let (status, id) = esme.submit(text_sm(&tenant.from, TO, "over TLS")).await;
    assert_eq!(status, CommandStatus::EsmeRok);
    let (sequence, receipt) = esme.next_deliver().await;
    esme.answer(sequence, CommandStatus::EsmeRok).await;
    assert_eq!(receipt_tlvs(&receipt).0, id);

    let mut plain = Esme::connect(addr(&app)).await;
    plain.send(Pdu::EnquireLink).await;
    assert!(plain.closed().await, "plain SMPP on the TLS port is not answered");
    app.stop().await;
    db.remove().await;
    std::fs::remove_dir_all(dir).ok();
}

/// Python's `smpplib` binds as a transceiver, sends GSM-7, UCS-2 and a three-part message,
/// and reads their receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpplib_sends_and_receives_receipts() {
    let Some(python) = test_python() else { return };
    let Some((db, app)) = start(Backend::Sqlite, "smpplib").await else { return };
    let tenant = app.provision(1000, 0).await;
    let cred = plain_credential(&app, &tenant).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/smpp_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args([
            "127.0.0.1",
            &addr(&app).port().to_string(),
            &cred.credential.system_id,
            &cred.password,
            tenant.from.trim_start_matches('+'),
            TO.trim_start_matches('+'),
        ])
        .output()
        .await
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "smpplib failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report");
    let sent = report["sent"].as_object().expect("the ids of what was sent");
    let receipts = report["receipts"].as_object().expect("the receipts");
    for (what, body) in
        [("gsm7", "Hello from smpplib"), ("ucs2", "Grüße aus Python ☺"), ("long", &"Long message. ".repeat(20))]
    {
        let ids: Vec<&str> = sent[what].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(!ids.is_empty() && ids.iter().all(|i| *i == ids[0]), "{what}: {ids:?}");
        assert_eq!(stored(&app, ids[0]).await.body.as_deref(), Some(body), "{what}");
        let stat = receipts[ids[0]].as_str().unwrap_or_else(|| panic!("no receipt for {what}: {report}"));
        assert_eq!(stat, "DELIVRD", "{what}");
    }
    app.stop().await;
    db.remove().await;
}
