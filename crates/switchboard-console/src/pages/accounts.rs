//! Accounts: the operator's list, and an account's page.

use axum::Router;

use crate::ConsoleState;

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new()
}
