//! The shared store suite against PostgreSQL at `SECUMON_TEST_PG_URL` (set by
//! `scripts/test`), each test in a schema of its own that is dropped afterwards. Without
//! the variable every test fails under `SECUMON_TEST_STRICT=1` and is skipped otherwise.

mod suite;

use std::str::FromStr;
use std::sync::Arc;

use secumon_store::{PgStore, Store, StoreOptions};
use sqlx::postgres::PgConnectOptions;

struct Postgres {
    url: String,
    schema: String,
}

#[async_trait::async_trait]
impl suite::Backend for Postgres {
    async fn open_with(&self, options: StoreOptions) -> Arc<dyn Store> {
        let connect = PgConnectOptions::from_str(&self.url).unwrap().options([("search_path", self.schema.as_str())]);
        PgStore::connect_with(connect, options).await.unwrap()
    }

    async fn fail_deletes(&self, table: &str, fail: bool) {
        let connect = PgConnectOptions::from_str(&self.url).unwrap().options([("search_path", self.schema.as_str())]);
        let pool = sqlx::PgPool::connect_with(connect).await.unwrap();
        let statements = if fail {
            vec![
                "CREATE OR REPLACE FUNCTION fail_delete() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"
                    .to_string(),
                format!(
                    "CREATE TRIGGER fail_delete_{table} BEFORE DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION fail_delete()"
                ),
            ]
        } else {
            vec![format!("DROP TRIGGER fail_delete_{table} ON {table}")]
        };
        for statement in statements {
            sqlx::query(&statement).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    async fn hold_writes(&self) -> tokio::sync::oneshot::Sender<()> {
        use sqlx::Connection;
        let connect = PgConnectOptions::from_str(&self.url).unwrap().options([("search_path", self.schema.as_str())]);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (held, is_held) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect_with(&connect).await.unwrap();
            // EXCLUSIVE lets readers through and makes every insert into the ledger (the
            // first statement of an agent's batch) wait until the rollback.
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE ingested_batches IN EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
            held.send(()).unwrap();
            let _ = released.await;
            sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        });
        is_held.await.unwrap();
        release
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime: clean up from a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                // A test that failed may leave its store open: never wait on its locks.
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let mut conn = pool.acquire().await.unwrap();
                    let _ = sqlx::query("SET lock_timeout = '5s'").execute(&mut *conn).await;
                    let _ = sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&mut *conn).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

async fn postgres() -> Option<Postgres> {
    let url = std::env::var("SECUMON_TEST_PG_URL").ok()?;
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("SECUMON_TEST_PG_URL={url}: {e}"));
    let schema = format!("secumon_test_{}_{}", std::process::id(), rand_suffix());
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&pool).await.unwrap();
    pool.close().await;
    Some(Postgres { url, schema })
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    hasher.finish()
}

store_suite!(postgres);

/// Row-level security is a second wall: a tenant session that forgets its filter still
/// sees and changes only its own rows.
#[tokio::test]
async fn row_level_security_hides_other_tenants_without_a_filter() {
    let Some(backend) = postgres().await else {
        secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        return;
    };
    let store = suite::Backend::open(&backend).await;
    for (tenant, agent) in [("acme", "a1"), ("globex", "g1")] {
        let batch = secumon_core::IngestBatch {
            agent_id: agent.into(),
            sequence: 1,
            host: format!("{tenant}-web"),
            samples: vec![secumon_core::Sample::new("load1", Default::default(), secumon_core::now_ms(), 1.0)],
            ..Default::default()
        };
        store.write_batch(tenant, &batch).await.unwrap();
    }
    let connect = PgConnectOptions::from_str(&backend.url).unwrap().options([("search_path", backend.schema.as_str())]);
    let pool = sqlx::PgPool::connect_with(connect).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('secumon.tenant', 'acme', true)").execute(&mut *tx).await.unwrap();
    sqlx::query("SET LOCAL ROLE secumon_tenant").execute(&mut *tx).await.unwrap();
    let hosts: Vec<String> = sqlx::query_scalar("SELECT host FROM agents").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(hosts, vec!["acme-web"]);
    let series: i64 =
        sqlx::query_scalar("SELECT count(*) FROM series WHERE tenant_id = 'globex'").fetch_one(&mut *tx).await.unwrap();
    assert_eq!(series, 0);
    let changed = sqlx::query("UPDATE agents SET host = 'stolen'").execute(&mut *tx).await.unwrap().rows_affected();
    assert_eq!(changed, 1, "only acme's own agent");
    let write =
        sqlx::query("INSERT INTO component_state (tenant_id, key, value, updated_ms) VALUES ('globex', 'k', 'v', 0)")
            .execute(&mut *tx)
            .await;
    assert!(write.unwrap_err().to_string().contains("row-level security"));
    drop(tx);
    pool.close().await;
    assert_eq!(store.list_agents("globex").await.unwrap()[0].host, "globex-web");
    store.close().await;
}

/// A batch PostgreSQL itself rejects (a NUL byte in a log line: `text` cannot hold one) in
/// the middle of a group (batches are written in agent order: some before it, some after)
/// fails alone: the batches it was grouped with commit, each caller gets its own answer, and
/// nothing of the rejected batch stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_database_rejects_fails_alone_in_its_group() {
    let Some(backend) = postgres().await else {
        secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
        return;
    };
    let store = suite::Backend::open(&backend).await;
    let now = secumon_core::now_ms();
    let batch = |agent: &str, line: &str| secumon_core::IngestBatch {
        agent_id: agent.into(),
        sequence: 1,
        host: agent.into(),
        samples: vec![secumon_core::Sample::new("load1", Default::default(), now, 1.0)],
        logs: vec![secumon_core::LogRecord {
            timestamp_ms: now,
            source: "syslog".into(),
            labels: Default::default(),
            line: line.into(),
        }],
        ..Default::default()
    };
    let hold = suite::Backend::hold_writes(&backend).await;
    let mut writers = tokio::task::JoinSet::new();
    // Eight take the leaders' places and wait on the lock; the rest queue into one group.
    for n in 0..8 {
        let store = Arc::clone(&store);
        let blocker = batch(&format!("blocker-{n}"), "ok");
        writers.spawn(async move { (blocker.agent_id.clone(), store.write_batch("acme", &blocker).await) });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for name in ["a-good-1", "m-bad", "z-good-2", "z-good-3"] {
        let store = Arc::clone(&store);
        let line = if name == "m-bad" { "a NUL \0 byte" } else { "fine" };
        let batch = batch(name, line);
        writers.spawn(async move { (batch.agent_id.clone(), store.write_batch("acme", &batch).await) });
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(hold);
    while let Some(done) = writers.join_next().await {
        let (agent, outcome) = done.unwrap();
        if agent == "m-bad" {
            let error = outcome.unwrap_err();
            assert!(matches!(error, secumon_store::StoreError::Database(_)), "{error:?}");
        } else {
            assert_eq!(outcome.unwrap(), secumon_store::WriteOutcome::Committed, "{agent}");
        }
    }
    let mut agents: Vec<String> = store.list_agents("acme").await.unwrap().into_iter().map(|a| a.agent_id).collect();
    agents.sort();
    assert_eq!(agents.len(), 11, "{agents:?}");
    assert!(!agents.contains(&"m-bad".to_string()));
    // Not in the ledger either: the batch, corrected, is taken.
    let fixed = batch("m-bad", "no NUL now");
    assert_eq!(store.write_batch("acme", &fixed).await.unwrap(), secumon_store::WriteOutcome::Committed);
    store.close().await;
}
