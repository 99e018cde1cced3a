//! Decoding one SQS message body into an [`Order`] (docs/design.md, "The message contract"). Pure: no I/O, no clock, no panics
//! on any input. Required fields that break the contract reject the message with a reason that
//! names the field and the rule; optional details and vendor fields that are wrong are dropped
//! and noted, because a bad detail must never block a confirmation.

use crate::order::{CustomerEmail, CustomerName, FieldError, Fulfillment, Item, Order, OrderId, Priority, truncate};
use crate::pylit;
use serde_json::{Map, Value};
use std::fmt;

/// SQS's own message size limit; anything larger did not come from SQS and is refused unread.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The only schema this code knows.
pub const SCHEMA_VERSION: i64 = 1;
const MAX_ITEMS: usize = 100;

/// Why a message can never become an order. Permanent: retrying cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    EmptyBody,
    TooLarge { bytes: usize },
    NotJson { detail: String },
    TooDeep,
    NotAnObject { found: &'static str },
    Field(FieldError),
    UnknownSchema { version: String },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyBody => f.write_str("body is empty"),
            Self::TooLarge { bytes } => write!(f, "body is {bytes} bytes; the limit is {MAX_BODY_BYTES}"),
            Self::NotJson { detail } => write!(f, "body is neither JSON nor a Python dict literal: {detail}"),
            Self::TooDeep => f.write_str("body is nested too deeply to be an order"),
            Self::NotAnObject { found } => write!(f, "body is a JSON {found}; an order must be a JSON object"),
            Self::Field(e) => write!(f, "{e}"),
            Self::UnknownSchema { version } => {
                write!(f, "schema_version: {version} is not supported (this service knows {SCHEMA_VERSION})")
            }
        }
    }
}

impl From<FieldError> for Rejection {
    fn from(e: FieldError) -> Self {
        Self::Field(e)
    }
}

/// Something wrong that did not stop the order, counted so its source can be fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The body was a Python dict literal (the legacy `eval` format), not JSON.
    LegacyPayloadFormat,
    /// A field from the fulfillment vendor was unusable and left out of the mail.
    VendorFieldInvalid { field: &'static str, rule: String },
    /// An optional order detail (total, currency, items) was unusable and left out of the mail.
    OrderDetailInvalid { field: &'static str, rule: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LegacyPayloadFormat => f.write_str("legacy Python literal payload"),
            Self::VendorFieldInvalid { field, rule } => write!(f, "vendor field {field} dropped: {rule}"),
            Self::OrderDetailInvalid { field, rule } => write!(f, "order detail {field} dropped: {rule}"),
        }
    }
}

/// Reports carry notes as their human text.
impl serde::Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub order: Order,
    pub notes: Vec<Note>,
}

/// Decodes one message body.
pub fn decode(body: &str) -> Result<Decoded, Rejection> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge { bytes: body.len() });
    }
    if body.trim().is_empty() {
        return Err(Rejection::EmptyBody);
    }
    let mut notes = Vec::new();
    let value = match serde_json::from_str::<Value>(body) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("recursion limit") => return Err(Rejection::TooDeep),
        Err(json_err) => match pylit::parse(body) {
            Ok(v) => {
                notes.push(Note::LegacyPayloadFormat);
                v
            }
            Err(py_err) if py_err.message == "nested too deeply" => return Err(Rejection::TooDeep),
            Err(_) => return Err(Rejection::NotJson { detail: json_err.to_string() }),
        },
    };
    let Value::Object(map) = value else {
        return Err(Rejection::NotAnObject { found: json_type(&value) });
    };
    let order = order_from_map(&map, &mut notes)?;
    Ok(Decoded { order, notes })
}

/// For a rejected body: its `order_id`, when it has a valid one, so support can find the
/// rejection by order id (the logs carry it; the ledger never saw the order).
pub fn salvage_order_id(body: &str) -> Option<OrderId> {
    if body.len() > MAX_BODY_BYTES {
        return None;
    }
    let value = serde_json::from_str::<Value>(body).ok().or_else(|| pylit::parse(body).ok())?;
    value.get("order_id")?.as_str().and_then(|s| OrderId::parse(s).ok())
}

