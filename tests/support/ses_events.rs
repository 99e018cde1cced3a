//! SES's side of event publishing, for the local services: each mail the SES emulator accepted
//! (announced by the fault proxy, [`super::faults::FaultProxy::witness_sends`]) becomes the Send
//! event SES would publish through EventBridge, in the shape of `events/ses-send.json`, and
//! reaches the function as an SQS record of the SES events queue. The emulator publishes no
//! events itself; this is the only hand-built part of that path.
#![allow(dead_code)]

use super::faults::AcceptedSend;
use aws_lambda_events::sqs::SqsMessage;
use time::format_description::well_known::Rfc3339;

/// The queue the events arrive on (its name ends in `-ses-events`, as the template names it).
pub const EVENTS_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:order-confirmation-ses-events";
const CONFIGURATION_SET: &str = "order-confirmations";

/// The EventBridge event (`detail-type: Email Sent`) SES publishes for an accepted mail.
pub fn send_event_body(sent: &AcceptedSend) -> String {
    let at = time::OffsetDateTime::from(sent.at);
    let mail_time = at.format(&Rfc3339).unwrap_or_default();
    let mut tags = serde_json::Map::new();
    tags.insert("ses:operation".into(), serde_json::json!(["SendEmail"]));
    tags.insert("ses:configuration-set".into(), serde_json::json!([CONFIGURATION_SET]));
    for (name, value) in &sent.tags {
        tags.insert(name.clone(), serde_json::json!([value]));
    }
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Email Sent",
        "source": "aws.ses",
        "account": "123456789012",
        "time": mail_time,
        "region": "us-east-1",
        "resources": [format!("arn:aws:ses:us-east-1:123456789012:configuration-set/{CONFIGURATION_SET}")],
        "detail": {
            "eventType": "Send",
            "mail": {
                "timestamp": mail_time,
                "source": sent.from,
                "sendingAccountId": "123456789012",
                "messageId": sent.message_id,
                "destination": sent.to,
                "headersTruncated": false,
                "commonHeaders": {"from": [sent.from], "to": sent.to, "messageId": sent.message_id},
                "tags": tags,
            },
            "send": {},
        },
    })
    .to_string()
}

/// One record of the SES events queue carrying `body`.
pub fn events_record(body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(uuid::Uuid::new_v4().to_string());
    m.body = Some(body);
    m.event_source = Some("aws:sqs".into());
    m.event_source_arn = Some(EVENTS_QUEUE_ARN.into());
    m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    m
}

/// Hands SES's Send event for `sent` to the function's SES events path (the code Lambda runs for a
/// batch of the events queue), as that queue would deliver it.
pub async fn deliver_send_event(
    ledger: &dyn order_confirmation::ledger::LedgerOps,
    sent: &AcceptedSend,
) -> order_confirmation::delivery::EventBatchReport {
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![events_record(send_event_body(sent))];
    let report = order_confirmation::delivery::handle(ledger, &event).await;
    assert!(report.records.iter().all(|r| r.is_acknowledged()), "the Send event was not applied: {}", report.summary());
    report
}
