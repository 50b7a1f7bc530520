//! The web console's use cases: its sessions, and the message counts its overview draws.
//!
//! A session token is 256 bits from the OS-seeded CSPRNG, held only by the browser (in a
//! cookie); the store keeps HMAC-SHA256 of it under the server secret (the [`KeyHasher`] of
//! API keys, over a distinct prefix), so a copy of the database holds no usable session. The
//! session's CSRF token is derived from its token the same way (another prefix), so it needs
//! no storage and is known only to whoever holds the session. A session ends at its expiry,
//! after a time unused, when it is ended (logout), and, for an account holder, when the API
//! key it logged in with is revoked (checked through the same key cache as the API, which a
//! revocation on this node clears at once).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use switchboard_domain::{AccountId, Timestamp};
use switchboard_records::{ConsolePrincipal, ConsoleSessionRecord, TrafficBucket};

use crate::{AccessError, AuthError, Core, KeyHasher};

/// The client of an HTTP request as the HTTP layer found it, set as a request extension on
/// every route of the server (the console's included): its address for the failure budgets
/// (the TCP peer, or what a trusted proxy forwarded), and whether it reached a trusted
/// TLS-terminating proxy over HTTPS (`X-Forwarded-Proto: https` from a trusted proxy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClient {
    /// The client's address, when known.
    pub address: Option<IpAddr>,
    /// Whether the client's connection was HTTPS.
    pub https: bool,
}

/// How long console sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest a session lasts, however much it is used.
    pub lifetime: Duration,
    /// Longest a session lasts unused.
    pub idle: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self { lifetime: Duration::from_secs(12 * 3600), idle: Duration::from_secs(3600) }
    }
}

/// A session's token, as the browser holds it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// The token as presented (a cookie's value); `None` when it cannot be one (64 lowercase
    /// hex digits).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Self(text.to_owned()))
    }

    /// The token, for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn generate() -> Self {
        let mut buf = [0u8; 32];
        rand::rng().fill_bytes(&mut buf);
        Self(buf.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A live console session.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Whose it is.
    pub principal: ConsolePrincipal,
    /// The token every state-changing form must carry.
    pub csrf: String,
    /// When it ends at the latest.
    pub expires_at: Timestamp,
}

impl fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("principal", &self.principal)
            .field("csrf", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The keyed hash a session is stored under.
fn token_hash(hasher: &KeyHasher, token: &SessionToken) -> Vec<u8> {
    hasher.hash(&format!("console-session:{}", token.0))
}

/// The CSRF token of a session.
fn csrf_token(hasher: &KeyHasher, token: &SessionToken) -> String {
    hasher.hash(&format!("console-csrf:{}", token.0)).iter().map(|b| format!("{b:02x}")).collect()
}

/// Last-seen times are noted to within this, so that a page view rarely writes.
const TOUCH_EVERY_MS: i64 = 60_000;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Core {
    /// Checks an API key id and secret for a console login, within the same failure budgets
    /// as the API's Basic auth ([`Core::authenticate`]).
    pub async fn console_login_key(
        &self,
        client: Option<IpAddr>,
        key_id: &str,
        secret: &str,
    ) -> Result<ConsolePrincipal, AuthError> {
        let account = self.authenticate(client, key_id, secret).await?;
        Ok(ConsolePrincipal::Account { account, key_id: key_id.to_owned() })
    }

    /// Starts a session for `principal` (already authenticated), and purges the expired ones.
    pub async fn start_console_session(
        &self,
        principal: ConsolePrincipal,
        limits: SessionLimits,
    ) -> Result<(SessionToken, ConsoleSession), AccessError> {
        let store = &self.inner.store;
        let now = Timestamp::now();
        let idle_before = Timestamp::from_millis(now.millis().saturating_sub(millis(limits.idle)));
        if let Err(e) = store.purge_console_sessions(now, idle_before).await {
            tracing::warn!(error = %e, "purging expired console sessions failed");
        }
        let token = SessionToken::generate();
        let hasher = self.inner.auth.hasher();
        let record = ConsoleSessionRecord {
            token_hash: token_hash(hasher, &token),
            principal: principal.clone(),
            created_at: now,
            expires_at: now.plus_millis(millis(limits.lifetime)),
            last_seen_at: now,
        };
        store.create_console_session(&record).await.map_err(AccessError::from_storage("session"))?;
        let csrf = csrf_token(hasher, &token);
        Ok((token, ConsoleSession { principal, csrf, expires_at: record.expires_at }))
    }

    /// The live session of a token: `None` when there is none, or it expired, went unused
    /// too long, or its API key was revoked (then it is removed).
    pub async fn console_session(
        &self,
        token: &SessionToken,
        limits: SessionLimits,
    ) -> Result<Option<ConsoleSession>, AccessError> {
        let store = &self.inner.store;
        let hasher = self.inner.auth.hasher();
        let hash = token_hash(hasher, token);
        let Some(record) = store.find_console_session(&hash).await.map_err(AccessError::from_storage("session"))?
        else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let idle_until = record.last_seen_at.plus_millis(millis(limits.idle));
        let mut live = now < record.expires_at && now < idle_until;
        if live && let ConsolePrincipal::Account { account, key_id } = &record.principal {
            match self.inner.auth.check_key(store.as_ref(), key_id, *account).await {
                Ok(()) => {}
                Err(AuthError::InvalidCredentials) => live = false,
                Err(_) => return Err(AccessError::Unavailable),
            }
        }
        if !live {
            store.delete_console_session(&hash).await.map_err(AccessError::from_storage("session"))?;
            return Ok(None);
        }
        if now.millis() - record.last_seen_at.millis() >= TOUCH_EVERY_MS {
            store.touch_console_session(&hash, now).await.map_err(AccessError::from_storage("session"))?;
        }
        Ok(Some(ConsoleSession {
            principal: record.principal,
            csrf: csrf_token(hasher, token),
            expires_at: record.expires_at,
        }))
    }

    /// Ends a session (logout); ending one that is gone is no error.
    pub async fn end_console_session(&self, token: &SessionToken) -> Result<(), AccessError> {
        let hash = token_hash(self.inner.auth.hasher(), token);
        self.inner.store.delete_console_session(&hash).await.map_err(AccessError::from_storage("session"))?;
        Ok(())
    }

    /// Outbound messages created in `[from, to)` by hour and where they stand now, of one
    /// account or (`None`) of all.
    pub async fn hourly_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TrafficBucket>, AccessError> {
        self.inner.store.hourly_traffic(account, from, to).await.map_err(AccessError::from_storage("statistics"))
    }

    /// Outbound messages created in each of `minutes` minutes (at most 60) from `from`, by
    /// where they stand now, of one account or (`None`) of all.
    pub async fn minute_traffic(
        &self,
        account: Option<AccountId>,
        from: Timestamp,
        minutes: u32,
    ) -> Result<Vec<TrafficBucket>, AccessError> {
        self.inner.store.minute_traffic(account, from, minutes).await.map_err(AccessError::from_storage("statistics"))
    }

    /// The account's outbound messages waiting: (accepted or queued, scheduled).
    pub async fn account_backlog(&self, account: AccountId) -> Result<(i64, i64), AccessError> {
        self.inner.store.account_backlog(account).await.map_err(AccessError::from_storage("statistics"))
    }
}
