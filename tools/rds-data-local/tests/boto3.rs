//! A second SDK: runs tests/boto3_check.py against the emulator when boto3 is importable
//! (python from $RDS_DATA_LOCAL_PYTHON, else `python3`). Without boto3 the test says so and
//! passes: the suite must not depend on pip.

mod common;

#[tokio::test]
async fn boto3_parses_records_errors_transactions_and_batches_like_the_rust_sdk() {
    let python = std::env::var("RDS_DATA_LOCAL_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_boto3 = tokio::process::Command::new(&python)
        .args(["-c", "import boto3"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !has_boto3 {
        eprintln!("boto3 is not importable with {python}: skipping the boto3 check");
        return;
    }
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
