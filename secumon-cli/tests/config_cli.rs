//! `secumon config show|set` against a running server: the tenant's settings with the
//! retention of its samples, changed flag by flag (what is not given stays), a refusal as a
//! usage error naming the field, and a super-admin's `--tenant`.

use std::process::Command;

use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};

fn secumon(server: &Server, token: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .arg("config")
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
async fn settings_and_retention_are_shown_and_changed_flag_by_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let (_, admin) = server.accounts().create_api_key("acme", "ops", Role::Admin, "test").await.unwrap();
    server.accounts().create_tenant("globex").await.unwrap();
    server.accounts().add_user("root", "a long test password", "default", Role::Admin, true).await.unwrap();
    let login = reqwest::Client::new()
        .post(format!("http://{}/api/v1/auth/login", server.api_addr()))
        .json(&serde_json::json!({"username": "root", "password": "a long test password"}))
        .send()
        .await
        .unwrap();
    let session: serde_json::Value = login.json().await.unwrap();
    let root = session["access_token"].as_str().expect("a session").to_string();

    let (code, out, err) = secumon(&server, &admin, &["show"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("retention raw           30d") && out.contains("retention 1h            365d"), "{out}");

    let (code, out, err) = secumon(&server, &admin, &["set", "--retention-raw", "7d", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let stored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stored["retention"], serde_json::json!({"raw": "7d", "rollup_5m": "90d", "rollup_1h": "365d"}));
    let (code, out, err) = secumon(&server, &admin, &["set", "--retention-5m", "14d", "--agent-offline-after", "5m"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("agent_offline_after     5m") && out.contains("retention raw           7d"), "{out}");
    assert!(out.contains("retention 5m            14d"), "{out}");
    assert_eq!(server.store().tier_retention("acme").await.unwrap().raw_ms, 7 * 86_400_000);

    // Refused: a usage error (2) that names the field; nothing changed.
    let (code, out, err) = secumon(&server, &admin, &["set", "--retention-1h", "1d"]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("retention.rollup_1h"), "{err}");
    let (_, out, _) = secumon(&server, &admin, &["show"]);
    assert!(out.contains("retention 1h            365d"), "{out}");
    // Another tenant's: a super-admin's only.
    let (code, out, err) = secumon(&server, &admin, &["set", "--tenant", "globex", "--retention-raw", "1h"]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert_eq!(server.store().tier_retention("globex").await.unwrap(), server.store().retention_defaults());
    let (code, out, err) = secumon(&server, &root, &["set", "--tenant", "globex", "--retention-raw", "2d"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(server.store().tier_retention("globex").await.unwrap().raw_ms, 2 * 86_400_000);
    assert_eq!(server.store().tier_retention("acme").await.unwrap().raw_ms, 7 * 86_400_000, "acme's unchanged");
    server.shutdown().await;
}
