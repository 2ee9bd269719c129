//! Compaction failing half-way: the second of two compaction transactions fails (a trigger
//! injects the error, as a full disk would), queries go on seeing every sample exactly
//! once, the next pass finishes the interrupted generation before a newer one, and after a
//! restart nothing is lost or doubled.

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, SqliteStore, Store, StoreOptions};
use sqlx::Connection;

/// More series than one compaction transaction takes (20 000), so compaction commits twice.
const SERIES: usize = 25_000;

fn batch(sequence: u64, ts: i64) -> IngestBatch {
    IngestBatch {
        agent_id: "compaction-agent".into(),
        sequence,
        host: "compaction-host".into(),
        created_at_ms: ts,
        samples: (0..SERIES)
            .map(|s| Sample::new("wide_metric", Labels::from([("n".to_string(), s.to_string())]), ts, sequence as f64))
            .collect(),
        ..Default::default()
    }
}

/// Asserts every series holds exactly the values 1..=batches, once each.
async fn assert_complete(store: &SqliteStore, t0: i64, batches: u64) {
    let query = RangeQuery {
        selector: SeriesSelector::new("wide_metric"),
        start_ms: t0,
        end_ms: t0 + 3_600_000,
        step_ms: 1_000,
        aggregation: Aggregation::Count,
    };
    let series = store.query_range("default", &query).await.unwrap();
    assert_eq!(series.len(), SERIES);
    for s in &series {
        let counts: Vec<f64> = s.points.iter().map(|p| p.value).collect();
        assert_eq!(counts, vec![1.0; batches as usize], "{}: one sample per batch", s.series);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_failing_half_way_is_resumed_losing_and_doubling_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compaction.db");
    let options = StoreOptions { background: false, ..StoreOptions::default() };
    let now = secumon_core::now_ms();
    let t0 = now - now % 1_000 - 600_000;
    let store = SqliteStore::open_with(&path, options.clone()).await.unwrap();
    store.write_batch("default", &batch(1, t0 + 1_000)).await.unwrap();
    store.write_batch("default", &batch(2, t0 + 2_000)).await.unwrap();

    let mut injector = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER fail_second_piece BEFORE INSERT ON chunks WHEN (SELECT COUNT(*) FROM chunks) >= 20000 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut injector)
    .await
    .unwrap();
    let failed = store.maintain(now).await.expect_err("the second compaction transaction fails");
    assert!(failed.to_string().contains("injected failure"), "{failed}");
    assert_complete(&store, t0, 2).await;

    // Ingest goes on; the next pass first finishes what the failed one left.
    store.write_batch("default", &batch(3, t0 + 3_000)).await.unwrap();
    let failed_again = store.maintain(now).await.expect_err("still failing");
    assert!(failed_again.to_string().contains("injected failure"), "{failed_again}");
    assert_complete(&store, t0, 3).await;

    sqlx::query("DROP TRIGGER fail_second_piece").execute(&mut injector).await.unwrap();
    injector.close().await.unwrap();
    let report = store.maintain(now).await.unwrap();
    assert!(report.compacted_samples > 0, "{report:?}");
    assert_complete(&store, t0, 3).await;
    store.close().await;

    let reopened = SqliteStore::open_with(&path, options).await.unwrap();
    assert_complete(&reopened, t0, 3).await;
    reopened.maintain(now).await.unwrap();
    assert_complete(&reopened, t0, 3).await;
    let head: i64 = {
        let mut check = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM head_batches").fetch_one(&mut check).await.unwrap()
    };
    assert_eq!(head, 0, "every write-ahead record compacted and deleted");
    reopened.close().await;
}
