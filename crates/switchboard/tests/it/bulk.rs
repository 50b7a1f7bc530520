//! `switchboard send --csv` as a marketer runs it: priced and checked before anything is sent,
//! killed midway and run again without a message sent twice or a credit charged twice.

use std::io::Write as _;

use switchboard_domain::wire::Balance;

use super::*;

/// An account with the sender and `credits` SMS credits, and its API key as `id:secret`.
async fn new_account(server: &Server, name: &str, sender: &str, credits: i64) -> (uuid::Uuid, String) {
    let (account, key) = funded_account(&server.url, name, sender, credits).await;
    (account.id, format!("{}:{}", key.key.id, key.secret))
}

/// A CSV of `rows` valid recipients with a `name` column for the template.
fn csv_file(dir: &Path, name: &str, rows: usize) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(file, "to,name").unwrap();
    for i in 0..rows {
        writeln!(file, "+1800{:07},Customer {i}", 2_000_000 + i).unwrap();
    }
    file.flush().unwrap();
    path
}

/// `switchboard send --csv …` against the server with the key.
fn send_command(server: &Server, key: &str, csv: &Path, extra: &[&str]) -> Command {
    send_from(server, key, "+18005559876", csv, extra)
}

/// `switchboard send --csv …` from `from`.
fn send_from(server: &Server, key: &str, from: &str, csv: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["send", "--csv"])
        .arg(csv)
        .args(["--from", from, "--template", "Hello {{name}}, your order shipped."])
        .args(extra)
        .env("SWITCHBOARD_SERVER", &server.url)
        .env("SWITCHBOARD_API_KEY", key)
        .env_remove("SWITCHBOARD_PROFILE")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The account's ledger: (charges, sum of their SMS deltas).
async fn charges(server: &Server, account: uuid::Uuid) -> (usize, i64) {
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let (mut count, mut total, mut cursor) = (0, 0, None::<String>);
    loop {
        let page = admin.ledger(account, 100, cursor.as_deref()).await.unwrap();
        for e in page.data.iter().filter(|e| e.kind == "charge") {
            count += 1;
            total += e.sms_delta;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (count, total),
        }
    }
}

/// How many messages the account has.
async fn messages(server: &Server, account: uuid::Uuid) -> usize {
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let (mut count, mut cursor) = (0, None::<String>);
    loop {
        let page = admin.messages(account, 100, cursor.as_deref()).await.unwrap();
        count += page.data.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return count,
        }
    }
}

