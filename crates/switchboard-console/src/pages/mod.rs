//! The console's pages, one module each, and the navigation between them.
//!
//! A page module offers `routes() -> Router<ConsoleState>`; this module merges them and lists
//! the navigation entries ([`NAV`]).

pub mod accounts;
pub mod ledger;
pub mod messages;
pub mod overview;
pub mod upstreams;

use axum::Router;

use crate::ConsoleState;
use crate::session::Viewer;

/// One entry of the navigation bar.
#[derive(Debug, Clone, Copy)]
pub struct NavEntry {
    /// What pages say to mark it active.
    pub key: &'static str,
    /// Its text.
    pub label: &'static str,
    /// Where it leads; `{account}` stands for an account holder's own account.
    pub href: &'static str,
    /// Whether only the operator sees it.
    pub operator_only: bool,
}

impl NavEntry {
    /// Where it leads for this viewer.
    pub fn href_for(&self, viewer: &Viewer) -> String {
        match viewer.account() {
            Some(account) => self.href.replace("{account}", &account.to_string()),
            None => self.href.replace("/{account}", ""),
        }
    }
}

/// The navigation, in order.
pub const NAV: &[NavEntry] = &[
    NavEntry { key: "overview", label: "Overview", href: "/console", operator_only: false },
    NavEntry { key: "accounts", label: "Accounts", href: "/console/accounts/{account}", operator_only: false },
    NavEntry { key: "messages", label: "Messages", href: "/console/messages", operator_only: false },
    NavEntry { key: "upstreams", label: "Upstreams", href: "/console/upstreams", operator_only: true },
];

/// Every page's routes.
pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new()
        .merge(overview::routes())
        .merge(accounts::routes())
        .merge(ledger::routes())
        .merge(messages::routes())
        .merge(upstreams::routes())
}
