//! The documentation tells the truth about the code: every alarm in `template.yaml` has a runbook
//! section, every `order-confirmation <subcommand>` the docs show exists in the built binary, every
//! metric they cite is one the service (or AWS) publishes, every Logs Insights query in the runbook
//! is a saved `AWS::Logs::QueryDefinition` and the other way round, every setting is in the README's
//! configuration table, the README's layout names every file and folder in `src/`, and every
//! relative link and anchor resolves. Each check is a function over text, and each is also run on
//! a deliberately broken input to prove it can fail.
//!
//! `template.yaml` is read with a line-based scan (CloudFormation short tags like `!Sub` would need
//! a custom YAML parser; the template's two-space layout is regular).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The documents checked: README.md and every Markdown file under docs/.
fn documents() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_owned(), read("README.md"))];
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    for p in paths {
        let rel = p.strip_prefix(root()).unwrap().display().to_string();
        docs.push((rel.clone(), read(&rel)));
    }
    docs
}

// ---- template.yaml, line by line ----

struct Resource {
    id: String,
    ty: String,
    /// The resource's lines after its `  Id:` line, indentation kept.
    lines: Vec<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn resources(template: &str) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    let mut in_resources = false;
    for line in template.lines() {
        if indent(line) == 0 && !line.trim().is_empty() && !line.starts_with('#') {
            in_resources = line.trim_end() == "Resources:";
            continue;
        }
        if !in_resources {
            continue;
        }
        let t = line.trim();
        if indent(line) == 2 && t.ends_with(':') && !t.starts_with('#') && !t.contains(' ') {
            out.push(Resource { id: t.trim_end_matches(':').to_owned(), ty: String::new(), lines: Vec::new() });
        } else if let Some(r) = out.last_mut() {
            if indent(line) == 4
                && let Some(ty) = t.strip_prefix("Type: ")
            {
                r.ty = ty.trim().to_owned();
            }
            r.lines.push(line.to_owned());
        }
    }
    out
}

fn alarm_ids(template: &str) -> Vec<String> {
    resources(template).into_iter().filter(|r| r.ty == "AWS::CloudWatch::Alarm").map(|r| r.id).collect()
}

struct SavedQuery {
    id: String,
    /// The part of `Name` after the last `/` (the folder is the stack name).
    name: String,
    query: String,
}

