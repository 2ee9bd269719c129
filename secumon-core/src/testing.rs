//! What the crates' tests do when a peer they compare against (nginx, snmpd, PostgreSQL…)
//! is missing. On this project's machines a missing peer is a broken install, so under
//! `SECUMON_TEST_STRICT=1` (which `scripts/test` sets) the test fails; a developer without
//! the peer can unset it and still run the rest.

/// The variable that turns a missing peer into a failure.
pub const STRICT_VAR: &str = "SECUMON_TEST_STRICT";

/// Reports that `what` is missing for the calling test: panics in strict mode, otherwise
/// prints `SKIPPED` and returns so the test can return early.
pub fn peer_missing(what: &str) {
    let strict = std::env::var(STRICT_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    if strict {
        panic!("{what}, and {STRICT_VAR} is set: on this project's machines every peer must be installed");
    }
    eprintln!("SKIPPED: {what}");
}

/// The path of libfaketime's multi-threaded build (Debian's `faketime` package), for tests
/// that run a real agent or probe with its clock off: `LD_PRELOAD` it with
/// `FAKETIME_TIMESTAMP_FILE`. Panics when it is missing: clock-skew tests never skip.
pub fn libfaketime() -> std::path::PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketimeMT.so.1"))
        .chain([std::path::PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")])
        .find(|path| path.exists());
    found.expect("libfaketime is missing: install the Debian package `faketime` (scripts/test does)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_mode_fails_a_test_whose_peer_is_missing() {
        // Run in a child so the variable does not leak into other tests of this binary.
        let exe = std::env::current_exe().unwrap();
        let run = |strict: &str| {
            std::process::Command::new(&exe)
                .args(["--exact", "testing::tests::child_reports_a_missing_peer", "--ignored", "--nocapture"])
                .env(STRICT_VAR, strict)
                .output()
                .unwrap()
        };
        let strict = run("1");
        assert!(!strict.status.success(), "strict mode must fail: {}", String::from_utf8_lossy(&strict.stdout));
        let lenient = run("0");
        assert!(lenient.status.success(), "{}", String::from_utf8_lossy(&lenient.stderr));
        assert!(String::from_utf8_lossy(&lenient.stderr).contains("SKIPPED: the peer"));
    }

    #[test]
    #[ignore = "run by strict_mode_fails_a_test_whose_peer_is_missing"]
    fn child_reports_a_missing_peer() {
        peer_missing("the peer is not installed");
    }
}
