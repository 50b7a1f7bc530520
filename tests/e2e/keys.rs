//! The server's keys live outside the database: a copy of the database gives away no webhook
//! secret and lets no one make a token the server accepts, and a database of an older
//! version, which kept its secret inside, is upgraded in place without breaking its API keys,
//! access tokens or webhooks.

use std::time::Duration;

use switchboard_client::{MudbaseAuth, MudbaseClient};
use switchboard_core::ServerKeys;
use switchboard_domain::wire::webhooks::CreateWebhook;
use switchboard_domain::{AccountId, Timestamp};
use switchboard_signing::Secret;
use switchboard_storage::{ApiKeyRecord, SealedSecret, WebhookRecord};
use switchboard_tests::{Backend, Receiver, TestApp, TestDb, eventually, on_both_backends};

on_both_backends!(a_copy_of_the_database_gives_no_key_away, an_older_database_is_upgraded_in_place);

/// A connection to the test database for looking underneath the server.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn open(db: &TestDb) -> Self {
        match db.backend {
            Backend::Sqlite => Raw::Sqlite(
                rusqlite::Connection::open(db.url().trim_start_matches("sqlite://")).expect("open the SQLite file"),
            ),
            Backend::Postgres => Raw::Postgres(sqlx::PgPool::connect(db.url()).await.expect("connect")),
        }
    }

    /// Every row of a two-column query whose second column is bytes.
    async fn rows(&self, sql: &'static str) -> Vec<(String, Vec<u8>)> {
        match self {
            Raw::Sqlite(c) => {
                c.prepare(sql).and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()).expect(sql)
            }
            Raw::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.expect(sql),
        }
    }

    async fn execute(&self, sql: &'static str, name: &str, value: &[u8]) {
        match self {
            // The statements name their parameters `$1`, `$2`, which SQLite numbers in order.
            Raw::Sqlite(c) => c.execute(sql, rusqlite::params![name, value]).map(drop).expect(sql),
            Raw::Postgres(p) => sqlx::query(sql).bind(name).bind(value).execute(p).await.map(drop).expect(sql),
        }
    }

    async fn close(self) {
        match self {
            Raw::Sqlite(c) => drop(c),
            Raw::Postgres(p) => p.close().await,
        }
    }
}

const SETTINGS: &str = "SELECT name, value FROM settings ORDER BY name";
const WEBHOOK_SECRETS: &str = "SELECT url, secret FROM webhook_endpoints";
const KEY_HASHES: &str = "SELECT id, secret_hash FROM api_keys";

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// Whether the Mudbase API takes this bearer token.
async fn token_works(app: &TestApp, account: uuid::Uuid, token: &str) -> bool {
    let client = MudbaseClient::new(&app.url, account, MudbaseAuth::Bearer(token.to_owned())).unwrap();
    client.history(None, 1, 10).await.is_ok()
}