fn saved_queries(template: &str) -> Vec<SavedQuery> {
    resources(template)
        .into_iter()
        .filter(|r| r.ty == "AWS::Logs::QueryDefinition")
        .map(|r| {
            let name = r
                .lines
                .iter()
                .find_map(|l| l.trim().strip_prefix("Name: "))
                .map(|n| n.rsplit('/').next().unwrap().trim().to_owned())
                .unwrap_or_else(|| panic!("{}: no Name", r.id));
            let start = r
                .lines
                .iter()
                .position(|l| l.trim() == "QueryString: |")
                .unwrap_or_else(|| panic!("{}: QueryString must be a literal block (|)", r.id));
            let key_indent = indent(&r.lines[start]);
            let body: Vec<&str> = r.lines[start + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
                .map(String::as_str)
                .collect();
            SavedQuery { id: r.id, name, query: normalize(&body.join("\n")) }
        })
        .collect()
}

/// Queries compare line by line, ignoring indentation and blank lines.
fn normalize(q: &str) -> String {
    q.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

// ---- Markdown ----

/// Fenced code blocks: (language tag, content).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in md.lines() {
        let t = line.trim_start();
        if let Some(tag) = t.strip_prefix("```") {
            match current.take() {
                Some((lang, body)) => out.push((lang, body.join("\n"))),
                None => current = Some((tag.trim().to_owned(), Vec::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    out
}

/// The text outside fenced code blocks.
fn prose(md: &str) -> String {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push(line);
        }
    }
    out.join("\n")
}

/// Inline code spans (single backticks) in the prose.
fn code_spans(md: &str) -> Vec<String> {
    prose(md).split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// All code: fenced blocks and inline spans.
fn code(md: &str) -> Vec<String> {
    code_blocks(md).into_iter().map(|(_, b)| b).chain(code_spans(md)).collect()
}

// ---- the checks (each returns what is wrong) ----

fn alarms_without_section(template: &str, runbook: &str) -> Vec<String> {
    let headings: Vec<&str> = runbook.lines().filter(|l| l.starts_with('#')).collect();
    alarm_ids(template)
        .into_iter()
        .filter(|id| !headings.iter().any(|h| h.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == id.as_str())))
        .collect()
}

/// Runbook headings that name an alarm (one CamelCase word ending in `Alarm`) the template lacks.
fn sections_for_missing_alarms(template: &str, runbook: &str) -> Vec<String> {
    let alarms = alarm_ids(template);
    runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .flat_map(|h| h.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| w.len() > 5 && w.ends_with("Alarm") && w.starts_with(|c: char| c.is_ascii_uppercase()))
        .filter(|w| !alarms.iter().any(|a| a == w))
        .map(str::to_owned)
        .collect()
}

/// The subcommands `order-confirmation --help` lists.
fn real_subcommands() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_order-confirmation"))
        .arg("--help")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .output()
        .expect("run order-confirmation --help");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let section = text.split("Commands:").nth(1).expect("--help lists Commands:");
    section
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| indent(l) == 2)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Words that follow `order-confirmation ` in code and are not subcommands. A word is what starts
/// with a letter (flags and placeholders are skipped).
fn unknown_subcommands(md: &str, known: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for snippet in code(md) {
        for (i, _) in snippet.match_indices("order-confirmation ") {
            let rest = &snippet[i + "order-confirmation ".len()..];
            let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if word.starts_with(|c: char| c.is_ascii_alphabetic()) && !known.contains(&word) {
                bad.push(word);
            }
        }
    }
    bad
}

/// Every metric the service publishes: the library's one list.
fn published_metrics() -> BTreeSet<String> {
    order_confirmation::metrics::published().map(str::to_owned).collect()
}

/// The outcome words a text filters on: `outcome = "x"` and `outcome in ["x", "y"]` (Logs
/// Insights), `outcome="x"` (the text log sample).
fn filtered_outcomes(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for (i, _) in text.match_indices("outcome") {
        let rest = text[i + "outcome".len()..].trim_start();
        let list = if let Some(r) = rest.strip_prefix('=') {
            let r = r.trim_start();
            r.strip_prefix('"').map(|r| &r[..r.find('"').unwrap_or(0)]).unwrap_or_default().to_owned()
        } else if let Some(r) = rest.strip_prefix("in [") {
            r[..r.find(']').unwrap_or(0)].to_owned()
        } else {
            continue;
        };
        words.extend(list.split(',').map(|w| w.trim().trim_matches('"').to_owned()).filter(|w| !w.is_empty()));
    }
    words
}

/// The library's own names the design notes cite (they speak of the code; these are not
/// metrics): each read from the item itself (`type_name`, the constant's value), so the list
/// compiles only while the items exist under these paths.
fn code_names() -> BTreeSet<String> {
    use order_confirmation as oc;
    fn name_of<T: ?Sized>() -> String {
        std::any::type_name::<T>().rsplit("::").next().unwrap_or_default().to_owned()
    }
    let mut names: BTreeSet<String> = [
        name_of::<oc::batch::RecordOutcome>(),
        name_of::<oc::batch::Counter>(),
        name_of::<oc::batch::BatchReport>(),
        name_of::<oc::batch::EventBatchReport>(),
        name_of::<oc::ledger::Outcome>(),
        name_of::<dyn oc::ledger::Ledger>(),
        name_of::<oc::ledger::data_api::Limits>(),
        name_of::<oc::order::OrderId>(),
        name_of::<oc::order::Priority>(),
        name_of::<oc::pipeline::Budget>(),
        name_of::<oc::pipeline::PipelineSettings>(),
        name_of::<oc::backoff::BackoffSettings>(),
        name_of::<oc::reconcile::ReconcileSettings>(),
        name_of::<oc::reconcile::Retention>(),
        name_of::<oc::metrics::MetricNames>(),
        name_of::<oc::config::Settings>(),
        name_of::<oc::config::Config>(),
        name_of::<oc::config::ConfigError>(),
        name_of::<oc::app::NoLedger>(),
        name_of::<oc::cli::Usage>(),
    ]
    .into();
    names.extend([oc::batch::FIRST_SENT_ATTRIBUTE, oc::batch::DEFERRALS_ATTRIBUTE].map(str::to_owned));
    names
}

/// The names `md` cites that are neither metrics nor otherwise known ([`unknown_metric_names`]),
/// less the library's own names when `md` is the design notes.
fn uncited_names(path: &str, md: &str, template: &str, published: &BTreeSet<String>) -> Vec<String> {
    let code = code_names();
    unknown_metric_names(md, template, published)
        .into_iter()
        // The design notes speak of the code: its own type and constant names are not metrics.
        .filter(|m| !(path == "docs/design.md" && code.contains(m)))
        .collect()
}

/// CloudWatch metrics AWS publishes for the queues and the function.
const AWS_METRICS: &[&str] = &[
    "ApproximateNumberOfMessagesVisible",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateAgeOfOldestMessage",
    "NumberOfMessagesSent",
    "NumberOfMessagesReceived",
    "NumberOfMessagesDeleted",
    "Invocations",
    "Errors",
    "Throttles",
    "ConcurrentExecutions",
    "Duration",
];

/// CamelCase names in the docs' code spans that are not metrics: AWS API operations, attributes and
/// error codes the docs mention. Anything else CamelCase in a code span must be a metric the service
/// publishes, a standard AWS metric, or a name from template.yaml.
const NOT_METRICS: &[&str] = &[
    "OrderConfirmation",
    "True",
    "False",
    "None",
    "Enabled",
    "SendMessage",
    "ApproximateReceiveCount",
    "SentTimestamp",
    "AttributeNames",
    "VisibilityTimeout",
    "RedrivePolicy",
    "MessageRetentionPeriod",
    "ChangeMessageVisibility",
    "StartMessageMoveTask",
    "SqsBatchResponse",
    "SendMessageBatch",
    "MessageRejected",
    // SES v2's GetAccount and its send quota's fields.
    "GetAccount",
    "SendQuota",
    "MaxSendRate",
    "Max24HourSend",
    "SentLast24Hours",
    // SES's bounce types.
    "Permanent",
    "Transient",
    "Undetermined",
    // Rust's traits and the libraries' types the design notes name.
    "Debug",
    "Default",
    "RawValue",
    "TracingLayer",
    "CurrencyFormatter",
    "MaximumConcurrency",
    "TooManyRequests",
    "NameError",
    "KeyError",
    "SMTPConnectError",
    "SMTPServerDisconnected",
    "ConnectionRefusedError",
    "DatabaseResumingException",
    "BadRequestException",
    "AccessDeniedException",
    "AccessDenied",
    "RetainExceptOnCreate",
    "AlreadyExists",
    "ExecuteStatement",
    "BatchExecuteStatement",
    "DeploymentPreference",
    "Canary10Percent10Minutes",
    "AWSCodeDeployRoleForLambda",
    "CodeVersion",
    "AutoPublishAlias",
    "DependsOn",
    "Retain",
    "AWSLambdaSQSQueueExecutionRole",
    "BatchSize",
    "Globals",
    "LoggingConfig",
    "ApplicationLogLevel",
];

/// CamelCase names in code spans that are neither metrics nor otherwise known.
fn unknown_metric_names(md: &str, template: &str, published: &BTreeSet<String>) -> Vec<String> {
    let template_names: BTreeSet<String> = template
        .lines()
        .filter(|l| matches!(indent(l), 2) && l.trim().ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':').to_owned())
        .collect();
    code_spans(md)
        .into_iter()
        .filter(|s| {
            s.len() > 2
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.chars().all(|c| c.is_ascii_alphanumeric())
                && s.chars().any(|c| c.is_ascii_lowercase())
        })
        .filter(|s| {
            !published.contains(s)
                && !AWS_METRICS.contains(&s.as_str())
                && !NOT_METRICS.contains(&s.as_str())
                && !template_names.contains(s)
        })
        .collect()
}

/// Runbook `logs-insights` blocks that are not saved queries.
fn unsaved_runbook_queries(runbook: &str, template: &str) -> Vec<String> {
    let saved: Vec<String> = saved_queries(template).into_iter().map(|q| q.query).collect();
    code_blocks(runbook)
        .into_iter()
        .filter(|(lang, _)| lang == "logs-insights")
        .map(|(_, q)| normalize(&q))
        .filter(|q| !saved.contains(q))
        .collect()
}

/// Saved queries the runbook does not quote verbatim or does not name.
fn saved_queries_missing_from_runbook(runbook: &str, template: &str) -> Vec<String> {
    let quoted: Vec<String> = code_blocks(runbook)
        .into_iter()
        .filter(|(lang, _)| lang == "logs-insights")
        .map(|(_, q)| normalize(&q))
        .collect();
    saved_queries(template)
        .into_iter()
        .filter(|q| !quoted.contains(&q.query) || !runbook.contains(&format!("`{}`", q.name)))
        .map(|q| format!("{} ({})", q.id, q.name))
        .collect()
}

/// The README's configuration table against the one definition of every setting
/// (`order_confirmation::config::settings()`, the table clap's command is also built from):
/// every setting has a row, and no row names a setting the code does not have; the row's default
/// is the definition's, or its local default, or no value (only other settings' names); a
/// setting with bounds states them (`1–300`, or `at most 900` when its lowest is 0).
fn readme_table_problems(readme: &str) -> Vec<String> {
    let settings = order_confirmation::config::settings();
    let rows: Vec<(&str, &str)> = readme
        .lines()
        .filter_map(|l| {
            let variable = l.strip_prefix("| `")?.split_once("` |")?.0;
            variable.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_').then_some((variable, l))
        })
        .collect();
    let mut problems = Vec::new();
    for setting in &settings {
        let variable = setting.variable;
        let Some((_, row)) = rows.iter().find(|(v, _)| *v == variable) else {
            problems.push(format!("{variable}: no row in README.md's configuration table"));
            continue;
        };
        let cell = row.split('|').nth(2).unwrap_or_default().trim();
        let expected = match (&setting.default, setting.local_default) {
            (Some(default), _) => Some(format!("`{default}`")),
            (None, Some((value, when))) => Some(format!("`{value}` {when}")),
            (None, None) => None,
        };
        match expected {
            Some(expected) if cell != expected => {
                problems.push(format!("{variable}: README.md says {cell}, the code's default is {expected}"))
            }
            None if code_spans(cell).iter().any(|c| !c.starts_with(|ch: char| ch.is_ascii_uppercase())) => {
                problems.push(format!("{variable}: README.md gives a default ({cell}) the code does not have"))
            }
            _ => {}
        }
        if let Some(accepts) = &setting.accepts {
            let stated = accepts.replace('-', "–");
            if !row.split('|').nth(3).unwrap_or_default().contains(&stated) {
                problems.push(format!("{variable}: README.md does not state the values it accepts ({stated})"));
            }
        }
    }
    for (variable, _) in rows {
        if !settings.iter().any(|s| s.variable == variable) {
            problems.push(format!("{variable}: README.md has a row for a setting the code does not have"));
        }
    }
    problems
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Relative links `](target)` in the prose whose file or `#anchor` does not exist.
fn broken_links(doc_path: &Path, md: &str) -> Vec<String> {
    let text = prose(md);
    let mut bad = Vec::new();
    for part in text.split("](").skip(1) {
        let Some(end) = part.find(')') else { continue };
        let target = &part[..end];
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let (file_path, file_text) = if file.is_empty() {
            (doc_path.to_path_buf(), Some(md.to_owned()))
        } else {
            let p = doc_path.parent().unwrap().join(file);
            let text = std::fs::read_to_string(&p).ok();
            if !p.exists() {
                bad.push(target.to_owned());
                continue;
            }
            (p, text)
        };
        if !anchor.is_empty() {
            let found =
                file_text.is_some_and(|t| prose(&t).lines().filter(|l| l.starts_with('#')).any(|h| slug(h) == anchor));
            if !found {
                bad.push(format!("{target} (no heading for #{anchor} in {})", file_path.display()));
            }
        }
    }
    bad
}

// ---- the tests ----

#[test]
fn every_alarm_has_a_runbook_section() {
    let template = read("template.yaml");
    assert!(alarm_ids(&template).len() >= 7, "found alarms {:?}", alarm_ids(&template));
    let missing = alarms_without_section(&template, &read("docs/runbook.md"));
    assert!(
        missing.is_empty(),
        "alarms without a section (a heading naming the logical id) in docs/runbook.md: {missing:?}"
    );
}

#[test]
fn runbook_alarm_sections_name_existing_alarms() {
    let stale = sections_for_missing_alarms(&read("template.yaml"), &read("docs/runbook.md"));
    assert!(stale.is_empty(), "docs/runbook.md has sections for alarms template.yaml lacks: {stale:?}");
}

#[test]
fn alarm_checks_fail_on_a_missing_or_stale_section() {
    let template = read("template.yaml");
    let runbook = read("docs/runbook.md");
    let broken = runbook.replace("## UnconfirmedOrdersAlarm", "## Unconfirmed orders");
    assert_ne!(broken, runbook, "the mutation target is gone from docs/runbook.md");
    assert_eq!(alarms_without_section(&template, &broken), vec!["UnconfirmedOrdersAlarm"]);
    let stale = format!("{runbook}\n## RetiredQueueAlarm\n");
    assert_eq!(sections_for_missing_alarms(&template, &stale), vec!["RetiredQueueAlarm"]);
}

#[test]
fn every_documented_subcommand_exists() {
    let known = real_subcommands();
    for expected in ["invoke", "stats", "status", "reconcile", "consume", "migrate", "config"] {
        assert!(known.contains(expected), "--help lacks {expected}: {known:?}");
    }
    let mut bad = Vec::new();
    let mut seen = 0;
    for (path, md) in documents() {
        seen += code(&md).iter().filter(|c| c.contains("order-confirmation ")).count();
        bad.extend(unknown_subcommands(&md, &known).into_iter().map(|w| format!("{path}: order-confirmation {w}")));
    }
    assert!(seen > 10, "the docs show almost no commands ({seen}); is the scan broken?");
    assert!(bad.is_empty(), "the docs name subcommands the binary does not have: {bad:?}");
}

#[test]
fn subcommand_check_fails_on_an_unknown_subcommand() {
    let known = real_subcommands();
    let md = "Run `order-confirmation redrive --all`, then:\n```sh\norder-confirmation stats\n./order-confirmation purge\n```\n";
    assert_eq!(unknown_subcommands(md, &known), vec!["purge", "redrive"]);
}

#[test]
fn every_cited_metric_is_published_or_a_standard_aws_metric() {
    let template = read("template.yaml");
    let published = published_metrics();
    let mut bad = Vec::new();
    for (path, md) in documents() {
        bad.extend(uncited_names(&path, &md, &template, &published).into_iter().map(|m| format!("{path}: {m}")));
    }
    assert!(
        bad.is_empty(),
        "the docs cite names that are neither metrics the service publishes (metrics::published), standard AWS metrics, \
         nor names in template.yaml (add a real non-metric name to NOT_METRICS): {bad:?}"
    );
    let runbook = read("docs/runbook.md");
    for m in &published {
        assert!(runbook.contains(&format!("`{m}`")), "docs/runbook.md does not explain the metric {m}");
    }
}

#[test]
fn design_notes_may_cite_the_librarys_own_names_and_nothing_misspelled() {
    let md = "`RecordOutcome` ends in `Counter`s under `OrderConfirmationDeferrals`; `RecordOutcomes` is no item.";
    let (template, published) = (read("template.yaml"), published_metrics());
    assert_eq!(uncited_names("docs/design.md", md, &template, &published), vec!["RecordOutcomes"]);
    assert_eq!(
        uncited_names("README.md", md, &template, &published).len(),
        4,
        "only the design notes speak of the code"
    );
}

#[test]
fn metric_check_fails_on_a_misspelled_metric() {
    let md = "Watch `TransientFailures` and `Sent` and `ApproximateAgeOfOldestMessage`.";
    assert_eq!(unknown_metric_names(md, &read("template.yaml"), &published_metrics()), vec!["TransientFailures"]);
}

#[test]
fn every_runbook_query_is_a_saved_query_definition() {
    let template = read("template.yaml");
    let runbook = read("docs/runbook.md");
    assert!(code_blocks(&runbook).iter().filter(|(l, _)| l == "logs-insights").count() >= 5);
    let unsaved = unsaved_runbook_queries(&runbook, &template);
    assert!(
        unsaved.is_empty(),
        "Logs Insights queries in docs/runbook.md with no QueryDefinition in template.yaml:\n{}",
        unsaved.join("\n\n")
    );
}

#[test]
fn every_saved_query_definition_is_quoted_in_the_runbook() {
    let template = read("template.yaml");
    let queries = saved_queries(&template);
    assert!(queries.len() >= 5, "found {} QueryDefinitions", queries.len());
    for q in &queries {
        let group = resources(&template)
            .into_iter()
            .find(|r| r.id == q.id)
            .map(|r| r.lines.iter().any(|l| l.trim() == "LogGroupNames: [!Ref OrderConfirmationLogGroup]"))
            .unwrap();
        assert!(group, "{}: LogGroupNames must reference the function's log group", q.id);
    }
    let missing = saved_queries_missing_from_runbook(&read("docs/runbook.md"), &template);
    assert!(missing.is_empty(), "saved queries not quoted verbatim and named in docs/runbook.md: {missing:?}");
}

#[test]
fn query_checks_fail_on_an_edited_query() {
    let template = read("template.yaml");
    let runbook = read("docs/runbook.md");
    let broken = runbook.replace("| filter level = \"ERROR\"", "| filter level = \"WARN\"");
    assert_ne!(broken, runbook, "the mutation target is gone from docs/runbook.md");
    assert_eq!(unsaved_runbook_queries(&broken, &template).len(), 1);
    assert_eq!(saved_queries_missing_from_runbook(&broken, &template), vec!["ErrorsQuery (errors-by-message)"]);
}

#[test]
fn every_outcome_the_docs_and_queries_filter_on_is_an_outcome_the_service_logs() {
    let mut unknown = Vec::new();
    let mut seen = 0;
    for (path, text) in documents().into_iter().chain([("template.yaml".to_owned(), read("template.yaml"))]).chain([(
        "src/stats.rs".to_owned(),
        order_confirmation::stats::not_in_ledger(&order_confirmation::order::OrderId::parse("ORD-1").unwrap()),
    )]) {
        for word in filtered_outcomes(&text) {
            seen += 1;
            if !order_confirmation::batch::OUTCOME_NAMES.contains(&word.as_str()) {
                unknown.push(format!("{path}: {word}"));
            }
        }
    }
    assert!(seen >= 5, "found only {seen} outcome filters");
    assert!(unknown.is_empty(), "filters on outcomes the service never logs: {unknown:?}");
}

#[test]
fn outcome_check_reads_equality_and_list_filters() {
    let q = r#"filter outcome = "rejected" | filter outcome in ["mail_rejected", "conflict"] | outcome="sent" x"#;
    assert_eq!(filtered_outcomes(q), ["rejected", "mail_rejected", "conflict", "sent"]);
}

#[test]
fn every_setting_is_in_the_readme_configuration_table_with_the_codes_default() {
    let problems = readme_table_problems(&read("README.md"));
    assert!(problems.is_empty(), "README.md's configuration table and the code disagree:\n{}", problems.join("\n"));
}

#[test]
fn settings_check_fails_on_a_missing_or_stale_row_a_stale_default_or_stale_bounds() {
    let readme = read("README.md");
    let broken: String = readme
        .lines()
        .filter(|l| !l.starts_with("| `LEASE_SLACK_SECONDS` |"))
        .map(|l| l.replace("| `SEND_CONCURRENCY` | `16` |", "| `SEND_CONCURRENCY` | `8` |"))
        .map(|l| l.replace("| `SES_SENDERS` | unset |", "| `SES_SENDERS` | `1` |"))
        .map(|l| l.replace("`outbox:.local/outbox` locally", "`outbox:outbox` locally"))
        .map(|l| l.replace("SDK retries included (1–300)", "SDK retries included (1–600)"))
        .chain(["| `RETIRED_SETTING` | `1` | no longer read |".to_owned()])
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        readme_table_problems(&broken),
        vec![
            "MAILER: README.md says `outbox:outbox` locally, the code's default is `outbox:.local/outbox` locally",
            "SES_SENDERS: README.md gives a default (`1`) the code does not have",
            "SEND_TIMEOUT_SECONDS: README.md does not state the values it accepts (1–300)",
            "SEND_CONCURRENCY: README.md says `8`, the code's default is `16`",
            "LEASE_SLACK_SECONDS: no row in README.md's configuration table",
            "RETIRED_SETTING: README.md has a row for a setting the code does not have",
        ]
    );
}

#[test]
fn relative_links_and_anchors_resolve() {
    let mut bad = Vec::new();
    for (path, md) in documents() {
        bad.extend(broken_links(&root().join(&path), &md).into_iter().map(|l| format!("{path}: {l}")));
    }
    assert!(bad.is_empty(), "broken links: {bad:?}");
    let readme = read("README.md");
    for link in ["docs/incident.md", "docs/runbook.md", "tools/rds-data-local/README.md"] {
        assert!(readme.contains(&format!("]({link})")), "README.md does not link {link}");
    }
}

#[test]
fn link_check_fails_on_a_dangling_link_or_anchor() {
    let path = root().join("docs/runbook.md");
    let md = "# Title\nSee [x](missing.md), [y](#no-such-heading), [z](#title) and [w](incident.md).\n";
    assert_eq!(
        broken_links(&path, md),
        vec![
            "missing.md".to_owned(),
            format!("#no-such-heading (no heading for #no-such-heading in {})", path.display())
        ]
    );
}

// ---- `sam local invoke`: the README's sequence against what scripts/sam-local runs ----

/// Problems with the README's `sam local invoke` sequence: every invoked function is a
/// serverless function of the template, every event and `--env-vars` file exists (and names the
/// function), the event is one that function answers, the emulators are started on the address
/// and ports `events/env.json` points each function at (moto's queues in the operator's
/// `QUEUE_URLS`), and the invocations are the ones `scripts/sam-local` (what `make sam-local` and
/// tests/sam_local.rs run) makes with `events/env.json`.
fn sam_local_problems(readme: &str, template: &str, env_json: &str, script: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let Some(section) = readme.split("### `sam local invoke`").nth(1) else {
        return vec!["README.md has no `sam local invoke` section".into()];
    };
    let section = section.split("\n## ").next().unwrap_or_default();
    let Some((_, block)) = code_blocks(section).into_iter().filter(|(lang, _)| lang == "sh").nth(1) else {
        return vec!["the sam local invoke section has no sh block of commands after `make sam-local`".into()];
    };
    let functions: Vec<String> =
        resources(template).into_iter().filter(|r| r.ty == "AWS::Serverless::Function").map(|r| r.id).collect();
    let env: serde_json::Value = serde_json::from_str(env_json).unwrap_or_default();
    let joined = block.replace("\\\n", " ");
    // On the line that runs `program`, the word after `flag`, e.g. "172.29.83.1:8080" after --listen.
    let flag = |program: &str, flag: &str| -> Option<String> {
        let line = joined.lines().find(|l| l.contains(program))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).map(|w| (*w).to_owned())
    };
    let data_api = flag("rds-data-local", "--listen");
    let ses =
        flag("aws-ses-v2-local", "--host").zip(flag("aws-ses-v2-local", "--port")).map(|(h, p)| format!("{h}:{p}"));
    let sqs = flag("moto_server", "-H").zip(flag("moto_server", "-p")).map(|(h, p)| format!("{h}:{p}"));
    if data_api.is_none() || ses.is_none() || sqs.is_none() {
        bad.push("the sequence does not start rds-data-local (--listen), aws-ses-v2-local (--host, --port) and moto (-H, -p)".into());
    }
    if !joined.contains("scripts/with-postgres") || !joined.contains("sam build") || !joined.contains("dockerd ") {
        bad.push("the sequence lacks PostgreSQL, dockerd or sam build".into());
    }
    let invokes: Vec<&str> = joined.lines().filter(|l| l.contains("sam local invoke ")).collect();
    if invokes.is_empty() {
        bad.push("no sam local invoke command".into());
    }
    let mut documented = BTreeSet::new();
    for line in invokes {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).copied();
        let Some(function) = words.iter().position(|w| *w == "invoke").and_then(|i| words.get(i + 1)) else {
            continue;
        };
        if !functions.iter().any(|f| f == function) {
            bad.push(format!("{function} is not a serverless function of template.yaml"));
        }
        if !words.contains(&"--skip-pull-image") {
            bad.push(format!("{function}: no --skip-pull-image (no registry here; the image is built locally)"));
        }
        let Some(event) = after("-e") else {
            bad.push(format!("{function}: no -e EVENT"));
            continue;
        };
        documented.insert(format!("{function} {event}"));
        match std::fs::read_to_string(root().join(event)) {
            Err(_) => bad.push(format!("{event} does not exist")),
            Ok(text) => {
                let payload: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let fits = if *function == "OperatorFunction" {
                    order_confirmation::service::operator::Request::parse(&payload).is_ok()
                        || order_confirmation::custom_resource::is_custom_resource_request(&payload)
                } else {
                    payload.get("Records").is_some() || payload["detail-type"] == "Scheduled Event"
                };
                if !fits {
                    bad.push(format!("{event} is not an event {function} answers"));
                }
            }
        }
        if after("--env-vars") != Some("events/env.json") {
            bad.push(format!("{function}: not invoked with --env-vars events/env.json"));
        }
        let vars = &env[*function];
        if vars.is_null() {
            bad.push(format!("events/env.json has no entry for {function}"));
        }
        for (var, at) in
            [("AWS_ENDPOINT_URL_RDS_DATA", &data_api), ("AWS_ENDPOINT_URL_SESV2", &ses), ("AWS_ENDPOINT_URL_SQS", &sqs)]
        {
            let url = vars[var].as_str().unwrap_or_default();
            if at.as_ref().is_none_or(|at| url != format!("http://{at}")) {
                bad.push(format!("{function}: {var} = {url:?} is not where the sequence starts the emulator"));
            }
        }
        if *function == "OperatorFunction" {
            let urls = vars["QUEUE_URLS"].as_str().unwrap_or_default();
            let on_moto =
                sqs.as_ref().is_some_and(|at| urls.split(',').all(|u| u.starts_with(&format!("http://{at}/"))));
            if !on_moto {
                bad.push(format!("OperatorFunction: QUEUE_URLS = {urls:?} are not moto's queues"));
            }
        }
    }
    // scripts/sam-local: `sam_invoke NAME FUNCTION EVENT ENV_FILE`.
    let scripted: BTreeSet<String> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sam_invoke "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 4 && w[3] == "events/env.json")
        .map(|w| format!("{} {}", w[1], w[2]))
        .collect();
    if scripted != documented {
        bad.push(format!("README invokes {documented:?}, scripts/sam-local invokes {scripted:?} with events/env.json"));
    }
    bad
}

