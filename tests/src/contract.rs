//! A proxy in front of a test server that checks every answer against the server's own OpenAPI
//! document: the operation's declared status codes, and the JSON schema declared for the
//! status (with the document's components, by `jsonschema`). An answer that breaks the
//! document is replaced by a `500` naming what broke, so the test that received it fails, and
//! is kept for [`Checker::violations`].

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The operations of the document, by method and path template.
struct Document {
    /// (method, path template split into segments, operation).
    operations: Vec<(String, Vec<String>, Value)>,
    components: Value,
}

impl Document {
    fn new(doc: &Value) -> Self {
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let segments = path.split('/').map(str::to_owned).collect();
                operations.push((method.to_uppercase(), segments, op.clone()));
            }
        }
        Self { operations, components: doc["components"].clone() }
    }

    /// The operation a request is for: the template that matches its path with the most fixed
    /// segments.
    fn operation(&self, method: &str, path: &str) -> Option<(&Value, String)> {
        let parts: Vec<&str> = path.split('/').collect();
        self.operations
            .iter()
            .filter(|(m, segments, _)| {
                m == method
                    && segments.len() == parts.len()
                    && segments.iter().zip(&parts).all(|(s, p)| s == p || (s.starts_with('{') && !p.is_empty()))
            })
            .max_by_key(|(_, segments, _)| segments.iter().filter(|s| !s.starts_with('{')).count())
            .map(|(m, segments, op)| (op, format!("{m} {}", segments.join("/"))))
    }

    /// What is wrong with an answer, if anything.
    fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) -> Option<String> {
        let (op, name) = self.operation(method, path)?;
        let Some(response) = op["responses"].get(status.to_string()) else {
            return Some(format!("{name}: status {status} is not declared"));
        };
        let content = response.get("content")?;
        let declared = content.get("application/json")?;
        if !content_type.starts_with("application/json") {
            return Some(format!("{name} {status}: answered {content_type:?}, declared application/json"));
        }
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Some(format!("{name} {status}: the body is not JSON: {e}")),
        };
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.components,
            "allOf": [declared["schema"]],
        });
        let validator = match jsonschema::validator_for(&schema) {
            Ok(v) => v,
            Err(e) => return Some(format!("{name} {status}: the declared schema does not compile: {e}")),
        };
        let errors: Vec<String> =
            validator.iter_errors(&instance).take(5).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        (!errors.is_empty()).then(|| format!("{name} {status}: {} in {instance}", errors.join("; ")))
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    document: Document,
    violations: Mutex<Vec<String>>,
}

/// The running proxy.
#[derive(Clone)]
pub struct Checker {
    shared: Arc<Shared>,
    /// Its base URL.
    pub url: String,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Checker {
    /// Starts a proxy to the server at `upstream`, checking answers against the document it
    /// serves at `/openapi.json`.
    pub async fn start(upstream: &str) -> Self {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a proxy client");
        let document: Value = client
            .get(format!("{upstream}/openapi.json"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the server's OpenAPI document")
            .json()
            .await
            .expect("the OpenAPI document is JSON");
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            client,
            document: Document::new(&document),
            violations: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the checking proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, url }
    }

    /// Every answer so far that broke the document.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Headers that belong to one connection, not to the request or answer.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(name.as_str(), "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive")
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();

    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return (StatusCode::BAD_GATEWAY, "the checking proxy could not read the request").into_response();
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = shared.client.request(parts.method.clone(), format!("{}{path_and_query}", shared.upstream));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.body(body).send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("the checking proxy: {e}")).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let Ok(bytes) = answer.bytes().await else {
        return (StatusCode::BAD_GATEWAY, "the checking proxy could not read the answer").into_response();
    };
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(wrong) =
        shared.document.check(parts.method.as_str(), parts.uri.path(), status.as_u16(), content_type, &bytes)
    {
        shared.violations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(wrong.clone());
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("the answer breaks the OpenAPI document: {wrong}"))
            .into_response();
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Document {
        Document::new(&json!({
            "paths": {
                "/things/{id}": {"get": {"responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                    "404": {"description": "Not found"},
                }}},
                "/things/mine": {"get": {"responses": {"204": {"description": "Done"}}}},
            },
            "components": {"schemas": {"Thing": {
                "type": "object", "required": ["id", "kind"],
                "properties": {"id": {"type": "string"}, "kind": {"type": "string", "enum": ["sms", "mms"]}},
            }}},
        }))
    }

    #[test]
    fn answers_are_held_to_the_document() {
        let doc = document();
        let json = "application/json";
        assert_eq!(doc.check("GET", "/things/1", 200, json, br#"{"id": "1", "kind": "sms"}"#), None);
        let wrong = doc.check("GET", "/things/1", 200, json, br#"{"id": "1", "kind": "Sms"}"#).unwrap();
        assert!(wrong.contains("GET /things/{id} 200") && wrong.contains("/kind"), "{wrong}");
        assert!(doc.check("GET", "/things/1", 200, json, br#"{"id": "1"}"#).unwrap().contains("kind"));
        assert!(doc.check("GET", "/things/1", 200, "text/plain", b"x").unwrap().contains("text/plain"));
        assert!(doc.check("GET", "/things/1", 500, json, b"{}").unwrap().contains("500 is not declared"));
        assert_eq!(doc.check("GET", "/things/1", 404, json, b"{}"), None, "declared without a body schema");
        // The fixed path is the more specific template.
        assert_eq!(doc.check("GET", "/things/mine", 204, json, b""), None);
        // What the document does not describe is not checked.
        assert_eq!(doc.check("GET", "/elsewhere", 418, json, b"x"), None);
        assert_eq!(doc.check("POST", "/things/1", 405, json, b"x"), None);
    }
}
