//! The Bird channels dialect end to end: every body type, MMS channels, templates, scheduling
//! and cancellation, validity expiry, reading back, and the error shape.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::wire::CreateSender;
use switchboard_domain::{MessageId, Timestamp};
use switchboard_tests::{
    Backend, INTERNAL_URLS, OPERATOR_TOKEN, Tenant, TestApp, TestDb, eventually, on_both_backends,
};
use uuid::Uuid;

on_both_backends!(
    every_body_type_is_sent_and_read_back,
    media_limits_and_missing_content,
    mms_needs_an_mms_channel,
    templates_render_and_fail_clearly,
    scheduled_messages_wait_and_cancel_with_a_refund,
    validity_expires_with_a_refund,
    workspaces_and_channels_are_guarded,
    notification_urls_are_held_to_the_url_policy,
);

const TO: &str = "+31612345678";
/// MMS goes to the US and Canada only, as Bird's guide says.
const MMS_TO: &str = "+14155550100";
/// The simulator answers this number with a retryable error on every attempt.
const ALWAYS_RETRYABLE: &str = "+15550002003";

/// A Bird client over raw HTTP, for one workspace and channel.
struct Bird {
    http: reqwest::Client,
    base: String,
    workspace: Uuid,
    channel: Uuid,
    auth: String,
}

impl Bird {
    fn messages(&self) -> String {
        format!("{}/workspaces/{}/channels/{}/messages", self.base, self.workspace, self.channel)
    }

    async fn call(&self, method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, url).header("authorization", &self.auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &self.messages(), Some(body)).await
    }

    async fn get(&self, id: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("{}/{id}", self.messages()), None).await
    }

    async fn cancel(&self, id: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, &format!("{}/{id}", self.messages()), None).await
    }

    async fn list(&self, query: &str) -> (StatusCode, Value) {
        self.call(Method::GET, &format!("{}?{query}", self.messages()), None).await
    }

    /// Sends and expects 202; returns the message.
    async fn accepted(&self, body: Value) -> Value {
        let (status, m) = self.send(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{m}");
        m
    }

    /// Waits until the message has this status.
    async fn until(&self, id: &str, status: &str) -> Value {
        eventually(&format!("message {id} {status}"), Duration::from_secs(10), || async {
            let (code, m) = self.get(id).await;
            assert_eq!(code, StatusCode::OK, "{m}");
            (m["status"] == status).then_some(m)
        })
        .await
    }
}

