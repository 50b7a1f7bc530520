//! The `switchboard` binary as a user runs it: killed mid-flight and restarted, backed up under
//! load and restored, and the admin command line.

mod access_log;
#[cfg(unix)]
mod backup;
mod bulk;
mod config;
#[cfg(unix)]
mod connections;
#[cfg(unix)]
mod file_modes;
mod receipts;
mod retention;
mod smpp;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_client::{AdminClient, TextingLineClient};
use switchboard_domain::MessageStatus;
use switchboard_domain::wire::{CreateSender, TlSendRequest, TopUp};

const TOKEN: &str = "binary-test-operator-token-42";
const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, &[])
    }

    /// Starts the binary as [`Server::start`] does, with more `SWITCHBOARD_*` variables.
    fn start_with(dir: &Path, port: u16, env: &[(&str, &str)]) -> Self {
        let child = Command::new(BIN)
            .arg("serve")
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", dir.join("sb.db").display()))
            .env("SWITCHBOARD_DATA_DIR", dir)
            .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
            .env("SWITCHBOARD_SENT_WAIT_MS", "0")
            .env("SWITCHBOARD_PROVIDER_TIMEOUT_MS", "500")
            .env("SWITCHBOARD_DISPATCH_POLL_MS", "50")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the binary");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if reqwest::get(format!("{}/healthz", self.url)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start");
    }

    fn kill(mut self) {
        // SIGKILL: no shutdown code runs, as in a crash or power cut of the process.
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An account with `sender` (SMS only), `credits` SMS credits, and an API key.
async fn funded_account(
    url: &str,
    name: &str,
    sender: &str,
    credits: i64,
) -> (switchboard_domain::wire::Account, switchboard_domain::wire::ApiKeyCreated) {
    let admin = AdminClient::new(url, TOKEN).unwrap();
    let account = admin.create_account(name).await.unwrap();
    admin
        .add_sender(account.id, &CreateSender { address: sender.into(), active: true, sms: true, mms: false })
        .await
        .unwrap();
    admin.top_up(account.id, &TopUp { sms: credits, mms: 0, reference: None }).await.unwrap();
    let key = admin.create_key(account.id, None).await.unwrap();
    (account, key)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepted_messages_survive_a_crash() {
    const N: usize = 100;
    let dir = temp_dir("crash");
    let port = free_port();
    let server = Server::start(&dir, port);
    server.ready().await;
    let (account, key) = funded_account(&server.url, "crash", "+18005559876", 1000).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let client = TextingLineClient::new(&server.url, &key.key.id, &key.secret).unwrap();

    let sends = (0..N).map(|i| {
        let c = client.clone();
        tokio::spawn(async move {
            let req = TlSendRequest {
                to: "+18005551234".into(),
                from: "+18005559876".into(),
                body: Some(format!("m{i}")),
                ..Default::default()
            };
            c.send(&req).await.unwrap().message.id
        })
    });
    let mut accepted = Vec::new();
    for s in sends {
        accepted.push(s.await.unwrap());
    }
    server.kill();

    let server = Server::start(&dir, port);
    server.ready().await;
    let balance = admin.balance(account.id).await.unwrap();
    assert_eq!(balance.sms_credits, 1000 - 2 * N as i64, "every accepted message was charged once");
    let stored = admin.messages(account.id, 1000, None).await.unwrap().data;
    assert_eq!(stored.len(), N, "every accepted message is on disk");
    // Whatever the dispatcher had claimed when it died is taken again once its lease ends.
    for id in accepted {
        let start = Instant::now();
        loop {
            let m = admin.message(id).await.unwrap();
            // Sent, and perhaps already delivered: the simulator reports each message
            // delivered a second after it was sent.
            if m.sent_at.is_some() {
                assert!(matches!(m.status, MessageStatus::Sent | MessageStatus::Delivered), "{m:?}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{id} was never sent after the restart: {m:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}

fn cli(url: &str, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("admin")
        .args(["--server", url])
        .args(args)
        .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_operates_a_server() {
    let dir = temp_dir("cli");
    let server = Server::start(&dir, free_port());
    server.ready().await;
    let url = server.url.clone();
    let account = cli(&url, &["accounts", "create", "--name", "Acme"]);
    let id = account["id"].as_str().unwrap().to_owned();
    let key = cli(&url, &["keys", "create", &id, "--name", "app"]);
    assert!(key["secret"].as_str().unwrap().starts_with("sk_"));
    assert_eq!(
        key["apiKey"].as_str().unwrap(),
        format!("{}:{}", key["id"].as_str().unwrap(), key["secret"].as_str().unwrap())
    );
    assert_eq!(cli(&url, &["accounts", "set-rate-limit", &id, "--rate", "250"])["rateLimit"], 250);
    assert!(cli(&url, &["accounts", "set-rate-limit", &id, "--default"]).get("rateLimit").is_none());
    cli(&url, &["senders", "add", &id, "+18005559876", "--mms"]);
    let entry = cli(&url, &["credits", "top-up", &id, "--sms", "10", "--mms", "2", "--reference", "inv-1"]);
    assert_eq!(entry["smsBalance"], 10);
    let client = TextingLineClient::new(&url, key["id"].as_str().unwrap(), key["secret"].as_str().unwrap()).unwrap();
    let req = TlSendRequest {
        to: "+18005551234".into(),
        from: "+18005559876".into(),
        body: Some("hi".into()),
        ..Default::default()
    };
    let m = client.send(&req).await.unwrap().message;
    let balance = cli(&url, &["credits", "balance", &id]);
    assert_eq!((balance["smsCredits"].as_i64(), balance["mmsCredits"].as_i64()), (Some(8), Some(2)));
    let listed = cli(&url, &["messages", "list", &id]);
    assert_eq!(listed["data"][0]["id"], m.id.to_string());
    let shown = cli(&url, &["messages", "get", &m.id.to_string()]);
    assert_eq!(shown["events"][0]["status"], "accepted");
    assert_eq!(shown["destination"], serde_json::json!({"valid": true, "numberType": "toll_free", "country": "US"}));
    // The account's destinations: US and Canada only, no fixed-or-mobile numbers.
    let limited = cli(&url, &["accounts", "set-destinations", &id, "--countries", "us,CA", "--fixed-or-mobile", "off"]);
    assert_eq!(
        (&limited["allowedCountries"], &limited["acceptFixedOrMobile"]),
        (&serde_json::json!(["CA", "US"]), &Value::Bool(false))
    );
    let landline_or_mobile = TlSendRequest { to: "+14155550100".into(), ..req.clone() };
    let refused = client.send(&landline_or_mobile).await.unwrap().message;
    assert_eq!(refused.error_type, Some(switchboard_domain::ErrorType::InvalidDestination));
    let everywhere = cli(&url, &["accounts", "set-destinations", &id, "--all-countries", "--fixed-or-mobile", "on"]);
    assert_eq!(
        (&everywhere["allowedCountries"], &everywhere["acceptFixedOrMobile"]),
        (&Value::Null, &Value::Bool(true))
    );
    let out = Command::new(BIN)
        .args(["admin", "--server", &url, "accounts", "set-destinations", &id])
        .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nothing to change"));
    cli(&url, &["opt-outs", "add", &id, "+18005559876", "+18005551234"]);
    assert_eq!(cli(&url, &["opt-outs", "list", &id])["data"].as_array().unwrap().len(), 1);
    cli(&url, &["senders", "update", &id, "+18005559876", "--active", "false"]);
    assert_eq!(cli(&url, &["senders", "list", &id])["data"][0]["active"], false);
    let keys = cli(&url, &["keys", "list", &id]);
    assert!(!keys.to_string().contains(key["secret"].as_str().unwrap()));
    cli(&url, &["keys", "revoke", &id, key["id"].as_str().unwrap()]);
    assert_eq!(client.send(&req).await.unwrap_err().status().map(|s| s.as_u16()), Some(401));
    // A wrong token fails with the server's message.
    let out = Command::new(BIN)
        .args(["admin", "--server", &url, "--token", "wrong-token-wrong-token", "accounts", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn openapi_and_migrate_commands() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/api/v1/messaging/message"].is_object());
    let dir = temp_dir("migrate");
    let out = Command::new(BIN)
        .args(["migrate", "--database-url", &format!("sqlite://{}", dir.join("m.db").display())])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("m.db").exists());
    std::fs::remove_dir_all(dir).ok();
}
