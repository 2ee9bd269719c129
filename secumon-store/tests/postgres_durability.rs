//! Durability of the PostgreSQL store (issue #19): a process writing agents' batches through
//! group commit (with compaction running beside it) is killed with SIGKILL; every batch
//! it acknowledged is in the database after, once, and the ledger and the agents' counts
//! agree with the samples. Runs against `SECUMON_TEST_PG_URL` in a schema of its own.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, PgStore, RangeQuery, SeriesSelector, Store, StoreOptions};
use sqlx::postgres::PgConnectOptions;

const CHILD_URL: &str = "SECUMON_PG_CHILD_URL";
const CHILD_SCHEMA: &str = "SECUMON_PG_CHILD_SCHEMA";
const AGENTS: usize = 32;
const SERIES: usize = 20;

fn batch(agent: usize, sequence: u64, t0: i64) -> IngestBatch {
    IngestBatch {
        agent_id: format!("agent-{agent:03}"),
        sequence,
        host: format!("host-{agent:03}"),
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

fn connect_options(url: &str, schema: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url).unwrap().options([("search_path", schema)])
}

/// The child: 32 agents write concurrently forever, each printing what was acknowledged,
/// while compaction runs every 100 ms (so the kill can land in it too).
#[test]
fn pg_child_writer() {
    let (Ok(url), Ok(schema)) = (std::env::var(CHILD_URL), std::env::var(CHILD_SCHEMA)) else { return };
    let t0: i64 = std::env::var("SECUMON_PG_CHILD_T0").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = StoreOptions { background: false, ..StoreOptions::default() };
        let store = PgStore::connect_with(connect_options(&url, &schema), options).await.unwrap();
        let maintainer = Arc::clone(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                maintainer.maintain(secumon_core::now_ms()).await.unwrap();
            }
        });
        let mut agents = tokio::task::JoinSet::new();
        for agent in 0..AGENTS {
            let store = Arc::clone(&store);
            agents.spawn(async move {
                for sequence in 1.. {
                    store.write_batch("default", &batch(agent, sequence, t0)).await.unwrap();
                    println!("ACK {agent} {sequence}");
                }
            });
        }
        agents.join_next().await.unwrap().unwrap();
    });
}

/// Drops the test's schema however the test ends.
struct Schema {
    url: String,
    name: String,
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA \"{name}\" CASCADE")).execute(&pool).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill_of_a_postgres_writer_once_each() {
    let Ok(url) = std::env::var("SECUMON_TEST_PG_URL") else {
        secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("SECUMON_TEST_PG_URL={url}: {e}"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = Schema { url: url.clone(), name: format!("secumon_crash_{}_{nanos}", std::process::id()) };
    sqlx::query(&format!("CREATE SCHEMA \"{}\"", schema.name)).execute(&pool).await.unwrap();
    pool.close().await;
    let now = secumon_core::now_ms();
    let t0 = now - now % 3_600_000 - 3_600_000;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["pg_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, &url)
        .env(CHILD_SCHEMA, &schema.name)
        .env("SECUMON_PG_CHILD_T0", t0.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: BTreeMap<usize, u64> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < deadline || acked.values().sum::<u64>() < 1_000 {
        let line = lines.next().expect("child still writing").unwrap();
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (agent, sequence) = rest.split_once(' ').unwrap();
            acked.insert(agent.parse().unwrap(), sequence.parse().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL, with groups in flight
    child.wait().unwrap();
    assert_eq!(acked.len(), AGENTS, "every agent was acknowledged some batches");

    let options = StoreOptions { background: false, ..StoreOptions::default() };
    let store = PgStore::connect_with(connect_options(&url, &schema.name), options).await.unwrap();
    // The transactions the kill cut are rolled back by the server once it sees the
    // connections gone; what is left is committed, and compaction goes on from it.
    store.maintain(secumon_core::now_ms()).await.unwrap();
    let query = RangeQuery {
        selector: SeriesSelector::new("crash_metric"),
        start_ms: t0,
        end_ms: t0 + 3_599_999,
        step_ms: 1_000,
        aggregation: Aggregation::Count,
    };
    let mut stored: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for series in store.query_range("default", &query).await.unwrap() {
        for point in &series.points {
            assert_eq!(point.value, 1.0, "{} at {}: doubled", series.series, point.timestamp_ms);
        }
        let host = series.series.labels.get("host").cloned().unwrap_or_default();
        stored
            .entry(host)
            .or_default()
            .push(series.points.iter().map(|p| ((p.timestamp_ms - t0) / 1_000) as u64).collect());
    }
    let agents: BTreeMap<String, u64> =
        store.list_agents("default").await.unwrap().into_iter().map(|a| (a.host, a.batches)).collect();
    let connect = connect_options(&url, &schema.name);
    let pool = sqlx::PgPool::connect_with(connect).await.unwrap();
    for (agent, through) in &acked {
        let host = format!("host-{agent:03}");
        let series = stored.get(&host).unwrap_or_else(|| panic!("{host} lost entirely"));
        assert_eq!(series.len(), SERIES, "{host}");
        let ledger: Vec<i64> =
            sqlx::query_scalar("SELECT sequence FROM ingested_batches WHERE agent_id = $1 ORDER BY sequence")
                .bind(format!("agent-{agent:03}"))
                .fetch_all(&pool)
                .await
                .unwrap();
        // Every acknowledged batch, in order without gaps; beyond it, only a batch whose
        // group committed as the kill landed (each agent has one batch in flight).
        assert!(
            ledger.len() as u64 >= *through && ledger.len() as u64 <= through + 1,
            "{host}: {ledger:?} / {through}"
        );
        for sequences in series {
            assert_eq!(sequences.len(), ledger.len(), "{host}: samples and ledger disagree");
            assert!(sequences.iter().enumerate().all(|(i, s)| *s == i as u64 + 1), "{host}: a gap or a double");
        }
        assert_eq!(agents.get(&host).copied(), Some(ledger.len() as u64), "{host}: the agent's batch count");
    }
    pool.close().await;
    store.close().await;
    eprintln!("{} batches acknowledged before SIGKILL; all present once after", acked.values().sum::<u64>());
}
