use super::*;

#[test]
fn order_id_accepts_the_documented_alphabet() {
    assert!(OrderId::parse("ORD-2024.11_29:0001").is_ok());
    assert!(OrderId::parse(&"a".repeat(64)).is_ok());
}

#[test]
fn order_id_rejects_spaces_length_and_empty() {
    assert_eq!(OrderId::parse("A 1").unwrap_err().rule, "contains a space; only A-Z a-z 0-9 . _ : - are allowed");
    assert!(OrderId::parse(&"a".repeat(65)).unwrap_err().rule.contains("65 characters"));
    assert!(OrderId::parse("").is_err());
    assert!(OrderId::parse("A/1").is_err());
}

#[test]
fn email_rules() {
    for ok in ["a@example.com", "first.last+tag@sub.example.co.uk", "o'brien@example.ie"] {
        assert!(CustomerEmail::parse(ok).is_ok(), "{ok}");
    }
    let cases = [
        ("a@b@c", "has more than one @"),
        ("no-at-sign", "has no @"),
        ("a@localhost", "domain must contain a dot"),
        (".a@example.com", "local part has a misplaced dot"),
        ("a b@example.com", "local part has a character not allowed in an unquoted address"),
        ("a@-x.com", "domain label must not start or end with a hyphen"),
        ("a@example.com\r\nX-Injected: 1", "domain has a character other than letters, digits, hyphens and dots"),
    ];
    for (input, rule) in cases {
        assert_eq!(CustomerEmail::parse(input).unwrap_err().rule, rule, "{input}");
    }
    let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
    assert_eq!(long.len(), 255);
    assert!(CustomerEmail::parse(&long).unwrap_err().rule.contains("255 characters"));
}

#[test]
fn email_debug_is_masked() {
    let e = CustomerEmail::parse("jane@example.com").unwrap();
    assert_eq!(format!("{e:?}"), "CustomerEmail(***@example.com)");
}

#[test]
fn name_is_trimmed_and_rejects_control_characters() {
    assert_eq!(CustomerName::parse("  Zoë  ").unwrap().as_str(), "Zoë");
    assert!(CustomerName::parse("a\r\nBcc: x").unwrap_err().rule.contains("CR"));
    assert!(CustomerName::parse("   ").is_err());
    assert!(CustomerName::parse(&"x".repeat(201)).is_err());
    assert!(!format!("{:?}", CustomerName::parse("Jane").unwrap()).contains("Jane"));
}

#[test]
fn payload_hash_is_stable_and_content_sensitive() {
    let order = |name: &str| Order {
        order_id: OrderId::parse("A1").unwrap(),
        customer_email: CustomerEmail::parse("a@example.com").unwrap(),
        customer_name: CustomerName::parse(name).unwrap(),
        priority: Priority::Normal,
        total: None,
        currency: None,
        items: vec![],
        fulfillment: Fulfillment::default(),
        locale: None,
    };
    assert_eq!(order("Ann").payload_sha256(), order("Ann").payload_sha256());
    assert_ne!(order("Ann").payload_sha256(), order("Bob").payload_sha256());
    let canonical = order("Ann").canonical();
    assert_eq!((canonical.json, canonical.sha256), (order("Ann").canonical_json(), order("Ann").payload_sha256()));
}

#[test]
fn a_locale_is_kept_canonical_and_a_bad_one_is_refused_without_its_value() {
    assert_eq!(String::from(OrderLocale::parse("ja-jp").unwrap()), "ja-JP");
    assert_eq!(String::from(OrderLocale::parse("de_AT").unwrap()), "de-AT");
    for bad in ["en-US<script>", "", "x", &"de-".repeat(30)] {
        let e = OrderLocale::parse(bad).unwrap_err();
        assert_eq!(e.field, "locale");
        assert!(bad.is_empty() || !e.rule.contains(bad), "{bad}");
    }
}
