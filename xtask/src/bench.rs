//! `cargo xtask bench`: the release server on embedded SQLite (WAL, fsync on every commit)
//! with the simulator, under a bounded load at the TextingLine, Mudbase and Bird endpoints.
//!
//! For each scenario it sends a fixed number of requests from a fixed number of concurrent
//! connections and reports accepted messages/s, latency percentiles, and how fast the
//! dispatcher handed the accepted messages to the provider (read from `/metrics`).
//!
//! The receipt scenario also has the simulator report every message delivered at once and a
//! webhook endpoint take every `message.delivered` event, and reports how fast messages went
//! from accepted to delivered and their events reached the receiver. The run stops by itself:
//! every loop is bounded by the request count and a deadline.
//!
//! The SMPP intake scenario (`smpp-in`) has the load generator bind to the SMPP server as
//! several ESMEs (transmitters), each keeping its window (10, then 100) of `submit_sm` in
//! flight, and reports accepted messages/s and the time from `submit_sm` to `submit_sm_resp`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::json;
use switchboard_client::AdminClient;
use switchboard_domain::wire::{CreateChannel, CreateSender, TopUp};

const TOKEN: &str = "bench-operator-token-0123456789";
pub(crate) const DEADLINE: Duration = Duration::from_secs(300);

struct Options {
    requests: usize,
    concurrency: Vec<usize>,
    batch: usize,
    /// Only these scenarios (`tl`, `mudbase`, `bird`, `receipts`, `smpp`, `smpp-in`); all when
    /// empty.
    only: Vec<String>,
}

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// What the load sends.
#[derive(Clone)]
pub(crate) enum Dialect {
    /// TextingLine: one SMS per request, HTTP Basic.
    TextingLine,
    /// Mudbase: `batch` recipients per request, `X-API-Key`.
    Mudbase { project: String, batch: usize },
    /// Bird channels: one text message per request, `Authorization: AccessKey`.
    Bird { workspace: String, channel: String },
    /// Kannel's `sendsms` (for `cargo xtask bench-kannel`): one SMS per `GET`, the user and
    /// password in the query.
    Kannel,
}

/// Which load a scenario puts on its server.
#[derive(Clone, Copy)]
pub(crate) enum Load {
    TextingLine,
    Mudbase {
        batch: usize,
    },
    Bird,
    /// TextingLine sends followed to `delivered`, with a webhook per delivered message.
    Receipts,
    /// TextingLine sends relayed over SMPP to a fake SMSC on loopback.
    Smpp,
}

/// The seven digits after `+1800` of the `i`-th request's recipient: a different valid US
/// toll-free number for each of 8 million requests (the exchange after `800` starts with 2 to
/// 9, as the plan requires), so every message passes the destination lookup as real traffic
/// would.
fn recipient(i: usize) -> usize {
    2_000_000 + i % 8_000_000
}

impl Dialect {
    fn recipients(&self) -> usize {
        match self {
            Dialect::TextingLine | Dialect::Bird { .. } | Dialect::Kannel => 1,
            Dialect::Mudbase { batch, .. } => *batch,
        }
    }

