//! The `order-confirmation` command line. Each subcommand's doc comment is its `--help` text.

use crate::app;
use crate::config::{Config, Mode, Settings};
use crate::lambda::EventKind;
use crate::order::OrderId;
use crate::stats;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
    /// Run the function once on an event file, exactly as Lambda would deliver it.
    ///
    /// Takes every event the deployed functions accept: an SQS batch, the reconcile schedule
    /// event or an operator request ({"operator": VERB, ...}). Prints the function's answer as
    /// JSON on stdout (for a batch, the SqsBatchResponse) and a summary plus logs on stderr.
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
    /// Event JSON file (the shape Lambda passes to the function); `-` reads stdin.
    #[arg(default_value = "events/sqs-batch.json")]
    pub event_file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh every this many seconds (at least 1) until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
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
    /// The priorities added up ([`stats::totals`]).
    pub totals: stats::Totals,
    /// What SES said about the mail sent in the last 24 hours, per priority.
    pub delivery: Vec<crate::ledger::DeliveryStats>,
    pub queues: Vec<crate::queues::QueueDepth>,
}

impl Statistics {
    pub fn new(
        ledger: crate::ledger::LedgerStats,
        delivery: Vec<crate::ledger::DeliveryStats>,
        queues: Vec<crate::queues::QueueDepth>,
    ) -> Self {
        Self { totals: stats::totals(&ledger), ledger, delivery, queues }
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The order id, as sent by checkout.
    pub order_id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit code for a failure at run time: a backend failed, or the answer was a failure.
pub const EXIT_RUNTIME: i32 = 1;
/// Exit code for a wrong command line or configuration (clap uses it for its own usage errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for "the order asked about is not there" (`status`, `retry`, `park`).
pub const EXIT_NOT_FOUND: i32 = 3;

/// A refusal the user fixes on the command line or in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Whoever read stdout went away (`stats --watch 1 | head -1`): the command ends quietly, as a
/// success, since the reader has all it wanted.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed by its reader")]
pub struct ClosedPipe;

/// Writes the command's answer to stdout; a closed pipe becomes [`ClosedPipe`], never a panic
/// (`print!` panics on it).
fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match write!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
        other => Ok(other.context("writing to stdout")?),
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

/// The exit code for an error [`run`] returned: 0 for a reader that closed stdout,
/// [`EXIT_USAGE`] for usage and configuration mistakes, [`EXIT_RUNTIME`] for everything else.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    if error.chain().any(|cause| cause.is::<ClosedPipe>()) {
        return 0;
    }
    let is_usage = error
        .chain()
        .any(|cause| cause.is::<Usage>() || cause.is::<crate::config::ConfigError>() || cause.is::<app::NoLedger>());
    if is_usage { EXIT_USAGE } else { EXIT_RUNTIME }
}

impl Cli {
    /// Parses the command line, exiting on `--help`, `--version` and usage errors as clap does,
    /// except that a bad value from an environment variable is reported under the variable's name
    /// (clap names the flag, which the user never typed) and without the value.
    pub fn parse_or_exit() -> Self {
        use clap::Parser;
        match Self::try_parse() {
            Ok(cli) => cli,
            Err(e) => match from_environment(&e) {
                Some(message) => {
                    eprintln!("error: {message}");
                    std::process::exit(EXIT_USAGE);
                }
                None => e.exit(),
            },
        }
    }
}

/// The message for a clap value error whose value came from an environment variable, if it did.
/// The argument is read from the error's context, then looked up in the command definition.
fn from_environment(e: &clap::Error) -> Option<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let variable = crate::config::setting_of(e, &command)?;
    let arg = command.get_arguments().find(|a| a.get_env().is_some_and(|v| v == variable.as_str()))?;
    let long = format!("--{}", arg.get_long()?);
    let typed = std::env::args().any(|a| a == long || a.starts_with(&format!("{long}=")));
    if typed || std::env::var_os(&variable).is_none() {
        return None;
    }
    let why = crate::config::parse_problem(e);
    Some(format!("configuration: {variable} is not valid: {why} (see --help for the accepted values)"))
}

