//! The five Data API operations against PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use futures_util::{StreamExt, pin_mut};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use crate::Config;
use crate::bind::{Bind, NamedBind, parse_parameters};
use crate::decode::{self, Cell, ResultOptions, TableColumnInfo};
use crate::error::ApiError;
use crate::sqlparse::{Rewritten, rewrite};

/// What the service answers for a result over its 1 MiB response limit: the model's
/// UnsupportedResultException ("The size was too large") with the message the Aurora user guide's
/// troubleshooting page is titled with.
pub const RESPONSE_TOO_LARGE: &str = "Database response exceeded size limit";
/// What the service answers for a returned row over its 64 KB row limit (same sources).
pub const ROW_TOO_LARGE: &str = "Packet for query is too large";
/// The model's limit on the `sql` member (`SqlStatement`, max 65536).
pub const MAX_SQL_CHARS: usize = 65536;

/// A transaction's dedicated connection.
pub struct TxEntry {
    client: Object,
    last_used: Instant,
    /// Set once the transaction was committed, rolled back or expired: later calls with its id
    /// answer TransactionNotFoundException even if they already held a reference.
    done: bool,
}

pub struct Db {
    pub config: Config,
    pg: tokio_postgres::Config,
    default_db: String,
    pools: Mutex<HashMap<String, Pool>>,
    txs: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TxEntry>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short critical sections cannot leave the maps
    // half-updated, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connection a statement runs on.
enum Conn {
    // Boxed: a pooled client is much larger than a guard.
    Pooled(Box<Object>),
    Tx(OwnedMutexGuard<TxEntry>),
}

impl Conn {
    fn client(&self) -> &Client {
        match self {
            Conn::Pooled(o) => o,
            Conn::Tx(g) => &g.client,
        }
    }
    fn in_transaction(&self) -> bool {
        matches!(self, Conn::Tx(_))
    }
}

/// Parsed ExecuteStatement input.
pub struct ExecInput {
    pub sql: String,
    pub params: Vec<NamedBind>,
    pub database: Option<String>,
    pub transaction_id: Option<String>,
    pub include_metadata: bool,
    pub continue_after_timeout: bool,
    pub format_json: bool,
    pub result_opts: ResultOptions,
}

/// Parsed BatchExecuteStatement input.
pub struct BatchInput {
    pub sql: String,
    pub parameter_sets: Vec<Vec<NamedBind>>,
    pub database: Option<String>,
    pub transaction_id: Option<String>,
}

/// Result of one statement.
struct Outcome {
    statement: Statement,
    rows: Vec<tokio_postgres::Row>,
    affected: u64,
}

impl Db {
    pub fn new(config: Config) -> anyhow::Result<Db> {
        let mut pg: tokio_postgres::Config =
            config.database_url.parse().map_err(|e| anyhow::anyhow!("invalid --database-url: {e}"))?;
        // Aurora's Data API sessions run in UTC (it documents timestamptz results in UTC);
        // pinning the session makes now()::text and timestamp<->timestamptz casts agree.
        pg.options("-c TimeZone=UTC");
        pg.application_name("rds-data-local");
        let default_db = pg
            .get_dbname()
            .map(str::to_owned)
            .or_else(|| pg.get_user().map(str::to_owned))
            .unwrap_or_else(|| "postgres".to_owned());
        Ok(Db { config, pg, default_db, pools: Mutex::new(HashMap::new()), txs: Mutex::new(HashMap::new()) })
    }

    fn pool(&self, database: Option<&str>) -> Result<Pool, ApiError> {
        let name = database.filter(|d| !d.is_empty()).unwrap_or(&self.default_db).to_owned();
        let mut pools = lock(&self.pools);
        if let Some(p) = pools.get(&name) {
            return Ok(p.clone());
        }
        let mut cfg = self.pg.clone();
        cfg.dbname(&name);
        let mgr = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(mgr)
            .max_size(self.config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                tracing::error!("cannot build pool: {e}");
                ApiError::InternalServerError
            })?;
        pools.insert(name, pool.clone());
        Ok(pool)
    }