#[test]
fn the_sam_local_invoke_sequence_matches_the_template_the_events_and_the_emulators() {
    let problems = sam_local_problems(
        &read("README.md"),
        &read("template.yaml"),
        &read("events/env.json"),
        &read("scripts/sam-local"),
    );
    assert!(problems.is_empty(), "README.md's sam local invoke sequence: {problems:?}");
    let problems = emulator_flag_problems(&read("README.md"), &ses_local_help());
    assert!(problems.is_empty(), "README.md's sam local invoke sequence: {problems:?}");
}

/// What `aws-ses-v2-local --help` prints, run the way the sequence runs it.
fn ses_local_help() -> String {
    let cli = root().join("node_modules/aws-ses-v2-local/dist/cli.js");
    assert!(cli.exists(), "{} is missing: `make test` installs it (npm ci)", cli.display());
    let out = std::process::Command::new("node").arg(&cli).arg("--help").output().expect("node runs");
    assert!(out.status.success(), "aws-ses-v2-local --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags the `sam local invoke` sequence passes to the emulators that each does not take:
/// rds-data-local's against its command line (`rds_data_local::cli::Args`, the binary's own
/// definition), aws-ses-v2-local's against the options its `--help` lists.
fn emulator_flag_problems(readme: &str, ses_help: &str) -> Vec<String> {
    use clap::CommandFactory;
    let section = readme.split("### `sam local invoke`").nth(1).unwrap_or_default();
    let block = code_blocks(section)
        .into_iter()
        .find(|(lang, b)| lang == "sh" && b.contains("rds-data-local"))
        .map(|(_, b)| b)
        .unwrap_or_default();
    let flags_after = |marker: &str| -> Vec<String> {
        let joined = block.replace("\\\n", " ");
        let Some(line) = joined.lines().find(|l| l.contains(marker)) else { return Vec::new() };
        let rest = &line[line.find(marker).unwrap_or(0) + marker.len()..];
        rest.split_whitespace()
            .filter_map(|w| w.strip_prefix("--"))
            .map(|f| f.split('=').next().unwrap_or(f).to_owned())
            .filter(|f| !f.is_empty())
            .collect()
    };
    let mut bad = Vec::new();
    let rds = rds_data_local::cli::Args::command();
    let rds_flags = flags_after("rds-data-local --");
    if rds_flags.is_empty() {
        bad.push("the sequence passes no flags to rds-data-local".to_owned());
    }
    for flag in rds_flags {
        if !rds.get_arguments().any(|a| a.get_long() == Some(flag.as_str())) {
            bad.push(format!("rds-data-local takes no --{flag}"));
        }
    }
    let ses_flags = flags_after("aws-ses-v2-local/dist/cli.js");
    if ses_flags.is_empty() {
        bad.push("the sequence passes no flags to aws-ses-v2-local".to_owned());
    }
    for flag in ses_flags {
        let listed = ses_help.lines().any(|l| l.split_whitespace().next() == Some(&format!("--{flag}")));
        if !listed {
            bad.push(format!("aws-ses-v2-local takes no --{flag}"));
        }
    }
    bad
}

#[test]
fn emulator_flag_check_fails_on_a_flag_the_emulator_does_not_take() {
    let readme = read("README.md");
    let broken = readme
        .replacen("rds-data-local -- --listen 172.29.83.1:8080", "rds-data-local -- --bind 172.29.83.1:8080", 1)
        .replacen("cli.js --host 172.29.83.1 --port 8005", "cli.js --host 172.29.83.1 --listen-port 8005", 1);
    assert_ne!(broken, readme, "the mutation targets are gone from README.md");
    assert_eq!(
        emulator_flag_problems(&broken, &ses_local_help()),
        vec!["rds-data-local takes no --bind", "aws-ses-v2-local takes no --listen-port"]
    );
}

#[test]
fn sam_local_check_fails_on_a_wrong_port_a_missing_event_or_an_unknown_function() {
    let readme = read("README.md");
    let broken = readme
        .replacen("--listen 172.29.83.1:8080", "--listen 172.29.83.1:9090", 1)
        .replacen("-e events/schedule-reconcile.json", "-e events/schedule.json", 1)
        .replacen("sam local invoke OperatorFunction", "sam local invoke AdminFunction", 1);
    let script = read("scripts/sam-local").replacen(
        "events/ses-delivery.json events/env.json",
        "events/ses-send.json events/env.json",
        1,
    );
    let problems = sam_local_problems(&broken, &read("template.yaml"), &read("events/env.json"), &script).join("\n");
    for expected in [
        "OrderConfirmationFunction: AWS_ENDPOINT_URL_RDS_DATA = \"http://172.29.83.1:8080\" is not where the sequence starts the emulator",
        "events/schedule.json does not exist",
        "AdminFunction is not a serverless function of template.yaml",
        "\"OrderConfirmationFunction events/ses-send.json\"",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
}

// ---- the one test crate ----

/// Files in `tests/` that `tests/main.rs` does not declare as modules. With `autotests = false`
/// such a file would never be compiled, so its tests would silently never run.
fn test_files_not_in_the_crate(files: &[String], main_rs: &str) -> Vec<String> {
    let declared: BTreeSet<&str> =
        main_rs.lines().filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';')).collect();
    files.iter().filter(|f| !declared.contains(f.as_str())).cloned().collect()
}

#[test]
fn every_test_file_is_a_module_of_the_one_test_crate() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("tests"))
        .expect("tests/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .filter(|stem| stem != "main")
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected the test files in tests/, found {files:?}");
    let missing = test_files_not_in_the_crate(&files, &read("tests/main.rs"));
    assert!(missing.is_empty(), "tests/main.rs does not declare `mod` for: {missing:?}");
}

