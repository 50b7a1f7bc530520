//! What went wrong with a request, once, whichever dialect answers it.
//!
//! The core's errors ([`ValidationError`], [`SendError`], [`AccessError`], [`AuthError`]) and
//! the HTTP layer's own refusals (a body too large, a wrong `Content-Type`, an unknown route)
//! all become one [`Problem`] here. Each dialect then has one table, its `From<Problem>`, from a
//! problem to its status, its code and its message, and one `IntoResponse` that writes its error
//! body; [`answers_problems!`] gives it the conversions from the core's errors, so that `?`
//! works on each of them in every handler.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use switchboard_core::{AccessError, AuthError, RetryAfter, SendError};
use switchboard_validation::ValidationError;

/// One reason a request was refused.
#[derive(Debug, Clone)]
pub(crate) enum Problem {
    /// The HTTP request itself was refused before a handler read it: the status says why
    /// (400 malformed, 404 no such route, 405, 408, 413, 415, 429, 5xx), the message how.
    Request {
        /// The status the refusal calls for.
        status: StatusCode,
        /// What was wrong, for the caller.
        message: String,
    },
    /// A send's fields failed a stateless check.
    Validation(ValidationError),
    /// A value that a handler or the core checked is not acceptable; the message names it.
    Invalid(String),
    /// No credentials, or credentials that were refused.
    Unauthorized,
    /// Too many failed credential checks; retry after this long.
    Throttled(RetryAfter),
    /// The credentials are good but not for this thing (what it is).
    Forbidden(&'static str),
    /// No such thing (what it is), or not one the caller may know of.
    NotFound(&'static str),
    /// The change conflicts with what is stored.
    Conflict(String),
    /// The sender is not assigned to the account.
    SenderNotAssigned,
    /// The sender is assigned but not active.
    SenderInactive,
    /// The sender cannot send this kind of message (SMS or MMS).
    SenderNotCapable,
    /// No sender was named and the account has none to send from.
    NoDefaultSender,
    /// The balance cannot pay.
    InsufficientCredits,
    /// The idempotency key was used with another request.
    IdempotencyConflict,
    /// The server cannot answer now; the same request may be tried again.
    Unavailable,
}

impl From<ValidationError> for Problem {
    fn from(e: ValidationError) -> Self {
        Problem::Validation(e)
    }
}

impl From<SendError> for Problem {
    fn from(e: SendError) -> Self {
        match e {
            SendError::SenderNotAssigned => Problem::SenderNotAssigned,
            SendError::SenderInactive => Problem::SenderInactive,
            SendError::SenderNotCapable => Problem::SenderNotCapable,
            SendError::InsufficientCredits => Problem::InsufficientCredits,
            SendError::IdempotencyConflict => Problem::IdempotencyConflict,
            SendError::NoDefaultSender => Problem::NoDefaultSender,
            SendError::Unavailable => Problem::Unavailable,
        }
    }
}

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound(what) => Problem::NotFound(what),
            AccessError::Forbidden(what) => Problem::Forbidden(what),
            AccessError::Conflict(m) => Problem::Conflict(m),
            AccessError::Invalid(m) => Problem::Invalid(m),
            AccessError::Unavailable => Problem::Unavailable,
        }
    }
}

impl From<AuthError> for Problem {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => Problem::Unauthorized,
            AuthError::Throttled(wait) => Problem::Throttled(wait),
            AuthError::Unavailable => Problem::Unavailable,
        }
    }
}

/// The message every dialect gives with a [`Problem::Throttled`].
pub(crate) const THROTTLED: &str = "too many failed authentication attempts; retry after the time in Retry-After";

