//! An account's balance and ledger: every entry with its cause (the message it charged or
//! refunded, or a top-up's reason), filtered by kind, time range and message, newest first;
//! and the low-balance threshold, below which a charge posts `account.balance_low`.
//!
//! The operator sees every account's; an account holder sees their own account's (and may set
//! its threshold) and gets 404 for any other. Entries are read through
//! `Core::ledger_entries`, the admin API's search: a page examines a bounded number of entries,
//! and says so when it stops there before it is full.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_core::Viewer as Scope;
use switchboard_domain::wire::MAX_LOW_BALANCE_THRESHOLD;
use switchboard_domain::{AccountId, MessageId, Timestamp};
use switchboard_ledger::EntryKind;
use switchboard_records::{LedgerFilter, LedgerRecord};
use uuid::Uuid;

use crate::ConsoleState;
use crate::error::{ConsoleError, PageResult};
use crate::layout::{self, csrf_field};
use crate::session::{Posted, Viewer};

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/accounts/{account}/ledger", get(ledger_page))
        .route("/console/accounts/{account}/low-balance", post(set_threshold))
}

/// Entries per page.
const PAGE: u32 = 50;

/// Who reads, as the core scopes it.
pub(crate) fn scope(viewer: &Viewer) -> Scope {
    match viewer.account() {
        Some(own) => Scope::Account(own),
        None => Scope::Operator,
    }
}

/// An account id from a path: anything else is not found, like an unknown account.
fn account_id(text: &str) -> PageResult<AccountId> {
    text.parse().map_err(|_| ConsoleError::NotFound)
}

/// A date or time from a form field (`2026-03-15`, or RFC 3339); blank is none.
pub(crate) fn time_field(name: &str, value: Option<&str>) -> PageResult<Option<Timestamp>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => Timestamp::parse_lenient(v)
            .map(Some)
            .ok_or_else(|| ConsoleError::Invalid(format!("{name}: a date such as 2026-03-15, or a time in RFC 3339"))),
    }
}

/// The end of a range given as a date: the whole day is in it.
pub(crate) fn end_field(name: &str, value: Option<&str>) -> PageResult<Option<Timestamp>> {
    let end = time_field(name, value)?;
    let whole_day = value.is_some_and(|v| v.trim().len() == 10);
    Ok(end.map(|t| if whole_day { t.plus_millis(86_400_000) } else { t }))
}

/// The filters of the ledger page, as its form sends them.
#[derive(Debug, Default, Deserialize)]
struct LedgerQuery {
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    message: Option<String>,
    before: Option<String>,
    done: Option<String>,
}

impl LedgerQuery {
    fn filter(&self) -> PageResult<LedgerFilter> {
        let kind = match self.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(
                EntryKind::parse(k).ok_or_else(|| ConsoleError::Invalid("kind: top-up, charge or refund".into()))?,
            ),
        };
        let message = match self.message.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(
                m.parse::<MessageId>().map_err(|_| ConsoleError::Invalid("message: a message id (msg_…)".into()))?,
            ),
        };
        let (from, to) = (time_field("from", self.from.as_deref())?, end_field("to", self.to.as_deref())?);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            return Err(ConsoleError::Invalid("to: must not be before from".into()));
        }
        Ok(LedgerFilter { kind, message, from, to })
    }

    /// The query string of these filters, with another cursor.
    fn with_before(&self, before: Uuid) -> String {
        let pairs = [
            ("kind", self.kind.as_deref()),
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
            ("message", self.message.as_deref()),
        ];
        let mut query: Vec<(&str, String)> =
            pairs.iter().filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (*k, v.to_owned()))).collect();
        query.push(("before", before.to_string()));
        serde_urlencoded::to_string(&query).unwrap_or_default()
    }
}

/// The fixed text a `?done=` names.
fn done_text(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "threshold-set" => "The low-balance threshold was set.",
        "threshold-removed" => "The low-balance alert was removed.",
        _ => return None,
    })
}

/// An entry's cause: the message it charged or refunded, or the top-up's reason.
pub(crate) fn cause(e: &LedgerRecord) -> Markup {
    html! {
        @if let Some(m) = e.message_id {
            a href=(format!("/console/messages/{m}")) { "message " code { (m) } }
        } @else if let Some(r) = &e.reference {
            (r)
        } @else {
            (layout::nothing())
        }
    }
}

/// The label of an entry's kind.
pub(crate) fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Topup => "top-up",
        EntryKind::Charge => "charge",
        EntryKind::Refund => "refund",
    }
}

