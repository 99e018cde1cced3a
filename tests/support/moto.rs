//! A real SQS API for the end-to-end tests: moto's server (installed in `.venv` by the Makefile),
//! one per test on a free port, with queues created through the real SDK.
#![allow(dead_code)]

use super::services::{free_port, start_emulator};
use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::QueueAttributeName;
use std::path::PathBuf;

pub struct Moto {
    child: tokio::process::Child,
    pub url: String,
    pub client: aws_sdk_sqs::Client,
}

/// A queue with its DLQ.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub url: String,
    pub dlq_url: String,
}

impl Moto {
    pub async fn start() -> Self {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(bin.exists(), "{} is missing: `make test` installs it into .venv", bin.display());
        Self::start_with(|| tokio::process::Command::new(&bin)).await
    }

    /// moto with its per-message hot spots made cheap (`moto_server.py` says which and why), for
    /// runs that keep tens of thousands of messages waiting (the soak).
    pub async fn start_for_load() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: `make test` installs .venv", python.display());
        Self::start_with(|| {
            let mut c = tokio::process::Command::new(&python);
            c.arg(root.join("tests/support/moto_server.py"));
            c
        })
        .await
    }

    async fn start_with(program: impl Fn() -> tokio::process::Command) -> Self {
        let command = |port: u16| {
            let mut c = program();
            c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            c
        };
        let answers = async |url: &str| super::services::http_get(url).await.is_ok();
        let (child, url) = start_emulator("moto_server", free_port(), command, answers).await;
        let client = sqs_client(&url).await;
        Self { child, url, client }
    }

    /// A queue whose messages move to its DLQ after `max_receive` receives.
    pub async fn queue_pair(&self, name: &str, max_receive: u32, visibility_seconds: u32) -> QueuePair {
        let dlq_url =
            self.client.create_queue().queue_name(format!("{name}-dlq")).send().await.unwrap().queue_url.unwrap();
        let dlq_arn = self.arn(&dlq_url).await;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()});
        let url = self
            .client
            .create_queue()
            .queue_name(name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .attributes(QueueAttributeName::VisibilityTimeout, visibility_seconds.to_string())
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        QueuePair { url, dlq_url }
    }

    pub async fn arn(&self, url: &str) -> String {
        self.client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap()
    }

    pub async fn send(&self, url: &str, body: &str) {
        self.client.send_message().queue_url(url).message_body(body).send().await.unwrap();
    }

    /// Up to `max` messages received from `url` (waiting up to `wait_seconds`), as the event an
    /// event source mapping would deliver: receipt handles, attributes and the queue's ARN.
    pub async fn receive_event(&self, url: &str, wait_seconds: i32) -> aws_lambda_events::sqs::SqsEvent {
        let arn = self.arn(url).await;
        let received = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let mut event = aws_lambda_events::sqs::SqsEvent::default();
        for m in received.messages.unwrap_or_default() {
            let mut rec =
                super::record(m.message_id.as_deref().unwrap_or_default(), m.body.as_deref().unwrap_or_default());
            rec.receipt_handle = m.receipt_handle.clone();
            rec.event_source_arn = Some(arn.clone());
            rec.attributes =
                m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
            event.records.push(rec);
        }
        event
    }

    /// (visible, not visible) message counts.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let n = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            n(&QueueAttributeName::ApproximateNumberOfMessages),
            n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Every message now in a queue (received with a short visibility, so they stay), with its
    /// `ApproximateReceiveCount` as of this receive.
    pub async fn drain_view(&self, url: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for _ in 0..10 {
            let r = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                out.push((m.body.unwrap_or_default(), count));
            }
        }
        out
    }
}

/// The real SQS client, pointed at a moto on `url`.
async fn sqs_client(url: &str) -> aws_sdk_sqs::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(url)
        .load()
        .await;
    order_confirmation::aws::sqs_client(&sdk)
}
