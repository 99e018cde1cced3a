//! Configuration: typed, read once at start-up from flags and environment variables (flags win),
//! validated, and printable with secrets masked (`order-confirmation config`). A missing or wrong
//! setting is an error that names the setting; nothing falls back silently in Lambda.

use crate::ledger::data_api::DataApiTarget;
use clap::Args;
use serde::Serialize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// Where order state is kept. The Data API ledger carries its target, so a configuration that
/// names it always says where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LedgerChoice {
    /// Embedded SQLite file (local runs).
    Sqlite { path: PathBuf },
    /// Aurora PostgreSQL through the RDS Data API (production).
    DataApi(DataApiTarget),
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MailerChoice {
    /// `.eml` files in a directory (local runs).
    Outbox { dir: PathBuf },
    /// Amazon SES v2 (production).
    Ses,
}

/// Every setting's default, written only here: clap shows it in `--help` and fills it in,
/// [`Settings::validate`] falls back to it (a [`Settings`] built in code has no clap), the typed
/// settings' `Default`s are made of it, tests/docs.rs compares the README's configuration table
/// with clap's command and tests/template.rs the template's parameters with it.
pub mod defaults {
    /// Local runs only: in Lambda `LEDGER` must be set.
    pub const LEDGER: &str = "sqlite:.local/ledger.db";
    /// Local runs only: in Lambda `MAILER` must be set.
    pub const MAILER: &str = "outbox:.local/outbox";
    /// The From address of the outbox mailer (the ses mailer needs one set).
    pub const OUTBOX_SENDER_ADDRESS: &str = "orders@example.com";
    pub const SEND_TIMEOUT_SECONDS: u64 = 15;
    pub const HIGH_PRIORITY_RESERVE: f64 = 0.2;
    pub const SEND_CONCURRENCY: usize = 16;
    pub const SAFETY_MARGIN_SECONDS: u64 = 5;
    pub const INVOCATION_TIMEOUT_SECONDS: u64 = 60;
    pub const LEASE_SLACK_SECONDS: u64 = 60;
    pub const SEND_EVENT_WAIT_SECONDS: u64 = 30;
    pub const BACKOFF_BASE_SECONDS: u64 = 30;
    pub const BACKOFF_CAP_SECONDS: u64 = 900;
    pub const DEFERRED_DELAY_SECONDS: u64 = 5;
    pub const RECONCILE_FAILED_AFTER_SECONDS: u64 = 600;
    pub const RECONCILE_MAX_ATTEMPTS: i64 = 10;
    pub const UNCONFIRMED_GRACE_SECONDS: u64 = 300;
    pub const PAYLOAD_RETENTION_DAYS: u64 = 30;
    pub const LEDGER_HORIZON_DAYS: u64 = 400;
    pub const FUNCTION_ROLE: &str = "consumer";
    /// Powertools' variables: the metrics' namespace and the `service` of every metric and log line.
    pub const METRICS_NAMESPACE: &str = "OrderConfirmation";
    pub const SERVICE_NAME: &str = "order-confirmation";
}

/// What `LEDGER` names, before the Data API target is known.
enum LedgerKind {
    Sqlite(PathBuf),
    DataApi,
}

fn parse_ledger(s: &str) -> Result<LedgerKind, String> {
    match s.split_once(':') {
        _ if s == "data-api" => Ok(LedgerKind::DataApi),
        Some(("sqlite", path)) if !path.is_empty() => Ok(LedgerKind::Sqlite(path.into())),
        _ => Err("must be data-api or sqlite:<path>".to_owned()),
    }
}

fn parse_mailer(s: &str) -> Result<MailerChoice, String> {
    match s.split_once(':') {
        _ if s == "ses" => Ok(MailerChoice::Ses),
        Some(("outbox", dir)) if !dir.is_empty() => Ok(MailerChoice::Outbox { dir: dir.into() }),
        _ => Err("must be ses or outbox:<dir>".to_owned()),
    }
}

