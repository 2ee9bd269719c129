//! The real `secumon-agent` binary with its clock wrong, under libfaketime, against a real
//! server: listed with its measured offset, its samples stored at server time (±2 h, also
//! when they come from its spool), a rule on the offset firing, nothing doubled or lost when
//! NTP fixes the clock while it runs, and the skew logged once per episode.
//!
//! Needs Debian's `faketime` package (scripts/test installs it); fails without it.

#[path = "../../secumon-server/tests/skew/harness.rs"]
mod harness;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{HOUR, LogTo, SkewedSender, assert_one_per_run, clock_alert, listed, start_server};
use secumon_core::now_ms;
use secumon_server::Server;

/// The agent's collection interval.
const INTERVAL_MS: i64 = 500;

/// A `secumon-agent` collecting memory every [`INTERVAL_MS`], its clock at `skew`.
fn start_agent(dir: &Path, host: &str, skew: &str, grpc: std::net::SocketAddr) -> SkewedSender {
    let config = dir.join(format!("{host}.yaml"));
    std::fs::write(
        &config,
        format!(
            "agent: {{name: {host}}}\ncollector: {{endpoint: \"{grpc}\"}}\n\
             metrics: {{interval: {INTERVAL_MS}ms, enabled: [memory]}}\nspool: {{dir: \"{}\"}}\n",
            dir.join(host).display()
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_secumon-agent"));
    command.arg("--config").arg(&config);
    SkewedSender::start(dir, host, skew, command, LogTo::Stdout)
}

/// Timestamps of the agent's `memory_total_bytes` samples, oldest first.
async fn stored(server: &Server, agent: &SkewedSender) -> Vec<i64> {
    harness::stored(server, agent, "memory_total_bytes").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_two_hours_ahead_is_restamped_from_its_spool_alerted_on_and_fixed_without_doubles() {
    let dir = tempfile::tempdir().unwrap();
    // The server is down at first: the agent spools samples collected 2 h "ahead" and sends
    // them later, when their send time is fresh but their collection time is old.
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = now_ms();
    let agent = start_agent(dir.path(), "ahead", "+2h", grpc);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = start_server(dir.path(), Some(grpc)).await;
    let server_started = now_ms();

    let listing = listed(&server, &agent, |offset| (offset - 2 * HOUR).abs() < 1_000).await;
    assert_eq!(listing["clock"]["corrected"], true, "{listing}");
    assert_eq!(listing["status"], "online", "{listing}");
    clock_alert(&server, &agent, true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // NTP steps the clock back while the agent runs.
    agent.set_clock("+0");
    let listing = listed(&server, &agent, |offset| offset.abs() < 1_000).await;
    assert_eq!(listing["clock"]["corrected"], false, "{listing}");
    clock_alert(&server, &agent, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let listing = listed(&server, &agent, |offset| offset.abs() < 1_000).await;
    let points = stored(&server, &agent).await;
    let now = now_ms();
    assert!(points.len() >= 10, "{points:?}");
    // Every sample at the server's time of its collection: none in the future, none 2 h
    // off, the spooled ones at their real time before the server started.
    assert!(points.iter().all(|&ts| ts >= started - 1_000 && ts <= now + 1_000), "{started}..{now}: {points:?}");
    assert!(points[0] < server_started - 1_000, "the spooled samples: {points:?} (server started {server_started})");
    assert_one_per_run(&points, INTERVAL_MS);
    assert_eq!(listing["clock"]["refused_batches"], 0, "{listing}");
    assert!(listing["clock"]["corrected_batches"].as_u64().unwrap() >= 3, "{listing}");
    assert_eq!(agent.lines_with("this machine's clock is 2h 0m"), 1, "once per episode:\n{}", agent.log());
    assert!(agent.log().contains("ahead of the server"), "{}", agent.log());
    assert_eq!(agent.lines_with("agrees with the server's again"), 1, "{}", agent.log());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_two_hours_behind_is_stored_at_server_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), None).await;
    let agent = start_agent(dir.path(), "behind", "-2h", server.grpc_addr());

    let listing = listed(&server, &agent, |offset| (offset + 2 * HOUR).abs() < 1_000).await;
    assert_eq!(listing["clock"]["corrected"], true, "{listing}");
    clock_alert(&server, &agent, true).await;
    let points = stored(&server, &agent).await;
    let latest = *points.last().expect("samples stored");
    // Not filed 2 h in the past, where no current-value query, gauge or rule would see it.
    assert!((now_ms() - latest).abs() < 3_000, "latest sample at {latest}, now {}", now_ms());
    assert_eq!(agent.lines_with("this machine's clock is 2h 0m"), 1, "{}", agent.log());
    assert!(agent.log().contains("behind the server"), "{}", agent.log());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_three_seconds_ahead_is_shown_but_keeps_its_stamps() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), None).await;
    let agent = start_agent(dir.path(), "close", "+3s", server.grpc_addr());

    let listing = listed(&server, &agent, |offset| (offset - 3_000).abs() < 1_000).await;
    assert_eq!(listing["clock"]["corrected"], false, "within the default 5 s tolerance: {listing}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stored(&server, &agent).await.iter().any(|&ts| ts > now_ms() + 1_000) {
        assert!(Instant::now() < deadline, "no sample stored ahead of server time: not the agent's stamps?");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    clock_alert(&server, &agent, false).await;
    assert_eq!(agent.lines_with("this machine's clock is"), 1, "{}", agent.log());
    server.shutdown().await;
}
