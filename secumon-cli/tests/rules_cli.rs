//! `secumon rules` and `secumon alerts` against a real server: a rules file is checked
//! locally, added through the API, listed, tested against stored data, then deleted.

use std::process::{Command, Output};

use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_store::DEFAULT_TENANT;

fn secumon(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secumon")).args(args).env("SECUMON_SERVER", server).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_added_listed_tested_and_deleted_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = format!("http://{}", server.api_addr());
    let batch = IngestBatch {
        agent_id: "a1".into(),
        sequence: 1,
        host: "db-1".into(),
        samples: vec![Sample::new("disk_used_ratio", Labels::new(), now_ms(), 0.97)],
        ..Default::default()
    };
    server.store().write_batch(DEFAULT_TENANT, &batch).await.unwrap();

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  - name: X\n    expr: rate(x) > 1\n    severity: info\n").unwrap();
    let output = tokio::task::spawn_blocking({
        let (api, bad) = (api.clone(), bad.clone());
        move || secumon(&api, &["rules", "add", bad.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("bad.yaml:"), "{}", text(&output));

    let good = dir.path().join("disk.yaml");
    std::fs::write(
        &good,
        "rules:\n  - {name: DiskFull, expr: disk_used_ratio > 0.9, for: 5m, severity: critical}\n  \
         - {name: AgentDown, source: agent, no_data: 2m, severity: critical}\n",
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let api = api.clone();
        tokio::task::spawn_blocking(move || secumon(&api, &args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let output = run(args(&["rules", "add", good.to_str().unwrap()])).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(text(&output), "added DiskFull\nadded AgentDown\n");
    let output = run(args(&["rules", "add", good.to_str().unwrap()])).await.unwrap();
    assert_eq!(output.status.code(), Some(1), "adding twice is refused: {}", text(&output));
    assert!(text(&output).contains("exists already"), "{}", text(&output));
    let output = run(args(&["rules", "add", "--replace", good.to_str().unwrap()])).await.unwrap();
    assert_eq!(text(&output), "replaced DiskFull\nreplaced AgentDown\n");

    let output = run(args(&["rules", "list"])).await.unwrap();
    let listing = text(&output);
    // Found by id: the server's built-in rules (SecumonStoreUnwritable) are listed too.
    let row = |id: &str| listing.lines().find(|l| l.starts_with(&format!("{id} "))).unwrap_or("").to_string();
    assert!(row("DiskFull").contains("disk_used_ratio > 0.9"), "{listing}");
    assert!(row("AgentDown").contains("no data for 2m"), "{listing}");

    // The sample stored above makes DiskFull hold; with `for: 5m` it would start pending.
    let output = run(args(&["rules", "test", "DiskFull"])).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "pending, not firing: {}", text(&output));
    assert!(text(&output).contains("pending") && text(&output).contains("host=db-1"), "{}", text(&output));
    let output = run(args(&["rules", "test", "AgentDown", "--json"])).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["alerts"], serde_json::json!([]), "the agent was seen just now");

    let output = run(args(&["rules", "delete", "DiskFull"])).await.unwrap();
    assert_eq!(text(&output), "deleted DiskFull\n");
    let output = run(args(&["rules", "test", "DiskFull"])).await.unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output).contains("no rule named \"DiskFull\""), "{}", text(&output));
    server.shutdown().await;
}
