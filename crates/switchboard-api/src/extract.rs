//! Extractors that report bad input in the dialect's own error shape.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;
use switchboard_domain::Cidr;

use crate::problem::Problem;

/// The header a proxy appends the address it saw to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose `X-Forwarded-For` is believed, as a request extension (set by
/// [`crate::router`] from [`crate::AppState::trusted_proxies`]; none when absent).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(pub(crate) Arc<[Cidr]>);

impl TrustedProxies {
    /// Whether `ip` (read as IPv4 when it is IPv4-mapped) is one of the trusted proxies.
    fn contains(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.0.iter().any(|range| range.contains(canonical) || range.contains(ip))
    }
}

/// Most `X-Forwarded-For` entries looked at, from the right (empty ones too): hops of trusted
/// proxies beyond this many leave the client unknown.
const MAX_FORWARDED_HOPS: usize = 16;

/// Longest `X-Forwarded-For` entry read: an IPv6 address in brackets with a port and spaces
/// around fits; anything longer is malformed, and is not scanned further.
const MAX_FORWARDED_ENTRY: usize = 64;

/// The client's address, for the per-address failure budget; `None` when it is not known, and
/// then no per-address budget applies (one shared bucket would let anyone lock everyone out).
///
/// It is the TCP peer, when the server was started with connection info, unless the peer is a
/// trusted proxy: then it is the right-most `X-Forwarded-For` address that is not itself a
/// trusted proxy ([`forwarded_client`]). A trusted proxy's own address is never the answer, and
/// the header of a peer that is not trusted is ignored, so that no client can choose its
/// address.
pub(crate) fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?.0.ip();
    let trusted = parts.extensions.get::<TrustedProxies>().cloned().unwrap_or_default();
    client_address(peer, &parts.headers, &trusted)
}

/// The client as [`switchboard_core::console::HttpClient`]: its address ([`client_ip`]), and
/// whether it connected over HTTPS, which only a trusted proxy can say (`X-Forwarded-Proto`,
/// its right-most value).
pub(crate) fn http_client(parts: &Parts) -> switchboard_core::console::HttpClient {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let trusted = parts.extensions.get::<TrustedProxies>().cloned().unwrap_or_default();
    let https = peer.is_some_and(|p| trusted.contains(p))
        && parts
            .headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    switchboard_core::console::HttpClient { address: client_ip(parts), https }
}

/// [`client_ip`] from its parts.
fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    if trusted.contains(peer) { forwarded_client(headers, trusted) } else { Some(peer.to_canonical()) }
}

/// The right-most address of `X-Forwarded-For` (every header of that name, in order, holding
/// comma-separated entries) that is not a trusted proxy: the address the nearest trusted proxy
/// saw. `None` when there is none, when an entry on the way is malformed (not an address, or
/// longer than [`MAX_FORWARDED_ENTRY`]), or past [`MAX_FORWARDED_HOPS`] entries. Entries to
/// the left of the answer, which the client may have written itself, are never read. An entry
/// may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`); empty entries are skipped.
/// At most [`MAX_FORWARDED_HOPS`] times [`MAX_FORWARDED_ENTRY`] bytes are read, however long
/// the headers.
fn forwarded_client(headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    let mut hops = 0;
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let mut rest = Some(value.as_bytes());
        while let Some(list) = rest {
            hops += 1;
            if hops > MAX_FORWARDED_HOPS {
                return None;
            }
            // The last entry of `list`, looking back no further than one entry can reach.
            let window = list.len().saturating_sub(MAX_FORWARDED_ENTRY + 1);
            let entry = match list[window..].iter().rposition(|&b| b == b',') {
                Some(i) => {
                    rest = Some(&list[..window + i]);
                    &list[window + i + 1..]
                }
                None if window == 0 => {
                    rest = None;
                    list
                }
                None => return None,
            };
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            if entry.len() > MAX_FORWARDED_ENTRY {
                return None;
            }
            let ip = forwarded_address(entry)?;
            if !trusted.contains(ip) {
                return Some(ip.to_canonical());
            }
        }
    }
    None
}

