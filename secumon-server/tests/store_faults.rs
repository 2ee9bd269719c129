//! Store faults injected under a running server: a full disk, a file system the kernel
//! turns read-only (ext4 `errors=remount-ro`), the database's directory moved away or
//! deleted, a writer lock held by another connection, compaction failing pass after pass;
//! on PostgreSQL sessions killed mid-transaction, a restart and a full disk under the
//! database's tablespace. (Compaction and retention failing half-way are tested in the
//! store's own `compaction_faults`.) Each test pushes through the real push client (spool,
//! gRPC, ingest service), injects the fault, lifts it, restarts the server and checks that
//! every acknowledged batch is stored exactly once.
//!
//! The small file systems are tmpfs mounts and loop devices the test makes itself (these
//! machines run tests as root); a test that cannot make one fails rather than skipping.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secumon_core::{IngestBatch, Labels, LogRecord, Sample};
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, Store};
use secumon_transport::{PushClient, PushClientConfig};
use tokio::sync::watch;

const MARKER: &str = "fault_marker";
const PADDING_SERIES: usize = 400;

/// A tmpfs of a fixed size mounted on a fresh directory, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        run("mount", &["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs", path_str(dir.path())]);
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system says it is full.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).expect("filler file");
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
                Err(error) => panic!("filling the file system: {error}"),
            }
        }
        // Whatever fits byte by byte too, so not even a page is left.
        while matches!(file.write(&[0]), Ok(1)) {}
    }

    fn release(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// An ext4 file system in an image file on a loop device, mounted with
/// `errors=remount-ro`: the kernel turns it read-only under open files when ext4 meets an
/// error, as it does on a failing disk, which a plain `mount -o remount,ro` refuses to do.
struct Ext4Image {
    dir: tempfile::TempDir,
}

impl Ext4Image {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = dir.path().join("fs.img");
        run("truncate", &["-s", size, path_str(&image)]);
        run("mkfs.ext4", &["-q", path_str(&image)]);
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        let fs = Self { dir };
        fs.mount_again();
        fs
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    fn mount_again(&self) {
        let image = self.dir.path().join("fs.img");
        run("mount", &["-o", "loop,errors=remount-ro", path_str(&image), path_str(&self.path())]);
    }

    /// Makes ext4 record an error, which remounts it read-only at once.
    fn fail(&self) {
        let source = Command::new("findmnt").args(["-n", "-o", "SOURCE", path_str(&self.path())]).output().unwrap();
        let device = String::from_utf8_lossy(&source.stdout).trim().trim_start_matches("/dev/").to_string();
        std::fs::write(format!("/sys/fs/ext4/{device}/trigger_fs_error"), "1").expect("ext4's trigger_fs_error");
    }

    /// What an operator does after such an error: unmount, check, mount again.
    fn repair(&self) {
        run("umount", &[path_str(&self.path())]);
        let image = self.dir.path().join("fs.img");
        // 1: errors were corrected.
        let status = Command::new("e2fsck").args(["-f", "-y", path_str(&image)]).status().unwrap();
        assert!(matches!(status.code(), Some(0 | 1)), "e2fsck: {status}");
        self.mount_again();
    }
}

impl Drop for Ext4Image {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed ({status}): these tests need root to mount file systems");
}

/// What an agent sends: batch `n` carries the marker sample `n` (so loss and doubling are
/// countable) and enough other samples and log lines to make the store's files grow.
fn batch(n: u64, t0: i64) -> IngestBatch {
    let ts = t0 + n as i64 * 1_000;
    let mut samples = vec![Sample::new(MARKER, Labels::new(), ts, n as f64)];
    samples.extend((0..PADDING_SERIES).map(|s| {
        let labels = Labels::from([("n".to_string(), s.to_string())]);
        Sample::new("fault_padding", labels, ts, (n as f64).sin() * s as f64)
    }));
    let logs = (0..20)
        .map(|i| LogRecord {
            timestamp_ms: ts,
            source: "/var/log/fault.log".into(),
            labels: Labels::new(),
            line: format!("batch {n} line {i}: {}", "x".repeat(200)),
        })
        .collect();
    IngestBatch {
        agent_id: "fault-agent".into(),
        host: "fault-host".into(),
        created_at_ms: ts,
        samples,
        logs,
        ..Default::default()
    }
}

/// A database of its own on the PostgreSQL at `SECUMON_TEST_PG_URL` (the project's
/// machines run one; a test without it fails), optionally in a tablespace at `location`.
struct PgDatabase {
    admin_url: String,
    name: String,
    tablespace: Option<String>,
}

impl PgDatabase {
    async fn create(location: Option<&Path>) -> Self {
        let admin_url =
            std::env::var("SECUMON_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("secumon_fault_{}_{n}", std::process::id());
        let tablespace = location.map(|_| format!("{name}_space"));
        let admin = Self { admin_url, name, tablespace };
        if let (Some(space), Some(location)) = (&admin.tablespace, location) {
            admin.admin(&format!("CREATE TABLESPACE {space} LOCATION '{}'", location.display())).await;
            admin.admin(&format!("CREATE DATABASE {} TABLESPACE {space}", admin.name)).await;
        } else {
            admin.admin(&format!("CREATE DATABASE {}", admin.name)).await;
        }
        admin
    }

    fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').map_or(self.admin_url.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }

    async fn admin(&self, statement: &str) {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", self.admin_url));
        sqlx::query(statement).execute(&mut connection).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// Ends every other session on the database, as an operator's `pg_terminate_backend` would.
    async fn terminate_sessions(&self) {
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await;
    }

    async fn drop(self) {
        self.admin(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).await;
        if let Some(space) = &self.tablespace {
            self.admin(&format!("DROP TABLESPACE {space}")).await;
        }
    }
}

fn pg_config(db: &PgDatabase, dir: &Path) -> ServerConfig {
    ServerConfig { postgres_url: Some(db.url()), ..ServerConfig::loopback(dir.join("secumon.db")) }
}

/// PostgreSQL faults share the one server: one at a time.
static POSTGRES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the machine's PostgreSQL again however the test ends.
struct RestartPostgres;

impl Drop for RestartPostgres {
    fn drop(&mut self) {
        pg_ctl("start");
    }
}

fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql: the project's machines run PostgreSQL from Debian")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .next()
        .expect("a PostgreSQL cluster");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success() || action == "start", "pg_ctlcluster {action}: {status}");
}

/// A push client (real spool, real gRPC) running against `server`'s ingest.
struct Agent {
    client: Arc<PushClient>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    made: u64,
    t0: i64,
    _spool: tempfile::TempDir,
}

impl Agent {
    fn start(grpc: std::net::SocketAddr, t0: i64) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let mut config = PushClientConfig::new(format!("http://{grpc}"), spool.path());
        config.backoff_max = Duration::from_millis(500);
        let client = Arc::new(PushClient::open(config).unwrap());
        let (stop, task) = Self::spawn(&client);
        Self { client, stop, task, made: 0, t0, _spool: spool }
    }

    fn spawn(client: &Arc<PushClient>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, mut stopped) = watch::channel(false);
        let runner = Arc::clone(client);
        let task = tokio::spawn(async move {
            runner
                .run(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        (stop, task)
    }

    /// Makes `count` batches, one every `every`.
    async fn make(&mut self, count: u64, every: Duration) {
        for _ in 0..count {
            self.made += 1;
            self.client.enqueue(batch(self.made, self.t0)).await.expect("spool append");
            tokio::time::sleep(every).await;
        }
    }

    /// Waits until the server has acknowledged everything made.
    async fn drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.client.stats();
            if stats.spool.acked_through >= self.made {
                assert_eq!(stats.rejected, 0, "no batch may be rejected");
                return;
            }
            assert!(Instant::now() < deadline, "not all batches acknowledged: {stats:?}, made {}", self.made);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(&mut self) {
        self.stop.send_replace(true);
        let _ = (&mut self.task).await;
    }
}

fn t0() -> i64 {
    let now = secumon_core::now_ms();
    now - 600_000
}

/// The marker values stored, sorted: 1..=made exactly once each means nothing lost or doubled.
/// Every raw sample (1 ms steps): batches the server re-stamped for a clock it took as off
/// (acknowledgements held up by the fault look like skew) may lie less than a second apart.
async fn stored_markers(store: &dyn Store, t0: i64) -> Vec<u64> {
    let query = RangeQuery {
        selector: SeriesSelector::new(MARKER),
        start_ms: t0 - 3_600_000,
        end_ms: secumon_core::now_ms() + 3_600_000,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let series = store.query_range("default", &query).await.expect("query");
    let mut values: Vec<u64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.value as u64)).collect::<Vec<_>>();
    values.sort_unstable();
    values
}

async fn ingested_rows(store: &dyn Store) -> u64 {
    let (agents, _) = store.agents("default", &Default::default()).await.expect("agents");
    agents.iter().map(|a| a.batches).sum()
}

async fn metrics_text(server: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap()
}

fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics:\n{text}"))
}

