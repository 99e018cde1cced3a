//! The Lambda entry: with `AWS_LAMBDA_RUNTIME_API` set, the binary serves the Lambda runtime API.
//! Configuration is read and validated once, before the first poll; a missing setting stops
//! start-up with a message naming it (Lambda reports it as an init error). Backends and AWS
//! clients are built once and shared by every invocation.
//!
//! The same binary runs as two functions (`FUNCTION_ROLE`). The consumer handles SQS batches from
//! both queues and the EventBridge schedule that runs reconciliation; it refuses operator requests.
//! The operator function answers operator requests ([`crate::service::operator`]) and the CloudFormation
//! custom resource that migrates the schema during a deploy ([`crate::custom_resource`]).

use crate::app;
use crate::backoff::VisibilityBackoff;
use crate::config::{Config, FunctionRole, Mode, Settings};
use crate::ledger::LedgerOps;
use crate::metrics::{self, Sink};
use crate::pipeline::Pipeline;
use crate::service::operator::{self, Operator};
use crate::service::{self, BatchKind, EventKind};
use lambda_runtime::{Error, LambdaEvent, LambdaInvocation, service_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Starts the runtime loop. Returns only on a start-up error or when the runtime API goes away.
pub async fn run() -> Result<(), Error> {
    let config = match Settings::from_env().and_then(|s| s.validate(Mode::Lambda)) {
        Ok(c) => c,
        Err(e) => return Err(init_failed(e.to_string()).await),
    };
    crate::logging::set_service(&config.metric_names.service);
    metrics::configure(&config.metric_names);
    tracing::info!(ledger = ?config.ledger, mailer = ?config.mailer, "configuration loaded");
    let (ledger, pipeline) = match app::build_ledger_and_pipeline(&config).await {
        Ok(built) => built,
        Err(e) => return Err(init_failed(format!("{e:#}")).await),
    };
    let sqs = crate::aws::sqs_client(crate::aws::sdk_config().await);
    let backoff = VisibilityBackoff::new(sqs.clone(), config.backoff);
    let function = Arc::new(Function { ledger, pipeline, backoff, sqs, config });
    let handler = service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let function = Arc::clone(&function);
        async move { function.handle(event).await }
    });
    // What lambda_runtime::run does, with Invocations in place of its TracingLayer.
    lambda_runtime::Runtime::new(handler).layer(Invocations).run().await
}

/// Whether this execution environment has answered an invocation yet: the first one is its cold start.
static WARM: AtomicBool = AtomicBool::new(false);

/// The outermost layer around every invocation, in place of lambda_runtime's `TracingLayer`: it
/// runs the whole invocation, the runtime's own lines included (a panic, an event that does not
/// parse, a response the runtime API refused), in the span whose fields every log line of it
/// carries ([`crate::logging::invocation_span`]); the environment's first invocation also writes
/// the `ColdStart` metric.
struct Invocations;

impl<S> lambda_runtime::tower::Layer<S> for Invocations {
    type Service = InvocationService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InvocationService { inner }
    }
}

struct InvocationService<S> {
    inner: S,
}

impl<S> lambda_runtime::Service<LambdaInvocation> for InvocationService<S>
where
    S: lambda_runtime::Service<LambdaInvocation, Response = (), Error = Error>,
{
    type Response = ();
    type Error = Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let cold_start = !WARM.swap(true, Ordering::Relaxed);
        let ctx = &invocation.context;
        let span = crate::logging::invocation_span(cold_start, &ctx.request_id, ctx.xray_trace_id.as_deref());
        if cold_start {
            metrics::cold_start(&ctx.env_config.function_name, Sink::Stdout);
        }
        // Entered while the inner service starts, so spans it opens at once are children of it.
        let future = span.in_scope(|| self.inner.call(invocation));
        future.instrument(span)
    }
}

/// Logs a start-up failure and reports it to the runtime API's init-error endpoint (with the
/// runtime's own API client, which reads `AWS_LAMBDA_RUNTIME_API`), so Lambda and
/// `cargo lambda` show the message naming the setting instead of a bare exit code.
async fn init_failed(message: String) -> Error {
    tracing::error!(error = %message, "start-up failed");
    let body = serde_json::json!({"errorMessage": message, "errorType": "Runtime.ConfigurationError"}).to_string();
    let request = lambda_runtime_api_client::build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("content-type", "application/json")
        .header("lambda-runtime-function-error-type", "Runtime.ConfigurationError")
        .body(lambda_runtime_api_client::body::Body::from(body));
    let report = async {
        let client = lambda_runtime_api_client::PooledClient::builder().build();
        client.call(request?).await.map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(2), report).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not report the init error to the runtime API"),
        Err(_) => tracing::warn!("reporting the init error to the runtime API timed out"),
    }
    message.into()
}

/// What one process holds across invocations.
struct Function {
    /// The ledger's operations (reconcile, operator requests, the schema); the pipeline holds the
    /// same ledger for the hot path.
    ledger: Arc<dyn LedgerOps>,
    pipeline: Pipeline,
    backoff: VisibilityBackoff,
    sqs: aws_sdk_sqs::Client,
    config: Config,
}

/// The deadline Lambda gives this invocation, on tokio's clock. Lambda sends an absolute time in
/// Unix milliseconds; `cargo lambda watch` sends the timeout itself (e.g. `600000`). A value that
/// would lie decades in the past can only be such a duration, so it is read as one.
fn deadline(ctx: &lambda_runtime::Context) -> Instant {
    let now_ms = i128::from(crate::clock::unix_ms_now());
    let deadline = i128::from(ctx.deadline);
    const YEAR_2001_MS: i128 = 978_307_200_000;
    let remaining = if deadline < YEAR_2001_MS { deadline } else { deadline - now_ms };
    Instant::now() + Duration::from_millis(remaining.max(0) as u64)
}

