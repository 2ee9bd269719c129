//! Compaction failing half-way: the second of two compaction transactions fails (a trigger
//! injects the error, as a full disk would), queries go on seeing every sample exactly
//! once, the next pass finishes the interrupted generation before a newer one, and after a
//! restart nothing is lost or doubled.

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{
    Aggregation, MaintenanceHealth, MaintenanceTask, RangeQuery, SeriesSelector, SqliteStore, Store, StoreOptions,
};
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
    // Counted, not only logged; retention was not reached.
    assert_eq!(store.maintenance_health(), MaintenanceHealth { failures: [2, 0], consecutive_failures: [2, 0] });

    sqlx::query("DROP TRIGGER fail_second_piece").execute(&mut injector).await.unwrap();
    injector.close().await.unwrap();
    let report = store.maintain(now).await.unwrap();
    assert!(report.compacted_samples > 0, "{report:?}");
    assert_eq!(store.maintenance_health(), MaintenanceHealth { failures: [2, 0], consecutive_failures: [0, 0] });
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

/// The 5 min rollups of the batch at `old`: one sample per series, once.
async fn assert_old_rollups(store: &SqliteStore, old: i64) {
    let query = RangeQuery {
        selector: SeriesSelector::new("old_metric"),
        start_ms: old,
        end_ms: old + 299_999,
        step_ms: 300_000,
        aggregation: Aggregation::Count,
    };
    let series = store.query_range("default", &query).await.unwrap();
    assert_eq!(series.len(), SERIES);
    assert!(series.iter().all(|s| s.points.len() == 1 && s.points[0].value == 1.0), "rollups kept, once");
}

/// The raw samples of batches 2 and 3 (values 2 and 3, a second apart from `t0`), once each.
async fn assert_recent(store: &SqliteStore, t0: i64) {
    let query = RangeQuery {
        selector: SeriesSelector::new("wide_metric"),
        start_ms: t0,
        end_ms: t0 + 3_600_000,
        step_ms: 1_000,
        aggregation: Aggregation::Sum,
    };
    let series = store.query_range("default", &query).await.unwrap();
    assert_eq!(series.len(), SERIES);
    for s in &series {
        let values: Vec<f64> = s.points.iter().map(|p| p.value).collect();
        assert_eq!(values, vec![2.0, 3.0], "{}: each recent sample once", s.series);
    }
}

/// Chunks past raw retention (30 days) as of `now`.
async fn old_chunks(conn: &mut sqlx::SqliteConnection, now: i64) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE max_ts < ?")
        .bind(now - 30 * 86_400_000)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// Retention failing half-way: of the 25 000 expired chunks, the first slice (10 000) is
/// deleted and the second fails (a trigger injects the error). What is inside the retention
/// windows (recent raw data, the old data's rollups) stays exactly once through every pass;
/// the next pass after the fault is lifted deletes the rest; a reopen changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_failing_half_way_resumes_losing_and_doubling_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retention.db");
    let url = format!("sqlite://{}", path.display());
    let options = StoreOptions { background: false, ..StoreOptions::default() };
    let now = secumon_core::now_ms();
    let t0 = now - now % 1_000 - 600_000;
    // Past raw retention (30 days), within the 5 min rollups' (90 days).
    let old = now - now % 300_000 - 40 * 86_400_000;
    let store = SqliteStore::open_with(&path, options.clone()).await.unwrap();
    // Series of their own, so their chunks hold nothing recent.
    let mut expiring = batch(1, old);
    expiring.samples.iter_mut().for_each(|s| s.series.name = "old_metric".into());
    store.write_batch("default", &expiring).await.unwrap();
    store.write_batch("default", &batch(2, t0 + 1_000)).await.unwrap();
    store.write_batch("default", &batch(3, t0 + 2_000)).await.unwrap();

    // Compaction and merging write level-1 chunks; retention's deletes of them count, and
    // fail from the 10 001st on.
    let mut injector = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for statement in [
        "CREATE TABLE expired_deletes (n INTEGER NOT NULL)",
        "INSERT INTO expired_deletes VALUES (0)",
        "CREATE TRIGGER count_expired AFTER DELETE ON chunks WHEN OLD.level = 1 \
         BEGIN UPDATE expired_deletes SET n = n + 1; END",
        "CREATE TRIGGER fail_expired BEFORE DELETE ON chunks \
         WHEN OLD.level = 1 AND (SELECT n FROM expired_deletes) >= 10000 \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    ] {
        sqlx::query(statement).execute(&mut injector).await.unwrap();
    }
    let failed = store.maintain(now).await.expect_err("the second retention slice fails");
    assert!(failed.to_string().contains("injected failure"), "{failed}");
    assert_eq!(old_chunks(&mut injector, now).await, (SERIES - 10_000) as i64, "one slice deleted");
    assert_recent(&store, t0).await;
    assert_old_rollups(&store, old).await;
    let failed_again = store.maintain(now).await.expect_err("still failing");
    assert!(failed_again.to_string().contains("injected failure"), "{failed_again}");
    assert_eq!(old_chunks(&mut injector, now).await, (SERIES - 10_000) as i64);
    assert_recent(&store, t0).await;
    assert_old_rollups(&store, old).await;
    let health = store.maintenance_health();
    assert_eq!(health.failures(MaintenanceTask::Retention), 2, "{health:?}");
    assert_eq!(health.consecutive_failures(MaintenanceTask::Retention), 2, "{health:?}");
    assert_eq!(health.failures(MaintenanceTask::Compaction), 0, "{health:?}");

    for statement in ["DROP TRIGGER fail_expired", "DROP TRIGGER count_expired", "DROP TABLE expired_deletes"] {
        sqlx::query(statement).execute(&mut injector).await.unwrap();
    }
    let report = store.maintain(now).await.unwrap();
    assert!(report.expired_rows >= (SERIES - 10_000) as u64, "{report:?}");
    assert_eq!(old_chunks(&mut injector, now).await, 0, "the rest deleted");
    assert_eq!(store.maintenance_health().consecutive_failures(MaintenanceTask::Retention), 0);
    assert_recent(&store, t0).await;
    assert_old_rollups(&store, old).await;
    store.close().await;

    let reopened = SqliteStore::open_with(&path, options).await.unwrap();
    assert_recent(&reopened, t0).await;
    assert_old_rollups(&reopened, old).await;
    reopened.maintain(now).await.unwrap();
    assert_eq!(old_chunks(&mut injector, now).await, 0);
    assert_recent(&reopened, t0).await;
    assert_old_rollups(&reopened, old).await;
    injector.close().await.unwrap();
    reopened.close().await;
}
