//! PostgreSQL samples as compressed blocks (issue #19): a database of the row layout
//! (migrations up to 0004) is upgraded without losing raw samples or rollups; several
//! processes writing, re-sending and compacting one database count each sample once; blocks
//! take a few bytes a sample. Against `SECUMON_TEST_PG_URL`, a schema per test.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, PgStore, RangeQuery, SeriesSelector, Store, StoreOptions};
use sqlx::postgres::PgConnectOptions;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// A schema of its own, dropped at the end.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn new(what: &str) -> Self {
        let url = std::env::var("SECUMON_TEST_PG_URL").unwrap_or_default();
        if url.is_empty() {
            secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        }
        let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("SECUMON_TEST_PG_URL={url}: {e}"));
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("secumon_{what}_{}_{nanos}", std::process::id());
        sqlx::query(&format!("CREATE SCHEMA \"{name}\"")).execute(&pool).await.unwrap();
        pool.close().await;
        Self { url, name }
    }

    fn connect(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url).unwrap().options([("search_path", self.name.as_str())])
    }

    async fn open(&self) -> Arc<PgStore> {
        PgStore::connect_with(self.connect(), StoreOptions { background: false, ..StoreOptions::default() })
            .await
            .unwrap()
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect_with(self.connect()).await.unwrap()
    }

    async fn drop(self) {
        let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", self.name)).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

fn batch(agent: &str, sequence: u64, host: &str, samples: Vec<Sample>) -> IngestBatch {
    IngestBatch { agent_id: agent.into(), sequence, host: host.into(), samples, ..Default::default() }
}

fn query(
    name: &str,
    host: Option<&str>,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    aggregation: Aggregation,
) -> RangeQuery {
    let selector = SeriesSelector::new(name);
    let selector = match host {
        Some(host) => selector.with("host", host),
        None => selector,
    };
    RangeQuery { selector, start_ms, end_ms, step_ms, aggregation }
}

async fn points(store: &dyn Store, q: &RangeQuery) -> Vec<(i64, f64)> {
    let answer = store.query_range("default", q).await.unwrap();
    answer.into_iter().flat_map(|s| s.points).map(|p| (p.timestamp_ms, p.value)).collect()
}

/// A database made by the previous release (migrations 0001-0004: raw rows in `samples`,
/// rollup rows, a rollup watermark) opens on the block layout: raw rows still in the head are
/// compacted into blocks, rollup rows of windows whose raw rows are gone become rollup blocks,
/// and series get their host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_row_layout_is_upgraded_keeping_samples_and_rollups() {
    let schema = Schema::new("upgrade").await;
    let pool = schema.pool().await;
    // The migrations of the previous release, as it ran them.
    let old = tempfile::tempdir().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for name in ["0001_init.sql", "0002_records.sql", "0003_audit_log.sql", "0004_log_paging.sql"] {
        std::fs::copy(dir.join(name), old.path().join(name)).unwrap();
    }
    sqlx::migrate::Migrator::new(old.path()).await.unwrap().run(&pool).await.unwrap();

    let now = secumon_core::now_ms();
    let recent = now - now % (2 * HOUR_MS) - DAY_MS; // a window a day ago, raw rows kept
    let old_window = recent - 40 * DAY_MS; // raw rows gone, rollups kept
    let labels = serde_json::to_string(&Labels::from([
        ("host".to_string(), "web-1".to_string()),
        ("tenant".to_string(), "default".to_string()),
    ]))
    .unwrap();
    sqlx::query("INSERT INTO series (id, tenant_id, name, labels) VALUES (1, 'default', 'cpu', $1)")
        .bind(&labels)
        .execute(&pool)
        .await
        .unwrap();
    let day = recent.div_euclid(DAY_MS);
    sqlx::query(&format!(
        "CREATE TABLE samples_d{day} PARTITION OF samples FOR VALUES FROM ({}) TO ({})",
        day * DAY_MS,
        (day + 1) * DAY_MS
    ))
    .execute(&pool)
    .await
    .unwrap();
    // 720 samples 10 s apart, the first written twice (the later write wins), rolled up by
    // the old job (its watermark past them).
    sqlx::query(
        "INSERT INTO samples (series_id, ts, value, write_seq) \
         SELECT 1, $1 + i * 10000, (i % 30)::float8, 2 FROM generate_series(0, 719) AS i",
    )
    .bind(recent)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO samples (series_id, ts, value, write_seq) VALUES (1, $1, 100, 1)")
        .bind(recent + 5_000)
        .execute(&pool)
        .await
        .unwrap();
    for (table, resolution, per_bucket) in [("rollup_5m", 300_000i64, 30i64), ("rollup_1h", HOUR_MS, 360)] {
        for start in [recent, old_window] {
            // What the old job wrote: count, sum (0..29 per 5 minutes), last.
            sqlx::query(&format!(
                "INSERT INTO {table} (series_id, bucket, min, max, sum, count, last_ts, last) \
                 SELECT 1, $1 + b * $2, 0, 29, 435 * ($3 / 30), $3, $1 + (b + 1) * $2 - 10000, 29 \
                 FROM generate_series(0, (7200000 / $2) - 1) AS b"
            ))
            .bind(start)
            .bind(resolution)
            .bind(per_bucket)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    sqlx::query("UPDATE rollup_state SET rolled_up = 2").execute(&pool).await.unwrap();

    let store = schema.open().await;
    let host: Option<String> =
        sqlx::query_scalar("SELECT host FROM series WHERE id = 1").fetch_one(&pool).await.unwrap();
    assert_eq!(host.as_deref(), Some("web-1"));
    let legacy: bool = sqlx::query_scalar("SELECT to_regclass('rollup_5m') IS NULL").fetch_one(&pool).await.unwrap();
    assert!(legacy, "the old rollup table is gone once converted");
    let expect_raw = |pts: Vec<(i64, f64)>| {
        assert_eq!(pts.len(), 721, "720 samples and the one 5 s in");
        assert_eq!(pts[1], (recent + 5_000, 100.0));
        assert_eq!(pts[2], (recent + 10_000, 1.0));
    };
    let raw = query("cpu", Some("web-1"), recent, recent + 2 * HOUR_MS - 1, 1, Aggregation::P95);
    expect_raw(points(&*store, &raw).await);
    let report = store.maintain(now).await.unwrap();
    assert_eq!(report.compacted_samples, 721, "{report:?}");
    let head: i64 = sqlx::query_scalar("SELECT count(*) FROM samples").fetch_one(&pool).await.unwrap();
    assert_eq!(head, 0, "the old rows left the head");
    expect_raw(points(&*store, &raw).await);
    // The old window: from the converted rollup blocks (5-minute tier at 40 days).
    let five = query("cpu", None, old_window, old_window + 2 * HOUR_MS - 1, 300_000, Aggregation::Count);
    assert_eq!(points(&*store, &five).await.iter().map(|p| p.1).collect::<Vec<_>>(), vec![30.0; 24]);
    let sum = query("cpu", None, old_window, old_window + 2 * HOUR_MS - 1, HOUR_MS, Aggregation::Sum);
    assert_eq!(points(&*store, &sum).await.iter().map(|p| p.1).collect::<Vec<_>>(), vec![12.0 * 435.0; 2]);
    // The recent window's rollups were made again from its samples, not converted.
    let rollups: i64 = sqlx::query_scalar("SELECT count(*) FROM rollup_1h_blocks WHERE window_start = $1")
        .bind(recent)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rollups, 1);
    let counts = query("cpu", None, recent, recent + 2 * HOUR_MS - 1, HOUR_MS, Aggregation::Count);
    assert_eq!(points(&*store, &counts).await.iter().map(|p| p.1).collect::<Vec<_>>(), vec![361.0, 360.0]);
    store.close().await;
    pool.close().await;
    schema.drop().await;
}

/// Two server processes on one database: both take batches of the same series (a timestamp
/// sent through one and again through the other), both run maintenance passes meanwhile.
/// Raw answers and both rollup tiers equal the model of "last value written at each
/// timestamp" (the order between the two processes is the order of their commits, so the
/// test sends each timestamp's writes one after the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_and_compacting_one_database_count_each_sample_once() {
    let schema = Schema::new("two_processes").await;
    let (one, two) = (schema.open().await, schema.open().await);
    // 32 days ago: queries of it read the 5-minute tier (raw is kept 30 days); maintenance
    // runs as if three hours after it, while it is still raw data, so it is compacted (and
    // re-sent samples merged into compacted windows) but not expired.
    let now = secumon_core::now_ms();
    let base = now - now % (2 * HOUR_MS) - 32 * DAY_MS;
    let maintain_at = base + 3 * HOUR_MS;
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let mut sequence = 0;
    let stores: [Arc<dyn Store>; 2] = [one.clone(), two.clone()];
    for round in 0..12i64 {
        // Each round: 60 new slots 10 s apart, and 20 earlier slots sent again.
        let fresh: Vec<i64> = (0..60).map(|i| round * 60 + i).collect();
        let again: Vec<i64> = (0..20).map(|i| (round * 37 + i * 13) % (round * 60 + 60)).collect();
        let mut writes = Vec::new();
        for (part, slots) in [fresh, again].into_iter().enumerate() {
            sequence += 1;
            let value = |slot: i64| (slot * 7 + round * 3 + part as i64) as f64 % 50.0;
            let samples: Vec<Sample> =
                slots.iter().map(|s| Sample::new("cpu", Labels::new(), base + s * 10_000, value(*s))).collect();
            model.extend(slots.iter().map(|s| (base + s * 10_000, value(*s))));
            writes.push((stores[(round as usize + part) % 2].clone(), batch("a1", sequence, "web-1", samples)));
        }
        // The fresh batch first; the re-sends while both processes run maintenance passes
        // (one runs, the other skips it), so compaction meets a batch committing under it.
        let (store, fresh) = &writes[0];
        store.write_batch("default", fresh).await.unwrap();
        let (store, again) = &writes[1];
        let (a, b, c) =
            tokio::join!(one.maintain(maintain_at), two.maintain(maintain_at), store.write_batch("default", again));
        a.unwrap();
        b.unwrap();
        c.unwrap();
    }
    // A last pass moves what committed under the last ones.
    one.maintain(maintain_at).await.unwrap();
    let end = base + 2 * HOUR_MS - 1;
    let mut buckets: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for (ts, value) in &model {
        let bucket = buckets.entry(ts - ts % 300_000).or_default();
        bucket.0 += 1.0;
        bucket.1 += value;
    }
    for store in &stores {
        let raw = points(&**store, &query("cpu", Some("web-1"), base, end, 10_000, Aggregation::P95)).await;
        assert_eq!(raw, model.iter().map(|(t, v)| (*t, *v)).collect::<Vec<_>>());
        let counts = points(&**store, &query("cpu", None, base, end, 300_000, Aggregation::Count)).await;
        assert_eq!(counts, buckets.iter().map(|(b, (count, _))| (*b, *count)).collect::<Vec<_>>(), "counted once");
        let sums = points(&**store, &query("cpu", None, base, end, 300_000, Aggregation::Sum)).await;
        assert_eq!(sums, buckets.iter().map(|(b, (_, sum))| (*b, *sum)).collect::<Vec<_>>());
    }
    let pool = schema.pool().await;
    let counted: i64 = sqlx::query_scalar("SELECT sum(samples)::int8 FROM blocks").fetch_one(&pool).await.unwrap();
    assert_eq!(counted as usize, model.len(), "each timestamp once in the blocks");
    let head: i64 = sqlx::query_scalar("SELECT count(*) FROM samples").fetch_one(&pool).await.unwrap();
    assert_eq!(head, 0, "everything compacted");
    pool.close().await;
    one.close().await;
    two.close().await;
    schema.drop().await;
}

