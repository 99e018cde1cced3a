//! Per-message retry timing (docs/design.md, "Deferral and the send rate" and "Containment"). After a batch, every record listed in
//! `batchItemFailures` gets a visibility timeout chosen by why it failed:
//!
//! - permanent (bad input, refused mail, conflict): 0 s, so it burns through `maxReceiveCount`
//!   at once and reaches the DLQ on its fastest path;
//! - deferred (no send slot, no time left): exponential from a short first delay, so a deferred
//!   order comes back soon but does not burn through `maxReceiveCount` in seconds at peak;
//! - transient (outages, timeouts): exponential in `ApproximateReceiveCount` from a longer first
//!   delay, capped;
//! - in flight elsewhere: right after the other holder's lease ends (the claim says when), not
//!   before, whatever the settings: an earlier return could only find the lease still live.
//!
//! A deferred record (no send slot, SES at its rate) is not a failure: [`VisibilityBackoff::requeue_deferred`]
//! puts a delayed copy back on its queue and the delivery is acknowledged, so a deferral spends no
//! receive towards the DLQ (the ledger makes the copy harmless, and the claim gave the attempt
//! back). Only when the copy cannot be sent does the record fall back to the deferred schedule.
//!
//! Every receive counts towards `maxReceiveCount` (5 in the template), so the defaults are sized
//! for it: transient failures keep retrying for about 7 minutes (15-30 s, 30-60 s, 1-2 min,
//! 2-4 min) before the DLQ, deferrals for about a minute. Whatever still reaches a DLQ keeps its
//! `failed` ledger row, and reconciliation re-sends it from the stored payload.
//!
//! The schedule is pure; [`VisibilityBackoff`] applies it with `ChangeMessageVisibilityBatch`. A
//! failure to change visibility is logged and never alters the batch response: the message then
//! simply comes back after the queue's default visibility timeout.

use crate::batch::{
    BatchReport, DEFERRALS_ATTRIBUTE, EventBatchReport, EventOutcome, FIRST_SENT_ATTRIBUTE, RecordOutcome,
    RecordReport, receive_count,
};
use crate::error::{ErrorClass, Service, from_sdk};
use crate::order::Priority;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, SendMessageBatchRequestEntry,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// SQS's upper bound for a visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BackoffSettings {
    /// Delay after the first transient failure (before jitter).
    #[serde(rename = "base_seconds", with = "crate::serde_helpers::secs")]
    pub base: Duration,
    /// Longest delay for a transient failure.
    #[serde(rename = "cap_seconds", with = "crate::serde_helpers::secs")]
    pub cap: Duration,
    /// Delay for a deferred record (before jitter).
    #[serde(rename = "deferred_seconds", with = "crate::serde_helpers::secs")]
    pub deferred: Duration,
    /// The source queues' redrive `maxReceiveCount`: a record failed on this receive goes to the
    /// DLQ ([`failed_on_last_receive`]).
    pub max_receive_count: u32,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        use crate::defaults;
        Self {
            base: Duration::from_secs(defaults::BACKOFF_BASE_SECONDS),
            cap: Duration::from_secs(defaults::BACKOFF_CAP_SECONDS),
            deferred: Duration::from_secs(defaults::DEFERRED_DELAY_SECONDS),
            max_receive_count: defaults::MAX_RECEIVE_COUNT,
        }
    }
}

/// The visibility timeout for one failed record. `jitter` is uniform in `[0, 1)`; "equal
/// jitter" keeps each delay in `[d/2, d)`, so delays grow with the receive count while two
/// records failing together do not come back together.
pub fn visibility_for(outcome: &RecordOutcome, receive_count: u32, s: &BackoffSettings, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let spread = |d: Duration| d.mul_f64(0.5 + 0.5 * jitter);
    let exponential = |first: Duration| {
        let exp = receive_count.saturating_sub(1).min(30);
        first.saturating_mul(1u32 << exp).min(s.cap).min(MAX_VISIBILITY)
    };
    match (outcome, outcome.failure_class()) {
        (_, None) => Duration::ZERO,
        (_, Some(ErrorClass::Permanent)) => Duration::ZERO,
        (RecordOutcome::InFlight { lease_remaining }, _) => {
            (*lease_remaining + Duration::from_secs(1) + Duration::from_secs_f64(4.0 * jitter)).min(MAX_VISIBILITY)
        }
        (RecordOutcome::Deferred { .. }, _) => spread(exponential(s.deferred.mul_f64(2.0))),
        (_, Some(_)) => spread(exponential(s.base)),
    }
}

