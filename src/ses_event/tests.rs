use super::parse::is_dsn_status;
use super::*;
use serde_json::json;

fn envelope(event_type: EventType, object: Value) -> String {
    let mut detail = json!({
        "eventType": event_type.as_str(),
        "mail": {
            "timestamp": "2026-11-27T10:00:00.000Z",
            "source": "orders@example.com",
            "messageId": "0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000",
            "destination": ["jane.doe@example.com"],
            "tags": {
                "ses:configuration-set": ["order-confirmation"],
                "order_id": ["ORD-1001"],
                "claim_token": ["5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20"]
            }
        }
    });
    detail[event_type.object_key()] = object;
    json!({
        "version": "0", "id": "2f1c7d0e-0000-4000-8000-000000000001", "detail-type": event_type.detail_type(),
        "source": "aws.ses", "account": "123456789012", "time": "2026-11-27T10:00:02Z",
        "region": "us-east-1", "resources": [], "detail": detail
    })
    .to_string()
}

/// The samples' events happened on 2026-11-27: they are read as on that day, so that the
/// plausible window around the reading time never ages them out.
fn parse(body: &str) -> Result<DeliveryEvent, EventRejection> {
    DeliveryEvent::parse_at(body, time::macros::datetime!(2026-11-27 12:00 UTC))
}

/// `object` without its closing brace: a body cut off before it ends.
fn cut_off(object: Value) -> String {
    let text = object.to_string();
    text.strip_suffix('}').unwrap_or(&text).to_owned()
}

#[test]
fn a_permanent_bounce_is_bounced_with_its_type_and_status_but_no_address() {
    let body = envelope(
        EventType::Bounce,
        json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-11-27T10:00:01.500Z",
               "feedbackId": "x", "bouncedRecipients": [{"emailAddress": "jane.doe@example.com",
               "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 jane.doe@example.com unknown"}]}),
    );
    let e = parse(&body).unwrap();
    assert_eq!(e.effect, Effect::State(DeliveryState::Bounced));
    assert_eq!(e.detail, "Permanent/General 5.1.1");
    assert_eq!(e.order_id.as_ref().map(OrderId::as_str), Some("ORD-1001"));
    assert_eq!(e.claim_token, Some(Uuid::parse_str("5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20").unwrap()));
    assert_eq!(e.occurred_at.unix_timestamp(), time::macros::datetime!(2026-11-27 10:00:01.5 UTC).unix_timestamp());
    assert!(!format!("{e:?}").contains("jane"));
}

#[test]
fn transient_and_undetermined_bounces_are_soft_bounces() {
    for kind in ["Transient", "Undetermined"] {
        let body = envelope(EventType::Bounce, json!({"bounceType": kind, "bounceSubType": "MailboxFull"}));
        let e = parse(&body).unwrap();
        assert_eq!(e.effect, Effect::State(DeliveryState::SoftBounced), "{kind}");
        assert_eq!(e.detail, format!("{kind}/MailboxFull"));
    }
}

#[test]
fn each_event_type_has_its_effect() {
    let cases = [
        (EventType::Send, json!({}), Effect::Send),
        (EventType::Delivery, json!({"timestamp": "2026-11-27T10:00:03Z"}), Effect::State(DeliveryState::Delivered)),
        (
            EventType::Complaint,
            json!({"complaintFeedbackType": "abuse", "complainedRecipients": []}),
            Effect::State(DeliveryState::Complained),
        ),
        (EventType::Reject, json!({"reason": "Bad content"}), Effect::State(DeliveryState::Rejected)),
        (
            EventType::DeliveryDelay,
            json!({"delayType": "MailboxFull", "timestamp": "2026-11-27T10:05:00Z"}),
            Effect::State(DeliveryState::Delayed),
        ),
        (
            EventType::RenderingFailure,
            json!({"errorMessage": "Attribute 'name' is not present", "templateName": "t"}),
            Effect::State(DeliveryState::RenderingFailed),
        ),
    ];
    for (t, object, effect) in cases {
        let e = parse(&envelope(t, object)).unwrap_or_else(|r| panic!("{t:?}: {r}"));
        assert_eq!(e.effect, effect, "{t:?}");
        assert_eq!(e.event_type, t);
    }
}

