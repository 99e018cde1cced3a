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
    use crate::error::BackendError;
    use crate::order::OrderId;

    #[test]
    fn only_queues_named_ses_events_carry_delivery_events() {
        assert!(is_events_queue("arn:aws:sqs:us-east-1:123456789012:order-confirmation-ses-events"));
        assert!(!is_events_queue("arn:aws:sqs:us-east-1:123456789012:order-confirmation-high"));
        assert!(!is_events_queue("arn:aws:sqs:us-east-1:123456789012:ses-events-high"));
        assert!(!is_events_queue(""));
    }

    /// A stand-in for a ledger that breaks its contract by answering one match for a batch of two
    /// events (both ledgers answer one per event; a real one cannot be made to do otherwise). It
    /// proves that `handle` places no event by an answer that does not line up with the batch.
    struct AnswersOneMatchForAnyBatch;

    const ONLY_EVENTS: &str = "delivery::handle only applies events";

    #[async_trait::async_trait]
    impl crate::ledger::Ledger for AnswersOneMatchForAnyBatch {
        async fn claim(
            &self,
            _: &[crate::ledger::ClaimRequest],
            _: std::time::Duration,
        ) -> Result<Vec<crate::ledger::Claim>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn record(&self, _: &[crate::ledger::Recording]) -> Result<Vec<crate::ledger::Recorded>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn sent_earlier(&self, _: &[(OrderId, uuid::Uuid)]) -> Result<Vec<Option<String>>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
    }

    #[async_trait::async_trait]
    impl LedgerOps for AnswersOneMatchForAnyBatch {
        async fn migrate(&self) -> Result<Vec<&'static str>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn stats(&self) -> Result<crate::ledger::LedgerStats, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn order_state(&self, _: &OrderId) -> Result<Option<crate::ledger::OrderState>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn stuck(
            &self,
            _: std::time::Duration,
            _: usize,
        ) -> Result<Vec<crate::ledger::StuckOrder>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn abandon(&self, _: &[OrderId], _: &str) -> Result<u64, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn release(&self, _: &OrderId) -> Result<Option<crate::ledger::StuckOrder>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn unconfirmed(&self, _: std::time::Duration) -> Result<crate::ledger::Unconfirmed, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn park(&self, _: &OrderId, _: &str) -> Result<Option<crate::ledger::OrderState>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn retain(
            &self,
            _: std::time::Duration,
            _: std::time::Duration,
            _: usize,
        ) -> Result<crate::ledger::Retained, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn summarize_sends(&self) -> Result<bool, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
        async fn apply_delivery_events(&self, _: &[DeliveryEvent]) -> Result<Vec<EventMatch>, BackendError> {
            let order_id = OrderId::parse("ORD-1001").expect("a valid order id");
            Ok(vec![EventMatch::Order { order_id, priority: Priority::Normal, duplicate: false }])
        }
        async fn delivery_stats(&self) -> Result<Vec<crate::ledger::DeliveryStats>, BackendError> {
            unreachable!("{ONLY_EVENTS}")
        }
    }

    #[tokio::test]
    async fn an_answer_for_a_different_number_of_events_places_none_of_them_and_each_comes_back() {
        let mut event: SqsEvent =
            serde_json::from_str(include_str!("../events/ses-delivery.json")).expect("the sample SQS event");
        let mut second = event.records[0].clone();
        second.message_id = Some("second".to_owned());
        event.records.push(second);
        let report = handle(&AnswersOneMatchForAnyBatch, &event).await;
        assert_eq!(report.records.len(), 2);
        for r in &report.records {
            assert!(
                matches!(&r.outcome, EventOutcome::LedgerUnavailable { error } if error.contains("different number")),
                "{:?}: {:?}",
                r.message_id,
                r.outcome
            );
            assert_eq!(r.order_id.as_deref(), Some("ORD-1001"), "from the event's own tag, not the answer");
        }
    }
}
