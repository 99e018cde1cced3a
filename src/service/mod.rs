//! The service layer: what every entry point (the Lambda functions, `invoke`, `consume`, the
//! command line's verbs) shares, so that they differ only in where events come from and where
//! answers go.
//!
//! - [`EventKind::of`] tells the events the functions accept apart, once.
//! - [`run_batch`] runs one queue batch of either kind (orders through the
//!   [`pipeline`](crate::pipeline), SES events through [`delivery`](crate::delivery)) and ends it
//!   in its kind's one finish function ([`finish::orders`], [`finish::events`]).
//! - [`reconcile`] and [`retry`] run those flows and finish their batches; [`operator`] answers the
//!   operator's requests with them, and the command line's subcommands call the same functions.

pub mod finish;
pub mod operator;

use crate::backoff::VisibilityBackoff;
use crate::batch::{BatchReport, EventBatchReport, RecordOutcome};
use crate::error::BackendError;
use crate::ledger::LedgerOps;
use crate::order::OrderId;
use crate::pipeline::Pipeline;
use crate::reconcile::{ReconcileReport, ReconcileSettings};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use finish::FromQueue;
use tokio::time::Instant;

/// Every kind of event the functions accept, told apart once for Lambda and for `invoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `{"Records": [...]}` from either order queue's event source mapping.
    SqsBatch,
    /// `{"Records": [...]}` from the SES events queue (every record's `eventSourceARN` names a
    /// queue ending in `-ses-events`): SES's events about sent mail ([`crate::delivery`]).
    DeliveryEvents,
    /// The EventBridge schedule that runs reconciliation (`source: aws.events`,
    /// `detail-type: Scheduled Event`).
    Schedule,
    /// `{"operator": VERB, ...}` ([`operator`]), answered by the operator function.
    Operator,
    /// CloudFormation's LedgerSchema custom resource, answered by the operator function.
    CustomResource,
}

impl EventKind {
    /// Which event this payload is; `Err` says what was expected and which keys came instead.
    pub fn of(payload: &serde_json::Value) -> Result<Self, String> {
        if operator::is_operator_request(payload) {
            Ok(Self::Operator)
        } else if crate::custom_resource::is_custom_resource_request(payload) {
            Ok(Self::CustomResource)
        } else if payload["source"] == "aws.events" && payload["detail-type"] == "Scheduled Event" {
            Ok(Self::Schedule)
        } else if let Some(records) = payload.get("Records") {
            let from_events_queue =
                |r: &serde_json::Value| r["eventSourceARN"].as_str().is_some_and(crate::delivery::is_events_queue);
            match records.as_array() {
                Some(rs) if !rs.is_empty() && rs.iter().all(from_events_queue) => Ok(Self::DeliveryEvents),
                Some(rs) if rs.iter().any(from_events_queue) => Err(format!(
                    "unsupported event: an SQS batch mixes records from the SES events queue (a queue whose name \
                     ends in {}) with records from other queues; an event source mapping never does",
                    crate::delivery::EVENTS_QUEUE_SUFFIX
                )),
                _ => Ok(Self::SqsBatch),
            }
        } else {
            Err(format!(
                "unsupported event: expected an SQS event (with Records), the reconciliation schedule \
                 (source aws.events, detail-type Scheduled Event) or an operator request ({{\"operator\": VERB}}), \
                 got keys {:?}",
                payload.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
            ))
        }
    }
}

/// The SQS event in a payload that has `Records`. A payload of another shape is refused naming
/// the field that does not fit (`Records[0].attributes`), never its value: serde's own message
/// quotes the offending string, which can be a customer's address.
pub fn sqs_event(payload: serde_json::Value) -> Result<SqsEvent, String> {
    serde_path_to_error::deserialize(payload)
        .map_err(|e| format!("the event has Records but is not an SQS event: {} has the wrong type", e.path()))
}

/// The two kinds of queue batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Orders, from either order queue.
    Orders,
    /// SES's events about sent mail, from the events queue.
    DeliveryEvents,
}

impl BatchKind {
    /// The kind of batch the queue with this ARN delivers.
    pub fn of_queue(arn: &str) -> Self {
        if crate::delivery::is_events_queue(arn) { Self::DeliveryEvents } else { Self::Orders }
    }
}

/// One finished queue batch, of either kind.
#[derive(Debug, Clone)]
pub enum BatchAnswer {
    Orders(BatchReport),
    DeliveryEvents(EventBatchReport),
}

impl BatchAnswer {
    /// The batch response: exactly the records that must come back, each named once.
    pub fn response(&self) -> SqsBatchResponse {
        match self {
            Self::Orders(r) => r.response(),
            Self::DeliveryEvents(r) => r.response(),
        }
    }

