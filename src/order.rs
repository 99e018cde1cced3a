//! The order as this service understands it: validated newtypes built by `parse` constructors, so
//! a value of these types is always one that passed the message contract (docs/design.md, "The message contract").

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why one field failed the contract. The text is written for the person reading the DLQ: it
/// names the field and the rule, never the customer data itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        Self { field, rule: rule.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for FieldError {}

/// `order_id`: 1–64 characters of `A–Z a–z 0–9 . _ : -`. The narrow alphabet is what lets the id
/// go into a mail subject, a file name and a log line without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

impl OrderId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let len = s.chars().count();
        if len == 0 {
            return Err(FieldError::new("order_id", "must not be empty"));
        }
        if len > Self::MAX_LEN {
            return Err(FieldError::new("order_id", format!("is {len} characters; at most {} allowed", Self::MAX_LEN)));
        }
        if let Some(bad) = s.chars().find(|c| !Self::allowed(*c)) {
            return Err(FieldError::new(
                "order_id",
                format!("contains {}; only A-Z a-z 0-9 . _ : - are allowed", describe_char(bad)),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<OrderId> for String {
    fn from(id: OrderId) -> String {
        id.0
    }
}
impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `customer_email`: an RFC 5322 addr-spec in its dot-atom form, at most 254 characters (the SMTP
/// path limit). Quoted local parts and address literals are refused: no customer needs them and
/// they are how header injection hides.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerEmail(String);

impl CustomerEmail {
    pub const MAX_LEN: usize = 254;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let err = |rule: &str| Err(FieldError::new("customer_email", rule.to_owned()));
        if s.is_empty() {
            return err("must not be empty");
        }
        if s.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                "customer_email",
                format!("is {} characters; at most {} allowed", s.len(), Self::MAX_LEN),
            ));
        }
        if !s.is_ascii() {
            return err("must be ASCII (internationalised addresses are not supported)");
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return err("has no @");
        };
        if local.contains('@') {
            return err("has more than one @");
        }
        if local.is_empty() || local.len() > 64 {
            return err("local part must be 1-64 characters");
        }
        const ATEXT_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return err("local part has a misplaced dot");
        }
        if !local.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || ATEXT_SPECIALS.contains(c)) {
            return err("local part has a character not allowed in an unquoted address");
        }
        if domain.is_empty() || domain.len() > 253 {
            return err("domain must be 1-253 characters");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return err("domain must contain a dot");
        }
        for label in labels {
            if label.is_empty() || label.len() > 63 {
                return err("domain label must be 1-63 characters");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return err("domain label must not start or end with a hyphen");
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return err("domain has a character other than letters, digits, hyphens and dots");
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that may appear in logs and errors: the domain only.
    pub fn masked(&self) -> String {
        match self.0.rsplit_once('@') {
            Some((_, domain)) => format!("***@{domain}"),
            None => "***".to_owned(),
        }
    }
}

impl TryFrom<String> for CustomerEmail {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<CustomerEmail> for String {
    fn from(e: CustomerEmail) -> String {
        e.0
    }
}
/// Debug never shows the address, so a stray `{:?}` cannot leak it into a log.
impl fmt::Debug for CustomerEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerEmail({})", self.masked())
    }
}

/// `customer_name`: 1–200 characters after trimming, no control characters (a CR or LF in a name
/// is a header injection attempt or a broken producer, either way not something to mail).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerName(String);

impl CustomerName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        parse_display_text("customer_name", s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<CustomerName> for String {
    fn from(n: CustomerName) -> String {
        n.0
    }
}
impl fmt::Debug for CustomerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerName(<{} chars>)", self.0.chars().count())
    }
}

/// Text shown to the customer: trimmed, non-empty, bounded, free of control characters.
pub(crate) fn parse_display_text(field: &'static str, s: &str, max_chars: usize) -> Result<String, FieldError> {
    let trimmed = s.trim();
    let len = trimmed.chars().count();
    if len == 0 {
        return Err(FieldError::new(field, "must not be empty or blank"));
    }
    if len > max_chars {
        return Err(FieldError::new(field, format!("is {len} characters; at most {max_chars} allowed")));
    }
    if let Some(bad) = trimmed.chars().find(|c| c.is_control()) {
        return Err(FieldError::new(field, format!("contains the control character {}", describe_char(bad))));
    }
    Ok(trimmed.to_owned())
}

