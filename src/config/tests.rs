use super::settings::{EnvOnly, unparsable};
use super::*;
use crate::defaults::{MAX_AGE_SECONDS, MAX_ATTEMPTS, MAX_RETENTION_DAYS, MAX_TIMEOUT_SECONDS};

#[test]
fn local_mode_uses_the_embedded_defaults() {
    let c = Settings::default().validate(Mode::Local).unwrap();
    assert_eq!(c.ledger, LedgerChoice::Sqlite { path: ".local/ledger.db".into() });
    assert_eq!(c.mailer, MailerChoice::Outbox { dir: ".local/outbox".into() });
}

#[test]
fn lambda_mode_requires_ledger_and_mailer_by_name() {
    let e = Settings::default().validate(Mode::Lambda).unwrap_err();
    assert_eq!(e.setting, "LEDGER");
    let s = Settings { ledger: Some("data-api".into()), ..Default::default() };
    assert_eq!(s.validate(Mode::Lambda).unwrap_err().setting, "MAILER");
}

#[test]
fn data_api_and_ses_require_their_settings() {
    let mut s = Settings { ledger: Some("data-api".into()), mailer: Some("ses".into()), ..Default::default() };
    assert_eq!(
        s.validate(Mode::Lambda).unwrap_err().to_string(),
        "configuration: DB_CLUSTER_ARN is not set (the data-api ledger needs it)"
    );
    s.db_cluster_arn = Some("arn:aws:rds:us-east-1:1:cluster:c".into());
    s.db_secret_arn = Some("arn:aws:secretsmanager:us-east-1:1:secret:s".into());
    s.db_name = Some("orders".into());
    assert_eq!(s.validate(Mode::Lambda).unwrap_err().setting, "SENDER_ADDRESS");
    s.sender_address = Some("orders@shop.example.com".into());
    let c = s.validate(Mode::Lambda).unwrap();
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("secretsmanager"), "{printed}");
}

#[test]
fn data_api_settings_beside_a_sqlite_ledger_are_refused_by_validation_in_every_mode() {
    for (setting, settings) in [
        (
            "DB_CLUSTER_ARN",
            Settings { db_cluster_arn: Some("arn:aws:rds:us-east-1:1:cluster:c".into()), ..Default::default() },
        ),
        (
            "DB_SECRET_ARN",
            Settings {
                db_secret_arn: Some("arn:aws:secretsmanager:us-east-1:1:secret:s".into()),
                ..Default::default()
            },
        ),
        ("DB_NAME", Settings { db_name: Some("orders".into()), ..Default::default() }),
    ] {
        let local = settings.validate(Mode::Local).unwrap_err();
        assert_eq!(local.setting, setting);
        assert_eq!(
            local.to_string(),
            format!(
                "configuration: {setting} is set but the ledger is sqlite:.local/ledger.db: set LEDGER=data-api to use \
                 the Data API, or unset {setting}"
            )
        );
        let lambda =
            Settings { ledger: Some("sqlite:/tmp/l.db".into()), mailer: Some("outbox:/tmp/o".into()), ..settings };
        assert_eq!(lambda.validate(Mode::Lambda).unwrap_err().setting, setting);
    }
    let blank = Settings { db_name: Some("  ".into()), ..Default::default() };
    assert!(blank.validate(Mode::Local).is_ok(), "an empty setting is an unset one");
}