#[test]
fn test_crate_check_fails_on_an_undeclared_file() {
    let files = vec!["cli".to_owned(), "delivery".to_owned()];
    assert_eq!(test_files_not_in_the_crate(&files, "mod support;\nmod cli;\n"), vec!["delivery".to_owned()]);
}

// ---- the shell the docs give a person, run against a stand-in `aws` ----

/// STAND-IN for the AWS CLI, written onto PATH by [`run_documented_shell`]: it records each call's
/// arguments (one call per line) and answers the calls whose output the documented commands use
/// with canned values, shaped like the real CLI's (`lambda invoke` writes the function's answer into
/// the file it is given and its own metadata to stdout). It proves that the runbook's helpers and
/// the guide's sequences run as written: in order, under the identity they claim, with the answer
/// reaching the terminal. It proves nothing about AWS's side of those calls.
const AWS_STAND_IN: &str = r##"#!/usr/bin/env bash
# Stand-in for the AWS CLI (tests/docs.rs): records the call, answers canned values.
printf 'aws %s\n' "$*" >> "$STAND_IN_LOG"
profile=; query=; url=; words=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --query) query=$2; words+=("$1" "$2"); shift 2 ;;
    --queue-url) url=$2; words+=("$1" "$2"); shift 2 ;;
    *) words+=("$1"); shift ;;
  esac
