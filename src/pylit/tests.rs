use super::*;
use serde_json::json;

#[test]
fn reads_the_legacy_producer_format() {
    let v =
        parse("{'order_id': 'A1', 'gift': True, 'note': None, 'n': -3, 'x': 1.5, 'tags': ['a', \"b\"], 't': (1, 2,)}")
            .unwrap();
    assert_eq!(
        v,
        json!({"order_id": "A1", "gift": true, "note": null, "n": -3, "x": 1.5, "tags": ["a", "b"], "t": [1, 2]})
    );
}

#[test]
fn decodes_escapes() {
    assert_eq!(parse(r"'it\'s \x41\u00e9\n'").unwrap(), json!("it's Aé\n"));
}

#[test]
fn refuses_code() {
    for src in [
        "__import__('os').system('rm -rf /')",
        "{'a': open('/etc/passwd').read()}",
        "{'a': 1 + 2}",
        "{'a': [x for x in range(3)]}",
        "{'a': lambda: 1}",
        "{1: 'non-string key'}",
        "{'a': 1} or exit()",
    ] {
        assert!(parse(src).is_err(), "{src}");
    }
}

#[test]
fn reads_decimal_and_datetime_reprs_as_data() {
    let v = parse(
        "{'total': Decimal('12.50'), 'n': decimal.Decimal(3), 'odd': Decimal('NaN'), \
         'at': datetime.datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=datetime.timezone.utc), \
         'day': datetime.date(2024, 1, 2), 'naive': datetime(2024, 12, 31, 23, 59)}",
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"total": 12.5, "n": 3, "odd": "NaN", "at": "2024-01-02T03:04:05.000600+00:00",
               "day": "2024-01-02", "naive": "2024-12-31T23:59:00"})
    );
    for src in ["Decimal(open('x'))", "datetime.datetime.now()", "Decimal('1', '2')", "date(2024, 1)", "Decimal"] {
        assert!(parse(src).is_err(), "{src}");
    }
}

#[test]
fn a_number_too_large_for_a_float_is_kept_as_text_not_refused() {
    let v = parse("{'total': 1e400, 'n': -2e999}").unwrap();
    assert_eq!(v["total"], Value::String("1e400".into()));
    assert_eq!(v["n"], Value::String("-2e999".into()));
}

#[test]
fn bounds_nesting() {
    let deep = "[".repeat(100_000);
    assert_eq!(parse(&deep).unwrap_err().message, "nested too deeply");
}
