//! The settings as clap reads them (flags, environment variables, `--help`), their `Default`,
//! their bounds and their description, all built from the one table in
//! [`crate::defaults::every_setting!`]; the Lambda entry parses the same definition from the
//! environment alone.

use super::*;
use crate::defaults::{DefaultOf, MAX_AGE_SECONDS, MAX_ATTEMPTS, MAX_DELAY_SECONDS, MAX_RETENTION_DAYS};
use crate::defaults::{MAX_SEND_EVENT_WAIT_SECONDS, MAX_TIMEOUT_SECONDS, MIN_HORIZON_DAYS};
use clap::Args;

/// One setting as the table defines it: what the README's configuration table and the template's
/// parameters are checked against (tests/docs.rs, tests/template.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The environment variable (and, lower-cased with dashes, the flag).
    pub variable: &'static str,
    /// The default everywhere, as `--help` and `config` show it.
    pub default: Option<String>,
    /// A default that applies only outside Lambda, and when (`locally`, `with the outbox`).
    pub local_default: Option<(&'static str, &'static str)>,
    /// The lowest and highest value start-up accepts.
    pub bounds: Option<(f64, f64)>,
    /// The same as `--help` states it: `1-300`, or `at most 900` when an unsigned lowest is 0.
    pub accepts: Option<String>,
    /// What `--help` says about it.
    pub help: String,
}

/// `--help`'s text from a row's doc comment lines (as clap would read them: joined, without the
/// trailing period), with its bounds and its local default when it has them.
fn help_text(doc: &[&str], bounds: Option<String>, local: Option<(&str, &str)>) -> String {
    let text = doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
    let mut text = text.strip_suffix('.').unwrap_or(&text).to_owned();
    if let Some(bounds) = bounds {
        text = format!("{text} [{bounds}]");
    }
    if let Some((value, when)) = local {
        text = format!("{text} [default {when}: {value}]");
    }
    text
}

/// The values a setting of type `T` accepts, as `--help` shows them: `1-300`, or `at most 900`
/// when an unsigned setting's lowest is 0.
fn bounds_text<T: Number>(low: T::Value, high: T::Value) -> String {
    match (bound::<T>(low), bound::<T>(high)) {
        ((low, _), (_, high)) if !T::SIGNED && low <= 0.0 => format!("at most {high}"),
        ((_, low), (_, high)) => format!("{low}-{high}"),
    }
}

/// A default constant as the field's type (`"consumer"` as a `String`).
fn typed<T: DefaultOf + From<T::Const>>(value: T::Const) -> T {
    T::from(value)
}

/// A numeric setting's value for its bounds check (`None`: unset, nothing to check).
trait Number {
    /// Whether the type holds negative values (an unsigned one below its lowest is impossible,
    /// so its message says only "at most").
    const SIGNED: bool;
    /// The type of its bounds.
    type Value: std::fmt::Debug;
    fn number(&self) -> Option<f64>;
    fn of(value: &Self::Value) -> f64;
}
macro_rules! number {
    ($($ty:ty: $signed:literal),*) => {$(
        impl Number for $ty {
            const SIGNED: bool = $signed;
            type Value = $ty;
            fn number(&self) -> Option<f64> { Some(Self::of(self)) }
            fn of(value: &$ty) -> f64 { *value as f64 }
        }
    )*};
}
number!(u32: false, u64: false, usize: false, i64: true, f64: true);
impl<T: Number> Number for Option<T> {
    const SIGNED: bool = T::SIGNED;
    type Value = T::Value;
    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(Number::number)
    }
    fn of(value: &T::Value) -> f64 {
        T::of(value)
    }
}

/// A bound of a setting of type `T`, as a number and as the message writes it.
fn bound<T: Number>(value: T::Value) -> (f64, String) {
    (T::of(&value), format!("{value:?}"))
}

/// `setting` outside `low..=high` is an error naming it, its bounds and why (never its value).
fn within<T: Number>(
    setting: &'static str,
    value: &T,
    (low, low_text): (f64, String),
    (high, high_text): (f64, String),
    why: Option<&str>,
) -> Result<(), ConfigError> {
    let Some(number) = value.number() else { return Ok(()) };
    if (low..=high).contains(&number) {
        return Ok(());
    }
    let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
    if !T::SIGNED && low <= 0.0 {
        Err(err(setting, format!("must be at most {high_text}{why}")))
    } else {
        Err(err(setting, format!("must be between {low_text} and {high_text}{why}")))
    }
}

