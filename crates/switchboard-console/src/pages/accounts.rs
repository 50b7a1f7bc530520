//! Accounts: the operator's list with balances (and a form to open one), and an account's
//! page: balances, recent ledger entries, API keys, senders, channels and opt-outs.
//!
//! The operator may top an account up (with a reason, which the ledger keeps), create and
//! revoke its keys, and add and lift opt-outs; an account holder sees its own account's page
//! without those forms, and gets 404 for any other account, exactly as for one that does not
//! exist. Every change goes through the core's admin operations, the same as the admin API.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use switchboard_domain::AccountId;
use switchboard_ledger::Credits;

use crate::ConsoleState;
use crate::error::{ConsoleError, PageResult};
use crate::layout::{self, csrf_field};
use crate::session::{Posted, Viewer};

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/accounts", get(list).post(create))
        .route("/console/accounts/{account}", get(account_page))
        .route("/console/accounts/{account}/top-up", post(top_up))
        .route("/console/accounts/{account}/keys", post(create_key))
        .route("/console/accounts/{account}/keys/revoke", post(revoke_key))
        .route("/console/accounts/{account}/opt-outs", post(add_opt_out))
        .route("/console/accounts/{account}/opt-outs/remove", post(remove_opt_out))
}

/// Accounts per page of the list.
const PAGE: u32 = 100;
/// Ledger entries, keys and opt-outs shown on an account's page.
const RECENT: u32 = 20;
/// Longest text field of a form (names, reasons, numbers), in characters.
const MAX_FIELD: usize = 200;

/// An account id from a path: anything else is not found, like an unknown account.
fn account_id(text: &str) -> PageResult<AccountId> {
    text.parse().map_err(|_| ConsoleError::NotFound)
}

/// A text field, trimmed, within [`MAX_FIELD`] characters.
fn field<'a>(name: &str, value: &'a str) -> PageResult<&'a str> {
    let v = value.trim();
    if v.chars().count() > MAX_FIELD {
        return Err(ConsoleError::Invalid(format!("{name}: at most {MAX_FIELD} characters")));
    }
    Ok(v)
}

/// A whole number of credits; blank is 0.
fn credits_field(name: &str, value: &str) -> PageResult<i64> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(0);
    }
    v.parse().map_err(|_| ConsoleError::Invalid(format!("{name}: a whole number of credits")))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    before: Option<String>,
}

async fn list(State(state): State<ConsoleState>, viewer: Viewer, Query(q): Query<ListQuery>) -> PageResult<Response> {
    if let Some(own) = viewer.account() {
        return Ok(Redirect::to(&format!("/console/accounts/{own}")).into_response());
    }
    let before = q.before.as_deref().map(account_id).transpose()?;
    let mut accounts = state.core.accounts(before, PAGE + 1).await?;
    let more = accounts.len() > PAGE as usize;
    accounts.truncate(PAGE as usize);
    let content = html! {
        h1 { "Accounts" }
        section {
            h2 { "Open an account" }
            form.inline method="post" action="/console/accounts" {
                (csrf_field(&viewer))
                label { "Name" input name="name" required maxlength="100"; }
                button type="submit" { "Create" }
            }
        }
        @if accounts.is_empty() { (layout::empty("accounts")) } @else {
            div.scroll { table {
                thead { tr { th { "Name" } th { "Id" } th.num { "SMS credits" } th.num { "MMS credits" } th { "Opened" } } }
                tbody { @for a in &accounts { tr {
                    td { a href=(format!("/console/accounts/{}", a.id)) { (a.name) } }
                    td { code { (a.id) } }
                    td.num { (a.balance.sms) } td.num { (a.balance.mms) }
                    td { (layout::time(a.created_at)) }
                } } }
            } }
            @if more { @if let Some(last) = accounts.last() {
                p { a href=(format!("/console/accounts?before={}", last.id)) { "Older accounts →" } }
            } }
        }
    };
    Ok(layout::page(&viewer, "Accounts", "accounts", content).into_response())
}

#[derive(Debug, Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
}

async fn create(State(state): State<ConsoleState>, posted: Posted<CreateForm>) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let name = field("name", &posted.form.name)?;
    let account = state.core.create_account(name).await?;
    Ok(Redirect::to(&format!("/console/accounts/{}?done=created", account.id)).into_response())
}

#[derive(Debug, Deserialize)]
struct AccountQuery {
    done: Option<String>,
}

/// The fixed text a `?done=` names.
fn done_text(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "The account was opened.",
        "topped-up" => "The credits were added.",
        "revoked" => "The key was revoked.",
        "opted-out" => "The opt-out was added.",
        "opt-out-lifted" => "The opt-out was lifted.",
        _ => return None,
    })
}

