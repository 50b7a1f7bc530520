//! Extractors that report bad input in the dialect's own error shape.

use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

/// The client's address, when the server was started with connection info (the TCP peer;
/// `X-Forwarded-For` is not trusted). `None` otherwise, and then no per-address failure budget
/// applies.
pub(crate) fn client_ip(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The client's address as an extractor ([`client_ip`]); never refuses a request.
pub(crate) struct ClientIp(pub(crate) Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// How a dialect shows a request-level error.
pub(crate) trait DialectError: IntoResponse + Sized + Send {
    /// An error with this status and message; the dialect picks its code.
    fn request(status: StatusCode, message: String) -> Self;
}

/// A JSON body; any rejection becomes the dialect's error. A `charset` parameter other than
/// UTF-8 on its `Content-Type` is refused as an unsupported media type (415), since the body
/// is read as UTF-8 whatever it says.
pub(crate) struct Body<T, E>(pub(crate) T, pub(crate) PhantomData<E>);

impl<S, T, E> FromRequest<S> for Body<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: DialectError,
{
    type Rejection = E;

    async fn from_request(req: Request, state: &S) -> Result<Self, E> {
        if let Some(charset) = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(foreign_charset) {
            return Err(E::request(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported charset {charset:?}: the body must be UTF-8"),
            ));
        }
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v, PhantomData)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The `charset` a `Content-Type` names, when it is anything but UTF-8 (`utf-8`, or its common
/// label `utf8`, compared without regard to case, quoted or not); `None` when it names UTF-8
/// or no charset.
fn foreign_charset(content_type: &axum::http::HeaderValue) -> Option<String> {
    let Ok(text) = content_type.to_str() else {
        // Not even visible ASCII: certainly no UTF-8 we could name; let the JSON check refuse
        // it as a wrong content type.
        return None;
    };
    text.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).trim();
        let utf8 = value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8");
        (!utf8).then(|| value.chars().take(40).collect())
    })
}

fn json_rejection<E: DialectError>(r: JsonRejection) -> E {
    match r {
        JsonRejection::JsonDataError(e) => {
            E::request(StatusCode::BAD_REQUEST, format!("invalid request body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            E::request(StatusCode::BAD_REQUEST, format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::MissingJsonContentType(_) => {
            E::request(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json".into())
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            E::request(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large".into())
        }
        other => E::request(other.status(), other.body_text()),
    }
}

/// A query string; any rejection becomes the dialect's error.
pub(crate) struct Query<T, E>(pub(crate) T, pub(crate) PhantomData<E>);

impl<S, T, E> FromRequestParts<S> for Query<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: DialectError,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v, PhantomData)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(E::request(StatusCode::BAD_REQUEST, format!("invalid query: {}", e.body_text())))
            }
            Err(other) => Err(E::request(StatusCode::BAD_REQUEST, other.body_text())),
        }
    }
}

/// Path parameters; any rejection becomes the dialect's error.
pub(crate) struct Path<T, E>(pub(crate) T, pub(crate) PhantomData<E>);

impl<S, T, E> FromRequestParts<S> for Path<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
    E: DialectError,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v, PhantomData)),
            Err(e) => Err(E::request(StatusCode::BAD_REQUEST, format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// A JSON body that may be left out entirely (then `T::default()`).
pub(crate) struct OptionalBody<T, E>(pub(crate) T, pub(crate) PhantomData<E>);

impl<S, T, E> FromRequest<S> for OptionalBody<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
    E: DialectError,
{
    type Rejection = E;

    async fn from_request(req: Request, state: &S) -> Result<Self, E> {
        let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(axum::http::header::CONTENT_TYPE).is_none()
                && req.headers().get(axum::http::header::TRANSFER_ENCODING).is_none()
                && req.headers().get(axum::http::header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OptionalBody(T::default(), PhantomData));
        }
        let Body(v, _) = Body::<T, E>::from_request(req, state).await?;
        Ok(OptionalBody(v, PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_utf8_is_a_charset_we_read() {
        let charset = |ct: &'static str| foreign_charset(&HeaderValue::from_static(ct));
        for utf8 in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json; Charset = Utf-8 ",
            "application/json; foo=bar",
            "application/json; charset=utf8",
        ] {
            assert_eq!(charset(utf8), None, "{utf8}");
        }
        for (other, named) in [
            ("application/json; charset=utf-16", "utf-16"),
            ("application/json; CHARSET=\"UTF-16LE\"", "UTF-16LE"),
            ("application/json; foo=bar; charset=iso-8859-1", "iso-8859-1"),
            ("application/json; charset=", ""),
            ("application/json; charset=us-ascii", "us-ascii"),
        ] {
            assert_eq!(charset(other).as_deref(), Some(named), "{other}");
        }
    }
}
