//! How one record of an SES events batch ended, and the batch's report.

use super::Counter;
use crate::order::Priority;
use crate::ses_event::DeliveryState;
use aws_lambda_events::sqs::SqsBatchResponse;
use serde::Serialize;
use std::collections::BTreeMap;

/// How one event record ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcome {
    /// Applied to its order (the state may have stayed as it was: a weaker or repeated event).
    Applied,
    /// The ledger holds no order for it: counted, acknowledged.
    Unknown,
    /// Its `order_id` tag and its SES message id name different orders (docs/design.md,
    /// "Duplicates counted from SES's events"): applied to none, counted, acknowledged.
    Contradiction { rule: &'static str },
    /// Not a usable SES event: `rule` says why, without the value.
    Invalid { rule: String },
    /// The ledger call failed: the record comes back.
    LedgerUnavailable { error: String },
}

/// What happened to one record of an events batch; no personal data (no address, no diagnostic).
#[derive(Debug, Clone, Serialize)]
pub struct EventRecordReport {
    pub message_id: Option<String>,
    /// `Send`, `Delivery`, `Bounce`, … (`-` when the body could not be read).
    pub event_type: &'static str,
    pub order_id: Option<String>,
    pub priority: Option<Priority>,
    /// The delivery state the event carries (`None` for a Send event).
    pub delivery_state: Option<DeliveryState>,
    /// The first event seen of a second (third, …) mail of its order: SES accepted a duplicate.
    /// Counted `DuplicateMailed` once per extra mail.
    pub duplicate_mail: bool,
    #[serde(flatten)]
    pub outcome: EventOutcome,
}

impl EventRecordReport {
    /// Comes back: not a usable event, or the ledger call failed.
    pub fn failed(&self) -> bool {
        matches!(self.outcome, EventOutcome::Invalid { .. } | EventOutcome::LedgerUnavailable { .. })
    }

    /// Done with: applied or unknown. The rest comes back (and reaches the DLQ after its retries).
    pub fn is_acknowledged(&self) -> bool {
        !self.failed()
    }
}

/// One events batch's result.
#[derive(Debug, Clone, Serialize)]
pub struct EventBatchReport {
    pub records: Vec<EventRecordReport>,
}

/// The metric each delivery state counts under (namespace `OrderConfirmation`, dimension
/// `priority`), and the one a Send event counts under.
pub fn metric_name(state: Option<DeliveryState>) -> Counter {
    match state {
        None => Counter::SendEvent,
        Some(DeliveryState::Delayed) => Counter::DeliveryDelayed,
        Some(DeliveryState::Delivered) => Counter::Delivered,
        Some(DeliveryState::SoftBounced) => Counter::SoftBounced,
        Some(DeliveryState::RenderingFailed) => Counter::RenderingFailed,
        Some(DeliveryState::Rejected) => Counter::RejectedBySes,
        Some(DeliveryState::Bounced) => Counter::Bounced,
        Some(DeliveryState::Complained) => Counter::Complained,
    }
}

impl EventBatchReport {
    /// The batch response: exactly the records to retry, each named once (a record without a
    /// messageId cannot be named: see [`Self::unidentifiable_failures`]).
    pub fn response(&self) -> SqsBatchResponse {
        super::failures_response(self.records.iter().filter(|r| r.failed()).map(|r| r.message_id.as_deref()))
    }

    /// Failed records without a messageId: the invocation must fail instead of naming them.
    pub fn unidentifiable_failures(&self) -> usize {
        self.records.iter().filter(|r| r.failed() && r.message_id.as_deref().is_none_or(str::is_empty)).count()
    }

    /// Counts per metric name and priority (`None`: not tied to a priority).
    pub fn counters(&self) -> BTreeMap<(Counter, Option<Priority>), u64> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            if r.duplicate_mail {
                *out.entry((Counter::DuplicateMailed, r.priority)).or_insert(0) += 1;
            }
            let key = match &r.outcome {
                EventOutcome::Applied => (metric_name(r.delivery_state), r.priority),
                // Counted without priority: events the ledger could not place, and bodies that
                // were not events.
                EventOutcome::Unknown => (Counter::DeliveryEventUnknown, None),
                EventOutcome::Contradiction { .. } => (Counter::DeliveryEventContradiction, None),
                EventOutcome::Invalid { .. } => (Counter::DeliveryEventInvalid, None),
                EventOutcome::LedgerUnavailable { .. } => continue,
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    /// `8 events: 1 bounced, 2 delivered, 1 send, 1 unknown, 1 invalid` (`1 event: …`): one line
    /// for the log.
    pub fn summary(&self) -> String {
        let mut parts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &self.records {
            let word = match &r.outcome {
                EventOutcome::Applied => r.delivery_state.map_or("send", DeliveryState::as_str).to_owned(),
                EventOutcome::Unknown => "unknown".to_owned(),
                EventOutcome::Contradiction { .. } => "contradiction".to_owned(),
                EventOutcome::Invalid { .. } => "invalid".to_owned(),
                EventOutcome::LedgerUnavailable { .. } => "ledger_unavailable".to_owned(),
            };
            *parts.entry(word).or_insert(0) += 1;
        }
        let duplicates = self.records.iter().filter(|r| r.duplicate_mail).count();
        if duplicates > 0 {
            parts.insert("duplicate_mailed".to_owned(), duplicates);
        }
        let parts: Vec<String> = parts.into_iter().map(|(w, n)| format!("{n} {w}")).collect();
        let n = self.records.len();
        format!("{n} event{}: {}", if n == 1 { "" } else { "s" }, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivery_state_has_its_own_metric() {
        let mut names: Vec<&str> = DeliveryState::ALL.iter().map(|s| metric_name(Some(*s)).name()).collect();
        names.push(metric_name(None).name());
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        for name in names {
            assert!(crate::metrics::COUNTERS.contains(&name), "{name} is not in metrics::COUNTERS");
        }
    }
}
