//! A real probe (`secumon probe`) whose clock is wrong, under libfaketime: the server lists
//! it with its measured offset, stores its results at server time (for ±2 h), fires a rule
//! on the offset, and doubles nothing when the clock is fixed while the probe runs; the
//! probe logs the skew once.
//!
//! These tests need Debian's `faketime` package (scripts/test installs it) and fail, rather
//! than skip, without it.

#[path = "../../secumon-server/tests/skew/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{HOUR, LogTo, SkewedSender, assert_one_per_run, clock_alert, listed, start_server};
use secumon_core::now_ms;
use secumon_server::Server;

/// How often the probe's check runs.
const INTERVAL_MS: i64 = 400;

/// A `secumon probe` whose one TCP check runs every [`INTERVAL_MS`], its clock at `skew`.
fn start_probe(dir: &Path, name: &str, skew: &str, grpc: std::net::SocketAddr, target_port: u16) -> SkewedSender {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "probe: {{name: {name}}}\ncollector: {{endpoint: \"{grpc}\"}}\nspool: {{dir: \"{}\"}}\n\
             checks:\n  - {{name: up, type: tcp, host: 127.0.0.1, port: {target_port}, interval: {INTERVAL_MS}ms}}\n",
            dir.join(name).display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_secumon"));
    command.args(["probe", "--config"]).arg(&config);
    SkewedSender::start(dir, name, skew, command, LogTo::Stderr)
}

/// Timestamps of the probe's `check_status` samples, oldest first.
async fn stored(server: &Server, probe: &SkewedSender) -> Vec<i64> {
    harness::stored(server, probe, "check_status").await
}

fn target() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_two_hours_ahead_is_listed_restamped_and_alerted_on_even_from_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let open = target();
    // The server is down at first: the probe spools results collected 2 h "ahead" and sends
    // them later, when their send time is fresh but their collection time is old.
    let grpc = target().local_addr().unwrap();
    let started = now_ms();
    let probe = start_probe(dir.path(), "ahead", "+2h", grpc, open.local_addr().unwrap().port());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = start_server(dir.path(), Some(grpc)).await;
    let server_started = now_ms();

    let agent = listed(&server, &probe, |offset| (offset - 2 * HOUR).abs() < 1_000).await;
    assert_eq!(agent["clock"]["corrected"], true, "{agent}");
    assert_eq!(agent["status"], "online", "{agent}");
    clock_alert(&server, &probe, true).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let points = stored(&server, &probe).await;
    let now = now_ms();
    assert!(points.len() >= 5, "{points:?}");
    // Every result at the server's time of its run: none in the future, none 2 h off, and
    // the spooled ones at their real time, before the server started.
    assert!(points.iter().all(|&ts| ts >= started - 1_000 && ts <= now + 1_000), "{started}..{now}: {points:?}");
    assert!(points[0] < server_started - 1_000, "the spooled results: {points:?} (server started {server_started})");
    assert_eq!(probe.lines_with("this machine's clock is 2h 0m"), 1, "once per episode:\n{}", probe.log());
    assert!(probe.log().contains("ahead of the server"), "{}", probe.log());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_two_hours_behind_is_stored_at_server_time() {
    let dir = tempfile::tempdir().unwrap();
    let open = target();
    let server = start_server(dir.path(), None).await;
    let probe = start_probe(dir.path(), "behind", "-2h", server.grpc_addr(), open.local_addr().unwrap().port());

    let agent = listed(&server, &probe, |offset| (offset + 2 * HOUR).abs() < 1_000).await;
    assert_eq!(agent["clock"]["corrected"], true, "{agent}");
    clock_alert(&server, &probe, true).await;
    let points = stored(&server, &probe).await;
    let latest = *points.last().expect("results stored");
    // Not filed 2 h in the past, where no current-value query would see it.
    assert!((now_ms() - latest).abs() < 3_000, "latest result at {latest}, now {}", now_ms());
    assert_eq!(probe.lines_with("this machine's clock is 2h 0m"), 1, "{}", probe.log());
    assert!(probe.log().contains("behind the server"), "{}", probe.log());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_three_seconds_ahead_is_shown_but_not_restamped() {
    let dir = tempfile::tempdir().unwrap();
    let open = target();
    let server = start_server(dir.path(), None).await;
    let probe = start_probe(dir.path(), "close", "+3s", server.grpc_addr(), open.local_addr().unwrap().port());

    let agent = listed(&server, &probe, |offset| (offset - 3_000).abs() < 1_000).await;
    assert_eq!(agent["clock"]["corrected"], false, "within the default 5 s tolerance: {agent}");
    // Its results keep the probe's own stamps: some are ahead of the server's clock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stored(&server, &probe).await.iter().any(|&ts| ts > now_ms() + 1_000) {
        assert!(Instant::now() < deadline, "no result stored ahead of server time: not the probe's stamps?");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock_alert(&server, &probe, false).await;
    assert_eq!(probe.lines_with("this machine's clock is"), 1, "{}", probe.log());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_the_clock_while_the_probe_runs_doubles_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let open = target();
    let server = start_server(dir.path(), None).await;
    let started = now_ms();
    let probe = start_probe(dir.path(), "fixed", "+2h", server.grpc_addr(), open.local_addr().unwrap().port());
    listed(&server, &probe, |offset| (offset - 2 * HOUR).abs() < 1_000).await;
    clock_alert(&server, &probe, true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // NTP steps the clock back while the probe runs.
    probe.set_clock("+0");
    let agent = listed(&server, &probe, |offset| offset.abs() < 1_000).await;
    assert_eq!(agent["clock"]["corrected"], false, "{agent}");
    clock_alert(&server, &probe, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let agent = listed(&server, &probe, |offset| offset.abs() < 1_000).await;
    let points = stored(&server, &probe).await;
    let now = now_ms();
    assert!(points.iter().all(|&ts| ts >= started - 1_000 && ts <= now + 1_000), "{started}..{now}: {points:?}");
    // One result per run, before and after the step: none stored twice, none lost.
    assert_one_per_run(&points, INTERVAL_MS);
    assert_eq!(agent["clock"]["refused_batches"], 0, "{agent}");
    let metrics = reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("secumon_ingest_batches_total{outcome=\"refused\"} 0"), "{metrics}");
    let corrected = metrics.lines().find_map(|l| l.strip_prefix("secumon_ingest_clock_corrected_batches_total "));
    assert!(corrected.and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 3), "{metrics}");
    assert!(agent["clock"]["corrected_batches"].as_u64().unwrap() >= 3, "{agent}");
    assert_eq!(probe.lines_with("this machine's clock is 2h 0m"), 1, "{}", probe.log());
    assert_eq!(probe.lines_with("agrees with the server's again"), 1, "{}", probe.log());
    server.shutdown().await;
}
