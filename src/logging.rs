//! Log set-up: JSON lines when Lambda's advanced logging asks for them (`AWS_LAMBDA_LOG_FORMAT=JSON`)
//! or `LOG_FORMAT=json`, readable lines otherwise; always on stderr so stdout stays the
//! command's result.
//!
//! The JSON lines follow the keys Lambda users know from Powertools for AWS Lambda
//! (docs/design.md, "Logs and metrics"): every line carries `service`; every line written while
//! an invocation runs also carries `cold_start`, `function_request_id` and, when Lambda traces the
//! invocation, `xray_trace_id`, taken from the [`invocation_span`] the Lambda entry enters. The
//! command line has no invocation, so its lines carry `service` only.
//!
//! Level: inside Lambda `AWS_LAMBDA_LOG_LEVEL` (the function's `ApplicationLogLevel`) wins over
//! `RUST_LOG`, as lambda_runtime's own subscriber does; elsewhere `RUST_LOG` wins. Default `info`.
//!
//! Log lines carry ids, priorities and outcomes only. Customer addresses and names never reach a
//! log: the domain types mask themselves in `Debug`, and provider error texts pass through
//! [`crate::error::redact`].

use serde_json::{Map, Value};
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span that marks one Lambda invocation; its fields become top-level keys.
const INVOCATION: &str = "invocation";

/// The directive used when no level is set. The SDK's credential chain warns once per provider
/// that found nothing; the request that needed credentials then fails with one line saying how to
/// provide them (error.rs). The instance metadata client warns with its error's `Debug` (a page of
/// nested structs) when nothing answers, as off EC2; the region check and the credentials line
/// say what to do instead.
const DEFAULT_DIRECTIVE: &str = "info,aws_config::meta::credentials=error,aws_config::imds=error";

/// The service name once the configuration is validated (it may come from a flag); lines written
/// before that use the environment's value, or the default.
static SERVICE: OnceLock<String> = OnceLock::new();

/// The log filter for this process. `lambda_level` is `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG,
/// INFO, WARN, ERROR or FATAL); inside Lambda it wins over `rust_log`.
pub fn filter_directive(inside_lambda: bool, rust_log: Option<&str>, lambda_level: Option<&str>) -> String {
    let rust_log = rust_log.map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let lambda_level = lambda_level.map(str::trim).filter(|v| !v.is_empty()).map(|l| match l.to_ascii_lowercase() {
        // tracing has no level above error.
        l if l == "fatal" => "error".to_owned(),
        l => l,
    });
    let chosen = if inside_lambda { lambda_level.or(rust_log) } else { rust_log.or(lambda_level) };
    chosen.filter(|f| EnvFilter::try_new(f).is_ok()).unwrap_or_else(|| DEFAULT_DIRECTIVE.to_owned())
}

pub fn init() {
    let var = |name| std::env::var(name).ok();
    let inside_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let filter = EnvFilter::new(filter_directive(
        inside_lambda,
        var("RUST_LOG").as_deref(),
        var("AWS_LAMBDA_LOG_LEVEL").as_deref(),
    ));
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"))
        || var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"));
    // A wrong value is refused by the configuration, which names the variable; until then the
    // lines say the default.
    let service = crate::config::parse_service_name(var("POWERTOOLS_SERVICE_NAME").as_deref())
        .unwrap_or_else(|_| crate::defaults::POWERTOOLS_SERVICE_NAME.to_owned());
    use std::io::IsTerminal;
    // try_init: a second call (tests) keeps the first subscriber instead of panicking.
    let _ = if json {
        tracing::subscriber::set_global_default(json_subscriber(filter, service, std::io::stderr))
    } else {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // NO_COLOR (no-color.org): any non-empty value turns colours off.
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
            .with_timer(FixedWidthTime)
            .compact()
            .finish();
        tracing::subscriber::set_global_default(subscriber)
    };
}

/// Sets the service name every later JSON line carries: the validated configuration's.
pub fn set_service(service: &str) {
    let _ = SERVICE.set(service.to_owned());
}

/// The JSON subscriber: Powertools' keys on every line, written to `writer`.
pub fn json_subscriber<W>(filter: EnvFilter, service: String, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .fmt_fields(JsonFields::new())
        .event_format(PowertoolsJson { service })
        .finish()
}

