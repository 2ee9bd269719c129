//! Fleet load generator (issue #18): N simulated agents in one process against one running
//! `secumon server --mtls`. Each agent is a real [`PushClient`] with its own agent id,
//! client certificate and session, enrolled through the real flow (a one-time token from
//! `POST /api/v1/agents/provision`, then [`secumon_transport::enroll`]), and pushes ~100
//! series every interval, start times spread over the interval.
//!
//! `fleet run` reports agents connected, samples/s committed (the server's `/metrics`),
//! push→ack latency, server RSS and CPU, memory per connection, its own CPU, the alert
//! latency of one rule crossed every interval and the p95 of host history and agents list
//! through the API; it writes a manifest of every sequence each agent had acknowledged.
//! `fleet verify` then opens the store (after the server stopped) and checks every sequence
//! of every agent and every series' sample count: 0 lost, 0 doubled.
//!
//! One process holds ~3 descriptors per agent (its TLS socket, its spool's segment and
//! lock), so past a few thousand agents the load is split over processes: `fleet run
//! --shard I/N --sync-dir DIR` runs the agents whose index is I modulo N (ids stay
//! `fleet-NNNNN` over the whole fleet, so shards' agents are disjoint), and the shards start
//! pushing together once all have enrolled. Shard 0 also crosses the alert rule, probes the
//! API and measures the server. Each shard writes its report with its raw latencies
//! (`--report-out`); `fleet merge` combines them (percentiles over every shard's
//! latencies, CPU and counts summed) and `fleet verify` takes every shard's manifest.
//!
//! `benches/scripts/fleet.sh` starts the server, raises the descriptor limit, picks the
//! number of shards and runs all three.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use clap::{Parser, Subcommand};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, Store, StoreOptions};
use secumon_transport::{PushClient, PushClientConfig, SessionFile};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "SecuMon fleet load generator (issue #18)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision, enroll and run N agents against a running server.
    Run(RunArgs),
    /// Check every agent's sequences and samples of a manifest against the store.
    Verify(VerifyArgs),
    /// Merge the reports of a run's shards into one.
    Merge(MergeArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server's REST API.
    #[arg(long, default_value = "http://127.0.0.1:18480")]
    api: String,
    /// The server's gRPC ingest, HOST:PORT (mutual TLS under the server's CA).
    #[arg(long, default_value = "127.0.0.1:18490")]
    grpc: String,
    /// File holding an admin API key (the server's `cli.token`).
    #[arg(long)]
    token_file: PathBuf,
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Series per agent (one sample each per interval).
    #[arg(long, default_value_t = 100)]
    series: usize,
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// How long every agent pushes, after all have started.
    #[arg(long, default_value_t = 120)]
    duration_secs: u64,
    /// Spools of the agents (tmpfs keeps their fsyncs off the server's disk).
    #[arg(long, default_value = "/dev/shm/secumon-fleet")]
    spool_dir: PathBuf,
    /// The server process, for its RSS and CPU.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Where the alert rule's webhook notifications arrive (the rule file names it).
    #[arg(long, default_value = "127.0.0.1:18495")]
    hook: String,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 16)]
    enroll_concurrency: usize,
    /// Where the manifest of acknowledged sequences goes.
    #[arg(long)]
    manifest: PathBuf,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// This process's part of the fleet, `I/N`: the agents whose index is I modulo N. Shard
    /// 0 also crosses the alert rule, probes the API and measures the server.
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    shard: (usize, usize),
    /// A directory the shards meet in: each marks itself enrolled there and starts pushing
    /// when all N have (needed with more than one shard).
    #[arg(long)]
    sync_dir: Option<PathBuf>,
    /// Where the report goes with the raw latencies `fleet merge` needs.
    #[arg(long)]
    report_out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MergeArgs {
    /// The shards' `--report-out` files.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let parsed = text.split_once('/').and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
    match parsed {
        Some((index, count)) if count >= 1 && index < count => Ok((index, count)),
        _ => Err(format!("{text}: expected I/N with 0 <= I < N")),
    }
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// The manifest of each shard of the run (repeat the flag).
    #[arg(long, required = true)]
    manifest: Vec<PathBuf>,
    /// The store: a SQLite file, or a postgres:// URL.
    #[arg(long)]
    store: String,
    #[arg(long, default_value = "default")]
    tenant: String,
}

