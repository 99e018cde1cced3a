use super::*;
use crate::decode::decode;

fn order(json: serde_json::Value) -> Order {
    decode(&json.to_string()).unwrap().order
}

fn mail(json: serde_json::Value) -> Mail {
    render(&order(json), &MailSettings::default()).unwrap()
}

/// CLDR puts no-break spaces inside amounts and dates; compared here as plain spaces.
fn plain(s: &str) -> String {
    s.replace(['\u{a0}', '\u{202f}'], " ")
}

fn full(locale: &str) -> serde_json::Value {
    serde_json::json!({
        "order_id": "A2", "customer_email": "a@example.com", "customer_name": "Ann", "locale": locale,
        "total": 1234.5, "currency": "EUR", "items": [{"name": "Mug", "quantity": 2, "price": "9.95"}],
        "fulfillment": {"center": "DC-7", "estimated_delivery": "2026-12-01"}
    })
}

#[test]
fn minimal_order_renders_without_details() {
    let mail = mail(serde_json::json!({"order_id": "A1", "customer_email": "a@example.com", "customer_name": "Ann"}));
    assert_eq!(mail.subject, "Your order A1 is confirmed");
    assert!(mail.text.starts_with("Hi Ann,\n"));
    assert!(!mail.text.contains("Total"));
    assert!(!mail.html.contains("Total"));
    assert!(!mail.html.contains("Qty"), "no item table without items");
    assert!(mail.html.contains("<html lang=\"en\""));
}

// The assertions of the old format ("Total: 19.90 EUR", "2026-12-01") gave way to the amounts
// and dates as CLDR writes them for English.
#[test]
fn details_appear_when_valid_as_cldr_writes_them() {
    let mail = mail(full("en"));
    let text = plain(&mail.text);
    assert!(text.contains("  - 2 x Mug (€9.95 each)"), "{text}");
    assert!(text.contains("Total: €1,234.50"), "{text}");
    assert!(text.contains("Estimated delivery: December 1, 2026"), "{text}");
    assert!(text.contains("Order number: A2"), "{text}");
    let html = plain(&mail.html);
    assert!(html.contains(">Mug</td>"), "{html}");
    assert!(html.contains("€1,234.50"));
    assert!(html.contains("December 1, 2026"));
}

#[test]
fn the_mail_is_in_the_order_locale_with_its_formats() {
    let cases = [
        ("de-DE", "Gesamtbetrag", "1.234,50 €", "1. Dezember 2026", "Ihre Bestellung A2 ist bestätigt"),
        ("fr-FR", "Total", "1 234,50 €", "1 décembre 2026", "Votre commande A2 est confirmée"),
        ("es-ES", "Total", "1234,50 €", "1 de diciembre de 2026", "Tu pedido A2 está confirmado"),
        ("ja-JP", "合計", "€1,234.50", "2026年12月1日", "ご注文 A2 を承りました"),
        ("en-IE", "Total", "€1,234.50", "1 December 2026", "Your order A2 is confirmed"),
    ];
    for (locale, total_label, total, date, subject) in cases {
        let mail = mail(full(locale));
        assert_eq!(mail.subject, subject, "{locale}");
        let text = plain(&mail.text);
        assert!(text.contains(&format!("{total_label}: {total}")), "{locale}: {text}");
        assert!(text.contains(date), "{locale}: {text}");
        assert!(mail.html.contains(&format!("<html lang=\"{locale}\"")), "{locale}");
        assert!(plain(&mail.html).contains(total), "{locale}");
    }
}

#[test]
fn yen_have_no_decimals_and_a_japanese_mail_says_so_in_japanese() {
    let mail = mail(serde_json::json!({
        "order_id": "ORD-1002", "customer_email": "kenji@example.jp", "customer_name": "山田 健二",
        "locale": "ja-JP", "total": 129.0, "currency": "JPY"
    }));
    assert!(mail.text.contains("合計: ￥129\n"), "{}", mail.text);
    assert!(mail.text.starts_with("山田 健二 様\n"), "{}", mail.text);
    assert!(!mail.text.contains("129.00"));
    assert!(mail.html.contains("￥129"));
}

#[test]
fn a_language_not_shipped_and_a_bad_locale_get_english() {
    for locale in ["pt-BR", "not a locale"] {
        let mail = mail(full(locale));
        assert_eq!(mail.subject, "Your order A2 is confirmed", "{locale}");
        assert!(plain(&mail.text).contains("Total: €1,234.50"), "{locale}");
        assert!(mail.html.contains("<html lang=\"en\""), "{locale}");
    }
}

