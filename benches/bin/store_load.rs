//! Storage load generator: realistic host metrics (hosts × ~100 series: CPU counters per
//! core and mode, load, memory, disks, network, processes, units) written as agent-sized
//! batches to our SQLite store, our PostgreSQL store and VictoriaMetrics single-node (its
//! Prometheus import API, on loopback), then compacted and queried. Prints one JSON line per
//! backend with samples/s, bytes per sample and query latencies.
//!
//! `benches/scripts/store_load.sh` installs and starts VictoriaMetrics and runs this.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, PgStore, RangeQuery, SeriesSelector, SqliteStore, Store, StoreOptions};

#[derive(Parser, Clone)]
struct Args {
    /// Hosts (agents) to simulate.
    #[arg(long, default_value_t = 10_000)]
    hosts: usize,
    /// Points per series in the bulk phase (10 s apart, ending now).
    #[arg(long, default_value_t = 120)]
    points: usize,
    /// Points per series in one batch: a batch is one host's series × this.
    #[arg(long, default_value_t = 40)]
    batch_points: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Backends to run, comma-separated: sqlite, postgres, victoria.
    #[arg(long, default_value = "sqlite,postgres,victoria")]
    backends: String,
    /// Directory for the SQLite database.
    #[arg(long, default_value = "/tmp/secumon-store-load")]
    dir: std::path::PathBuf,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    /// VictoriaMetrics' HTTP address and its storage directory (for its size on disk).
    #[arg(long, default_value = "http://127.0.0.1:8428")]
    vm_url: String,
    #[arg(long, default_value = "/tmp/secumon-vm-data")]
    vm_data: std::path::PathBuf,
    /// Hosts whose `query_cpu` series gets 24 h of data for the query phase.
    #[arg(long, default_value_t = 1_000)]
    query_hosts: usize,
}

const STEP_MS: i64 = 10_000;
const DAY_POINTS: usize = 8_640;

/// How one series moves: counters grow, gauges wander, some never change.
#[derive(Clone, Copy)]
enum Shape {
    Counter { max_increment: f64, decimals: i32 },
    Gauge { min: f64, max: f64, max_step: f64, quantum: f64 },
    Constant(f64),
}

/// The ~100 series of one host: (name, labels, shape).
fn host_series() -> Vec<(String, Labels, Shape)> {
    let mut out = Vec::new();
    let mut add = |name: &str, labels: &[(&str, String)], shape| {
        out.push((name.to_string(), labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), shape));
    };
    for core in 0..8 {
        for (mode, inc) in [("user", 6.0), ("system", 2.0), ("idle", 10.0), ("iowait", 0.3)] {
            add(
                "cpu_seconds_total",
                &[("core", core.to_string()), ("mode", mode.into())],
                Shape::Counter { max_increment: inc, decimals: 2 },
            );
        }
    }
    for name in ["load1", "load5", "load15"] {
        add(name, &[], Shape::Gauge { min: 0.0, max: 16.0, max_step: 0.3, quantum: 0.01 });
    }
    add("mem_total_bytes", &[], Shape::Constant(16_777_216_000.0));
    for name in ["mem_available_bytes", "mem_cached_bytes", "mem_buffers_bytes"] {
        add(name, &[], Shape::Gauge { min: 1e9, max: 1.5e10, max_step: 5e7, quantum: 4096.0 });
    }
    add("swap_total_bytes", &[], Shape::Constant(4_294_967_296.0));
    add("swap_used_bytes", &[], Shape::Gauge { min: 0.0, max: 1e8, max_step: 4096.0 * 4.0, quantum: 4096.0 });
    for device in ["sda", "sdb", "nvme0n1", "nvme1n1"] {
        let d = [("device", device.to_string())];
        add("disk_read_bytes_total", &d, Shape::Counter { max_increment: 5e6, decimals: -9 });
        add("disk_written_bytes_total", &d, Shape::Counter { max_increment: 2e7, decimals: -9 });
        add("disk_io_time_seconds_total", &d, Shape::Counter { max_increment: 2.0, decimals: 3 });
        add("fs_avail_bytes", &d, Shape::Gauge { min: 1e10, max: 5e11, max_step: 1e6, quantum: 4096.0 });
        add("fs_size_bytes", &d, Shape::Constant(5e11));
    }
    for interface in ["eth0", "eth1", "lo", "docker0"] {
        let i = [("interface", interface.to_string())];
        add("net_rx_bytes_total", &i, Shape::Counter { max_increment: 1e7, decimals: 0 });
        add("net_tx_bytes_total", &i, Shape::Counter { max_increment: 5e6, decimals: 0 });
        add("net_rx_packets_total", &i, Shape::Counter { max_increment: 1e4, decimals: 0 });
        add("net_tx_packets_total", &i, Shape::Counter { max_increment: 8e3, decimals: 0 });
        add("net_rx_errors_total", &i, Shape::Constant(0.0));
        add("net_tx_errors_total", &i, Shape::Constant(3.0));
    }
    for name in ["procs_running", "procs_blocked", "procs_total", "procs_zombie"] {
        add(name, &[], Shape::Gauge { min: 0.0, max: 400.0, max_step: 3.0, quantum: 1.0 });
    }
    for state in ["established", "time_wait", "listen", "close_wait", "syn_recv"] {
        add(
            "tcp_connections",
            &[("state", state.into())],
            Shape::Gauge { min: 0.0, max: 2000.0, max_step: 20.0, quantum: 1.0 },
        );
    }
    for unit in ["nginx.service", "sshd.service", "cron.service", "docker.service", "postgresql.service"] {
        add("systemd_unit_active", &[("unit", unit.into())], Shape::Constant(1.0));
    }
    out
}