/// The table's rows into [`Settings`], its `Default`, [`SETTINGS`]'s description and the bounds
/// check.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $(#[arg($($arg:tt)*)])*
        $name:ident $field:ident : $ty:ty
            $(= $default:expr)?
            $(, local $local:literal $when:literal)?
            $(, in $low:tt ..= $high:tt $(because $why:literal)?)?;
    )*) => {
        /// Every setting, as flags with environment fallbacks. Shared by all subcommands and by the
        /// Lambda entry (which has no flags, so only the environment applies there).
        #[derive(Debug, Clone, Args)]
        #[command(next_help_heading = "Settings (every command; a flag wins over its environment variable)")]
        pub struct Settings {$(
            $(#[doc = $doc])*
            #[arg(long, env = stringify!($name), global = true,
                  help = help_text(
                      &[$($doc),*],
                      None $(.or(Some(bounds_text::<$ty>($low, $high))))?,
                      None $(.or(Some(($local, $when))))?,
                  )
                  $(, default_value_t = typed::<$ty>($default))?)]
            $(#[arg($($arg)*)])*
            pub $field: $ty,
        )*}

        /// The settings with nothing set: what the command line gives without flags or variables.
        impl Default for Settings {
            fn default() -> Self {
                Self {$($field: None $(.or(Some(typed::<$ty>($default))))?.unwrap_or_default(),)*}
            }
        }

        /// Every setting as the table defines it, in its order.
        pub fn settings() -> Vec<Setting> {
            vec![$(Setting {
                variable: stringify!($name),
                default: None $(.or(Some(typed::<$ty>($default).to_string())))?,
                local_default: None $(.or(Some(($local, $when))))?,
                bounds: None $(.or(Some((bound::<$ty>($low).0, bound::<$ty>($high).0))))?,
                accepts: None $(.or(Some(bounds_text::<$ty>($low, $high))))?,
                help: help_text(
                      &[$($doc),*],
                      None $(.or(Some(bounds_text::<$ty>($low, $high))))?,
                      None $(.or(Some(($local, $when))))?,
                  ),
            },)*]
        }

        impl Settings {
            /// Every setting under its variable's name, as given (flag, environment or default),
            /// in the table's order: what `config` prints.
            fn given(&self) -> Vec<(&'static str, serde_json::Value)> {
                vec![$((stringify!($name), serde_json::to_value(&self.$field).unwrap_or_default()),)*]
            }

            /// Every setting with bounds, within them, in the table's order.
            pub(super) fn within_bounds(&self) -> Result<(), ConfigError> {
                $($(within(stringify!($name), &self.$field, bound::<$ty>($low), bound::<$ty>($high), None $(.or(Some($why)))?)?;)?)*
                Ok(())
            }
        }
    };
}
crate::defaults::every_setting!(settings);

impl Settings {
    /// What `config` prints: every setting under its variable's name with the value in the unit
    /// the setting takes (`PAYLOAD_RETENTION_DAYS: 30`, not seconds), with the local defaults
    /// `config` resolved (`LEDGER`, `MAILER`, `SENDER_ADDRESS`) and `DB_SECRET_ARN` masked.
    pub fn printed(&self, config: &Config) -> Printed {
        let mut printed = Printed(self.given());
        let ledger = match &config.ledger {
            LedgerChoice::Sqlite { path } => format!("sqlite:{}", path.display()),
            LedgerChoice::DataApi(_) => "data-api".to_owned(),
        };
        let mailer = match &config.mailer {
            MailerChoice::Outbox { dir } => format!("outbox:{}", dir.display()),
            MailerChoice::Ses => "ses".to_owned(),
        };
        printed.set("LEDGER", ledger.into());
        printed.set("MAILER", mailer.into());
        printed.set("SENDER_ADDRESS", config.sender_address.clone().into());
        if let Some(secret) = self.db_secret_arn.as_deref().filter(|s| !s.trim().is_empty()) {
            let masked = crate::serde_helpers::masked(secret, serde_json::value::Serializer);
            printed.set("DB_SECRET_ARN", masked.unwrap_or_default());
        }
        printed
    }
}

/// The settings as `config` prints them: a JSON object in the table's order (the order of
/// `--help` and the README's table), which a map would sort.
#[derive(Debug)]
pub struct Printed(Vec<(&'static str, serde_json::Value)>);

impl Printed {
    /// A key beside the settings' (after them), e.g. what SES says of the account's quota.
    pub fn add(&mut self, name: &'static str, value: serde_json::Value) {
        self.0.push((name, value));
    }

    fn set(&mut self, name: &str, value: serde_json::Value) {
        if let Some((_, old)) = self.0.iter_mut().find(|(n, _)| *n == name) {
            *old = value;
        }
    }
}

impl Serialize for Printed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// The settings alone, as the Lambda entry reads them.
#[derive(clap::Parser)]
pub(super) struct EnvOnly {
    #[command(flatten)]
    pub(super) settings: Settings,
}

/// The setting a clap value error is about: the argument clap names in the error's context
/// (`ContextKind::InvalidArg`, "--send-concurrency <SEND_CONCURRENCY>"), looked up in `command`,
/// where its environment variable is declared. `None` for other errors, or an argument without a
/// variable.
pub fn setting_of(e: &clap::Error, command: &clap::Command) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let Some(ContextValue::String(invalid)) = e.get(ContextKind::InvalidArg) else { return None };
    let flag = invalid.split_whitespace().next()?;
    let arg = command.get_arguments().find(|a| a.get_long().is_some_and(|long| flag == format!("--{long}")))?;
    arg.get_env()?.to_str().map(str::to_owned)
}

/// Why a value did not parse, without the value (clap's message repeats it).
pub fn parse_problem(e: &clap::Error) -> String {
    std::error::Error::source(e).map_or_else(|| "not one of the accepted values".to_owned(), |s| s.to_string())
}

/// A value from the environment that does not parse: the error names the variable (from clap's
/// error context) and the rule, never the value.
pub(super) fn unparsable(e: &clap::Error) -> ConfigError {
    use clap::CommandFactory;
    let setting = setting_of(e, &EnvOnly::command()).unwrap_or_else(|| "environment".to_owned());
    ConfigError { setting, problem: format!("has a value that does not parse: {}", parse_problem(e)) }
}

impl Settings {
    /// Settings from the environment alone (the Lambda entry has no flags). A value that does not
    /// parse (`SES_MAX_SEND_RATE=fast`) is an error naming the variable, never a silent default.
    pub fn from_env() -> Result<Self, ConfigError> {
        use clap::Parser;
        EnvOnly::try_parse_from(["order-confirmation"]).map(|e| e.settings).map_err(|e| unparsable(&e))
    }
}