/// Blocks of host-like gauges take a few bytes a sample, rollups included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_take_a_few_bytes_a_sample() {
    let schema = Schema::new("bytes").await;
    let store = schema.open().await;
    let now = secumon_core::now_ms();
    let base = now - now % (2 * HOUR_MS) - DAY_MS;
    for series in 0..20 {
        let samples: Vec<Sample> = (0..720)
            .map(|i| {
                let value = ((i * 7 + series * 13) % 97) as f64 * 0.25 + 10.0;
                Sample::new("mem", Labels::from([("n".to_string(), series.to_string())]), base + i * 10_000, value)
            })
            .collect();
        store.write_batch("default", &batch("a1", series as u64 + 1, "web-1", samples)).await.unwrap();
    }
    store.maintain(now).await.unwrap();
    let pool = schema.pool().await;
    let (bytes, samples): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(octet_length(data)) FROM blocks)::int8 \
         + (SELECT sum(octet_length(data)) FROM rollup_5m_blocks)::int8 \
         + (SELECT sum(octet_length(data)) FROM rollup_1h_blocks)::int8, \
         (SELECT sum(samples) FROM blocks)::int8",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(samples, 20 * 720);
    let per_sample = bytes as f64 / samples as f64;
    assert!(per_sample < 2.5, "{per_sample:.2} bytes a sample in blocks and rollup blocks");
    pool.close().await;
    store.close().await;
    schema.drop().await;
}
