//! The `order-confirmation` binary as a user runs it: `invoke`, `stats`, `status`, `migrate`,
//! `config`, `--help`, and what its logs may never contain.

use std::path::Path;
use std::process::{Command, Output};

/// The sample batch: `invoke` runs only the event it is given, never this one by default.
const SAMPLE: &str = "events/sqs-batch.json";

fn bin(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LEDGER")
        .env_remove("MAILER")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env("LEDGER", format!("sqlite:{}", dir.join("ledger.db").display()))
        .env("MAILER", format!("outbox:{}", dir.join("outbox").display()))
        .env_remove("DB_CLUSTER_ARN")
        .env_remove("DB_SECRET_ARN")
        .env_remove("DB_NAME");
    c
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("run binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// `invoke EVENT` with every log line on, as text or as Lambda's JSON.
fn invoke_with_debug_logs(dir: &Path, event: &str, format: &str) -> (Output, String, String) {
    let mut c = bin(dir);
    c.args(["invoke", event]).env("RUST_LOG", "debug");
    if format == "json" {
        c.env("AWS_LAMBDA_LOG_FORMAT", "JSON");
    }
    run(&mut c)
}

/// The value of one `label: value` line of `status` output.
fn field<'a>(status: &'a str, label: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(label)?.strip_prefix(':').map(str::trim))
}

fn outbox_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("outbox")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn invoke_twice_mails_once_and_reports_the_same_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (out, first, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        first.trim(),
        r#"{"batchItemFailures":[{"itemIdentifier":"b9b3c0b5-3a30-4d43-9c7a-0d6a3f5f2a11"},{"itemIdentifier":"c3f4e5d6-1111-4a2b-9c3d-4e5f60718293"}]}"#
    );
    assert!(stderr.contains("6 records: 2 invalid, 4 sent"), "{stderr}");
    assert_eq!(outbox_count(dir.path()), 4);

    let (_, second, stderr) = run(bin(dir.path()).args(["invoke", "events/sqs-batch.json"]));
    assert_eq!(second, first);
    assert!(stderr.contains("6 records: 4 already_sent, 2 invalid"), "{stderr}");
    assert_eq!(outbox_count(dir.path()), 4, "no new mail on the second run");
}

#[test]
fn logs_never_contain_customer_addresses_or_names() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let (_, stdout, stderr) = invoke_with_debug_logs(dir.path(), "events/sqs-bad-input.json", format);
        let (_, _, stderr2) = run(bin(dir.path()).args(["invoke", "events/sqs-batch.json"]).env("RUST_LOG", "debug"));
        for secret in [
            "jane.doe@example.com",
            "Jane Doe",
            "kenji@example.jp",
            "山田",
            "li.wei@",
            "Li Wei",
            "victim@example.com",
            "good@example.com",
            "a@example.com",
        ] {
            assert!(
                !stderr.contains(secret) && !stdout.contains(secret) && !stderr2.contains(secret),
                "{format} log leaks {secret}"
            );
        }
        assert!(stderr.contains("bad-12-crlf-name"), "the log does name the record");
    }
}

#[test]
fn json_logs_carry_message_id_order_id_priority_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]).env("AWS_LAMBDA_LOG_FORMAT", "JSON"));
    let line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["order_id"] == "ORD-1002")
        .expect("a JSON line about ORD-1002");
    assert_eq!(line["message_id"], "2e1424d4-f796-459a-8184-9c92662be6da");
    assert_eq!(line["priority"], "high");
    assert_eq!(line["outcome"], "sent");
    // Powertools' keys: the service always; the invocation's keys only inside Lambda.
    assert_eq!(line["service"], "order-confirmation");
    for key in ["cold_start", "function_request_id", "xray_trace_id"] {
        assert!(line.get(key).is_none(), "{key} on a command-line line: {line}");
    }
}

#[test]
fn stats_and_status_read_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    let (out, stdout, _) = run(bin(dir.path()).args(["stats", "--json"]));
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let high = v["priorities"].as_array().unwrap().iter().find(|p| p["priority"] == "high").unwrap();
    assert_eq!(high["by_status"]["sent"], 2);
    assert_eq!(high["pending"], 0);
    // Across priorities: two high and two normal orders sent, nothing pending.
    assert_eq!((v["totals"]["by_status"]["sent"].as_u64(), v["totals"]["pending"].as_u64()), (Some(4), Some(0)), "{v}");
    let (_, table, _) = run(bin(dir.path()).arg("stats"));
    assert!(table.starts_with("priority"), "{table}");
    let total: Vec<&str> =
        table.lines().find(|l| l.starts_with("total")).expect("a total row").split_whitespace().collect();
    assert_eq!((total[1], total[6]), ("4", "0"), "sent_24h and pending across priorities: {table}");

    let (out, stdout, _) = run(bin(dir.path()).args(["status", "ORD-1002"]));
    assert!(out.status.success());
    assert_eq!(field(&stdout, "status"), Some("sent"), "{stdout}");
    assert!(!stdout.contains("kenji"), "no personal data");
    let (out, _, stderr) = run(bin(dir.path()).args(["status", "ORD-404"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr.contains("not in the ledger"));
}

#[test]
fn flags_win_over_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("flag-ledger.db");
    let (_, stdout, _) = run(bin(dir.path()).args(["config", "--ledger", &format!("sqlite:{}", other.display())]));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["LEDGER"], format!("sqlite:{}", other.display()));
    assert_eq!(v["MAILER"], format!("outbox:{}", dir.path().join("outbox").display()));
}

#[test]
fn config_prints_every_setting_under_its_name_in_the_unit_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path())
        .args(["config", "--payload-retention-days", "45"])
        .env("DB_SECRET_ARN", "")
        .env("QUEUE_URLS", "https://sqs.example/high,https://sqs.example/normal"));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    // In the order printed (a JSON map here would sort them).
    let keys: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("  \"")?.split('"').next()).collect();
    assert_eq!(keys.len(), v.len(), "{stdout}");
    // The keys are the settings' names, every one of them, in --help's order.
    let (_, help, _) = run(bin(dir.path()).arg("--help"));
    let variables: Vec<&str> =
        help.lines().filter_map(|l| l.trim().strip_prefix("[env: ")?.split(['=', ']']).next()).collect();
    assert!(variables.len() >= 25, "{help}");
    assert_eq!(keys, variables);
    assert_eq!(v["PAYLOAD_RETENTION_DAYS"], 45, "days, as the setting takes them");
    assert_eq!(v["LEDGER_HORIZON_DAYS"], 400);
    assert_eq!(v["SEND_TIMEOUT_SECONDS"], 15);
    assert_eq!(v["HIGH_PRIORITY_RESERVE"], 0.2);
    assert_eq!(v["LEDGER"], format!("sqlite:{}", dir.path().join("ledger.db").display()));
    assert_eq!(v["SES_MAX_SEND_RATE"], serde_json::Value::Null);
    assert_eq!(v["QUEUE_URLS"], serde_json::json!(["https://sqs.example/high", "https://sqs.example/normal"]));
}

