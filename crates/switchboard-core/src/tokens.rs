//! Short-lived signed access tokens (JWT, HS256) exchanged for an API key.
//!
//! A token names its key (`sub`) and account (`acct`) and expires (`exp`). It is signed with
//! a key derived from the primary server key (see [`crate::keys`]), named in its `kid` header,
//! so every node with the same keys accepts every node's tokens. Checking one costs an HMAC and a look at the (cached) key record, so a revoked key's
//! tokens stop working as its credentials do: nothing on the request path reads the database
//! more often than an API key would.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use switchboard_domain::{AccountId, Timestamp};

use crate::AuthError;

const ISSUER: &str = "switchboard";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key the token was issued for.
    pub sub: String,
    /// The key's account.
    pub acct: String,
    /// Issuer: `switchboard`.
    pub iss: String,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
}

/// An issued token.
#[derive(Clone)]
pub struct AccessToken {
    /// The compact JWT.
    pub token: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
    /// Its lifetime.
    pub expires_in: Duration,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").field("token", &"<redacted>").field("expires_at", &self.expires_at).finish()
    }
}

/// One key that checks tokens.
struct CheckKey {
    id: u32,
    decoding: DecodingKey,
    /// A retired key checks only tokens it issued before it was retired.
    retired_at: Option<i64>,
}

/// Signs and checks access tokens.
pub struct Tokens {
    /// The primary key's id, named in the `kid` header of the tokens it signs (none for key
    /// 0, whose tokens older versions made without one).
    primary: u32,
    encoding: EncodingKey,
    checking: Vec<CheckKey>,
    validation: Validation,
    ttl: Duration,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Longest token accepted, in bytes (ours are about 250).
const MAX_TOKEN_LEN: usize = 2048;

/// The HS256 key that a server key gives tokens.
fn token_key(secret: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(b"switchboard access tokens v1");
    mac.finalize().into_bytes().to_vec()
}

impl Tokens {
    /// Tokens signed with a key derived from `server_secret` (as key 0), living `ttl`.
    pub fn new(server_secret: &[u8], ttl: Duration) -> Self {
        Self::with_keys(&[(0, server_secret, None)], ttl)
    }

    /// Tokens signed by the first of `keys` (id, secret, when it was retired) and checked under
    /// any of them, living `ttl`. `keys` must not be empty.
    pub fn with_keys(keys: &[(u32, &[u8], Option<i64>)], ttl: Duration) -> Self {
        let (primary, primary_secret, _) = keys[0];
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        let checking = keys
            .iter()
            .map(|&(id, secret, retired_at)| CheckKey {
                id,
                decoding: DecodingKey::from_secret(&token_key(secret)),
                retired_at,
            })
            .collect();
        Self { primary, encoding: EncodingKey::from_secret(&token_key(primary_secret)), checking, validation, ttl }
    }

    /// How long tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for a key of an account, valid from `now`.
    pub fn issue(&self, key_id: &str, account: AccountId, now: Timestamp) -> AccessToken {
        let iat = now.millis().div_euclid(1000);
        let exp = iat + self.ttl.as_secs() as i64;
        let claims = Claims { sub: key_id.to_owned(), acct: account.to_string(), iss: ISSUER.to_owned(), iat, exp };
        let mut header = Header::new(Algorithm::HS256);
        if self.primary != 0 {
            header.kid = Some(self.primary.to_string());
        }
        // Encoding a plain struct with an HMAC key of the right family cannot fail.
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("encoding a token failed: {e}"));
        AccessToken { token, expires_at: Timestamp::from_millis(exp * 1000), expires_in: self.ttl }
    }