/// Calls the admin API.
async fn admin(app: &TestApp, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .request(method, format!("{}/admin/v1{path}", app.url))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_channel(app: &TestApp, account: Uuid, sender: &str) -> Uuid {
    let body = json!({"name": "sms", "sender": sender});
    let (status, channel) = admin(app, Method::POST, &format!("/accounts/{account}/channels"), body).await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    channel["id"].as_str().and_then(|s| s.parse().ok()).expect("channel id")
}

async fn start(backend: Backend, test: &str) -> Option<(TestDb, TestApp)> {
    let db = TestDb::new(backend, test).await?;
    let app = TestApp::start(db.settings()).await;
    Some((db, app))
}

/// A funded tenant with a channel on its SMS and MMS sender.
async fn tenant(app: &TestApp, sms: i64, mms: i64) -> (Tenant, Bird) {
    let t = app.provision(sms, mms).await;
    let channel = create_channel(app, t.account, &t.from).await;
    let bird = Bird {
        http: reqwest::Client::new(),
        base: app.url.clone(),
        workspace: t.account,
        channel,
        auth: format!("AccessKey {}", t.api_key),
    };
    (t, bird)
}

async fn balance(app: &TestApp, t: &Tenant) -> (i64, i64) {
    let b = app.admin.balance(t.account).await.expect("balance");
    (b.sms_credits, b.mms_credits)
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// A 422 whose details name `field`.
fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_error(status, body, StatusCode::UNPROCESSABLE_ENTITY, "InvalidPayload");
    assert!(body["details"][field].as_array().is_some_and(|p| !p.is_empty()), "no problem named {field}: {body}");
}

fn to(number: &str) -> Value {
    json!({"contacts": [{"identifierKey": "phonenumber", "identifierValue": number}]})
}

fn image(n: usize) -> Value {
    let images: Vec<Value> = (0..n).map(|i| json!({"mediaUrl": format!("https://example.com/{i}.png")})).collect();
    json!({"type": "image", "image": {"images": images}})
}

async fn every_body_type_is_sent_and_read_back(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_bodies").await else { return };
    let (t, bird) = tenant(&app, 100, 10).await;

    let meta = json!({"extraInformation": {"orderId": "A-1", "nested": {"x": [1, 2]}}, "custom": true});
    let text = bird
        .accepted(json!({
            "receiver": {"contacts": [{"identifierValue": TO}]},
            "body": {"type": "text", "text": {"text": "Single text message"}},
            "reference": "my-own-identifier",
            "tags": ["welcome", "q3"],
            "meta": meta,
            "replyTo": {"id": "abc", "order": 1, "type": "message"},
            "notification": {"url": "https://example.com/hook"},
            "enableLinkTracking": true,
            "capFrequency": false,
            "ignoreQuietHours": true,
            "ignoreGlobalHoldout": false,
            "sender": {"connector": {"identifierValue": t.from}},
        }))
        .await;
    assert_eq!(text["status"], "accepted");
    assert_eq!(text["direction"], "outgoing");
    assert_eq!(text["channelId"], json!(bird.channel.to_string()));
    assert_eq!(text["sender"]["connector"]["identifierValue"], json!(t.from));
    assert_eq!(text["receiver"]["contacts"][0]["identifierValue"], TO);
    assert_eq!(text["reference"], "my-own-identifier");
    assert_eq!(text["tags"], json!(["welcome", "q3"]));
    assert_eq!(text["meta"], meta);
    assert_eq!(text["replyTo"]["id"], "abc");
    assert_eq!(text["enableLinkTracking"], true);
    assert_eq!(text["body"]["text"]["text"], "Single text message");
    for field in ["id", "createdAt", "updatedAt", "lastStatusAt"] {
        assert!(text[field].is_string(), "{field}: {text}");
    }
    let id = text["id"].as_str().expect("id").to_owned();
    let sent = bird.until(&id, "sent").await;
    assert_eq!(sent["meta"], meta, "meta is kept: {sent}");
    assert_eq!(sent["parts"].as_array().map(Vec::len), Some(1), "{sent}");

    // Image and file bodies, with and without text and subject, are MMS.
    let subject = json!({"subject": "Message subject"});
    let bodies = [
        image(1),
        json!({"type": "image", "image": {"images": [{"mediaUrl": "https://example.com/a.avif"}], "text": "Single image message"}}),
        json!({"type": "image", "image": {"images": [{"mediaUrl": "https://example.com/a.avif"}, {"mediaUrl": "https://example.com/b.png"}], "text": "Multiple images", "metadata": subject}}),
        json!({"type": "file", "file": {"files": [{"mediaUrl": "https://example.com/v.mp4", "contentType": "video/mp4"}]}}),
        json!({"type": "file", "file": {"files": [{"mediaUrl": "https://example.com/v.mp4", "contentType": "video/mp4"}], "text": "Single file message"}}),
        json!({"type": "file", "file": {"files": [{"mediaUrl": "https://example.com/v.mp4", "contentType": "video/mp4"}, {"mediaUrl": "https://example.com/a.mp3", "contentType": "audio/mpeg"}], "text": "Multiple files", "metadata": subject}}),
        image(10),
    ];
    for body in &bodies {
        let m = bird.accepted(json!({"receiver": to(MMS_TO), "body": body})).await;
        assert_eq!(&m["body"], body, "the body is returned as given");
    }
    // One SMS (2 SMS credits) and seven MMS (2 SMS + 1 MMS credits each).
    assert_eq!(balance(&app, &t).await, (100 - 2 - 7 * 2, 10 - 7));

    // The list shows the channel's messages newest first, a page at a time.
    let (status, page) = bird.list("limit=5").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let results = page["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["body"], bodies[6]);
    let token = page["nextPageToken"].as_str().expect("next page token");
    let (_, rest) = bird.list(&format!("limit=5&pageToken={token}")).await;
    let rest = rest["results"].as_array().expect("results").clone();
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[2]["id"], json!(id));
    let (status, body) = bird.list("limit=101").await;
    assert_invalid(status, &body, "limit");

    // The same message, read through TextingLine by its `msg_` id.
    let msg_id = MessageId::from_uuid(Uuid::parse_str(&id).expect("uuid")).to_string();
    let tl = t.client.message(&msg_id).await.expect("TextingLine reads a Bird message");
    assert_eq!(tl.body.as_deref(), Some("Single text message"));
    app.stop().await;
    db.remove().await;
}

async fn media_limits_and_missing_content(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_media_limits").await else { return };
    let (t, bird) = tenant(&app, 100, 10).await;
    let before = balance(&app, &t).await;

    let (status, body) = bird.send(json!({"receiver": to(TO), "body": image(11)})).await;
    assert_invalid(status, &body, "body.image.images");
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": image(0)})).await;
    assert_invalid(status, &body, "body.image.images");
    let relative = json!({"type": "image", "image": {"images": [{"mediaUrl": "/images/a.png"}]}});
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": relative})).await;
    assert_invalid(status, &body, "body.image.images[0].mediaUrl");
    let ftp =
        json!({"type": "file", "file": {"files": [{"mediaUrl": "ftp://example.com/a", "contentType": "video/mp4"}]}});
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": ftp})).await;
    assert_invalid(status, &body, "body.file.files[0].mediaUrl");
    let untyped = json!({"type": "file", "file": {"files": [{"mediaUrl": "https://example.com/a"}]}});
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": untyped})).await;
    assert_invalid(status, &body, "body.file.files[0].contentType");
    let (status, body) = bird.send(json!({"receiver": to(TO)})).await;
    assert_invalid(status, &body, "body");
    let both = json!({"receiver": to(TO), "body": image(1), "template": {"projectId": Uuid::new_v4(), "version": "latest", "locale": "en"}});
    let (status, body) = bird.send(both).await;
    assert_invalid(status, &body, "body");
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": {"type": "html", "html": {}}})).await;
    assert_invalid(status, &body, "body.type");
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "  "}}})).await;
    assert_invalid(status, &body, "body.text.text");
    // Every problem is named at once.
    let (status, body) =
        bird.send(json!({"receiver": to("12"), "body": image(11), "validity": 0, "scheduledFor": "tomorrow"})).await;
    for field in ["receiver.contacts[0].identifierValue", "body.image.images", "validity", "scheduledFor"] {
        assert_invalid(status, &body, field);
    }
    assert_eq!(balance(&app, &t).await, before, "nothing was charged");
    app.stop().await;
    db.remove().await;
}