#[test]
fn a_rule_broken_by_a_flag_names_the_flag_typed_and_shows_both_values() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["config", "--ledger-horizon-days", "20"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--ledger-horizon-days (20) must be at least PAYLOAD_RETENTION_DAYS (30)"), "{stderr}");
    assert!(!stderr.contains("LEDGER_HORIZON_DAYS"), "the person typed the flag: {stderr}");
    // Both as flags: both named as typed.
    let (_, _, stderr) =
        run(bin(dir.path()).args(["config", "--ledger-horizon-days=20", "--payload-retention-days", "25"]));
    assert!(stderr.contains("--ledger-horizon-days (20) must be at least --payload-retention-days (25)"), "{stderr}");
    // From the environment: the variable, with the values.
    let (out, _, stderr) = run(bin(dir.path()).arg("config").env("LEDGER_HORIZON_DAYS", "20"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LEDGER_HORIZON_DAYS (20) must be at least PAYLOAD_RETENTION_DAYS (30)"), "{stderr}");
    // A bound broken by a flag names the flag too.
    let (out, _, stderr) = run(bin(dir.path()).args(["stats", "--send-concurrency", "0"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--send-concurrency must be between 1 and 256"), "{stderr}");
}

#[test]
fn completions_complete_subcommands_and_settings_in_bash_and_exist_for_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let (out, script, stderr) = run(bin(dir.path()).args(["completions", "bash"]).env("LEDGER", "nonsense"));
    assert!(out.status.success(), "no setting needs to be valid to print completions: {stderr}");
    let file = dir.path().join("completion.bash");
    std::fs::write(&file, &script).unwrap();
    // What bash does on <TAB>: the completion function with the words typed so far.
    let complete = |words: &str| {
        let words: Vec<&str> = words.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
             _order__confirmation order-confirmation '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words.join(" "),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = std::process::Command::new("bash").args(["-c", &program]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("order-confirmation st");
    assert!(subcommands.lines().any(|l| l == "stats") && subcommands.lines().any(|l| l == "status"), "{subcommands}");
    let settings = complete("order-confirmation stats --ledger-h");
    assert_eq!(settings.trim(), "--ledger-horizon-days", "a shared setting completes after a subcommand");
    let shells = complete("order-confirmation completions ");
    assert!(["bash", "zsh", "fish"].iter().all(|s| shells.lines().any(|l| l == *s)), "{shells}");
    for (shell, first) in [("zsh", "#compdef order-confirmation"), ("fish", "complete -c order-confirmation")] {
        let (out, script, _) = run(bin(dir.path()).args(["completions", shell]));
        assert!(out.status.success() && script.contains(first) && script.contains("ledger-horizon-days"), "{shell}");
    }
}

#[test]
fn the_manual_page_has_every_command_setting_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let (out, page, stderr) = run(bin(dir.path()).arg("man").env("LEDGER", "nonsense"));
    assert!(out.status.success(), "no setting needs to be valid to print it: {stderr}");
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "roff: {}", &page[..page.len().min(200)]);
    assert!(page.contains(".TH order-confirmation 1"), "{page}");
    for word in ["invoke", "stats", "status", "retry", "park", "reconcile", "migrate", "completions"] {
        assert!(page.contains(word), "{word}");
    }
    for setting in ["ledger\\-horizon\\-days", "LEDGER_HORIZON_DAYS", "queue\\-url"] {
        assert!(page.contains(setting), "{setting} in the manual page");
    }
    assert!(page.contains("Exit codes") && page.contains("not in the ledger"), "exit codes in the manual page");
}

/// The command run in a pseudo-terminal (util-linux `script`), as a person at a terminal runs it:
/// what it prints there, stdout and stderr together.
fn at_a_terminal(dir: &Path, args: &str, no_color: Option<&str>) -> String {
    let mut c = Command::new("script");
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_order-confirmation"));
    c.args(["-q", "-e", "-c", &command, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LEDGER", format!("sqlite:{}", dir.join("ledger.db").display()))
        .env("MAILER", format!("outbox:{}", dir.join("outbox").display()))
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RUST_LOG")
        .env("TERM", "xterm-256color");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    String::from_utf8_lossy(&c.output().expect("util-linux script runs").stdout).into_owned()
}

#[test]
fn no_color_turns_the_colours_off_at_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for args in ["invoke events/sqs-batch.json", "stats --frobnicate", "--help"] {
        let coloured = at_a_terminal(dir.path(), args, None);
        assert!(coloured.contains("\x1b["), "{args}: a terminal gets colours: {coloured:?}");
        let plain = at_a_terminal(dir.path(), args, Some("1"));
        assert!(!plain.contains("\x1b["), "{args}: NO_COLOR=1 gets none: {plain:?}");
        assert!(plain.len() > 40, "{args}: {plain:?}");
    }
}

#[test]
fn a_wrong_setting_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]).env("LEDGER", "mysql://x"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("LEDGER"), "{stderr}");
}

#[test]
fn a_batch_with_an_unnamed_failing_record_fails_the_invocation_and_prints_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", "events/sqs-no-message-id.json"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Lambda returns no response for a failed invocation: an empty batchItemFailures on stdout
    // would say "all done" while the exit code says the whole batch comes back.
    assert!(stdout.is_empty(), "no response beside a failed invocation: {stdout}");
    assert!(stderr.contains("have no messageId"), "{stderr}");
    assert!(stderr.contains("no response"), "says why stdout is empty: {stderr}");
}

#[test]
fn every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        vec!["--help"],
        vec!["invoke", "--help"],
        vec!["stats", "--help"],
        vec!["status", "--help"],
        vec!["migrate", "--help"],
        vec!["config", "--help"],
    ] {
        let (out, stdout, _) = run(bin(dir.path()).args(&sub));
        assert!(out.status.success(), "{sub:?}");
        assert!(stdout.contains("Usage: order-confirmation"), "{sub:?}: {stdout}");
    }
}

#[test]
fn migrate_creates_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).arg("migrate"));
    assert!(out.status.success(), "{stderr}");
    assert!(dir.path().join("ledger.db").exists());
}

#[test]
fn stats_watch_refreshes_until_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    let child = bin(dir.path())
        .args(["stats", "--watch", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "Ctrl-C ends the watch cleanly");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.matches("priority sent_24h").count() >= 2, "refreshed at least once: {text}");
}

