//! `secumon findings import|list` against a real server.

use std::process::{Command, Output};

use secumon_server::{Server, ServerConfig};

fn secumon(server: String, args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secumon")).args(args).env("SECUMON_SERVER", server).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = format!("http://{}", server.api_addr());
    let reports = format!("{}/../secumon-findings/tests/reports", env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        let (api, args) = (api.clone(), args.iter().map(|a| a.to_string()).collect());
        tokio::task::spawn_blocking(move || secumon(api, args))
    };

    let nuclei = format!("{reports}/nuclei.jsonl");
    let output = run(&["findings", "import", &nuclei]).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).ends_with("3 findings (nuclei): 3 new, 0 reopened, 0 fixed, 0 unchanged\n"),
        "{}",
        text(&output)
    );

    let output = run(&["findings", "list", "--severity", "medium"]).await.unwrap();
    let listing = text(&output);
    assert_eq!(listing.lines().count(), 3, "header and two findings: {listing}");
    assert!(listing.lines().nth(1).unwrap().starts_with("critical"));

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"template-id\": \"x\", \"host\": \"h\", \"info\": {\"name\": \"n\", \"severity\": \"low\"}}\n{oops\n",
    )
    .unwrap();
    let output = run(&["findings", "import", broken.to_str().unwrap()]).await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("broken.jsonl:2:"), "{}", text(&output));
    let output = run(&["findings", "list", "--json"]).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 3, "nothing of the broken report was stored");
    server.shutdown().await;
}
