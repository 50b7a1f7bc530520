//! Connections as an attacker and a careless client hold them: ones that send nothing or half
//! their headers, thousands of them under a low file-descriptor limit, idle keep-alive
//! connections, too many from one address, and requests kept in flight by a client that
//! never takes its answer. The server closes them after its timeouts or to make room, never
//! holds more than its cap, and keeps answering well-behaved clients, old and new,
//! throughout.

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
    let admin = AdminClient::new(url, TOKEN).unwrap();
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

/// Connects to `addr` from the loopback address `from` (any of 127.0.0.0/8 on Linux), so one
/// test can play several clients.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One `GET /healthz` on a new connection that asks to close after it: the time from the
/// connect to the whole answer, or why there was none within `bound`.
async fn fresh_health_check(addr: SocketAddr, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let answer = tokio::time::timeout(bound, async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(got)
    })
    .await
    .map_err(|_| format!("no answer within {bound:?}"))??;
    if answer.starts_with(b"HTTP/1.1 200") {
        Ok(started.elapsed())
    } else {
        Err(format!("answered {:?}", String::from_utf8_lossy(&answer)))
    }
}

/// What a connection of the flood does before it waits for the server to close it.
#[derive(Clone, Copy)]
enum Bad {
    /// Sends nothing.
    Silent,
    /// Sends half a request's headers.
    HalfSent,
    /// Sends one request, reads its answer, and keeps the connection open.
    KeepAlive,
}