#[test]
fn wrong_values_name_the_setting() {
    let cases = [
        (Settings { ledger: Some("postgres".into()), ..Default::default() }, "LEDGER"),
        (Settings { mailer: Some("smtp:x".into()), ..Default::default() }, "MAILER"),
        (Settings { ses_max_send_rate: Some(0.0), ..Default::default() }, "SES_MAX_SEND_RATE"),
        (Settings { high_priority_reserve: 1.5, ..Default::default() }, "HIGH_PRIORITY_RESERVE"),
        (Settings { send_concurrency: 0, ..Default::default() }, "SEND_CONCURRENCY"),
        (Settings { sender_address: Some("nope".into()), ..Default::default() }, "SENDER_ADDRESS"),
        (Settings { db_secret_arn: Some("secret".into()), ..Default::default() }, "DB_SECRET_ARN"),
        (Settings { backoff_base_seconds: 0, ..Default::default() }, "BACKOFF_BASE_SECONDS"),
        (Settings { backoff_cap_seconds: 50_000, ..Default::default() }, "BACKOFF_CAP_SECONDS"),
        (Settings { reconcile_max_attempts: 0, ..Default::default() }, "RECONCILE_MAX_ATTEMPTS"),
        (Settings { max_receive_count: 0, ..Default::default() }, "MAX_RECEIVE_COUNT"),
        (Settings { max_receive_count: 1001, ..Default::default() }, "MAX_RECEIVE_COUNT"),
        (Settings { queue_urls: vec!["orders-high".into()], ..Default::default() }, "QUEUE_URLS"),
        (Settings { ses_account_max_send_rate: Some(14.0), ..Default::default() }, "SES_ACCOUNT_MAX_SEND_RATE"),
        (Settings { ses_senders: Some(0), ..Default::default() }, "SES_SENDERS"),
        (Settings { expected_batch_size: Some(0), ..Default::default() }, "EXPECTED_BATCH_SIZE"),
        (Settings { function_role: "admin".into(), ..Default::default() }, "FUNCTION_ROLE"),
        (Settings { metrics_namespace: "AWS/Lambda".into(), ..Default::default() }, "POWERTOOLS_METRICS_NAMESPACE"),
        (Settings { metrics_namespace: "Orders\n".repeat(2), ..Default::default() }, "POWERTOOLS_METRICS_NAMESPACE"),
        (Settings { metrics_namespace: "N".repeat(256), ..Default::default() }, "POWERTOOLS_METRICS_NAMESPACE"),
        (Settings { service_name: "order confirmation".into(), ..Default::default() }, "POWERTOOLS_SERVICE_NAME"),
        (Settings { service_name: "s".repeat(256), ..Default::default() }, "POWERTOOLS_SERVICE_NAME"),
        (Settings { payload_retention_days: 0, ..Default::default() }, "PAYLOAD_RETENTION_DAYS"),
        (Settings { ledger_horizon_days: 14, ..Default::default() }, "LEDGER_HORIZON_DAYS"),
        (Settings { payload_retention_days: 60, ledger_horizon_days: 30, ..Default::default() }, "LEDGER_HORIZON_DAYS"),
    ];
    for (s, setting) in cases {
        assert_eq!(s.validate(Mode::Local).unwrap_err().setting, setting);
    }
}

#[test]
fn very_large_values_name_the_setting_instead_of_panicking() {
    let cases = [
        (Settings { send_timeout_seconds: u64::MAX, ..Default::default() }, "SEND_TIMEOUT_SECONDS"),
        (Settings { invocation_timeout_seconds: u64::MAX, ..Default::default() }, "INVOCATION_TIMEOUT_SECONDS"),
        (Settings { safety_margin_seconds: u64::MAX, ..Default::default() }, "SAFETY_MARGIN_SECONDS"),
        (Settings { lease_slack_seconds: u64::MAX, ..Default::default() }, "LEASE_SLACK_SECONDS"),
        (Settings { send_event_wait_seconds: 301, ..Default::default() }, "SEND_EVENT_WAIT_SECONDS"),
        (Settings { send_event_wait_seconds: u64::MAX, ..Default::default() }, "SEND_EVENT_WAIT_SECONDS"),
        (Settings { backoff_base_seconds: u64::MAX, ..Default::default() }, "BACKOFF_BASE_SECONDS"),
        (Settings { backoff_cap_seconds: u64::MAX, ..Default::default() }, "BACKOFF_CAP_SECONDS"),
        (Settings { deferred_delay_seconds: u64::MAX, ..Default::default() }, "DEFERRED_DELAY_SECONDS"),
        (Settings { reconcile_failed_after_seconds: u64::MAX, ..Default::default() }, "RECONCILE_FAILED_AFTER_SECONDS"),
        (Settings { unconfirmed_grace_seconds: u64::MAX, ..Default::default() }, "UNCONFIRMED_GRACE_SECONDS"),
        (Settings { reconcile_max_attempts: i64::MAX, ..Default::default() }, "RECONCILE_MAX_ATTEMPTS"),
        (Settings { payload_retention_days: u64::MAX, ..Default::default() }, "PAYLOAD_RETENTION_DAYS"),
        (Settings { ledger_horizon_days: u64::MAX, ..Default::default() }, "LEDGER_HORIZON_DAYS"),
        (Settings { send_concurrency: usize::MAX, ..Default::default() }, "SEND_CONCURRENCY"),
        (Settings { ses_max_send_rate: Some(f64::MAX), ..Default::default() }, "SES_MAX_SEND_RATE"),
        (
            Settings { ses_max_send_rate: Some(1.0), ses_account_max_send_rate: Some(1e300), ..Default::default() },
            "SES_ACCOUNT_MAX_SEND_RATE",
        ),
    ];
    for (s, setting) in cases {
        let result = std::panic::catch_unwind(|| s.validate(Mode::Local));
        assert_eq!(result.expect("no panic").unwrap_err().setting, setting);
    }
    // The largest accepted values still make a working configuration.
    let s = Settings {
        invocation_timeout_seconds: MAX_TIMEOUT_SECONDS,
        lease_slack_seconds: MAX_TIMEOUT_SECONDS,
        deferred_delay_seconds: 900,
        reconcile_failed_after_seconds: MAX_AGE_SECONDS,
        unconfirmed_grace_seconds: MAX_AGE_SECONDS,
        reconcile_max_attempts: MAX_ATTEMPTS,
        payload_retention_days: MAX_RETENTION_DAYS,
        ledger_horizon_days: MAX_RETENTION_DAYS,
        ..Default::default()
    };
    assert!(s.validate(Mode::Local).is_ok());
}

