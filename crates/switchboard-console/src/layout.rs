//! The page shell every console page shares, and small formatting helpers.
//!
//! Values go into pages through maud's `(…)` splices, which escape them; nothing here writes
//! raw HTML from data.

use axum::response::Html;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use switchboard_domain::{Msisdn, Timestamp};
use switchboard_ledger::Credits;

use crate::pages::NAV;
use crate::session::Viewer;

/// A whole page for a logged-in viewer: the header with the navigation (the entries the
/// viewer may see, `active` marked) and a logout button, then `content`.
pub fn page(viewer: &Viewer, title: &str, active: &str, content: Markup) -> Html<String> {
    let nav = html! {
        header.top {
            a.brand href="/console" { "Switchboard" }
            nav {
                @for entry in NAV.iter().filter(|e| viewer.is_operator() || !e.operator_only) {
                    @let href = entry.href_for(viewer);
                    a href=(href) class=[(entry.key == active).then_some("active")] { (entry.label) }
                }
            }
            div.who {
                span { (viewer.describe()) }
                form method="post" action="/console/logout" {
                    (csrf_field(viewer))
                    button type="submit" { "Log out" }
                }
            }
        }
    };
    Html(shell(title, html! { (nav) main { (content) } }).into_string())
}

/// A page without navigation (the login page, errors).
pub fn bare(title: &str, content: Markup) -> Html<String> {
    Html(shell(title, html! { main.narrow { (content) } }).into_string())
}

fn shell(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchboard" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body { (body) }
        }
    }
}

/// The hidden field that carries the session's CSRF token in every state-changing form.
pub fn csrf_field(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf()); }
}

/// A time as the console shows it: `2026-03-15 14:30:05 UTC`.
pub fn time(t: Timestamp) -> String {
    let s = t.to_string();
    match (s.get(..10), s.get(11..19)) {
        (Some(day), Some(clock)) => format!("{day} {clock} UTC"),
        _ => s,
    }
}

/// Credits as `12 SMS · 3 MMS`.
pub fn credits(c: Credits) -> String {
    format!("{} SMS · {} MMS", c.sms, c.mms)
}

/// A phone number shown in part: its country code and last four digits (`+44 ••• 3456`).
pub fn masked(number: &Msisdn) -> String {
    let digits = number.as_str().trim_start_matches('+');
    if digits.len() <= 6 {
        return "+•••".to_owned();
    }
    format!("+{}•••{}", &digits[..2], &digits[digits.len() - 4..])
}

/// A flash message at the top of a page, from a `?done=` query (fixed texts only: the
/// query picks one of them, it never supplies words).
pub fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(t) = text { p.notice.ok role="status" { (t) } }
    }
}

/// An empty-state line for a table with no rows.
pub fn empty(what: &str) -> Markup {
    html! { p.empty { "No " (what) " yet." } }
}

/// A non-breaking space, for table cells with nothing to say.
pub fn nothing() -> Markup {
    PreEscaped("&#8212;".to_owned())
}
