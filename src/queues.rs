//! Queue depths for `stats`: messages waiting, in flight, and in each queue's DLQ (found through
//! the queue's redrive policy).

use crate::error::{BackendError, Service, from_sdk};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    pub queue_url: String,
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received and not yet deleted (in flight or
    /// waiting out a retry backoff).
    pub in_flight: u64,
    /// `ApproximateNumberOfMessagesDelayed`: deferred orders' copies waiting out their delay (and
    /// any message a producer sent with one). At a peak the backlog sits here, neither visible nor
    /// in flight. Not called "delayed": that word is SES's delivery delay.
    pub deferred: u64,
    pub dlq_url: Option<String>,
    /// Messages in the DLQ: each one is an order that needs a person.
    pub dlq_visible: Option<u64>,
}

async fn attributes(
    client: &Client,
    url: &str,
) -> Result<std::collections::HashMap<QueueAttributeName, String>, BackendError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| from_sdk(Service::Sqs, "GetQueueAttributes", &e))?;
    Ok(out.attributes.unwrap_or_default())
}

fn count(attrs: &std::collections::HashMap<QueueAttributeName, String>, name: QueueAttributeName) -> u64 {
    attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub async fn depths(client: &Client, urls: &[String]) -> Result<Vec<QueueDepth>, BackendError> {
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let attrs = attributes(client, url).await?;
        let dlq_name = attrs
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned))
            .and_then(|arn| arn.rsplit(':').next().map(str::to_owned));
        let (dlq_url, dlq_visible) = match dlq_name {
            Some(name) => {
                let dlq_url = client
                    .get_queue_url()
                    .queue_name(&name)
                    .send()
                    .await
                    .map_err(|e| from_sdk(Service::Sqs, "GetQueueUrl", &e))?
                    .queue_url
                    .unwrap_or_default();
                let dlq = attributes(client, &dlq_url).await?;
                (Some(dlq_url), Some(count(&dlq, QueueAttributeName::ApproximateNumberOfMessages)))
            }
            None => (None, None),
        };
        out.push(QueueDepth {
            queue_url: url.clone(),
            visible: count(&attrs, QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(&attrs, QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            deferred: count(&attrs, QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            dlq_url,
            dlq_visible,
        });
    }
    Ok(out)
}