fn results_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".results.csv"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_killed_midway_and_run_again_sends_each_row_once() {
    const ROWS: usize = 1_000;
    let dir = temp_dir("bulk");
    let server = Server::start(&dir.join("data"), free_port());
    server.ready().await;
    let (account, key) = new_account(&server, "bulk", "+18005559876", 2 * ROWS as i64 + 100).await;
    let csv = csv_file(&dir, "customers.csv", ROWS);

    // The preview's price is what the whole file will be charged.
    let preview = send_command(&server, &key, &csv, &["--dry-run"]).output().unwrap();
    let said = String::from_utf8_lossy(&preview.stderr).into_owned();
    assert!(preview.status.success(), "{said}");
    assert!(said.contains(&format!("{ROWS} rows, {ROWS} valid, 0 invalid")), "{said}");
    assert!(said.contains(&format!("price: {} SMS credits and 0 MMS credits", 2 * ROWS)), "{said}");
    assert!(said.contains("dry run: nothing was sent"), "{said}");
    assert_eq!(messages(&server, account).await, 0);

    // Started slowly, and killed once a fair share is sent: as a crash or a lost laptop would.
    let mut first = send_command(&server, &key, &csv, &["--rate", "150", "--concurrency", "4"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while results_lines(&dir) < 200 {
        assert!(Instant::now() < deadline, "the first run sent too little");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before it was killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let sent_before = messages(&server, account).await;
    assert!((199..ROWS).contains(&sent_before), "{sent_before} sent before the kill");

    // The same command again finishes the job.
    let second = send_command(&server, &key, &csv, &["--concurrency", "16"]).output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{said}");
    assert_eq!(messages(&server, account).await, ROWS);
    let (count, total) = charges(&server, account).await;
    assert_eq!((count, total), (ROWS, -2 * ROWS as i64), "one charge per row");
    let http = reqwest::Client::new();
    let (id, secret) = key.split_once(':').unwrap();
    let balance: Balance = http
        .get(format!("{}/api/v1/account/balance", server.url))
        .basic_auth(id, Some(secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((balance.sms_credits, balance.mms_credits), (100, 0));

    // A third run finds nothing left to send.
    let third = send_command(&server, &key, &csv, &[]).output().unwrap();
    let said = String::from_utf8_lossy(&third.stderr).into_owned();
    assert!(third.status.success() && said.contains("every row was accepted already"), "{said}");
    assert_eq!(messages(&server, account).await, ROWS);
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_rows_and_a_short_balance_are_refused_before_anything_is_sent() {
    let dir = temp_dir("bulk-refused");
    let server = Server::start(&dir.join("data"), free_port());
    server.ready().await;

    // Bad rows: listed with their lines, and nothing sent.
    let (account, key) = new_account(&server, "bad-rows", "+18005559876", 100).await;
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "to,name\n+18002000001,Ada\n+1800,Bob\n+18002000003,Cy\nnot a number,Di\n").unwrap();
    let output = send_command(&server, &key, &bad, &[]).output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("4 rows, 2 valid, 2 invalid"), "{said}");
    assert!(said.contains("line 3: ") && said.contains("line 5: "), "{said}");
    assert!(said.contains("--skip-invalid"), "{said}");
    assert_eq!(messages(&server, account).await, 0);
    // With --skip-invalid the good rows go, and the bad ones are counted skipped.
    let output = send_command(&server, &key, &bad, &["--skip-invalid"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(messages(&server, account).await, 2);

    // A short balance: 10 rows need 20 credits, the account has 10.
    let (account, key) = new_account(&server, "short", "+18005559877", 10).await;
    let csv = csv_file(&dir, "ten.csv", 10);
    let output = send_from(&server, &key, "+18005559877", &csv, &[]).output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("the balance is short") && said.contains("nothing was sent"), "{said}");
    assert_eq!(messages(&server, account).await, 0);
    assert_eq!(charges(&server, account).await, (0, 0));
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_from_the_command_line() {
    let dir = temp_dir("send-one");
    let server = Server::start(&dir.join("data"), free_port());
    server.ready().await;
    let (account, key) = new_account(&server, "one", "+18005559876", 10).await;
    let send = |to: &str| {
        Command::new(BIN)
            .args(["send", "--to", to, "--from", "+18005559876", "--body", "Your code is 1234"])
            .args(["--url", &server.url, "--key", &key])
            .env_remove("SWITCHBOARD_API_KEY")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    };
    let ok = send("+18002000001");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let printed: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(printed["id"].as_str().unwrap().starts_with("msg_"), "{printed}");
    assert_eq!(printed["to"], "+18002000001");
    // The dialect's error, and a non-zero exit.
    let bad = send("+1800");
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("400") && said.contains("30002") && said.contains("invalid_parameter"), "{said}");
    assert_eq!(messages(&server, account).await, 1);

    // The same through Mudbase and through a Bird channel.
    let other = |args: &[&str]| {
        Command::new(BIN)
            .arg("send")
            .args(args)
            .args(["--to", "+18002000002", "--body", "Your code is 5678", "--url", &server.url, "--key", &key])
            .env_remove("SWITCHBOARD_API_KEY")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    };
    let account_id = account.to_string();
    let mudbase = other(&["--dialect", "mudbase", "--project", &account_id, "--from", "+18005559876"]);
    assert!(mudbase.status.success(), "{}", String::from_utf8_lossy(&mudbase.stderr));
    let printed: Value = serde_json::from_slice(&mudbase.stdout).unwrap();
    assert_eq!(printed["successCount"], 1, "{printed}");
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
    let channel = admin
        .create_channel(
            account,
            &switchboard_domain::wire::CreateChannel {
                name: "sms".into(),
                sender: "+18005559876".into(),
                active: true,
            },
        )
        .await
        .unwrap();
    let channel_id = channel.id.to_string();
    let bird = other(&["--dialect", "bird", "--workspace", &account_id, "--channel", &channel_id]);
    assert!(bird.status.success(), "{}", String::from_utf8_lossy(&bird.stderr));
    let printed: Value = serde_json::from_slice(&bird.stdout).unwrap();
    assert_eq!(printed["status"], "accepted", "{printed}");
    assert_eq!(messages(&server, account).await, 3);
    server.kill();
    std::fs::remove_dir_all(dir).ok();
}