#[test]
fn hostile_details_cost_no_confirmation_and_no_log_line_carries_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["text", "json"] {
        let (out, stdout, stderr) = invoke_with_debug_logs(dir.path(), "events/sqs-hostile.json", format);
        assert!(out.status.success(), "{stderr}");
        // Only the unknown schema_version is refused; every bad optional detail was dropped.
        assert_eq!(stdout.trim(), r#"{"batchItemFailures":[{"itemIdentifier":"hostile-03-email-in-schema-version"}]}"#);
        for secret in ["leaked.address", "@example.org", "@example.net", "Hostile Person"] {
            let leaks: Vec<&str> = stderr.lines().chain(stdout.lines()).filter(|l| l.contains(secret)).collect();
            assert!(leaks.is_empty(), "{format} log leaks {secret}: {leaks:?}");
        }
        assert!(stderr.contains("schema_version: must be the integer 1"), "the rule is named: {stderr}");
        assert!(stderr.contains("order detail priority dropped"), "the bad priority is counted: {stderr}");
        assert!(
            stderr.contains("order detail SentTimestamp dropped"),
            "the SentTimestamp of i64::MIN is dropped and noted: {stderr}"
        );
    }
    assert_eq!(outbox_count(dir.path()), 10, "every order but the unknown schema was mailed, once");
}

/// `by_order` (which takes an order id) and `whole` (which does not), pointed at a ledger path
/// that does not exist: a usage mistake naming the path, nothing on stdout, no file created.
fn refuses_a_missing_ledger_and_never_creates_it(by_order: &str, whole: &str) {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.db");
    let flag = format!("sqlite:{}", typo.display());
    for args in [vec![by_order, "ORD-1", "--ledger", &flag], vec![whole, "--ledger", &flag]] {
        let (out, stdout, stderr) = run(bin(dir.path()).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} reports nothing: {stdout}");
        assert!(
            stderr.contains(&format!("no ledger at {}; check --ledger or run migrate", typo.display())),
            "{args:?}: {stderr}"
        );
        assert!(!typo.exists(), "{args:?} created the ledger");
    }
}

#[test]
fn read_only_commands_refuse_a_ledger_that_does_not_exist_and_never_create_it() {
    refuses_a_missing_ledger_and_never_creates_it("status", "stats");
}

#[test]
fn invoke_runs_the_reconcile_schedule_event_as_the_function_does() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", "events/schedule-reconcile.json"]));
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("the reconcile report as JSON");
    assert_eq!(report["found"], 0, "nothing is stuck: {stdout}");
    assert!(report["unconfirmed"].is_object(), "the count the alarm watches: {stdout}");
}

#[test]
fn invoke_answers_an_operator_request_read_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    let mut child = bin(dir.path())
        .args(["invoke", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(br#"{"operator": "status", "order_id": "ORD-1002"}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the answer as JSON");
    assert_eq!(answer["order"]["status"], "sent", "{answer}");
}

#[test]
fn invoke_without_the_event_file_says_what_it_expected_and_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]).current_dir(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    let looked = dir.path().join("events/sqs-batch.json");
    assert!(stderr.contains(&format!("no event file at {}", looked.display())), "{stderr}");
    assert!(
        stderr.contains(
            "an SQS batch (orders, or SES events from the events queue), the reconcile schedule event or an operator request"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("`-` reads stdin"), "{stderr}");
}

#[test]
fn invoke_refuses_json_that_is_no_event_the_function_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.json");
    std::fs::write(&file, r#"{"hello": "world"}"#).unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", file.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("expected an SQS event (with Records)"), "{stderr}");
}

#[test]
fn an_sqs_batch_of_the_wrong_shape_is_refused_naming_the_field_and_never_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "jane.doe@example.com";
    for arn in ["arn:aws:sqs:us-east-1:1:shop-high", "arn:aws:sqs:us-east-1:1:shop-ses-events"] {
        let file = dir.path().join("bad.json");
        let event = serde_json::json!({"Records": [{"messageId": "m1", "body": "{}", "eventSourceARN": arn,
                                                     "attributes": secret}]});
        std::fs::write(&file, event.to_string()).unwrap();
        let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", file.to_str().unwrap()]));
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains("Records[0].attributes"), "{arn}: names the field: {stderr}");
        assert!(!stderr.contains(secret), "{arn}: repeats the value: {stderr}");
    }
}

