//! Reconciliation (docs/design.md, "Operations"): the safety net that makes a silent failure impossible. Run on a
//! schedule (every 5 minutes in the template) and by `order-confirmation reconcile`, it finds
//! orders stuck in `sending` past their lease (the invocation died) or `failed` for too long (the
//! message may have expired or reached a DLQ), and re-sends them from the stored payload through
//! the same claim → send → record path as a queue delivery. After a bounded number of attempts an
//! order is marked `abandoned` for a person to handle; `UnconfirmedOrders` and
//! `OldestUnconfirmedSeconds` are published for the alarm either way.

use crate::batch::{BatchReport, RecordOutcome};
use crate::error::BackendError;
use crate::ledger::{LedgerOps, Retained, StuckOrder, Unconfirmed};
use crate::order::OrderId;
use crate::pipeline::Pipeline;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReconcileSettings {
    /// A `failed` order is retried here once it has not changed for this long (queue retries
    /// usually get it first).
    #[serde(rename = "failed_after_seconds", with = "crate::serde_helpers::secs")]
    pub failed_for: Duration,
    /// Attempts after which reconciliation stops and marks the order `abandoned`.
    pub max_attempts: i64,
    /// Orders handled per run; the rest wait for the next run.
    pub batch_limit: usize,
    /// Orders younger than this are not counted as unconfirmed (they are still in normal flow).
    #[serde(rename = "unconfirmed_grace_seconds", with = "crate::serde_helpers::secs")]
    pub grace: Duration,
    pub retention: Retention,
}

/// How long the ledger keeps what (docs/design.md, "Retention"), applied by each reconcile run in
/// at most `steps` bounded steps of `step_limit` rows each, so no statement runs long and a
/// backlog (the first run after deploying) is worked off over several runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Retention {
    /// A confirmed order's payload (name, address, items) is removed this long after it was sent.
    #[serde(rename = "payload_after_seconds", with = "crate::serde_helpers::secs")]
    pub payload_after: Duration,
    /// Finished rows first seen this long ago are deleted.
    #[serde(rename = "delete_after_seconds", with = "crate::serde_helpers::secs")]
    pub delete_after: Duration,
    pub step_limit: usize,
    pub steps: usize,
}

impl Default for Retention {
    fn default() -> Self {
        use crate::defaults;
        Self {
            payload_after: Duration::from_secs(defaults::PAYLOAD_RETENTION_DAYS * 86_400),
            delete_after: Duration::from_secs(defaults::LEDGER_HORIZON_DAYS * 86_400),
            step_limit: 500,
            steps: 4,
        }
    }
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        use crate::defaults;
        Self {
            failed_for: Duration::from_secs(defaults::RECONCILE_FAILED_AFTER_SECONDS),
            max_attempts: defaults::RECONCILE_MAX_ATTEMPTS,
            batch_limit: 100,
            grace: Duration::from_secs(defaults::UNCONFIRMED_GRACE_SECONDS),
            retention: Retention::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// Stuck orders found this run.
    pub found: usize,
    /// Orders re-sent and accepted by the mailer.
    pub resent: u64,
    /// Stuck orders recorded from SES's Send event of their dead holder's mail instead of being
    /// re-sent (docs/design.md, "SES as the second witness").
    pub sent_earlier: u64,
    /// Orders still failing after this run's attempt (they stay retryable).
    pub still_failing: u64,
    /// Orders marked `abandoned` this run (attempt bound reached).
    pub abandoned: u64,
    /// Unconfirmed orders after this run (what the alarm watches).
    pub unconfirmed: Unconfirmed,
    /// What retention removed this run.
    pub retained: Retained,
    /// The re-sent orders' batch, for the caller to finish.
    #[serde(skip)]
    pub batch: Option<BatchReport>,
}

/// Re-sends orders from their stored payloads through the queue path (claim, send, record). The
/// caller finishes the batch (`service::finish`), as for every batch.
pub async fn resend(pipeline: &Pipeline, orders: &[StuckOrder], deadline: Instant) -> BatchReport {
    pipeline.handle(&as_event(orders), deadline).await
}

/// One synthetic queue record per stuck order, so the re-send takes exactly the queue path.
fn as_event(orders: &[StuckOrder]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = orders
        .iter()
        .map(|o| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("reconcile:{}", o.order_id));
            m.body = Some(o.payload.clone());
            m.attributes.insert("ApproximateReceiveCount".into(), (o.attempts + 1).to_string());
            m.event_source = Some("order-confirmation:reconcile".into());
            m
        })
        .collect();
    event
}

