//! One batch from the SES events queue (docs/design.md, "Delivery events"): parse every record
//! ([`crate::ses_event`]), apply the usable ones to the ledger in one call, and answer with the
//! records that must come back. A body that is not a usable SES event fails only that record (it
//! reaches the events DLQ after its retries), with the rule it broke; an event for an order the
//! ledger does not hold is counted as `unknown` and acknowledged; a ledger failure fails the
//! batch's usable records, which SQS redelivers (applying an event twice changes nothing).

use crate::batch::{EventBatchReport, EventOutcome, EventRecordReport};
use crate::ledger::{EventMatch, LedgerOps};
use crate::order::Priority;
use crate::ses_event::{DeliveryEvent, DeliveryState, Effect};
use aws_lambda_events::sqs::SqsEvent;

/// The events queue is named `<stack>-ses-events` (template.yaml): a batch whose records come
/// from a queue with this suffix carries SES events, every other queue orders.
pub const EVENTS_QUEUE_SUFFIX: &str = "-ses-events";

/// Whether a record's `eventSourceARN` names the SES events queue.
pub fn is_events_queue(event_source_arn: &str) -> bool {
    event_source_arn.rsplit(':').next().is_some_and(|name| name.ends_with(EVENTS_QUEUE_SUFFIX))
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
                duplicate_mail: false,
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
                        Ok(Some(EventMatch::Order { order_id, priority, duplicate })) => {
                            report.order_id = Some(order_id.to_string());
                            report.priority = Some(priority);
                            report.duplicate_mail = duplicate;
                            EventOutcome::Applied
                        }
                        Ok(Some(EventMatch::Unknown)) => EventOutcome::Unknown,
                        Ok(Some(EventMatch::Contradiction)) => {
                            EventOutcome::Contradiction { rule: crate::ledger::CONTRADICTION_RULE }
                        }
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
    if r.duplicate_mail {
        tracing::warn!(
            message_id,
            event_type = r.event_type,
            order_id,
            priority,
            "duplicate mail: SES accepted a second mail for this order (its first event seen now)"
        );
    }
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
        EventOutcome::Contradiction { rule } => tracing::warn!(
            message_id,
            event_type = r.event_type,
            order_id,
            outcome = "contradiction",
            reason = rule,
            "delivery event applied to no order"
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
}
