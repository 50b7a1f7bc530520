//! The client against a scripted HTTP server on `127.0.0.1:0`: what it sends on each attempt
//! of a send, when it tries again and when it stops, and how it reads error answers. The
//! end-to-end tests (`tests/e2e/client.rs`) drive the real server through it.

mod builder;
mod retry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted server does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answers with this status, extra headers and body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Reads the request and closes the connection without answering.
    Cut,
    /// Reads the request and answers nothing for this long, then closes.
    Stall(Duration),
}

/// One request the server read.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `POST /api/v1/messaging/message`.
    pub line: String,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`null` if none).
    pub json: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A server that follows a script, one step per request (the last step repeats).
pub struct Scripted {
    /// Its base URL.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    /// Starts one.
    pub async fn start(script: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::new(Mutex::new(script)), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, seen) = (state.0.clone(), state.1.clone());
                tokio::spawn(serve(stream, script, seen));
            }
        });
        Self { url, seen }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Vec<Step>>>, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Some(request) = read_request(&mut stream).await else { return };
        let step = {
            let mut script = script.lock().expect("lock");
            if script.len() > 1 { script.remove(0) } else { script[0].clone() }
        };
        seen.lock().expect("lock").push(request);
        match step {
            Step::Answer(status, headers, body) => {
                let mut answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    answer.push_str(&format!("{name}: {value}\r\n"));
                }
                answer.push_str("\r\n");
                answer.push_str(&body);
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Step::Cut => return,
            Step::Stall(d) => {
                tokio::time::sleep(d).await;
                return;
            }
        }
    }
}

/// Reads one request (headers and a `content-length` body), or `None` at the end.
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let json = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(serde_json::Value::Null);
    Some(Seen { line, headers, json, at })
}

/// A TextingLine message as the server answers a send.
pub const MESSAGE: &str = r#"{"id":"msg_DsAdb4EBYBh3z25sBA1qnv","direction":"outbound","to":"+18005551234","from":"+18005559876","body":"hi","status":"queued","createdAt":"2026-03-15T14:30:05.000Z"}"#;

/// A TextingLine error body.
pub fn tl_error(code: u32, kind: &str, status: u16) -> String {
    format!(r#"{{"error":{{"code":{code},"type":"{kind}","message":"{kind}","status":{status}}}}}"#)
}
