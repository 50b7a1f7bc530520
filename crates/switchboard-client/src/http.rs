//! The connection to one server that every dialect's client shares: [`Switchboard`], made by
//! a [`ClientBuilder`] with the base URL, a `reqwest::Client` (the caller's or one it makes),
//! timeouts and the user agent.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderValue, USER_AGENT};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::admin::AdminClient;
use crate::bird::{BirdAuth, BirdClient};
use crate::error::{ApiError, ClientError, Dialect, Result};
use crate::mudbase::{MudbaseAuth, MudbaseClient};
use crate::retry::RetryPolicy;
use crate::textingline::TextingLineClient;

/// How long a request may take, answer included, unless set: a little over the server's own
/// limit of 30 s, so that its `408` arrives rather than a client-side timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(35);
/// How long connecting may take, unless set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`Switchboard`]: start with [`Switchboard::builder`].
///
/// ```no_run
/// use std::time::Duration;
///
/// use switchboard_client::{RetryPolicy, Switchboard};
///
/// # fn main() -> Result<(), switchboard_client::ClientError> {
/// let switchboard = Switchboard::builder("https://sms.example.com")
///     .timeout(Duration::from_secs(20))
///     .connect_timeout(Duration::from_secs(3))
///     .user_agent("orders-service/2.1")
///     .retry(RetryPolicy::default().max_attempts(5))
///     .build()?;
/// let textingline = switchboard.textingline("key_…", "sk_…");
/// # let _ = textingline;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    base_url: String,
    http: Option<reqwest::Client>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    user_agent: Option<String>,
    retry: RetryPolicy,
}

impl ClientBuilder {
    /// Settings for the server at `base_url`, such as `https://sms.example.com` or
    /// `http://127.0.0.1:8080/switchboard` behind a proxy that adds a prefix.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            http: None,
            timeout: None,
            connect_timeout: None,
            user_agent: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Sends through this `reqwest::Client` (its pool, proxy, TLS and headers) instead of one
    /// of the builder's own. Its connect timeout is its own: setting
    /// [`connect_timeout`](Self::connect_timeout) as well is an error.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How long each request may take, from sending to the end of the answer. Without it,
    /// [`DEFAULT_TIMEOUT`] on the builder's own client, and the given client's own setting.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long connecting may take ([`DEFAULT_CONNECT_TIMEOUT`] unless set); for the
    /// builder's own client only.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The `User-Agent` of every request; `switchboard-client/<version>` unless set (or, with
    /// a given client, that client's own).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// When TextingLine sends are tried again ([`RetryPolicy::default`] unless set).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Checks the settings and makes the connection.
    pub fn build(self) -> Result<Switchboard> {
        let base = base_url(&self.base_url)?;
        let user_agent = match &self.user_agent {
            Some(ua) => Some(
                HeaderValue::from_str(ua)
                    .map_err(|_| ClientError::Config(format!("the user agent `{ua}` is not a valid header value")))?,
            ),
            None => None,
        };
        let timeout = match (&self.http, self.timeout) {
            (_, Some(timeout)) => Some(timeout),
            (None, None) => Some(DEFAULT_TIMEOUT),
            (Some(_), None) => None,
        };
        let (client, per_request_agent) = match self.http {
            Some(client) => {
                if self.connect_timeout.is_some() {
                    return Err(ClientError::Config(
                        "connect_timeout applies to the builder's own client; set it on the reqwest::Client given to \
                         http_client"
                            .into(),
                    ));
                }
                (client, user_agent)
            }
            None => {
                let agent = user_agent.unwrap_or_else(|| HeaderValue::from_static(DEFAULT_USER_AGENT));
                let client = reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
                    .user_agent(agent)
                    .build()
                    .map_err(|e| ClientError::Config(format!("the HTTP client cannot be made: {e}")))?;
                (client, None)
            }
        };
        Ok(Switchboard { http: Http { base, client, timeout, user_agent: per_request_agent, retry: self.retry } })
    }
}

/// The default `User-Agent`.
const DEFAULT_USER_AGENT: &str = concat!("switchboard-client/", env!("CARGO_PKG_VERSION"));

