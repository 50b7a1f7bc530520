//! What a console page answers when it cannot show what was asked: an HTML page with the
//! status, never an internal cause.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use switchboard_core::{AccessError, RetryAfter};

/// Why a page was not shown.
#[derive(Debug)]
pub enum ConsoleError {
    /// No such thing, or not the viewer's to see (one answer for both, so that nothing is
    /// learned of other accounts).
    NotFound,
    /// Only the operator may do this.
    Forbidden,
    /// A form without the session's CSRF token, or with another.
    BadCsrf,
    /// Bad input, said in words the viewer can act on.
    Invalid(String),
    /// Too many failed logins: try again after the wait.
    Throttled(RetryAfter),
    /// Storage failed; nothing was changed that the viewer was told of.
    Unavailable,
}

impl From<AccessError> for ConsoleError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::NotFound(_) | AccessError::Forbidden(_) => ConsoleError::NotFound,
            AccessError::Conflict(m) | AccessError::Invalid(m) => ConsoleError::Invalid(m),
            AccessError::Unavailable => ConsoleError::Unavailable,
        }
    }
}

/// The result of a console handler.
pub type PageResult<T = Response> = Result<T, ConsoleError>;

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            ConsoleError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is nothing here for you.".to_owned()),
            ConsoleError::Forbidden => {
                (StatusCode::FORBIDDEN, "Not allowed", "Only the operator may see or do this.".to_owned())
            }
            ConsoleError::BadCsrf => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "The form did not carry this session's token, so nothing was changed. Reload the page and try again."
                    .to_owned(),
            ),
            ConsoleError::Invalid(m) => (StatusCode::BAD_REQUEST, "Not accepted", m.clone()),
            ConsoleError::Throttled(wait) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many failed logins from here. Try again in {} s.", wait.seconds()),
            ),
            ConsoleError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The server cannot answer this now. Try again shortly.".to_owned(),
            ),
        };
        let body = crate::layout::bare(
            title,
            html! {
                h1 { (title) }
                p.notice { (text) }
                p { a href="/console" { "Back to the console" } }
            },
        );
        let mut response = (status, body).into_response();
        if let ConsoleError::Throttled(wait) = &self
            && let Ok(v) = HeaderValue::from_str(&wait.seconds().to_string())
        {
            response.headers_mut().insert("retry-after", v);
        }
        response
    }
}