#[test]
fn rejections_name_the_rule_and_never_repeat_the_value() {
    let secret = "jane.doe@example.com";
    let mut wrong_type: Value = serde_json::from_str(&envelope(EventType::Delivery, json!({}))).unwrap();
    wrong_type["detail-type"] = json!("Email Bounced");
    let mut no_id: Value = serde_json::from_str(&envelope(EventType::Delivery, json!({}))).unwrap();
    no_id["detail"]["mail"]["messageId"] = json!(format!("has space {secret}"));
    let cases = [
        (cut_off(json!({"source": secret})), "not JSON"),
        (json!({"source": secret}).to_string(), "source must be"),
        (json!({"source": "aws.ses", "detail-type": secret}).to_string(), "detail-type is not one"),
        (wrong_type.to_string(), "does not match"),
        (no_id.to_string(), "messageId"),
        (envelope(EventType::Bounce, json!({"bounceType": secret})), "bounceType must be"),
    ];
    for (body, rule) in cases {
        let r = parse(&body).unwrap_err();
        assert!(r.rule.contains(rule), "{} should contain {rule}", r.rule);
        assert!(!r.rule.contains(secret), "{} repeats the value", r.rule);
    }
}

#[test]
fn a_malformed_tag_is_left_out_and_the_event_still_counts_by_its_message_id() {
    let secret = "jane.doe@example.com";
    let cases = [
        ("order_id", json!([secret]), "tag order_id is not a valid order id"),
        ("order_id", json!(["ORD_x1"]), "tag order_id has an underscore not followed by _, d or c"),
        ("order_id", json!(secret), "tag order_id must be a list of strings"),
        ("claim_token", json!([secret]), "tag claim_token is not a UUID"),
        ("claim_token", json!(["a", "b"]), "tag claim_token must hold exactly one string"),
    ];
    for (tag, value, rule) in cases {
        let mut body: Value = serde_json::from_str(&envelope(
            EventType::Bounce,
            json!({"bounceType": "Permanent", "bounceSubType": "General"}),
        ))
        .unwrap();
        body["detail"]["mail"]["tags"][tag] = value;
        let e = parse(&body.to_string()).unwrap_or_else(|r| panic!("{tag}: lost the event: {r}"));
        assert_eq!(e.effect, Effect::State(DeliveryState::Bounced), "{tag}");
        assert_eq!(e.message_id.as_str(), "0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000");
        assert_eq!(e.ignored, vec![rule], "{tag}");
        if tag == "order_id" {
            assert_eq!(e.order_id, None);
            assert!(e.claim_token.is_some(), "the other tag is kept");
        } else {
            assert_eq!(e.claim_token, None);
            assert_eq!(e.order_id.as_ref().map(OrderId::as_str), Some("ORD-1001"), "the other tag is kept");
        }
        assert!(!format!("{e:?}").contains(secret), "the event repeats the value");
    }
    let clean = parse(&envelope(EventType::Delivery, json!({}))).unwrap();
    assert!(clean.ignored.is_empty());
}