/// One connection of the flood: how long it was held open after its connect.
async fn bad_connection(addr: SocketAddr, bad: Bad) -> Result<Duration, &'static str> {
    let mut stream = tokio::time::timeout(Duration::from_secs(40), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out")?
        .map_err(|_| "connect failed")?;
    let connected = Instant::now();
    let sent = match bad {
        Bad::Silent => Ok(()),
        Bad::HalfSent => stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ").await,
        Bad::KeepAlive => stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await,
    };
    // A write fails only when the server has closed the connection already.
    if sent.is_ok() {
        // The answer to a keep-alive request is read here too, and the wait goes on.
        closed_within(&mut stream, Duration::from_secs(40)).await?;
    }
    Ok(connected.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_idle_and_half_sent_connections_leaves_room_for_new_clients() {
    const CAP: usize = 256;
    const FLOOD_FOR: Duration = Duration::from_secs(5);
    const NEW_CLIENT_BOUND: Duration = Duration::from_secs(2);
    // The test itself holds every connection of the flood at once.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if soft < 4_096 {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard.min(8_192), hard).unwrap();
    }
    assert!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0 >= 2_048, "need file descriptors");

    let dir = temp_dir("flood");
    // Timeouts longer than the bound on a new client's wait: only making room can meet it.
    // Every connection comes from 127.0.0.1, so the cap per address is lifted.
    let server = Limited::start(
        &dir,
        Some(512),
        &[
            ("SWITCHBOARD_HEADER_READ_TIMEOUT_MS", "5000"),
            ("SWITCHBOARD_IDLE_TIMEOUT_MS", "10000"),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
        ],
    );
    server.ready().await;
    let log = server.log();
    assert!(
        log.contains("open_file_limit=512") && log.contains("max_connections=256"),
        "the limit and the cap derived from it are logged: {log}"
    );
    let (key_id, secret) = tenant(&server.url).await;

    // A well-behaved client with one keep-alive connection, made before the flood,
    // alternating a health check and an authenticated send.
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

    // The flood: a third of its connections send nothing, a third half a request's headers,
    // a third one request and then stay idle. First it fills the cap; then it goes on at a
    // steady 500 new connections a second, each held until the server closes it. At most
    // `at_once` are open or waiting in the listen queue at a time.
    let baseline = server.sockets().unwrap_or(0);
    let at_once = Arc::new(tokio::sync::Semaphore::new(2 * CAP));
    let kinds = [Bad::Silent, Bad::HalfSent, Bad::KeepAlive];
    let addr = server.addr;
    let spawn_bad = move |i: usize| {
        let at_once = at_once.clone();
        tokio::spawn(async move {
            let _turn = at_once.acquire_owned().await.unwrap();
            bad_connection(addr, kinds[i % 3]).await
        })
    };
    let flood_started = Instant::now();
    let mut flood: Vec<_> = (0..CAP).map(&spawn_bad).collect();
    let filled = Instant::now();
    loop {
        let open = server.sockets().unwrap_or(0);
        if open >= baseline + CAP - 8 {
            break;
        }
        assert!(filled.elapsed() < Duration::from_secs(20), "the flood did not fill the cap: {open} sockets");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let steady = {
        tokio::spawn(async move {
            let mut more = Vec::new();
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            while started.elapsed() < FLOOD_FOR {
                tick.tick().await;
                more.push(spawn_bad(CAP + more.len()));
            }
            more
        })
    };

    // New clients during the flood, one every 200 ms, each on a connection of its own.
    let new_clients = {
        let addr = server.addr;
        tokio::spawn(async move {
            let mut waits = Vec::new();
            let started = Instant::now();
            while started.elapsed() + Duration::from_millis(500) < FLOOD_FOR {
                waits.push(fresh_health_check(addr, Duration::from_secs(5)).await);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            waits
        })
    };

    // While it lasts, the server never has more sockets open than its cap, and its listener;
    // one more for a moment, a new connection accepted while the one closed to make room for
    // it is closing.
    let mut most_sockets = 0;
    while !steady.is_finished() || !new_clients.is_finished() {
        assert!(flood_started.elapsed() < Duration::from_secs(60), "the flood did not end");
        if let Some(n) = server.sockets() {
            most_sockets = most_sockets.max(n);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waits = new_clients.await.unwrap();
    flood.extend(steady.await.unwrap());
    let flood_took = flood_started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let (mut latencies, failures) = good_client.await.unwrap();
    // Every connection of the flood is closed by the server: to make room, or at the latest
    // after its timeout.
    let mut held = Vec::new();
    let mut problems = Vec::new();
    for t in flood {
        match tokio::time::timeout(Duration::from_secs(60), t).await.expect("the flood ended").unwrap() {
            Ok(held_for) => held.push(held_for),
            Err(e) => problems.push(e),
        }
    }

    held.sort();
    latencies.sort();
    let (mut answered, unanswered): (Vec<_>, Vec<_>) = waits.into_iter().partition(Result::is_ok);
    let mut answered: Vec<Duration> = answered.drain(..).map(Result::unwrap).collect();
    answered.sort();
    eprintln!(
        "flood: {} connections in {:.1} s ({} closed by the server, {} not); at most {most_sockets} sockets open in \
         the server ({baseline} before; cap {CAP}); each held open {:.3}-{:.2} s after its connect (p50 {:.3} s)",
        held.len() + problems.len(),
        flood_took.as_secs_f64(),
        held.len(),
        problems.len(),
        held.first().map_or(0.0, Duration::as_secs_f64),
        held.last().map_or(0.0, Duration::as_secs_f64),
        held.get(held.len() / 2).map_or(0.0, Duration::as_secs_f64),
    );
    if !answered.is_empty() {
        eprintln!(
            "new clients during the flood: {} connections, {} unanswered; connect to answer p50 {:.1} ms, p99 {:.1} \
             ms, max {:.1} ms",
            answered.len() + unanswered.len(),
            unanswered.len(),
            percentile(&answered, 0.5).as_secs_f64() * 1e3,
            percentile(&answered, 0.99).as_secs_f64() * 1e3,
            answered.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    if !latencies.is_empty() {
        eprintln!(
            "good client during the flood: {} requests, {} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            latencies.len() + failures.len(),
            failures.len(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    assert!(unanswered.is_empty(), "every new client is answered: {unanswered:?}");
    assert!(
        answered.iter().all(|w| *w < NEW_CLIENT_BOUND),
        "a new client is answered within {NEW_CLIENT_BOUND:?}: {answered:?}"
    );
    assert!(answered.len() >= 10, "new clients kept coming: {}", answered.len());
    assert!(problems.is_empty(), "every connection of the flood is closed by the server: {problems:?}");
    assert!(held.len() >= 2 * CAP, "the flood went on past the cap: {}", held.len());
    assert!(failures.is_empty(), "the good client was always answered: {failures:?}");
    assert!(latencies.len() >= 20, "the good client kept sending: {}", latencies.len());
    if cfg!(target_os = "linux") {
        assert!(
            most_sockets <= baseline + CAP + 1,
            "at most the cap of connections: {most_sockets}, {baseline} before"
        );
    }
    let log = server.log();
    assert!(!log.contains("accept failed"), "the cap kept the server from running out of descriptors: {log}");
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

/// Starts a request that stays in flight on `stream` from `from`: a `POST` whose body is
/// announced and never sent. `Expect: 100-continue` makes the server say when its handler
/// has begun to read the body, so the request is surely in flight on return.
async fn request_in_flight(stream: &mut TcpStream) {
    let head = format!(
        "POST /admin/v1/accounts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: \
         application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the body was asked for");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&got));
    stream.write_all(b"{\"name\":").await.unwrap();
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_cap_of_connections() {
    const NOISY: [u8; 4] = [127, 0, 0, 2];
    const OTHER: [u8; 4] = [127, 0, 0, 3];
    let dir = temp_dir("per-address");
    let server = Limited::start(
        &dir,
        None,
        &[("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", "4"), ("SWITCHBOARD_REQUEST_TIMEOUT_MS", "20000")],
    );
    server.ready().await;
    let health = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    // The noisy address: one idle keep-alive connection, then three with a request in flight.
    let mut idle = connect_from(NOISY, server.addr).await;
    assert!(exchange(&mut idle, health).await.starts_with("HTTP/1.1 200"));
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(NOISY, server.addr).await;
        request_in_flight(&mut stream).await;
        busy.push(stream);
    }

    // A fifth connection from it is served, and its idle one is closed to make room.
    let mut fifth = connect_from(NOISY, server.addr).await;
    assert!(exchange(&mut fifth, health).await.starts_with("HTTP/1.1 200"), "the new connection is served");
    closed_within(&mut idle, Duration::from_secs(2)).await.expect("the address's idle connection made room");

    // Once all four have a request in flight, a new one from that address is closed unserved.
    request_in_flight(&mut fifth).await;
    busy.push(fifth);
    let mut refused = connect_from(NOISY, server.addr).await;
    let _ = refused.write_all(health.as_bytes()).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), refused.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "a connection past the address's cap is closed at once");
    assert!(got.is_empty(), "and not served: {}", String::from_utf8_lossy(&got));

    // Its requests in flight go on, and other addresses are served as ever.
    for stream in &mut busy {
        assert_eq!(closed_within(stream, Duration::from_millis(200)).await, Err("still open"));
    }
    let mut other = connect_from(OTHER, server.addr).await;
    assert!(exchange(&mut other, health).await.starts_with("HTTP/1.1 200"));
    assert!(reqwest::get(format!("{}/healthz", server.url)).await.unwrap().status().is_success());
    assert!(server.log().contains("its address has its most connections open"), "{}", server.log());
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

/// A trusted proxy brings every client through one address, so the cap per address does not
/// hold it: five requests in flight from it with a cap of 2 are all served.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_is_not_held_to_the_cap_per_address() {
    const PROXY: [u8; 4] = [127, 0, 0, 4];
    let dir = temp_dir("proxy-cap");
    let server = Limited::start(
        &dir,
        None,
        &[
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_ADDRESS", "2"),
            ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.4/32"),
            ("SWITCHBOARD_REQUEST_TIMEOUT_MS", "20000"),
        ],
    );
    server.ready().await;
    let mut busy = Vec::new();
    for _ in 0..5 {
        let mut stream = connect_from(PROXY, server.addr).await;
        request_in_flight(&mut stream).await;
        busy.push(stream);
    }
    let health = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut sixth = connect_from(PROXY, server.addr).await;
    assert!(exchange(&mut sixth, health).await.starts_with("HTTP/1.1 200"), "the proxy's sixth connection is served");
    for stream in &mut busy {
        assert_eq!(closed_within(stream, Duration::from_millis(200)).await, Err("still open"));
    }
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

/// An HTTP/2 connection (prior knowledge) whose client gives the server `window` bytes of
/// flow-control window for each stream; its connection task ends when the server closes it.
async fn h2_client(
    addr: SocketAddr,
    window: u32,
) -> (h2::client::SendRequest<hyper::body::Bytes>, Option<h2::PingPong>, tokio::task::JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, mut connection) =
        h2::client::Builder::new().initial_window_size(window).handshake(tcp).await.expect("h2 handshake");
    let ping_pong = connection.ping_pong();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, ping_pong, task)
}

/// Asks for `path` on `client` and returns the answer's status and its body, not yet read.
async fn h2_get(
    client: &mut h2::client::SendRequest<hyper::body::Bytes>,
    addr: SocketAddr,
    path: &str,
) -> (u16, h2::RecvStream) {
    let request = hyper::Request::get(format!("http://{addr}{path}")).body(()).unwrap();
    let (answer, _) = client.clone().ready().await.unwrap().send_request(request, true).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), answer).await.unwrap().unwrap();
    (answer.status().as_u16(), answer.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_kept_in_flight_by_http2_pings_is_cut_off_after_its_timeout_and_grace() {
    // A request may take 1 s, and its answer 2 s more to be written: 3 s in all. A request
    // that moved no byte would be cut off after the 10 s idle timeout; PINGs move bytes, and
    // their bytes alone would hold it for ever. (An answer handed whole to the connection,
    // as a client with a small window trickles it out, is no longer in flight: the idle
    // timeout bounds it.)
    const LIMIT: Duration = Duration::from_secs(3);
    let dir = temp_dir("request-limit");
    let mut server = Limited::start(
        &dir,
        None,
        &[
            ("SWITCHBOARD_REQUEST_TIMEOUT_MS", "1000"),
            ("SWITCHBOARD_WRITE_GRACE_MS", "2000"),
            ("SWITCHBOARD_IDLE_TIMEOUT_MS", "10000"),
            ("SWITCHBOARD_HEADER_READ_TIMEOUT_MS", "10000"),
        ],
    );
    server.ready().await;

    // A client that gives no window for the answer's body (so the request stays in flight),
    // and keeps the connection busy with PINGs, which the server answers.
    let (mut pinger, ping_pong, pinger_closed) = h2_client(server.addr, 0).await;
    let pinger_since = Instant::now();
    let (status, _body) = h2_get(&mut pinger, server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let pinging = tokio::spawn(async move {
        let mut ping_pong = ping_pong.expect("the ping-pong handle");
        let mut pongs = 0u32;
        // Until the server closes the connection, for 10 s at most.
        while pinger_since.elapsed() < Duration::from_secs(10) && ping_pong.ping(h2::Ping::opaque()).await.is_ok() {
            pongs += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pongs
    });

    let pinger_closed = tokio::time::timeout(Duration::from_secs(8), pinger_closed).await;
    let pinger_for = pinger_since.elapsed();
    let pongs = pinging.await.unwrap();
    eprintln!("cut off: the PINGing client after {pinger_for:?} ({pongs} PINGs answered)");
    assert!(pinger_closed.is_ok(), "a request kept open by PINGs is cut off ({pongs} PINGs answered)");
    assert!(pongs >= 10, "bytes moved all the while: {pongs} PINGs");
    assert!(pinger_for >= LIMIT.mul_f64(0.9), "not before the limit: {pinger_for:?}");

    // Nor does such a request hold up a graceful stop past its limit.
    let (mut pinger, ping_pong, _closed) = h2_client(server.addr, 0).await;
    let (status, _body) = h2_get(&mut pinger, server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let since = Instant::now();
    let _pinging = tokio::spawn(async move {
        let mut ping_pong = ping_pong.expect("the ping-pong handle");
        while since.elapsed() < Duration::from_secs(10) && ping_pong.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopping = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(stopping.elapsed() < Duration::from_secs(8), "the stop waited on a request kept open by PINGs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("stopped after {:?} with a request kept open by PINGs", stopping.elapsed());
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
    let admin = AdminClient::new(&server.url, TOKEN).unwrap();
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
