//! Credential guessing meets failure budgets: an address that fails 20 times in a minute is
//! answered 429 in the dialect's shape with `Retry-After`, a key id failed 20 times answers
//! wrong secrets with 429 while its holder still gets in from another address, and an unknown
//! key id answers exactly as a wrong secret does.
//!
//! Every client is on loopback; binding a client to another 127.0.0.0/8 address
//! (`local_address`) makes the server see another peer. Behind a trusted proxy (the server
//! trusting 127.0.0.1), the address that counts is the one the proxy forwards. These tests
//! call the server directly (`direct_url`): the harness's checking proxy would make every
//! client the same peer.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use switchboard::Settings;
use switchboard_tests::{Backend, OPERATOR_TOKEN, TestApp, TestDb, on_both_backends};

on_both_backends!(
    textingline_guessing_is_held_to_budgets,
    mudbase_guessing_is_held_to_budgets,
    admin_guessing_is_held_to_budgets,
    behind_a_trusted_proxy_budgets_count_the_forwarded_address
);

/// The default budget: failures per minute, per address and per key id.
const BUDGET: usize = 20;

/// The header a proxy writes the client's address in.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// A client whose connections come from `address`.
fn client_from(address: &str) -> reqwest::Client {
    let ip: IpAddr = address.parse().expect("an address");
    reqwest::Client::builder().local_address(ip).build().expect("a client")
}

/// An answer, with the headers that do not depend on the moment (all but `date`).
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: BTreeMap<String, String>,
    body: Value,
}

async fn answer(request: RequestBuilder) -> Answer {
    let r = request.send().await.expect("an answer");
    let status = r.status();
    let headers = r
        .headers()
        .iter()
        // The date and the request's own id differ between any two answers.
        .filter(|(name, _)| !["date", "x-request-id"].contains(&name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("<binary>").to_owned()))
        .collect();
    let body = r.json().await.unwrap_or(Value::Null);
    Answer { status, headers, body }
}

/// Asserts that two refusals past their budgets are alike: the same in every header and the
/// body, except that each `Retry-After` counts from when its own budget ran out, so the two
/// may straddle a second.
fn assert_alike_refusals(a: &Answer, b: &Answer) {
    let (ra, rb) = (retry_after(a), retry_after(b));
    assert!(ra.abs_diff(rb) <= 1, "Retry-After {ra} and {rb}");
    let without = |x: &Answer| {
        let mut headers = x.headers.clone();
        headers.remove("retry-after");
        Answer { status: x.status, headers, body: x.body.clone() }
    };
    assert_eq!(without(a), without(b));
}

fn retry_after(a: &Answer) -> u64 {
    let v = a.headers.get("retry-after").unwrap_or_else(|| panic!("no Retry-After: {a:?}"));
    let seconds: u64 = v.parse().unwrap_or_else(|_| panic!("Retry-After {v:?} is not seconds"));
    assert!((1..=60).contains(&seconds), "Retry-After {seconds}");
    seconds
}

/// Sends `BUDGET + 5` failing requests made by `attempt` and checks that the first `BUDGET` are
/// 401 and the later ones 429 (with `Retry-After`); returns the last answer.
async fn exhaust(what: &str, attempt: impl Fn() -> RequestBuilder) -> Answer {
    let started = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..BUDGET + 5 {
        answers.push(answer(attempt()).await);
    }
    for (i, a) in answers.iter().take(BUDGET).enumerate() {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: failure {i}: {a:?}");
        assert!(!a.headers.contains_key("retry-after"), "{what}: failure {i}");
    }
    // The budget refills one failure every three seconds: a slow run may see one more 401.
    let quick = started.elapsed() < Duration::from_millis(2_500);
    for (i, a) in answers.iter().enumerate().skip(BUDGET) {
        if quick || i == BUDGET + 4 {
            assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{what}: attempt {i}: {a:?}");
            retry_after(a);
        }
    }
    answers.pop().unwrap_or_else(|| unreachable!())
}

