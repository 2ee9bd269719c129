//! Issue #27: a host whose disk fills up (or turns read-only) keeps reporting. The agent's
//! state directory (identity and spool) sits on a small tmpfs this test mounts itself (we
//! run as root, as CI does: a failed mount fails the test, it never skips), and pushes to a
//! real server (gRPC ingest, SQLite store) that the test stops and starts on the same
//! database and port. Every batch the server commits is seen on its live feed, so the test
//! knows each stored sequence: none may be stored twice, they must arrive in increasing
//! order, live data must keep arriving while the disk is full, and at the end delivered +
//! dropped must equal what the agent made.
//!
//! An enrolled agent (mutual TLS, session token) renews its session token on the full disk
//! too, and keeps delivering with the token it cannot save, across a restart.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secumon_agent::{Agent, AgentSettings, SetupOptions};
use secumon_alert::{AlertState, RuleFile};
use secumon_core::AgentConfig;
use secumon_core::config::{MetricFamily, MetricsSection};
use secumon_server::live::LiveEvent;
use secumon_server::{GrpcTls, Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig, PushStats, SessionFile};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(100);
/// Room for about a dozen batches of cpu and memory samples.
const MEMORY_MAX_BYTES: usize = 48 * 1024;

/// A tmpfs mounted on a temporary directory, unmounted when dropped (panics included).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `remount,ro` or `remount,rw`; retried while a write is in progress (EBUSY).
    fn remount(&self, mode: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let output =
                Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(self.path()).output().unwrap();
            if output.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "remount {mode}: {}", String::from_utf8_lossy(&output.stderr));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a panic left the agent running): detach it now, freed when closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Something else on the host filling the disk: a file that grows into every byte that
