//! SES's own account of each mail, as it reaches this function (docs/design.md, "Delivery
//! events"): SES publishes through the configuration set's EventBridge destination to the default
//! event bus; a rule forwards the events of our configuration set to an SQS queue; the consumer
//! reads that queue like the order queues. Each SQS body is one EventBridge event whose `detail` is
//! the SES event record (`eventType`, `mail`, and one object named after the type).
//!
//! Pure: [`DeliveryEvent::parse`] turns one body into a typed event or an [`EventRejection`] that
//! names the field and the rule, never the value (an SES event carries the customer's address in
//! `mail.destination`, the recipients lists and the headers; none of it is kept or logged).
//!
//! The mail's tags tie an event to its order: [`MailTags`] are set on every mail by the mailers
//! (`order_id` and `claim_token`) and come back in `mail.tags`.

use crate::order::OrderId;
use serde_json::Value;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// The tag that carries the order id (encoded for SES's tag alphabet, see [`MailTags::order_id_value`]).
pub const ORDER_ID_TAG: &str = "order_id";
/// The tag that carries the claim token of the invocation that sent the mail.
pub const CLAIM_TOKEN_TAG: &str = "claim_token";
/// The tag that carries the priority (set before delivery events existed; kept for CloudWatch).
pub const PRIORITY_TAG: &str = "priority";

/// The tags every confirmation mail carries, so SES's events name the order and the claim that
/// sent it. SES allows only `A–Z a–z 0–9 _ -` in tag values (at most 256 characters), and an order
/// id may also hold `.` and `:`: the value escapes them reversibly (`_` → `__`, `.` → `_d`,
/// `:` → `_c`), so `ORD-1001` stays `ORD-1001` and 64 characters become at most 128.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTags {
    pub order_id: OrderId,
    pub claim_token: Uuid,
}

impl MailTags {
    /// The `order_id` tag's value.
    pub fn order_id_value(&self) -> String {
        let mut out = String::with_capacity(self.order_id.as_str().len());
        for c in self.order_id.as_str().chars() {
            match c {
                '_' => out.push_str("__"),
                '.' => out.push_str("_d"),
                ':' => out.push_str("_c"),
                c => out.push(c),
            }
        }
        out
    }

    /// The `claim_token` tag's value: the hyphenated UUID, already in SES's alphabet.
    pub fn claim_token_value(&self) -> String {
        self.claim_token.hyphenated().to_string()
    }

    /// Name and value of each tag, as the mailers set them.
    pub fn pairs(&self) -> [(&'static str, String); 2] {
        [(ORDER_ID_TAG, self.order_id_value()), (CLAIM_TOKEN_TAG, self.claim_token_value())]
    }

    /// The order id back from an `order_id` tag value; the error names the rule only.
    pub fn parse_order_id(value: &str) -> Result<OrderId, &'static str> {
        let mut out = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '_' => match chars.next() {
                    Some('_') => out.push('_'),
                    Some('d') => out.push('.'),
                    Some('c') => out.push(':'),
                    _ => return Err("tag order_id has an underscore not followed by _, d or c"),
                },
                c => out.push(c),
            }
        }
        OrderId::parse(&out).map_err(|_| "tag order_id is not a valid order id")
    }
}

/// The SES message id (or, from the local outbox, the file name): the key the ledger keeps for a
/// sent mail. 1–256 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SesMessageId(String);

impl SesMessageId {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 256 {
            return Err("mail.messageId must be 1-256 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("mail.messageId must be visible ASCII characters");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SesMessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SES event types this service subscribes to, with their EventBridge `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Send,
    Delivery,
    Bounce,
    Complaint,
    Reject,
    DeliveryDelay,
    RenderingFailure,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        Self::Send,
        Self::Delivery,
        Self::Bounce,
        Self::Complaint,
        Self::Reject,
        Self::DeliveryDelay,
        Self::RenderingFailure,
    ];

