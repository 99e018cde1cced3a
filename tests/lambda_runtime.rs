//! The real Lambda runtime API path: the binary under `cargo lambda watch` (its runtime API
//! emulator), invoked with `cargo lambda invoke` on the files in `events/`, against the Data API
//! emulator and the SES emulator. Needs cargo-lambda from `.venv` (installed by `make test`).

use crate::support;

use std::path::PathBuf;
use std::time::Duration;
use support::services::Services;

fn venv_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin");
    assert!(
        bin.join("cargo-lambda").exists(),
        "{} is missing: `make test` installs cargo-lambda into .venv",
        bin.display()
    );
    bin
}

fn path_with_venv() -> String {
    format!("{}:{}", venv_bin().display(), std::env::var("PATH").unwrap_or_default())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `cargo lambda watch --only-lambda-apis` on loopback (it binds every interface unless told):
/// the runtime API emulator, serving the binary this test run built (so nothing is compiled here).
/// Both processes are killed on drop.
struct Watch {
    _emulator: tokio::process::Child,
    function: Option<tokio::process::Child>,
    port: u16,
    /// The function's output, shown when an assertion fails.
    log: tempfile::NamedTempFile,
}

impl Watch {
    async fn start() -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let emulator = tokio::process::Command::new("cargo")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .env("PATH", path_with_venv())
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .stdout(std::process::Stdio::null())
            .stderr(appender(&log))
            .kill_on_drop(true)
            .spawn()
            .expect("start cargo lambda watch");
        wait_for(port).await;
        Self { _emulator: emulator, function: None, port, log }
    }

    /// Starts the built binary against the emulator's runtime API, as Lambda starts `bootstrap`.
    fn start_function(&mut self, env: &[(String, String)]) {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-confirmation"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{}/.rt", self.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .stdout(appender(&self.log))
            .stderr(appender(&self.log))
            .kill_on_drop(true);
        for (k, v) in env {
            c.env(k, v);
        }
        self.function = Some(c.spawn().expect("start the function"));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// `cargo lambda invoke --data-file`, returning its JSON output.
    async fn invoke(&self, event_file: &str) -> serde_json::Value {
        self.cargo_lambda_invoke(&["--data-file", event_file]).await
    }

    /// `cargo lambda invoke --data-ascii`: the answer, or the function's error as
    /// `{"errorType", "errorMessage"}` (what `aws lambda invoke` writes to its output file).
    async fn invoke_json(&self, payload: serde_json::Value) -> serde_json::Value {
        self.cargo_lambda_invoke(&["--data-ascii", &payload.to_string()]).await
    }

    async fn cargo_lambda_invoke(&self, data: &[&str]) -> serde_json::Value {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("cargo")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1", "--invoke-port"])
                .arg(self.port.to_string())
                .args(["--output-format", "json"])
                .args(data)
                .env("PATH", path_with_venv())
                .output(),
        )
        .await
        .expect("cargo lambda invoke answered")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() && stdout.trim().is_empty() {
            // cargo lambda prints a function error on stderr (the message, boxed in a report).
            // Unwrap the report's box drawing and line breaks into one line.
            let text = String::from_utf8_lossy(&out.stderr).replace(['│', '×'], " ");
            return serde_json::json!({"errorMessage": text.split_whitespace().collect::<Vec<_>>().join(" ")});
        }
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("invoke output is not JSON ({e}): {stdout} {}\n{}", String::from_utf8_lossy(&out.stderr), self.log())
        })
    }
}

/// The log file opened for appending: several writers (the emulator, the function's stdout and
/// stderr) each with their own descriptor, none overwriting the others' lines.
fn appender(log: &tempfile::NamedTempFile) -> std::fs::File {
    std::fs::OpenOptions::new().append(true).open(log.path()).expect("open the log for appending")
}

