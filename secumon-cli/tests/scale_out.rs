//! Scale-out as deployed: `secumon server --role gateway` and `--role ingest` processes on
//! a NATS JetStream server the test spawns (its own port and storage, so the test may stop
//! it) and a PostgreSQL database of their own at `SECUMON_TEST_PG_URL`, a real push client
//! given both gateways. Processes die by SIGKILL mid-stream: an ingest worker (its batches go
//! to the other after the consumer's ack wait), a gateway (the client moves to the other
//! within seconds); NATS stops for 10 s. Every batch the client had acknowledged must be in
//! the store exactly once. Without nats-server or PostgreSQL the tests fail under
//! `SECUMON_TEST_STRICT=1` and are skipped otherwise.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, PgStore, RangeQuery, SeriesSelector, Store, StoreOptions};
use secumon_transport::{PushClient, PushClientConfig};
use tokio::sync::watch;

#[path = "../../secumon-server/tests/scale/harness.rs"]
mod harness;

use harness::{Nats, PgDatabase};

const MARKER: &str = "scale_marker";

/// A `secumon server --role …` process; SIGKILLed when dropped.
struct ServerProcess {
    child: Child,
    grpc: Option<SocketAddr>,
    /// Where its `/metrics` is.
    metrics: String,
    log: std::path::PathBuf,
    /// Kept open: a closed pipe would fail the process' next print.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProcess {
    fn start(roles: &str, data_dir: &Path, nats: &str, postgres: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log = data_dir.join(format!("{roles}-{}.log", NEXT.fetch_add(1, Ordering::Relaxed)));
        let mut child = Command::new(env!("CARGO_BIN_EXE_secumon"))
            .args(["server", "--role", roles, "--nats", nats, "--store", postgres, "--data-dir"])
            .arg(data_dir)
            .args(["--grpc", "127.0.0.1:0", "--api", "127.0.0.1:0", "--self-series-interval", "0s"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("secumon server starts");
        // The first line says where it listens (or the process ended: its log says why).
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let _ = stdout.read_line(&mut line);
        assert!(line.starts_with("SecuMon server"), "{roles}: {line:?}\n{}", std::fs::read_to_string(&log).unwrap());
        let grpc = line.split_once("gRPC ingest on ").map(|(_, rest)| {
            rest.split(|c: char| c == ',' || c.is_whitespace()).next().unwrap().parse().expect("a gRPC address")
        });
        let metrics = line.split_once("http://").expect("a metrics address").1;
        let metrics = metrics.split(|c: char| c == '/' || c.is_whitespace()).next().unwrap();
        Self { child, grpc, metrics: format!("http://{metrics}/metrics"), log, _stdout: stdout }
    }

    /// Batches it committed to the store so far.
    async fn committed(&self) -> f64 {
        let text = reqwest::get(&self.metrics).await.unwrap().text().await.unwrap();
        let name = "secumon_ingest_batches_total{outcome=\"committed\"} ";
        text.lines().find_map(|line| line.strip_prefix(name)?.parse().ok()).expect("the committed count")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// A push client with its spool, running until stopped.
struct Agent {
    client: Arc<PushClient>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _spool: tempfile::TempDir,
}

impl Agent {
    fn start(endpoints: &[SocketAddr]) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let mut config = PushClientConfig::new(endpoints[0].to_string(), spool.path());
        config.failover_endpoints = endpoints[1..].iter().map(SocketAddr::to_string).collect();
        config.backoff_max = Duration::from_millis(500);
        let client = Arc::new(PushClient::open(config).unwrap());
        let (stop, mut stopped) = watch::channel(false);
        let runner = Arc::clone(&client);
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        Self { client, stop, task, _spool: spool }
    }

    fn acked_through(&self) -> u64 {
        self.client.stats().spool.acked_through
    }

    async fn acked(&self, through: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.client.stats();
            if stats.spool.acked_through >= through {
                assert_eq!(stats.rejected, 0, "no batch may be rejected");
                return;
            }
            assert!(Instant::now() < deadline, "not all batches acknowledged: {stats:?}, made {through}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

fn batch(n: u64, t0: i64) -> IngestBatch {
    let ts = t0 + n as i64 * 1_000;
    IngestBatch {
        agent_id: "scale-cli-agent".into(),
        host: "scale-cli-host".into(),
        created_at_ms: ts,
        samples: vec![Sample::new(MARKER, Labels::new(), ts, n as f64)],
        ..Default::default()
    }
}

/// Makes a batch every `every` until stopped; the count made so far is in the counter.
fn produce(
    agent: &Agent,
    t0: i64,
    every: Duration,
) -> (Arc<AtomicU64>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let made = Arc::new(AtomicU64::new(0));
    let (stop, mut stopped) = watch::channel(false);
    let (client, counter) = (Arc::clone(&agent.client), Arc::clone(&made));
    let task = tokio::spawn(async move {
        while !*stopped.borrow_and_update() {
            let n = counter.load(Ordering::Relaxed) + 1;
            client.enqueue(batch(n, t0)).await.expect("spool append");
            counter.store(n, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => {}
            }
        }
    });
    (made, stop, task)
}

/// Waits until batches 1..=made are stored, each once (loss and doubling both fail).
async fn all_stored_once(store: &dyn Store, t0: i64, made: u64, within: Duration) {
    let expected: Vec<u64> = (1..=made).collect();
    let deadline = Instant::now() + within;
    loop {
        let query = RangeQuery {
            selector: SeriesSelector::new(MARKER),
            start_ms: t0,
            end_ms: secumon_core::now_ms() + 3_600_000,
            step_ms: 1_000,
            aggregation: Aggregation::Count,
        };
        let series = store.query_range("default", &query).await.expect("query");
        // With `Count`, a doubled sample shows as a count of 2 in its second.
        let mut values = Vec::new();
        for point in series.iter().flat_map(|s| s.points.iter()) {
            values.extend(std::iter::repeat_n(((point.timestamp_ms - t0) / 1_000) as u64, point.value as usize));
        }
        values.sort_unstable();
        let (agents, _) = store.agents("default", &Default::default()).await.expect("agents");
        let batches: u64 = agents.iter().map(|a| a.batches).sum();
        if values == expected && batches == made {
            return;
        }
        assert!(
            !values.windows(2).any(|w| w[0] == w[1]) && batches <= made,
            "a batch was stored twice: {batches} batches of {made}"
        );
        assert!(Instant::now() < deadline, "after {within:?}: {} of {made} batches stored", values.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn t0() -> i64 {
    (secumon_core::now_ms() - 600_000) / 1_000 * 1_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_ingest_worker_and_a_gateway_loses_and_doubles_nothing() {
    let Some(nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let (nats_url, pg) = (nats.url(), database.url());
    let mut workers = [
        ServerProcess::start("ingest", data.path(), &nats_url, &pg),
        ServerProcess::start("ingest", data.path(), &nats_url, &pg),
    ];
    let mut gateways = [
        ServerProcess::start("gateway", data.path(), &nats_url, &pg),
        ServerProcess::start("gateway", data.path(), &nats_url, &pg),
    ];
    let endpoints: Vec<SocketAddr> = gateways.iter().map(|g| g.grpc.expect("a gateway's gRPC address")).collect();
    let agent = Agent::start(&endpoints);
    let t0 = t0();
    let (made, stop_making, making) = produce(&agent, t0, Duration::from_millis(10));

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.acked_through() > 0, "batches flow: {:?}", agent.client.stats());
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers[0].committed().await == 0.0 || workers[1].committed().await == 0.0 {
        assert!(Instant::now() < deadline, "both workers take batches");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers[0].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The gateway the client pushes to dies: it carries on with the other within seconds.
    let acked_then = agent.acked_through();
    gateways[0].kill();
    let killed = Instant::now();
    while agent.acked_through() <= acked_then + 10 {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no failover after {:?}: {:?}",
            killed.elapsed(),
            agent.client.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_making.send_replace(true);
    let _ = making.await;
    let made = made.load(Ordering::Relaxed);
    agent.acked(made, Duration::from_secs(15)).await;
    eprintln!("{made} batches acknowledged; failover to the second gateway took {failover:?}");

    // The dead worker's unacknowledged batches reach the other after the 30 s ack wait.
    let store = PgStore::connect_url_with(&pg, StoreOptions::default()).await.expect("the test database");
    all_stored_once(&*store, t0, made, Duration::from_secs(50)).await;
    store.close().await;
    agent.stop().await;
    drop((workers, gateways));
    database.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_away_for_ten_seconds_delays_batches_and_loses_none() {
    let Some(mut nats) = Nats::spawn() else { return };
    let Some(database) = PgDatabase::create().await else { return };
    let data = tempfile::tempdir().unwrap();
    let (nats_url, pg) = (nats.url(), database.url());
    let worker = ServerProcess::start("ingest", data.path(), &nats_url, &pg);
    let gateway = ServerProcess::start("gateway", data.path(), &nats_url, &pg);
    let agent = Agent::start(&[gateway.grpc.expect("the gateway's gRPC address")]);
    let t0 = t0();
    let (made, stop_making, making) = produce(&agent, t0, Duration::from_millis(20));

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(agent.acked_through() > 0, "batches flow: {:?}", agent.client.stats());
    nats.stop();
    // Batches in flight when NATS went are acknowledged or not; after that, none is.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked_during = agent.acked_through();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let stats = agent.client.stats();
    assert_eq!(stats.spool.acked_through, acked_during, "nothing is acknowledged without NATS: {stats:?}");
    assert!(stats.spool.pending_batches > 100, "the agent keeps its batches: {stats:?}");

    nats.start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_making.send_replace(true);
    let _ = making.await;
    let made = made.load(Ordering::Relaxed);
    agent.acked(made, Duration::from_secs(20)).await;
    let store = PgStore::connect_url_with(&pg, StoreOptions::default()).await.expect("the test database");
    all_stored_once(&*store, t0, made, Duration::from_secs(20)).await;
    store.close().await;
    agent.stop().await;
    drop((worker, gateway));
    database.drop().await;
}
