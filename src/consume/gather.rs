//! A Lambda event source mapping's batch for `consume --batch-size`: gathered within the batching
//! window whatever the send rate, as the mapping's poller gathers it before it invokes.

use super::{ConsumeOptions, Queue};
use super::{MAX_RECEIVE, MappingBatch, Received, receive, visibility_on_receive};
use aws_sdk_sqs::Client;
use std::time::Duration;
use tokio::time::Instant;

/// A mapping's batch: receives of up to ten until `mapping.size` messages are in hand or
/// `mapping.window` has passed since the first message arrived, as Lambda's poller gathers a
/// batch before it invokes. The visibility asked for covers the window too, so the first
/// message received does not come back while the batch is still being gathered. A receive that
/// fails after some messages arrived ends the gathering with what is in hand (they are the
/// batch's; the rest stay in the queue).
pub(super) fn gather<'a>(
    client: &'a Client,
    queue: &'a Queue,
    mapping: MappingBatch,
    wait: Duration,
    options: &'a ConsumeOptions,
) -> Received<'a> {
    Box::pin(async move {
        let size = mapping.size.max(1);
        let visibility = visibility_on_receive(options)
            .saturating_add(mapping.window.as_secs_f64().ceil() as i32)
            .min(crate::backoff::MAX_VISIBILITY.as_secs() as i32);
        let mut batch = receive(client, queue, remaining(size, 0), wait, visibility).await?;
        if batch.is_empty() {
            return Ok(batch);
        }
        let window_ends = Instant::now() + mapping.window;
        while batch.len() < size {
            let left = window_ends.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Long-poll what is left of the window in whole seconds (SQS's unit); under a second,
            // look without waiting and pause briefly when the queue has nothing.
            match receive(client, queue, remaining(size, batch.len()), left, visibility).await {
                Ok(more) if more.is_empty() => {
                    if left < Duration::from_secs(1) {
                        tokio::time::sleep(left.min(GATHER_PAUSE)).await;
                    }
                }
                Ok(more) => batch.extend(more),
                Err(e) => {
                    tracing::warn!(queue = %queue.url, error = %e, "receive failed while gathering a batch; invoking with what is in hand");
                    break;
                }
            }
        }
        Ok(batch)
    })
}

/// How many messages the next receive of a gathering asks for.
fn remaining(size: usize, have: usize) -> i32 {
    i32::try_from(size.saturating_sub(have)).unwrap_or(MAX_RECEIVE).clamp(1, MAX_RECEIVE)
}

/// How long a gathering pauses after an empty look in the last second of its window.
const GATHER_PAUSE: Duration = Duration::from_millis(200);