/// Every setting, as flags with environment fallbacks. Shared by all subcommands and by the
/// Lambda entry (which has no flags, so only the environment applies there).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Settings (every command; a flag wins over its environment variable)")]
pub struct Settings {
    // LEDGER, MAILER and SENDER_ADDRESS have no clap default (it depends on where the process runs
    // or on the mailer): their help names the default from `defaults`.
    #[arg(long, env = "LEDGER", global = true,
          help = format!("Ledger backend: `data-api` or `sqlite:<path>` [default locally: {}; required in Lambda]", defaults::LEDGER))]
    pub ledger: Option<String>,
    #[arg(long, env = "MAILER", global = true,
          help = format!("Mail backend: `ses` or `outbox:<dir>` [default locally: {}; required in Lambda]", defaults::MAILER))]
    pub mailer: Option<String>,
    /// Aurora cluster ARN (data-api ledger).
    #[arg(long, env = "DB_CLUSTER_ARN", global = true, hide_env_values = true)]
    pub db_cluster_arn: Option<String>,
    /// Secrets Manager ARN of the database credentials (data-api ledger).
    #[arg(long, env = "DB_SECRET_ARN", global = true, hide_env_values = true)]
    pub db_secret_arn: Option<String>,
    /// Database name (data-api ledger).
    #[arg(long, env = "DB_NAME", global = true)]
    pub db_name: Option<String>,
    #[arg(long, env = "SENDER_ADDRESS", global = true,
          help = format!("From address of the confirmations (required for ses) [default with the outbox: {}]", defaults::OUTBOX_SENDER_ADDRESS))]
    pub sender_address: Option<String>,
    /// SES configuration set for event publishing (optional).
    #[arg(long, env = "SES_CONFIGURATION_SET", global = true)]
    pub ses_configuration_set: Option<String>,
    /// The order status page linked from every mail, an https URL with `{order_id}` in it
    /// (e.g. https://shop.example/orders/{order_id}); no link when unset.
    #[arg(long, env = "STATUS_URL_TEMPLATE", global = true)]
    pub status_url_template: Option<String>,
    /// This instance's share of the SES send quota, in mails per second (unset: derived from
    /// SES_ACCOUNT_MAX_SEND_RATE / SES_SENDERS when both are set, otherwise unlimited).
    #[arg(long, env = "SES_MAX_SEND_RATE", global = true)]
    pub ses_max_send_rate: Option<f64>,
    /// The account's whole SES sending rate, mails per second: this instance's rate climbs toward
    /// it while SES accepts and backs off when SES throttles (unset: stays at SES_MAX_SEND_RATE).
    #[arg(long, env = "SES_ACCOUNT_MAX_SEND_RATE", global = true)]
    pub ses_account_max_send_rate: Option<f64>,
    /// How many instances may send at once (the function's reserved concurrency): each starts at
    /// SES_ACCOUNT_MAX_SEND_RATE / SES_SENDERS when SES_MAX_SEND_RATE is unset.
    #[arg(long, env = "SES_SENDERS", global = true)]
    pub ses_senders: Option<u32>,
    /// The largest batch an invocation receives (the event source mappings' BatchSize): start-up
    /// warns once when it cannot be mailed within the timeout at this instance's share.
    #[arg(long, env = "EXPECTED_BATCH_SIZE", global = true)]
    pub expected_batch_size: Option<u32>,
    /// Longest one SES send may take, retries included, before it is abandoned
    #[arg(long, env = "SEND_TIMEOUT_SECONDS", global = true, default_value_t = defaults::SEND_TIMEOUT_SECONDS)]
    pub send_timeout_seconds: u64,
    /// Share of the send rate kept for high-priority orders, 0.0-0.9
    #[arg(long, env = "HIGH_PRIORITY_RESERVE", global = true, default_value_t = defaults::HIGH_PRIORITY_RESERVE)]
    pub high_priority_reserve: f64,
    /// Sends in flight at once per invocation
    #[arg(long, env = "SEND_CONCURRENCY", global = true, default_value_t = defaults::SEND_CONCURRENCY)]
    pub send_concurrency: usize,
    /// No send starts with less than this many seconds left in the invocation
    #[arg(long, env = "SAFETY_MARGIN_SECONDS", global = true, default_value_t = defaults::SAFETY_MARGIN_SECONDS)]
    pub safety_margin_seconds: u64,
    /// Invocation time budget for runs outside Lambda (`invoke`, `consume`)
    #[arg(long, env = "INVOCATION_TIMEOUT_SECONDS", global = true, default_value_t = defaults::INVOCATION_TIMEOUT_SECONDS)]
    pub invocation_timeout_seconds: u64,
    /// Added to the invocation's remaining time to form an order's lease
    #[arg(long, env = "LEASE_SLACK_SECONDS", global = true, default_value_t = defaults::LEASE_SLACK_SECONDS)]
    pub lease_slack_seconds: u64,
    /// How long after SES accepts a mail its Send event is expected in the ledger: an order taken
    /// over from a dead holder is mailed again only once this long has passed since the holder's
    /// last possible send, unless the event arrives
    #[arg(long, env = "SEND_EVENT_WAIT_SECONDS", global = true, default_value_t = defaults::SEND_EVENT_WAIT_SECONDS)]
    pub send_event_wait_seconds: u64,
    /// First retry delay of a transiently failed message, doubled per receive
    #[arg(long, env = "BACKOFF_BASE_SECONDS", global = true, default_value_t = defaults::BACKOFF_BASE_SECONDS)]
    pub backoff_base_seconds: u64,
    /// Longest retry delay of a transiently failed message
    #[arg(long, env = "BACKOFF_CAP_SECONDS", global = true, default_value_t = defaults::BACKOFF_CAP_SECONDS)]
    pub backoff_cap_seconds: u64,
    /// First retry delay of a deferred message (no send slot or no time left), doubled per receive
    #[arg(long, env = "DEFERRED_DELAY_SECONDS", global = true, default_value_t = defaults::DEFERRED_DELAY_SECONDS)]
    pub deferred_delay_seconds: u64,
    /// Reconciliation retries a `failed` order once it has not changed for this long
    #[arg(long, env = "RECONCILE_FAILED_AFTER_SECONDS", global = true, default_value_t = defaults::RECONCILE_FAILED_AFTER_SECONDS)]
    pub reconcile_failed_after_seconds: u64,
    /// Attempts after which reconciliation marks an order `abandoned`
    #[arg(long, env = "RECONCILE_MAX_ATTEMPTS", global = true, default_value_t = defaults::RECONCILE_MAX_ATTEMPTS)]
    pub reconcile_max_attempts: i64,
    /// Orders younger than this do not count as unconfirmed
    #[arg(long, env = "UNCONFIRMED_GRACE_SECONDS", global = true, default_value_t = defaults::UNCONFIRMED_GRACE_SECONDS)]
    pub unconfirmed_grace_seconds: u64,
    /// Days after sending that the scheduled reconcile removes a confirmed order's payload (name,
    /// address, items)
    #[arg(long, env = "PAYLOAD_RETENTION_DAYS", global = true, default_value_t = defaults::PAYLOAD_RETENTION_DAYS)]
    pub payload_retention_days: u64,
    /// Days after first sight that the scheduled reconcile deletes a finished order's row
    #[arg(long, env = "LEDGER_HORIZON_DAYS", global = true, default_value_t = defaults::LEDGER_HORIZON_DAYS)]
    pub ledger_horizon_days: u64,
    /// SQS queue URLs, high priority first (for `consume` and the queue depths in `stats`);
    /// comma-separated in the environment.
    #[arg(long = "queue-url", env = "QUEUE_URLS", value_delimiter = ',', global = true)]
    pub queue_urls: Vec<String>,
    /// What a Lambda function answers: `consumer` (queue batches and the reconcile schedule) or
    /// `operator` (operator requests and the schema custom resource)
    #[arg(long, env = "FUNCTION_ROLE", global = true, default_value = defaults::FUNCTION_ROLE)]
    pub function_role: Option<String>,
    /// CloudWatch namespace of the metrics (Powertools' variable)
    #[arg(long, env = "POWERTOOLS_METRICS_NAMESPACE", global = true, default_value = defaults::METRICS_NAMESPACE)]
    pub metrics_namespace: String,
    /// The `service` key of every JSON log line and the `service` dimension of every metric
    /// (Powertools' variable)
    #[arg(long, env = "POWERTOOLS_SERVICE_NAME", global = true, default_value = defaults::SERVICE_NAME)]
    pub service_name: String,
}