    /// The whole HTTP/1.1 request number `i`.
    fn request(&self, addr: &std::net::SocketAddr, key_id: &str, secret: &str, i: usize, tag: &str) -> String {
        use base64::Engine;
        match self {
            Dialect::TextingLine => {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{key_id}:{secret}"));
                let body = format!(
                    r#"{{"to":"+1800{:07}","from":"+18005559876","body":"Your verification code is {:06} ({tag})"}}"#,
                    recipient(i),
                    i % 1_000_000
                );
                format!(
                    "POST /api/v1/messaging/message HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            Dialect::Mudbase { project, batch } => {
                let to: Vec<String> =
                    (0..*batch).map(|j| format!("\"+1800{:07}\"", recipient(i * batch + j))).collect();
                let body = format!(
                    r#"{{"to":[{}],"message":"Your order {:06} has shipped ({tag})","from":"+18005559876"}}"#,
                    to.join(","),
                    i % 1_000_000
                );
                format!(
                    "POST /api/messaging/projects/{project}/messaging/sms HTTP/1.1\r\nHost: {addr}\r\n\
                     X-API-Key: {key_id}:{secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            Dialect::Kannel => format!(
                "GET /cgi-bin/sendsms?username={key_id}&password={secret}&from=18005559876&to=1800{:07}\
                 &text=Your+verification+code+is+{:06}+({}) HTTP/1.1\r\nHost: {addr}\r\n\r\n",
                recipient(i),
                i % 1_000_000,
                tag.replace(' ', "+")
            ),
            Dialect::Bird { workspace, channel } => {
                let body = format!(
                    r#"{{"receiver":{{"contacts":[{{"identifierKey":"phonenumber","identifierValue":"+1800{:07}"}}]}},"body":{{"type":"text","text":{{"text":"Your verification code is {:06} ({tag})"}}}},"reference":"bench-{i}"}}"#,
                    recipient(i),
                    i % 1_000_000
                );
                format!(
                    "POST /workspaces/{workspace}/channels/{channel}/messages HTTP/1.1\r\nHost: {addr}\r\n\
                     Authorization: AccessKey {key_id}:{secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        }
    }
}

fn options(args: &[String]) -> anyhow::Result<Options> {
    // 100,000 requests a point: at this machine's rates, 7 to 15 seconds of load.
    let mut o = Options { requests: 100_000, concurrency: vec![16, 64], batch: 100, only: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => o.requests = it.next().context("--requests N")?.parse()?,
            "--concurrency" => {
                o.concurrency =
                    it.next().context("--concurrency 16,64")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--batch" => o.batch = it.next().context("--batch N")?.parse()?,
            "--only" => {
                o.only = it
                    .next()
                    .context("--only tl,mudbase,bird,receipts,smpp,smpp-in")?
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            other => bail!("unknown option {other}"),
        }
    }
    if o.requests == 0 || o.requests > 1_000_000 || o.concurrency.iter().any(|&c| c == 0 || c > 1024) {
        bail!("requests must be 1..=1000000 and concurrency 1..=1024");
    }
    if o.batch == 0 || o.batch > 1000 {
        bail!("batch must be 1..=1000");
    }
    Ok(o)
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_server(root: &Path, data: &Path, sent_wait_ms: u64, env: &[(String, String)]) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new(root.join("target/release/switchboard"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", data.join("bench.db").display()))
        .env("SWITCHBOARD_DATA_DIR", data)
        .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
        .env("SWITCHBOARD_SENT_WAIT_MS", sent_wait_ms.to_string())
        // The bench's webhook receiver listens on 127.0.0.1.
        .env("SWITCHBOARD_TENANT_URL_ALLOW_CIDRS", "127.0.0.1/32")
        // Every load connection comes from 127.0.0.1, up to 1,024 of them.
        .env("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", "4096")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting target/release/switchboard")?;
    Ok(Server { child, url: format!("http://127.0.0.1:{port}") })
}

async fn wait_healthy(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if http.get(format!("{url}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become healthy")
}

async fn metric(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    let prefix = format!("{name} ");
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0))
}

async fn sent_total(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    Ok(metric(http, url, "switchboard_messages_sent_total").await? as u64)
}

/// The CPU time a process (a pid, or `self`) has used, in seconds, from `/proc`.
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: utime and stime are the 12th and 13th, in clock ticks
    // (100 a second for /proc on Linux).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Percent of one core used between two readings of [`cpu_seconds`] taken `elapsed` apart.
pub(crate) fn cpu_pct(before: Option<f64>, after: Option<f64>, elapsed: Duration) -> f64 {
    match (before, after) {
        (Some(b), Some(a)) => ((a - b) / elapsed.as_secs_f64() * 1000.0).round() / 10.0,
        _ => 0.0,
    }
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// `cargo xtask load URL KEY_ID SECRET REQUESTS CONCURRENCY`: the bench's load against a
/// server you started yourself (for profiling).
pub(crate) fn load(args: &[String]) -> anyhow::Result<()> {
    let [url, key_id, secret, requests, concurrency] = args else {
        bail!("usage: load URL KEY_ID SECRET REQUESTS CONCURRENCY")
    };
    let (requests, concurrency): (usize, usize) = (requests.parse()?, concurrency.parse()?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let start = Instant::now();
        let (mut lat, errors) =
            drive(url, key_id, secret, &Dialect::TextingLine, requests, concurrency, "load").await?;
        let secs = start.elapsed().as_secs_f64();
        lat.sort_unstable();
        println!(
            "{} ok, {errors} errors, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
            lat.len(),
            lat.len() as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        Ok(())
    })
}

/// Builds the release server the scenarios start.
pub(crate) fn build_server() -> anyhow::Result<()> {
    crate::run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
        "build",
        "--release",
        "-p",
        "switchboard",
        "--bin",
        "switchboard",
    ]))
}

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let o = options(args)?;
    build_server()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Vec::new();
    for sent_wait_ms in [0u64, 50].into_iter().filter(|_| o.runs("tl")) {
        for &c in &o.concurrency {
            results.push(rt.block_on(scenario(root, o.requests, c, sent_wait_ms, Load::TextingLine))?);
        }
    }
    // Mudbase sends of `batch` recipients each: five times as many recipients as the other
    // scenarios send messages (so a run lasts seconds), from a quarter of the connections.
    let batch_requests = (5 * o.requests / o.batch).max(1);
    for &c in o.concurrency.iter().filter(|_| o.runs("mudbase")) {
        let c = (c / 4).max(1);
        results.push(rt.block_on(scenario(root, batch_requests, c, 50, Load::Mudbase { batch: o.batch }))?);
    }
    // Bird channel sends answer 202 at once, without waiting for the dispatcher.
    for &c in o.concurrency.iter().filter(|_| o.runs("bird")) {
        results.push(rt.block_on(scenario(root, o.requests, c, 0, Load::Bird))?);
    }
    // Accept to delivered, with a signed webhook per delivered message.
    for &c in o.concurrency.iter().filter(|_| o.runs("receipts")) {
        results.push(rt.block_on(scenario(root, o.requests, c, 0, Load::Receipts))?);
    }
    // HTTP in, SMPP out to a fake SMSC on loopback, with the default window.
    for &c in o.concurrency.iter().filter(|_| o.runs("smpp")) {
        results.push(rt.block_on(scenario(root, o.requests, c, 0, Load::Smpp))?);
    }
    // SMPP in: several ESMEs, each with its window of submit_sm in flight.
    for window in [10usize, 100].into_iter().filter(|_| o.runs("smpp-in")) {
        results.push(rt.block_on(smpp_intake(root, o.requests, SMPP_BINDS, window))?);
    }
    println!();
    println!(
        "{:<38} {:>5} {:>12} {:>8} {:>8} {:>8} {:>14} {:>20} {:>12} {:>11} {:>9}",
        "scenario",
        "conc",
        "messages/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "dispatched/s",
        "delivered+webhook/s",
        "submitted/s",
        "server cpu%",
        "load cpu%"
    );
    for r in &results {
        let rate = |what: &str| r["lifecycle"][what]["per_sec"].as_f64().map_or("-".into(), |v| format!("{v:.0}"));
        println!(
            "{:<38} {:>5} {:>12.0} {:>8.2} {:>8.2} {:>8.2} {:>14.0} {:>20} {:>12} {:>11.1} {:>9.1}",
            r["scenario"].as_str().unwrap_or(""),
            r["concurrency"].as_u64().unwrap_or(0),
            r["accepted_messages_per_sec"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            r["dispatched_per_sec"].as_f64().unwrap_or(0.0),
            rate("delivered_with_webhook"),
            rate("submitted"),
            r["cpu_pct_of_one_core"]["server"].as_f64().unwrap_or(0.0),
            r["cpu_pct_of_one_core"]["load_and_fakes"].as_f64().unwrap_or(0.0),
        );
    }
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let report = json!({
        "tool": "cargo xtask bench",
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "store": "sqlite (WAL, synchronous=FULL, group commit)",
        "provider": "simulator",
        "requests_per_scenario": o.requests,
        "results": results,
    });
    let path = dir.join(format!("bench-{stamp}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(dir.join("latest.json"), serde_json::to_vec_pretty(&report)?)?;
    println!("\nreport: {}", path.display());
    Ok(())
}

/// One scenario on a fresh server: TextingLine sends, Mudbase sends of `batch` recipients, or
/// Bird channel sends.
pub(crate) async fn scenario(
    root: &Path,
    requests: usize,
    concurrency: usize,
    sent_wait_ms: u64,
    load: Load,
) -> anyhow::Result<serde_json::Value> {
    let tag = match load {
        Load::TextingLine => "tl".to_owned(),
        Load::Mudbase { batch } => format!("mb{batch}"),
        Load::Bird => "bird".to_owned(),
        Load::Receipts => "receipts".to_owned(),
        Load::Smpp => "smpp".to_owned(),
    };
    let data = std::env::temp_dir()
        .join(format!("switchboard-bench-{}-{concurrency}-{sent_wait_ms}-{tag}", std::process::id(),));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let mut smsc = None;
    let env: Vec<(String, String)> = match load {
        Load::Receipts => vec![("SWITCHBOARD_SIMULATOR_RECEIPT_DELAY_MS".into(), "0".into())],
        Load::Smpp => {
            let fake = switchboard_smpp::testing::FakeSmsc::start(Default::default()).await;
            let config = data.join("smpp.toml");
            let options = switchboard_smpp::testing::FakeSmscOptions::default();
            std::fs::write(
                &config,
                format!(
                    "[[upstreams]]\nkind = \"smpp\"\nname = \"smsc\"\nhost = \"127.0.0.1\"\nport = {}\n\
                     system_id = \"{}\"\npassword = \"{}\"\n",
                    fake.port(),
                    options.system_id,
                    options.password
                ),
            )?;
            smsc = Some(fake);
            vec![("SWITCHBOARD_CONFIG".into(), config.display().to_string())]
        }
        _ => Vec::new(),
    };
    let server = start_server(root, &data, sent_wait_ms, &env)?;
    let http = reqwest::Client::new();
    wait_healthy(&http, &server.url).await?;

    let admin = AdminClient::new(&server.url, TOKEN)?;
    let account = admin.create_account("bench").await?;
    admin
        .add_sender(account.id, &CreateSender { address: "+18005559876".into(), active: true, sms: true, mms: false })
        .await?;
    let mut receiver = None;
    let dialect = match load {
        Load::TextingLine => Dialect::TextingLine,
        Load::Smpp => Dialect::TextingLine,
        Load::Receipts => {
            let r = Receiver::start().await?;
            let hook = json!({"url": r.url, "events": ["message.delivered"]});
            let created = http
                .post(format!("{}/admin/v1/accounts/{}/webhooks", server.url, account.id))
                .bearer_auth(TOKEN)
                .json(&hook)
                .send()
                .await?;
            if !created.status().is_success() {
                bail!("creating the webhook endpoint: {}", created.status());
            }
            receiver = Some(r);
            Dialect::TextingLine
        }
        Load::Mudbase { batch } => {
            // The load is one project's, far above the default of 100 requests/s.
            admin.set_rate_limit(account.id, Some(1_000_000)).await?;
            Dialect::Mudbase { project: account.id.to_string(), batch }
        }
        Load::Bird => {
            admin.set_rate_limit(account.id, Some(1_000_000)).await?;
            let channel = CreateChannel { name: "bench".into(), sender: "+18005559876".into(), active: true };
            let channel = admin.create_channel(account.id, &channel).await?;
            Dialect::Bird { workspace: account.id.to_string(), channel: channel.id.to_string() }
        }
    };
    let per_request = dialect.recipients();
    let warm = (200 / per_request).clamp(1, requests);
    let credits = 2 * ((requests + warm) * per_request) as i64;
    admin.top_up(account.id, &TopUp { sms: credits, mms: 0, reference: Some("bench".into()) }).await?;
    let key = admin.create_key(account.id, Some("bench")).await?;

    // Warm up connections and caches; these messages are not counted.
    let (warmed, _) =
        drive(&server.url, &key.key.id, &key.secret, &dialect, warm, concurrency.min(warm), "warm").await?;
    let sent_before = wait_sent(&http, &server.url, (warmed.len() * per_request) as u64, Instant::now()).await?.0;

    let server_pid = server.child.id().to_string();
    let cpu_before = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let (mut latencies, errors) =
        drive(&server.url, &key.key.id, &key.secret, &dialect, requests, concurrency, "load").await?;
    let elapsed = started.elapsed();
    let server_cpu = cpu_pct(cpu_before.0, cpu_seconds(&server_pid), elapsed);
    let tool_cpu = cpu_pct(cpu_before.1, cpu_seconds("self"), elapsed);
    let accepted = latencies.len() * per_request;
    let (sent_after, drained) = wait_sent(&http, &server.url, sent_before + accepted as u64, started).await?;
    let lifecycle = match &receiver {
        Some(r) => {
            // Each `message.delivered` event is written in the transaction that makes its
            // message delivered, so the receiver's count is the delivered messages whose event
            // has also been delivered.
            let target = (warmed.len() + latencies.len()) as u64;
            let (n, t) = wait_counter(target, started, || async { Ok(r.count()) }).await?;
            let n = n.saturating_sub(warmed.len() as u64);
            let backlog = (latencies.len() as u64).saturating_sub(n);
            json!({ "delivered_with_webhook": { "count": n, "per_sec": n as f64 / t.as_secs_f64(), "backlog": backlog } })
        }
        None => match &smsc {
            // What reached the SMSC: every part of every message, as submit_sm.
            Some(fake) => {
                let target = (warmed.len() + latencies.len()) as u64;
                let (n, t) = wait_counter(target, started, || async { Ok(fake.submit_count() as u64) }).await?;
                let n = n.saturating_sub(warmed.len() as u64);
                let backlog = (latencies.len() as u64).saturating_sub(n);
                json!({ "submitted": { "count": n, "per_sec": n as f64 / t.as_secs_f64(), "backlog": backlog } })
            }
            None => serde_json::Value::Null,
        },
    };
    latencies.sort_unstable();
    let commits = metric(&http, &server.url, "switchboard_commit_group_size_count").await?;
    let committed = metric(&http, &server.url, "switchboard_commit_group_size_sum").await?;
    let commit_p50 = metric(&http, &server.url, "switchboard_commit_seconds{quantile=\"0.5\"}").await? * 1000.0;
    let commit_p99 = metric(&http, &server.url, "switchboard_commit_seconds{quantile=\"0.99\"}").await? * 1000.0;
    let scenario = match load {
        Load::Mudbase { batch } => format!("mudbase batch x{batch} (wait 50ms)"),
        Load::Bird => "bird channel text (202)".into(),
        Load::Receipts => "accept to delivered + webhook".into(),
        Load::Smpp => "accept to submit_sm (SMPP, fake SMSC)".into(),
        Load::TextingLine if sent_wait_ms == 0 => "accept (sent_wait_ms=0)".into(),
        Load::TextingLine => "accept+dispatch (wait 50ms)".into(),
    };
    let dispatched = sent_after.saturating_sub(sent_before);
    let result = json!({
        "scenario": scenario,
        "sent_wait_ms": sent_wait_ms,
        "concurrency": concurrency,
        "requests": requests,
        "recipients_per_request": per_request,
        "accepted_requests": latencies.len(),
        "accepted": accepted,
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "accepted_requests_per_sec": latencies.len() as f64 / elapsed.as_secs_f64(),
        "accepted_messages_per_sec": accepted as f64 / elapsed.as_secs_f64(),
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "dispatched": dispatched,
        "dispatched_per_sec": dispatched as f64 / drained.as_secs_f64(),
        "backlog_after_load": (accepted as u64).saturating_sub(dispatched),
        "lifecycle": lifecycle,
        "commit_groups": { "count": commits, "mean_size": committed / commits.max(1.0), "p50_ms": commit_p50, "p99_ms": commit_p99 },
        // Percent of one core while the load ran: the server, and this tool (load generator,
        // and the fake SMSC or webhook receiver where the scenario has one).
        "cpu_pct_of_one_core": { "server": server_cpu, "load_and_fakes": tool_cpu },
    });
    eprintln!("{result}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(result)
}

/// How many ESMEs the SMPP intake scenario binds.
const SMPP_BINDS: usize = 4;

/// The SMPP intake scenario: `binds` transmitters share `requests` `submit_sm` (GSM-7, no
/// receipt asked), each keeping `window` in flight; on a fresh server, as the HTTP scenarios.
async fn smpp_intake(root: &Path, requests: usize, binds: usize, window: usize) -> anyhow::Result<serde_json::Value> {
    use rusmpp::CommandStatus;
    use switchboard_smpp_server::testing::{Esme, Mode, text_sm};

    let data = std::env::temp_dir().join(format!("switchboard-bench-{}-smpp-in-{window}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let smpp_port = free_port()?;
    let env: Vec<(String, String)> = [
        ("SWITCHBOARD_SMPP_SERVER__ENABLED", "true".to_owned()),
        ("SWITCHBOARD_SMPP_SERVER__LISTEN", format!("127.0.0.1:{smpp_port}")),
        ("SWITCHBOARD_SMPP_SERVER__WINDOW", window.to_string()),
        ("SWITCHBOARD_SMPP_SERVER__MAX_PER_SECOND", "100000".to_owned()),
        ("SWITCHBOARD_SMPP_SERVER__MAX_BINDS_PER_ACCOUNT", binds.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let server = start_server(root, &data, 0, &env)?;
    let http = reqwest::Client::new();
    wait_healthy(&http, &server.url).await?;
    let admin = AdminClient::new(&server.url, TOKEN)?;
    let account = admin.create_account("bench").await?;
    admin
        .add_sender(account.id, &CreateSender { address: "+18005559876".into(), active: true, sms: true, mms: false })
        .await?;
    let warm = 100 * binds;
    admin.top_up(account.id, &TopUp { sms: 2 * (requests + warm) as i64, mms: 0, reference: None }).await?;
    let body = switchboard_domain::wire::CreateSmppCredential { system_id: "bench".into(), ..Default::default() };
    let credential = admin.create_smpp_credential(account.id, &body).await?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{smpp_port}").parse()?;

    // One bind's share: `n` submit_sm from number `first`, `window` in flight; the latency of
    // each accepted one in µs, and how many were refused.
    let run_bind = |first: usize, n: usize| {
        let password = credential.password.clone();
        async move {
            let mut esme = Esme::bound(addr, Mode::Transmitter, "bench", &password).await;
            let mut in_flight = std::collections::HashMap::new();
            let (mut latencies, mut refused, mut next) = (Vec::with_capacity(n), 0usize, 0usize);
            while next < n || !in_flight.is_empty() {
                while next < n && in_flight.len() < window {
                    let i = first + next;
                    let text = format!("Your verification code is {:06}", i % 1_000_000);
                    let mut sm = text_sm("+18005559876", &format!("+1800{:07}", recipient(i)), &text);
                    sm.registered_delivery = rusmpp::values::RegisteredDelivery::from(0);
                    let sequence = esme.send(sm).await;
                    in_flight.insert(sequence, Instant::now());
                    next += 1;
                }
                let Some(answer) = esme.read().await else { break };
                if let Some(sent) = in_flight.remove(&answer.sequence_number()) {
                    match answer.status() {
                        CommandStatus::EsmeRok => latencies.push(sent.elapsed().as_micros() as u32),
                        _ => refused += 1,
                    }
                }
            }
            (latencies, refused + in_flight.len())
        }
    };
    // Warm up the binds' paths and caches; not counted.
    let warmed = run_bind(0, warm).await.0.len();
    let sent_before = wait_sent(&http, &server.url, warmed as u64, Instant::now()).await?.0;

    let server_pid = server.child.id().to_string();
    let cpu_before = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let started = Instant::now();
    let share = requests.div_ceil(binds);
    let tasks: Vec<_> = (0..binds)
        .map(|b| {
            let first = warm + b * share;
            let n = share.min(requests.saturating_sub(b * share));
            tokio::spawn(run_bind(first, n))
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::with_capacity(requests), 0usize);
    for t in tasks {
        let (l, e) = t.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let server_cpu = cpu_pct(cpu_before.0, cpu_seconds(&server_pid), elapsed);
    let tool_cpu = cpu_pct(cpu_before.1, cpu_seconds("self"), elapsed);
    let (sent_after, drained) = wait_sent(&http, &server.url, sent_before + latencies.len() as u64, started).await?;
    latencies.sort_unstable();
    let dispatched = sent_after.saturating_sub(sent_before);
    let result = json!({
        "scenario": format!("SMPP intake ({binds} binds, window {window})"),
        "sent_wait_ms": 0,
        "concurrency": binds * window,
        "binds": binds,
        "window": window,
        "requests": requests,
        "recipients_per_request": 1,
        "accepted_requests": latencies.len(),
        "accepted": latencies.len(),
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "accepted_requests_per_sec": latencies.len() as f64 / elapsed.as_secs_f64(),
        "accepted_messages_per_sec": latencies.len() as f64 / elapsed.as_secs_f64(),
        // From submit_sm written to submit_sm_resp read.
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "dispatched": dispatched,
        "dispatched_per_sec": dispatched as f64 / drained.as_secs_f64(),
        "backlog_after_load": (latencies.len() as u64).saturating_sub(dispatched),
        "lifecycle": serde_json::Value::Null,
        "cpu_pct_of_one_core": { "server": server_cpu, "load_and_fakes": tool_cpu },
    });
    eprintln!("{result}");
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(result)
}

/// Waits (bounded) until `count` reaches `target`, or stops moving for 5 s; returns the count
/// and the time since `since`.
pub(crate) async fn wait_counter<F, Fut>(target: u64, since: Instant, count: F) -> anyhow::Result<(u64, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let n = count().await?;
        if n != last {
            (last, moved) = (n, Instant::now());
        }
        if n >= target || moved.elapsed() > Duration::from_secs(5) || since.elapsed() > DEADLINE {
            return Ok((n, since.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A webhook receiver in the bench process that counts what it is sent.
struct Receiver {
    url: String,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |_body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, count })
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed) as u64
    }
}

/// Waits (bounded) until the provider has taken `target` messages; returns the count and the
/// time since `since`.
async fn wait_sent(http: &reqwest::Client, url: &str, target: u64, since: Instant) -> anyhow::Result<(u64, Duration)> {
    // Stops at the target, or when nothing moved for 5 s (a stalled or disabled dispatcher).
    let (mut last, mut moved) = (0, Instant::now());
    loop {
        let sent = sent_total(http, url).await?;
        if sent != last {
            (last, moved) = (sent, Instant::now());
        }
        if sent >= target || moved.elapsed() > Duration::from_secs(5) {
            return Ok((sent, since.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `requests` requests from `concurrency` connections; returns each success's latency in
/// µs and the number of failures. Speaks plain HTTP/1.1 with keep-alive over its own TCP
/// connections so that the load generator takes as little of the machine's CPU as it can.
pub(crate) async fn drive(
    url: &str,
    key_id: &str,
    secret: &str,
    dialect: &Dialect,
    requests: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<(Vec<u32>, usize)> {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().context("a http://IP:PORT url")?;
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + DEADLINE;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (next, tag, dialect) = (next.clone(), format!("{tag} {w}"), dialect.clone());
        let (key_id, secret) = (key_id.to_owned(), secret.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(requests / concurrency + 1);
            let mut errors = 0usize;
            let mut conn: Option<tokio::net::TcpStream> = None;
            let mut buf = Vec::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests || Instant::now() > deadline {
                    break;
                }
                let request = dialect.request(&addr, &key_id, &secret, i, &tag);
                let t = Instant::now();
                if conn.is_none() {
                    conn = tokio::net::TcpStream::connect(addr).await.ok();
                    if let Some(c) = &conn {
                        let _ = c.set_nodelay(true);
                    }
                }
                let status = match conn.as_mut() {
                    Some(c) => exchange(c, request.as_bytes(), &mut buf).await,
                    None => None,
                };
                match status {
                    Some(201 | 202) => lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                    Some(_) => errors += 1,
                    None => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await?;
        all.extend(lat);
        errors += e;
    }
    Ok((all, errors))
}

/// Writes one request and reads one response (headers and a Content-Length body); returns
/// the status, or `None` if the connection failed.
async fn exchange(conn: &mut tokio::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request).await.ok()?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = std::str::from_utf8(&buf[..end]).ok()?;
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some(status);
    }
}