/// One reconciliation run: `ledger` finds, abandons and counts the stuck orders; `pipeline`
/// re-sends them (through its own hot-path ledger, normally the same one).
pub async fn reconcile(
    pipeline: &Pipeline,
    ledger: &dyn LedgerOps,
    settings: &ReconcileSettings,
    deadline: Instant,
) -> Result<ReconcileReport, BackendError> {
    let stuck = ledger.stuck(settings.failed_for, settings.batch_limit).await?;
    let found = stuck.len();
    let (exhausted, retry): (Vec<StuckOrder>, Vec<StuckOrder>) =
        stuck.into_iter().partition(|o| o.attempts >= settings.max_attempts);

    let ids: Vec<OrderId> = exhausted.iter().map(|o| o.order_id.clone()).collect();
    let abandoned = if ids.is_empty() {
        0
    } else {
        let reason = format!("reconciliation gave up after {} attempts; needs a person", settings.max_attempts);
        let n = ledger.abandon(&ids, &reason).await?;
        for o in &exhausted {
            tracing::error!(order_id = %o.order_id, attempts = o.attempts, "order abandoned: not confirmed after the attempt bound");
        }
        n
    };

    let batch = if retry.is_empty() { None } else { Some(resend(pipeline, &retry, deadline).await) };
    let (resent, sent_earlier, still_failing) = batch.as_ref().map_or((0, 0, 0), |b| {
        let count = |f: fn(&RecordOutcome) -> bool| b.records.iter().filter(|r| f(&r.outcome)).count();
        (
            count(|o| matches!(o, RecordOutcome::Sent { .. })) as u64,
            count(|o| matches!(o, RecordOutcome::SentEarlier { .. })) as u64,
            count(|o| !o.is_success()) as u64,
        )
    });
    let retained = retain(ledger, &settings.retention).await?;
    let hours_summarized = summarize(ledger).await?;
    let unconfirmed = ledger.unconfirmed(settings.grace).await?;
    crate::metrics::unconfirmed(unconfirmed.count, unconfirmed.oldest_seconds);
    crate::metrics::count(crate::batch::Counter::ReconcileResent, None, resent);
    crate::metrics::count(crate::batch::Counter::ReconcileAbandoned, None, abandoned);
    tracing::info!(
        found,
        resent,
        sent_earlier,
        still_failing,
        abandoned,
        payloads_removed = retained.payloads_removed,
        rows_deleted = retained.rows_deleted,
        hours_summarized,
        unconfirmed = unconfirmed.count,
        oldest_unconfirmed_seconds = unconfirmed.oldest_seconds,
        "reconciliation done"
    );
    Ok(ReconcileReport { found, resent, sent_earlier, still_failing, abandoned, unconfirmed, retained, batch })
}

/// Hours of sends the statistics' summary takes in per run, one bounded step each: a day's
/// backlog (the first runs after deploying, or after the schedule stopped) is worked off within
/// half an hour, and `stats` stays exact meanwhile, only slower.
pub const SUMMARY_STEPS: usize = 4;

/// Summarizes the hours of sends that are due (docs/design.md, "Statistics over 24 hours"), at
/// most [`SUMMARY_STEPS`]; returns how many.
pub async fn summarize(ledger: &dyn LedgerOps) -> Result<usize, BackendError> {
    let mut hours = 0;
    while hours < SUMMARY_STEPS && ledger.summarize_sends().await? {
        hours += 1;
    }
    Ok(hours)
}

/// Applies retention in at most `steps` bounded steps, stopping early once a step finds less than
/// a full step of work.
pub async fn retain(ledger: &dyn LedgerOps, retention: &Retention) -> Result<Retained, BackendError> {
    let mut total = Retained::default();
    for _ in 0..retention.steps {
        let step = ledger.retain(retention.payload_after, retention.delete_after, retention.step_limit).await?;
        total.payloads_removed += step.payloads_removed;
        total.rows_deleted += step.rows_deleted;
        let limit = retention.step_limit as u64;
        if step.payloads_removed < limit && step.rows_deleted < limit {
            break;
        }
    }
    Ok(total)
}