    /// `detail.eventType` as SES writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "Send",
            Self::Delivery => "Delivery",
            Self::Bounce => "Bounce",
            Self::Complaint => "Complaint",
            Self::Reject => "Reject",
            Self::DeliveryDelay => "DeliveryDelay",
            Self::RenderingFailure => "Rendering Failure",
        }
    }

    /// The EventBridge `detail-type` SES gives this event.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Send => "Email Sent",
            Self::Delivery => "Email Delivered",
            Self::Bounce => "Email Bounced",
            Self::Complaint => "Email Complaint Received",
            Self::Reject => "Email Rejected",
            Self::DeliveryDelay => "Email Delivery Delayed",
            Self::RenderingFailure => "Email Rendering Failed",
        }
    }

    /// The event destination's `MatchingEventTypes` value in CloudFormation
    /// (`AWS::SES::ConfigurationSetEventDestination`, template.yaml): the lower-camel names, which
    /// CloudFormation has always accepted (the SES v2 API's `DELIVERY_DELAY` form was refused there
    /// until 2025).
    pub fn matching_name(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Delivery => "delivery",
            Self::Bounce => "bounce",
            Self::Complaint => "complaint",
            Self::Reject => "reject",
            Self::DeliveryDelay => "deliveryDelay",
            Self::RenderingFailure => "renderingFailure",
        }
    }

    /// The object in `detail` that describes this event.
    fn object_key(self) -> &'static str {
        match self {
            Self::RenderingFailure => "failure",
            other => other.matching_name(),
        }
    }

    fn from_event_type(s: &str) -> Option<Self> {
        // SES writes "Rendering Failure" in event records and RENDERING_FAILURE in the API.
        Self::ALL.into_iter().find(|t| t.as_str() == s || (s == "RenderingFailure" && *t == Self::RenderingFailure))
    }

    fn from_detail_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.detail_type() == s)
    }
}

/// An order's delivery state, from SES's events. Higher [`rank`](Self::rank) wins: a state is
/// replaced only by a stronger one, so redelivered and out-of-order events converge on the same
/// state, and a late Delivery never hides a Bounce or a Complaint (docs/design.md, "Delivery
/// events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryState {
    /// SES is still retrying (DeliveryDelay): not yet delivered, not yet failed.
    Delayed,
    /// The recipient's mail server accepted the mail.
    Delivered,
    /// SES gave up after retrying (a transient or undetermined bounce: mailbox full, too large…).
    SoftBounced,
    /// SES could not render the mail (templated sends only; never sent).
    RenderingFailed,
    /// SES refused to deliver the mail (it found a virus; never sent).
    Rejected,
    /// The recipient's server refused the address for good (a hard bounce), or the address is on
    /// a suppression list.
    Bounced,
    /// The recipient marked the mail as spam.
    Complained,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 7] = [
        Self::Delayed,
        Self::Delivered,
        Self::SoftBounced,
        Self::RenderingFailed,
        Self::Rejected,
        Self::Bounced,
        Self::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delayed => "delayed",
            Self::Delivered => "delivered",
            Self::SoftBounced => "soft_bounced",
            Self::RenderingFailed => "rendering_failed",
            Self::Rejected => "rejected_by_ses",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
        }
    }

    pub fn parse(s: &str) -> Result<Self, &'static str> {
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or("not a delivery state")
    }

    /// Precedence: the stored state changes only to one of higher rank.
    pub fn rank(self) -> u8 {
        self as u8 + 1
    }

    /// The customer did not get the mail (or does not want mail): a person must act, e.g. ask for
    /// a correct address. A delay is not final and a delivery is the goal.
    pub fn needs_attention(self) -> bool {
        !matches!(self, Self::Delayed | Self::Delivered)
    }

    /// The SQL expression giving the rank of the text column `column` (NULL: 0), built from this
    /// one table so both ledgers and the code agree.
    pub fn sql_rank(column: &str) -> String {
        let mut sql = format!("(CASE {column}");
        for s in Self::ALL {
            sql.push_str(&format!(" WHEN '{}' THEN {}", s.as_str(), s.rank()));
        }
        sql.push_str(" ELSE 0 END)");
        sql
    }
}