/// A tiny deterministic generator: the same data for every backend.
fn next_random(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

fn step(shape: Shape, value: f64, rng: &mut u64) -> f64 {
    match shape {
        Shape::Counter { max_increment, decimals } => {
            let scale = 10f64.powi(decimals);
            value + (next_random(rng) * max_increment * scale).round() / scale
        }
        Shape::Gauge { min, max, max_step, quantum } => {
            let moved = value + (next_random(rng) * 2.0 - 1.0) * max_step;
            ((moved.clamp(min, max)) / quantum).round() * quantum
        }
        Shape::Constant(v) => v,
    }
}

fn initial(shape: Shape, rng: &mut u64) -> f64 {
    match shape {
        Shape::Counter { max_increment, .. } => (next_random(rng) * max_increment * 1e4).round(),
        Shape::Gauge { min, max, quantum, .. } => ((min + next_random(rng) * (max - min)) / quantum).round() * quantum,
        Shape::Constant(v) => v,
    }
}

/// The bulk data, one batch at a time: host `h`'s series over a window of points.
struct Generator {
    series: Vec<(String, Labels, Shape)>,
    /// Current value per host and series.
    values: Vec<f64>,
    rng: Vec<u64>,
    start_ms: i64,
}

impl Generator {
    fn new(hosts: usize, points: usize) -> Self {
        let series = host_series();
        let mut rng: Vec<u64> =
            (0..hosts * series.len()).map(|i| 0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x2545_F491)).collect();
        let values = rng.iter_mut().enumerate().map(|(i, r)| initial(series[i % series.len()].2, r)).collect();
        let now = secumon_core::now_ms();
        Self { series, values, rng, start_ms: now - now % STEP_MS - points as i64 * STEP_MS }
    }

    /// Fills `batch` (allocated once per writer) with host `host`'s points `from..to`.
    fn fill(&mut self, batch: &mut IngestBatch, host: usize, from: usize, to: usize, sequence: u64) {
        batch.agent_id = format!("agent-{host:05}");
        batch.host = format!("host-{host:05}");
        batch.sequence = sequence;
        let n = self.series.len();
        if batch.samples.len() != n * (to - from) {
            batch.samples = self
                .series
                .iter()
                .flat_map(|(name, labels, _)| {
                    (from..to).map(move |_| Sample::new(name.clone(), labels.clone(), 0, 0.0))
                })
                .collect();
        }
        let mut k = 0;
        for s in 0..n {
            let index = host * n + s;
            for point in from..to {
                let value = step(self.series[s].2, self.values[index], &mut self.rng[index]);
                self.values[index] = value;
                batch.samples[k].timestamp_ms = self.start_ms + point as i64 * STEP_MS;
                batch.samples[k].value = value;
                k += 1;
            }
        }
    }
}