/// The settings with nothing set: what the command line gives without flags or variables.
impl Default for Settings {
    fn default() -> Self {
        Self {
            ledger: None,
            mailer: None,
            db_cluster_arn: None,
            db_secret_arn: None,
            db_name: None,
            sender_address: None,
            ses_configuration_set: None,
            status_url_template: None,
            ses_max_send_rate: None,
            ses_account_max_send_rate: None,
            ses_senders: None,
            expected_batch_size: None,
            send_timeout_seconds: defaults::SEND_TIMEOUT_SECONDS,
            high_priority_reserve: defaults::HIGH_PRIORITY_RESERVE,
            send_concurrency: defaults::SEND_CONCURRENCY,
            invocation_timeout_seconds: defaults::INVOCATION_TIMEOUT_SECONDS,
            safety_margin_seconds: defaults::SAFETY_MARGIN_SECONDS,
            backoff_base_seconds: defaults::BACKOFF_BASE_SECONDS,
            backoff_cap_seconds: defaults::BACKOFF_CAP_SECONDS,
            deferred_delay_seconds: defaults::DEFERRED_DELAY_SECONDS,
            reconcile_failed_after_seconds: defaults::RECONCILE_FAILED_AFTER_SECONDS,
            reconcile_max_attempts: defaults::RECONCILE_MAX_ATTEMPTS,
            unconfirmed_grace_seconds: defaults::UNCONFIRMED_GRACE_SECONDS,
            lease_slack_seconds: defaults::LEASE_SLACK_SECONDS,
            send_event_wait_seconds: defaults::SEND_EVENT_WAIT_SECONDS,
            payload_retention_days: defaults::PAYLOAD_RETENTION_DAYS,
            ledger_horizon_days: defaults::LEDGER_HORIZON_DAYS,
            queue_urls: Vec::new(),
            function_role: None,
            metrics_namespace: defaults::METRICS_NAMESPACE.to_owned(),
            service_name: defaults::SERVICE_NAME.to_owned(),
        }
    }
}

