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
    let (ledger, pipeline) = app::existing_ledger_and_pipeline(config).await?;
    let Some(before) =
        ledger.order_state(&id).await.map_err(|e| app::ledger_read_error(config, e, "reading the order"))?
    else {
        eprintln!("{}", crate::stats::not_in_ledger(&id));
        return Ok(EXIT_NOT_FOUND);
    };
    if let Some(note) = before.parked_note.as_deref().filter(|_| before.parked_at.is_some()) {
        eprintln!("order {id} is parked with the note \"{note}\": retry mails it now and clears the parking");
    }
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
    let answer = crate::service::operator::retry_answer(&id, Some(outcome));
    emit(format_args!("{}\n", serde_json::to_string(&answer)?))?;
    Ok(if outcome.is_success() { 0 } else { EXIT_RUNTIME })
}