/// Writes the bulk data through `write` with `writers` concurrent writers, in windows of
/// `batch_points`: every host's batch of a window before the next window. Batches go back
/// to the generator after use, so samples are allocated once.
async fn bulk_ingest<W, F>(args: &Args, write: W) -> (u64, Duration)
where
    W: Fn(IngestBatch) -> F + Send + Sync + Clone + 'static,
    F: std::future::Future<Output = IngestBatch> + Send,
{
    let mut generator = Generator::new(args.hosts, args.points);
    let (work_tx, work_rx) = tokio::sync::mpsc::channel::<IngestBatch>(args.writers * 2);
    let work_rx = Arc::new(tokio::sync::Mutex::new(work_rx));
    let (back_tx, mut back_rx) = tokio::sync::mpsc::unbounded_channel::<IngestBatch>();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.writers {
        let (work_rx, back_tx, write) = (Arc::clone(&work_rx), back_tx.clone(), write.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let next = work_rx.lock().await.recv().await;
                let Some(batch) = next else { break };
                let _ = back_tx.send(write(batch).await);
            }
        }));
    }
    let mut allocated = 0;
    let mut samples = 0u64;
    for (window, from) in (0..args.points).step_by(args.batch_points).enumerate() {
        let to = (from + args.batch_points).min(args.points);
        for host in 0..args.hosts {
            let mut batch = match back_rx.try_recv() {
                Ok(batch) => batch,
                Err(_) if allocated < args.writers * 3 + 1 => {
                    allocated += 1;
                    IngestBatch::default()
                }
                Err(_) => back_rx.recv().await.expect("writers alive"),
            };
            generator.fill(&mut batch, host, from, to, window as u64 + 1);
            samples += batch.samples.len() as u64;
            work_tx.send(batch).await.expect("writers alive");
        }
    }
    drop(work_tx);
    for task in tasks {
        task.await.expect("writer");
    }
    (samples, started.elapsed())
}

/// The query dataset: 24 h of `query_cpu` for `query_hosts` hosts, in day-long batches.
fn query_batches(args: &Args) -> Vec<IngestBatch> {
    let now = secumon_core::now_ms();
    let start = now - now % STEP_MS - DAY_POINTS as i64 * STEP_MS;
    let shape = Shape::Gauge { min: 0.0, max: 100.0, max_step: 2.0, quantum: 0.01 };
    (0..args.query_hosts)
        .map(|host| {
            let mut rng = 0xDEAD_BEEF ^ host as u64;
            let mut value = initial(shape, &mut rng);
            let samples = (0..DAY_POINTS)
                .map(|i| {
                    value = step(shape, value, &mut rng);
                    Sample::new("query_cpu", Labels::new(), start + i as i64 * STEP_MS, value)
                })
                .collect();
            IngestBatch {
                agent_id: format!("agent-{host:05}"),
                sequence: 1_000_000,
                host: format!("host-{host:05}"),
                samples,
                ..Default::default()
            }
        })
        .collect()
}

#[derive(Default, serde::Serialize)]
struct Report {
    backend: String,
    hosts: usize,
    series: usize,
    samples: u64,
    ingest_seconds: f64,
    samples_per_second: f64,
    compaction_seconds: f64,
    bytes_on_disk: u64,
    bytes_per_sample: f64,
    query_one_series_24h_ms_p50: f64,
    query_one_series_24h_ms_p95: f64,
    query_1000_series_24h_ms_p50: f64,
}

impl Report {
    fn after_ingest(backend: &str, args: &Args, samples: u64, elapsed: Duration) -> Self {
        eprintln!("{backend}: {samples} samples in {:.1} s", elapsed.as_secs_f64());
        Self {
            backend: backend.into(),
            hosts: args.hosts,
            series: args.hosts * host_series().len(),
            samples,
            ingest_seconds: elapsed.as_secs_f64(),
            samples_per_second: samples as f64 / elapsed.as_secs_f64(),
            ..Default::default()
        }
    }