/// The settings a command line gives (no environment variable of these names is set in tests).
fn parsed(args: &[&str]) -> Result<Settings, clap::Error> {
    use clap::Parser;
    EnvOnly::try_parse_from(std::iter::once("order-confirmation").chain(args.iter().copied())).map(|e| e.settings)
}

#[test]
fn the_data_api_ledger_carries_its_target() {
    let s = parsed(&[
        "--ledger=data-api",
        "--db-cluster-arn=arn:aws:rds:us-east-1:1:cluster:c",
        "--db-secret-arn=arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf",
        "--db-name=orders",
    ])
    .unwrap();
    let c = s.validate(Mode::Local).unwrap();
    let LedgerChoice::DataApi(target) = &c.ledger else { panic!("{:?}", c.ledger) };
    assert_eq!(target.database, "orders");
    let printed = serde_json::to_value(&c).unwrap();
    assert_eq!(
        printed["ledger"],
        serde_json::json!({"kind": "data-api", "cluster_arn": "arn:aws:rds:us-east-1:1:cluster:c",
                           "secret_arn": "****AbCdEf", "database": "orders"}),
    );
    assert!(printed.get("data_api").is_none(), "one place for the target: {printed}");
}

/// `config` (the command and the operator's request) prints every setting: changing any one
/// of them, alone, changes what it prints. The settings come from clap's command, so a new
/// setting is checked without being listed here, unless it has neither a default nor a value
/// below.
#[test]
fn config_shows_every_setting() {
    use clap::CommandFactory;
    // The data-api ledger, so its target's settings count.
    let base = [
        "--ledger=data-api",
        "--db-cluster-arn=arn:aws:rds:us-east-1:1:cluster:c",
        "--db-secret-arn=arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf",
        "--db-name=orders",
        "--ses-senders=7",
    ];
    // The base with one flag replaced (or added).
    let shown = |flag: Option<&str>| {
        let name = flag.map(|f| f.split('=').next().unwrap_or_default().to_owned() + "=");
        // A SQLite ledger beside Data API settings is refused, so it goes without them.
        let sqlite = flag.is_some_and(|f| f.starts_with("--ledger=sqlite:"));
        let mut args: Vec<&str> = base
            .iter()
            .copied()
            .filter(|a| name.as_ref().is_none_or(|n| !a.starts_with(n.as_str())))
            .filter(|a| !(sqlite && a.starts_with("--db-")))
            .collect();
        args.extend(flag);
        let config = parsed(&args).unwrap().validate(Mode::Local).unwrap();
        serde_json::to_value(config).unwrap()
    };
    let other_value = |variable: &str, default: Option<&str>| -> String {
        let value = match (variable, default) {
            ("LEDGER", _) => "sqlite:elsewhere.db",
            ("MAILER", _) => "outbox:elsewhere",
            ("DB_CLUSTER_ARN", _) => "arn:aws:rds:us-east-1:1:cluster:other",
            ("DB_SECRET_ARN", _) => "arn:aws:secretsmanager:us-east-1:1:secret:s-Other1",
            ("DB_NAME", _) => "other",
            ("SENDER_ADDRESS", _) => "shop@example.com",
            ("SES_CONFIGURATION_SET", _) => "events",
            ("STATUS_URL_TEMPLATE", _) => "https://shop.example/orders/{order_id}",
            ("SES_MAX_SEND_RATE", _) => "3",
            ("SES_ACCOUNT_MAX_SEND_RATE", _) => "14",
            ("SES_SENDERS", _) => "8",
            ("EXPECTED_BATCH_SIZE", _) => "20",
            ("QUEUE_URLS", _) => "https://sqs.us-east-1.amazonaws.com/1/high",
            ("FUNCTION_ROLE", _) => "operator",
            ("POWERTOOLS_METRICS_NAMESPACE", _) => "Shop/Orders",
            ("POWERTOOLS_SERVICE_NAME", _) => "shop-confirmations",
            (_, Some(default)) if default.contains('.') => {
                return (default.parse::<f64>().unwrap() + 0.1).to_string();
            }
            (_, Some(default)) => return (default.parse::<i64>().unwrap() + 1).to_string(),
            (_, None) => panic!("{variable} has no default: give it a value in this test"),
        };
        value.to_owned()
    };
    let unchanged = shown(None);
    let command = EnvOnly::command();
    let settings: Vec<_> = command.get_arguments().filter(|a| a.get_env().is_some()).collect();
    assert!(settings.len() >= 25, "{}", settings.len());
    let mut hidden = Vec::new();
    for arg in settings {
        let variable = arg.get_env().unwrap().to_str().unwrap();
        let default = arg.get_default_values().first().and_then(|d| d.to_str());
        let flag = format!("--{}={}", arg.get_long().unwrap(), other_value(variable, default));
        if shown(Some(&flag)) == unchanged {
            hidden.push(variable);
        }
    }
    assert!(hidden.is_empty(), "settings `config` does not show: {hidden:?}");
}