impl serde::Serialize for DeliveryState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event does to its order in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// SES accepted the mail (the Send event): recorded as the send witness, with the claim token
    /// from the tags.
    Send,
    /// A delivery outcome.
    State(DeliveryState),
}

/// One SES event, as much of it as the ledger needs and nothing personal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryEvent {
    pub event_type: EventType,
    pub message_id: SesMessageId,
    /// From the `order_id` tag; `None` for mail sent before the tags existed.
    pub order_id: Option<OrderId>,
    /// From the `claim_token` tag.
    pub claim_token: Option<Uuid>,
    /// When it happened, as SES says (the event's own timestamp, else the mail's).
    pub occurred_at: OffsetDateTime,
    pub effect: Effect,
    /// A short, non-personal description: bounce type and sub-type, the SMTP status code, the
    /// complaint or delay type. Never an address or a diagnostic text.
    pub detail: String,
    /// Optional parts of the event that were unusable and left out, each as the rule it broke
    /// (never the value): a malformed `order_id` or `claim_token` tag (the event still counts,
    /// tied to its order by the message id), or a malformed time in the event's object (the mail's
    /// time stands in).
    pub ignored: Vec<String>,
}

/// Why a body is not a usable SES event: the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRejection {
    pub rule: String,
}

impl EventRejection {
    fn new(rule: impl Into<String>) -> Self {
        Self { rule: rule.into() }
    }
}

impl fmt::Display for EventRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rule)
    }
}

const BOUNCE_SUB_TYPES: &[&str] = &[
    "Undetermined",
    "General",
    "NoEmail",
    "Suppressed",
    "OnAccountSuppressionList",
    "MailboxFull",
    "MessageTooLarge",
    "ContentRejected",
    "AttachmentRejected",
];
const COMPLAINT_TYPES: &[&str] = &["abuse", "auth-failure", "fraud", "not-spam", "other", "virus"];
const DELAY_TYPES: &[&str] = &[
    "InternalFailure",
    "General",
    "MailboxFull",
    "SpamDetected",
    "RecipientServerError",
    "IPFailure",
    "TransientCommunicationFailure",
    "BYOIPHostNameLookupUnavailable",
    "Undetermined",
    "SendingDeferral",
];

