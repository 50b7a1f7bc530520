//! Messages: a search by id, recipient (matched whole, never as a prefix), status, dialect and
//! time range, newest first; and a message's page, with its parts, its status history as a
//! timeline, its charge and refund, and its webhook deliveries with their attempts. The
//! operator can resend a failed delivery from there.
//!
//! An account holder's search is held to their own account by the core, and another account's
//! message is not found; so every number on their pages is one of their own messages'.
//! Searches read through `Core::find_messages` and `Core::message_detail`, the admin API's.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use switchboard_domain::{AccountId, Dialect, EventId, MessageId, MessageStatus, Msisdn};
use switchboard_records::{DeliveryState, MessageFilter, MessageRecord};
use uuid::Uuid;

use super::ledger::{end_field, kind_label, scope, time_field};
use crate::ConsoleState;
use crate::error::{ConsoleError, PageResult};
use crate::layout::{self, csrf_field};
use crate::session::{Posted, Viewer};

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/console/messages", get(search))
        .route("/console/messages/{id}", get(message_page))
        .route("/console/messages/{id}/resend", post(resend))
}

/// Messages per page.
const PAGE: u32 = 50;

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    id: Option<String>,
    account: Option<String>,
    recipient: Option<String>,
    status: Option<String>,
    dialect: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<String>,
}

/// A field's value, trimmed; blank is none.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl SearchQuery {
    fn parse(&self, viewer: &Viewer) -> PageResult<(Option<MessageId>, MessageFilter)> {
        let id = match given(&self.id) {
            None => None,
            Some(id) => {
                Some(id.parse::<MessageId>().map_err(|_| ConsoleError::Invalid("id: a message id (msg_…)".into()))?)
            }
        };
        // An account holder's search is their account's, whatever the form says.
        let account = match (viewer.account(), given(&self.account)) {
            (Some(own), _) => Some(own),
            (None, None) => None,
            (None, Some(a)) => {
                Some(a.parse::<AccountId>().map_err(|_| ConsoleError::Invalid("account: an account id".into()))?)
            }
        };
        let recipient = match given(&self.recipient) {
            None => None,
            Some(r) => Some(Msisdn::parse(r).map_err(|_| {
                ConsoleError::Invalid("recipient: a whole number in E.164, such as +18005551234".into())
            })?),
        };
        let status = match given(&self.status) {
            None => None,
            Some(s) => Some(MessageStatus::parse(s).ok_or_else(|| ConsoleError::Invalid("status: unknown".into()))?),
        };
        let dialect = match given(&self.dialect) {
            None => None,
            Some(d) => Some(Dialect::parse(d).ok_or_else(|| ConsoleError::Invalid("dialect: unknown".into()))?),
        };
        let (from, to) = (time_field("from", self.from.as_deref())?, end_field("to", self.to.as_deref())?);
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            return Err(ConsoleError::Invalid("to: must not be before from".into()));
        }
        Ok((id, MessageFilter { account, recipient, status, dialect, from, to }))
    }

    /// The query string of these fields, with another cursor.
    fn with_before(&self, before: Uuid) -> String {
        let fields = [
            ("id", &self.id),
            ("account", &self.account),
            ("recipient", &self.recipient),
            ("status", &self.status),
            ("dialect", &self.dialect),
            ("from", &self.from),
            ("to", &self.to),
        ];
        let mut query: Vec<(&str, String)> =
            fields.iter().filter_map(|(k, v)| given(v).map(|v| (*k, v.to_owned()))).collect();
        query.push(("before", MessageId::from_uuid(before).to_string()));
        serde_urlencoded::to_string(&query).unwrap_or_default()
    }
}

/// A status as a badge.
fn status_badge(status: MessageStatus) -> Markup {
    let class = match status {
        MessageStatus::Delivered | MessageStatus::Received | MessageStatus::Sent => "badge ok",
        MessageStatus::Failed | MessageStatus::Undelivered | MessageStatus::Expired => "badge bad",
        _ => "badge muted",
    };
    html! { span class=(class) { (status.as_str()) } }
}

