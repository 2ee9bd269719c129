//! `secumon-agent` refuses bad configuration with one line naming the file, line and key,
//! and exit code 2.

use std::process::Command;

fn run_with(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .expect("run secumon-agent");
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&*path.to_string_lossy(), "agent.yaml");
    (output.status.code(), stderr)
}

#[test]
fn broken_yaml_names_file_and_line() {
    let (code, stderr) = run_with("agent:\n  name: \"unterminated\ncollector:\n  endpoint: h:1\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("secumon-agent: agent.yaml:"), "{stderr}");
    let line: usize = stderr.split(':').nth(2).and_then(|l| l.parse().ok()).expect("a line number");
    assert!(line >= 2, "{stderr}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let (code, stderr) = run_with("agent:\n  name: web-1\ncollector:\n  endpoint: h:9090\n  timeout: 5s\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.starts_with("secumon-agent: agent.yaml:5:3: key `collector.timeout`: unknown field `timeout`"),
        "{stderr}"
    );
}

#[test]
fn seed_layout_with_plain_transport_is_accepted() {
    let seed = include_str!("../../examples/agent.yaml");
    let (code, stderr) = run_with(seed);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn missing_file_is_a_config_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
        .args(["--config", "/nonexistent/agent.yaml", "--check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/agent.yaml: cannot read"));
}

#[test]
fn the_shipped_package_config_is_accepted() {
    let (code, stderr) = run_with(include_str!("../../packaging/etc/agent.yaml"));
    assert_eq!(code, Some(0), "{stderr}");
}

/// A fresh install, before `setup`: no /etc/secumon/agent.yaml.
#[test]
fn without_a_configuration_once_uses_defaults_and_the_service_says_what_to_do() {
    assert!(
        !std::path::Path::new("/etc/secumon/agent.yaml").exists(),
        "this test needs a machine without an installed /etc/secumon/agent.yaml"
    );
    let once = Command::new(env!("CARGO_BIN_EXE_secumon-agent")).args(["--once", "--json"]).output().unwrap();
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let samples: Vec<serde_json::Value> =
        String::from_utf8_lossy(&once.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for family in ["cpu_usage_ratio", "memory_total_bytes", "filesystem_used_ratio", "network_receive_bytes_total"] {
        assert!(samples.iter().any(|s| s["name"] == family), "{family} missing from the default families");
    }

    let service = Command::new(env!("CARGO_BIN_EXE_secumon-agent")).output().unwrap();
    let stderr = String::from_utf8_lossy(&service.stderr);
    assert_eq!(service.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no configuration at /etc/secumon/agent.yaml"), "{stderr}");
    assert!(stderr.contains("secumon-agent setup --collector"), "{stderr}");
    assert!(stderr.contains("--once"), "{stderr}");
}
