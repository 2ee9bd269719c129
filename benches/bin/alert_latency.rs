//! Alert latency load scenario for SecuMon: a server (release build, embedded SQLite) with
//! the rule `bench_value > THRESHOLD`, one agent push client, N series that all cross the
//! threshold in one batch at a known instant, and a webhook receiver on loopback. For each
//! series: time from the batch being handed to the agent's push client (spool fsync,
//! gRPC, SQLite commit and alert engine included, so an upper bound on "arrival at the
//! server") to the webhook receiving its firing notification.
//!
//! `cargo run --release -p secumon-benches --bin alert_latency -- [--series 1000] [--threshold 50] [--json]`
//! `benches/scripts/alert_latency.sh` runs it beside Prometheus + Alertmanager.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use secumon_alert::RuleFile;
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig};
use serde_json::{Value, json};

type Receipts = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(receipts): State<Receipts>, Json(body): Json<Value>) {
    let at = Instant::now();
    if body["status"] != "firing" {
        return;
    }
    let mut receipts = receipts.lock().unwrap_or_else(|p| p.into_inner());
    for alert in body["alerts"].as_array().into_iter().flatten() {
        if let Some(series) = alert["labels"]["series"].as_str() {
            receipts.entry(series.to_string()).or_insert(at);
        }
    }
}

fn argument(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number")),
    }
}

fn batch(series: u64, value: f64) -> IngestBatch {
    let ts = now_ms();
    IngestBatch {
        agent_id: "bench-agent".into(),
        host: "bench".into(),
        samples: (0..series)
            .map(|i| Sample::new("bench_value", Labels::from([("series".to_string(), i.to_string())]), ts, value))
            .collect(),
        ..Default::default()
    }
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (series, threshold) = match (argument(&args, "--series", 1000), argument(&args, "--threshold", 50)) {
        (Ok(series), Ok(threshold)) if series > 0 => (series, threshold as f64),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("alert_latency: {e}");
            return ExitCode::from(2);
        }
        _ => {
            eprintln!("alert_latency: --series must be at least 1");
            return ExitCode::from(2);
        }
    };
    let json_output = args.iter().any(|a| a == "--json");

    let receipts: Receipts = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let hook = format!("http://{}/hook", listener.local_addr().expect("receiver address"));
    let app = axum::Router::new().route("/hook", post(receive)).with_state(receipts.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temporary directory");
    let rules = format!(
        "rules:\n  - {{name: BenchHigh, expr: bench_value > {threshold}, severity: warning, channels: [hook]}}\n\
         channels:\n  hook: {{type: webhook, url: \"{hook}\"}}\n"
    );
    let mut config = ServerConfig::loopback(dir.path().join("bench.db"));
    config.alerting = Some(RuleFile::parse(&rules, "bench rules").expect("bench rules parse"));
    let server = Server::start(config).await.expect("server starts");
    let client = PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool")))
        .expect("push client");
    let runner = client.clone();
    let pushing = tokio::spawn(async move { runner.run(std::future::pending()).await });

    // Warm up: every series known and below the threshold.
    for _ in 0..3 {
        client.enqueue(batch(series, 0.0)).await.expect("enqueue");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let crossing = Instant::now();
    client.enqueue(batch(series, threshold + 10.0)).await.expect("enqueue");
    let deadline = crossing + Duration::from_secs(60);
    while receipts.lock().unwrap_or_else(|p| p.into_inner()).len() < series as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies: Vec<f64> = receipts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|at| at.duration_since(crossing).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    pushing.abort();
    server.shutdown().await;

    let received = latencies.len();
    if received == 0 {
        eprintln!("alert_latency: no notification arrived within 60 s");
        return ExitCode::from(1);
    }
    let (p50, p99, max) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0), latencies[received - 1]);
    if json_output {
        let report = json!({"system": "secumon", "mode": "default", "series": series, "received": received,
            "p50_ms": p50, "p99_ms": p99, "max_ms": max, "version": env!("CARGO_PKG_VERSION")});
        println!("{report}");
    } else {
        println!(
            "secumon {}: {received}/{series} notified; from the crossing batch's enqueue to the webhook:",
            env!("CARGO_PKG_VERSION")
        );
        println!("  p50 {p50:.1} ms   p99 {p99:.1} ms   max {max:.1} ms");
    }
    if received == series as usize { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
