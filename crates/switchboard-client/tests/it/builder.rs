//! The base URL, the given `reqwest::Client`, timeouts and the user agent.

use std::time::Duration;

use switchboard_client::{AdminClient, ClientError, MudbaseAuth, MudbaseClient, Switchboard, TextingLineClient, Uuid};

use crate::{MESSAGE, Scripted, Step};

#[test]
fn base_urls_are_checked() {
    for bad in [
        "",
        "sms.example.com",
        "ftp://sms.example.com",
        "http://user:secret@sms.example.com",
        "https://sms.example.com/?region=eu",
        "https://sms.example.com/#top",
        "http://",
    ] {
        match Switchboard::new(bad) {
            Err(ClientError::InvalidBaseUrl { url, reason }) => {
                assert_eq!(url, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let err = TextingLineClient::new("http://user:secret@h", "key", "sk").unwrap_err().to_string();
    assert!(err.contains("credentials do not go in the URL"), "{err}");
    for good in ["http://127.0.0.1:8080", "https://sms.example.com/", "https://example.com/switchboard/"] {
        let base = Switchboard::new(good).unwrap();
        assert!(!base.base_url().ends_with('/'), "{}", base.base_url());
    }
}

#[test]
fn settings_that_do_not_go_together_are_refused() {
    let err = Switchboard::builder("http://127.0.0.1:1")
        .http_client(reqwest::Client::new())
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(matches!(&err, ClientError::Config(m) if m.contains("connect_timeout")), "{err:?}");
    let err = Switchboard::builder("http://127.0.0.1:1").user_agent("bad\nagent").build().unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_prefix_the_user_agent_and_escaped_ids() {
    let server = Scripted::start(vec![Step::Answer(200, vec![], MESSAGE.into())]).await;
    let tl = Switchboard::builder(format!("{}/gateway/", server.url))
        .user_agent("orders/2.1")
        .build()
        .unwrap()
        .textingline("key_a", "sk_a");
    tl.message("msg_DsAdb4EBYBh3z25sBA1qnv").await.unwrap();
    // An id cannot walk out of its path segment.
    let _ = tl.message("../../admin/v1/accounts?x=1").await;
    let seen = server.seen();
    assert_eq!(seen[0].line, "GET /gateway/api/v1/messaging/message/msg_DsAdb4EBYBh3z25sBA1qnv HTTP/1.1");
    assert_eq!(seen[0].header("user-agent"), Some("orders/2.1"));
    assert_eq!(seen[0].header("authorization"), Some("Basic a2V5X2E6c2tfYQ=="));
    assert_eq!(seen[1].line, "GET /gateway/api/v1/messaging/message/..%2F..%2Fadmin%2Fv1%2Faccounts%3Fx%3D1 HTTP/1.1");

    let own = Switchboard::new(&server.url).unwrap().admin("tok");
    let _ = own.account(Uuid::nil()).await;
    let last = server.seen().pop().unwrap();
    assert_eq!(last.header("user-agent"), Some(concat!("switchboard-client/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(last.header("authorization"), Some("Bearer tok"));
}

#[tokio::test]
async fn a_given_client_is_the_one_that_sends() {
    let server = Scripted::start(vec![Step::Answer(200, vec![], MESSAGE.into())]).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-tenant", "blue".parse().unwrap());
    let given = reqwest::Client::builder().default_headers(headers).user_agent("given/1").build().unwrap();
    let switchboard = Switchboard::builder(&server.url).http_client(given).build().unwrap();
    switchboard.textingline("key_a", "sk_a").message("msg_DsAdb4EBYBh3z25sBA1qnv").await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].header("x-tenant"), Some("blue"));
    assert_eq!(seen[0].header("user-agent"), Some("given/1"), "its own user agent, none set on the builder");
}

#[tokio::test]
async fn a_request_that_outlives_the_timeout_fails_as_a_timeout() {
    let server = Scripted::start(vec![Step::Stall(Duration::from_secs(3))]).await;
    let admin = Switchboard::builder(&server.url).timeout(Duration::from_millis(200)).build().unwrap().admin("tok");
    let started = std::time::Instant::now();
    let err = admin.upstreams().await.unwrap_err();
    assert!(matches!(&err, ClientError::Http(e) if e.is_timeout()), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // The admin API is tried once: reads and writes alike are the caller's to repeat.
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn debug_output_hides_secrets() {
    let tl = TextingLineClient::new("http://127.0.0.1:1", "key_a", "sk_topsecret").unwrap();
    let admin = AdminClient::new("http://127.0.0.1:1", "operator-topsecret").unwrap();
    let mb = MudbaseClient::new("http://127.0.0.1:1", Uuid::nil(), MudbaseAuth::ApiKey("key_a:sk_topsecret".into()))
        .unwrap();
    for shown in [format!("{tl:?}"), format!("{admin:?}"), format!("{mb:?}")] {
        assert!(!shown.contains("topsecret"), "{shown}");
    }
    assert!(format!("{tl:?}").contains("key_a"));
}