/// The span a Lambda invocation runs in: its fields are the invocation's keys on every line
/// written inside it. Error level, so that it exists whatever level the filter lets through.
pub fn invocation_span(cold_start: bool, request_id: &str, xray_trace_id: Option<&str>) -> tracing::Span {
    let span = tracing::error_span!(
        INVOCATION,
        cold_start,
        function_request_id = request_id,
        xray_trace_id = tracing::field::Empty
    );
    if let Some(trace) = xray_trace_id {
        span.record("xray_trace_id", trace);
    }
    span
}

/// One JSON object per line: `level`, `target`, `message` and the event's fields at the top level,
/// then the invocation's keys and `service`.
struct PowertoolsJson {
    /// The service name from the environment at start-up, until [`set_service`] is called.
    service: String,
}

impl<S, N> FormatEvent<S, N> for PowertoolsJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp().into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        event.record(&mut JsonVisitor(&mut line));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root().filter(|s| s.name() == INVOCATION) {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(fields);
                }
            }
        }
        line.insert("service".into(), SERVICE.get().unwrap_or(&self.service).as_str().into());
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The time of a log line in UTC, RFC 3339 with exactly six fractional digits: the same width on
/// every line, so columns line up and the lines sort as text. JSON lines carry it as `timestamp`
/// (Powertools' key).
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

/// The readable lines' time: [`timestamp`].
struct FixedWidthTime;

impl tracing_subscriber::fmt::time::FormatTime for FixedWidthTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        w.write_str(&timestamp())
    }
}

/// Collects an event's fields as JSON values.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn inside_lambda_the_function_log_level_wins_over_rust_log() {
        assert_eq!(filter_directive(true, Some("debug"), Some("WARN")), "warn");
        assert_eq!(filter_directive(true, Some("debug"), None), "debug");
        assert_eq!(filter_directive(true, None, Some("FATAL")), "error", "tracing has no fatal");
    }

    #[test]
    fn outside_lambda_rust_log_wins_and_nothing_set_means_info() {
        assert_eq!(filter_directive(false, Some("debug"), Some("WARN")), "debug");
        assert_eq!(filter_directive(false, None, Some("ERROR")), "error");
        assert_eq!(filter_directive(false, None, None), DEFAULT_DIRECTIVE);
        assert_eq!(filter_directive(true, Some(" "), Some("")), DEFAULT_DIRECTIVE);
    }

    /// Lines written through a JSON subscriber into memory.
    fn json_lines(run: impl FnOnce()) -> Vec<Value> {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = json_subscriber(EnvFilter::new("warn"), "shop-confirmations".into(), move || writer.clone());
        tracing::subscriber::with_default(subscriber, run);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn every_line_of_an_invocation_carries_service_cold_start_request_id_and_trace_id() {
        let lines = json_lines(|| {
            let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
            let _first = invocation_span(true, "req-1", Some(trace)).entered();
            tracing::warn!(order_id = "ORD-1", outcome = "rejected", "record failed");
            let _inner = tracing::info_span!("claim").entered();
            tracing::error!(attempts = 3_u64, "ledger unreachable");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert_eq!(line["service"], "shop-confirmations", "{line}");
            assert_eq!(line["cold_start"], true, "{line}");
            assert_eq!(line["function_request_id"], "req-1", "{line}");
            assert_eq!(
                line["xray_trace_id"],
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            );
        }
        assert_eq!(
            (&lines[0]["level"], &lines[0]["message"], &lines[0]["order_id"], &lines[0]["outcome"]),
            (&"WARN".into(), &"record failed".into(), &"ORD-1".into(), &"rejected".into())
        );
        assert_eq!(lines[1]["attempts"], 3);
    }

    #[test]
    fn an_untraced_warm_invocation_has_no_trace_id_and_lines_outside_one_only_the_service() {
        let lines = json_lines(|| {
            {
                let _warm = invocation_span(false, "req-2", None).entered();
                tracing::warn!("inside");
            }
            tracing::warn!("outside");
            tracing::info!("filtered out at warn");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!((&lines[0]["cold_start"], &lines[0]["function_request_id"]), (&false.into(), &"req-2".into()));
        assert!(lines[0].get("xray_trace_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[1]["message"], "outside");
        assert_eq!(lines[1]["service"], "shop-confirmations");
        for key in ["cold_start", "function_request_id", "xray_trace_id"] {
            assert!(lines[1].get(key).is_none(), "{key} outside an invocation: {}", lines[1]);
        }
    }
}