/// Which requests a Lambda function answers (docs/design.md, Operations). Two functions run the
/// same binary: only the operator one, invocable by the operator role, changes state on request
/// or migrates the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionRole {
    /// SQS batches from both queues and the EventBridge reconcile schedule.
    Consumer,
    /// `{"operator": …}` requests and CloudFormation's LedgerSchema custom resource.
    Operator,
}

fn parse_function_role(s: Option<&str>) -> Result<FunctionRole, ConfigError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None | Some("consumer") => Ok(FunctionRole::Consumer),
        Some("operator") => Ok(FunctionRole::Operator),
        Some(_) => Err(err("FUNCTION_ROLE", "must be consumer or operator")),
    }
}

/// The names the metrics are published under: the namespace and the value of the `service`
/// dimension every metric carries (Powertools' conventions, docs/design.md "Logs and metrics").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricNames {
    pub namespace: String,
    pub service: String,
}

impl Default for MetricNames {
    fn default() -> Self {
        Self { namespace: defaults::METRICS_NAMESPACE.to_owned(), service: defaults::SERVICE_NAME.to_owned() }
    }
}

/// A CloudWatch namespace: 1-255 of `A-Z a-z 0-9 . - _ / # :` and space, not starting with
/// `AWS/` (reserved for AWS's own metrics). Unset or empty means the default.
fn parse_metrics_namespace(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(defaults::METRICS_NAMESPACE.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if v.len() > 255 || !v.chars().all(allowed) {
        return Err(err(
            "POWERTOOLS_METRICS_NAMESPACE",
            "must be 1-255 characters of letters, digits, spaces and . - _ / # :",
        ));
    }
    if v.starts_with("AWS/") {
        return Err(err("POWERTOOLS_METRICS_NAMESPACE", "must not start with AWS/ (reserved for AWS's own metrics)"));
    }
    Ok(v.to_owned())
}

/// A service name, shown in every log line and used as a dimension value: 1-255 of
/// `A-Z a-z 0-9 . - _ / # :` (no spaces, so a Logs Insights filter needs no quoting).
/// Unset or empty means the default.
pub fn parse_service_name(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(defaults::SERVICE_NAME.to_owned());
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#:".contains(c);
    if v.len() > 255 || !v.chars().all(allowed) {
        return Err(err("POWERTOOLS_SERVICE_NAME", "must be 1-255 characters of letters, digits and . - _ / # :"));
    }
    Ok(v.to_owned())
}

/// `SES_CONFIGURATION_SET`: SES's rule for configuration set names (1-64 letters, digits, `_`
/// and `-`, as the template's parameter also requires). Unset or empty means none. A name SES
/// would refuse fails at start-up instead of failing every send.
fn parse_configuration_set(value: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(err("SES_CONFIGURATION_SET", "must be 1-64 characters of letters, digits, _ and -"));
    }
    Ok(Some(v.to_owned()))
}

/// `STATUS_URL_TEMPLATE`: checked here so a template no mail could use fails at start-up, not
/// in every mail. Unset or empty means no link. The error states the rule, never the value.
fn parse_status_url_template(value: Option<&str>) -> Result<Option<crate::render::StatusUrlTemplate>, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    crate::render::StatusUrlTemplate::parse(v).map(Some).map_err(|rule| err("STATUS_URL_TEMPLATE", rule))
}

/// Where the process runs: decides which settings are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A developer's machine: embedded defaults allowed.
    Local,
    /// The Lambda runtime: LEDGER and MAILER must be set explicitly.
    Lambda,
}

/// Validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub ledger: LedgerChoice,
    pub mailer: MailerChoice,
    pub sender_address: String,
    pub ses_configuration_set: Option<String>,
    pub status_url_template: Option<crate::render::StatusUrlTemplate>,
    pub ses_max_send_rate: Option<f64>,
    pub ses_account_max_send_rate: Option<f64>,
    pub ses_senders: Option<u32>,
    pub expected_batch_size: Option<u32>,
    pub high_priority_reserve: f64,
    #[serde(with = "secs")]
    pub send_timeout: Duration,
    pub send_concurrency: usize,
    #[serde(with = "secs")]
    pub safety_margin: Duration,
    #[serde(with = "secs")]
    pub invocation_timeout: Duration,
    #[serde(with = "secs")]
    pub lease_slack: Duration,
    #[serde(with = "secs")]
    pub send_event_wait: Duration,
    pub backoff: crate::backoff::BackoffSettings,
    pub reconcile: crate::reconcile::ReconcileSettings,
    pub queue_urls: Vec<String>,
    pub function_role: FunctionRole,
    pub metric_names: MetricNames,
    /// The git commit this binary was built from (build.rs): which code is deployed.
    pub commit: &'static str,
}

impl Config {
    /// One line for start-up when a full batch cannot be mailed within the invocation at this
    /// instance's share of the SES rate: the rest would be deferred every time, never failed, but
    /// the mapping's BatchSize is then larger than it can use.
    pub fn sizing_warning(&self) -> Option<String> {
        let (batch, share) = (self.expected_batch_size?, self.ses_max_send_rate?);
        let needs = f64::from(batch) / share;
        let budget = self.invocation_timeout.saturating_sub(self.safety_margin).as_secs_f64();
        (needs > budget).then(|| {
            format!(
                "EXPECTED_BATCH_SIZE {batch} needs {needs:.0} s at this instance's share of {share:.2} mails/s, \
                 more than the {budget:.0} s the timeout leaves: lower the BatchSize or raise the SES rate"
            )
        })
    }
}

/// Prints only the last six characters: enough to tell two apart, not enough to spread a name.
pub(crate) fn masked<S: serde::Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    let tail: String = value.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    s.serialize_str(&format!("****{tail}"))
}

/// Durations print as seconds.
pub(crate) mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// A configuration problem, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {setting} {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

/// The longest invocation budget and lease slack: 12 hours, the SQS visibility limit (a batch
/// cannot be held longer anyway).
const MAX_TIMEOUT_SECONDS: u64 = 12 * 3600;
/// The longest a takeover may wait for the previous holder's Send event: beyond this the wait
/// costs more invocation time than the events' delivery is worth waiting for.
const MAX_SEND_EVENT_WAIT_SECONDS: u64 = 300;
/// The longest SQS message delay (`DelaySeconds`), used for deferred copies.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// Reconcile and alarm ages: 30 days, longer than SQS keeps any message.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Retention periods, in days: at most ten years.
const MAX_RETENTION_DAYS: u64 = 3650;
/// The shortest horizon: longer than SQS keeps a message (14 days), so a redelivered message
/// still finds its row and is not mailed twice.
const MIN_HORIZON_DAYS: u64 = 15;
/// The values `HIGH_PRIORITY_RESERVE` accepts; the template's `HighPriorityReserve` parameter has
/// the same bounds.
pub const HIGH_PRIORITY_RESERVE_RANGE: RangeInclusive<f64> = 0.0..=0.9;
/// The values `PAYLOAD_RETENTION_DAYS` accepts. The template's `PayloadRetentionDays` parameter
/// has the same bounds (tests/template.rs checks).
pub const PAYLOAD_RETENTION_DAYS_RANGE: RangeInclusive<u64> = 1..=MAX_RETENTION_DAYS;
/// The values `LEDGER_HORIZON_DAYS` accepts (it must also be at least `PAYLOAD_RETENTION_DAYS`).
/// The template's `LedgerHorizonDays` parameter has the same bounds.
pub const LEDGER_HORIZON_DAYS_RANGE: RangeInclusive<u64> = MIN_HORIZON_DAYS..=MAX_RETENTION_DAYS;
const DAY: u64 = 86_400;

/// The `attempts` column is a PostgreSQL `integer`; no sane bound is near it.
const MAX_ATTEMPTS: i64 = 1_000_000;
/// Mails per second: far above any SES quota, far below where the rate arithmetic degrades.
const MAX_SEND_RATE: f64 = 1_000_000.0;

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.to_owned(), problem: problem.into() }
}

fn required(setting: &'static str, value: &Option<String>, why: &str) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(err(setting, format!("is not set ({why})"))),
    }
}

/// The settings alone, as the Lambda entry reads them.
#[derive(clap::Parser)]
struct EnvOnly {
    #[command(flatten)]
    settings: Settings,
}

/// The setting a clap value error is about: the argument clap names in the error's context
/// (`ContextKind::InvalidArg`, "--send-concurrency <SEND_CONCURRENCY>"), looked up in `command`,
/// where its environment variable is declared. `None` for other errors, or an argument without a
/// variable.
pub fn setting_of(e: &clap::Error, command: &clap::Command) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let Some(ContextValue::String(invalid)) = e.get(ContextKind::InvalidArg) else { return None };
    let flag = invalid.split_whitespace().next()?;
    let arg = command.get_arguments().find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))?;
    arg.get_env()?.to_str().map(str::to_owned)
}