impl DeliveryEvent {
    /// One SQS body: an EventBridge event from `aws.ses` whose `detail-type` and
    /// `detail.eventType` agree.
    pub fn parse(body: &str) -> Result<Self, EventRejection> {
        let envelope: Value = serde_json::from_str(body).map_err(|e| {
            EventRejection::new(format!(
                "body is not JSON (line {}, column {}: {:?})",
                e.line(),
                e.column(),
                e.classify()
            ))
        })?;
        if envelope["source"] != "aws.ses" {
            return Err(EventRejection::new("source must be \"aws.ses\" (an EventBridge event from SES)"));
        }
        let detail_type = envelope["detail-type"]
            .as_str()
            .ok_or_else(|| EventRejection::new("detail-type is missing or not a string"))?;
        let by_envelope = EventType::from_detail_type(detail_type).ok_or_else(|| {
            EventRejection::new(
                "detail-type is not one this service subscribes to (Email Sent, Email Delivered, Email Bounced, \
                 Email Complaint Received, Email Rejected, Email Delivery Delayed, Email Rendering Failed)",
            )
        })?;
        let detail = &envelope["detail"];
        if !detail.is_object() {
            return Err(EventRejection::new("detail is missing or not an object"));
        }
        let event_type = detail["eventType"]
            .as_str()
            .and_then(EventType::from_event_type)
            .ok_or_else(|| EventRejection::new("detail.eventType is missing or not a known SES event type"))?;
        if event_type != by_envelope {
            return Err(EventRejection::new(format!(
                "detail.eventType {} does not match detail-type {}",
                event_type.as_str(),
                by_envelope.detail_type()
            )));
        }
        let mail = &detail["mail"];
        if !mail.is_object() {
            return Err(EventRejection::new("detail.mail is missing or not an object"));
        }
        let message_id = SesMessageId::parse(
            mail["messageId"].as_str().ok_or_else(|| EventRejection::new("mail.messageId is missing"))?,
        )
        .map_err(EventRejection::new)?;
        // The tags are optional details: a malformed one is left out (and reported in `ignored`),
        // never the reason an event is lost; the message id alone still finds the order.
        let tags = &mail["tags"];
        let mut ignored = Vec::new();
        let order_id = single_tag(tags, ORDER_ID_TAG)
            .and_then(|v| v.map(MailTags::parse_order_id).transpose())
            .unwrap_or_else(|rule| {
                ignored.push(rule.to_owned());
                None
            });
        let claim_token = single_tag(tags, CLAIM_TOKEN_TAG)
            .and_then(|v| v.map(|v| Uuid::try_parse(v).map_err(|_| "tag claim_token is not a UUID")).transpose())
            .unwrap_or_else(|rule| {
                ignored.push(rule.to_owned());
                None
            });
        let object = &detail[event_type.object_key()];
        if !object.is_object() {
            return Err(EventRejection::new(format!("detail.{} is missing or not an object", event_type.object_key())));
        }
        let mail_time = || {
            timestamp(
                mail["timestamp"].as_str().ok_or_else(|| EventRejection::new("mail.timestamp is missing"))?,
                "mail",
            )
        };
        // The event's own time is an optional detail: when it is unreadable, the mail's stands in.
        let occurred_at = match object["timestamp"].as_str().map(|t| timestamp(t, event_type.object_key())) {
            Some(Ok(t)) => t,
            Some(Err(rule)) => {
                ignored.push(rule.rule);
                mail_time()?
            }
            None => mail_time()?,
        };
        let (effect, detail_text) = match event_type {
            EventType::Send => (Effect::Send, String::new()),
            EventType::Delivery => (Effect::State(DeliveryState::Delivered), String::new()),
            EventType::Bounce => {
                let bounce_type =
                    object["bounceType"].as_str().ok_or_else(|| EventRejection::new("bounce.bounceType is missing"))?;
                let state = match bounce_type {
                    "Permanent" => DeliveryState::Bounced,
                    "Transient" | "Undetermined" => DeliveryState::SoftBounced,
                    _ => {
                        return Err(EventRejection::new(
                            "bounce.bounceType must be Permanent, Transient or Undetermined",
                        ));
                    }
                };
                let sub = known(object["bounceSubType"].as_str(), BOUNCE_SUB_TYPES).unwrap_or("other");
                let mut text = format!("{bounce_type}/{sub}");
                if let Some(status) = object["bouncedRecipients"][0]["status"].as_str().filter(|s| is_dsn_status(s)) {
                    text.push(' ');
                    text.push_str(status);
                }
                (Effect::State(state), text)
            }
            EventType::Complaint => {
                let kind = known(object["complaintFeedbackType"].as_str(), COMPLAINT_TYPES).unwrap_or("unspecified");
                (Effect::State(DeliveryState::Complained), format!("feedback type {kind}"))
            }
            EventType::Reject => (Effect::State(DeliveryState::Rejected), "SES found a virus".to_owned()),
            EventType::DeliveryDelay => {
                let kind = known(object["delayType"].as_str(), DELAY_TYPES).unwrap_or("other");
                (Effect::State(DeliveryState::Delayed), kind.to_owned())
            }
            EventType::RenderingFailure => {
                // errorMessage can quote template data (personal): only the fact is kept.
                (Effect::State(DeliveryState::RenderingFailed), "template rendering failed".to_owned())
            }
        };
        Ok(Self { event_type, message_id, order_id, claim_token, occurred_at, effect, detail: detail_text, ignored })
    }
}

