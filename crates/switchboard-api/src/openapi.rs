//! The OpenAPI document of every endpoint.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};

use crate::{admin, bird, lifecycle, mudbase, textingline};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "SMS/MMS gateway: the TextingLine, Mudbase and Bird channels dialects and the admin API."),
    paths(
        textingline::send_message,
        textingline::get_message,
        textingline::list_messages,
        textingline::balance,
        mudbase::send_sms,
        mudbase::history,
        mudbase::stats,
        mudbase::issue_token,
        bird::send,
        bird::list,
        bird::read,
        bird::cancel,
        admin::create_account,
        admin::list_accounts,
        admin::get_account,
        admin::update_account,
        admin::create_key,
        admin::list_keys,
        admin::revoke_key,
        admin::create_smpp_credential,
        admin::list_smpp_credentials,
        admin::revoke_smpp_credential,
        admin::list_smpp_binds,
        admin::create_sender,
        admin::list_senders,
        admin::update_sender,
        admin::top_up,
        admin::balance,
        admin::ledger,
        admin::add_opt_out,
        admin::list_opt_outs,
        admin::remove_opt_out,
        admin::list_messages,
        admin::search_messages,
        admin::get_message,
        lifecycle::create_webhook,
        lifecycle::list_webhooks,
        lifecycle::get_webhook,
        lifecycle::update_webhook,
        lifecycle::delete_webhook,
        lifecycle::notification_secret,
        lifecycle::list_deliveries,
        lifecycle::retry_delivery,
        lifecycle::list_upstreams,
        lifecycle::upstream_callback,
        lifecycle::inject_inbound,
        lifecycle::inject_receipts,
        admin::create_channel,
        admin::list_channels,
        admin::get_channel,
        admin::update_channel,
        admin::create_template,
        admin::list_templates,
        admin::get_template,
        admin::add_template_version,
        admin::update_template_version,
        crate::health,
        crate::ready,
        crate::metrics,
    ),
    components(schemas(switchboard_domain::wire::webhooks::BalanceLowEvent)),
    modifiers(&Security, &Contract),
    tags((name = "TextingLine", description = "POST /api/v1/messaging/message and reading messages back"), (name = "Mudbase", description = "Multi-recipient SMS, history and statistics, as Mudbase's messaging API"), (name = "Bird channels", description = "Sending on SMS channels, as Bird's Channels API"), (name = "Admin", description = "Operator API"), (name = "Simulator", description = "Stand-ins for a carrier: inbound messages and delivery receipts"), (name = "Upstreams", description = "Delivery outcomes from HTTP upstreams"), (name = "Operations", description = "Health, readiness and metrics"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The API key as one string: <key id>:<secret>",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token from POST /api/auth/token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "accessKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "AccessKey <key id>:<secret>",
            ))),
        );
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("The operator token")).build(),
            ),
        );
    }
}

/// Names every operation after its dialect (`textingline_list_messages`,
/// `admin_list_messages`), so that ids are unique and a generated client's method names say
/// which API they call; declares what every operation can answer beside its own responses, in
/// its dialect's error shape; and gives every response a description:
/// - 401 and 429 (credentials missing or wrong, too many failed attempts) where it is secured,
///   and 403 where its path names a tenant's workspace or project (credentials of another);
/// - 400, 413 and 415 (bad body, too large, not JSON) where it takes a body;
/// - 400 where it takes parameters, 404 where its path names something;
/// - 408 (the request timeout), 500 (a handler that panicked) and 503 (the database failed)
///   everywhere.
struct Contract;

/// The dialect a path belongs to (as `error_for` in the router): the prefix of its operations'
/// ids, and its error body schema.
fn dialect(path: &str) -> (&'static str, &'static str) {
    if path.starts_with("/admin/") || path.starts_with("/upstreams/") {
        ("admin", "AdminErrorBody")
    } else if path.starts_with("/workspaces/") {
        ("bird", "BirdError")
    } else if path.starts_with("/api/messaging/") || path.starts_with("/api/auth/") {
        ("mudbase", "MbErrorBody")
    } else if ["/healthz", "/readyz", "/metrics"].contains(&path) {
        ("operations", "")
    } else {
        ("textingline", "TlErrorBody")
    }
}

