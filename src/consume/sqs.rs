//! The SQS side of `consume`: the queues it polls, each received message as the record Lambda's
//! event source mapping would deliver, and the deletes of what a batch acknowledged.

use crate::error::{BackendError, Service, from_sdk};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, QueueAttributeName};

/// A queue as `consume` polls it: its URL, and the ARN and region its records carry.
pub(super) struct Queue {
    pub(super) url: String,
    pub(super) arn: String,
    pub(super) region: String,
}

/// The queue behind `url`, read once at start-up.
pub(super) async fn describe(client: &Client, url: &str) -> Result<Queue, BackendError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| from_sdk(Service::Sqs, "GetQueueAttributes", &e))?;
    let arn = out
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| BackendError::fatal(format!("queue {url} has no QueueArn")))?;
    let region = arn.split(':').nth(3).unwrap_or_default().to_owned();
    Ok(Queue { url: url.to_owned(), arn, region })
}

/// The record exactly as Lambda's event source mapping would deliver it.
pub(super) fn to_record(queue: &Queue, m: Message) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = m.message_id;
    r.receipt_handle = m.receipt_handle;
    r.body = m.body;
    r.md5_of_body = m.md5_of_body;
    r.md5_of_message_attributes = m.md5_of_message_attributes;
    r.attributes = m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
    r.message_attributes = m
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let mut a = SqsMessageAttribute::default();
            a.string_value = v.string_value;
            a.data_type = Some(v.data_type);
            (k, a)
        })
        .collect();
    r.event_source = Some("aws:sqs".into());
    r.event_source_arn = Some(queue.arn.clone());
    r.aws_region = Some(queue.region.clone());
    r
}

/// Deletes the acknowledged records of a batch (`acknowledged[i]` for `event.records[i]`);
/// returns how many SQS deleted. A refused or failed delete only costs a redelivery, which the
/// ledger acknowledges as already sent.
pub(super) async fn delete_acknowledged(
    client: &Client,
    queue_url: &str,
    event: &SqsEvent,
    acknowledged: &[bool],
) -> u64 {
    let entries: Vec<DeleteMessageBatchRequestEntry> = event
        .records
        .iter()
        .zip(acknowledged)
        .enumerate()
        .filter(|(_, (_, acknowledged))| **acknowledged)
        .filter_map(|(i, (m, _))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    if entries.is_empty() {
        return 0;
    }
    match client.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await {
        Ok(out) => {
            for f in out.failed {
                tracing::warn!(id = %f.id, code = %f.code, "delete refused; the message will be redelivered and acknowledged as already_sent");
            }
            out.successful.len() as u64
        }
        Err(e) => {
            let e = from_sdk(Service::Sqs, "DeleteMessageBatch", &e);
            tracing::warn!(error = %e, "delete failed; the messages will be redelivered and acknowledged as already_sent");
            0
        }
    }
}
