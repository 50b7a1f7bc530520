//! The overview: outbound messages per minute over the last hour and per hour over the last
//! week (accepted, sent, delivered, failed), the delivery rate, the backlog, and the upstreams.
//!
//! The operator sees every account's messages; an account holder only the account's. The
//! counts are by creation time and current status: a message accepted at 10:04 and delivered
//! at 10:05 counts as accepted, sent and delivered at 10:04. Hours come from the running
//! counts; minutes from the last hour's messages, a range of their time-ordered ids.

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use maud::{Markup, html};
use switchboard_domain::{AccountId, Timestamp};
use switchboard_records::TrafficBucket;

use crate::chart::{Series, line_chart};
use crate::error::PageResult;
use crate::session::Viewer;
use crate::{ConsoleState, layout};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

pub(crate) fn routes() -> Router<ConsoleState> {
    Router::new().route("/console", get(overview)).route("/console/", get(overview))
}

/// Counts by bucket: accepted (every message), sent (taken by an upstream: sent or
/// delivered), delivered, failed (for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Every outbound message, per bucket.
    pub accepted: Vec<i64>,
    /// Sent or delivered.
    pub sent: Vec<i64>,
    /// Delivered.
    pub delivered: Vec<i64>,
    /// Failed, undelivered, expired or canceled.
    pub failed: Vec<i64>,
}

impl Traffic {
    /// `buckets` buckets of `bucket_ms` from `start`, filled from `counts` (others ignored).
    pub fn from_buckets(counts: &[TrafficBucket], start: i64, bucket_ms: i64, buckets: usize) -> Self {
        let mut t = Traffic {
            accepted: vec![0; buckets],
            sent: vec![0; buckets],
            delivered: vec![0; buckets],
            failed: vec![0; buckets],
        };
        for c in counts {
            let offset = c.start - start;
            if offset < 0 {
                continue;
            }
            let i = usize::try_from(offset / bucket_ms).unwrap_or(usize::MAX);
            if i >= buckets {
                continue;
            }
            t.accepted[i] += c.accepted;
            t.sent[i] += c.sent;
            t.delivered[i] += c.delivered;
            t.failed[i] += c.failed;
        }
        t
    }

    fn series(&self) -> Vec<Series> {
        vec![
            Series { name: "accepted", class: "accepted", values: self.accepted.clone() },
            Series { name: "sent", class: "sent", values: self.sent.clone() },
            Series { name: "delivered", class: "delivered", values: self.delivered.clone() },
            Series { name: "failed", class: "failed", values: self.failed.clone() },
        ]
    }

    /// Delivered out of those whose fate is known (sent, delivered or failed), in percent.
    pub fn delivery_rate(&self) -> Option<f64> {
        let delivered: i64 = self.delivered.iter().sum();
        let decided: i64 = self.sent.iter().sum::<i64>() + self.failed.iter().sum::<i64>();
        (decided > 0).then(|| 100.0 * delivered as f64 / decided as f64)
    }
}

fn clock(ms: i64) -> String {
    let s = Timestamp::from_millis(ms).to_string();
    s.get(11..16).unwrap_or_default().to_owned()
}

fn day_hour(ms: i64) -> String {
    let s = Timestamp::from_millis(ms).to_string();
    format!("{} {}", s.get(5..10).unwrap_or_default(), s.get(11..16).unwrap_or_default())
}

async fn overview(State(state): State<ConsoleState>, viewer: Viewer) -> PageResult<Html<String>> {
    let account: Option<AccountId> = viewer.account();
    let now = Timestamp::now().millis();
    let minute_start = now.div_euclid(MINUTE_MS) * MINUTE_MS - 59 * MINUTE_MS;
    let hour_start = now.div_euclid(HOUR_MS) * HOUR_MS - 167 * HOUR_MS;
    let core = &state.core;
    let (minutes, hours) = (
        core.minute_traffic(account, Timestamp::from_millis(minute_start), 60).await?,
        core.hourly_traffic(
            account,
            Timestamp::from_millis(hour_start),
            Timestamp::from_millis(hour_start + 168 * HOUR_MS),
        )
        .await?,
    );
    let minutes = Traffic::from_buckets(&minutes, minute_start, MINUTE_MS, 60);
    let hours = Traffic::from_buckets(&hours, hour_start, HOUR_MS, 168);
    let backlog = backlog(&state, account).await?;
    let upstreams = state.core.upstreams();
    let connected = upstreams.iter().filter(|u| u.connected).count();
    let content = html! {
        h1 { "Overview" }
        p.scope { @if viewer.is_operator() { "All accounts." } @else { "Your account." } " Times in UTC." }
        section.tiles {
            div.tile { span.label { "Delivery rate, 7 days" }
                span.value { @match hours.delivery_rate() { Some(r) => (format!("{r:.1} %")), None => "—" } } }
            div.tile { span.label { "Accepted, last hour" } span.value { (minutes.accepted.iter().sum::<i64>()) } }
            div.tile { span.label { "Accepted, 7 days" } span.value { (hours.accepted.iter().sum::<i64>()) } }
            div.tile { span.label { "Upstreams connected" } span.value { (connected) " of " (upstreams.len()) } }
        }
        section #minutes {
            h2 { "Last hour, per minute" }
            (line_chart("Messages per minute, last hour", &minutes.series(), &clock(minute_start), &clock(minute_start + 59 * MINUTE_MS)))
        }
        section #hours {
            h2 { "Last week, per hour" }
            (line_chart("Messages per hour, last week", &hours.series(), &day_hour(hour_start), &day_hour(hour_start + 167 * HOUR_MS)))
        }
        section {
            h2 { "Backlog" }
            (backlog)
        }
        @if viewer.is_operator() {
            section {
                h2 { "Upstreams" }
                (crate::pages::upstreams::table(&upstreams))
            }
        }
    };
    Ok(layout::page(&viewer, "Overview", "overview", content))
}

async fn backlog(state: &ConsoleState, account: Option<AccountId>) -> PageResult<Markup> {
    Ok(match account {
        None => {
            let b = state.core.backlog().await?;
            html! {
                dl.figures {
                    dt { "Queued" } dd { (b.queued) }
                    dt { "Scheduled" } dd { (b.scheduled) }
                    dt { "Webhook deliveries due" } dd { (b.deliveries_due) }
                    dt { "Awaiting receipts" } dd { (b.receipts_awaited) }
                }
            }
        }
        Some(account) => {
            let (queued, scheduled) = state.core.account_backlog(account).await?;
            html! {
                dl.figures {
                    dt { "Queued" } dd { (queued) }
                    dt { "Scheduled" } dd { (scheduled) }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fall_into_place_and_give_the_delivery_rate() {
        let b = |start, accepted, sent, delivered, failed| TrafficBucket { start, accepted, sent, delivered, failed };
        let counts = [b(1_000, 4, 3, 3, 1), b(1_060, 6, 4, 0, 0), b(999, 100, 100, 0, 0), b(1_180, 100, 100, 0, 0)];
        let t = Traffic::from_buckets(&counts, 1_000, 60, 3);
        assert_eq!(t.accepted, vec![4, 6, 0]);
        assert_eq!(t.sent, vec![3, 4, 0]);
        assert_eq!(t.delivered, vec![3, 0, 0]);
        assert_eq!(t.failed, vec![1, 0, 0]);
        // 3 delivered out of 8 decided (7 sent or delivered, 1 failed).
        assert_eq!(t.delivery_rate(), Some(37.5));
        assert_eq!(Traffic::from_buckets(&[], 0, 60, 2).delivery_rate(), None);
    }
}
