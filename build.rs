//! Records the git commit the binary is built from (`ORDER_CONFIRMATION_COMMIT`), so the deployed
//! function can say which code it runs: in `config`, and in the stack's `DeployedCommit` output.
//! A build outside a git checkout may set `ORDER_CONFIRMATION_COMMIT` itself; otherwise "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ORDER_CONFIRMATION_COMMIT");
    let commit = std::env::var("ORDER_CONFIRMATION_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ORDER_CONFIRMATION_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it points at (a commit), and
    // packed refs. Only files that exist, or cargo would re-run this on every build.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
