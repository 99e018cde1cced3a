//! A mailer that writes each confirmation as an RFC 5322 message (`.eml`) into a directory: the
//! embedded default, so `make run` shows real mail without an account. Open a file with any mail
//! client to see both parts.
//!
//! It also plays SES's part after the send, so the delivery loop runs without AWS (docs/design.md,
//! "Delivery events"): for each mail it writes the SES events SES would publish, as the events
//! queue would deliver them (an SQS batch whose bodies are EventBridge events), into `ses-events/`
//! beside the outbox directory; `invoke` on such a file runs the function's delivery path. What
//! happens to a mail follows SES's mailbox simulator and a local suppression list:
//!
//! | recipient | events |
//! |---|---|
//! | listed in `suppression-list.txt` beside the outbox (one address a line), or `suppressionlist@simulator.amazonses.com` | Send, Bounce (`Permanent`/`OnAccountSuppressionList`) |
//! | `bounce@simulator.amazonses.com` | Send, Bounce (`Permanent`/`General`, 5.1.1) |
//! | `complaint@simulator.amazonses.com` | Send, Delivery, Complaint |
//! | anyone else | Send, Delivery |
//!
//! (`+label` in a simulator address is allowed, as SES allows it.)

use super::Mailer;
use crate::error::BackendError;
use crate::order::Order;
use crate::render::Mail;
use crate::ses_event::{MailTags, rfc3339};
use mail_builder::MessageBuilder;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

pub struct OutboxMailer {
    dir: PathBuf,
    sender: String,
    /// Where the simulated SES events go: `ses-events/` beside the outbox directory.
    events_dir: PathBuf,
    /// Addresses that bounce as SES's account suppression list would make them (lower case).
    suppressed: HashSet<String>,
}

/// The local suppression list, beside the outbox directory.
pub const SUPPRESSION_LIST: &str = "suppression-list.txt";
/// The queue the simulated events name as their source: its `-ses-events` suffix routes them to
/// the delivery path.
const LOCAL_EVENTS_QUEUE_ARN: &str = "arn:aws:sqs:local:000000000000:outbox-ses-events";

