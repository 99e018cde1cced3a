//! The real local services, started per test on free ports and stopped on drop: a database of its
//! own on the throw-away PostgreSQL (`scripts/with-postgres` exports `DATABASE_URL`), the
//! project's Data API emulator in front of it, `aws-ses-v2-local` (npm, installed by the
//! Makefile), and an HTTP fault injector in front of SES for the faults the emulator cannot
//! produce. The real AWS SDK clients talk to all of them over HTTP.
#![allow(dead_code)]

use super::faults::FaultProxy;
use aws_config::{BehaviorVersion, SdkConfig};
use order_confirmation::ledger::LedgerOps;
use order_confirmation::ledger::data_api::{DataApiLedger, DataApiTarget, Limits};
use order_confirmation::mailer::ses::SesMailer;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const CLUSTER_ARN: &str = "arn:aws:rds:us-east-1:123456789012:cluster:orders";
pub const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-db-AbCdEf";
pub const SENDER: &str = "orders@shop.example.com";

/// A fresh database on the test run's PostgreSQL. Returns (name, URL).
pub async fn fresh_database() -> (String, String) {
    let base = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `make test` (or `scripts/with-postgres cargo nextest run`), \
         which starts a throw-away PostgreSQL",
    );
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("connect to DATABASE_URL");
    tokio::spawn(conn);
    let name = format!("oc_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("DATABASE_URL ends with /<database>");
    (name.clone(), format!("{prefix}/{name}"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// `aws-ses-v2-local` as a child process; killed on drop.
pub struct SesLocal {
    child: tokio::process::Child,
    pub url: String,
}

impl SesLocal {
    pub async fn start() -> Self {
        Self::start_with_account(None).await
    }

    /// With `account`, the emulator answers `GetAccount` (GET /v2/email/account) with it: the
    /// whole GetAccount response, which it checks against SES v2's shape (AWS_SES_ACCOUNT).
    /// Without, it answers 400 BadRequestException, as the tests of the other paths expect.
    pub async fn start_with_account(account: Option<&serde_json::Value>) -> Self {
        Self::start_first_on(free_port(), account).await
    }

    /// [`Self::start_with_account`] told to use `port` first: a test can hand it a taken one.
    pub async fn start_first_on(port: u16, account: Option<&serde_json::Value>) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cli = root.join("node_modules/aws-ses-v2-local/dist/cli.js");
        assert!(cli.exists(), "{} is missing: `make test` installs it (npm ci)", cli.display());
        let command = |port: u16| {
            let mut c = tokio::process::Command::new("node");
            c.arg(&cli).args(["--host", "127.0.0.1", "--port", &port.to_string()]);
            c.envs(account.map(|a| ("AWS_SES_ACCOUNT", a.to_string())));
            c
        };
        let healthy = async |url: &str| http_get(&format!("{url}/health-check")).await.is_ok_and(|(s, _)| s == 200);
        let (child, url) = start_emulator("aws-ses-v2-local", port, command, healthy).await;
        Self { child, url }
    }
}

/// Starts a local emulator as a child process on `first_port`, and again on a fresh free port if
/// it exits before `ready` (another process took the port between choosing and binding it, as a
/// neighbouring test can). Each start gets 30 s, for a loaded test run; every probe 1 s, so a port
/// held by something that never answers cannot hang it. Returns the child, killed on drop, and
/// its URL; fails with what the emulator printed.
pub async fn start_emulator(
    name: &str,
    first_port: u16,
    command: impl Fn(u16) -> tokio::process::Command,
    ready: impl AsyncFn(&str) -> bool,
) -> (tokio::process::Child, String) {
    let mut port = first_port;
    let mut printed = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let stderr = tempfile::NamedTempFile::new().expect("a file for the emulator's stderr");
        let mut child = command(port)
            .stdout(std::process::Stdio::null())
            .stderr(stderr.reopen().expect("reopen the emulator's stderr file"))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + START_WAIT;
        let outcome = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(stderr.path()).unwrap_or_default();
                break format!("exited ({status}) on port {port}: {}", said.trim());
            }
            // An answer counts only while our child still runs: not a neighbour's on the port.
            let answered = tokio::time::timeout(Duration::from_secs(1), ready(&url)).await.unwrap_or(false);
            if answered && matches!(child.try_wait(), Ok(None)) {
                return (child, url);
            }
            if tokio::time::Instant::now() >= deadline {
                break format!("no answer on {url} within {START_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        printed.push(outcome);
        port = free_port();
    }
    panic!("{name} did not come up in {START_ATTEMPTS} attempts: {}", printed.join(" | "));
}

const START_ATTEMPTS: usize = 3;
const START_WAIT: Duration = Duration::from_secs(30);

/// A plain HTTP request with hyper (no SDK): status and body.
pub async fn http_request(method: &str, url: &str, body: Option<String>) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

pub async fn http_get(url: &str) -> Result<(u16, String), String> {
    http_request("GET", url, None).await
}

/// Everything a production-backend test needs.
pub struct Services {
    pub database: String,
    pub database_url: String,
    pub data_api: rds_data_local::Server,
    pub ses: SesLocal,
    pub ses_proxy: FaultProxy,
}

impl Services {
    pub async fn start() -> Self {
        Self::start_with_ses_account(None).await
    }

    /// As [`Services::start`], with an SES emulator that answers `GetAccount` with `account`.
    pub async fn start_with_ses_account(account: Option<&serde_json::Value>) -> Self {
        let (database, database_url) = fresh_database().await;
        let data_api = rds_data_local::spawn(rds_data_local::Config::new(database_url.clone()))
            .await
            .expect("start rds-data-local");
        let ses = SesLocal::start_with_account(account).await;
        let ses_proxy = FaultProxy::start(&ses.url).await;
        Self { database, database_url, data_api, ses, ses_proxy }
    }

    pub fn data_api_url(&self) -> String {
        self.data_api.endpoint_url()
    }

    /// SES as the service sees it: through the fault injector.
    pub fn ses_url(&self) -> String {
        self.ses_proxy.url()
    }

    async fn sdk(&self, endpoint: String) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sesv2::config::Credentials::new("test", "test", None, None, "tests"))
            .endpoint_url(endpoint)
            .load()
            .await
    }

    /// The production Data API ledger, built by the production client builder, migrated.
    pub async fn ledger(&self) -> Arc<DataApiLedger> {
        self.ledger_at(self.data_api_url(), Limits::default()).await
    }

    /// The same ledger reaching the Data API at `endpoint` (a fault proxy in front of it) and
    /// splitting its requests by `limits`.
    pub async fn ledger_at(&self, endpoint: String, limits: Limits) -> Arc<DataApiLedger> {
        let client = order_confirmation::aws::rds_data_client(&self.sdk(endpoint).await);
        let target = DataApiTarget {
            cluster_arn: CLUSTER_ARN.into(),
            secret_arn: SECRET_ARN.into(),
            database: self.database.clone(),
        };
        let ledger = Arc::new(DataApiLedger::with_limits(client, target, limits));
        ledger.migrate().await.expect("migrate through the Data API");
        ledger
    }

    pub async fn mailer(&self) -> Arc<SesMailer> {
        let client = order_confirmation::aws::sesv2_client(
            &self.sdk(self.ses_url()).await,
            std::time::Duration::from_secs(15),
            false,
        );
        Arc::new(SesMailer::new(client, SENDER, Some("order-confirmations".into())))
    }

    /// The mailer as a rate-limited instance builds it: SES's throttling answers are not retried
    /// by the SDK but returned to the send-rate limiter.
    pub async fn rate_limited_mailer(&self) -> Arc<SesMailer> {
        let client = order_confirmation::aws::sesv2_client(
            &self.sdk(self.ses_url()).await,
            std::time::Duration::from_secs(15),
            true,
        );
        Arc::new(SesMailer::new(client, SENDER, Some("order-confirmations".into())))
    }

    /// Data API requests by operation, counted by the emulator.
    pub async fn data_api_stats(&self) -> serde_json::Value {
        let (_, body) = http_get(&format!("{}/_stats", self.data_api_url())).await.expect("stats");
        serde_json::from_str(&body).expect("stats JSON")
    }

    pub async fn reset_data_api_stats(&self) {
        http_request("POST", &format!("{}/_stats/reset", self.data_api_url()), None).await.expect("reset stats");
    }

    pub async fn data_api_faults(&self, faults: serde_json::Value) {
        let (status, body) =
            http_request("POST", &format!("{}/_faults", self.data_api_url()), Some(faults.to_string()))
                .await
                .expect("faults");
        assert!(status < 300, "setting faults failed: {body}");
    }

    /// Mails accepted by the SES emulator.
    pub async fn sent_mails(&self) -> Vec<serde_json::Value> {
        let (_, body) = http_get(&format!("{}/store", self.ses.url)).await.expect("SES store");
        let v: serde_json::Value = serde_json::from_str(&body).expect("store JSON");
        v["emails"].as_array().cloned().unwrap_or_default()
    }

    pub async fn mails_to(&self, address: &str) -> usize {
        self.sent_mails().await.iter().filter(|m| m["destination"]["to"][0] == address).count()
    }

    /// Environment for a child process using the production backends against these services.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LEDGER", "data-api".into()),
            ("MAILER", "ses".into()),
            ("DB_CLUSTER_ARN", CLUSTER_ARN.into()),
            ("DB_SECRET_ARN", SECRET_ARN.into()),
            ("DB_NAME", self.database.clone()),
            ("SENDER_ADDRESS", SENDER.into()),
            ("AWS_ENDPOINT_URL_RDS_DATA", self.data_api_url()),
            ("AWS_ENDPOINT_URL_SESV2", self.ses_url()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

#[tokio::test]
async fn the_ses_emulator_moves_to_a_free_port_when_its_chosen_port_is_taken_meanwhile() {
    // Another process holds the port the emulator was told to use, as when a neighbouring test
    // binds it between `free_port` choosing it and node starting.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to hold");
    let port = taken.local_addr().expect("held port").port();
    let ses = SesLocal::start_first_on(port, None).await;
    assert_ne!(ses.url, format!("http://127.0.0.1:{port}"), "it cannot be on the taken port");
    let (status, _) = http_get(&format!("{}/health-check", ses.url)).await.expect("the emulator answers");
    assert_eq!(status, 200);
}
