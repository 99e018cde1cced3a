//! [`DeliveryEvent::parse`]: one SQS body to a typed event or the rule it broke.

use super::*;

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

/// How old an event's time may be and still be believed: SES publishes within minutes, and the
/// longest an event can travel is the events queue's 14 days plus 14 more in its DLQ before a
/// redrive (docs/design.md, "Delivery events").
pub const EVENT_TIME_PAST: time::Duration = time::Duration::days(30);
/// How far ahead of this function's clock an event's time may be: clock skew, not a date.
pub const EVENT_TIME_FUTURE: time::Duration = time::Duration::minutes(5);

impl DeliveryEvent {
    /// One SQS body: an EventBridge event from `aws.ses` whose `detail-type` and
    /// `detail.eventType` agree, read against the current time ([`Self::parse_at`]).
    pub fn parse(body: &str) -> Result<Self, EventRejection> {
        Self::parse_at(body, OffsetDateTime::now_utc())
    }

    /// [`Self::parse`] with `now` as the current time: an event time outside
    /// [`EVENT_TIME_PAST`] before `now` to [`EVENT_TIME_FUTURE`] after it is not believed (left
    /// out, by its rule): the mail's time stands in for the event's, and `now` for the mail's.
    pub fn parse_at(body: &str, now: OffsetDateTime) -> Result<Self, EventRejection> {
        let envelope: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            // serde_json refuses a whole text for one number out of range (`1e400`) or a lone
            // surrogate escape anywhere in it, also in fields this reader never looks at: read
            // it again member by member, leaving out only the unreadable ones.
            Err(e) => lenient(body).ok_or_else(|| {
                EventRejection::new(format!(
                    "body is not JSON (line {}, column {}: {:?})",
                    e.line(),
                    e.column(),
                    e.classify()
                ))
            })?,
        };
        let (event_type, detail) = event_type(&envelope)?;
        let mail = &detail["mail"];
        if !mail.is_object() {
            return Err(EventRejection::new("detail.mail is missing or not an object"));
        }
        let message_id = SesMessageId::parse(
            mail["messageId"].as_str().ok_or_else(|| EventRejection::new("mail.messageId is missing"))?,
        )
        .map_err(EventRejection::new)?;
        let mut ignored = Vec::new();
        let (order_id, claim_token) = tags(&mail["tags"], &mut ignored);
        let object = &detail[event_type.object_key()];
        if !object.is_object() {
            return Err(EventRejection::new(format!("detail.{} is missing or not an object", event_type.object_key())));
        }
        let plausible = |t: OffsetDateTime, field: &str| {
            if t < now - EVENT_TIME_PAST || t > now + EVENT_TIME_FUTURE {
                Err(EventRejection::new(format!(
                    "{field}.timestamp is more than 30 days before or 5 minutes after the time it was read"
                )))
            } else {
                Ok(t)
            }
        };
        let mail_time = |ignored: &mut Vec<String>| {
            let t = timestamp(
                mail["timestamp"].as_str().ok_or_else(|| EventRejection::new("mail.timestamp is missing"))?,
                "mail",
            )?;
            Ok::<_, EventRejection>(plausible(t, "mail").unwrap_or_else(|rule| {
                ignored.push(rule.rule);
                now
            }))
        };
        // The event's own time is an optional detail: when it is unreadable or implausible, the
        // mail's stands in.
        let occurred_at = match object["timestamp"]
            .as_str()
            .map(|t| timestamp(t, event_type.object_key()).and_then(|t| plausible(t, event_type.object_key())))
        {
            Some(Ok(t)) => t,
            Some(Err(rule)) => {
                ignored.push(rule.rule);
                mail_time(&mut ignored)?
            }
            None => mail_time(&mut ignored)?,
        };
        let (effect, detail) = effect(event_type, object)?;
        Ok(Self { event_type, message_id, order_id, claim_token, occurred_at, effect, detail, ignored })
    }
}

/// A JSON text serde_json cannot read whole, read member by member: each object member and array
/// element is kept as raw text first and read on its own, and the unreadable ones are left out.
/// `None` when the text is not JSON at all.
fn lenient(text: &str) -> Option<Value> {
    use serde_json::value::RawValue;
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    if let Ok(members) = serde_json::from_str::<std::collections::BTreeMap<String, &RawValue>>(text) {
        return Some(Value::Object(members.into_iter().filter_map(|(k, v)| Some((k, lenient(v.get())?))).collect()));
    }
    let items = serde_json::from_str::<Vec<&RawValue>>(text).ok()?;
    Some(Value::Array(items.into_iter().filter_map(|v| lenient(v.get())).collect()))
}

/// The event's type, from the envelope's `detail-type` and `detail.eventType` (which must agree),
/// and its `detail`.
fn event_type(envelope: &Value) -> Result<(EventType, &Value), EventRejection> {
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
    Ok((event_type, detail))
}

/// The order id and claim token from the mail's tags. The tags are optional details: a malformed
/// one is left out (its rule added to `ignored`), never the reason an event is lost; the message
/// id alone still finds the order.
fn tags(tags: &Value, ignored: &mut Vec<String>) -> (Option<OrderId>, Option<Uuid>) {
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
    (order_id, claim_token)
}

/// What the event means for the order's delivery state, and the detail kept about it (never
/// the diagnostic text, which can quote the address).
fn effect(event_type: EventType, object: &Value) -> Result<(Effect, String), EventRejection> {
    Ok(match event_type {
        EventType::Send => (Effect::Send, String::new()),
        EventType::Delivery => (Effect::State(DeliveryState::Delivered), String::new()),
        EventType::Bounce => {
            let bounce_type =
                object["bounceType"].as_str().ok_or_else(|| EventRejection::new("bounce.bounceType is missing"))?;
            let state = match bounce_type {
                "Permanent" => DeliveryState::Bounced,
                "Transient" | "Undetermined" => DeliveryState::SoftBounced,
                _ => {
                    return Err(EventRejection::new("bounce.bounceType must be Permanent, Transient or Undetermined"));
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
    })
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
pub(super) fn is_dsn_status(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..].iter().all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}