    async fn connect(&self, database: Option<&str>) -> Result<Object, ApiError> {
        let pool = self.pool(database)?;
        pool.get().await.map_err(|e| match e {
            PoolError::Backend(pg) => ApiError::from_pg(&pg),
            other => {
                tracing::error!("cannot get a connection: {other}");
                ApiError::DatabaseUnavailable
            }
        })
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::TransactionNotFound(format!("Transaction {id} is not found"))
    }

    /// Looks up a live transaction and takes its connection for one call.
    async fn tx_conn(&self, id: &str) -> Result<Conn, ApiError> {
        let entry = lock(&self.txs).get(id).cloned().ok_or_else(|| Self::not_found(id))?;
        let mut guard = entry.lock_owned().await;
        if guard.done {
            return Err(Self::not_found(id));
        }
        guard.last_used = Instant::now();
        Ok(Conn::Tx(guard))
    }

    async fn conn(&self, transaction_id: Option<&str>, database: Option<&str>) -> Result<Conn, ApiError> {
        match transaction_id {
            Some(id) => self.tx_conn(id).await,
            None => Ok(Conn::Pooled(Box::new(self.connect(database).await?))),
        }
    }

    /// Runs `work` on `conn` in its own task so that a statement over the time limit can be
    /// cancelled (or, with continueAfterTimeout, left running) while the call answers
    /// StatementTimeoutException, as the real service does after 45 seconds.
    async fn run_with_timeout<T, F, Fut>(
        &self,
        conn: Conn,
        continue_after_timeout: bool,
        work: F,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Conn, Result<T, ApiError>)> + Send + 'static,
    {
        let cancel = conn.client().cancel_token();
        let mut task = tokio::spawn(async move {
            let (conn, res) = work(conn).await;
            if let Conn::Tx(mut g) = conn {
                g.last_used = Instant::now();
            }
            res
        });
        match tokio::time::timeout(self.config.statement_timeout, &mut task).await {
            Ok(joined) => joined.unwrap_or_else(|e| {
                tracing::error!("statement task failed: {e}");
                Err(ApiError::InternalServerError)
            }),
            Err(_) => {
                if !continue_after_timeout {
                    if let Err(e) = cancel.cancel_query(NoTls).await {
                        tracing::warn!("cancel request failed: {e}");
                    }
                    // Wait for the cancelled statement so the connection is free again.
                    let _ = task.await;
                }
                Err(ApiError::StatementTimeout("Request timed out".into()))
            }
        }
    }

    pub async fn execute(&self, input: ExecInput) -> Result<Value, ApiError> {
        check_sql_length(&input.sql)?;
        let stmts = rewrite(&input.sql);
        if stmts.is_empty() {
            return Err(ApiError::BadRequest("The SQL statement is empty.".into()));
        }
        let binds = bind_map(&input.params);
        // Every placeholder must have a value before anything reaches the database.
        let values: Vec<Vec<Bind>> = stmts.iter().map(|s| values_for(s, &binds)).collect::<Result<_, _>>()?;
        let conn = self.conn(input.transaction_id.as_deref(), input.database.as_deref()).await?;
        let opts = input.result_opts;
        let include_metadata = input.include_metadata && !input.format_json;
        let format_json = input.format_json;
        let limits = ResponseLimits {
            max_formatted: self.config.max_formatted_records_bytes,
            max_row: self.config.max_row_bytes,
        };
        let body = self
            .run_with_timeout(conn, input.continue_after_timeout, move |conn| async move {
                let res = execute_on(&conn, &stmts, &values).await;
                let res = match res {
                    Ok(out) => {
                        build_execute_response(conn.client(), out, include_metadata, format_json, opts, limits).await
                    }
                    Err(e) => Err(e),
                };
                (conn, res)
            })
            .await?;
        let bytes = serde_json::to_vec(&body).map_err(|_| ApiError::InternalServerError)?;
        if !input.format_json && bytes.len() > self.config.max_response_bytes {
            return Err(ApiError::UnsupportedResult(RESPONSE_TOO_LARGE.into()));
        }
        Ok(body)
    }