/// One SES event for a mail, in the shape the events queue delivers it: the EventBridge event (as
/// a JSON text, the SQS body) whose `detail` is the SES event record with `mail` (id, recipient,
/// tags) and `object` under the type's key. The outbox mailer's local SES simulation uses it.
pub fn eventbridge_body(
    event_type: EventType,
    message_id: &str,
    tags: &MailTags,
    recipient: &str,
    sent_at: OffsetDateTime,
    at: OffsetDateTime,
    object: Value,
) -> String {
    let mut mail_tags = serde_json::Map::new();
    for (name, value) in tags.pairs() {
        mail_tags.insert(name.to_owned(), serde_json::json!([value]));
    }
    let mut detail = serde_json::json!({
        "eventType": event_type.as_str(),
        "mail": {"timestamp": rfc3339(sent_at), "messageId": message_id, "destination": [recipient], "tags": mail_tags},
    });
    detail[event_type.object_key()] = object;
    serde_json::json!({
        "version": "0", "id": Uuid::new_v4().to_string(), "detail-type": event_type.detail_type(),
        "source": "aws.ses", "account": "000000000000", "time": rfc3339(at), "region": "local", "resources": [],
        "detail": detail,
    })
    .to_string()
}

/// A time as SES writes it in its events (RFC 3339, UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The one value of a tag (SES publishes each tag as a list of values), or `None` without it.
fn single_tag<'a>(tags: &'a Value, name: &'static str) -> Result<Option<&'a str>, &'static str> {
    let (one_string, a_list) = match name {
        ORDER_ID_TAG => ("tag order_id must hold exactly one string", "tag order_id must be a list of strings"),
        _ => ("tag claim_token must hold exactly one string", "tag claim_token must be a list of strings"),
    };
    match &tags[name] {
        Value::Null => Ok(None),
        Value::Array(values) => match values.as_slice() {
            [Value::String(v)] => Ok(Some(v)),
            _ => Err(one_string),
        },
        _ => Err(a_list),
    }
}

fn timestamp(text: &str, field: &str) -> Result<OffsetDateTime, EventRejection> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| EventRejection::new(format!("{field}.timestamp is not an RFC 3339 time")))
}