/// Fails two key ids, each failed once already, past their budgets: in turns, each failure from
/// a fresh address (`127.0.1.<i>` and `127.0.2.<i>`), so that no address is held, both key ids
/// spend their budgets together, and a few failures more than needed cover a refill on a slow
/// run.
async fn fail_both(
    known: impl Fn(&reqwest::Client) -> RequestBuilder,
    unknown: impl Fn(&reqwest::Client) -> RequestBuilder,
) {
    for i in 1..=BUDGET + 2 {
        for (net, attempt) in [(1, &known as &dyn Fn(&reqwest::Client) -> RequestBuilder), (2, &unknown)] {
            let a = answer(attempt(&client_from(&format!("127.0.{net}.{i}")))).await;
            if i < BUDGET {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "failure {} of the key id: {a:?}", i + 1);
            } else {
                assert!([StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&a.status), "{a:?}");
            }
        }
    }
}

/// Sends wrong secrets from `attempt` until one is refused as over the key id's budget (the
/// first, unless a slow run let a failure refill), checking the 429.
async fn over_key_budget(attempt: impl Fn() -> RequestBuilder) {
    for _ in 0..3 {
        let a = answer(attempt()).await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            retry_after(&a);
            return;
        }
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a:?}");
    }
    panic!("the key id is not over its budget");
}

