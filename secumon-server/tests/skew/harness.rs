//! Shared by the clock-skew tests of real senders (`secumon-agent/tests/clock_skew.rs`,
//! `secumon-cli/tests/clock_skew.rs`): a sender process whose wall clock libfaketime sets
//! through a timestamp file (re-read every second; its monotonic clock left alone so its
//! timers keep time), a server with the example `ClockSkew` rule, and what the tests read
//! back: the sender as `GET /api/v1/agents` lists it, its stored samples, the alert.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};
use serde_json::Value;

pub const HOUR: i64 = 3_600_000;

/// Where a sender writes its log.
#[allow(dead_code)] // each test binary that includes this file uses one of them
pub enum LogTo {
    Stdout,
    Stderr,
}

/// A sender child under libfaketime, reporting as `host`; killed on drop.
pub struct SkewedSender {
    child: Child,
    clock_file: PathBuf,
    log: PathBuf,
    pub host: String,
}

impl SkewedSender {
    /// Starts `command` with its clock at `skew` (libfaketime's syntax: `+2h`, `-2h`, `+0`).
    pub fn start(dir: &Path, host: &str, skew: &str, mut command: Command, log_to: LogTo) -> Self {
        let clock_file = dir.join(format!("{host}.faketime"));
        std::fs::write(&clock_file, format!("{skew}\n")).unwrap();
        let log = dir.join(format!("{host}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let (stdout, stderr) = match log_to {
            LogTo::Stdout => (Stdio::from(file), Stdio::null()),
            LogTo::Stderr => (Stdio::null(), Stdio::from(file)),
        };
        let child = command
            .env("LD_PRELOAD", secumon_core::testing::libfaketime())
            .env("FAKETIME_TIMESTAMP_FILE", &clock_file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME")
            .env("RUST_LOG", "info")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap();
        Self { child, clock_file, log, host: host.to_string() }
    }

    /// Sets the sender's clock (libfaketime reads the file again within a second).
    pub fn set_clock(&self, skew: &str) {
        std::fs::write(&self.clock_file, format!("{skew}\n")).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn lines_with(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for SkewedSender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ClockSkew rule of `examples/alerting.yaml`, without its `for`.
fn rules() -> secumon_alert::RuleFile {
    secumon_alert::RuleFile::parse(
        "rules:\n  - {name: ClockSkew, expr: 'abs(secumon_agent_clock_offset_seconds) > 60', severity: warning}\n",
        "rules.yaml",
    )
    .unwrap()
}

/// A loopback server with the ClockSkew rule, on `grpc` when given (a port chosen before
/// the server exists, for a sender started first).
pub async fn start_server(dir: &Path, grpc: Option<std::net::SocketAddr>) -> Server {
    let mut config = ServerConfig::loopback(dir.join("s.db"));
    config.alerting = Some(rules());
    if let Some(grpc) = grpc {
        config.grpc_addr = grpc;
    }
    // Such a port may be taken for a moment by another test's outgoing connection.
    for _ in 0..50 {
        match Server::start(config.clone()).await {
            Err(secumon_server::ServerError::Bind { .. }) if grpc.is_some() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            started => return started.unwrap(),
        }
    }
    panic!("the chosen gRPC port stayed taken");
}

/// The sender as `GET /api/v1/agents` lists it, once its measured offset is one `accept` takes.
pub async fn listed(server: &Server, sender: &SkewedSender, accept: impl Fn(i64) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let list: Value =
            reqwest::get(format!("http://{}/api/v1/agents", server.api_addr())).await.unwrap().json().await.unwrap();
        if let Some(found) = list["agents"].as_array().unwrap().iter().find(|a| a["host"] == sender.host.as_str()) {
            if found["clock"]["offset_ms"].as_i64().is_some_and(&accept) {
                return found.clone();
            }
            last = found.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} not listed with the expected offset; last seen {last}\nits log:\n{}", sender.host, sender.log());
}

/// Timestamps of the sender's samples of `metric`, oldest first.
pub async fn stored(server: &Server, sender: &SkewedSender, metric: &str) -> Vec<i64> {
    let query = RangeQuery {
        selector: SeriesSelector::new(metric).with("host", sender.host.as_str()),
        start_ms: 0,
        end_ms: i64::MAX,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let series = server.store().query_range(DEFAULT_TENANT, &query).await.unwrap();
    let mut points: Vec<i64> = series.into_iter().flat_map(|s| s.points).map(|p| p.timestamp_ms).collect();
    points.sort_unstable();
    points
}

/// Waits until the ClockSkew alert is `firing` (or not) for the sender's host.
pub async fn clock_alert(server: &Server, sender: &SkewedSender, firing: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active = server.alerting().active();
        let fires = active.iter().any(|a| a.rule == "ClockSkew" && a.labels.get("host") == Some(&sender.host));
        if fires == firing {
            return;
        }
        assert!(Instant::now() < deadline, "ClockSkew firing should be {firing} for {}: {active:?}", sender.host);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One stored sample per run of a sender working every `interval_ms`: none twice, none lost.
pub fn assert_one_per_run(points: &[i64], interval_ms: i64) {
    let gaps: Vec<i64> = points.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&gap| gap > interval_ms / 3), "a sample stored twice: gaps {gaps:?}");
    assert!(gaps.iter().all(|&gap| gap < interval_ms * 4), "a run lost: gaps {gaps:?}");
}
