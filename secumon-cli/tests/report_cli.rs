//! `secumon report` against a real server: the JSON it prints is the API's report, the
//! files it writes are that report rendered, a super-admin reaches another tenant with
//! `--tenant`, and a bad period exits 2 with the server's reason.

use std::process::{Command, Output};

use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};

fn secumon(server: String, dir: std::path::PathBuf, args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(args)
        .env("SECUMON_SERVER", server)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_printed_and_written_is_the_apis() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    server.accounts().create_tenant("acme").await.unwrap();
    let now = now_ms();
    let start = now - now % 60_000 - 3_600_000;
    // web-1 sent a sample every other minute of the last hour.
    let samples =
        (0..60).step_by(2).map(|m| Sample::new("cpu_usage_ratio", Labels::new(), start + m * 60_000, 0.5)).collect();
    let batch = IngestBatch { agent_id: "a1".into(), sequence: 1, host: "web-1".into(), samples, ..Default::default() };
    server.store().write_batch("acme", &batch).await.unwrap();
    let api = format!("http://{}", server.api_addr());
    let run = |args: &[&str]| {
        let (api, dir, args) = (api.clone(), dir.path().to_path_buf(), args.iter().map(|a| a.to_string()).collect());
        tokio::task::spawn_blocking(move || secumon(api, dir, args))
    };

    let output = run(&["report", "--tenant", "acme", "--period", "1h", "--format", "json"]).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let printed: secumon_api::Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed.tenant, "acme");
    let web = &printed.hosts[0];
    // The hour back from now (not on a minute) overlaps 61 minute buckets.
    assert_eq!((web.host.as_str(), web.reporting_buckets, web.expected_buckets), ("web-1", 30, 61), "{web:?}");
    assert_eq!(printed.top_hosts.cpu[0].mean, 0.5);

    let output = run(&["report", "--tenant", "acme", "--period", "1h", "--format", "xlsx"]).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let written = secumon_report::file_name(&printed, secumon_report::Format::Xlsx);
    let bytes = std::fs::read(dir.path().join(&written)).unwrap_or_else(|e| panic!("{written}: {e}"));
    assert!(bytes.starts_with(b"PK"), "a workbook");
    let output =
        run(&["report", "--tenant", "acme", "--period", "1h", "--format", "pdf", "-o", "r.pdf"]).await.unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(std::fs::read(dir.path().join("r.pdf")).unwrap().starts_with(b"%PDF-"));

    // The caller's own tenant (the default one) has no hosts; a bad period exits 2.
    let output = run(&["report", "--period", "1h", "--format", "json"]).await.unwrap();
    let own: secumon_api::Report = serde_json::from_slice(&output.stdout).unwrap();
    assert!(own.hosts.is_empty(), "{:?}", own.hosts);
    let output = run(&["report", "--period", "forever", "--format", "json"]).await.unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("period"), "{}", text(&output));
    server.shutdown().await;
}
