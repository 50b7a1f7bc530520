//! Upgrading in place: a SQLite database made by Switchboard 0.1 (`tests/fixtures/sqlite-0.1.db`,
//! see the README there) opens with this version and reads back through the `Store` trait exactly
//! as 0.1 wrote it: accounts, keys, senders, opt-outs, ledger, channels, templates, webhooks with
//! their deliveries and attempts, the batch, counts, every message with its events and parts, key
//! fingerprints and rate buckets. It then takes new writes, and opens again.
//!
//! Every record is written out a line at a time by [`inventory`] and compared with what 0.1 wrote,
//! `tests/fixtures/sqlite-0.1.txt`. The test opens a copy of the database, never the file itself.

use switchboard_domain::EventType;
use switchboard_storage::{DeliveryFilter, EventRecord, MessageRecord, ReceiptOutcome, ReceiptUpdate, SealedSecret};
use uuid::Uuid;

use super::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sqlite-0.1.db");
const INVENTORY: &str = include_str!("../fixtures/sqlite-0.1.txt");
/// Times in the inventory are minutes on the fixture's own clock, from T0 = 2025-06-01T12:00:00Z
/// (`@-90`, `@21`, `@57+80ms`), or, for those the store took from the real clock while the fixture
/// was made, milliseconds after MADE (`@made+27`).
const T0: i64 = 1_748_779_200_000;
const MADE: i64 = 1_796_511_383_284;

fn all<C>() -> PageRequest<C> {
    PageRequest { before: None, limit: 100 }
}

fn at(minute: i64) -> Timestamp {
    Timestamp::from_millis(T0 + minute * 60_000)
}

/// The id the fixture gave the message it made at `minute` with number `n` (`m{minute}/{n}`).
fn id(minute: i64, n: u128) -> MessageId {
    let time = MessageId::first_at(at(minute)).as_uuid().as_u128();
    MessageId::from_uuid(Uuid::from_u128(time | (0x7 << 76) | (0x8 << 60) | n))
}

