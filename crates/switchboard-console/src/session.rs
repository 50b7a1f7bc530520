//! Logging in and out, the session cookie, and the two extractors every page uses: [`Viewer`]
//! (the logged-in viewer, or a redirect to the login page) and [`Posted`] (a form whose CSRF
//! token was checked).
//!
//! The session cookie is `HttpOnly`, `SameSite=Strict`, limited to `/console`, and `Secure`
//! when the client reached the server over HTTPS (through a trusted proxy that says so). The
//! login form has no session yet: it carries a one-time token that must match a cookie set
//! with the form (a double-submit check), so another site cannot log a browser in.
//!
//! Failed logins spend the same failure budgets as the API's: an API key through
//! `Core::authenticate` (per address and per key id), the operator token through the
//! operator's budget (per address); both compared in constant time.

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use switchboard_core::AuthError;
use switchboard_core::console::{HttpClient, SessionToken};
use switchboard_domain::AccountId;
use switchboard_records::ConsolePrincipal;

use crate::error::{ConsoleError, PageResult};
use crate::{ConsoleState, MAX_FORM_BYTES, layout};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sb_console";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "sb_console_login";
/// Longest key id and secret (or operator token) a login form may carry.
const MAX_KEY_ID: usize = 64;
const MAX_SECRET: usize = 256;

/// The routes of logging in and out.
pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new().route("/console/login", get(login_page).post(login)).route("/console/logout", post(logout))
}

/// The logged-in viewer of a page. A request without a live session is sent to the login
/// page (a `GET`) or refused with 403 (anything else: nothing is changed).
#[derive(Debug, Clone)]
pub struct Viewer {
    token: SessionToken,
    principal: ConsolePrincipal,
    csrf: String,
    /// Whether the request came over HTTPS, for the cookies set in the answer.
    https: bool,
}

impl Viewer {
    /// Whether the viewer is the operator.
    pub fn is_operator(&self) -> bool {
        matches!(self.principal, ConsolePrincipal::Operator)
    }

    /// The viewer's account, for an account holder; `None` for the operator.
    pub fn account(&self) -> Option<AccountId> {
        match &self.principal {
            ConsolePrincipal::Operator => None,
            ConsolePrincipal::Account { account, .. } => Some(*account),
        }
    }

    /// Whom the session belongs to.
    pub fn principal(&self) -> &ConsolePrincipal {
        &self.principal
    }

    /// The session's CSRF token, for [`layout::csrf_field`].
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Refuses anyone but the operator (403).
    pub fn require_operator(&self) -> PageResult<()> {
        if self.is_operator() { Ok(()) } else { Err(ConsoleError::Forbidden) }
    }

    /// Refuses (404, as if it did not exist) an account that is not the viewer's; the
    /// operator may see every account.
    pub fn may_see(&self, account: AccountId) -> PageResult<()> {
        match self.account() {
            None => Ok(()),
            Some(own) if own == account => Ok(()),
            Some(_) => Err(ConsoleError::NotFound),
        }
    }

    /// A line saying who is logged in.
    pub fn describe(&self) -> String {
        match &self.principal {
            ConsolePrincipal::Operator => "Operator".to_owned(),
            ConsolePrincipal::Account { key_id, .. } => format!("Key {key_id}"),
        }
    }
}

/// The value of the cookie `name`, if the request carries it.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The client of the request, as the API's router found it.
fn client(parts: &Parts) -> HttpClient {
    parts.extensions.get::<HttpClient>().copied().unwrap_or_default()
}

/// Why a request has no viewer.
#[derive(Debug)]
pub enum NoViewer {
    /// Not logged in: to the login page.
    Login,
    /// Not logged in, and the request would change something: refused.
    Refused,
    /// The session could not be read.
    Failed(ConsoleError),
}

impl IntoResponse for NoViewer {
    fn into_response(self) -> Response {
        match self {
            NoViewer::Login => Redirect::to("/console/login").into_response(),
            NoViewer::Refused => ConsoleError::BadCsrf.into_response(),
            NoViewer::Failed(e) => e.into_response(),
        }
    }
}

impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = NoViewer;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, NoViewer> {
        let none = if parts.method == Method::GET || parts.method == Method::HEAD {
            NoViewer::Login
        } else {
            NoViewer::Refused
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).and_then(SessionToken::parse) else {
            return Err(none);
        };
        match state.core.console_session(&token, state.config.sessions).await {
            Ok(Some(session)) => {
                Ok(Viewer { token, principal: session.principal, csrf: session.csrf, https: client(parts).https })
            }
            Ok(None) => Err(none),
            Err(e) => Err(NoViewer::Failed(e.into())),
        }
    }
}

/// A form posted by a logged-in viewer, whose `csrf` field matched the session's (compared in
/// constant time) before anything else was read from it. A form without it, or with another,
/// is refused with 403; a body over [`MAX_FORM_BYTES`] or not a form is refused too.
#[derive(Debug)]
pub struct Posted<T> {
    /// Who posted it.
    pub viewer: Viewer,
    /// Its fields (other than `csrf`).
    pub form: T,
}

/// Reads an urlencoded form body of at most [`MAX_FORM_BYTES`].
async fn form_body(req: Request) -> PageResult<Vec<u8>> {
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim() == "application/x-www-form-urlencoded"));
    if !urlencoded {
        return Err(ConsoleError::Invalid("expected a form".into()));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| ConsoleError::Invalid("the form is too large".into()))?;
    Ok(bytes.to_vec())
}

