//! Logs and metrics: a tracing subscriber (text or JSON) and one process-wide Prometheus
//! recorder, whose every metric is described here ([`METRICS`]) so that `/metrics` gives each
//! family its `# HELP` and `# TYPE`, and whose latencies are histograms with fixed buckets
//! (which add up across nodes, where quantile summaries do not).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber, writing to standard error as `text` or `json`, with colour
/// only when standard error is a terminal. `RUST_LOG` filters (default `info`).
///
/// Lines are handed to a writer thread (`tracing-appender`'s non-blocking writer) that writes
/// them in batches, so a request never waits on a slow pipe (a terminal, journald) or pays a
/// system call for its access line. Keep the returned guard alive while the process logs:
/// dropping it flushes what is left.
pub fn init_logs(format: &str) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("logs")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let installed = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    installed.is_ok().then_some(guard)
}

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from the node's start).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, in buckets.
    Histogram,
}

/// Every metric the server exports: name, kind, and what it means (its `# HELP`).
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "switchboard_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by route (the matched template), method and status.",
    ),
    (
        "switchboard_http_request_seconds",
        Kind::Histogram,
        "Time from a request's arrival to its answer, in seconds, by route, method and status.",
    ),
    ("switchboard_messages_accepted_total", Kind::Counter, "Messages stored, charged and queued (or scheduled)."),
    ("switchboard_messages_sent_total", Kind::Counter, "Messages an upstream took."),
    (
        "switchboard_messages_failed_total",
        Kind::Counter,
        "Messages failed for good, by error type, including those stored failed at once (opted out, destination refused).",
    ),
    (
        "switchboard_dispatch_retries_total",
        Kind::Counter,
        "Retryable provider failures, unavailable upstreams included, scheduled for another attempt.",
    ),
    ("switchboard_messages_expired_total", Kind::Counter, "Messages that expired before they were sent."),
    (
        "switchboard_receipts_total",
        Kind::Counter,
        "Delivery receipts stored, by outcome: applied, ignored or unmatched.",
    ),
    ("switchboard_messages_received_total", Kind::Counter, "Inbound messages stored."),
    ("switchboard_opt_outs_total", Kind::Counter, "Opt-outs added or removed by keywords, by change."),
    (
        "switchboard_destination_lookups_total",
        Kind::Counter,
        "Recipients looked up at send time, by number type and outcome (allowed, the error type that refused it, or lookup_failed).",
    ),
    (
        "switchboard_webhook_deliveries_total",
        Kind::Counter,
        "Webhook attempts, by outcome: delivered, retry or failed.",
    ),
    ("switchboard_webhook_seconds", Kind::Histogram, "Duration of each webhook request, in seconds."),
    (
        "switchboard_commit_group_size",
        Kind::Histogram,
        "Messages per group commit (on SQLite: per call of the admission operation on the writer thread).",
    ),
    (
        "switchboard_commit_seconds",
        Kind::Histogram,
        "Duration of each group commit, in seconds (on SQLite: of each request's admission, as it waits for it).",
    ),
    ("switchboard_auth_throttled_total", Kind::Counter, "Credential checks answered 429, by budget: address or key."),
    (
        "switchboard_upstream_connected",
        Kind::Gauge,
        "1 while the upstream takes messages (bound, or passing its health checks), else 0.",
    ),
    ("switchboard_upstream_in_flight", Kind::Gauge, "The upstream's sends waiting for their answer."),
    (
        "switchboard_upstream_window",
        Kind::Gauge,
        "The most sends the upstream may have waiting (an SMPP upstream's window); 0 when unbounded.",
    ),
    ("switchboard_upstream_sent_total", Kind::Counter, "Messages the upstream took since the node started."),
    (
        "switchboard_upstream_failed_total",
        Kind::Counter,
        "Messages the upstream refused or could not take since the node started.",
    ),
    (
        "switchboard_upstream_throttled_total",
        Kind::Counter,
        "Submissions the upstream answered as throttled since the node started.",
    ),
    ("switchboard_messages_queued", Kind::Gauge, "Messages queued for the dispatcher, as of the scrape."),
    ("switchboard_messages_scheduled", Kind::Gauge, "Messages scheduled for later, as of the scrape."),
    (
        "switchboard_webhook_deliveries_due",
        Kind::Gauge,
        "Webhook deliveries due and not yet delivered, as of the scrape.",
    ),
    (
        "switchboard_receipts_awaited",
        Kind::Gauge,
        "Messages an upstream took whose delivery receipts have not all come, as of the scrape.",
    ),
    (
        "switchboard_upstream_rate_per_second",
        Kind::Gauge,
        "The pace the upstream is held to now, in messages per second; 0 when not limited.",
    ),
    ("switchboard_smpp_binds", Kind::Gauge, "SMPP binds this node holds, by mode."),
    (
        "switchboard_smpp_window_in_use",
        Kind::Gauge,
        "Requests from ESMEs waiting for their answer, over every SMPP bind of this node.",
    ),
    (
        "switchboard_smpp_deliveries_waiting",
        Kind::Gauge,
        "Receipts and inbound messages queued for the ESMEs' receiving binds.",
    ),
    ("switchboard_smpp_submits_total", Kind::Counter, "submit_sm answered, by command status."),
    ("switchboard_smpp_binds_refused_total", Kind::Counter, "SMPP binds refused, by reason: credentials or limit."),
    (
        "switchboard_smpp_malformed_total",
        Kind::Counter,
        "SMPP PDUs answered generic_nack because they did not decode or could not be framed.",
    ),
    ("switchboard_smpp_delivers_total", Kind::Counter, "deliver_sm sent to ESMEs, by kind and outcome."),
    (
        "switchboard_smpp_deliveries_expired_total",
        Kind::Counter,
        "Receipts and inbound messages given up after waiting receipt_hold_hours for a receiving bind.",
    ),
    (
        "switchboard_retention_pruned_messages_total",
        Kind::Counter,
        "Finished messages whose history retention removed (the message rows stay).",
    ),
    (
        "switchboard_retention_pruned_rows_total",
        Kind::Counter,
        "Rows retention removed, by table: message_events, message_parts, webhook_deliveries, webhook_attempts.",
    ),
    ("switchboard_retention_pass_seconds", Kind::Histogram, "Duration of each complete retention pass, in seconds."),
    (
        "switchboard_retention_last_pass_timestamp_seconds",
        Kind::Gauge,
        "When this node's last complete retention pass ended, in seconds since the Unix epoch.",
    ),
];

/// Buckets of the latencies, in seconds: 0.5 ms to 30 s.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets of the commit group sizes.
const GROUP: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process's Prometheus recorder, installed on first use, with every metric described and
/// a thread that folds the histograms' samples into their buckets every 5 s (without it they
/// would pile up between scrapes).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("switchboard_commit_group_size".into()), GROUP))
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// Gives every metric of [`METRICS`] its help text.
fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    /// docs/OPERATIONS.md lists every metric the server exports, and no other.
    #[test]
    fn operations_lists_every_metric() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md");
        let doc = std::fs::read_to_string(path).unwrap();
        for (name, _, _) in super::METRICS {
            assert!(doc.contains(&format!("| `{name}` |")), "{name} is not in docs/OPERATIONS.md");
        }
        let listed = doc.lines().filter(|l| l.starts_with("| `switchboard_")).count();
        assert_eq!(listed, super::METRICS.len(), "docs/OPERATIONS.md lists a metric the server does not export");
    }
}
