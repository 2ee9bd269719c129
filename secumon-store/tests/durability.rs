//! Durability: a process ingesting through the store (compacting in the background as it
//! goes) is killed with SIGKILL; the database opens cleanly and every acknowledged batch
//! is there, sample for sample.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, SqliteStore, Store, StoreOptions};

const CHILD_ENV: &str = "SECUMON_DURABILITY_CHILD_DB";
const SERIES: usize = 200;

fn start_ms() -> i64 {
    let now = secumon_core::now_ms();
    now - now % 3_600_000 - 3_600_000
}

fn batch(sequence: u64, t0: i64) -> IngestBatch {
    IngestBatch {
        agent_id: "crash-agent".into(),
        sequence,
        host: "crash-host".into(),
        created_at_ms: t0,
        samples: (0..SERIES)
            .map(|s| {
                let labels = Labels::from([("n".to_string(), s.to_string())]);
                Sample::new("crash_metric", labels, t0 + sequence as i64 * 1_000, sequence as f64)
            })
            .collect(),
        ..Default::default()
    }
}

/// The child: writes batches forever, printing each acknowledged sequence. A small head
/// makes compaction run (and get killed) in the middle of ingest.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let t0: i64 = std::env::var("SECUMON_DURABILITY_T0").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = StoreOptions { head_max_samples: 5_000, ..StoreOptions::default() };
        let store = SqliteStore::open_with(std::path::Path::new(&path), options).await.unwrap();
        for sequence in 1.. {
            store.write_batch("default", &batch(sequence, t0)).await.unwrap();
            println!("ACK {sequence}");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let t0 = start_ms();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .env("SECUMON_DURABILITY_T0", t0.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    // Long enough for several background compactions (they run every second when due).
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline || acked < 500 {
        let line = lines.next().expect("child still writing").unwrap();
        if let Some(seq) = line.strip_prefix("ACK ") {
            acked = seq.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let check: String = {
        use sqlx::Connection;
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap()
    };
    assert_eq!(check, "ok");
    let store = SqliteStore::open_with(&path, StoreOptions { background: false, ..Default::default() }).await.unwrap();
    let query = RangeQuery {
        selector: SeriesSelector::new("crash_metric"),
        start_ms: t0,
        end_ms: t0 + 100_000_000,
        step_ms: 1_000,
        aggregation: Aggregation::Last,
    };
    let series = store.query_range("default", &query).await.unwrap();
    assert_eq!(series.len(), SERIES);
    for s in &series {
        // Every acknowledged batch, at most one more that committed as the kill landed.
        let sequences: Vec<u64> = s.points.iter().map(|p| p.value as u64).collect();
        assert!(
            sequences.len() as u64 >= acked && sequences.len() as u64 <= acked + 1,
            "{}: {}",
            s.series,
            sequences.len()
        );
        assert!(sequences.iter().enumerate().all(|(i, seq)| *seq == i as u64 + 1), "{}: a gap", s.series);
    }
    let agent = &store.list_agents("default").await.unwrap()[0];
    assert!(agent.last_sequence >= acked);
    // Compaction ran before the kill, and the restarted store compacts what is left.
    let report = store.maintain(secumon_core::now_ms()).await.unwrap();
    assert!(report.compacted_samples < acked * SERIES as u64, "{report:?}: some was compacted before the kill");
    let again = store.query_range("default", &query).await.unwrap();
    assert_eq!(again, series);
    eprintln!("{acked} batches acknowledged before SIGKILL; all present after restart");
}