/// The description of a response that states none.
fn describe(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "Done; no body",
        "400" => "Invalid input: a field, a parameter or the body; the error names which",
        "401" => "Credentials missing, malformed, wrong, expired or revoked",
        "402" => "The balance cannot pay; nothing was stored or charged",
        "403" => "The credentials are for another account",
        "404" => "Not found",
        "408" => "The request took longer than the server's request timeout",
        "409" => "Conflicts with what is stored",
        "413" => "The body is over the size limit",
        "415" => "The body is not JSON (application/json, UTF-8)",
        "422" => "Well formed but not acceptable; the error says why",
        "429" => "Over the request rate, or too many failed credential checks; see Retry-After",
        "500" => "A fault inside the server; nothing was half-written",
        "503" => "The database is unavailable or the server is stopping; try again",
        _ => "See the error body",
    }
}

/// An optional body is left out, never sent as `null` (a body, when there is one, must be a
/// JSON object): the `null` choice that the schema of an `Option` body carries is dropped.
fn drop_null_choice(schema: &mut Option<RefOr<utoipa::openapi::schema::Schema>>) {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    let Some(RefOr::T(Schema::OneOf(one))) = schema else { return };
    let is_null =
        |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
    if one.items.len() == 2 && one.items.iter().any(is_null) {
        let kept = one.items.iter().find(|s| !is_null(s)).cloned();
        *schema = kept;
    }
}

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let (prefix, schema) = dialect(path);
            let operations: [Option<&mut Operation>; 5] =
                [item.get.as_mut(), item.post.as_mut(), item.put.as_mut(), item.patch.as_mut(), item.delete.as_mut()];
            for op in operations.into_iter().flatten() {
                if let Some(id) = op.operation_id.as_mut()
                    && !id.starts_with(prefix)
                {
                    *id = format!("{prefix}_{id}");
                }
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    for content in body.content.values_mut() {
                        if let RefOr::T(content) = content {
                            drop_null_choice(&mut content.schema);
                        }
                    }
                }
                let mut also: Vec<&str> = vec!["408", "500", "503"];
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) || path.starts_with("/upstreams/") {
                    also.extend(["401", "429"]);
                }
                if path.contains("{workspaceId}") || path.contains("{projectId}") {
                    also.push("403");
                }
                if op.request_body.is_some() {
                    also.extend(["400", "413", "415"]);
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    also.push("400");
                }
                if path.contains('{') {
                    also.push("404");
                }
                let operational = ["/healthz", "/readyz", "/metrics"].contains(&path.as_str());
                for status in also {
                    if operational || op.responses.responses.contains_key(status) {
                        continue;
                    }
                    let content = Content::new(Some(RefOr::Ref(Ref::from_schema_name(schema))));
                    let response = ResponseBuilder::new()
                        .description(describe(status))
                        .content("application/json", content)
                        .build();
                    op.responses.responses.insert(status.to_owned(), RefOr::T(response));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = describe(status).to_owned();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is generated (`cargo xtask openapi`) and must match the code.
    #[test]
    fn committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = ApiDoc::openapi().to_pretty_json().expect("serialize the OpenAPI document");
        assert!(
            committed.trim_end() == current.trim_end(),
            "docs/openapi.json is stale: run `cargo xtask openapi` and commit it"
        );
    }

    /// The document lists each string enum by the names that go on the wire (what serde
    /// writes), so that a client generated with strict enums accepts every value.
    #[test]
    fn enums_are_listed_by_their_wire_names() {
        use switchboard_domain::{Direction, Encoding, ErrorType, EventType, MessageKind, MessageStatus};
        fn wire<T: serde::Serialize>(all: &[T]) -> Vec<serde_json::Value> {
            all.iter().map(|v| serde_json::to_value(v).expect("an enum serializes")).collect()
        }
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialize the OpenAPI document");
        for (name, values) in [
            ("Direction", wire(Direction::ALL)),
            ("MessageStatus", wire(MessageStatus::ALL)),
            ("MessageKind", wire(MessageKind::ALL)),
            ("ErrorType", wire(ErrorType::ALL)),
            ("EventType", wire(EventType::ALL)),
            ("Encoding", wire(&[Encoding::Gsm7, Encoding::Ucs2])),
        ] {
            let listed = &doc["components"]["schemas"][name]["enum"];
            assert_eq!(listed, &serde_json::Value::Array(values), "{name}");
        }
    }

    /// Every request body has an example, and each example is a body its endpoint's type
    /// reads.
    #[test]
    fn every_request_body_has_an_example_its_type_reads() {
        use serde::de::DeserializeOwned;
        use switchboard_domain::wire::{self, bird, mudbase, webhooks};
        fn reads<T: DeserializeOwned>(example: &serde_json::Value) -> Result<(), String> {
            serde_json::from_value::<T>(example.clone()).map(drop).map_err(|e| e.to_string())
        }
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialize the OpenAPI document");
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                let Some(body) = op.get("requestBody") else { continue };
                let media = &body["content"]["application/json"];
                let example = &media["example"];
                assert!(!example.is_null(), "{method} {path}: the request body has no example");
                let schema =
                    media["schema"]["$ref"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default();
                let read = match schema {
                    "TlSendRequest" => reads::<wire::TlSendRequest>(example),
                    "MbSmsRequest" => reads::<mudbase::MbSmsRequest>(example),
                    "BirdSendRequest" => reads::<bird::BirdSendRequest>(example),
                    "CreateAccount" => reads::<wire::CreateAccount>(example),
                    "UpdateAccount" => reads::<wire::UpdateAccount>(example),
                    "CreateApiKey" => reads::<wire::CreateApiKey>(example),
                    "CreateSmppCredential" => reads::<wire::CreateSmppCredential>(example),
                    "CreateSender" => reads::<wire::CreateSender>(example),
                    "UpdateSender" => reads::<wire::UpdateSender>(example),
                    "TopUp" => reads::<wire::TopUp>(example),
                    "OptOutRequest" => reads::<wire::OptOutRequest>(example),
                    "CreateChannel" => reads::<wire::CreateChannel>(example),
                    "UpdateChannel" => reads::<wire::UpdateChannel>(example),
                    "CreateTemplate" => reads::<wire::CreateTemplate>(example),
                    "CreateTemplateVersion" => reads::<wire::CreateTemplateVersion>(example),
                    "UpdateTemplateVersion" => reads::<wire::UpdateTemplateVersion>(example),
                    "CreateWebhook" => reads::<webhooks::CreateWebhook>(example),
                    "UpdateWebhook" => reads::<webhooks::UpdateWebhook>(example),
                    "InjectInbound" => reads::<webhooks::InjectInbound>(example),
                    "InjectReceipts" => reads::<webhooks::InjectReceipts>(example),
                    "WebhookEvent" => reads::<webhooks::WebhookEvent>(example),
                    other => panic!("{method} {path}: no type known for the request body {other:?}"),
                };
                read.unwrap_or_else(|e| panic!("{method} {path}: the example is not a {schema}: {e}"));
                checked += 1;
            }
        }
        assert!(checked >= 20, "{checked} request bodies");
    }

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        for path in [
            "/api/v1/messaging/message",
            "/api/v1/messaging/message/{id}",
            "/api/messaging/projects/{projectId}/messaging/sms",
            "/workspaces/{workspaceId}/channels/{channelId}/messages",
            "/workspaces/{workspaceId}/channels/{channelId}/messages/{messageId}",
            "/admin/v1/accounts",
            "/admin/v1/accounts/{account}",
            "/admin/v1/accounts/{account}/keys",
            "/admin/v1/accounts/{account}/keys/{key}",
            "/admin/v1/accounts/{account}/senders",
            "/admin/v1/accounts/{account}/senders/{address}",
            "/admin/v1/accounts/{account}/credits",
            "/admin/v1/accounts/{account}/balance",
            "/admin/v1/accounts/{account}/ledger",
            "/admin/v1/accounts/{account}/opt-outs",
            "/admin/v1/accounts/{account}/opt-outs/{sender}/{recipient}",
            "/admin/v1/accounts/{account}/messages",
            "/admin/v1/messages/{id}",
            "/admin/v1/accounts/{account}/channels",
            "/admin/v1/accounts/{account}/channels/{channel}",
            "/admin/v1/accounts/{account}/templates",
            "/admin/v1/accounts/{account}/templates/{template}",
            "/admin/v1/accounts/{account}/templates/{template}/versions",
            "/admin/v1/accounts/{account}/templates/{template}/versions/{version}",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} is not documented");
        }
    }
}