/// How long a deferred order's copy stays invisible: soon for high priority, growing with each
/// deferral of the same order so a long peak does not spin, at most a minute. Whole seconds
/// (SQS `DelaySeconds`), with jitter so orders deferred together do not return together.
pub fn deferral_delay(priority: Option<Priority>, deferrals: u32, s: &BackoffSettings, jitter: f64) -> Duration {
    let first = match priority {
        Some(Priority::High) => Duration::from_secs(1),
        _ => s.deferred.max(Duration::from_secs(1)),
    };
    let grown = first.saturating_mul(1u32 << deferrals.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    Duration::from_secs(grown.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)).as_secs().max(1))
}

/// `https://sqs.<region>.amazonaws.<tld>/<account>/<name>` from `arn:<partition>:sqs:<region>:<account>:<name>`.
/// The SDK sends the request to its configured endpoint either way; the URL names the queue.
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "sqs", region, account, name] if !region.is_empty() && !name.is_empty() => {
            let tld = if partition.ends_with("-cn") { "amazonaws.com.cn" } else { "amazonaws.com" };
            Some(format!("https://sqs.{region}.{tld}/{account}/{name}"))
        }
        _ => None,
    }
}

/// The queue a record came from: `queue_url` when the caller knows it, else its event source ARN.
fn url_of(record: &SqsMessage, queue_url: Option<&str>) -> Option<String> {
    queue_url.map(str::to_owned).or_else(|| record.event_source_arn.as_deref().and_then(queue_url_from_arn))
}

/// The failed records that were on their last allowed receive (`ApproximateReceiveCount` at least
/// `max_receive_count`), per source queue name: SQS moves each to its DLQ instead of delivering it
/// again. The DLQ alarms read this count (`FailedOnLastReceive`) rather than the DLQ's depth alone,
/// which an idle DLQ stops reporting (its wake-up would read as arrivals).
pub fn failed_on_last_receive<'a>(
    failed: impl IntoIterator<Item = (&'a SqsMessage, u32)>,
    max_receive_count: u32,
    queue_url: Option<&str>,
) -> BTreeMap<String, u64> {
    let mut per_queue = BTreeMap::new();
    for (record, _) in failed.into_iter().filter(|(_, n)| *n >= max_receive_count) {
        let queue = url_of(record, queue_url).and_then(|u| u.rsplit('/').next().map(str::to_owned));
        *per_queue.entry(queue.unwrap_or_else(|| "unknown".to_owned())).or_default() += 1;
    }
    per_queue
}

/// SQS allows 10 message attributes per message; the copy adds two.
const MAX_COPIED_ATTRIBUTES: usize = 8;
/// A `SendMessageBatch` request carries at most 256 KiB of bodies and attributes together.
const MAX_BATCH_BYTES: usize = 250 * 1024;

/// The delayed copy of a deferred record: the same body and attributes, plus when the order first
/// entered a queue and how often it was deferred (a record handed back unclaimed returns at once
/// and is not counted). `None` when it cannot be copied faithfully.
fn deferred_copy(
    id: String,
    record: &SqsMessage,
    r: &RecordReport,
    s: &BackoffSettings,
) -> Option<SendMessageBatchRequestEntry> {
    let body = record.body.as_deref()?;
    let ours = [DEFERRALS_ATTRIBUTE, FIRST_SENT_ATTRIBUTE];
    let mut attributes: HashMap<String, MessageAttributeValue> = HashMap::new();
    for (name, a) in record.message_attributes.iter().filter(|(n, _)| !ours.contains(&n.as_str())) {
        let mut value =
            MessageAttributeValue::builder().data_type(a.data_type.clone().unwrap_or_else(|| "String".into()));
        if let Some(v) = &a.string_value {
            value = value.string_value(v);
        }
        if let Some(b) = &a.binary_value {
            value = value.binary_value(aws_sdk_sqs::primitives::Blob::new(b.0.clone()));
        }
        attributes.insert(name.clone(), value.build().ok()?);
    }
    if attributes.len() > MAX_COPIED_ATTRIBUTES {
        return None;
    }
    let handed_back = matches!(r.outcome, RecordOutcome::Deferred { handed_back: true, .. });
    let earlier = record.message_attributes.get(DEFERRALS_ATTRIBUTE).and_then(|a| a.string_value.as_deref());
    let deferrals = earlier.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0).saturating_add(u32::from(!handed_back));
    let number = |v: String| MessageAttributeValue::builder().data_type("Number").string_value(v).build().ok();
    attributes.insert(DEFERRALS_ATTRIBUTE.to_owned(), number(deferrals.to_string())?);
    if let Some(first) = r.first_sent_ms {
        attributes.insert(FIRST_SENT_ATTRIBUTE.to_owned(), number(first.to_string())?);
    }
    let delay = (!handed_back).then(|| deferral_delay(r.priority, deferrals, s, rand::random::<f64>()));
    SendMessageBatchRequestEntry::builder()
        .id(id)
        .message_body(body)
        .delay_seconds(delay.map_or(0, |d| d.as_secs() as i32))
        .set_message_attributes(Some(attributes))
        .build()
        .ok()
}