fn order_from_map(map: &Map<String, Value>, notes: &mut Vec<Note>) -> Result<Order, Rejection> {
    match map.get("schema_version") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64() == Some(SCHEMA_VERSION) => {}
        Some(other) => return Err(Rejection::UnknownSchema { version: truncate(&other.to_string(), 20) }),
    }
    let order_id = OrderId::parse(required_str(map, "order_id")?)?;
    let customer_email = CustomerEmail::parse(required_str(map, "customer_email")?)?;
    let customer_name = CustomerName::parse(required_str(map, "customer_name")?)?;
    let priority = match map.get("priority") {
        None | Some(Value::Null) => Priority::default(),
        Some(Value::String(s)) => Priority::parse(s)?,
        Some(other) => {
            return Err(FieldError::new("priority", format!("must be a string, got {}", json_type(other))).into());
        }
    };

    let mut detail = |field: &'static str, rule: String| notes.push(Note::OrderDetailInvalid { field, rule });
    let total = match map.get("total") {
        None | Some(Value::Null) => None,
        Some(v) => decimal(v).map_err(|rule| detail("total", rule)).ok(),
    };
    let currency = match map.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase()) => Some(s.clone()),
        Some(_) => {
            detail("currency", "must be a three-letter ISO 4217 code such as \"EUR\"".to_owned());
            None
        }
    };
    let items = match map.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            if list.len() > MAX_ITEMS {
                detail("items", format!("has {} entries; only the first {MAX_ITEMS} are shown", list.len()));
            }
            list.iter().take(MAX_ITEMS).filter_map(|v| item(v).map_err(|rule| detail("items", rule)).ok()).collect()
        }
        Some(other) => {
            detail("items", format!("must be a list, got {}", json_type(other)));
            Vec::new()
        }
    };
    let fulfillment = fulfillment(map.get("fulfillment"), notes);
    Ok(Order { order_id, customer_email, customer_name, priority, total, currency, items, fulfillment })
}

fn required_str<'m>(map: &'m Map<String, Value>, field: &'static str) -> Result<&'m str, FieldError> {
    match map.get(field) {
        None => Err(FieldError::new(field, "is missing")),
        Some(Value::Null) => Err(FieldError::new(field, "is null")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(FieldError::new(field, format!("must be a string, got {}", json_type(other)))),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A non-negative amount as decimal text with at most two fraction digits ("12", "12.5", "12.50").
fn decimal(v: &Value) -> Result<String, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("must be a number, got {}", json_type(other))),
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let ok = !int.is_empty()
        && int.len() <= 12
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.len() <= 2
        && frac.chars().all(|c| c.is_ascii_digit())
        && !(text.contains('.') && frac.is_empty());
    if ok {
        Ok(format!("{int}.{frac:0<2}"))
    } else {
        Err(format!("{:?} is not a non-negative amount with at most two decimals", truncate(&text, 24)))
    }
}

fn item(v: &Value) -> Result<Item, String> {
    let Value::Object(m) = v else {
        return Err(format!("entry must be an object, got {}", json_type(v)));
    };
    let name = match m.get("name") {
        Some(Value::String(s)) => crate::order::parse_display_text("items.name", s, 200).map_err(|e| e.rule)?,
        _ => return Err("entry has no name".to_owned()),
    };
    let quantity = match m.get("quantity") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(q @ 1..=10_000) => q as u32,
            _ => return Err("quantity must be a whole number from 1 to 10000".to_owned()),
        },
        Some(_) => return Err("quantity must be a whole number from 1 to 10000".to_owned()),
    };
    let price = match m.get("price") {
        None | Some(Value::Null) => None,
        Some(p) => Some(decimal(p)?),
    };
    Ok(Item { name, quantity, price })
}

/// Vendor data: anything unusable is dropped and noted; nothing here can reject the order.
fn fulfillment(v: Option<&Value>, notes: &mut Vec<Note>) -> Fulfillment {
    let mut out = Fulfillment::default();
    let mut invalid = |field: &'static str, rule: String| notes.push(Note::VendorFieldInvalid { field, rule });
    let map = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Object(m)) => m,
        Some(other) => {
            invalid("fulfillment", format!("must be an object, got {}", json_type(other)));
            return out;
        }
    };
    match map.get("center") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match crate::order::parse_display_text("fulfillment.center", s, 100) {
            Ok(c) => out.center = Some(c),
            Err(e) => invalid("fulfillment.center", e.rule),
        },
        Some(other) => invalid("fulfillment.center", format!("must be a string, got {}", json_type(other))),
    }
    match map.get("estimated_delivery") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match delivery_date(s) {
            Some(d) => out.estimated_delivery = Some(d),
            None => invalid(
                "fulfillment.estimated_delivery",
                format!("{:?} is not a date (YYYY-MM-DD or RFC 3339)", truncate(s, 32)),
            ),
        },
        Some(other) => {
            invalid("fulfillment.estimated_delivery", format!("must be a date string, got {}", json_type(other)))
        }
    }
    out
}

