//! Build metadata for `--version` and `esim_exporter_build_info`: the git revision and the
//! rustc version, captured at build time (both fall back to "unknown").

use std::process::Command;

fn main() {
    // Builds without a checkout (the Docker build context has no .git) pass the revision in.
    let revision = std::env::var("ESIM_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]);
    println!("cargo:rustc-env=ESIM_GIT_REVISION={revision}");
    println!("cargo:rustc-env=ESIM_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=ESIM_GIT_REVISION");
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
