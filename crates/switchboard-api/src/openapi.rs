//! The OpenAPI document of every endpoint.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, bird, lifecycle, mudbase, textingline};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "SMS/MMS gateway: the TextingLine, Mudbase and Bird channels dialects and the admin API."),
    paths(
        textingline::send_message,
        textingline::get_message,
        textingline::list_messages,
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
        admin::get_message,
        lifecycle::create_webhook,
        lifecycle::list_webhooks,
        lifecycle::get_webhook,
        lifecycle::update_webhook,
        lifecycle::delete_webhook,
        lifecycle::notification_secret,
        lifecycle::list_deliveries,
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
    ),
    modifiers(&Security),
    tags((name = "TextingLine", description = "POST /api/v1/messaging/message and reading messages back"), (name = "Mudbase", description = "Multi-recipient SMS, history and statistics, as Mudbase's messaging API"), (name = "Bird channels", description = "Sending on SMS channels, as Bird's Channels API"), (name = "Admin", description = "Operator API"), (name = "Simulator", description = "Stand-ins for a carrier: inbound messages and delivery receipts"), (name = "Upstreams", description = "Delivery outcomes from HTTP upstreams"))
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
