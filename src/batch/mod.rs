//! The batch vocabulary no flow owns: how a record ended ([`RecordOutcome`] for orders,
//! [`EventOutcome`] for SES events), the batch's report, the response that names the records to
//! retry, and the message attributes a deferred copy carries. The flows produce these; the
//! adapters (visibility, re-enqueue) and the service's finish read them.

mod counter;
mod events;
mod outcome;
mod report;

pub use counter::{COUNTERS, Counter};
pub use events::{EventBatchReport, EventOutcome, EventRecordReport, metric_name};
pub use outcome::{OUTCOME_NAMES, RecordOutcome};
pub use report::{BatchReport, Counters, RecordReport};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};

/// The message attribute that carries, across deferrals, when the order first entered a queue
/// (Unix milliseconds), so time-to-confirm counts from the first arrival.
pub const FIRST_SENT_ATTRIBUTE: &str = "OrderConfirmationFirstSent";
/// The message attribute that counts how many times the order was deferred and re-enqueued.
pub const DEFERRALS_ATTRIBUTE: &str = "OrderConfirmationDeferrals";

/// The `SqsBatchResponse` for a batch whose failed records have these message ids: each non-empty
/// id once. A failed record without one cannot be named (an empty identifier fails the whole batch
/// in Lambda); its caller fails the invocation instead.
pub fn failures_response<'a>(failed_message_ids: impl IntoIterator<Item = Option<&'a str>>) -> SqsBatchResponse {
    let mut seen = std::collections::HashSet::new();
    let mut response = SqsBatchResponse::default();
    for id in failed_message_ids.into_iter().flatten().filter(|id| !id.is_empty()) {
        if seen.insert(id) {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// `ApproximateReceiveCount` from a record's attributes: 1 on the first delivery, and when SQS
/// did not say (a synthetic record).
pub fn receive_count(record: &SqsMessage) -> u32 {
    record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}