/// One `X-Forwarded-For` entry: an address, with or without a port; `None` if malformed.
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The client's address as an extractor ([`client_ip`]); never refuses a request.
pub(crate) struct ClientIp(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// A dialect's error type: it answers every [`Problem`] in its own shape.
pub(crate) trait DialectError: From<Problem> + IntoResponse + Sized + Send {
    /// A request-level error with this status and message; the dialect picks its code.
    fn request(status: StatusCode, message: String) -> Self {
        Problem::Request { status, message }.into()
    }
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
        match axum::Json::<Object<T>>::from_request(req, state).await {
            Ok(axum::Json(Object(v))) => Ok(Body(v, PhantomData)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A body that must be a JSON object. serde reads a struct from an array too (its fields by
/// position), so `[null, null]` would otherwise pass for an update that changes nothing.
struct Object<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Object)
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
    fn a_body_must_be_an_object() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct Two {
            a: Option<u8>,
            b: Option<u8>,
        }
        let read = |text: &str| serde_json::from_str::<Object<Two>>(text).map(|Object(v)| v);
        assert_eq!(read(r#"{"a": 1}"#).unwrap(), Two { a: Some(1), b: None });
        assert_eq!(serde_json::from_str::<Two>("[null, null]").unwrap(), Two { a: None, b: None }, "serde alone");
        for other in ["[null, null]", "[]", "null", "7", "\"x\""] {
            let e = read(other).unwrap_err().to_string();
            assert!(e.contains("a JSON object"), "{other}: {e}");
        }
    }

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

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The client address of a request from `peer` carrying these `X-Forwarded-For` headers
    /// (raw bytes), to a server that trusts `trusted`.
    fn client_of(peer: &str, trusted: &[&str], forwarded: &[&[u8]]) -> Option<IpAddr> {
        let mut request = axum::http::Request::get("/").body(()).unwrap();
        for value in forwarded {
            request.headers_mut().append(X_FORWARDED_FOR, HeaderValue::from_bytes(value).unwrap());
        }
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(ip(peer), 4711)));
        let ranges: Vec<Cidr> = trusted.iter().map(|r| r.parse().unwrap()).collect();
        request.extensions_mut().insert(TrustedProxies(ranges.into()));
        client_ip(&request.into_parts().0)
    }

    fn client(peer: &str, trusted: &[&str], forwarded: &[&str]) -> Option<IpAddr> {
        client_of(peer, trusted, &forwarded.iter().map(|f| f.as_bytes()).collect::<Vec<_>>())
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(client("198.51.100.9", &[], &[]), Some(ip("198.51.100.9")));
        assert_eq!(client("198.51.100.9", &[], &["203.0.113.7"]), Some(ip("198.51.100.9")));
        // Only 127.0.0.1 is trusted: 127.0.0.2 is a client, and cannot choose its address.
        let trusted = &["127.0.0.1/32"];
        assert_eq!(client("127.0.0.2", trusted, &["203.0.113.7"]), Some(ip("127.0.0.2")));
        assert_eq!(client("127.0.0.2", trusted, &["127.0.0.1"]), Some(ip("127.0.0.2")));
        assert_eq!(client("127.0.0.2", trusted, &["garbage"]), Some(ip("127.0.0.2")));
        // An IPv4 client of a dual-stack listener counts as its IPv4 address.
        assert_eq!(client("::ffff:198.51.100.9", trusted, &[]), Some(ip("198.51.100.9")));
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_address_it_saw() {
        let trusted = &["127.0.0.1/32"];
        assert_eq!(client("127.0.0.1", trusted, &["203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &[" 203.0.113.7 "]), Some(ip("203.0.113.7")));
        // Entries left of it are the client's own words, and are never read.
        assert_eq!(client("127.0.0.1", trusted, &["127.0.0.1, 198.51.100.1, 203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &["not an address, 203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &["198.51.100.1", "203.0.113.7"]), Some(ip("203.0.113.7")));
        // A port is allowed, and an IPv4-mapped address is its IPv4 address.
        assert_eq!(client("127.0.0.1", trusted, &["203.0.113.7:4711"]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &["::ffff:203.0.113.7"]), Some(ip("203.0.113.7")));
        // The peer's address may be IPv4-mapped.
        assert_eq!(client("::ffff:127.0.0.1", trusted, &["203.0.113.7"]), Some(ip("203.0.113.7")));
    }

    #[test]
    fn several_trusted_hops_are_walked_from_the_right() {
        let trusted = &["127.0.0.1/32", "10.0.0.0/8"];
        assert_eq!(client("127.0.0.1", trusted, &["203.0.113.7, 10.1.2.3"]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &["203.0.113.7,10.0.0.2,,10.1.2.3"]), Some(ip("203.0.113.7")));
        // Several headers are one list, in order.
        assert_eq!(
            client("127.0.0.1", trusted, &["198.51.100.1, 203.0.113.7", "10.0.0.2, 10.0.0.3"]),
            Some(ip("203.0.113.7"))
        );
        // A client that writes a trusted address on the left gains nothing: its own address,
        // appended by the proxy, is found first.
        assert_eq!(client("127.0.0.1", trusted, &["10.0.0.9, 203.0.113.7, 10.0.0.2"]), Some(ip("203.0.113.7")));
        // A proxy's own address is never the client: only trusted hops leave it unknown.
        assert_eq!(client("127.0.0.1", trusted, &["10.0.0.2, 10.1.2.3"]), None);
        assert_eq!(client("127.0.0.1", trusted, &["127.0.0.1"]), None);
        // Up to MAX_FORWARDED_HOPS entries are looked at, and no more.
        let hops = |n: usize| format!("203.0.113.7{}", ", 10.0.0.1".repeat(n));
        assert_eq!(client("127.0.0.1", trusted, &[&hops(MAX_FORWARDED_HOPS - 1)]), Some(ip("203.0.113.7")));
        assert_eq!(client("127.0.0.1", trusted, &[&hops(MAX_FORWARDED_HOPS)]), None);
        // Empty entries and headers count too, so that no number of them is read to the end.
        assert_eq!(client("127.0.0.1", trusted, &[&format!("203.0.113.7{}", ",".repeat(100_000))]), None);
        let mut many = vec!["203.0.113.7"];
        many.extend([""; MAX_FORWARDED_HOPS]);
        assert_eq!(client("127.0.0.1", trusted, &many), None);
        assert_eq!(client("127.0.0.1", trusted, &many[..MAX_FORWARDED_HOPS]), Some(ip("203.0.113.7")));
    }

    #[test]
    fn behind_a_trusted_proxy_without_a_usable_header_the_client_is_unknown() {
        let trusted = &["127.0.0.1/32"];
        assert_eq!(client("127.0.0.1", trusted, &[]), None);
        assert_eq!(client("127.0.0.1", trusted, &[""]), None);
        assert_eq!(client("127.0.0.1", trusted, &[" , "]), None);
        for malformed in [
            "unknown",
            "_hidden",
            "203.0.113.7, unknown",
            "203.0.113.7, 300.1.2.3",
            "203.0.113.7 198.51.100.1",
            "203.0.113.7/32",
            "203.0.113.7:port",
            "2001:db8::7:4711:1:2:3:4:5",
            "[203.0.113.7]",
        ] {
            assert_eq!(client("127.0.0.1", trusted, &[malformed]), None, "{malformed}");
        }
        assert_eq!(client_of("127.0.0.1", trusted, &[b"203.0.113.\xff7"]), None);
        // No connection info: no address at all.
        assert_eq!(client_ip(&axum::http::Request::get("/").body(()).unwrap().into_parts().0), None);
    }

    #[test]
    fn ipv6_clients_and_proxies() {
        let trusted = &["::1/128", "fd00::/8"];
        assert_eq!(client("::1", trusted, &["2001:db8::7"]), Some(ip("2001:db8::7")));
        assert_eq!(client("::1", trusted, &["2001:db8::7, fd00::2"]), Some(ip("2001:db8::7")));
        assert_eq!(client("::1", trusted, &["[2001:db8::7]"]), Some(ip("2001:db8::7")));
        assert_eq!(client("::1", trusted, &["[2001:db8::7]:4711"]), Some(ip("2001:db8::7")));
        assert_eq!(client("fd00::5", trusted, &["198.51.100.9"]), Some(ip("198.51.100.9")));
        assert_eq!(client("2001:db8::9", trusted, &["198.51.100.9"]), Some(ip("2001:db8::9")));
        assert_eq!(client("::1", trusted, &["fd00::2"]), None);
        // An IPv4 range never holds an IPv6 peer.
        assert_eq!(client("::1", &["127.0.0.1/32"], &["198.51.100.9"]), Some(ip("::1")));
    }

    #[test]
    fn a_long_header_is_read_only_as_far_as_the_client() {
        let trusted = &["127.0.0.1/32"];
        // A client's padding on the left is never scanned...
        let padded = format!("{}, 203.0.113.7", "1".repeat(100_000));
        assert_eq!(client("127.0.0.1", trusted, &[&padded]), Some(ip("203.0.113.7")));
        let padded = format!("{}203.0.113.7", "198.51.100.1,".repeat(10_000));
        assert_eq!(client("127.0.0.1", trusted, &[&padded]), Some(ip("203.0.113.7")));
        // ...and an entry too long to be an address is malformed, not read to its end.
        let long = format!("{}203.0.113.7", " ".repeat(MAX_FORWARDED_ENTRY));
        assert_eq!(client("127.0.0.1", trusted, &[&long]), None);
        assert_eq!(client("127.0.0.1", trusted, &[&"7".repeat(100_000)]), None);
        let long = format!("203.0.113.7, {}", "1".repeat(MAX_FORWARDED_ENTRY + 1));
        assert_eq!(client("127.0.0.1", trusted, &[&long]), None);
    }
}
