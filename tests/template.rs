//! The SAM template (`template.yaml`) as a deployment would meet it, without AWS and without Docker:
//! `cfn-lint` with the serverless rules, `sam validate --lint`, `cfn-lint` on the template as the
//! SAM transform turns it into CloudFormation (cfn-lint alone does not check what is inside SAM
//! resources), the deployment invariants the design relies on, and `sam build`. Every check is also
//! run on a deliberately broken copy of the template, to prove it can fail.
//!
//! The tools come from the project's `.venv` (pinned in requirements-dev.txt), which `make test`
//! installs.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEMPLATE: &str = "template.yaml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn venv_bin() -> PathBuf {
    let bin = root().join(".venv/bin");
    assert!(
        bin.join("cfn-lint").exists() && bin.join("sam").exists() && root().join(".venv/.installed").exists(),
        "{} is missing or incomplete: `make test` installs it (or `make venv`)",
        bin.display()
    );
    bin
}

/// A tool from the venv, run in the project root with the venv first on PATH (cargo-lambda finds
/// zig through the first python3) and no telemetry.
fn tool(name: &str) -> Command {
    let bin = venv_bin();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = Command::new(bin.join(name));
    c.current_dir(root()).env("PATH", path).env("SAM_CLI_TELEMETRY", "0").env("AWS_DEFAULT_REGION", "us-east-1");
    c
}

struct Run {
    ok: bool,
    text: String,
}

fn run(c: &mut Command) -> Run {
    let Output { status, stdout, stderr } = c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    Run { ok: status.success(), text }
}

/// A copy of template.yaml in a temp dir with each `(from, to)` applied; each `from` must occur
/// exactly once, so a mutation that no longer matches the template fails loudly instead of testing
/// nothing.
fn broken_copy(edits: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let mut text = std::fs::read_to_string(root().join(TEMPLATE)).unwrap();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "the mutation target {from:?} must occur exactly once in {TEMPLATE}");
        text = text.replacen(from, to, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TEMPLATE);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn cfn_lint_sam(template: &Path) -> Run {
    // The template must come before -a, or cfn-lint reads it as a rules directory.
    run(tool("cfn-lint").arg(template).args(["-a", "cfn_lint_serverless.rules"]))
}

fn sam_validate(template: &Path) -> Run {
    run(tool("sam").args(["validate", "--lint", "--region", "us-east-1", "--template-file"]).arg(template))
}

/// The SAM template translated to CloudFormation by scripts/sam-translate (samtranslator).
fn translate(template: &Path, out: &Path) -> Run {
    run(tool("python3").arg(root().join("scripts/sam-translate")).arg(template).arg(out))
}

/// cfn-lint on the translation; a template that does not translate fails here too.
fn cfn_lint_translated(template: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("translated.json");
    let t = translate(template, &out);
    if !t.ok {
        return t;
    }
    run(tool("cfn-lint").arg(&out))
}

fn assert_passes(what: &str, r: Run) {
    assert!(r.ok, "{what} fails on {TEMPLATE}:\n{}", r.text);
}

fn assert_fails_with(what: &str, r: Run, expected: &str) {
    assert!(!r.ok, "{what} passed a broken template:\n{}", r.text);
    assert!(r.text.contains(expected), "{what} failed, but not with {expected:?}:\n{}", r.text);
}

// ---- cfn-lint with the serverless rules ----

#[test]
fn cfn_lint_with_serverless_rules_passes() {
    assert_passes("cfn-lint", cfn_lint_sam(&root().join(TEMPLATE)));
}

#[test]
fn cfn_lint_fails_on_an_invalid_queue_property() {
    let (_dir, t) = broken_copy(&[(
        "      VisibilityTimeout: 400\n      MessageRetentionPeriod: 345600 # 4 days, shorter",
        "      VisibilityTimeout: 50000\n      MessageRetentionPeriod: 345600 # 4 days, shorter",
    )]);
    assert_fails_with("cfn-lint", cfn_lint_sam(&t), "E3034");
}

#[test]
fn cfn_lint_serverless_rules_fail_on_a_queue_without_redrive_policy() {
    let (_dir, t) = broken_copy(&[(
        "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt HighPriorityDeadLetterQueue.Arn\n        maxReceiveCount: 5\n",
        "",
    )]);
    assert_fails_with("cfn-lint serverless rules", cfn_lint_sam(&t), "ES6000");
}

// ---- sam validate --lint ----

#[test]
fn sam_validate_lint_passes() {
    assert_passes("sam validate --lint", sam_validate(&root().join(TEMPLATE)));
}

#[test]
fn sam_validate_lint_fails_on_an_invalid_tracing_mode() {
    let (_dir, t) = broken_copy(&[(
        "      Tracing: Active\n      Role: !GetAtt ConsumerRole.Arn\n",
        "      Tracing: Always\n      Role: !GetAtt ConsumerRole.Arn\n",
    )]);
    assert_fails_with("sam validate --lint", sam_validate(&t), "Always");
}

// ---- cfn-lint on the SAM translation (catches what cfn-lint misses inside SAM resources) ----

#[test]
fn translated_template_passes_cfn_lint() {
    assert_passes("cfn-lint on the translation", cfn_lint_translated(&root().join(TEMPLATE)));
}

#[test]
fn translated_cfn_lint_fails_on_batch_size_over_10000() {
    let (_dir, t) = broken_copy(&[(
        "            # under Lambda\").\n            BatchSize: 20\n",
        "            # under Lambda\").\n            BatchSize: 20000\n",
    )]);
    assert!(cfn_lint_sam(&t).ok, "cfn-lint alone now catches this: the translation check may be redundant");
    assert_fails_with("cfn-lint on the translation", cfn_lint_translated(&t), "10000");
}

#[test]
fn translated_cfn_lint_fails_on_maximum_concurrency_below_2() {
    let (_dir, t) = broken_copy(&[(
        "              MaximumConcurrency: !Ref NormalMaximumConcurrency\n",
        "              MaximumConcurrency: 1\n",
    )]);
    assert_fails_with("cfn-lint on the translation", cfn_lint_translated(&t), "minimum of 2");
}

#[test]
fn translated_cfn_lint_fails_on_an_unknown_function_response_type() {
    let (_dir, t) = broken_copy(&[(
        "            BatchSize: 20\n            MaximumBatchingWindowInSeconds: 1\n            FunctionResponseTypes: [ReportBatchItemFailures]\n            ScalingConfig:\n              MaximumConcurrency: !Ref HighMaximumConcurrency\n",
        "            BatchSize: 20\n            MaximumBatchingWindowInSeconds: 1\n            FunctionResponseTypes: [ReportEverything]\n            ScalingConfig:\n              MaximumConcurrency: !Ref HighMaximumConcurrency\n",
    )]);
    assert_fails_with("cfn-lint on the translation", cfn_lint_translated(&t), "ReportEverything");
}

#[test]
fn translation_fails_on_an_unknown_event_type() {
    let (_dir, t) = broken_copy(&[(
        "        HighPriority:\n          Type: SQS\n",
        "        HighPriority:\n          Type: SQSQueue\n",
    )]);
    assert_fails_with("the SAM translation", cfn_lint_translated(&t), "SQSQueue");
}

// ---- the deployment invariants (on the translation, where SAM's defaults are explicit) ----

