//! The `order-confirmation` command line. Each subcommand's doc comment is its `--help` text.

mod consume;
mod invoke;
mod park;
mod reconcile;
mod retry;
mod stats;
mod status;

pub use consume::ConsumeArgs;
pub use invoke::InvokeArgs;
pub use park::ParkArgs;
pub use retry::RetryArgs;
pub use stats::StatsArgs;
pub use status::StatusArgs;

use crate::app;
use crate::config::{Mode, Settings};
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Sends every paid order its confirmation exactly once.
///
/// Settings come from flags or environment variables (flags win). Without LEDGER and MAILER the
/// embedded local defaults are used: a SQLite ledger in .local/ledger.db and .eml files in
/// .local/outbox/. Inside Lambda (AWS_LAMBDA_RUNTIME_API set) the binary serves the Lambda
/// runtime API instead and ignores the command line.
#[derive(Debug, Parser)]
#[command(name = "order-confirmation", version = VERSION, propagate_version = true, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub settings: Settings,
    /// The settings given as flags on this command line (the rest came from the environment or
    /// their defaults), so that an error names what the person typed.
    #[arg(skip)]
    pub typed: TypedFlags,
}

/// Which settings came from flags on the command line: `(variable, --flag)` pairs.
#[derive(Debug, Clone, Default)]
pub struct TypedFlags(Vec<(String, String)>);

impl TypedFlags {
    /// Reads from `matches` which of `command`'s settings were given on the command line.
    fn of(command: &clap::Command, matches: &clap::ArgMatches) -> Self {
        use clap::parser::ValueSource;
        let typed = command
            .get_arguments()
            .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
            .filter_map(|arg| Some((arg.get_env()?.to_str()?.to_owned(), format!("--{}", arg.get_long()?))))
            .collect();
        Self(typed)
    }

    /// The configuration error with every setting given as a flag named by that flag: the person
    /// typed `--ledger-horizon-days`, not `LEDGER_HORIZON_DAYS`.
    pub fn name_in(&self, error: crate::config::ConfigError) -> crate::config::ConfigError {
        let flag_of = |variable: &str| self.0.iter().find(|(v, _)| v == variable).map(|(_, flag)| flag.clone());
        let setting = flag_of(&error.setting).unwrap_or(error.setting);
        // Variables named in the problem ("must be at least PAYLOAD_RETENTION_DAYS") are whole
        // upper-case words; only those typed as flags are renamed.
        let problem = error
            .problem
            .split_inclusive(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map(|piece| {
                let word =
                    piece.trim_end_matches(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
                match flag_of(word) {
                    Some(flag) => format!("{flag}{}", &piece[word.len()..]),
                    None => piece.to_owned(),
                }
            })
            .collect();
        crate::config::ConfigError { setting, problem }
    }
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
    /// stored payload through the normal claim, send and record path. Prints the outcome as the
    /// operator's retry request answers it.
    Retry(RetryArgs),
    /// Park an abandoned order: record that a person took it over, so it leaves the
    /// UnconfirmedOrders count (the alarm can then page for the next one). `retry` clears it.
    Park(ParkArgs),
    /// Apply the ledger's schema migrations; prints which ran (none when the schema is current).
    Migrate,
    /// Print the effective configuration (secrets masked) and exit.
    ///
    /// One key per setting, named as its environment variable, with the value in the unit the
    /// setting takes.
    Config,
    /// Print a shell completion script for bash, zsh or fish.
    ///
    /// bash: `source <(order-confirmation completions bash)` (or save it in
    /// ~/.local/share/bash-completion/completions/order-confirmation); zsh: save it as
    /// `_order-confirmation` in a directory on $fpath; fish: save it in
    /// ~/.config/fish/completions/order-confirmation.fish.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): every command, setting and exit code.
    ///
    /// Read it with `order-confirmation man | man -l -`, or install it as
    /// /usr/local/share/man/man1/order-confirmation.1.
    Man,
}

/// The end of every subcommand's `--help`: the shared settings are listed once, in the
/// top-level `--help`, rather than repeated under each subcommand.
const SHARED_SETTINGS_HELP: &str = "Settings: every command also takes the shared settings (--ledger, --mailer, \
--queue-url and the rest), as flags or environment variables: `order-confirmation --help` lists them, \
as does `order-confirmation man`, with the exit codes.";

/// The command line as parsed. The shared settings are global (a flag works after any
/// subcommand); each subcommand gets its own hidden copy of them, so its `--help` shows its own
/// options and points to the top-level list. clap copies a global argument only into a
/// subcommand that lacks one of the same id, and hands a value given after the subcommand up to
/// the top level as it does for its own copies.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let shared: Vec<clap::Arg> = command.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    let names: Vec<String> = command.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in names {
        command = command.mut_subcommand(name, |sub| {
            shared
                .iter()
                .fold(sub, |sub, arg| sub.arg(arg.clone().global(false).hide(true)))
                .after_help(SHARED_SETTINGS_HELP)
        });
    }
    command
}

