//! The confirmation mail: subject, plain-text and HTML parts, from the templates in `templates/`,
//! in the order's language (docs/design.md, "The mail").
//!
//! The words come from the catalogues ([`crate::catalogue`]), amounts from [`crate::money`],
//! dates from ICU4X, all for the mail's locale; the templates hold layout only. Each template is
//! compiled once per language into static text with the order's values between ([`plan`]), so a
//! render writes a dozen values, not the layout. The HTML part escapes every value exactly once
//! (as minijinja's auto-escape does, byte for byte), so a customer name such as `<script>` arrives
//! as text: the catalogues and formatters hand over plain text. Pure: no I/O.

use crate::catalogue::MailLocale;
use crate::order::Order;
use icu_calendar::{Date, Gregorian};
use icu_datetime::FixedCalendarDateTimeFormatter;
use icu_datetime::fieldsets::YMD;
use icu_locale_core::LanguageIdentifier;
use std::sync::OnceLock;

/// A rendered mail, ready for any [`crate::mailer::Mailer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What the mail needs from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailSettings {
    /// Where a customer sees the order's status (`STATUS_URL_TEMPLATE`); no link when unset.
    pub status_url: Option<StatusUrlTemplate>,
}

/// `STATUS_URL_TEMPLATE`: an `https` URL with `{order_id}` in it once, e.g.
/// `https://shop.example/orders/{order_id}`. Checked at start-up, so every mail's link is one
/// that parses; the order id's alphabet (`A–Z a–z 0–9 . _ : -`) needs no percent-encoding in a
/// path or a query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct StatusUrlTemplate(String);

impl StatusUrlTemplate {
    pub const PLACEHOLDER: &'static str = "{order_id}";
    pub const MAX_LEN: usize = 1024;
    /// The rule, as the start-up error states it (never with the rejected value).
    pub const RULE: &'static str = "must be an https URL of at most 1024 characters with {order_id} in it exactly once and no other braces, spaces, quotes or user name, e.g. https://shop.example/orders/{order_id}";