#[test]
fn stats_watch_zero_is_a_usage_mistake_not_a_silent_one_second() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    let mut child = bin(dir.path())
        .args(["stats", "--watch", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("`stats --watch 0` was accepted and kept refreshing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("--watch"), "names the flag: {stderr}");
}

#[test]
fn stats_watch_into_a_pipe_that_closes_ends_quietly_without_clear_screen_codes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    // `stats --watch 1 | head -1`: read one line, then close the pipe.
    let mut child = bin(dir.path())
        .args(["stats", "--watch", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!first.contains('\x1b'), "no terminal codes into a pipe: {first:?}");
    assert!(first.starts_with("priority"), "{first:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "a closed pipe is not a failure: {stderr}");
}

#[test]
fn exit_codes_tell_a_runtime_failure_from_a_usage_mistake_from_not_found() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    let (out, _, stderr) = run(bin(dir.path()).args(["status", "ORD-404"]));
    assert_eq!(out.status.code(), Some(3), "not found: {stderr}");
    let (out, _, stderr) = run(bin(dir.path()).args(["status", "not an id"]));
    assert_eq!(out.status.code(), Some(2), "usage: {stderr}");
    let (out, _, stderr) = run(bin(dir.path()).args(["stats", "--frobnicate"]));
    assert_eq!(out.status.code(), Some(2), "usage: {stderr}");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, "this is not a SQLite database, it only has the name of one").unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["stats", "--ledger", &format!("sqlite:{}", garbage.display())]));
    assert_eq!(out.status.code(), Some(1), "runtime: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn subcommand_help_lists_its_own_options_and_points_to_the_shared_settings_instead_of_repeating_them() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["invoke", "stats", "consume", "reconcile", "status", "retry", "park", "migrate", "config"] {
        let (out, stdout, _) = run(bin(dir.path()).args([sub, "--help"]));
        assert!(out.status.success(), "{sub}");
        assert!(stdout.contains("--help"), "{sub}: its own options: {stdout}");
        assert!(!stdout.contains("\nSettings ("), "{sub} --help repeats the shared settings: {stdout}");
        for global in ["--ledger", "--mailer", "--queue-url", "--send-concurrency"] {
            assert!(!stdout.contains(&format!("\n      {global} <")), "{sub}: {global} is listed again");
        }
        assert!(stdout.contains("`order-confirmation --help` lists them"), "{sub}: says where they are: {stdout}");
    }
    // Listed once, at the top, under their own heading; and still taken after any subcommand,
    // where a flag still wins over the environment.
    let (_, top, _) = run(bin(dir.path()).arg("--help"));
    let heading = top.find("\nSettings").unwrap_or_else(|| panic!("no Settings heading: {top}"));
    for global in ["--ledger", "--mailer", "--queue-url", "--send-concurrency"] {
        assert!(top[heading..].contains(&format!("\n      {global} <")), "{global} under Settings: {top}");
    }
    let other = dir.path().join("other.db");
    let (out, _, stderr) = run(bin(dir.path()).args(["migrate", "--ledger", &format!("sqlite:{}", other.display())]));
    assert!(out.status.success() && other.exists(), "{stderr}");
    let (out, _, stderr) = run(bin(dir.path()).args(["stats", "--send-concurrency", "0"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--send-concurrency"), "{stderr}");
}

/// The binary pointed at the Data API ledger, with no AWS settings from the test's own environment.
fn data_api_bin(dir: &Path) -> Command {
    let mut c = bin(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            c.env_remove(key);
        }
    }
    c.env("LEDGER", "data-api")
        .env("DB_CLUSTER_ARN", "arn:aws:rds:us-east-1:123456789012:cluster:orders")
        .env("DB_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders")
        .env("DB_NAME", "orders")
        .env("AWS_REGION", "us-east-1")
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("RUST_LOG");
    c
}

/// The lines of stderr besides the one naming the ledger read.
fn error_lines(stderr: &str) -> usize {
    stderr.trim().lines().filter(|l| !l.starts_with("ledger: ")).count()
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn an_unreachable_endpoint_is_one_line_that_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(data_api_bin(dir.path())
        .args(["status", "ORD-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_RDS_DATA", format!("http://127.0.0.1:{}", closed_port())));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(error_lines(&stderr), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot reach the Data API endpoint"), "{stderr}");
    assert!(stderr.contains("AWS_ENDPOINT_URL_RDS_DATA"), "says what to check: {stderr}");
    assert!(!stderr.contains("DispatchFailure") && !stderr.contains('{'), "no SDK debug dump: {stderr}");
}

#[test]
fn missing_credentials_are_one_line_that_says_how_to_provide_them() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(data_api_bin(dir.path()).args(["status", "ORD-1"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(error_lines(&stderr), 1, "one line, no provider warnings: {stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(stderr.contains("AWS_PROFILE"), "says what to do: {stderr}");
    assert!(!stderr.contains("ProviderError") && !stderr.contains('{'), "no SDK debug dump: {stderr}");
}

/// Stand-in for the EC2 instance metadata endpoint off EC2, where nothing answers: it accepts
/// connections and never replies (what a real network cannot be made to do on demand). Returns
/// its URL and the count of connections it was sent.
fn silent_metadata_endpoint() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, count)
}

#[test]
fn without_region_or_credentials_the_metadata_endpoint_is_asked_once_and_no_sdk_debug_output_shows() {
    let dir = tempfile::tempdir().unwrap();
    for missing in ["AWS_REGION", "credentials"] {
        let (endpoint, connections) = silent_metadata_endpoint();
        let mut c = data_api_bin(dir.path());
        c.args(["status", "ORD-1"])
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint);
        if missing == "AWS_REGION" {
            c.env_remove("AWS_REGION").env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test");
        }
        let (out, _, stderr) = run(&mut c);
        assert_eq!(out.status.code(), Some(if missing == "AWS_REGION" { 2 } else { 1 }), "{missing}: {stderr}");
        assert_eq!(error_lines(&stderr), 1, "{missing}: one line: {stderr}");
        assert!(stderr.contains(if missing == "AWS_REGION" { "AWS_REGION" } else { "no AWS credentials" }), "{stderr}");
        assert!(
            !stderr.contains("FailedToLoadToken") && !stderr.contains('{'),
            "{missing}: no SDK debug output: {stderr}"
        );
        let asked = connections.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(asked, 1, "{missing}: the metadata endpoint is asked once, not retried: {stderr}");
    }
}

#[test]
fn an_endpoint_whose_host_name_does_not_resolve_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(data_api_bin(dir.path())
        .args(["status", "ORD-1"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_RDS_DATA", "http://no-such-host.invalid"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(error_lines(&stderr), 1, "one line: {stderr}");
    assert!(stderr.contains("cannot reach the Data API endpoint (its host name does not resolve"), "{stderr}");
    assert!(!stderr.contains("uncategorized"), "{stderr}");
}

#[test]
fn a_bad_value_from_an_environment_variable_is_named_by_the_variable_and_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).arg("config").env("SEND_CONCURRENCY", "abc"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SEND_CONCURRENCY"), "{stderr}");
    assert!(!stderr.contains("--send-concurrency"), "the user never typed the flag: {stderr}");
    assert!(!stderr.contains("abc"), "the rejected value is not echoed: {stderr}");
    let (out, _, stderr) = run(bin(dir.path()).args(["config", "--send-concurrency", "abc"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--send-concurrency"), "a typed flag is named as typed: {stderr}");
}

#[test]
fn status_of_an_order_whose_message_was_invalid_says_where_to_find_it() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    // ORD-1004 has a valid id but no address: invalid, never recorded in the ledger.
    let (out, stdout, stderr) = run(bin(dir.path()).args(["status", "ORD-1004"]));
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("dead-letter queue"), "{stderr}");
    assert!(stderr.contains(r#"filter order_id = "ORD-1004" and outcome = "invalid""#), "the query: {stderr}");
    assert!(!stderr.contains("before it had a valid id"), "{stderr}");
}

/// The delivery loop on the local defaults: after the sample orders are mailed, the sample SES
/// events (as the events queue delivers them) reach `status` and `stats`; a hard bounce makes
/// its order `needs_attention` within that one event.
/// The SES sample `file` as SES would send it for the mail the local run recorded for the order
/// its tag names: its message id becomes that order's recorded one (another message id would be a
/// second mail, docs/design.md, "Duplicates counted from SES's events"). Written into `dir`.
fn sample_for_recorded_mail(dir: &Path, file: &str) -> String {
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap())
            .unwrap();
    let batch = crate::support::for_recorded_mails(sample, |order_id| {
        let (_, json, _) = run(bin(dir).args(["status", order_id, "--json"]));
        let state: serde_json::Value = serde_json::from_str(&json).ok()?;
        state["ses_message_id"].as_str().map(str::to_owned)
    });
    let path = dir.join(Path::new(file).file_name().unwrap());
    std::fs::write(&path, batch.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn ses_event_samples_show_in_status_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    assert!(out.status.success(), "{stderr}");
    let bounce = sample_for_recorded_mail(dir.path(), "events/ses-bounce-permanent.json");
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", &bounce]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), r#"{"batchItemFailures":[]}"#);
    assert!(stderr.contains("1 event: 1 bounced"), "{stderr}");
    assert!(!stderr.contains("kenji@example.jp"), "the bounced address is never logged: {stderr}");

    let (out, status, _) = run(bin(dir.path()).args(["status", "ORD-1002"]));
    assert!(out.status.success());
    assert_eq!(field(&status, "customer_status"), Some("needs_attention"), "{status}");
    assert_eq!(field(&status, "delivery"), Some("bounced"), "{status}");
    assert_eq!(field(&status, "delivery_detail"), Some("Permanent/General 5.1.1"), "{status}");
    let (_, json, _) = run(bin(dir.path()).args(["status", "ORD-1002", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (json["customer_status"].as_str(), json["delivery"]["state"].as_str()),
        (Some("needs_attention"), Some("bounced"))
    );

    for file in ["events/ses-delivery.json", "events/ses-complaint.json", "events/ses-reject.json"] {
        let (out, _, stderr) = run(bin(dir.path()).args(["invoke", &sample_for_recorded_mail(dir.path(), file)]));
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(!stderr.contains("duplicate"), "{file}: the recorded mail's own event: {stderr}");
    }
    // The sample Delivery as it is: a mail whose id is not ORD-1001's recorded one, tagged with
    // ORD-1001: SES accepted a second mail for it.
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", "events/ses-delivery.json"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"DuplicateMailed\":1") && stderr.contains("1 duplicate_mailed"), "{stderr}");
    let (_, status, _) = run(bin(dir.path()).args(["status", "ORD-1001"]));
    assert_eq!(
        field(&status, "duplicate_mails"),
        Some("010001929a1b2c3d-5e6f7a8b-1001-4c2d-9e0f-1a2b3c4d5e6f-000000"),
        "{status}"
    );
    let (_, json, _) = run(bin(dir.path()).args(["stats", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let high = json["delivery"].as_array().unwrap().iter().find(|p| p["priority"] == "high").unwrap().clone();
    let normal = json["delivery"].as_array().unwrap().iter().find(|p| p["priority"] == "normal").unwrap().clone();
    // High: ORD-1002 (bounced) and ORD-1005 (complained). Normal: ORD-1001 (delivered), ORD-1006.
    assert_eq!(
        (high["sent"].as_u64(), high["by_state"]["bounced"].as_u64(), high["by_state"]["complained"].as_u64()),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(high["bounce_rate"].as_f64(), Some(0.5));
    assert_eq!((normal["by_state"]["delivered"].as_u64(), normal["by_state"]["unknown"].as_u64()), (Some(1), Some(1)));
    assert_eq!((normal["duplicates"].as_u64(), high["duplicates"].as_u64()), (Some(1), Some(0)));
    let (_, table, _) = run(bin(dir.path()).arg("stats"));
    assert!(table.contains("bounce_rate"), "{table}");
    let high_row = table.lines().filter(|l| l.starts_with("high")).nth(1).expect("a delivery row for high");
    assert!(high_row.ends_with("50.00%"), "{table}");
}

/// The delivery loop without AWS: the outbox plays SES (a local suppression list bounces, as SES's
/// account suppression list would), writes each mail's events as the events queue would deliver
/// them, and `invoke` on those files brings them to `status` and `stats`.
#[test]
fn the_outbox_simulates_ses_so_the_delivery_loop_runs_without_aws() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("suppression-list.txt"), "kenji@example.jp\n").unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    assert!(out.status.success(), "{stderr}");
    let mut files: Vec<_> =
        std::fs::read_dir(dir.path().join("ses-events")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 4, "one events file per mail: {files:?}");
    for f in &files {
        let (out, stdout, stderr) = run(bin(dir.path()).arg("invoke").arg(f));
        assert!(out.status.success(), "{}: {stderr}", f.display());
        assert_eq!(stdout.trim(), r#"{"batchItemFailures":[]}"#);
        assert!(!stderr.contains("kenji@example.jp") && !stderr.contains("jane.doe@example.com"), "{stderr}");
    }
    let status = |id: &str| {
        let (_, json, _) = run(bin(dir.path()).args(["status", id, "--json"]));
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    };
    let kenji = status("ORD-1002");
    assert_eq!(kenji["customer_status"], "needs_attention", "{kenji}");
    assert_eq!(kenji["delivery"]["state"], "bounced");
    assert_eq!(kenji["delivery"]["detail"], "Permanent/OnAccountSuppressionList 5.1.1");
    let jane = status("ORD-1001");
    assert_eq!(
        (jane["customer_status"].as_str(), jane["delivery"]["state"].as_str()),
        (Some("confirmed"), Some("delivered"))
    );
    assert_eq!(
        jane["delivery"]["send_event"]["message_id"], jane["ses_message_id"],
        "the Send event names the mail: {jane}"
    );
    let (_, json, _) = run(bin(dir.path()).args(["stats", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let high = json["delivery"].as_array().unwrap().iter().find(|p| p["priority"] == "high").unwrap().clone();
    assert_eq!(
        (high["by_state"]["bounced"].as_u64(), high["by_state"]["delivered"].as_u64()),
        (Some(1), Some(1)),
        "{high}"
    );
}

#[test]
fn invoke_without_an_event_file_refuses_and_never_runs_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).arg("invoke"));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("EVENT_FILE"), "names what is missing: {stderr}");
    assert!(stderr.contains("`-`"), "says how to read stdin: {stderr}");
    assert_eq!(outbox_count(dir.path()), 0, "nothing was mailed");
    assert!(!dir.path().join("ledger.db").exists(), "no order was claimed");
}

#[test]
fn retry_and_reconcile_refuse_a_ledger_that_does_not_exist_and_never_create_it() {
    refuses_a_missing_ledger_and_never_creates_it("retry", "reconcile");
}

/// Puts one order of the sample in `failed` with `cause` as its last error, `attempts` times
/// tried and last changed long ago: a stand-in for a mailer that kept failing, written straight
/// into the SQLite ledger because the outbox cannot be made to fail on demand.
fn make_failed(dir: &Path, order_id: &str, attempts: i64, cause: &str) {
    let db = rusqlite::Connection::open(dir.join("ledger.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE order_confirmations SET status = 'failed', attempts = ?2, last_error = ?3, updated_at = 0, \
             sent_at = NULL, ses_message_id = NULL WHERE order_id = ?1",
            rusqlite::params![order_id, attempts, cause],
        )
        .unwrap();
    assert_eq!(changed, 1, "{order_id} is in the ledger");
    // Never mailed: no mail of it known either (see `set_status`).
    db.execute("DELETE FROM ses_mails WHERE order_id = ?1", [order_id]).unwrap();
}

#[test]
fn when_reconcile_gives_up_last_error_keeps_the_cause_beside_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    assert!(out.status.success(), "{stderr}");
    make_failed(dir.path(), "ORD-1001", 12, "SES refused the mail: Permission denied");
    let (out, stdout, stderr) = run(bin(dir.path()).arg("reconcile"));
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["abandoned"], 1, "{report}");
    let (_, status, _) = run(bin(dir.path()).args(["status", "ORD-1001"]));
    let last_error = field(&status, "last_error").unwrap_or_default();
    assert!(last_error.contains("gave up after"), "the verdict: {status}");
    assert!(last_error.contains("Permission denied"), "the cause: {status}");
}

#[test]
fn invoke_exits_1_when_every_order_failed_because_the_ledger_could_not_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(data_api_bin(dir.path())
        .args(["invoke", SAMPLE])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL_RDS_DATA", format!("http://127.0.0.1:{}", closed_port())));
    assert_eq!(out.status.code(), Some(1), "a backend call failed: {stderr}");
    let response: serde_json::Value = serde_json::from_str(&stdout).expect("the response Lambda would return");
    assert_eq!(response["batchItemFailures"].as_array().map(Vec::len), Some(6), "every record comes back: {stdout}");
    assert!(stderr.contains("transient"), "says why: {stderr}");
}

#[test]
fn every_command_that_reads_a_ledger_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    let named = format!("ledger: sqlite:{}", dir.path().join("ledger.db").display());
    assert!(stderr.contains(&named), "invoke: {stderr}");
    for args in [vec!["stats"], vec!["status", "ORD-1001"], vec!["reconcile"]] {
        let (out, stdout, stderr) = run(bin(dir.path()).args(&args));
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(&named), "{args:?}: {stderr}");
        assert!(!stdout.contains("ledger: "), "{args:?}: stdout carries only data: {stdout}");
    }
    let (_, json, _) = run(bin(dir.path()).args(["stats", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ledger"], format!("sqlite:{}", dir.path().join("ledger.db").display()), "{json}");
}

#[test]
fn data_api_settings_without_the_data_api_ledger_are_a_usage_mistake() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    for setting in ["DB_CLUSTER_ARN", "DB_SECRET_ARN", "DB_NAME"] {
        let value = if setting == "DB_NAME" { "orders" } else { "arn:aws:rds:us-east-1:123456789012:cluster:orders" };
        let (out, stdout, stderr) = run(bin(dir.path()).arg("stats").env(setting, value));
        assert_eq!(out.status.code(), Some(2), "{setting}: {stderr}");
        assert!(stdout.is_empty(), "{setting}: {stdout}");
        assert!(stderr.contains(setting) && stderr.contains("LEDGER=data-api"), "{setting}: {stderr}");
    }
}

#[test]
fn a_missing_region_is_one_line_that_names_aws_region() {
    let dir = tempfile::tempdir().unwrap();
    for args in [vec!["status", "ORD-1"], vec!["stats"], vec!["invoke", SAMPLE]] {
        let (out, stdout, stderr) = run(data_api_bin(dir.path())
            .args(&args)
            .env_remove("AWS_REGION")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL_RDS_DATA", format!("http://127.0.0.1:{}", closed_port())));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains("AWS_REGION"), "{args:?}: {stderr}");
        assert!(!stderr.contains('{') && !stderr.contains("Debug"), "{args:?}: no SDK dump: {stderr}");
    }
}

#[test]
fn read_only_commands_work_on_a_ledger_file_they_may_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(bin(dir.path()).args(["invoke", SAMPLE]));
    assert!(out.status.success(), "{stderr}");
    // Root may write any file, so the reader runs as `nobody`: the ledger file and its directory
    // are root's and read-only to it (no -wal or -shm file can be created either).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path().join("ledger.db"), std::fs::Permissions::from_mode(0o444)).unwrap();
    for args in [vec!["stats"], vec!["stats", "--json"], vec!["status", "ORD-1001"]] {
        let c = bin(dir.path());
        let program = c.get_program().to_owned();
        let mut as_nobody = Command::new("setpriv");
        as_nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(program).args(&args);
        for (key, value) in c.get_envs() {
            match value {
                Some(v) => as_nobody.env(key, v),
                None => as_nobody.env_remove(key),
            };
        }
        as_nobody.current_dir(dir.path());
        let (out, stdout, stderr) = run(&mut as_nobody);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stdout.is_empty(), "{args:?}");
        assert!(!stderr.contains("readonly"), "{args:?}: {stderr}");
    }
}

/// Sets one order's status straight in the SQLite ledger (see [`make_failed`] for why).
/// Puts a sent order in `status` as an order that was never mailed: no recorded mail and none
/// known (the record step adds the recorded mail to `ses_mails`, and a retry that finds a mail of
/// its order there records it instead of mailing again).
fn set_status(dir: &Path, order_id: &str, status: &str) {
    let db = rusqlite::Connection::open(dir.join("ledger.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE order_confirmations SET status = ?2, ses_message_id = NULL, sent_at = NULL WHERE order_id = ?1",
            rusqlite::params![order_id, status],
        )
        .unwrap();
    assert_eq!(changed, 1, "{order_id} is in the ledger");
    db.execute("DELETE FROM ses_mails WHERE order_id = ?1", [order_id]).unwrap();
}

#[test]
fn park_never_replaces_another_persons_note_silently_and_retry_says_it_mails_a_parked_order() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    set_status(dir.path(), "ORD-1001", "abandoned");
    let (out, _, stderr) = run(bin(dir.path()).args(["park", "ORD-1001", "--note", "OPS-1 (ana)"]));
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = run(bin(dir.path()).args(["park", "ORD-1001", "--note", "OPS-2 (bo)"]));
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("already parked") && stderr.contains("OPS-1 (ana)"), "{stderr}");
    assert!(stderr.contains("--replace"), "says how to replace it: {stderr}");
    let (_, status, _) = run(bin(dir.path()).args(["status", "ORD-1001"]));
    assert_eq!(field(&status, "parked_note"), Some("OPS-1 (ana)"), "{status}");
    let (out, _, stderr) = run(bin(dir.path()).args(["park", "ORD-1001", "--note", "OPS-2 (bo)", "--replace"]));
    assert!(out.status.success(), "{stderr}");
    let (_, status, _) = run(bin(dir.path()).args(["status", "ORD-1001"]));
    assert_eq!(field(&status, "parked_note"), Some("OPS-2 (bo)"), "{status}");

    let (_, _, stderr) = run(bin(dir.path()).args(["retry", "ORD-1001"]));
    assert!(stderr.contains("parked") && stderr.contains("OPS-2 (bo)"), "retry says it mails a parked order: {stderr}");
}

#[test]
fn park_retry_and_status_of_an_unknown_order_say_it_is_not_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    for args in [vec!["park", "ORD-404", "--note", "OPS-1"], vec!["retry", "ORD-404"]] {
        let (out, stdout, stderr) = run(bin(dir.path()).args(&args));
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("not in the ledger"), "{args:?}: {stderr}");
        assert!(!stderr.contains("is not abandoned"), "{args:?}: {stderr}");
    }
    let (out, stdout, _) = run(bin(dir.path()).args(["status", "ORD-404", "--json"]));
    assert_eq!(out.status.code(), Some(3));
    let answer: serde_json::Value = serde_json::from_str(&stdout).expect("JSON, as the operator request answers");
    assert_eq!((answer["found"].as_bool(), answer["order_id"].as_str()), (Some(false), Some("ORD-404")), "{answer}");
}

#[test]
fn stats_shows_times_in_units_that_fit_and_exact_numbers_in_json() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    // An order first seen a day ago and still unsent: its age is a day.
    let db = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    db.execute(
        "UPDATE order_confirmations SET status = 'failed', sent_at = NULL, \
         first_seen_at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 86400000 WHERE order_id = 'ORD-1001'",
        [],
    )
    .unwrap();
    drop(db);
    let (_, table, _) = run(bin(dir.path()).arg("stats"));
    let cells = |prefix: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {table}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(cells("normal")[7], "24.0h", "a day unsent: {table}");
    let high = cells("high");
    assert!(high[9].ends_with("ms"), "the sample is sent in milliseconds: {table}");
    assert!(!table.contains("0.0s"), "{table}");
    let (_, json, _) = run(bin(dir.path()).args(["stats", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let normal = json["priorities"].as_array().unwrap().iter().find(|p| p["priority"] == "normal").unwrap();
    let age = normal["oldest_unsent_age_seconds"].as_f64().unwrap();
    assert!((86400.0..86500.0).contains(&age), "exact seconds in JSON: {age}");
}

#[test]
fn stats_watch_into_a_pipe_stamps_each_refresh_and_json_is_one_document_per_line() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    for json in [false, true] {
        let mut c = bin(dir.path());
        c.args(["stats", "--watch", "1"]);
        if json {
            c.arg("--json");
        }
        let child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2500));
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if json {
            let docs: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one document per line ({e}): {l}")))
                .collect();
            assert!(docs.len() >= 2, "refreshed at least once: {text}");
            for doc in &docs {
                let at = doc["at"].as_str().unwrap_or_else(|| panic!("no timestamp: {doc}"));
                assert!(
                    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
                    "{at}"
                );
            }
        } else {
            let stamps: Vec<&str> = text.lines().filter(|l| l.starts_with("-- as of ")).collect();
            assert!(stamps.len() >= 2, "every refresh ends with its time: {text}");
            assert_eq!(stamps.len(), text.matches("priority sent_24h  sending").count(), "one per refresh: {text}");
        }
    }
}

/// Runs `invoke -` with `input` on stdin.
fn invoke_stdin(dir: &Path, input: &[u8]) -> (Output, String, String) {
    use std::io::Write;
    let mut child = bin(dir)
        .args(["invoke", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn invalid_utf8_is_the_same_usage_mistake_from_stdin_and_from_a_file_and_a_bom_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let bad = b"{\"operator\": \"stats\xff\"}";
    let file = dir.path().join("bad.json");
    std::fs::write(&file, bad).unwrap();
    let (from_file, _, file_err) = run(bin(dir.path()).args(["invoke", file.to_str().unwrap()]));
    let (from_stdin, _, stdin_err) = invoke_stdin(dir.path(), bad);
    assert_eq!(from_file.status.code(), Some(2), "{file_err}");
    assert_eq!(from_stdin.status.code(), Some(2), "{stdin_err}");
    for stderr in [&file_err, &stdin_err] {
        assert!(stderr.contains("not UTF-8"), "{stderr}");
    }

    run(bin(dir.path()).arg("migrate"));
    let with_bom = dir.path().join("bom.json");
    std::fs::write(&with_bom, b"\xef\xbb\xbf{\"operator\": \"status\", \"order_id\": \"ORD-1\"}").unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", with_bom.to_str().unwrap()]));
    assert!(out.status.success(), "a UTF-8 BOM is not a reason to refuse JSON: {stderr}");
    assert!(stdout.contains("\"found\":false"), "{stdout}");
}

#[test]
fn a_ledger_path_that_is_a_directory_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let flag = format!("sqlite:{}", dir.path().display());
    for args in [
        vec!["stats", "--ledger", &flag],
        vec!["invoke", SAMPLE, "--ledger", &flag],
        vec!["migrate", "--ledger", &flag],
    ] {
        let (out, _, stderr) = run(bin(dir.path()).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("is a directory"), "{args:?}: {stderr}");
        assert!(!stderr.contains("unable to open database file"), "{args:?}: {stderr}");
    }
}

#[test]
fn log_timestamps_have_one_width_and_json_lines_carry_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut widths = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let (_, _, stderr) = invoke_with_debug_logs(dir.path(), SAMPLE, "text");
        for line in stderr.lines().filter(|l| l.starts_with("20")) {
            widths.insert(line.split_whitespace().next().unwrap_or_default().len());
        }
    }
    assert_eq!(widths.len(), 1, "one timestamp width: {widths:?}");
    let (_, _, stderr) = invoke_with_debug_logs(dir.path(), SAMPLE, "json");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("level").is_some())
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    for line in &lines {
        let at = line["timestamp"].as_str().unwrap_or_else(|| panic!("no timestamp: {line}"));
        assert!(time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(), "{at}");
    }
}

#[test]
fn the_readme_says_how_to_put_the_binary_on_path_and_that_line_works() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("export PATH=") && l.contains("target/"))
        .expect("a README line that puts order-confirmation on PATH");
    let out = Command::new("bash")
        .args(["-c", &format!("set -eu\n{line}\norder-confirmation --version")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("order-confirmation "));
}

