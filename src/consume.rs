//! The long-poll worker: the event source mapping's semantics outside Lambda. It receives up to
//! ten messages, builds the same `SqsEvent` Lambda would, runs the same handler and the same
//! finish step, deletes exactly the acknowledged records and leaves the rest to come back (after
//! the backoff's visibility timeout). Queues are polled in the order given, so the high-priority queue is always drained
//! ahead of the normal one. On SIGINT/SIGTERM it finishes the batches in hand, then exits.
//!
//! A queue whose name ends in `-ses-events` carries SES's events about sent mail: its batches go
//! to [`crate::delivery`], as Lambda's dispatch sends them. It has a poller of its own, beside the
//! order queues' and never waiting for them, as Lambda gives it a mapping of its own.
//!
//! With a [`MappingBatch`] (`--batch-size`) it receives as one of Lambda's event source mappings
//! delivers instead: a fixed batch gathered within a batching window, whatever the send rate. Run
//! on one queue, it stands in for one concurrent invocation of that queue's mapping (the soak's
//! `lambda` topology).
//!
//! The end-to-end tests run it against a real SQS API (moto), and it runs the service on a plain
//! host or container.

mod gather;
mod sqs;

use crate::backoff::VisibilityBackoff;
use crate::error::{BackendError, Service, from_sdk};
use crate::pipeline::Pipeline;
use crate::service::{self, BatchKind};
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use gather::gather;
use serde::Serialize;
use sqs::{Queue, delete_acknowledged, describe, to_record};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Queues in priority order: the first is always polled first.
    pub queue_urls: Vec<String>,
    /// Long-poll wait on the last queue (the earlier ones are checked without waiting).
    pub wait: Duration,
    /// Each batch's time budget.
    pub batch_timeout: Duration,
    /// The pipeline's lease slack: an order's lease outlives its batch by this much, so the
    /// visibility timeout requested on receive is the batch's time plus this (and a second). A
    /// message whose worker was killed comes back once the lease it left has ended, ready to be
    /// taken over, instead of spending a receive on finding the lease still live.
    pub lease_slack: Duration,
    /// Exit after this long without any message, counted from when the worker's own deferred
    /// copies are visible again (None: run until signalled).
    pub idle_exit: Option<Duration>,
    /// Lambda's event source mapping in place of the rate-sized receive: `None` (the default)
    /// receives what the send rate can send soon ([`BATCH_HORIZON`]); `Some` gathers a fixed
    /// `BatchSize` within a batching window, whatever the rate, as a mapping delivers it.
    pub mapping: Option<MappingBatch>,
}