#[test]
fn a_value_that_does_not_parse_is_named_by_its_variable_from_clap_and_not_repeated() {
    use clap::CommandFactory;
    // A value with angle brackets: clap's message then holds two `<…>`, and the value's
    // comes first.
    let e = parsed(&["--ses-max-send-rate=<fast>"]).unwrap_err();
    assert_eq!(setting_of(&e, &EnvOnly::command()).as_deref(), Some("SES_MAX_SEND_RATE"));
    let error = unparsable(&e);
    assert_eq!(error.setting, "SES_MAX_SEND_RATE");
    assert!(!error.to_string().contains("fast"), "the value is not repeated: {error}");
    let e = parsed(&["--send-concurrency=-3"]).unwrap_err();
    assert_eq!(unparsable(&e).setting, "SEND_CONCURRENCY");
}

#[test]
fn a_wrong_ledger_mailer_or_queue_url_is_named_with_its_rule_and_the_value_is_not_repeated() {
    let secret = "secret-value";
    for (flag, setting, rule) in [
        ("--ledger", "LEDGER", "must be data-api or sqlite:<path>"),
        ("--mailer", "MAILER", "must be ses or outbox:<dir>"),
    ] {
        let error = parsed(&[&format!("{flag}={secret}")]).unwrap().validate(Mode::Local).unwrap_err();
        assert_eq!(error.setting, setting);
        assert!(error.to_string().contains(rule), "{error}");
        assert!(!error.to_string().contains(secret), "the value is repeated: {error}");
    }
    let s = Settings { queue_urls: vec!["https://sqs.example/1/high".into(), secret.into()], ..Default::default() };
    let error = s.validate(Mode::Local).unwrap_err();
    assert_eq!(error.setting, "QUEUE_URLS");
    assert!(error.to_string().contains("entry 2 is not an http(s) queue URL"), "{error}");
    assert!(!error.to_string().contains(secret), "the value is repeated: {error}");
}