/// A select of `values`, with `chosen` selected and "any" first.
fn select(name: &str, values: &[&'static str], chosen: Option<&str>) -> Markup {
    html! {
        select name=(name) {
            option value="" selected[chosen.is_none()] { "any" }
            @for v in values { option value=(v) selected[chosen == Some(*v)] { (v) } }
        }
    }
}

async fn search(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(q): Query<SearchQuery>,
) -> PageResult<Html<String>> {
    let (id, filter) = q.parse(&viewer)?;
    let before = match given(&q.before) {
        None => None,
        Some(b) => Some(b.parse::<MessageId>().map_err(|_| ConsoleError::Invalid("before: not a cursor".into()))?),
    };
    let searched = id.is_some() || q != SearchQuery::default();
    let found = state.core.find_messages(scope(&viewer), id, &filter, before, PAGE).await?;
    let operator = viewer.is_operator();
    let statuses: Vec<&'static str> = MessageStatus::ALL.iter().map(|s| s.as_str()).collect();
    let dialects: Vec<&'static str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
    let content = html! {
        h1 { "Messages" }
        section {
            form.inline #search method="get" action="/console/messages" {
                label { "Id" input name="id" maxlength="40" placeholder="msg_…" value=[given(&q.id)]; }
                @if operator { label { "Account" input name="account" maxlength="36" value=[given(&q.account)]; } }
                label { "Recipient" input name="recipient" type="tel" maxlength="16" placeholder="+18005551234" value=[given(&q.recipient)]; }
                label { "Status" (select("status", &statuses, given(&q.status))) }
                label { "Dialect" (select("dialect", &dialects, given(&q.dialect))) }
                label { "From" input type="date" name="from" value=[given(&q.from)]; }
                label { "To" input type="date" name="to" value=[given(&q.to)]; }
                button type="submit" { "Search" }
            }
            p.hint { "A recipient is matched whole: give the number in full, with its country code." }
        }
        section {
            @if found.items.is_empty() && !found.capped {
                p.empty { @if searched { "No message matches." } @else { "No messages yet." } }
            }
            @if !found.items.is_empty() {
                div.scroll { table #messages {
                    thead { tr {
                        th { "Created" } th { "Id" } @if operator { th { "Account" } }
                        th { "To" } th { "From" } th { "Status" } th { "Dialect" }
                    } }
                    tbody { @for m in &found.items { (row(m, operator)) } }
                } }
            }
            @if let Some(next) = found.next {
                @if found.capped {
                    p.notice #capped { "This page searched as many messages as one page may without filling up. "
                        a href=(format!("/console/messages?{}", q.with_before(next))) { "Search older messages →" } }
                } @else {
                    p { a href=(format!("/console/messages?{}", q.with_before(next))) { "Older messages →" } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, "Messages", "messages", content))
}

impl PartialEq for SearchQuery {
    /// Whether two queries ask the same (cursors aside).
    fn eq(&self, other: &Self) -> bool {
        let fields = |q: &SearchQuery| {
            [&q.id, &q.account, &q.recipient, &q.status, &q.dialect, &q.from, &q.to]
                .map(|v| given(v).map(str::to_owned))
        };
        fields(self) == fields(other)
    }
}

fn row(m: &MessageRecord, operator: bool) -> Markup {
    html! {
        tr {
            td { (layout::time(m.created_at)) }
            td { a href=(format!("/console/messages/{}", m.id)) { code { (m.id) } } }
            @if operator { td { a href=(format!("/console/accounts/{}", m.account_id)) { code { (m.account_id) } } } }
            td { (m.to.as_str()) }
            td { (m.from.as_str()) }
            td { (status_badge(m.status)) }
            td { (m.dialect().as_str()) }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct MessageQuery {
    done: Option<String>,
}

/// The fixed text a `?done=` names.
fn done_text(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "resent" => "The delivery is due again, with a fresh retry budget.",
        _ => return None,
    })
}

async fn message_page(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<MessageQuery>,
) -> PageResult<Html<String>> {
    let id: MessageId = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let d = state.core.message_detail(scope(&viewer), id).await?;
    let m = &d.message;
    let operator = viewer.is_operator();
    let content = html! {
        h1 { "Message " code { (m.id) } }
        (layout::notice(done_text(q.done.as_deref())))
        section {
            dl.figures #summary {
                dt { "Status" } dd #status { (status_badge(m.status)) }
                @if let Some(e) = m.error_type { dt { "Error" } dd { (e.as_str()) @if let Some(t) = &m.error_message { " · " (t) } } }
                dt { "To" } dd { (m.to.as_str()) }
                dt { "From" } dd { (m.from.as_str()) }
                dt { "Account" } dd { a href=(format!("/console/accounts/{}", m.account_id)) { code { (m.account_id) } } }
                dt { "Dialect" } dd { (m.dialect().as_str()) }
                dt { "Kind" } dd { (m.kind.as_str()) " · " (m.encoding.as_str()) " · " (m.segments) " part" @if m.segments != 1 { "s" } }
                dt { "Created" } dd { (layout::time(m.created_at)) }
                @if let Some(at) = m.sent_at { dt { "Sent" } dd { (layout::time(at)) } }
                dt { "Charged now" } dd { (layout::credits(m.charged)) }
                @if let Some(body) = &m.body { dt { "Text" } dd.detail { (body) } }
            }
        }
        section {
            h2 { "Status history" }
            @if d.events.is_empty() { (layout::empty("status changes kept")) } @else {
                ol.timeline #timeline {
                    @for e in &d.events {
                        li class=(format!("step {}", e.status.as_str())) {
                            span.when { (layout::time(e.at)) }
                            " " (status_badge(e.status))
                            @if let Some(t) = e.error_type { " " span.hint { (t.as_str()) } }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Parts" }
            @if d.parts.is_empty() { (layout::empty("parts taken by an upstream")) } @else {
                div.scroll { table #parts {
                    thead { tr { th.num { "Part" } th { "Upstream's id" } th { "Status" } th { "Since" } } }
                    tbody { @for p in &d.parts { tr {
                        td.num { (p.part.unwrap_or(0)) }
                        td { code { (p.provider_ref) } }
                        td { (status_badge(p.status)) @if let Some(t) = p.error_type { " " span.hint { (t.as_str()) } } }
                        td { (layout::time(p.at)) }
                    } } }
                } }
            }
        }
        section {
            h2 { "Charges and refunds" }
            @if d.ledger.is_empty() { (layout::empty("charges")) } @else {
                div.scroll { table #charges {
                    thead { tr { th { "When" } th { "Kind" } th.num { "SMS" } th.num { "MMS" } th.num { "Balance after" } } }
                    tbody { @for e in &d.ledger { tr {
                        td { (layout::time(e.created_at)) }
                        td { (kind_label(e.kind)) }
                        td.num { (e.delta.sms) } td.num { (e.delta.mms) }
                        td.num { (layout::credits(e.balance_after)) }
                    } } }
                } }
                p { a href=(format!("/console/accounts/{}/ledger?message={}", m.account_id, m.id)) { "In the account's ledger →" } }
            }
        }
        section {
            h2 { "Webhook deliveries" }
            @if d.deliveries.is_empty() { (layout::empty("webhook deliveries")) } @else {
                div.scroll { table #deliveries {
                    thead { tr { th { "Event" } th { "Type" } th { "To" } th { "State" } th { "Attempts" } @if operator { th {} } } }
                    tbody { @for (del, attempts) in &d.deliveries { tr {
                        td { code { (del.event_id) } }
                        td { (del.event_type.as_str()) }
                        td.detail {
                            @if del.endpoint_id.is_some() { "endpoint " } @else { "notification URL " }
                            code { @if operator { (del.url) } @else { (origin(&del.url)) } }
                        }
                        td { (delivery_state(del.state)) }
                        td {
                            @if attempts.is_empty() { (layout::nothing()) } @else {
                                ol.attempts { @for a in attempts { li {
                                    (layout::time(a.at)) " · "
                                    @if let Some(code) = a.status_code { "HTTP " (code) } @else { "no answer" }
                                    @if let Some(err) = &a.error { " · " (err) }
                                    " · " (a.duration_ms) " ms"
                                } } }
                            }
                        }
                        @if operator { td { @if del.state == DeliveryState::Failed {
                            form method="post" action=(format!("/console/messages/{}/resend", m.id)) {
                                (csrf_field(&viewer))
                                input type="hidden" name="event" value=(del.event_id);
                                input type="hidden" name="webhook" value=[del.endpoint_id.map(|e| e.to_string())];
                                button type="submit" { "Resend" }
                            }
                        } } }
                    } } }
                } }
            }
        }
    };
    Ok(layout::page(&viewer, "Message", "messages", content))
}

/// A URL's scheme and host only: a path or query may carry a token, which the account holder's
/// page does not show (the operator's shows the URL whole, as the admin API does).
fn origin(url: &str) -> &str {
    let host_from = url.find("://").map_or(0, |i| i + 3);
    let end = url[host_from..].find(['/', '?', '#']).map_or(url.len(), |i| host_from + i);
    &url[..end]
}

fn delivery_state(state: DeliveryState) -> Markup {
    let class = match state {
        DeliveryState::Delivered => "badge ok",
        DeliveryState::Failed => "badge bad",
        DeliveryState::Pending | DeliveryState::Canceled => "badge muted",
    };
    html! { span class=(class) { (state.as_str()) } }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_keeps_the_scheme_and_host_only() {
        assert_eq!(super::origin("https://hooks.example.com/sms?token=abc"), "https://hooks.example.com");
        assert_eq!(super::origin("http://127.0.0.1:8080/hook#x"), "http://127.0.0.1:8080");
        assert_eq!(super::origin("https://example.com"), "https://example.com");
    }
}

#[derive(Debug, Deserialize)]
struct ResendForm {
    #[serde(default)]
    event: String,
    #[serde(default)]
    webhook: String,
}

/// Resends a failed delivery of the message: the operator only.
async fn resend(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
    posted: Posted<ResendForm>,
) -> PageResult<Response> {
    posted.viewer.require_operator()?;
    let id: MessageId = id.parse().map_err(|_| ConsoleError::NotFound)?;
    let event: EventId = posted.form.event.trim().parse().map_err(|_| ConsoleError::NotFound)?;
    let webhook = match posted.form.webhook.trim() {
        "" => None,
        w => Some(w.parse::<Uuid>().map_err(|_| ConsoleError::Invalid("webhook: not an endpoint id".into()))?),
    };
    // Only a delivery of this message, so that the form cannot reach another's.
    let detail = state.core.message_detail(scope(&posted.viewer), id).await?;
    if !detail.deliveries.iter().any(|(d, _)| d.event_id == event) {
        return Err(ConsoleError::NotFound);
    }
    state.core.resend_deliveries(event, webhook).await?;
    Ok(Redirect::to(&format!("/console/messages/{id}?done=resent")).into_response())
}
