//! The upstreams (operator only): each upstream's state, window in use, throughput and what
//! it last said went wrong, and the SMPP server's binds on this node.
//!
//! Throughput is measured between page views: each view samples every upstream's counters, and
//! the rate is the change since the oldest sample of the last five minutes.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use maud::{Markup, html};
use switchboard_core::smpp::BindMode;

use crate::error::PageResult;
use crate::session::Viewer;
use crate::{ConsoleState, layout};

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new().route("/console/upstreams", get(upstreams))
}

/// How far back samples are kept.
const WINDOW: Duration = Duration::from_secs(300);
/// Most samples kept per upstream.
const MAX_SAMPLES: usize = 64;

/// One reading of an upstream's counters: when, sent, failed.
type Sample = (Instant, u64, u64);

/// Recent samples of each upstream's counters, by name.
#[derive(Debug, Default)]
pub struct Samples {
    by_name: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl Samples {
    /// Records `sent` and `failed` for `name` now; returns the messages a second (sent,
    /// failed) since the oldest sample still in the window, if it is at least a second old.
    pub fn rate(&self, name: &str, sent: u64, failed: u64) -> Option<(f64, f64)> {
        self.rate_at(name, sent, failed, Instant::now())
    }

    fn rate_at(&self, name: &str, sent: u64, failed: u64, now: Instant) -> Option<(f64, f64)> {
        let mut all = self.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Upstreams come from the settings, so names are few; bound them all the same.
        if all.len() > 1_000 && !all.contains_key(name) {
            all.clear();
        }
        let samples = all.entry(name.to_owned()).or_default();
        while samples.front().is_some_and(|(at, _, _)| now.duration_since(*at) > WINDOW) || samples.len() >= MAX_SAMPLES
        {
            samples.pop_front();
        }
        let rate = samples.front().and_then(|(at, s0, f0)| {
            let secs = now.duration_since(*at).as_secs_f64();
            (secs >= 1.0).then(|| (sent.saturating_sub(*s0) as f64 / secs, failed.saturating_sub(*f0) as f64 / secs))
        });
        samples.push_back((now, sent, failed));
        rate
    }
}

/// The upstreams as a table (also on the overview).
pub fn table(upstreams: &[switchboard_provider::UpstreamStatus]) -> Markup {
    html! {
        @if upstreams.is_empty() { (layout::empty("upstreams")) } @else {
            div.scroll { table {
                thead { tr { th { "Name" } th { "Kind" } th { "State" } th.num { "Window in use" } th.num { "Sent" }
                    th.num { "Failed" } th.num { "Throttled" } th.num { "Rate cap /s" } } }
                tbody { @for u in upstreams { tr {
                    td { (u.name) } td { (u.kind) }
                    td { @if u.connected { span.badge.ok { "connected" } } @else { span.badge.bad { "down" } } }
                    td.num { (u.in_flight) @if u.window > 0 { " / " (u.window) } }
                    td.num { (u.sent) } td.num { (u.failed) } td.num { (u.throttled) }
                    td.num { @match u.rate_per_second { Some(r) => (format!("{r:.1}")), None => "—" } }
                } } }
            } }
        }
    }
}

async fn upstreams(State(state): State<ConsoleState>, viewer: Viewer) -> PageResult<Html<String>> {
    viewer.require_operator()?;
    let upstreams = state.core.upstreams();
    let rates: Vec<Option<(f64, f64)>> =
        upstreams.iter().map(|u| state.upstream_samples.rate(&u.name, u.sent, u.failed)).collect();
    let binds = state.core.smpp_binds().list();
    let content = html! {
        h1 { "Upstreams" }
        (table(&upstreams))
        h2 { "Throughput and last errors" }
        div.scroll { table {
            thead { tr { th { "Name" } th.num { "Sent /s" } th.num { "Failed /s" } th { "State" } th { "Last send error" } } }
            tbody { @for (u, rate) in upstreams.iter().zip(&rates) { tr {
                td { (u.name) }
                @match rate {
                    Some((s, f)) => { td.num { (format!("{s:.2}")) } td.num { (format!("{f:.2}")) } }
                    None => { td.num { "—" } td.num { "—" } }
                }
                td.detail { (u.detail.as_deref().unwrap_or("—")) }
                td.detail { @match &u.last_error {
                    Some((at, message)) => { (layout::time(*at)) ": " (message) }
                    None => "—"
                } }
            } } }
        } }
        p.hint { "Rates are measured between views of this page (over up to five minutes); reload to update." }
        h2 { "SMPP server binds on this node" }
        @if binds.is_empty() { (layout::empty("binds")) } @else {
            div.scroll { table {
                thead { tr { th { "system_id" } th { "Mode" } th { "Account" } th { "Bound since" } th.num { "Window in use" } } }
                tbody { @for b in &binds { tr {
                    td { (b.system_id) }
                    td { (match b.mode { BindMode::Transmitter => "transmitter", BindMode::Receiver => "receiver", BindMode::Transceiver => "transceiver" }) }
                    td { a href=(format!("/console/accounts/{}", b.account)) { (b.account) } }
                    td { (layout::time(b.bound_at)) }
                    td.num { (b.in_window.load(std::sync::atomic::Ordering::Relaxed)) " / " (b.window) }
                } } }
            } }
        }
    };
    Ok(layout::page(&viewer, "Upstreams", "upstreams", content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_change_since_the_oldest_recent_sample() {
        let samples = Samples::default();
        let t0 = Instant::now();
        assert_eq!(samples.rate_at("a", 10, 0, t0), None);
        assert_eq!(samples.rate_at("a", 12, 0, t0 + Duration::from_millis(500)), None, "under a second");
        assert_eq!(samples.rate_at("a", 30, 5, t0 + Duration::from_secs(10)), Some((2.0, 0.5)));
        // Samples older than the window are dropped: the oldest left is the one at 10 s.
        let late = t0 + WINDOW + Duration::from_secs(5);
        let (sent, _) = samples.rate_at("a", 130, 5, late).unwrap();
        assert!((sent - 100.0 / (WINDOW.as_secs_f64() - 5.0)).abs() < 1e-9, "{sent}");
    }
}
