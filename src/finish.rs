//! The end of every batch, the same wherever it ran (Lambda, `invoke`, `consume`, reconcile,
//! `retry`): deferred records go back to their queue as delayed copies, the batch's metrics are
//! recorded, failed records get their retry timing, and one summary line is logged. Without an
//! SQS client (local `invoke`, reconcile's stored payloads) only the metrics and the log remain.
//! Metrics are flushed by the caller, once per invocation.

use crate::backoff::VisibilityBackoff;
use crate::pipeline::BatchReport;
use aws_lambda_events::sqs::SqsEvent;

/// Finishes one batch. `queue_url` names the queue when the caller knows it (`consume`);
/// otherwise each record's event source ARN does.
pub async fn finish(
    event: &SqsEvent,
    report: &mut BatchReport,
    retries: Option<&VisibilityBackoff>,
    queue_url: Option<&str>,
) {
    let requeued = match retries {
        Some(r) => Box::pin(r.requeue_deferred(event, report, queue_url)).await,
        None => 0,
    };
    crate::metrics::record_batch(report);
    let delayed = match retries {
        Some(r) => Box::pin(r.apply(event, report, queue_url)).await,
        None => 0,
    };
    tracing::info!(queue = queue_url.unwrap_or("-"), requeued, delayed, summary = %report.summary(), "batch done");
}
