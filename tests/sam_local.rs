//! `sam local invoke` for real: `scripts/sam-local` (what `make sam-local` runs) invokes the arm64
//! artifact of `sam build` in AWS's Runtime Interface Emulator, in a private dockerd, against
//! PostgreSQL behind rds-data-local, aws-ses-v2-local and moto, on the settings `events/env.json`
//! documents. The base image is a stand-in for Amazon Linux 2023 where no registry answers
//! (docs/design.md, "`sam local invoke`: a stand-in base image"), so the artifact's glibc needs
//! are checked against Amazon Linux 2023's glibc separately, from its dynamic symbol table.
//!
//! Where Docker cannot start this fails and says why; only `SKIP_SAM_LOCAL=<reason>` (README)
//! skips it.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
}

/// `scripts/sam-local ARG`: (succeeded, stdout, stderr).
fn script(arg: &str, out: Option<&Path>) -> (bool, String, String) {
    let mut c = Command::new(root().join("scripts/sam-local"));
    c.arg(arg).current_dir(root());
    if let Some(out) = out {
        c.env("SAM_LOCAL_OUT", out);
    }
    let o = c.output().unwrap_or_else(|e| panic!("cannot run scripts/sam-local {arg}: {e}"));
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The records of an SQS event file: (messageId, decoded order or None when the body is refused).
fn records(event: &str) -> Vec<(String, Option<order_confirmation::order::Order>)> {
    let event = read_json(&root().join(event));
    event["Records"]
        .as_array()
        .expect("Records")
        .iter()
        .map(|r| {
            let body = r["body"].as_str().unwrap_or_default();
            (
                r["messageId"].as_str().unwrap_or_default().to_owned(),
                order_confirmation::decode::decode(body).ok().map(|d| d.order),
            )
        })
        .collect()
}

fn failures(response: &Value) -> BTreeSet<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Mails the SES emulator accepted, by recipient.
fn mails_by_recipient(store: &Value) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for mail in store["emails"].as_array().unwrap_or_else(|| panic!("no emails in the SES store: {store}")) {
        for to in mail["destination"]["to"].as_array().into_iter().flatten() {
            *by.entry(to.as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
        }
    }
    by
}

#[test]
fn sam_local_invoke_runs_the_arm64_artifact_on_the_local_stack_and_leaves_the_host_as_it_was() {
    if let Ok(reason) = std::env::var("SKIP_SAM_LOCAL") {
        assert!(!reason.trim().is_empty(), "SKIP_SAM_LOCAL is set but empty: set it to the reason (README)");
        eprintln!("skipped: SKIP_SAM_LOCAL={reason}");
        return;
    }
    // Installed first, so that both snapshots are read with the same tools (iptables-save).
    let (ok, _, err) = script("install", None);
    assert!(ok, "scripts/sam-local install failed:\n{err}");
    let (ok, before, err) = script("host-state", None);
    assert!(ok, "{err}");

    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = script("run", Some(out.path()));
    eprintln!("scripts/sam-local took {:.0} s\n{stdout}", started.elapsed().as_secs_f64());
    let (_, after, _) = script("host-state", None);
    assert_eq!(before, after, "the host's network or binfmt state changed across the run:\n{stderr}");
    assert!(ok, "scripts/sam-local failed (its last words say why):\n{stderr}");
    let file = |name: &str| out.path().join(name);
    eprintln!("{}", std::fs::read_to_string(file("base-image.txt")).unwrap_or_default());

    // The schema came with the deploy's custom resource: SUCCESS with the commit built in.
    let cfn = read_json(&file("cfn-response.json"));
    assert_eq!(cfn["Status"], "SUCCESS", "{cfn}");
    assert_eq!(cfn["LogicalResourceId"], "LedgerSchema", "{cfn}");
    let head = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(root()).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    assert_eq!(cfn["Data"]["Commit"].as_str(), Some(head.as_str()), "{cfn}");

    // The batch: exactly the refused records are retried; every valid order mailed once.
    let batch = records("events/sqs-batch.json");
    let invalid: BTreeSet<String> = batch.iter().filter(|(_, o)| o.is_none()).map(|(id, _)| id.clone()).collect();
    let valid: Vec<&order_confirmation::order::Order> = batch.iter().filter_map(|(_, o)| o.as_ref()).collect();
    assert!(!invalid.is_empty() && !valid.is_empty(), "events/sqs-batch.json holds valid and invalid records");
    let first = read_json(&file("2-consumer-sqs-batch.json"));
    assert_eq!(failures(&first), invalid, "{first}");
    let mailed = mails_by_recipient(&read_json(&file("ses-store-after-first-batch.json")));
    for order in &valid {
        assert_eq!(mailed.get(order.customer_email.as_str()), Some(&1), "{}: {mailed:?}", order.order_id);
    }
    let ledger = read_json(&file("ledger.json"));
    let rows: BTreeMap<&str, &Value> = ledger
        .as_array()
        .expect("ledger rows")
        .iter()
        .map(|r| (r["order_id"].as_str().unwrap_or_default(), r))
        .collect();
    for order in &valid {
        let row = rows
            .get(order.order_id.as_str())
            .unwrap_or_else(|| panic!("{} not in the ledger: {ledger}", order.order_id));
        assert_eq!((row["status"].as_str(), row["attempts"].as_i64()), (Some("sent"), Some(1)), "{row}");
        assert!(row["ses_message_id"].as_str().is_some_and(|m| !m.is_empty()), "{row}");
    }
    assert_eq!(rows.len(), valid.len(), "only the valid orders are in the ledger: {ledger}");

    // Redelivered: the same records are retried and nothing is mailed again.
    let again = read_json(&file("3-consumer-sqs-batch-again.json"));
    assert_eq!(failures(&again), invalid, "{again}");
    let mailed_again = mails_by_recipient(&read_json(&file("ses-store-after-second-batch.json")));
    assert_eq!(mailed_again, mailed, "the second invoke of the same batch mailed");

    // SES's event about a mail, the schedule's reconcile, the operator's stats.
    let delivery = read_json(&file("4-consumer-ses-delivery.json"));
    assert_eq!(failures(&delivery), BTreeSet::new(), "{delivery}");
    let event = read_json(&root().join("events/ses-delivery.json"));
    let body: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap_or_default()).expect("SES event");
    let delivered = body["detail"]["mail"]["tags"]["order_id"][0].as_str().expect("the event's order_id tag");
    // The sample's mail is not the one this run recorded (the SES emulator gave that one its own
    // id): SES's event about it says SES accepted a second mail for the order. It reaches the
    // ledger as that order's extra mail and leaves the recorded mail's delivery state alone
    // (docs/design.md, "Duplicates counted from SES's events").
    let row = rows.get(delivered).unwrap_or_else(|| panic!("{delivered} not in the ledger: {ledger}"));
    assert_eq!(row["extra_mails"], serde_json::json!([body["detail"]["mail"]["messageId"]]), "{row}");
    assert_eq!(row["delivery_state"], Value::Null, "{row}");
    let reconcile = read_json(&file("5-consumer-schedule.json"));
    assert_eq!(reconcile["found"], 0, "nothing is stuck: {reconcile}");
    assert_eq!(reconcile["unconfirmed"]["count"], 0, "{reconcile}");
    let stats = read_json(&file("6-operator-stats.json"));
    assert_eq!(stats["totals"]["by_status"]["sent"].as_u64(), Some(valid.len() as u64), "{stats}");
    let queues = stats["queues"].as_array().unwrap_or_else(|| panic!("no queues in the stats: {stats}"));
    let depths: Vec<(u64, u64)> =
        queues.iter().map(|q| (q["visible"].as_u64().unwrap_or(99), q["dlq_visible"].as_u64().unwrap_or(99))).collect();
    assert_eq!(depths, vec![(1, 0), (0, 0)], "one order waits in the high-priority queue, none in a DLQ: {stats}");

    // The embedded defaults (SQLite, outbox) in the container: the same answer.
    let embedded = read_json(&file("7-consumer-embedded-defaults.json"));
    assert_eq!(failures(&embedded), invalid, "{embedded}");
}

