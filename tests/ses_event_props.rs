//! Property tests of SES event reading (docs/design.md, "Delivery events"): no body makes it
//! panic, a rejection never repeats the value it refused (an SES event carries the customer's
//! address), and every valid order id survives the trip through SES's tag alphabet.

use order_confirmation::order::OrderId;
use order_confirmation::ses_event::{DeliveryEvent, MailTags};
use proptest::prelude::*;
use serde_json::{Value, json};

fn bounce(order_tag: Value, message_id: Value, bounce_type: Value, timestamp: Value) -> String {
    json!({"version": "0", "id": "x", "detail-type": "Email Bounced", "source": "aws.ses", "account": "1",
        "time": "2026-11-27T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"eventType": "Bounce",
            "mail": {"timestamp": "2026-11-27T10:00:00Z", "messageId": message_id, "destination": ["a@example.com"],
                     "tags": {"order_id": order_tag, "claim_token": ["5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20"]}},
            "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "timestamp": timestamp,
                       "bouncedRecipients": [{"emailAddress": "a@example.com", "status": "5.1.1"}]}}})
    .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = DeliveryEvent::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn every_order_id_round_trips_through_the_ses_tag_alphabet(id in "[A-Za-z0-9._:-]{1,64}") {
        let tags = MailTags { order_id: OrderId::parse(&id).unwrap(), claim_token: uuid::Uuid::nil() };
        let value = tags.order_id_value();
        prop_assert!(value.len() <= 256);
        prop_assert!(value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{}", value);
        let back = MailTags::parse_order_id(&value).unwrap();
        prop_assert_eq!(back.as_str(), id.as_str());
    }

    /// A hostile value in any one field the reader checks: refused with a rule that does not
    /// repeat it, or (an optional detail) left out without keeping it.
    #[test]
    fn a_refused_value_is_never_repeated(
        secret in "[a-z]{3,12}@[a-z]{3,8}\\.(com|net) ?[\\PC]{0,20}",
        field in 0usize..4,
    ) {
        let s = json!([secret.clone()]);
        let v = json!(secret.clone());
        let ok_tag = json!(["ORD-1"]);
        let body = match field {
            0 => bounce(s, json!("m-1"), json!("Permanent"), json!("2026-11-27T10:00:01Z")),
            1 => bounce(ok_tag, v, json!("Permanent"), json!("2026-11-27T10:00:01Z")),
            2 => bounce(ok_tag, json!("m-1"), v, json!("2026-11-27T10:00:01Z")),
            _ => bounce(ok_tag, json!("m-1"), json!("Permanent"), v),
        };
        // Read on the bodies' day, so that their times stay inside the plausible window.
        match DeliveryEvent::parse_at(&body, time::OffsetDateTime::from_unix_timestamp(1_795_780_800).unwrap()) {
            Err(r) => {
                prop_assert!(!r.rule.contains(&secret), "{}", r.rule);
                prop_assert!(!r.rule.contains('@'), "{}", r.rule);
            }
            // A malformed optional detail (the tag, the event's time) is left out, by its rule.
            Ok(e) => {
                // (field 1 is the message id itself: any visible ASCII is a valid one, kept as is.)
                prop_assert!(field == 1 || !format!("{e:?}").contains(&secret), "{:?}", e);
                prop_assert!(e.ignored.iter().all(|rule| !rule.contains('@')), "{:?}", e.ignored);
                prop_assert!(field == 0 || field == 3 || e.ignored.is_empty(), "{:?}", e.ignored);
            }
        }
    }
}
