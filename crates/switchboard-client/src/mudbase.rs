//! The Mudbase dialect: multi-recipient SMS, history, statistics and access tokens.

use std::fmt;

use reqwest::{Method, RequestBuilder};
use switchboard_domain::Timestamp;
use switchboard_domain::wire::mudbase::{MbHistory, MbOk, MbRecipients, MbSmsRequest, MbSmsSent, MbStats, MbToken};
use uuid::Uuid;

use crate::{Http, Result, decode};

/// How a [`MudbaseClient`] authenticates.
#[derive(Clone)]
pub enum MudbaseAuth {
    /// `X-API-Key: <key id>:<secret>`.
    ApiKey(String),
    /// `Authorization: Bearer <token>` from [`MudbaseClient::issue_token`].
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

/// A Mudbase-dialect client for one project.
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
    /// A client for `project` on the server at `base_url`.
    pub fn new(base_url: &str, project: Uuid, auth: MudbaseAuth) -> Self {
        Self { http: Http::new(base_url), project, auth }
    }

    /// The same client with other credentials.
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
        Ok(decode::<MbOk<MbToken>>(response).await?.data)
    }

    /// `POST …/messaging/sms` to one or more recipients.
    pub async fn send_sms(&self, to: &[&str], message: &str, from: Option<&str>) -> Result<MbSmsSent> {
        let body = MbSmsRequest {
            to: MbRecipients::List(to.iter().map(|s| (*s).to_owned()).collect()),
            message: message.to_owned(),
            from: from.map(str::to_owned),
        };
        let response = self.request(Method::POST, "sms").json(&body).send().await?;
        Ok(decode::<MbOk<MbSmsSent>>(response).await?.data)
    }

    /// `GET …/messaging/history`, optionally filtered by `status` (`sent`, `failed`, `pending`).
    pub async fn history(&self, status: Option<&str>, page: u32, limit: u32) -> Result<MbHistory> {
        let mut query = vec![("page", page.to_string()), ("limit", limit.to_string())];
        if let Some(s) = status {
            query.push(("status", s.to_owned()));
        }
        let response = self.request(Method::GET, "history").query(&query).send().await?;
        Ok(decode::<MbOk<MbHistory>>(response).await?.data)
    }

    /// `GET …/messaging/stats` over `[start, end)` (the server's defaults where `None`).
    pub async fn stats(&self, start: Option<Timestamp>, end: Option<Timestamp>) -> Result<MbStats> {
        let mut query = Vec::new();
        if let Some(s) = start {
            query.push(("startDate", s.to_string()));
        }
        if let Some(e) = end {
            query.push(("endDate", e.to_string()));
        }
        let response = self.request(Method::GET, "stats").query(&query).send().await?;
        Ok(decode::<MbOk<MbStats>>(response).await?.data)
    }
}
