//! SES's side of event publishing, for the local services: each mail the SES emulator accepted
//! (announced by the fault proxy, [`super::faults::FaultProxy::witness_sends`]) becomes the Send
//! event SES would publish through EventBridge, in the shape of `events/ses-send.json`, and
//! reaches the function as an SQS record of the SES events queue. The emulator publishes no
//! events itself; this is the only hand-built part of that path.
#![allow(dead_code)]

use super::faults::AcceptedSend;
use aws_lambda_events::sqs::SqsMessage;
use order_confirmation::ses_event::{EventType, MailTags, eventbridge_body};

/// The queue the events arrive on (its name ends in `-ses-events`, as the template names it).
pub const EVENTS_QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:order-confirmation-ses-events";

/// The EventBridge event (`detail-type: Email Sent`) SES publishes for an accepted mail, built by
/// the same function as the outbox's simulated events. The mail must carry the `order_id` and
/// `claim_token` tags (the service's mails always do).
pub fn send_event_body(sent: &AcceptedSend) -> String {
    event_body(sent, EventType::Send)
}

/// Any event SES publishes about an accepted mail, `event_type` (its object empty: what the
/// ledger reads of a Send or a Delivery is the mail and its tags), built like
/// [`send_event_body`].
pub fn event_body(sent: &AcceptedSend, event_type: EventType) -> String {
    let tag = |name: &str| sent.tag(name).unwrap_or_else(|| panic!("the mail has no {name} tag: {:?}", sent.tags));
    let tags = MailTags {
        order_id: MailTags::parse_order_id(tag("order_id")).expect("an order_id tag the service wrote"),
        claim_token: uuid::Uuid::try_parse(tag("claim_token")).expect("a claim_token tag the service wrote"),
    };
    let at = time::OffsetDateTime::from(sent.at);
    let to = sent.to.first().map_or("", String::as_str);
    eventbridge_body(event_type, &sent.message_id, &tags, to, at, at, serde_json::json!({}))
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
) -> order_confirmation::batch::EventBatchReport {
    deliver_event(ledger, sent, EventType::Send).await
}

/// Hands SES's `event_type` event for `sent` to the function's SES events path, as
/// [`deliver_send_event`] does.
pub async fn deliver_event(
    ledger: &dyn order_confirmation::ledger::LedgerOps,
    sent: &AcceptedSend,
    event_type: EventType,
) -> order_confirmation::batch::EventBatchReport {
    let mut event = aws_lambda_events::sqs::SqsEvent::default();
    event.records = vec![events_record(event_body(sent, event_type))];
    let report = order_confirmation::delivery::handle(ledger, &event).await;
    assert!(report.records.iter().all(|r| r.is_acknowledged()), "the Send event was not applied: {}", report.summary());
    report
}
