//! `stats`: the ledger's statistics, SES's delivery statistics and the queue depths.

use super::emit;
use crate::app;
use crate::config::Config;
use crate::stats;
use std::io::IsTerminal;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every this many seconds (at least 1) until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
}

pub async fn run(config: &Config, args: &StatsArgs) -> anyhow::Result<i32> {
    let ledger = app::existing_ledger(config).await?;
    let sqs =
        if config.queue_urls.is_empty() { None } else { Some(crate::aws::sqs_client(crate::aws::sdk_config().await)) };
    loop {
        let s = stats::gather(ledger.as_ref(), sqs.as_ref(), &config.queue_urls).await.map_err(|e| match e {
            stats::GatherError::Ledger { doing, error } => app::ledger_read_error(config, error, doing),
            stats::GatherError::Queues(error) => anyhow::Error::new(error).context("reading queue depths"),
        })?;
        if args.json {
            emit(format_args!("{}\n", serde_json::to_string_pretty(&s)?))?;
        } else {
            if args.watch.is_some() && std::io::stdout().is_terminal() {
                // Clear the screen and home the cursor, like `watch`; never into a pipe or file.
                emit("\x1b[2J\x1b[H")?;
            }
            emit(stats::render_table(&s.ledger))?;
            emit(stats::render_delivery(&s.delivery))?;
            emit(stats::render_queues(&s.queues))?;
        }
        let Some(every) = args.watch else { break };
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(0)
}
