//! `invoke`: one event, exactly as the deployed functions would take it.

use super::{EXIT_RUNTIME, emit, usage};
use crate::app;
use crate::config::Config;
use crate::service::{self, BatchKind, EventKind, operator};
use anyhow::Context;
use std::path::{Path, PathBuf};
use tokio::time::Instant;

#[derive(Debug, clap::Args)]
pub struct InvokeArgs {
    /// Event JSON file (the shape Lambda passes to the function, e.g. events/sqs-batch.json);
    /// `-` reads stdin. Required: with production settings a default sample would mail its orders.
    pub event_file: Option<PathBuf>,
}

/// What `invoke` accepts, for the messages that refuse something else.
const INVOKE_EXPECTS: &str = "invoke takes an SQS batch (orders, or SES events from the events queue), the reconcile schedule event or an operator request as JSON \
                              (see events/); `-` reads stdin";

/// Reads the event (a file, or stdin for `-`) and runs it through the path the deployed function
/// takes for its kind.
pub async fn run(config: &Config, args: &InvokeArgs) -> anyhow::Result<i32> {
    // Never a default: with the production settings exported, running a sample event would claim
    // and mail its orders for real.
    let Some(event_file) = args.event_file.as_deref() else {
        return Err(usage(format!(
            "invoke needs an event file (EVENT_FILE), e.g. events/sqs-batch.json; it never runs a sample by \
             default. {INVOKE_EXPECTS}"
        )));
    };
    let bytes = if event_file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("reading the event from stdin")?;
        bytes
    } else {
        std::fs::read(event_file).map_err(|e| {
            let looked = std::path::absolute(event_file).unwrap_or_else(|_| event_file.to_owned());
            if e.kind() == std::io::ErrorKind::NotFound {
                usage(format!("no event file at {}: {INVOKE_EXPECTS}", looked.display()))
            } else {
                usage(format!("cannot read the event file {}: {e}", looked.display()))
            }
        })?
    };
    // The same bytes get the same answer from a file and from stdin; a UTF-8 byte order mark
    // (editors on Windows write one) is not part of the JSON.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        usage(format!("the event is not UTF-8 text (invalid byte at offset {}): {INVOKE_EXPECTS}", e.valid_up_to()))
    })?;
    let payload: serde_json::Value =
        serde_json::from_str(text).map_err(|e| usage(format!("the event is not JSON ({e}): {INVOKE_EXPECTS}")))?;
    let deadline = Instant::now() + config.invocation_timeout;
    let answer = match EventKind::of(&payload).map_err(usage)? {
        EventKind::SqsBatch => return invoke_batch(config, BatchKind::Orders, payload, deadline).await,
        EventKind::DeliveryEvents => return invoke_batch(config, BatchKind::DeliveryEvents, payload, deadline).await,
        EventKind::Schedule => {
            let (ledger, pipeline) = app::existing_ledger_and_pipeline(config).await?;
            let report = service::reconcile(&pipeline, ledger.as_ref(), &config.reconcile, deadline)
                .await
                .context("reconcile")?;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            serde_json::to_value(report)?
        }
        EventKind::Operator => invoke_operator(config, &payload, deadline).await?,
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

/// An operator request, answered by the same [`operator::Operator`] the deployed function runs.
async fn invoke_operator(
    config: &Config,
    payload: &serde_json::Value,
    deadline: Instant,
) -> anyhow::Result<serde_json::Value> {
    let request =
        operator::Request::parse(payload).map_err(|rule| usage(format!("operator request refused: {rule}")))?;
    // Only migrate may create a ledger; every other request answers about an existing one.
    let (ledger, pipeline) = if request == operator::Request::Migrate {
        app::build_ledger_and_pipeline(config).await?
    } else {
        app::existing_ledger_and_pipeline(config).await?
    };
    let sqs =
        if config.queue_urls.is_empty() { None } else { Some(crate::aws::sqs_client(crate::aws::sdk_config().await)) };
    let settings = config.operator_settings();
    let quota = app::ses_quota_source(config).await;
    let operator = operator::Operator {
        pipeline: &pipeline,
        ledger: ledger.as_ref(),
        settings: &settings,
        sqs: sqs.as_ref(),
        quota: quota.as_ref(),
    };
    let answer = operator.answer(&request, deadline).await.map_err(|e| anyhow::anyhow!(e));
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    answer
}

/// A queue batch of either kind: the handler's path without a queue to change visibility on,
/// with the response on stdout and the summary on stderr.
async fn invoke_batch(
    config: &Config,
    kind: BatchKind,
    payload: serde_json::Value,
    deadline: Instant,
) -> anyhow::Result<i32> {
    let event = service::sqs_event(payload).map_err(|e| usage(format!("{e}: {INVOKE_EXPECTS}")))?;
    let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
    let answer = service::run_batch(&pipeline, ledger.as_ref(), kind, &event, deadline, None, None).await;
    crate::metrics::flush(crate::metrics::Sink::Stderr);
    let unnamed = answer.unidentifiable_failures();
    if unnamed > 0 {
        // Lambda returns no response for a failed invocation; printing one here would say
        // "done" beside an exit code that says the whole batch comes back.
        eprintln!("{}", answer.summary());
        eprintln!(
            "error: {unnamed} failed record(s) have no messageId and cannot be listed in batchItemFailures; \
             in Lambda this invocation fails (no response) so the whole batch is retried"
        );
        return Ok(EXIT_RUNTIME);
    }
    emit(format_args!("{}\n", serde_json::to_string(&answer.response())?))?;
    eprintln!("{}", answer.summary());
    if let service::BatchAnswer::Orders(report) = &answer {
        let transient = report
            .records
            .iter()
            .filter(|r| matches!(r.outcome, crate::batch::RecordOutcome::TransientFailure { .. }))
            .count();
        if transient > 0 && !report.records.iter().any(|r| r.outcome.is_success()) {
            eprintln!(
                "error: no order was confirmed and {transient} failed with a transient error (a backend call failed); \
                 the queue would deliver them again"
            );
            return Ok(EXIT_RUNTIME);
        }
    }
    Ok(0)
}
