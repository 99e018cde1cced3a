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

mod parse;

#[cfg(test)]
mod tests;