/// The id the fixture gave a channel, webhook endpoint or batch, `n` in hex (`c1`, `a1`, `ba`).
fn fixed(n: u128) -> Uuid {
    Uuid::from_u128(0x5b00_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn message_name(m: MessageId) -> String {
    let raw = m.as_uuid().as_u128();
    let (minute, n) = (((raw >> 80) as i64 - T0) / 60_000, raw & 0xff);
    if id(minute, n) == m { format!("m{minute}/{n:x}") } else { m.to_string() }
}

fn fixed_name(id: Uuid) -> String {
    let n = id.as_u128() & 0xff;
    if fixed(n) == id { format!("{n:x}") } else { id.to_string() }
}

fn when(t: Timestamp) -> String {
    let (ms, made) = (t.millis() - T0, t.millis() - MADE);
    match (ms / 60_000, ms % 60_000) {
        _ if (0..3_600_000).contains(&made) => format!("made+{made}"),
        (minute, 0) => minute.to_string(),
        (minute, rest) => format!("{minute}+{rest}ms"),
    }
}

fn maybe(t: Option<Timestamp>) -> String {
    t.map_or("-".into(), when)
}

fn credits(c: Credits) -> String {
    format!("{}/{}", c.sms, c.mms)
}

/// Bytes as text if they are printable, as `aaxN` for N bytes `aa`, or in hex.
fn bytes(b: &[u8]) -> String {
    match b {
        [first, rest @ ..] if rest.iter().all(|r| r == first) => format!("{first:02x}x{}", b.len()),
        _ if b.iter().all(|c| c.is_ascii_graphic()) => String::from_utf8_lossy(b).into_owned(),
        _ => b.iter().map(|c| format!("{c:02x}")).collect(),
    }
}

/// Words in lines of at most 116 characters, indented by four spaces.
fn wrap(words: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut lines = vec![String::from("   ")];
    for word in words {
        if lines.last().is_some_and(|line| line.len() > 4 && line.len() + word.len() >= 116) {
            lines.push(String::from("   "));
        }
        *lines.last_mut().unwrap() += &format!(" {word}");
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_database_made_by_0_1_upgrades_in_place_with_nothing_lost() {
    let dir = std::env::temp_dir().join(format!("switchboard-upgrade-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    std::fs::copy(FIXTURE, dir.join("switchboard.db")).expect("copy the fixture");
    let url = format!("sqlite://{}", dir.join("switchboard.db").display());

    let store = connect(&url, &ConnectOptions::default()).await.expect("open the 0.1 database");
    let got = inventory(&store).await;
    for (n, (got, want)) in got.lines().zip(INVENTORY.lines()).enumerate() {
        assert_eq!(got, want, "line {} of sqlite-0.1.txt", n + 1);
    }
    assert_eq!(got.lines().count(), INVENTORY.lines().count(), "{got}");
    // 0.1 took 4 of one bucket's 10 tokens and all 5 of another's at minute 60; a take is all or none.
    assert_eq!(store.take_rate_tokens("upstream:sim", 10, 7, at(60)).await.unwrap(), 0);
    assert_eq!(store.take_rate_tokens("upstream:sim", 10, 6, at(60)).await.unwrap(), 6);
    assert_eq!(store.take_rate_tokens("sender:+15550100001", 5, 1, at(60)).await.unwrap(), 0);
    let accounts = store.list_accounts(all()).await.unwrap();
    let acme = accounts.iter().find(|a| a.name == "Acme Corp").expect("Acme").id;
    let new = the_upgraded_database_takes_new_writes(&store, acme).await;
    drop(store);

    let store = connect(&url, &ConnectOptions::default()).await.expect("open the upgraded database again");
    assert_eq!(balance(&store, acme).await, Credits::new(118, 9));
    assert_eq!(store.get_message(new).await.unwrap().unwrap().status, MessageStatus::Delivered);
    assert_eq!(store.list_messages(acme, all()).await.unwrap().len(), 18);
    assert_eq!(store.ledger(acme, all()).await.unwrap().len(), 20);
    // What the new writes did not touch reads as 0.1 left it: all of Globex, and the oldest message.
    let again = inventory(&store).await;
    assert!(again.starts_with(&INVENTORY[..INVENTORY.find("\naccount ").unwrap()]), "Globex: {again}");
    let oldest = &INVENTORY[INVENTORY.find("  m1/1").unwrap()..INVENTORY.find("sealed secrets").unwrap()];
    assert!(again.contains(oldest), "{again}");
    drop(store);
    std::fs::remove_dir_all(&dir).ok();
}

/// Every record in the database, read through the `Store` trait, as `sqlite-0.1.txt` writes it.
async fn inventory(store: &Arc<dyn Store>) -> String {
    let mut out = Vec::new();
    for a in store.list_accounts(all()).await.unwrap() {
        assert_eq!(store.get_account(a.id).await.unwrap().as_ref(), Some(&a));
        let (name, balance, limit, refunds) = (&a.name, credits(a.balance), a.rate_limit, a.refund_carrier_failures);
        let settings = format!("rate_limit {limit:?} refund_carrier_failures {refunds}");
        out.push(format!("account {} {name:?} {balance} {settings} @{}", a.id, when(a.created_at)));
        let mine = |account: AccountId| assert_eq!(account, a.id, "a record of another account");
        for k in store.list_api_keys(a.id).await.unwrap() {
            mine(k.account_id);
            assert_eq!(store.find_api_key(&k.id).await.unwrap().as_ref(), Some(&k));
            let (hash, created, revoked) = (bytes(&k.secret_hash), when(k.created_at), maybe(k.revoked_at));
            out.push(format!("  key {} {:?} {hash} @{created} revoked {revoked}", k.id, k.name));
        }
        for s in store.list_senders(a.id).await.unwrap() {
            mine(s.account_id);
            let (active, sms, mms) = (s.active, s.sms, s.mms);
            out.push(format!("  sender {} active {active} sms {sms} mms {mms} @{}", s.address, when(s.created_at)));
        }
        for o in store.list_opt_outs(a.id, 100).await.unwrap() {
            mine(o.account_id);
            out.push(format!("  opt-out {} from {} @{}", o.recipient, o.sender, when(o.created_at)));
        }
        for e in store.ledger(a.id, all()).await.unwrap() {
            mine(e.account_id);
            let (kind, delta, after) = (e.kind.as_str(), credits(e.delta), credits(e.balance_after));
            let what =
                format!("{} {:?} @{}", e.message_id.map_or("-".into(), message_name), e.reference, when(e.created_at));
            out.push(format!("  ledger {} {kind} {delta} after {after} {what}", e.id));
        }
        let mut channels = store.list_channels(a.id).await.unwrap();
        channels.sort_by_key(|c| c.id);
        for c in channels {
            mine(c.account_id);
            assert_eq!(store.get_channel(c.id).await.unwrap().as_ref(), Some(&c));
            let sent = store.list_channel_messages(c.id, all()).await.unwrap();
            let sent: Vec<String> = sent.iter().map(|m| message_name(m.id)).collect();
            let (name, sender, active, mms) = (&c.name, &c.sender, c.active, c.mms);
            let what = format!("{name:?} {sender} active {active} mms {mms} @{} {sent:?}", when(c.created_at));
            out.push(format!("  channel {} {what}", fixed_name(c.id)));
        }
        for t in store.list_templates(a.id).await.unwrap() {
            mine(t.account_id);
            assert_eq!(store.get_template(t.id).await.unwrap().as_ref(), Some(&t));
            out.push(format!("  template {} {:?} @{}", t.id, t.name, when(t.created_at)));
            for v in &t.versions {
                assert_eq!(v.template_id, t.id);
                out.push(format!("    version {} {:?} active {} @{}", v.id, v.texts, v.active, when(v.created_at)));
            }
        }
        let webhooks = store.list_webhooks(a.id).await.unwrap();
        for w in &webhooks {
            mine(w.account_id);
            assert_eq!(store.get_webhook(w.id).await.unwrap().as_ref(), Some(w));
            let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
            let what = format!("{} {events:?} active {} secret {}", w.url, w.active, bytes(&w.secret.0));
            out.push(format!("  webhook {} {what} @{}", fixed_name(w.id), when(w.created_at)));
        }
        for d in store.list_deliveries(a.id, &DeliveryFilter::default(), all()).await.unwrap() {
            // Each reports an event of its message: the message's own, from its account, to its target.
            let event =
                EventRecord { message_id: d.message_id, status: d.status, error_type: d.error_type, at: d.occurred_at };
            assert!(store.message_events(d.message_id).await.unwrap().contains(&event), "{d:?}");
            assert_eq!((d.account_id, EventType::for_status(d.status), &d.secret), (a.id, Some(d.event_type), &None));
            let endpoint = webhooks.iter().find(|w| Some(w.id) == d.endpoint_id);
            let (url, target) = endpoint.map_or((&d.target, None), |w| (&w.url, Some(w.id.to_string())));
            assert_eq!((url, target), (&d.url, d.endpoint_id.map(|_| d.target.clone())));
            let target = endpoint.map_or(d.target.clone(), |w| fixed_name(w.id));
            let event = d.event_type.as_str().trim_start_matches("message.");
            let (state, next, code) = (d.state.as_str(), when(d.next_attempt_at), d.last_status.map(|c| c.to_string()));
            let last = format!("last {} {:?} updated@{}", code.unwrap_or("-".into()), d.last_error, when(d.updated_at));
            let what = format!(
                "{} {event}@{} {state} x{} next@{next} {last}",
                message_name(d.message_id),
                when(d.occurred_at),
                d.attempts
            );
            out.push(format!("  delivery {} {target} {what}", d.event_id));
            for a in store.delivery_attempts(d.event_id, &d.target).await.unwrap() {
                let code = a.status_code.map_or("-".into(), |c| c.to_string());
                out.push(format!("    attempt {}@{} {code} {:?} {}ms", a.attempt, when(a.at), a.error, a.duration_ms));
            }
        }
        let (batches, total) = store.list_batches(a.id, None, 0, 10).await.unwrap();
        assert_eq!(batches.len() as u64, total);
        for b in batches {
            mine(b.account_id);
            assert_eq!(store.get_batch(b.id).await.unwrap().as_ref(), Some(&b));
            let what =
                format!("{} {} {:?} first {}", b.kind.as_str(), b.from, b.body, message_name(b.first_message_id));
            let counts = format!("recipients {} sent {} failed {} {:?}", b.recipients, b.sent, b.failed, b.state());
            let times = format!("sent@{} @{}", maybe(b.sent_at), when(b.created_at));
            out.push(format!("  batch {} {what} {counts} {times}", fixed_name(b.id.as_uuid())));
        }
        let counts = store.count_messages(a.id).await.unwrap();
        out.push(format!("  counts{}", counts.iter().map(|(s, n)| format!(" {s} {n}")).collect::<String>()));
        for (from, to) in [(0, 60), (5, 60)] {
            let counts = store.message_counts(a.id, at(from), at(to)).await.unwrap().by_status;
            let counts: String = counts.iter().map(|(s, n)| format!(" {} {n}", s.as_str())).collect();
            out.push(format!("  counts {from}..{to}{counts}"));
        }
        for m in store.list_messages(a.id, all()).await.unwrap() {
            mine(m.account_id);
            assert_eq!(store.get_message(m.id).await.unwrap().as_ref(), Some(&m));
            out.extend(describe(store, &m).await);
        }
    }
    let mut secrets = store.sealed_webhook_secrets().await.unwrap();
    secrets.sort_by_key(|(id, _)| *id);
    let secrets: Vec<String> = secrets.iter().map(|(id, s)| format!("{}={}", fixed_name(*id), bytes(&s.0))).collect();
    out.push(format!("sealed secrets {}", secrets.join(" ")));
    let keys = store.key_fingerprints().await.unwrap();
    let keys: Vec<String> = keys.iter().map(|(name, value)| format!("{name}={}", bytes(value))).collect();
    out.push(format!("fingerprints {} legacy {:?}", keys.join(" "), store.legacy_server_secret().await.unwrap()));
    for p in store.pending_parts("", None, 100).await.unwrap() {
        let (message, sent) = (message_name(p.message_id), when(p.sent_at));
        out.push(format!(
            "pending part {} of {message} {}/{} to {} sent@{sent}",
            p.provider_ref, p.part, p.parts, p.to
        ));
    }
    out.join("\n") + "\n"
}

/// A message: what was sent; where it stands, with whatever else it has; its events; its parts.
async fn describe(store: &Arc<dyn Store>, m: &MessageRecord) -> Vec<String> {
    let (direction, kind, encoding) = (m.direction.as_str(), m.kind.as_str(), m.encoding.as_str());
    let sent = format!("{direction} {kind} {}>{} {encoding} x{} {:?}", m.from, m.to, m.segments, m.body);
    let mut lines = vec![format!("  {} {sent}", message_name(m.id))];
    let (status, charged, attempts) = (m.status.as_str(), credits(m.charged), m.attempts);
    let times = format!("next@{} @{} updated@{}", when(m.next_attempt_at), when(m.created_at), when(m.updated_at));
    let text = |label: &str, value: &Option<String>| value.as_ref().map(|v| format!("{label} {v:?}"));
    let time = |label: &str, value: Option<Timestamp>| value.map(|t| format!("{label}@{}", when(t)));
    let other = [
        Some(format!("{status} charged {charged} attempts {attempts} {times}")),
        m.error_type.map(|t| format!("error {}", t.as_str())),
        text("error_message", &m.error_message),
        text("provider", &m.provider_message_id),
        time("sent", m.sent_at),
        text("key", &m.idempotency_key),
        m.batch_id.map(|b| format!("batch {}", fixed_name(b.as_uuid()))),
        m.channel_id.map(|c| format!("channel {}", fixed_name(c))),
        time("expires", m.expires_at),
        (!m.media.is_empty()).then(|| format!("media {:?}", m.media)),
        text("details", &m.details),
        text("notify", &m.notify_url),
        // Unless it is the hash of the body, which these were accepted with.
        (m.request_hash.as_deref() != m.body.as_deref().map(str::as_bytes))
            .then(|| format!("request_hash {:?}", m.request_hash.as_deref().map(bytes))),
    ];
    lines.extend(wrap(other.into_iter().flatten()));
    let event = |e: &EventRecord| {
        assert_eq!(e.message_id, m.id);
        let error = e.error_type.map(|t| format!("({})", t.as_str())).unwrap_or_default();
        format!("{}{error}@{}", e.status.as_str(), when(e.at))
    };
    let mut events = store.message_events(m.id).await.unwrap();
    assert!(events.is_sorted_by_key(|e| e.at), "oldest first");
    events.sort_by_key(|e| (e.at, e.status.as_str())); // Events at the same time, in any order.
    lines.extend(wrap(events.iter().map(event)));
    let part = |p: &switchboard_storage::PartRecord| {
        assert_eq!(p.message_id, Some(m.id));
        let error = [p.error_type.map(|t| t.as_str().to_owned()), p.description.clone()];
        let error = error.into_iter().flatten().collect::<Vec<_>>().join(": ");
        let error = if error.is_empty() { error } else { format!("({error})") };
        format!("part {:?} {} {}{error}@{}", p.part, p.provider_ref, p.status.as_str(), when(p.at))
    };
    let parts = store.message_parts(m.id).await.unwrap();
    if !parts.is_empty() {
        lines.extend(wrap(parts.iter().map(part)));
    }
    lines
}

/// Tops up, claims the deliveries 0.1 left, and sends a new message through every step; returns its id.
async fn the_upgraded_database_takes_new_writes(store: &Arc<dyn Store>, acme: AccountId) -> MessageId {
    let entry = store.top_up(acme, Credits::new(10, 0), Some("inv-1003")).await.unwrap();
    assert_eq!(entry.balance_after, Credits::new(120, 9));

    // The deliveries 0.1 left pending are due, with their endpoint's secret; the one it leased for attempt 2.
    // (Later than the fixture was made, whatever this machine's clock says.)
    let now = Timestamp::now().max(Timestamp::from_millis(MADE + 60_000));
    let claimed = store.claim_deliveries(now, now.plus_millis(30_000), 100, &[]).await.unwrap();
    let secret = |endpoint| SealedSecret(if endpoint == Some(fixed(0xa1)) { vec![1, 2, 3] } else { vec![4, 5, 6] });
    assert!(claimed.iter().all(|d| d.secret == Some(secret(d.endpoint_id))));
    let again = claimed.iter().find(|d| d.message_id == id(3, 3) && d.event_type == EventType::Accepted);
    assert_eq!((claimed.len(), again.map(|d| d.attempts)), (34, Some(2)));

    // A new message is charged, claimed with those 0.1 left queued, sent in two parts, and settled:
    // its first part by the receipt 0.1 kept unmatched, the second by a new one.
    let (from, to, price) = (sender("+15550100001"), msisdn("+15550200060"), Credits::new(2, 0));
    let new = NewMessage { from, to, segments: 2, price, created_at: now, ..message(acme, None, "After the upgrade") };
    let accepted = store.accept(std::slice::from_ref(&new)).await.unwrap();
    assert!(matches!(accepted[..], [AcceptOutcome::Queued(_)]), "{accepted:?}");
    assert_eq!(balance(store, acme).await, Credits::new(118, 9));
    let mut due: Vec<MessageId> =
        store.claim_due(now, now.plus_millis(60_000), 100).await.unwrap().iter().map(|m| m.id).collect();
    due.sort();
    assert_eq!(due, [id(5, 5), id(9, 0x13), id(30, 0x31), id(50, 0x50), new.id]);
    let parts = vec!["ghost-0001".to_owned(), "new-0001.2".to_owned()];
    let outcome = DispatchOutcome::Sent { provider_message_id: "new-0001".into(), parts };
    let result = DispatchResult { id: new.id, account_id: acme, attempt: 1, at: now, outcome };
    assert_eq!(store.record_results(&[result]).await.unwrap(), [new.id]);
    let receipt = |provider_ref: &str| ReceiptUpdate {
        provider_ref: provider_ref.into(),
        status: MessageStatus::Delivered,
        error_type: None,
        description: None,
        at: now,
    };
    let out = store.record_receipts(&[receipt("new-0001.2"), receipt("sim-0002.2"), receipt("sim-0002.3")]).await;
    let applied = |message_id, message_status| ReceiptOutcome::Applied { message_id, message_status };
    let settled = Some(MessageStatus::Delivered);
    assert_eq!(out.unwrap(), [applied(new.id, settled), applied(id(2, 2), None), applied(id(2, 2), settled)]);
    assert_eq!(store.get_message(id(2, 2)).await.unwrap().unwrap().status, MessageStatus::Delivered);
    let parts = store.message_parts(new.id).await.unwrap();
    let parts: Vec<_> = parts.iter().map(|p| (p.provider_ref.as_str(), p.status)).collect();
    assert_eq!(parts, [("ghost-0001", MessageStatus::Delivered), ("new-0001.2", MessageStatus::Delivered)]);
    let filter = DeliveryFilter { message: Some(new.id), ..Default::default() };
    let deliveries = store.list_deliveries(acme, &filter, all()).await.unwrap();
    assert_eq!(deliveries.len(), 4, "accepted, sent and delivered to one endpoint, delivered to the other");
    new.id
}