done
last=${words[${#words[@]}-1]}
case "${words[0]} ${words[1]}" in
  "lambda invoke")
    printf '{"answer":"from the operator function","as":"%s"}' "${profile:-default}" > "$last"
    echo '{"StatusCode": 200, "ExecutedVersion": "$LATEST"}' ;;
  "sqs get-queue-attributes")
    echo "arn-of:$url" ;;
  "cloudformation describe-stacks")
    key=$(printf '%s' "$query" | sed -n "s/.*Key=='\([A-Za-z]*\)'.*/\1/p")
    if [ -n "$key" ]; then echo "stand-in-$key"; else echo '[]'; fi ;;
  *)
    if [ -n "$query" ]; then echo "stand-in:${words[0]}:${words[1]}"; else echo '{}'; fi ;;
esac
"##;

/// STAND-IN for `make` and the SAM CLI (`.venv/bin/sam`) in the guide: records the call only.
const RECORDER_STAND_IN: &str =
    "#!/usr/bin/env bash\nprintf '%s %s\\n' \"$(basename \"$0\")\" \"$*\" >> \"$STAND_IN_LOG\"\n";

struct ShellRun {
    ok: bool,
    stdout: String,
    stderr: String,
    /// Every recorded call, in order: `aws …`, `make …`, `sam …`.
    calls: Vec<String>,
}