    /// Checks a token's signature (under the key its `kid` names, key 0 without one),
    /// algorithm, issuer and expiry; a retired key's token must have been issued no later than
    /// `ttl` after the key was retired (room for every node to restart with the new primary)
    /// and live no longer than `ttl`. Returns (key id, account).
    pub fn verify(&self, token: &str) -> Result<(String, AccountId), AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidCredentials)?;
        let kid = match header.kid.as_deref() {
            None => 0,
            Some(kid) => kid.parse::<u32>().map_err(|_| AuthError::InvalidCredentials)?,
        };
        let key = self.checking.iter().find(|k| k.id == kid).ok_or(AuthError::InvalidCredentials)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidCredentials)?;
        if let Some(retired_at) = key.retired_at {
            let claims = &data.claims;
            let ttl = self.ttl.as_secs() as i64;
            if claims.iat > retired_at.saturating_add(ttl) || claims.exp - claims.iat > ttl {
                return Err(AuthError::InvalidCredentials);
            }
        }
        let account = data.claims.acct.parse().map_err(|_| AuthError::InvalidCredentials)?;
        Ok((data.claims.sub, account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_they_expire() {
        let tokens = Tokens::new(&[7; 32], Duration::from_secs(60));
        let account = AccountId::new();
        let t = tokens.issue("key_1", account, Timestamp::now());
        assert_eq!(tokens.verify(&t.token).unwrap(), ("key_1".to_owned(), account));
        assert!(!format!("{t:?}").contains(&t.token));

        let old = tokens.issue("key_1", account, Timestamp::now().plus_millis(-120_000));
        assert_eq!(tokens.verify(&old.token), Err(AuthError::InvalidCredentials), "expired");

        let other = Tokens::new(&[8; 32], Duration::from_secs(60));
        assert_eq!(other.verify(&t.token), Err(AuthError::InvalidCredentials), "another server's key");

        let mut parts: Vec<String> = t.token.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(tokens.verify(&parts.join(".")), Err(AuthError::InvalidCredentials), "tampered");
        assert_eq!(tokens.verify("not.a.token"), Err(AuthError::InvalidCredentials));
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let tokens = Tokens::new(&[7; 32], Duration::from_secs(60));
        let t = tokens.issue("key_1", AccountId::new(), Timestamp::now());
        let payload = t.token.split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(tokens.verify(&none), Err(AuthError::InvalidCredentials));
    }

    #[test]
    fn a_rotated_ring_checks_what_its_retired_key_signed_before_retiring() {
        let ttl = Duration::from_secs(3600);
        let account = AccountId::new();
        let now = Timestamp::now();
        let old = Tokens::with_keys(&[(0, &[7; 32], None)], ttl);
        let before = old.issue("key_1", account, now.plus_millis(-3_500_000));
        // Key 0's tokens carry no key id, as older versions made them.
        assert!(jsonwebtoken::decode_header(&before.token).unwrap().kid.is_none());

        // Retired 4,000 s ago: it checks what it issued up to a lifetime (3,600 s) after that.
        let retired_at = now.millis() / 1000 - 4_000;
        let ring = Tokens::with_keys(&[(1, &[9; 32], None), (0, &[7; 32], Some(retired_at))], ttl);
        assert_eq!(ring.verify(&before.token).unwrap().1, account, "issued within a lifetime of the rotation");
        let new = ring.issue("key_1", account, now);
        assert_eq!(jsonwebtoken::decode_header(&new.token).unwrap().kid.as_deref(), Some("1"));
        assert_eq!(ring.verify(&new.token).unwrap().1, account);
        // Whoever still holds key 0 cannot make a token the ring accepts after the rotation.
        let forged = old.issue("key_1", account, now);
        assert_eq!(ring.verify(&forged.token), Err(AuthError::InvalidCredentials), "issued after");
        let long = Tokens::with_keys(&[(0, &[7; 32], None)], Duration::from_secs(86_400 * 365));
        let forged = long.issue("key_1", account, now.plus_millis(-3_500_000));
        assert_eq!(ring.verify(&forged.token), Err(AuthError::InvalidCredentials), "longer than the ttl");
        // A key id the ring does not have, or not a number.
        let other = Tokens::with_keys(&[(5, &[9; 32], None)], ttl).issue("key_1", account, now);
        assert_eq!(ring.verify(&other.token), Err(AuthError::InvalidCredentials));
    }
}
