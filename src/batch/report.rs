//! One orders batch's result: a report per record, the counts the metrics publish, the response
//! and the summary line.

use super::{Counter, RecordOutcome, failures_response};
use crate::decode::Note;
use crate::order::Priority;
use aws_lambda_events::sqs::SqsBatchResponse;
use serde::Serialize;
use std::collections::BTreeMap;

/// What happened to one record of the batch.
#[derive(Debug, Clone, Serialize)]
pub struct RecordReport {
    pub message_id: Option<String>,
    pub order_id: Option<String>,
    pub priority: Option<Priority>,
    /// `ApproximateReceiveCount` from the record's attributes (1 on first delivery).
    pub receive_count: u32,
    #[serde(flatten)]
    pub outcome: RecordOutcome,
    /// Decode notes: legacy format, dropped vendor fields or details.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// The order's mail was accepted but the ledger could not record it (at-least-once case).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unrecorded_send: bool,
    /// The record step found the recorded mail to be the order's second known mail (an SES event
    /// had brought another): SES accepted two mails for it, counted `DuplicateMailed`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub extra_mail_recorded: bool,
    /// For orders mailed now: seconds from the order first entering a queue to the mail being
    /// accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_confirm_seconds: Option<f64>,
    /// The order was taken over from an invocation whose lease expired; if this one mails it,
    /// the customer may get a second confirmation (counted as `possible_duplicate`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub after_expired_lease: bool,
    /// When the order first entered a queue (Unix ms), if the record says.
    #[serde(skip)]
    pub first_sent_ms: Option<i64>,
}

/// Counts for one priority (or for records whose priority is unknown), by metric name: each
/// record counts once under `Received` and once under its outcome's metric, plus once per note
/// and under `UnrecordedSend` / `PossibleDuplicate` / `HandedBack` when those apply. Every name
/// is one of [`Counter`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters(BTreeMap<Counter, u64>);

impl Counters {
    /// The count under `metric`, 0 when nothing counted there.
    pub fn get(&self, metric: Counter) -> u64 {
        self.0.get(&metric).copied().unwrap_or(0)
    }

    /// The metrics counted at least once, in their names' order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, u64)> + '_ {
        self.0.iter().map(|(k, v)| (*k, *v))
    }

    fn add(&mut self, metric: Counter) {
        *self.0.entry(metric).or_default() += 1;
    }
}

/// The result of one batch: per-record reports and the Lambda response.
#[derive(Debug, Clone, Serialize)]
pub struct BatchReport {
    pub records: Vec<RecordReport>,
}

impl BatchReport {
    /// The `SqsBatchResponse`: every failed record that has a message id, once each.
    pub fn response(&self) -> SqsBatchResponse {
        failures_response(self.records.iter().filter(|r| !r.outcome.is_acknowledged()).map(|r| r.message_id.as_deref()))
    }

    /// Failed records that have no message id: they cannot be named in the response (an empty
    /// identifier fails the whole batch in Lambda), so the caller must fail the invocation to get
    /// them retried. The rest of the batch is safe to redeliver: the ledger acknowledges what was
    /// already sent.
    pub fn unidentifiable_failures(&self) -> usize {
        self.records
            .iter()
            .filter(|r| !r.outcome.is_acknowledged() && r.message_id.as_deref().is_none_or(str::is_empty))
            .count()
    }

    /// Counters per priority; invalid records whose priority could not be read count under `None`.
    pub fn counters(&self) -> BTreeMap<Option<Priority>, Counters> {
        let mut map: BTreeMap<Option<Priority>, Counters> = BTreeMap::new();
        for r in &self.records {
            let c = map.entry(r.priority).or_default();
            c.add(Counter::Received);
            c.add(r.outcome.metric());
            if r.unrecorded_send {
                c.add(Counter::UnrecordedSend);
            }
            if r.extra_mail_recorded {
                c.add(Counter::DuplicateMailed);
            }
            if r.after_expired_lease && matches!(r.outcome, RecordOutcome::Sent { .. }) {
                c.add(Counter::PossibleDuplicate);
            }
            if matches!(r.outcome, RecordOutcome::Deferred { handed_back: true, .. }) {
                c.add(Counter::HandedBack);
            }
            for n in &r.notes {
                c.add(Counter::of_note(n));
            }
        }
        map
    }

    /// One-line human summary in the outcomes' names, e.g. `5 records: 1 already_sent, 2 invalid, 2 sent`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &self.records {
            *counts.entry(r.outcome.name()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!("{} records: {}", self.records.len(), parts.join(", "))
    }
}