/// The `GLIBC_x.y` versions a `readelf --dyn-syms -W` listing asks for, above `limit`.
fn glibc_versions_above(dyn_syms: &str, limit: (u32, u32)) -> BTreeSet<String> {
    dyn_syms
        .split_whitespace()
        .filter_map(|word| word.split_once("@GLIBC_").map(|(_, v)| v.split_whitespace().next().unwrap_or(v)))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            let (major, minor) = (parts.next()??, parts.next().flatten().unwrap_or(0));
            ((major, minor) > limit).then(|| format!("GLIBC_{v}"))
        })
        .collect()
}

/// Amazon Linux 2023's glibc (2.34). The stand-in image has Debian's, newer, so the local run
/// would not notice a binary that needs more; this does.
const AL2023_GLIBC: (u32, u32) = (2, 34);

#[test]
fn the_arm64_artifact_needs_no_glibc_newer_than_amazon_linux_2023s() {
    let dir = tempfile::tempdir().unwrap();
    let venv = root().join(".venv/bin");
    let o = Command::new(venv.join("sam"))
        .args(["build", "--build-in-source", "--template-file", "template.yaml", "--build-dir"])
        .arg(dir.path())
        .current_dir(root())
        .env("PATH", format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default()))
        .env("SAM_CLI_TELEMETRY", "0")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run sam build");
    assert!(o.status.success(), "sam build failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let bootstrap = dir.path().join("OrderConfirmationFunction/bootstrap");
    let r = Command::new("readelf").args(["--dyn-syms", "-W"]).arg(&bootstrap).output().expect("readelf (binutils)");
    assert!(r.status.success(), "readelf failed: {}", String::from_utf8_lossy(&r.stderr));
    let listing = String::from_utf8_lossy(&r.stdout);
    assert!(listing.contains("@GLIBC_"), "no glibc symbols in {}: is it dynamically linked?", bootstrap.display());
    let header = Command::new("readelf").arg("-h").arg(&bootstrap).output().unwrap();
    assert!(String::from_utf8_lossy(&header.stdout).contains("AArch64"), "the artifact is not arm64");
    let above = glibc_versions_above(&listing, AL2023_GLIBC);
    assert!(above.is_empty(), "the artifact needs {above:?}, newer than Amazon Linux 2023's glibc 2.34");
}

#[test]
fn glibc_check_finds_a_version_above_the_limit() {
    let listing = "\
     1: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND memcpy@GLIBC_2.17 (2)
     2: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND pthread_getattr_np@GLIBC_2.34 (3)
     3: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND __isoc23_strtol@GLIBC_2.38 (4)
     4: 0000000000000000     0 FUNC    GLOBAL DEFAULT  UND arc4random@GLIBC_2.36 (5)";
    let above = glibc_versions_above(listing, AL2023_GLIBC);
    assert_eq!(above, BTreeSet::from(["GLIBC_2.36".to_owned(), "GLIBC_2.38".to_owned()]));
    assert!(glibc_versions_above("memcpy@GLIBC_2.17 (2)", AL2023_GLIBC).is_empty());
}
