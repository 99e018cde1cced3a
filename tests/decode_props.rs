//! Property tests of the decoder: no input makes it panic, and valid orders survive the trip
//! through JSON and through the legacy Python-literal format unchanged.

use order_confirmation::decode::{Note, decode};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode(&text);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let _ = decode(&v.to_string());
    }

    #[test]
    fn valid_orders_round_trip(
        id in "[A-Za-z0-9._:-]{1,64}",
        local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]",
        domain in "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.[a-z]{2,6}",
        name in "[\\p{L}][\\p{L} '<>&\"-]{0,60}[\\p{L}]",
        high in any::<bool>(),
    ) {
        let email = format!("{local}@{domain}");
        prop_assume!(!local.contains(".."));
        let priority = if high { "high" } else { "normal" };
        let json = serde_json::json!({"order_id": id, "customer_email": email, "customer_name": name, "priority": priority});
        let d = decode(&json.to_string()).unwrap();
        prop_assert_eq!(d.order.order_id.as_str(), id.as_str());
        prop_assert_eq!(d.order.customer_email.as_str(), email.as_str());
        prop_assert_eq!(d.order.customer_name.as_str(), name.trim());
        prop_assert_eq!(d.order.priority.as_str(), priority);
        prop_assert!(d.notes.is_empty());

        // The canonical payload decodes to the same order.
        let again = decode(&d.order.canonical_json()).unwrap();
        prop_assert_eq!(&again.order, &d.order);

        // The same order in the legacy Python-literal format decodes identically.
        let py = format!(
            "{{'order_id': {}, 'customer_email': {}, 'customer_name': {}, 'priority': {}, 'gift': True, 'note': None}}",
            py_str(&id), py_str(&email), py_str(&name), py_str(priority)
        );
        let legacy = decode(&py).unwrap();
        prop_assert_eq!(&legacy.order, &d.order);
        prop_assert_eq!(legacy.notes, vec![Note::LegacyPayloadFormat]);
    }
}

fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        ".{0,20}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("order_id".to_owned()),
                    Just("customer_email".to_owned()),
                    Just("customer_name".to_owned()),
                    Just("priority".to_owned()),
                    Just("fulfillment".to_owned()),
                    Just("items".to_owned()),
                    Just("total".to_owned()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
