//! Connections as an attacker and a careless client hold them: ones that send nothing or half
//! their headers, thousands of them under a low file-descriptor limit, and idle keep-alive
//! connections. The server closes them after its timeouts, never holds more than its cap, and
//! keeps answering a well-behaved client throughout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_client::AdminClient;
use switchboard_domain::wire::{CreateSender, TopUp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{BIN, TOKEN, free_port, temp_dir};

/// The binary, started with `ulimit -n` lowered when asked, its log kept in a file.
struct Limited {
    child: Child,
    url: String,
    addr: SocketAddr,
    log: PathBuf,
}

impl Limited {
    fn start(dir: &Path, fd_limit: Option<u32>, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = dir.join("server.log");
        let mut command = match fd_limit {
            // `exec` keeps the process id, so the limit and /proc/<pid> are the server's own.
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" serve")).arg(BIN);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.arg("serve");
                c
            }
        };
        command
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATABASE_URL", format!("sqlite://{}", dir.join("sb.db").display()))
            .env("SWITCHBOARD_DATA_DIR", dir)
            .env("SWITCHBOARD_OPERATOR_TOKEN", TOKEN)
            .env("SWITCHBOARD_SENT_WAIT_MS", "0")
            .env("RUST_LOG", "warn,switchboard=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start the binary");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Self { child, url: format!("http://{addr}"), addr, log }
    }

    async fn ready(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if reqwest::get(format!("{}/healthz", self.url)).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the server did not start: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sockets the server has open (its listener and its connections), where /proc says.
    fn sockets(&self) -> Option<usize> {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).ok()?;
        Some(
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                .count(),
        )
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        // Also when a test fails: no server outlives its test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A funded account with a sender and a key; returns the key as `id:secret`.
async fn tenant(url: &str) -> (String, String) {
    let admin = AdminClient::new(url, TOKEN);
    let account = admin.create_account("flood").await.unwrap();
    admin
        .add_sender(account.id, &CreateSender { address: "+18005559876".into(), active: true, sms: true, mms: false })
        .await
        .unwrap();
    admin.top_up(account.id, &TopUp { sms: 100_000, mms: 0, reference: None }).await.unwrap();
    let key = admin.create_key(account.id, None).await.unwrap();
    (key.key.id, key.secret)
}

/// Reads from `stream` until the server closes it (end of file or a reset), or `bound` passes.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> Result<(), &'static str> {
    let deadline = tokio::time::Instant::now() + bound;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Err("still open"),
            Ok(Ok(0) | Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One HTTP/1.1 request on `stream`, and its whole answer (headers and `Content-Length` body).
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_idle_and_half_sent_connections_is_shed_while_a_good_client_is_answered() {
    const FLOOD: usize = 2_000;
    const HEADER_TIMEOUT: Duration = Duration::from_millis(1_000);
    // The test itself holds every connection of the flood at once.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 2 * FLOOD as u64 {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(4 * FLOOD as u64), hard).unwrap();
    }
    assert!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0 >= FLOOD as u64 + 200, "need file descriptors");

    let dir = temp_dir("flood");
    let server = Limited::start(
        &dir,
        Some(512),
        &[("SWITCHBOARD_HEADER_READ_TIMEOUT_MS", "1000"), ("SWITCHBOARD_IDLE_TIMEOUT_MS", "5000")],
    );
    server.ready().await;
    let log = server.log();
    assert!(
        log.contains("open_file_limit=512") && log.contains("max_connections=256"),
        "the limit and the cap derived from it are logged: {log}"
    );
    let (key_id, secret) = tenant(&server.url).await;

    // The well-behaved client: one keep-alive connection, made before the flood, alternating a
    // health check and an authenticated send.
    let good = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let healthz = format!("{}/healthz", server.url);
    let send_url = format!("{}/api/v1/messaging/message", server.url);
    let send = json!({"to": "+18005551234", "from": "+18005559876", "body": "hello"});
    assert!(good.get(&healthz).send().await.unwrap().status().is_success());

    let flooding = Arc::new(AtomicBool::new(true));
    let good_client = {
        let flooding = flooding.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut i = 0u64;
            while flooding.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = if i.is_multiple_of(2) {
                    good.get(&healthz).send().await
                } else {
                    good.post(&send_url).basic_auth(&key_id, Some(&secret)).json(&send).send().await
                };
                match answer {
                    Ok(r) if r.status().is_success() => latencies.push(started.elapsed()),
                    Ok(r) => failures.push(format!("request {i}: {}", r.status())),
                    Err(e) => failures.push(format!("request {i}: {e}")),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (latencies, failures)
        })
    };

    // The flood: half connect and send nothing, half send half a request's headers; each waits
    // for the server to close it. At most `at_once` are open at a time: more than the server's
    // descriptors, but no more than its cap and its listen queue (1,024, or the system's
    // smaller cap) hold, since past a full queue the kernel drops connections of which the
    // server knows nothing, and which it therefore cannot close.
    let queue = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1024)
        .min(1024);
    let at_once_count = (256 + queue - queue / 10).min(1_000);
    let baseline = server.sockets().unwrap_or(0);
    let at_once = Arc::new(tokio::sync::Semaphore::new(at_once_count));
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let addr = server.addr;
            let at_once = at_once.clone();
            tokio::spawn(async move {
                let _turn = at_once.acquire_owned().await.unwrap();
                let mut stream = tokio::time::timeout(Duration::from_secs(40), TcpStream::connect(addr))
                    .await
                    .map_err(|_| "connect timed out")?
                    .map_err(|_| "connect failed")?;
                let connected = Instant::now();
                if i % 2 == 1 {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
                        .await
                        .map_err(|_| "write failed")?;
                }
                closed_within(&mut stream, Duration::from_secs(40)).await?;
                Ok::<_, &str>(connected.elapsed())
            })
        })
        .collect();

    // While it lasts, the server never has more sockets open than its cap (and its listener).
    let mut most_sockets = 0;
    while !flood.iter().all(|t| t.is_finished()) {
        assert!(flood_started.elapsed() < Duration::from_secs(120), "the flood did not end");
        if let Some(n) = server.sockets() {
            most_sockets = most_sockets.max(n);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_took = flood_started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let mut held = Vec::new();
    let mut problems = Vec::new();
    for t in flood {
        match t.await.unwrap() {
            Ok(held_for) => held.push(held_for),
            Err(e) => problems.push(e),
        }
    }
    let (mut latencies, failures) = good_client.await.unwrap();

    held.sort();
    latencies.sort();
    eprintln!(
        "flood: {FLOOD} connections, {at_once_count} at once ({} closed by the server, {} not) in {:.1} s; at most \
         {most_sockets} sockets open in the server ({baseline} before; cap 256); each held open {:.2}-{:.2} s \
         after its connect (p50 {:.2} s)",
        held.len(),
        problems.len(),
        flood_took.as_secs_f64(),
        held.first().map_or(0.0, Duration::as_secs_f64),
        held.last().map_or(0.0, Duration::as_secs_f64),
        held.get(held.len() / 2).map_or(0.0, Duration::as_secs_f64),
    );
    assert!(!latencies.is_empty(), "the good client made no request");
    eprintln!(
        "good client during the flood: {} requests, {} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len() + failures.len(),
        failures.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    assert!(problems.is_empty(), "every connection of the flood is closed by the server: {problems:?}");
    assert!(failures.is_empty(), "the good client was always answered: {failures:?}");
    assert!(latencies.len() >= 20, "the good client kept sending: {}", latencies.len());
    // Nobody is shut out for long: a connection waits at most for the queue ahead of it.
    assert!(held.iter().all(|h| *h >= HEADER_TIMEOUT.mul_f64(0.9)), "closed before its timeout: {:?}", held[0]);
    if cfg!(target_os = "linux") {
        assert!(most_sockets <= baseline + 256, "at most the cap of connections: {most_sockets}, {baseline} before");
    }
    let log = server.log();
    assert!(!log.contains("accept failed"), "the cap kept the server from running out of descriptors: {log}");

    // And afterwards a new client is answered at once.
    let started = Instant::now();
    let fresh = reqwest::Client::new().get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert!(fresh.status().is_success() && started.elapsed() < Duration::from_secs(2));
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_silent_connections_are_closed_after_their_timeouts() {
    const HEADER_TIMEOUT: Duration = Duration::from_millis(1_000);
    const IDLE_TIMEOUT: Duration = Duration::from_millis(3_000);
    let dir = temp_dir("idle");
    let server = Limited::start(
        &dir,
        None,
        &[("SWITCHBOARD_HEADER_READ_TIMEOUT_MS", "1000"), ("SWITCHBOARD_IDLE_TIMEOUT_MS", "3000")],
    );
    server.ready().await;
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    // A keep-alive connection outlives the header timeout while idle, and serves again...
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(exchange(&mut keep_alive, request).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(HEADER_TIMEOUT * 2).await;
    assert!(
        exchange(&mut keep_alive, request).await.starts_with("HTTP/1.1 200"),
        "keep-alive outlives the header timeout"
    );
    let idle_since = Instant::now();

    // ...while one that never sent a request is closed after the header timeout...
    closed_within(&mut silent, Duration::from_secs(10)).await.expect("a silent connection is closed");
    let silent_for = silent_since.elapsed();
    assert!(silent_for >= HEADER_TIMEOUT.mul_f64(0.9), "{silent_for:?}");

    // ...and the keep-alive connection, once idle for the idle timeout.
    closed_within(&mut keep_alive, Duration::from_secs(10)).await.expect("an idle keep-alive connection is closed");
    let idle_for = idle_since.elapsed();
    assert!(idle_for >= IDLE_TIMEOUT.mul_f64(0.9), "closed after {idle_for:?}, before the idle timeout");
    eprintln!("silent connection closed after {silent_for:?}, idle keep-alive connection after {idle_for:?}");

    // A request whose headers stop coming is cut off after the header timeout, even after an
    // earlier request on the same connection.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    assert!(exchange(&mut slow, request).await.starts_with("HTTP/1.1 200"));
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    let slow_since = Instant::now();
    closed_within(&mut slow, Duration::from_secs(10)).await.expect("half a request's headers are not waited for");
    assert!(slow_since.elapsed() < IDLE_TIMEOUT, "the header timeout applies, not the idle one");

    // HTTP/2 with prior knowledge is still served.
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2.get(format!("{}/healthz", server.url)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_answered_when_the_server_is_stopped() {
    let dir = temp_dir("drain");
    // The simulator's slow number takes 1.5 s here, and the answer waits for it.
    let mut server =
        Limited::start(&dir, None, &[("SWITCHBOARD_SENT_WAIT_MS", "5000"), ("SWITCHBOARD_SIMULATOR_SLOW_MS", "1500")]);
    server.ready().await;
    let (key_id, secret) = tenant(&server.url).await;
    let url = format!("{}/api/v1/messaging/message", server.url);
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .basic_auth(key_id, Some(secret))
            .json(&json!({"to": "+15550002001", "from": "+18005559876", "body": "slow"}))
            .send()
            .await
    });
    // Once the message is stored (the send is then waiting on the slow simulator), stop.
    let admin = AdminClient::new(&server.url, TOKEN);
    let accounts = admin.accounts(10, None).await.unwrap().data;
    let start = Instant::now();
    while admin.messages(accounts[0].id, 1, None).await.unwrap().data.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "the send was never stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let answer = in_flight.await.unwrap().expect("the request in flight is answered");
    assert!(answer.status().is_success(), "{}", answer.status());
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the server did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(dir).ok();
}
