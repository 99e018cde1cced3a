//! The `order-confirmation` command line. Each subcommand's doc comment is its `--help` text.

use crate::app;
use crate::config::{Mode, Settings};
use crate::order::OrderId;
use crate::stats;
use anyhow::Context;
use aws_lambda_events::sqs::SqsEvent;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tokio::time::Instant;

/// Sends every paid order its confirmation exactly once.
///
/// Settings come from flags or environment variables (flags win). Without LEDGER and MAILER the
/// embedded local defaults are used: a SQLite ledger in .local/ledger.db and .eml files in
/// .local/outbox/. Inside Lambda (AWS_LAMBDA_RUNTIME_API set) the binary serves the Lambda
/// runtime API instead and ignores the command line.
#[derive(Debug, Parser)]
#[command(name = "order-confirmation", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the handler once on an SQS event file, exactly as Lambda would deliver it.
    ///
    /// Prints the SqsBatchResponse JSON on stdout and a summary plus logs on stderr.
    Invoke(InvokeArgs),
    /// Show confirmation statistics from the ledger, per priority, and queue depths.
    ///
    /// Queue depths (waiting, in flight, DLQ) appear when queue URLs are configured
    /// (--queue-url or QUEUE_URLS).
    Stats(StatsArgs),
    /// Long-poll the queues and process them like Lambda's event source mapping would.
    ///
    /// Give the high-priority queue first: it is always polled ahead of the others.
    /// Acknowledged records are deleted; failed ones get a backoff visibility timeout and come
    /// back. SIGINT/SIGTERM finish the batch in hand, then exit.
    Consume(ConsumeArgs),
    /// Re-send orders stuck in `sending` past their lease or `failed` for too long, and report
    /// how many orders are unconfirmed (what the UnconfirmedOrders alarm watches).
    Reconcile,
    /// Show one order's confirmation state (no personal data).
    Status(StatusArgs),
    /// Retry one order that reconciliation abandoned or SES rejected, once its cause is fixed.
    ///
    /// The order is released (status `failed`, attempts reset) and re-sent at once from its
    /// stored payload through the normal claim, send and record path. Prints the outcome.
    Retry(RetryArgs),
    /// Park an abandoned order: record that a person took it over, so it leaves the
    /// UnconfirmedOrders count (the alarm can then page for the next one). `retry` clears it.
    Park(ParkArgs),
    /// Apply the ledger's schema migrations.
    Migrate,
    /// Print the effective configuration (secrets masked) and exit.
    Config,
}

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// SQS event JSON file (the shape Lambda passes to the function).
    #[arg(default_value = "events/sqs-batch.json")]
    pub event_file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every this many seconds until interrupted.
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
}

#[derive(Debug, clap::Args)]
pub struct ParkArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
    /// Who handles it, or which ticket tracks it (at most 200 characters).
    #[arg(long)]
    pub note: String,
}

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Long-poll wait on the last queue, in seconds (1-20).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub wait_seconds: u64,
    /// Exit after this many seconds without a message (default: run until signalled).
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
}