#[test]
fn a_configuration_set_name_ses_would_refuse_fails_at_start_up_naming_the_setting() {
    let with = |name: &str| {
        Settings { ses_configuration_set: Some(name.to_owned()), ..Default::default() }.validate(Mode::Local)
    };
    for bad in ["order confirmation", "events.v2", &"x".repeat(65)] {
        let error = with(bad).unwrap_err();
        assert_eq!(error.setting, "SES_CONFIGURATION_SET", "{bad}");
        assert!(error.to_string().contains("letters, digits, _ and -"), "{error}");
    }
    assert_eq!(with("order-confirmation_2").unwrap().ses_configuration_set.as_deref(), Some("order-confirmation_2"));
    assert_eq!(with(&"x".repeat(64)).unwrap().ses_configuration_set.map(|s| s.len()), Some(64));
    assert_eq!(with("").unwrap().ses_configuration_set, None, "empty means none, as the template passes it");
}

#[test]
fn a_status_url_template_no_mail_could_use_fails_at_start_up_naming_the_setting() {
    let with = |template: &str| {
        Settings { status_url_template: Some(template.to_owned()), ..Default::default() }.validate(Mode::Local)
    };
    for bad in
        ["http://shop.example/{order_id}", "https://shop.example/orders", "https://shop.example/{id}<x>{order_id}"]
    {
        let error = with(bad).unwrap_err();
        assert_eq!(error.setting, "STATUS_URL_TEMPLATE", "{bad}");
        assert!(!error.to_string().contains("shop.example/{"), "the value is not repeated: {error}");
    }
    let ok = with("https://shop.example/orders/{order_id}").unwrap().status_url_template.unwrap();
    assert_eq!(ok.url_for("ORD-1"), "https://shop.example/orders/ORD-1");
    assert_eq!(with("").unwrap().status_url_template, None, "empty means no link");
}

#[test]
fn metric_names_default_to_the_namespace_and_service_used_before_they_were_settings() {
    let c = Settings::default().validate(Mode::Local).unwrap();
    assert_eq!(c.metric_names, MetricNames::default());
    assert_eq!(c.metric_names.namespace, "OrderConfirmation");
    assert_eq!(c.metric_names.service, "order-confirmation");
    let named = Settings {
        metrics_namespace: "Shop/Orders".into(),
        service_name: "shop-confirmations".into(),
        ..Default::default()
    };
    let c = named.validate(Mode::Local).unwrap();
    assert_eq!(c.metric_names, MetricNames { namespace: "Shop/Orders".into(), service: "shop-confirmations".into() });
}

#[test]
fn each_instance_starts_at_the_account_rate_divided_among_the_senders() {
    let s = Settings { ses_account_max_send_rate: Some(14.0), ses_senders: Some(7), ..Default::default() };
    let c = s.validate(Mode::Local).unwrap();
    assert_eq!(c.ses_max_send_rate, Some(2.0));
    assert_eq!(c.ses_account_max_send_rate, Some(14.0));
    let explicit = Settings { ses_max_send_rate: Some(3.0), ..s };
    assert_eq!(explicit.validate(Mode::Local).unwrap().ses_max_send_rate, Some(3.0));
}

#[test]
fn start_up_warns_when_a_full_batch_cannot_be_mailed_within_the_timeout() {
    let sized = |batch| Settings {
        ses_account_max_send_rate: Some(14.0),
        ses_senders: Some(14),
        expected_batch_size: Some(batch),
        invocation_timeout_seconds: 60,
        safety_margin_seconds: 5,
        ..Default::default()
    };
    assert_eq!(sized(50).validate(Mode::Local).unwrap().sizing_warning(), None);
    let warning = sized(100).validate(Mode::Local).unwrap().sizing_warning().expect("100 mails at 1/s exceed 55 s");
    assert!(warning.starts_with("EXPECTED_BATCH_SIZE 100 needs 100 s"), "{warning}");
}
