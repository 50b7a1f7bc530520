//! Switchboard's web console at `/console`: HTML pages rendered on the server (maud, which
//! escapes every value by default), charts drawn as inline SVG, one stylesheet embedded in the
//! binary, and no script at all, so every answer carries a strict Content-Security-Policy.
//!
//! The operator logs in with the operator token and sees everything; an account holder logs in
//! with one of the account's API keys and sees that account only. Sessions live in the
//! database ([`switchboard_core::console`]); every state-changing form carries the session's
//! CSRF token ([`session::Posted`]). Pages read through [`switchboard_core::Core`], the same
//! use cases as the API: there is no second data path.
//!
//! The router is served by the API's (`switchboard_api::router_with` in the binary), under
//! its layers: request timeout, body limit, panic catching, access log.
//!
//! Adding a page: write `src/pages/<name>.rs` with a `routes()` returning its
//! `Router<ConsoleState>` (handlers take a [`session::Viewer`] to require a login, render with
//! [`layout::page`]), then add its `mod` line, its `.merge(<name>::routes())` and, if it
//! belongs in the navigation, its [`pages::NAV`] entry, all in `src/pages/mod.rs`.

pub mod chart;
pub mod error;
pub mod layout;
pub mod pages;
pub mod session;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use switchboard_core::Core;
use switchboard_core::console::SessionLimits;

/// The console's settings.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// The operator token (the admin API's), which logs the operator in.
    pub operator_token: String,
    /// How long sessions last.
    pub sessions: SessionLimits,
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("operator_token", &"<redacted>")
            .field("sessions", &self.sessions)
            .finish()
    }
}

/// What every console handler can reach.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    /// The use cases.
    pub core: Core,
    /// Settings.
    pub config: Arc<ConsoleConfig>,
    /// Samples of the upstreams' counters, for their throughput.
    pub upstream_samples: Arc<pages::upstreams::Samples>,
}

/// Largest form body the console reads, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The Content-Security-Policy of every console answer: nothing but this origin's stylesheet
/// and inline images (`data:`), no script, forms only to this origin, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, under `/console`. Its state is applied; it sets no fallback (the
/// API's answers unknown paths).
pub fn router(core: Core, config: ConsoleConfig) -> Router {
    let state = ConsoleState {
        core,
        config: Arc::new(config),
        upstream_samples: Arc::new(pages::upstreams::Samples::default()),
    };
    pages::routes()
        .merge(session::routes())
        .route("/console/assets/console.css", axum::routing::get(stylesheet))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The stylesheet, embedded in the binary.
const STYLESHEET: &str = include_str!("../assets/console.css");

async fn stylesheet() -> Response {
    let mut response = Response::new(axum::body::Body::from(STYLESHEET));
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert("cache-control", HeaderValue::from_static("public, max-age=3600"));
    response
}

/// The security headers of every console answer; pages (anything but the assets) are never
/// stored by the browser or a proxy.
async fn security_headers(req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/console/assets/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !asset {
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    response
}