#[test]
fn migrate_says_which_migrations_ran_and_that_none_were_pending_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).arg("migrate"));
    assert!(out.status.success(), "{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).expect("migrate answers as the operator request");
    let applied = first["applied"].as_array().expect("the migrations applied").clone();
    assert!(applied.iter().any(|v| v == "0001_order_confirmations"), "{first}");
    assert_eq!(first["migrated"], true, "{first}");
    let (out, stdout, stderr) = run(bin(dir.path()).arg("migrate"));
    assert!(out.status.success(), "{stderr}");
    let second: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(second["applied"], serde_json::json!([]), "{second}");
    assert!(stderr.contains("no migration was pending"), "{stderr}");
    assert!(!stderr.contains("migrations applied"), "{stderr}");
}

#[test]
fn commands_that_change_state_answer_with_the_operator_requests_json() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    set_status(dir.path(), "ORD-1001", "abandoned");
    let (out, stdout, stderr) = run(bin(dir.path()).args(["park", "ORD-1001", "--note", "OPS-1"]));
    assert!(out.status.success(), "{stderr}");
    let parked: serde_json::Value = serde_json::from_str(&stdout).expect("park answers JSON");
    assert_eq!((parked["parked"].as_bool(), parked["order"]["parked_note"].as_str()), (Some(true), Some("OPS-1")));
    let (out, stdout, stderr) = run(bin(dir.path()).args(["retry", "ORD-1001"]));
    assert!(out.status.success(), "{stderr}");
    let retried: serde_json::Value = serde_json::from_str(&stdout).expect("retry answers JSON");
    assert_eq!(
        (retried["order_id"].as_str(), retried["released"].as_bool(), retried["sent"].as_bool()),
        (Some("ORD-1001"), Some(true), Some(true)),
        "{retried}"
    );
    assert_eq!(retried["outcome"]["outcome"], "sent", "{retried}");
    let (_, stdout, _) = run(bin(dir.path()).arg("reconcile"));
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("reconcile answers JSON");
    assert!(report["unconfirmed"].is_object(), "{report}");
}

