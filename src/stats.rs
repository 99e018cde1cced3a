//! What `stats` reports, gathered once for the command line and the operator request
//! ([`gather`]), and its human-readable rendering with the order state's (the JSON forms are the
//! serde ones).

use crate::error::BackendError;
use crate::ledger::{DeliveryBucket, DeliveryStats, LedgerOps, LedgerStats, OrderState, Status};
use crate::queues::QueueDepth;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Everything `stats` reports.
#[derive(Debug, Serialize)]
pub struct Statistics {
    #[serde(flatten)]
    pub ledger: LedgerStats,
    /// The priorities added up ([`totals`]).
    pub totals: Totals,
    /// What SES said about the mail sent in the last 24 hours, per priority.
    pub delivery: Vec<DeliveryStats>,
    pub queues: Vec<QueueDepth>,
}

impl Statistics {
    pub fn new(ledger: LedgerStats, delivery: Vec<DeliveryStats>, queues: Vec<QueueDepth>) -> Self {
        Self { totals: totals(&ledger), ledger, delivery, queues }
    }
}

/// Which read failed while gathering the statistics.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// A ledger read; `doing` says which.
    #[error("{doing}: {error}")]
    Ledger { doing: &'static str, error: BackendError },
    #[error("reading queue depths: {0:#}")]
    Queues(BackendError),
}

/// Reads the ledger's statistics, its delivery statistics and, with an SQS client, the depths of
/// `queue_urls` and their DLQs.
pub async fn gather(
    ledger: &dyn LedgerOps,
    sqs: Option<&aws_sdk_sqs::Client>,
    queue_urls: &[String],
) -> Result<Statistics, GatherError> {
    let read = |doing| move |error| GatherError::Ledger { doing, error };
    let counts = ledger.stats().await.map_err(read("reading statistics"))?;
    let delivery = ledger.delivery_stats().await.map_err(read("reading delivery statistics"))?;
    let queues = match sqs {
        Some(client) => crate::queues::depths(client, queue_urls).await.map_err(GatherError::Queues)?,
        None => Vec::new(),
    };
    Ok(Statistics::new(counts, delivery, queues))
}

/// A duration in the unit that fits it: `6ms`, `4.2s`, `12.5min`, `24.0h` (JSON keeps seconds).
fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) if s < 60.0 => format!("{s:.1}s"),
        Some(s) if s < 3600.0 => format!("{:.1}min", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

/// What to say about an order the ledger does not hold: it never arrived, or its message was
/// invalid and never recorded (a bad message is logged with its order id and the rule it
/// broke, and reaches the dead-letter queue after its retries). Names the Logs Insights query.
pub fn not_in_ledger(id: &crate::order::OrderId) -> String {
    format!(
        "order {id} is not in the ledger: it was never received, or its message was invalid and never recorded \
         (the dead-letter queue holds it after its retries); find the rejection and the rule it broke in the \
         function's logs with CloudWatch Logs Insights: fields @timestamp, message_id, reason | \
         filter order_id = \"{id}\" and outcome = \"invalid\""
    )
}

/// The service across priorities, in the ledger's words: what the old `getOrderStats` gave
/// (processed: `sent`; failed: `failed`, `rejected`, `abandoned`; pending).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// Rows per status, summed over the priorities (`sent`: in the last 24 hours).
    pub by_status: BTreeMap<Status, u64>,
    /// Orders not yet confirmed and still expected to be (`sending` + `failed`).
    pub pending: u64,
    /// The oldest unsent order of any priority.
    pub oldest_unsent_age_seconds: Option<f64>,
    pub sent_last_hour: u64,
}