/// A Lambda event source mapping's batch: up to `size` messages, gathered for at most `window`
/// from the first receive (`BatchSize`, `MaximumBatchingWindowInSeconds`). `consume` with this
/// and one queue is the stand-in for one concurrent invocation of that mapping: the soak's
/// `lambda` topology runs `MaximumConcurrency` of them per queue (docs/design.md, "Under
/// `consume` and under Lambda").
#[derive(Debug, Clone, Copy)]
pub struct MappingBatch {
    pub size: usize,
    pub window: Duration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConsumeSummary {
    pub batches: u64,
    pub received: u64,
    pub deleted: u64,
    /// Records left for SQS to redeliver (failures).
    pub retried: u64,
    /// Deferred records whose delayed copy went back to the queue (acknowledged).
    pub requeued: u64,
}

impl ConsumeSummary {
    /// The two pollers' summaries as one.
    fn plus(self, other: Self) -> Self {
        Self {
            batches: self.batches + other.batches,
            received: self.received + other.received,
            deleted: self.deleted + other.deleted,
            retried: self.retried + other.retried,
            requeued: self.requeued + other.requeued,
        }
    }
}

/// Runs until `shutdown` resolves (finishing the batches in hand) or the idle limit passes. `ledger`
/// is the pipeline's ledger, whose operations apply the SES events queue's batches.
///
/// The SES events queue has a poller of its own beside the order queues' (as Lambda gives it a
/// mapping of its own): an order batch never waits for an events batch, and a takeover waiting for
/// the previous holder's Send event sees it applied while it waits, even on a lone worker.
pub async fn run(
    pipeline: &Pipeline,
    ledger: &dyn crate::ledger::LedgerOps,
    client: &Client,
    backoff: &VisibilityBackoff,
    options: &ConsumeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ConsumeSummary, BackendError> {
    let (events, orders) = queues(client, &options.queue_urls).await?;
    let worker = Worker { pipeline, ledger, client, backoff, options };
    let activity = Activity::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tracing::info!(queues = ?options.queue_urls, "consuming");
    let pollers = async {
        let (o, e) = tokio::join!(
            worker.poll(&orders, &activity, stopped.clone()),
            worker.poll(&events, &activity, stopped.clone())
        );
        o.plus(e)
    };
    tokio::pin!(pollers, shutdown);
    let summary = tokio::select! {
        summary = &mut pollers => summary,
        () = &mut shutdown => {
            tracing::info!("shutdown requested; finishing the batches in hand");
            let _ = stop.send(true);
            pollers.await
        }
    };
    Ok(summary)
}

/// What the two pollers have in hand: the worker is idle only while neither holds a batch, counted
/// from when the last one was received or finished. One lock, so the two are read together.
struct Activity(std::sync::Mutex<(usize, Instant)>);

impl Activity {
    fn new() -> Self {
        Self(std::sync::Mutex::new((0, Instant::now())))
    }

    /// A batch received (`+1`) or finished (`-1`).
    fn batch(&self, change: isize) {
        let mut state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = (state.0.saturating_add_signed(change), Instant::now());
    }

    /// Since when nothing has been in hand; `None` while a batch is.
    fn idle_since(&self) -> Option<Instant> {
        let (in_hand, last) = *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (in_hand == 0).then_some(last)
    }
}

/// Resolves once shutdown was requested.
async fn stopping(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The queues to poll: the SES events queues (for their own poller), and the order queues in the
/// order given.
async fn queues(client: &Client, urls: &[String]) -> Result<(Vec<Queue>, Vec<Queue>), BackendError> {
    let mut queues = Vec::new();
    for url in urls {
        queues.push(describe(client, url).await?);
    }
    Ok(queues.into_iter().partition(|q| crate::delivery::is_events_queue(&q.arn)))
}

/// The receive to make on `queue` next: a mapping's batch for an order queue (the SES events
/// queue sends nothing, so it is received as `consume` receives it whatever the mode), or as many
/// messages as this worker's rate can send soon; `None` when that is none.
async fn next_receive<'a>(
    pipeline: &Pipeline,
    client: &'a Client,
    queue: &'a Queue,
    wait: Duration,
    options: &'a ConsumeOptions,
) -> Option<Received<'a>> {
    match options.mapping.filter(|_| !crate::delivery::is_events_queue(&queue.arn)) {
        Some(mapping) => Some(gather(client, queue, mapping, wait, options)),
        None => {
            let max = batch_size(pipeline, queue, options.batch_timeout).await;
            (max > 0).then(|| -> Received<'a> {
                Box::pin(receive(client, queue, max, wait, visibility_on_receive(options)))
            })
        }
    }
}

type Received<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<Message>, BackendError>> + Send + 'a>>;

/// One `ReceiveMessage` of at most `max` messages, long-polling `wait`.
async fn receive(
    client: &Client,
    queue: &Queue,
    max: i32,
    wait: Duration,
    visibility: i32,
) -> Result<Vec<Message>, BackendError> {
    client
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(max.clamp(1, MAX_RECEIVE))
        .wait_time_seconds(wait.as_secs().min(20) as i32)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map(|out| out.messages.unwrap_or_default())
        .map_err(|e| from_sdk(Service::Sqs, "ReceiveMessage", &e))
}

/// What a worker runs a received batch with.
struct Worker<'a> {
    pipeline: &'a Pipeline,
    ledger: &'a dyn crate::ledger::LedgerOps,
    client: &'a Client,
    backoff: &'a VisibilityBackoff,
    options: &'a ConsumeOptions,
}

