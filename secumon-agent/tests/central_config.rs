//! Central agent configuration end to end: the real `secumon-agent` binary against a real
//! server. An operator changes the interval through the API and the agent's batches follow
//! within one cycle; a document the host cannot run is refused, reported (agent detail and
//! `/agents/{id}/config`) and the last good one kept running, also across a restart; the
//! file's pins win; a standalone probe refuses, saying why; removing the layers brings the
//! file's own settings back.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secumon_api::{AgentConfigState, Client};
use secumon_server::live::LiveEvent;
use secumon_server::{Server, ServerConfig};
use serde_json::json;

/// The interval `agent.yaml` sets.
const FILE_INTERVAL: Duration = Duration::from_millis(1_500);

/// The arrival time and agent of every batch of memory samples the server committed, and
/// whether any carried CPU samples.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(Instant, String)>>>, Arc<AtomicBool>);

impl Arrivals {
    /// Arrival times of the agent's collection batches since `since`.
    fn since(&self, since: Instant) -> Vec<Instant> {
        self.0.lock().unwrap().iter().filter(|(at, _)| *at >= since).map(|(at, _)| *at).collect()
    }

    fn agent_id(&self) -> Option<String> {
        self.0.lock().unwrap().first().map(|(_, id)| id.clone())
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(config: &Path) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_secumon-agent"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("secumon-agent starts");
    Agent(child)
}

async fn start_server(dir: &Path, arrivals: &Arrivals) -> Server {
    let grpc = SocketAddr::from(([127, 0, 0, 1], 0));
    let config = ServerConfig { grpc_addr: grpc, ..ServerConfig::loopback(dir.join("db/secumon.db")) };
    let server = Server::start(config).await.expect("server starts");
    let mut feed = server.live_feed().subscribe();
    let arrivals = arrivals.clone();
    tokio::spawn(async move {
        while let Ok(event) = feed.recv().await {
            if let LiveEvent::Batch { batch, .. } = &*event
                && batch.samples.iter().any(|s| s.series.name == "memory_total_bytes")
            {
                arrivals.0.lock().unwrap().push((Instant::now(), batch.agent_id.clone()));
                if batch.samples.iter().any(|s| s.series.name.starts_with("cpu_")) {
                    arrivals.1.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    server
}

/// The median gap between the batches that arrive in the next `count` arrivals after `since`.
async fn median_gap(arrivals: &Arrivals, since: Instant, count: usize) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let times = arrivals.since(since);
        if times.len() > count {
            let mut gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).take(count).collect();
            gaps.sort();
            return gaps[gaps.len() / 2];
        }
        assert!(Instant::now() < deadline, "only {} batches since: {times:?}", times.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the agent's configuration state satisfies `done`.
async fn state_until(
    api: &Client,
    agent: &str,
    what: &str,
    done: impl Fn(&AgentConfigState) -> bool,
) -> AgentConfigState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // (Not found until its first batch is stored.)
        let state = api.agent_config(agent).await;
        if let Ok(state) = &state
            && done(state)
        {
            return state.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {state:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_changes_follow_within_a_cycle_and_a_bad_document_is_refused_reported_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let arrivals = Arrivals::default();
    let server = start_server(dir.path(), &arrivals).await;
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "agent:\n  name: web-1\n  labels: {{env: prod, role: web}}\n  pinned: [metrics.enabled]\n\
             collector: {{endpoint: \"{}\"}}\n\
             metrics: {{interval: {}ms, enabled: [memory]}}\nspool: {{dir: \"{}\"}}\n",
            server.grpc_addr(),
            FILE_INTERVAL.as_millis(),
            dir.path().join("agent").display()
        ),
    )
    .unwrap();
    let api = Client::builder(&format!("http://{}", server.api_addr())).build().unwrap();
    let agent = start_agent(&config);
    let started = Instant::now();
    let gap = median_gap(&arrivals, started, 2).await;
    assert!(gap > Duration::from_millis(1_200), "the file's interval first: {gap:?}");
    let agent_id = arrivals.agent_id().unwrap();
    let state = api.agent_config(&agent_id).await.unwrap();
    assert_eq!((state.state.as_str(), state.version.as_str()), ("current", ""), "{state:?}");

    // The operator sets a faster interval for env=prod, and tries to change the families,
    // which this agent's file pins.
    let layer = api
        .put_agent_config("env=prod", &json!({"metrics": {"interval": "300ms", "enabled": ["cpu", "memory"]}}))
        .await
        .unwrap();
    assert_eq!(layer.selector, "env=prod");
    let set = Instant::now();
    let applied = state_until(&api, &agent_id, "applied", |s| s.state == "current" && !s.version.is_empty()).await;
    // The next batch's acknowledgement carried it: applied within one cycle of the file's,
    // and reported by the next batch, one new cycle later (bounded loosely: CI is loaded).
    assert!(set.elapsed() < 2 * FILE_INTERVAL, "applied after {:?}", set.elapsed());
    assert_eq!(applied.selectors, ["env=prod"]);
    let gap = median_gap(&arrivals, Instant::now(), 6).await;
    assert!(gap < Duration::from_millis(600), "batches follow the new interval: {gap:?}");
    // (Pinned families: still memory only, no cpu series from this agent.)
    assert!(!arrivals.1.load(Ordering::Relaxed), "metrics.enabled is pinned: no CPU samples");

    // A standalone probe with the same labels runs its probe.yaml: it refuses, saying so.
    let probe_dir = dir.path().join("probe");
    let probe_yaml = format!(
        "probe: {{name: probe-1, labels: {{env: prod}}}}\ncollector: {{endpoint: \"{}\"}}\n\
         spool: {{dir: \"{}\"}}\nchecks:\n  - {{name: api, type: tcp, host: 127.0.0.1, port: {}, interval: 300ms}}\n",
        server.grpc_addr(),
        probe_dir.display(),
        server.api_addr().port()
    );
    let probe =
        secumon_agent::Probe::open(&secumon_scan::ProbeConfig::parse(&probe_yaml, "probe.yaml").unwrap()).unwrap();
    let probe_id = std::fs::read_to_string(probe_dir.join("agent_id")).unwrap();
    let (stop_probe, probe_stopped) = tokio::sync::oneshot::channel::<()>();
    let probing = tokio::spawn(probe.run(async move {
        let _ = probe_stopped.await;
    }));
    let probe_state = state_until(&api, &probe_id, "the probe refuses", |s| s.state == "refused").await;
    let reason = probe_state.report.and_then(|r| r.refused_error).unwrap_or_default();
    assert!(reason.contains("probe.yaml"), "{reason}");
    let _ = stop_probe.send(());
    probing.await.unwrap();

    // A document the server accepts but the host cannot run: a broken log pattern.
    let broken = json!({"logs": {"enabled": true, "sources": ["/var/log/[broken"]}, "metrics": {"interval": "5s"}});
    api.put_agent_config("role=web", &broken).await.unwrap();
    let refused = state_until(&api, &agent_id, "refused", |s| s.state == "refused").await;
    let report = refused.report.clone().unwrap();
    assert_eq!(report.running_version, applied.version, "the last good one runs on");
    assert_eq!(report.refused_version.as_deref(), Some(refused.version.as_str()));
    let error = report.refused_error.unwrap();
    assert!(error.contains("/var/log/[broken"), "{error}");
    let detail: serde_json::Value = reqwest::get(format!("http://{}/api/v1/agents/{agent_id}", server.api_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["config"]["refused_error"], json!(error), "{detail}");
    let gap = median_gap(&arrivals, Instant::now(), 4).await;
    assert!(gap < Duration::from_millis(600), "still at the last good interval: {gap:?}");

    // Restarted (with the server's document unchanged), the agent runs the last good
    // document from its state directory at once, and refuses the broken one again.
    drop(agent);
    let _agent = start_agent(&config);
    let (restarted, restarted_ms) = (Instant::now(), secumon_core::now_ms());
    let gap = median_gap(&arrivals, restarted, 4).await;
    assert!(gap < Duration::from_millis(600), "the saved document from the start: {gap:?}");
    state_until(&api, &agent_id, "refused again", |s| {
        s.state == "refused"
            && s.report.as_ref().is_some_and(|r| r.reported_ms > restarted_ms && r.running_version == applied.version)
    })
    .await;

    // Shapes the server can judge are refused at once, naming the key.
    let refusal =
        api.put_agent_config("default", &json!({"collector": {"endpoint": "elsewhere:1"}})).await.unwrap_err();
    assert!(refusal.to_string().contains("collector"), "{refusal}");
    let refusal = api.put_agent_config("env", &json!({})).await.unwrap_err();
    assert!(refusal.to_string().contains("selector"), "{refusal}");

    // Both layers removed: back to the file's interval.
    api.delete_agent_config("role=web").await.unwrap();
    api.delete_agent_config("env=prod").await.unwrap();
    state_until(&api, &agent_id, "unmanaged", |s| s.state == "current" && s.version.is_empty()).await;
    let gap = median_gap(&arrivals, Instant::now(), 2).await;
    assert!(gap > Duration::from_millis(1_200), "the file's interval again: {gap:?}");
    assert!(api.agent_config_layers().await.unwrap().layers.is_empty());
    server.shutdown().await;
}
