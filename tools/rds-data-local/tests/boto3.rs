//! A second SDK: runs tests/boto3_check.py against the emulator with the workspace's `.venv`
//! Python (boto3 is pinned in requirements-dev.txt and `make test` installs it), or the Python
//! named by $RDS_DATA_LOCAL_PYTHON. A missing boto3 fails the test: a check that can skip itself
//! proves nothing.

mod common;

#[tokio::test]
async fn boto3_parses_records_errors_transactions_and_batches_like_the_rust_sdk() {
    let python = std::env::var("RDS_DATA_LOCAL_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python3").into());
    let has_boto3 = tokio::process::Command::new(&python)
        .args(["-c", "import boto3"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    assert!(has_boto3, "boto3 is not importable with {python}: `make test` installs it into .venv");
    let e = common::env().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/boto3_check.py");
    let out = tokio::process::Command::new(&python).arg(script).arg(e.url()).output().await.expect("run python");
    assert!(
        out.status.success(),
        "boto3 check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
