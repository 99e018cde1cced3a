use super::*;

fn transient() -> RecordOutcome {
    RecordOutcome::TransientFailure { reason: "throttled".into() }
}

#[test]
fn permanent_failures_come_back_at_once() {
    let s = BackoffSettings::default();
    for outcome in [
        RecordOutcome::Invalid { reason: "x".into() },
        RecordOutcome::Rejected { reason: "x".into() },
        RecordOutcome::Conflict { reason: "x".into() },
    ] {
        assert_eq!(visibility_for(&outcome, 3, &s, 0.7), Duration::ZERO);
    }
}

#[test]
fn only_records_failed_on_their_last_allowed_receive_are_counted_per_source_queue() {
    let from = |arn: &str| {
        let mut m = SqsMessage::default();
        m.event_source_arn = Some(arn.to_owned());
        m
    };
    let high = from("arn:aws:sqs:eu-west-1:123456789012:shop-high");
    let events = from("arn:aws:sqs:eu-west-1:123456789012:shop-ses-events");
    let failed = [(&high, 4), (&high, 5), (&high, 6), (&events, 5), (&events, 1)];
    assert_eq!(
        failed_on_last_receive(failed, 5, None),
        BTreeMap::from([("shop-high".to_owned(), 2), ("shop-ses-events".to_owned(), 1)])
    );
    assert!(failed_on_last_receive([(&high, 4)], 5, None).is_empty(), "a receive left: not on its way to the DLQ");
    // `consume` names its queue by URL.
    let url = "http://127.0.0.1:5000/123456789012/q-normal";
    assert_eq!(
        failed_on_last_receive([(&SqsMessage::default(), 3)], 3, Some(url)),
        BTreeMap::from([("q-normal".to_owned(), 1)])
    );
}

#[test]
fn transient_delays_grow_with_the_receive_count_and_are_capped() {
    let s = BackoffSettings {
        base: Duration::from_secs(2),
        cap: Duration::from_secs(60),
        deferred: Duration::from_secs(1),
        ..BackoffSettings::default()
    };
    let lows: Vec<u64> = (1..=8).map(|n| visibility_for(&transient(), n, &s, 0.0).as_secs()).collect();
    let highs: Vec<u64> = (1..=8).map(|n| visibility_for(&transient(), n, &s, 0.999).as_secs()).collect();
    assert_eq!(lows, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(highs, vec![1, 3, 7, 15, 31, 59, 59, 59]);
    for n in 1..8 {
        assert!(highs[n - 1] <= lows[n] * 2, "ranges of consecutive counts do not invert");
    }
    assert!(visibility_for(&transient(), u32::MAX, &s, 1.0) <= Duration::from_secs(60));
    let in_flight = RecordOutcome::InFlight { lease_remaining: Duration::from_secs(10) };
    assert_eq!(visibility_for(&in_flight, 1, &s, 0.0), Duration::from_secs(11), "right after the lease");
}

#[test]
fn deferred_records_return_soon_then_less_often() {
    let s = BackoffSettings::default();
    let deferred = RecordOutcome::Deferred { reason: "slot".into(), requeued: false, handed_back: false };
    let d: Vec<u64> = (1..=4).map(|n| visibility_for(&deferred, n, &s, 0.0).as_secs()).collect();
    assert_eq!(d, vec![5, 10, 20, 40]);
    assert!(visibility_for(&deferred, 1, &s, 0.0) < visibility_for(&transient(), 1, &s, 0.0));
}

#[test]
fn a_deferred_copy_returns_soon_for_high_priority_and_later_with_each_deferral() {
    let s = BackoffSettings::default();
    let at = |p, n, j| deferral_delay(Some(p), n, &s, j).as_secs();
    assert_eq!((at(Priority::High, 1, 0.999), at(Priority::Normal, 1, 0.999)), (1, 4));
    let normal: Vec<u64> = (1..=6).map(|n| at(Priority::Normal, n, 0.999)).collect();
    assert_eq!(normal, vec![4, 9, 19, 39, 59, 59], "doubling, at most a minute");
    assert!(at(Priority::Normal, 1, 0.0) >= 1, "never zero: the copy must not spin at once");
}

#[test]
fn default_transient_retries_outlast_a_few_minutes_of_outage_before_the_dlq() {
    let s = BackoffSettings::default();
    // Receives 1-4 fail and are delayed; the 5th receive is the last before the DLQ.
    let least: Duration = (1..=4).map(|n| visibility_for(&transient(), n, &s, 0.0)).sum();
    assert_eq!(least, Duration::from_secs(15 + 30 + 60 + 120));
}

#[test]
fn queue_url_from_event_source_arn() {
    assert_eq!(
        queue_url_from_arn("arn:aws:sqs:eu-west-1:123456789012:orders-high").as_deref(),
        Some("https://sqs.eu-west-1.amazonaws.com/123456789012/orders-high")
    );
    assert_eq!(
        queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
        Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
    );
    assert_eq!(queue_url_from_arn("not-an-arn"), None);
    assert_eq!(queue_url_from_arn("arn:aws:sns:us-east-1:1:topic"), None);
}

#[test]
fn a_copys_size_counts_its_attributes_as_well_as_its_body() {
    let big = MessageAttributeValue::builder().data_type("String").string_value("x".repeat(100_000)).build().unwrap();
    let entry = SendMessageBatchRequestEntry::builder()
        .id("q0")
        .message_body("{}")
        .message_attributes("Trace", big)
        .build()
        .unwrap();
    assert_eq!(entry_size(&entry), 2 + "Trace".len() + "String".len() + 100_000);
}

#[test]
fn a_handed_back_records_copy_returns_at_once_and_is_not_counted_as_a_deferral() {
    let s = BackoffSettings::default();
    let mut record = SqsMessage::default();
    record.body = Some("{}".into());
    let mut twice = aws_lambda_events::sqs::SqsMessageAttribute::default();
    twice.string_value = Some("2".into());
    twice.data_type = Some("Number".into());
    record.message_attributes.insert(DEFERRALS_ATTRIBUTE.to_owned(), twice);
    let report = |handed_back| RecordReport {
        message_id: Some("m".into()),
        order_id: Some("O-1".into()),
        priority: Some(Priority::Normal),
        receive_count: 1,
        outcome: RecordOutcome::Deferred { reason: "r".into(), requeued: false, handed_back },
        notes: Vec::new(),
        unrecorded_send: false,
        extra_mail_recorded: false,
        time_to_confirm_seconds: None,
        after_expired_lease: false,
        first_sent_ms: Some(1_000),
    };
    let count = |e: &SendMessageBatchRequestEntry| {
        e.message_attributes.as_ref().unwrap()[DEFERRALS_ATTRIBUTE].string_value.clone().unwrap()
    };
    let back = deferred_copy("q0".into(), &record, &report(true), &s).unwrap();
    assert_eq!((back.delay_seconds, count(&back).as_str()), (Some(0), "2"));
    let deferred = deferred_copy("q1".into(), &record, &report(false), &s).unwrap();
    assert_eq!(count(&deferred), "3");
    assert!(deferred.delay_seconds.unwrap() >= 10, "the third deferral waits 10 to 20 s: {deferred:?}");
}