async fn ledger_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(account): Path<String>,
    Query(q): Query<LedgerQuery>,
) -> PageResult<Html<String>> {
    let id = account_id(&account)?;
    viewer.may_see(id)?;
    let filter = q.filter()?;
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => Some(b.parse::<Uuid>().map_err(|_| ConsoleError::Invalid("before: not a cursor".into()))?),
    };
    let core = &state.core;
    let account = core.account(id).await?;
    let found = core.ledger_entries(scope(&viewer), id, &filter, before, PAGE).await?;
    let base = format!("/console/accounts/{id}");
    let kind = q.kind.as_deref().unwrap_or("");
    let content = html! {
        h1 { "Balance and ledger" }
        (layout::notice(done_text(q.done.as_deref())))
        p.scope { a href=(base) { (account.name) } " · account " code { (account.id) } }
        section.tiles {
            div.tile { span.label { "SMS credits" } span.value #sms-balance { (account.balance.sms) } }
            div.tile { span.label { "MMS credits" } span.value #mms-balance { (account.balance.mms) } }
            div.tile { span.label { "Low-balance alert below" } span.value #threshold {
                @if let Some(t) = account.low_balance_threshold { (t) " SMS" } @else { "off" }
            } }
        }
        section {
            h2 { "Low-balance alert" }
            p.hint {
                "When a charge takes the SMS balance from at or above this threshold to below it, a signed "
                code { "account.balance_low" } " webhook event is posted to the account's endpoints that take it, "
                "once per crossing; a top-up or refund back above it arms the next one. Leave it blank to turn the alert off."
            }
            form.inline #low-balance method="post" action=(format!("{base}/low-balance")) {
                (csrf_field(&viewer))
                label { "SMS credits"
                    input name="threshold" inputmode="numeric" pattern="[0-9]*" maxlength="13"
                        value=[account.low_balance_threshold.map(|t| t.to_string())];
                }
                button type="submit" { "Save" }
            }
        }
        section {
            h2 { "Entries" }
            form.inline #ledger-filter method="get" action=(format!("{base}/ledger")) {
                label { "Kind"
                    select name="kind" {
                        option value="" selected[kind.is_empty()] { "any" }
                        @for k in [EntryKind::Topup, EntryKind::Charge, EntryKind::Refund] {
                            option value=(k.as_str()) selected[kind == k.as_str()] { (kind_label(k)) }
                        }
                    }
                }
                label { "From" input type="date" name="from" value=[q.from.as_deref()]; }
                label { "To" input type="date" name="to" value=[q.to.as_deref()]; }
                label { "Message" input name="message" maxlength="40" placeholder="msg_…" value=[q.message.as_deref()]; }
                button type="submit" { "Filter" }
            }
            @if found.items.is_empty() && !found.capped { (layout::empty("matching ledger entries")) }
            @if !found.items.is_empty() {
                div.scroll { table #ledger {
                    thead { tr { th { "When" } th { "Kind" } th.num { "SMS" } th.num { "MMS" } th.num { "Balance after" } th { "Cause" } } }
                    tbody { @for e in &found.items { tr {
                        td { (layout::time(e.created_at)) }
                        td { (kind_label(e.kind)) }
                        td.num { (e.delta.sms) } td.num { (e.delta.mms) }
                        td.num { (layout::credits(e.balance_after)) }
                        td.detail { (cause(e)) }
                    } } }
                } }
            }
            @if let Some(next) = found.next {
                @if found.capped {
                    p.notice #capped { "This page searched as many entries as one page may without filling up. "
                        a href=(format!("{base}/ledger?{}", q.with_before(next))) { "Search older entries →" } }
                } @else {
                    p { a href=(format!("{base}/ledger?{}", q.with_before(next))) { "Older entries →" } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Ledger", "accounts", content))
}

#[derive(Debug, Deserialize)]
struct ThresholdForm {
    #[serde(default)]
    threshold: String,
}

/// Sets or removes the threshold: the operator on any account, a holder on their own.
async fn set_threshold(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<ThresholdForm>,
) -> PageResult<Response> {
    let id = account_id(&account)?;
    posted.viewer.may_see(id)?;
    let text = posted.form.threshold.trim();
    let threshold = if text.is_empty() {
        None
    } else {
        match text.parse::<i64>() {
            Ok(t) if (1..=MAX_LOW_BALANCE_THRESHOLD).contains(&t) => Some(t),
            _ => {
                return Err(ConsoleError::Invalid(format!(
                    "threshold: a whole number of SMS credits from 1 to {MAX_LOW_BALANCE_THRESHOLD}, or blank for none"
                )));
            }
        }
    };
    state.core.set_low_balance_threshold(id, threshold).await?;
    let done = if threshold.is_some() { "threshold-set" } else { "threshold-removed" };
    Ok(Redirect::to(&format!("/console/accounts/{id}/ledger?done={done}")).into_response())
}
