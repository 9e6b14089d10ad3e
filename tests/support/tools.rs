//! Outside tools a test needs (kubectl, moto): found, or the check is skipped loudly, or, when the
//! test command requires the tool (`REQUIRE_KUBECTL=1`, `REQUIRE_MOTO=1`, set by scripts/test.sh),
//! the test fails. Every skip is also appended to `$SKIPPED_CHECKS_FILE`, which scripts/test.sh
//! prints at the end, so a skip is never silent.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Records that `test` did not run its check, and why (stderr, and `$SKIPPED_CHECKS_FILE`).
pub fn skipped(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(path) = std::env::var_os("SKIPPED_CHECKS_FILE") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot append to SKIPPED_CHECKS_FILE {path:?}: {e}"));
        writeln!(file, "{test}: {why}").expect("write SKIPPED_CHECKS_FILE");
    }
}

/// Whether `kubectl` runs here. Without it: panics under `REQUIRE_KUBECTL=1`, else records the
/// skip of `test` and returns `false`.
pub fn kubectl(test: &str) -> bool {
    let runs = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !runs {
        assert!(
            std::env::var("REQUIRE_KUBECTL").as_deref() != Ok("1"),
            "{test}: REQUIRE_KUBECTL=1 but kubectl is not installed (scripts/setup.sh installs it)"
        );
        skipped(
            test,
            "kubectl is not installed: the `kubectl kustomize` render did not run",
        );
    }
    runs
}

/// The moto endpoint (`MOTO_ENDPOINT`, set by scripts/test.sh). Without it: panics under
/// `REQUIRE_MOTO=1`, else records the skip of `test` and returns `None`.
pub fn moto_endpoint(test: &str) -> Option<String> {
    match std::env::var("MOTO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var("REQUIRE_MOTO").as_deref() != Ok("1"),
                "{test}: REQUIRE_MOTO=1 but MOTO_ENDPOINT is not set"
            );
            skipped(
                test,
                "MOTO_ENDPOINT is not set (scripts/test.sh starts moto)",
            );
            None
        }
    }
}

/// `kubectl kustomize <dir>`: the rendered YAML, or why it could not render (kubectl's stderr).
pub fn kustomize_build(dir: &Path) -> Result<String, String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run kubectl kustomize: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("kubectl kustomize printed non-UTF-8: {e}"))
}

/// Debian's `chromedriver` (package `chromium-driver`, with `chromium`), which scripts/setup.sh
/// installs. Without it: panics under `REQUIRE_BROWSER=1` (scripts/test.sh's default), else
/// records the skip of `test` and returns `None`.
pub fn chromedriver(test: &str) -> Option<std::path::PathBuf> {
    let found = ["chromedriver", "/usr/bin/chromedriver"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
            "{test}: REQUIRE_BROWSER=1 but chromedriver is not installed (scripts/setup.sh installs chromium and chromium-driver)"
        );
        skipped(
            test,
            "chromedriver is not installed: the browser test did not run",
        );
    }
    found
}
