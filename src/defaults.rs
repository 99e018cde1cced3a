//! Every setting, defined once: its variable, its field, its type, its default, its bounds and
//! its help, in [`every_setting!`]'s table. Adding a setting is one row here, its use, and the
//! template where it is deployed.
//!
//! The table lives in the ground layer because the settings' users below the configuration
//! (backoff, reconcile, the pipeline, metrics) build their `Default` from its constants. It is
//! read twice: here, into one constant per default (`defaults::SEND_TIMEOUT_SECONDS`), and in
//! [`crate::config`], into clap's `Settings` (flags, environment variables, `--help`), its
//! `Default`, the bounds check of [`crate::config::Settings::validate`] and the
//! [`crate::config::SETTINGS`] description that tests/docs.rs compares the README's table with.
//!
//! A row: its help as doc comments, then optionally extra `#[arg(..)]` attributes for clap, then
//! `VARIABLE field: Type`, then any of
//! - `= default`: clap's default and `Settings::default()`'s, also `defaults::VARIABLE`;
//! - `local "value" "when"`: a default that applies only outside Lambda, also `defaults::VARIABLE`;
//! - `in low..=high`, optionally `because "reason"`: the values start-up accepts; a value
//!   outside fails naming the variable (the bound and the reason are in the message, the value
//!   never is).

/// The longest invocation budget and lease slack: 12 hours, the SQS visibility limit (a batch
/// cannot be held longer anyway).
pub const MAX_TIMEOUT_SECONDS: u64 = 12 * 3600;
/// The longest a takeover may wait for the previous holder's Send event: beyond this the wait
/// costs more invocation time than the events' delivery is worth waiting for.
pub const MAX_SEND_EVENT_WAIT_SECONDS: u64 = 300;
/// The longest SQS message delay (`DelaySeconds`), used for deferred copies.
pub const MAX_DELAY_SECONDS: u64 = 900;
/// Reconcile and alarm ages: 30 days, longer than SQS keeps any message.
pub const MAX_AGE_SECONDS: u64 = 30 * 24 * 3600;
/// Retention periods, in days: at most ten years.
pub const MAX_RETENTION_DAYS: u64 = 3650;
/// The shortest horizon: longer than SQS keeps a message (14 days), so a redelivered message
/// still finds its row and is not mailed twice.
pub const MIN_HORIZON_DAYS: u64 = 15;
/// The `attempts` column is a PostgreSQL `integer`; no sane bound is near it.
pub const MAX_ATTEMPTS: i64 = 1_000_000;

