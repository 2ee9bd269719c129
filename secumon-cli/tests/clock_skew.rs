//! A real probe (`secumon probe`) whose clock is wrong, under libfaketime: the server lists
//! it with its measured offset, stores its results at server time (for ±2 h), fires a rule
//! on the offset, and doubles nothing when the clock is fixed while the probe runs; the
//! probe logs the skew once. The probe's wall clock is faked through a timestamp file
//! (re-read every second), its monotonic clock is left alone so its timers keep time.
//!
//! These tests need Debian's `faketime` package (scripts/test installs it) and fail, rather
//! than skip, without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secumon_core::now_ms;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};
use serde_json::Value;

const HOUR: i64 = 3_600_000;
/// How often the probe's check runs.
const INTERVAL_MS: i64 = 400;

/// A `secumon probe` child under libfaketime, killed on drop.
struct SkewedProbe {
    child: Child,
    clock_file: PathBuf,
    log: PathBuf,
    name: String,
}

impl SkewedProbe {
    fn start(dir: &Path, name: &str, skew: &str, grpc: std::net::SocketAddr, target_port: u16) -> Self {
        let clock_file = dir.join(format!("{name}.faketime"));
        std::fs::write(&clock_file, format!("{skew}\n")).unwrap();
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
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_secumon"))
            .args(["probe", "--config"])
            .arg(&config)
            .env("LD_PRELOAD", secumon_core::testing::libfaketime())
            .env("FAKETIME_TIMESTAMP_FILE", &clock_file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, clock_file, log, name: name.to_string() }
    }

    /// Sets the probe's clock (libfaketime reads the file again within a second).
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

impl Drop for SkewedProbe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The probe as `GET /api/v1/agents` lists it, once it is listed with a measured offset
/// that `accept` takes.
async fn listed(server: &Server, probe: &SkewedProbe, accept: impl Fn(i64) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let list: Value =
            reqwest::get(format!("http://{}/api/v1/agents", server.api_addr())).await.unwrap().json().await.unwrap();
        if let Some(agent) = list["agents"].as_array().unwrap().iter().find(|a| a["host"] == probe.name.as_str()) {
            if agent["clock"]["offset_ms"].as_i64().is_some_and(&accept) {
                return agent.clone();
            }
            last = agent.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} not listed with the expected offset; last seen {last}\nprobe log:\n{}", probe.name, probe.log());
}

/// Timestamps of the probe's `check_status` samples, oldest first.
async fn stored(server: &Server, probe: &SkewedProbe) -> Vec<i64> {
    let query = RangeQuery {
        selector: SeriesSelector::new("check_status").with("host", probe.name.as_str()),
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

/// Waits until the ClockSkew alert is `firing` (or not) for the probe's host.
async fn clock_alert(server: &Server, probe: &SkewedProbe, firing: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active = server.alerting().active();
        let fires = active.iter().any(|a| a.rule == "ClockSkew" && a.labels.get("host") == Some(&probe.name));
        if fires == firing {
            return;
        }
        assert!(Instant::now() < deadline, "ClockSkew firing should be {firing} for {}: {active:?}", probe.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let probe = SkewedProbe::start(dir.path(), "ahead", "+2h", grpc, open.local_addr().unwrap().port());
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
    let probe = SkewedProbe::start(dir.path(), "behind", "-2h", server.grpc_addr(), open.local_addr().unwrap().port());

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
    let probe = SkewedProbe::start(dir.path(), "close", "+3s", server.grpc_addr(), open.local_addr().unwrap().port());

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
    let probe = SkewedProbe::start(dir.path(), "fixed", "+2h", server.grpc_addr(), open.local_addr().unwrap().port());
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
    let gaps: Vec<i64> = points.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&gap| gap > INTERVAL_MS / 3), "a result stored twice: gaps {gaps:?}");
    assert!(gaps.iter().all(|&gap| gap < INTERVAL_MS * 3), "a result lost around the step: gaps {gaps:?}");
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