impl OutboxMailer {
    /// Creates the directories if needed, so a wrong path fails at start-up, not per message, and
    /// reads the local suppression list once.
    pub fn new(dir: impl AsRef<Path>, sender: impl Into<String>) -> Result<Self, BackendError> {
        let dir = dir.as_ref().to_path_buf();
        let beside = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let events_dir = beside.join("ses-events");
        for d in [&dir, &events_dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| BackendError::fatal(format!("cannot create outbox {}: {e}", d.display())))?;
        }
        let suppressed = match std::fs::read_to_string(beside.join(SUPPRESSION_LIST)) {
            Ok(text) => text.lines().map(|l| l.trim().to_ascii_lowercase()).filter(|l| !l.is_empty()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => {
                return Err(BackendError::fatal(format!(
                    "cannot read the local suppression list {}: {e}",
                    beside.join(SUPPRESSION_LIST).display()
                )));
            }
        };
        Ok(Self { dir, sender: sender.into(), events_dir, suppressed })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the simulated SES events of each mail are written.
    pub fn events_dir(&self) -> &Path {
        &self.events_dir
    }

    /// What SES would do with a mail to `address`: the events after its Send.
    fn fate(&self, address: &str) -> Fate {
        let address = address.to_ascii_lowercase();
        let simulator = address.split_once('@').filter(|(_, d)| *d == "simulator.amazonses.com").map(|(local, _)| {
            // SES's simulator accepts `bounce+label@…`.
            local.split('+').next().unwrap_or(local).to_owned()
        });
        match simulator.as_deref() {
            _ if self.suppressed.contains(&address) => Fate::Suppressed,
            Some("suppressionlist") => Fate::Suppressed,
            Some("bounce") => Fate::Bounced,
            Some("complaint") => Fate::Complained,
            _ => Fate::Delivered,
        }
    }

    /// Writes the SES events of one sent mail as one SQS batch file. Best effort, as SES's own
    /// publishing is: a failure is logged and the mail stays sent.
    async fn write_events(&self, name: &str, order: &Order, tags: &MailTags, at: OffsetDateTime) {
        use crate::ses_event::EventType;
        use serde_json::json;
        let to = order.customer_email.as_str();
        let later = at + time::Duration::seconds(1);
        let mut events = vec![(EventType::Send, at, json!({}))];
        match self.fate(to) {
            Fate::Delivered => events.push((EventType::Delivery, later, delivery_object(to, later))),
            Fate::Complained => {
                events.push((EventType::Delivery, later, delivery_object(to, later)));
                let when = at + time::Duration::seconds(2);
                events.push((
                    EventType::Complaint,
                    when,
                    json!({"complainedRecipients": [{"emailAddress": to}], "timestamp": rfc3339(when),
                           "feedbackId": uuid::Uuid::new_v4().to_string(), "complaintFeedbackType": "abuse"}),
                ));
            }
            fate @ (Fate::Bounced | Fate::Suppressed) => {
                let (sub_type, status) =
                    if fate == Fate::Bounced { ("General", "5.1.1") } else { ("OnAccountSuppressionList", "5.1.1") };
                events.push((
                    EventType::Bounce,
                    later,
                    json!({"bounceType": "Permanent", "bounceSubType": sub_type, "timestamp": rfc3339(later),
                           "feedbackId": uuid::Uuid::new_v4().to_string(),
                           "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": status}]}),
                ));
            }
        }
        let records: Vec<serde_json::Value> = events
            .into_iter()
            .map(|(event_type, when, object)| {
                let body = crate::ses_event::eventbridge_body(event_type, name, tags, to, at, when, object);
                json!({"messageId": uuid::Uuid::new_v4().to_string(), "receiptHandle": "outbox", "body": body,
                       "attributes": {"ApproximateReceiveCount": "1",
                                      "SentTimestamp": (when.unix_timestamp_nanos() / 1_000_000).to_string()},
                       "messageAttributes": {}, "eventSource": "aws:sqs",
                       "eventSourceARN": LOCAL_EVENTS_QUEUE_ARN, "awsRegion": "local"})
            })
            .collect();
        let file = self.events_dir.join(name.replace(".eml", ".json"));
        let batch = json!({"Records": records}).to_string();
        if let Err(e) = tokio::fs::write(&file, batch).await {
            tracing::warn!(file = %file.display(), error = %e, "writing the simulated SES events failed");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Delivered,
    Bounced,
    Suppressed,
    Complained,
}

fn delivery_object(to: &str, at: OffsetDateTime) -> serde_json::Value {
    serde_json::json!({"timestamp": rfc3339(at), "processingTimeMillis": 1000, "recipients": [to],
                       "smtpResponse": "250 2.0.0 OK (outbox)", "reportingMTA": "outbox.local"})
}

#[async_trait::async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, order: &Order, mail: &Mail, tags: &MailTags) -> Result<String, BackendError> {
        let id = uuid::Uuid::new_v4();
        let now = OffsetDateTime::now_utc();
        let message = MessageBuilder::new()
            .from(("Order confirmations", self.sender.as_str()))
            .to((order.customer_name.as_str(), order.customer_email.as_str()))
            .subject(mail.subject.as_str())
            .date(now.unix_timestamp())
            .message_id(format!("{id}@order-confirmation.local"))
            .header("X-Order-Id", mail_builder::headers::raw::Raw::new(order.order_id.as_str()))
            .header("X-Priority-Class", mail_builder::headers::raw::Raw::new(order.priority.as_str()))
            // The header SES reads tags from in a raw mail: the same tags SES would publish.
            .header("X-SES-MESSAGE-TAGS", mail_builder::headers::raw::Raw::new(tags_header(tags)))
            .text_body(mail.text.as_str())
            .html_body(mail.html.as_str())
            .write_to_vec()
            .map_err(|e| BackendError::transient(format!("building the message failed: {e}")))?;
        // The timestamp first keeps the directory listing in send order; the id part makes a
        // duplicate send visible as a second file instead of overwriting the first.
        let name =
            format!("{}-{}-{}.eml", now.unix_timestamp_nanos() / 1_000_000, order.order_id, &id.to_string()[..8]);
        tokio::fs::write(self.dir.join(&name), message)
            .await
            .map_err(|e| BackendError::transient(format!("writing {name} failed: {e}")))?;
        self.write_events(&name, order, tags, now).await;
        Ok(name)
    }
}

