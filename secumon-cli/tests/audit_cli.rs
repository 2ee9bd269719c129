//! `secumon audit` against a running server: the table of who did what, filtered by time
//! and action, and the API's JSON with `--json`.

use std::process::Command;

use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};

fn secumon(server: &Server, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .arg("audit")
        .args(args)
        .arg("--server")
        .arg(format!("http://{}", server.api_addr()))
        .env("SECUMON_TOKEN", token)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_listed_filtered_and_printed_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let (_, admin) = server.accounts().create_api_key("acme", "ops", Role::Admin, "test").await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1", server.api_addr());
    for (path, body) in [
        ("/api-keys", serde_json::json!({"name": "ci", "role": "viewer"})),
        ("/users", serde_json::json!({"name": "bob", "password": "a long test password", "role": "viewer"})),
    ] {
        let response = http.post(format!("{base}{path}")).bearer_auth(&admin).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }

    let (code, out, err) = secumon(&server, &admin, &["--since", "24h"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("AT") && lines[0].contains("ACTION"), "{out}");
    assert!(lines[1].contains("user.create") && lines[1].contains("bob") && lines[1].contains("127.0.0.1"), "{out}");
    assert!(lines[2].contains("api_key.create") && lines[2].contains("\"name\":\"ci\""), "{out}");
    assert!(out.contains("key:"), "the actor is the key: {out}");

    let (code, out, err) = secumon(&server, &admin, &["--action", "user.create", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!((entries[0]["action"].as_str(), entries[0]["target"].as_str()), (Some("user.create"), Some("bob")));

    let (code, out, _) = secumon(&server, &admin, &["--action", "tenant.create"]);
    assert_eq!((code, out.as_str()), (Some(0), "no audit entry\n"));
    let (code, _, err) = secumon(&server, &admin, &["--limit", "0"]);
    assert_eq!(code, Some(2), "a bad request is a usage error: {err}");
    let (code, _, err) = secumon(&server, "smk_nope.nope", &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("token"), "{err}");
    server.shutdown().await;
}
