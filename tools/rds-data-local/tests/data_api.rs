//! The emulator driven by the real `aws-sdk-rdsdata` client against a real PostgreSQL.
//! Run: `scripts/with-postgres cargo nextest run -p rds-data-local`.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_rdsdata::operation::batch_execute_statement::BatchExecuteStatementError;
use aws_sdk_rdsdata::operation::commit_transaction::CommitTransactionError;
use aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementError;
use aws_sdk_rdsdata::operation::rollback_transaction::RollbackTransactionError;
use aws_sdk_rdsdata::primitives::Blob;
use aws_sdk_rdsdata::types::{ArrayValue, Field, RecordsFormatType, ResultSetOptions, TypeHint};
use aws_sdk_rdsdata::types::{DecimalReturnType, LongReturnType};
use common::*;
use serde_json::json;

fn row(out: &aws_sdk_rdsdata::operation::execute_statement::ExecuteStatementOutput) -> Vec<Field> {
    out.records()[0].clone()
}

#[tokio::test]
async fn every_parameter_value_variant_round_trips_including_i64_extremes() {
    let e = env().await;
    let out = e
        .exec("SELECT :min AS min, :max AS max, :d AS d, :t AS t, :f AS f, :n AS n, :b AS b, :s AS s")
        .parameters(param("min", Field::LongValue(i64::MIN)))
        .parameters(param("max", Field::LongValue(i64::MAX)))
        .parameters(param("d", Field::DoubleValue(-1.5e300)))
        .parameters(param("t", Field::BooleanValue(true)))
        .parameters(param("f", Field::BooleanValue(false)))
        .parameters(param("n", Field::IsNull(true)))
        .parameters(param("b", Field::BlobValue(Blob::new(vec![0u8, 1, 2, 255]))))
        .parameters(param("s", s("héllo 'quoted' :x")))
        .send()
        .await
        .expect("execute");
    assert_eq!(
        row(&out),
        vec![
            Field::LongValue(i64::MIN),
            Field::LongValue(i64::MAX),
            Field::DoubleValue(-1.5e300),
            Field::BooleanValue(true),
            Field::BooleanValue(false),
            Field::IsNull(true),
            Field::BlobValue(Blob::new(vec![0u8, 1, 2, 255])),
            s("héllo 'quoted' :x"),
        ]
    );
    assert_eq!(out.number_of_records_updated(), 0);
}

