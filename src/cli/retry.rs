//! `retry`: release an abandoned or rejected order and re-send it at once.

use super::{EXIT_NOT_FOUND, EXIT_RUNTIME, emit, usage};
use crate::app;
use crate::config::Config;
use crate::order::OrderId;
use crate::service;
use anyhow::Context;
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
}

pub async fn run(config: &Config, args: &RetryArgs) -> anyhow::Result<i32> {
    let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
    let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
    let deadline = Instant::now() + config.invocation_timeout;
    let retried = service::retry(&pipeline, ledger.as_ref(), &id, deadline).await;
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    let Some(report) = retried.context("releasing the order")? else {
        eprintln!("order {id} is not abandoned or rejected; `status {id}` shows its state");
        return Ok(EXIT_NOT_FOUND);
    };
    let Some(outcome) = report.records.first().map(|r| &r.outcome) else {
        return Err(anyhow::anyhow!("the re-sent batch reported no record for order {id}"));
    };
    eprintln!("released {id} for retry and re-sent it");
    emit(format_args!("{}\n", serde_json::to_string(outcome)?))?;
    Ok(if outcome.is_success() { 0 } else { EXIT_RUNTIME })
}
