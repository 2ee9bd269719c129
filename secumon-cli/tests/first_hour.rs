//! The commands of the README's first hour, run as written: `config check` on each kind of
//! file, `rules check` and an all-or-nothing `rules add`, `query` with a selector, and
//! `secumon server` alone saying how to get in (with a log free of colour codes when piped,
//! or at a terminal with `NO_COLOR` set).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_store::DEFAULT_TENANT;

fn secumon(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(args)
        .env("SECUMON_SERVER", server)
        .env_remove("SECUMON_TOKEN")
        .output()
        .unwrap()
}

async fn run(server: &str, args: &[&str]) -> Output {
    let (server, args) = (server.to_string(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || secumon(&server, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn config_check_recognises_agent_probe_and_rules_files() {
    for (file, kind) in [("agent.yaml", "agent file"), ("probe.yaml", "probe file"), ("alerting.yaml", "rules")] {
        let path = example(file);
        let output = secumon("http://127.0.0.1:1", &["config", "check", path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{file}: {}", text(&output));
        assert!(text(&output).contains(kind), "{file}: {}", text(&output));
    }
    let dir = tempfile::tempdir().unwrap();
    let probe = write(dir.path(), "p.yaml", "probe:\n  name: p\nchecks:\n  - name: a\n    type: tcp\n    hots: x\n");
    let output = secumon("http://127.0.0.1:1", &["config", "check", &probe]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("p.yaml:6:") && text(&output).contains("hots"), "{}", text(&output));
    let rules = write(
        dir.path(),
        "r.yaml",
        "rules:\n  - name: X\n    expr: up == 0\n    severity: info\n    channels: [nowhere]\n\
         channels:\n  ops: {type: webhook, url: \"http://127.0.0.1:1/\"}\n",
    );
    let output = secumon("http://127.0.0.1:1", &["config", "check", &rules]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("r.yaml:5: key `channels`"), "{}", text(&output));
}

#[test]
fn rules_check_validates_like_promtool() {
    let output = secumon("http://127.0.0.1:1", &["rules", "check", example("alerting.yaml").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains(": ok ("), "{}", text(&output));
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.yaml", "rules:\n  - name: X\n    expr: rate(x) > 1\n    severity: info\n");
    let output = secumon("http://127.0.0.1:1", &["rules", "check", &bad]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).starts_with(&format!("{bad}:")), "file:line first: {}", text(&output));
    let twice = write(
        dir.path(),
        "twice.yaml",
        "rules:\n  - {name: A, expr: x > 1, severity: info}\n  - {name: A, expr: y > 1, severity: info}\n",
    );
    let output = secumon("http://127.0.0.1:1", &["rules", "check", &twice]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("twice.yaml:2: key `name`"), "{}", text(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_add_is_all_or_nothing_and_query_takes_a_selector() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = format!("http://{}", server.api_addr());

    let file = write(
        dir.path(),
        "two.yaml",
        "rules:\n  - name: First\n    expr: x > 1\n    severity: info\n  - name: Second\n    expr: y > 1\n    \
         severity: info\n    channels: [pager]\n",
    );
    let output = run(&api, &["rules", "add", &file]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("two.yaml:8: key `channels`"), "{}", text(&output));
    assert!(text(&output).contains("nothing was added"), "{}", text(&output));
    let output = run(&api, &["rules", "list", "--json"]).await;
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        !listing["rules"].as_array().unwrap().iter().any(|r| r["id"] == "First"),
        "the first rule was not added alone: {listing}"
    );

    let host = "query-host";
    let sample = |mountpoint: &str, value| {
        let labels: Labels = [("mountpoint".to_string(), mountpoint.to_string())].into_iter().collect();
        Sample::new("filesystem_used_ratio", labels, now_ms() - 1_000, value)
    };
    let batch = IngestBatch {
        agent_id: "a1".into(),
        sequence: 1,
        host: host.into(),
        samples: vec![sample("/", 0.5), sample("/boot", 0.25)],
        ..Default::default()
    };
    server.store().write_batch(DEFAULT_TENANT, &batch).await.unwrap();
    let output =
        run(&api, &["query", r#"filesystem_used_ratio{mountpoint="/"}"#, "--host", host, "--period", "15m"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(text(&output).contains(r#"mountpoint="/""#) && !text(&output).contains("/boot"), "{}", text(&output));
    let output = run(&api, &["query", r#"filesystem_used_ratio{host="query-host",mountpoint!="/"}"#, "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["series"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["series"][0]["labels"]["mountpoint"], "/boot");
    let output = run(&api, &["query", r#"filesystem_used_ratio{mountpoint="/data"}"#, "--host", host]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("none matching") && text(&output).contains(r#"mountpoint="/boot""#),
        "{}",
        text(&output)
    );
    // Only that message: no "no data for ..." on stdout beside it.
    assert_eq!(String::from_utf8_lossy(&output.stdout), "", "{}", text(&output));

    // A label value holding double quotes is matched through PromQL's `\"` escape.
    let odd = IngestBatch {
        agent_id: "a1".into(),
        sequence: 2,
        host: host.into(),
        samples: vec![sample(r#"/mnt/"odd""#, 0.75), sample("/mnt/odd", 0.125)],
        ..Default::default()
    };
    server.store().write_batch(DEFAULT_TENANT, &odd).await.unwrap();
    let output =
        run(&api, &["query", r#"filesystem_used_ratio{mountpoint="/mnt/\"odd\""}"#, "--host", host, "--json"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mountpoints: Vec<&serde_json::Value> =
        json["series"].as_array().unwrap().iter().map(|s| &s["labels"]["mountpoint"]).collect();
    assert_eq!(mountpoints, [r#"/mnt/"odd""#], "{json}");
    let output = run(&api, &["query", "rate(cpu_seconds_total[5m])"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("functions are not supported"), "{}", text(&output));
    let output = run(&api, &["query", "no_such_metric", "--host", host]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("the server has no no_such_metric for host"), "{}", text(&output));
    server.shutdown().await;
}

#[test]
fn server_alone_creates_the_first_admin_and_logs_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(["server", "--api", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("SECUMON_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !printed.contains("CLI token") && Instant::now() < deadline {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(printed.contains("created the super-admin \"admin\" with password"), "{printed}{log}");
    assert!(printed.contains("export SECUMON_TOKEN=$(cat"), "{printed}");
    let token = std::fs::read_to_string(dir.path().join("cli.token")).unwrap();
    assert!(token.starts_with("smk_"), "{token}");
    assert!(!log.is_empty(), "the server logs something at info");
    assert!(!log.contains('\u{1b}'), "no colour codes in a piped log: {log:?}");
}

/// `secumon server`'s log at a pseudo-terminal (util-linux's `script` gives it one), for a few
/// seconds, with `NO_COLOR` set to `no_color` or unset.
fn server_log_at_a_terminal(no_color: Option<&str>) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        secumon_core::testing::peer_missing("script (util-linux) missing, which gives the server a terminal");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "timeout 3 {} server --api 127.0.0.1:0 --grpc 127.0.0.1:0 --data-dir {}",
        env!("CARGO_BIN_EXE_secumon"),
        dir.path().display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]).env("RUST_LOG", "info").env_remove("SECUMON_STORE");
    match no_color {
        Some(value) => script.env("NO_COLOR", value),
        None => script.env_remove("NO_COLOR"),
    };
    let output = script.stdin(Stdio::null()).output().unwrap();
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    let Some(coloured) = server_log_at_a_terminal(None) else { return };
    assert!(coloured.contains("INFO") && coloured.contains("\u{1b}["), "colours at a terminal: {coloured:?}");
    let Some(empty) = server_log_at_a_terminal(Some("")) else { return };
    assert!(empty.contains("\u{1b}["), "an empty NO_COLOR is unset (no-color.org): {empty:?}");
    let Some(plain) = server_log_at_a_terminal(Some("1")) else { return };
    assert!(plain.contains("INFO") && plain.contains("CLI token"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR=1 at a terminal: no colour codes: {plain:?}");
}