/// What an entry counts toward the batch's size limit: its body and every attribute's name, type
/// and value (SQS counts them all).
fn entry_size(entry: &SendMessageBatchRequestEntry) -> usize {
    let attributes: usize = entry
        .message_attributes
        .iter()
        .flatten()
        .map(|(name, a)| {
            name.len()
                + a.data_type.len()
                + a.string_value.as_deref().map_or(0, str::len)
                + a.binary_value.as_ref().map_or(0, |b| b.as_ref().len())
        })
        .sum();
    entry.message_body.len() + attributes
}

/// Applies the schedule to a batch's failed records through SQS.
pub struct VisibilityBackoff {
    client: aws_sdk_sqs::Client,
    settings: BackoffSettings,
    /// When the last of the delayed copies this process re-enqueued becomes visible.
    copies_due: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl VisibilityBackoff {
    pub fn new(client: aws_sdk_sqs::Client, settings: BackoffSettings) -> Self {
        Self { client, settings, copies_due: std::sync::Mutex::new(None) }
    }

    /// When the last delayed copy this process put back on a queue becomes visible (`None`: it
    /// never re-enqueued one). A `consume` worker is not idle before then: the copies are its own
    /// work still to come.
    pub fn copies_due(&self) -> Option<tokio::time::Instant> {
        *self.copies_due.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn copy_due_in(&self, delay: Duration) {
        let due = tokio::time::Instant::now() + delay;
        let mut last = self.copies_due.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(last.map_or(due, |l| l.max(due)));
    }

    /// Puts a delayed copy of every deferred record back on its queue and marks the record
    /// `requeued` (acknowledged: the deferral spends no receive). A record whose copy could not be
    /// sent stays a failure and comes back on the deferred schedule instead. Returns how many
    /// were requeued.
    pub async fn requeue_deferred(&self, event: &SqsEvent, report: &mut BatchReport, queue_url: Option<&str>) -> usize {
        let mut by_queue: BTreeMap<String, Vec<(usize, SendMessageBatchRequestEntry)>> = BTreeMap::new();
        for (i, (record, r)) in event.records.iter().zip(&report.records).enumerate() {
            if !matches!(r.outcome, RecordOutcome::Deferred { requeued: false, .. }) {
                continue;
            }
            let Some(url) = url_of(record, queue_url) else { continue };
            if let Some(entry) = deferred_copy(format!("q{i}"), record, r, &self.settings) {
                by_queue.entry(url).or_default().push((i, entry));
            }
        }
        let mut requeued = 0;
        for (url, entries) in by_queue {
            let mut chunks: Vec<Vec<(usize, SendMessageBatchRequestEntry)>> = Vec::new();
            let mut bytes = 0;
            for (i, entry) in entries {
                let size = entry_size(&entry);
                match chunks.last_mut() {
                    Some(chunk) if chunk.len() < 10 && bytes + size <= MAX_BATCH_BYTES => {
                        bytes += size;
                        chunk.push((i, entry));
                    }
                    _ => {
                        bytes = size;
                        chunks.push(vec![(i, entry)]);
                    }
                }
            }
            for chunk in chunks {
                let index: HashMap<String, (usize, i32)> =
                    chunk.iter().map(|(i, e)| (e.id.clone(), (*i, e.delay_seconds.unwrap_or(0)))).collect();
                let sent = self
                    .client
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(chunk.into_iter().map(|(_, e)| e).collect()))
                    .send()
                    .await;
                match sent {
                    Ok(out) => {
                        for ok in out.successful {
                            if let Some(&(i, delay)) = index.get(&ok.id)
                                && let RecordOutcome::Deferred { requeued: flag, .. } = &mut report.records[i].outcome
                            {
                                *flag = true;
                                requeued += 1;
                                self.copy_due_in(Duration::from_secs(u64::try_from(delay).unwrap_or(0)));
                            }
                        }
                        for f in out.failed {
                            tracing::warn!(queue = %url, id = %f.id, code = %f.code, "re-enqueueing a deferred order was refused; it comes back on the deferred schedule");
                        }
                    }
                    Err(e) => {
                        let e = from_sdk(Service::Sqs, "SendMessageBatch", &e);
                        tracing::warn!(queue = %url, error = %e, "re-enqueueing deferred orders failed; they come back on the deferred schedule");
                    }
                }
            }
        }
        requeued
    }

    /// Changes the visibility of every failed record. `queue_url` overrides the URL derived from
    /// each record's `eventSourceARN` (the `consume` worker knows its queue's exact URL).
    /// Returns how many records were changed.
    pub async fn apply(&self, event: &SqsEvent, report: &BatchReport, queue_url: Option<&str>) -> usize {
        let failed = event
            .records
            .iter()
            .zip(&report.records)
            .enumerate()
            .filter(|(_, (_, r))| !r.outcome.is_acknowledged())
            .map(|(i, (record, r))| (i, record, r.outcome.clone(), r.receive_count))
            .collect();
        self.change_visibility(failed, queue_url).await
    }

    /// The same for a batch from the SES events queue: a body that is not a usable event is a
    /// permanent failure (back at once, so it reaches the events DLQ within seconds), a ledger
    /// failure a transient one.
    pub async fn apply_to_events(&self, event: &SqsEvent, report: &EventBatchReport, queue_url: Option<&str>) -> usize {
        let failed = event
            .records
            .iter()
            .zip(&report.records)
            .enumerate()
            .filter_map(|(i, (record, r))| {
                let outcome = match &r.outcome {
                    EventOutcome::Invalid { rule } => RecordOutcome::Invalid { reason: rule.clone() },
                    EventOutcome::LedgerUnavailable { error } => {
                        RecordOutcome::TransientFailure { reason: error.clone() }
                    }
                    EventOutcome::Applied | EventOutcome::Unknown | EventOutcome::Contradiction { .. } => return None,
                };
                Some((i, record, outcome, receive_count(record)))
            })
            .collect();
        self.change_visibility(failed, queue_url).await
    }

    /// Sets each failed record's visibility timeout from its outcome ([`visibility_for`]), in
    /// batches of 10 per queue. Returns how many were changed.
    async fn change_visibility(
        &self,
        failed: Vec<(usize, &SqsMessage, RecordOutcome, u32)>,
        queue_url: Option<&str>,
    ) -> usize {
        let last =
            failed_on_last_receive(failed.iter().map(|f| (f.1, f.3)), self.settings.max_receive_count, queue_url);
        crate::metrics::record_failed_on_last_receive(&last);
        let mut by_queue: BTreeMap<String, Vec<ChangeMessageVisibilityBatchRequestEntry>> = BTreeMap::new();
        for (i, record, outcome, receive_count) in failed {
            let Some(handle) = record.receipt_handle.as_deref() else { continue };
            let Some(url) = url_of(record, queue_url) else { continue };
            let timeout = visibility_for(&outcome, receive_count, &self.settings, rand::random::<f64>());
            tracing::debug!(
                message_id = record.message_id.as_deref().unwrap_or("-"),
                outcome = outcome.name(),
                receive_count,
                visibility_seconds = timeout.as_secs(),
                "retry scheduled"
            );
            if let Ok(entry) = ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("r{i}"))
                .receipt_handle(handle)
                .visibility_timeout(timeout.as_secs() as i32)
                .build()
            {
                by_queue.entry(url).or_default().push(entry);
            }
        }
        let mut changed = 0;
        for (url, entries) in by_queue {
            for chunk in entries.chunks(10) {
                match self
                    .client
                    .change_message_visibility_batch()
                    .queue_url(&url)
                    .set_entries(Some(chunk.to_vec()))
                    .send()
                    .await
                {
                    Ok(out) => {
                        changed += out.successful.len();
                        for f in out.failed {
                            tracing::warn!(queue = %url, id = %f.id, code = %f.code, "visibility change refused; the message returns after the queue's default timeout");
                        }
                    }
                    Err(e) => {
                        let e = from_sdk(Service::Sqs, "ChangeMessageVisibilityBatch", &e);
                        tracing::warn!(queue = %url, error = %e, "visibility change failed; the messages return after the queue's default timeout");
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests;