fn known(value: Option<&str>, list: &[&'static str]) -> Option<&'static str> {
    value.and_then(|v| list.iter().copied().find(|k| *k == v))
}

/// An RFC 3463 status code (`5.1.1`): safe to keep, unlike the diagnostic text around it.
fn is_dsn_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(event_type: EventType, object: Value) -> String {
        let mut detail = json!({
            "eventType": event_type.as_str(),
            "mail": {
                "timestamp": "2026-11-27T10:00:00.000Z",
                "source": "orders@example.com",
                "messageId": "0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000",
                "destination": ["jane.doe@example.com"],
                "tags": {
                    "ses:configuration-set": ["order-confirmation"],
                    "order_id": ["ORD-1001"],
                    "claim_token": ["5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20"]
                }
            }
        });
        detail[event_type.object_key()] = object;
        json!({
            "version": "0", "id": "2f1c7d0e-0000-4000-8000-000000000001", "detail-type": event_type.detail_type(),
            "source": "aws.ses", "account": "123456789012", "time": "2026-11-27T10:00:02Z",
            "region": "us-east-1", "resources": [], "detail": detail
        })
        .to_string()
    }

    #[test]
    fn a_permanent_bounce_is_bounced_with_its_type_and_status_but_no_address() {
        let body = envelope(
            EventType::Bounce,
            json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-27T10:00:01.500Z",
                   "feedbackId": "x", "bouncedRecipients": [{"emailAddress": "jane.doe@example.com",
                   "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 jane.doe@example.com unknown"}]}),
        );
        let e = DeliveryEvent::parse(&body).unwrap();
        assert_eq!(e.effect, Effect::State(DeliveryState::Bounced));
        assert_eq!(e.detail, "Permanent/General 5.1.1");
        assert_eq!(e.order_id.as_ref().map(OrderId::as_str), Some("ORD-1001"));
        assert_eq!(e.claim_token, Some(Uuid::parse_str("5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20").unwrap()));
        assert_eq!(e.occurred_at.unix_timestamp(), time::macros::datetime!(2026-11-27 10:00:01.5 UTC).unix_timestamp());
        assert!(!format!("{e:?}").contains("jane"));
    }

    #[test]
    fn transient_and_undetermined_bounces_are_soft_bounces() {
        for kind in ["Transient", "Undetermined"] {
            let body = envelope(EventType::Bounce, json!({"bounceType": kind, "bounceSubType": "MailboxFull"}));
            let e = DeliveryEvent::parse(&body).unwrap();
            assert_eq!(e.effect, Effect::State(DeliveryState::SoftBounced), "{kind}");
            assert_eq!(e.detail, format!("{kind}/MailboxFull"));
        }
    }

    #[test]
    fn each_event_type_has_its_effect() {
        let cases = [
            (EventType::Send, json!({}), Effect::Send),
            (
                EventType::Delivery,
                json!({"timestamp": "2026-11-27T10:00:03Z"}),
                Effect::State(DeliveryState::Delivered),
            ),
            (
                EventType::Complaint,
                json!({"complaintFeedbackType": "abuse", "complainedRecipients": []}),
                Effect::State(DeliveryState::Complained),
            ),
            (EventType::Reject, json!({"reason": "Bad content"}), Effect::State(DeliveryState::Rejected)),
            (
                EventType::DeliveryDelay,
                json!({"delayType": "MailboxFull", "timestamp": "2026-11-27T10:05:00Z"}),
                Effect::State(DeliveryState::Delayed),
            ),
            (
                EventType::RenderingFailure,
                json!({"errorMessage": "Attribute 'name' is not present", "templateName": "t"}),
                Effect::State(DeliveryState::RenderingFailed),
            ),
        ];
        for (t, object, effect) in cases {
            let e = DeliveryEvent::parse(&envelope(t, object)).unwrap_or_else(|r| panic!("{t:?}: {r}"));
            assert_eq!(e.effect, effect, "{t:?}");
            assert_eq!(e.event_type, t);
        }
    }

    #[test]
    fn rejections_name_the_rule_and_never_repeat_the_value() {
        let secret = "jane.doe@example.com";
        let mut wrong_type: Value = serde_json::from_str(&envelope(EventType::Delivery, json!({}))).unwrap();
        wrong_type["detail-type"] = json!("Email Bounced");
        let mut no_id: Value = serde_json::from_str(&envelope(EventType::Delivery, json!({}))).unwrap();
        no_id["detail"]["mail"]["messageId"] = json!(format!("has space {secret}"));
        let cases = [
            (format!("{{\"source\": \"{secret}\""), "not JSON"),
            (json!({"source": secret}).to_string(), "source must be"),
            (json!({"source": "aws.ses", "detail-type": secret}).to_string(), "detail-type is not one"),
            (wrong_type.to_string(), "does not match"),
            (no_id.to_string(), "messageId"),
            (envelope(EventType::Bounce, json!({"bounceType": secret})), "bounceType must be"),
        ];
        for (body, rule) in cases {
            let r = DeliveryEvent::parse(&body).unwrap_err();
            assert!(r.rule.contains(rule), "{} should contain {rule}", r.rule);
            assert!(!r.rule.contains(secret), "{} repeats the value", r.rule);
        }
    }

    #[test]
    fn a_malformed_tag_is_left_out_and_the_event_still_counts_by_its_message_id() {
        let secret = "jane.doe@example.com";
        let cases = [
            ("order_id", json!([secret]), "tag order_id is not a valid order id"),
            ("order_id", json!(["ORD_x1"]), "tag order_id has an underscore not followed by _, d or c"),
            ("order_id", json!(secret), "tag order_id must be a list of strings"),
            ("claim_token", json!([secret]), "tag claim_token is not a UUID"),
            ("claim_token", json!(["a", "b"]), "tag claim_token must hold exactly one string"),
        ];
        for (tag, value, rule) in cases {
            let mut body: Value = serde_json::from_str(&envelope(
                EventType::Bounce,
                json!({"bounceType": "Permanent", "bounceSubType": "General"}),
            ))
            .unwrap();
            body["detail"]["mail"]["tags"][tag] = value;
            let e = DeliveryEvent::parse(&body.to_string()).unwrap_or_else(|r| panic!("{tag}: lost the event: {r}"));
            assert_eq!(e.effect, Effect::State(DeliveryState::Bounced), "{tag}");
            assert_eq!(e.message_id.as_str(), "0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000");
            assert_eq!(e.ignored, vec![rule], "{tag}");
            if tag == "order_id" {
                assert_eq!(e.order_id, None);
                assert!(e.claim_token.is_some(), "the other tag is kept");
            } else {
                assert_eq!(e.claim_token, None);
                assert_eq!(e.order_id.as_ref().map(OrderId::as_str), Some("ORD-1001"), "the other tag is kept");
            }
            assert!(!format!("{e:?}").contains(secret), "the event repeats the value");
        }
        let clean = DeliveryEvent::parse(&envelope(EventType::Delivery, json!({}))).unwrap();
        assert!(clean.ignored.is_empty());
    }

    #[test]
    fn a_malformed_event_time_falls_back_to_the_mail_time_instead_of_losing_the_event() {
        let body = envelope(
            EventType::Bounce,
            json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "jane.doe@example.com"}),
        );
        let e = DeliveryEvent::parse(&body).unwrap_or_else(|r| panic!("lost the event: {r}"));
        assert_eq!(e.effect, Effect::State(DeliveryState::Bounced));
        assert_eq!(e.occurred_at, time::macros::datetime!(2026-11-27 10:00:00 UTC));
        assert_eq!(e.ignored, vec!["bounce.timestamp is not an RFC 3339 time"]);
        let mut no_mail_time: Value = serde_json::from_str(&body).unwrap();
        no_mail_time["detail"]["mail"]["timestamp"] = json!(null);
        let r = DeliveryEvent::parse(&no_mail_time.to_string()).unwrap_err();
        assert_eq!(r.rule, "mail.timestamp is missing", "without any usable time the event is refused");
    }

    #[test]
    fn order_id_tags_round_trip_every_allowed_character_in_ses_alphabet() {
        for id in ["ORD-1001", "a.b:c_d", "_._:__", "x".repeat(64).as_str()] {
            let tags = MailTags { order_id: OrderId::parse(id).unwrap(), claim_token: Uuid::nil() };
            let value = tags.order_id_value();
            assert!(value.len() <= 256 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            assert_eq!(MailTags::parse_order_id(&value).unwrap().as_str(), id);
        }
        assert!(MailTags::parse_order_id("a_x").is_err());
        assert!(MailTags::parse_order_id("").is_err());
    }

    #[test]
    fn delivery_states_rank_so_failures_outrank_a_late_delivery() {
        use DeliveryState::*;
        assert!(Bounced.rank() > Delivered.rank());
        assert!(Complained.rank() > Bounced.rank());
        assert!(Delivered.rank() > Delayed.rank());
        assert!(SoftBounced.rank() > Delivered.rank());
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Ok(s));
            assert!(DeliveryState::sql_rank("d").contains(&format!("WHEN '{}' THEN {}", s.as_str(), s.rank())));
        }
        assert_eq!(
            DeliveryState::ALL.iter().filter(|s| s.needs_attention()).count(),
            5,
            "all but delayed and delivered"
        );
    }

    #[test]
    fn every_ses_sample_in_events_parses_to_its_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        let mut seen = std::collections::HashSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("ses-") {
                continue;
            }
            let batch: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for record in batch["Records"].as_array().unwrap() {
                let e =
                    DeliveryEvent::parse(record["body"].as_str().unwrap()).unwrap_or_else(|r| panic!("{name}: {r}"));
                assert!(e.order_id.is_some() && e.claim_token.is_some(), "{name}: tags");
                seen.insert(e.event_type);
            }
        }
        assert_eq!(seen.len(), EventType::ALL.len(), "one sample per event type: {seen:?}");
    }

    #[test]
    fn dsn_status_codes_are_recognised_and_other_text_is_not() {
        assert!(is_dsn_status("5.1.1") && is_dsn_status("4.4.7") && is_dsn_status("5.7.100"));
        assert!(!is_dsn_status("550") && !is_dsn_status("5.1") && !is_dsn_status("a@b.c"));
    }
}
