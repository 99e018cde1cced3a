use super::*;

#[test]
fn every_migration_file_of_both_dialects_is_in_the_one_list() {
    let listed: &[(&str, &str)] = migrations!("postgres");
    let listed: Vec<String> = listed.iter().map(|(v, _)| format!("{v}.sql")).collect();
    for dialect in ["postgres", "sqlite"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dialect);
        let mut files: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(files, listed, "migrations/{dialect}/ holds exactly the listed versions");
    }
}

#[test]
fn park_notes_must_say_something_short_and_printable() {
    assert_eq!(park_note("  OPS-123 (alice)  "), Ok("OPS-123 (alice)"));
    assert!(park_note("   ").unwrap_err().contains("empty"));
    assert!(park_note(&"x".repeat(201)).unwrap_err().contains("200"));
    assert!(park_note("ticket\u{1b}[2J").unwrap_err().contains("control"));
}

#[test]
fn statuses_read_back_what_they_store_and_refuse_anything_else() {
    for status in Status::ALL {
        assert_eq!(Status::parse(status.as_str()), Ok(status));
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    assert!(Status::parse("SENT").is_err());
    assert!(Status::parse("").unwrap_err().rule.contains("one of sending, sent"));
}

#[test]
fn each_outcome_maps_to_one_status() {
    let sent = Outcome::Sent { message_id: "m-1".into() };
    assert_eq!((sent.status(), sent.message_id(), sent.last_error()), (Status::Sent, Some("m-1"), None));
    let failed = Outcome::Failed { error: "timeout".into() };
    assert_eq!(
        (failed.status(), failed.last_error(), failed.gives_back_attempt()),
        (Status::Failed, Some("timeout"), false)
    );
    let rejected = Outcome::Rejected { reason: "bad address".into() };
    assert_eq!((rejected.status(), rejected.last_error()), (Status::Rejected, Some("bad address")));
    let deferred = Outcome::Deferred { reason: "not sent: deferred".into() };
    assert_eq!((deferred.status(), deferred.message_id(), deferred.gives_back_attempt()), (Status::Failed, None, true));
}

#[test]
fn nearest_rank_percentiles() {
    let one_each: Vec<(i64, u64)> = (1..=100).rev().map(|s| (s * 1000, 1)).collect();
    let p = Percentiles::from_histogram(&one_each);
    assert_eq!((p.p50, p.p95, p.p99), (Some(50.0), Some(95.0), Some(99.0)));
    assert_eq!(Percentiles::from_histogram(&[(3_000, 1)]).p99, Some(3.0));
}

#[test]
fn a_histogram_gives_the_nearest_rank_of_its_values_merged() {
    // The same time from an hour's summary and from the sends themselves counts once, summed.
    let p = Percentiles::from_histogram(&[(2_000, 60), (9_000, 30), (2_000, 5), (40_000, 5)]);
    assert_eq!((p.p50, p.p95, p.p99), (Some(2.0), Some(9.0), Some(40.0)));
    assert_eq!(Percentiles::from_histogram(&[]), Percentiles::default());
    assert_eq!(Percentiles::from_histogram(&[(1_000, 0)]).p50, None);
}

#[test]
fn times_to_confirm_keep_three_significant_digits_never_above_and_within_one_percent() {
    assert_eq!(ttc_bucket_ms(0), 0);
    assert_eq!(ttc_bucket_ms(-5), 0);
    assert_eq!(ttc_bucket_ms(999), 999);
    assert_eq!(ttc_bucket_ms(1_234), 1_230);
    assert_eq!(ttc_bucket_ms(12_345), 12_300);
    assert_eq!(ttc_bucket_ms(2_000), 2_000);
    assert_eq!(ttc_bucket_ms(86_399_999), 86_300_000);
    for ms in (0..5_000_000).step_by(997).chain([u32::MAX as i64, 400 * 86_400_000]) {
        let b = ttc_bucket_ms(ms);
        assert!(b <= ms && (ms - b) as f64 <= ms as f64 * 0.01, "{ms} -> {b}");
    }
}

#[test]
fn the_sql_bucket_is_the_same_as_the_rust_one() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    let sql = format!("SELECT {}", ttc_bucket_sql("?1"));
    for ms in [0_i64, 7, 999, 1_000, 1_234, 99_999, 123_456_789, 400 * 86_400_000, 999_999_999_999] {
        let got: i64 = conn.query_row(&sql, [ms], |r| r.get(0)).unwrap();
        assert_eq!(got, ttc_bucket_ms(ms), "{ms}");
    }
}
