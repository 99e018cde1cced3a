use super::*;

fn valid() -> serde_json::Value {
    serde_json::json!({"order_id": "A1", "customer_email": "a@example.com", "customer_name": "Ann"})
}

fn reject(body: &str) -> String {
    decode(body).unwrap_err().to_string()
}

/// `object` without its closing brace: a body cut off before it ends.
fn cut_off(object: serde_json::Value) -> String {
    let text = object.to_string();
    text.strip_suffix('}').unwrap_or(&text).to_owned()
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
    let cut = cut_off(serde_json::json!({"order_id": "A1"}));
    assert!(reject(&cut).starts_with("body is neither JSON nor a Python dict literal: EOF"));
    assert_eq!(reject(&"[".repeat(10_000)), "body is nested too deeply to be an order");
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    assert!(reject(&big).starts_with("body is 262155 bytes; the limit is 262144"));
}

#[test]
fn a_rejected_body_still_names_its_valid_order_id() {
    let order_id = |body: &str| decode_message(body).unwrap_err().order_id.map(|id| id.to_string());
    assert_eq!(order_id(r#"{"order_id": "A-1", "customer_name": "x"}"#).as_deref(), Some("A-1"));
    assert_eq!(order_id("{'order_id': 'A-2'}").as_deref(), Some("A-2"));
    let unreadable_name = r#"{"order_id": "A-3", "customer_email": "a@example.com", "customer_name": "\ud800"}"#;
    assert_eq!(order_id(unreadable_name).as_deref(), Some("A-3"));
    assert_eq!(order_id(r#"{"order_id": "bad id"}"#), None);
    assert_eq!(order_id("[1]"), None);
    assert_eq!(order_id(&cut_off(serde_json::json!({}))), None);
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
        ("customer_name", serde_json::json!("Ann\r\nBcc: x@y.z"), "customer_name: contains the control character CR"),
        (
            "schema_version",
            serde_json::json!(2),
            "schema_version: must be the integer 1, the only version this service knows",
        ),
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
    // Five decimals: more than any ISO 4217 currency has (three and four are KWD's and CLF's).
    body["total"] = serde_json::json!("12.34567");
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
fn priority_is_read_in_any_case_and_a_bad_one_is_normal_and_noted() {
    for (value, expected) in [("HIGH", Priority::High), ("High", Priority::High), ("NORMAL", Priority::Normal)] {
        let mut body = valid();
        body["priority"] = serde_json::json!(value);
        let d = decode(&body.to_string()).unwrap();
        assert_eq!((d.order.priority, d.notes.len()), (expected, 0), "{value}");
    }
    for value in [serde_json::json!("urgent"), serde_json::json!(5), serde_json::json!(["high"])] {
        let mut body = valid();
        body["priority"] = value.clone();
        let d = decode(&body.to_string()).unwrap();
        assert_eq!(d.order.priority, Priority::Normal, "{value}");
        assert!(matches!(d.notes[..], [Note::OrderDetailInvalid { field: "priority", .. }]), "{:?}", d.notes);
    }
}

#[test]
fn an_unreadable_optional_detail_is_dropped_and_an_unreadable_unknown_field_ignored() {
    let base = r#""order_id": "A1", "customer_email": "a@example.com", "customer_name": "Ann""#;
    let d = decode(&format!(r#"{{{base}, "total": 1e400, "currency": "EUR"}}"#)).unwrap();
    assert_eq!((d.order.total.as_deref(), d.order.currency.as_deref()), (None, Some("EUR")));
    assert!(matches!(d.notes[..], [Note::OrderDetailInvalid { field: "total", .. }]), "{:?}", d.notes);
    let legacy = "{'order_id': 'A1', 'customer_email': 'a@example.com', 'customer_name': 'Ann', 'total': 1e400}";
    let d = decode(legacy).unwrap();
    assert_eq!(d.order.total, None);
    assert!(
        matches!(d.notes[..], [Note::LegacyPayloadFormat, Note::OrderDetailInvalid { field: "total", .. }]),
        "{:?}",
        d.notes
    );
    let d = decode(&format!(r#"{{{base}, "gift_note": "\ud800 lone"}}"#)).unwrap();
    assert!(d.notes.is_empty());
    let d = decode(&format!(r#"{{{base}, "items": [{{"name": "\udc00"}}]}}"#)).unwrap();
    assert!(matches!(d.notes[..], [Note::OrderDetailInvalid { field: "items", .. }]), "{:?}", d.notes);
    let r = decode(r#"{"order_id": "A1", "customer_email": "a@example.com", "customer_name": "\ud800"}"#);
    assert_eq!(r.unwrap_err().to_string(), "customer_name: is not readable JSON (a lone surrogate escape?)");
}

#[test]
fn legacy_decimal_and_datetime_details_are_read_not_refused() {
    let d = decode(
        "{'order_id': 'A1', 'customer_email': 'a@example.com', 'customer_name': 'Ann', \
         'total': Decimal('42.50'), 'placed_at': datetime.datetime(2024, 1, 2, 3, 4, 5), \
         'fulfillment': {'estimated_delivery': datetime.date(2024, 1, 9)}}",
    )
    .unwrap();
    assert_eq!(d.order.total.as_deref(), Some("42.50"));
    assert_eq!(d.order.fulfillment.estimated_delivery.as_deref(), Some("2024-01-09"));
    assert_eq!(d.notes, vec![Note::LegacyPayloadFormat]);
    let d = decode(
        "{'order_id': 'A1', 'customer_email': 'a@example.com', 'customer_name': 'Ann', 'total': Decimal('NaN')}",
    )
    .unwrap();
    assert_eq!(d.order.total, None);
    assert_eq!(d.notes.len(), 2, "{:?}", d.notes);
}

#[test]
fn no_reason_or_note_repeats_the_value_it_refused() {
    let secret = "jane.secret@example.org";
    for field in ["priority", "total", "currency", "schema_version"] {
        let mut body = valid();
        body[field] = serde_json::json!(secret);
        let text = match decode(&body.to_string()) {
            Ok(d) => d.notes.iter().map(Note::to_string).collect::<Vec<_>>().join("; "),
            Err(r) => r.to_string(),
        };
        assert!(!text.is_empty() && !text.contains("jane"), "{field}: {text}");
    }
    let mut body = valid();
    body["items"] = serde_json::json!([{"name": "Mug", "price": secret, "quantity": secret}]);
    body["fulfillment"] = serde_json::json!({"center": secret.repeat(10), "estimated_delivery": secret});
    let d = decode(&body.to_string()).unwrap();
    let text = d.notes.iter().map(Note::to_string).collect::<Vec<_>>().join("; ");
    assert!(d.notes.len() == 3 && !text.contains("jane"), "{text}");
}

#[test]
fn unknown_fields_and_html_names_are_accepted() {
    let mut body = valid();
    body["customer_name"] = serde_json::json!("<script>alert(1)</script> Zoë 山田");
    body["loyalty_tier"] = serde_json::json!("gold");
    let d = decode(&body.to_string()).unwrap();
    assert_eq!(d.order.customer_name.as_str(), "<script>alert(1)</script> Zoë 山田");
}

#[test]
fn an_amount_keeps_up_to_four_decimals_and_two_decimal_amounts_keep_their_canonical_form() {
    let mut body = valid();
    body["total"] = serde_json::json!("1.250");
    body["currency"] = serde_json::json!("KWD");
    body["items"] = serde_json::json!([{"name": "Tea", "price": 0.5}]);
    let d = decode(&body.to_string()).unwrap();
    assert_eq!(d.order.total.as_deref(), Some("1.250"));
    assert_eq!(d.order.items[0].price.as_deref(), Some("0.50"), "padded to two decimals, as before");
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

#[test]
fn an_amount_its_currency_cannot_hold_is_kept_as_given_and_noted_without_the_value() {
    let mut body = valid();
    body["total"] = serde_json::json!(129.5);
    body["currency"] = serde_json::json!("JPY");
    body["items"] = serde_json::json!([{"name": "Tea", "price": "64.75"}, {"name": "Cup", "price": "64"}]);
    let d = decode(&body.to_string()).unwrap();
    assert_eq!(d.order.total.as_deref(), Some("129.50"));
    let notes: Vec<String> = d.notes.iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "order detail total has more decimals than JPY has minor units (0); shown as given",
            "order detail items.price has more decimals than JPY has minor units (0); shown as given"
        ]
    );
    assert!(d.notes.iter().all(|n| crate::batch::Counter::of_note(n) == crate::batch::Counter::OrderDetailInvalid));
}

#[test]
fn a_locale_is_kept_and_a_bad_one_is_dropped_with_a_note_that_names_the_rule_not_the_value() {
    let mut body = valid();
    body["locale"] = serde_json::json!("ja-jp");
    let d = decode(&body.to_string()).unwrap();
    assert_eq!(d.order.locale.map(String::from).as_deref(), Some("ja-JP"));
    assert!(d.notes.is_empty());
    for bad in [serde_json::json!("<img src=x onerror=alert(1)>"), serde_json::json!(["de"])] {
        body["locale"] = bad.clone();
        let d = decode(&body.to_string()).unwrap();
        assert_eq!(d.order.locale, None);
        let note = d.notes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        assert!(note.starts_with("order detail locale dropped: must be a "), "{note}");
        assert!(note.ends_with("the mail is in English"), "{note}");
        assert!(!note.contains("onerror"), "{note}");
    }
    body["locale"] = serde_json::json!("");
    assert_eq!(decode(&body.to_string()).unwrap().notes, vec![], "an empty locale is no locale");
}
