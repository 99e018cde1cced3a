//! The send rate from the SES account (docs/design.md, "Deferral and the send rate"): the binary
//! reads `GetAccount`'s send quota from the SES emulator (aws-ses-v2-local answers it with the
//! account it is given, in SES v2's response shape) and sizes its limiter from it unless
//! `SES_ACCOUNT_MAX_SEND_RATE` overrides it; `config` and `stats` report it; a failed read falls
//! back to the settings with one log line and mails.

use crate::support;

use support::services::Services;
use support::*;

fn email_of(order_id: &str) -> String {
    format!("{}@example.com", order_id.to_lowercase())
}

/// `GetAccount`'s answer for an account allowed 1 mail per second and 50 per 24 hours, 20 of them
/// sent: the response syntax of SES v2's API reference.
fn account() -> serde_json::Value {
    serde_json::json!({
        "DedicatedIpAutoWarmupEnabled": false,
        "Details": {
            "AdditionalContactEmailAddresses": ["ops@example.com"],
            "ContactLanguage": "EN",
            "MailType": "TRANSACTIONAL",
            "ReviewDetails": {"CaseId": "case-1", "Status": "GRANTED"},
            "UseCaseDescription": "order confirmations",
            "WebsiteURL": "https://shop.example"
        },
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": true,
        "SendingEnabled": true,
        "SendQuota": {"Max24HourSend": 50.0, "MaxSendRate": 1.0, "SentLast24Hours": 20.0},
        "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}
    })
}

/// Runs the binary with the services' settings and `env`; returns stdout and stderr.
async fn run(s: &Services, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
    c.current_dir(dir).args(args).env_remove("AWS_LAMBDA_RUNTIME_API");
    for (k, v) in s.env() {
        c.env(k, v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().await.expect("run the binary");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout, stderr)
}

/// `invoke` on a batch of these orders (normal priority), written to a file in `dir`.
async fn invoke(s: &Services, dir: &std::path::Path, ids: &[&str], env: &[(&str, &str)]) -> String {
    let records = ids.iter().map(|id| record(&format!("m-{id}"), &order_body(id, "normal"))).collect();
    let path = dir.join(format!("batch-{}.json", ids[0]));
    std::fs::write(&path, serde_json::to_string(&event(records)).unwrap()).unwrap();
    run(s, dir, &["invoke", path.to_str().unwrap()], env).await.1
}

#[tokio::test]
async fn the_limiter_starts_from_the_send_quota_the_ses_emulator_answers_unless_the_setting_overrides_it() {
    let s = Services::start_with_ses_account(Some(&account())).await;
    s.ledger().await; // migrated
    let dir = tempfile::tempdir().unwrap();

    let (stdout, _) = run(&s, dir.path(), &["config"], &[]).await;
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("config as JSON");
    let q = &config["ses_send_quota"];
    assert_eq!(q["account"]["max_send_rate"], 1.0, "{q}");
    assert_eq!(q["account"]["max_24_hour_send"], 50.0, "{q}");
    assert_eq!((&q["rates"]["share"], &q["rates"]["source"]), (&1.0.into(), &"get_account".into()), "{q}");

    // At the account's 1 mail/s, a 3 s invocation (1 s kept for the record step, sends starting
    // only in the first second) mails at most the one send its bucket holds and the one it
    // refills; the others are deferred to a later delivery, none lost.
    let slow = ["GA-1", "GA-2", "GA-3", "GA-4", "GA-5", "GA-6"];
    let budget = [("INVOCATION_TIMEOUT_SECONDS", "3"), ("SAFETY_MARGIN_SECONDS", "1")];
    let stderr = invoke(&s, dir.path(), &slow, &budget).await;
    assert!(stderr.contains("send rate sized from the SES account's quota (GetAccount)"), "{stderr}");
    let mut mailed = 0;
    for id in slow {
        mailed += s.mails_to(&email_of(id)).await;
    }
    assert!(mailed <= 2, "{mailed} of 6 mailed at 1 mail/s: {stderr}");
    assert!(stderr.contains(&format!("{} deferred", 6 - mailed)), "the rest is deferred: {stderr}");

    // The setting wins: 100 mails/s for the one sender, and every order goes out at once.
    let fast = ["GS-1", "GS-2", "GS-3", "GS-4", "GS-5", "GS-6"];
    let set = [("SES_ACCOUNT_MAX_SEND_RATE", "100"), ("SES_SENDERS", "1")];
    let stderr = invoke(&s, dir.path(), &fast, &set).await;
    assert!(!stderr.contains("GetAccount"), "the quota is not read when the setting overrides it: {stderr}");
    for id in fast {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id}: {stderr}");
    }
    let (stdout, _) = run(&s, dir.path(), &["config"], &set).await;
    let config: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rates = &config["ses_send_quota"]["rates"];
    assert_eq!(
        (&rates["share"], &rates["ceiling"], &rates["source"]),
        (&100.0.into(), &100.0.into(), &"settings".into())
    );
    assert_eq!(config["ses_send_quota"]["account"]["max_24_hour_send"], 50.0, "the quota is still reported");

    // Six or more mails in the last hour, kept up for a day, pass 50 a day: stats warns.
    let (stdout, _) = run(&s, dir.path(), &["stats", "--json"], &[]).await;
    let stats: serde_json::Value = serde_json::from_str(&stdout).expect("stats as JSON");
    let warning = stats["ses_send_quota"]["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("the SES 24-hour quota of 50 runs out: 30 left"), "{stats}");
    let (table, _) = run(&s, dir.path(), &["stats"], &[]).await;
    assert!(table.contains("SES quota 1.00 mails/s, 50 per 24 h (20 sent in the last 24 h)"), "{table}");
    assert!(table.contains("WARNING: at "), "{table}");
}

#[tokio::test]
async fn a_failed_get_account_falls_back_to_the_settings_in_one_log_line_and_mailing_goes_on() {
    // The emulator without an account answers GetAccount 400 BadRequestException.
    let s = Services::start().await;
    s.ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ["GF-1", "GF-2", "GF-3"];
    let stderr = invoke(&s, dir.path(), &ids, &[]).await;
    for id in ids {
        assert_eq!(s.mails_to(&email_of(id)).await, 1, "{id}: {stderr}");
    }
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("GetAccount")).collect();
    assert_eq!(lines.len(), 1, "one line says so: {stderr}");
    assert!(
        lines[0].contains("WARN")
            && lines[0].contains("mailing goes on with the send rate from the settings: no limiter"),
        "{}",
        lines[0]
    );
    let (stdout, _) = run(&s, dir.path(), &["config"], &[]).await;
    let config: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let q = &config["ses_send_quota"];
    assert!(q["error"].as_str().is_some_and(|e| e.contains("GetAccount")), "{q}");
    assert_eq!(q["rates"]["source"], "unlimited", "{q}");
}

