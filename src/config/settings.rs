//! Every setting, declared once for clap with its flag, environment variable, default and help;
//! the Lambda entry parses the same definition from the environment alone.

use super::*;
use clap::Args;

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
    /// The source queues' redrive maxReceiveCount: a record failed on this receive goes to the DLQ
    /// and is counted as FailedOnLastReceive (the DLQ alarms read it)
    #[arg(long, env = "MAX_RECEIVE_COUNT", global = true, default_value_t = defaults::MAX_RECEIVE_COUNT)]
    pub max_receive_count: u32,
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
            max_receive_count: defaults::MAX_RECEIVE_COUNT,
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

/// The settings alone, as the Lambda entry reads them.
#[derive(clap::Parser)]
pub(super) struct EnvOnly {
    #[command(flatten)]
    pub(super) settings: Settings,
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
pub(super) fn unparsable(e: &clap::Error) -> ConfigError {
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
}
