//! `cargo xtask bench-kannel`: the SMPP scenario of `cargo xtask bench` run against Kannel
//! instead of Switchboard, on the same machine, with the same load generator and the same fake
//! SMSC: HTTP `sendsms` requests into Kannel's smsbox, `submit_sm` from its bearerbox to the
//! fake SMSC on loopback with Kannel's default window (`max-pending-submits = 10`), and
//! Kannel's file store (which does not fsync).
//!
//! Kannel is not part of the project: install it first (`apt-get install kannel` on Debian).
//! The command looks for `bearerbox` and `smsbox` on the `PATH` and in `/usr/sbin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::bench::{DEADLINE, Dialect, drive, free_port, percentile, wait_counter};

const USER: &str = "bench";
const PASSWORD: &str = "bench";

/// A Kannel box that is stopped when dropped.
struct Boxed(Child);

impl Drop for Boxed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(program: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([Path::new("/usr/sbin").join(program)])
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` not found: install Kannel (`apt-get install kannel`)"))
}

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let (mut requests, mut concurrency) = (20_000usize, vec![16usize, 64]);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => requests = it.next().context("--requests N")?.parse()?,
            "--concurrency" => {
                concurrency =
                    it.next().context("--concurrency 16,64")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            other => bail!("unknown option {other}"),
        }
    }
    if requests == 0 || requests > 1_000_000 || concurrency.iter().any(|&c| c == 0 || c > 1024) {
        bail!("requests must be 1..=1000000 and concurrency 1..=1024");
    }
    let (bearerbox, smsbox) = (find("bearerbox")?, find("smsbox")?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Vec::new();
    for c in concurrency {
        results.push(rt.block_on(scenario(&bearerbox, &smsbox, requests, c))?);
    }
    println!();
    println!(
        "{:<38} {:>5} {:>12} {:>8} {:>8} {:>8} {:>12} {:>8}",
        "scenario", "conc", "messages/s", "p50 ms", "p90 ms", "p99 ms", "submitted/s", "backlog"
    );
    for r in &results {
        println!(
            "{:<38} {:>5} {:>12.0} {:>8.2} {:>8.2} {:>8.2} {:>12.0} {:>8}",
            "kannel sendsms to submit_sm",
            r["concurrency"],
            r["accepted_messages_per_sec"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p90"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            r["submitted"]["per_sec"].as_f64().unwrap_or(0.0),
            r["submitted"]["backlog"],
        );
    }
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let report = json!({
        "tool": "cargo xtask bench-kannel",
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "kannel": version(&bearerbox),
        "requests_per_scenario": requests,
        "results": results,
    });
    let path = dir.join("kannel-latest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("\nreport: {}", path.display());
    Ok(())
}

fn version(bearerbox: &Path) -> String {
    Command::new(bearerbox)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

async fn scenario(
    bearerbox: &Path,
    smsbox: &Path,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let data = std::env::temp_dir().join(format!("switchboard-bench-kannel-{}-{concurrency}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let options = switchboard_smpp::testing::FakeSmscOptions::default();
    let fake = switchboard_smpp::testing::FakeSmsc::start(Default::default()).await;
    let (admin, boxes, http) = (free_port()?, free_port()?, free_port()?);
    let config = data.join("kannel.conf");
    std::fs::write(
        &config,
        format!(
            "group = core\nadmin-port = {admin}\nadmin-password = bench\nsmsbox-port = {boxes}\n\
             box-allow-ip = 127.0.0.1\nadmin-allow-ip = 127.0.0.1\nlog-level = 3\nlog-file = \"{dir}/bearerbox.log\"\n\
             store-type = file\nstore-location = \"{dir}/kannel.store\"\ndlr-storage = internal\n\n\
             group = smsc\nsmsc = smpp\nsmsc-id = fake\nhost = 127.0.0.1\nport = {smsc}\ntransceiver-mode = true\n\
             smsc-username = \"{user}\"\nsmsc-password = \"{password}\"\nsystem-type = \"\"\n\n\
             group = smsbox\nbearerbox-host = 127.0.0.1\nbearerbox-port = {boxes}\nsendsms-port = {http}\n\
             log-level = 3\nlog-file = \"{dir}/smsbox.log\"\n\n\
             group = sendsms-user\nusername = {USER}\npassword = {PASSWORD}\n",
            dir = data.display(),
            smsc = fake.port(),
            user = options.system_id,
            password = options.password,
        ),
    )?;
    let quiet = |program: &Path| {
        let mut c = Command::new(program);
        c.arg(&config).stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let _bearerbox = Boxed(quiet(bearerbox).spawn().context("starting bearerbox")?);
    // smsbox gives up at once when bearerbox is not listening yet: start it once bearerbox
    // answers on its admin port, and again should it have given up all the same.
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", admin)).await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("bearerbox did not start within 30 s (logs in {})", data.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sms = Boxed(quiet(smsbox).spawn().context("starting smsbox")?);
    let url = format!("http://127.0.0.1:{http}");

    // Ready when the SMSC has a bind and a first message goes through.
    loop {
        if sms.0.try_wait()?.is_some() {
            sms = Boxed(quiet(smsbox).spawn().context("starting smsbox")?);
        }
        if fake.bind_count() > 0 {
            let (ok, _) = drive(&url, USER, PASSWORD, &Dialect::Kannel, 1, 1, "ready").await?;
            if !ok.is_empty() {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("Kannel did not bind to the fake SMSC and take a message within 30 s (logs in {})", data.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warm = 200.min(requests);
    let (warmed, _) = drive(&url, USER, PASSWORD, &Dialect::Kannel, warm, concurrency.min(warm), "warm").await?;
    let before = 1 + warmed.len() as u64;
    wait_counter(before, Instant::now(), || async { Ok(fake.submit_count() as u64) }).await?;

    let started = Instant::now();
    let (mut latencies, errors) = drive(&url, USER, PASSWORD, &Dialect::Kannel, requests, concurrency, "load").await?;
    let elapsed = started.elapsed();
    let target = before + latencies.len() as u64;
    let (n, t) = wait_counter(target, started, || async { Ok(fake.submit_count() as u64) }).await?;
    let submitted = n.saturating_sub(before);
    latencies.sort_unstable();
    let result = json!({
        "scenario": "kannel sendsms to submit_sm",
        "concurrency": concurrency,
        "requests": requests,
        "accepted": latencies.len(),
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "accepted_messages_per_sec": latencies.len() as f64 / elapsed.as_secs_f64(),
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
        "submitted": {
            "count": submitted,
            "per_sec": submitted as f64 / t.as_secs_f64(),
            "backlog": (latencies.len() as u64).saturating_sub(submitted),
        },
        "timed_out": t > DEADLINE,
    });
    eprintln!("{result}");
    drop(sms);
    let _ = std::fs::remove_dir_all(&data);
    Ok(result)
}