#[test]
fn a_malformed_event_time_falls_back_to_the_mail_time_instead_of_losing_the_event() {
    let body = envelope(
        EventType::Bounce,
        json!({"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "jane.doe@example.com"}),
    );
    let e = parse(&body).unwrap_or_else(|r| panic!("lost the event: {r}"));
    assert_eq!(e.effect, Effect::State(DeliveryState::Bounced));
    assert_eq!(e.occurred_at, time::macros::datetime!(2026-11-27 10:00:00 UTC));
    assert_eq!(e.ignored, vec!["bounce.timestamp is not an RFC 3339 time"]);
    let mut no_mail_time: Value = serde_json::from_str(&body).unwrap();
    no_mail_time["detail"]["mail"]["timestamp"] = json!(null);
    let r = parse(&no_mail_time.to_string()).unwrap_err();
    assert_eq!(r.rule, "mail.timestamp is missing", "without any usable time the event is refused");
}

#[test]
fn order_id_tags_round_trip_every_allowed_character_in_ses_alphabet() {
    for id in ["ORD-1001", "a.b:c_d", "_._:__", "x".repeat(64).as_str()] {
        let tags = MailTags { order_id: OrderId::parse(id).unwrap(), claim_token: Uuid::nil() };
        let value = tags.order_id_value();
        assert!(value.len() <= 256 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_eq!(MailTags::parse_order_id(&value).unwrap().as_str(), id);
    }
    assert!(MailTags::parse_order_id("a_x").is_err());
    assert!(MailTags::parse_order_id("").is_err());
}

#[test]
fn delivery_states_rank_so_failures_outrank_a_late_delivery() {
    use DeliveryState::*;
    assert!(Bounced.rank() > Delivered.rank());
    assert!(Complained.rank() > Bounced.rank());
    assert!(Delivered.rank() > Delayed.rank());
    assert!(SoftBounced.rank() > Delivered.rank());
    for s in DeliveryState::ALL {
        assert_eq!(DeliveryState::parse(s.as_str()), Ok(s));
        assert!(DeliveryState::sql_rank("d").contains(&format!("WHEN '{}' THEN {}", s.as_str(), s.rank())));
    }
    assert_eq!(DeliveryState::ALL.iter().filter(|s| s.needs_attention()).count(), 5, "all but delayed and delivered");
}

#[test]
fn every_ses_sample_in_events_parses_to_its_type() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut seen = std::collections::HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("ses-") {
            continue;
        }
        let batch: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for record in batch["Records"].as_array().unwrap() {
            let e = parse(record["body"].as_str().unwrap()).unwrap_or_else(|r| panic!("{name}: {r}"));
            assert!(e.order_id.is_some() && e.claim_token.is_some(), "{name}: tags");
            seen.insert(e.event_type);
        }
    }
    assert_eq!(seen.len(), EventType::ALL.len(), "one sample per event type: {seen:?}");
}

#[test]
fn dsn_status_codes_are_recognised_and_other_text_is_not() {
    assert!(is_dsn_status("5.1.1") && is_dsn_status("4.4.7") && is_dsn_status("5.7.100"));
    assert!(!is_dsn_status("550") && !is_dsn_status("5.1") && !is_dsn_status("a@b.c"));
}

/// The envelope of a Delivery event with the mail's time `mail` and the delivery's `delivered`.
fn delivery_at(mail: &str, delivered: &str) -> String {
    let mut body: Value =
        serde_json::from_str(&envelope(EventType::Delivery, json!({"timestamp": delivered}))).unwrap();
    body["detail"]["mail"]["timestamp"] = json!(mail);
    body.to_string()
}

#[test]
fn an_event_time_far_from_now_is_not_believed_and_the_event_still_counts() {
    let now = time::OffsetDateTime::now_utc();
    let recent = rfc3339(now - time::Duration::minutes(1));
    // A Send or Delivery stamped 9999-12-31 would stay the latest on the row for good.
    let e = DeliveryEvent::parse(&delivery_at(&recent, "9999-12-31T23:59:59Z")).unwrap();
    assert_eq!(rfc3339(e.occurred_at), recent, "the mail's time stands in for the event's");
    assert_eq!(e.ignored.len(), 1, "{:?}", e.ignored);
    // Year 0000 for both: the time the event was read stands in.
    let e = DeliveryEvent::parse(&delivery_at("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z")).unwrap();
    assert!((e.occurred_at - now).abs() < time::Duration::minutes(1), "{}", e.occurred_at);
    assert_eq!(e.ignored.len(), 2, "{:?}", e.ignored);
    assert!(e.ignored.iter().all(|rule| rule.contains("30 days before or 5 minutes after")), "{:?}", e.ignored);
    // Inside the window, both times are kept as SES wrote them.
    let e = DeliveryEvent::parse(&delivery_at(&recent, &recent)).unwrap();
    assert!(e.ignored.is_empty(), "{:?}", e.ignored);
}

#[test]
fn an_unreadable_envelope_field_the_reader_never_uses_does_not_refuse_the_event() {
    let body = envelope(EventType::Delivery, json!({}));
    assert!(body.contains(r#""version":"0""#), "{body}");
    for version in ["1e400", r#""\ud800""#] {
        let hostile = body.replace(r#""version":"0""#, &format!(r#""version":{version}"#));
        let e = parse(&hostile).unwrap_or_else(|r| panic!("version {version}: the event was refused: {r}"));
        assert_eq!(
            (e.event_type, e.message_id.as_str()),
            (EventType::Delivery, "0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000")
        );
        assert_eq!(e.order_id.as_ref().map(OrderId::as_str), Some("ORD-1001"));
    }
    // An unreadable field the event needs is still refused by its rule.
    let broken = body.replace(r#""messageId":"0100018c-4a2b-7c3d-9e8f-0a1b2c3d4e5f-000000""#, r#""messageId":1e400"#);
    assert_eq!(parse(&broken).unwrap_err().rule, "mail.messageId is missing");
    assert!(parse("{\"source\": ").unwrap_err().rule.starts_with("body is not JSON"));
}
