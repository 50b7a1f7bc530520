//! Destinations decided by the server itself, through every dialect: numbers that are not
//! valid in their plan or whose type takes no text are `invalid_destination`, countries
//! outside an account's list `geographic_restriction`, MMS outside the MMS countries
//! `service_restricted`, each stored failed and not charged, while what is allowed is sent and
//! charged; the simulator's test numbers keep working, and the admin API and the metrics show
//! what the lookup found.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use switchboard_domain::wire::{TlSendRequest, TlStatus};
use switchboard_domain::{ErrorType, MessageId, Region};
use switchboard_tests::{Backend, Tenant, TestApp, TestDb, admin_call as admin, call, on_both_backends};

on_both_backends!(destinations_are_decided_before_sending);

const UK_LANDLINE: &str = "+442071234567";
const UK_MOBILE: &str = "+447400123456";
const UK_PREMIUM: &str = "+449090123456";
/// Valid in structure (E.164), but not in the UK plan.
const UK_NOT_IN_PLAN: &str = "+447700900123";
const US_NUMBER: &str = "+14155550100";
const NOT_IN_PLAN_US: &str = "+15550001000";
/// A valid Dutch mobile number in the range the operator blocks.
const NL_BLOCKED: &str = "+31612345678";
const MEDIA: &str = "https://example.com/cat.png";

async fn credits(app: &TestApp, t: &Tenant) -> (i64, i64) {
    let b = app.admin.balance(t.account).await.expect("balance");
    (b.sms_credits, b.mms_credits)
}

/// Sends through TextingLine and returns (status, error type) as it answered.
async fn textingline(t: &Tenant, to: &str, media: bool) -> (TlStatus, Option<ErrorType>, MessageId) {
    let req = TlSendRequest {
        to: to.into(),
        from: t.from.clone(),
        body: Some("Your code is 1234".into()),
        media_url: media.then(|| MEDIA.into()),
        ..Default::default()
    };
    let sent = t.client.send(&req).await.unwrap_or_else(|e| panic!("{to}: {e}"));
    assert_eq!(sent.status, StatusCode::CREATED, "{to}");
    (sent.message.status, sent.message.error_type, sent.message.id)
}

