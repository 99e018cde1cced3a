//! The renderer the compiled plans replaced: the templates rendered by minijinja for every mail.
//! Kept, for the tests only, as the reference the plans must match byte for byte.

use super::{Mail, MailSettings, long_date};
use crate::catalogue::MailLocale;
use crate::order::Order;
use minijinja::value::Value;
use minijinja::{Environment, context};
use std::collections::HashMap;
use std::sync::OnceLock;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("confirmation.txt", super::TEXT).expect("templates/confirmation.txt parses");
        env.add_template("confirmation.html", super::HTML).expect("templates/confirmation.html parses");
        env
    })
}

/// The catalogue's messages without variables, as the templates' `t` (keys with `_` for `-`).
fn labels(locale: &MailLocale) -> Value {
    static ALL: OnceLock<HashMap<&'static str, Value>> = OnceLock::new();
    const KEYS: [&str; 12] = [
        "heading",
        "intro",
        "order-number",
        "total",
        "estimated-delivery",
        "items",
        "item",
        "quantity",
        "price",
        "status-link",
        "status-text",
        "closing",
    ];
    let all = ALL.get_or_init(|| {
        crate::catalogue::LANGUAGES
            .iter()
            .map(|(language, _)| {
                let catalogue = crate::catalogue::Catalogue::of(language);
                let pairs = KEYS.iter().map(|k| (k.replace('-', "_"), catalogue.text(k).to_owned()));
                (*language, Value::from_pairs(pairs))
            })
            .collect()
    });
    all.get(locale.catalogue.language()).cloned().unwrap_or_default()
}

/// The confirmation as minijinja renders it.
pub(super) fn render(order: &Order, settings: &MailSettings) -> Mail {
    let locale = MailLocale::for_order(order.locale.as_ref().map(|l| l.locale()));
    let words = locale.catalogue;
    let order_id = order.order_id.as_str();
    let currency = order.currency.as_deref();
    let amount = |a: &str| crate::money::format(a, currency, &locale.id);
    let items: Vec<Value> = order
        .items
        .iter()
        .map(|item| {
            let price = item.price.as_deref().map(amount);
            let each = price.as_deref().map(|p| words.format("each", &[("price", p)]));
            context! { name => item.name.as_str(), quantity => item.quantity, price, each }
        })
        .collect();
    let subject = words.format("subject", &[("order_id", order_id)]);
    let ctx = context! {
        lang => locale.tag(),
        t => labels(&locale),
        subject => subject.as_str(),
        preheader => words.format("preheader", &[("order_id", order_id)]),
        greeting => words.format("greeting", &[("name", order.customer_name.as_str())]),
        order_id,
        items,
        total => order.total.as_deref().map(amount),
        estimated_delivery => order.fulfillment.estimated_delivery.as_deref().map(|d| long_date(d, &locale.id)),
        status_url => settings.status_url.as_ref().map(|t| t.url_for(order_id)),
    };
    let part = |template: &str| environment().get_template(template).and_then(|t| t.render(&ctx)).unwrap();
    let (text, html) = (part("confirmation.txt"), part("confirmation.html"));
    Mail { subject, text, html }
}
