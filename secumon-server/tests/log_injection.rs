//! Names from outside cannot forge log lines: a login whose user name holds a newline and a
//! fake log record is logged on one line, with the newline escaped.

use std::io::Write;
use std::sync::{Arc, Mutex};

use secumon_server::{Server, ServerConfig};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_name_with_a_newline_does_not_forge_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).init();

    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let forged = "ada\n2026-01-01T00:00:00Z  INFO secumon_server: login user=admin FORGED";
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/auth/login", server.api_addr()))
        .json(&json!({"username": forged, "password": "whatever it is"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    server.shutdown().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let refused: Vec<&str> = log.lines().filter(|line| line.contains("login refused")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains("FORGED") && refused[0].contains("\\n"), "{log}");
    assert!(!log.lines().any(|line| line.starts_with("2026-01-01")), "a forged line: {log}");
}