/// Waits until the runtime API emulator accepts connections.
async fn wait_for(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cargo lambda watch did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_serves_sqs_batches_and_the_schedule_through_the_runtime_api() {
    let s = Services::start().await;
    s.ledger().await; // migrated
    let mut env: Vec<(String, String)> = s.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    // No SQS here: visibility changes fail, and must not change the batch response.
    env.push(("AWS_ENDPOINT_URL_SQS".into(), format!("http://127.0.0.1:{}", free_port())));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let mut watch = Watch::start().await;
    watch.start_function(&env);

    let response = watch.invoke("events/sqs-batch.json").await;
    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": "b9b3c0b5-3a30-4d43-9c7a-0d6a3f5f2a11"},
            {"itemIdentifier": "c3f4e5d6-1111-4a2b-9c3d-4e5f60718293"}
        ]}),
        "{}",
        watch.log()
    );
    let mails = s.sent_mails().await;
    assert_eq!(mails.len(), 4, "the four valid orders were mailed through SES");
    assert!(mails.iter().any(|m| m["subject"] == "Your order ORD-1005 is confirmed"));

    // Redelivered: acknowledged, nothing mailed again.
    let again = watch.invoke("events/sqs-batch.json").await;
    assert_eq!(again, response);
    assert_eq!(s.sent_mails().await.len(), 4);

    // The EventBridge schedule runs reconciliation in the same function.
    let reconcile = watch.invoke("events/schedule-reconcile.json").await;
    assert_eq!(reconcile["found"], 0, "{reconcile}");
    assert_eq!(reconcile["unconfirmed"]["count"], 0);
}

/// The function's JSON lines (stdout and stderr) in the watch log: log lines and EMF documents.
fn json_lines(log: &str) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let values: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let (emf, logs): (Vec<_>, Vec<_>) =
        values.into_iter().filter(|v| v.is_object()).partition(|v| v.get("_aws").is_some());
    (logs.into_iter().filter(|v| v.get("level").is_some()).collect(), emf)
}

/// Powertools' conventions, through the real runtime API: the function's log level wins over
/// RUST_LOG, every line of an invocation names the service, the cold start and the request, the
/// metrics go to the configured namespace with the service dimension, and the first invocation
/// of the execution environment, and only it, counts a ColdStart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_follow_powertools_conventions_and_count_one_cold_start() {
    let s = Services::start().await;
    s.ledger().await;
    let mut env = function_env(&s, "consumer");
    env.extend([
        ("RUST_LOG".to_owned(), "debug".to_owned()),
        ("AWS_LAMBDA_LOG_LEVEL".to_owned(), "WARN".to_owned()),
        ("POWERTOOLS_METRICS_NAMESPACE".to_owned(), "Shop/Orders".to_owned()),
        ("POWERTOOLS_SERVICE_NAME".to_owned(), "shop-confirmations".to_owned()),
    ]);
    let mut watch = Watch::start().await;
    watch.start_function(&env);
    watch.invoke("events/sqs-batch.json").await;
    watch.invoke("events/sqs-batch.json").await;
    let log = watch.log();
    let (lines, emf) = json_lines(&log);

    let chatty: Vec<_> = lines.iter().filter(|l| !["WARN", "ERROR"].contains(&l["level"].as_str().unwrap())).collect();
    assert!(chatty.is_empty(), "AWS_LAMBDA_LOG_LEVEL=WARN wins over RUST_LOG=debug: {chatty:?}");
    assert!(lines.iter().all(|l| l["service"] == "shop-confirmations"), "{log}");
    // Two invalid records per batch, each one warning line.
    let failed: Vec<_> = lines.iter().filter(|l| l["message"] == "record failed").collect();
    assert_eq!(failed.len(), 4, "{log}");
    let request = |l: &serde_json::Value| l["function_request_id"].as_str().unwrap_or_default().to_owned();
    assert!(failed.iter().all(|l| !request(l).is_empty()), "{failed:?}");
    assert_eq!((request(failed[0]), &failed[0]["cold_start"]), (request(failed[1]), &true.into()));
    assert_eq!((request(failed[2]), &failed[2]["cold_start"]), (request(failed[3]), &false.into()));
    assert_ne!(request(failed[0]), request(failed[2]), "each invocation has its own request id");
    // cargo lambda, like Lambda with active tracing, sends each invocation a trace header.
    assert!(failed.iter().all(|l| l["xray_trace_id"].as_str().is_some_and(|t| t.starts_with("Root="))), "{failed:?}");

    let cold: Vec<_> = emf.iter().filter(|d| d.get("ColdStart").is_some()).collect();
    assert_eq!(cold.len(), 1, "one ColdStart per execution environment: {emf:?}");
    assert_eq!(
        cold[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["service", "function_name"]])
    );
    assert_eq!((&cold[0]["function_name"], &cold[0]["service"]), (&"_".into(), &"shop-confirmations".into()));
    assert!(emf.len() > 1, "the batches' metrics: {emf:?}");
    for doc in &emf {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Shop/Orders", "{doc}");
        assert!(directive["Dimensions"][0].as_array().unwrap().contains(&"service".into()), "{doc}");
        assert_eq!(doc["service"], "shop-confirmations", "{doc}");
    }
}

