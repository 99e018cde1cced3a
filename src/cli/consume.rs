//! `consume`: the long-poll worker, with the event source mapping's semantics.

use super::{emit, usage};
use crate::app;
use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Long-poll wait on the last queue, in seconds (1-20).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub wait_seconds: u64,
    /// Exit after this many seconds without a message, counted from when this worker's own
    /// deferred copies are back on their queue (default: run until signalled).
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
    /// Receive as a Lambda event source mapping delivers: batches of this many messages (the
    /// mapping's BatchSize), gathered within --batching-window-seconds, whatever the send rate.
    /// Default: receive what the send rate can mail within two seconds (at most ten).
    #[arg(long, value_name = "MESSAGES", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub batch_size: Option<u64>,
    /// With --batch-size: how long to gather a batch after its first message (the mapping's
    /// MaximumBatchingWindowInSeconds, 0-300).
    #[arg(long, value_name = "SECONDS", default_value_t = 0, requires = "batch_size",
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub batching_window_seconds: u64,
}

pub async fn run(config: &Config, args: &ConsumeArgs) -> anyhow::Result<i32> {
    if config.queue_urls.is_empty() {
        return Err(usage("consume needs at least one --queue-url (or QUEUE_URLS), high priority first"));
    }
    let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
    let sqs = crate::aws::sqs_client(crate::aws::sdk_config().await);
    let backoff = crate::backoff::VisibilityBackoff::new(sqs.clone(), config.backoff);
    let options = crate::consume::ConsumeOptions {
        queue_urls: config.queue_urls.clone(),
        wait: std::time::Duration::from_secs(args.wait_seconds),
        batch_timeout: config.invocation_timeout,
        lease_slack: config.lease_slack,
        idle_exit: args.idle_exit.map(std::time::Duration::from_secs),
        mapping: args.batch_size.map(|size| crate::consume::MappingBatch {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            window: std::time::Duration::from_secs(args.batching_window_seconds),
        }),
    };
    let summary = crate::consume::run(&pipeline, ledger.as_ref(), &sqs, &backoff, &options, shutdown_signal()).await?;
    emit(format_args!("{}\n", serde_json::to_string(&summary)?))?;
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM (what ECS, systemd and Ctrl-C send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received: finishing the batch in hand");
}