    pub async fn batch_execute(&self, input: BatchInput) -> Result<Value, ApiError> {
        check_sql_length(&input.sql)?;
        let stmts = rewrite(&input.sql);
        if stmts.is_empty() {
            return Err(ApiError::BadRequest("The SQL statement is empty.".into()));
        }
        let mut sets: Vec<Vec<Vec<Bind>>> = Vec::with_capacity(input.parameter_sets.len());
        for set in &input.parameter_sets {
            let binds = bind_map(set);
            sets.push(stmts.iter().map(|s| values_for(s, &binds)).collect::<Result<_, _>>()?);
        }
        let conn = self.conn(input.transaction_id.as_deref(), input.database.as_deref()).await?;
        let n = sets.len();
        self.run_with_timeout(conn, false, move |conn| async move {
            let res = batch_on(&conn, &stmts, &sets).await;
            (conn, res)
        })
        .await?;
        let results: Vec<Value> = (0..n).map(|_| json!({ "generatedFields": [] })).collect();
        Ok(json!({ "updateResults": results }))
    }

    pub async fn begin(&self, database: Option<&str>) -> Result<Value, ApiError> {
        let client = self.connect(database).await?;
        client.simple_query("BEGIN").await.map_err(|e| ApiError::from_pg(&e))?;
        // Real ids are long opaque strings; keep them opaque and unguessable here too.
        let id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let entry = TxEntry { client, last_used: Instant::now(), done: false };
        lock(&self.txs).insert(id.clone(), Arc::new(tokio::sync::Mutex::new(entry)));
        tracing::debug!(transaction_id = %id, "transaction started");
        Ok(json!({ "transactionId": id }))
    }

    /// Removes a transaction from the map and takes its connection exclusively.
    async fn finish(&self, id: &str) -> Result<OwnedMutexGuard<TxEntry>, ApiError> {
        let entry = lock(&self.txs).remove(id).ok_or_else(|| Self::not_found(id))?;
        let mut guard = entry.lock_owned().await;
        if guard.done {
            return Err(Self::not_found(id));
        }
        guard.done = true;
        Ok(guard)
    }

    pub async fn commit(&self, id: &str) -> Result<Value, ApiError> {
        let guard = self.finish(id).await?;
        // PostgreSQL answers COMMIT of a transaction that saw an error with ROLLBACK and no
        // error at all. Probe first so such a transaction is reported, not "committed".
        if let Err(e) = guard.client.simple_query("SELECT 1").await {
            let aborted = e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION);
            let _ = guard.client.simple_query("ROLLBACK").await;
            if aborted {
                return Err(ApiError::DatabaseError(format!(
                    "Transaction {id} cannot be committed: an earlier statement in it failed, so \
                     PostgreSQL aborted it. It has been rolled back. (ERROR: current transaction \
                     is aborted, commands ignored until end of transaction block; SQLState: 25P02)"
                )));
            }
            return Err(ApiError::from_pg(&e));
        }
        guard.client.simple_query("COMMIT").await.map_err(|e| ApiError::from_pg(&e))?;
        Ok(json!({ "transactionStatus": "Transaction Committed" }))
    }

    pub async fn rollback(&self, id: &str) -> Result<Value, ApiError> {
        let guard = self.finish(id).await?;
        guard.client.simple_query("ROLLBACK").await.map_err(|e| ApiError::from_pg(&e))?;
        Ok(json!({ "transactionStatus": "Rollback Complete" }))
    }

    /// Rolls back transactions idle for longer than the configured timeout (AWS: 3 minutes).
    pub async fn expire_idle_transactions(&self) {
        let timeout = self.config.transaction_timeout;
        let candidates: Vec<(String, Arc<tokio::sync::Mutex<TxEntry>>)> =
            lock(&self.txs).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (id, entry) in candidates {
            // A transaction whose lock is held has a call in flight, so it is not idle.
            let Ok(mut g) = entry.try_lock_owned() else { continue };
            if g.done || g.last_used.elapsed() < timeout {
                continue;
            }
            g.done = true;
            lock(&self.txs).remove(&id);
            tracing::info!(transaction_id = %id, "transaction expired after idle timeout; rolling back");
            let _ = g.client.simple_query("ROLLBACK").await;
        }
    }
}

