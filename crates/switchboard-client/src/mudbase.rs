//! The Mudbase dialect: multi-recipient SMS, history, statistics and access tokens
//! ([`MudbaseClient`]).
//!
//! Mudbase's API has no idempotency key, so its sends are never tried again: after a timeout
//! or a lost connection, read the history before sending again.

use std::fmt;

use reqwest::{Method, RequestBuilder};
use switchboard_domain::Timestamp;
use switchboard_domain::wire::mudbase::{MbHistory, MbOk, MbRecipients, MbSmsRequest, MbSmsSent, MbStats, MbToken};
use uuid::Uuid;

use crate::error::{Dialect, Result};
use crate::http::{Http, read};

/// How a [`MudbaseClient`] authenticates.
#[derive(Clone)]
pub enum MudbaseAuth {
    /// `X-API-Key: <key id>:<secret>`, the API key as one string (the admin API's `apiKey`).
    ApiKey(String),
    /// `Authorization: Bearer <token>`, with a token from [`MudbaseClient::issue_token`].
    Bearer(String),
}

impl fmt::Debug for MudbaseAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MudbaseAuth::ApiKey(_) => "ApiKey(<redacted>)",
            MudbaseAuth::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

/// A Mudbase-dialect client for one project (a Switchboard account).
///
/// ```no_run
/// use switchboard_client::{MudbaseAuth, MudbaseClient, Uuid};
///
/// # async fn run() -> Result<(), switchboard_client::ClientError> {
/// let project = Uuid::parse_str("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c").unwrap();
/// let client = MudbaseClient::new("https://sms.example.com", project, MudbaseAuth::ApiKey("key_…:sk_…".into()))?;
/// let sent = client.send_sms(&["+18005550001", "+18005550002"], "Your order has shipped", None).await?;
/// println!("{} recipients, request {}", sent.recipients, sent.id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MudbaseClient {
    http: Http,
    project: Uuid,
    auth: MudbaseAuth,
}

impl fmt::Debug for MudbaseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MudbaseClient")
            .field("base", &self.http.base)
            .field("project", &self.project)
            .field("auth", &self.auth)
            .finish()
    }
}

impl MudbaseClient {
    /// A client for `project` on the server at `base_url`, with the default settings.
    pub fn new(base_url: &str, project: Uuid, auth: MudbaseAuth) -> Result<Self> {
        Ok(crate::Switchboard::new(base_url)?.mudbase(project, auth))
    }

    pub(crate) fn with_http(http: Http, project: Uuid, auth: MudbaseAuth) -> Self {
        Self { http, project, auth }
    }

    /// The same client with other credentials.
    #[must_use]
    pub fn with_auth(&self, auth: MudbaseAuth) -> Self {
        Self { auth, ..self.clone() }
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            MudbaseAuth::ApiKey(key) => request.header("x-api-key", key),
            MudbaseAuth::Bearer(token) => request.bearer_auth(token),
        }
    }

    fn request(&self, method: Method, tail: &str) -> RequestBuilder {
        self.authed(self.http.request(method, &format!("/api/messaging/projects/{}/messaging/{tail}", self.project)))
    }

    /// `POST /api/auth/token`: exchanges this client's API key for an access token.
    pub async fn issue_token(&self) -> Result<MbToken> {
        let response = self.authed(self.http.request(Method::POST, "/api/auth/token")).send().await?;
        Ok(read::<MbOk<MbToken>>(Dialect::Mudbase, response).await?.data)
    }

    /// `POST …/messaging/sms`: the same text to one or more recipients (E.164), from `from` or
    /// the project's first active SMS sender. All or nothing for credits.
    pub async fn send_sms(&self, to: &[&str], message: &str, from: Option<&str>) -> Result<MbSmsSent> {
        let body = MbSmsRequest {
            to: MbRecipients::List(to.iter().map(|s| (*s).to_owned()).collect()),
            message: message.to_owned(),
            from: from.map(str::to_owned),
        };
        let response = self.request(Method::POST, "sms").json(&body).send().await?;
        Ok(read::<MbOk<MbSmsSent>>(Dialect::Mudbase, response).await?.data)
    }

    /// `GET …/messaging/history`: the project's send requests, newest first, optionally only
    /// those of a `status` (`sent`, `failed`, `pending`); `page` from 1, `limit` 1 to 100.
    pub async fn history(&self, status: Option<&str>, page: u32, limit: u32) -> Result<MbHistory> {
        let mut query = vec![("page", page.to_string()), ("limit", limit.to_string())];
        if let Some(s) = status {
            query.push(("status", s.to_owned()));
        }
        let response = self.request(Method::GET, "history").query(&query).send().await?;
        Ok(read::<MbOk<MbHistory>>(Dialect::Mudbase, response).await?.data)
    }

    /// `GET …/messaging/stats`: counts of the project's messages created in `[start, end)`
    /// (the server's defaults where `None`: the 30 days to now).
    pub async fn stats(&self, start: Option<Timestamp>, end: Option<Timestamp>) -> Result<MbStats> {
        let mut query = Vec::new();
        if let Some(s) = start {
            query.push(("startDate", s.to_string()));
        }
        if let Some(e) = end {
            query.push(("endDate", e.to_string()));
        }
        let response = self.request(Method::GET, "stats").query(&query).send().await?;
        Ok(read::<MbOk<MbStats>>(Dialect::Mudbase, response).await?.data)
    }
}
