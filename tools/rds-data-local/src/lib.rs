//! A local AWS RDS Data API endpoint in front of a real PostgreSQL.
//!
//! It speaks the restJson1 protocol the AWS SDKs use for the `rds-data` service
//! (`POST /Execute`, `/BatchExecute`, `/BeginTransaction`, `/CommitTransaction`,
//! `/RollbackTransaction`), maps values and errors the way Aurora PostgreSQL's Data API does,
//! and adds test controls: fault injection (`/_faults`) and request counts (`/_stats`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let server = rds_data_local::spawn(rds_data_local::Config::new("postgres://postgres@127.0.0.1/postgres")).await?;
//! // Point the SDK at server.endpoint_url() (AWS_ENDPOINT_URL_RDS_DATA), any credentials.
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod bind;
pub mod cli;
pub mod decode;
pub mod error;
pub mod service;
pub mod sqlparse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::service::{Db, input};

/// Start-up settings. `Config::new` gives the real service's limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// `postgres://user[:password]@host:port/dbname`; `dbname` is the default `database`.
    pub database_url: String,
    /// Connections per database (each open transaction holds one).
    pub pool_size: usize,
    /// A call running longer answers StatementTimeoutException (AWS: 45 seconds).
    pub statement_timeout: Duration,
    /// Idle transactions are rolled back after this (AWS: 3 minutes).
    pub transaction_timeout: Duration,
    /// ExecuteStatement responses larger than this fail (AWS: 1 MiB).
    pub max_response_bytes: usize,
    /// A returned row whose values take more than this fails the call (AWS: 64 KB per row).
    pub max_row_bytes: usize,
    /// Requests larger than this, headers and JSON included, are refused unprocessed (AWS: 4 MiB).
    pub max_request_bytes: usize,
    /// `formattedRecords` larger than this fail (AWS: 10 MB).
    pub max_formatted_records_bytes: usize,
    /// Faults active from the start.
    pub faults: Faults,
}

impl Config {
    pub fn new(database_url: impl Into<String>) -> Config {
        Config {
            database_url: database_url.into(),
            pool_size: 10,
            statement_timeout: Duration::from_secs(45),
            transaction_timeout: Duration::from_secs(180),
            max_response_bytes: 1024 * 1024,
            max_row_bytes: 64 * 1024,
            max_request_bytes: 4 * 1024 * 1024,
            max_formatted_records_bytes: 10 * 1024 * 1024,
            faults: Faults::default(),
        }
    }
}

/// Fault injection settings, as accepted by `POST /_faults` (every member optional there;
/// members left out keep their current value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every Data API request before it is handled.
    pub latency_ms: u64,
    /// Probability (0.0 to 1.0) that a request answers a retryable 5xx error
    /// (InternalServerErrorException or ServiceUnavailableError, chosen at random).
    pub error_rate: f64,
    /// For this long from now, every request answers DatabaseResumingException.
    pub resuming_for_ms: u64,
    /// The next N requests answer InternalServerErrorException (deterministic retries).
    pub fail_next: u64,
}

#[derive(Debug, Default)]
struct FaultState {
    latency_ms: u64,
    error_rate: f64,
    resuming_until: Option<Instant>,
    fail_next: u64,
}

impl FaultState {
    fn set(&mut self, f: &Faults) {
        self.latency_ms = f.latency_ms;
        self.error_rate = f.error_rate.clamp(0.0, 1.0);
        self.resuming_until =
            (f.resuming_for_ms > 0).then(|| Instant::now() + Duration::from_millis(f.resuming_for_ms));
        self.fail_next = f.fail_next;
    }

    fn snapshot(&self) -> Value {
        let remaining =
            self.resuming_until.map(|u| u.saturating_duration_since(Instant::now()).as_millis() as u64).unwrap_or(0);
        json!({
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "resuming_for_ms": remaining,
            "fail_next": self.fail_next,
        })
    }
}

/// The operation names used in `/_stats`.
pub const OPERATIONS: [&str; 6] = [
    "ExecuteStatement",
    "BatchExecuteStatement",
    "BeginTransaction",
    "CommitTransaction",
    "RollbackTransaction",
    "ExecuteSql",
];

struct AppInner {
    db: Db,
    faults: Mutex<FaultState>,
    stats: Mutex<BTreeMap<&'static str, u64>>,
}

