//! The end of every batch, one function per kind, the same wherever the batch ran (Lambda,
//! `invoke`, `consume`, reconcile, `retry`). For orders: deferred records go back to their queue
//! as delayed copies, the counts are published, failed records get their retry timing, and one
//! summary line is logged. For SES events: failed records get their retry timing, the counts are
//! published, one summary line is logged. Without a queue ([`FromQueue`]: local `invoke`,
//! reconcile's stored payloads) only the metrics and the log remain. Metrics are flushed by the
//! caller, once per invocation. The orders a batch hands back before claiming (more than its
//! send rate grants soon) go back to their queue at the batch's start ([`hand_back_now`]).
//!
//! The order of the orders' steps matters: re-enqueueing marks a deferred record `requeued`
//! (acknowledged), which the metrics, the visibility step and the response then read.

use crate::backoff::VisibilityBackoff;
use crate::batch::{BatchReport, EventBatchReport};
use crate::order::Priority;
use crate::pipeline::Begun;
use aws_lambda_events::sqs::SqsEvent;

/// Where a batch's records came from when a queue delivered them: the records (receipt handles,
/// attributes), the adapter that re-enqueues and changes visibility, and the queue's URL when the
/// caller knows it (`consume`; otherwise each record's event source ARN names it).
#[derive(Clone, Copy)]
pub struct FromQueue<'a> {
    pub event: &'a SqsEvent,
    pub retries: &'a VisibilityBackoff,
    pub queue_url: Option<&'a str>,
}

/// Re-enqueues the orders a batch handed back before claiming ([`crate::pipeline::Pipeline::begin`]) at once, so
/// another instance can send them while this one sends what it kept; [`orders`] then leaves them.
pub async fn hand_back_now(begun: &mut Begun, q: FromQueue<'_>) {
    let mut early = begun.report();
    Box::pin(q.retries.requeue_deferred(q.event, &mut early, q.queue_url)).await;
    begun.requeued(&early);
}

/// Finishes one orders batch.
pub async fn orders(report: &mut BatchReport, queue: Option<FromQueue<'_>>) {
    let requeued = match queue {
        Some(q) => Box::pin(q.retries.requeue_deferred(q.event, report, q.queue_url)).await,
        None => 0,
    };
    publish_orders(report);
    let delayed = match queue {
        Some(q) => Box::pin(q.retries.apply(q.event, report, q.queue_url)).await,
        None => 0,
    };
    let queue_url = queue.and_then(|q| q.queue_url).unwrap_or("-");
    tracing::info!(queue = queue_url, requeued, delayed, summary = %report.summary(), "batch done");
}

/// Finishes one SES events batch.
pub async fn events(report: &EventBatchReport, queue: Option<FromQueue<'_>>) {
    let delayed = match queue {
        Some(q) => q.retries.apply_to_events(q.event, report, q.queue_url).await,
        None => 0,
    };
    publish_events(report);
    let queue_url = queue.and_then(|q| q.queue_url).unwrap_or("-");
    tracing::info!(queue = queue_url, delayed, summary = %report.summary(), "delivery events done");
}

/// An orders batch's counters, per priority (`unknown` for records whose priority was never
/// read), and its time-to-confirm samples.
fn publish_orders(report: &BatchReport) {
    for (priority, counters) in report.counters() {
        let p = priority.map_or("unknown", Priority::as_str);
        for (name, n) in counters.iter() {
            crate::metrics::count(name, Some(p), n);
        }
    }
    for r in &report.records {
        if let (Some(p), Some(seconds)) = (r.priority, r.time_to_confirm_seconds) {
            crate::metrics::time_to_confirm(p, seconds);
        }
    }
}

/// An events batch's counts: each applied event under its delivery state's metric (dimension
/// priority), unknown and invalid events without dimension.
fn publish_events(report: &EventBatchReport) {
    for ((name, priority), n) in report.counters() {
        crate::metrics::count(name, priority.map(Priority::as_str), n);
    }
}