/// gets free (the spool's own deletions included), until released.
struct DiskHog {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DiskHog {
    /// Starts hogging; returns once the disk is full.
    fn start(dir: &Path) -> Self {
        let path = dir.join("hog");
        let stop = Arc::new(AtomicBool::new(false));
        let (full_tx, full_rx) = std::sync::mpsc::channel();
        let mut file = File::options().create(true).append(true).open(&path).unwrap();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let chunk = vec![0x55u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    while file.write(&chunk).is_ok_and(|n| n > 0) {}
                    while file.write(&[0x55]).is_ok_and(|n| n == 1) {}
                    let _ = full_tx.send(());
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        full_rx.recv_timeout(Duration::from_secs(10)).expect("disk filled");
        Self { path, stop, thread: Some(thread) }
    }

    /// Gives the space back.
    fn release(mut self) {
        self.halt();
        std::fs::remove_file(&self.path).unwrap();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for DiskHog {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A batch the server committed, as its live feed announced it.
#[derive(Debug, Clone, Copy)]
struct Committed {
    sequence: u64,
    spool_writable: Option<f64>,
    session_unsaved: Option<f64>,
}

/// Every batch committed by any incarnation of the server, in commit order.
#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Vec<Committed>>>, Arc<AtomicBool>);

impl Ledger {
    fn all(&self) -> Vec<Committed> {
        assert!(!self.1.load(Ordering::Relaxed), "the test fell behind the live feed");
        self.0.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<Committed> {
        self.0.lock().unwrap()[from..].to_vec()
    }
}

struct RunningServer {
    server: Server,
    listener: JoinHandle<()>,
}

/// The agent spool rules of `examples/alerting.yaml`, without waiting (`for`,
/// `resolve_after`) or channels, so the test sees them fire and resolve at once.
fn spool_rules() -> RuleFile {
    let mut file = RuleFile::parse(include_str!("../../examples/alerting.yaml"), "examples/alerting.yaml").unwrap();
    file.rules.retain(|r| r.spec.name.starts_with("AgentSpool") || r.spec.name == "AgentLosingBatches");
    assert_eq!(file.rules.len(), 2, "the example rules for the agent's spool");
    for rule in &mut file.rules {
        rule.spec.for_duration = Duration::ZERO;
        rule.spec.resolve_after = Duration::ZERO;
        rule.spec.channels.clear();
    }
    file.channels.clear();
    file
}

fn firing(server: &Server, rule: &str) -> bool {
    server.alerting().active().iter().any(|a| a.rule == rule && a.state == AlertState::Firing)
}

async fn wait_alert(server: &Server, rule: &str, fire: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while firing(server, rule) != fire {
        assert!(Instant::now() < deadline, "{rule} should be {}", if fire { "firing" } else { "resolved" });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_server(database: &Path, grpc: SocketAddr, ledger: &Ledger) -> RunningServer {
    start_server_with(database, grpc, GrpcTls::Off, ledger).await
}

async fn start_server_with(database: &Path, grpc: SocketAddr, grpc_tls: GrpcTls, ledger: &Ledger) -> RunningServer {
    let config =
        ServerConfig { grpc_addr: grpc, grpc_tls, alerting: Some(spool_rules()), ..ServerConfig::loopback(database) };
    let server = Server::start(config).await.expect("server starts");
    let mut feed = server.live_feed().subscribe();
    let ledger = ledger.clone();
    let listener = tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(event) => {
                    if let LiveEvent::Batch { batch, .. } = &*event {
                        let value = |name: &str| batch.samples.iter().find(|s| s.series.name == name).map(|s| s.value);
                        ledger.0.lock().unwrap().push(Committed {
                            sequence: batch.sequence,
                            spool_writable: value("secumon_agent_spool_writable"),
                            session_unsaved: value("secumon_agent_session_unsaved"),
                        });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => ledger.1.store(true, Ordering::Relaxed),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    RunningServer { server, listener }
}

impl RunningServer {
    async fn stop(self) {
        self.server.shutdown().await;
        self.listener.abort();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn settings(state_dir: &Path, endpoint: SocketAddr) -> AgentSettings {
    AgentSettings {
        host: "full-disk-host".into(),
        labels: Default::default(),
        metrics: MetricsSection {
            interval: INTERVAL,
            enabled: vec![MetricFamily::Cpu, MetricFamily::Memory],
            ..Default::default()
        },
        state_dir: state_dir.to_path_buf(),
        endpoint: endpoint.to_string(),
        failover_endpoints: Vec::new(),
        // Larger than the disk: the disk fills before the spool's own bound is reached.
        spool_max_bytes: 64 * 1024 * 1024,
        tls: None,
        tls_files: None,
        session: None,
        logs: Default::default(),
        probe_checks: Vec::new(),
        managed: None,
    }
}

fn tune(config: &mut PushClientConfig) {
    config.memory_max_bytes = MEMORY_MAX_BYTES;
    config.backoff_max = Duration::from_millis(300);
}

struct RunningAgent {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    client: PushClient,
}

fn start_agent(settings: AgentSettings) -> RunningAgent {
    start_agent_with(settings, tune)
}

fn start_agent_with(settings: AgentSettings, tune: impl FnOnce(&mut PushClientConfig)) -> RunningAgent {
    let agent = Agent::open_with(settings, tune).expect("agent opens");
    let client = agent.push_client();
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(agent.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    RunningAgent { stop, task, client }
}

impl RunningAgent {
    fn stats(&self) -> PushStats {
        self.client.stats()
    }

    /// Stops the agent; returns its last counters. Its spool is closed when this returns.
    async fn stop(self) -> PushStats {
        self.stop.send_replace(true);
        self.task.await.expect("agent task");
        let stats = self.client.stats();
        drop(self.client);
        stats
    }

    /// Waits until `done` holds for the agent's counters.
    async fn wait(&self, what: &str, within: Duration, done: impl Fn(&PushStats) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}: {stats:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The agent's own account, exact while no acknowledgement is on its way (server down):
/// each batch it made was acknowledged once, is spooled, is in memory, or was dropped.
fn assert_accounted(stats: &PushStats) {
    let acknowledged = stats.committed + stats.duplicates + stats.rejected;
    let held = stats.spool.pending_batches + stats.memory.batches;
    let dropped = stats.memory.dropped + stats.spool.dropped_full;
    assert_eq!(acknowledged + held + dropped, stats.spool.next_sequence - 1, "{stats:?}");
}

fn everything_acked(stats: &PushStats) -> bool {
    stats.spool.acked_through + 1 == stats.spool.next_sequence
}

/// After a first run that made `1..=first_run_made` and later runs that made `restarted`:
/// only those sequences were stored, and stored + dropped + lost at a stop = made.
fn assert_runs_accounted(
    stored: &BTreeSet<u64>,
    first_run_made: u64,
    restarted: std::ops::Range<u64>,
    dropped: u64,
    lost_at_stop: u64,
) {
    let made = first_run_made + (restarted.end - restarted.start);
    assert!(
        stored.iter().all(|s| (1..=first_run_made).contains(s) || restarted.contains(s)),
        "only sequences the runs made"
    );
    assert_eq!(
        stored.len() as u64 + dropped + lost_at_stop,
        made,
        "delivered {} + dropped {dropped} + lost at stop {lost_at_stop} = made {made}",
        stored.len()
    );
    eprintln!(
        "made {made}, stored {}, dropped {dropped}, lost at stop {lost_at_stop}, restarted {restarted:?}",
        stored.len()
    );
}

/// Batches a stopped run made after its last acknowledgement that never reached the store:
/// they were only in memory, which dies with the process. Counted once everything is
/// delivered, since a batch sent just before the stop may be committed after it.
fn lost_at_stop(stored: &BTreeSet<u64>, unacked: std::ops::RangeInclusive<u64>, run: &PushStats) -> u64 {
    let lost = unacked.filter(|s| !stored.contains(s)).count() as u64;
    assert!(lost <= run.memory.batches, "lost at the stop: {lost}, {run:?}");
    lost
}

/// Delivers what a stopped agent left in its spool with a bare push client, as the
/// agent's next start would; returns the client's counters.
async fn drain(spool_dir: &Path, endpoint: SocketAddr) -> PushStats {
    drain_with(PushClientConfig::new(endpoint.to_string(), spool_dir)).await
}

async fn drain_with(config: PushClientConfig) -> PushStats {
    let client = PushClient::open(config).unwrap();
    let (stop, mut stopped) = watch::channel(false);
    let runner = client.clone();
    let task = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !everything_acked(&client.stats()) {
        assert!(Instant::now() < deadline, "spool not drained: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    task.await.unwrap();
    client.stats()
}

/// Sequences the server stored, checked: each once, in increasing order.
fn stored_sequences(ledger: &Ledger) -> BTreeSet<u64> {
    let all = ledger.all();
    for pair in all.windows(2) {
        assert!(
            pair[0].sequence < pair[1].sequence,
            "committed out of order or twice: {} then {}",
            pair[0].sequence,
            pair[1].sequence
        );
    }
    all.iter().map(|c| c.sequence).collect()
}

/// The store's own count agrees with the live feed: each sequence stored once.
async fn assert_store_agrees(server: &Server, stored: &BTreeSet<u64>) {
    let agents = server.store().list_agents("default").await.unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0].batches, stored.len() as u64, "the store's ingested batches are the ones seen committed");
    assert_eq!(Some(&agents[0].last_sequence), stored.last());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_delivers_live_batches_from_memory_and_recovers_without_doubles() {
    let disk = Tmpfs::mount("1m");
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("db/secumon.db");
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state_dir = disk.path().join("agent");
    let ledger = Ledger::default();

    let server = start_server(&database, grpc, &ledger).await;
    let agent = start_agent(settings(&state_dir, grpc));
    agent.wait("first batches delivered", Duration::from_secs(10), |s| s.committed >= 5).await;
    assert!(agent.stats().spool.writable);

    // 1. The disk fills while the server is up: live batches keep arriving, from memory,
    // on the same connection, and say that the spool cannot be written.
    let hog = DiskHog::start(disk.path());
    agent.wait("spool unwritable", Duration::from_secs(5), |s| !s.spool.writable).await;
    let connections = agent.stats().connections;
    let from = ledger.count();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let during = ledger.since(from);
    assert!(during.len() >= 10, "live data kept arriving while the disk was full: {} batches", during.len());
    assert!(
        during.iter().filter(|c| c.spool_writable == Some(0.0)).count() >= 5,
        "the server is told the spool cannot be written: {during:?}"
    );
    let stats = agent.stats();
    assert_eq!(stats.connections, connections, "unwritable acknowledgements did not cut the stream: {stats:?}");
    assert!(stats.spool.write_failures > 0);
    assert_eq!(stats.memory.dropped, 0, "nothing lost while the server takes everything: {stats:?}");
    // The example rule alerts on it.
    wait_alert(&server.server, "AgentSpoolUnwritable", true).await;

    // 2. The server goes down, the disk still full: memory fills, the oldest unsent go.
    server.stop().await;
    agent.wait("batches dropped from memory", Duration::from_secs(10), |s| s.memory.dropped >= 5 && !s.connected).await;
    let stats = agent.stats();
    // Bounded: unsent batches within the bound, plus at most one window of sent ones.
    let largest = stats.memory.bytes / stats.memory.batches.max(1) * 2;
    assert!(stats.memory.bytes <= MEMORY_MAX_BYTES as u64 + 33 * largest, "memory stays bounded: {stats:?}");
    assert_eq!(stats.spool.dropped_full, 0, "the spool drops only for its own bound: {stats:?}");
    assert_accounted(&stats);

    // 3. Space comes back while the server is down: memory moves to disk, and new batches
    // go to the spool again.
    hog.release();
    agent.wait("back on disk", Duration::from_secs(5), |s| s.spool.writable && s.memory.batches == 0).await;
    let spooled = agent.stats().spool.pending_batches;
    agent.wait("spooling again", Duration::from_secs(5), |s| s.spool.pending_batches >= spooled + 5).await;
    assert_accounted(&agent.stats());

    // 4. The disk fills again, still without a server; then the server comes back while
    // it is full: the spool is delivered first, then memory, and live data follows.
    let hog = DiskHog::start(disk.path());
    agent.wait("memory again", Duration::from_secs(5), |s| !s.spool.writable && s.memory.batches >= 3).await;
    assert_accounted(&agent.stats());
    let made_before_restart = agent.stats().spool.next_sequence - 1;
    let server = start_server(&database, grpc, &ledger).await;
    let from = ledger.count();
    agent
        .wait("backlog delivered", Duration::from_secs(20), |s| {
            s.connected && s.spool.acked_through >= made_before_restart
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after = ledger.since(from);
    assert!(after.iter().any(|c| c.sequence > made_before_restart), "live data after the backlog: {after:?}");
    wait_alert(&server.server, "AgentLosingBatches", true).await;

    // 5. Space comes back while the server is up: the durable path resumes by itself.
    hog.release();
    agent.wait("writable again", Duration::from_secs(5), |s| s.spool.writable && s.memory.batches == 0).await;
    let from = ledger.count();
    wait_alert(&server.server, "AgentSpoolUnwritable", false).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        ledger.since(from).iter().any(|c| c.spool_writable == Some(1.0)),
        "the server sees the spool writable again"
    );

    // The account: every batch the agent made is stored once or counted as dropped.
    let stopped = agent.stop().await;
    let drained = drain(&state_dir.join("spool"), grpc).await;
    let made = drained.spool.next_sequence - 1;
    assert_eq!(drained.spool.corrupt_records, 0, "full-disk writes left no damaged record");
    assert_eq!(made, stopped.spool.next_sequence - 1, "a clean stop keeps the numbering exact");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = stored_sequences(&ledger);
    let dropped = stopped.memory.dropped + stopped.spool.dropped_full;
    assert!(stored.iter().all(|s| (1..=made).contains(s)), "only sequences the agent made");
    assert_eq!(
        stored.len() as u64 + dropped,
        made,
        "delivered {} + dropped {dropped} = made {made}; agent {stopped:?}",
        stored.len()
    );
    assert!(dropped > 0, "this run did lose batches to a full memory, counted");
    eprintln!("made {made}, stored {}, dropped {dropped}, agent {stopped:?}", stored.len());
    assert_store_agrees(&server.server, &stored).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_spool_keeps_delivering_and_a_restart_on_it_reuses_no_sequence() {
    let disk = Tmpfs::mount("4m");
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("db/secumon.db");
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state_dir = disk.path().join("agent");
    let ledger = Ledger::default();

    let mut server = start_server(&database, grpc, &ledger).await;
    let agent = start_agent(settings(&state_dir, grpc));
    agent.wait("first batches delivered", Duration::from_secs(10), |s| s.committed >= 5).await;

    // The filesystem turns read-only under the running agent, the server up.
    disk.remount("ro");
    agent.wait("spool unwritable", Duration::from_secs(5), |s| !s.spool.writable).await;
    let connections = agent.stats().connections;
    let from = ledger.count();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during = ledger.since(from);
    assert!(during.len() >= 8, "live data kept arriving: {} batches", during.len());
    assert!(during.iter().any(|c| c.spool_writable == Some(0.0)), "{during:?}");
    assert_eq!(agent.stats().connections, connections, "the stream survived unwritable acknowledgements");

    // A server outage on the read-only disk: memory holds the batches, then delivers them.
    server.stop().await;
    agent.wait("memory holds batches", Duration::from_secs(5), |s| s.memory.batches >= 5 && !s.connected).await;
    server = start_server(&database, grpc, &ledger).await;
    agent.wait("memory delivered", Duration::from_secs(20), |s| s.connected && s.memory.batches <= 1).await;

    // The agent restarts on the read-only disk: its state file is stale (acknowledgements
    // and the last sequence could not be recorded), yet no sequence is used twice.
    let first_run = agent.stop().await;
    let first_run_made = first_run.spool.next_sequence - 1;
    // Batches made after the last acknowledgement were only in memory, which dies with the
    // process (the agent logs it): lost, unless the server committed one without the
    // acknowledgement getting back (see `lost_at_stop`).
    let unacked = first_run.spool.acked_through + 1..=first_run_made;
    assert_eq!(first_run.spool.pending_batches, 0, "nothing spooled on the read-only disk: {first_run:?}");
    let stored_before = ledger.count();
    let agent = start_agent(settings(&state_dir, grpc));
    let restarted_from = agent.stats().spool.next_sequence;
    assert!(restarted_from > first_run_made, "restart on a stale state: {restarted_from} after {first_run_made}");
    agent.wait("delivering after restart", Duration::from_secs(10), |s| s.committed >= 5).await;
    // (A batch of the first run sent just before its stop may be committed after it.)
    let late = |c: &Committed| unacked.contains(&c.sequence);
    let since_restart = ledger.since(stored_before);
    assert!(since_restart.iter().all(|c| c.sequence >= restarted_from || late(c)), "{since_restart:?}");

    // Writable again with the server up: back to disk, the stale state written at last.
    disk.remount("rw");
    agent.wait("writable again", Duration::from_secs(5), |s| s.spool.writable && s.memory.batches == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second_run = agent.stop().await;
    let drained = drain(&state_dir.join("spool"), grpc).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stored = stored_sequences(&ledger);
    let dropped = first_run.memory.dropped + second_run.memory.dropped + first_run.spool.dropped_full;
    let lost_at_stop = lost_at_stop(&stored, unacked, &first_run);
    assert_runs_accounted(&stored, first_run_made, restarted_from..drained.spool.next_sequence, dropped, lost_at_stop);
    assert_store_agrees(&server.server, &stored).await;
    server.stop().await;
}

/// Session tokens renewed every 1.5 s instead of every 24 h.
const ROTATION: Duration = Duration::from_millis(1_500);

fn renewing(config: &mut PushClientConfig) {
    tune(config);
    config.session_rotation = ROTATION;
}

async fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_renewal_on_a_full_disk_keeps_delivering_and_survives_a_restart() {
    let disk = Tmpfs::mount("4m");
    let work = tempfile::tempdir().unwrap();
    let database = work.path().join("db/secumon.db");
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state_dir = disk.path().join("agent");
    let ledger = Ledger::default();
    let server = start_server_with(&database, grpc, GrpcTls::Managed { names: Vec::new() }, &ledger).await;

    // Enrolled as an operator does it: a provisioning token, then `setup` (the library's).
    let authority = server.server.agent_authority().expect("managed TLS");
    let token = authority.provision("default", "test", Duration::from_secs(600)).await.unwrap().token;
    let config_path = work.path().join("agent.yaml");
    secumon_agent::setup(&SetupOptions {
        collector: format!("localhost:{}", grpc.port()),
        token: token.parse().unwrap(),
        config_path: config_path.clone(),
        state_dir: state_dir.clone(),
        name: Some("renewing-host".into()),
        force: false,
    })
    .await
    .expect("setup enrolls");
    let mut settings = AgentSettings::from_config(&AgentConfig::load(&config_path).unwrap()).unwrap();
    settings.metrics = MetricsSection {
        interval: INTERVAL,
        enabled: vec![MetricFamily::Cpu, MetricFamily::Memory],
        ..Default::default()
    };
    let session_file: SessionFile = settings.session.clone().expect("setup names a session file");
    let token_on_disk = || session_file.load().unwrap().token;
    let enrolled_token = token_on_disk();

    // 1. Renewals on a writable disk: each new token is saved.
    let agent = start_agent_with(settings.clone(), renewing);
    agent.wait("first batches delivered", Duration::from_secs(10), |s| s.committed >= 5).await;
    wait_until("a renewed token saved", Duration::from_secs(10), || token_on_disk() != enrolled_token).await;
    assert_eq!(agent.stats().session_save_failures, 0);

    // 2. The disk fills: renewals go on, their tokens kept in memory; delivery never stops.
    let hog = DiskHog::start(disk.path());
    let saved = token_on_disk();
    agent.wait("a renewal the disk refused", Duration::from_secs(10), |s| s.session_unsaved).await;
    let connections = agent.stats().connections;
    let from = ledger.count();
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let during = ledger.since(from);
    let stats = agent.stats();
    assert!(stats.connections >= connections + 2, "renewed again on the full disk: {stats:?}");
    assert!(stats.session_unsaved && stats.session_save_failures >= 2, "{stats:?}");
    assert!(during.len() >= 20, "delivery went on through the renewals: {} batches", during.len());
    assert!(during.iter().any(|c| c.session_unsaved == Some(1.0)), "the server is told: {during:?}");
    assert_eq!(token_on_disk(), saved, "the file keeps its older token, intact");

    // 3. The agent restarts, the disk still full: the file's older token (several renewals
    // old by now) renews its way back in, and delivery resumes.
    let first_run = agent.stop().await;
    let first_run_made = first_run.spool.next_sequence - 1;
    assert_eq!(first_run.spool.pending_batches, 0, "the spool was emptied before the restart: {first_run:?}");
    let unacked = first_run.spool.acked_through + 1..=first_run_made;
    let agent = start_agent_with(settings.clone(), renewing);
    let restarted_from = agent.stats().spool.next_sequence;
    assert!(restarted_from > first_run_made, "restart on a stale state: {restarted_from} after {first_run_made}");
    agent
        .wait("delivering after a restart on the full disk", Duration::from_secs(15), |s| {
            s.committed >= 10 && s.session_unsaved
        })
        .await;
    assert_eq!(token_on_disk(), saved);

    // 4. Space comes back: the token in use is saved, and renewals save theirs again.
    hog.release();
    agent.wait("the session token saved", Duration::from_secs(10), |s| !s.session_unsaved).await;
    let saved_again = token_on_disk();
    assert_ne!(saved_again, saved);
    wait_until("the next renewal saved", Duration::from_secs(10), || token_on_disk() != saved_again).await;
    let second_run = agent.stop().await;
    assert!(!second_run.session_unsaved, "{second_run:?}");

    // 5. A restart on the saved token: in, and delivering, without a failed save.
    let agent = start_agent_with(settings.clone(), renewing);
    agent.wait("delivering on the saved token", Duration::from_secs(10), |s| s.committed >= 5).await;
    let third_run = agent.stop().await;
    assert_eq!(third_run.session_save_failures, 0, "{third_run:?}");
    let mut push = PushClientConfig::new(settings.endpoint.clone(), state_dir.join("spool"));
    push.tls = settings.tls.clone();
    push.session = settings.session.clone();
    let drained = drain_with(push).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The account: each sequence stored once; lost only what the first run held in memory.
    let stored = stored_sequences(&ledger);
    let lost_at_stop = lost_at_stop(&stored, unacked, &first_run);
    let dropped: u64 = [first_run, second_run, third_run].iter().map(|s| s.memory.dropped + s.spool.dropped_full).sum();
    assert_runs_accounted(&stored, first_run_made, restarted_from..drained.spool.next_sequence, dropped, lost_at_stop);
    assert_store_agrees(&server.server, &stored).await;
    server.stop().await;
}