async fn textingline_guessing_is_held_to_budgets(backend: Backend) {
    let Some(db) = TestDb::new(backend, "textingline_guessing").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(100, 0).await;
    let secret = t.api_key.split_once(':').map(|(_, s)| s.to_owned()).unwrap_or_default();
    let list = format!("{}/api/v1/messaging/message", app.direct_url);

    // 25 wrong secrets from one address: the budget is spent at 20.
    let attacker = client_from("127.0.0.1");
    let last = exhaust("wrong secrets", || attacker.get(&list).basic_auth(&t.key_id, Some("sk_wrong"))).await;
    assert_eq!(last.body["error"]["code"], 30429, "{last:?}");
    assert_eq!(last.body["error"]["type"], "too_many_requests");
    assert_eq!(last.body["error"]["status"], 429);
    // That address is refused everything, the right key too, before it is checked...
    let a = answer(attacker.get(&list).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{a:?}");
    // ...while the key's holder, from another address, sends as usual, though the key id has
    // spent its own budget: a wrong secret from there is 429, the right one passes.
    let holder = client_from("127.0.0.2");
    over_key_budget(|| holder.get(&list).basic_auth(&t.key_id, Some("sk_wrong_again"))).await;
    let a = answer(holder.get(&list).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let send = json!({"to": "+18005551234", "from": t.from, "body": "still mine"});
    let a = answer(holder.post(&list).basic_auth(&t.key_id, Some(&secret)).json(&send)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");

    // An unknown key id answers exactly as a wrong secret does: under budget...
    let known = app.admin.create_key(t.account, None).await.expect("a key");
    let unknown = "key_00c0ffee00c0ffee";
    let wrong = answer(client_from("127.0.0.3").get(&list).basic_auth(&known.key.id, Some("sk_wrong"))).await;
    let absent = answer(client_from("127.0.0.4").get(&list).basic_auth(unknown, Some("sk_wrong"))).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, absent);
    // ...and past it, each key id failed from many addresses.
    fail_both(
        |c| c.get(&list).basic_auth(&known.key.id, Some("sk_wrong")),
        |c| c.get(&list).basic_auth(unknown, Some("sk_wrong")),
    )
    .await;
    let wrong = answer(client_from("127.0.0.5").get(&list).basic_auth(&known.key.id, Some("sk_wrong"))).await;
    let absent = answer(client_from("127.0.0.6").get(&list).basic_auth(unknown, Some("sk_wrong"))).await;
    assert_eq!(wrong.status, StatusCode::TOO_MANY_REQUESTS, "{wrong:?}");
    assert_alike_refusals(&wrong, &absent);

    app.stop().await;
    db.remove().await;
}

async fn mudbase_guessing_is_held_to_budgets(backend: Backend) {
    let Some(db) = TestDb::new(backend, "mudbase_guessing").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let t = app.provision(100, 0).await;
    let history = format!("{}/api/messaging/projects/{}/messaging/history", app.direct_url, t.account);
    let sms = format!("{}/api/messaging/projects/{}/messaging/sms", app.direct_url, t.account);
    let wrong_key = format!("{}:sk_wrong", t.key_id);

    let attacker = client_from("127.0.0.1");
    let last = exhaust("wrong keys", || attacker.get(&history).header("x-api-key", &wrong_key)).await;
    assert_eq!(last.body["success"], false, "{last:?}");
    assert_eq!(last.body["error"]["code"], "RATE_LIMITED");
    let a = answer(attacker.get(&history).header("x-api-key", &t.api_key)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "the address is refused: {a:?}");

    let holder = client_from("127.0.0.2");
    over_key_budget(|| holder.get(&history).header("x-api-key", &wrong_key)).await;
    let a = answer(
        holder.post(&sms).header("x-api-key", &t.api_key).json(&json!({"to": "+18005551234", "message": "mine"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let token = answer(holder.post(format!("{}/api/auth/token", app.direct_url)).header("x-api-key", &t.api_key)).await;
    assert_eq!(token.status, StatusCode::CREATED, "{token:?}");

    // Forged access tokens spend an address's budget too.
    let forger = client_from("127.0.0.7");
    let last = exhaust("forged tokens", || forger.get(&history).bearer_auth("eyJhbGciOiJIUzI1NiJ9.e30.AAAA")).await;
    assert_eq!(last.body["error"]["code"], "RATE_LIMITED");
    let bearer = token.body["data"]["accessToken"].as_str().expect("a token").to_owned();
    let a = answer(holder.get(&history).bearer_auth(&bearer)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    let known = app.admin.create_key(t.account, None).await.expect("a key");
    let unknown = "key_00c0ffee00c0ffee:sk_wrong".to_owned();
    let known_wrong = format!("{}:sk_wrong", known.key.id);
    let wrong = answer(client_from("127.0.0.3").get(&history).header("x-api-key", &known_wrong)).await;
    let absent = answer(client_from("127.0.0.4").get(&history).header("x-api-key", &unknown)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, absent);
    fail_both(|c| c.get(&history).header("x-api-key", &known_wrong), |c| c.get(&history).header("x-api-key", &unknown))
        .await;
    let wrong = answer(client_from("127.0.0.5").get(&history).header("x-api-key", &known_wrong)).await;
    let absent = answer(client_from("127.0.0.6").get(&history).header("x-api-key", &unknown)).await;
    assert_eq!(wrong.status, StatusCode::TOO_MANY_REQUESTS, "{wrong:?}");
    assert_alike_refusals(&wrong, &absent);

    app.stop().await;
    db.remove().await;
}

async fn admin_guessing_is_held_to_budgets(backend: Backend) {
    let Some(db) = TestDb::new(backend, "admin_guessing").await else {
        return;
    };
    let app = TestApp::start(db.settings()).await;
    let accounts = format!("{}/admin/v1/accounts", app.direct_url);

    let attacker = client_from("127.0.0.1");
    let last = exhaust("wrong operator tokens", || attacker.get(&accounts).bearer_auth("not-the-operator-token")).await;
    assert_eq!(last.body["error"]["code"], "too_many_requests", "{last:?}");
    assert!(last.body["error"]["message"].is_string());
    let a = answer(attacker.get(&accounts).bearer_auth(OPERATOR_TOKEN)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "the address is refused, the right token too: {a:?}");
    // The operator, from another address, is not.
    let a = answer(client_from("127.0.0.2").get(&accounts).bearer_auth(OPERATOR_TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    app.stop().await;
    db.remove().await;
}

async fn behind_a_trusted_proxy_budgets_count_the_forwarded_address(backend: Backend) {
    let Some(db) = TestDb::new(backend, "proxy_guessing").await else {
        return;
    };
    let app = TestApp::start(Settings { trusted_proxies: vec!["127.0.0.1/32".into()], ..db.settings() }).await;
    let t = app.provision(100, 0).await;
    let secret = t.api_key.split_once(':').map(|(_, s)| s.to_owned()).unwrap_or_default();
    let list = format!("{}/api/v1/messaging/message", app.direct_url);
    let accounts = format!("{}/admin/v1/accounts", app.direct_url);
    let proxy = client_from("127.0.0.1");

    // One client behind the proxy guesses until its own address is refused...
    let attacker = "203.0.113.7";
    let last = exhaust("wrong secrets through the proxy", || {
        proxy.get(&list).header(FORWARDED_FOR, attacker).basic_auth(&t.key_id, Some("sk_wrong"))
    })
    .await;
    assert_eq!(last.body["error"]["code"], 30429, "{last:?}");
    let a = answer(proxy.get(&list).header(FORWARDED_FOR, attacker).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "the guesser's address is refused: {a:?}");
    // ...while another client, through the same proxy, gets in with the right key.
    let holder = "198.51.100.9";
    let a = answer(proxy.get(&list).header(FORWARDED_FOR, holder).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let send = json!({"to": "+18005551234", "from": t.from, "body": "through the proxy"});
    let a =
        answer(proxy.post(&list).header(FORWARDED_FOR, holder).basic_auth(&t.key_id, Some(&secret)).json(&send)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    // A client that writes the holder's address on the left is still counted as itself.
    let spoofed = format!("{holder}, {attacker}");
    let a = answer(proxy.get(&list).header(FORWARDED_FOR, &spoofed).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{a:?}");

    // The operator likewise.
    let last = exhaust("wrong operator tokens through the proxy", || {
        proxy.get(&accounts).header(FORWARDED_FOR, attacker).bearer_auth("not-the-operator-token")
    })
    .await;
    assert_eq!(last.body["error"]["code"], "too_many_requests", "{last:?}");
    let a = answer(proxy.get(&accounts).header(FORWARDED_FOR, holder).bearer_auth(OPERATOR_TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    // Without a usable header the client is unknown, and no address budget applies: the
    // proxy's own address never becomes one bucket for everyone. (Each guess names another
    // key id, so that no key id's budget is spent either.)
    for i in 0..BUDGET + 5 {
        let unknown_key = format!("key_{i:016x}");
        for header in [None, Some("unknown"), Some("127.0.0.1")] {
            let mut request = proxy.get(&list).basic_auth(&unknown_key, Some("sk_wrong"));
            if let Some(h) = header {
                request = request.header(FORWARDED_FOR, h);
            }
            let a = answer(request).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "guess {i} with {header:?}: {a:?}");
        }
    }
    let a = answer(proxy.get(&list).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");

    // A peer that is not a trusted proxy cannot choose its address: a new one in each request
    // (with a new key id, whose budget is whole) still spends the peer's own budget.
    let direct = client_from("127.0.0.2");
    let n = std::sync::atomic::AtomicUsize::new(0);
    exhaust("guesses with made-up addresses", || {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        direct
            .get(&list)
            .header(FORWARDED_FOR, format!("198.51.100.{}", i + 10))
            .basic_auth(format!("key_{:016x}", 1_000 + i), Some("sk_wrong"))
    })
    .await;
    let a = answer(direct.get(&list).header(FORWARDED_FOR, holder).basic_auth(&t.key_id, Some(&secret))).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "a made-up address does not escape: {a:?}");

    app.stop().await;
    db.remove().await;
}