fn check_sql_length(sql: &str) -> Result<(), ApiError> {
    let chars = sql.chars().count();
    if chars > MAX_SQL_CHARS {
        return Err(ApiError::BadRequest(format!(
            "Number of characters in SQLStatement is {chars}, longer than {MAX_SQL_CHARS}"
        )));
    }
    Ok(())
}

/// Size limits applied while a result is built.
#[derive(Debug, Clone, Copy)]
struct ResponseLimits {
    /// `formattedRecords` (AWS: 10 MB).
    max_formatted: usize,
    /// One row's values (AWS: 64 KB).
    max_row: usize,
}

/// A row's size as the database returns it: the bytes of its values (text as UTF-8, bytea raw,
/// 8 per number, 1 per boolean), not their JSON rendering.
fn row_bytes(cells: &[Cell]) -> usize {
    fn strings<'a>(v: impl Iterator<Item = &'a Option<String>>) -> usize {
        v.map(|s| s.as_ref().map_or(0, String::len)).sum()
    }
    cells
        .iter()
        .map(|c| match c {
            Cell::Null => 0,
            Cell::Bool(_) => 1,
            Cell::Long(_) | Cell::Double(_) => 8,
            Cell::Str(s) => s.len(),
            Cell::Blob(b) => b.len(),
            Cell::Array(decode::ArrayCell::Longs(v)) => 8 * v.len(),
            Cell::Array(decode::ArrayCell::Doubles(v)) => 8 * v.len(),
            Cell::Array(decode::ArrayCell::Bools(v)) => v.len(),
            Cell::Array(decode::ArrayCell::Strings(v)) => strings(v.iter()),
        })
        .sum()
}

fn bind_map(params: &[NamedBind]) -> HashMap<&str, &Bind> {
    params.iter().map(|p| (p.name.as_str(), &p.value)).collect()
}

fn values_for(stmt: &Rewritten, binds: &HashMap<&str, &Bind>) -> Result<Vec<Bind>, ApiError> {
    stmt.names
        .iter()
        .map(|n| {
            binds
                .get(n.as_str())
                .map(|b| (*b).clone())
                .ok_or_else(|| ApiError::BadRequest(format!("No value specified for parameter: {n}")))
        })
        .collect()
}

async fn run_one(
    client: &Client,
    sql: &str,
    values: &[Bind],
    cache: Option<&mut HashMap<Vec<u32>, Statement>>,
) -> Result<Outcome, ApiError> {
    let types: Vec<_> = values.iter().map(Bind::declared_type).collect();
    let key: Vec<u32> = types.iter().map(|t| t.oid()).collect();
    let statement = match cache.as_ref().and_then(|c| c.get(&key)) {
        Some(s) => s.clone(),
        None => {
            let s = client.prepare_typed(sql, &types).await.map_err(|e| ApiError::from_pg(&e))?;
            if let Some(c) = cache {
                c.insert(key, s.clone());
            }
            s
        }
    };
    let stream = client.query_raw(&statement, values.iter()).await.map_err(|e| ApiError::from_pg(&e))?;
    pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.next().await {
        rows.push(row.map_err(|e| ApiError::from_pg(&e))?);
    }
    let affected = stream.rows_affected().unwrap_or(0);
    Ok(Outcome { statement, rows, affected })
}

/// Runs `body` atomically: inside the caller's transaction as is, otherwise wrapped in
/// BEGIN/COMMIT when it has more than one statement (PgJDBC sends a multi-statement string
/// or a batch with a single Sync, which PostgreSQL runs as one implicit transaction).
async fn atomically<T>(
    conn: &Conn,
    wrap: bool,
    body: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let client = conn.client();
    let wrap = wrap && !conn.in_transaction();
    if wrap {
        client.simple_query("BEGIN").await.map_err(|e| ApiError::from_pg(&e))?;
    }
    let res = body.await;
    if wrap {
        match &res {
            Ok(_) => {
                client.simple_query("COMMIT").await.map_err(|e| ApiError::from_pg(&e))?;
            }
            Err(_) => {
                let _ = client.simple_query("ROLLBACK").await;
            }
        }
    }
    res
}

