//! The SMPP server of the real binary: receipts owed to an ESME that had no receiver bound
//! when the server was killed are delivered when one binds after the restart. On SQLite, and
//! on PostgreSQL with `TEST_POSTGRES_URL`.

use std::time::{Duration, Instant};

use rusmpp::CommandStatus;
use rusmpp::tlvs::TlvValue;
use switchboard_client::AdminClient;
use switchboard_domain::{MessageId, MessageStatus};
use switchboard_smpp_server::testing::{Esme, Mode, short_text, text_sm};
use switchboard_storage::testing::TestDatabase;

use super::{Server, TOKEN, cli, free_port, funded_account, temp_dir};

const SENDER: &str = "+18005559876";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_receipts_pending_survive_a_restart_sqlite() {
    let db = TestDatabase::sqlite();
    receipts_survive_a_restart("smpp-restart", &db.url).await;
    db.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smpp_receipts_pending_survive_a_restart_postgres() {
    let Some(db) = TestDatabase::postgres("smpp_restart").await else { return };
    receipts_survive_a_restart("smpp-restart-pg", &db.url).await;
    db.remove().await;
}

async fn receipts_survive_a_restart(name: &str, database_url: &str) {
    let dir = temp_dir(name);
    let (port, smpp_port) = (free_port(), free_port());
    let smpp_listen = format!("127.0.0.1:{smpp_port}");
    let keys = dir.join("server-keys").display().to_string();
    let env = [
        ("SWITCHBOARD_DATABASE_URL", database_url),
        ("SWITCHBOARD_SERVER_KEYS_FILE", keys.as_str()),
        ("SWITCHBOARD_SIMULATOR_RECEIPT_DELAY_MS", "50"),
        ("SWITCHBOARD_SMPP_SERVER__ENABLED", "true"),
        ("SWITCHBOARD_SMPP_SERVER__LISTEN", smpp_listen.as_str()),
        ("SWITCHBOARD_SMPP_SERVER__DELIVER_POLL_MS", "20"),
    ];
    let server = Server::start_with(&dir, port, &env);
    server.ready().await;
    let smpp: std::net::SocketAddr = smpp_listen.parse().unwrap();
    let (account, _) = funded_account(&server.url, name, SENDER, 100).await;
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    // The credential, made and listed with the command line.
    let id = account.id.to_string();
    let made = cli(&server.url, &["smpp", "create", &id, "--system-id", "restart01", "--max-binds", "3"]);
    assert_eq!((made["systemId"].as_str(), made["maxBinds"].as_u64()), (Some("restart01"), Some(3)));
    let password = made["password"].as_str().expect("the password, shown once").to_owned();
    let listed = cli(&server.url, &["smpp", "list", &id]);
    assert_eq!(listed["data"][0]["systemId"], "restart01");
    assert!(listed["data"][0].get("password").is_none());

    // A transmitter sends three messages asking for receipts; nothing receives them.
    let mut transmitter = Esme::bound(smpp, Mode::Transmitter, "restart01", &password).await;
    let binds = cli(&server.url, &["smpp", "binds"]);
    assert_eq!(
        (binds["data"][0]["systemId"].as_str(), binds["data"][0]["mode"].as_str()),
        (Some("restart01"), Some("transmitter"))
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, id) = transmitter.submit(text_sm(SENDER, "+18005551234", &format!("before {i}"))).await;
        assert_eq!(status, CommandStatus::EsmeRok);
        ids.push(id.unwrap());
    }
    for id in &ids {
        let id: MessageId = id.parse().unwrap();
        let start = Instant::now();
        while admin.message(id).await.unwrap().status != MessageStatus::Delivered {
            assert!(start.elapsed() < Duration::from_secs(20), "{id} was never delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(transmitter);
    server.kill();

    let server = Server::start_with(&dir, port, &env);
    server.ready().await;
    let mut receiver = Esme::bound(smpp, Mode::Receiver, "restart01", &password).await;
    let mut receipted = Vec::new();
    while receipted.len() < ids.len() {
        let (sequence, d) = receiver.next_deliver().await;
        receiver.answer(sequence, CommandStatus::EsmeRok).await;
        assert!(short_text(&d).contains("stat:DELIVRD"), "{}", short_text(&d));
        for tlv in d.tlvs() {
            if let Some(TlvValue::ReceiptedMessageId(id)) = tlv.value() {
                receipted.push(id.as_str().to_owned());
            }
        }
    }
    receipted.sort();
    ids.sort();
    assert_eq!(receipted, ids, "each receipt once");
    let revoked = cli(&server.url, &["smpp", "revoke", &id, "restart01"]);
    assert!(revoked["revokedAt"].is_string());
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}