/// Runs `script` with bash (`set -eu`, as one shell a person pastes the blocks into) in a scratch
/// directory whose `aws`, `make` and `.venv/bin/sam` are the stand-ins.
fn run_documented_shell(script: &str) -> ShellRun {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let install = |rel: &str, text: &str| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    install("bin/aws", AWS_STAND_IN);
    install("bin/make", RECORDER_STAND_IN);
    install(".venv/bin/sam", RECORDER_STAND_IN);
    let log = dir.path().join("calls.log");
    std::fs::write(&log, "").unwrap();
    let path = format!("{}:{}", dir.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", &format!("set -eu\n{script}")])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("STAND_IN_LOG", &log)
        .env("HOME", dir.path())
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run bash");
    ShellRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        calls: std::fs::read_to_string(&log).unwrap().lines().map(str::to_owned).collect(),
    }
}

/// The runbook's setup block: the first `sh` block of "Before you start".
fn runbook_setup(runbook: &str) -> String {
    let section = runbook.split("## Before you start").nth(1).unwrap_or_default();
    let section = section.split("\n## ").next().unwrap_or_default();
    code_blocks(section).into_iter().find(|(lang, _)| lang == "sh").map(|(_, b)| b).unwrap_or_default()
}

const OPERATOR_PROFILE: &str = "--profile order-confirmation-operator";

/// Identity problems in recorded calls: `lambda invoke` (op) runs as the operator role, and nothing
/// else does (the role may only invoke the operator function).
fn identity_problems(calls: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for call in calls.iter().filter(|c| c.starts_with("aws ")) {
        let invoke = call.contains(" lambda invoke ");
        if invoke && !call.contains(OPERATOR_PROFILE) {
            bad.push(format!("not run as the operator role: {call}"));
        }
        if !invoke && call.contains(OPERATOR_PROFILE) {
            bad.push(format!("run as the operator role, which may only invoke the operator function: {call}"));
        }
    }
    bad
}