async fn execute_on(conn: &Conn, stmts: &[Rewritten], values: &[Vec<Bind>]) -> Result<Outcome, ApiError> {
    let client = conn.client();
    atomically(conn, stmts.len() > 1, async {
        let mut first = None;
        for (s, v) in stmts.iter().zip(values) {
            let out = run_one(client, &s.sql, v, None).await?;
            // JDBC's execute() reports the first result; later statements just run.
            if first.is_none() {
                first = Some(out);
            }
        }
        first.ok_or_else(|| ApiError::BadRequest("The SQL statement is empty.".into()))
    })
    .await
}

async fn batch_on(conn: &Conn, stmts: &[Rewritten], sets: &[Vec<Vec<Bind>>]) -> Result<(), ApiError> {
    let client = conn.client();
    atomically(conn, true, async {
        let mut caches: Vec<HashMap<Vec<u32>, Statement>> = vec![HashMap::new(); stmts.len()];
        for set in sets {
            for ((s, v), cache) in stmts.iter().zip(set).zip(caches.iter_mut()) {
                let out = run_one(client, &s.sql, v, Some(cache)).await?;
                if !out.statement.columns().is_empty() {
                    // PgJDBC's executeBatch refuses statements that produce rows.
                    return Err(ApiError::DatabaseError("A result was returned when none was expected.".into()));
                }
            }
        }
        Ok(())
    })
    .await
}

async fn table_info(client: &Client, out: &Outcome) -> Vec<Option<TableColumnInfo>> {
    let mut infos = Vec::new();
    for col in out.statement.columns() {
        let info = match (col.table_oid(), col.column_id()) {
            (Some(oid), Some(attnum)) if oid != 0 => client
                .query_opt(
                    "SELECT c.relname::text, a.attnotnull, \
                     (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%') \
                     FROM pg_catalog.pg_attribute a \
                     JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     WHERE a.attrelid = $1 AND a.attnum = $2",
                    &[&oid, &attnum],
                )
                .await
                .ok()
                .flatten()
                .map(|r| TableColumnInfo { table_name: r.get(0), not_null: r.get(1), auto_increment: r.get(2) }),
            _ => None,
        };
        infos.push(info);
    }
    infos
}

async fn build_execute_response(
    client: &Client,
    out: Outcome,
    include_metadata: bool,
    format_json: bool,
    opts: ResultOptions,
    limits: ResponseLimits,
) -> Result<Value, ApiError> {
    let mut resp = Map::new();
    let columns = out.statement.columns();
    if columns.is_empty() {
        // DML and DDL: the update count, and generatedFields (always empty for PostgreSQL: the
        // service documents that generated fields need RETURNING there).
        resp.insert("numberOfRecordsUpdated".into(), json!(out.affected));
        resp.insert("generatedFields".into(), json!([]));
        return Ok(Value::Object(resp));
    }
    // A statement that returns rows (SELECT, or DML with RETURNING) reports 0 updated records,
    // as JDBC's getUpdateCount does for a result set.
    resp.insert("numberOfRecordsUpdated".into(), json!(0));
    let mut decoded: Vec<Vec<Cell>> = Vec::with_capacity(out.rows.len());
    for row in &out.rows {
        let mut cells = Vec::with_capacity(columns.len());
        for (i, col) in columns.iter().enumerate() {
            let raw: decode::Raw<'_> = row.try_get(i).map_err(|e| {
                tracing::error!("cannot read column {i}: {e}");
                ApiError::InternalServerError
            })?;
            cells.push(decode::decode(col.type_(), raw.0, opts)?);
        }
        if row_bytes(&cells) > limits.max_row {
            return Err(ApiError::UnsupportedResult(ROW_TOO_LARGE.into()));
        }
        decoded.push(cells);
    }
    if format_json {
        // Keys in column order (serde_json's Map would sort them), labels as the keys.
        let mut s = String::from("[");
        for (r, cells) in decoded.iter().enumerate() {
            if r > 0 {
                s.push(',');
            }
            s.push('{');
            for (i, (col, cell)) in columns.iter().zip(cells).enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&Value::String(col.name().to_owned()).to_string());
                s.push(':');
                s.push_str(&decode::plain_json(cell).to_string());
            }
            s.push('}');
        }
        s.push(']');
        if s.len() > limits.max_formatted {
            return Err(ApiError::UnsupportedResult(RESPONSE_TOO_LARGE.into()));
        }
        resp.insert("formattedRecords".into(), Value::String(s));
        return Ok(Value::Object(resp));
    }
    let records: Vec<Value> =
        decoded.iter().map(|cells| Value::Array(cells.iter().map(decode::field_json).collect())).collect();
    resp.insert("records".into(), Value::Array(records));
    if include_metadata {
        let infos = table_info(client, &out).await;
        let meta: Vec<Value> =
            columns.iter().zip(&infos).map(|(c, i)| decode::column_metadata(c, i.as_ref())).collect();
        resp.insert("columnMetadata".into(), Value::Array(meta));
    }
    Ok(Value::Object(resp))
}