async fn a_copy_of_the_database_gives_no_key_away(backend: Backend) {
    let Some(db) = TestDb::new(backend, "keys_copy").await else { return };
    let settings = db.settings();
    let app = TestApp::start(settings.clone()).await;
    let tenant = app.provision(100, 0).await;
    let secret = Secret::generate();
    let endpoint = CreateWebhook {
        url: "https://8.8.8.8/hooks".into(),
        secret: Some(secret.expose().to_owned()),
        events: None,
        active: None,
    };
    app.admin.create_webhook(tenant.account, &endpoint).await.expect("create a webhook endpoint");
    let key_client = MudbaseClient::new(&app.url, tenant.account, MudbaseAuth::ApiKey(tenant.api_key.clone())).unwrap();
    let token = key_client.issue_token().await.expect("issue a token").access_token;
    assert!(token_works(&app, tenant.account, &token).await);
    app.stop().await;

    // The keys are in their own file, readable by its owner only.
    let key_file = settings.keys_file();
    assert_eq!(mode(&key_file), 0o600);
    let keys = switchboard::keys::read_file(&key_file).unwrap().expect("the key file");

    // The database holds no key: not in its settings, not anywhere in its file.
    let raw = Raw::open(&db).await;
    let rows = raw.rows(SETTINGS).await;
    assert_eq!(rows.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["keys_fingerprint", "keys_fingerprint_1"]);
    for (_, value) in &rows {
        assert!(!keys.found_in(value));
    }
    if backend == Backend::Sqlite {
        let path = db.url().trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(!keys.found_in(&bytes), "key material in {file}");
            }
        }
    }

    // With only what the database holds, the webhook secret does not open and no token made
    // with it is accepted.
    let sealed = raw.rows(WEBHOOK_SECRETS).await;
    assert_eq!(sealed.len(), 1);
    let sealed = SealedSecret(sealed[0].1.clone());
    let mut forged = Vec::new();
    let account = AccountId::from_uuid(tenant.account);
    let mut candidates: Vec<Vec<u8>> = rows.iter().map(|(_, v)| v.clone()).collect();
    candidates.extend(raw.rows(KEY_HASHES).await.into_iter().map(|(_, h)| h));
    for candidate in &candidates {
        for id in [0, 1, 2] {
            let guess = ServerKeys::single(id, candidate);
            assert!(guess.sealer().open(&sealed).is_err(), "the sealed secret opened");
            forged.push(guess.tokens(Duration::from_secs(900)).issue(&tenant.key_id, account, Timestamp::now()).token);
        }
    }
    raw.close().await;

    let app = TestApp::start(settings.clone()).await;
    // What the server itself issued still works after the restart.
    assert!(token_works(&app, tenant.account, &token).await);
    let (key_id, key_secret) = tenant.api_key.split_once(':').expect("id:secret");
    let listed =
        switchboard_client::TextingLineClient::new(&app.url, key_id, key_secret).unwrap().messages(Some(1), None).await;
    assert!(listed.is_ok(), "{listed:?}");
    for token in &forged {
        assert!(!token_works(&app, tenant.account, token).await, "a forged token was accepted");
    }
    app.stop().await;

    // A rotation: the new key signs and seals after the restart, and what the old one signed
    // and sealed still works.
    let said = switchboard::keys::rotate(&settings, 48, false).await.expect("rotate");
    assert!(said.contains("key 2 added"), "{said}");
    let app = TestApp::start(settings.clone()).await;
    let key_client = MudbaseClient::new(&app.url, tenant.account, MudbaseAuth::ApiKey(tenant.api_key.clone())).unwrap();
    assert!(key_client.history(None, 1, 10).await.is_ok(), "the API key still works");
    assert!(token_works(&app, tenant.account, &token).await, "a token of the retired key still works");
    let rotated = key_client.issue_token().await.expect("issue a token").access_token;
    assert!(token_works(&app, tenant.account, &rotated).await);
    let raw = Raw::open(&db).await;
    let sealed = raw.rows(WEBHOOK_SECRETS).await;
    assert!(sealed[0].1.starts_with(b"SBK1\0\0\0\x02"), "sealed again under key 2");
    let keys = switchboard::keys::read_file(&key_file).unwrap().unwrap();
    assert_eq!(keys.sealer().open(&SealedSecret(sealed[0].1.clone())).expect("opens"), secret);
    raw.close().await;
    app.stop().await;

    // A node whose key 2 is another than the installation's refuses to start, though its hash
    // key is right: two nodes never sign with different keys of one id.
    let other = key_file.with_file_name("other-keys");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let forged_line = format!("key 2 {}QUE=", "QUFB".repeat(10));
    let text: Vec<String> =
        text.lines().map(|l| if l.starts_with("key 2 ") { forged_line.clone() } else { l.to_owned() }).collect();
    std::fs::write(&other, text.join("\n")).unwrap();
    let refused = switchboard::build(&switchboard::Settings { server_keys_file: Some(other), ..settings.clone() })
        .await
        .expect_err("started with another key 2");
    assert!(format!("{refused:#}").contains("keys_fingerprint_2 differs"), "{refused:#}");
    db.remove().await;
}