/// Sums the per-priority statistics. Time-to-send percentiles are per priority only: they cannot
/// be combined from the priorities' percentiles.
pub fn totals(stats: &LedgerStats) -> Totals {
    let mut t = Totals { by_status: BTreeMap::new(), pending: 0, oldest_unsent_age_seconds: None, sent_last_hour: 0 };
    for p in &stats.priorities {
        for (status, n) in &p.by_status {
            *t.by_status.entry(*status).or_default() += n;
        }
        t.pending += p.pending;
        t.sent_last_hour += p.sent_last_hour;
        t.oldest_unsent_age_seconds = match (t.oldest_unsent_age_seconds, p.oldest_unsent_age_seconds) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    t
}

/// Column widths of the statistics table: the first left-aligned, the numbers right-aligned.
const WIDTHS: [usize; 12] = [8, 8, 8, 8, 8, 9, 8, 13, 8, 9, 9, 9];

fn row(out: &mut String, cells: [String; 12]) {
    for (i, (cell, w)) in cells.iter().zip(WIDTHS).enumerate() {
        let _ = if i == 0 { write!(out, "{cell:<w$}") } else { write!(out, " {cell:>w$}") };
    }
    out.push('\n');
}

/// One row per priority, then `total` (time-to-send percentiles `-`: per priority only).
pub fn render_table(stats: &LedgerStats) -> String {
    let mut out = String::new();
    let header = [
        "priority",
        "sent_24h",
        "sending",
        "failed",
        "rejected",
        "abandoned",
        "pending",
        "oldest_unsent",
        "sent_1h",
        "send_p50",
        "send_p95",
        "send_p99",
    ];
    row(&mut out, header.map(str::to_owned));
    let t = totals(stats);
    let per_priority = stats.priorities.iter().map(|p| {
        let tts = &p.time_to_send_seconds;
        (
            p.priority.as_str(),
            &p.by_status,
            p.pending,
            p.oldest_unsent_age_seconds,
            p.sent_last_hour,
            [tts.p50, tts.p95, tts.p99],
        )
    });
    let total = ("total", &t.by_status, t.pending, t.oldest_unsent_age_seconds, t.sent_last_hour, [None; 3]);
    for (priority, by_status, pending, oldest, sent_1h, tts) in per_priority.chain([total]) {
        let n = |s: Status| by_status.get(&s).copied().unwrap_or(0).to_string();
        let [p50, p95, p99] = tts.map(secs);
        row(
            &mut out,
            [
                priority.to_owned(),
                n(Status::Sent),
                n(Status::Sending),
                n(Status::Failed),
                n(Status::Rejected),
                n(Status::Abandoned),
                pending.to_string(),
                secs(oldest),
                sent_1h.to_string(),
                p50,
                p95,
                p99,
            ],
        );
    }
    out
}

/// The delivery table: per priority, the orders sent in the last 24 hours by what SES said about
/// their mail (`not_delivered`: refused by SES or not rendered; `unknown`: no event yet), and the
/// bounce rate (hard bounces over sends), and the extra mails SES accepted (duplicates first seen in
/// the last 24 hours, counted from SES's events).
pub fn render_delivery(delivery: &[DeliveryStats]) -> String {
    use crate::ses_event::DeliveryState as D;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<8} {:>8} {:>9} {:>7} {:>7} {:>12} {:>10} {:>13} {:>7} {:>10} {:>11}",
        "priority",
        "sent_24h",
        "delivered",
        "delayed",
        "bounced",
        "soft_bounced",
        "complained",
        "not_delivered",
        "unknown",
        "duplicates",
        "bounce_rate"
    );
    // Across priorities, like the status table's total row; the rate over all sends.
    let mut total: std::collections::BTreeMap<DeliveryBucket, u64> = std::collections::BTreeMap::new();
    for p in delivery {
        for (state, n) in &p.by_state {
            *total.entry(*state).or_insert(0) += n;
        }
    }
    let sent: u64 = delivery.iter().map(|p| p.sent).sum();
    let total_rate = (sent > 0).then(|| total.get(&D::Bounced.into()).copied().unwrap_or(0) as f64 / sent as f64);
    let duplicates: u64 = delivery.iter().map(|p| p.duplicates).sum();
    let rows = delivery
        .iter()
        .map(|p| (p.priority.as_str(), p.sent, &p.by_state, p.duplicates, p.bounce_rate))
        .chain([("total", sent, &total, duplicates, total_rate)]);
    for (priority, sent, by_state, duplicates, bounce_rate) in rows {
        let n = |s: D| by_state.get(&s.into()).copied().unwrap_or(0);
        let rate = bounce_rate.map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9} {:>7} {:>7} {:>12} {:>10} {:>13} {:>7} {:>10} {:>11}",
            priority,
            sent,
            n(D::Delivered),
            n(D::Delayed),
            n(D::Bounced),
            n(D::SoftBounced),
            n(D::Complained),
            n(D::Rejected) + n(D::RenderingFailed),
            by_state.get(&DeliveryBucket::Unknown).copied().unwrap_or(0),
            duplicates,
            rate,
        );
    }
    out
}