/// The runtime's own lines belong to the invocation too: an event that is not JSON is refused by
/// lambda_runtime before the handler runs, and its error line names the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtimes_own_error_line_carries_the_invocation_keys() {
    let s = Services::start().await;
    s.ledger().await;
    let mut watch = Watch::start().await;
    watch.start_function(&function_env(&s, "consumer"));
    let answer = watch.cargo_lambda_invoke(&["--data-ascii", "{not json"]).await;
    let log = watch.log();
    let (lines, _) = json_lines(&log);
    let refused: Vec<_> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert!(!refused.is_empty(), "{answer} {log}");
    for l in refused {
        assert!(l["function_request_id"].as_str().is_some_and(|id| !id.is_empty()), "{l}");
        assert_eq!((&l["cold_start"], &l["service"]), (&true.into(), &"order-confirmation".into()), "{l}");
    }
}

/// Each SES event type in `events/`, as the events queue delivers it, through the runtime API:
/// after the sample orders were mailed, every event reaches its order's delivery state (by the
/// order-id tag), redelivered and late events change nothing, events for orders the ledger does
/// not hold are acknowledged, and a body that is not an SES event fails only its own record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ses_event_type_reaches_its_order_through_the_runtime_api() {
    use order_confirmation::ledger::CustomerStatus;
    use order_confirmation::ledger::LedgerOps as _;
    use order_confirmation::order::OrderId;
    use order_confirmation::ses_event::DeliveryState;
    let s = Services::start().await;
    let ledger = s.ledger().await;
    let mut env: Vec<(String, String)> = s.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.push(("AWS_ENDPOINT_URL_SQS".into(), format!("http://127.0.0.1:{}", free_port())));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let mut watch = Watch::start().await;
    watch.start_function(&env);
    watch.invoke("events/sqs-batch.json").await;
    assert_eq!(s.sent_mails().await.len(), 4, "{}", watch.log());

    let none = serde_json::json!({"batchItemFailures": []});
    for file in [
        "events/ses-send.json",
        "events/ses-delivery.json",
        "events/ses-delivery-delay.json",
        "events/ses-bounce-transient.json",
        "events/ses-bounce-permanent.json",
        "events/ses-complaint.json",
        "events/ses-reject.json",
        "events/ses-rendering-failure.json",
    ] {
        let batch = for_recorded_mail(&ledger, sample(file)).await;
        assert_eq!(watch.invoke_json(batch).await, none, "{file}: {}", watch.log());
    }
    let state = |id: &'static str| {
        let ledger = ledger.clone();
        async move { ledger.order_state(&OrderId::parse(id).unwrap()).await.unwrap() }
    };
    let expected = [
        ("ORD-1001", DeliveryState::Delivered, CustomerStatus::Confirmed),
        ("ORD-1002", DeliveryState::Bounced, CustomerStatus::NeedsAttention),
        ("ORD-1005", DeliveryState::Complained, CustomerStatus::NeedsAttention),
        ("ORD-1006", DeliveryState::SoftBounced, CustomerStatus::NeedsAttention),
    ];
    for (id, delivery, customer) in expected {
        let st = state(id).await.expect(id);
        assert_eq!((st.delivery.state, st.customer_status), (Some(delivery), customer), "{id}: {st:?}");
    }
    let bounced = state("ORD-1002").await.unwrap();
    assert_eq!(bounced.delivery.detail.as_deref(), Some("Permanent/General 5.1.1"));
    let send = state("ORD-1001").await.unwrap().delivery.send_event.expect("the Send event of ORD-1001");
    assert_eq!(Some(send.message_id), state("ORD-1001").await.unwrap().ses_message_id);
    assert_eq!(send.claim_token.map(|t| t.to_string()).as_deref(), Some("5b0d6f5e-3c1a-4f0e-9a37-2f4b8e6d1c20"));
    assert!(state("ORD-1007").await.is_none() && state("ORD-1008").await.is_none(), "unknown orders stay unknown");

    // Redelivered, and late: a Delivery after the complaint, a DeliveryDelay after the soft bounce.
    for file in ["events/ses-bounce-permanent.json", "events/ses-delivery-delay.json"] {
        assert_eq!(watch.invoke_json(for_recorded_mail(&ledger, sample(file)).await).await, none, "{file}");
    }
    let late =
        watch.invoke_json(for_recorded_mail(&ledger, retarget("events/ses-delivery.json", "ORD-1005")).await).await;
    assert_eq!(late, none);
    for (id, delivery, _) in expected {
        assert_eq!(state(id).await.unwrap().delivery.state, Some(delivery), "{id} after redelivery");
    }

    // A body that is not an SES event fails its own record only; its neighbour is applied.
    let mut batch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("events/ses-delivery.json")).unwrap()).unwrap();
    let mut bad = batch["Records"][0].clone();
    bad["messageId"] = "bad-1".into();
    bad["body"] =
        serde_json::json!({"source": "aws.ses", "detail-type": "Email Bounced", "detail": {"eventType": "Bounce",
        "mail": {"messageId": "x", "timestamp": "2026-11-27T10:00:00Z", "destination": ["jane.doe@example.com"]},
        "bounce": {"bounceType": "jane.doe@example.com"}}})
        .to_string()
        .into();
    batch["Records"].as_array_mut().unwrap().push(bad);
    let answer = watch.invoke_json(batch).await;
    assert_eq!(answer, serde_json::json!({"batchItemFailures": [{"itemIdentifier": "bad-1"}]}));

    let log = watch.log();
    assert!(log.contains("bounce.bounceType must be Permanent, Transient or Undetermined"), "{log}");
    for metric in ["\"Delivered\":", "\"Bounced\":", "\"Complained\":", "\"SoftBounced\":", "\"DeliveryEventUnknown\":"]
    {
        assert!(log.contains(metric), "EMF {metric} missing: {log}");
    }
    assert!(!log.contains("jane.doe@example.com") && !log.contains("kenji@example.jp"), "no address is logged: {log}");
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample(file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap()
}