impl Function {
    async fn handle(&self, event: LambdaEvent<serde_json::Value>) -> Result<serde_json::Value, Error> {
        let (payload, ctx) = event.into_parts();
        let deadline = deadline(&ctx);
        tracing::debug!(
            deadline_ms = ctx.deadline,
            remaining_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            "invocation"
        );
        let kind = EventKind::of(&payload);
        if self.config.function_role == FunctionRole::Operator {
            // Boxed: the operator paths (reconcile, the HTTPS answer) would make the runtime's
            // future too deep for the compiler's layout limit.
            return match kind {
                Ok(EventKind::CustomResource) => Box::pin(self.handle_custom_resource(payload)).await,
                Ok(EventKind::Operator) => Box::pin(self.handle_operator(payload, deadline)).await,
                _ => Err(format!(
                    "the operator function answers {{\"operator\": VERB}} requests ({}) and the LedgerSchema \
                     custom resource; queue batches and the schedule go to the consumer function",
                    operator::VERBS.join(", ")
                )
                .into()),
            };
        }
        let kind = match kind? {
            EventKind::Operator | EventKind::CustomResource => {
                // Restricted to the operator role: only it may invoke the operator function.
                return Err("operator requests are answered by the operator function (stack output \
                            OperatorFunctionName), not by the queue consumer"
                    .into());
            }
            EventKind::Schedule => {
                let report =
                    service::reconcile(&self.pipeline, self.ledger.as_ref(), &self.config.reconcile, deadline).await;
                metrics::flush(Sink::Stdout);
                return Ok(serde_json::to_value(report.map_err(|e| format!("reconcile failed: {e}"))?)?);
            }
            EventKind::DeliveryEvents => BatchKind::DeliveryEvents,
            EventKind::SqsBatch => BatchKind::Orders,
        };
        let event = service::sqs_event(payload)?;
        let answer =
            service::run_batch(&self.pipeline, self.ledger.as_ref(), kind, &event, deadline, Some(&self.backoff), None)
                .await;
        metrics::flush(Sink::Stdout);
        let unnamed = answer.unidentifiable_failures();
        if unnamed > 0 {
            // An empty itemIdentifier would fail the batch anyway; failing explicitly says why.
            // Redelivery is safe: the ledger acknowledges what this invocation already sent.
            let what = if kind == BatchKind::DeliveryEvents { "event record(s)" } else { "record(s)" };
            return Err(format!(
                "{unnamed} failed {what} have no messageId; failing the invocation so the batch is retried"
            )
            .into());
        }
        Ok(serde_json::to_value(answer.response())?)
    }

    /// The operator function's answer to one operator request.
    async fn handle_operator(&self, payload: serde_json::Value, deadline: Instant) -> Result<serde_json::Value, Error> {
        let request = operator::Request::parse(&payload).map_err(|rule| {
            tracing::warn!(rule = %rule, "operator request refused");
            format!("operator request refused: {rule}")
        })?;
        if request.changes_state() {
            tracing::warn!(verb = request.verb(), request = ?request, "operator request (changes state)");
        } else {
            tracing::info!(verb = request.verb(), request = ?request, "operator request (read-only)");
        }
        let sqs = (!self.config.queue_urls.is_empty()).then_some(&self.sqs);
        let settings = self.config.operator_settings();
        let quota = crate::app::ses_quota_source(&self.config).await;
        let operator = Operator {
            pipeline: &self.pipeline,
            ledger: self.ledger.as_ref(),
            settings: &settings,
            sqs,
            quota: quota.as_ref(),
        };
        let answer = operator.answer(&request, deadline).await;
        metrics::flush(Sink::Stdout);
        answer.map_err(|e| {
            tracing::error!(verb = request.verb(), error = %e, "operator request failed");
            e.to_string().into()
        })
    }

    /// Applies the schema for CloudFormation and answers on the pre-signed URL, exactly once.
    async fn handle_custom_resource(&self, payload: serde_json::Value) -> Result<serde_json::Value, Error> {
        let request: crate::custom_resource::CfnRequest = serde_json::from_value(payload)
            .map_err(|e| format!("not a CloudFormation custom-resource request: {e}"))?;
        let outcome = match request.action() {
            Ok(crate::custom_resource::Action::Keep) => Ok(serde_json::json!({"Commit": self.config.commit})),
            Ok(crate::custom_resource::Action::Migrate) => match self.ledger.migrate().await {
                Ok(_) => Ok(serde_json::json!({"Commit": self.config.commit})),
                Err(e) => Err(format!("migrate failed: {e}")),
            },
            Err(rule) => Err(rule),
        };
        metrics::flush(Sink::Stdout);
        match &outcome {
            Ok(_) => {
                tracing::info!(request_type = %request.request_type, commit = self.config.commit, "schema request done")
            }
            Err(e) => tracing::error!(request_type = %request.request_type, error = %e, "schema request failed"),
        }
        let response = request.response(&outcome);
        crate::custom_resource::send_response(&request.response_url, &response).await.map_err(|e| {
            tracing::error!(error = %e, "could not answer CloudFormation; the deploy waits for its timeout");
            e
        })?;
        Ok(response)
    }
}