/// Parses the shared request members.
pub mod input {
    use super::*;

    pub fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(ApiError::BadRequest(format!(
                "1 validation error detected: Value null at '{key}' failed to satisfy constraint: \
                 Member must not be null"
            ))),
            Some(_) => Err(ApiError::Serialization(format!("{key} must be a string"))),
        }
    }

    pub fn optional_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Null) | None => Ok(None),
            Some(_) => Err(ApiError::Serialization(format!("{key} must be a string"))),
        }
    }

    pub fn optional_bool(obj: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
        match obj.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::Null) | None => Ok(false),
            Some(_) => Err(ApiError::Serialization(format!("{key} must be a boolean"))),
        }
    }

    /// `resourceArn` and `secretArn` are required on every operation; their values are not
    /// checked against anything (there is one local "cluster").
    pub fn common(obj: &Map<String, Value>) -> Result<(), ApiError> {
        required_str(obj, "resourceArn")?;
        required_str(obj, "secretArn")?;
        Ok(())
    }

    pub fn execute(obj: &Map<String, Value>) -> Result<ExecInput, ApiError> {
        common(obj)?;
        let sql = required_str(obj, "sql")?;
        let format = optional_str(obj, "formatRecordsAs")?;
        let format_json = match format.as_deref() {
            None | Some("NONE") => false,
            Some("JSON") => true,
            Some(other) => {
                return Err(ApiError::Serialization(format!("formatRecordsAs must be NONE or JSON, not {other}")));
            }
        };
        let mut result_opts = ResultOptions::default();
        if let Some(o) = obj.get("resultSetOptions").filter(|v| !v.is_null()) {
            let o =
                o.as_object().ok_or_else(|| ApiError::Serialization("resultSetOptions must be an object".into()))?;
            result_opts.decimal_as_number = optional_str(o, "decimalReturnType")?.as_deref() == Some("DOUBLE_OR_LONG");
            result_opts.long_as_string = optional_str(o, "longReturnType")?.as_deref() == Some("STRING");
        }
        Ok(ExecInput {
            sql,
            params: parse_parameters(obj.get("parameters"))?,
            database: optional_str(obj, "database")?,
            transaction_id: optional_str(obj, "transactionId")?,
            include_metadata: optional_bool(obj, "includeResultMetadata")?,
            continue_after_timeout: optional_bool(obj, "continueAfterTimeout")?,
            format_json,
            result_opts,
        })
    }

    pub fn batch(obj: &Map<String, Value>) -> Result<BatchInput, ApiError> {
        common(obj)?;
        let sql = required_str(obj, "sql")?;
        let sets = match obj.get("parameterSets") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(|s| parse_parameters(Some(s))).collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ApiError::Serialization("parameterSets must be a list of lists".into()));
            }
        };
        Ok(BatchInput {
            sql,
            parameter_sets: sets,
            database: optional_str(obj, "database")?,
            transaction_id: optional_str(obj, "transactionId")?,
        })
    }
}
