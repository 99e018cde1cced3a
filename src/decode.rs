//! Decoding one SQS message body into an [`Order`] (docs/design.md, "The message contract"). Pure: no I/O, no clock, no panics
//! on any input. Required fields that break the contract reject the message with a reason that
//! names the field and the rule; optional details, the priority and vendor fields that are wrong
//! are dropped and noted, because a bad detail must never block a confirmation. No reason or note
//! ever repeats the rejected value: they land in logs and the DLQ, and a value in the wrong field
//! may be anyone's personal data (docs/design.md, "Hostile input").
//!
//! A body that is a JSON object but that serde_json cannot read whole (a lone surrogate escape, a
//! number out of range) is read field by field: what is wrong in a field the contract does not
//! know is ignored, in an optional field it is dropped and noted, in a required one it rejects.

use crate::order::{CustomerEmail, CustomerName, FieldError, Fulfillment, Item, Order, OrderId, OrderLocale, Priority};
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
    UnknownSchema,
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
            Self::UnknownSchema => {
                write!(f, "schema_version: must be the integer {SCHEMA_VERSION}, the only version this service knows")
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
    /// An optional order detail (total, currency, items, locale) was unusable and left out of the mail.
    OrderDetailInvalid { field: &'static str, rule: String },
    /// An amount has more decimals than its currency's minor units: mailed as given, not rounded.
    AmountShownAsGiven { field: &'static str, rule: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LegacyPayloadFormat => f.write_str("legacy Python literal payload"),
            Self::VendorFieldInvalid { field, rule } => write!(f, "vendor field {field} dropped: {rule}"),
            Self::OrderDetailInvalid { field, rule } => write!(f, "order detail {field} dropped: {rule}"),
            Self::AmountShownAsGiven { field, rule } => write!(f, "order detail {field} {rule}"),
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

/// A body that can never become an order: why, and its `order_id` when the body has a valid one,
/// read from the same parse, so support can find the rejection by order id (the logs carry it;
/// the ledger never saw the order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub rejection: Rejection,
    pub order_id: Option<OrderId>,
}

impl Refused {
    fn without_id(rejection: Rejection) -> Self {
        Self { rejection, order_id: None }
    }
}

impl From<Rejection> for Refused {
    fn from(rejection: Rejection) -> Self {
        Self::without_id(rejection)
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.rejection.fmt(f)
    }
}

/// Decodes one message body.
pub fn decode(body: &str) -> Result<Decoded, Rejection> {
    decode_message(body).map_err(|refused| refused.rejection)
}

/// Decodes one message body; a refusal keeps the body's valid `order_id`, if it has one, without
/// parsing the body a second time.
pub fn decode_message(body: &str) -> Result<Decoded, Refused> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge { bytes: body.len() }.into());
    }
    if body.trim().is_empty() {
        return Err(Rejection::EmptyBody.into());
    }
    let mut notes = Vec::new();
    let value = match serde_json::from_str::<Value>(body) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("recursion limit") => return Err(Rejection::TooDeep.into()),
        Err(json_err) => match field_by_field(body, &mut notes) {
            Some(map) => Value::Object(map?),
            None => match pylit::parse(body) {
                Ok(v) => {
                    notes.push(Note::LegacyPayloadFormat);
                    v
                }
                Err(py_err) if py_err.message == "nested too deeply" => return Err(Rejection::TooDeep.into()),
                Err(_) => return Err(Rejection::NotJson { detail: json_err.to_string() }.into()),
            },
        },
    };
    let Value::Object(map) = value else {
        return Err(Rejection::NotAnObject { found: json_type(&value) }.into());
    };
    match order_from_map(&map, &mut notes) {
        Ok(order) => Ok(Decoded { order, notes }),
        Err(rejection) => Err(Refused { rejection, order_id: order_id_of(&map) }),
    }
}

/// The valid `order_id` of an object that failed the contract elsewhere, if it has one.
fn order_id_of(map: &Map<String, Value>) -> Option<OrderId> {
    map.get("order_id")?.as_str().and_then(|s| OrderId::parse(s).ok())
}

/// The fields the contract knows; anything else in a body is ignored unread.
const REQUIRED_FIELDS: [&str; 3] = ["order_id", "customer_email", "customer_name"];
const OPTIONAL_FIELDS: [&str; 7] =
    ["schema_version", "priority", "total", "currency", "items", "fulfillment", "locale"];

