//! Wiring: turns a validated [`Config`] into backends and a [`Pipeline`]. Clients are built once
//! here and shared by every invocation.

use crate::aws;
use crate::config::{Config, LedgerChoice, MailerChoice};
use crate::error::SqlState;
use crate::ledger::data_api::DataApiLedger;
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, LedgerOps};
use crate::mailer::Mailer;
use crate::mailer::outbox::OutboxMailer;
use crate::mailer::quota::{QuotaSource, SendRates, exhaustion_warning};
use crate::mailer::ses::SesMailer;
use crate::pipeline::{Pipeline, PipelineSettings};
use crate::rate::{SendGate, SendRateLimiter};
use anyhow::Context;
use std::sync::Arc;

/// The ledger named by the configuration is not there. Read-only commands refuse it instead of
/// creating an empty one and reporting zeros about a typo.
#[derive(Debug, thiserror::Error)]
pub enum NoLedger {
    #[error("no ledger at {}; check --ledger or run migrate", .0.display())]
    File(std::path::PathBuf),
    #[error("no ledger in database {0}; check DB_NAME or run migrate")]
    Database(String),
    #[error("LEDGER=sqlite:{} is a directory; give the ledger file's path (e.g. {}/ledger.db)", .0.display(), .0.display())]
    Directory(std::path::PathBuf),
}

/// An error from a ledger read for a command: a Data API database without the ledger's tables
/// (PostgreSQL's undefined_table, [`SqlState::UndefinedTable`]) becomes
/// [`NoLedger::Database`]; anything else keeps its cause with `doing` as context.
pub fn ledger_read_error(config: &Config, error: crate::error::BackendError, doing: &'static str) -> anyhow::Error {
    match &config.ledger {
        LedgerChoice::DataApi(target) if error.sql_state == Some(SqlState::UndefinedTable) => {
            NoLedger::Database(target.database.clone()).into()
        }
        _ => anyhow::Error::new(error).context(doing),
    }
}

/// The ledger for commands that only read or change existing orders (`stats`, `status`, `park`):
/// like [`build_ledger`], but a SQLite file that does not exist is an error, never created.
pub async fn existing_ledger(config: &Config) -> anyhow::Result<Arc<dyn LedgerOps>> {
    refuse_directory(config)?;
    if let LedgerChoice::Sqlite { path } = &config.ledger
        && !path.exists()
    {
        return Err(NoLedger::File(path.clone()).into());
    }
    build_ledger(config).await
}

/// A SQLite ledger path that names a directory: SQLite only says "unable to open database file".
fn refuse_directory(config: &Config) -> Result<(), NoLedger> {
    match &config.ledger {
        LedgerChoice::Sqlite { path } if path.is_dir() => Err(NoLedger::Directory(path.clone())),
        _ => Ok(()),
    }
}

/// The ledger for commands that only read (`stats`, `status`): like [`existing_ledger`], but a
/// SQLite file whose schema is current is opened read-only and not migrated, so a ledger file
/// this user may not write can still be read. An older schema is migrated as before.
pub async fn ledger_to_read(config: &Config) -> anyhow::Result<Arc<dyn LedgerOps>> {
    refuse_directory(config)?;
    if let LedgerChoice::Sqlite { path } = &config.ledger {
        if !path.exists() {
            return Err(NoLedger::File(path.clone()).into());
        }
        let ledger = SqliteLedger::open_read_only(path).with_context(|| format!("LEDGER=sqlite:{}", path.display()))?;
        if ledger.is_current().await.context("reading the SQLite ledger's schema version")? {
            return Ok(Arc::new(ledger));
        }
    }
    existing_ledger(config).await
}

/// The ledger as the commands name it on stderr and in `stats --json`: which file or which
/// database was read, so a stray default never passes for the real ledger.
pub fn ledger_name(config: &Config) -> String {
    match &config.ledger {
        LedgerChoice::Sqlite { path } => format!("sqlite:{}", path.display()),
        LedgerChoice::DataApi(target) => format!("data-api:{} database {}", target.cluster_arn, target.database),
    }
}

/// The ledger for `migrate`: as [`build_ledger`], but a SQLite ledger is not migrated on opening,
/// so `migrate` itself applies what is pending and can say which migrations ran.
pub async fn ledger_to_migrate(config: &Config) -> anyhow::Result<Arc<dyn LedgerOps>> {
    refuse_directory(config)?;
    match &config.ledger {
        LedgerChoice::Sqlite { path } => {
            Ok(Arc::new(SqliteLedger::open(path).with_context(|| format!("LEDGER=sqlite:{}", path.display()))?))
        }
        LedgerChoice::DataApi(_) => build_ledger(config).await,
    }
}

/// The whole ledger the configuration names (hot path and operations).
pub async fn build_ledger(config: &Config) -> anyhow::Result<Arc<dyn LedgerOps>> {
    refuse_directory(config)?;
    Ok(match &config.ledger {
        LedgerChoice::Sqlite { path } => {
            let ledger = SqliteLedger::open(path).with_context(|| format!("LEDGER=sqlite:{}", path.display()))?;
            // The embedded ledger migrates itself so `make run` works on a fresh clone.
            ledger.migrate().await.context("migrating the SQLite ledger")?;
            Arc::new(ledger)
        }
        LedgerChoice::DataApi(target) => {
            Arc::new(DataApiLedger::new(aws::rds_data_client(aws::sdk_config().await), target.clone()))
        }
    })
}