type AppState = Arc<AppInner>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Critical sections only copy plain values, so a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Data API's operations: path, and the operation name `/_stats` counts them under.
const ROUTES: [(&str, &str); 6] = [
    ("/Execute", "ExecuteStatement"),
    ("/BatchExecute", "BatchExecuteStatement"),
    ("/BeginTransaction", "BeginTransaction"),
    ("/CommitTransaction", "CommitTransaction"),
    ("/RollbackTransaction", "RollbackTransaction"),
    ("/ExecuteSql", "ExecuteSql"),
];

fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, op) in ROUTES {
        router =
            router.route(path, post(move |s: State<AppState>, h: HeaderMap, b: Bytes| data_api(s, h, b, path, op)));
    }
    router
        .route("/_faults", get(get_faults).post(set_faults).delete(clear_faults))
        .route("/_stats", get(get_stats).delete(reset_stats))
        .route("/_stats/reset", post(reset_stats))
        .fallback(|| async { ApiError::UnknownOperation("Unknown operation".into()) })
        // The service accepts requests up to 4 MiB; the check is ours (`Config::max_request_bytes`)
        // so the error has the service's shape instead of a bare 413.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

/// The size of a request as the service counts it for its 4 MiB limit: "the HTTP headers and the
/// JSON notation" (BatchExecuteStatement reference). Request line and header lines are counted
/// as they travel (`name: value` plus CRLF), the body as sent.
fn request_bytes(headers: &HeaderMap, body: &[u8], path: &str) -> usize {
    let request_line = "POST  HTTP/1.1\r\n".len() + path.len();
    let header_lines: usize = headers.iter().map(|(k, v)| k.as_str().len() + 2 + v.len() + 2).sum();
    request_line + header_lines + 2 + body.len()
}

async fn data_api(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
    path: &'static str,
    op: &'static str,
) -> Response {
    *lock(&state.stats).entry(op).or_insert(0) += 1;
    let started = Instant::now();
    let size = request_bytes(&headers, &body, path);
    let result = handle(&state, op, &body, size).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(v) => {
            tracing::info!(op, elapsed_ms, "ok");
            (StatusCode::OK, axum::Json(v)).into_response()
        }
        Err(e) => {
            tracing::info!(op, elapsed_ms, error = %e, "error");
            e.into_response()
        }
    }
}

async fn apply_faults(state: &AppState, arn: Option<&str>) -> Result<(), ApiError> {
    let latency = lock(&state.faults).latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut f = lock(&state.faults);
    if let Some(until) = f.resuming_until {
        if Instant::now() < until {
            return Err(ApiError::DatabaseResuming(format!(
                "The Aurora DB instance {} is resuming after being auto-paused. Please wait a \
                 few seconds and try again.",
                arn.unwrap_or("(unknown)")
            )));
        }
        f.resuming_until = None;
    }
    if f.fail_next > 0 {
        f.fail_next -= 1;
        return Err(ApiError::InternalServerError);
    }
    if f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
        return Err(if rand::random::<bool>() { ApiError::InternalServerError } else { ApiError::ServiceUnavailable });
    }
    Ok(())
}

