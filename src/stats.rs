//! Human-readable rendering of statistics and order state (the JSON forms are the serde ones).

use crate::ledger::{DeliveryStats, LedgerStats, OrderState, Status};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"))
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
/// bounce rate (hard bounces over sends).
pub fn render_delivery(delivery: &[DeliveryStats]) -> String {
    use crate::ses_event::DeliveryState as D;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<8} {:>8} {:>9} {:>7} {:>7} {:>12} {:>10} {:>13} {:>7} {:>11}",
        "priority",
        "sent_24h",
        "delivered",
        "delayed",
        "bounced",
        "soft_bounced",
        "complained",
        "not_delivered",
        "unknown",
        "bounce_rate"
    );
    // Across priorities, like the status table's total row; the rate over all sends.
    let mut total: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for p in delivery {
        for (state, n) in &p.by_state {
            *total.entry(state.clone()).or_insert(0) += n;
        }
    }
    let sent: u64 = delivery.iter().map(|p| p.sent).sum();
    let total_rate = (sent > 0).then(|| total.get(D::Bounced.as_str()).copied().unwrap_or(0) as f64 / sent as f64);
    let rows = delivery
        .iter()
        .map(|p| (p.priority.as_str(), p.sent, &p.by_state, p.bounce_rate))
        .chain([("total", sent, &total, total_rate)]);
    for (priority, sent, by_state, bounce_rate) in rows {
        let n = |s: &str| by_state.get(s).copied().unwrap_or(0);
        let rate = bounce_rate.map_or_else(|| "-".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let _ = writeln!(
            out,
            "{:<8} {:>8} {:>9} {:>7} {:>7} {:>12} {:>10} {:>13} {:>7} {:>11}",
            priority,
            sent,
            n(D::Delivered.as_str()),
            n(D::Delayed.as_str()),
            n(D::Bounced.as_str()),
            n(D::SoftBounced.as_str()),
            n(D::Complained.as_str()),
            n(D::Rejected.as_str()) + n(D::RenderingFailed.as_str()),
            n(crate::ledger::DELIVERY_UNKNOWN),
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
    if s.parked_at.is_some() {
        lines.push(("parked_at", time(s.parked_at)));
        lines.push(("parked_note", opt(&s.parked_note)));
    }
    let width = lines.iter().map(|(label, _)| label.len() + 1).max().unwrap_or(0);
    lines.iter().map(|(label, value)| format!("{:width$} {value}\n", format!("{label}:"))).collect()
}

/// The queue table: each queue by its name (the URL's last segment; the account and region are
/// the same for all of them), the name column as wide as the longest name so the numbers line up.
pub fn render_queues(queues: &[crate::queues::QueueDepth]) -> String {
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
mod render_order_tests {
    use super::*;
    use crate::order::{OrderId, Priority};

    #[test]
    fn every_value_of_an_order_starts_in_one_column_and_an_empty_one_reads_as_a_dash() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let state = OrderState {
            order_id: OrderId::parse("ORD-1").unwrap(),
            status: Status::Sent,
            priority: Priority::High,
            attempts: 1,
            last_error: Some(String::new()),
            ses_message_id: Some("m-1".into()),
            first_seen_at: at,
            updated_at: at,
            sent_at: Some(at),
            lease_until: None,
            parked_at: None,
            parked_note: None,
            payload_removed_at: None,
            delivery: crate::ledger::Delivery {
                state: Some(crate::ses_event::DeliveryState::Delivered),
                detail: Some(String::new()),
                at: Some(at),
                send_event: None,
            },
            customer_status: "confirmed",
        };
        let out = render_order(&state);
        let value_column = |l: &str| l.find(':').map(|c| c + 1 + l[c + 1..].len() - l[c + 1..].trim_start().len());
        let columns: std::collections::BTreeSet<_> = out.lines().map(value_column).collect();
        assert_eq!(columns.len(), 1, "{out}");
        assert_eq!(out.lines().count(), 14, "{out}");
        for label in ["last_error:", "delivery_detail:", "lease_until:"] {
            assert!(out.lines().any(|l| l.starts_with(label) && l.ends_with(" -")), "{label} {out}");
        }
    }
}

#[cfg(test)]
mod totals_tests {
    use super::*;
    use crate::ledger::{Percentiles, PriorityStats};
    use crate::order::Priority;

    fn priority(priority: Priority, sent: u64, failed: u64, sending: u64, oldest: Option<f64>) -> PriorityStats {
        let by_status = Status::ALL
            .into_iter()
            .map(|s| {
                let n = match s {
                    Status::Sent => sent,
                    Status::Failed => failed,
                    Status::Sending => sending,
                    Status::Rejected | Status::Abandoned => 1,
                };
                (s, n)
            })
            .collect();
        PriorityStats {
            priority,
            by_status,
            pending: failed + sending,
            oldest_unsent_age_seconds: oldest,
            sent_last_hour: sent / 2,
            time_to_send_seconds: Percentiles { p50: Some(1.0), p95: Some(2.0), p99: Some(3.0) },
        }
    }

    #[test]
    fn totals_add_up_the_priorities_and_keep_the_oldest_unsent_age() {
        let stats = LedgerStats {
            priorities: vec![
                priority(Priority::High, 10, 1, 2, Some(30.0)),
                priority(Priority::Normal, 40, 3, 0, Some(90.5)),
            ],
        };
        let t = totals(&stats);
        let n = |s: Status| t.by_status[&s];
        assert_eq!((n(Status::Sent), n(Status::Failed), n(Status::Sending)), (50, 4, 2));
        assert_eq!((n(Status::Rejected), n(Status::Abandoned)), (2, 2));
        assert_eq!((t.pending, t.sent_last_hour, t.oldest_unsent_age_seconds), (6, 25, Some(90.5)));
        let table = render_table(&stats);
        let total = table.lines().find(|l| l.starts_with("total")).expect("a total row");
        let cells: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(cells, ["total", "50", "2", "4", "2", "2", "6", "90.5s", "25", "-", "-", "-"], "{table}");
        let empty = totals(&LedgerStats { priorities: vec![priority(Priority::High, 0, 0, 0, None)] });
        assert_eq!((empty.pending, empty.oldest_unsent_age_seconds), (0, None));
    }
}

#[cfg(test)]
mod queue_table_tests {
    use super::render_queues;
    use crate::queues::QueueDepth;

    fn depth(url: &str, visible: u64) -> QueueDepth {
        QueueDepth {
            queue_url: url.to_owned(),
            visible,
            in_flight: 1,
            deferred: 2,
            dlq_url: None,
            dlq_visible: Some(0),
        }
    }

    #[test]
    fn queues_show_by_name_and_long_names_keep_the_columns_aligned() {
        let long =
            "https://sqs.eu-west-1.amazonaws.com/123456789012/order-confirmation-production-orders-high-priority";
        let table = render_queues(&[depth(long, 12345), depth("http://localhost:4566/000000000000/normal", 7)]);
        assert!(!table.contains("https://"), "names, not URLs: {table}");
        assert!(table.contains("order-confirmation-production-orders-high-priority "), "{table}");
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "{table}");
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "every row as wide as the header: {table}");
    }
}

#[cfg(test)]
mod delivery_table_tests {
    use super::render_delivery;

    #[test]
    fn delivery_rows_line_up_under_their_header() {
        let rows = vec![
            ("high".to_owned(), Some("bounced".to_owned()), 1),
            ("high".to_owned(), None, 1),
            ("normal".to_owned(), Some("delivered".to_owned()), 12345),
        ];
        let table = render_delivery(&crate::ledger::delivery_stats_from_rows(&rows));
        let lines: Vec<&str> = table.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "every row as wide as the header:\n{table}");
        assert!(lines[1].starts_with("high ") && lines[1].ends_with("50.00%"), "{table}");
        assert!(lines[2].ends_with("0.00%") && lines[2].contains("12345"), "{table}");
        // 12,347 sends, one hard bounce.
        assert!(lines[3].starts_with("total ") && lines[3].contains("12347") && lines[3].ends_with("0.01%"), "{table}");
    }
}