/// The `csrf` field of a form body.
fn csrf_of(body: &[u8]) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value)
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl<T: DeserializeOwned + Send> FromRequest<ConsoleState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, state).await.map_err(IntoResponse::into_response)?;
        let body = form_body(Request::from_parts(parts, body)).await.map_err(IntoResponse::into_response)?;
        match csrf_of(&body) {
            Some(presented) if same(&presented, viewer.csrf()) => {}
            _ => return Err(ConsoleError::BadCsrf.into_response()),
        }
        let form = serde_urlencoded::from_bytes::<T>(&body)
            .map_err(|e| ConsoleError::Invalid(format!("the form is incomplete or malformed: {e}")).into_response())?;
        Ok(Posted { viewer, form })
    }
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/console`, `Secure` over HTTPS.
fn set_cookie(name: &str, value: &str, max_age_secs: u64, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A random token for the login form (244 bits from the OS's generator, as two v4 UUIDs).
fn login_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The login page (or, with a live session, the overview).
async fn login_page(State(state): State<ConsoleState>, mut parts: Parts) -> Response {
    if Viewer::from_request_parts(&mut parts, &state).await.is_ok() {
        return Redirect::to("/console").into_response();
    }
    login_form(StatusCode::OK, None, client(&parts).https)
}

/// The login form, with a fresh double-submit token.
fn login_form(status: StatusCode, problem: Option<&str>, https: bool) -> Response {
    let token = login_token();
    let body = layout::bare(
        "Log in",
        html! {
            h1 { "Switchboard console" }
            @if let Some(p) = problem { p.notice.error role="alert" { (p) } }
            form.login method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(token);
                label for="key_id" { "API key id" }
                input id="key_id" name="key_id" type="text" autocomplete="username" maxlength="64"
                    placeholder="key_… (leave empty for the operator)";
                label for="secret" { "Secret, or the operator token" }
                input id="secret" name="secret" type="password" autocomplete="current-password" maxlength="256" required;
                button type="submit" { "Log in" }
            }
            p.hint {
                "Account holders log in with one of their account's API keys (the key id and its secret). "
                "The operator leaves the key id empty and gives the operator token."
            }
        },
    );
    let mut response = (status, body).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, 3600, https));
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    secret: String,
}

/// Logs in: the operator with the operator token, an account holder with an API key.
async fn login(State(state): State<ConsoleState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client = client(&parts);
    let expected = cookie(&parts.headers, LOGIN_COOKIE).map(str::to_owned);
    let body = match form_body(Request::from_parts(parts, body)).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match (csrf_of(&body), expected) {
        (Some(presented), Some(expected)) if !expected.is_empty() && same(&presented, &expected) => {}
        _ => return ConsoleError::BadCsrf.into_response(),
    }
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return login_form(StatusCode::BAD_REQUEST, Some("The form was malformed."), client.https);
    };
    let key_id = form.key_id.trim();
    if key_id.len() > MAX_KEY_ID || form.secret.len() > MAX_SECRET || form.secret.is_empty() {
        return login_form(StatusCode::UNAUTHORIZED, Some("Wrong key id or secret."), client.https);
    }
    let principal = if key_id.is_empty() {
        let guard = state.core.operator_guard();
        if let Err(wait) = guard.admit(client.address) {
            return ConsoleError::Throttled(wait).into_response();
        }
        if same(&form.secret, &state.config.operator_token) {
            ConsolePrincipal::Operator
        } else {
            if let Err(wait) = guard.failed(client.address, None) {
                return ConsoleError::Throttled(wait).into_response();
            }
            return login_form(StatusCode::UNAUTHORIZED, Some("Wrong operator token."), client.https);
        }
    } else {
        match state.core.console_login_key(client.address, key_id, &form.secret).await {
            Ok(p) => p,
            Err(AuthError::InvalidCredentials) => {
                return login_form(StatusCode::UNAUTHORIZED, Some("Wrong key id or secret."), client.https);
            }
            Err(AuthError::Throttled(wait)) => return ConsoleError::Throttled(wait).into_response(),
            Err(AuthError::Unavailable) => return ConsoleError::Unavailable.into_response(),
        }
    };
    let (token, _) = match state.core.start_console_session(principal, state.config.sessions).await {
        Ok(s) => s,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let mut response = Redirect::to("/console").into_response();
    let lifetime = state.config.sessions.lifetime.as_secs();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, token.expose(), lifetime, client.https));
    headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, client.https));
    response
}

#[derive(Debug, Deserialize)]
struct LogoutForm {}

/// Logs out: ends the session (its row is deleted, so the cookie is worth nothing after) and
/// clears the cookie.
async fn logout(State(state): State<ConsoleState>, posted: Posted<LogoutForm>) -> PageResult {
    state.core.end_console_session(&posted.viewer.token).await?;
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, posted.viewer.https));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; sb_console_login=x; sb_console=abc"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), Some("x"));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn the_session_cookie_is_strict_and_secure_over_https() {
        let plain = set_cookie(SESSION_COOKIE, "t", 60, false);
        assert_eq!(plain.to_str().unwrap(), "sb_console=t; Path=/console; HttpOnly; SameSite=Strict; Max-Age=60");
        assert!(set_cookie(SESSION_COOKIE, "t", 60, true).to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn the_csrf_field_is_found_among_the_others() {
        assert_eq!(csrf_of(b"a=1&csrf=abc%2B&b=2").as_deref(), Some("abc+"));
        assert_eq!(csrf_of(b"a=1&b=2"), None);
    }
}