/// Restarts the server on the same store and checks, through it, that every batch made is
/// stored exactly once.
async fn restart_and_check(server: Server, config: ServerConfig, agent: &Agent) {
    server.shutdown().await;
    let server = Server::start(config).await.expect("restart");
    let store = server.store();
    let markers = stored_markers(store.as_ref(), agent.t0).await;
    let expected: Vec<u64> = (1..=agent.made).collect();
    assert_eq!(markers, expected, "every acknowledged batch exactly once after the restart");
    assert_eq!(ingested_rows(store.as_ref()).await, agent.made, "one batch row per batch");
    server.shutdown().await;
}

/// Pushes before, during and after a fault that `inject` starts and `lift` ends, then
/// restarts and checks. Returns `/metrics` as it read while the fault held.
async fn push_through_fault(
    config: ServerConfig,
    inject: impl AsyncFnOnce(&Server),
    lift: impl AsyncFnOnce(&Server),
    fault_for: Duration,
    until: impl Fn(&Server) -> bool,
    reads_served: bool,
) -> String {
    let server = Server::start(config.clone()).await.unwrap();
    let mut agent = Agent::start(server.grpc_addr(), t0());
    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(20)).await;
    assert_eq!(stored_markers(server.store().as_ref(), agent.t0).await, (1..=10).collect::<Vec<_>>());

    inject(&server).await;
    let held = Instant::now();
    while held.elapsed() < fault_for || !until(&server) {
        assert!(held.elapsed() < fault_for + Duration::from_secs(30), "the fault's condition never came");
        agent.make(1, Duration::from_millis(100)).await;
    }
    if reads_served {
        // Reads keep working while writes fail.
        let markers = stored_markers(server.store().as_ref(), agent.t0).await;
        assert!(markers.len() >= 10, "reads served during the fault: {markers:?}");
    }
    let during = metrics_text(&server).await;
    lift(&server).await;

    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(60)).await;
    let after = metrics_text(&server).await;
    assert_eq!(metric_value(&after, "secumon_store_writable"), 1.0, "writable again:\n{after}");
    agent.stop().await;
    restart_and_check(server, config, &agent).await;
    during
}