/// An events batch for the mails this run recorded (`support::for_recorded_mails`), their ids
/// read from the ledger.
async fn for_recorded_mail(
    ledger: &std::sync::Arc<impl order_confirmation::ledger::LedgerOps>,
    batch: serde_json::Value,
) -> serde_json::Value {
    let mut recorded = std::collections::HashMap::new();
    for order_id in support::tagged_orders(&batch) {
        let id = order_confirmation::order::OrderId::parse(&order_id).unwrap();
        if let Some(message_id) = ledger.order_state(&id).await.unwrap().and_then(|st| st.ses_message_id) {
            recorded.insert(order_id, message_id);
        }
    }
    support::for_recorded_mails(batch, |order_id| recorded.get(order_id).cloned())
}

/// An events sample whose mail is re-tagged for another order.
fn retarget(file: &str, order_id: &str) -> serde_json::Value {
    let mut batch = sample(file);
    let record = &mut batch["Records"][0];
    let mut body: serde_json::Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    body["detail"]["mail"]["tags"]["order_id"] = serde_json::json!([order_id]);
    record["body"] = body.to_string().into();
    batch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_setting_fails_the_function_init_with_a_message_naming_it() {
    let mut watch = Watch::start().await;
    // The invocation waits for a runtime, as in Lambda; the function then fails its init.
    let pending = {
        let port = watch.port;
        tokio::spawn(async move {
            tokio::process::Command::new("cargo")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1", "--invoke-port"])
                .arg(port.to_string())
                .args(["--data-file", "events/sqs-batch.json", "--output-format", "json"])
                .env("PATH", path_with_venv())
                .output()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch.start_function(&[("MAILER".to_owned(), "ses".to_owned())]);
    let out = tokio::time::timeout(Duration::from_secs(60), pending).await.expect("invoke answered").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let response: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(response["errorType"], "Runtime.ConfigurationError", "{response}");
    let message = response["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("configuration: LEDGER is not set"), "{message}");
    assert!(watch.log().contains("configuration: LEDGER is not set"), "and it is logged");
}

/// The function's environment against the test's services, as a given FUNCTION_ROLE.
fn function_env(s: &Services, role: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = s.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.push(("AWS_ENDPOINT_URL_SQS".into(), format!("http://127.0.0.1:{}", free_port())));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    env.push(("FUNCTION_ROLE".into(), role.into()));
    // Orders created by the test count as unconfirmed at once.
    env.push(("UNCONFIRMED_GRACE_SECONDS".into(), "0".into()));
    env
}

/// The deployed function answers the operator's verbs through the runtime API
/// (what `aws lambda invoke` reaches), read-only unless the verb says otherwise; the consumer
/// refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_function_answers_operator_requests_through_the_runtime_api() {
    let s = Services::start().await;
    let ledger = s.ledger().await; // migrated
    // One order mailed by the consumer path, one abandoned by automation.
    use order_confirmation::ledger::{ClaimRequest, Ledger, LedgerOps, Outcome, Recording};
    use order_confirmation::order::{OrderId, Priority};
    let body = serde_json::json!({"order_id": "ORD-AB1", "customer_email": "ab1@example.com",
                                  "customer_name": "Ab One", "priority": "high"});
    let order = order_confirmation::decode::decode(&body.to_string()).expect("a valid order").order;
    let request = ClaimRequest {
        order_id: order.order_id.clone(),
        payload_sha256: order.payload_sha256(),
        priority: Priority::High,
        payload: order.canonical_json(),
    };
    let claim = ledger.claim(&[request], Duration::from_secs(60)).await.unwrap();
    let order_confirmation::ledger::Claim::Claimed { token, .. } = claim[0] else { panic!("{claim:?}") };
    let id = OrderId::parse("ORD-AB1").unwrap();
    ledger
        .record(&[Recording {
            order_id: id.clone(),
            token,
            outcome: Outcome::Failed { error: "timeout".into() },
            takeover: false,
        }])
        .await
        .unwrap();
    ledger
        .abandon(std::slice::from_ref(&id), "reconciliation gave up after 10 attempts; needs a person")
        .await
        .unwrap();

    let mut watch = Watch::start().await;
    watch.start_function(&function_env(&s, "operator"));

    let config = watch.invoke_json(serde_json::json!({"operator": "config"})).await;
    assert_eq!(config["function_role"], "operator", "{config}");
    let commit = config["commit"].as_str().unwrap();
    assert!(commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()), "the deployed commit: {commit}");

    let status = watch.invoke_json(serde_json::json!({"operator": "status", "order_id": "ORD-AB1"})).await;
    assert_eq!(
        (status["found"].as_bool(), status["order"]["status"].as_str()),
        (Some(true), Some("abandoned")),
        "{status}"
    );
    let missing = watch.invoke_json(serde_json::json!({"operator": "status", "order_id": "ORD-NONE"})).await;
    assert_eq!(missing["found"], false, "{missing}");

    let stats = watch.invoke_json(serde_json::json!({"operator": "stats"})).await;
    let high = stats["priorities"].as_array().unwrap().iter().find(|p| p["priority"] == "high").unwrap();
    assert_eq!(high["by_status"]["abandoned"], 1, "{stats}");

    // Reconcile counts the abandoned order as unconfirmed until a person parks it.
    let before = watch.invoke_json(serde_json::json!({"operator": "reconcile"})).await;
    assert_eq!(before["unconfirmed"]["count"], 1, "{before}");
    let parked =
        watch.invoke_json(serde_json::json!({"operator": "park", "order_id": "ORD-AB1", "note": "OPS-12 alice"})).await;
    assert_eq!(
        (parked["parked"].as_bool(), parked["order"]["parked_note"].as_str()),
        (Some(true), Some("OPS-12 alice")),
        "{parked}"
    );
    let after = watch.invoke_json(serde_json::json!({"operator": "reconcile"})).await;
    assert_eq!(after["unconfirmed"]["count"], 0, "a parked order no longer pages: {after}");

    // Retry releases it and mails it now from the stored payload.
    assert_eq!(s.sent_mails().await.len(), 0);
    let retried = watch.invoke_json(serde_json::json!({"operator": "retry", "order_id": "ORD-AB1"})).await;
    assert_eq!((retried["released"].as_bool(), retried["sent"].as_bool()), (Some(true), Some(true)), "{retried}");
    assert_eq!(s.sent_mails().await.len(), 1);
    let again = watch.invoke_json(serde_json::json!({"operator": "retry", "order_id": "ORD-AB1"})).await;
    assert!(again["errorMessage"].as_str().unwrap().contains("is not abandoned or rejected"), "{again}");

    // SES then reports a hard bounce for that mail: the operator's status and stats show it.
    let batch = for_recorded_mail(&ledger, retarget("events/ses-bounce-permanent.json", "ORD-AB1")).await;
    let bounce = order_confirmation::ses_event::DeliveryEvent::parse(batch["Records"][0]["body"].as_str().unwrap())
        .expect("the sample parses");
    ledger.apply_delivery_events(&[bounce]).await.unwrap();
    let status = watch.invoke_json(serde_json::json!({"operator": "status", "order_id": "ORD-AB1"})).await;
    assert_eq!(
        (status["order"]["customer_status"].as_str(), status["order"]["delivery"]["state"].as_str()),
        (Some("needs_attention"), Some("bounced")),
        "{status}"
    );
    let stats = watch.invoke_json(serde_json::json!({"operator": "stats"})).await;
    let high = stats["delivery"].as_array().unwrap().iter().find(|p| p["priority"] == "high").unwrap();
    assert_eq!((high["by_state"]["bounced"].as_u64(), high["bounce_rate"].as_f64()), (Some(1), Some(1.0)), "{stats}");

    let migrated = watch.invoke_json(serde_json::json!({"operator": "migrate"})).await;
    assert_eq!(migrated["migrated"], true, "{migrated}");

    // A bad request is refused with the rule, without echoing the value.
    let bad = watch.invoke_json(serde_json::json!({"operator": "drop-everything"})).await;
    let message = bad["errorMessage"].as_str().unwrap();
    assert!(message.contains("operator: must be one of stats, status"), "{bad}");
    assert!(!message.contains("drop-everything") && !watch.log().contains("drop-everything"), "{bad}");
    // SQS batches are the consumer's.
    let batch = watch.invoke("events/sqs-batch.json").await;
    assert!(batch["errorMessage"].as_str().unwrap().contains("go to the consumer function"), "{batch}");
    assert_eq!(s.sent_mails().await.len(), 1, "the operator function mailed nothing from the batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_function_refuses_operator_requests() {
    let s = Services::start().await;
    s.ledger().await;
    let mut watch = Watch::start().await;
    watch.start_function(&function_env(&s, "consumer"));
    let refused = watch.invoke_json(serde_json::json!({"operator": "retry", "order_id": "ORD-1"})).await;
    let message = refused["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("answered by the operator function"), "{refused}");
}

/// A one-shot HTTP server standing in for CloudFormation's pre-signed ResponseURL: returns the
/// method and body of the first request it gets.
async fn response_url() -> (String, tokio::task::JoinHandle<(String, serde_json::Value)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cfn-response?X-Amz-Signature=test", listener.local_addr().unwrap());
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                    let method = head.split_whitespace().next().unwrap().to_owned();
                    return (method, serde_json::from_str(&body[..len]).unwrap());
                }
            }
            assert!(n > 0, "connection closed early: {text}");
        }
    });
    (url, handle)
}

