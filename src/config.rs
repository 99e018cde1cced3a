//! Configuration: typed, read once at start-up from flags and environment variables (flags win),
//! validated, and printable with secrets masked (`order-confirmation config`). A missing or wrong
//! setting is an error that names the setting; nothing falls back silently in Lambda.

use crate::ledger::data_api::DataApiTarget;
use crate::metrics::MetricNames;
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

/// Every setting's default, defined in [`crate::defaults`] (below the settings' users, which
/// build their `Default` from it); named here too because `--help` and the documents read it as
/// the configuration's.
pub use crate::defaults;

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
    pub ses_max_send_rate: Option<f64>,
    pub ses_account_max_send_rate: Option<f64>,
    pub ses_senders: Option<u32>,
    pub expected_batch_size: Option<u32>,
    pub high_priority_reserve: f64,
    #[serde(with = "crate::serde_helpers::secs")]
    pub send_timeout: Duration,
    pub send_concurrency: usize,
    #[serde(with = "crate::serde_helpers::secs")]
    pub safety_margin: Duration,
    #[serde(with = "crate::serde_helpers::secs")]
    pub invocation_timeout: Duration,
    #[serde(with = "crate::serde_helpers::secs")]
    pub lease_slack: Duration,
    #[serde(with = "crate::serde_helpers::secs")]
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
    /// What the operator's answers need ([`crate::service::operator::Operator`]).
    pub fn operator_settings(&self) -> crate::service::operator::OperatorSettings {
        crate::service::operator::OperatorSettings {
            reconcile: self.reconcile,
            queue_urls: self.queue_urls.clone(),
            commit: self.commit,
            printed: serde_json::to_value(self).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
        }
    }

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

    /// The typed configuration, or the first wrong setting, named. The groups below are checked
    /// in this order (backends, send rates, sending, retry timing, reconciliation, takeovers,
    /// queues), so the setting reported first does not depend on how the code is split.
    pub fn validate(&self, mode: Mode) -> Result<Config, ConfigError> {
        let (ledger, mailer, sender_address) = self.backends(mode)?;
        let (ses_max_send_rate, ses_account_max_send_rate) = self.send_rates()?;
        let (send_timeout, high_priority_reserve, send_concurrency, invocation_timeout, safety_margin) =
            self.sending()?;
        let backoff = self.backoff()?;
        let reconcile = self.reconcile()?;
        let (lease_slack, send_event_wait) = self.takeovers()?;
        let queue_urls = self.queue_urls()?;
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

    /// `LEDGER`, `MAILER`, the Data API target and the From address.
    fn backends(&self, mode: Mode) -> Result<(LedgerChoice, MailerChoice, String), ConfigError> {
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

        Ok((ledger, mailer, sender_address))
    }

    /// This instance's starting share of the SES rate and the account's rate.
    fn send_rates(&self) -> Result<(Option<f64>, Option<f64>), ConfigError> {
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
        Ok((ses_max_send_rate, account_rate))
    }

    /// The batch size, the send timeout, the reserve, the concurrency and the invocation's time.
    fn sending(&self) -> Result<(Duration, f64, usize, Duration, Duration), ConfigError> {
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
        Ok((send_timeout, high_priority_reserve, send_concurrency, invocation_timeout, safety_margin))
    }

    /// How failed and deferred records come back.
    fn backoff(&self) -> Result<crate::backoff::BackoffSettings, ConfigError> {
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
        Ok(backoff)
    }

    /// Reconciliation and retention.
    fn reconcile(&self) -> Result<crate::reconcile::ReconcileSettings, ConfigError> {
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
        Ok(reconcile)
    }

    /// How long a takeover waits: the lease's slack and the wait for a dead holder's Send event.
    fn takeovers(&self) -> Result<(Duration, Duration), ConfigError> {
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
        Ok((lease_slack, send_event_wait))
    }

    /// `QUEUE_URLS`, trimmed, each an http(s) URL.
    fn queue_urls(&self) -> Result<Vec<String>, ConfigError> {
        let queue_urls: Vec<String> =
            self.queue_urls.iter().map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect();
        if let Some(n) = queue_urls.iter().position(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            return Err(err("QUEUE_URLS", format!("entry {} is not an http(s) queue URL", n + 1)));
        }
        Ok(queue_urls)
    }
}

#[cfg(test)]
mod tests;