    /// Failed records without a messageId: they cannot be named in the response, so the
    /// invocation must fail instead (the ledger makes the redelivery safe).
    pub fn unidentifiable_failures(&self) -> usize {
        match self {
            Self::Orders(r) => r.unidentifiable_failures(),
            Self::DeliveryEvents(r) => r.unidentifiable_failures(),
        }
    }

    /// The batch's one summary line.
    pub fn summary(&self) -> String {
        match self {
            Self::Orders(r) => r.summary(),
            Self::DeliveryEvents(r) => r.summary(),
        }
    }

    /// Per record, in the event's order: done with (to delete), or to come back.
    pub fn acknowledged(&self) -> Vec<bool> {
        match self {
            Self::Orders(r) => r.records.iter().map(|r| r.outcome.is_acknowledged()).collect(),
            Self::DeliveryEvents(r) => r.records.iter().map(|r| r.is_acknowledged()).collect(),
        }
    }

    /// Deferred orders whose delayed copy went back to their queue.
    pub fn requeued(&self) -> usize {
        match self {
            Self::Orders(r) => {
                r.records.iter().filter(|r| matches!(r.outcome, RecordOutcome::Deferred { requeued: true, .. })).count()
            }
            Self::DeliveryEvents(_) => 0,
        }
    }
}

/// Runs one queue batch of `kind` and finishes it: the path Lambda, `invoke` and `consume` share.
/// `retries` is the queue adapter when the records came from a real queue (Lambda, `consume`),
/// `queue_url` the queue when the caller knows it (otherwise each record's event source ARN names
/// it). `ledger` is the pipeline's ledger, whose operations apply SES events.
pub async fn run_batch(
    pipeline: &Pipeline,
    ledger: &dyn LedgerOps,
    kind: BatchKind,
    event: &SqsEvent,
    deadline: Instant,
    retries: Option<&VisibilityBackoff>,
    queue_url: Option<&str>,
) -> BatchAnswer {
    let queue = retries.map(|retries| FromQueue { event, retries, queue_url });
    match kind {
        BatchKind::Orders => {
            let mut begun = pipeline.begin(event, deadline).await;
            if let Some(q) = queue {
                finish::hand_back_now(&mut begun, q).await;
            }
            let mut report = pipeline.complete(begun).await;
            finish::orders(&mut report, queue).await;
            BatchAnswer::Orders(report)
        }
        BatchKind::DeliveryEvents => {
            let report = crate::delivery::handle(ledger, event).await;
            finish::events(&report, queue).await;
            BatchAnswer::DeliveryEvents(report)
        }
    }
}

/// One reconciliation run with its re-sent batch finished: what the schedule, `reconcile` and
/// the operator's request run.
pub async fn reconcile(
    pipeline: &Pipeline,
    ledger: &dyn LedgerOps,
    settings: &ReconcileSettings,
    deadline: Instant,
) -> Result<ReconcileReport, BackendError> {
    let mut report = crate::reconcile::reconcile(pipeline, ledger, settings, deadline).await?;
    if let Some(batch) = report.batch.as_mut() {
        finish::orders(batch, None).await;
    }
    Ok(report)
}

/// Releases an abandoned or rejected order and re-sends it at once; the answer is its finished
/// batch of one. `None`: the order is not abandoned or rejected (or not in the ledger), so
/// nothing was released.
pub async fn retry(
    pipeline: &Pipeline,
    ledger: &dyn LedgerOps,
    order_id: &OrderId,
    deadline: Instant,
) -> Result<Option<BatchReport>, BackendError> {
    let Some(order) = ledger.release(order_id).await? else { return Ok(None) };
    tracing::info!(order_id = %order_id, "released for retry; re-sending it now");
    let mut report = crate::reconcile::resend(pipeline, &[order], deadline).await;
    finish::orders(&mut report, None).await;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::EventKind;
    use serde_json::json;

    fn batch(arns: &[&str]) -> serde_json::Value {
        json!({"Records": arns.iter().map(|a| json!({"messageId": "m", "body": "{}", "eventSourceARN": a})).collect::<Vec<_>>()})
    }

    #[test]
    fn a_batch_from_the_ses_events_queue_is_told_apart_by_its_queue_and_a_mixed_one_is_refused() {
        let events = "arn:aws:sqs:us-east-1:123456789012:shop-ses-events";
        let orders = "arn:aws:sqs:us-east-1:123456789012:shop-high";
        assert_eq!(EventKind::of(&batch(&[events, events])), Ok(EventKind::DeliveryEvents));
        assert_eq!(EventKind::of(&batch(&[orders])), Ok(EventKind::SqsBatch));
        assert_eq!(EventKind::of(&json!({"Records": []})), Ok(EventKind::SqsBatch));
        let mixed = EventKind::of(&batch(&[orders, events])).unwrap_err();
        assert!(mixed.contains("mixes records from the SES events queue"), "{mixed}");
    }
}