/// The table of every setting; `$then!` receives its rows (see the module's documentation for a
/// row's parts). Rows are in the order `config` prints, `--help` lists and start-up checks them.
macro_rules! every_setting {
    ($then:ident) => {
        $then! {
            /// Ledger backend: `data-api` or `sqlite:<path>` (required in Lambda)
            LEDGER ledger: Option<String>, local "sqlite:.local/ledger.db" "locally";
            /// Mail backend: `ses` or `outbox:<dir>` (required in Lambda)
            MAILER mailer: Option<String>, local "outbox:.local/outbox" "locally";
            /// Aurora cluster ARN (data-api ledger).
            #[arg(hide_env_values = true)]
            DB_CLUSTER_ARN db_cluster_arn: Option<String>;
            /// Secrets Manager ARN of the database credentials (data-api ledger).
            #[arg(hide_env_values = true)]
            DB_SECRET_ARN db_secret_arn: Option<String>;
            /// Database name (data-api ledger).
            DB_NAME db_name: Option<String>;
            /// From address of the confirmations (required for ses)
            SENDER_ADDRESS sender_address: Option<String>, local "orders@example.com" "with the outbox";
            /// SES configuration set for event publishing (optional).
            SES_CONFIGURATION_SET ses_configuration_set: Option<String>;
            /// The order status page linked from every mail, an https URL with `{order_id}` in it
            /// (e.g. https://shop.example/orders/{order_id}); no link when unset.
            STATUS_URL_TEMPLATE status_url_template: Option<String>;
            /// This instance's share of the SES send quota, in mails per second (unset: derived from
            /// SES_ACCOUNT_MAX_SEND_RATE / SES_SENDERS when both are set, otherwise unlimited).
            SES_MAX_SEND_RATE ses_max_send_rate: Option<f64>;
            /// The account's whole SES sending rate, mails per second: this instance's rate climbs toward
            /// it while SES accepts and backs off when SES throttles (unset with MAILER=ses: read from
            /// SES GetAccount at start-up; otherwise stays at SES_MAX_SEND_RATE).
            SES_ACCOUNT_MAX_SEND_RATE ses_account_max_send_rate: Option<f64>;
            /// How many instances may send at once (the function's reserved concurrency): each starts at
            /// SES_ACCOUNT_MAX_SEND_RATE / SES_SENDERS when SES_MAX_SEND_RATE is unset.
            SES_SENDERS ses_senders: Option<u32>, in 1..=10000;
            /// The largest batch an invocation receives (the event source mappings' BatchSize): start-up
            /// warns once when it cannot be mailed within the timeout at this instance's share.
            EXPECTED_BATCH_SIZE expected_batch_size: Option<u32>, in 1..=10000;
            /// Longest one SES send may take, retries included, before it is abandoned
            SEND_TIMEOUT_SECONDS send_timeout_seconds: u64 = 15, in 1..=300;
            /// Share of the send rate kept for high-priority orders
            HIGH_PRIORITY_RESERVE high_priority_reserve: f64 = 0.2, in 0.0..=0.9;
            /// Sends in flight at once per invocation
            SEND_CONCURRENCY send_concurrency: usize = 16, in 1..=256;
            /// No send starts with less than this many seconds left in the invocation
            SAFETY_MARGIN_SECONDS safety_margin_seconds: u64 = 5;
            /// Invocation time budget for runs outside Lambda (`invoke`, `consume`)
            INVOCATION_TIMEOUT_SECONDS invocation_timeout_seconds: u64 = 60, in 1..=MAX_TIMEOUT_SECONDS;
            /// Added to the invocation's remaining time to form an order's lease
            LEASE_SLACK_SECONDS lease_slack_seconds: u64 = 60, in 0..=MAX_TIMEOUT_SECONDS;
            /// How long after SES accepts a mail its Send event is expected in the ledger: an order taken
            /// over from a dead holder is mailed again only once this long has passed since the holder's
            /// last possible send, unless the event arrives
            SEND_EVENT_WAIT_SECONDS send_event_wait_seconds: u64 = 30, in 0..=MAX_SEND_EVENT_WAIT_SECONDS
                because "a waiting takeover holds a send slot";
            /// First retry delay of a transiently failed message, doubled per receive
            BACKOFF_BASE_SECONDS backoff_base_seconds: u64 = 30;
            /// Longest retry delay of a transiently failed message
            BACKOFF_CAP_SECONDS backoff_cap_seconds: u64 = 900, in 0..=MAX_TIMEOUT_SECONDS
                because "the SQS visibility limit";
            /// First retry delay of a deferred message (no send slot or no time left), doubled per receive
            DEFERRED_DELAY_SECONDS deferred_delay_seconds: u64 = 5, in 0..=MAX_DELAY_SECONDS
                because "the SQS message delay limit";
            /// The source queues' redrive maxReceiveCount: a record failed on this receive goes to the DLQ
            /// and is counted as FailedOnLastReceive (the DLQ alarms read it)
            MAX_RECEIVE_COUNT max_receive_count: u32 = 5, in 1..=1000 because "the SQS maxReceiveCount range";
            /// Reconciliation retries a `failed` order once it has not changed for this long
            RECONCILE_FAILED_AFTER_SECONDS reconcile_failed_after_seconds: u64 = 600, in 0..=MAX_AGE_SECONDS
                because "30 days";
            /// Attempts after which reconciliation marks an order `abandoned`
            RECONCILE_MAX_ATTEMPTS reconcile_max_attempts: i64 = 10, in 1..=MAX_ATTEMPTS;
            /// Orders younger than this do not count as unconfirmed
            UNCONFIRMED_GRACE_SECONDS unconfirmed_grace_seconds: u64 = 300, in 0..=MAX_AGE_SECONDS
                because "30 days";
            /// Days after sending that the scheduled reconcile removes a confirmed order's payload (name,
            /// address, items)
            PAYLOAD_RETENTION_DAYS payload_retention_days: u64 = 30, in 1..=MAX_RETENTION_DAYS;
            /// Days after first sight that the scheduled reconcile deletes a finished order's row
            LEDGER_HORIZON_DAYS ledger_horizon_days: u64 = 400, in MIN_HORIZON_DAYS..=MAX_RETENTION_DAYS
                because "the shortest is longer than SQS keeps a message";
            /// SQS queue URLs, high priority first (for `consume` and the queue depths in `stats`);
            /// comma-separated in the environment.
            #[arg(long = "queue-url", value_delimiter = ',')]
            QUEUE_URLS queue_urls: Vec<String>;
            /// What a Lambda function answers: `consumer` (queue batches and the reconcile schedule) or
            /// `operator` (operator requests and the schema custom resource)
            FUNCTION_ROLE function_role: String = "consumer";
            /// CloudWatch namespace of the metrics (Powertools' variable)
            POWERTOOLS_METRICS_NAMESPACE metrics_namespace: String = "OrderConfirmation";
            /// The `service` key of every JSON log line and the `service` dimension of every metric
            /// (Powertools' variable)
            POWERTOOLS_SERVICE_NAME service_name: String = "order-confirmation";
        }
    };
}
pub(crate) use every_setting;

/// The type a default constant has for a field of type `Self` (`&str` for a `String` field).
pub trait DefaultOf {
    type Const;
}
macro_rules! default_of {
    ($($ty:ty => $const:ty),* $(,)?) => { $(impl DefaultOf for $ty { type Const = $const; })* };
}
default_of!(u32 => u32, u64 => u64, i64 => i64, usize => usize, f64 => f64, String => &'static str);

/// One constant per default: `defaults::SEND_TIMEOUT_SECONDS`, and the local ones
/// (`defaults::LEDGER`). Settings without a default have no constant.
macro_rules! constants {
    ($(
        $(#[doc = $doc:literal])*
        $(#[arg($($arg:tt)*)])*
        $name:ident $field:ident : $ty:ty
            $(= $default:expr)?
            $(, local $local:literal $when:literal)?
            $(, in $low:tt ..= $high:tt $(because $why:literal)?)?;
    )*) => {$(
        $(
            #[doc = concat!("`", stringify!($name), "`'s default.")]
            pub const $name: <$ty as DefaultOf>::Const = $default;
        )?
        $(
            #[doc = concat!("`", stringify!($name), "`'s default ", $when, ".")]
            pub const $name: &str = $local;
        )?
    )*};
}
every_setting!(constants);
