//! The access log as an operator reads it: one JSON line per request at the default level, with
//! the request's id (the client's `X-Request-Id`, or one made and returned), its route template,
//! status, latency and account, and never a phone number, a body or a secret.

use super::*;

/// Starts the binary with JSON logs at the default level, its standard error in `log`.
fn start_logging(dir: &Path, port: u16, log: &Path) -> Child {
    start_logging_at(dir, port, log, None)
}

/// Starts the binary with JSON logs filtered by `filter` (`RUST_LOG`), else at the default level.
fn start_logging_at(dir: &Path, port: u16, log: &Path, filter: Option<&str>) -> Child {
    let mut command = Command::new(BIN);
    match filter {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    command
        .args(["serve", "--log-format", "json", "--data-dir"])
        .arg(dir)
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
        .env("SWITCHBOARD_SENT_WAIT_MS", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start the binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_id_and_one_access_line() {
    let dir = temp_dir("access");
    let log = dir.join("stderr.log");
    let port = free_port();
    let server =
        Server { child: start_logging(&dir.join("data"), port, &log), url: format!("http://127.0.0.1:{port}") };
    server.ready().await;
    let (account, key) = funded_account(&server.url, "logs", "+18005559876", 10).await;

    let http = reqwest::Client::new();
    let send = |id: Option<&str>, secret: &str| {
        let mut req = http
            .post(format!("{}/api/v1/messaging/message", server.url))
            .basic_auth(&key.key.id, Some(secret))
            .json(&serde_json::json!({"to": "+18005551234", "from": "+18005559876", "body": "Your code is 9931"}));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        req.send()
    };
    let sent = send(Some("order-4711.retry:2"), &key.secret).await.unwrap();
    assert_eq!(sent.status(), 201);
    assert_eq!(sent.headers()["x-request-id"], "order-4711.retry:2");
    let refused = send(Some("not sane; has spaces"), "sk_wrong").await.unwrap();
    assert_eq!(refused.status(), 401);
    let made = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(made.len() == 20 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    let message = sent.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let read = http
        .get(format!("{}/api/v1/messaging/message/{message}", server.url))
        .basic_auth(&key.key.id, Some(&key.secret))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);

    // Ask it to stop, so that the log is written out, and read it.
    let Server { mut child, .. } = server;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == "switchboard::access").collect();
    let line = |id: &str| {
        access.iter().find(|l| l["span"]["id"] == id).unwrap_or_else(|| panic!("no access line for {id}:\n{text}"))
    };
    let ok = line("order-4711.retry:2");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(
        (&ok["fields"]["method"], &ok["fields"]["route"], &ok["fields"]["status"]),
        (&Value::from("POST"), &Value::from("/api/v1/messaging/message"), &Value::from(201))
    );
    assert!(ok["fields"]["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{ok}");
    assert_eq!(ok["span"]["account"], account.id.to_string());
    let bad = line(&made);
    assert_eq!((&bad["fields"]["status"], bad["span"].get("account")), (&Value::from(401), None));
    assert!(
        access.iter().any(|l| l["fields"]["route"] == "/api/v1/messaging/message/{id}" && l["fields"]["status"] == 200),
        "{text}"
    );
    // The admin calls are logged too, one line each.
    assert!(
        access.iter().filter(|l| l["fields"]["route"].as_str().is_some_and(|r| r.starts_with("/admin/"))).count() >= 4
    );
    for private in ["18005551234", "Your code", &key.secret, TOKEN, &message] {
        assert!(!text.contains(private), "{private} is in the log:\n{text}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatchers_lines_of_a_message_carry_its_request_id() {
    let dir = temp_dir("message-log");
    let log = dir.join("stderr.log");
    let port = free_port();
    let filter = Some("info,switchboard_core::dispatcher=debug");
    let server = Server {
        child: start_logging_at(&dir.join("data"), port, &log, filter),
        url: format!("http://127.0.0.1:{port}"),
    };
    server.ready().await;
    let (_, key) = funded_account(&server.url, "message-logs", "+18005559876", 10).await;
    let client = TextingLineClient::new(&server.url, &key.key.id, &key.secret).unwrap();
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{}/api/v1/messaging/message", server.url))
        .basic_auth(&key.key.id, Some(&key.secret))
        .header("x-request-id", "checkout-42")
        .json(&serde_json::json!({"to": "+18005551234", "from": "+18005559876", "body": "Your code is 9931"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let id = sent.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // The dispatcher sends it after the answer (sent_wait_ms = 0): wait until it has.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.message(&id).await.unwrap().status == switchboard_domain::wire::TlStatus::Queued {
        assert!(Instant::now() < deadline, "the message was never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let Server { mut child, .. } = server;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let sent_line = lines
        .iter()
        .find(|l| l["target"] == "switchboard_core::dispatcher" && l["fields"]["message"] == "sent")
        .unwrap_or_else(|| panic!("no dispatcher line for the message:\n{text}"));
    assert_eq!(sent_line["span"]["name"], "message", "{sent_line}");
    assert_eq!(sent_line["span"]["request"], "checkout-42", "{sent_line}");
    assert_eq!(sent_line["span"]["id"], id, "{sent_line}");
    assert!(!text.contains("18005551234") && !text.contains("Your code"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}
