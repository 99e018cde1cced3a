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
    /// Event JSON file (the shape Lambda passes to the function); `-` reads stdin.
    #[arg(default_value = "events/sqs-batch.json")]
    pub event_file: PathBuf,
}

/// What `invoke` accepts, for the messages that refuse something else.
const INVOKE_EXPECTS: &str = "invoke takes an SQS batch (orders, or SES events from the events queue), the reconcile schedule event or an operator request as JSON \
                              (see events/); `-` reads stdin";

/// Reads the event (a file, or stdin for `-`) and runs it through the path the deployed function
/// takes for its kind.
pub async fn run(config: &Config, args: &InvokeArgs) -> anyhow::Result<i32> {
    let event_file = args.event_file.as_path();
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
        EventKind::SqsBatch => return invoke_batch(config, BatchKind::Orders, payload, deadline).await,
        EventKind::DeliveryEvents => return invoke_batch(config, BatchKind::DeliveryEvents, payload, deadline).await,
        EventKind::Schedule => {
            let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
            let report = service::reconcile(&pipeline, ledger.as_ref(), &config.reconcile, deadline)
                .await
                .context("reconcile")?;
            crate::metrics::flush(crate::metrics::Sink::Stderr);
            serde_json::to_value(report)?
        }
        EventKind::Operator => {
            let request = operator::Request::parse(&payload)
                .map_err(|rule| usage(format!("operator request refused: {rule}")))?;
            let (ledger, pipeline) = app::build_ledger_and_pipeline(config).await?;
            let sqs = if config.queue_urls.is_empty() {
                None
            } else {
                Some(crate::aws::sqs_client(crate::aws::sdk_config().await))
            };
            let settings = config.operator_settings();
            let operator = operator::Operator {
                pipeline: &pipeline,
                ledger: ledger.as_ref(),
                settings: &settings,
                sqs: sqs.as_ref(),
            };
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
    emit(format_args!("{}\n", serde_json::to_string(&answer.response())?))?;
    eprintln!("{}", answer.summary());
    let unnamed = answer.unidentifiable_failures();
    if unnamed > 0 {
        eprintln!(
            "error: {unnamed} failed record(s) have no messageId and cannot be listed in batchItemFailures; \
             in Lambda this invocation fails so the whole batch is retried"
        );
        return Ok(EXIT_RUNTIME);
    }
    Ok(0)
}