async fn an_older_database_is_upgraded_in_place(backend: Backend) {
    let Some(db) = TestDb::new(backend, "keys_upgrade").await else { return };
    let settings = db.settings();
    // An older version's database: its secret in `settings`, an API key hashed with it, an
    // endpoint's secret sealed with it (as key 0, no header), and a token it signed.
    switchboard::migrate(&settings).await.expect("migrate");
    let legacy_secret: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37).wrapping_add(11)).collect();
    let legacy = ServerKeys::single(0, &legacy_secret);
    let raw = Raw::open(&db).await;
    raw.execute("INSERT INTO settings (name, value) VALUES ($1, $2)", "key_hash_secret", &legacy_secret).await;
    let store = switchboard_storage::connect(db.url(), &Default::default()).await.expect("open the store");
    let account = store.create_account("Old").await.expect("create an account");
    store.top_up(account.id, switchboard_ledger::Credits { sms: 100, mms: 0 }, None).await.expect("top up");
    let (key_id, key_secret) = ("key_0123456789abcdef".to_owned(), format!("sk_{}", "ab".repeat(32)));
    store
        .create_api_key(&ApiKeyRecord {
            id: key_id.clone(),
            account_id: account.id,
            name: None,
            secret_hash: legacy.hasher().hash(&key_secret),
            created_at: Timestamp::now(),
            revoked_at: None,
        })
        .await
        .expect("create the key");
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let endpoint_secret = Secret::generate();
    let old_sealed = legacy.sealer().seal(&endpoint_secret);
    store
        .create_webhook(&WebhookRecord {
            id: uuid::Uuid::now_v7(),
            account_id: account.id,
            url: receiver.url.clone(),
            secret: old_sealed.clone(),
            events: Vec::new(),
            active: true,
            created_at: Timestamp::now(),
        })
        .await
        .expect("create the endpoint");
    let old_token =
        legacy.tokens(Duration::from_secs(900)).issue(&key_id, account.id, Timestamp::now().plus_millis(-2_000)).token;
    drop(store);

    // Keys from elsewhere that do not hold the old secret are refused, and the secret stays.
    let foreign =
        ServerKeys::generate().to_text().lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join(";");
    let refused = switchboard::build(&switchboard::Settings { server_keys: Some(foreign), ..settings.clone() })
        .await
        .expect_err("started with keys that lose the old secret");
    assert!(format!("{refused:#}").contains("still holds the server secret of an older version"), "{refused:#}");
    assert_eq!(raw.rows(SETTINGS).await, vec![("key_hash_secret".to_owned(), legacy_secret.clone())]);

    // The new version starts on it with no key file.
    let app = TestApp::start(settings.clone()).await;
    let tenant_uuid = account.id.as_uuid();
    let key_client =
        MudbaseClient::new(&app.url, tenant_uuid, MudbaseAuth::ApiKey(format!("{key_id}:{key_secret}"))).unwrap();
    assert!(key_client.history(None, 1, 10).await.is_ok(), "the old API key works");
    assert!(token_works(&app, tenant_uuid, &old_token).await, "the old token works");
    let new_token = key_client.issue_token().await.expect("a new token").access_token;
    assert!(token_works(&app, tenant_uuid, &new_token).await);

    // The secret left the database for the key file, and the endpoint's secret was sealed again
    // under the new key.
    let key_file = settings.keys_file();
    assert_eq!(mode(&key_file), 0o600);
    let keys = switchboard::keys::read_file(&key_file).unwrap().expect("the key file");
    assert_eq!(keys.ids(), vec![1, 0]);
    let rows = raw.rows(SETTINGS).await;
    assert_eq!(
        rows.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["keys_fingerprint", "keys_fingerprint_0", "keys_fingerprint_1"]
    );
    let sealed = raw.rows(WEBHOOK_SECRETS).await;
    assert!(sealed[0].1.starts_with(b"SBK1"), "sealed again under key 1");
    assert!(legacy.sealer().open(&SealedSecret(sealed[0].1.clone())).is_err());

    // Webhooks are still signed with the endpoint's secret: send a message and check.
    let sender = "+18005550199";
    app.admin
        .add_sender(
            tenant_uuid,
            &switchboard_domain::wire::CreateSender { address: sender.into(), active: true, sms: true, mms: false },
        )
        .await
        .expect("add a sender");
    let tl = switchboard_client::TextingLineClient::new(&app.url, &key_id, &key_secret).unwrap();
    let request = switchboard_domain::wire::TlSendRequest {
        to: "+14155550100".into(),
        from: sender.into(),
        body: Some("after the upgrade".into()),
        ..Default::default()
    };
    assert_eq!(tl.send(&request).await.expect("send").status, reqwest::StatusCode::CREATED);
    let delivered = eventually("a webhook", Duration::from_secs(20), || async {
        receiver.requests().into_iter().find(|r| r.answered < 300)
    })
    .await;
    let ts: i64 = delivered.timestamp.parse().unwrap();
    let now = Timestamp::now().millis() / 1000;
    assert!(switchboard_signing::verify(
        &endpoint_secret,
        &delivered.id,
        ts,
        &delivered.body,
        &delivered.signature,
        now,
        300
    ));
    app.stop().await;

    // The old secret is gone from the database's files, not only from its table.
    if backend == Backend::Sqlite {
        let path = db.url().trim_start_matches("sqlite://");
        for file in [path.to_owned(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                assert!(!legacy.found_in(&bytes), "the old secret is still in {file}");
            }
        }
    }

    // A second start reads the key file: the same keys, and everything still works.
    let app = TestApp::start(settings.clone()).await;
    assert_eq!(switchboard::keys::read_file(&key_file).unwrap().unwrap(), keys);
    let key_client =
        MudbaseClient::new(&app.url, tenant_uuid, MudbaseAuth::ApiKey(format!("{key_id}:{key_secret}"))).unwrap();
    assert!(key_client.history(None, 1, 10).await.is_ok());
    assert!(token_works(&app, tenant_uuid, &new_token).await);
    app.stop().await;

    // Without the key file, the server refuses to start rather than make other keys.
    std::fs::remove_file(&key_file).unwrap();
    let refused = switchboard::build(&settings).await.expect_err("started without its keys");
    assert!(format!("{refused:#}").contains("server keys are missing"), "{refused:#}");
    raw.close().await;
    db.remove().await;
}
