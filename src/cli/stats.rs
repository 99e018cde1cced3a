//! `stats`: the ledger's statistics, SES's delivery statistics and the queue depths.

use super::emit;
use crate::app;
use crate::config::Config;
use crate::service::operator;
use crate::stats;
use std::io::IsTerminal;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every this many seconds (at least 1) until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = watch_seconds)]
    pub watch: Option<u64>,
}

/// `--watch`'s value: clap's own messages for it were `0 is not in 1..18446744073709551615` and
/// `invalid digit found in string`; this one says what the flag takes.
fn watch_seconds(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(seconds) if seconds >= 1 => Ok(seconds),
        _ => Err("--watch takes a whole number of seconds, at least 1 (e.g. --watch 5)".to_owned()),
    }
}

pub async fn run(config: &Config, args: &StatsArgs) -> anyhow::Result<i32> {
    let ledger = app::ledger_to_read(config).await?;
    let sqs =
        if config.queue_urls.is_empty() { None } else { Some(crate::aws::sqs_client(crate::aws::sdk_config().await)) };
    let quota_source = app::ses_quota_source(config).await;
    loop {
        let s = stats::gather(ledger.as_ref(), sqs.as_ref(), &config.queue_urls).await.map_err(|e| match e {
            stats::GatherError::Ledger { doing, error } => app::ledger_read_error(config, error, doing),
            stats::GatherError::Queues(error) => anyhow::Error::new(error).context("reading queue depths"),
        })?;
        let quota = operator::stats_quota(&s, quota_source.as_ref()).await;
        if args.json {
            let mut json = operator::stats_document(&s, quota.as_ref())?;
            json["ledger"] = app::ledger_name(config).into();
            if args.watch.is_some() {
                // One document per line with its time (NDJSON): what `jq`, log shippers and a
                // later reader of the file can tell apart.
                json["at"] = crate::logging::timestamp().into();
                emit(format_args!("{}\n", serde_json::to_string(&json)?))?;
            } else {
                emit(format_args!("{}\n", serde_json::to_string_pretty(&json)?))?;
            }
        } else {
            if args.watch.is_some() && std::io::stdout().is_terminal() {
                // Clear the screen and home the cursor, like `watch`; never into a pipe or file.
                emit("\x1b[2J\x1b[H")?;
            }
            emit(stats::render_table(&s.ledger))?;
            emit(stats::render_delivery(&s.delivery))?;
            emit(stats::render_queues(&s.queues))?;
            if let Some(quota) = &quota {
                emit(quota.line())?;
            }
            if args.watch.is_some() && !std::io::stdout().is_terminal() {
                // Into a pipe or file the refreshes follow each other: each ends with its time.
                emit(format_args!("-- as of {} --\n\n", crate::logging::timestamp()))?;
            }
        }
        let Some(every) = args.watch else { break };
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(every)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(0)
}