fn firing(server: &Server, rule: &str) -> bool {
    server.alerting().active().iter().any(|a| a.rule == rule && a.state == secumon_alert::AlertState::Firing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_refuses_then_resumes_losing_nothing() {
    let fs = SmallFs::mount("24m");
    let during = push_through_fault(
        ServerConfig::loopback(fs.path().join("secumon.db")),
        async |_| fs.fill(),
        async |_| fs.release(),
        Duration::from_secs(3),
        // The server's own alert fires while the disk stays full (its rule waits 10 s).
        |server| firing(server, "SecumonStoreUnwritable"),
        true,
    )
    .await;
    assert_eq!(metric_value(&during, "secumon_store_writable"), 0.0, "{during}");
    assert!(metric_value(&during, "secumon_store_write_failures_total{fault=\"disk_full\"}") > 0.0, "{during}");
    assert!(metric_value(&during, "secumon_ingest_batches_total{outcome=\"failed\"}") > 0.0, "{during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_system_turned_read_only_refuses_until_repaired_losing_nothing() {
    let fs = Ext4Image::mount("64M");
    let mut config = ServerConfig::loopback(fs.path().join("secumon.db"));
    let server = Server::start(config.clone()).await.unwrap();
    // The restarted server listens where the agent expects it.
    config.grpc_addr = server.grpc_addr();
    let mut agent = Agent::start(server.grpc_addr(), t0());
    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(20)).await;

    fs.fail();
    agent.make(20, Duration::from_millis(100)).await;
    assert!(stored_markers(server.store().as_ref(), agent.t0).await.len() >= 10, "reads served");
    let during = metrics_text(&server).await;
    assert_eq!(metric_value(&during, "secumon_store_writable"), 0.0, "{during}");
    let refused: f64 = ["read_only", "io"]
        .iter()
        .map(|fault| metric_value(&during, &format!("secumon_store_write_failures_total{{fault=\"{fault}\"}}")))
        .sum();
    assert!(refused > 0.0, "{during}");
    assert!(agent.client.stats().spool.pending_batches > 0, "the agent keeps what was refused");

    server.shutdown().await;
    fs.repair();
    let server = Server::start(config.clone()).await.unwrap();
    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(60)).await;
    agent.stop().await;
    restart_and_check(server, config, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_directory_moved_away_refuses_then_resumes_losing_nothing() {
    // Writes must fail while the database is not where it was opened: acknowledging batches
    // written into a file the operator moved (or deleted) would lose them.
    let fs = SmallFs::mount("64m");
    let data = fs.path().join("data");
    let away = fs.path().join("data.moved");
    let during = push_through_fault(
        ServerConfig::loopback(data.join("secumon.db")),
        async |_| std::fs::rename(&data, &away).unwrap(),
        async |_| std::fs::rename(&away, &data).unwrap(),
        Duration::from_secs(2),
        |_| true,
        true,
    )
    .await;
    assert_eq!(metric_value(&during, "secumon_store_writable"), 0.0, "{during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_directory_deleted_refuses_and_never_acknowledges_into_a_new_database() {
    // The database is gone with its directory: what was acknowledged before goes with it.
    // What must hold: no batch is acknowledged after that, even once the directory is back,
    // and no empty database appears there behind the operator's back; restarting the server
    // (the operator's call) starts an empty one, which gets every batch refused meanwhile.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let database = data.join("secumon.db");
    let mut config = ServerConfig::loopback(&database);
    let server = Server::start(config.clone()).await.unwrap();
    config.grpc_addr = server.grpc_addr();
    let mut agent = Agent::start(server.grpc_addr(), t0());
    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(20)).await;

    std::fs::remove_dir_all(&data).unwrap();
    agent.make(10, Duration::from_millis(100)).await;
    let refused = server.store().write_batch("default", &batch(1_000, agent.t0)).await.expect_err("refused");
    let message = refused.to_string();
    assert!(message.contains(&database.display().to_string()) && message.contains("deleted"), "{message}");
    let during = metrics_text(&server).await;
    assert_eq!(metric_value(&during, "secumon_store_writable"), 0.0, "{during}");
    assert!(metric_value(&during, "secumon_store_write_failures_total{fault=\"cannot_open\"}") > 0.0, "{during}");

    // The directory comes back, empty: still refused, and still no database file there.
    std::fs::create_dir(&data).unwrap();
    let held = Instant::now();
    while !firing(&server, "SecumonStoreUnwritable") {
        assert!(held.elapsed() < Duration::from_secs(30), "the server's own alert never fired");
        agent.make(1, Duration::from_millis(200)).await;
    }
    // (Reads are not checked here: with the file deleted, only reader connections opened
    // before can still read it, and the pool may need a new one.)
    let stats = agent.client.stats();
    assert_eq!(stats.spool.acked_through, 10, "nothing acknowledged after the deletion: {stats:?}");
    assert_eq!(stats.spool.pending_batches, agent.made - 10, "{stats:?}");
    assert!(!database.exists(), "no empty database made in the directory that came back");

    // The operator restarts the server: an empty database, into which every batch refused
    // meanwhile is delivered, once.
    server.shutdown().await;
    let server = Server::start(config.clone()).await.unwrap();
    agent.make(5, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(60)).await;
    agent.stop().await;
    server.shutdown().await;
    let server = Server::start(config).await.unwrap();
    let expected: Vec<u64> = (11..=agent.made).collect();
    assert_eq!(stored_markers(server.store().as_ref(), agent.t0).await, expected, "each batch refused, once");
    assert_eq!(ingested_rows(server.store().as_ref()).await, agent.made - 10);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_compaction_failing_is_counted_and_alerted_losing_nothing() {
    // Ingest goes on (write-ahead records), but a compaction that keeps failing leaves the
    // head and the write-ahead log growing: no longer only a line in the log.
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("secumon.db");
    // Compaction due every second rather than every 10 minutes.
    let config = ServerConfig { head_max_age: Duration::from_secs(1), ..ServerConfig::loopback(&database) };
    let server = Server::start(config.clone()).await.unwrap();
    let mut agent = Agent::start(server.grpc_addr(), t0());
    agent.make(10, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(20)).await;

    let url = format!("sqlite://{}", database.display());
    let mut injector = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER fail_compaction BEFORE INSERT ON chunks BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut injector)
    .await
    .unwrap();
    let held = Instant::now();
    while !firing(&server, "SecumonStoreMaintenanceFailing") {
        assert!(held.elapsed() < Duration::from_secs(30), "SecumonStoreMaintenanceFailing never fired");
        agent.make(1, Duration::from_millis(200)).await;
    }
    let during = metrics_text(&server).await;
    assert!(metric_value(&during, "secumon_store_maintenance_failures_total{task=\"compaction\"}") >= 3.0, "{during}");
    assert!(metric_value(&during, "secumon_store_maintenance_consecutive_failures{task=\"compaction\"}") >= 3.0);
    assert_eq!(metric_value(&during, "secumon_store_maintenance_failures_total{task=\"retention\"}"), 0.0);
    assert_eq!(metric_value(&during, "secumon_store_writable"), 1.0, "ingest is not affected: {during}");
    agent.drained(Duration::from_secs(20)).await;

    sqlx::query("DROP TRIGGER fail_compaction").execute(&mut injector).await.unwrap();
    injector.close().await.unwrap();
    let lifted = Instant::now();
    loop {
        let after = metrics_text(&server).await;
        if metric_value(&after, "secumon_store_maintenance_consecutive_failures{task=\"compaction\"}") == 0.0 {
            break;
        }
        assert!(lifted.elapsed() < Duration::from_secs(10), "compaction never succeeded again:\n{after}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.make(5, Duration::from_millis(20)).await;
    agent.drained(Duration::from_secs(20)).await;
    agent.stop().await;
    restart_and_check(server, config, &agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_writer_waits_then_resumes_losing_nothing() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("secumon.db");
    let url = format!("sqlite://{}", database.display());
    let locker: tokio::sync::Mutex<Option<sqlx::SqliteConnection>> = tokio::sync::Mutex::new(None);
    let during = push_through_fault(
        ServerConfig::loopback(&database),
        async |_| {
            let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE").execute(&mut connection).await.unwrap();
            *locker.lock().await = Some(connection);
        },
        async |_| {
            let mut connection = locker.lock().await.take().unwrap();
            sqlx::query("ROLLBACK").execute(&mut connection).await.unwrap();
        },
        // Longer than the store's busy timeout (10 s), so writes fail rather than wait.
        Duration::from_secs(12),
        |_| true,
        true,
    )
    .await;
    assert!(metric_value(&during, "secumon_store_write_failures_total{fault=\"busy\"}") > 0.0, "{during}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_killed_mid_transaction_lose_nothing() {
    let _one = POSTGRES.lock().await;
    let db = PgDatabase::create(None).await;
    let dir = tempfile::tempdir().unwrap();
    let killing = std::sync::atomic::AtomicBool::new(false);
    let killer = async {
        // Kills sessions every few milliseconds while the fault holds, so some die inside a
        // batch's transaction.
        loop {
            if killing.load(std::sync::atomic::Ordering::Relaxed) {
                db.terminate_sessions().await;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    };
    let scenario = push_through_fault(
        pg_config(&db, dir.path()),
        async |_| killing.store(true, std::sync::atomic::Ordering::Relaxed),
        async |_| killing.store(false, std::sync::atomic::Ordering::Relaxed),
        Duration::from_secs(3),
        |_| true,
        false,
    );
    let during = tokio::select! {
        during = scenario => during,
        _ = killer => unreachable!("the killer loops"),
    };
    let failures: f64 = ["connection", "io", "other"]
        .iter()
        .map(|fault| metric_value(&during, &format!("secumon_store_write_failures_total{{fault=\"{fault}\"}}")))
        .sum();
    assert!(failures > 0.0, "killed sessions made writes fail:\n{during}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_loses_nothing() {
    let _one = POSTGRES.lock().await;
    let db = PgDatabase::create(None).await;
    let dir = tempfile::tempdir().unwrap();
    let restart = RestartPostgres;
    let during = push_through_fault(
        pg_config(&db, dir.path()),
        async |_| pg_ctl("stop"),
        async |_| pg_ctl("start"),
        // Longer than the store waits for a connection (10 s), so writes fail rather than wait.
        Duration::from_secs(12),
        |_| true,
        false,
    )
    .await;
    drop(restart);
    assert_eq!(metric_value(&during, "secumon_store_writable"), 0.0, "{during}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_full_disk_refuses_then_resumes_losing_nothing() {
    let _one = POSTGRES.lock().await;
    // The database lives in a tablespace on a small tmpfs owned by the postgres user.
    let fs = Arc::new(SmallFs::mount("64m"));
    let space = fs.path().join("space");
    std::fs::create_dir(&space).unwrap();
    run("chown", &["postgres:postgres", path_str(&space)]);
    let db = PgDatabase::create(Some(&space)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = pg_config(&db, dir.path());
    let (filling, releasing) = (Arc::clone(&fs), Arc::clone(&fs));
    let scenario = tokio::spawn(async move {
        push_through_fault(
            config,
            async move |_| filling.fill(),
            async move |_| releasing.release(),
            Duration::from_secs(3),
            |_| true,
            true,
        )
        .await
    })
    .await;
    // The tablespace goes before its file system, whatever happened: PostgreSQL cannot
    // start with a tablespace whose directory vanished.
    if fs.filler().exists() {
        fs.release();
    }
    db.drop().await;
    drop(fs);
    let during = scenario.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()));
    assert!(metric_value(&during, "secumon_store_write_failures_total{fault=\"disk_full\"}") > 0.0, "{during}");
}
