//! Start-up inside Lambda: configuration is validated before the first poll of the runtime API,
//! and a missing or wrong setting stops the process with a message naming it.

use std::process::Command;

fn lambda(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Nothing listens here: start-up must fail on configuration before it would connect.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run binary");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn missing_ledger_setting_stops_start_up_and_names_it() {
    let (code, stderr) = lambda(&[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("configuration: LEDGER is not set"), "{stderr}");
}

#[test]
fn missing_mailer_setting_stops_start_up_and_names_it() {
    let (code, stderr) = lambda(&[("LEDGER", "data-api")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("configuration: MAILER is not set"), "{stderr}");
}

#[test]
fn data_api_without_cluster_arn_stops_start_up_and_names_it() {
    let (code, stderr) = lambda(&[("LEDGER", "data-api"), ("MAILER", "ses")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("DB_CLUSTER_ARN is not set"), "{stderr}");
}

#[test]
fn ses_without_sender_stops_start_up_and_names_it() {
    let (code, stderr) = lambda(&[
        ("LEDGER", "data-api"),
        ("MAILER", "ses"),
        ("DB_CLUSTER_ARN", "arn:aws:rds:us-east-1:1:cluster:c"),
        ("DB_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:s"),
        ("DB_NAME", "orders"),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("SENDER_ADDRESS is not set"), "{stderr}");
}

#[test]
fn a_value_that_does_not_parse_stops_start_up_and_names_the_variable() {
    let (code, stderr) = lambda(&[("LEDGER", "data-api"), ("MAILER", "ses"), ("SES_MAX_SEND_RATE", "fast")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("configuration: SES_MAX_SEND_RATE has a value that does not parse"), "{stderr}");
}