/// One order as `label: value` lines, the values in one column. A missing or empty value is `-`.
pub fn render_order(s: &OrderState) -> String {
    let opt = |v: &Option<String>| v.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_owned());
    let time = |t: Option<time::OffsetDateTime>| {
        t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_else(|| "-".to_owned())
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("order_id", s.order_id.to_string()),
        ("status", s.status.to_string()),
        ("priority", s.priority.to_string()),
        ("attempts", s.attempts.to_string()),
        ("last_error", opt(&s.last_error)),
        ("ses_message_id", opt(&s.ses_message_id)),
        ("first_seen_at", time(Some(s.first_seen_at))),
        ("updated_at", time(Some(s.updated_at))),
        ("sent_at", time(s.sent_at)),
        ("lease_until", time(s.lease_until)),
        ("customer_status", s.customer_status.to_string()),
        ("delivery", s.delivery.state.map_or("-", |d| d.as_str()).to_owned()),
    ];
    if s.delivery.state.is_some() {
        lines.push(("delivery_detail", opt(&s.delivery.detail)));
        lines.push(("delivery_at", time(s.delivery.at)));
    }
    if let Some(send) = &s.delivery.send_event {
        let token = send.claim_token.map_or_else(|| "-".to_owned(), |t| t.to_string());
        lines.push(("send_event", format!("{} (claim {token}) at {}", send.message_id, time(Some(send.at)))));
    }
    if !s.delivery.duplicate_message_ids.is_empty() {
        lines.push(("duplicate_mails", s.delivery.duplicate_message_ids.join(" ")));
    }
    if s.parked_at.is_some() {
        lines.push(("parked_at", time(s.parked_at)));
        lines.push(("parked_note", opt(&s.parked_note)));
    }
    let width = lines.iter().map(|(label, _)| label.len() + 1).max().unwrap_or(0);
    lines.iter().map(|(label, value)| format!("{:width$} {value}\n", format!("{label}:"))).collect()
}

/// The queue table: each queue by its name (the URL's last segment; the account and region are
/// the same for all of them), the name column as wide as the longest name so the numbers line up.
pub fn render_queues(queues: &[QueueDepth]) -> String {
    let mut out = String::new();
    if queues.is_empty() {
        return out;
    }
    let name = |url: &str| url.trim_end_matches('/').rsplit('/').next().unwrap_or(url).to_owned();
    let names: Vec<String> = queues.iter().map(|q| name(&q.queue_url)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max("queue".len());
    let _ = writeln!(out, "\n{:<width$} {:>8} {:>9} {:>8} {:>8}", "queue", "visible", "in_flight", "deferred", "dlq");
    for (q, name) in queues.iter().zip(&names) {
        let dlq = q.dlq_visible.map_or_else(|| "-".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "{name:<width$} {:>8} {:>9} {:>8} {:>8}", q.visible, q.in_flight, q.deferred, dlq);
    }
    out
}

#[cfg(test)]
mod tests;