    pub fn parse(template: &str) -> Result<Self, &'static str> {
        let t = template.trim();
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || "\"'<>\\`^|".contains(c);
        if t.len() > Self::MAX_LEN
            || t.matches(Self::PLACEHOLDER).count() != 1
            || t.replace(Self::PLACEHOLDER, "").contains(['{', '}'])
            || t.chars().any(bad_char)
        {
            return Err(Self::RULE);
        }
        // The host is written out, before the order id: a URL parser would read `https:///{order_id}`
        // as a link to the host named by the order id.
        let rest = t.strip_prefix("https://").ok_or(Self::RULE)?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.is_empty() || authority.contains(['{', '@']) {
            return Err(Self::RULE);
        }
        let url = url::Url::parse(&t.replace(Self::PLACEHOLDER, "ORD-1")).map_err(|_| Self::RULE)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Self::RULE);
        }
        Ok(Self(t.to_owned()))
    }

    /// The order's status URL.
    pub fn url_for(&self, order_id: &str) -> String {
        self.0.replace(Self::PLACEHOLDER, order_id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<StatusUrlTemplate> for String {
    fn from(t: StatusUrlTemplate) -> String {
        t.0
    }
}

mod plan;
#[cfg(test)]
mod reference;

#[derive(Debug, thiserror::Error)]
#[error("rendering {0}")]
pub struct RenderError(plan::PlanError);

/// The templates compiled for one language.
struct Plans {
    html: plan::Plan,
    text: plan::Plan,
}

const HTML: &str = include_str!("../templates/confirmation.html");
const TEXT: &str = include_str!("../templates/confirmation.txt");

/// The plans of `language`'s catalogue, compiled the first time a mail is written in it and kept
/// for the process: the words and the layout around them are the same for every order.
fn plans(catalogue: &'static crate::catalogue::Catalogue) -> Result<&'static Plans, RenderError> {
    static ALL: OnceLock<Vec<(&'static str, Result<Plans, plan::PlanError>)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        crate::catalogue::LANGUAGES
            .iter()
            .map(|(language, _)| {
                let words = crate::catalogue::Catalogue::of(language);
                // A key no catalogue has comes back as itself: refused, so a typo fails the tests.
                let label = |key: &str| Some(words.text(key)).filter(|text| *text != key).map(str::to_owned);
                let plans = plan::Plan::compile("confirmation.html", HTML, true, label).and_then(|html| {
                    Ok(Plans { html, text: plan::Plan::compile("confirmation.txt", TEXT, false, label)? })
                });
                (*language, plans)
            })
            .collect()
    });
    match all.iter().find(|(language, _)| *language == catalogue.language()).map(|(_, plans)| plans) {
        Some(Ok(plans)) => Ok(plans),
        Some(Err(e)) => Err(RenderError(e.clone())),
        // Every catalogue `MailLocale` hands out is a shipped language's.
        None => Err(RenderError(plan::PlanError::no_language(catalogue.language()))),
    }
}

/// Renders the confirmation for one order. Optional details appear only when present.
pub fn render(order: &Order, settings: &MailSettings) -> Result<Mail, RenderError> {
    let locale = MailLocale::for_order(order.locale.as_ref().map(|l| l.locale()));
    let words = locale.catalogue;
    let plans = plans(words)?;
    let order_id = order.order_id.as_str();
    let currency = order.currency.as_deref();
    let amount = |a: &str| crate::money::format(a, currency, &locale.id);
    let items = order
        .items
        .iter()
        .map(|item| {
            let price = item.price.as_deref().map(amount);
            let each = price.as_deref().map(|p| words.format("each", &[("price", p)]));
            plan::ItemValues { name: item.name.as_str(), quantity: item.quantity, price, each }
        })
        .collect();
    // The id's alphabet is restricted (see `OrderId`), so it is safe in a header as is; the
    // catalogue's words are the shop's own.
    let subject = words.format("subject", &[("order_id", order_id)]);
    let lang = locale.tag();
    let preheader = words.format("preheader", &[("order_id", order_id)]);
    let greeting = words.format("greeting", &[("name", order.customer_name.as_str())]);
    let values = plan::Values {
        lang: &lang,
        subject: &subject,
        preheader: &preheader,
        greeting: &greeting,
        order_id,
        total: order.total.as_deref().map(amount),
        estimated_delivery: order.fulfillment.estimated_delivery.as_deref().map(|d| long_date(d, &locale.id)),
        status_url: settings.status_url.as_ref().map(|t| t.url_for(order_id)),
        items,
    };
    let (text, html) = (plans.text.render(&values), plans.html.render(&values));
    Ok(Mail { subject, text, html })
}

/// A `YYYY-MM-DD` date as the locale writes it in full (`December 2, 2026`, `2. Dezember 2026`,
/// `2026年12月2日`); as given if it is not one (decode only keeps dates in that form).
fn long_date(date: &str, locale: &LanguageIdentifier) -> String {
    type Formatter = FixedCalendarDateTimeFormatter<Gregorian, YMD>;
    thread_local! {
        static CACHE: crate::money::FormatterCache<LanguageIdentifier, Formatter> = Default::default();
    }
    let mut parts = date.splitn(3, '-').map(str::parse::<u32>);
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) = (parts.next(), parts.next(), parts.next()) else {
        return date.to_owned();
    };
    let (Ok(year), Ok(month), Ok(day)) = (i32::try_from(year), u8::try_from(month), u8::try_from(day)) else {
        return date.to_owned();
    };
    let Ok(date_value) = Date::try_new_gregorian(year, month, day) else {
        return date.to_owned();
    };
    let formatter = crate::money::cached(&CACHE, locale, || Formatter::try_new(locale.into(), YMD::long()).ok());
    match formatter {
        Some(f) => f.format(&date_value).to_string(),
        None => date.to_owned(),
    }
}

#[cfg(test)]
mod tests;
