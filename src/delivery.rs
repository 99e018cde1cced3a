//! One batch from the SES events queue (docs/design.md, "Delivery events"): parse every record
//! ([`crate::ses_event`]), apply the usable ones to the ledger in one call, and answer with the
//! records that must come back. A body that is not a usable SES event fails only that record (it
//! reaches the events DLQ after its retries), with the rule it broke; an event for an order the
//! ledger does not hold is counted as `unknown` and acknowledged; a ledger failure fails the
//! batch's usable records, which SQS redelivers (applying an event twice changes nothing).

use crate::ledger::{EventMatch, LedgerOps};
use crate::order::Priority;
use crate::ses_event::{DeliveryEvent, DeliveryState, Effect};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde::Serialize;
use std::collections::BTreeMap;

/// The events queue is named `<stack>-ses-events` (template.yaml): a batch whose records come
/// from a queue with this suffix carries SES events, every other queue orders.
pub const EVENTS_QUEUE_SUFFIX: &str = "-ses-events";

/// Whether a record's `eventSourceARN` names the SES events queue.
pub fn is_events_queue(event_source_arn: &str) -> bool {
    event_source_arn.rsplit(':').next().is_some_and(|name| name.ends_with(EVENTS_QUEUE_SUFFIX))
}

/// How one event record ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EventOutcome {
    /// Applied to its order (the state may have stayed as it was: a weaker or repeated event).
    Applied,
    /// The ledger holds no order for it: counted, acknowledged.
    Unknown,
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
    #[serde(flatten)]
    pub outcome: EventOutcome,
}

impl EventRecordReport {
    fn failed(&self) -> bool {
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
pub fn metric_name(state: Option<DeliveryState>) -> &'static str {
    match state {
        None => "SendEvent",
        Some(DeliveryState::Delayed) => "DeliveryDelayed",
        Some(DeliveryState::Delivered) => "Delivered",
        Some(DeliveryState::SoftBounced) => "SoftBounced",
        Some(DeliveryState::RenderingFailed) => "RenderingFailed",
        Some(DeliveryState::Rejected) => "RejectedBySes",
        Some(DeliveryState::Bounced) => "Bounced",
        Some(DeliveryState::Complained) => "Complained",
    }
}

/// Counted without priority: events the ledger could not place, and bodies that were not events.
pub const UNKNOWN_EVENT_METRIC: &str = "DeliveryEventUnknown";
pub const INVALID_EVENT_METRIC: &str = "DeliveryEventInvalid";

impl EventBatchReport {
    /// The batch response: exactly the records to retry, each named once (a record without a
    /// messageId cannot be named: see [`Self::unidentifiable_failures`]).
    pub fn response(&self) -> SqsBatchResponse {
        crate::pipeline::failures_response(self.records.iter().filter(|r| r.failed()).map(|r| r.message_id.as_deref()))
    }

    /// Failed records without a messageId: the invocation must fail instead of naming them.
    pub fn unidentifiable_failures(&self) -> usize {
        self.records.iter().filter(|r| r.failed() && r.message_id.as_deref().is_none_or(str::is_empty)).count()
    }

    /// Counts per metric name and priority (`None`: not tied to a priority).
    pub fn counters(&self) -> BTreeMap<(&'static str, Option<Priority>), u64> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            let key = match &r.outcome {
                EventOutcome::Applied => (metric_name(r.delivery_state), r.priority),
                EventOutcome::Unknown => (UNKNOWN_EVENT_METRIC, None),
                EventOutcome::Invalid { .. } => (INVALID_EVENT_METRIC, None),
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
                EventOutcome::Invalid { .. } => "invalid".to_owned(),
                EventOutcome::LedgerUnavailable { .. } => "ledger_unavailable".to_owned(),
            };
            *parts.entry(word).or_insert(0) += 1;
        }
        let parts: Vec<String> = parts.into_iter().map(|(w, n)| format!("{n} {w}")).collect();
        let n = self.records.len();
        format!("{n} event{}: {}", if n == 1 { "" } else { "s" }, parts.join(", "))
    }
}