/// `--version`: the crate's version and the commit the binary was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ORDER_CONFIRMATION_COMMIT"), ")");

/// The exit codes, at the end of `--help` (the README's table says the same).
const EXIT_CODES_HELP: &str = "Exit codes:
  0  done (also when the reader of stdout went away)
  1  a failure at run time: a backend or AWS call failed, or the answer was a failure
  2  a usage or configuration mistake (the message names the flag or setting)
  3  the order asked about is not in the ledger, or not in a state for the request";

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
        use clap::FromArgMatches;
        let command = command();
        let parsed = command.clone().try_get_matches().and_then(|matches| {
            Ok(Self { typed: TypedFlags::of(&command, &matches), ..Self::from_arg_matches(&matches)? })
        });
        match parsed {
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

/// Whether the configuration talks to AWS (Data API, SES or SQS), so a region must be known.
fn needs_aws(config: &crate::config::Config) -> bool {
    matches!(config.ledger, crate::config::LedgerChoice::DataApi(_))
        || matches!(config.mailer, crate::config::MailerChoice::Ses)
        || !config.queue_urls.is_empty()
}

/// Runs the parsed command line. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // Generated from the command line's definition alone: no setting needs to be valid for them.
    if let Command::Completions { .. } | Command::Man = &cli.command {
        return generated(&cli.command);
    }
    let config = cli.settings.validate(Mode::Local).map_err(|e| cli.typed.name_in(e))?;
    if needs_aws(&config)
        && !matches!(cli.command, Command::Config)
        && crate::aws::sdk_config().await.region().is_none()
    {
        return Err(usage(
            "no AWS region: set AWS_REGION (or AWS_PROFILE with a region in ~/.aws/config) for the Data API, SES and SQS",
        ));
    }
    if !matches!(cli.command, Command::Config) {
        eprintln!("ledger: {}", app::ledger_name(&config));
    }
    crate::logging::set_service(&config.metric_names.service);
    crate::metrics::configure(&config.metric_names);
    match &cli.command {
        Command::Config => {
            let mut printed = cli.settings.printed(&config);
            // With SES as the mailer, the account's quota as GetAccount reads it now, beside the
            // rates the limiter starts from (an error, if any, instead of the quota).
            if let Some(quota) = app::ses_quota_source(&config).await {
                printed.add("ses_send_quota", serde_json::to_value(quota.report(None).await)?);
            }
            emit(format_args!("{}\n", serde_json::to_string_pretty(&printed)?))?;
            Ok(0)
        }
        Command::Migrate => {
            let ledger = app::ledger_to_migrate(&config).await?;
            let applied = ledger.migrate().await.context("migrate")?;
            if applied.is_empty() {
                eprintln!("no migration was pending: the schema is current");
            } else {
                eprintln!("applied {} migration(s): {}", applied.len(), applied.join(", "));
            }
            let answer = crate::service::operator::migrate_answer(&applied, config.commit);
            emit(format_args!("{}\n", serde_json::to_string(&answer)?))?;
            Ok(0)
        }
        Command::Invoke(args) => invoke::run(&config, args).await,
        Command::Stats(args) => stats::run(&config, args).await,
        Command::Consume(args) => consume::run(&config, args).await,
        Command::Retry(args) => retry::run(&config, args).await,
        Command::Park(args) => park::run(&config, args).await,
        Command::Reconcile => reconcile::run(&config).await,
        Command::Status(args) => status::run(&config, args).await,
        Command::Completions { .. } | Command::Man => generated(&cli.command),
    }
}

/// `completions` and `man`: printed from the full definition (settings included, so a setting
/// completes after any subcommand); other commands print nothing here.
fn generated(command: &Command) -> anyhow::Result<i32> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "order-confirmation", &mut out)
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut out).context("writing the manual page")?,
        _ => {}
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if let Command::Completions { shell: clap_complete::Shell::Bash } = command {
        // clap_complete 4.6 names the subcommands' cases `order__subcmd__confirmation__subcmd__X`
        // (the `-` in the binary's name read as a subcommand separator) but looks them up as
        // `order__confirmation__subcmd__X`, so nothing after a subcommand would complete.
        // `completions_complete_subcommands_and_settings_in_bash…` runs the script in bash.
        text = text.replace("order__subcmd__confirmation", "order__confirmation");
    }
    emit(text)?;
    Ok(0)
}