/// What is wrong with the runbook's setup block when run as written, followed by one more `op`.
fn runbook_helper_problems(setup: &str) -> Vec<String> {
    let r = run_documented_shell(&format!("{setup}\nop '{{\"operator\":\"stats\"}}'\n"));
    let mut bad = Vec::new();
    if !r.ok {
        bad.push(format!("the block fails: {}", r.stderr));
    }
    let invokes: Vec<&String> = r.calls.iter().filter(|c| c.contains(" lambda invoke ")).collect();
    let printed =
        r.stdout.matches(r#"{"answer":"from the operator function","as":"order-confirmation-operator"}"#).count();
    if invokes.len() != 2 || printed != 2 {
        bad.push(format!(
            "op printed {printed} answers of the operator role for {} invocations: {:?}",
            invokes.len(),
            r.stdout
        ));
    }
    for (call, payload) in invokes.iter().zip([r#"{"operator":"config"}"#, r#"{"operator":"stats"}"#]) {
        if !call.contains("--function-name stand-in-OperatorFunctionName") || !call.contains(payload) {
            bad.push(format!("op does not send {payload} to the stack's OperatorFunctionName: {call}"));
        }
    }
    bad.extend(identity_problems(&r.calls));
    bad
}

#[test]
fn the_runbooks_helpers_run_and_op_prints_the_operator_functions_answer_as_the_operator_role() {
    let setup = runbook_setup(&read("docs/runbook.md"));
    assert!(setup.contains("op() {"), "docs/runbook.md's first block no longer defines op:\n{setup}");
    let problems = runbook_helper_problems(&setup);
    assert!(problems.is_empty(), "docs/runbook.md, \"Before you start\":\n{}", problems.join("\n"));
}

#[test]
fn runbook_helper_check_fails_on_an_op_that_prints_nothing_or_runs_as_the_caller() {
    let setup = runbook_setup(&read("docs/runbook.md"));
    let start = setup.find("op() {").expect("op is defined");
    let end = start + setup[start..].find("\n}\n").expect("op ends with a lone }") + 3;
    // The helper as it was: the answer went to /dev/stdout after stdout went to /dev/null.
    let silent = format!(
        "{}op() {{\n  aws lambda invoke --function-name \"$OP\" --cli-binary-format raw-in-base64-out --payload \"$1\" /dev/stdout >/dev/null\n}}\n{}",
        &setup[..start],
        &setup[end..]
    );
    let problems = runbook_helper_problems(&silent).join("\n");
    assert!(problems.contains("op printed 0 answers of the operator role for 2 invocations"), "{problems}");
    assert!(problems.contains("not run as the operator role: aws lambda invoke"), "{problems}");
    let as_caller = setup.replace("aws --profile \"$OP_PROFILE\" lambda invoke", "aws lambda invoke");
    assert_ne!(as_caller, setup, "the mutation target is gone from the runbook's op");
    let problems = runbook_helper_problems(&as_caller).join("\n");
    assert!(problems.contains("op printed 0 answers of the operator role"), "{problems}");
}

/// What is wrong with docs/first-deploy.md's command sequence, run as written in one shell (the
/// runbook's setup block pasted in where the guide says, before the first `op`): the order a
/// fresh account needs, the values carried from step to step, and who runs what.
fn guide_problems(guide: &str, setup: &str) -> Vec<String> {
    let mut script = String::new();
    let mut ops = 0;
    for (_, block) in code_blocks(guide).into_iter().filter(|(lang, _)| lang == "sh") {
        if block.contains("op '") && !script.contains("op() {") {
            script += setup;
            script.push('\n');
            ops += setup.lines().filter(|l| l.trim_start().starts_with("op '")).count();
        }
        ops += block.lines().filter(|l| l.trim_start().starts_with("op '")).count();
        script += &block;
        script.push('\n');
    }
    let r = run_documented_shell(&script);
    let mut bad = Vec::new();
    if !r.ok {
        bad.push(format!("the sequence fails: {}", r.stderr));
    }
    let at = |needle: &str| r.calls.iter().position(|c| c.contains(needle));
    let aws: Vec<&String> = r.calls.iter().filter(|c| c.starts_with("aws ")).collect();
    if !aws.first().is_some_and(|c| c.starts_with("aws lambda get-account-settings")) {
        bad.push(format!("the first call is not `aws lambda get-account-settings`: {:?}", aws.first()));
    }
    // Each step before the one that needs it.
    let order = [
        ("sesv2 put-account-details --production-access-enabled", "rds create-db-cluster"),
        ("rds create-db-cluster", "CREATE DATABASE orders"),
        ("CREATE DATABASE orders", "CREATE ROLE orders_app LOGIN"),
        ("CREATE ROLE orders_app LOGIN", "GRANT USAGE, CREATE ON SCHEMA public TO orders_app"),
        ("GRANT USAGE, CREATE ON SCHEMA public TO orders_app", "secretsmanager create-secret"),
        ("secretsmanager create-secret", "sam deploy"),
        ("sns create-topic", "sam deploy"),
        ("sesv2 create-email-identity", "sam deploy"),
        ("sam build", "sam deploy"),
        ("sam deploy", "profile.order-confirmation-operator.role_arn"),
        ("profile.order-confirmation-operator.role_arn", " lambda invoke "),
        ("sam deploy", "sqs send-message"),
    ];
    for (first, then) in order {
        match (at(first), at(then)) {
            (Some(a), Some(b)) if a < b => {}
            (a, b) => bad.push(format!("`{first}` (call {a:?}) must come before `{then}` (call {b:?})")),
        }
    }
    if let Some(grant) = r.calls.iter().find(|c| c.contains("ON SCHEMA public"))
        && !grant.contains("--database orders ")
    {
        bad.push(format!("the schema grant is not made in the ledger's database: {grant}"));
    }
    let deploy = r.calls.iter().find(|c| c.starts_with("sam deploy")).cloned().unwrap_or_default();
    for carried in [
        "DbClusterArn=stand-in:rds:describe-db-clusters",
        "DbSecretArn=stand-in:secretsmanager:create-secret",
        "AlarmActionArn=stand-in:sns:create-topic",
        "SesAccountMaxSendRate=stand-in:sesv2:get-account",
        "SesIdentityArn=arn:aws:ses:eu-west-1:stand-in:sts:get-caller-identity:identity/",
    ] {
        if !deploy.contains(carried) {
            bad.push(format!("the deploy does not get {carried} from the earlier steps: {deploy}"));
        }
    }
    let printed = r.stdout.matches(r#""as":"order-confirmation-operator""#).count();
    if printed != ops || ops == 0 {
        bad.push(format!("{ops} op requests in the guide, {printed} answers printed"));
    }
    bad.extend(identity_problems(&r.calls));
    bad
}

#[test]
fn the_first_deploy_guide_runs_in_the_order_a_fresh_account_needs() {
    let problems = guide_problems(&read("docs/first-deploy.md"), &runbook_setup(&read("docs/runbook.md")));
    assert!(problems.is_empty(), "docs/first-deploy.md:\n{}", problems.join("\n"));
}

#[test]
fn guide_check_fails_on_a_missing_grant_a_late_quota_check_or_a_lost_value() {
    let guide = read("docs/first-deploy.md");
    let setup = runbook_setup(&read("docs/runbook.md"));
    let quota = "   aws lambda get-account-settings \\\n     --query '{limit:AccountLimit.ConcurrentExecutions,unreserved:AccountLimit.UnreservedConcurrentExecutions}'\n";
    let grant = "     \"GRANT CONNECT, TEMPORARY ON DATABASE orders TO orders_app\" \\\n     \"GRANT USAGE, CREATE ON SCHEMA public TO orders_app\"; do\n";
    let topic = "TOPIC_ARN=$(aws sns create-topic";
    for target in [quota, grant, topic] {
        assert_eq!(
            guide.matches(target).count(),
            1,
            "the mutation target {target:?} is gone from docs/first-deploy.md"
        );
    }
    let broken = guide
        .replace(quota, "   true\n")
        .replace(grant, "     \"GRANT CONNECT, TEMPORARY ON DATABASE orders TO orders_app\"; do\n")
        .replace(topic, "TOPIC=$(aws sns create-topic")
        .replace("   aws sesv2 put-account-details", "   aws sesv2 get-account-details")
        + "\n```sh\naws lambda get-account-settings\n```\n";
    let problems = guide_problems(&broken, &setup).join("\n");
    for expected in [
        "the first call is not `aws lambda get-account-settings`",
        "`GRANT USAGE, CREATE ON SCHEMA public TO orders_app` (call None) must come before `secretsmanager create-secret`",
        "`sesv2 put-account-details --production-access-enabled` (call None) must come before `rds create-db-cluster`",
        "the sequence fails",
    ] {
        assert!(problems.contains(expected), "expected {expected:?} in:\n{problems}");
    }
}

/// What is wrong with the runbook's redrives, each block that starts a move task run after the
/// setup block: every DLQ the stack has is moved somewhere, and always to a named destination, its
/// own source queue (the SES events DLQ also holds events EventBridge put there itself, which a
/// move task without a destination cannot return anywhere).
fn redrive_problems(runbook: &str) -> Vec<String> {
    let setup = runbook_setup(runbook);
    let mut bad = Vec::new();
    let mut moved = BTreeSet::new();
    for (_, block) in
        code_blocks(runbook).into_iter().filter(|(l, b)| l == "sh" && b.contains("start-message-move-task"))
    {
        let r = run_documented_shell(&format!("{setup}\n{block}\n"));
        if !r.ok {
            bad.push(format!("a redrive block fails: {}", r.stderr));
        }
        for call in r.calls.iter().filter(|c| c.contains("sqs start-message-move-task")) {
            let after =
                |flag: &str| call.split(flag).nth(1).and_then(|rest| rest.split_whitespace().next()).map(str::to_owned);
            let source = after("--source-arn ").unwrap_or_default();
            let Some(dlq) = source.strip_prefix("arn-of:stand-in-").and_then(|s| s.strip_suffix("DeadLetterQueueUrl"))
            else {
                bad.push(format!("the move task's source is not a DLQ of the stack: {call}"));
                continue;
            };
            moved.insert(dlq.to_owned());
            let expected = format!("arn-of:stand-in-{dlq}QueueUrl");
            if after("--destination-arn ").as_deref() != Some(expected.as_str()) {
                bad.push(format!("{dlq}'s DLQ is moved without naming its source queue as the destination: {call}"));
            }
        }
    }
    for dlq in ["HighPriority", "NormalPriority", "SesEvents"] {
        if !moved.contains(dlq) {
            bad.push(format!("no redrive of {dlq}'s DLQ"));
        }
    }
    bad
}

#[test]
fn every_runbook_redrive_names_its_destination_and_runs() {
    let problems = redrive_problems(&read("docs/runbook.md"));
    assert!(problems.is_empty(), "docs/runbook.md's redrives:\n{}", problems.join("\n"));
}

#[test]
fn redrive_check_fails_on_a_move_task_without_destination() {
    let runbook = read("docs/runbook.md");
    let target = "aws sqs start-message-move-task --source-arn \"$(arn_of \"$EVENTS_DLQ_URL\")\" \\\n  --destination-arn \"$(arn_of \"$(out SesEventsQueueUrl)\")\" --max-number-of-messages-per-second 10\n";
    assert_eq!(runbook.matches(target).count(), 1, "the mutation target is gone from docs/runbook.md");
    let broken =
        runbook.replace(target, "aws sqs start-message-move-task --source-arn \"$(arn_of \"$EVENTS_DLQ_URL\")\"\n");
    assert_eq!(
        redrive_problems(&broken),
        vec![
            "SesEvents's DLQ is moved without naming its source queue as the destination: aws sqs start-message-move-task --source-arn arn-of:stand-in-SesEventsDeadLetterQueueUrl"
        ]
    );
    let without = runbook.replace(target, "");
    assert_eq!(redrive_problems(&without), vec!["no redrive of SesEvents's DLQ"]);
}

/// What the README's Layout section gets wrong about `src/`: entries (`order.rs`, `ledger/`) it does
/// not name, and names it gives that are not there. A folder beside a module file (`decode/` beside
/// `decode.rs`, holding its tests or parts) is covered by the file.
fn layout_problems(readme: &str, src_entries: &[String]) -> Vec<String> {
    let Some(start) = readme.find("\n## Layout\n") else { return vec!["README.md has no Layout section".to_owned()] };
    let section = &readme[start + 1..];
    let section = section[3..].find("\n## ").map_or(section, |end| &section[..end + 3]);
    let named: BTreeSet<&str> = section.split_whitespace().filter_map(|w| w.strip_prefix("src/")).collect();
    let mut problems: Vec<String> = src_entries
        .iter()
        .filter(|e| !named.contains(e.as_str()))
        .filter(|e| !e.strip_suffix('/').is_some_and(|m| named.contains(format!("{m}.rs").as_str())))
        .map(|e| format!("src/{e} is not in the README's layout"))
        .collect();
    problems.extend(
        named
            .iter()
            .filter(|n| !src_entries.iter().any(|e| e == *n))
            .map(|n| format!("src/{n} is named but not there")),
    );
    problems
}

#[test]
fn the_readme_layout_names_every_file_and_folder_in_src() {
    let mut entries: Vec<String> = std::fs::read_dir(root().join("src"))
        .expect("src/ exists")
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            Some(if p.is_dir() { format!("{name}/") } else { name })
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 20, "expected the modules of src/, found {entries:?}");
    let problems = layout_problems(&read("README.md"), &entries);
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn layout_check_fails_on_a_missing_or_stale_entry() {
    let readme =
        "# x\n\n## Layout\n\n```\nsrc/lib.rs  map\nsrc/decode.rs  x\nsrc/gone.rs  old\n```\n\n## Next\nsrc/order.rs\n";
    let entries: Vec<String> =
        ["lib.rs", "decode.rs", "decode/", "order.rs", "ledger/"].into_iter().map(str::to_owned).collect();
    assert_eq!(
        layout_problems(readme, &entries),
        vec![
            "src/order.rs is not in the README's layout".to_owned(),
            "src/ledger/ is not in the README's layout".to_owned(),
            "src/gone.rs is named but not there".to_owned(),
        ]
    );
}