/// Why a value did not parse, without the value (clap's message repeats it).
pub fn parse_problem(e: &clap::Error) -> String {
    std::error::Error::source(e).map_or_else(|| "not one of the accepted values".to_owned(), |s| s.to_string())
}

/// A value from the environment that does not parse: the error names the variable (from clap's
/// error context) and the rule, never the value.
fn unparsable(e: &clap::Error) -> ConfigError {
    use clap::CommandFactory;
    let setting = setting_of(e, &EnvOnly::command()).unwrap_or_else(|| "environment".to_owned());
    ConfigError { setting, problem: format!("has a value that does not parse: {}", parse_problem(e)) }
}

impl Settings {
    /// Settings from the environment alone (the Lambda entry has no flags). A value that does not
    /// parse (`SES_MAX_SEND_RATE=fast`) is an error naming the variable, never a silent default.
    pub fn from_env() -> Result<Self, ConfigError> {
        use clap::Parser;
        EnvOnly::try_parse_from(["order-confirmation"]).map(|e| e.settings).map_err(|e| unparsable(&e))
    }

    pub fn validate(&self, mode: Mode) -> Result<Config, ConfigError> {
        let pick = |setting: &'static str, value: &Option<String>, default: &str| -> Result<String, ConfigError> {
            match (value.as_deref().map(str::trim).filter(|v| !v.is_empty()), mode) {
                (Some(v), _) => Ok(v.to_owned()),
                (None, Mode::Local) => Ok(default.to_owned()),
                (None, Mode::Lambda) => Err(err(
                    setting,
                    "is not set: in Lambda it must be given explicitly (there is no local default in production)",
                )),
            }
        };
        let ledger = parse_ledger(&pick("LEDGER", &self.ledger, defaults::LEDGER)?).map_err(|p| err("LEDGER", p))?;
        let mailer = parse_mailer(&pick("MAILER", &self.mailer, defaults::MAILER)?).map_err(|p| err("MAILER", p))?;