#[tokio::test]
async fn the_operator_requests_stats_and_config_report_the_send_quota_as_the_command_line_does() {
    let s = Services::start_with_ses_account(Some(&account())).await;
    s.ledger().await;
    let dir = tempfile::tempdir().unwrap();
    let ids = ["GO-1", "GO-2", "GO-3", "GO-4", "GO-5", "GO-6"];
    invoke(&s, dir.path(), &ids, &[("SES_ACCOUNT_MAX_SEND_RATE", "100"), ("SES_SENDERS", "1")]).await;
    let operator = |verb: &str| {
        let path = dir.path().join(format!("{verb}.json"));
        std::fs::write(&path, serde_json::json!({ "operator": verb }).to_string()).unwrap();
        path
    };

    // What the deployed operator function answers (the same Operator the Lambda runs).
    let (stdout, _) = run(&s, dir.path(), &["invoke", operator("stats").to_str().unwrap()], &[]).await;
    let stats: serde_json::Value = serde_json::from_str(&stdout).expect("the stats answer as JSON");
    let q = &stats["ses_send_quota"];
    assert_eq!(q["account"]["max_24_hour_send"], 50.0, "{stats}");
    assert_eq!(q["rates"]["source"], "get_account", "{q}");
    let warning = q["warning"].as_str().unwrap_or_default();
    assert!(warning.contains("the SES 24-hour quota of 50 runs out: 30 left"), "{q}");

    let (stdout, _) = run(&s, dir.path(), &["invoke", operator("config").to_str().unwrap()], &[]).await;
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("the config answer as JSON");
    let q = &config["ses_send_quota"];
    assert_eq!((&q["account"]["max_send_rate"], &q["rates"]["share"]), (&1.0.into(), &1.0.into()), "{config}");
    assert!(q.get("warning").is_none(), "config reports no current rate, so no warning: {q}");
}