impl Worker<'_> {
    /// One poller: `queues` in priority order (the last long-polls), each received batch handled
    /// before the first queue is looked at again. Ends when asked to stop, between batches, or when
    /// the worker has been idle for the idle limit. Nothing to poll ends it at once.
    async fn poll(
        &self,
        queues: &[Queue],
        activity: &Activity,
        stopped: tokio::sync::watch::Receiver<bool>,
    ) -> ConsumeSummary {
        let mut summary = ConsumeSummary::default();
        let options = self.options;
        'poll: while !queues.is_empty() && !*stopped.borrow() {
            // Idle only counts from when this worker's own deferred copies are visible again, and
            // not while the other poller holds a batch.
            let idle_since =
                activity.idle_since().map(|last| self.backoff.copies_due().map_or(last, |due| due.max(last)));
            if let (Some(idle), Some(since)) = (options.idle_exit, idle_since)
                && since.elapsed() >= idle
            {
                tracing::info!("no messages for the idle limit; exiting");
                break;
            }
            // Set when an order queue was skipped because this worker's rate grants no send soon.
            let mut no_slot = false;
            for (i, queue) in queues.iter().enumerate() {
                let wait = if i + 1 == queues.len() { options.wait } else { Duration::ZERO };
                let Some(gathered) = next_receive(self.pipeline, self.client, queue, wait, options).await else {
                    no_slot = true;
                    continue;
                };
                let out = tokio::select! {
                    out = gathered => out,
                    () = stopping(stopped.clone()) => break 'poll,
                };
                let messages = match out {
                    Ok(messages) => messages,
                    Err(e) => {
                        tracing::warn!(queue = %queue.url, error = %e, "receive failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'poll;
                    }
                };
                if messages.is_empty() {
                    continue;
                }
                activity.batch(1);
                // The batch in hand is finished even if a signal arrives meanwhile.
                self.handle(queue, messages, &mut summary).await;
                activity.batch(-1);
                // Back to the top: the high-priority queue is checked again before any other.
                continue 'poll;
            }
            if no_slot {
                // The orders stay in the queue for a worker that can send them now; this one looks
                // again once its bucket has refilled a little (no long poll was made to wait on).
                tokio::select! {
                    () = tokio::time::sleep(NO_SLOT_PAUSE) => {}
                    () = stopping(stopped.clone()) => break 'poll,
                }
            }
        }
        summary
    }

    /// Runs one received batch as Lambda would (the SES events queue's batches go to the delivery
    /// path), deletes what it acknowledged and adds the batch to `summary`.
    async fn handle(&self, queue: &Queue, messages: Vec<Message>, summary: &mut ConsumeSummary) {
        let mut event = SqsEvent::default();
        event.records = messages.into_iter().map(|m| to_record(queue, m)).collect();
        let kind = BatchKind::of_queue(&queue.arn);
        let deadline = Instant::now() + self.options.batch_timeout;
        let answer = service::run_batch(
            self.pipeline,
            self.ledger,
            kind,
            &event,
            deadline,
            Some(self.backoff),
            Some(&queue.url),
        )
        .await;
        crate::metrics::flush(crate::metrics::Sink::Stderr);
        summary.requeued += answer.requeued() as u64;
        let acknowledged = answer.acknowledged();
        summary.retried += acknowledged.iter().filter(|a| !**a).count() as u64;
        summary.batches += 1;
        summary.received += event.records.len() as u64;
        summary.deleted += delete_acknowledged(self.client, &queue.url, &event, &acknowledged).await;
    }
}

/// How long the orders of one batch may wait for their send slots. A worker receives no more
/// orders than its send rate grants within this: at a small share of the quota (0.5 mails/s), a
/// batch of ten would hold orders for 20 s that idle workers could have sent, and defer the ones
/// its budget could not reach; small batches keep the whole backlog in the queue, where every
/// worker (and the high-priority queue, checked before each receive) can reach it.
pub const BATCH_HORIZON: Duration = Duration::from_secs(2);

/// SQS's largest receive.
const MAX_RECEIVE: i32 = 10;

/// How long a worker whose rate grants no send within [`BATCH_HORIZON`] waits before it looks at
/// the order queues again.
const NO_SLOT_PAUSE: Duration = Duration::from_millis(250);

/// The receive size for `queue`: what the send rate grants within [`BATCH_HORIZON`] and the
/// batch's own sending window (at most SQS's ten) for an order queue; ten for the SES events
/// queue, which sends nothing. Zero when not even one send is granted that soon: a worker whose
/// rate SES's throttling cut to a fraction of its share would hold even a single order for
/// seconds (up to 8 s at a quarter of 0.5 mails/s), and at the end of a backlog those orders are
/// the tail, while workers with a slot are idle.
async fn batch_size(pipeline: &Pipeline, queue: &Queue, batch_timeout: Duration) -> i32 {
    if crate::delivery::is_events_queue(&queue.arn) {
        return MAX_RECEIVE;
    }
    match pipeline.sendable(Instant::now() + batch_timeout, BATCH_HORIZON).await {
        Some(n) => i32::try_from(n).unwrap_or(MAX_RECEIVE).clamp(0, MAX_RECEIVE),
        None => MAX_RECEIVE,
    }
}

/// The visibility timeout a receive asks for: the batch's time budget plus the lease slack and a
/// second, within SQS's 12 hours.
fn visibility_on_receive(options: &ConsumeOptions) -> i32 {
    let seconds = (options.batch_timeout + options.lease_slack).as_secs().saturating_add(1);
    seconds.min(crate::backoff::MAX_VISIBILITY.as_secs()) as i32
}