/// Accepts `YYYY-MM-DD` or an RFC 3339 timestamp and keeps the calendar date.
fn delivery_date(s: &str) -> Option<String> {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, &date_format) {
        return d.format(&date_format).ok();
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.date().format(&date_format).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> serde_json::Value {
        serde_json::json!({"order_id": "A1", "customer_email": "a@example.com", "customer_name": "Ann"})
    }

    fn reject(body: &str) -> String {
        decode(body).unwrap_err().to_string()
    }

    #[test]
    fn minimal_order_gets_defaults() {
        let d = decode(&valid().to_string()).unwrap();
        assert_eq!(d.order.priority, Priority::Normal);
        assert!(d.notes.is_empty());
    }

    #[test]
    fn structural_rejections_are_specific() {
        assert_eq!(reject(""), "body is empty");
        assert_eq!(reject("  \n"), "body is empty");
        assert_eq!(reject("[1,2]"), "body is a JSON array; an order must be a JSON object");
        assert_eq!(reject("\"hi\""), "body is a JSON string; an order must be a JSON object");
        assert!(reject("{\"order_id\": ").starts_with("body is neither JSON nor a Python dict literal: EOF"));
        assert_eq!(reject(&"[".repeat(10_000)), "body is nested too deeply to be an order");
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        assert!(reject(&big).starts_with("body is 262155 bytes; the limit is 262144"));
    }

    #[test]
    fn a_rejected_body_still_names_its_valid_order_id() {
        assert_eq!(salvage_order_id(r#"{"order_id": "A-1", "customer_name": "x"}"#).unwrap().as_str(), "A-1");
        assert_eq!(salvage_order_id("{'order_id': 'A-2'}").unwrap().as_str(), "A-2");
        assert!(salvage_order_id(r#"{"order_id": "bad id"}"#).is_none());
        assert!(salvage_order_id("[1]").is_none());
        assert!(salvage_order_id("{").is_none());
    }

    #[test]
    fn python_code_is_rejected_not_run() {
        assert!(reject("__import__('os').system('touch /tmp/pwned')").starts_with("body is neither JSON"));
    }

    #[test]
    fn python_dict_literal_is_accepted_and_noted() {
        let d = decode(
            "{'order_id': 'A1', 'customer_email': 'a@example.com', 'customer_name': 'Ann', 'gift': True, 'note': None}",
        )
        .unwrap();
        assert_eq!(d.notes, vec![Note::LegacyPayloadFormat]);
        assert_eq!(d.order.order_id.as_str(), "A1");
    }

    #[test]
    fn required_field_rejections_name_field_and_rule() {
        let cases: &[(&str, serde_json::Value, &str)] = &[
            ("customer_email", serde_json::Value::Null, "customer_email: is null"),
            ("order_id", serde_json::json!(12345), "order_id: must be a string, got number"),
            ("order_id", serde_json::json!("A 1"), "order_id: contains a space; only A-Z a-z 0-9 . _ : - are allowed"),
            ("customer_email", serde_json::json!("a@b@c"), "customer_email: has more than one @"),
            (
                "customer_name",
                serde_json::json!("Ann\r\nBcc: x@y.z"),
                "customer_name: contains the control character CR",
            ),
            ("priority", serde_json::json!("urgent"), "priority: must be \"high\" or \"normal\", got \"urgent\""),
            ("schema_version", serde_json::json!(2), "schema_version: 2 is not supported (this service knows 1)"),
        ];
        for (field, value, expected) in cases {
            let mut body = valid();
            body[*field] = value.clone();
            assert_eq!(reject(&body.to_string()), *expected);
        }
        let mut body = valid();
        body.as_object_mut().unwrap().remove("customer_email");
        assert_eq!(reject(&body.to_string()), "customer_email: is missing");
    }

    #[test]
    fn bad_vendor_fields_are_dropped_and_noted() {
        let mut body = valid();
        body["fulfillment"] = serde_json::json!({"center": 17, "estimated_delivery": "soon"});
        let d = decode(&body.to_string()).unwrap();
        assert!(d.order.fulfillment.is_empty());
        assert_eq!(d.notes.len(), 2);
        assert!(matches!(d.notes[0], Note::VendorFieldInvalid { field: "fulfillment.center", .. }));

        body["fulfillment"] = serde_json::json!("DC-7");
        let d = decode(&body.to_string()).unwrap();
        assert!(matches!(d.notes[0], Note::VendorFieldInvalid { field: "fulfillment", .. }));

        body["fulfillment"] = serde_json::json!({"center": "DC-7", "estimated_delivery": "2026-12-01T10:00:00Z"});
        let d = decode(&body.to_string()).unwrap();
        assert_eq!(d.order.fulfillment.estimated_delivery.as_deref(), Some("2026-12-01"));
        assert!(d.notes.is_empty());
    }

    #[test]
    fn bad_details_are_dropped_and_good_ones_kept() {
        let mut body = valid();
        body["total"] = serde_json::json!("12.345");
        body["currency"] = serde_json::json!("euro");
        body["items"] = serde_json::json!([{"name": "Mug", "quantity": 2, "price": 7.5}, {"quantity": 1}, "junk"]);
        let d = decode(&body.to_string()).unwrap();
        assert_eq!(d.order.total, None);
        assert_eq!(d.order.currency, None);
        assert_eq!(d.order.items.len(), 1);
        assert_eq!(d.order.items[0].price.as_deref(), Some("7.50"));
        assert_eq!(d.notes.len(), 4);
    }

    #[test]
    fn unknown_fields_and_html_names_are_accepted() {
        let mut body = valid();
        body["customer_name"] = serde_json::json!("<script>alert(1)</script> Zoë 山田");
        body["loyalty_tier"] = serde_json::json!("gold");
        let d = decode(&body.to_string()).unwrap();
        assert_eq!(d.order.customer_name.as_str(), "<script>alert(1)</script> Zoë 山田");
    }
}