async fn account_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(account): Path<String>,
    Query(q): Query<AccountQuery>,
) -> PageResult<Html<String>> {
    let id = account_id(&account)?;
    viewer.may_see(id)?;
    let core = &state.core;
    let account = core.account(id).await?;
    let ledger = core.ledger(id, None, RECENT).await?;
    let keys = core.keys(id).await?;
    let senders = core.senders(id).await?;
    let channels = core.channels(id).await?;
    let opt_outs = core.opt_outs(id, RECENT).await?;
    let operator = viewer.is_operator();
    let base = format!("/console/accounts/{id}");
    let content = html! {
        h1 { (account.name) }
        (layout::notice(done_text(q.done.as_deref())))
        p.scope { "Account " code { (account.id) } " · opened " (layout::time(account.created_at)) }
        section.tiles {
            div.tile { span.label { "SMS credits" } span.value #sms-balance { (account.balance.sms) } }
            div.tile { span.label { "MMS credits" } span.value #mms-balance { (account.balance.mms) } }
        }
        @if operator {
            section {
                h2 { "Top up" }
                form.inline method="post" action=(format!("{base}/top-up")) {
                    (csrf_field(&viewer))
                    label { "SMS credits" input name="sms" inputmode="numeric" pattern="[0-9]*" value="0"; }
                    label { "MMS credits" input name="mms" inputmode="numeric" pattern="[0-9]*" value="0"; }
                    label { "Reason" input name="reason" required maxlength="100" placeholder="invoice 2026-031"; }
                    button type="submit" { "Add credits" }
                }
            }
        }
        section {
            h2 { "Recent ledger entries" }
            p { a #full-ledger href=(format!("{base}/ledger")) { "The whole ledger, filtered, and the low-balance alert →" } }
            @if ledger.is_empty() { (layout::empty("ledger entries")) } @else {
                div.scroll { table #ledger {
                    thead { tr { th { "When" } th { "Kind" } th.num { "SMS" } th.num { "MMS" } th.num { "Balance after" } th { "Cause" } } }
                    tbody { @for e in &ledger { tr {
                        td { (layout::time(e.created_at)) }
                        td { (e.kind.as_str()) }
                        td.num { (e.delta.sms) } td.num { (e.delta.mms) }
                        td.num { (layout::credits(e.balance_after)) }
                        td { @if let Some(r) = &e.reference { (r) } @else if let Some(m) = e.message_id { "message " a href=(format!("/console/messages/{m}")) { code { (m) } } } @else { (layout::nothing()) } }
                    } } }
                } }
            }
        }
        section {
            h2 { "API keys" }
            @if keys.is_empty() { (layout::empty("keys")) } @else {
                div.scroll { table {
                    thead { tr { th { "Key id" } th { "Name" } th { "Created" } th { "State" } @if operator { th {} } } }
                    tbody { @for k in &keys { tr {
                        td { code { (k.id) } }
                        td { @if let Some(n) = &k.name { (n) } @else { (layout::nothing()) } }
                        td { (layout::time(k.created_at)) }
                        td { @if let Some(at) = k.revoked_at { span.badge.muted { "revoked " (layout::time(at)) } } @else { span.badge.ok { "active" } } }
                        @if operator { td { @if k.revoked_at.is_none() {
                            form method="post" action=(format!("{base}/keys/revoke")) {
                                (csrf_field(&viewer))
                                input type="hidden" name="key_id" value=(k.id);
                                button.danger type="submit" { "Revoke" }
                            }
                        } } }
                    } } }
                } }
            }
            @if operator {
                form.inline method="post" action=(format!("{base}/keys")) {
                    (csrf_field(&viewer))
                    label { "New key's name" input name="name" maxlength="100" placeholder="production"; }
                    button type="submit" { "Create a key" }
                }
            }
        }
        section {
            h2 { "Senders" }
            @if senders.is_empty() { (layout::empty("senders")) } @else {
                div.scroll { table {
                    thead { tr { th { "Address" } th { "State" } th { "SMS" } th { "MMS" } th { "Since" } } }
                    tbody { @for s in &senders { tr {
                        td { (s.address.as_str()) }
                        td { @if s.active { span.badge.ok { "active" } } @else { span.badge.muted { "inactive" } } }
                        td { (yes_no(s.sms)) } td { (yes_no(s.mms)) }
                        td { (layout::time(s.created_at)) }
                    } } }
                } }
            }
        }
        section {
            h2 { "Channels" }
            @if channels.is_empty() { (layout::empty("channels")) } @else {
                div.scroll { table {
                    thead { tr { th { "Name" } th { "Id" } th { "Sender" } th { "State" } } }
                    tbody { @for c in &channels { tr {
                        td { (c.name) } td { code { (c.id) } } td { (c.sender.as_str()) }
                        td { @if c.active { span.badge.ok { "active" } } @else { span.badge.muted { "inactive" } } }
                    } } }
                } }
            }
        }
        section {
            h2 { "Opt-outs" }
            @if opt_outs.is_empty() { (layout::empty("opt-outs")) } @else {
                div.scroll { table {
                    thead { tr { th { "Sender" } th { "Recipient" } th { "Since" } @if operator { th {} } } }
                    tbody { @for o in &opt_outs { tr {
                        td { (o.sender.as_str()) }
                        td { @if operator { (o.recipient.as_str()) } @else { (layout::masked(&o.recipient)) } }
                        td { (layout::time(o.created_at)) }
                        @if operator { td {
                            form method="post" action=(format!("{base}/opt-outs/remove")) {
                                (csrf_field(&viewer))
                                input type="hidden" name="sender" value=(o.sender.as_str());
                                input type="hidden" name="recipient" value=(o.recipient.as_str());
                                button.danger type="submit" { "Lift" }
                            }
                        } }
                    } } }
                } }
            }
            @if operator && !senders.is_empty() {
                form.inline method="post" action=(format!("{base}/opt-outs")) {
                    (csrf_field(&viewer))
                    label { "Sender" input name="sender" required maxlength="20" value=(senders[0].address.as_str()); }
                    label { "Recipient" input name="recipient" required maxlength="20" placeholder="+447700900123"; }
                    button type="submit" { "Add an opt-out" }
                }
            }
        }
    };
    Ok(layout::page(&viewer, &account.name, "accounts", content))
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[derive(Debug, Deserialize)]
struct TopUpForm {
    #[serde(default)]
    sms: String,
    #[serde(default)]
    mms: String,
    #[serde(default)]
    reason: String,
}

async fn top_up(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<TopUpForm>,
) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let id = account_id(&account)?;
    let f = &posted.form;
    let amount = Credits { sms: credits_field("sms", &f.sms)?, mms: credits_field("mms", &f.mms)? };
    let reason = field("reason", &f.reason)?;
    if reason.is_empty() {
        return Err(ConsoleError::Invalid("reason: say why the credits are added".into()));
    }
    state.core.top_up(id, amount, Some(reason)).await?;
    Ok(Redirect::to(&format!("/console/accounts/{id}?done=topped-up")).into_response())
}

#[derive(Debug, Deserialize)]
struct KeyForm {
    #[serde(default)]
    name: String,
}

/// Creates a key and shows its secret, once: the answer is never stored (`no-store`), and
/// the secret is not kept anywhere.
async fn create_key(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<KeyForm>,
) -> PageResult<Html<String>> {
    posted.viewer.require_operator()?;
    let id = account_id(&account)?;
    let name = field("name", &posted.form.name)?;
    let (record, key) = state.core.create_key(id, (!name.is_empty()).then_some(name)).await?;
    let content = html! {
        h1 { "New API key" }
        p.notice { "Copy the secret now: it is shown only this once, and cannot be read again." }
        dl.figures {
            dt { "Key id" } dd { code #new-key-id { (record.id) } }
            dt { "Secret" } dd { div.secret #new-key-secret { (key.secret) } }
        }
        p { a href=(format!("/console/accounts/{id}")) { "Back to the account" } }
    };
    Ok(layout::page(&posted.viewer, "New API key", "accounts", content))
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    #[serde(default)]
    key_id: String,
}

async fn revoke_key(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<RevokeForm>,
) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let id = account_id(&account)?;
    let key_id = field("key_id", &posted.form.key_id)?;
    state.core.revoke_key(id, key_id).await?;
    Ok(Redirect::to(&format!("/console/accounts/{id}?done=revoked")).into_response())
}

#[derive(Debug, Deserialize)]
struct OptOutForm {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
}

async fn add_opt_out(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<OptOutForm>,
) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let id = account_id(&account)?;
    let f = &posted.form;
    state.core.add_opt_out(id, field("sender", &f.sender)?, field("recipient", &f.recipient)?).await?;
    Ok(Redirect::to(&format!("/console/accounts/{id}?done=opted-out")).into_response())
}

async fn remove_opt_out(
    State(state): State<ConsoleState>,
    Path(account): Path<String>,
    posted: Posted<OptOutForm>,
) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let id = account_id(&account)?;
    let f = &posted.form;
    state.core.remove_opt_out(id, field("sender", &f.sender)?, field("recipient", &f.recipient)?).await?;
    Ok(Redirect::to(&format!("/console/accounts/{id}?done=opt-out-lifted")).into_response())
}
