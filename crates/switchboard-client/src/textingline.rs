//! The TextingLine dialect: send a message to one recipient, read it, list them
//! ([`TextingLineClient`]). Sends are tried again under an idempotency key (see
//! [`RetryPolicy`]).

use std::fmt;

use reqwest::{Method, RequestBuilder, StatusCode};
use switchboard_domain::wire::{Balance, TlMessage, TlMessageList, TlSendRequest};

use crate::error::{Dialect, Result};
use crate::http::{Http, read, segment};
use crate::retry::RetryPolicy;

/// The header with which the server marks the answer to a repeated send.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// A TextingLine-dialect client, authenticated with an API key (HTTP Basic).
///
/// ```no_run
/// use switchboard_client::TextingLineClient;
/// use switchboard_client::wire::TlSendRequest;
///
/// # async fn run() -> Result<(), switchboard_client::ClientError> {
/// let client = TextingLineClient::new("https://sms.example.com", "key_…", "sk_…")?;
/// let sent = client
///     .send(&TlSendRequest {
///         to: "+18005551234".into(),
///         from: "+18005559876".into(),
///         body: Some("Your verification code is 482910".into()),
///         idempotency_key: Some("order-42-code".into()),
///         ..Default::default()
///     })
///     .await?;
/// println!("{} is {:?}", sent.message.id, sent.message.status);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TextingLineClient {
    http: Http,
    key_id: String,
    secret: String,
    retry: RetryPolicy,
}

impl fmt::Debug for TextingLineClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextingLineClient")
            .field("base", &self.http.base)
            .field("key_id", &self.key_id)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sent {
    /// The HTTP status: `201 Created`.
    pub status: StatusCode,
    /// Whether the server answered with the message it had stored for the idempotency key,
    /// storing and charging nothing new.
    pub replayed: bool,
    /// The message. Its `status` may be `failed` with a `201`: a delivery-level failure (an
    /// opted-out recipient, a refused destination), not a request error.
    pub message: TlMessage,
    /// The idempotency key the send carried: the caller's, or the one generated for it. Send
    /// the same request with it later to learn what became of it without sending it twice.
    pub idempotency_key: Option<String>,
    /// How many attempts the send took.
    pub attempts: u32,
}

impl TextingLineClient {
    /// A client for the server at `base_url` with the API key `key_id` and its secret, and
    /// the default settings (see [`Switchboard::builder`](crate::Switchboard::builder) for
    /// others).
    pub fn new(base_url: &str, key_id: &str, secret: &str) -> Result<Self> {
        Ok(crate::Switchboard::new(base_url)?.textingline(key_id, secret))
    }

    pub(crate) fn with_http(http: Http, key_id: &str, secret: &str) -> Self {
        let retry = http.retry;
        Self { http, key_id: key_id.to_owned(), secret: secret.to_owned(), retry }
    }

    /// The same client with another retry policy.
    #[must_use]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, path).basic_auth(&self.key_id, Some(&self.secret))
    }

    /// `POST /api/v1/messaging/message`: sends an SMS, or an MMS when `media_url` is set.
    ///
    /// A send that fails in a way that may pass (no connection, a timeout, a cut connection,
    /// `408`, `429`, `5xx`) is tried again as the [`RetryPolicy`] says, always under the same
    /// idempotency key: the request's, or one generated for this call when it has none. The
    /// server then stores and charges the message at most once, and answers a repeat of a
    /// stored one with it ([`Sent::replayed`]). A send without a key (with key generation
    /// off) is tried once.
    pub async fn send(&self, request: &TlSendRequest) -> Result<Sent> {
        let mut request = request.clone();
        if request.idempotency_key.is_none() && self.retry.generates_keys() {
            request.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
        }
        let repeatable = request.idempotency_key.is_some();
        let mut attempt = 1;
        loop {
            match self.send_once(&request).await {
                Ok((status, replayed, message)) => {
                    return Ok(Sent {
                        status,
                        replayed,
                        message,
                        idempotency_key: request.idempotency_key,
                        attempts: attempt,
                    });
                }
                Err(error) => {
                    let wait = if repeatable { self.retry.delay(attempt, &error) } else { None };
                    let Some(wait) = wait else {
                        return Err(error);
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send_once(&self, request: &TlSendRequest) -> Result<(StatusCode, bool, TlMessage)> {
        let response = self.request(Method::POST, "/api/v1/messaging/message").json(request).send().await?;
        let status = response.status();
        let replayed =
            response.headers().get(REPLAYED_HEADER).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let message = read(Dialect::TextingLine, response).await?;
        Ok((status, replayed, message))
    }

    /// `GET /api/v1/messaging/message/{id}`: one of the account's messages (`msg_…`).
    pub async fn message(&self, id: &str) -> Result<TlMessage> {
        let path = format!("/api/v1/messaging/message/{}", segment(id));
        read(Dialect::TextingLine, self.request(Method::GET, &path).send().await?).await
    }

    /// `GET /api/v1/messaging/message`: a page of the account's messages, newest first;
    /// `limit` 1 to 100 (20 unless given), `cursor` the previous page's `nextCursor`.
    pub async fn messages(&self, limit: Option<u32>, cursor: Option<&str>) -> Result<TlMessageList> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let response = self.request(Method::GET, "/api/v1/messaging/message").query(&query).send().await?;
        read(Dialect::TextingLine, response).await
    }

    /// `GET /api/v1/account/balance`: the balances of the key's account, Switchboard's own
    /// addition to the dialect.
    pub async fn balance(&self) -> Result<Balance> {
        let response = self.request(Method::GET, "/api/v1/account/balance").send().await?;
        read(Dialect::TextingLine, response).await
    }
}
