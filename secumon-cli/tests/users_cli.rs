//! `secumon users` on a server's data directory, as its operator does on its machine: add,
//! disable, enable, change role and password, delete.

use std::process::{Command, Output};

fn secumon(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn user(data: &std::path::Path, name: &str) -> Option<serde_json::Value> {
    let output = secumon(data, &["users", "list", "--json"], None);
    assert!(output.status.success(), "{}", text(&output));
    let users: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    users.into_iter().find(|u| u["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // A server made the data directory once; the commands work on it with no server running.
    let server = secumon_server::Server::start(secumon_server::ServerConfig::loopback(dir.path().join("secumon.db")))
        .await
        .unwrap();
    server.shutdown().await;
    let data = dir.path();
    let run = |args: &[&str], stdin: Option<&str>| {
        let output = secumon(data, args, stdin);
        (output.status.code(), text(&output))
    };

    let (code, out) = run(&["users", "add", "ada", "--tenant", "acme", "--role", "viewer"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("password: "), "{out}");
    let (code, out) = run(&["users", "disable", "ada"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(user(data, "ada").unwrap()["disabled"], true);
    run(&["users", "enable", "ada"], None);
    assert_eq!(user(data, "ada").unwrap()["disabled"], false);
    let (code, out) = run(&["users", "set-role", "ada", "--tenant", "acme", "--role", "admin"], None);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(user(data, "ada").unwrap()["roles"]["acme"], "admin");
    let (code, out) = run(&["users", "set-role", "ada", "--tenant", "acme", "--role", "boss"], None);
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = run(&["users", "set-password", "ada", "--password-stdin"], Some("short\n"));
    assert_eq!(code, Some(2), "a short password is a usage error: {out}");
    let (code, out) = run(&["users", "set-password", "ada", "--password-stdin"], Some("a long enough password\n"));
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["users", "delete", "ada"], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(user(data, "ada").is_none());
    let (code, out) = run(&["users", "delete", "ada"], None);
    assert_eq!(code, Some(2), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_mail_addresses_are_set_from_the_command_line_and_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let server = secumon_server::Server::start(secumon_server::ServerConfig::loopback(dir.path().join("secumon.db")))
        .await
        .unwrap();
    server.shutdown().await;
    let data = dir.path();
    let run = |args: &[&str]| {
        let output = secumon(data, args, None);
        (output.status.code(), text(&output))
    };

    let (code, out) = run(&["users", "add", "ada", "--tenant", "acme", "--email", "Ada@Example.com"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(user(data, "ada").unwrap()["email"], "ada@example.com");
    let (code, out) = run(&["users", "add", "bea", "--tenant", "acme", "--email", "ada@example.com"]);
    assert_eq!(code, Some(2), "a taken address is refused: {out}");
    assert!(out.contains("belongs to another user"), "{out}");
    assert!(user(data, "bea").is_none(), "and nobody is added");
    let (code, out) = run(&["users", "add", "bea", "--tenant", "acme", "--email", "not-an-address"]);
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = run(&["users", "set-email", "ada", "ada@lovelace.example"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["users", "list"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ada ") && l.contains("ada@lovelace.example")), "{out}");
    let (code, out) = run(&["users", "add", "bea", "--tenant", "acme", "--email", "ada@example.com"]);
    assert_eq!(code, Some(0), "the old address was freed: {out}");
}