/// Checks a base URL: absolute `http` or `https` with a host, no credentials, query or
/// fragment. Returns it without a trailing `/`.
fn base_url(text: &str) -> Result<String> {
    let invalid = |reason: &str| ClientError::InvalidBaseUrl { url: text.to_owned(), reason: reason.to_owned() };
    let url = Url::parse(text.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials do not go in the URL; give them to the dialect's client"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or a fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A connection to one Switchboard server, from which each dialect's client is made; the
/// clients share its `reqwest::Client` and so its connections.
///
/// ```no_run
/// use switchboard_client::{BirdAuth, MudbaseAuth, Switchboard, Uuid};
///
/// # fn main() -> Result<(), switchboard_client::ClientError> {
/// let switchboard = Switchboard::new("https://sms.example.com")?;
/// let account = Uuid::parse_str("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c").unwrap();
/// let textingline = switchboard.textingline("key_…", "sk_…");
/// let mudbase = switchboard.mudbase(account, MudbaseAuth::ApiKey("key_…:sk_…".into()));
/// let bird = switchboard.bird(account, BirdAuth::AccessKey("key_…:sk_…".into()));
/// let admin = switchboard.admin("the operator token");
/// # let _ = (textingline, mudbase, bird, admin);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Switchboard {
    http: Http,
}

impl Switchboard {
    /// A connection to the server at `base_url` with the default settings.
    pub fn new(base_url: &str) -> Result<Self> {
        ClientBuilder::new(base_url).build()
    }

    /// Settings for a connection to the server at `base_url`.
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url)
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.http.base
    }

    /// A TextingLine client with an API key (`key_…` and its `sk_…` secret).
    pub fn textingline(&self, key_id: &str, secret: &str) -> TextingLineClient {
        TextingLineClient::with_http(self.http.clone(), key_id, secret)
    }

    /// A Mudbase client for a project (an account id).
    pub fn mudbase(&self, project: Uuid, auth: MudbaseAuth) -> MudbaseClient {
        MudbaseClient::with_http(self.http.clone(), project, auth)
    }

    /// A Bird channels client for a workspace (an account id).
    pub fn bird(&self, workspace: Uuid, auth: BirdAuth) -> BirdClient {
        BirdClient::with_http(self.http.clone(), workspace, auth)
    }

    /// An admin API client with the operator token.
    pub fn admin(&self, token: &str) -> AdminClient {
        AdminClient::with_http(self.http.clone(), token)
    }
}

/// What every dialect's client sends through.
#[derive(Clone)]
pub(crate) struct Http {
    /// The base URL, without a trailing `/`.
    pub(crate) base: String,
    client: reqwest::Client,
    /// The timeout set on each request, if any.
    timeout: Option<Duration>,
    /// A `User-Agent` set on each request (for a given client with one set on the builder).
    user_agent: Option<HeaderValue>,
    /// When TextingLine sends are tried again.
    pub(crate) retry: RetryPolicy,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http").field("base", &self.base).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Http {
    /// A request to `path` (which starts with `/`, its variable segments escaped with
    /// [`segment`]).
    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        if let Some(agent) = &self.user_agent {
            request = request.header(USER_AGENT, agent.clone());
        }
        request
    }
}

/// Escapes one path segment: everything but ASCII letters, digits and `-._~+:@` is
/// percent-encoded, so a value cannot change the path (a `/`, `?`, `#` or `..`).
pub(crate) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~+:@".contains(&b) || (b == b'.' && value.bytes().any(|c| c != b'.')) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a success answer as JSON of type `T`, or an error answer in `dialect`'s shape.
pub(crate) async fn read<T: DeserializeOwned>(dialect: Dialect, response: Response) -> Result<T> {
    let status = response.status();
    let bytes = read_bytes(dialect, response).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Decode { status, reason: format!("{e}: {}", excerpt(&bytes)) })
}

/// Reads a success answer whose body does not matter (such as a `204`).
pub(crate) async fn read_empty(dialect: Dialect, response: Response) -> Result<()> {
    read_bytes(dialect, response).await.map(|_| ())
}

/// The body of a success answer, or the error answer read in `dialect`'s shape.
async fn read_bytes(dialect: Dialect, response: Response) -> Result<Vec<u8>> {
    let status = response.status();
    if status.is_success() {
        return Ok(response.bytes().await?.to_vec());
    }
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    Err(ClientError::Api(Box::new(ApiError::parse(dialect, status, &headers, &bytes))))
}

/// The start of a body, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}