/// Handles one batch from the SES events queue.
pub async fn handle(ledger: &dyn LedgerOps, event: &SqsEvent) -> EventBatchReport {
    let parsed: Vec<Result<DeliveryEvent, String>> = event
        .records
        .iter()
        .map(|r| {
            let body = r.body.as_deref().unwrap_or("");
            // A panic while reading one body fails that record only.
            match std::panic::catch_unwind(|| DeliveryEvent::parse(body)) {
                Ok(Ok(e)) => Ok(e),
                Ok(Err(rejection)) => Err(rejection.rule),
                Err(_) => Err("reading the event panicked".to_owned()),
            }
        })
        .collect();
    let usable: Vec<DeliveryEvent> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let applied = if usable.is_empty() { Ok(Vec::new()) } else { ledger.apply_delivery_events(&usable).await };
    let mut matches = match &applied {
        Ok(m) if m.len() == usable.len() => Ok(m.clone().into_iter()),
        Ok(_) => Err("the ledger answered for a different number of events".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let records = event
        .records
        .iter()
        .zip(parsed)
        .map(|(record, parsed)| {
            let mut report = EventRecordReport {
                message_id: record.message_id.clone(),
                event_type: "-",
                order_id: None,
                priority: None,
                delivery_state: None,
                outcome: EventOutcome::Applied,
            };
            match parsed {
                Err(rule) => report.outcome = EventOutcome::Invalid { rule },
                Ok(e) => {
                    for rule in &e.ignored {
                        tracing::warn!(
                            message_id = record.message_id.as_deref().unwrap_or("-"),
                            reason = rule,
                            "delivery event: an unusable optional detail was left out; the event still counts"
                        );
                    }
                    report.event_type = e.event_type.as_str();
                    report.order_id = e.order_id.as_ref().map(|o| o.to_string());
                    report.delivery_state = match e.effect {
                        Effect::State(s) => Some(s),
                        Effect::Send => None,
                    };
                    report.outcome = match matches.as_mut().map(Iterator::next) {
                        Ok(Some(EventMatch::Order { order_id, priority })) => {
                            report.order_id = Some(order_id.to_string());
                            report.priority = Some(priority);
                            EventOutcome::Applied
                        }
                        Ok(Some(EventMatch::Unknown)) => EventOutcome::Unknown,
                        Ok(None) => EventOutcome::LedgerUnavailable { error: "no answer for this event".to_owned() },
                        Err(error) => EventOutcome::LedgerUnavailable { error: error.clone() },
                    };
                }
            }
            log_record(&report);
            report
        })
        .collect();
    EventBatchReport { records }
}

fn log_record(r: &EventRecordReport) {
    let message_id = r.message_id.as_deref().unwrap_or("-");
    let order_id = r.order_id.as_deref().unwrap_or("-");
    let priority = r.priority.map_or("-", Priority::as_str);
    let state = r.delivery_state.map_or("-", DeliveryState::as_str);
    match &r.outcome {
        EventOutcome::Applied => tracing::info!(
            message_id,
            event_type = r.event_type,
            order_id,
            priority,
            delivery_state = state,
            outcome = "applied",
            "delivery event"
        ),
        EventOutcome::Unknown => tracing::info!(
            message_id,
            event_type = r.event_type,
            order_id,
            delivery_state = state,
            outcome = "unknown",
            "delivery event for an order the ledger does not hold"
        ),
        EventOutcome::Invalid { rule } => {
            tracing::warn!(message_id, outcome = "invalid", reason = %rule, "delivery event refused")
        }
        EventOutcome::LedgerUnavailable { error } => tracing::warn!(
            message_id, event_type = r.event_type, order_id, outcome = "ledger_unavailable", reason = %error,
            "delivery event not applied"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queues_named_ses_events_carry_delivery_events() {
        assert!(is_events_queue("arn:aws:sqs:us-east-1:123456789012:order-confirmation-ses-events"));
        assert!(!is_events_queue("arn:aws:sqs:us-east-1:123456789012:order-confirmation-high"));
        assert!(!is_events_queue("arn:aws:sqs:us-east-1:123456789012:ses-events-high"));
        assert!(!is_events_queue(""));
    }

    #[test]
    fn every_delivery_state_has_its_own_metric() {
        let mut names: Vec<&str> = DeliveryState::ALL.iter().map(|s| metric_name(Some(*s))).collect();
        names.push(metric_name(None));
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        for name in names {
            assert!(crate::metrics::COUNTERS.contains(&name), "{name} is not in metrics::COUNTERS");
        }
    }
}
