//! The confirmation mail: subject, plain-text and HTML parts, rendered from the templates in
//! `templates/` with minijinja. The HTML template is auto-escaped (its name ends in `.html`), so
//! a customer name such as `<script>` arrives as text. Pure: no I/O.

use crate::order::Order;
use minijinja::{Environment, context};
use std::sync::OnceLock;

/// A rendered mail, ready for any [`crate::mailer::Mailer`].
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // The templates are compiled into the binary, so a broken one fails the unit tests, not a
        // message at 3 a.m.
        env.add_template("confirmation.txt", include_str!("../templates/confirmation.txt"))
            .expect("templates/confirmation.txt parses");
        env.add_template("confirmation.html", include_str!("../templates/confirmation.html"))
            .expect("templates/confirmation.html parses");
        env
    })
}

#[derive(Debug, thiserror::Error)]
#[error("rendering {template} failed: {source}")]
pub struct RenderError {
    template: &'static str,
    source: minijinja::Error,
}

/// Renders the confirmation for one order. Optional details appear only when present.
pub fn render(order: &Order) -> Result<Mail, RenderError> {
    let ctx = context! {
        name => order.customer_name.as_str(),
        order_id => order.order_id.as_str(),
        items => minijinja::value::Serde(&order.items),
        total => &order.total,
        currency => &order.currency,
        estimated_delivery => &order.fulfillment.estimated_delivery,
    };
    let part = |template: &'static str| {
        environment()
            .get_template(template)
            .and_then(|t| t.render(&ctx))
            .map_err(|source| RenderError { template, source })
    };
    Ok(Mail {
        // The id's alphabet is restricted (see `OrderId`), so it is safe in a header as is.
        subject: format!("Your order {} is confirmed", order.order_id),
        text: part("confirmation.txt")?,
        html: part("confirmation.html")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;

    fn order(json: serde_json::Value) -> Order {
        decode(&json.to_string()).unwrap().order
    }

    #[test]
    fn minimal_order_renders_without_details() {
        let mail = render(&order(
            serde_json::json!({"order_id": "A1", "customer_email": "a@example.com", "customer_name": "Ann"}),
        ))
        .unwrap();
        assert_eq!(mail.subject, "Your order A1 is confirmed");
        assert!(mail.text.starts_with("Hi Ann,\n"));
        assert!(!mail.text.contains("Total"));
        assert!(!mail.html.contains("<table>"));
    }

    #[test]
    fn details_appear_when_valid() {
        let mail = render(&order(serde_json::json!({
            "order_id": "A2", "customer_email": "a@example.com", "customer_name": "Ann",
            "total": 19.9, "currency": "EUR", "items": [{"name": "Mug", "quantity": 2, "price": "9.95"}],
            "fulfillment": {"center": "DC-7", "estimated_delivery": "2026-12-01"}
        })))
        .unwrap();
        assert!(mail.text.contains("  - 2 x Mug (9.95 EUR each)"), "{}", mail.text);
        assert!(mail.text.contains("Total: 19.90 EUR"));
        assert!(mail.text.contains("Estimated delivery: 2026-12-01"));
        assert!(mail.html.contains("<td>Mug</td>"));
    }

    #[test]
    fn html_part_escapes_the_name_and_text_part_keeps_it() {
        let mail = render(&order(serde_json::json!({
            "order_id": "A3", "customer_email": "a@example.com", "customer_name": "<script>alert('x')</script> & Zoë",
            "items": [{"name": "<b>Mug</b>"}]
        })))
        .unwrap();
        assert!(
            mail.html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; Zoë"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<script>"));
        assert!(!mail.html.contains("<b>Mug"));
        assert!(mail.text.contains("<script>alert('x')</script> & Zoë"));
    }
}
