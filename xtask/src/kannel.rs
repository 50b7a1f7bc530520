//! `cargo xtask bench-kannel`: the SMPP scenario of `cargo xtask bench` run against Kannel
//! instead of Switchboard, on the same machine, with the same load generator and the same fake
//! SMSC: HTTP `sendsms` requests into Kannel's smsbox, `submit_sm` from its bearerbox to the
//! fake SMSC on loopback with Kannel's default window (`max-pending-submits = 10`), and
//! Kannel's file store (which does not fsync).
//!
//! It alternates Switchboard's SMPP scenario and Kannel's, pair after pair (three by default),
//! and reports each pair's ratio: this machine's speed drifts within the hour, and a ratio of
//! two runs made one after the other cancels most of that out. Beside each figure it reports
//! the CPU each process used: the server (Switchboard, or Kannel's two boxes) and this tool
//! (load generator and fake SMSC).
//!
//! Kannel is not part of the project: install it first (`apt-get install kannel` on Debian).
//! The command looks for `bearerbox` and `smsbox` on the `PATH` and in `/usr/sbin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::bench::{DEADLINE, Dialect, Load, cpu_pct, cpu_seconds, drive, free_port, percentile, wait_counter};

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
    let (mut requests, mut concurrency, mut pairs) = (100_000usize, vec![16usize, 64], 3usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => requests = it.next().context("--requests N")?.parse()?,
            "--concurrency" => {
                concurrency =
                    it.next().context("--concurrency 16,64")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--pairs" => pairs = it.next().context("--pairs N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    if requests == 0 || requests > 1_000_000 || concurrency.iter().any(|&c| c == 0 || c > 1024) {
        bail!("requests must be 1..=1000000 and concurrency 1..=1024");
    }
    if pairs == 0 || pairs > 20 {
        bail!("pairs must be 1..=20");
    }
    let (bearerbox, smsbox) = (find("bearerbox")?, find("smsbox")?);
    crate::bench::build_server()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut results = Vec::new();
    for &c in &concurrency {
        for pair in 1..=pairs {
            let switchboard = rt.block_on(crate::bench::scenario(root, requests, c, 0, Load::Smpp))?;
            let kannel = rt.block_on(scenario(&bearerbox, &smsbox, requests, c))?;
            results.push(json!({ "concurrency": c, "pair": pair, "switchboard": switchboard, "kannel": kannel }));
        }
    }
    println!();
    println!(
        "{:>5} {:>5} {:>14} {:>14} {:>7} {:>12} {:>12} {:>10} {:>10} {:>9} {:>9}",
        "conc",
        "pair",
        "switchboard/s",
        "kannel/s",
        "ratio",
        "sb p99 ms",
        "kannel p99",
        "sb cpu%",
        "kannel cpu%",
        "load cpu%",
        "backlog"
    );
    for r in &results {
        let (sb, k) = (&r["switchboard"], &r["kannel"]);
        let (sb_rate, k_rate) = (
            sb["lifecycle"]["submitted"]["per_sec"].as_f64().unwrap_or(0.0),
            k["submitted"]["per_sec"].as_f64().unwrap_or(0.0),
        );
        let cpu = |r: &serde_json::Value, who: &str| r["cpu_pct_of_one_core"][who].as_f64().unwrap_or(0.0);
        let backlog = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        println!(
            "{:>5} {:>5} {:>14.0} {:>14.0} {:>7.2} {:>12.2} {:>12.2} {:>10.1} {:>10.1} {:>4.0}/{:<4.0} {:>4}/{:<4}",
            r["concurrency"].as_u64().unwrap_or(0),
            r["pair"].as_u64().unwrap_or(0),
            sb_rate,
            k_rate,
            sb_rate / k_rate.max(1.0),
            sb["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            k["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            cpu(sb, "server"),
            cpu(k, "server"),
            cpu(sb, "load_and_fakes"),
            cpu(k, "load_and_fakes"),
            backlog(&sb["lifecycle"]["submitted"]["backlog"]),
            backlog(&k["submitted"]["backlog"]),
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
    let bearer = Boxed(quiet(bearerbox).spawn().context("starting bearerbox")?);
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

    // Kannel's CPU is its two boxes'; this tool's is the load generator's and the fake SMSC's.
    let pids = [bearer.0.id().to_string(), sms.0.id().to_string()];
    let kannel_cpu = || pids.iter().map(|p| cpu_seconds(p)).sum::<Option<f64>>();
    let cpu_before = (kannel_cpu(), cpu_seconds("self"));
    let started = Instant::now();
    let (mut latencies, errors) = drive(&url, USER, PASSWORD, &Dialect::Kannel, requests, concurrency, "load").await?;
    let elapsed = started.elapsed();
    let (server_cpu, tool_cpu) =
        (cpu_pct(cpu_before.0, kannel_cpu(), elapsed), cpu_pct(cpu_before.1, cpu_seconds("self"), elapsed));
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
        "cpu_pct_of_one_core": { "server": server_cpu, "load_and_fakes": tool_cpu },
    });
    eprintln!("{result}");
    drop(sms);
    drop(bearer);
    let _ = std::fs::remove_dir_all(&data);
    Ok(result)
}
