//! The Bird channels dialect: send a message on a channel, read it, list a channel's messages
//! and cancel a scheduled one ([`BirdClient`]).
//!
//! Bird's API has no idempotency key, so its sends are never tried again: after a timeout or
//! a lost connection, list the channel's messages (by `reference`) before sending again.

use std::fmt;

use reqwest::{Method, RequestBuilder};
use switchboard_domain::wire::bird::{
    BirdBody, BirdContact, BirdMessage, BirdMessageList, BirdReceiver, BirdSendRequest, BirdTextBody,
};
use uuid::Uuid;

use crate::error::{Dialect, Result};
use crate::http::{Http, read, segment};

/// How a [`BirdClient`] authenticates.
#[derive(Clone)]
pub enum BirdAuth {
    /// `Authorization: AccessKey <key id>:<secret>`, the API key as one string (the admin
    /// API's `apiKey`).
    AccessKey(String),
    /// `Authorization: Bearer <token>`, with an access token from the Mudbase dialect's
    /// `POST /api/auth/token` ([`MudbaseClient::issue_token`](crate::MudbaseClient::issue_token)).
    Bearer(String),
}

impl fmt::Debug for BirdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BirdAuth::AccessKey(_) => "AccessKey(<redacted>)",
            BirdAuth::Bearer(_) => "Bearer(<redacted>)",
        })
    }
}

/// A Bird channels client for one workspace (a Switchboard account); each call names the
/// channel (one the operator created on one of the account's senders).
///
/// ```no_run
/// use switchboard_client::{BirdAuth, BirdClient, Uuid};
///
/// # async fn run() -> Result<(), switchboard_client::ClientError> {
/// let workspace = Uuid::parse_str("0195a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5c").unwrap();
/// let channel = Uuid::parse_str("0195a1b2-8d9e-7f00-9a1b-2c3d4e5f6a7b").unwrap();
/// let bird = BirdClient::new("https://sms.example.com", workspace, BirdAuth::AccessKey("key_…:sk_…".into()))?;
/// let sent = bird.send_text(channel, "+31612345678", "Single text message").await?;
/// let now = bird.message(channel, &sent.id.to_string()).await?;
/// println!("{} is {}", now.id, now.status);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BirdClient {
    http: Http,
    workspace: Uuid,
    auth: BirdAuth,
}

impl fmt::Debug for BirdClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BirdClient")
            .field("base", &self.http.base)
            .field("workspace", &self.workspace)
            .field("auth", &self.auth)
            .finish()
    }
}

impl BirdClient {
    /// A client for `workspace` on the server at `base_url`, with the default settings.
    pub fn new(base_url: &str, workspace: Uuid, auth: BirdAuth) -> Result<Self> {
        Ok(crate::Switchboard::new(base_url)?.bird(workspace, auth))
    }

    pub(crate) fn with_http(http: Http, workspace: Uuid, auth: BirdAuth) -> Self {
        Self { http, workspace, auth }
    }

    /// The same client with other credentials.
    #[must_use]
    pub fn with_auth(&self, auth: BirdAuth) -> Self {
        Self { auth, ..self.clone() }
    }

    fn request(&self, method: Method, channel: Uuid, tail: &str) -> RequestBuilder {
        let path = format!("/workspaces/{}/channels/{channel}/messages{tail}", self.workspace);
        let request = self.http.request(method, &path);
        match &self.auth {
            BirdAuth::AccessKey(key) => request.header(reqwest::header::AUTHORIZATION, format!("AccessKey {key}")),
            BirdAuth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// `POST /workspaces/{workspace}/channels/{channel}/messages`: sends a message (a text,
    /// image or file body, or a template) to one receiver. The answer (`202`) says
    /// `accepted`; read the message back to see where it is.
    pub async fn send(&self, channel: Uuid, request: &BirdSendRequest) -> Result<BirdMessage> {
        read(Dialect::Bird, self.request(Method::POST, channel, "").json(request).send().await?).await
    }

    /// Sends a text message to one phone number (E.164).
    pub async fn send_text(&self, channel: Uuid, to: &str, text: &str) -> Result<BirdMessage> {
        let request = BirdSendRequest {
            receiver: Some(BirdReceiver {
                contacts: vec![BirdContact {
                    identifier_key: Some("phonenumber".into()),
                    identifier_value: Some(to.to_owned()),
                    ..BirdContact::default()
                }],
            }),
            body: Some(BirdBody {
                kind: "text".into(),
                text: Some(BirdTextBody { text: text.to_owned(), ..BirdTextBody::default() }),
                ..BirdBody::default()
            }),
            ..BirdSendRequest::default()
        };
        self.send(channel, &request).await
    }

    /// `GET …/messages/{message}`: one of the channel's messages as it stands now; `message`
    /// is its UUID or its `msg_…` id.
    pub async fn message(&self, channel: Uuid, message: &str) -> Result<BirdMessage> {
        let tail = format!("/{}", segment(message));
        read(Dialect::Bird, self.request(Method::GET, channel, &tail).send().await?).await
    }

    /// `GET …/messages`: a page of the channel's messages, newest first; `limit` 1 to 100 (10
    /// unless given), `page_token` the previous page's `nextPageToken`.
    pub async fn messages(
        &self,
        channel: Uuid,
        limit: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<BirdMessageList> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(t) = page_token {
            query.push(("pageToken", t.to_owned()));
        }
        read(Dialect::Bird, self.request(Method::GET, channel, "").query(&query).send().await?).await
    }

    /// `DELETE …/messages/{message}`: cancels a scheduled message and refunds it; a message
    /// that is no longer scheduled is `409` `NotScheduled`.
    pub async fn cancel(&self, channel: Uuid, message: &str) -> Result<BirdMessage> {
        let tail = format!("/{}", segment(message));
        read(Dialect::Bird, self.request(Method::DELETE, channel, &tail).send().await?).await
    }
}