/// `name=value, name=value`: the form of SES's `X-SES-MESSAGE-TAGS` header.
pub fn tags_header(tags: &MailTags) -> String {
    tags.pairs().iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_mail_carries_the_order_id_and_claim_token_tags_in_the_header_ses_reads() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(dir.path().join("outbox"), "orders@example.com").unwrap();
        let body = r#"{"order_id": "ORD-7.1:a", "customer_email": "a@example.com", "customer_name": "A"}"#;
        let order = crate::decode::decode(body).unwrap().order;
        let mail = crate::render::render(&order, &Default::default()).unwrap();
        let token = uuid::Uuid::new_v4();
        let tags = MailTags { order_id: order.order_id.clone(), claim_token: token };
        let name = outbox.send(&order, &mail, &tags).await.unwrap();
        // Long headers are folded (RFC 5322 2.2.3); unfold before reading.
        let text = std::fs::read_to_string(dir.path().join("outbox").join(name)).unwrap().replace("\r\n ", " ");
        assert!(text.contains(&format!("X-SES-MESSAGE-TAGS: order_id=ORD-7_d1_ca, claim_token={token}\r\n")), "{text}");
    }

    /// The events written for one mail, read back through the function's own parser.
    fn events_of(outbox: &OutboxMailer, name: &str) -> Vec<crate::ses_event::DeliveryEvent> {
        let file = outbox.events_dir().join(name.replace(".eml", ".json"));
        let batch: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        batch["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(crate::delivery::is_events_queue(r["eventSourceARN"].as_str().unwrap()));
                crate::ses_event::DeliveryEvent::parse(r["body"].as_str().unwrap()).unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn each_mail_gets_the_ses_events_the_simulator_and_the_suppression_list_call_for() {
        use crate::ses_event::{DeliveryState, Effect};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SUPPRESSION_LIST), "Gone@Example.com\n\n").unwrap();
        let outbox = OutboxMailer::new(dir.path().join("outbox"), "orders@example.com").unwrap();
        let cases = [
            ("a@example.com", vec![Effect::Send, Effect::State(DeliveryState::Delivered)], ""),
            (
                "gone@example.com",
                vec![Effect::Send, Effect::State(DeliveryState::Bounced)],
                "Permanent/OnAccountSuppressionList 5.1.1",
            ),
            (
                "bounce+x@simulator.amazonses.com",
                vec![Effect::Send, Effect::State(DeliveryState::Bounced)],
                "Permanent/General 5.1.1",
            ),
            (
                "complaint@simulator.amazonses.com",
                vec![Effect::Send, Effect::State(DeliveryState::Delivered), Effect::State(DeliveryState::Complained)],
                "feedback type abuse",
            ),
        ];
        for (i, (address, effects, detail)) in cases.into_iter().enumerate() {
            let body = format!(r#"{{"order_id": "ORD-{i}", "customer_email": "{address}", "customer_name": "A"}}"#);
            let order = crate::decode::decode(&body).unwrap().order;
            let mail = crate::render::render(&order, &Default::default()).unwrap();
            let tags = MailTags { order_id: order.order_id.clone(), claim_token: uuid::Uuid::new_v4() };
            let name = outbox.send(&order, &mail, &tags).await.unwrap();
            let events = events_of(&outbox, &name);
            assert_eq!(events.iter().map(|e| e.effect).collect::<Vec<_>>(), effects, "{address}");
            assert!(events.iter().all(|e| e.message_id.as_str() == name && e.order_id == Some(order.order_id.clone())));
            assert!(events.iter().all(|e| e.claim_token == Some(tags.claim_token)));
            assert_eq!(events.last().unwrap().detail, detail, "{address}");
        }
    }
}