#[test]
fn a_bad_watch_interval_says_what_the_flag_takes() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).arg("migrate"));
    for value in ["0", "1.5", "-3", "soon"] {
        let (out, stdout, stderr) = run(bin(dir.path()).args(["stats", &format!("--watch={value}")]));
        assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
        assert!(stdout.is_empty(), "{value}: {stdout}");
        assert!(
            stderr.contains("--watch") && stderr.contains("whole number of seconds, at least 1"),
            "{value}: {stderr}"
        );
        assert!(!stderr.contains("18446744073709551615") && !stderr.contains("invalid digit"), "{value}: {stderr}");
    }
}

#[test]
fn version_names_the_commit_and_help_lists_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, _) = run(bin(dir.path()).arg("--version"));
    assert!(out.status.success());
    let commit = stdout.split("commit ").nth(1).unwrap_or_else(|| panic!("no commit in --version: {stdout}"));
    let commit: String = commit.chars().take_while(char::is_ascii_hexdigit).collect();
    assert!(commit.len() >= 7, "the commit's hash: {stdout}");
    assert!(stdout.starts_with(&format!("order-confirmation {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
    let (_, help, _) = run(bin(dir.path()).arg("--help"));
    let codes = help.find("Exit codes:").unwrap_or_else(|| panic!("no exit codes in --help: {help}"));
    for code in ["0 ", "1 ", "2 ", "3 "] {
        assert!(help[codes..].lines().any(|l| l.trim_start().starts_with(code)), "exit code {code}in --help: {help}");
    }
}

/// Whether `line` is what `pattern` shows, where each `…` in the pattern stands for any text.
fn shows(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    let (first, rest) = (pieces[0], &pieces[1..]);
    let Some(mut left) = line.strip_prefix(first) else { return false };
    let Some((last, middle)) = rest.split_last() else { return left.is_empty() };
    for piece in middle {
        let Some(at) = left.find(piece) else { return false };
        left = &left[at + piece.len()..];
    }
    left.ends_with(last)
}

/// The lines of the README's fenced block that follows `heading`'s first ```text fence.
fn readme_block(after: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find(after).unwrap_or_else(|| panic!("README has {after}"));
    let fence = start + readme[start..].find("```text\n").unwrap() + "```text\n".len();
    let end = fence + readme[fence..].find("```").unwrap();
    readme[fence..end].lines().map(str::to_owned).collect()
}

/// Checks that the README's lines appear in `transcript`, in order (a line `…` allows anything).
fn assert_readme_shows(readme: &[String], transcript: &str) {
    let mut lines = transcript.lines();
    for expected in readme.iter().filter(|l| l.as_str() != "…") {
        assert!(
            lines.any(|actual| shows(expected, actual)),
            "README line not printed (in this order):\n{expected}\n--- what the commands printed:\n{transcript}"
        );
    }
}

#[test]
fn the_readmes_make_run_walk_through_shows_what_the_commands_print() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("events")).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE);
    std::fs::copy(&sample, dir.path().join(SAMPLE)).unwrap();
    // What `make run` runs, from a fresh checkout's directory on the embedded defaults, with
    // stdout and stderr into one file as a terminal shows them.
    let log = dir.path().join("transcript.txt");
    let invoke = |event: &str, quiet: bool| {
        let mut c = bin(dir.path());
        c.env_remove("LEDGER").env_remove("MAILER").env_remove("RUST_LOG").current_dir(dir.path());
        c.args(["invoke", event]);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        if quiet {
            c.env("RUST_LOG", "warn").stdout(std::process::Stdio::null());
        } else {
            c.stdout(out.try_clone().unwrap());
        }
        assert!(c.stderr(out).status().unwrap().success(), "{event}");
    };
    invoke(SAMPLE, false);
    let mut events: Vec<_> =
        std::fs::read_dir(dir.path().join(".local/ses-events")).unwrap().map(|e| e.unwrap().path()).collect();
    events.sort();
    for event in &events {
        invoke(event.to_str().unwrap(), true);
    }
    assert_readme_shows(&readme_block("## What `make run` prints"), &std::fs::read_to_string(&log).unwrap());

    std::fs::write(&log, "").unwrap();
    invoke(SAMPLE, false);
    assert_readme_shows(
        &readme_block("Run it again and nothing new is mailed"),
        &std::fs::read_to_string(&log).unwrap(),
    );
}

