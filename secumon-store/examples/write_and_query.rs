//! Writes an hour of one host's CPU samples into an embedded store and reads them back as
//! five-minute averages: the same calls the server makes.
//!
//! ```text
//! cargo run -p secumon-store --example write_and_query [-- DIR]
//! ```
//!
//! The store is created in DIR (a temporary directory when left out).

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, SqliteStore, Store};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("secumon-example-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(&dir.join("secumon.db")).await?;

    // One batch per minute, as an agent would push them; (agent, sequence) makes re-sends harmless.
    let start = secumon_core::now_ms() / 60_000 * 60_000 - 3_600_000;
    for minute in 0..60_i64 {
        let at = start + minute * 60_000;
        let usage = 0.2 + 0.1 * (minute as f64 / 9.0).sin();
        let labels = Labels::from([("mode".to_string(), "total".to_string())]);
        let batch = IngestBatch {
            agent_id: "example-agent".into(),
            sequence: minute as u64 + 1,
            host: "web-1".into(),
            created_at_ms: at,
            samples: vec![Sample::new("cpu_usage_ratio", labels, at, usage)],
            ..Default::default()
        };
        store.write_batch("default", &batch).await?;
    }

    let query = RangeQuery {
        selector: SeriesSelector::new("cpu_usage_ratio").with("host", "web-1"),
        start_ms: start,
        end_ms: start + 3_600_000,
        step_ms: 300_000,
        aggregation: Aggregation::Avg,
    };
    for series in store.query_range("default", &query).await? {
        println!("{} {:?}", series.series.name, series.series.labels);
        for point in series.points {
            println!("  {}  {:.3}", point.timestamp_ms, point.value);
        }
    }
    println!("store: {}", dir.display());
    Ok(())
}