fn cfn_request(kind: &str, url: &str) -> serde_json::Value {
    serde_json::json!({
        "RequestType": kind, "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/order-confirmation/guid",
        "RequestId": format!("req-{kind}"), "LogicalResourceId": "LedgerSchema",
        "ResourceType": "Custom::LedgerSchema",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:order-confirmation-operator",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:…", "CodeVersion": "1"}
    })
}

/// The schema is part of the deploy. CloudFormation's custom-resource request
/// migrates a fresh database, answers SUCCESS with the deployed commit on the pre-signed URL, and
/// a failed migration answers FAILED (the deploy rolls back) instead of leaving CloudFormation
/// waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_custom_resource_migrates_and_answers_cloudformation() {
    let s = Services::start().await; // a fresh database: no schema yet
    let mut watch = Watch::start().await;
    watch.start_function(&function_env(&s, "operator"));

    let (url, answer) = response_url().await;
    watch.invoke_json(cfn_request("Create", &url)).await;
    let (method, body) = answer.await.unwrap();
    assert_eq!(method, "PUT");
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(
        (body["RequestId"].as_str(), body["LogicalResourceId"].as_str()),
        (Some("req-Create"), Some("LedgerSchema"))
    );
    assert_eq!(body["Data"]["Commit"].as_str().map(str::len), Some(40), "{body}");
    let status = watch.invoke_json(serde_json::json!({"operator": "status", "order_id": "ORD-1"})).await;
    assert_eq!(status["found"], false, "the ledger table exists now: {status}");

    // Applied again on the next deploy: idempotent.
    let (url, answer) = response_url().await;
    watch.invoke_json(cfn_request("Update", &url)).await;
    assert_eq!(answer.await.unwrap().1["Status"], "SUCCESS");

    // The database is unreachable during the deploy (every Data API request fails, past the SDK's
    // retries): FAILED with the reason, so CloudFormation rolls back instead of waiting an hour.
    s.data_api_faults(serde_json::json!({"fail_next": 1000})).await;
    let (url, answer) = response_url().await;
    watch.invoke_json(cfn_request("Update", &url)).await;
    let failed = answer.await.unwrap().1;
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    assert!(failed["Reason"].as_str().unwrap().contains("migrate failed"), "{failed}");
    s.data_api_faults(serde_json::json!({"fail_next": 0})).await;

    // Deleting the stack leaves the ledger alone.
    let (url, answer) = response_url().await;
    watch.invoke_json(cfn_request("Delete", &url)).await;
    assert_eq!(answer.await.unwrap().1["Status"], "SUCCESS");
    let (client, conn) = tokio_postgres::connect(&s.database_url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("SELECT 1 FROM order_confirmations LIMIT 1").await.expect("the table is still there");
}