/// Adds `Retry-After` to an error response that has a wait.
pub(crate) fn with_retry_after(mut response: Response, seconds: Option<u64>) -> Response {
    if let Some(seconds) = seconds {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// Gives a dialect's error type the conversions from the core's errors, through [`Problem`]
/// and the dialect's own `From<Problem>` table.
macro_rules! answers_problems {
    ($error:ty) => {
        impl From<switchboard_validation::ValidationError> for $error {
            fn from(e: switchboard_validation::ValidationError) -> Self {
                $crate::problem::Problem::from(e).into()
            }
        }
        impl From<switchboard_core::SendError> for $error {
            fn from(e: switchboard_core::SendError) -> Self {
                $crate::problem::Problem::from(e).into()
            }
        }
        impl From<switchboard_core::AccessError> for $error {
            fn from(e: switchboard_core::AccessError) -> Self {
                $crate::problem::Problem::from(e).into()
            }
        }
        impl From<switchboard_core::AuthError> for $error {
            fn from(e: switchboard_core::AuthError) -> Self {
                $crate::problem::Problem::from(e).into()
            }
        }
    };
}
pub(crate) use answers_problems;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::response::IntoResponse;
    use serde_json::Value;
    use switchboard_domain::PhoneError;

    use super::*;

    fn every_problem() -> Vec<Problem> {
        vec![
            Problem::Request { status: StatusCode::PAYLOAD_TOO_LARGE, message: "too large".into() },
            Problem::Request { status: StatusCode::BAD_REQUEST, message: "malformed JSON".into() },
            Problem::Validation(ValidationError::InvalidFrom(PhoneError::NotSenderId("ACMEACMEACME".into()))),
            Problem::Validation(ValidationError::MissingBody),
            Problem::Validation(ValidationError::Compliance),
            Problem::Invalid("limit: must be 1 to 100".into()),
            Problem::Unauthorized,
            Problem::Throttled(RetryAfter(Duration::from_millis(1500))),
            Problem::Forbidden("message"),
            Problem::NotFound("message"),
            Problem::Conflict("already there".into()),
            Problem::SenderNotAssigned,
            Problem::SenderInactive,
            Problem::SenderNotCapable,
            Problem::NoDefaultSender,
            Problem::InsufficientCredits,
            Problem::IdempotencyConflict,
            Problem::Unavailable,
        ]
    }

    async fn answered<E: From<Problem> + IntoResponse>(problem: Problem) -> (StatusCode, Option<String>, Value) {
        let response = E::from(problem).into_response();
        let status = response.status();
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, retry, serde_json::from_slice(&body).expect("a JSON error body"))
    }

    /// Every dialect answers every problem in its own shape, never 500, with `Retry-After`
    /// exactly when there is a wait.
    #[tokio::test]
    async fn every_dialect_answers_every_problem_in_its_shape() {
        for problem in every_problem() {
            let shown = format!("{problem:?}");
            let throttled = matches!(problem, Problem::Throttled(_));
            let expect_5xx = matches!(problem, Problem::Unavailable);
            let (tl, mb, bird, admin) = (
                answered::<crate::textingline::ApiError>(problem.clone()).await,
                answered::<crate::mudbase::ApiError>(problem.clone()).await,
                answered::<crate::bird::ApiError>(problem.clone()).await,
                answered::<crate::operator::ApiError>(problem).await,
            );
            for (dialect, (status, retry, body)) in [("tl", &tl), ("mb", &mb), ("bird", &bird), ("admin", &admin)] {
                assert_ne!(*status, StatusCode::INTERNAL_SERVER_ERROR, "{dialect} {shown}");
                assert_eq!(status.is_server_error(), expect_5xx, "{dialect} {shown}: {status}");
                assert_eq!(retry.as_deref(), throttled.then_some("2"), "{dialect} {shown}");
                let message = match dialect {
                    "tl" => {
                        assert_eq!(body["error"]["status"], status.as_u16(), "{body}");
                        assert!(body["error"]["code"].is_u64() && body["error"]["type"].is_string(), "{body}");
                        &body["error"]["message"]
                    }
                    "mb" => {
                        assert_eq!(body["success"], false, "{body}");
                        assert!(body["error"]["code"].is_string(), "{body}");
                        &body["error"]["message"]
                    }
                    "bird" => {
                        assert!(body["code"].is_string(), "{body}");
                        &body["message"]
                    }
                    _ => {
                        assert!(body["error"]["code"].is_string(), "{body}");
                        &body["error"]["message"]
                    }
                };
                assert!(message.as_str().is_some_and(|m| !m.is_empty()), "{dialect} {shown}: {body}");
            }
        }
    }
}
