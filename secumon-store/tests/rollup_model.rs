//! Both stores against a model: random batches (timestamps sent again with new values,
//! late samples), maintenance passes (compaction into chunks or blocks with their rollups,
//! at several moments) and restarts must leave raw
//! answers and both rollup tiers equal to what a plain map of "last value written at each
//! timestamp" gives. A rollup bucket must hold each sample once, however many times its
//! timestamp was sent. PostgreSQL at `SECUMON_TEST_PG_URL`, a schema per case.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use proptest::prelude::*;
use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, PgStore, RangeQuery, Retention, SeriesSelector, SqliteStore, Store, StoreOptions};

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Samples land on 96 slots 75 s apart: two hours, 24 five-minute buckets.
const SLOT_MS: i64 = 75_000;
const SLOTS: i64 = 96;

#[derive(Debug, Clone)]
enum Op {
    /// One batch: (slot, value) pairs, a slot possibly written before or twice.
    Write(Vec<(i64, i32)>),
    /// A maintenance pass (compaction and retention) as if this many hours after the first
    /// slot: PostgreSQL compacts the two-hour windows closed by then, so passes meet the
    /// data's windows before, while and after they close.
    Compact(i64),
    Reopen,
}

/// Where a case's store lives.
enum Backend {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Backend {
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(path) => Arc::new(SqliteStore::open_with(path, options()).await.unwrap()),
            Self::Postgres { url, schema } => {
                let connect = sqlx::postgres::PgConnectOptions::from_str(url)
                    .unwrap()
                    .options([("search_path", schema.as_str())]);
                PgStore::connect_with(connect, options()).await.unwrap()
            }
        }
    }

    /// A PostgreSQL schema of its own, dropped by [`Backend::drop_schema`].
    async fn postgres(case: u64) -> Self {
        let url = std::env::var("SECUMON_TEST_PG_URL").unwrap_or_default();
        if url.is_empty() {
            secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        }
        let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("SECUMON_TEST_PG_URL={url}: {e}"));
        let schema = format!("secumon_rollup_model_{}_{case}", std::process::id());
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&pool).await.unwrap();
        pool.close().await;
        Self::Postgres { url, schema }
    }

    async fn drop_schema(&self) {
        if let Self::Postgres { url, schema } = self {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec((0..SLOTS, -50i32..50), 1..30).prop_map(Op::Write),
        2 => (1..=4i64).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

/// Raw data is kept 30 days, 5-minute rollups 35, hourly ones a year. The series `five`
/// starts 32 days ago (queries read its 5-minute rollups), `hourly` 40 days ago (its hourly
/// ones); both get the same samples at the same offsets.
fn options() -> StoreOptions {
    StoreOptions {
        retention: Retention { raw_ms: 30 * DAY_MS, rollup_5m_ms: 35 * DAY_MS, ..Retention::default() },
        background: false,
        ..StoreOptions::default()
    }
}

struct Bases {
    five: i64,
    hourly: i64,
}

impl Bases {
    fn new() -> Self {
        let now = secumon_core::now_ms();
        let hour = now - now % HOUR_MS;
        Self { five: hour - 32 * DAY_MS, hourly: hour - 40 * DAY_MS }
    }

    /// Compaction runs as if shortly after the data arrived, while it is still raw data
    /// (retention keeps everything); queries run now, when only rollups are read.
    fn compaction_now(&self) -> i64 {
        // Past the close of every window of `five`'s two hours and PostgreSQL's margin.
        self.five + 5 * HOUR_MS
    }
}

fn sample(name: &str, base: i64, slot: i64, value: i32) -> Sample {
    Sample::new(name, Labels::new(), base + slot * SLOT_MS, f64::from(value))
}

async fn check(store: &dyn Store, bases: &Bases, model: &BTreeMap<i64, f64>) -> Result<(), TestCaseError> {
    // Raw: p95 is always answered from raw data; one slot per step gives the value itself.
    for (name, base) in [("five", bases.five), ("hourly", bases.hourly)] {
        let got = answer(store, name, base, SLOT_MS, Aggregation::P95).await;
        let expected: Vec<(i64, f64)> = model.iter().map(|(slot, v)| (base + slot * SLOT_MS, *v)).collect();
        prop_assert_eq!(got, expected, "raw {}", name);
    }
    for (name, base, step) in [("five", bases.five, 300_000), ("hourly", bases.hourly, HOUR_MS)] {
        for aggregation in [Aggregation::Sum, Aggregation::Count, Aggregation::Min, Aggregation::Max, Aggregation::Last]
        {
            let got = answer(store, name, base, step, aggregation).await;
            let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for (slot, value) in model {
                let ts = base + slot * SLOT_MS;
                buckets.entry(ts - (ts - base) % step).or_default().push(*value);
            }
            let expected: Vec<(i64, f64)> = buckets
                .into_iter()
                .map(|(bucket, values)| {
                    let value = match aggregation {
                        Aggregation::Sum => values.iter().sum(),
                        Aggregation::Count => values.len() as f64,
                        Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                        Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        _ => *values.last().expect("a bucket has a value"),
                    };
                    (bucket, value)
                })
                .collect();
            prop_assert_eq!(got, expected, "{} {:?}", name, aggregation);
        }
    }
    Ok(())
}

async fn answer(store: &dyn Store, name: &str, base: i64, step_ms: i64, aggregation: Aggregation) -> Vec<(i64, f64)> {
    let query = RangeQuery {
        selector: SeriesSelector::new(name),
        start_ms: base,
        end_ms: base + SLOTS * SLOT_MS - 1,
        step_ms,
        aggregation,
    };
    let answer = store.query_range("default", &query).await.expect("query");
    answer.into_iter().flat_map(|s| s.points).map(|p| (p.timestamp_ms, p.value)).collect()
}

/// Runs `ops` on a store of `backend` and checks it against the model after every
/// maintenance pass and at the end.
async fn run(backend: &Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let bases = Bases::new();
    let mut store = backend.open().await;
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let mut sequence = 0;
    for op in ops {
        match op {
            Op::Write(values) => {
                sequence += 1;
                let samples = values
                    .iter()
                    .flat_map(|&(slot, v)| {
                        [sample("five", bases.five, slot, v), sample("hourly", bases.hourly, slot, v)]
                    })
                    .collect();
                let batch = IngestBatch {
                    agent_id: "a1".into(),
                    sequence,
                    host: "h".into(),
                    created_at_ms: bases.five,
                    samples,
                    ..Default::default()
                };
                store.write_batch("default", &batch).await.unwrap();
                model.extend(values.iter().map(|&(slot, v)| (slot, f64::from(v))));
            }
            Op::Compact(hours) => {
                store.maintain(bases.five + hours * HOUR_MS).await.unwrap();
                check(&*store, &bases, &model).await?;
            }
            Op::Reopen => {
                store.close().await;
                store = backend.open().await;
            }
        }
    }
    store.maintain(bases.compaction_now()).await.unwrap();
    check(&*store, &bases, &model).await?;
    store.close().await;
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn sqlite_rollups_and_raw_data_match_the_last_value_written(ops in proptest::collection::vec(op(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(run(&Backend::Sqlite(dir.path().join("store.db")), ops))?;
    }

    #[test]
    fn postgres_rollups_and_raw_data_match_the_last_value_written(ops in proptest::collection::vec(op(), 1..16)) {
        static CASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime().block_on(async {
            let backend = Backend::postgres(case).await;
            let outcome = run(&backend, ops).await;
            backend.drop_schema().await;
            outcome
        })?;
    }
}

/// The case the model found first: a compaction empties the write-ahead table, a new batch
/// arrives, the store restarts. The batch's record id must not be taken for one a chunk
/// already holds (ids were reused once the table was empty, and the replay skipped it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_compaction_emptied_the_head_keeps_the_samples_written_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let bases = Bases::new();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(&path, options()).await.unwrap());
    let write = |sequence: u64, value: i32| IngestBatch {
        agent_id: "a1".into(),
        sequence,
        host: "h".into(),
        created_at_ms: bases.five,
        samples: vec![sample("five", bases.five, 0, value), sample("five", bases.five, 1, value)],
        ..Default::default()
    };
    store.write_batch("default", &write(1, 10)).await.unwrap();
    store.maintain(bases.compaction_now()).await.unwrap();
    store.write_batch("default", &write(2, 20)).await.unwrap();
    store.close().await;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with(&path, options()).await.unwrap());
    let slot = |s: i64| (bases.five + s * SLOT_MS, 20.0);
    assert_eq!(answer(&*store, "five", bases.five, SLOT_MS, Aggregation::P95).await, [slot(0), slot(1)]);
    store.close().await;
}
