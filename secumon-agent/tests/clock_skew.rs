//! The real `secumon-agent` binary with its clock wrong, under libfaketime, against a real
//! server: listed with its measured offset, its samples stored at server time (±2 h, also
//! when they come from its spool), a rule on the offset firing, nothing doubled or lost when
//! NTP fixes the clock while it runs, and the skew logged once per episode. The wall clock
//! is faked through a timestamp file (re-read every second); the monotonic clock is left
//! alone so the agent's timers keep time.
//!
//! Needs Debian's `faketime` package (scripts/test installs it); fails without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secumon_core::now_ms;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
/// The agent's collection interval.
const INTERVAL_MS: i64 = 500;

/// A `secumon-agent` child under libfaketime, killed on drop.
struct SkewedAgent {
    child: Child,
    clock_file: PathBuf,
    log: PathBuf,
    host: String,
}

impl SkewedAgent {
    fn start(dir: &Path, host: &str, skew: &str, grpc: std::net::SocketAddr) -> Self {
        let clock_file = dir.join(format!("{host}.faketime"));
        std::fs::write(&clock_file, format!("{skew}\n")).unwrap();
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
        let log = dir.join(format!("{host}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
            .arg("--config")
            .arg(&config)
            .env("LD_PRELOAD", secumon_core::testing::libfaketime())
            .env("FAKETIME_TIMESTAMP_FILE", &clock_file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME")
            .env("RUST_LOG", "info")
            // The agent logs to standard output.
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, clock_file, log, host: host.to_string() }
    }

    /// Sets the agent's clock (libfaketime reads the file again within a second).
    fn set_clock(&self, skew: &str) {
        std::fs::write(&self.clock_file, format!("{skew}\n")).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn lines_with(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for SkewedAgent {
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

async fn start_server(dir: &Path, grpc: Option<std::net::SocketAddr>) -> Server {
    let mut config = ServerConfig::loopback(dir.join("s.db"));
    config.alerting = Some(rules());
    if let Some(grpc) = grpc {
        config.grpc_addr = grpc;
    }
    // A port chosen before the server exists may be taken for a moment by another test's
    // outgoing connection: try again for a few seconds.
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

/// The agent as `GET /api/v1/agents` lists it, once its measured offset is one `accept` takes.
async fn listed(server: &Server, agent: &SkewedAgent, accept: impl Fn(i64) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let list: Value =
            reqwest::get(format!("http://{}/api/v1/agents", server.api_addr())).await.unwrap().json().await.unwrap();
        if let Some(found) = list["agents"].as_array().unwrap().iter().find(|a| a["host"] == agent.host.as_str()) {
            if found["clock"]["offset_ms"].as_i64().is_some_and(&accept) {
                return found.clone();
            }
            last = found.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} not listed with the expected offset; last seen {last}\nagent log:\n{}", agent.host, agent.log());
}

/// Timestamps of the agent's `memory_total_bytes` samples, oldest first.
async fn stored(server: &Server, agent: &SkewedAgent) -> Vec<i64> {
    let query = RangeQuery {
        selector: SeriesSelector::new("memory_total_bytes").with("host", agent.host.as_str()),
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

/// Waits until the ClockSkew alert is `firing` (or not) for the agent's host.
async fn clock_alert(server: &Server, agent: &SkewedAgent, firing: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active = server.alerting().active();
        let fires = active.iter().any(|a| a.rule == "ClockSkew" && a.labels.get("host") == Some(&agent.host));
        if fires == firing {
            return;
        }
        assert!(Instant::now() < deadline, "ClockSkew firing should be {firing} for {}: {active:?}", agent.host);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each collection stored once: consecutive samples about one interval apart.
fn assert_one_sample_per_collection(points: &[i64]) {
    let gaps: Vec<i64> = points.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&gap| gap > INTERVAL_MS / 3), "a sample stored twice: gaps {gaps:?}");
    assert!(gaps.iter().all(|&gap| gap < INTERVAL_MS * 4), "a collection lost: gaps {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_two_hours_ahead_is_restamped_from_its_spool_alerted_on_and_fixed_without_doubles() {
    let dir = tempfile::tempdir().unwrap();
    // The server is down at first: the agent spools samples collected 2 h "ahead" and sends
    // them later, when their send time is fresh but their collection time is old.
    let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let started = now_ms();
    let agent = SkewedAgent::start(dir.path(), "ahead", "+2h", grpc);
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
    assert_one_sample_per_collection(&points);
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
    let agent = SkewedAgent::start(dir.path(), "behind", "-2h", server.grpc_addr());

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
    let agent = SkewedAgent::start(dir.path(), "close", "+3s", server.grpc_addr());

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