#[tokio::test]
async fn type_hints_send_strings_as_json_uuid_timestamp_date_time_and_decimal() {
    let e = env().await;
    e.run("CREATE TABLE h (j jsonb, u uuid, ts timestamp, tz timestamptz, d date, t time, n numeric(10,2))").await;
    let out = e
        .exec("INSERT INTO h VALUES (:j, :u, :ts, :ts, :d, :t, :n)")
        .parameters(hinted("j", r#"{"b": [1, 2], "a": "x"}"#, TypeHint::Json))
        .parameters(hinted("u", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", TypeHint::Uuid))
        .parameters(hinted("ts", "2024-02-29 23:59:58.123", TypeHint::Timestamp))
        .parameters(hinted("d", "2024-02-29", TypeHint::Date))
        .parameters(hinted("t", "07:08:09.5", TypeHint::Time))
        .parameters(hinted("n", "12.5", TypeHint::Decimal))
        .send()
        .await
        .expect("insert with hints");
    assert_eq!(out.number_of_records_updated(), 1);
    let out = e.run("SELECT j, u, ts, tz, d, t, n FROM h").await;
    assert_eq!(
        row(&out),
        vec![
            s(r#"{"a": "x", "b": [1, 2]}"#),
            s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            s("2024-02-29 23:59:58.123"),
            // The session runs in UTC, so a TIMESTAMP-hinted value lands unchanged.
            s("2024-02-29 23:59:58.123"),
            s("2024-02-29"),
            s("07:08:09.5"),
            s("12.50"),
        ]
    );
}

#[tokio::test]
async fn malformed_timestamp_hint_is_a_bad_request_before_reaching_the_database() {
    let e = env().await;
    let err = e
        .exec("SELECT :ts")
        .parameters(hinted("ts", "2026-07-22T02:17:21.804Z", TypeHint::Timestamp))
        .send()
        .await
        .expect_err("ISO-8601 with T/Z is not the accepted format")
        .into_service_error();
    assert!(matches!(err, ExecuteStatementError::BadRequestException(_)), "{err:?}");
}

#[tokio::test]
async fn plain_string_into_jsonb_column_fails_with_database_error_like_aurora() {
    let e = env().await;
    e.run("CREATE TABLE j (payload jsonb)").await;
    let err = e
        .exec("INSERT INTO j VALUES (:p)")
        .parameters(param("p", s(r#"{"a":1}"#)))
        .send()
        .await
        .expect_err("varchar is not assignable to jsonb")
        .into_service_error();
    let ExecuteStatementError::DatabaseErrorException(db) = err else {
        panic!("expected DatabaseErrorException, got {err:?}")
    };
    let msg = db.message().unwrap_or_default();
    assert!(msg.contains("is of type jsonb but expression is of type character varying"), "{msg}");
    assert!(msg.contains("SQLState: 42804"), "{msg}");
}

#[tokio::test]
async fn named_placeholders_inside_literals_comments_identifiers_and_casts_are_left_alone() {
    let e = env().await;
    let out = e
        .exec(
            "SELECT ':lit' AS a, E'\\':esc' AS b, $$:dollar$$ AS c, '{\"k\":7}'::jsonb ->> 'k' AS \":ident\", \
             :v::text AS v /* :block */ -- :line",
        )
        .parameters(param("v", Field::LongValue(42)))
        .send()
        .await
        .expect("only :v is a parameter");
    assert_eq!(row(&out), vec![s(":lit"), s("':esc"), s(":dollar"), s("7"), s("42")]);
}

#[tokio::test]
async fn parameter_referenced_but_not_supplied_is_a_bad_request_naming_it() {
    let e = env().await;
    let err = e
        .exec("SELECT :present, :absent")
        .parameters(param("present", Field::LongValue(1)))
        .send()
        .await
        .expect_err("missing parameter")
        .into_service_error();
    let ExecuteStatementError::BadRequestException(b) = err else {
        panic!("expected BadRequestException, got {err:?}")
    };
    assert!(b.message().unwrap_or_default().contains("absent"), "{b:?}");
}

#[tokio::test]
async fn array_parameters_are_rejected_with_bad_request() {
    let e = env().await;
    let err = e
        .exec("SELECT :a")
        .parameters(param("a", Field::ArrayValue(ArrayValue::LongValues(vec![Some(1)]))))
        .send()
        .await
        .expect_err("arrays are not supported as parameters")
        .into_service_error();
    assert!(matches!(err, ExecuteStatementError::BadRequestException(_)), "{err:?}");
}

#[tokio::test]
async fn result_columns_map_to_the_field_variants_aurora_postgresql_uses() {
    let e = env().await;
    let out = e
        .run(
            "SELECT 1::int2, 2::int4, 3::int8, 0.1::float4, 2.5::float8, true, 10.10::numeric(5,2), \
             'txt'::text, 'vc'::varchar(5), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, \
             '{\"a\":1}'::json, '{\"a\":1}'::jsonb, '2024-01-02'::date, '03:04:05.006'::time, \
             '2024-01-02 03:04:05'::timestamp, '2024-01-02 03:04:05.123456+02'::timestamptz, \
             '\\x00ff'::bytea, NULL::text, ARRAY[1, NULL, 3]::int4[], ARRAY['a','b'], \
             ARRAY[1.5]::float8[], ARRAY[true], interval '1 day 02:00:00'",
        )
        .await;
    assert_eq!(
        row(&out),
        vec![
            Field::LongValue(1),
            Field::LongValue(2),
            Field::LongValue(3),
            Field::DoubleValue(0.1),
            Field::DoubleValue(2.5),
            Field::BooleanValue(true),
            s("10.10"),
            s("txt"),
            s("vc"),
            s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            s(r#"{"a":1}"#),
            s(r#"{"a": 1}"#),
            s("2024-01-02"),
            s("03:04:05.006"),
            s("2024-01-02 03:04:05"),
            // timestamptz is returned in UTC, without an offset.
            s("2024-01-02 01:04:05.123456"),
            Field::BlobValue(Blob::new(vec![0u8, 255])),
            Field::IsNull(true),
            Field::ArrayValue(ArrayValue::LongValues(vec![Some(1), None, Some(3)])),
            Field::ArrayValue(ArrayValue::StringValues(vec![Some("a".into()), Some("b".into())])),
            Field::ArrayValue(ArrayValue::DoubleValues(vec![Some(1.5)])),
            Field::ArrayValue(ArrayValue::BooleanValues(vec![Some(true)])),
            s("1 day 02:00:00"),
        ]
    );
}

#[tokio::test]
async fn result_set_options_return_decimals_as_numbers_and_longs_as_strings() {
    let e = env().await;
    let out = e
        .exec("SELECT 12::numeric, 1.25::numeric, 7::int8")
        .result_set_options(
            ResultSetOptions::builder()
                .decimal_return_type(DecimalReturnType::DoubleOrLong)
                .long_return_type(LongReturnType::String)
                .build(),
        )
        .send()
        .await
        .expect("execute");
    assert_eq!(row(&out), vec![Field::LongValue(12), Field::DoubleValue(1.25), s("7")]);
}

#[tokio::test]
async fn unsupported_result_types_and_multidimensional_arrays_answer_unsupported_result() {
    let e = env().await;
    for sql in ["SELECT point(1, 2)", "SELECT ARRAY[[1, 2], [3, 4]]"] {
        let err = e.exec(sql).send().await.expect_err(sql).into_service_error();
        assert!(matches!(err, ExecuteStatementError::UnsupportedResultException(_)), "{sql}: {err:?}");
    }
}

#[tokio::test]
async fn include_result_metadata_describes_each_column() {
    let e = env().await;
    e.run("CREATE TABLE m (id bigserial PRIMARY KEY, name varchar(20) NOT NULL, price numeric(8,3), at timestamptz)")
        .await;
    let out = e
        .exec("SELECT id, name, price, at, 1 + 1 AS two FROM m")
        .include_result_metadata(true)
        .send()
        .await
        .expect("execute");
    let meta = out.column_metadata();
    assert_eq!(meta.len(), 5);
    let names: Vec<_> = meta.iter().map(|m| m.name().unwrap_or_default()).collect();
    assert_eq!(names, ["id", "name", "price", "at", "two"]);
    let types: Vec<_> = meta.iter().map(|m| (m.type_name().unwrap_or_default(), m.r#type())).collect();
    assert_eq!(types, [("int8", -5), ("varchar", 12), ("numeric", 2), ("timestamptz", 93), ("int4", 4)]);
    assert_eq!(meta[0].table_name(), Some("m"));
    assert!(meta[0].is_auto_increment());
    assert_eq!(meta[1].nullable(), 0, "NOT NULL column");
    assert_eq!(meta[2].nullable(), 1, "nullable column");
    assert_eq!(meta[4].nullable(), 2, "expression: unknown");
    assert_eq!((meta[1].precision(), meta[2].precision(), meta[2].scale()), (20, 8, 3));
    assert_eq!(meta[4].label(), Some("two"));
    assert!(out.records().is_empty());
}

#[tokio::test]
async fn format_records_as_json_returns_formatted_records_instead_of_records() {
    let e = env().await;
    let out = e
        .exec("SELECT 1 AS id, 'x' AS name, NULL::text AS gone, 2.5::float8 AS f, true AS ok, '\\x01'::bytea AS b, ARRAY[1,2] AS arr, 9.50::numeric AS n")
        .format_records_as(RecordsFormatType::Json)
        .include_result_metadata(true)
        .send()
        .await
        .expect("execute");
    assert!(out.records().is_empty());
    assert!(out.column_metadata().is_empty(), "columnMetadata is blank with JSON");
    let text = out.formatted_records().expect("formattedRecords");
    assert!(text.starts_with(r#"[{"id":1,"name":"x""#), "keys keep column order: {text}");
    let v: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(
        v,
        json!([{"id": 1, "name": "x", "gone": null, "f": 2.5, "ok": true, "b": "AQ==", "arr": [1, 2], "n": "9.50"}])
    );
}

#[tokio::test]
async fn number_of_records_updated_counts_insert_update_delete_and_is_zero_for_select_and_returning() {
    let e = env().await;
    let ddl = e.run("CREATE TABLE c (id int PRIMARY KEY, v text)").await;
    assert_eq!(ddl.number_of_records_updated(), 0);
    assert!(ddl.generated_fields().is_empty());
    let ins = e.run("INSERT INTO c VALUES (1,'a'),(2,'b'),(3,'c')").await;
    assert_eq!(ins.number_of_records_updated(), 3);
    let upd = e.run("UPDATE c SET v = 'z' WHERE id >= 2").await;
    assert_eq!(upd.number_of_records_updated(), 2);
    let del = e.run("DELETE FROM c WHERE id = 3").await;
    assert_eq!(del.number_of_records_updated(), 1);
    let sel = e.run("SELECT * FROM c").await;
    assert_eq!((sel.number_of_records_updated(), sel.records().len()), (0, 2));
    let ret = e.run("INSERT INTO c VALUES (4, 'd') RETURNING id").await;
    assert_eq!(ret.number_of_records_updated(), 0);
    assert_eq!(ret.records(), [vec![Field::LongValue(4)]]);
}

#[tokio::test]
async fn batch_execute_returns_one_update_result_per_parameter_set_and_is_atomic() {
    let e = env().await;
    e.run("CREATE TABLE b (id int PRIMARY KEY, v text)").await;
    let sets: Vec<Vec<_>> =
        (1..=3).map(|i| vec![param("id", Field::LongValue(i)), param("v", s(&format!("v{i}")))]).collect();
    let out = e
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .sql("INSERT INTO b VALUES (:id, :v)")
        .set_parameter_sets(Some(sets))
        .send()
        .await
        .expect("batch");
    assert_eq!(out.update_results().len(), 3);
    assert!(out.update_results().iter().all(|u| u.generated_fields().is_empty()));
    // A failing set (duplicate key) rolls back the whole batch.
    let sets: Vec<Vec<_>> =
        [10, 1].iter().map(|i| vec![param("id", Field::LongValue(*i)), param("v", s("dup"))]).collect();
    let err = e
        .client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .sql("INSERT INTO b VALUES (:id, :v)")
        .set_parameter_sets(Some(sets))
        .send()
        .await
        .expect_err("duplicate key")
        .into_service_error();
    assert!(matches!(err, BatchExecuteStatementError::DatabaseErrorException(_)), "{err:?}");
    let count = e.run("SELECT count(*) FROM b").await;
    assert_eq!(row(&count), vec![Field::LongValue(3)], "row 10 was rolled back");
}

#[tokio::test]
async fn sql_errors_are_database_error_exceptions_with_the_postgresql_message() {
    let e = env().await;
    let err = e.exec("SELECT * FROM no_such_table").send().await.expect_err("missing table").into_service_error();
    let ExecuteStatementError::DatabaseErrorException(db) = err else { panic!("{err:?}") };
    let msg = db.message().unwrap_or_default();
    assert!(msg.starts_with("ERROR: relation \"no_such_table\" does not exist"), "{msg}");
    assert!(msg.ends_with("; SQLState: 42P01"), "{msg}");
}

#[tokio::test]
async fn database_parameter_selects_another_database_and_unknown_ones_are_not_found() {
    let e = env().await;
    let other = create_database(&e.admin_url).await;
    e.exec("CREATE TABLE only_here (x int)").database(&other).send().await.expect("create in other db");
    e.exec("SELECT * FROM only_here").database(&other).send().await.expect("visible in other db");
    assert!(e.exec("SELECT * FROM only_here").send().await.is_err());
    let err = e
        .exec("SELECT 1")
        .database("no_such_database_here")
        .send()
        .await
        .expect_err("unknown database")
        .into_service_error();
    assert!(matches!(err, ExecuteStatementError::DatabaseNotFoundException(_)), "{err:?}");
}

async fn begin(e: &Env) -> String {
    e.client
        .begin_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .send()
        .await
        .expect("begin")
        .transaction_id()
        .expect("transactionId")
        .to_owned()
}

#[tokio::test]
async fn transaction_commit_makes_writes_visible_and_rollback_discards_them() {
    let e = env().await;
    e.run("CREATE TABLE t (v int)").await;
    let tx = begin(&e).await;
    e.exec("INSERT INTO t VALUES (1)").transaction_id(&tx).send().await.expect("insert in tx");
    let outside = e.run("SELECT count(*) FROM t").await;
    assert_eq!(row(&outside), vec![Field::LongValue(0)], "not visible before commit");
    let c = e
        .client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect("commit");
    assert_eq!(c.transaction_status(), Some("Transaction Committed"));

    let tx = begin(&e).await;
    e.exec("INSERT INTO t VALUES (2)").transaction_id(&tx).send().await.expect("insert in tx");
    let r = e
        .client
        .rollback_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect("rollback");
    assert_eq!(r.transaction_status(), Some("Rollback Complete"));
    let after = e.run("SELECT array_agg(v) FROM t").await;
    assert_eq!(row(&after), vec![Field::ArrayValue(ArrayValue::LongValues(vec![Some(1)]))]);
}

#[tokio::test]
async fn unknown_or_finished_transaction_ids_answer_transaction_not_found() {
    let e = env().await;
    let err = e
        .exec("SELECT 1")
        .transaction_id("no-such-transaction")
        .send()
        .await
        .expect_err("unknown id")
        .into_service_error();
    assert!(matches!(err, ExecuteStatementError::TransactionNotFoundException(_)), "{err:?}");
    let tx = begin(&e).await;
    e.client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect("commit");
    let err = e
        .client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect_err("already committed")
        .into_service_error();
    assert!(matches!(err, CommitTransactionError::TransactionNotFoundException(_)), "{err:?}");
    let err = e
        .client
        .rollback_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect_err("already committed")
        .into_service_error();
    assert!(matches!(err, RollbackTransactionError::TransactionNotFoundException(_)), "{err:?}");
}

#[tokio::test]
async fn transaction_that_saw_an_error_cannot_be_committed_and_is_rolled_back() {
    let e = env().await;
    e.run("CREATE TABLE a (v int PRIMARY KEY)").await;
    let tx = begin(&e).await;
    e.exec("INSERT INTO a VALUES (1)").transaction_id(&tx).send().await.expect("insert");
    let failed = e.exec("INSERT INTO a VALUES (1)").transaction_id(&tx).send().await;
    assert!(failed.is_err(), "duplicate key inside the transaction");
    let err = e
        .client
        .commit_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect_err("an aborted transaction must not report success")
        .into_service_error();
    assert!(matches!(err, CommitTransactionError::DatabaseErrorException(_)), "{err:?}");
    let count = e.run("SELECT count(*) FROM a").await;
    assert_eq!(row(&count), vec![Field::LongValue(0)], "first insert rolled back too");
    let again = e.exec("SELECT 1").transaction_id(&tx).send().await;
    assert!(again.is_err(), "the transaction is gone");
}

#[tokio::test]
async fn idle_transactions_expire_and_are_rolled_back() {
    let e = env_with(|c| c.transaction_timeout = Duration::from_millis(300)).await;
    e.run("CREATE TABLE x (v int)").await;
    let tx = begin(&e).await;
    e.exec("INSERT INTO x VALUES (1)").transaction_id(&tx).send().await.expect("insert");
    tokio::time::sleep(Duration::from_millis(900)).await;
    let err = e.exec("SELECT 1").transaction_id(&tx).send().await.expect_err("expired").into_service_error();
    assert!(matches!(err, ExecuteStatementError::TransactionNotFoundException(_)), "{err:?}");
    let count = e.run("SELECT count(*) FROM x").await;
    assert_eq!(row(&count), vec![Field::LongValue(0)]);
}

#[tokio::test]
async fn statements_over_the_time_limit_answer_statement_timeout() {
    let e = env_with(|c| c.statement_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let err = e.exec("SELECT pg_sleep(5)").send().await.expect_err("timeout").into_service_error();
    assert!(matches!(err, ExecuteStatementError::StatementTimeoutException(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "cancelled, not waited out");
    e.run("SELECT 1").await;
}

#[tokio::test]
async fn responses_over_one_mebibyte_fail_with_unsupported_result() {
    let e = env().await;
    // 20 rows of 60,000 bytes: every row is under the row limit, the response is not.
    e.run("SELECT repeat('x', 60000) FROM generate_series(1, 16)").await;
    let err = e
        .exec("SELECT repeat('x', 60000) FROM generate_series(1, 20)")
        .send()
        .await
        .expect_err("1.2 MB of records")
        .into_service_error();
    let ExecuteStatementError::UnsupportedResultException(u) = err else { panic!("{err:?}") };
    assert_eq!(u.message(), Some("Database response exceeded size limit"));
}

#[tokio::test]
async fn a_row_over_64_kb_fails_with_unsupported_result_even_when_the_response_fits() {
    let e = env().await;
    e.run("SELECT repeat('x', 65536)").await;
    for sql in [
        "SELECT repeat('x', 65537)",
        // Counted in bytes as the database returns them: 32,769 two-byte characters.
        "SELECT repeat('é', 32769)",
        // The row's values add up, whichever columns they are in.
        "SELECT repeat('x', 40000), repeat('y', 40000)",
        "SELECT decode(repeat('ff', 65537), 'hex')",
    ] {
        let err = e.exec(sql).send().await.expect_err(sql).into_service_error();
        let ExecuteStatementError::UnsupportedResultException(u) = err else { panic!("{sql}: {err:?}") };
        assert_eq!(u.message(), Some("Packet for query is too large"), "{sql}");
    }
    // formatRecordsAs JSON has the same row limit.
    let err = e
        .exec("SELECT repeat('x', 65537) AS big")
        .format_records_as(RecordsFormatType::Json)
        .send()
        .await
        .expect_err("row too large as JSON")
        .into_service_error();
    assert!(matches!(err, ExecuteStatementError::UnsupportedResultException(_)), "{err:?}");
}

#[tokio::test]
async fn requests_over_four_mebibytes_are_refused_before_running() {
    let e = env().await;
    e.run("CREATE TABLE big (v text)").await;
    let under = "x".repeat(4 * 1024 * 1024 - 4096);
    let out = e
        .exec("INSERT INTO big VALUES (:v)")
        .parameters(param("v", s(&under)))
        .send()
        .await
        .expect("a request just under 4 MiB runs");
    assert_eq!(out.number_of_records_updated(), 1);
    let over = "x".repeat(4 * 1024 * 1024);
    let err = e
        .exec("INSERT INTO big VALUES (:v)")
        .parameters(param("v", s(&over)))
        .send()
        .await
        .expect_err("over 4 MiB")
        .into_service_error();
    let ExecuteStatementError::BadRequestException(b) = err else { panic!("{err:?}") };
    assert!(b.message().unwrap_or_default().contains("exceeds the Data API's limit"), "{b:?}");
    let count = e.run("SELECT count(*) FROM big").await;
    assert_eq!(row(&count), vec![Field::LongValue(1)], "the refused request did not run");
}

#[tokio::test]
async fn the_request_limit_counts_headers_as_well_as_the_body() {
    let e = env_with(|c| c.max_request_bytes = 2_000).await;
    let body = |pad: usize| {
        json!({"resourceArn": ARN, "secretArn": SECRET, "sql": format!("SELECT 1 -- {}", "x".repeat(pad))}).to_string()
    };
    let (status, _, _) = e.http("POST", "/Execute", &body(1_000)).await;
    assert_eq!(status, 200);
    // The body alone is under 2,000 bytes; with the request line and headers it is over.
    let near = body(1_930 - body(0).len());
    assert!(near.len() < 2_000, "{}", near.len());
    let (status, head, _) = e.http("POST", "/Execute", &near).await;
    assert_eq!(status, 400);
    assert!(head.to_ascii_lowercase().contains("x-amzn-errortype: badrequestexception"), "{head}");
}

#[tokio::test]
async fn sql_over_65536_characters_is_a_bad_request() {
    let e = env().await;
    let sql = format!("SELECT 1 -- {}", "x".repeat(65536));
    let err = e.exec(&sql).send().await.expect_err("sql too long").into_service_error();
    let ExecuteStatementError::BadRequestException(b) = err else { panic!("{err:?}") };
    assert!(b.message().unwrap_or_default().contains("longer than 65536"), "{b:?}");
}

#[tokio::test]
async fn required_members_missing_or_malformed_bodies_are_rejected_with_typed_errors() {
    let e = env().await;
    let (status, head, body) =
        e.http("POST", "/Execute", &json!({"resourceArn": ARN, "secretArn": SECRET}).to_string()).await;
    assert_eq!(status, 400);
    assert!(head.to_ascii_lowercase().contains("x-amzn-errortype: badrequestexception"), "{head}");
    assert!(body.contains("sql"), "{body}");
    let (status, head, _) = e.http("POST", "/Execute", "{not json").await;
    assert_eq!(status, 400);
    assert!(head.to_ascii_lowercase().contains("serializationexception"), "{head}");
    let (status, _, _) =
        e.http("POST", "/CommitTransaction", &json!({"resourceArn": ARN, "secretArn": SECRET}).to_string()).await;
    assert_eq!(status, 400, "transactionId is required");
    // The SDK parses the same wire error as its typed variant.
    let err = e.exec("").send().await.expect_err("empty SQL").into_service_error();
    assert!(matches!(err, ExecuteStatementError::BadRequestException(_)), "{err:?}");
}

#[tokio::test]
async fn latency_fault_delays_every_data_api_request() {
    let e = env().await;
    e.http("POST", "/_faults", r#"{"latency_ms": 300}"#).await;
    let started = Instant::now();
    e.run("SELECT 1").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    e.http("DELETE", "/_faults", "").await;
    let started = Instant::now();
    e.run("SELECT 1").await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn injected_5xx_errors_are_retried_by_the_sdk_and_counted() {
    let e = env().await;
    e.http("POST", "/_stats/reset", "").await;
    e.http("POST", "/_faults", r#"{"fail_next": 2}"#).await;
    e.run("SELECT 1").await;
    assert_eq!(e.stats().await["ExecuteStatement"], 3, "two failures, then success");

    // A 100% error rate exhausts the SDK's attempts with a typed 5xx error.
    e.http("POST", "/_stats/reset", "").await;
    e.http("POST", "/_faults", r#"{"error_rate": 1.0}"#).await;
    let err = e.exec("SELECT 1").send().await.expect_err("always failing").into_service_error();
    assert!(
        matches!(
            err,
            ExecuteStatementError::InternalServerErrorException(_) | ExecuteStatementError::ServiceUnavailableError(_)
        ),
        "{err:?}"
    );
    assert_eq!(e.stats().await["ExecuteStatement"], 3, "max_attempts = 3");

    // At 50% every call still succeeds through the SDK's retries.
    e.http("POST", "/_faults", r#"{"error_rate": 0.5}"#).await;
    e.http("POST", "/_stats/reset", "").await;
    let patient = sdk_client(&e.url(), 30);
    for _ in 0..10 {
        patient
            .execute_statement()
            .resource_arn(ARN)
            .secret_arn(SECRET)
            .sql("SELECT 1")
            .send()
            .await
            .expect("retried to success");
    }
    assert!(e.stats().await["ExecuteStatement"].as_u64().unwrap_or(0) >= 10);
}

#[tokio::test]
async fn resuming_window_answers_database_resuming_then_succeeds_after_it() {
    let e = env().await;
    e.http("POST", "/_faults", r#"{"resuming_for_ms": 500}"#).await;
    let err = e.exec("SELECT 1").send().await.expect_err("resuming").into_service_error();
    let ExecuteStatementError::DatabaseResumingException(r) = err else { panic!("{err:?}") };
    assert!(r.message().unwrap_or_default().contains(ARN));
    tokio::time::sleep(Duration::from_millis(600)).await;
    e.run("SELECT 1").await;
}

#[tokio::test]
async fn stats_count_requests_by_operation_and_reset() {
    let e = env().await;
    e.run("CREATE TABLE s (v int)").await;
    let tx = begin(&e).await;
    e.client
        .batch_execute_statement()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .sql("INSERT INTO s VALUES (:v)")
        .transaction_id(&tx)
        .parameter_sets(vec![param("v", Field::LongValue(1))])
        .send()
        .await
        .expect("batch");
    e.client
        .rollback_transaction()
        .resource_arn(ARN)
        .secret_arn(SECRET)
        .transaction_id(&tx)
        .send()
        .await
        .expect("rollback");
    let stats = e.stats().await;
    assert_eq!(
        stats,
        json!({"ExecuteStatement": 1, "BatchExecuteStatement": 1, "BeginTransaction": 1,
               "CommitTransaction": 0, "RollbackTransaction": 1, "ExecuteSql": 0})
    );
    let (status, _, _) = e.http("POST", "/_stats/reset", "").await;
    assert_eq!(status, 200);
    assert_eq!(e.stats().await["ExecuteStatement"], 0);
}

#[tokio::test]
async fn ledger_pattern_jsonb_to_recordset_with_one_json_text_parameter() {
    let e = env().await;
    e.run(
        "CREATE TABLE order_confirmations (order_id text PRIMARY KEY, payload_sha256 text, \
         priority text, payload jsonb, status text, claim_token uuid, lease_until timestamptz, \
         attempts int, ses_message_id text, last_error text, first_seen_at timestamptz, \
         updated_at timestamptz, sent_at timestamptz)",
    )
    .await;
    let sql = "INSERT INTO order_confirmations AS o (order_id, payload_sha256, priority, payload, \
               status, claim_token, lease_until, attempts, first_seen_at, updated_at) \
               SELECT b.order_id, b.payload_sha256, b.priority, b.payload, 'sending', \
               gen_random_uuid(), now() + interval '5 minutes', 1, now(), now() \
               FROM jsonb_to_recordset(CAST(:batch AS jsonb)) AS b(order_id text, \
               payload_sha256 text, priority text, payload jsonb) \
               ON CONFLICT (order_id) DO UPDATE SET attempts = o.attempts + 1, \
               claim_token = gen_random_uuid() \
               WHERE o.status NOT IN ('sent', 'rejected') AND o.payload_sha256 = excluded.payload_sha256 \
               RETURNING o.order_id, o.claim_token, o.lease_until, o.attempts, o.payload, o.ses_message_id";
    let batch = json!([
        {"order_id": "A-1", "payload_sha256": "aa", "priority": "normal", "payload": {"n": 1}},
        {"order_id": "A-2", "payload_sha256": "bb", "priority": "high", "payload": {"n": 2}}
    ])
    .to_string();
    e.http("POST", "/_stats/reset", "").await;
    let out = e
        .exec(sql)
        .parameters(param("batch", s(&batch)))
        .include_result_metadata(true)
        .send()
        .await
        .expect("claim batch");
    assert_eq!(out.records().len(), 2);
    assert_eq!(out.number_of_records_updated(), 0, "RETURNING reports records, not a count");
    let r = &out.records()[0];
    assert_eq!(r[0], s("A-1"));
    let Field::StringValue(token) = &r[1] else { panic!("uuid as string: {r:?}") };
    assert_eq!(token.len(), 36);
    let Field::StringValue(lease) = &r[2] else { panic!("timestamptz as string: {r:?}") };
    assert!(lease.len() >= 19 && !lease.contains('+'), "UTC without offset: {lease}");
    assert_eq!(r[3], Field::LongValue(1));
    assert_eq!(r[4], s(r#"{"n": 1}"#));
    assert_eq!(r[5], Field::IsNull(true));
    let again = e.exec(sql).parameters(param("batch", s(&batch))).send().await.expect("second claim");
    assert_eq!(again.records()[0][3], Field::LongValue(2));
    assert_eq!(e.stats().await["ExecuteStatement"], 2, "one round trip per batch");
}

#[tokio::test]
async fn faults_set_at_start_up_apply_from_the_first_request_and_show_at_get_faults() {
    let e = env_with(|c| {
        c.faults.resuming_for_ms = 400;
        c.faults.latency_ms = 50;
    })
    .await;
    let (_, _, body) = e.http("GET", "/_faults", "").await;
    let f: serde_json::Value = serde_json::from_str(&body).expect("faults JSON");
    assert_eq!(f["latency_ms"], 50);
    let err = e.exec("SELECT 1").send().await.expect_err("resuming").into_service_error();
    assert!(matches!(err, ExecuteStatementError::DatabaseResumingException(_)), "{err:?}");
    tokio::time::sleep(Duration::from_millis(450)).await;
    e.run("SELECT 1").await;
}

#[tokio::test]
async fn multiple_statements_in_one_call_run_atomically_and_report_the_first_result() {
    let e = env().await;
    let out = e.run("CREATE TABLE ms (v int); INSERT INTO ms VALUES (1), (2); SELECT 99").await;
    assert_eq!(out.number_of_records_updated(), 0);
    let err = e.exec("INSERT INTO ms VALUES (3); SELECT 1/0").send().await;
    assert!(err.is_err());
    let count = e.run("SELECT count(*) FROM ms").await;
    assert_eq!(row(&count), vec![Field::LongValue(2)], "the failed call left nothing behind");
}
