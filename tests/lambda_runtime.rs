//! The real Lambda runtime API path: the binary under `cargo lambda watch` (its runtime API
//! emulator), invoked with `cargo lambda invoke` on the files in `events/`, against the Data API
//! emulator and the SES emulator. Needs cargo-lambda from `.venv` (installed by `make test`).

mod support;

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
            .stderr(log.reopen().unwrap())
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
            .stdout(self.log.reopen().unwrap())
            .stderr(self.log.reopen().unwrap())
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
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new("cargo")
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["lambda", "invoke", "_", "--invoke-address", "127.0.0.1", "--invoke-port"])
                .arg(self.port.to_string())
                .args(["--data-file", event_file, "--output-format", "json"])
                .env("PATH", path_with_venv())
                .output(),
        )
        .await
        .expect("cargo lambda invoke answered")
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("invoke output is not JSON ({e}): {stdout} {}\n{}", String::from_utf8_lossy(&out.stderr), self.log())
        })
    }
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