    /// Records the size on disk, per sample of both the bulk and the query data.
    fn on_disk(&mut self, bytes: u64, args: &Args) {
        self.bytes_on_disk = bytes;
        self.bytes_per_sample = bytes as f64 / (self.samples + (args.query_hosts * DAY_POINTS) as u64) as f64;
    }
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1]
}

async fn time_queries<F, Fut>(runs: usize, query: F) -> Vec<f64>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let points = query(run).await;
        assert!(points > 0, "the query found data");
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times
}

async fn run_store(args: &Args, name: &str, store: Arc<dyn Store>) -> Report {
    let writer = Arc::clone(&store);
    let (samples, elapsed) = bulk_ingest(args, move |batch| {
        let store = Arc::clone(&writer);
        async move {
            store.write_batch("default", &batch).await.expect("batch stored");
            batch
        }
    })
    .await;
    let mut report = Report::after_ingest(name, args, samples, elapsed);
    let started = Instant::now();
    store.maintain(secumon_core::now_ms()).await.expect("maintenance");
    report.compaction_seconds = started.elapsed().as_secs_f64();
    for batch in query_batches(args) {
        store.write_batch("default", &batch).await.expect("query data stored");
    }
    store.maintain(secumon_core::now_ms()).await.expect("maintenance");
    let now = secumon_core::now_ms();
    let day = |selector: SeriesSelector| RangeQuery {
        selector,
        start_ms: now - 86_400_000,
        end_ms: now,
        step_ms: 300_000,
        aggregation: Aggregation::Avg,
    };
    let one = time_queries(50, |run| {
        let (store, query) = (
            Arc::clone(&store),
            day(SeriesSelector::new("query_cpu").with("host", format!("host-{:05}", run % args.query_hosts))),
        );
        async move { store.query_range("default", &query).await.expect("query").iter().map(|s| s.points.len()).sum() }
    })
    .await;
    let all = time_queries(5, |_| {
        let (store, query) = (Arc::clone(&store), day(SeriesSelector::new("query_cpu")));
        async move { store.query_range("default", &query).await.expect("query").iter().map(|s| s.points.len()).sum() }
    })
    .await;
    report.query_one_series_24h_ms_p50 = percentile(one.clone(), 0.5);
    report.query_one_series_24h_ms_p95 = percentile(one, 0.95);
    report.query_1000_series_24h_ms_p50 = percentile(all, 0.5);
    report
}

async fn sqlite(args: &Args) -> Report {
    let _ = std::fs::remove_dir_all(&args.dir);
    let path = args.dir.join("store.db");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_with(&path, StoreOptions::default()).await.expect("sqlite store"));
    let mut report = run_store(args, "secumon-sqlite", Arc::clone(&store)).await;
    // Bytes in use (free pages left by compaction are reused, not counted).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.expect("open");
    let pages: i64 =
        sqlx::query_scalar("SELECT page_count - freelist_count FROM pragma_page_count, pragma_freelist_count")
            .fetch_one(&pool)
            .await
            .expect("pragma");
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&pool).await.expect("pragma");
    pool.close().await;
    store.close().await;
    report.on_disk((pages * page_size) as u64, args);
    report
}

async fn postgres(args: &Args) -> Report {
    let schema = "secumon_store_load";
    let admin = sqlx::PgPool::connect(&args.pg_url).await.expect("postgres");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await.expect("drop");
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.expect("create");
    let connect =
        args.pg_url.parse::<sqlx::postgres::PgConnectOptions>().expect("url").options([("search_path", schema)]);
    let store: Arc<dyn Store> = PgStore::connect_with(connect, StoreOptions::default()).await.expect("pg store");
    let mut report = run_store(args, "secumon-postgres", Arc::clone(&store)).await;
    store.close().await;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'm')",
    )
    .bind(schema)
    .fetch_one(&admin)
    .await
    .expect("size");
    // Where they go: the head table (rows compaction deleted stay as dead tuples until
    // PostgreSQL's vacuum makes their space reusable), the blocks, the rest.
    let parts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE WHEN c.relname LIKE 'samples%' THEN 'head' WHEN c.relname LIKE 'blocks%' THEN 'raw blocks' \
         WHEN c.relname LIKE 'rollup%' THEN 'rollup blocks' ELSE 'other' END, \
         sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'm') GROUP BY 1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&admin)
    .await
    .expect("sizes");
    let samples = (report.samples + (args.query_hosts * DAY_POINTS) as u64) as f64;
    for (part, part_bytes) in parts {
        eprintln!("secumon-postgres on disk, {part}: {part_bytes} bytes, {:.2} B/sample", part_bytes as f64 / samples);
    }
    report.on_disk(bytes as u64, args);
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await.expect("drop");
    report
}

