//! Short-lived signed access tokens (JWT, HS256) exchanged for an API key.
//!
//! A token names its key (`sub`) and account (`acct`) and expires (`exp`). It is signed with
//! a key derived from the server secret, so every node on one database accepts every node's
//! tokens. Checking one costs an HMAC and a look at the (cached) key record, so a revoked key's
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

/// Signs and checks access tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
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

impl Tokens {
    /// Tokens signed with a key derived from `server_secret`, living `ttl`.
    pub fn new(server_secret: &[u8], ttl: Duration) -> Self {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(server_secret).unwrap_or_else(|_| unreachable!());
        mac.update(b"switchboard access tokens v1");
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Self { encoding: EncodingKey::from_secret(&key), decoding: DecodingKey::from_secret(&key), validation, ttl }
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
        // Encoding a plain struct with an HMAC key of the right family cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("encoding a token failed: {e}"));
        AccessToken { token, expires_at: Timestamp::from_millis(exp * 1000), expires_in: self.ttl }
    }

    /// Checks a token's signature, algorithm, issuer and expiry; returns (key id, account).
    pub fn verify(&self, token: &str) -> Result<(String, AccountId), AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::InvalidCredentials)?;
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
}