async fn mms_needs_an_mms_channel(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_mms_channel").await else { return };
    let (t, mut bird) = tenant(&app, 100, 10).await;
    let sms_only = "+18009990001";
    app.admin
        .add_sender(t.account, &CreateSender { address: sms_only.into(), active: true, sms: true, mms: false })
        .await
        .expect("sender");
    bird.channel = create_channel(&app, t.account, sms_only).await;
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": image(1)})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "ChannelNotMmsCapable");
    let file = json!({"type": "file", "file": {"files": [{"mediaUrl": "https://example.com/v.mp4", "contentType": "video/mp4"}]}});
    let (status, body) = bird.send(json!({"receiver": to(TO), "body": file})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "ChannelNotMmsCapable");
    assert_eq!(balance(&app, &t).await, (100, 10), "nothing was charged");
    // Text still goes.
    bird.accepted(json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "hi"}}})).await;
    assert_eq!(balance(&app, &t).await, (98, 10));
    app.stop().await;
    db.remove().await;
}

async fn templates_render_and_fail_clearly(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_templates").await else { return };
    let (t, bird) = tenant(&app, 100, 0).await;
    let base = format!("/accounts/{}/templates", t.account);
    let (status, template) = admin(&app, Method::POST, &base, json!({"name": "welcome"})).await;
    assert_eq!(status, StatusCode::CREATED, "{template}");
    let template_id = template["id"].as_str().expect("template id").to_owned();
    let versions = format!("{base}/{template_id}/versions");
    let add = |texts: Value, active: bool| {
        let (app, versions) = (&app, versions.clone());
        async move {
            let (status, v) = admin(app, Method::POST, &versions, json!({"texts": texts, "active": active})).await;
            assert_eq!(status, StatusCode::CREATED, "{v}");
            v["id"].as_str().expect("version id").to_owned()
        }
    };
    let v1 =
        add(json!({"en": "Hi {{name}}, your code is {{ code }}", "nl": "Hoi {{name}}, je code is {{code}}"}), true)
            .await;
    let inactive = add(json!({"en": "Old {{name}}"}), false).await;

    let send = |version: &str, locale: &str, parameters: Value| json!({"receiver": to(TO), "template": {"projectId": template_id, "version": version, "locale": locale, "parameters": parameters}});
    let params = json!([{"type": "string", "key": "name", "value": "Robert"}, {"type": "string", "key": "code", "value": "1234"}]);

    let m = bird.accepted(send("latest", "en", params.clone())).await;
    assert_eq!(m["body"]["text"]["text"], "Hi Robert, your code is 1234", "{m}");
    assert_eq!(m["template"]["projectId"], json!(template_id));
    let m = bird.accepted(send(&v1, "nl-NL", params.clone())).await;
    assert_eq!(m["body"]["text"]["text"], "Hoi Robert, je code is 1234", "{m}");
    // `variables` fill what parameters leave out.
    let mut with_variables = send("latest", "en", json!([{"key": "name", "value": "Ana"}]));
    with_variables["template"]["variables"] = json!({"code": "42"});
    let m = bird.accepted(with_variables).await;
    assert_eq!(m["body"]["text"]["text"], "Hi Ana, your code is 42");
    // The rendered text is what was stored and charged.
    let sent = bird.until(m["id"].as_str().expect("id"), "sent").await;
    assert_eq!(sent["body"]["text"]["text"], "Hi Ana, your code is 42");
    assert_eq!(balance(&app, &t).await.0, 100 - 3 * 2);

    // `latest` is the newest active version.
    let v3 = add(json!({"en": "Hello {{name}}"}), true).await;
    let m = bird.accepted(send("latest", "en", params.clone())).await;
    assert_eq!(m["body"]["text"]["text"], "Hello Robert");
    let (status, v) = admin(&app, Method::PATCH, &format!("{versions}/{v3}"), json!({"active": false})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let m = bird.accepted(send("latest", "en", params.clone())).await;
    assert_eq!(m["body"]["text"]["text"], "Hi Robert, your code is 1234");

    let before = balance(&app, &t).await;
    let failures = [
        (send("latest", "en", json!([{"key": "name", "value": "x"}])), "template.parameters", "code"),
        (send("latest", "fr", params.clone()), "template.locale", "fr"),
        (send(&inactive, "en", params.clone()), "template.version", "not active"),
        (send(&Uuid::new_v4().to_string(), "en", params.clone()), "template.version", "no such version"),
        (send("v1", "en", params.clone()), "template.version", "latest"),
    ];
    for (request, field, mention) in failures {
        let (status, body) = bird.send(request).await;
        assert_invalid(status, &body, field);
        assert!(body["details"][field][0].as_str().is_some_and(|p| p.contains(mention)), "{body}");
    }
    let mut unknown = send("latest", "en", params.clone());
    unknown["template"]["projectId"] = json!(Uuid::new_v4());
    let (status, body) = bird.send(unknown).await;
    assert_invalid(status, &body, "template.projectId");
    // A template without an active version.
    let (_, empty) = admin(&app, Method::POST, &base, json!({"name": "empty"})).await;
    let mut none_active = send("latest", "en", params.clone());
    none_active["template"]["projectId"] = empty["id"].clone();
    let (status, body) = bird.send(none_active).await;
    assert_invalid(status, &body, "template.version");
    assert_eq!(balance(&app, &t).await, before, "no failure charged anything");
    app.stop().await;
    db.remove().await;
}

async fn scheduled_messages_wait_and_cancel_with_a_refund(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_scheduled").await else { return };
    let (t, bird) = tenant(&app, 100, 10).await;
    let text = json!({"type": "text", "text": {"text": "later"}});
    let at = |ms: i64| Timestamp::now().plus_millis(ms).to_string();

    // Two due in 3 s, one of them canceled before then: the other is scheduled until its
    // time, then sent; the canceled one never is.
    let before = balance(&app, &t).await;
    let soon = bird.accepted(json!({"receiver": to(TO), "body": text, "scheduledFor": at(3_000)})).await;
    assert_eq!(soon["status"], "accepted", "a send is answered accepted: {soon}");
    assert!(soon["scheduledFor"].is_string(), "{soon}");
    let soon_id = soon["id"].as_str().expect("id").to_owned();
    let dropped = bird.accepted(json!({"receiver": to(TO), "body": text, "scheduledFor": at(3_000)})).await;
    let dropped_id = dropped["id"].as_str().expect("id").to_owned();
    let (_, now) = bird.get(&soon_id).await;
    assert_eq!(now["status"], "scheduled", "not sent before its time: {now}");
    let (status, canceled) = bird.cancel(&dropped_id).await;
    assert_eq!((status, canceled["status"].as_str()), (StatusCode::OK, Some("canceled")), "{canceled}");
    let sent = bird.until(&soon_id, "sent").await;
    let sent_at = sent["updatedAt"].as_str().expect("updatedAt").to_owned();
    assert!(sent_at.as_str() >= soon["scheduledFor"].as_str().expect("scheduledFor"), "{sent}");
    let (_, still) = bird.get(&dropped_id).await;
    assert_eq!((still["status"].as_str(), still["parts"].as_array().map(Vec::len)), (Some("canceled"), Some(0)));
    assert_eq!(balance(&app, &t).await, (before.0 - 2, before.1), "only the sent one is paid for");

    // Due in an hour: canceled, and the balance is exactly as before it.
    let mms = bird.accepted(json!({"receiver": to(MMS_TO), "body": image(2), "scheduledFor": at(3_600_000)})).await;
    assert_eq!(balance(&app, &t).await, (before.0 - 4, before.1 - 1));
    let id = mms["id"].as_str().expect("id").to_owned();
    let (status, canceled) = bird.cancel(&id).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(balance(&app, &t).await, (before.0 - 2, before.1));
    let (status, body) = bird.cancel(&id).await;
    assert_error(status, &body, StatusCode::CONFLICT, "NotScheduled");
    let (status, body) = bird.cancel(&soon_id).await;
    assert_error(status, &body, StatusCode::CONFLICT, "NotScheduled");
    let ledger = app.admin.ledger(t.account, 100, None).await.expect("ledger");
    let refunds: Vec<_> = ledger.data.iter().filter(|e| e.kind == "refund").collect();
    assert_eq!(refunds.len(), 2, "one refund per canceled message: {refunds:?}");
    assert_eq!((refunds[0].sms_delta, refunds[0].mms_delta), (2, 1));
    assert_eq!(refunds[0].message_id.map(|m| m.as_uuid().to_string()), Some(id.clone()));
    assert_eq!(refunds[1].message_id.map(|m| m.as_uuid().to_string()), Some(dropped_id.clone()));

    // At most 35 days ahead.
    let (status, body) =
        bird.send(json!({"receiver": to(TO), "body": text, "scheduledFor": at(36 * 86_400_000)})).await;
    assert_invalid(status, &body, "scheduledFor");
    app.stop().await;
    db.remove().await;
}

async fn validity_expires_with_a_refund(backend: Backend) {
    let Some(db) = TestDb::new(backend, "bird_validity").await else { return };
    // Retries never run out before the validity does, and the backoff (15 to 30 s after the
    // first attempt) is longer than the wait below: only a retry held to the expiry ends it.
    let settings =
        switchboard::Settings { dispatch_max_attempts: 1_000, dispatch_base_backoff_ms: 30_000, ..db.settings() };
    let app = TestApp::start(settings).await;
    let (t, bird) = tenant(&app, 100, 0).await;
    let m = bird
        .accepted(json!({"receiver": to(ALWAYS_RETRYABLE), "body": {"type": "text", "text": {"text": "brief"}}, "validity": 1}))
        .await;
    assert_eq!(m["validity"], 1);
    assert_eq!(balance(&app, &t).await.0, 98);
    let expired = bird.until(m["id"].as_str().expect("id"), "expired").await;
    assert_eq!(expired["failure"]["source"]["code"], "expired", "{expired}");
    assert!(expired["reason"].is_string(), "{expired}");
    assert_eq!(balance(&app, &t).await.0, 100, "refunded");
    let ledger = app.admin.ledger(t.account, 100, None).await.expect("ledger");
    assert_eq!(ledger.data.iter().filter(|e| e.kind == "refund").count(), 1);
    app.stop().await;
    db.remove().await;
}

async fn workspaces_and_channels_are_guarded(backend: Backend) {
    let Some((db, app)) = start(backend, "bird_guarded").await else { return };
    let (mine, bird) = tenant(&app, 100, 0).await;
    let (_, theirs) = tenant(&app, 100, 0).await;
    let text = json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "hi"}}});

    // Another workspace's path with my key: 403.
    let foreign = Bird { http: reqwest::Client::new(), auth: bird.auth.clone(), ..theirs };
    let (status, body) = foreign.send(text.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "Forbidden");
    // My workspace, another workspace's channel: 404, as for a channel that does not exist.
    let crossed = Bird { workspace: mine.account, http: reqwest::Client::new(), ..foreign };
    let (status, body) = crossed.send(text.clone()).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NotFound");
    let unknown = Bird { channel: Uuid::new_v4(), http: reqwest::Client::new(), ..crossed };
    let (status, body) = unknown.send(text.clone()).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NotFound");
    let (status, body) = bird.get(&Uuid::new_v4().to_string()).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NotFound");
    let (status, body) = bird.get("not-an-id").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NotFound");

    // Credentials.
    let anonymous = Bird { auth: String::new(), http: reqwest::Client::new(), ..unknown };
    let (status, body) = anonymous.send(text.clone()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "Unauthorized");
    let wrong = Bird { auth: format!("AccessKey {}:wrong", mine.key_id), http: reqwest::Client::new(), ..anonymous };
    let (status, body) = wrong.send(text.clone()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "Unauthorized");

    // Bad bodies are 400 in the same shape.
    let raw = |body: &'static str| {
        reqwest::Client::new()
            .post(bird.messages())
            .header("authorization", &bird.auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for bad in ["{", "[]", r#"{"receiver": 1}"#, r#"{"unknownField": true}"#, r#"{"validity": "soon"}"#] {
        let resp = raw(bad).await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json error");
        assert_error(status, &body, StatusCode::BAD_REQUEST, "InvalidPayload");
    }
    let (status, body) = bird.call(Method::PUT, &bird.messages(), None).await;
    assert_error(status, &body, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");

    // Several receivers, or a non-phone identifier, are named.
    let two = json!({"contacts": [{"identifierValue": TO}, {"identifierValue": "+31612345679"}]});
    let (status, body) = bird.send(json!({"receiver": two, "body": {"type": "text", "text": {"text": "x"}}})).await;
    assert_invalid(status, &body, "receiver.contacts");
    let email = json!({"contacts": [{"identifierKey": "emailaddress", "identifierValue": "a@example.com"}]});
    let (status, body) = bird.send(json!({"receiver": email, "body": {"type": "text", "text": {"text": "x"}}})).await;
    assert_invalid(status, &body, "receiver.contacts[0].identifierKey");
    let wrong_sender = json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "x"}}, "sender": {"connector": {"identifierValue": "+18005550000"}}});
    let (status, body) = bird.send(wrong_sender).await;
    assert_invalid(status, &body, "sender.connector.identifierValue");

    // An inactive channel refuses, charging nothing.
    let path = format!("/accounts/{}/channels/{}", mine.account, bird.channel);
    let (status, body) = admin(&app, Method::PATCH, &path, json!({"active": false})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = bird.send(text.clone()).await;
    assert_error(status, &body, StatusCode::CONFLICT, "ChannelInactive");
    assert_eq!(balance(&app, &mine).await, (100, 0));
    app.stop().await;
    db.remove().await;
}