/// One batch in Prometheus text exposition with timestamps, as VictoriaMetrics imports it.
fn prometheus_text(batch: &IngestBatch, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    for s in &batch.samples {
        out.push_str(&s.series.name);
        out.push_str("{host=\"");
        out.push_str(&batch.host);
        out.push('"');
        for (k, v) in &s.series.labels {
            let _ = write!(out, ",{k}=\"{v}\"");
        }
        let _ = writeln!(out, "}} {} {}", s.value, s.timestamp_ms);
    }
}

async fn victoria(args: &Args) -> Report {
    let client = reqwest::Client::new();
    let import = format!("{}/api/v1/import/prometheus", args.vm_url);
    let send = {
        let (client, import) = (client.clone(), import.clone());
        move |batch: IngestBatch| {
            let (client, import) = (client.clone(), import.clone());
            async move {
                let mut body = String::with_capacity(batch.samples.len() * 80);
                prometheus_text(&batch, &mut body);
                let response = client.post(&import).body(body).send().await.expect("VictoriaMetrics reachable");
                assert!(response.status().is_success(), "import: {}", response.status());
                batch
            }
        }
    };
    let (samples, elapsed) = bulk_ingest(args, send.clone()).await;
    let mut report = Report::after_ingest("victoria-metrics", args, samples, elapsed);
    let started = Instant::now();
    for path in ["/internal/force_flush", "/internal/force_merge"] {
        client.get(format!("{}{path}", args.vm_url)).send().await.expect("flush");
    }
    report.compaction_seconds = started.elapsed().as_secs_f64();
    for batch in query_batches(args) {
        send(batch).await;
    }
    client.get(format!("{}/internal/force_flush", args.vm_url)).send().await.expect("flush");
    // force_merge returns before merging finishes: wait for the size to settle.
    let mut size = dir_size(&args.vm_data);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = dir_size(&args.vm_data);
        if now == size {
            break;
        }
        size = now;
    }
    report.on_disk(size, args);
    let now = secumon_core::now_ms() / 1000;
    let query = |selector: String| {
        let (client, url) = (client.clone(), format!("{}/api/v1/query_range", args.vm_url));
        async move {
            let body: serde_json::Value = client
                .get(url)
                .query(&[
                    ("query", format!("avg_over_time({selector}[5m])")),
                    ("start", (now - 86_400).to_string()),
                    ("end", now.to_string()),
                    ("step", "300".to_string()),
                    ("nocache", "1".to_string()),
                ])
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            body["data"]["result"]
                .as_array()
                .map_or(0, |series| series.iter().map(|s| s["values"].as_array().map_or(0, Vec::len)).sum())
        }
    };
    let one = time_queries(50, |run| query(format!("query_cpu{{host=\"host-{:05}\"}}", run % args.query_hosts))).await;
    let all = time_queries(5, |_| query("query_cpu".to_string())).await;
    report.query_one_series_24h_ms_p50 = percentile(one.clone(), 0.5);
    report.query_one_series_24h_ms_p95 = percentile(one, 0.95);
    report.query_1000_series_24h_ms_p50 = percentile(all, 0.5);
    report
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for backend in args.backends.split(',') {
        let report = match backend.trim() {
            "sqlite" => sqlite(&args).await,
            "postgres" => postgres(&args).await,
            "victoria" => victoria(&args).await,
            other => panic!("unknown backend {other}: expected sqlite, postgres or victoria"),
        };
        println!("{}", serde_json::to_string(&report).expect("json"));
    }
}
