//! Findings import load generator (issue #17, finding 2): one tenant imports a scanner
//! report of `--findings` findings on as many assets (all new), then a full scan of the
//! same assets in which a fifth of them list another finding (fixes + new ones), while
//! an agent of another tenant commits batches back to back through `Store::write_batch`.
//! Prints one JSON line per backend: each import's time, and the latency of the agent's
//! batches alone beforehand and during the imports (p50, p99, max), plus the process's
//! peak RSS.
//!
//! `cargo run --release -p secumon-benches --bin findings_import -- --backends sqlite`
//! (one backend per run, so the peak RSS is that backend's).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use secumon_core::{Finding, FindingStatus, IngestBatch, Labels, Sample, Severity};
use secumon_store::{FindingsImport, PgStore, SqliteStore, Store, StoreOptions};

#[derive(Parser)]
struct Args {
    /// Findings per report, one per asset.
    #[arg(long, default_value_t = 50_000)]
    findings: usize,
    /// Samples per agent batch (20 series).
    #[arg(long, default_value_t = 200)]
    batch_samples: usize,
    /// Backends to run, comma-separated: sqlite, postgres.
    #[arg(long, default_value = "sqlite,postgres")]
    backends: String,
    /// Directory for the SQLite database (emptied first).
    #[arg(long, default_value = "/tmp/secumon-findings-import")]
    dir: std::path::PathBuf,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
}

fn report(count: usize, changed: usize) -> Vec<Finding> {
    (0..count)
        .map(|i| Finding {
            id: if i < changed { format!("CVE-2025-{:05}", i % 997) } else { format!("CVE-2024-{:05}", i % 997) },
            severity: [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info][i % 5],
            asset: format!("host-{i:06}"),
            title: "libfoo: heap overflow in the frobnicator".into(),
            description: "Upgrade libfoo to 1.2.4 or later.".into(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            status: FindingStatus::Open,
        })
        .collect()
}

fn batch(sequence: u64, samples: usize) -> IngestBatch {
    let now = secumon_core::now_ms();
    IngestBatch {
        agent_id: "bench-agent".into(),
        sequence,
        host: "agent-host".into(),
        created_at_ms: now,
        samples: (0..samples)
            .map(|i| {
                let labels = Labels::from([("core".to_string(), (i % 20).to_string())]);
                Sample::new("cpu_seconds_total", labels, now - (i / 20) as i64, sequence as f64)
            })
            .collect(),
        ..Default::default()
    }
}

/// Latencies of back-to-back batches until `stop`, in milliseconds.
async fn agent(store: Arc<dyn Store>, first_sequence: u64, samples: usize, stop: Arc<AtomicBool>) -> Vec<f64> {
    let mut latencies = Vec::new();
    let mut sequence = first_sequence;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if let Err(error) = store.write_batch("other", &batch(sequence, samples)).await {
            eprintln!("agent batch {sequence} refused: {error}");
        }
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        sequence += 1;
    }
    latencies
}

fn percentiles(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1))).copied();
    serde_json::json!({"batches": ms.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ms.last()})
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

async fn run(backend: &str, store: Arc<dyn Store>, args: &Args) -> anyhow::Result<serde_json::Value> {
    // Alone first: what a batch costs with nobody else writing.
    let stop = Arc::new(AtomicBool::new(false));
    let alone = tokio::spawn(agent(store.clone(), 1, args.batch_samples, stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = alone.await?;

    let stop = Arc::new(AtomicBool::new(false));
    let during = tokio::spawn(agent(store.clone(), 1_000_000, args.batch_samples, stop.clone()));
    let mut imports = Vec::new();
    for (n, changed) in [(1, 0), (2, args.findings / 5)] {
        let import = FindingsImport {
            source: "trivy".into(),
            findings: report(args.findings, changed),
            full_scan: true,
            at_ms: secumon_core::now_ms(),
        };
        let started = Instant::now();
        let summary = store.import_findings("scanner", &import).await.with_context(|| format!("import {n}"))?;
        imports.push(serde_json::json!({
            "import": n, "seconds": started.elapsed().as_secs_f64(), "new": summary.new.len(),
            "fixed": summary.fixed.len(), "unchanged": summary.unchanged, "samples": summary.samples.len(),
        }));
    }
    stop.store(true, Ordering::Relaxed);
    let during = during.await?;
    Ok(serde_json::json!({
        "backend": backend, "findings": args.findings, "imports": imports,
        "agent_alone": percentiles(alone), "agent_during_imports": percentiles(during),
        "peak_rss_mib": peak_rss_mib(),
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = StoreOptions { background: true, ..StoreOptions::default() };
    for backend in args.backends.split(',') {
        let line = match backend {
            "sqlite" => {
                let _ = std::fs::remove_dir_all(&args.dir);
                let store = SqliteStore::open_with(&args.dir.join("store.db"), options.clone()).await?;
                let store: Arc<dyn Store> = Arc::new(store);
                let line = run(backend, store.clone(), &args).await?;
                store.close().await;
                line
            }
            "postgres" => {
                let schema = "secumon_findings_import";
                let admin = sqlx::PgPool::connect(&args.pg_url).await.context("connect to PostgreSQL")?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&admin).await?;
                sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await?;
                let connect =
                    args.pg_url.parse::<sqlx::postgres::PgConnectOptions>()?.options([("search_path", schema)]);
                let store = PgStore::connect_with(connect, options.clone()).await?;
                let line = run(backend, store.clone(), &args).await?;
                store.close().await;
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&admin).await?;
                line
            }
            other => anyhow::bail!("unknown backend {other:?}: sqlite or postgres"),
        };
        println!("{line}");
    }
    Ok(())
}
