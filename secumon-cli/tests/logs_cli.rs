//! `secumon logs` against a real server fed over gRPC by a real push client: a time range
//! and a regex, the last N lines, a bad regex refused with exit code 2, and `--follow`
//! printing the stored lines and then one pushed after it started, each once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use secumon_core::{IngestBatch, LogRecord, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig};

fn record(i: usize, timestamp_ms: i64) -> LogRecord {
    LogRecord {
        timestamp_ms,
        source: if i.is_multiple_of(2) { "/var/log/app.log".into() } else { "journald".into() },
        labels: Default::default(),
        line: format!("{} line {i}", if i.is_multiple_of(5) { "ERROR" } else { "info" }),
    }
}

async fn push(client: &PushClient, sequence: u64, logs: Vec<LogRecord>) {
    let batch = IngestBatch {
        agent_id: "agent-1".into(),
        sequence,
        host: "web-1".into(),
        created_at_ms: now_ms(),
        logs,
        ..Default::default()
    };
    client.enqueue(batch).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client.stats().committed < sequence {
        assert!(tokio::time::Instant::now() < deadline, "batch {sequence} not acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secumon(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_secumon"))
        .arg("logs")
        .args(args)
        .args(["--server", &format!("http://{}", server.api_addr())])
        .env_remove("SECUMON_TOKEN")
        .output()
        .unwrap()
}

fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap().lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_pages_filters_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let client =
        PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
    let runner = client.clone();
    tokio::spawn(async move { runner.run(std::future::pending()).await });
    let now = now_ms();
    // 7 000 lines two hours old (more than one page), 100 in the last hour.
    push(&client, 1, (0..7_000).map(|i| record(i, now - 7_200_000 + i as i64)).collect()).await;
    push(&client, 2, (7_000..7_100).map(|i| record(i, now - 600_000 + i as i64)).collect()).await;

    let all = stdout_lines(&secumon(&server, &["web-1"]));
    assert_eq!(all.len(), 7_100, "every line, over two pages");
    assert!(all[0].ends_with("/var/log/app.log ERROR line 0"), "{}", all[0]);
    assert!(all[7_099].ends_with("journald info line 7099"), "{}", all[7_099]);

    let recent_errors = stdout_lines(&secumon(&server, &["web-1", "--since", "1h", "--grep", "^ERROR"]));
    let want: Vec<String> = (7_000..7_100).filter(|i| i % 5 == 0).map(|i| format!("ERROR line {i}")).collect();
    assert_eq!(recent_errors.len(), want.len());
    for (got, want) in recent_errors.iter().zip(&want) {
        assert!(got.ends_with(want.as_str()), "{got} / {want}");
    }
    let last = stdout_lines(&secumon(&server, &["web-1", "--limit", "3", "--source", "journald", "--json"]));
    let last: Vec<serde_json::Value> = last.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<&str> = last.iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert_eq!(texts, ["ERROR line 7095", "info line 7097", "info line 7099"]);

    let bad = secumon(&server, &["web-1", "--grep", "(unclosed"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid regex"), "{stderr}");

    // --follow: the stored ERROR lines of the last hour, then a new one, nothing twice.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(["logs", "web-1", "--since", "1h", "--grep", "ERROR", "--follow"])
        .args(["--server", &format!("http://{}", server.api_addr())])
        .env_remove("SECUMON_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (sender, mut printed) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        let line = tokio::time::timeout(Duration::from_secs(20), printed.recv()).await.unwrap().unwrap();
        seen.push(line);
    }
    // Let the follow subscribe, then store a line after it started.
    tokio::time::sleep(Duration::from_millis(500)).await;
    push(&client, 3, vec![record(7_100, now_ms()), record(7_101, now_ms())]).await;
    let line = tokio::time::timeout(Duration::from_secs(20), printed.recv()).await.expect("the new line").unwrap();
    assert!(line.ends_with("/var/log/app.log ERROR line 7100"), "{line}");
    assert!(
        tokio::time::timeout(Duration::from_millis(700), printed.recv()).await.is_err(),
        "nothing else: no duplicate, and the filter holds"
    );
    follow.kill().unwrap();
    follow.wait().unwrap();
    server.shutdown().await;
}