#[test]
fn a_50_mb_body_is_refused_for_its_record_alone_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let sample: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)).unwrap())
            .unwrap();
    let mut event = sample.clone();
    let mut huge = sample["Records"][0].clone();
    huge["messageId"] = "huge-50mb".into();
    huge["body"] =
        format!("{{\"order_id\": \"ORD-9\", \"note\": \"{}\"}}", "secret-x".repeat(50 * 1024 * 1024 / 8)).into();
    event["Records"].as_array_mut().unwrap().push(huge);
    let file = dir.path().join("huge.json");
    std::fs::write(&file, event.to_string()).unwrap();
    let (out, stdout, stderr) = run(bin(dir.path()).args(["invoke", file.to_str().unwrap()]));
    assert!(out.status.success(), "{}", &stderr[..stderr.len().min(2000)]);
    let response: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let failed: Vec<&str> =
        response["batchItemFailures"].as_array().unwrap().iter().filter_map(|f| f["itemIdentifier"].as_str()).collect();
    assert!(failed.contains(&"huge-50mb"), "{stdout}");
    assert_eq!(failed.len(), 3, "the sample's two invalid records and the huge one: {stdout}");
    assert!(stderr.contains("the limit is"), "the rule is named");
    assert!(!stderr.contains("secret-x") && !stdout.contains("secret-x"), "the body is never echoed");
    assert_eq!(outbox_count(dir.path()), 4, "the sample's orders are mailed beside it");
}