fn describe_char(c: char) -> String {
    match c {
        '\r' => "CR".to_owned(),
        '\n' => "LF".to_owned(),
        '\t' => "TAB".to_owned(),
        ' ' => "a space".to_owned(),
        c if c.is_control() => format!("U+{:04X}", c as u32),
        c => format!("{c:?}"),
    }
}

/// `locale`: the customer's BCP 47 language tag (`ja-JP`, `de-AT`), kept in its canonical form.
/// It only chooses the mail's language and formats, so decode drops a bad one with a note and the
/// mail goes out in English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderLocale(icu_locale_core::Locale);

impl OrderLocale {
    pub const MAX_LEN: usize = 64;

    /// The error never repeats the value.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let rule = "must be a BCP 47 language tag such as \"de-DE\" (at most 64 characters)";
        if s.len() > Self::MAX_LEN {
            return Err(FieldError::new("locale", rule));
        }
        // `de_AT` is how POSIX and Java spell `de-AT`; taking it costs nothing and keeps the language.
        icu_locale_core::Locale::try_from_str(&s.replace('_', "-"))
            .map(Self)
            .map_err(|_| FieldError::new("locale", rule))
    }

    pub fn locale(&self) -> &icu_locale_core::Locale {
        &self.0
    }
}

impl TryFrom<String> for OrderLocale {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<OrderLocale> for String {
    fn from(l: OrderLocale) -> String {
        l.0.to_string()
    }
}

/// Which queue and which share of the send rate an order gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Expedited orders: sent first, may use the reserved share of the send rate.
    High,
    #[default]
    Normal,
}

impl Priority {
    pub const ALL: [Priority; 2] = [Priority::High, Priority::Normal];

    /// `"high"` or `"normal"`, in any case (`"HIGH"` is high). The error never repeats the value.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.eq_ignore_ascii_case("high") {
            Ok(Self::High)
        } else if s.eq_ignore_ascii_case("normal") {
            Ok(Self::Normal)
        } else {
            Err(FieldError::new("priority", "must be \"high\" or \"normal\" (any case)"))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the order as shown in the mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub quantity: u32,
    /// Unit price as the decimal text the producer sent, so no float rounding reaches the mail.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub price: Option<String>,
}

/// What the third-party fulfillment router says about delivery. Black box: only ever shown, never
/// required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Fulfillment {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub center: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub estimated_delivery: Option<String>,
}

impl Fulfillment {
    pub fn is_empty(&self) -> bool {
        self.center.is_none() && self.estimated_delivery.is_none()
    }
}

/// A decoded, valid order. Its serialised form is the canonical payload kept in the ledger (and
/// hashed to detect a reused `order_id` with different content), so field order is fixed here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub customer_email: CustomerEmail,
    pub customer_name: CustomerName,
    pub priority: Priority,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub total: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub items: Vec<Item>,
    #[serde(skip_serializing_if = "Fulfillment::is_empty", default)]
    pub fulfillment: Fulfillment,
    /// Last, and left out when absent, so an order without one keeps the canonical payload (and
    /// hash) it had before the field existed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub locale: Option<OrderLocale>,
}

impl Order {
    /// The canonical payload, built once: what the ledger stores and reconciliation re-sends
    /// from, and its hash.
    pub fn canonical(&self) -> Canonical {
        // Serialising plain data with string keys cannot fail.
        let json = serde_json::to_string(self).unwrap_or_default();
        let sha256 = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(json.as_bytes()))
        };
        Canonical { json, sha256 }
    }

    /// Canonical JSON of the order (see [`Order::canonical`]).
    pub fn canonical_json(&self) -> String {
        self.canonical().json
    }

    /// SHA-256 of the canonical JSON, hex encoded (see [`Order::canonical`]).
    pub fn payload_sha256(&self) -> String {
        self.canonical().sha256
    }
}

/// An order's canonical JSON and its SHA-256 (hex), computed together so the hot path serialises
/// each order once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub json: String,
    pub sha256: String,
}

#[cfg(test)]
mod tests;