/// Runs the parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let config = cli.settings.validate(Mode::Local)?;
    crate::logging::set_service(&config.metric_names.service);
    crate::metrics::configure(&config.metric_names);
    match cli.command {
        Command::Config => {
            emit(format_args!("{}\n", serde_json::to_string_pretty(&config)?))?;
            Ok(0)
        }
        Command::Migrate => {
            let ledger = app::build_ledger(&config).await?;
            ledger.migrate().await.context("migrate")?;
            eprintln!("migrations applied");
            Ok(0)
        }
        Command::Invoke(args) => invoke(&config, &args.event_file).await,
        Command::Stats(args) => {
            let ledger = app::existing_ledger(&config).await?;
            let sqs = if config.queue_urls.is_empty() {
                None
            } else {
                Some(crate::aws::sqs_client(crate::aws::sdk_config().await))
            };
            loop {
                let s = Statistics::new(
                    ledger.stats().await.map_err(|e| app::ledger_read_error(&config, e, "reading statistics"))?,
                    ledger
                        .delivery_stats()
                        .await
                        .map_err(|e| app::ledger_read_error(&config, e, "reading delivery statistics"))?,
                    match &sqs {
                        Some(client) => {
                            crate::queues::depths(client, &config.queue_urls).await.context("reading queue depths")?
                        }
                        None => Vec::new(),
                    },
                );
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
        Command::Consume(args) => {
            if config.queue_urls.is_empty() {
                return Err(usage("consume needs at least one --queue-url (or QUEUE_URLS), high priority first"));
            }
            let (ledger, pipeline) = app::build_ledger_and_pipeline(&config).await?;
            let sqs = crate::aws::sqs_client(crate::aws::sdk_config().await);
            let backoff = crate::backoff::VisibilityBackoff::new(sqs.clone(), config.backoff);
            let options = crate::consume::ConsumeOptions {
                queue_urls: config.queue_urls.clone(),
                wait: std::time::Duration::from_secs(args.wait_seconds),
                batch_timeout: config.invocation_timeout,
                idle_exit: args.idle_exit.map(std::time::Duration::from_secs),
            };
            let summary =
                crate::consume::run(&pipeline, ledger.as_ref(), &sqs, &backoff, &options, shutdown_signal()).await?;
            emit(format_args!("{}\n", serde_json::to_string(&summary)?))?;
            Ok(0)
        }
        Command::Retry(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
            let (ledger, pipeline) = app::build_ledger_and_pipeline(&config).await?;
            let Some(order) = ledger.release(&id).await.context("releasing the order")? else {
                eprintln!("order {id} is not abandoned or rejected; `status {id}` shows its state");
                return Ok(EXIT_NOT_FOUND);
            };
            eprintln!("released {id} for retry; re-sending it now");
            let report =
                crate::reconcile::resend(&pipeline, &[order], Instant::now() + config.invocation_timeout).await;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            let outcome = &report.records[0].outcome;
            emit(format_args!("{}\n", serde_json::to_string(outcome)?))?;
            Ok(if outcome.is_success() { 0 } else { EXIT_RUNTIME })
        }
        Command::Park(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
            let note = crate::ledger::park_note(&args.note).map_err(|rule| usage(format!("--note: {rule}")))?;
            let ledger = app::existing_ledger(&config).await?;
            match ledger.park(&id, note).await.map_err(|e| app::ledger_read_error(&config, e, "parking the order"))? {
                Some(state) => {
                    emit(stats::render_order(&state))?;
                    Ok(0)
                }
                None => {
                    eprintln!("order {id} is not abandoned: only an order automation gave up on can be parked");
                    Ok(EXIT_NOT_FOUND)
                }
            }
        }
        Command::Reconcile => {
            let (ledger, pipeline) = app::build_ledger_and_pipeline(&config).await?;
            let report = crate::reconcile::reconcile(
                &pipeline,
                ledger.as_ref(),
                &config.reconcile,
                Instant::now() + config.invocation_timeout,
            )
            .await
            .context("reconcile")?;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            emit(format_args!("{}\n", serde_json::to_string(&report)?))?;
            Ok(0)
        }
        Command::Status(args) => {
            let id = OrderId::parse(&args.order_id).map_err(|e| usage(e.to_string()))?;
            let ledger = app::existing_ledger(&config).await?;
            match ledger.order_state(&id).await.map_err(|e| app::ledger_read_error(&config, e, "reading the order"))? {
                None => {
                    eprintln!("{}", stats::not_in_ledger(&id));
                    Ok(EXIT_NOT_FOUND)
                }
                Some(state) if args.json => {
                    emit(format_args!("{}\n", serde_json::to_string_pretty(&state)?))?;
                    Ok(0)
                }
                Some(state) => {
                    emit(stats::render_order(&state))?;
                    Ok(0)
                }
            }
        }
    }
}

/// What `invoke` accepts, for the messages that refuse something else.
const INVOKE_EXPECTS: &str = "invoke takes an SQS batch (orders, or SES events from the events queue), the reconcile schedule event or an operator request as JSON \
                              (see events/); `-` reads stdin";

/// Reads the event (a file, or stdin for `-`) and runs it through the path the deployed function
/// takes for its kind.
async fn invoke(config: &Config, event_file: &Path) -> anyhow::Result<i32> {
    let text = if event_file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the event from stdin")?
    } else {
        std::fs::read_to_string(event_file).map_err(|e| {
            let looked = std::path::absolute(event_file).unwrap_or_else(|_| event_file.to_owned());
            if e.kind() == std::io::ErrorKind::NotFound {
                usage(format!("no event file at {}: {INVOKE_EXPECTS}", looked.display()))
            } else {
                usage(format!("cannot read the event file {}: {e}", looked.display()))
            }
        })?
    };
    let payload: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| usage(format!("the event is not JSON ({e}): {INVOKE_EXPECTS}")))?;
    let deadline = Instant::now() + config.invocation_timeout;
    let answer = match EventKind::of(&payload).map_err(usage)? {
        EventKind::SqsBatch => return invoke_batch(config, payload, deadline).await,
        EventKind::DeliveryEvents => return invoke_delivery_events(config, payload).await,
        EventKind::Schedule => {
            let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
            let report = crate::reconcile::reconcile(&pipeline, ledger.as_ref(), &config.reconcile, deadline)
                .await
                .context("reconcile")?;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            serde_json::to_value(report)?
        }
        EventKind::Operator => {
            let request = crate::operator::Request::parse(&payload)
                .map_err(|rule| usage(format!("operator request refused: {rule}")))?;
            let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
            let sqs = if config.queue_urls.is_empty() {
                None
            } else {
                Some(crate::aws::sqs_client(crate::aws::sdk_config().await))
            };
            let operator =
                crate::operator::Operator { pipeline: &pipeline, ledger: ledger.as_ref(), config, sqs: sqs.as_ref() };
            let answer = operator.answer(&request, deadline).await.map_err(|e| anyhow::anyhow!(e));
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            answer?
        }
        EventKind::CustomResource => {
            return Err(usage(
                "a CloudFormation custom-resource request is answered only by the deployed operator function \
                 (it replies to CloudFormation's pre-signed URL); run `migrate` to apply the schema locally",
            ));
        }
    };
    emit(format_args!("{}\n", serde_json::to_string(&answer)?))?;
    Ok(0)
}

