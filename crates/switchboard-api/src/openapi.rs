//! The OpenAPI document of every endpoint.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, textingline};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "SMS/MMS gateway: the TextingLine dialect and the admin API."),
    paths(
        textingline::send_message,
        textingline::get_message,
        textingline::list_messages,
        admin::create_account,
        admin::list_accounts,
        admin::get_account,
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
    ),
    modifiers(&Security),
    tags((name = "TextingLine", description = "POST /api/v1/messaging/message and reading messages back"), (name = "Admin", description = "Operator API"))
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
            "operator",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator token"))
                    .build(),
            ),
        );
    }
}
