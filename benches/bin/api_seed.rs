//! Fills a data directory for the API latency benchmark: `--hosts` agents, each with
//! `--hours` of a host's everyday gauges one minute apart, written through the embedded
//! store as the server would, plus a viewer API key, printed on standard output. Each agent
//! carries the labels an MSP groups by: `client` (`client-00`…, `--clients` of them, host
//! `i` is client `i % clients`'s), `site` (`site-0`…`site-6`) and `role`.
//!
//! `benches/scripts/api_latency.sh` runs this, starts `secumon server` on the directory and
//! points wrk at it; `benches/scripts/prom_query_range.sh` also has it import the same
//! samples into VictoriaMetrics (`--victoria`).

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::{Accounts, Role, SecretBox};
use secumon_store::{SqliteStore, Store};

#[derive(Parser)]
struct Args {
    /// The server's data directory (created).
    #[arg(long)]
    dir: std::path::PathBuf,
    #[arg(long, default_value_t = 1_000)]
    hosts: usize,
    /// History per series, ending now.
    #[arg(long, default_value_t = 24)]
    hours: usize,
    /// Clients the hosts are spread over (the `client` label).
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Also import every sample, under the labels SecuMon stores it with, into the
    /// VictoriaMetrics at this URL (`http://127.0.0.1:8428`), to query both the same way.
    #[arg(long)]
    victoria: Option<String>,
}

const ROLES: [&str; 4] = ["web", "db", "cache", "worker"];

const STEP_MS: i64 = 60_000;
const GAUGES: [(&str, &str, f64); 8] = [
    ("cpu_usage_ratio", "cpu", 1.0),
    ("memory_used_ratio", "", 1.0),
    ("swap_used_ratio", "", 1.0),
    ("load1", "", 8.0),
    ("load5", "", 8.0),
    ("filesystem_used_ratio", "mountpoint", 1.0),
    ("network_receive_bytes_per_second", "interface", 1e7),
    ("network_transmit_bytes_per_second", "interface", 1e7),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&args.dir.join("secumon.db")).await?);
    let points = args.hours * 60;
    let end = now_ms() / STEP_MS * STEP_MS;
    let started = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let http = reqwest::Client::new();
    for host in 0..args.hosts {
        let name = format!("host-{host:04}");
        let mut samples = Vec::with_capacity(points * GAUGES.len());
        for (metric, label, scale) in GAUGES {
            let mut labels = Labels::from([("host".to_string(), name.clone())]);
            if !label.is_empty() {
                labels.insert(label.to_string(), if label == "mountpoint" { "/".into() } else { "all".into() });
            }
            let mut value = scale / 2.0;
            for i in 0..points {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let step = (state % 1000) as f64 / 1000.0 - 0.5;
                value = (value + step * scale / 20.0).clamp(0.0, scale);
                let at = end - (points - 1 - i) as i64 * STEP_MS;
                samples.push(Sample::new(metric, labels.clone(), at, (value * 1000.0).round() / 1000.0));
            }
        }
        let batch = IngestBatch {
            agent_id: format!("agent-{host:04}"),
            sequence: 1,
            host: name,
            agent_labels: Labels::from([
                ("client".to_string(), format!("client-{:02}", host % args.clients.max(1))),
                ("site".to_string(), format!("site-{}", host % 7)),
                ("role".to_string(), ROLES[host % ROLES.len()].to_string()),
            ]),
            created_at_ms: end,
            samples,
            ..Default::default()
        };
        store.write_batch("default", &batch).await?;
        if let Some(url) = &args.victoria {
            let stored: Vec<Sample> = batch
                .samples
                .iter()
                .map(|s| Sample { series: batch.stored_series_key("default", &s.series), ..s.clone() })
                .collect();
            let body = secumon_benches::exposition_with_timestamps(&stored);
            let answer = http.post(format!("{url}/api/v1/import/prometheus")).body(body).send().await?;
            anyhow::ensure!(answer.status().is_success(), "VictoriaMetrics refused an import: {}", answer.status());
        }
    }
    if let Some(url) = &args.victoria {
        http.get(format!("{url}/internal/force_flush")).send().await?.error_for_status()?;
    }
    let written = args.hosts * points * GAUGES.len();
    eprintln!("api_seed: {} hosts, {written} samples in {:.1} s", args.hosts, started.elapsed().as_secs_f64());
    let secrets = SecretBox::load_or_create(&args.dir.join("secret.key"))?;
    let accounts = Accounts::open(Arc::clone(&store), secrets).await?;
    let (_, key) = accounts.create_api_key("default", "api latency benchmark", Role::Viewer, "bench").await?;
    println!("{key}");
    store.close().await;
    Ok(())
}
