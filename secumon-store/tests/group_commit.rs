//! Group commit on the embedded store, with many agents writing at once (issue #18): every
//! batch is answered only once its transaction committed (an independent reader sees it the
//! moment the answer arrives), resends are refused by `(agent_id, sequence)`, commits are
//! shared, and a process killed with SIGKILL in the middle of grouped commits keeps every
//! acknowledged batch, once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, SqliteStore, Store, StoreOptions, WriteOutcome};

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
                Sample::new("group_metric", labels, t0 + sequence as i64 * 1_000, sequence as f64)
            })
            .collect(),
        ..Default::default()
    }
}

fn t0() -> i64 {
    let now = secumon_core::now_ms();
    now - now % 3_600_000 - 3_600_000
}

/// Samples of `group_metric` per host: each series' sequence values, in time order.
async fn stored(store: &SqliteStore, t0: i64) -> BTreeMap<String, Vec<Vec<u64>>> {
    let query = RangeQuery {
        selector: SeriesSelector::new("group_metric"),
        start_ms: t0,
        end_ms: t0 + 100_000_000,
        step_ms: 1_000,
        aggregation: Aggregation::Count,
    };
    let mut hosts: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for series in store.query_range("default", &query).await.unwrap() {
        let host = series.series.labels.get("host").cloned().unwrap_or_default();
        // With one-second steps and one sample a second per series, a doubled batch shows as
        // a count of 2 in its step.
        for point in &series.points {
            assert_eq!(point.value, 1.0, "{} at {}: {} samples", series.series, point.timestamp_ms, point.value);
        }
        let sequences = series.points.iter().map(|p| ((p.timestamp_ms - t0) / 1_000) as u64).collect();
        hosts.entry(host).or_default().push(sequences);
    }
    hosts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_agents_are_acknowledged_after_their_group_commits_and_resends_are_refused() {
    const AGENTS: usize = 64;
    const BATCHES: u64 = 15;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.db");
    let t0 = t0();
    let store = Arc::new(
        SqliteStore::open_with(&path, StoreOptions { background: false, ..StoreOptions::default() }).await.unwrap(),
    );
    // A reader of its own, outside the store: what it sees is what has committed.
    let reader =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path).read_only(true))
            .await
            .unwrap();

    let mut agents = tokio::task::JoinSet::new();
    for agent in 0..AGENTS {
        let (store, reader) = (Arc::clone(&store), reader.clone());
        agents.spawn(async move {
            let mut outcomes = Vec::new();
            for sequence in 1..=BATCHES {
                let batch = batch(agent, sequence, t0);
                // The batch and its resend race each other, as after a reconnect.
                let (first, second) =
                    tokio::join!(store.write_batch("default", &batch), store.write_batch("default", &batch));
                for outcome in [first.unwrap(), second.unwrap()] {
                    let visible: Option<i64> =
                        sqlx::query_scalar("SELECT sequence FROM ingested_batches WHERE agent_id = ? AND sequence = ?")
                            .bind(&batch.agent_id)
                            .bind(sequence as i64)
                            .fetch_optional(&reader)
                            .await
                            .unwrap();
                    assert_eq!(
                        visible,
                        Some(sequence as i64),
                        "{} #{sequence} answered {outcome:?} before it committed",
                        batch.agent_id
                    );
                    outcomes.push(outcome);
                }
            }
            outcomes
        });
    }
    while let Some(outcomes) = agents.join_next().await {
        let outcomes = outcomes.unwrap();
        let committed = outcomes.iter().filter(|o| **o == WriteOutcome::Committed).count();
        let duplicates = outcomes.iter().filter(|o| **o == WriteOutcome::Duplicate).count();
        assert_eq!((committed, duplicates), (BATCHES as usize, BATCHES as usize), "{outcomes:?}");
    }

    // Every batch once, in the ledger and in the samples.
    let ledger: Vec<(String, i64)> =
        sqlx::query_as("SELECT agent_id, sequence FROM ingested_batches").fetch_all(&reader).await.unwrap();
    assert_eq!(ledger.len(), AGENTS * BATCHES as usize);
    let hosts = stored(&store, t0).await;
    assert_eq!(hosts.len(), AGENTS);
    for (host, series) in &hosts {
        assert_eq!(series.len(), SERIES, "{host}");
        for sequences in series {
            assert_eq!(*sequences, (1..=BATCHES).collect::<Vec<_>>(), "{host}");
        }
    }
    // The agents table counted each batch once, duplicates not at all.
    let agents = store.list_agents("default").await.unwrap();
    assert_eq!(agents.len(), AGENTS);
    assert!(agents.iter().all(|a| a.batches == BATCHES && a.last_sequence == BATCHES), "{agents:?}");
}

