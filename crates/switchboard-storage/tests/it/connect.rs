//! An unreachable PostgreSQL is reported with its cause, quickly, rather than as a pool that
//! timed out.

use std::time::{Duration, Instant};

use switchboard_storage::testing::POSTGRES_URL_VAR;
use switchboard_storage::{ConnectOptions, StorageError, connect};

/// Connects to `url` and returns the error's text, checking that it came within the promised
/// five seconds (and a margin for a loaded machine).
async fn failure(url: &str) -> String {
    let started = Instant::now();
    let Err(err) = connect(url, &ConnectOptions::default()).await else { panic!("{url}: the connection must fail") };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(7), "{url}: took {took:?}");
    assert!(matches!(err, StorageError::Unreachable(_)), "{url}: {err:?}");
    let text = err.to_string();
    assert!(!text.contains("timed out"), "{url}: {text}");
    text
}

#[tokio::test]
async fn a_closed_port_is_named_refused() {
    let text = failure("postgres://postgres@127.0.0.1:1/test").await;
    assert!(text.contains("127.0.0.1:1 refused the connection"), "{text}");
}

#[tokio::test]
async fn an_unknown_host_is_named_a_resolution_failure() {
    let text = failure("postgres://postgres@switchboard-no-such-host.invalid:5432/test").await;
    assert!(text.contains("cannot resolve the host name \"switchboard-no-such-host.invalid\""), "{text}");
}

/// The test server's URL with the user replaced, or `None` outside CI without a server.
fn test_server_as(user: &str, query: &str) -> Option<String> {
    let Ok(url) = std::env::var(POSTGRES_URL_VAR) else {
        assert!(std::env::var_os("CI").is_none(), "{POSTGRES_URL_VAR} must be set under CI");
        eprintln!("skipped: set {POSTGRES_URL_VAR} to run it");
        return None;
    };
    let server: sqlx::postgres::PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    let (host, port, database) = (server.get_host(), server.get_port(), server.get_database().unwrap_or("postgres"));
    Some(format!("postgres://{user}@{host}:{port}/{database}?{query}"))
}

#[tokio::test]
async fn an_unknown_role_is_named_an_authentication_failure() {
    let Some(url) = test_server_as("sb_no_such_role", "") else { return };
    let text = failure(&url).await;
    assert!(text.contains("refused to authenticate user \"sb_no_such_role\""), "{text}");
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_named_a_tls_failure() {
    // The CA bundle of the system does not hold the test server's certificate (a self-signed
    // one, or none at all when the server has TLS off): either way the TLS handshake fails.
    let Some(url) = test_server_as("postgres", "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt")
    else {
        return;
    };
    let text = failure(&url).await;
    assert!(text.contains("TLS with"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_named_within_five_seconds() {
    // A port that takes the connection and then says nothing, as a stuck server or a proxy
    // in front of a dead one would.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let text = failure(&format!("postgres://postgres@127.0.0.1:{port}/test")).await;
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(text.contains(&format!("127.0.0.1:{port} did not answer within 5 s")), "{text}");
    hold.abort();
}