async fn destinations_are_decided_before_sending(backend: Backend) {
    let Some(db) = TestDb::new(backend, "destinations_are_decided").await else { return };
    // The operator blocks one Dutch range outright.
    let settings = switchboard::Settings { blocked_destinations: vec!["+3161234".into()], ..db.settings() };
    let app = TestApp::start(settings).await;
    let t = app.provision(100, 10).await;

    // TextingLine: each refusal is 201 failed with its error type, and free.
    for (to, media, error) in [
        (UK_LANDLINE, false, ErrorType::InvalidDestination),
        (UK_NOT_IN_PLAN, false, ErrorType::InvalidDestination),
        (NOT_IN_PLAN_US, false, ErrorType::InvalidDestination),
        (UK_PREMIUM, false, ErrorType::InvalidDestination),
        (UK_MOBILE, true, ErrorType::ServiceRestricted),
        (NL_BLOCKED, false, ErrorType::DestinationBlocked),
    ] {
        let (status, error_type, _) = textingline(&t, to, media).await;
        assert_eq!((status, error_type), (TlStatus::Failed, Some(error)), "{to}");
    }
    assert_eq!(credits(&app, &t).await, (100, 10), "nothing refused is charged");
    // What is allowed goes: a UK mobile by SMS, a US number by SMS and by MMS.
    let (status, _, uk) = textingline(&t, UK_MOBILE, false).await;
    assert_ne!(status, TlStatus::Failed);
    let (status, _, _) = textingline(&t, US_NUMBER, false).await;
    assert_ne!(status, TlStatus::Failed);
    let (status, _, us_mms) = textingline(&t, US_NUMBER, true).await;
    assert_ne!(status, TlStatus::Failed);
    assert_eq!(credits(&app, &t).await, (100 - 2 - 2 - 2, 10 - 1));

    // The admin API shows what the lookup found.
    let (status, m) = admin(&app, Method::GET, &format!("/messages/{uk}"), None).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["destination"], json!({"valid": true, "numberType": "mobile", "country": "GB"}));
    let (_, m) = admin(&app, Method::GET, &format!("/messages/{us_mms}"), None).await;
    assert_eq!(m["destination"], json!({"valid": true, "numberType": "fixed_line_or_mobile", "country": "US"}));

    // The simulator's test numbers are let through to it, and it decides as documented: the
    // invalid-destination test number is refused by the simulator after a dispatch attempt.
    let (_, _, simulated) = textingline(&t, "+15550001001", false).await;
    let m = switchboard_tests::eventually("the simulator's answer", std::time::Duration::from_secs(10), || async {
        let (_, m) = admin(&app, Method::GET, &format!("/messages/{simulated}"), None).await;
        (m["status"] == "failed").then_some(m)
    })
    .await;
    assert_eq!((m["errorType"].clone(), m["attempts"].clone()), (json!("invalid_destination"), json!(1)), "{m}");
    assert_eq!(m["destination"]["country"], "US");

    // An account limited to the US and Canada: the UK is a geographic restriction for it,
    // while the first account still sends there. Fixed-or-mobile numbers refused too.
    let limited = app.provision(100, 0).await;
    let (status, account) = admin(
        &app,
        Method::PATCH,
        &format!("/accounts/{}", limited.account),
        Some(json!({"allowedCountries": ["us", "CA"], "acceptFixedOrMobile": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    assert_eq!(
        (account["allowedCountries"].clone(), account["acceptFixedOrMobile"].clone()),
        (json!(["CA", "US"]), json!(true))
    );
    let (status, error_type, _) = textingline(&limited, UK_MOBILE, false).await;
    assert_eq!((status, error_type), (TlStatus::Failed, Some(ErrorType::GeographicRestriction)));
    let (status, _, _) = textingline(&t, UK_MOBILE, false).await;
    assert_ne!(status, TlStatus::Failed);
    let (status, _, _) = textingline(&limited, US_NUMBER, false).await;
    assert_ne!(status, TlStatus::Failed);
    // Through Mudbase and a Bird channel too: the UK recipient fails, the US one goes.
    let (status, body) = mudbase(&app, &limited, json!([UK_MOBILE, US_NUMBER])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((&body["data"]["successCount"], &body["data"]["failureCount"]), (&json!(1), &json!(1)), "{body}");
    let channel = create_channel(&app, limited.account, &limited.from).await;
    let (status, m) = bird(&app, &limited, channel, UK_MOBILE, json!({"type": "text", "text": {"text": "Hi"}})).await;
    assert_eq!(
        (status, &m["failure"]["source"]["code"]),
        (StatusCode::ACCEPTED, &json!("geographic_restriction")),
        "{m}"
    );
    assert_eq!(credits(&app, &limited).await, (100 - 2 - 2, 0), "the TextingLine and Mudbase US messages");
    let account =
        app.admin.set_destinations(limited.account, None, Some(false)).await.expect("refuse fixed-or-mobile numbers");
    assert_eq!(account.allowed_countries, Some(vec![Region::parse("CA").unwrap(), Region::parse("US").unwrap()]));
    assert!(!account.accept_fixed_or_mobile);
    let (status, error_type, _) = textingline(&limited, US_NUMBER, false).await;
    assert_eq!((status, error_type), (TlStatus::Failed, Some(ErrorType::InvalidDestination)));
    assert_eq!(credits(&app, &limited).await, (96, 0), "nothing more charged");
    // Bad settings are refused whole.
    for bad in
        [json!({"allowedCountries": ["USA"]}), json!({"allowedCountries": "US"}), json!({"acceptFixedOrMobile": 1})]
    {
        let (status, body) =
            admin(&app, Method::PATCH, &format!("/accounts/{}", limited.account), Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let many: Vec<String> = (0..301)
        .map(|i| format!("{}{}", (b'A' + (i / 26 % 26) as u8) as char, (b'A' + (i % 26) as u8) as char))
        .collect();
    let (status, body) =
        admin(&app, Method::PATCH, &format!("/accounts/{}", limited.account), Some(json!({"allowedCountries": many})))
            .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let account = app.admin.set_destinations(limited.account, Some(None), Some(true)).await.expect("every country");
    assert_eq!((account.allowed_countries, account.accept_fixed_or_mobile), (None, true));
    let (status, _, _) = textingline(&limited, UK_MOBILE, false).await;
    assert_ne!(status, TlStatus::Failed);

    // Mudbase: refused recipients are failures of the request, and free.
    let before = credits(&app, &t).await;
    let (status, body) =
        mudbase(&app, &t, json!([UK_LANDLINE, UK_MOBILE, UK_PREMIUM, UK_NOT_IN_PLAN, US_NUMBER])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((&body["data"]["successCount"], &body["data"]["failureCount"]), (&json!(2), &json!(3)), "{body}");
    assert_eq!(credits(&app, &t).await, (before.0 - 4, before.1));

    // Bird: the message is stored failed with its reason, and free.
    let channel = create_channel(&app, t.account, &t.from).await;
    let before = credits(&app, &t).await;
    let text = json!({"type": "text", "text": {"text": "Hello"}});
    let image = json!({"type": "image", "image": {"images": [{"mediaUrl": MEDIA}]}});
    for (number, body, code) in [
        (UK_LANDLINE, &text, "invalid_destination"),
        (UK_PREMIUM, &text, "invalid_destination"),
        (UK_NOT_IN_PLAN, &text, "invalid_destination"),
        (UK_MOBILE, &image, "service_restricted"),
    ] {
        let (status, m) = bird(&app, &t, channel, number, body.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{m}");
        // As Bird answers every send, `accepted`, with the failure already there; read back,
        // the message has failed before sending.
        assert_eq!(m["failure"]["source"]["code"], json!(code), "{m}");
        assert!(m["reason"].as_str().is_some_and(|r| !r.is_empty()), "{m}");
        let path = format!("/workspaces/{}/channels/{channel}/messages/{}", t.account, m["id"].as_str().expect("id"));
        let (_, read) =
            call(&app, Method::GET, &path, ("authorization", format!("AccessKey {}", t.api_key)), None).await;
        assert_eq!(
            (&read["status"], &read["failure"]["source"]["code"]),
            (&json!("sending_failed"), &json!(code)),
            "{read}"
        );
    }
    assert_eq!(credits(&app, &t).await, before);
    let (status, m) = bird(&app, &t, channel, US_NUMBER, image).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{m}");
    assert!(m.get("failure").is_none(), "{m}");
    assert_eq!(credits(&app, &t).await, (before.0 - 2, before.1 - 1));

    // The ledger holds exactly one charge per message that was not refused.
    let (_, ledger) = admin(&app, Method::GET, &format!("/accounts/{}/ledger?limit=1000", t.account), None).await;
    let charges = ledger["data"].as_array().expect("entries").iter().filter(|e| e["kind"] == "charge").count();
    // TextingLine: UK mobile, US SMS, US MMS, the simulator's number, the UK mobile again;
    // Mudbase: two; Bird: one.
    assert_eq!(charges, 8, "{ledger}");

    // The metrics count lookups by number type and outcome.
    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.expect("metrics").text().await.expect("text");
    for line in [
        r#"switchboard_destination_lookups_total{number_type="fixed_line",outcome="invalid_destination"}"#,
        r#"switchboard_destination_lookups_total{number_type="mobile",outcome="service_restricted"}"#,
        r#"switchboard_destination_lookups_total{number_type="mobile",outcome="geographic_restriction"}"#,
        r#"switchboard_destination_lookups_total{number_type="premium_rate",outcome="invalid_destination"}"#,
        r#"switchboard_destination_lookups_total{number_type="mobile",outcome="destination_blocked"}"#,
        r#"switchboard_destination_lookups_total{number_type="fixed_line_or_mobile",outcome="allowed"}"#,
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(line)), "{line} missing from:\n{metrics}");
    }

    app.stop().await;
    db.remove().await;
}

async fn mudbase(app: &TestApp, t: &Tenant, to: Value) -> (StatusCode, Value) {
    let path = format!("/api/messaging/projects/{}/messaging/sms", t.account);
    call(app, Method::POST, &path, ("x-api-key", t.api_key.clone()), Some(json!({"to": to, "message": "Hi"}))).await
}

async fn bird(app: &TestApp, t: &Tenant, channel: Uuid, to: &str, body: Value) -> (StatusCode, Value) {
    let path = format!("/workspaces/{}/channels/{channel}/messages", t.account);
    let receiver = json!({"contacts": [{"identifierKey": "phonenumber", "identifierValue": to}]});
    let auth = ("authorization", format!("AccessKey {}", t.api_key));
    call(app, Method::POST, &path, auth, Some(json!({"receiver": receiver, "body": body}))).await
}

async fn create_channel(app: &TestApp, account: Uuid, sender: &str) -> Uuid {
    let body = json!({"name": "Destinations", "sender": sender});
    let (status, channel) = admin(app, Method::POST, &format!("/accounts/{account}/channels"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    channel["id"].as_str().and_then(|s| s.parse().ok()).expect("channel id")
}