/// Reads a JSON object whose text serde_json cannot turn into a [`Value`] whole: each field is
/// kept as raw text first, and only the fields the contract knows are parsed. `None` when the body
/// is not a JSON object at all (the caller tries the legacy format); `Some(Err)` when a required
/// field is unreadable.
fn field_by_field(body: &str, notes: &mut Vec<Note>) -> Option<Result<Map<String, Value>, Refused>> {
    let raw: std::collections::HashMap<String, &serde_json::value::RawValue> = serde_json::from_str(body).ok()?;
    let mut map = Map::new();
    for (key, text) in &raw {
        let Some(field) = REQUIRED_FIELDS.iter().chain(&OPTIONAL_FIELDS).find(|f| **f == key.as_str()) else {
            continue;
        };
        match serde_json::from_str::<Value>(text.get()) {
            Ok(v) => {
                map.insert(key.clone(), v);
            }
            Err(_) if REQUIRED_FIELDS.contains(field) => {
                let order_id = raw
                    .get("order_id")
                    .and_then(|text| serde_json::from_str::<String>(text.get()).ok())
                    .and_then(|s| OrderId::parse(&s).ok());
                let rejection = FieldError::new(field, "is not readable JSON (a lone surrogate escape?)").into();
                return Some(Err(Refused { rejection, order_id }));
            }
            Err(_) => notes.push(Note::OrderDetailInvalid {
                field,
                rule: "is not readable JSON (a number out of range or a lone surrogate escape)".to_owned(),
            }),
        }
    }
    Some(Ok(map))
}

fn order_from_map(map: &Map<String, Value>, notes: &mut Vec<Note>) -> Result<Order, Rejection> {
    match map.get("schema_version") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64() == Some(SCHEMA_VERSION) => {}
        Some(_) => return Err(Rejection::UnknownSchema),
    }
    let order_id = OrderId::parse(required_str(map, "order_id")?)?;
    let customer_email = CustomerEmail::parse(required_str(map, "customer_email")?)?;
    let customer_name = CustomerName::parse(required_str(map, "customer_name")?)?;

    let mut detail = |field: &'static str, rule: String| notes.push(Note::OrderDetailInvalid { field, rule });
    // A routing hint must not cost a confirmation: anything unusable is treated as normal.
    let priority = match map.get("priority") {
        None | Some(Value::Null) => Priority::default(),
        Some(Value::String(s)) => Priority::parse(s).unwrap_or_else(|e| {
            detail("priority", format!("{}; treated as normal", e.rule));
            Priority::Normal
        }),
        Some(other) => {
            detail("priority", format!("must be a string, got {}; treated as normal", json_type(other)));
            Priority::Normal
        }
    };
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
    // The customer's language: a bad tag costs the mail its language, never the mail.
    let locale = match map.get("locale") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => OrderLocale::parse(s.trim())
            .map_err(|e| detail("locale", format!("{}; the mail is in English", e.rule)))
            .ok(),
        Some(other) => {
            detail("locale", format!("must be a string, got {}; the mail is in English", json_type(other)));
            None
        }
    };
    // An amount the currency cannot hold (129.5 JPY) is mailed as given, never rounded into
    // another price; the note is how its producer hears of it.
    if let Some(currency) = &currency {
        let unheld = |amount: &str| !crate::money::fits(amount, currency);
        let rule = || {
            let minor_units = crate::money::minor_units(currency).unwrap_or(2);
            format!("has more decimals than {currency} has minor units ({minor_units}); shown as given")
        };
        if total.as_deref().is_some_and(unheld) {
            notes.push(Note::AmountShownAsGiven { field: "total", rule: rule() });
        }
        if items.iter().any(|i| i.price.as_deref().is_some_and(unheld)) {
            notes.push(Note::AmountShownAsGiven { field: "items.price", rule: rule() });
        }
    }
    let fulfillment = fulfillment(map.get("fulfillment"), notes);
    Ok(Order { order_id, customer_email, customer_name, priority, total, currency, items, fulfillment, locale })
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

/// A non-negative amount as decimal text with at most four fraction digits, the most any ISO 4217
/// currency has (KWD has three): "12" and "12.5" become "12.00" and "12.50" as they always did
/// (the canonical payload, and its hash, of an order already in the ledger must not change);
/// "1.250" stays "1.250".
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
        && frac.len() <= 4
        && frac.chars().all(|c| c.is_ascii_digit())
        && !(text.contains('.') && frac.is_empty());
    if ok {
        Ok(format!("{int}.{frac:0<2}"))
    } else {
        Err("must be a non-negative amount of at most 12 digits with at most four decimals".to_owned())
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
            None => invalid("fulfillment.estimated_delivery", "must be a date (YYYY-MM-DD or RFC 3339)".to_owned()),
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
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return t.date().format(&date_format).ok();
    }
    // A timestamp without an offset (what the legacy format's `datetime(...)` reads as): its date.
    let naive = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let seconds = s.split_once('.').map_or(s, |(whole, _)| whole);
    time::PrimitiveDateTime::parse(seconds, &naive).ok().and_then(|t| t.date().format(&date_format).ok())
}

#[cfg(test)]
mod tests;