async fn notification_urls_are_held_to_the_url_policy(backend: Backend) {
    let Some(db) = TestDb::new(backend, "bird_notification_policy").await else { return };
    // No ranges allowed: the operator's default.
    let settings = db.settings();
    let app = TestApp::start(switchboard::Settings { tenant_url_allow_cidrs: Vec::new(), ..settings.clone() }).await;
    let (t, bird) = tenant(&app, 100, 0).await;
    let send = |url: &str| json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "hi"}}, "notification": {"url": url}});
    let others = [
        ("https://user:pass@example.com/hook", "user name or password"),
        ("ftp://example.com/hook", "http or https"),
        ("not a url", "absolute http or https URL"),
    ];
    let cases = INTERNAL_URLS.iter().map(|u| (*u, "must not name")).chain(others);
    for (url, why) in cases {
        let (status, body) = bird.send(send(url)).await;
        assert_invalid(status, &body, "notification.url");
        let problems = body["details"]["notification.url"].to_string();
        assert!(problems.contains(why), "{url}: {body}");
        assert!(!problems.contains(url), "the URL is not repeated: {body}");
    }
    let (status, body) = bird
        .send(json!({"receiver": to(TO), "body": {"type": "text", "text": {"text": "hi"}}, "notification": {"url": 7}}))
        .await;
    assert_invalid(status, &body, "notification.url");
    // Nothing was stored or charged.
    assert_eq!(balance(&app, &t).await, (100, 0));
    let (_, list) = bird.list("limit=10").await;
    assert_eq!(list["results"].as_array().map(Vec::len), Some(0), "{list}");
    // A public URL is taken.
    let m = bird.accepted(send("https://example.com/hook?token=abc")).await;
    assert_eq!(m["notification"]["url"], "https://example.com/hook?token=abc", "{m}");
    app.stop().await;

    // The operator allows a range: a URL in it is taken, one beside it still refused.
    let app =
        TestApp::start(switchboard::Settings { tenant_url_allow_cidrs: vec!["10.1.0.0/16".into()], ..settings }).await;
    let (_, bird) = tenant(&app, 100, 0).await;
    bird.accepted(send("http://10.1.2.3:8080/hook")).await;
    let (status, body) = bird.send(send("http://10.2.0.1/hook")).await;
    assert_invalid(status, &body, "notification.url");
    app.stop().await;
    db.remove().await;
}