/// `rate_limited`: a send-rate limiter paces this mailer's sends, so SES's throttling answers go to
/// it rather than to the SDK's retries ([`aws::sesv2_client`]).
pub async fn build_mailer(config: &Config, rate_limited: bool) -> anyhow::Result<Arc<dyn Mailer>> {
    Ok(match &config.mailer {
        MailerChoice::Outbox { dir } => Arc::new(
            OutboxMailer::new(dir, config.sender_address.clone())
                .with_context(|| format!("MAILER=outbox:{}", dir.display()))?,
        ),
        MailerChoice::Ses => Arc::new(SesMailer::new(
            aws::sesv2_client(aws::sdk_config().await, config.send_timeout, rate_limited),
            config.sender_address.clone(),
            config.ses_configuration_set.clone(),
        )),
    })
}

pub fn pipeline_settings(config: &Config) -> PipelineSettings {
    PipelineSettings {
        concurrency: config.send_concurrency,
        safety_margin: config.safety_margin,
        lease_slack: config.lease_slack,
        send_event_wait: config.send_event_wait,
        send_timeout: config.send_timeout,
        mail: crate::render::MailSettings { status_url: config.status_url_template.clone() },
        ..PipelineSettings::default()
    }
}

/// The pipeline on `ledger` (the one [`build_ledger`] returned, whose operations the caller keeps
/// for reconciliation and operator requests).
pub async fn build_pipeline(config: &Config, ledger: Arc<dyn Ledger>) -> anyhow::Result<Pipeline> {
    if let Some(warning) = config.sizing_warning() {
        tracing::warn!("{warning}");
    }
    let rates = send_rates(config).await;
    let mailer = build_mailer(config, rates.share.is_some()).await?;
    let gate = rates.share.map(|share| {
        let ceiling = rates.ceiling.unwrap_or(share);
        Arc::new(SendRateLimiter::new(share, ceiling, config.high_priority_reserve)) as Arc<dyn SendGate>
    });
    Ok(Pipeline::new(ledger, mailer, gate, pipeline_settings(config)))
}

/// The limiter's rates: from the settings when `SES_ACCOUNT_MAX_SEND_RATE` is set or the mailer is
/// not SES; otherwise from the account's quota (`GetAccount`), read once here. A failed read falls
/// back to the settings with one log line and never stops the start (docs/design.md, "Deferral
/// and the send rate").
async fn send_rates(config: &Config) -> SendRates {
    let settings = |quota| {
        SendRates::choose(config.ses_max_send_rate, config.ses_account_max_send_rate, config.ses_senders, quota)
    };
    if !matches!(config.mailer, MailerChoice::Ses) || config.ses_account_max_send_rate.is_some() {
        return settings(None);
    }
    let client = aws::sesv2_client(aws::sdk_config().await, config.send_timeout, false);
    match crate::mailer::quota::read(&client).await {
        Ok(quota) => {
            let rates = settings(Some(&quota));
            tracing::info!(
                max_send_rate = quota.max_send_rate,
                max_24_hour_send = quota.max_24_hour_send,
                sent_last_24_hours = quota.sent_last_24_hours,
                share = rates.share,
                "send rate sized from the SES account's quota (GetAccount)"
            );
            // The pace of the last 24 hours kept up: warns when the quota is already used up.
            if let Some(warning) = exhaustion_warning(&quota, quota.sent_last_24_hours / 86_400.0) {
                tracing::warn!("{warning}");
            }
            rates
        }
        Err(e) => {
            let rates = settings(None);
            let fallback = match rates.share {
                Some(share) => format!("SES_MAX_SEND_RATE {share}"),
                None => "no limiter: no SES_MAX_SEND_RATE or SES_ACCOUNT_MAX_SEND_RATE set".to_owned(),
            };
            tracing::warn!(error = %e, "reading the SES account's send quota (GetAccount) failed; mailing goes on with the send rate from the settings: {fallback}");
            rates
        }
    }
}

/// Where `config` and `stats` read the SES quota from: `None` unless the mailer is SES.
pub async fn ses_quota_source(config: &Config) -> Option<QuotaSource> {
    if !matches!(config.mailer, MailerChoice::Ses) {
        return None;
    }
    Some(QuotaSource {
        client: aws::sesv2_client(aws::sdk_config().await, config.send_timeout, false),
        share: config.ses_max_send_rate,
        account: config.ses_account_max_send_rate,
        senders: config.ses_senders,
    })
}

/// [`build_ledger_and_pipeline`] on a ledger that must exist ([`existing_ledger`]): `retry`,
/// `reconcile` and operator requests change orders a ledger already holds, and only `migrate`
/// (or the first batch) may create one.
pub async fn existing_ledger_and_pipeline(config: &Config) -> anyhow::Result<(Arc<dyn LedgerOps>, Pipeline)> {
    let ledger = existing_ledger(config).await?;
    let pipeline = build_pipeline(config, ledger.clone()).await?;
    Ok((ledger, pipeline))
}

/// The whole ledger and a pipeline on it: what every entry point that sends needs (the pipeline
/// uses the hot path, reconciliation and operator requests the operations).
pub async fn build_ledger_and_pipeline(config: &Config) -> anyhow::Result<(Arc<dyn LedgerOps>, Pipeline)> {
    let ledger = build_ledger(config).await?;
    let pipeline = build_pipeline(config, ledger.clone()).await?;
    Ok((ledger, pipeline))
}