const CHILD_ENV: &str = "SECUMON_GROUP_CHILD_DB";
const CHILD_AGENTS: usize = 32;

/// The child: 32 agents write concurrently forever, each printing what was acknowledged.
#[test]
fn group_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let t0: i64 = std::env::var("SECUMON_GROUP_T0").unwrap().parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = StoreOptions { head_max_samples: 20_000, ..StoreOptions::default() };
        let store = Arc::new(SqliteStore::open_with(std::path::Path::new(&path), options).await.unwrap());
        let mut agents = tokio::task::JoinSet::new();
        for agent in 0..CHILD_AGENTS {
            let store = Arc::clone(&store);
            agents.spawn(async move {
                for sequence in 1.. {
                    store.write_batch("default", &batch(agent, sequence, t0)).await.unwrap();
                    println!("ACK {agent} {sequence}");
                }
            });
        }
        agents.join_next().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_acknowledged_batches_survive_sigkill_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let t0 = t0();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["group_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .env("SECUMON_GROUP_T0", t0.to_string())
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
    assert_eq!(acked.len(), CHILD_AGENTS, "every agent was acknowledged some batches");

    let store = SqliteStore::open_with(&path, StoreOptions { background: false, ..Default::default() }).await.unwrap();
    let hosts = stored(&store, t0).await;
    let mut seen = BTreeSet::new();
    for (agent, through) in &acked {
        let host = format!("host-{agent:03}");
        let series = hosts.get(&host).unwrap_or_else(|| panic!("{host} lost entirely"));
        assert_eq!(series.len(), SERIES, "{host}");
        for sequences in series {
            // Every acknowledged batch, in order without gaps; beyond it, only batches whose
            // group committed as the kill landed.
            assert!(sequences.len() as u64 >= *through, "{host}: {} of {through} acknowledged", sequences.len());
            assert!(sequences.iter().enumerate().all(|(i, s)| *s == i as u64 + 1), "{host}: a gap or a double");
        }
        seen.insert(host);
    }
    assert_eq!(seen.len(), CHILD_AGENTS);
    eprintln!("{} batches acknowledged before SIGKILL; all present once after restart", acked.values().sum::<u64>());
}

/// A batch over its tenant's series limit leaves the group it was committed with: its rows go,
/// the other batches of the group (the same tenant's within the limit, other tenants') stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_series_limit_leaves_its_group_and_the_others_commit() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { max_series_per_tenant: (SERIES * 2) as u64, ..StoreOptions::default() };
    let store = Arc::new(SqliteStore::open_with(&dir.path().join("s.db"), options).await.unwrap());
    let t0 = t0();
    // Each of "small"'s batches brings SERIES new series (its host label differs), so only
    // two of the five fit; "big"'s agents all report one host, SERIES series in all, so every
    // batch fits, whatever the order of the group.
    let mut writers = Vec::new();
    for agent in 0..10 {
        let store = Arc::clone(&store);
        let tenant = if agent % 2 == 0 { "small" } else { "big" };
        let mut batch = batch(agent, 1, t0);
        if tenant == "big" {
            batch.host = "shared".into();
        }
        writers.push(tokio::spawn(async move { (tenant, store.write_batch(tenant, &batch).await) }));
    }
    let mut committed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused = 0;
    for writer in writers {
        match writer.await.unwrap() {
            (tenant, Ok(WriteOutcome::Committed)) => *committed.entry(tenant).or_default() += 1,
            (_, Err(secumon_store::StoreError::SeriesLimit { .. })) => refused += 1,
            (tenant, other) => panic!("{tenant}: {other:?}"),
        }
    }
    assert_eq!(committed.get("big"), Some(&5));
    assert_eq!((committed.get("small"), refused), (Some(&2), 3));
    // What was refused left nothing behind: series and the ledger match what was answered.
    let series: i64 =
        sqlx_count(&dir.path().join("s.db"), "SELECT count(*) FROM series WHERE tenant_id = 'small'").await;
    assert_eq!(series, (SERIES * 2) as i64);
    let ledger: i64 = sqlx_count(&dir.path().join("s.db"), "SELECT count(*) FROM ingested_batches").await;
    assert_eq!(ledger, 7);
}

async fn sqlx_count(path: &std::path::Path, sql: &str) -> i64 {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path).read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
}
