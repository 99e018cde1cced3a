//! `reconcile`: one reconciliation run, as the schedule runs it.

use super::emit;
use crate::app;
use crate::config::Config;
use crate::service;
use anyhow::Context;
use tokio::time::Instant;

pub async fn run(config: &Config) -> anyhow::Result<i32> {
    let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
    let deadline = Instant::now() + config.invocation_timeout;
    let report =
        service::reconcile(&pipeline, ledger.as_ref(), &config.reconcile, deadline).await.context("reconcile")?;
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    emit(format_args!("{}\n", serde_json::to_string(&report)?))?;
    Ok(0)
}