/// Everything `stats` reports.
#[derive(Debug, serde::Serialize)]
pub struct Statistics {
    #[serde(flatten)]
    pub ledger: crate::ledger::LedgerStats,
    pub queues: Vec<crate::queues::QueueDepth>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = cli.settings.validate(Mode::Local)?;
    match cli.command {
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&config)?);
            Ok(0)
        }
        Command::Migrate => {
            let ledger = app::build_ledger(&config).await?;
            ledger.migrate().await.context("migrate")?;
            eprintln!("migrations applied");
            Ok(0)
        }
        Command::Invoke(args) => {
            let text = std::fs::read_to_string(&args.event_file)
                .with_context(|| format!("reading event file {}", args.event_file.display()))?;
            let event: SqsEvent = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an SQS event", args.event_file.display()))?;
            let pipeline = app::build_pipeline(&config).await?;
            let mut report = pipeline.handle(&event, Instant::now() + config.invocation_timeout).await;
            crate::finish::finish(&event, &mut report, None, None).await;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            println!("{}", serde_json::to_string(&report.response())?);
            eprintln!("{}", report.summary());
            let unnamed = report.unidentifiable_failures();
            if unnamed > 0 {
                eprintln!(
                    "error: {unnamed} failed record(s) have no messageId and cannot be listed in batchItemFailures; \
                     in Lambda this invocation fails so the whole batch is retried"
                );
                return Ok(1);
            }
            Ok(0)
        }
        Command::Stats(args) => {
            let ledger = app::existing_ledger(&config).await?;
            let sqs = if config.queue_urls.is_empty() {
                None
            } else {
                Some(crate::aws::sqs_client(crate::aws::sdk_config().await))
            };
            loop {
                let s = Statistics {
                    ledger: ledger.stats().await.context("reading statistics")?,
                    queues: match &sqs {
                        Some(client) => {
                            crate::queues::depths(client, &config.queue_urls).await.context("reading queue depths")?
                        }
                        None => Vec::new(),
                    },
                };
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    if args.watch.is_some() {
                        // Clear the screen and home the cursor, like `watch`.
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", stats::render_table(&s.ledger));
                    print!("{}", stats::render_queues(&s.queues));
                }
                let Some(every) = args.watch else { break };
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(every.max(1))) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
            Ok(0)
        }
        Command::Consume(args) => {
            if config.queue_urls.is_empty() {
                anyhow::bail!("consume needs at least one --queue-url (or QUEUE_URLS), high priority first");
            }
            let pipeline = app::build_pipeline(&config).await?;
            let sqs = crate::aws::sqs_client(crate::aws::sdk_config().await);
            let backoff = crate::backoff::VisibilityBackoff::new(sqs.clone(), config.backoff);
            let options = crate::consume::ConsumeOptions {
                queue_urls: config.queue_urls.clone(),
                wait: std::time::Duration::from_secs(args.wait_seconds),
                batch_timeout: config.invocation_timeout,
                idle_exit: args.idle_exit.map(std::time::Duration::from_secs),
            };
            let summary = crate::consume::run(&pipeline, &sqs, &backoff, &options, shutdown_signal()).await?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(0)
        }
        Command::Retry(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let pipeline = app::build_pipeline(&config).await?;
            let Some(order) = pipeline.ledger().release(&id).await.context("releasing the order")? else {
                eprintln!("order {id} is not abandoned or rejected; `status {id}` shows its state");
                return Ok(3);
            };
            eprintln!("released {id} for retry; re-sending it now");
            let report =
                crate::reconcile::resend(&pipeline, &[order], Instant::now() + config.invocation_timeout).await;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            let outcome = &report.records[0].outcome;
            println!("{}", serde_json::to_string(outcome)?);
            Ok(if outcome.is_success() { 0 } else { 1 })
        }
        Command::Park(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let note = crate::ledger::park_note(&args.note).map_err(|rule| anyhow::anyhow!("--note: {rule}"))?;
            let ledger = app::existing_ledger(&config).await?;
            match ledger.park(&id, note).await.context("parking the order")? {
                Some(state) => {
                    print!("{}", stats::render_order(&state));
                    Ok(0)
                }
                None => {
                    eprintln!("order {id} is not abandoned: only an order automation gave up on can be parked");
                    Ok(3)
                }
            }
        }
        Command::Reconcile => {
            let pipeline = app::build_pipeline(&config).await?;
            let report =
                crate::reconcile::reconcile(&pipeline, &config.reconcile, Instant::now() + config.invocation_timeout)
                    .await
                    .context("reconcile")?;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            println!("{}", serde_json::to_string(&report)?);
            Ok(0)
        }
        Command::Status(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ledger = app::existing_ledger(&config).await?;
            match ledger.order_state(&id).await.context("reading the order")? {
                None => {
                    eprintln!("order {id} is not in the ledger (never received, or rejected before it had a valid id)");
                    Ok(3)
                }
                Some(state) if args.json => {
                    println!("{}", serde_json::to_string_pretty(&state)?);
                    Ok(0)
                }
                Some(state) => {
                    print!("{}", stats::render_order(&state));
                    Ok(0)
                }
            }
        }
    }
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