#[test]
fn the_operators_park_and_retry_say_not_in_the_ledger_and_never_replace_a_note_silently() {
    let dir = tempfile::tempdir().unwrap();
    run(bin(dir.path()).args(["invoke", SAMPLE]));
    set_status(dir.path(), "ORD-1001", "abandoned");
    let park = |note: &str, replace: bool| {
        let mut request = serde_json::json!({"operator": "park", "order_id": "ORD-1001", "note": note});
        if replace {
            request["replace"] = true.into();
        }
        invoke_stdin(dir.path(), request.to_string().as_bytes())
    };
    let (out, _, stderr) = park("OPS-1 (ana)", false);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = park("OPS-2 (bo)", false);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("already parked") && stderr.contains("OPS-1 (ana)"), "{stderr}");
    let (out, stdout, stderr) = park("OPS-2 (bo)", true);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("OPS-2 (bo)"), "{stdout}");
    for verb in ["park", "retry"] {
        let request = serde_json::json!({"operator": verb, "order_id": "ORD-404", "note": "n"});
        let mut request = request.as_object().unwrap().clone();
        if verb == "retry" {
            request.remove("note");
        }
        let (out, _, stderr) = invoke_stdin(dir.path(), serde_json::Value::Object(request).to_string().as_bytes());
        assert!(!out.status.success(), "{verb}: {stderr}");
        assert!(stderr.contains("not in the ledger") && !stderr.contains("is not abandoned"), "{verb}: {stderr}");
    }
}
