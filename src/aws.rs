//! AWS SDK clients, built once per process and shared by every invocation. Endpoints come from
//! the SDK's standard settings, so tests point the real clients at local emulators with
//! `AWS_ENDPOINT_URL_RDS_DATA`, `AWS_ENDPOINT_URL_SESV2` and `AWS_ENDPOINT_URL_SQS`.
//!
//! Retries inside one call are the SDK's (standard mode: exponential backoff with jitter, a retry
//! quota); SQS redelivery does the retries across invocations.

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::region::ProfileFileRegionProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_runtime::retries::classifiers::AwsErrorCodeClassifier;
use std::time::Duration;

/// Shared SDK settings: region and credentials from the environment, bounded connect time.
/// Loaded once per process (credential resolution is not free) and reused by every client.
pub async fn sdk_config() -> &'static SdkConfig {
    static CONFIG: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();
    CONFIG
        .get_or_init(|| async {
            let imds = instance_metadata_client();
            let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else(ProfileFileRegionProvider::builder().build())
                .or_else(ImdsRegionProvider::builder().imds_client(imds.clone()).build())
                .region()
                .await;
            let credentials = DefaultCredentialsChain::builder().imds_client(imds).region(region.clone()).build().await;
            aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .credentials_provider(credentials)
                .retry_config(RetryConfig::standard().with_max_attempts(3))
                .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(3)).build())
                .load()
                .await
        })
        .await
}

/// The EC2 instance metadata endpoint, last in the region and credential chains: one attempt of
/// at most a second to connect and a second to answer. The SDK's default (four attempts with
/// backoff) kept a person without a region or credentials waiting 5-7 s for the one-line hint
/// off EC2, where nothing answers; on EC2 the endpoint answers in milliseconds. Lambda never gets
/// this far: its region and credentials are in the environment.
fn instance_metadata_client() -> aws_config::imds::Client {
    aws_config::imds::Client::builder()
        .max_attempts(1)
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .build()
}

/// Errors the Data API model does not mark retryable but that are: Aurora Serverless answers
/// `DatabaseResumingException` for the seconds it takes to wake, and the SDK should wait it out.
const DATA_API_TRANSIENT: &[&str] =
    &["DatabaseResumingException", "StatementTimeoutException", "RequestTimeout", "RequestTimeoutException"];

/// Data API client: more attempts and a longer backoff than the default, enough to ride out an
/// Aurora Serverless resume (seconds) inside one invocation.
pub fn rds_data_client(sdk: &SdkConfig) -> aws_sdk_rdsdata::Client {
    use aws_sdk_rdsdata::operation::{
        begin_transaction::BeginTransactionError, execute_statement::ExecuteStatementError,
    };
    let config = aws_sdk_rdsdata::config::Builder::from(sdk)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(6)
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(5)),
        )
        // The ledger's statements take milliseconds; an attempt that hangs for 15 s is a network
        // problem worth retrying, and the whole call must end well inside an invocation.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(15))
                .operation_timeout(Duration::from_secs(40))
                .build(),
        )
        .retry_classifier(
            AwsErrorCodeClassifier::<ExecuteStatementError>::builder().transient_errors(DATA_API_TRANSIENT).build(),
        )
        .retry_classifier(
            AwsErrorCodeClassifier::<BeginTransactionError>::builder().transient_errors(DATA_API_TRANSIENT).build(),
        )
        .build();
    aws_sdk_rdsdata::Client::from_conf(config)
}

/// SES v2 client: one attempt and the whole call (retries included) are bounded, so a hung
/// connection cannot eat the invocation; the pipeline starts no send unless `send_timeout` and
/// the record step still fit before the deadline. `rate_limited`: a send-rate limiter paces this
/// client's sends, so SES's throttling answer (429) is returned at once instead of retried by the
/// SDK: the limiter must see every one to cut its rate, and it paces the retry itself
/// (docs/design.md, "Deferral and the send rate").
pub fn sesv2_client(sdk: &SdkConfig, send_timeout: Duration, rate_limited: bool) -> aws_sdk_sesv2::Client {
    let mut config = aws_sdk_sesv2::config::Builder::from(sdk).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(send_timeout.min(Duration::from_secs(10)))
            .operation_timeout(send_timeout)
            .build(),
    );
    if rate_limited {
        config = config.retry_classifier(ThrottlingGoesToTheLimiter);
    }
    aws_sdk_sesv2::Client::from_conf(config.build())
}

/// Forbids the SDK's retry of an SES throttling answer (HTTP 429, TooManyRequestsException). An
/// SDK retry that succeeds hides the throttle from the send-rate limiter, which then keeps raising
/// its rate on "accepted" sends while every instance's calls pile onto the quota.
#[derive(Debug)]
struct ThrottlingGoesToTheLimiter;

impl aws_smithy_runtime_api::client::retries::classifiers::ClassifyRetry for ThrottlingGoesToTheLimiter {
    fn classify_retry(
        &self,
        ctx: &aws_smithy_runtime_api::client::interceptors::context::InterceptorContext,
    ) -> aws_smithy_runtime_api::client::retries::classifiers::RetryAction {
        use aws_smithy_runtime_api::client::retries::classifiers::RetryAction;
        match ctx.response() {
            Some(response) if response.status().as_u16() == 429 => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "SES throttling goes to the send-rate limiter"
    }
}

/// SQS client, for visibility changes, the `consume` worker and queue depths in `stats`.
pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                // Long polls wait up to 20 s; anything much longer is a dead connection.
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}
