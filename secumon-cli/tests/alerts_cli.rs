//! `secumon alerts` against a real server through the typed API client: silences are added,
//! listed (as a table and as the API's JSON) and expired; refusals keep their exit codes (a
//! bad request exits 2 with the server's message, a missing alert or silence is an error).

use std::process::{Command, Output};

use secumon_server::{Server, ServerConfig};

fn secumon(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secumon")).args(args).env("SECUMON_SERVER", server).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `secumon` off the runtime (the server under test runs on it).
async fn run(server: &str, args: &[&str]) -> Output {
    let (server, args) = (server.to_string(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || secumon(&server, &args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_are_added_listed_and_expired_and_refusals_keep_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = format!("http://{}", server.api_addr());

    let output = run(&api, &["alerts", "list"]).await;
    assert_eq!((output.status.code(), text(&output).as_str()), (Some(0), "no alert pending, firing or stale\n"));
    let output = run(&api, &["alerts", "list", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json, serde_json::json!({"alerts": []}));

    let output =
        run(&api, &["alerts", "silence", "host=web-1", "--for", "2h", "--by", "alice", "--comment", "maint"]).await;
    let said = text(&output);
    let id = said.strip_prefix("silenced (id ").and_then(|s| s.strip_suffix(")\n")).expect(&said).to_string();

    let output = run(&api, &["alerts", "silences"]).await;
    let table = text(&output);
    assert!(table.starts_with("ID ") && table.contains(&id) && table.contains("host=web-1  maint"), "{table}");
    let output = run(&api, &["alerts", "silences", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json["silences"][0]["id"], id.as_str());
    assert_eq!(json["silences"][0]["matchers"], serde_json::json!({"host": "web-1"}));

    let output = run(&api, &["alerts", "unsilence", &id]).await;
    assert_eq!((output.status.code(), text(&output).as_str()), (Some(0), "expired\n"));
    let output = run(&api, &["alerts", "silences"]).await;
    assert_eq!(text(&output), "no silence in force\n");

    // Refusals: the server's message, and a bad request exits 2.
    let output = run(&api, &["alerts", "unsilence", &id]).await;
    assert_ne!(output.status.code(), Some(0));
    assert!(text(&output).contains("404") && text(&output).contains("no current silence"), "{}", text(&output));
    let output = run(&api, &["alerts", "silence", "host=web-1", "--for", "soon", "--by", "alice"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("`duration` must be a duration"), "{}", text(&output));
    let output = run(&api, &["alerts", "ack", "0011223344556677", "--by", "alice"]).await;
    assert!(text(&output).contains("no firing alert"), "{}", text(&output));
}