/// The metric names of a simulated host; each is sent for `series / NAMES.len()` devices.
const NAMES: [&str; 20] = [
    "cpu_usage_ratio",
    "cpu_iowait_ratio",
    "cpu_steal_ratio",
    "load1",
    "load5",
    "memory_used_bytes",
    "memory_available_bytes",
    "swap_used_bytes",
    "disk_used_bytes",
    "disk_free_bytes",
    "disk_read_bytes_total",
    "disk_written_bytes_total",
    "network_receive_bytes_total",
    "network_transmit_bytes_total",
    "network_receive_errors_total",
    "process_count",
    "tcp_connections",
    "filesystem_inodes_used_ratio",
    "service_up",
    "check_latency_seconds",
];
const ALERT_METRIC: &str = "fleet_alert_value";

/// What `run` leaves for `verify`.
#[derive(Serialize, Deserialize)]
struct Manifest {
    start_ms: i64,
    end_ms: i64,
    series: usize,
    agents: Vec<AgentManifest>,
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct AgentManifest {
    agent_id: String,
    host: String,
    /// Sequences of the regular batches (one sample of every series each).
    regular: Vec<u64>,
    /// Sequences of alert-crossing batches (one sample of a new `fleet_alert_value` series each).
    alert: Vec<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("fleet: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Verify(args) => verify(args).await,
            Command::Merge(args) => merge(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("fleet: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The series of one agent: `NAMES` × devices, `count` in all.
fn series_of(count: usize) -> Vec<(&'static str, Labels)> {
    (0..count)
        .map(|i| {
            let name = NAMES[i % NAMES.len()];
            let labels = Labels::from([("device".to_string(), format!("d{}", i / NAMES.len()))]);
            (name, labels)
        })
        .collect()
}

struct Agent {
    id: String,
    client: PushClient,
}

/// Latencies in µs with the run-relative time they were taken at (ms).
type Recorder = Arc<Mutex<Vec<(u64, u64)>>>;

fn record(recorder: &Recorder, at: Instant, since: Instant, took: Duration) {
    let at_ms = at.duration_since(since).as_millis() as u64;
    recorder.lock().unwrap_or_else(|p| p.into_inner()).push((at_ms, took.as_micros() as u64));
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Sorted latencies (µs) taken at or after `from_ms` of the run.
fn window(recorder: &Recorder, from_ms: u64) -> Vec<u64> {
    let mut values: Vec<u64> = recorder
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(at, _)| *at >= from_ms)
        .map(|(_, v)| *v)
        .collect();
    values.sort_unstable();
    values
}

/// Resident set (bytes) and CPU time (seconds, user + system) of a process.
fn process_usage(pid: &str) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: utime and stime are the 14th
    // and 15th of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux for every architecture this runs on.
    Some((rss_kib * 1024, ticks / 100.0))
}

/// A value of the server's `/metrics` (the sum over a family's label sets).
async fn scrape(http: &reqwest::Client, api: &str, family: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{api}/metrics")).send().await?.error_for_status()?.text().await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(family))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(receipts): State<Receipts>, Json(body): Json<Value>) {
    let at = Instant::now();
    if body["status"] != "firing" {
        return;
    }
    let mut receipts = receipts.lock().unwrap_or_else(|p| p.into_inner());
    for alert in body["alerts"].as_array().into_iter().flatten() {
        if let Some(round) = alert["labels"]["round"].as_str() {
            receipts.entry(round.to_string()).or_insert(at);
        }
    }
}

async fn enroll_one(
    http: &reqwest::Client,
    args: &RunArgs,
    key: &str,
    index: usize,
) -> anyhow::Result<(String, PushClientConfig)> {
    let provisioned: Value = http
        .post(format!("{}/api/v1/agents/provision", args.api))
        .bearer_auth(key)
        .json(&json!({"ttl": "1h"}))
        .send()
        .await?
        .error_for_status()
        .context("provisioning a token")?
        .json()
        .await?;
    let token: secumon_transport::ProvisioningToken =
        provisioned["token"].as_str().context("no token in the provisioning answer")?.parse()?;
    let id = format!("fleet-{index:05}");
    let enrolled = secumon_transport::enroll(&args.grpc, &token, &id, &id).await.context("enrolling")?;
    let dir = args.spool_dir.join(&id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let session = SessionFile::new(dir.join("session.json"));
    session.store(&enrolled.session)?;
    let mut config = PushClientConfig::new(args.grpc.clone(), dir.join("spool"));
    // A few batches of room: a simulated agent keeps its spool small (tmpfs is memory).
    config.spool_max_bytes = 1024 * 1024;
    config.tls = Some(enrolled.tls);
    config.session = Some(session);
    config.backoff_max = Duration::from_secs(5);
    Ok((enrolled.agent_id, config))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.agents == 0 || args.series == 0 || args.interval_secs == 0 {
        bail!("--agents, --series and --interval-secs must be at least 1");
    }
    let key = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?
        .trim()
        .to_string();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let interval = Duration::from_secs(args.interval_secs);
    let (shard, shards) = args.shard;
    if shards > 1 && args.sync_dir.is_none() {
        bail!("--shard {shard}/{shards} needs --sync-dir, where the shards meet before pushing");
    }
    // Shard 0 crosses the alert rule, probes the API and measures the server.
    let primary = shard == 0;
    let server_pid = args.server_pid.filter(|_| primary).map(|p| p.to_string());
    let mine: Vec<usize> = (0..args.agents).filter(|index| index % shards == shard).collect();
    if mine.is_empty() {
        bail!("shard {shard}/{shards} of {} agents has none", args.agents);
    }

    let receipts: Receipts = Arc::default();
    if primary {
        let listener =
            tokio::net::TcpListener::bind(&args.hook).await.with_context(|| format!("binding {}", args.hook))?;
        let app = axum::Router::new().route("/hook", post(receive)).with_state(receipts.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    // 1. Provision and enroll every agent through the real flow.
    let enroll_started = Instant::now();
    let args = Arc::new(args);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.enroll_concurrency.max(1)));
    let mut enrolling = tokio::task::JoinSet::new();
    for &index in &mine {
        let (http, args, key, semaphore) = (http.clone(), Arc::clone(&args), key.clone(), Arc::clone(&semaphore));
        enrolling.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            let enrolled = enroll_one(&http, &args, &key, index).await.with_context(|| format!("agent {index}"))?;
            Ok::<_, anyhow::Error>((index, enrolled))
        });
    }
    let mut configs = Vec::with_capacity(mine.len());
    while let Some(done) = enrolling.join_next().await {
        match done.map_err(anyhow::Error::from).and_then(|enrolled| enrolled) {
            Ok(enrolled) => configs.push(enrolled),
            Err(error) => {
                // The other shards stop waiting for this one.
                if let Some(dir) = &args.sync_dir {
                    let _ = std::fs::create_dir_all(dir);
                    let _ = std::fs::write(dir.join(format!("failed-{shard}")), format!("{error:#}"));
                }
                return Err(error);
            }
        }
    }
    configs.sort_by_key(|(index, _)| *index);
    let enroll_secs = enroll_started.elapsed().as_secs_f64();
    eprintln!("fleet: shard {shard}/{shards}: {} agents enrolled in {enroll_secs:.1} s", mine.len());
    if let Some(dir) = &args.sync_dir {
        meet(dir, shard, shards).await?;
    }
    // Every shard has enrolled and none pushes yet: the server without agents' connections.
    let rss_before = server_pid.as_deref().and_then(process_usage).map(|(rss, _)| rss);

    // 2. Start every agent, spread over one interval, each pushing every interval.
    let (stop_tx, stop) = watch::channel(false);
    let acks: Recorder = Arc::default();
    let started = Instant::now();
    let start_ms = now_ms();
    let ramp = interval;
    let load_until = started + ramp + Duration::from_secs(args.duration_secs);
    let series = Arc::new(series_of(args.series));
    let mut agents = Vec::with_capacity(mine.len());
    let manifests: Arc<Mutex<Vec<AgentManifest>>> = Arc::new(Mutex::new(vec![AgentManifest::default(); args.agents]));
    let mut producers = tokio::task::JoinSet::new();
    let mut runners = tokio::task::JoinSet::new();
    let enqueue_failures = Arc::new(AtomicU64::new(0));
    for (index, (id, config)) in configs {
        let client = PushClient::open(config)?;
        {
            let mut manifests = manifests.lock().unwrap_or_else(|p| p.into_inner());
            manifests[index].agent_id = id.clone();
            manifests[index].host = id.clone();
        }
        let offset = ramp.mul_f64(index as f64 / args.agents as f64);
        let runner = client.clone();
        let mut runner_stop = stop.clone();
        runners.spawn(async move {
            tokio::time::sleep(offset).await;
            runner
                .run(async move {
                    let _ = runner_stop.wait_for(|s| *s).await;
                })
                .await
        });
        let (client_p, id_p, series, acks, manifests, failures) = (
            client.clone(),
            id.clone(),
            Arc::clone(&series),
            Arc::clone(&acks),
            Arc::clone(&manifests),
            Arc::clone(&enqueue_failures),
        );
        producers.spawn(async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut round = 0u64;
            let mut waits = tokio::task::JoinSet::new();
            loop {
                tick.tick().await;
                if Instant::now() >= load_until {
                    break;
                }
                let ts = now_ms();
                let samples = series
                    .iter()
                    .enumerate()
                    .map(|(i, (name, labels))| {
                        // Gauges that move a little every interval, counters that grow.
                        let value = (i as f64) * 10.0 + (round % 60) as f64 * 0.5;
                        Sample::new(*name, labels.clone(), ts, value)
                    })
                    .collect();
                round += 1;
                let batch = IngestBatch { agent_id: id_p.clone(), host: id_p.clone(), samples, ..Default::default() };
                let enqueued = Instant::now();
                match client_p.enqueue(batch).await {
                    Ok(sequence) => {
                        manifests.lock().unwrap_or_else(|p| p.into_inner())[index].regular.push(sequence);
                        let mut acked = client_p.acked();
                        let acks = Arc::clone(&acks);
                        waits.spawn(async move {
                            if acked.wait_for(|a| *a >= sequence).await.is_ok() {
                                record(&acks, Instant::now(), started, enqueued.elapsed());
                            }
                        });
                    }
                    Err(error) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("fleet: {id_p}: enqueue failed: {error}");
                    }
                }
                while waits.try_join_next().is_some() {}
            }
            waits.detach_all();
        });
        agents.push(Agent { id, client });
    }

    // 3. Alert crossings (agent 0, a new series every interval) and API probes during the load.
    let alert_sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let alerting = primary.then(|| {
        let client = agents[0].client.clone();
        let id = agents[0].id.clone();
        let (sent, manifests) = (Arc::clone(&alert_sent), Arc::clone(&manifests));
        tokio::spawn(async move {
            // After the ramp, so the crossing competes with the full load.
            tokio::time::sleep(ramp + Duration::from_millis(1_234)).await;
            let mut round = 0u64;
            while Instant::now() + interval < load_until {
                let labels = Labels::from([("round".to_string(), round.to_string())]);
                let batch = IngestBatch {
                    agent_id: id.clone(),
                    host: id.clone(),
                    samples: vec![Sample::new(ALERT_METRIC, labels, now_ms(), 100.0)],
                    ..Default::default()
                };
                let at = Instant::now();
                if let Ok(sequence) = client.enqueue(batch).await {
                    sent.lock().unwrap_or_else(|p| p.into_inner()).insert(round.to_string(), at);
                    manifests.lock().unwrap_or_else(|p| p.into_inner())[0].alert.push(sequence);
                }
                round += 1;
                tokio::time::sleep(interval).await;
            }
        })
    });
    let history: Recorder = Arc::default();
    let listing: Recorder = Arc::default();
    let api_errors = Arc::new(AtomicU64::new(0));
    let probing = primary.then(|| {
        let (http, api, key) = (http.clone(), args.api.clone(), key.clone());
        let (history, listing, errors) = (Arc::clone(&history), Arc::clone(&listing), Arc::clone(&api_errors));
        let agents_n = args.agents;
        tokio::spawn(async move {
            tokio::time::sleep(ramp).await;
            let mut n = 0usize;
            while Instant::now() < load_until {
                n += 1;
                let host = format!("fleet-{:05}", (n * 7919) % agents_n);
                let (url, recorder) = if n.is_multiple_of(2) {
                    (format!("{api}/api/v1/metrics/hosts/{host}/history?metric=cpu_usage_ratio&period=1h"), &history)
                } else {
                    (format!("{api}/api/v1/agents?limit=100"), &listing)
                };
                let at = Instant::now();
                match http.get(&url).bearer_auth(&key).send().await.and_then(|r| r.error_for_status()) {
                    Ok(response) => {
                        let _ = response.bytes().await;
                        record(recorder, at, started, at.elapsed());
                    }
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("fleet: API probe failed: {error}");
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });

    // 4. Samples of the server and of this process every 5 s.
    let own_pid = std::process::id().to_string();
    let mut rows = Vec::new();
    let mut peak_rss = 0u64;
    let mut peak_connected = 0usize;
    let scraped = |http: reqwest::Client, api: String| async move {
        if primary { scrape(&http, &api, "secumon_ingest_samples_total").await.unwrap_or(f64::NAN) } else { f64::NAN }
    };
    let first_scrape = scraped(http.clone(), args.api.clone()).await;
    let own_cpu_start = process_usage(&own_pid).map_or(0.0, |(_, cpu)| cpu);
    let server_cpu_start = server_pid.as_deref().and_then(process_usage).map_or(0.0, |(_, cpu)| cpu);
    // The steady window: from the end of the ramp to the end of the load.
    let mut steady: Option<(Instant, f64, f64, f64)> = None;
    let mut steady_end: Option<(Instant, f64, f64, f64)> = None;
    let mut rss_full: Option<u64> = None;
    while Instant::now() < load_until {
        tokio::time::sleep(Duration::from_secs(5).min(load_until.saturating_duration_since(Instant::now()))).await;
        let committed = scraped(http.clone(), args.api.clone()).await;
        let server = server_pid.as_deref().and_then(process_usage);
        let own = process_usage(&own_pid);
        let connected = agents.iter().filter(|a| a.client.stats().connected).count();
        peak_connected = peak_connected.max(connected);
        if let Some((rss, _)) = server {
            peak_rss = peak_rss.max(rss);
        }
        let now = Instant::now();
        let sample = (now, committed, server.map_or(0.0, |s| s.1), own.map_or(0.0, |o| o.1));
        if now >= started + ramp + interval && steady.is_none() {
            steady = Some(sample);
            rss_full = server.map(|s| s.0);
        }
        if steady.is_some() {
            steady_end = Some(sample);
        }
        let row = json!({"t_s": now.duration_since(started).as_secs(), "connected": connected,
            "samples_committed": committed, "server_rss_mib": server.map(|s| s.0 as f64 / 1048576.0),
            "server_cpu_s": server.map(|s| s.1), "loadgen_cpu_s": own.map(|o| o.1)});
        eprintln!("fleet: shard {shard}/{shards}: {row}");
        rows.push(row);
    }
    let _ = (first_scrape, own_cpu_start, server_cpu_start);

    // 5. Stop producing, wait until every batch is acknowledged, stop the clients.
    for producer in producers.join_all().await {
        let () = producer;
    }
    if let Some(alerting) = alerting {
        let _ = alerting.await;
    }
    if let Some(probing) = probing {
        let _ = probing.await;
    }
    let drain_started = Instant::now();
    let mut unacked = usize::MAX;
    while drain_started.elapsed() < Duration::from_secs(180) {
        unacked = agents
            .iter()
            .filter(|a| {
                let stats = a.client.stats();
                stats.spool.pending_batches > 0 || stats.memory.batches > 0
            })
            .count();
        if unacked == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let end_ms = now_ms();
    let _ = stop_tx.send(true);
    while runners.join_next().await.is_some() {}
    let (committed_total, duplicates_total, rejected_total) = agents.iter().fold((0, 0, 0), |acc, a| {
        let s = a.client.stats();
        (acc.0 + s.committed, acc.1 + s.duplicates, acc.2 + s.rejected)
    });
    drop(agents);

    // 6. The report.
    let steady_from_ms = (ramp + interval).as_millis() as u64;
    let ack = window(&acks, steady_from_ms);
    let all_acks = window(&acks, 0);
    let history = window(&history, 0);
    let listing = window(&listing, 0);
    let mut alert: Vec<u64> = {
        let sent = alert_sent.lock().unwrap_or_else(|p| p.into_inner());
        let got = receipts.lock().unwrap_or_else(|p| p.into_inner());
        sent.iter().filter_map(|(round, at)| Some(got.get(round)?.duration_since(*at).as_micros() as u64)).collect()
    };
    alert.sort_unstable();
    let alerts_sent = alert_sent.lock().unwrap_or_else(|p| p.into_inner()).len();
    let (samples_per_s, server_cpu, own_cpu, steady_secs) = match (steady, steady_end) {
        (Some(a), Some(b)) if b.0 > a.0 => {
            let secs = b.0.duration_since(a.0).as_secs_f64();
            ((b.1 - a.1) / secs, (b.2 - a.2) / secs * 100.0, (b.3 - a.3) / secs * 100.0, secs)
        }
        _ => (f64::NAN, f64::NAN, f64::NAN, 0.0),
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let per_connection = match (rss_before, rss_full) {
        (Some(before), Some(full)) => Some((full.saturating_sub(before)) as f64 / args.agents as f64 / 1024.0),
        _ => None,
    };
    let mut report = json!({
        "shard": format!("{shard}/{shards}"), "shards": shards, "agents_total": args.agents,
        "agents": mine.len(), "series_per_agent": args.series, "interval_s": args.interval_secs,
        "duration_s": args.duration_secs, "steady_window_s": steady_secs,
        "enroll_s": enroll_secs, "connected_peak": peak_connected,
        "offered_samples_per_s": (mine.len() * args.series) as f64 / args.interval_secs as f64,
        "committed_samples_per_s": samples_per_s,
        "ack_p50_ms": ms(percentile(&ack, 50.0)), "ack_p99_ms": ms(percentile(&ack, 99.0)),
        "ack_max_ms": ms(ack.last().copied().unwrap_or(0)), "acks_measured": ack.len(),
        "ack_p99_ms_incl_ramp": ms(percentile(&all_acks, 99.0)),
        "server_rss_peak_mib": peak_rss as f64 / 1048576.0,
        "server_rss_before_connect_mib": rss_before.map(|r| r as f64 / 1048576.0),
        "memory_per_connection_kib": per_connection,
        "server_cpu_pct": server_cpu, "loadgen_cpu_pct": own_cpu,
        "alerts_sent": alerts_sent, "alerts_notified": alert.len(),
        "alert_p50_ms": ms(percentile(&alert, 50.0)), "alert_p99_ms": ms(percentile(&alert, 99.0)),
        "history_p95_ms": ms(percentile(&history, 95.0)), "history_requests": history.len(),
        "agents_list_p95_ms": ms(percentile(&listing, 95.0)), "agents_list_requests": listing.len(),
        "api_errors": api_errors.load(Ordering::Relaxed),
        "batches_committed": committed_total, "batches_duplicate": duplicates_total,
        "batches_rejected": rejected_total, "enqueue_failures": enqueue_failures.load(Ordering::Relaxed),
        "agents_with_unacked_batches": unacked,
    });
    let manifest = Manifest {
        start_ms,
        end_ms,
        series: args.series,
        // Only this shard's agents.
        agents: std::mem::take(&mut *manifests.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .filter(|agent| !agent.agent_id.is_empty())
            .collect(),
    };
    std::fs::write(&args.manifest, serde_json::to_vec(&manifest)?)
        .with_context(|| format!("writing {}", args.manifest.display()))?;
    let clean = unacked == 0 && rejected_total == 0 && enqueue_failures.load(Ordering::Relaxed) == 0;
    report["clean"] = json!(clean);
    if let Some(out) = &args.report_out {
        let mut full = report.clone();
        full["raw_us"] =
            json!({"ack_steady": ack, "ack_all": all_acks, "alert": alert, "history": history, "listing": listing});
        std::fs::write(out, serde_json::to_vec(&full)?).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Every acknowledged sequence of every agent stored once, and every series holding one
/// sample per regular batch: anything else is a lost or doubled batch.
async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    // The shards' manifests as one: their agents are disjoint, the run spans all of them.
    let mut manifest: Option<Manifest> = None;
    for path in &args.manifest {
        let part: Manifest =
            serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)?;
        manifest = Some(match manifest {
            None => part,
            Some(mut whole) => {
                if part.series != whole.series {
                    bail!("{}: {} series per agent, the other shards {}", path.display(), part.series, whole.series);
                }
                whole.start_ms = whole.start_ms.min(part.start_ms);
                whole.end_ms = whole.end_ms.max(part.end_ms);
                whole.agents.extend(part.agents);
                whole
            }
        });
    }
    let Some(manifest) = manifest else { bail!("no --manifest") };
    let mut ids: Vec<&str> = manifest.agents.iter().map(|a| a.agent_id.as_str()).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        bail!("an agent is in two manifests: the shards' agents must be disjoint");
    }
    let store: Arc<dyn Store> = if args.store.starts_with("postgres://") || args.store.starts_with("postgresql://") {
        let pg: Arc<dyn Store> = secumon_store::PgStore::connect(&args.store).await?;
        pg
    } else {
        let options = StoreOptions { background: false, ..Default::default() };
        Arc::new(secumon_store::SqliteStore::open_with(std::path::Path::new(&args.store), options).await?)
    };
    // The batch ledger: (agent, sequence) rows as the store keeps them against redelivery.
    let stored: Vec<(String, i64)> = if args.store.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&args.store).await?;
        sqlx::query_as("SELECT agent_id, sequence FROM ingested_batches WHERE agent_id LIKE 'fleet-%'")
            .fetch_all(&pool)
            .await?
    } else {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&args.store).read_only(true);
        let pool = sqlx::SqlitePool::connect_with(options).await?;
        sqlx::query_as("SELECT agent_id, sequence FROM ingested_batches WHERE agent_id LIKE 'fleet-%'")
            .fetch_all(&pool)
            .await?
    };
    let mut ledger: HashMap<String, Vec<u64>> = HashMap::new();
    for (agent, sequence) in stored {
        ledger.entry(agent).or_default().push(sequence as u64);
    }

    let (mut batches_expected, mut batches_lost, mut batches_unexpected) = (0u64, 0u64, 0u64);
    for agent in &manifest.agents {
        let mut expected: Vec<u64> = agent.regular.iter().chain(&agent.alert).copied().collect();
        expected.sort_unstable();
        let mut got = ledger.remove(&agent.agent_id).unwrap_or_default();
        got.sort_unstable();
        batches_expected += expected.len() as u64;
        batches_lost += expected.iter().filter(|s| got.binary_search(s).is_err()).count() as u64;
        batches_unexpected += got.iter().filter(|s| expected.binary_search(s).is_err()).count() as u64;
    }

    // Samples: every series of every agent counted over the run.
    let hosts: HashMap<&str, &AgentManifest> = manifest.agents.iter().map(|a| (a.host.as_str(), a)).collect();
    let start_ms = manifest.start_ms - 60_000;
    let end_ms = manifest.end_ms + 60_000;
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut names: Vec<&str> = NAMES.iter().copied().take(manifest.series.min(NAMES.len())).collect();
    names.push(ALERT_METRIC);
    for name in names {
        let query = RangeQuery {
            selector: SeriesSelector::new(name),
            start_ms,
            end_ms,
            step_ms: end_ms - start_ms,
            aggregation: Aggregation::Count,
        };
        for series in store.query_range(&args.tenant, &query).await? {
            let Some(host) = series.series.labels.get("host") else { continue };
            if !hosts.contains_key(host.as_str()) {
                continue;
            }
            let count: f64 = series.points.iter().map(|p| p.value).sum();
            *counts.entry((host.clone(), series.series.to_string())).or_default() += count as u64;
        }
    }
    let (mut samples_expected, mut samples_stored, mut series_short, mut series_over) = (0u64, 0u64, 0u64, 0u64);
    let mut per_host_series: HashMap<&str, u64> = HashMap::new();
    for ((host, key), count) in &counts {
        let Some(agent) = hosts.get(host.as_str()) else { continue };
        let expected = if key.starts_with(ALERT_METRIC) { 1 } else { agent.regular.len() as u64 };
        *per_host_series.entry(agent.host.as_str()).or_default() += 1;
        samples_stored += count;
        match count.cmp(&expected) {
            std::cmp::Ordering::Less => series_short += 1,
            std::cmp::Ordering::Greater => series_over += 1,
            std::cmp::Ordering::Equal => {}
        }
    }
    let mut series_missing = 0u64;
    for agent in &manifest.agents {
        samples_expected += (agent.regular.len() * manifest.series + agent.alert.len()) as u64;
        let expected_series =
            if agent.regular.is_empty() { 0 } else { manifest.series as u64 } + agent.alert.len() as u64;
        series_missing += expected_series.saturating_sub(*per_host_series.get(agent.host.as_str()).unwrap_or(&0));
    }
    store.close().await;
    let report = json!({
        "agents": manifest.agents.len(), "batches_expected": batches_expected, "batches_lost": batches_lost,
        "batches_unexpected": batches_unexpected, "samples_expected": samples_expected,
        "samples_stored": samples_stored, "series_short": series_short, "series_doubled": series_over,
        "series_missing": series_missing,
    });
    println!("{report}");
    let ok = batches_lost == 0
        && batches_unexpected == 0
        && series_short == 0
        && series_over == 0
        && series_missing == 0
        && samples_expected == samples_stored;
    if ok {
        eprintln!("fleet verify: every sequence of every agent stored once: 0 lost, 0 doubled");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("fleet verify: MISMATCH (see the counts above)");
        Ok(ExitCode::from(1))
    }
}

/// Waits until all `shards` have enrolled their agents (each leaves `ready-I` in `dir`), so
/// that they start pushing together and shard 0's measurements cover the whole fleet.
async fn meet(dir: &std::path::Path, shard: usize, shards: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("ready-{shard}")), b"").with_context(|| format!("writing in {}", dir.display()))?;
    let waiting = Instant::now();
    loop {
        let ready = (0..shards).filter(|i| dir.join(format!("ready-{i}")).exists()).count();
        if let Some(failed) = (0..shards).find(|i| dir.join(format!("failed-{i}")).exists()) {
            bail!("shard {failed}/{shards} failed to enroll its agents");
        }
        if ready == shards {
            eprintln!(
                "fleet: shard {shard}/{shards}: all shards enrolled, after {:.1} s",
                waiting.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if waiting.elapsed() > Duration::from_secs(1_800) {
            bail!("only {ready} of {shards} shards enrolled within 30 min");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One report from the shards' (`--report-out`): latency percentiles over every shard's
/// latencies, counts and the load generators' CPU summed; the server's figures, the alert
/// and the API probes from shard 0, which alone measures them.
fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for path in &args.reports {
        let report: Value =
            serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("{} is not a fleet report", path.display()))?;
        reports.push(report);
    }
    let Some(primary) = reports.iter().find(|r| r["shard"].as_str().is_some_and(|s| s.starts_with("0/"))).cloned()
    else {
        bail!("no report of shard 0 among {}", args.reports.len());
    };
    let shards = primary["shards"].as_u64().unwrap_or(1) as usize;
    let mut seen: Vec<&str> = reports.iter().filter_map(|r| r["shard"].as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != shards || reports.len() != shards {
        bail!("{} reports of shards {seen:?}, expected each of {shards} once", reports.len());
    }
    let raw = |name: &str| -> Vec<u64> {
        let mut all: Vec<u64> = reports
            .iter()
            .flat_map(|r| r["raw_us"][name].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_u64())
            .collect();
        all.sort_unstable();
        all
    };
    let sum = |name: &str| -> f64 { reports.iter().filter_map(|r| r[name].as_f64()).sum() };
    let most = |name: &str| -> f64 { reports.iter().filter_map(|r| r[name].as_f64()).fold(0.0, f64::max) };
    let ms = |us: u64| us as f64 / 1000.0;
    let (ack, all_acks) = (raw("ack_steady"), raw("ack_all"));
    let mut merged = primary.clone();
    if let Some(fields) = merged.as_object_mut() {
        fields.remove("raw_us");
        fields.remove("shard");
    }
    for (key, value) in [
        ("agents", json!(sum("agents") as u64)),
        ("enroll_s", json!(most("enroll_s"))),
        // Each shard's peak; they are reached at about the same time (the shards start together).
        ("connected_peak", json!(sum("connected_peak") as u64)),
        ("offered_samples_per_s", json!(sum("offered_samples_per_s"))),
        ("ack_p50_ms", json!(ms(percentile(&ack, 50.0)))),
        ("ack_p99_ms", json!(ms(percentile(&ack, 99.0)))),
        ("ack_max_ms", json!(ms(ack.last().copied().unwrap_or(0)))),
        ("acks_measured", json!(ack.len())),
        ("ack_p99_ms_incl_ramp", json!(ms(percentile(&all_acks, 99.0)))),
        ("loadgen_cpu_pct", json!(sum("loadgen_cpu_pct"))),
        ("loadgen_cpu_pct_per_shard", json!(reports.iter().map(|r| r["loadgen_cpu_pct"].clone()).collect::<Vec<_>>())),
        ("api_errors", json!(sum("api_errors") as u64)),
        ("batches_committed", json!(sum("batches_committed") as u64)),
        ("batches_duplicate", json!(sum("batches_duplicate") as u64)),
        ("batches_rejected", json!(sum("batches_rejected") as u64)),
        ("enqueue_failures", json!(sum("enqueue_failures") as u64)),
        ("agents_with_unacked_batches", json!(sum("agents_with_unacked_batches") as u64)),
        ("clean", json!(reports.iter().all(|r| r["clean"] == json!(true)))),
    ] {
        merged[key] = value;
    }
    if args.json {
        println!("{merged}");
    } else {
        println!("{}", serde_json::to_string_pretty(&merged)?);
    }
    Ok(if merged["clean"] == json!(true) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