        let ledger = match ledger {
            LedgerKind::DataApi => LedgerChoice::DataApi(DataApiTarget {
                cluster_arn: required("DB_CLUSTER_ARN", &self.db_cluster_arn, "the data-api ledger needs it")?,
                secret_arn: required("DB_SECRET_ARN", &self.db_secret_arn, "the data-api ledger needs it")?,
                database: required("DB_NAME", &self.db_name, "the data-api ledger needs it")?,
            }),
            LedgerKind::Sqlite(path) => LedgerChoice::Sqlite { path },
        };
        for (setting, value) in [("DB_CLUSTER_ARN", &self.db_cluster_arn), ("DB_SECRET_ARN", &self.db_secret_arn)] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty())
                && !v.starts_with("arn:")
            {
                return Err(err(setting, "must be an ARN (arn:aws:...)"));
            }
        }

        let sender_address = match mailer {
            MailerChoice::Ses => {
                required("SENDER_ADDRESS", &self.sender_address, "the ses mailer needs a verified From address")?
            }
            MailerChoice::Outbox { .. } => {
                self.sender_address.clone().unwrap_or_else(|| defaults::OUTBOX_SENDER_ADDRESS.to_owned())
            }
        };
        crate::order::CustomerEmail::parse(&sender_address)
            .map_err(|e| err("SENDER_ADDRESS", format!("is not a valid address: {}", e.rule)))?;

        let positive = |setting: &'static str, value: Option<f64>| match value {
            Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_SEND_RATE) => {
                Err(err(setting, format!("must be a positive number up to {MAX_SEND_RATE}")))
            }
            other => Ok(other),
        };
        let account_rate = positive("SES_ACCOUNT_MAX_SEND_RATE", self.ses_account_max_send_rate)?;
        if let Some(senders) = self.ses_senders
            && !(1..=10_000).contains(&senders)
        {
            return Err(err("SES_SENDERS", "must be between 1 and 10000"));
        }
        let ses_max_send_rate = match (positive("SES_MAX_SEND_RATE", self.ses_max_send_rate)?, account_rate) {
            (Some(share), Some(account)) if account < share => {
                return Err(err("SES_ACCOUNT_MAX_SEND_RATE", "must be at least SES_MAX_SEND_RATE"));
            }
            (Some(share), _) => Some(share),
            (None, Some(account)) => match self.ses_senders {
                Some(senders) => Some(account / f64::from(senders)),
                None => {
                    return Err(err(
                        "SES_ACCOUNT_MAX_SEND_RATE",
                        "needs SES_SENDERS or SES_MAX_SEND_RATE (to know this instance's starting share)",
                    ));
                }
            },
            (None, None) => None,
        };
        let ses_account_max_send_rate = account_rate;
        if let Some(batch) = self.expected_batch_size
            && !(1..=10_000).contains(&batch)
        {
            return Err(err("EXPECTED_BATCH_SIZE", "must be between 1 and 10000"));
        }
        let send_timeout = Duration::from_secs(self.send_timeout_seconds);
        if !(1..=300).contains(&send_timeout.as_secs()) {
            return Err(err("SEND_TIMEOUT_SECONDS", "must be between 1 and 300"));
        }
        let high_priority_reserve = self.high_priority_reserve;
        if !HIGH_PRIORITY_RESERVE_RANGE.contains(&high_priority_reserve) {
            return Err(err("HIGH_PRIORITY_RESERVE", "must be between 0.0 and 0.9"));
        }
        let send_concurrency = self.send_concurrency;
        if !(1..=256).contains(&send_concurrency) {
            return Err(err("SEND_CONCURRENCY", "must be between 1 and 256"));
        }
        let invocation_timeout = Duration::from_secs(self.invocation_timeout_seconds);
        // Upper bounds keep every duration far from overflowing the clock arithmetic built on it
        // (a deadline, a lease, a visibility timeout), so a typo names its setting at start-up.
        if !(1..=MAX_TIMEOUT_SECONDS).contains(&invocation_timeout.as_secs()) {
            return Err(err("INVOCATION_TIMEOUT_SECONDS", format!("must be between 1 and {MAX_TIMEOUT_SECONDS}")));
        }
        let safety_margin = Duration::from_secs(self.safety_margin_seconds);
        if safety_margin >= invocation_timeout {
            return Err(err("SAFETY_MARGIN_SECONDS", "must be less than INVOCATION_TIMEOUT_SECONDS"));
        }
        let backoff = crate::backoff::BackoffSettings {
            base: Duration::from_secs(self.backoff_base_seconds),
            cap: Duration::from_secs(self.backoff_cap_seconds),
            deferred: Duration::from_secs(self.deferred_delay_seconds),
        };
        if backoff.base.is_zero() || backoff.base > backoff.cap {
            return Err(err("BACKOFF_BASE_SECONDS", "must be at least 1 and at most BACKOFF_CAP_SECONDS"));
        }
        if backoff.cap > crate::backoff::MAX_VISIBILITY {
            return Err(err("BACKOFF_CAP_SECONDS", "must be at most 43200 (the SQS visibility limit)"));
        }
        if backoff.deferred > MAX_DELAY {
            return Err(err("DEFERRED_DELAY_SECONDS", "must be at most 900 (the SQS message delay limit)"));
        }
        let reconcile = crate::reconcile::ReconcileSettings {
            failed_for: Duration::from_secs(self.reconcile_failed_after_seconds),
            max_attempts: self.reconcile_max_attempts,
            grace: Duration::from_secs(self.unconfirmed_grace_seconds),
            ..crate::reconcile::ReconcileSettings::default()
        };
        if !(1..=MAX_ATTEMPTS).contains(&reconcile.max_attempts) {
            return Err(err("RECONCILE_MAX_ATTEMPTS", format!("must be between 1 and {MAX_ATTEMPTS}")));
        }
        if reconcile.failed_for > MAX_AGE {
            return Err(err(
                "RECONCILE_FAILED_AFTER_SECONDS",
                format!("must be at most {} (30 days)", MAX_AGE.as_secs()),
            ));
        }
        if reconcile.grace > MAX_AGE {
            return Err(err("UNCONFIRMED_GRACE_SECONDS", format!("must be at most {} (30 days)", MAX_AGE.as_secs())));
        }
        let payload_days = self.payload_retention_days;
        if !PAYLOAD_RETENTION_DAYS_RANGE.contains(&payload_days) {
            return Err(err("PAYLOAD_RETENTION_DAYS", format!("must be between 1 and {MAX_RETENTION_DAYS}")));
        }
        let horizon_days = self.ledger_horizon_days;
        if !LEDGER_HORIZON_DAYS_RANGE.contains(&horizon_days) {
            return Err(err(
                "LEDGER_HORIZON_DAYS",
                format!(
                    "must be between {MIN_HORIZON_DAYS} (longer than SQS keeps a message) and {MAX_RETENTION_DAYS}"
                ),
            ));
        }
        if horizon_days < payload_days {
            return Err(err("LEDGER_HORIZON_DAYS", "must be at least PAYLOAD_RETENTION_DAYS"));
        }
        let reconcile = crate::reconcile::ReconcileSettings {
            retention: crate::reconcile::Retention {
                payload_after: Duration::from_secs(payload_days * DAY),
                delete_after: Duration::from_secs(horizon_days * DAY),
                ..crate::reconcile::Retention::default()
            },
            ..reconcile
        };
        let lease_slack = Duration::from_secs(self.lease_slack_seconds);
        if lease_slack.as_secs() > MAX_TIMEOUT_SECONDS {
            return Err(err("LEASE_SLACK_SECONDS", format!("must be at most {MAX_TIMEOUT_SECONDS}")));
        }
        let send_event_wait = Duration::from_secs(self.send_event_wait_seconds);
        if send_event_wait.as_secs() > MAX_SEND_EVENT_WAIT_SECONDS {
            return Err(err(
                "SEND_EVENT_WAIT_SECONDS",
                format!("must be at most {MAX_SEND_EVENT_WAIT_SECONDS} (a waiting takeover holds a send slot)"),
            ));
        }
        let queue_urls: Vec<String> =
            self.queue_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        if let Some(n) = queue_urls.iter().position(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            return Err(err("QUEUE_URLS", format!("entry {} is not an http(s) queue URL", n + 1)));
        }
        let function_role = parse_function_role(self.function_role.as_deref())?;
        let metric_names = MetricNames {
            namespace: parse_metrics_namespace(Some(&self.metrics_namespace))?,
            service: parse_service_name(Some(&self.service_name))?,
        };
        Ok(Config {
            function_role,
            metric_names,
            commit: env!("ORDER_CONFIRMATION_COMMIT"),
            lease_slack,
            send_event_wait,
            backoff,
            reconcile,
            queue_urls,
            ledger,
            mailer,
            sender_address,
            ses_configuration_set: parse_configuration_set(self.ses_configuration_set.as_deref())?,
            status_url_template: parse_status_url_template(self.status_url_template.as_deref())?,
            ses_max_send_rate,
            ses_account_max_send_rate,
            ses_senders: self.ses_senders,
            expected_batch_size: self.expected_batch_size,
            high_priority_reserve,
            send_timeout,
            send_concurrency,
            safety_margin,
            invocation_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (Settings { queue_urls: vec!["orders-high".into()], ..Default::default() }, "QUEUE_URLS"),
            (Settings { ses_account_max_send_rate: Some(14.0), ..Default::default() }, "SES_ACCOUNT_MAX_SEND_RATE"),
            (Settings { ses_senders: Some(0), ..Default::default() }, "SES_SENDERS"),
            (Settings { expected_batch_size: Some(0), ..Default::default() }, "EXPECTED_BATCH_SIZE"),
            (Settings { function_role: Some("admin".into()), ..Default::default() }, "FUNCTION_ROLE"),
            (Settings { metrics_namespace: "AWS/Lambda".into(), ..Default::default() }, "POWERTOOLS_METRICS_NAMESPACE"),
            (
                Settings { metrics_namespace: "Orders\n".repeat(2), ..Default::default() },
                "POWERTOOLS_METRICS_NAMESPACE",
            ),
            (Settings { metrics_namespace: "N".repeat(256), ..Default::default() }, "POWERTOOLS_METRICS_NAMESPACE"),
            (Settings { service_name: "order confirmation".into(), ..Default::default() }, "POWERTOOLS_SERVICE_NAME"),
            (Settings { service_name: "s".repeat(256), ..Default::default() }, "POWERTOOLS_SERVICE_NAME"),
            (Settings { payload_retention_days: 0, ..Default::default() }, "PAYLOAD_RETENTION_DAYS"),
            (Settings { ledger_horizon_days: 14, ..Default::default() }, "LEDGER_HORIZON_DAYS"),
            (
                Settings { payload_retention_days: 60, ledger_horizon_days: 30, ..Default::default() },
                "LEDGER_HORIZON_DAYS",
            ),
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
            (
                Settings { reconcile_failed_after_seconds: u64::MAX, ..Default::default() },
                "RECONCILE_FAILED_AFTER_SECONDS",
            ),
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
            reconcile_failed_after_seconds: MAX_AGE.as_secs(),
            unconfirmed_grace_seconds: MAX_AGE.as_secs(),
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
            let mut args: Vec<&str> =
                base.iter().copied().filter(|a| name.as_ref().is_none_or(|n| !a.starts_with(n.as_str()))).collect();
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
        assert_eq!(
            with("order-confirmation_2").unwrap().ses_configuration_set.as_deref(),
            Some("order-confirmation_2")
        );
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
        assert_eq!(
            c.metric_names,
            MetricNames { namespace: "Shop/Orders".into(), service: "shop-confirmations".into() }
        );
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
}