#[test]
fn html_part_escapes_the_name_once_and_text_part_keeps_it() {
    let mail = mail(serde_json::json!({
        "order_id": "A3", "customer_email": "a@example.com", "customer_name": "<script>alert('x')</script> & Zoë",
        "items": [{"name": "<b>Mug</b> & \"Cup\""}]
    }));
    assert!(mail.html.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; Zoë"), "{}", mail.html);
    assert!(!mail.html.contains("<script>"));
    assert!(!mail.html.contains("<b>Mug"));
    assert!(!mail.html.contains("&amp;amp;") && !mail.html.contains("&amp;lt;"), "escaped twice");
    assert!(mail.text.contains("<script>alert('x')</script> & Zoë"));
}

#[test]
fn the_status_link_is_the_configured_template_with_the_order_id_escaped_once() {
    let settings = MailSettings {
        status_url: Some(StatusUrlTemplate::parse("https://shop.example/orders/{order_id}?src=mail&lang=x").unwrap()),
    };
    let mail = render(&order(full("en")), &settings).unwrap();
    assert!(mail.text.contains("https://shop.example/orders/A2?src=mail&lang=x"), "{}", mail.text);
    assert!(
        mail.html.contains("href=\"https:&#x2f;&#x2f;shop.example&#x2f;orders&#x2f;A2?src=mail&amp;lang=x\""),
        "{}",
        mail.html
    );
    assert!(mail.html.contains("See your order&#x27;s status"));
    let without = render(&order(full("en")), &MailSettings::default()).unwrap();
    assert!(!without.html.contains("href=") && !without.text.contains("Follow your order"));
}

#[test]
fn a_status_url_template_is_checked_without_repeating_it() {
    assert!(StatusUrlTemplate::parse("https://shop.example/orders/{order_id}").is_ok());
    assert!(StatusUrlTemplate::parse("https://shop.example/o?id={order_id}&x=1").is_ok());
    for bad in [
        "http://shop.example/orders/{order_id}",
        "https://shop.example/orders/",
        "https://shop.example/{order_id}/{order_id}",
        "https://shop.example/{order}/{order_id}",
        "https://shop.example/orders/{order_id}\"><script>",
        "https://user@shop.example/{order_id}",
        "https:///{order_id}",
        "javascript:alert(1)//{order_id}",
        "shop.example/{order_id}",
    ] {
        assert_eq!(StatusUrlTemplate::parse(bad), Err(StatusUrlTemplate::RULE), "{bad}");
    }
}

/// Every order of the sample events (valid ones), and orders that reach each branch of the
/// templates: every shipped language and the fallbacks, with and without each optional part,
/// items with and without a price, amounts a currency cannot hold, hostile text, 100 items.
fn samples() -> Vec<Order> {
    let mut bodies: Vec<serde_json::Value> = Vec::new();
    for file in ["sqs-batch.json", "sqs-hostile.json", "sqs-duplicates.json", "sqs-bad-input.json"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events").join(file);
        let event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for record in event["Records"].as_array().unwrap() {
            if let Ok(body) = serde_json::from_str(record["body"].as_str().unwrap_or_default()) {
                bodies.push(body);
            }
        }
    }
    for locale in ["en", "de-DE", "de-AT", "fr-FR", "es-ES", "ja-JP", "en-IE", "pt-BR", "not a locale"] {
        bodies.push(full(locale));
        let mut b = full(locale);
        b["items"] = serde_json::json!([{"name": "No price", "quantity": 1}, {"name": "<b>x</b> & 'y' / \"z\"", "quantity": 3, "price": "0.5"}]);
        b["currency"] = serde_json::json!("JPY");
        b["total"] = serde_json::json!("129.5");
        bodies.push(b);
        let mut b = full(locale);
        for key in ["items", "total", "currency", "fulfillment"] {
            b.as_object_mut().unwrap().remove(key);
        }
        bodies.push(b);
    }
    let mut big = full("de-DE");
    big["items"] = (0..100)
        .map(|i| serde_json::json!({"name": format!("Mug {i} <glaze>"), "quantity": i + 1, "price": "1249.99"}))
        .collect();
    bodies.push(big);
    bodies.push(serde_json::json!({
        "order_id": "A3", "customer_email": "a@example.com", "customer_name": "<script>alert('x')</script> & Zoë",
        "locale": "ja-JP", "total": "12900", "currency": "JPY", "items": [{"name": "<b>Mug</b> & \"Cup\""}]
    }));
    bodies.into_iter().filter_map(|b| decode(&b.to_string()).ok().map(|d| d.order)).collect()
}

#[test]
fn the_compiled_mail_is_byte_identical_to_minijinja_for_every_sample() {
    let orders = samples();
    assert!(orders.len() >= 30, "{} orders", orders.len());
    let with_link = MailSettings {
        status_url: Some(StatusUrlTemplate::parse("https://shop.example/orders/{order_id}?src=mail&x=1").unwrap()),
    };
    for settings in [MailSettings::default(), with_link] {
        for order in &orders {
            let (compiled, minijinja) = (render(order, &settings).unwrap(), reference::render(order, &settings));
            assert_eq!(compiled.subject, minijinja.subject, "{}", order.order_id.as_str());
            assert_eq!(compiled.text, minijinja.text, "{}", order.order_id.as_str());
            assert_eq!(compiled.html, minijinja.html, "{}", order.order_id.as_str());
        }
    }
}

#[test]
fn a_hundred_item_order_stays_far_below_gmail_clipping() {
    let items: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"name": format!("Hand-thrown stoneware coffee mug, glaze {i}"), "quantity": 2, "price": "1249.99"}))
        .collect();
    let mut body = full("de-DE");
    body["items"] = serde_json::Value::Array(items);
    let mail = mail(body);
    assert_eq!(mail.html.matches(">Hand-thrown").count(), 100);
    // Gmail clips a mail's HTML past 102 KB; "well under" leaves room for the shop's header.
    assert!(mail.html.len() < 60 * 1024, "{} bytes", mail.html.len());
}

#[test]
fn the_html_is_built_for_mail_clients() {
    let html = mail(full("en")).html;
    assert!(html.contains(r#"<meta name="color-scheme" content="light dark">"#));
    assert!(html.contains("prefers-color-scheme: dark"));
    assert!(html.contains(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#));
    // The preheader is in the page but hidden from view.
    let preheader = html.find("Thank you! Order A2 is confirmed.").unwrap();
    assert!(html[..preheader].rfind("display:none").is_some());
    // Layout tables say they are layout; no image goes without its alt text.
    assert_eq!(
        html.matches("<table").count(),
        html.matches("role=\"presentation\"").count() + 1,
        "only the items table is data"
    );
    assert_eq!(html.matches("<img").count(), html.matches(" alt=\"").count());
    assert!(!html.contains("<div class") && !html.contains("display:flex") && !html.contains("display:grid"));
}
