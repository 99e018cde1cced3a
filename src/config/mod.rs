//! Configuration: typed, read once at start-up from flags and environment variables (flags win),
//! validated, and printable with secrets masked (`order-confirmation config`). A missing or wrong
//! setting is an error that names the setting; nothing falls back silently in Lambda.

use crate::ledger::data_api::DataApiTarget;
use crate::metrics::MetricNames;
use serde::Serialize;
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

/// Every setting's definition and default, in [`crate::defaults`]'s table (below the settings'
/// users, which build their `Default` from it); named here too because `--help` and the documents
/// read it as the configuration's.
pub use crate::defaults;

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

const DAY: u64 = 86_400;

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

mod settings;
mod validate;

pub use settings::{Setting, Settings, parse_problem, setting_of, settings};
pub use validate::parse_service_name;

#[cfg(test)]
mod tests;