async fn handle(state: &AppState, op: &'static str, body: &[u8], request_bytes: usize) -> Result<Value, ApiError> {
    let parsed: Result<Value, _> = serde_json::from_slice(if body.is_empty() { b"{}" } else { body });
    let arn = parsed.as_ref().ok().and_then(|v| v.get("resourceArn")).and_then(Value::as_str).map(str::to_owned);
    apply_faults(state, arn.as_deref()).await?;
    let limit = state.db.config.max_request_bytes;
    if request_bytes > limit {
        return Err(ApiError::BadRequest(format!(
            "Request size {request_bytes} bytes exceeds the Data API's limit of {limit} bytes (headers and JSON included)"
        )));
    }
    let v = parsed.map_err(|e| ApiError::Serialization(format!("Malformed request body: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(ApiError::Serialization("Request body must be a JSON object".into()));
    };
    let db = &state.db;
    match op {
        "ExecuteStatement" => {
            let mut inp = input::execute(&obj)?;
            inp.transaction_id = inp.transaction_id.filter(|t| !t.is_empty());
            db.execute(inp).await
        }
        "BatchExecuteStatement" => {
            let mut inp = input::batch(&obj)?;
            inp.transaction_id = inp.transaction_id.filter(|t| !t.is_empty());
            db.batch_execute(inp).await
        }
        "BeginTransaction" => {
            input::common(&obj)?;
            db.begin(input::optional_str(&obj, "database")?.as_deref()).await
        }
        "CommitTransaction" => {
            input::common(&obj)?;
            db.commit(&input::required_str(&obj, "transactionId")?).await
        }
        "RollbackTransaction" => {
            input::common(&obj)?;
            db.rollback(&input::required_str(&obj, "transactionId")?).await
        }
        _ => Err(ApiError::BadRequest("ExecuteSql is deprecated and not supported; use ExecuteStatement".into())),
    }
}

async fn get_faults(State(state): State<AppState>) -> Response {
    axum::Json(lock(&state.faults).snapshot()).into_response()
}

/// Partial update: members absent from the body keep their value.
async fn set_faults(State(state): State<AppState>, body: Bytes) -> Response {
    let parsed: Result<Map<String, Value>, _> = serde_json::from_slice(&body);
    let Ok(obj) = parsed else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"message": "body must be a JSON object"}))).into_response();
    };
    let mut f = lock(&state.faults);
    let num = |k: &str| obj.get(k).and_then(Value::as_u64);
    if let Some(v) = num("latency_ms") {
        f.latency_ms = v;
    }
    if let Some(v) = obj.get("error_rate").and_then(Value::as_f64) {
        f.error_rate = v.clamp(0.0, 1.0);
    }
    if let Some(v) = num("resuming_for_ms") {
        f.resuming_until = (v > 0).then(|| Instant::now() + Duration::from_millis(v));
    }
    if let Some(v) = num("fail_next") {
        f.fail_next = v;
    }
    axum::Json(f.snapshot()).into_response()
}

async fn clear_faults(State(state): State<AppState>) -> Response {
    let mut f = lock(&state.faults);
    *f = FaultState::default();
    axum::Json(f.snapshot()).into_response()
}

fn stats_json(stats: &BTreeMap<&'static str, u64>) -> Value {
    let mut m = Map::new();
    for op in OPERATIONS {
        m.insert(op.into(), json!(stats.get(op).copied().unwrap_or(0)));
    }
    Value::Object(m)
}

async fn get_stats(State(state): State<AppState>) -> Response {
    axum::Json(stats_json(&lock(&state.stats))).into_response()
}

async fn reset_stats(State(state): State<AppState>) -> Response {
    let mut s = lock(&state.stats);
    s.clear();
    axum::Json(stats_json(&s)).into_response()
}

fn build_state(config: Config) -> anyhow::Result<AppState> {
    let mut faults = FaultState::default();
    faults.set(&config.faults);
    Ok(Arc::new(AppInner { db: Db::new(config)?, faults: Mutex::new(faults), stats: Mutex::new(BTreeMap::new()) }))
}

/// Serves the Data API on `listener` until `shutdown` resolves.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(config)?;
    let reaper_state = state.clone();
    let reaper = tokio::spawn(async move {
        let tick =
            (reaper_state.db.config.transaction_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            reaper_state.db.expire_idle_transactions().await;
        }
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "rds-data-local listening");
    let res = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await;
    reaper.abort();
    res.map_err(Into::into)
}

/// Serves the Data API on `listener` forever (or until an I/O error).
pub async fn serve(listener: TcpListener, config: Config) -> anyhow::Result<()> {
    serve_with_shutdown(listener, config, std::future::pending()).await
}

/// A server running in the background of the current tokio runtime.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// The bound address (use it with `http://`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for the SDK's `endpoint_url` / `AWS_ENDPOINT_URL_RDS_DATA`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, waits for in-flight ones, and returns the serve result.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server dropped without shutdown() must not outlive its test.
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Starts a server on `listener` in the background.
pub async fn spawn_on(listener: TcpListener, config: Config) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    // Fail here, not in the background task, on a bad URL.
    let _: tokio_postgres::Config =
        config.database_url.parse().map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(serve_with_shutdown(listener, config, async move {
        let _ = rx.await;
    }));
    Ok(Server { addr, shutdown: Some(tx), handle: Some(handle) })
}

/// Starts a server on `127.0.0.1:0` (a free port) in the background.
pub async fn spawn(config: Config) -> anyhow::Result<Server> {
    spawn_on(TcpListener::bind("127.0.0.1:0").await?, config).await
}