/// A batch from the SES events queue: the handler's path, with the summary on stderr.
async fn invoke_delivery_events(config: &Config, payload: serde_json::Value) -> anyhow::Result<i32> {
    let event = crate::lambda::sqs_event(payload).map_err(|e| usage(format!("{e}: {INVOKE_EXPECTS}")))?;
    let ledger = app::build_ledger(config).await?;
    let report = crate::delivery::handle(ledger.as_ref(), &event).await;
    crate::metrics::record_delivery_events(&report);
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    emit(format_args!("{}\n", serde_json::to_string(&report.response())?))?;
    eprintln!("{}", report.summary());
    if report.unidentifiable_failures() > 0 {
        eprintln!("a failed event record has no messageId: Lambda would fail the invocation");
        return Ok(1);
    }
    Ok(0)
}

/// An SQS batch: the handler's path, with the batch summary on stderr.
async fn invoke_batch(config: &Config, payload: serde_json::Value, deadline: Instant) -> anyhow::Result<i32> {
    let event = crate::lambda::sqs_event(payload).map_err(|e| usage(format!("{e}: {INVOKE_EXPECTS}")))?;
    let (_, pipeline) = app::build_ledger_and_pipeline(config).await?;
    let mut report = pipeline.handle(&event, deadline).await;
    crate::finish::finish(&event, &mut report, None, None).await;
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    emit(format_args!("{}\n", serde_json::to_string(&report.response())?))?;
    eprintln!("{}", report.summary());
    let unnamed = report.unidentifiable_failures();
    if unnamed > 0 {
        eprintln!(
            "error: {unnamed} failed record(s) have no messageId and cannot be listed in batchItemFailures; \
             in Lambda this invocation fails so the whole batch is retried"
        );
        return Ok(EXIT_RUNTIME);
    }
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