fn translated(template: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("translated.json");
    let r = translate(template, &out);
    assert!(r.ok, "{}", r.text);
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

fn of_type<'a>(cfn: &'a Value, ty: &str) -> Vec<(&'a str, &'a Value)> {
    cfn["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.as_str(), r))
        .collect()
}

/// The logical id a `{"Fn::GetAtt": [id, "Arn"]}` or `{"Ref": id}` points at.
fn target(v: &Value) -> Option<&str> {
    v.get("Fn::GetAtt").and_then(|g| g[0].as_str()).or_else(|| v.get("Ref").and_then(Value::as_str))
}

/// The logical id of the function the queues' event source mappings invoke (the consumer), through
/// its alias when they invoke one.
fn consumer_id(cfn: &Value) -> Option<&str> {
    let invoked = of_type(cfn, "AWS::Lambda::EventSourceMapping")
        .iter()
        .find_map(|(_, m)| target(&m["Properties"]["FunctionName"]))?;
    Some(function_behind(cfn, invoked))
}

/// The function an id names: itself, or the function behind an `AWS::Lambda::Alias`.
fn function_behind<'a>(cfn: &'a Value, id: &'a str) -> &'a str {
    let r = &cfn["Resources"][id];
    if r["Type"] == "AWS::Lambda::Alias" { target(&r["Properties"]["FunctionName"]).unwrap_or(id) } else { id }
}

/// Every violation of what the deployment must guarantee (docs/design.md, "Operations").
fn violations(cfn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let functions = of_type(cfn, "AWS::Lambda::Function");
    if functions.len() != 2 {
        return vec![format!("expected two functions (consumer, operator), got {}", functions.len())];
    }
    let Some(fid) = consumer_id(cfn) else { return vec!["no event source mapping names a function".into()] };
    let function = &cfn["Resources"][fid];
    for (id, f) in &functions {
        let p = &f["Properties"];
        for (key, want) in [("Runtime", "provided.al2023"), ("Handler", "bootstrap")] {
            if p[key] != want {
                bad.push(format!("{id}: {key} is {}, not {want}", p[key]));
            }
        }
        if p["Architectures"] != serde_json::json!(["arm64"]) {
            bad.push(format!("{id}: not arm64"));
        }
        if p["TracingConfig"]["Mode"] != "Active" {
            bad.push(format!("{id}: tracing is not Active"));
        }
        if p["LoggingConfig"]["LogFormat"] != "JSON" {
            bad.push(format!("{id}: log format is not JSON"));
        }
        let log_groups = of_type(cfn, "AWS::Logs::LogGroup");
        if !log_groups.iter().any(|(_, g)| {
            g["Properties"].get("RetentionInDays").is_some()
                && g["Properties"]["LogGroupName"]["Fn::Sub"].as_str() == Some(&format!("/aws/lambda/${{{id}}}"))
        }) {
            bad.push(format!("{id}: no log group with retention"));
        }
        let env = &p["Environment"]["Variables"];
        for (key, want) in [("LEDGER", Some("data-api")), ("MAILER", Some("ses"))] {
            if env[key].as_str() != want {
                bad.push(format!("{id}: {key} is {}, not {want:?}", env[key]));
            }
        }
    }
    let p = &function["Properties"];
    let timeout = p["Timeout"].as_u64().unwrap_or(3);
    let env = &p["Environment"]["Variables"];
    for key in [
        "DB_CLUSTER_ARN",
        "DB_SECRET_ARN",
        "DB_NAME",
        "SENDER_ADDRESS",
        "SES_CONFIGURATION_SET",
        "STATUS_URL_TEMPLATE",
        "HIGH_PRIORITY_RESERVE",
    ] {
        if env.get(key).is_none() {
            bad.push(format!("environment lacks {key}"));
        }
    }
    // Queues: every source queue has a DLQ (5 receives, 14 days) and outlasts 6 invocations.
    let queues = of_type(cfn, "AWS::SQS::Queue");
    let mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping");
    let sources: Vec<_> = queues.iter().filter(|(_, q)| q["Properties"].get("RedrivePolicy").is_some()).collect();
    if sources.len() != 3 {
        bad.push(format!("expected 3 queues with a DLQ (high, normal, SES events), got {}", sources.len()));
    }
    for (qid, q) in &sources {
        let qp = &q["Properties"];
        let redrive = &qp["RedrivePolicy"];
        if redrive["maxReceiveCount"] != 5 {
            bad.push(format!("{qid}: maxReceiveCount is {}, not 5", redrive["maxReceiveCount"]));
        }
        let dlq = target(&redrive["deadLetterTargetArn"]).unwrap_or("?");
        let retention = cfn["Resources"][dlq]["Properties"]["MessageRetentionPeriod"].as_u64();
        if retention != Some(14 * 24 * 3600) {
            bad.push(format!("{qid}: DLQ {dlq} retention is {retention:?}, not 14 days"));
        }
        let on_queue: Vec<_> =
            mappings.iter().filter(|(_, m)| target(&m["Properties"]["EventSourceArn"]) == Some(qid)).collect();
        if on_queue.len() != 1 {
            bad.push(format!("{qid}: {} event source mappings, not 1", on_queue.len()));
        }
        let window = on_queue
            .iter()
            .map(|(_, m)| m["Properties"]["MaximumBatchingWindowInSeconds"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let visibility = qp["VisibilityTimeout"].as_u64().unwrap_or(30);
        if visibility < 6 * timeout + window {
            bad.push(format!("{qid}: VisibilityTimeout {visibility} < 6 x timeout {timeout} + window {window}"));
        }
        if !of_type(cfn, "AWS::CloudWatch::Alarm").iter().any(|(_, a)| {
            a["Properties"]["MetricName"] == "ApproximateAgeOfOldestMessage"
                && target(&a["Properties"]["Dimensions"][0]["Value"]) == Some(qid)
        }) {
            bad.push(format!("{qid}: no ApproximateAgeOfOldestMessage alarm"));
        }
        if !of_type(cfn, "AWS::CloudWatch::Alarm").iter().any(|(_, a)| {
            alarm_metrics(a).iter().any(|(_, m, d)| m == "ApproximateNumberOfMessagesVisible" && target(d) == Some(dlq))
        }) {
            bad.push(format!("{dlq}: no alarm on the DLQ's messages"));
        }
    }
    for (mid, m) in &mappings {
        let mp = &m["Properties"];
        if mp["FunctionResponseTypes"] != serde_json::json!(["ReportBatchItemFailures"]) {
            bad.push(format!("{mid}: FunctionResponseTypes is not [ReportBatchItemFailures]"));
        }
        if mp["ScalingConfig"].get("MaximumConcurrency").is_none() {
            bad.push(format!("{mid}: no ScalingConfig.MaximumConcurrency"));
        }
    }

    // The reconcile schedule delivers EventBridge's own scheduled event (no Input override).
    let rules = of_type(cfn, "AWS::Events::Rule");
    if !rules.iter().any(|(_, r)| {
        r["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
            && r["Properties"]["Targets"].as_array().is_some_and(|t| t.iter().all(|t| t.get("Input").is_none()))
    }) {
        bad.push("no rate(5 minutes) schedule delivering the standard scheduled event".into());
    }

    // Least privilege: the inline policies name exact actions and resources. A wildcard resource
    // is allowed only where AWS offers nothing narrower: X-Ray's two write actions, and the log
    // streams of one named log group.
    for (rid, role) in of_type(cfn, "AWS::IAM::Role") {
        for st in statements(role) {
            let actions = as_list(&st["Action"]);
            if actions.iter().any(|a| a.as_str().is_some_and(|a| a.contains('*'))) {
                bad.push(format!("{rid}: wildcard action in {}", st["Action"]));
            }
            // Actions AWS defines without a resource type: "*" is the only resource they take.
            let account_wide =
                actions.iter().all(|a| a.as_str().is_some_and(|a| a.starts_with("xray:Put") || a == "ses:GetAccount"));
            for r in as_list(&st["Resource"]) {
                let text = r.as_str().map(str::to_owned).or_else(|| r["Fn::Sub"].as_str().map(str::to_owned));
                let Some(text) = text else { continue };
                let log_streams = text.ends_with(":log-stream:*") && !text[..text.len() - 1].contains('*');
                if text.contains('*') && !(account_wide && text == "*") && !log_streams {
                    bad.push(format!("{rid}: wildcard resource in {}", st["Resource"]));
                }
            }
        }
    }
    bad.extend(operations_violations(cfn, fid));
    bad.extend(delivery_event_violations(cfn));

    // Alarms on the function and on the reconcile metric.
    let alarms = of_type(cfn, "AWS::CloudWatch::Alarm");
    for (ns, metric) in
        [("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles"), ("OrderConfirmation", "UnconfirmedOrders")]
    {
        if !alarms.iter().any(|(_, a)| alarm_metrics(a).iter().any(|(n, m, _)| n == ns && m == metric)) {
            bad.push(format!("no alarm on {ns} {metric}"));
        }
    }
    for (aid, a) in &alarms {
        if a["Properties"].get("AlarmActions").is_none() {
            bad.push(format!("{aid}: AlarmActions not wired to the alarm-action parameter"));
        }
    }
    // The dashboard body is JSON once its ${...} references are substituted.
    for (did, d) in of_type(cfn, "AWS::CloudWatch::Dashboard") {
        let body = &d["Properties"]["DashboardBody"]["Fn::Sub"][0];
        let mut text = body.as_str().unwrap_or_default().to_owned();
        while let Some(start) = text.find("${") {
            let end = text[start..].find('}').map_or(text.len(), |e| start + e + 1);
            text.replace_range(start..end, "x");
        }
        if let Err(e) = serde_json::from_str::<Value>(&text) {
            bad.push(format!("{did}: DashboardBody is not JSON: {e}"));
        }
    }
    for output in [
        "HighPriorityQueueUrl",
        "NormalPriorityQueueUrl",
        "HighPriorityDeadLetterQueueUrl",
        "NormalPriorityDeadLetterQueueUrl",
        "FunctionName",
        "OperatorFunctionName",
        "OperatorRoleArn",
        "DeployedCommit",
    ] {
        if cfn["Outputs"].get(output).is_none() {
            bad.push(format!("no output {output}"));
        }
    }
    bad
}

/// SES's events reach the function (docs/design.md, "Delivery events"): the configuration set's
/// EventBridge destination publishes every type the code reads, one rule forwards exactly those
/// (`detail-type`) of this configuration set to the events queue (with a DLQ of its own), only that
/// rule may put into the queue, and the queue's name carries the suffix the code recognises.
fn delivery_event_violations(cfn: &Value) -> Vec<String> {
    use order_confirmation::ses_event::EventType;
    let mut bad = Vec::new();
    let suffix = order_confirmation::delivery::EVENTS_QUEUE_SUFFIX;
    let queues = of_type(cfn, "AWS::SQS::Queue");
    let Some((events_queue, _)) = queues.iter().find(|(_, q)| {
        q["Properties"].get("RedrivePolicy").is_some()
            && q["Properties"]["QueueName"]["Fn::Sub"].as_str().is_some_and(|n| n.ends_with(suffix))
    }) else {
        return vec![format!("no source queue named *{suffix}: the function would read SES events as orders")];
    };
    let detail_types: Vec<&str> = EventType::ALL.iter().map(|t| t.detail_type()).collect();
    let matching: Vec<&str> = EventType::ALL.iter().map(|t| t.matching_name()).collect();
    let destinations = of_type(cfn, "AWS::SES::ConfigurationSetEventDestination");
    let publishes = destinations.iter().any(|(_, d)| {
        let ed = &d["Properties"]["EventDestination"];
        let types: Vec<&str> =
            ed["MatchingEventTypes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        ed["Enabled"] == true
            && ed["EventBridgeDestination"]["EventBusArn"]["Fn::Sub"]
                .as_str()
                .is_some_and(|a| a.ends_with(":event-bus/default"))
            && d["Properties"]["ConfigurationSetName"]["Ref"] == "SesConfigurationSetName"
            && matching.iter().all(|m| types.contains(m))
    });
    if !publishes {
        bad.push(format!(
            "no enabled EventBridge event destination on SesConfigurationSetName publishing {matching:?}"
        ));
    }
    let rules = of_type(cfn, "AWS::Events::Rule");
    let rule = rules.iter().find(|(_, r)| r["Properties"]["EventPattern"]["source"] == serde_json::json!(["aws.ses"]));
    match rule {
        None => bad.push("no EventBridge rule for source aws.ses".into()),
        Some((rid, r)) => {
            let pattern = &r["Properties"]["EventPattern"];
            let types: Vec<&str> =
                pattern["detail-type"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if types != detail_types {
                bad.push(format!("{rid}: detail-type {types:?} is not the types the code reads {detail_types:?}"));
            }
            if pattern["detail"]["mail"]["tags"]["ses:configuration-set"]
                != serde_json::json!([{"Ref": "SesConfigurationSetName"}])
            {
                bad.push(format!("{rid}: does not filter on this stack's configuration set"));
            }
            let targets = r["Properties"]["Targets"].as_array().cloned().unwrap_or_default();
            let ok = targets.len() == 1
                && target(&targets[0]["Arn"]) == Some(*events_queue)
                && target(&targets[0]["DeadLetterConfig"]["Arn"]).is_some();
            if !ok {
                bad.push(format!("{rid}: its one target is not {events_queue} with a dead-letter queue"));
            }
            let allowed = of_type(cfn, "AWS::SQS::QueuePolicy").iter().any(|(_, p)| {
                statements_of(&p["Properties"]["PolicyDocument"]).iter().any(|st| {
                    st["Principal"]["Service"] == "events.amazonaws.com"
                        && st["Action"] == "sqs:SendMessage"
                        && target(&st["Condition"]["ArnEquals"]["aws:SourceArn"]) == Some(*rid)
                        && as_list(&st["Resource"]).iter().any(|r| target(r) == Some(*events_queue))
                })
            });
            if !allowed {
                bad.push(format!("{events_queue}: no queue policy lets {rid} (and only it) send to it"));
            }
        }
    }
    bad
}

/// A policy document's statements; a statement under `Fn::If` counts as its first branch (what a
/// deployment with the condition true gets).
fn statements_of(document: &Value) -> Vec<Value> {
    as_list(&document["Statement"])
        .into_iter()
        .map(|st| st.get("Fn::If").map_or(st.clone(), |branches| branches[1].clone()))
        .filter(|st| st.is_object() && st.get("Ref").is_none())
        .collect()
}

fn as_list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_else(|| vec![v.clone()])
}

/// Every statement of a role's inline policies.
fn statements(role: &Value) -> Vec<Value> {
    role["Properties"]["Policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The actions a role allows on a resource (a `Ref`/`GetAtt` target id or a literal), and on any.
fn actions_on(role: &Value, resource: &str) -> Vec<String> {
    statements(role)
        .iter()
        .filter(|st| st["Effect"] == "Allow")
        .filter(|st| {
            as_list(&st["Resource"]).iter().any(|r| target(r) == Some(resource) || r.as_str() == Some(resource))
        })
        .flat_map(|st| as_list(&st["Action"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// Whether a function's role allows an action (on any resource).
fn role_allows(cfn: &Value, function: &str, action: &str) -> bool {
    let Some(role) = target(&cfn["Resources"][function]["Properties"]["Role"]) else { return false };
    statements(&cfn["Resources"][role])
        .iter()
        .filter(|st| st["Effect"] == "Allow")
        .flat_map(|st| as_list(&st["Action"]))
        .any(|a| a == action)
}

fn parameter_default(cfn: &Value, name: &str) -> Option<f64> {
    let d = &cfn["Parameters"][name]["Default"];
    d.as_f64().or_else(|| d.as_str().and_then(|s| s.parse().ok()))
}

/// The value of a number that is either a literal or a `Ref` to a parameter (its default).
fn number_or_default(cfn: &Value, v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).or_else(|| {
        let name = v.get("Ref")?.as_str()?;
        parameter_default(cfn, name)
    })
}

/// The metrics an alarm reads: (namespace, metric name, first dimension value) for a plain alarm
/// or for each `MetricStat` of a metric-math alarm.
fn alarm_metrics(a: &Value) -> Vec<(String, String, Value)> {
    let p = &a["Properties"];
    if let Some(name) = p["MetricName"].as_str() {
        return vec![(
            p["Namespace"].as_str().unwrap_or_default().to_owned(),
            name.to_owned(),
            p["Dimensions"][0]["Value"].clone(),
        )];
    }
    p["Metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let metric = &m["MetricStat"]["Metric"];
            Some((
                metric["Namespace"].as_str()?.to_owned(),
                metric["MetricName"].as_str()?.to_owned(),
                metric["Dimensions"][0]["Value"].clone(),
            ))
        })
        .collect()
}

/// What a deployment that is operated for real requires: alarms that fire on every
/// new DLQ arrival, the cut-over switch, least privilege (explicit roles, no managed policy, Data
/// API transactions only for the operator function that migrates), kept queues with redrive-allow
/// policies, reserved concurrency that covers both mappings and reconcile, the quota wiring, the
/// missing alarms, and an alarm action a guided deploy must ask for.
fn operations_violations(cfn: &Value, consumer: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let resources = cfn["Resources"].as_object().unwrap();
    let queues = of_type(cfn, "AWS::SQS::Queue");
    let mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping");
    let alarms = of_type(cfn, "AWS::CloudWatch::Alarm");

    // The incident's first constraint: AWS only, what exists. Nothing outside this list is created.
    const ALLOWED: &[&str] = &[
        "AWS::SQS::Queue",
        "AWS::Lambda::Function",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::Permission",
        "AWS::Events::Rule",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::Logs::QueryDefinition",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "Custom::LedgerSchema",
        // Configuration of what exists: who may put into the SES events queue, and where the
        // existing configuration set publishes its events (the default event bus).
        "AWS::SQS::QueuePolicy",
        "AWS::SES::ConfigurationSetEventDestination",
        // The consumer's gradual deployment (DeploymentPreference): CodeDeploy shifts its alias.
        "AWS::CodeDeploy::Application",
        "AWS::CodeDeploy::DeploymentGroup",
    ];
    for (id, r) in resources {
        let ty = r["Type"].as_str().unwrap_or_default();
        if !ALLOWED.contains(&ty) {
            bad.push(format!("{id}: {ty} is new infrastructure the incident's constraints rule out"));
        }
    }

    // 1. Every DLQ has an alarm (that it fires on arrivals only: dlq_alarm_violations).
    for (qid, q) in &queues {
        let Some(dlq) = target(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]) else { continue };
        let on_dlq: Vec<_> =
            alarms.iter().filter(|(_, a)| alarm_metrics(a).iter().any(|(_, _, d)| target(d) == Some(dlq))).collect();
        if on_dlq.is_empty() {
            bad.push(format!("{qid}: no alarm on its DLQ {dlq}"));
        }
        // 5. Kept on delete and replacement, except when the create itself rolls back (a failed
        // first deploy must not leave fixed-name queues behind to collide with the retry); the
        // DLQ accepts only its own source queue.
        for id in [*qid, dlq] {
            let r = &cfn["Resources"][id];
            if r["DeletionPolicy"] != "RetainExceptOnCreate" || r["UpdateReplacePolicy"] != "Retain" {
                bad.push(format!(
                    "{id}: DeletionPolicy is not RetainExceptOnCreate (kept, but not after a failed create) or UpdateReplacePolicy is not Retain"
                ));
            }
        }
        let allow = &cfn["Resources"][dlq]["Properties"]["RedriveAllowPolicy"];
        let source_name = q["Properties"]["QueueName"]["Fn::Sub"].as_str().unwrap_or("?");
        let names_source = as_list(&allow["sourceQueueArns"])
            .iter()
            .any(|a| a["Fn::Sub"].as_str().is_some_and(|s| s.ends_with(&format!(":{source_name}"))));
        if allow["redrivePermission"] != "byQueue" || !names_source {
            bad.push(format!("{dlq}: redrive-allow policy does not admit exactly its source queue {qid}"));
        }
        if q["Properties"]["RedriveAllowPolicy"]["redrivePermission"] != "denyAll" {
            bad.push(format!("{qid}: redrive-allow policy does not deny use as a DLQ"));
        }
    }

    // 2. The cut-over switch: both mappings' Enabled follow one true/false parameter, false by default.
    for (mid, m) in &mappings {
        let switch = m["Properties"]["Enabled"]["Ref"].as_str();
        let param = switch.map(|s| &cfn["Parameters"][s]);
        let ok = param.is_some_and(|p| {
            p["AllowedValues"] == serde_json::json!(["true", "false"]) && p["Default"].as_str() == Some("false")
        });
        if !ok {
            bad.push(format!("{mid}: Enabled is not the cut-over parameter (true/false, default false)"));
        }
    }

    // 5. Explicit roles only, no managed policy anywhere; the queues only to the consumer.
    for (rid, role) in of_type(cfn, "AWS::IAM::Role") {
        if let Some(m) = role["Properties"].get("ManagedPolicyArns") {
            bad.push(format!("{rid}: managed policies {m}"));
        }
    }
    let role_of = |fid: &str| target(&cfn["Resources"][fid]["Properties"]["Role"]).map(str::to_owned);
    let consumer_role = role_of(consumer).and_then(|r| resources.get(&r).cloned());
    let Some(consumer_role) = consumer_role else {
        bad.push(format!("{consumer}: its role is not an explicit AWS::IAM::Role of the template"));
        return bad;
    };
    let sources: Vec<&str> = mappings.iter().filter_map(|(_, m)| target(&m["Properties"]["EventSourceArn"])).collect();
    for q in &sources {
        let actions = actions_on(&consumer_role, q);
        // Every queue the function consumes is polled, deleted from and backed off (the function
        // changes the visibility of each failed record, orders and SES events alike); the order
        // queues also take re-enqueued deferrals.
        let events = cfn["Resources"][*q]["Properties"]["QueueName"]["Fn::Sub"]
            .as_str()
            .is_some_and(|n| n.ends_with(order_confirmation::delivery::EVENTS_QUEUE_SUFFIX));
        let needed: &[&str] = if events {
            &["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
        } else {
            &[
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ChangeMessageVisibility",
                "sqs:SendMessage",
            ]
        };
        for need in needed {
            if !actions.iter().any(|a| a == need) {
                bad.push(format!("{consumer}: role lacks {need} on {q}"));
            }
        }
    }
    for st in statements(&consumer_role) {
        let on_other_queue = as_list(&st["Action"]).iter().any(|a| a.as_str().is_some_and(|a| a.starts_with("sqs:")))
            && as_list(&st["Resource"]).iter().any(|r| !target(r).is_some_and(|t| sources.contains(&t)));
        if on_other_queue {
            bad.push(format!("{consumer}: SQS actions on something other than its queues: {}", st["Resource"]));
        }
    }
    let transactions = ["rds-data:BeginTransaction", "rds-data:CommitTransaction", "rds-data:RollbackTransaction"];
    let custom: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(_, r)| {
            r["Type"].as_str().is_some_and(|t| t.starts_with("Custom::") || t == "AWS::CloudFormation::CustomResource")
        })
        .collect();
    // A function that fails at start-up (a bad setting) never answers: CloudFormation then waits
    // the custom resource's ServiceTimeout, an hour unless the template says less.
    for (id, r) in &custom {
        if !r["Properties"]["ServiceTimeout"].as_f64().is_some_and(|t| (60.0..=900.0).contains(&t)) {
            bad.push(format!("{id}: ServiceTimeout is not set between 60 and 900 seconds (the default is an hour)"));
        }
    }
    let migrators: Vec<String> =
        custom.iter().filter_map(|(_, r)| target(&r["Properties"]["ServiceToken"]).map(str::to_owned)).collect();
    if migrators.is_empty() {
        bad.push("no custom resource applies the schema during the deploy".into());
    }
    for (fid, _) in of_type(cfn, "AWS::Lambda::Function") {
        let Some(role) = role_of(fid).and_then(|r| resources.get(&r).cloned()) else {
            bad.push(format!("{fid}: its role is not an explicit AWS::IAM::Role of the template"));
            continue;
        };
        let has_tx = statements(&role)
            .iter()
            .flat_map(|st| as_list(&st["Action"]))
            .any(|a| a.as_str().is_some_and(|a| transactions.contains(&a)));
        let migrates = migrators.iter().any(|m| m == fid);
        if has_tx && !migrates {
            bad.push(format!("{fid}: Data API transaction permissions, but migrate does not run there"));
        }
        if migrates && !has_tx {
            bad.push(format!("{fid}: runs migrate without the Data API transaction permissions"));
        }
    }

    // least privilege and sizing: reserved concurrency covers both mappings and reconcile; the quota wiring.
    let fp = &cfn["Resources"][consumer]["Properties"];
    // The reservation may be switched off (reservation_violations); when on, it must cover them.
    let reservation = &fp["ReservedConcurrentExecutions"];
    let reserved_value = reservation.get("Fn::If").map_or(reservation, |b| &b[1]);
    let reserved = number_or_default(cfn, reserved_value);
    let needed: f64 = mappings
        .iter()
        .map(|(_, m)| number_or_default(cfn, &m["Properties"]["ScalingConfig"]["MaximumConcurrency"]).unwrap_or(1000.0))
        .sum::<f64>()
        + 1.0;
    if reserved.is_none_or(|r| r < needed) {
        bad.push(format!(
            "{consumer}: reserved concurrency {reserved:?} does not cover the mappings + reconcile ({needed})"
        ));
    }
    let env = &fp["Environment"]["Variables"];
    if env.get("SES_MAX_SEND_RATE").is_some() {
        bad.push(format!("{consumer}: SES_MAX_SEND_RATE is set per instance (derive it from the account rate)"));
    }
    // The parameter's rate when one is given; otherwise the variable is absent and the instance
    // reads the account's quota, which its role must allow.
    let rate = &env["SES_ACCOUNT_MAX_SEND_RATE"]["Fn::If"];
    let condition = rate[0].as_str().and_then(|c| cfn["Conditions"].get(c));
    let set_when_given = serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "SesAccountMaxSendRate"}, ""]}]});
    if rate[1]["Ref"] != "SesAccountMaxSendRate"
        || rate[2]["Ref"] != "AWS::NoValue"
        || condition != Some(&set_when_given)
    {
        bad.push(format!(
            "{consumer}: SES_ACCOUNT_MAX_SEND_RATE is not the SesAccountMaxSendRate parameter when given and absent otherwise"
        ));
    }
    if !role_allows(cfn, consumer, "ses:GetAccount") {
        bad.push(format!("{consumer}: its role may not read the account's send quota (ses:GetAccount)"));
    }
    if env["SES_SENDERS"] != *reserved_value {
        bad.push(format!("{consumer}: SES_SENDERS is not the reserved concurrency"));
    }
    let largest_batch =
        mappings.iter().filter_map(|(_, m)| m["Properties"]["BatchSize"].as_f64()).fold(0.0_f64, f64::max);
    if number_or_default(cfn, &env["EXPECTED_BATCH_SIZE"]) != Some(largest_batch) {
        bad.push(format!(
            "{consumer}: EXPECTED_BATCH_SIZE {} is not the larger BatchSize {largest_batch}",
            env["EXPECTED_BATCH_SIZE"]
        ));
    }

    // 6. The missing alarms, and every alarm notifies an action a guided deploy must ask for.
    let read: Vec<(String, String, Value)> = alarms.iter().flat_map(|(_, a)| alarm_metrics(a)).collect();
    for (ns, metric) in [
        ("AWS/SES", "Reputation.BounceRate"),
        ("AWS/SES", "Reputation.ComplaintRate"),
        ("OrderConfirmation", "LedgerFailure"),
        ("OrderConfirmation", "UnrecordedSend"),
        ("OrderConfirmation", "PossibleDuplicate"),
        ("OrderConfirmation", "DuplicateMailed"),
        ("OrderConfirmation", "Bounced"),
    ] {
        if !read.iter().any(|(n, m, _)| n == ns && m == metric) {
            bad.push(format!("no alarm on {ns} {metric}"));
        }
    }
    let action = &cfn["Parameters"]["AlarmActionArn"];
    if action.get("Default").is_some() || action["AllowedPattern"].as_str().is_none_or(|p| p.ends_with(")?$")) {
        bad.push("AlarmActionArn has a default or accepts an empty value: a guided deploy must ask for it".into());
    }
    for (aid, a) in &alarms {
        for key in ["AlarmActions", "OKActions"] {
            if a["Properties"][key] != serde_json::json!([{"Ref": "AlarmActionArn"}]) {
                bad.push(format!("{aid}: {key} is not [AlarmActionArn]"));
            }
        }
    }
    bad
}

#[test]
fn template_meets_the_deployment_invariants() {
    let v = violations(&translated(&root().join(TEMPLATE)));
    assert!(v.is_empty(), "{TEMPLATE} breaks the deployment invariants:\n{}", v.join("\n"));
}

#[test]
fn deployment_invariants_fail_on_a_broken_copy() {
    let (_dir, t) = broken_copy(&[
        (
            "      VisibilityTimeout: 400\n      MessageRetentionPeriod: 345600 # 4 days\n",
            "      VisibilityTimeout: 360\n      MessageRetentionPeriod: 345600 # 4 days\n",
        ),
        (
            "        deadLetterTargetArn: !GetAtt HighPriorityDeadLetterQueue.Arn\n        maxReceiveCount: 5\n",
            "        deadLetterTargetArn: !GetAtt HighPriorityDeadLetterQueue.Arn\n        maxReceiveCount: 50\n",
        ),
        (
            "Action: secretsmanager:GetSecretValue\n                Resource: !Ref DbSecretArn\n              - Sid: Mail\n",
            "Action: secretsmanager:GetSecretValue\n                Resource: \"*\"\n              - Sid: Mail\n",
        ),
        (
            "            Schedule: rate(5 minutes)\n",
            "            Schedule: rate(5 minutes)\n            Input: '{\"reconcile\": true}'\n",
        ),
    ]);
    let v = violations(&translated(&t)).join("\n");
    for expected in [
        "NormalPriorityQueue: VisibilityTimeout 360 < 6 x timeout 60 + window 1",
        "maxReceiveCount is 50",
        "wildcard resource",
        "rate(5 minutes)",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
}

/// Each operations requirement (arrival alarms, the cut-over switch, least privilege, the missing alarms) and the quota wiring, broken once.
#[test]
fn delivery_event_invariants_fail_on_a_broken_copy() {
    let (_dir, t) = broken_copy(&[
        // The destination forgets bounces; the rule forgets complaints and another stack's set
        // would match; the queue policy names no rule.
        (
            "        MatchingEventTypes: [send, delivery, bounce, complaint,",
            "        MatchingEventTypes: [send, delivery, complaint,",
        ),
        ("          - Email Complaint Received\n", ""),
        (
            "              ses:configuration-set: [!Ref SesConfigurationSetName]\n",
            "              ses:configuration-set: [prefix]\n",
        ),
        (
            "                aws:SourceArn: !GetAtt SesEventsRule.Arn\n",
            "                aws:SourceArn: !GetAtt HighPriorityQueue.Arn\n",
        ),
    ]);
    let v = violations(&translated(&t)).join("\n");
    for expected in [
        "no enabled EventBridge event destination on SesConfigurationSetName",
        "SesEventsRule: detail-type",
        "SesEventsRule: does not filter on this stack's configuration set",
        "SesEventsQueue: no queue policy lets SesEventsRule",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
    let (_dir, t) = broken_copy(&[(
        "      QueueName: !Sub ${AWS::StackName}-ses-events\n",
        "      QueueName: !Sub ${AWS::StackName}-events\n",
    )]);
    let v = violations(&translated(&t)).join("\n");
    assert!(v.contains("no source queue named *-ses-events"), "{v}");
}

#[test]
fn operations_invariants_fail_on_a_broken_copy() {
    let (_dir, t) = broken_copy(&[
        // 2: the high mapping ignores the cut-over switch.
        (
            "            Queue: !GetAtt HighPriorityQueue.Arn\n            Enabled: !Ref EventSourcesEnabled # the cut-over switch\n",
            "            Queue: !GetAtt HighPriorityQueue.Arn\n",
        ),
        // 5: transactions on the consumer; a queue not kept; a DLQ open to any queue; too little reserved.
        (
            "# Data API transaction on this path.\n              - Sid: Ledger\n                Effect: Allow\n                Action: rds-data:ExecuteStatement\n",
            "# Data API transaction on this path.\n              - Sid: Ledger\n                Effect: Allow\n                Action: [rds-data:ExecuteStatement, rds-data:BeginTransaction]\n",
        ),
        (
            "    DeletionPolicy: RetainExceptOnCreate\n    UpdateReplacePolicy: Retain\n    Properties:\n      QueueName: !Sub ${AWS::StackName}-normal\n",
            "    Properties:\n      QueueName: !Sub ${AWS::StackName}-normal\n",
        ),
        (
            "        redrivePermission: byQueue\n        sourceQueueArns:\n          - !Sub arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-high\n",
            "        redrivePermission: allowAll\n",
        ),
        ("    Default: 17\n    MinValue: 5\n", "    Default: 16\n    MinValue: 5\n"),
        // quota wiring: a per-instance rate instead of the derived share; the wrong batch size.
        (
            "          SES_SENDERS: !Ref ReservedConcurrency\n          EXPECTED_BATCH_SIZE: 20\n",
            "          SES_MAX_SEND_RATE: 1\n          EXPECTED_BATCH_SIZE: 10\n",
        ),
        // The schema's custom resource waits an hour for a function that never answers.
        ("      ServiceTimeout: 300\n", ""),
        // 6: no bounce-rate alarm; an alarm action that defaults to nobody.
        ("      MetricName: Reputation.BounceRate\n", "      MetricName: Reputation.Bounces\n"),
        // The constraints: a new kind of infrastructure.
        (
            "  # ---- Least privilege:",
            "  Cache:\n    Type: AWS::ElastiCache::CacheCluster\n    Properties:\n      CacheNodeType: cache.t3.micro\n      Engine: redis\n      NumCacheNodes: 1\n\n  # ---- Least privilege:",
        ),
        (
            "    Type: String\n    # No default: `sam deploy --guided` asks for it",
            "    Type: String\n    Default: arn:aws:sns:us-east-1:123456789012:nobody\n    # No default: `sam deploy --guided` asks for it",
        ),
    ]);
    let v = violations(&translated(&t)).join("\n");
    for expected in [
        "OrderConfirmationFunctionHighPriority: Enabled is not the cut-over parameter",
        "OrderConfirmationFunction: Data API transaction permissions, but migrate does not run there",
        "NormalPriorityQueue: DeletionPolicy is not RetainExceptOnCreate",
        "HighPriorityDeadLetterQueue: redrive-allow policy does not admit exactly its source queue",
        "reserved concurrency Some(16.0) does not cover the mappings + reconcile (17)",
        "SES_MAX_SEND_RATE is set per instance",
        "SES_SENDERS is not the reserved concurrency",
        "EXPECTED_BATCH_SIZE 10 is not the larger BatchSize 20",
        "no alarm on AWS/SES Reputation.BounceRate",
        "AlarmActionArn has a default",
        "LedgerSchema: ServiceTimeout is not set between 60 and 900 seconds (the default is an hour)",
        "Cache: AWS::ElastiCache::CacheCluster is new infrastructure",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
}

/// The settings a deployment chooses through template parameters, each with the default and the
/// bounds the configuration enforces (`order_confirmation::config::settings()`, the one definition
/// of every setting): (parameter, variable, default, lowest, highest accepted value).
fn parameter_settings() -> Vec<(&'static str, &'static str, f64, f64, f64)> {
    let settings = order_confirmation::config::settings();
    [
        ("PayloadRetentionDays", "PAYLOAD_RETENTION_DAYS"),
        ("LedgerHorizonDays", "LEDGER_HORIZON_DAYS"),
        ("HighPriorityReserve", "HIGH_PRIORITY_RESERVE"),
    ]
    .into_iter()
    .map(|(parameter, variable)| {
        let setting = settings.iter().find(|s| s.variable == variable).expect("a setting of the configuration");
        let default = setting.default.as_deref().and_then(|d| d.parse().ok()).expect("a numeric default");
        let (low, high) = setting.bounds.expect("bounds");
        (parameter, variable, default, low, high)
    })
    .collect()
}

/// Every way a settings parameter can differ from the configuration: missing, not a number,
/// another default or other bounds (a value the configuration refuses would pass the deploy's
/// checks and stop the function at start-up), or not passed to every function.
fn parameter_violations(cfn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let functions = of_type(cfn, "AWS::Lambda::Function");
    for (name, variable, default, min, max) in parameter_settings() {
        let p = &cfn["Parameters"][name];
        if p.is_null() {
            bad.push(format!("no parameter {name} for {variable}"));
            continue;
        }
        if p["Type"] != "Number" {
            bad.push(format!("{name} is not a Number"));
        }
        let number = |key: &str| p[key].as_f64().or_else(|| p[key].as_str().and_then(|s| s.parse().ok()));
        for (key, expected) in [("Default", default), ("MinValue", min), ("MaxValue", max)] {
            if number(key) != Some(expected) {
                bad.push(format!("{name}: {key} is {:?}, the configuration's is {expected}", number(key)));
            }
        }
        for (fid, f) in &functions {
            let value = &f["Properties"]["Environment"]["Variables"][variable];
            if *value != serde_json::json!({"Ref": name}) {
                bad.push(format!("{fid}: {variable} is not the parameter {name}"));
            }
        }
    }
    bad
}

#[test]
fn setting_parameters_have_the_configurations_defaults_and_bounds() {
    let v = parameter_violations(&translated(&root().join(TEMPLATE)));
    assert!(v.is_empty(), "{TEMPLATE}:\n{}", v.join("\n"));
}

#[test]
fn setting_parameter_check_fails_on_a_missing_or_unbounded_parameter() {
    let (_dir, t) = broken_copy(&[
        ("    Default: 400\n    MinValue: 15\n    MaxValue: 3650\n", "    Default: 400\n    MinValue: 15\n"),
        ("    Default: 30\n    MinValue: 1\n", "    Default: 7\n    MinValue: 0\n"),
        (
            "          LEDGER_HORIZON_DAYS: !Ref LedgerHorizonDays\n          INVOCATION_TIMEOUT_SECONDS: 300\n",
            "          INVOCATION_TIMEOUT_SECONDS: 300\n",
        ),
    ]);
    let v = parameter_violations(&translated(&t)).join("\n");
    for expected in [
        "LedgerHorizonDays: MaxValue is None, the configuration's is 3650",
        "PayloadRetentionDays: Default is Some(7.0), the configuration's is 30",
        "PayloadRetentionDays: MinValue is Some(0.0), the configuration's is 1",
        "OperatorFunction: LEDGER_HORIZON_DAYS is not the parameter LedgerHorizonDays",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
    // A parameter taken out altogether (and its uses with it: the template would not translate).
    let mut cfn = translated(&root().join(TEMPLATE));
    cfn["Parameters"].as_object_mut().unwrap().remove("PayloadRetentionDays");
    let v = parameter_violations(&cfn).join("\n");
    assert!(v.contains("no parameter PayloadRetentionDays for PAYLOAD_RETENTION_DAYS"), "{v}");
}

/// Without an explicit role, SAM attaches AWSLambdaSQSQueueExecutionRole (receive and delete on
/// every queue of the account): the managed-policy check sees it on the translation.
#[test]
fn least_privilege_check_fails_on_sams_default_role() {
    let (_dir, t) = broken_copy(&[("      Role: !GetAtt ConsumerRole.Arn\n", "")]);
    let v = violations(&translated(&t)).join("\n");
    assert!(v.contains("managed policies"), "expected the managed policies to be reported, got:\n{v}");
    assert!(v.contains("AWSLambdaSQSQueueExecutionRole"), "{v}");
}

// ---- sam build ----

/// `sam build --build-in-source` runs the Makefile's build-OrderConfirmationFunction (cargo-lambda,
/// release). arm64 as deployed; if the aarch64 Rust target cannot be installed here, the Makefile
/// builds x86_64 for this check and says so in one line.
#[test]
fn sam_build_yields_a_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let build_dir = dir.path().join("build");
    let r = run(tool("sam")
        .args(["build", "--build-in-source", "--template-file", TEMPLATE, "--build-dir"])
        .arg(&build_dir)
        .env("LAMBDA_ARCH_FALLBACK", "native"));
    assert!(r.ok, "sam build failed:\n{}", r.text);
    let bootstrap = build_dir.join("OrderConfirmationFunction/bootstrap");
    let bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| panic!("{}: {e}\n{}", bootstrap.display(), r.text));
    assert_eq!(&bytes[..4], b"\x7fELF", "bootstrap is not an ELF executable");
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let fell_back = r.text.lines().find(|l| l.starts_with("note: ") && l.contains("x86_64"));
    match fell_back {
        Some(note) => {
            eprintln!("{note}");
            assert_eq!(machine, 0x3e, "the fallback build is not x86_64");
        }
        None => assert_eq!(machine, 0xb7, "bootstrap is not aarch64 (the template says arm64)"),
    }
    eprintln!("bootstrap: {} bytes", bytes.len());
}

/// Every `OrderConfirmation` metric an alarm or the dashboard reads is one the service publishes
/// (`metrics::published`): a renamed metric must not leave an alarm watching nothing.
#[test]
fn template_reads_only_metrics_the_service_publishes() {
    let published: Vec<&str> = order_confirmation::metrics::published().collect();
    let cfn = translated(&root().join(TEMPLATE));
    let mut read: Vec<String> = of_type(&cfn, "AWS::CloudWatch::Alarm")
        .iter()
        .flat_map(|(_, a)| alarm_metrics(a))
        .filter(|(ns, _, _)| ns == "OrderConfirmation")
        .map(|(_, name, _)| name)
        .collect();
    for (_, d) in of_type(&cfn, "AWS::CloudWatch::Dashboard") {
        let body = d["Properties"]["DashboardBody"]["Fn::Sub"][0].as_str().unwrap();
        let mut rest = body;
        while let Some(i) = rest.find("[\"OrderConfirmation\", \"") {
            rest = &rest[i + "[\"OrderConfirmation\", \"".len()..];
            read.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert!(read.len() >= 2, "found no OrderConfirmation metrics in {TEMPLATE}");
    let missing: Vec<_> = read.iter().filter(|m| !published.contains(&m.as_str())).collect();
    assert!(missing.is_empty(), "{TEMPLATE} reads metrics the service does not publish: {missing:?}");
}

/// Where the template's own metrics must be read: the namespace and service both functions publish
/// with (Globals: POWERTOOLS_METRICS_NAMESPACE, POWERTOOLS_SERVICE_NAME) against every alarm and
/// dashboard row outside the `AWS/` namespaces. A metric carries the `service` dimension, and
/// CloudWatch matches dimensions exactly: a row without it reads nothing.
fn metric_name_violations(cfn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let functions = of_type(cfn, "AWS::Lambda::Function");
    // A value as the alarms (a literal or `{"Ref": name}`) and as the dashboard's `Fn::Sub` body
    // (the literal or `${name}`) write it.
    let mut setting = |name: &str| -> Option<(Value, String)> {
        let values: BTreeSet<String> =
            functions.iter().map(|(_, f)| f["Properties"]["Environment"]["Variables"][name].to_string()).collect();
        let one: Option<Value> = match values.iter().collect::<Vec<_>>().as_slice() {
            [one] => serde_json::from_str(one).ok(),
            _ => None,
        };
        let in_sub = match &one {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(v) => v["Ref"].as_str().map(|r| format!("${{{r}}}")),
            None => None,
        };
        match (one, in_sub) {
            (Some(v), Some(sub)) => Some((v, sub)),
            _ => {
                bad.push(format!("{name} must be set once for every function (Globals), found {values:?}"));
                None
            }
        }
    };
    let (Some((_, namespace)), Some((service_value, service))) =
        (setting("POWERTOOLS_METRICS_NAMESPACE"), setting("POWERTOOLS_SERVICE_NAME"))
    else {
        return bad;
    };
    if service_value != serde_json::json!({"Ref": "AWS::StackName"}) {
        bad.push(
            "POWERTOOLS_SERVICE_NAME is not the stack's name: two stacks in one account would feed each other's alarms"
                .into(),
        );
    }
    let service_dimension = serde_json::json!({"Name": "service", "Value": service_value});
    for (id, a) in of_type(cfn, "AWS::CloudWatch::Alarm") {
        let p = &a["Properties"];
        let mut metrics: Vec<&Value> =
            p["Metrics"].as_array().into_iter().flatten().map(|m| &m["MetricStat"]["Metric"]).collect();
        if p.get("MetricName").is_some() {
            metrics.push(p);
        }
        for m in metrics.into_iter().filter(|m| m["Namespace"].as_str().is_some_and(|n| !n.starts_with("AWS/"))) {
            let name = m["MetricName"].as_str().unwrap_or_default();
            if m["Namespace"] != namespace.as_str() {
                bad.push(format!("{id}: {name} in namespace {} instead of {namespace}", m["Namespace"]));
            }
            if !m["Dimensions"].as_array().is_some_and(|d| d.contains(&service_dimension)) {
                bad.push(format!("{id}: {name} without the dimension service = {service}"));
            }
        }
    }
    for (id, d) in of_type(cfn, "AWS::CloudWatch::Dashboard") {
        let body = d["Properties"]["DashboardBody"]["Fn::Sub"][0].as_str().unwrap_or_default();
        let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{id}: the body is not JSON: {e}"));
        for widget in body["widgets"].as_array().into_iter().flatten() {
            for row in widget["properties"]["metrics"].as_array().into_iter().flatten() {
                let row = row.as_array().unwrap();
                let Some(ns) = row[0].as_str().filter(|n| !n.starts_with("AWS/")) else { continue };
                let name = row[1].as_str().unwrap_or_default();
                if ns != namespace {
                    bad.push(format!("{id}: {name} in namespace {ns} instead of {namespace}"));
                }
                if !row.windows(2).any(|w| w[0] == "service" && w[1] == service.as_str()) {
                    bad.push(format!("{id}: {name} without the dimension service = {service}"));
                }
            }
        }
    }
    bad
}

#[test]
fn alarms_and_dashboard_read_the_namespace_and_service_the_functions_publish_with() {
    let v = metric_name_violations(&translated(&root().join(TEMPLATE)));
    assert!(v.is_empty(), "{TEMPLATE}:\n{}", v.join("\n"));
}

#[test]
fn metric_name_check_fails_on_another_namespace_or_a_missing_service_dimension() {
    let (_dir, t) = broken_copy(&[
        (
            "MetricName: UnconfirmedOrders, Dimensions: [{ Name: service, Value: !Ref AWS::StackName }] }",
            "MetricName: UnconfirmedOrders }",
        ),
        (
            "[\"OrderConfirmation\", \"Deferred\", \"service\", \"${AWS::StackName}\", \"priority\", \"high\"",
            "[\"Orders\", \"Deferred\", \"service\", \"${AWS::StackName}\", \"priority\", \"high\"",
        ),
        ("        POWERTOOLS_SERVICE_NAME: !Ref AWS::StackName\n", "        POWERTOOLS_SERVICE_NAME: shop\n"),
    ]);
    let v = metric_name_violations(&translated(&t)).join("\n");
    for expected in [
        "UnconfirmedOrdersAlarm: UnconfirmedOrders without the dimension service = shop",
        "Dashboard: Deferred in namespace Orders instead of OrderConfirmation",
        "Dashboard: Sent without the dimension service = shop",
        "POWERTOOLS_SERVICE_NAME is not the stack's name",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
}

/// The address scripts/sam-local gives its own bridge (`BRIDGE_ADDR=…`): the one host the
/// containers of a local invoke may reach, where the run binds the emulators.
fn sam_local_bridge_address() -> String {
    let script = std::fs::read_to_string(root().join("scripts/sam-local")).unwrap();
    let line = script.lines().find_map(|l| l.strip_prefix("BRIDGE_ADDR=")).expect("scripts/sam-local sets BRIDGE_ADDR");
    line.split_whitespace().next().unwrap().to_string()
}

/// `sam local invoke --env-vars events/env.json` overrides only variables the template declares
/// (SAM drops the rest silently), so every variable in env.json must be declared, and the local
/// run must reach the emulators on the bridge `make sam-local` creates (a container's 127.0.0.1 is
/// the container itself), never AWS and never another host.
#[test]
fn env_json_overrides_only_declared_variables_and_points_at_the_sam_local_bridge() {
    let bridge = format!("http://{}:", sam_local_bridge_address());
    let cfn = translated(&root().join(TEMPLATE));
    let env: Value = serde_json::from_str(&std::fs::read_to_string(root().join("events/env.json")).unwrap()).unwrap();
    for (function, role) in [("OrderConfirmationFunction", "consumer"), ("OperatorFunction", "operator")] {
        let declared = &cfn["Resources"][function]["Properties"]["Environment"]["Variables"];
        let vars = env[function].as_object().expect("env.json is keyed by the functions' logical ids");
        let undeclared: Vec<_> = vars.keys().filter(|k| declared.get(k.as_str()).is_none()).collect();
        assert!(
            undeclared.is_empty(),
            "env.json sets variables {TEMPLATE} does not declare for {function}: {undeclared:?}"
        );
        for (k, v) in vars.iter().filter(|(k, _)| k.starts_with("AWS_ENDPOINT_URL_")) {
            assert!(
                v.as_str().is_some_and(|v| v.starts_with(&bridge)),
                "{k} = {v} is not an emulator on the sam-local bridge ({bridge})"
            );
        }
        for k in [
            "AWS_ENDPOINT_URL_RDS_DATA",
            "AWS_ENDPOINT_URL_SESV2",
            "LEDGER",
            "MAILER",
            "DB_CLUSTER_ARN",
            "DB_SECRET_ARN",
        ] {
            assert!(vars.contains_key(k), "env.json lacks {k} for {function}");
        }
        assert_eq!(vars["FUNCTION_ROLE"], role);
        assert_eq!(declared["FUNCTION_ROLE"], role, "{TEMPLATE}: {function}");
    }
}

/// The reconcile event file is the event EventBridge's schedule delivers.
#[test]
fn schedule_event_is_an_eventbridge_scheduled_event() {
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("events/schedule-reconcile.json")).unwrap()).unwrap();
    assert_eq!(e["source"], "aws.events");
    assert_eq!(e["detail-type"], "Scheduled Event");
    assert_eq!(e["detail"], serde_json::json!({}));
    assert!(e["resources"][0].as_str().is_some_and(|r| r.starts_with("arn:aws:events:")));
}

// ---- issue 21: a first deploy that works on a fresh account, deploys that roll back by
// themselves, alarms that fire on arrivals only ----

/// Whether a parameter's `AllowedPattern` accepts a value, read by Python's `re` from the venv (the
/// template's patterns use no syntax where it and CloudFormation's Java regexes differ).
fn pattern_accepts(pattern: &str, value: &str) -> bool {
    let check = "import re, sys; sys.exit(0 if re.fullmatch(sys.argv[1], sys.argv[2]) else 1)";
    run(tool("python3").args(["-c", check, pattern, value])).ok
}

/// ARNs docs/first-deploy.md has a deployer pass, which the parameters must accept: the secret RDS
/// manages for a cluster (`rds!cluster-…`, the guide's first choice) and one made by hand.
const DOCUMENTED_ARNS: &[(&str, &str)] = &[
    (
        "DbSecretArn",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-0a1b2c3d-4e5f-6789-abcd-ef0123456789-AbCdEf",
    ),
    ("DbSecretArn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders/ledger-AbCdEf"),
    ("DbClusterArn", "arn:aws:rds:eu-west-1:123456789012:cluster:orders"),
    ("SesIdentityArn", "arn:aws:ses:eu-west-1:123456789012:identity/shop.example.com"),
];

/// The value of `Fn::If [condition, value, AWS::NoValue]`, if `v` is exactly that, with the
/// condition's name.
fn optional_value(v: &Value) -> Option<(&str, &Value)> {
    let branches = v.get("Fn::If")?.as_array()?;
    (branches.len() == 3 && branches[2] == serde_json::json!({"Ref": "AWS::NoValue"}))
        .then(|| Some((branches[0].as_str()?, &branches[1])))
        .flatten()
}

/// Items 1, 2, 4 (with operations_violations), 5 (idem), 7, 8, 10, 12, 13, 14 and 15 of issue 21,
/// on the translated template.
fn first_deploy_violations(cfn: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let resources = cfn["Resources"].as_object().unwrap();
    let Some(consumer) = consumer_id(cfn) else { return vec!["no event source mapping names a function".into()] };
    let Some((operator, _)) = of_type(cfn, "AWS::Lambda::Function").into_iter().find(|(id, _)| *id != consumer) else {
        return vec!["no operator function".into()];
    };
    let alarms = of_type(cfn, "AWS::CloudWatch::Alarm");
    let queues = of_type(cfn, "AWS::SQS::Queue");

    // 1. The ARNs the guide has a deployer pass are accepted.
    for (name, value) in DOCUMENTED_ARNS {
        let pattern = cfn["Parameters"][name]["AllowedPattern"].as_str().unwrap_or("");
        if !pattern_accepts(pattern, value) {
            bad.push(format!("{name}: AllowedPattern refuses {value}"));
        }
    }

    // 2. Reserved concurrency can be switched off (a new account's quota may not allow any), by a
    // parameter whose default keeps it and whose `none` removes it from both functions.
    for fid in [consumer, operator] {
        let reservation = &cfn["Resources"][fid]["Properties"]["ReservedConcurrentExecutions"];
        let condition = optional_value(reservation).map(|(c, _)| c);
        let switch = condition.and_then(|c| {
            let eq = cfn["Conditions"][c]["Fn::Equals"].as_array()?;
            let param = eq.iter().find_map(|v| v["Ref"].as_str())?;
            let on = eq.iter().find_map(Value::as_str)?;
            let p = &cfn["Parameters"][param];
            let allowed = as_list(&p["AllowedValues"]);
            (p["Default"].as_str() == Some(on) && allowed.contains(&serde_json::json!("none"))).then_some(param)
        });
        if switch.is_none() {
            bad.push(format!(
                "{fid}: ReservedConcurrentExecutions is not optional (Fn::If on a parameter whose default keeps it and whose \"none\" removes it)"
            ));
        }
    }

    // 4. (With operations_violations, for the source queues and their DLQs) every queue.
    for (qid, q) in &queues {
        if q["DeletionPolicy"] != "RetainExceptOnCreate" {
            bad.push(format!("{qid}: DeletionPolicy {} is not RetainExceptOnCreate", q["DeletionPolicy"]));
        }
    }

    // 8. Each DLQ alarm fires on arrivals only: the function's count of records failed on their
    // last allowed receive for the source queue, EventBridge's direct puts for the events DLQ, and
    // the depth only as a rise between two reported minutes (never a filled DIFF, which reads an
    // idle DLQ waking up as that many arrivals). The count's setting is the redrive policy's.
    let consumer_env = &cfn["Resources"][consumer]["Properties"]["Environment"]["Variables"];
    for (qid, q) in queues.iter().filter(|(_, q)| q["Properties"].get("RedrivePolicy").is_some()) {
        let redrive = &q["Properties"]["RedrivePolicy"];
        let dlq = target(&redrive["deadLetterTargetArn"]).unwrap_or("?");
        if number_or_default(cfn, &consumer_env["MAX_RECEIVE_COUNT"]) != redrive["maxReceiveCount"].as_f64() {
            bad.push(format!(
                "{consumer}: MAX_RECEIVE_COUNT {} is not {qid}'s maxReceiveCount {}",
                consumer_env["MAX_RECEIVE_COUNT"], redrive["maxReceiveCount"]
            ));
        }
        let events = q["Properties"]["QueueName"]["Fn::Sub"]
            .as_str()
            .is_some_and(|n| n.ends_with(order_confirmation::delivery::EVENTS_QUEUE_SUFFIX));
        for (aid, a) in alarms.iter().filter(|(_, a)| alarm_metrics(a).iter().any(|(_, _, d)| target(d) == Some(dlq))) {
            let metrics: Vec<&Value> = a["Properties"]["Metrics"].as_array().into_iter().flatten().collect();
            let returned: Vec<&str> =
                metrics.iter().filter(|m| m["ReturnData"] == true).filter_map(|m| m["Expression"].as_str()).collect();
            let returned = if returned.len() == 1 { returned[0] } else { "" };
            // The id of the metric that matches, if the returned expression uses it.
            let used = |matches: &dyn Fn(&Value) -> bool| {
                metrics
                    .iter()
                    .filter(|m| matches(&m["MetricStat"]["Metric"]))
                    .filter_map(|m| m["Id"].as_str())
                    .any(|id| returned.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == id))
            };
            let counts_last_receives = used(&|m: &Value| {
                m["Namespace"] == "OrderConfirmation"
                    && m["MetricName"] == "FailedOnLastReceive"
                    && as_list(&m["Dimensions"]).iter().any(|d| {
                        d["Name"] == "queue" && d["Value"] == serde_json::json!({"Fn::GetAtt": [qid, "QueueName"]})
                    })
            });
            if !counts_last_receives {
                bad.push(format!("{aid}: does not count FailedOnLastReceive for queue {qid} (in {returned:?})"));
            }
            let direct = used(&|m: &Value| {
                m["Namespace"] == "AWS/SQS"
                    && m["MetricName"] == "NumberOfMessagesSent"
                    && target(&m["Dimensions"][0]["Value"]) == Some(dlq)
            });
            if events && !direct {
                bad.push(format!(
                    "{aid}: does not count NumberOfMessagesSent of {dlq} (EventBridge's own puts) in {returned:?}"
                ));
            }
            for e in metrics.iter().filter_map(|m| m["Expression"].as_str()) {
                let compact: String = e.chars().filter(|c| !c.is_whitespace()).collect();
                if compact.contains("DIFF(FILL(") || (compact.contains("DIFF(") && !compact.contains("DIFF_TIME(")) {
                    bad.push(format!(
                        "{aid}: {e} reads the depth's rise across unreported minutes (an idle DLQ waking up pages)"
                    ));
                }
            }
        }
    }

    // 10. The schema is applied again whenever the stack points at another database.
    let schema: Vec<_> =
        resources.iter().filter(|(_, r)| r["Type"].as_str().is_some_and(|t| t.starts_with("Custom::"))).collect();
    for (id, r) in &schema {
        let props = &r["Properties"];
        for param in ["DbClusterArn", "DbSecretArn", "DbName"] {
            if !props.as_object().into_iter().flatten().any(|(_, v)| *v == serde_json::json!({"Ref": param})) {
                bad.push(format!(
                    "{id}: no property refers to {param}: a stack moved to another database finds it empty"
                ));
            }
        }
        // 15. The first deploy's migration lines land in the operator's log group (with its
        // retention), which must exist before the operator function first runs.
        let log_group = of_type(cfn, "AWS::Logs::LogGroup").into_iter().find(|(_, g)| {
            g["Properties"]["LogGroupName"]["Fn::Sub"].as_str() == Some(&format!("/aws/lambda/${{{operator}}}"))
        });
        let depends = as_list(&r["DependsOn"]);
        if !log_group.is_some_and(|(gid, _)| depends.contains(&serde_json::json!(gid))) {
            bad.push(format!("{id}: does not wait for {operator}'s log group (DependsOn)"));
        }
    }

    // 15. Grants match what the code calls: it never sends a Data API batch statement.
    for (rid, role) in of_type(cfn, "AWS::IAM::Role") {
        for st in statements(role) {
            if as_list(&st["Action"]).contains(&serde_json::json!("rds-data:BatchExecuteStatement")) {
                bad.push(format!("{rid}: grants rds-data:BatchExecuteStatement, which the code never calls"));
            }
        }
    }

    // 13. Every queue's policy refuses requests without TLS.
    for (qid, _) in &queues {
        let denies_plain_http = of_type(cfn, "AWS::SQS::QueuePolicy").iter().any(|(_, p)| {
            p.get("Condition").is_none()
                && as_list(&p["Properties"]["Queues"]).iter().any(|q| target(q) == Some(qid))
                && statements_of(&p["Properties"]["PolicyDocument"]).iter().any(|st| {
                    st["Effect"] == "Deny"
                        && st["Principal"] == "*"
                        && st["Action"] == "sqs:*"
                        && st["Condition"]["Bool"]["aws:SecureTransport"] == "false"
                        && as_list(&st["Resource"]).iter().any(|r| target(r) == Some(qid))
                })
        });
        if !denies_plain_http {
            bad.push(format!("{qid}: no queue policy denies requests without TLS (aws:SecureTransport)"));
        }
    }

    // 14. Alarms on the operator function's errors and on the consumer's duration nearing its
    // timeout (above half of it, below 90 %).
    let on_function = |metric: &str, fid: &str| {
        alarms.iter().find(|(_, a)| {
            a["Properties"]["Namespace"] == "AWS/Lambda"
                && a["Properties"]["MetricName"] == metric
                && target(&a["Properties"]["Dimensions"][0]["Value"]) == Some(fid)
        })
    };
    if on_function("Errors", operator).is_none() {
        bad.push(format!("no alarm on {operator}'s Errors (a failed migration or operator request)"));
    }
    let timeout_ms = cfn["Resources"][consumer]["Properties"]["Timeout"].as_f64().unwrap_or(3.0) * 1000.0;
    match on_function("Duration", consumer) {
        None => bad.push(format!("no alarm on {consumer}'s Duration nearing its timeout")),
        Some((aid, a)) => {
            let threshold = a["Properties"]["Threshold"].as_f64().unwrap_or(0.0);
            if !(threshold > 0.5 * timeout_ms && threshold <= 0.9 * timeout_ms) {
                bad.push(format!("{aid}: threshold {threshold} ms is not near the timeout ({timeout_ms} ms)"));
            }
        }
    }
    // 7. UnconfirmedOrders: a missing report pages only once the schedule fired (or the function
    // ran), so a stack that was just created is not in ALARM, and a reconcile that stopped
    // reporting still pages.
    let schedule = of_type(cfn, "AWS::Events::Rule")
        .into_iter()
        .find(|(_, r)| r["Properties"].get("ScheduleExpression").is_some())
        .map(|(id, _)| id);
    for (aid, a) in alarms.iter().filter(|(_, a)| alarm_metrics(a).iter().any(|(_, m, _)| m == "UnconfirmedOrders")) {
        let p = &a["Properties"];
        let metrics: Vec<&Value> = p["Metrics"].as_array().into_iter().flatten().collect();
        let id_of = |ns: &str, name: &str| {
            metrics
                .iter()
                .find(|m| {
                    m["MetricStat"]["Metric"]["Namespace"] == ns && m["MetricStat"]["Metric"]["MetricName"] == name
                })
                .and_then(|m| m["Id"].as_str())
        };
        let ticks = metrics.iter().find(|m| {
            let metric = &m["MetricStat"]["Metric"];
            metric["Namespace"] == "AWS/Events"
                && schedule.is_some_and(|s| target(&metric["Dimensions"][0]["Value"]) == Some(s))
        });
        let returned =
            metrics.iter().find(|m| m["ReturnData"] == true).and_then(|m| m["Expression"].as_str()).unwrap_or("");
        let compact: String = returned.chars().filter(|c| !c.is_whitespace()).collect();
        let missing_breaches =
            id_of("OrderConfirmation", "UnconfirmedOrders").is_some_and(|u| compact.contains(&format!("FILL({u},1)")));
        let gated =
            ticks.and_then(|m| m["Id"].as_str()).is_some_and(|id| compact.starts_with("IF(") && compact.contains(id));
        if p["TreatMissingData"] == "breaching" || !missing_breaches || !gated {
            bad.push(format!(
                "{aid}: a missing reconcile report must page only once the schedule fired (IF on its rule's invocations, FILL(unconfirmed, 1), TreatMissingData not breaching), got {returned:?} with {}",
                p["TreatMissingData"]
            ));
        }
    }

    // 12. Gradual deployment of the consumer: the mappings and the schedule invoke an alias that
    // CodeDeploy shifts step by step (not all at once) and rolls back on the function's own
    // alarms (errors, unrecorded sends, ledger failures), with an explicit role.
    let aliases: Vec<&str> = of_type(cfn, "AWS::Lambda::Alias")
        .into_iter()
        .filter(|(_, a)| target(&a["Properties"]["FunctionName"]) == Some(consumer))
        .map(|(id, _)| id)
        .collect();
    let Some(alias) = aliases.first().copied() else {
        bad.push(format!("{consumer}: no alias (AutoPublishAlias) for gradual deployment"));
        return bad;
    };
    for (mid, m) in of_type(cfn, "AWS::Lambda::EventSourceMapping") {
        if target(&m["Properties"]["FunctionName"]) != Some(alias) {
            bad.push(format!("{mid}: invokes {}, not the alias {alias}", m["Properties"]["FunctionName"]));
        }
    }
    for (rid, r) in of_type(cfn, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| r["Properties"].get("ScheduleExpression").is_some())
    {
        if !as_list(&r["Properties"]["Targets"]).iter().all(|t| target(&t["Arn"]) == Some(alias)) {
            bad.push(format!("{rid}: the schedule does not invoke the alias {alias}"));
        }
    }
    let update = &cfn["Resources"][alias]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"];
    let group_id = target(&update["DeploymentGroupName"]);
    let group = group_id.map(|g| &cfn["Resources"][g]["Properties"]);
    match group {
        None => bad.push(format!("{alias}: no CodeDeploy update policy (traffic moves all at once)")),
        Some(g) => {
            let config = g["DeploymentConfigName"]["Fn::Sub"][1]["ConfigName"]
                .as_str()
                .or_else(|| g["DeploymentConfigName"].as_str())
                .unwrap_or("");
            if !(config.contains("Canary") || config.contains("Linear")) {
                bad.push(format!("{alias}: deployment configuration {config:?} is not canary or linear"));
            }
            let watched: Vec<String> = as_list(&g["AlarmConfiguration"]["Alarms"])
                .iter()
                .filter_map(|a| target(&a["Name"]).map(str::to_owned))
                .collect();
            let reads = |aid: &str, metric: &str| {
                alarms.iter().any(|(id, a)| *id == aid && alarm_metrics(a).iter().any(|(_, m, _)| m == metric))
            };
            for metric in ["Errors", "UnrecordedSend", "LedgerFailure"] {
                if !watched.iter().any(|aid| reads(aid, metric)) {
                    bad.push(format!("{alias}: the deployment does not roll back on an alarm on {metric}"));
                }
            }
            if g["AlarmConfiguration"]["Enabled"] != true
                || !as_list(&g["AutoRollbackConfiguration"]["Events"])
                    .contains(&serde_json::json!("DEPLOYMENT_STOP_ON_ALARM"))
            {
                bad.push(format!("{alias}: the deployment does not roll back when an alarm fires"));
            }
            let role = target(&g["ServiceRoleArn"]);
            if !role.is_some_and(|r| cfn["Resources"][r]["Type"] == "AWS::IAM::Role") {
                bad.push(format!("{alias}: CodeDeploy's role is not an explicit role of the template"));
            }
        }
    }

    bad
}

#[test]
fn template_meets_what_a_first_deploy_and_its_operation_need() {
    let v = first_deploy_violations(&translated(&root().join(TEMPLATE)));
    assert!(v.is_empty(), "{TEMPLATE}:\n{}", v.join("\n"));
}

#[test]
fn first_deploy_check_fails_on_a_broken_copy() {
    let (_dir, t) = broken_copy(&[
        // 1: the RDS-managed secret's name refused again.
        ("secret:[a-zA-Z0-9/_+=.@!-]+$", "secret:[a-zA-Z0-9/_+=.@-]+$"),
        // 2: the consumer's reservation always on.
        (
            "      ReservedConcurrentExecutions: !If [ReservesConcurrency, !Ref ReservedConcurrency, !Ref AWS::NoValue]\n",
            "      ReservedConcurrentExecutions: !Ref ReservedConcurrency\n",
        ),
        // 4: a DLQ that survives its own failed create.
        (
            "    DeletionPolicy: RetainExceptOnCreate\n    UpdateReplacePolicy: Retain\n    Metadata:\n      cfn-lint:\n        config:\n          ignore_checks: [ES6000] # is a DLQ (see the top of the file)\n    Properties:\n      QueueName: !Sub ${AWS::StackName}-ses-events-dlq\n",
            "    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n    Metadata:\n      cfn-lint:\n        config:\n          ignore_checks: [ES6000] # is a DLQ (see the top of the file)\n    Properties:\n      QueueName: !Sub ${AWS::StackName}-ses-events-dlq\n",
        ),
        // 8: the high DLQ alarm back to a filled DIFF of the depth; the setting off by one; the
        // events DLQ alarm without EventBridge's own puts.
        (
            "Dimensions: [{ Name: queue, Value: !GetAtt HighPriorityQueue.QueueName }",
            "Dimensions: [{ Name: queue, Value: !GetAtt NormalPriorityQueue.QueueName }",
        ),
        (
            "          Label: high-priority records failed on their last receive, or a rise of the DLQ, in the minute\n          Expression: MAX([FILL(lastreceive, 0), FILL(rise, 0)])\n",
            "          Label: high-priority records failed on their last receive, or a rise of the DLQ, in the minute\n          Expression: DIFF(FILL(depth, 0))\n",
        ),
        ("          MAX_RECEIVE_COUNT: 5\n", "          MAX_RECEIVE_COUNT: 4\n"),
        (", FILL(direct, 0), FILL(rise, 0)])", ", FILL(rise, 0)])"),
        // 10: the database name left out of the schema's properties; 15: no wait for the log group.
        ("      DbName: !Ref DbName\n", ""),
        ("    DependsOn: OperatorLogGroup\n", ""),
        // 15: a batch statement the code never sends.
        (
            "              - Sid: LedgerMigrations # migrate applies each migration file in one transaction\n",
            "              - Sid: Batches\n                Effect: Allow\n                Action: rds-data:BatchExecuteStatement\n                Resource: !Ref DbClusterArn\n              - Sid: LedgerMigrations # migrate applies each migration file in one transaction\n",
        ),
        // 12: all at once, without the ledger's alarm.
        ("        Type: Canary10Percent10Minutes\n", "        Type: AllAtOnce\n"),
        (
            "          - !Ref LedgerFailuresAlarm\n          - !Ref DurationNearTimeoutAlarm\n      LoggingConfig:",
            "          - !Ref DurationNearTimeoutAlarm\n      LoggingConfig:",
        ),
        // 13: the events queues accept plain HTTP.
        (
            "            Resource: [!GetAtt SesEventsQueue.Arn, !GetAtt SesEventsDeadLetterQueue.Arn]\n            Condition:\n              Bool:\n                aws:SecureTransport: \"false\"\n",
            "            Resource: [!GetAtt SesEventsQueue.Arn, !GetAtt SesEventsDeadLetterQueue.Arn]\n            Condition:\n              Bool:\n                aws:SecureTransport: \"true\"\n",
        ),
        // 7: the unconfirmed-orders alarm back to missing data breaching from the first minute.
        (
            "          Expression: IF(FILL(ticks, 0) + FILL(invocations, 0) > 0, FILL(unconfirmed, 1), FILL(unconfirmed, 0))\n          ReturnData: true\n      EvaluationPeriods: 3\n      DatapointsToAlarm: 2\n      Threshold: 0\n      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n",
            "          Expression: FILL(unconfirmed, 0)\n          ReturnData: true\n      EvaluationPeriods: 3\n      DatapointsToAlarm: 2\n      Threshold: 0\n      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: breaching\n",
        ),
        // 14: the duration alarm at the timeout itself; no alarm on the operator's errors.
        ("      Threshold: 48000\n", "      Threshold: 60000\n"),
        ("          Value: !Ref OperatorFunction\n", "          Value: !Ref OrderConfirmationFunction\n"),
    ]);
    let v = first_deploy_violations(&translated(&t)).join("\n");
    for expected in [
        "DbSecretArn: AllowedPattern refuses arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-",
        "OrderConfirmationFunction: ReservedConcurrentExecutions is not optional",
        "SesEventsDeadLetterQueue: DeletionPolicy \"Retain\" is not RetainExceptOnCreate",
        "HighPriorityDeadLetterQueueAlarm: does not count FailedOnLastReceive for queue HighPriorityQueue",
        "HighPriorityDeadLetterQueueAlarm: DIFF(FILL(depth, 0)) reads the depth's rise across unreported minutes",
        "OrderConfirmationFunction: MAX_RECEIVE_COUNT 4 is not HighPriorityQueue's maxReceiveCount 5",
        "SesEventsDeadLetterQueueAlarm: does not count NumberOfMessagesSent of SesEventsDeadLetterQueue",
        "LedgerSchema: no property refers to DbName",
        "LedgerSchema: does not wait for OperatorFunction's log group",
        "OperatorFunctionRole: grants rds-data:BatchExecuteStatement",
        "deployment configuration \"AllAtOnce\" is not canary or linear",
        "the deployment does not roll back on an alarm on LedgerFailure",
        "SesEventsQueue: no queue policy denies requests without TLS",
        "DurationNearTimeoutAlarm: threshold 60000 ms is not near the timeout (60000 ms)",
        "no alarm on OperatorFunction's Errors",
        "UnconfirmedOrdersAlarm: a missing reconcile report must page only once the schedule fired",
    ] {
        assert!(v.contains(expected), "expected a violation {expected:?}, got:\n{v}");
    }
    // Without DeploymentPreference and AutoPublishAlias the mappings invoke the function itself.
    let (_dir, t) = broken_copy(&[(
        "      AutoPublishAlias: live\n      DeploymentPreference:\n        Type: Canary10Percent10Minutes\n",
        "      DeploymentPreferenceGone:\n        Type: Canary10Percent10Minutes\n",
    )]);
    let text = std::fs::read_to_string(&t).unwrap();
    let text = text
        .replace("      DeploymentPreferenceGone:\n        Type: Canary10Percent10Minutes\n        Role: !GetAtt DeploymentRole.Arn\n        Alarms:\n          - !Ref FunctionErrorsAlarm\n          - !Ref UnrecordedSendAlarm\n          - !Ref LedgerFailuresAlarm\n          - !Ref DurationNearTimeoutAlarm\n", "")
        .replace("    Value: !Ref ServerlessDeploymentApplication\n", "    Value: none\n")
        .replace("    Value: !Ref OrderConfirmationFunctionDeploymentGroup\n", "    Value: none\n");
    std::fs::write(&t, text).unwrap();
    let v = first_deploy_violations(&translated(&t)).join("\n");
    assert!(v.contains("OrderConfirmationFunction: no alias (AutoPublishAlias) for gradual deployment"), "{v}");
}
