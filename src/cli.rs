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
    /// Show confirmation statistics from the ledger, per priority.
    Stats(StatsArgs),
    /// Show one order's confirmation state (no personal data).
    Status(StatusArgs),
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
            let report = pipeline.handle(&event, Instant::now() + config.invocation_timeout).await;
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
            let ledger = app::build_ledger(&config).await?;
            let s = ledger.stats().await.context("reading statistics")?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", stats::render_table(&s));
            }
            Ok(0)
        }
        Command::Status(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| anyhow::anyhow!("{e}"))?;
            let ledger = app::build_ledger(&config).await?;
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
