//! The PostgreSQL backend, for production: the same [`Store`] as the embedded one.
//!
//! Samples land as rows in the `samples` head table (range-partitioned by day), written
//! with `UNNEST` arrays, one statement per group of batches; compaction (compaction.rs)
//! moves the head's closed windows into pco blocks per series per two-hour window, with the
//! window's 5-minute and hourly rollups as blocks too; queries merge blocks, rollups and the
//! head through the logic both backends share (blocks.rs). Partitions of the head and of the
//! blocks are dropped whole when the longest raw retention of any tenant passes; tenants
//! that keep theirs shorter have their rows deleted, in slices.
//! Agents' batches are group-committed (group.rs): those that queue while a transaction
//! commits share the next one, on a few lanes of the pool at once (see `commit_group`). Request paths run as the `secumon_tenant` role with the caller's tenant
//! set, so row-level security stands behind every tenant filter.
//! TimescaleDB is not used: this backend needs only stock PostgreSQL (≥ 13).

mod compaction;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use secumon_core::{Finding, IngestBatch, Labels, LogRecord, Sample, SeriesKey, Severity, now_ms};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::audit::{AuditRow, entry_from_row};
use crate::blocks::{BLOCK_WINDOW_MS, StoredWindow, answer, settle, window_of};
use crate::codec::{decode_chunk, decode_summaries};
use crate::findings_import::{PriorState, assets, open_samples, open_values, summary, unique_findings};
use crate::group::GroupCommit;
use crate::ingest::{SeriesBudget, SeriesCache, Unresolved, refuse_future_samples};
use crate::logs::{LogCursor, LogEntry, LogOrder, LogScan};
use crate::query::{Point, RangeQuery, SeriesPoints, Summary, bucket_of};
use crate::records::{
    self, CheckRow, CheckRunsRow, FindingEvent, FindingRow, admitted_severities, critical_finding_events,
    finding_from_row, latest_check, status_text,
};
use crate::retention::{Owners, RETENTION_KIND, SampleTier, TenantRetentions};
use crate::{
    AgentFilter, AgentRecord, AgentRow, AlertHistoryEntry, AuditEntry, AuditFilter, CheckRuns, FIVE_MINUTES_MS,
    FindingFilter, FindingsImport, ImportSummary, LatestCheck, MaintenanceCounters, MaintenanceHealth,
    MaintenanceReport, MaintenanceTask, ONE_HOUR_MS, RecordSwap, Store, StoreError, StoreOptions, StoredRecord, Tier,
    TierRetention, WriteOutcome,
};
use compaction::{WindowKey, read_windows};

/// Stores a document, replacing any under its `(tenant, kind, id)`.
const UPSERT_RECORD: &str = "INSERT INTO records (tenant_id, kind, id, body, updated_ms) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (tenant_id, kind, id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms";

const DAY_MS: i64 = 86_400_000;
/// Rows per `UNNEST` statement of a findings import (findings, series, events).
const STAGE_PER_INSERT: usize = 10_000;

/// An agent row with the count of all rows its query matched.
#[derive(sqlx::FromRow)]
struct CountedAgentRow {
    #[sqlx(flatten)]
    agent: AgentRow,
    total: i64,
}
/// Groups of agents' batches committing at once, each on a connection of the pool's
/// [`POOL_CONNECTIONS`]: the rest stay free for queries, records and maintenance.
const GROUP_LANES: usize = 4;
/// Whether groups whose series are all known are written in a few statements for the whole
/// group ([`PgStore::try_fast_group`]) rather than batch by batch.
const FAST_GROUP_PATH: bool = true;
/// Connections to the database.
const POOL_CONNECTIONS: u32 = 8;
/// How often the background task compacts and applies retention.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// Background passes compact the head this often: each compaction adds a block per series
/// per window (merged when the window closes), so ten minutes make a dozen blocks of ~60
/// samples a window at a 10 s interval, while the head holds ten minutes of rows.
const COMPACT_EVERY: u32 = 10;
/// Rows deleted per retention statement, so other writers interleave.
const EXPIRE_SLICE: i64 = 10_000;
/// Retention passes between full sweeps of a tenant group's older data (in between, a pass
/// deletes only what aged past its horizon since the last pass).
const FULL_SWEEP_EVERY: u64 = 60;

/// Where a tenant group's deletes of one tier stand: the group, its horizon, and the tier.
type SweepKey = (SampleTier, Owners, i64);

/// The PostgreSQL backend: [`Store`] over a connection pool, for servers that share one
/// database or outgrow one file.
pub struct PgStore {
    pool: PgPool,
    options: StoreOptions,
    series_ids: SeriesCache<i64>,
    /// Series per tenant against the limit. Counted per server: servers sharing the
    /// database may each let a batch through at the edge, so a tenant may pass the limit
    /// by a few batches' worth.
    series_budget: SeriesBudget,
    /// Partitions (parent table, day) known to exist.
    partitions: Mutex<HashSet<(&'static str, i64)>>,
    /// Agents' batches queued for the next group transaction (see group.rs).
    group: GroupCommit<Queued, Result<WriteOutcome, StoreError>>,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Outcomes of maintenance passes, by task.
    health: MaintenanceCounters,
    /// Every tenant's retention of samples per tier, read again at each retention pass.
    retentions: TenantRetentions,
    /// Per tenant group and tier, the cutoff below which its rows are known deleted, and the
    /// passes since the last full sweep (when these start again from nothing: a sample
    /// written late into an old partition is caught by the next full sweep).
    swept: Mutex<(HashMap<SweepKey, i64>, u64)>,
    /// `postgres://host:port/database`, without credentials.
    location: String,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) with default options.
    pub async fn connect(url: &str) -> Result<std::sync::Arc<Self>, StoreError> {
        Self::connect_url_with(url, StoreOptions::default()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_url_with(url: &str, options: StoreOptions) -> Result<std::sync::Arc<Self>, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open { path: redact(url), reason: e.to_string() })?;
        Self::connect_with(connect, options).await
    }

    /// Connects, applies migrations and, if `options.background`, starts the rollup and
    /// retention job.
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: StoreOptions,
    ) -> Result<std::sync::Arc<Self>, StoreError> {
        let location = format!(
            "postgres://{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Open { path: "postgres".into(), reason: e.to_string() })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let background = options.background;
        let series_budget = SeriesBudget::new(options.max_series_per_tenant);
        let max_group_batches = options.max_group_batches;
        let store = std::sync::Arc::new(Self {
            pool,
            series_ids: SeriesCache::default(),
            series_budget,
            partitions: Mutex::new(HashSet::new()),
            group: GroupCommit::with_lanes(max_group_batches, GROUP_LANES),
            background: Mutex::new(None),
            health: MaintenanceCounters::default(),
            retentions: TenantRetentions::new(options.retention),
            swept: Mutex::new((HashMap::new(), 0)),
            options,
            location,
        });
        store.load_retentions().await?;
        store.upgrade_layout().await?;
        if background {
            let weak = std::sync::Arc::downgrade(&store);
            let task = tokio::spawn(async move {
                // Counted (`maintenance_health`); logged once per episode, then every 10 passes.
                let mut failed_in_a_row = 0u64;
                let mut passes = 0u32;
                loop {
                    tokio::time::sleep(MAINTENANCE_EVERY).await;
                    let Some(store) = weak.upgrade() else { return };
                    passes = passes.wrapping_add(1);
                    match store.maintenance_pass(now_ms(), passes.is_multiple_of(COMPACT_EVERY)).await {
                        Ok(_) if failed_in_a_row > 0 => {
                            failed_in_a_row = 0;
                            tracing::info!("postgres store maintenance works again");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            if failed_in_a_row.is_multiple_of(10) {
                                tracing::error!(%error, health = ?store.health.snapshot(),
                                    "postgres store maintenance failed; retrying later \
                                     (secumon_store_maintenance_failures_total)");
                            } else {
                                tracing::debug!(%error, "postgres store maintenance failed again");
                            }
                            failed_in_a_row += 1;
                        }
                    }
                }
            });
            *store.background.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(store)
    }

    /// A transaction scoped to `tenant`: row-level security applies from here on.
    async fn tenant_tx(&self, tenant: &str) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        enter_tenant(&mut tx, tenant).await?;
        Ok(tx)
    }

    /// Creates the day partitions of `parent` (`samples`, the head, or `blocks`) that
    /// `timestamps` fall in, outside any batch transaction.
    async fn ensure_partitions(
        &self,
        parent: &'static str,
        timestamps: impl Iterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let days: BTreeSet<i64> = timestamps.map(|ts| ts.div_euclid(DAY_MS)).collect();
        let missing: Vec<i64> = {
            let known = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
            days.into_iter().filter(|d| !known.contains(&(parent, *d))).collect()
        };
        for day in missing {
            let create = format!(
                "CREATE TABLE IF NOT EXISTS \"{parent}_d{day}\" PARTITION OF {parent} FOR VALUES FROM ({}) TO ({})",
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            if let Err(error) = sqlx::query(&create).execute(&self.pool).await {
                // Another writer creating the same partition at the same moment is fine.
                let racing = error
                    .as_database_error()
                    .and_then(|e| e.code())
                    .is_some_and(|code| code == "42P07" || code == "23505");
                if !racing {
                    return Err(error.into());
                }
            }
            self.partitions.lock().unwrap_or_else(|p| p.into_inner()).insert((parent, day));
        }
        Ok(())
    }

    /// The days `parent`'s partitions cover, in order.
    async fn partition_days(&self, parent: &str) -> Result<Vec<i64>, StoreError> {
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = $1 AND p.relnamespace = current_schema()::regnamespace",
        )
        .bind(parent)
        .fetch_all(&self.pool)
        .await?;
        let prefix = format!("{parent}_d");
        let mut days: Vec<i64> = partitions
            .iter()
            .filter_map(|name| name.strip_prefix(prefix.as_str()).and_then(|d| d.parse::<i64>().ok()))
            .collect();
        days.sort_unstable();
        Ok(days)
    }

    /// Inserts samples in the caller's transaction under a fresh write sequence.
    async fn insert_samples(
        &self,
        conn: &mut PgConnection,
        ids: &[i64],
        samples: &[Cow<'_, Sample>],
    ) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let write_seq: i64 = sqlx::query_scalar("SELECT nextval('sample_writes')").fetch_one(&mut *conn).await?;
        // One row per series and timestamp, the batch's last: rows of one batch share a write
        // sequence, which could not tell which of two came last.
        let mut last_of_each: HashMap<(i64, i64), usize> = HashMap::with_capacity(samples.len());
        for (index, (id, sample)) in ids.iter().zip(samples).enumerate() {
            last_of_each.insert((*id, sample.timestamp_ms), index);
        }
        let mut kept: Vec<usize> = last_of_each.into_values().collect();
        kept.sort_unstable();
        let ids: Vec<i64> = kept.iter().map(|&i| ids[i]).collect();
        let timestamps: Vec<i64> = kept.iter().map(|&i| samples[i].timestamp_ms).collect();
        let values: Vec<f64> = kept.iter().map(|&i| samples[i].value).collect();
        sqlx::query(
            "INSERT INTO samples (series_id, ts, value, write_seq) \
             SELECT s, t, v, $4 FROM UNNEST($1::int8[], $2::int8[], $3::float8[]) AS u(s, t, v)",
        )
        .bind(&ids)
        .bind(&timestamps)
        .bind(&values)
        .bind(write_seq)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// One maintenance pass: compaction (when `compact`) and retention, in the one process of
    /// those sharing the database that holds the maintenance lock; the others skip it.
    async fn maintenance_pass(&self, now_ms: i64, compact: bool) -> Result<MaintenanceReport, StoreError> {
        // One process of those sharing the database at a time; the others skip the pass.
        let mut lock = self.pool.begin().await?;
        let ours: bool = sqlx::query_scalar(compaction::TRY_MAINTENANCE_LOCK).fetch_one(&mut *lock).await?;
        if !ours {
            return Ok(MaintenanceReport::default());
        }
        let compaction = async {
            if !compact {
                return Ok((0, 0));
            }
            Ok((self.compact(now_ms).await?, self.merge_closed(now_ms).await?))
        }
        .await;
        self.health.record(MaintenanceTask::Compaction, &compaction);
        let (compacted_samples, merged_chunks) = compaction?;
        let expired = self.expire(now_ms).await;
        self.health.record(MaintenanceTask::Retention, &expired);
        lock.rollback().await?;
        Ok(MaintenanceReport { compacted_samples, merged_chunks, expired_rows: expired? })
    }

    /// Reads every tenant's own retention policy from the records.
    async fn load_retentions(&self) -> Result<(), StoreError> {
        let rows = sqlx::query_as("SELECT tenant_id, body FROM records WHERE kind = $1")
            .bind(RETENTION_KIND)
            .fetch_all(&self.pool)
            .await?;
        self.retentions.load(rows);
        Ok(())
    }

    /// Deletes rows `delete` picks (`$1` cutoff, `$2` slice, then the extra binds), a slice
    /// at a time, so no statement holds locks on a large part of a table.
    async fn delete_sliced(&self, delete: &str, cutoff_ms: i64, owners: Option<&Owners>) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let slice = sqlx::query(delete).bind(cutoff_ms).bind(EXPIRE_SLICE);
            let slice = match owners {
                None => slice,
                Some(Owners::Tenant(tenant)) => slice.bind(tenant),
                Some(Owners::AllBut(tenants)) => slice.bind(tenants),
            };
            let done = slice.execute(&self.pool).await?.rows_affected();
            deleted += done;
            if done < EXPIRE_SLICE as u64 {
                return Ok(deleted);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Drops head and block partitions past the longest raw retention of any tenant, deletes
    /// the rows of tenants with shorter ones (partition by partition, only partitions that
    /// aged past the group's horizon since the last pass), expired rollup blocks and expired
    /// rows elsewhere.
    async fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        // Other server processes may have changed a policy: the records are the truth.
        self.load_retentions().await?;
        let r = &self.options.retention;
        let (mut swept, plans) = {
            let mut guard = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            guard.1 += 1;
            if guard.1 >= FULL_SWEEP_EVERY {
                *guard = (HashMap::new(), 0);
            }
            (guard.0.clone(), SampleTier::ALL.map(|tier| (tier, self.retentions.plan(tier))))
        };
        let mut next_swept = HashMap::new();
        let owned = |owners: &Owners| match owners {
            Owners::Tenant(_) => "tenant_id = $3",
            Owners::AllBut(_) => "tenant_id <> ALL($3)",
        };
        let mut expired = 0;
        for (tier, plan) in &plans {
            if *tier != SampleTier::Raw {
                continue;
            }
            // Where each tenant group's last pass stopped (the same for head and blocks).
            let froms: Vec<i64> = plan
                .groups
                .iter()
                .map(|(owners, keep_ms)| swept.remove(&(*tier, owners.clone(), *keep_ms)).unwrap_or(i64::MIN))
                .collect();
            // The head (compaction has moved what is older than a few hours) and the blocks,
            // by the newest sample a row holds.
            for (parent, newest) in [("samples", "ts"), ("blocks", "max_ts")] {
                let mut kept = Vec::new();
                for day in self.partition_days(parent).await? {
                    if (day + 1) * DAY_MS > now_ms - plan.longest_ms {
                        kept.push(day);
                        continue;
                    }
                    let name = format!("{parent}_d{day}");
                    expired += sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM \"{name}\""))
                        .fetch_one(&self.pool)
                        .await? as u64;
                    sqlx::query(&format!("DROP TABLE \"{name}\"")).execute(&self.pool).await?;
                    self.partitions.lock().unwrap_or_else(|p| p.into_inner()).remove(&(parent, day));
                }
                for ((owners, keep_ms), from) in plan.groups.iter().zip(&froms) {
                    let cutoff = now_ms - keep_ms;
                    for day in kept.iter().filter(|day| **day * DAY_MS < cutoff && (**day + 1) * DAY_MS > *from) {
                        let name = format!("{parent}_d{day}");
                        let delete = format!(
                            "DELETE FROM \"{name}\" WHERE ctid IN (SELECT ctid FROM \"{name}\" WHERE {newest} < $1 \
                             AND series_id IN (SELECT id FROM series WHERE {}) LIMIT $2)",
                            owned(owners)
                        );
                        expired += self.delete_sliced(&delete, cutoff, Some(owners)).await?;
                    }
                }
            }
            for (owners, keep_ms) in &plan.groups {
                next_swept.insert((*tier, owners.clone(), *keep_ms), now_ms - keep_ms);
            }
        }
        // Rollup blocks go once the last bucket of their window is past the horizon.
        let window = crate::blocks::BLOCK_WINDOW_MS;
        for (tier, plan) in &plans {
            let table = match tier {
                SampleTier::Raw => continue,
                SampleTier::FiveMinutes => "rollup_5m_blocks",
                SampleTier::OneHour => "rollup_1h_blocks",
            };
            let delete = format!(
                "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE window_start <= $1 - {window} LIMIT $2)"
            );
            expired += self.delete_sliced(&delete, now_ms.saturating_sub(plan.longest_ms), None).await?;
            for (owners, keep_ms) in &plan.groups {
                let key = (*tier, owners.clone(), *keep_ms);
                let cutoff = now_ms - keep_ms;
                // By the age index from where the last pass stopped: a group's older rows are gone.
                let from = swept.remove(&key).unwrap_or(i64::MIN).saturating_sub(window);
                let delete = format!(
                    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE window_start > {from} \
                     AND window_start <= $1 - {window} AND series_id IN (SELECT id FROM series WHERE {}) LIMIT $2)",
                    owned(owners)
                );
                expired += self.delete_sliced(&delete, cutoff, Some(owners)).await?;
                next_swept.insert(key, cutoff);
            }
        }
        for (delete, keep_ms) in [
            ("DELETE FROM check_results WHERE ts < $1", r.raw_ms),
            ("DELETE FROM logs WHERE ts < $1", r.logs_ms),
            ("DELETE FROM events WHERE ts < $1", r.events_ms),
            ("DELETE FROM alert_history WHERE ts < $1", r.alerts_ms),
            ("DELETE FROM audit_log WHERE ts < $1", r.audit_ms),
            ("DELETE FROM ingested_batches WHERE committed_at_ms < $1", r.raw_ms),
        ] {
            expired +=
                sqlx::query(delete).bind(now_ms.saturating_sub(keep_ms)).execute(&self.pool).await?.rows_affected();
        }
        // Only a pass that got this far knows every group clean up to its cutoff.
        self.swept.lock().unwrap_or_else(|p| p.into_inner()).0 = next_swept;
        Ok(expired)
    }

    /// Ids for `keys` (distinct), creating missing series inside the caller's transaction, in order.
    /// Ids of `keys`, creating the missing series, and how many it created.
    async fn resolve_series(
        conn: &mut PgConnection,
        tenant: &str,
        keys: &[SeriesKey],
    ) -> Result<(Vec<i64>, u64), StoreError> {
        if keys.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        let labels: Vec<String> = keys.iter().map(|k| serde_json::to_string(&k.labels)).collect::<Result<_, _>>()?;
        // The host label in a column of its own: a host's series are found by an index.
        let hosts: Vec<Option<&str>> = keys.iter().map(|k| k.labels.get("host").map(String::as_str)).collect();
        // One statement that inserts new series and returns every id: a join against
        // `series` would be planned from stale statistics while the table grows fast.
        // Sorted inserts: concurrent batches creating the same series cannot deadlock.
        // `xmax = 0`: the row is new (an updated one carries this transaction's id).
        let rows: Vec<(String, String, i64, bool)> = sqlx::query_as(
            "INSERT INTO series (tenant_id, name, labels, host) \
             SELECT $1, n, l, h FROM UNNEST($2::text[], $3::text[], $4::text[]) AS u(n, l, h) ORDER BY n, l \
             ON CONFLICT (tenant_id, name, labels) DO UPDATE SET name = excluded.name \
             RETURNING name, labels, id, (xmax = 0)",
        )
        .bind(tenant)
        .bind(&names)
        .bind(&labels)
        .bind(&hosts)
        .fetch_all(&mut *conn)
        .await?;
        let created = rows.iter().filter(|row| row.3).count() as u64;
        let by_key: HashMap<(&str, &str), i64> =
            rows.iter().map(|(n, l, id, _)| ((n.as_str(), l.as_str()), *id)).collect();
        let ids = names
            .iter()
            .zip(&labels)
            .map(|(name, labels)| {
                by_key.get(&(*name, labels.as_str())).copied().ok_or(StoreError::Database(sqlx::Error::RowNotFound))
            })
            .collect::<Result<Vec<i64>, StoreError>>()?;
        Ok((ids, created))
    }
}

/// Switches the transaction to the tenant role with `tenant` set, for row-level security.
async fn enter_tenant(conn: &mut PgConnection, tenant: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('secumon.tenant', $1, true)").bind(tenant).execute(&mut *conn).await?;
    sqlx::query("SET LOCAL ROLE secumon_tenant").execute(&mut *conn).await?;
    Ok(())
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    if let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@'))
        && let Some((user, _)) = url[scheme_end + 3..at].split_once(':')
    {
        return format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]);
    }
    url.to_string()
}

/// A batch waiting for the next group commit.
struct Queued {
    tenant: String,
    batch: IngestBatch,
}

/// What one batch left in a group's transaction.
enum Written {
    Duplicate,
    /// Refused before it wrote anything (its tenant, the series limit).
    Refused(StoreError),
    Committed {
        learned: Vec<(SeriesKey, i64)>,
        created: u64,
    },
}

/// Why a group's transaction did not commit.
enum GroupFailure {
    /// One batch's statement failed (a value the database rejects, a deadlock): the
    /// transaction is rolled back and the group is written again without that batch.
    Batch(usize, StoreError),
    /// The transaction itself failed (the connection, the commit): every batch left fails.
    Whole(StoreError),
}

/// Group commit (see group.rs): the batches of many agents share one transaction and its
/// commit, and each is answered only after that commit. A batch is refused (another
/// tenant's agent id, the series limit) before it writes anything, so a refusal leaves the
/// others' rows alone; a batch whose statement fails aborts the transaction, which is
/// rolled back and written again without it. No savepoints: a subtransaction per batch
/// would pass PostgreSQL's 64 cached subtransaction ids in a big group and slow every other
/// session's snapshots while the group is open.
impl PgStore {
    async fn commit_group(&self, group: Vec<Queued>) -> Vec<Result<WriteOutcome, StoreError>> {
        let mut results: Vec<Option<Result<WriteOutcome, StoreError>>> = group.iter().map(|_| None).collect();
        // Partitions are made outside the transaction (DDL would hold a lock on `samples`
        // until the group commits); a batch whose partition cannot be made fails alone.
        for (queued, result) in group.iter().zip(results.iter_mut()) {
            if let Err(error) =
                self.ensure_partitions("samples", queued.batch.metric_samples().map(|s| s.timestamp_ms)).await
            {
                *result = Some(Err(error));
            }
        }
        // Agents' rows (and their series) are locked in one order by every group (tenant,
        // agent, sequence), so groups committing at once on other lanes wait for each other
        // instead of deadlocking.
        let mut left: Vec<usize> = (0..group.len()).filter(|&i| results[i].is_none()).collect();
        left.sort_by(|&a, &b| {
            let (a, b) = (&group[a], &group[b]);
            (&a.tenant, &a.batch.agent_id, a.batch.sequence).cmp(&(&b.tenant, &b.batch.agent_id, b.batch.sequence))
        });
        // Set when the store itself failed (the connection, the disk): nothing of the group
        // committed, and writing it again batch by batch would only wait for the store again.
        let mut store_failed: Option<StoreError> = None;
        match if FAST_GROUP_PATH { self.try_fast_group(&group, &left).await } else { Ok(None) } {
            Ok(Some(written)) => {
                for (index, result) in written {
                    results[index] = Some(result);
                }
                left.clear();
            }
            Ok(None) => {}
            Err(error) if error.fault().is_some_and(|fault| !matches!(fault, crate::StoreFault::Busy)) => {
                store_failed = Some(error);
            }
            Err(error) => {
                tracing::debug!(%error, batches = left.len(), "a group failed; writing it again batch by batch");
            }
        }
        while store_failed.is_none() && !left.is_empty() {
            match self.try_commit_group(&group, &left).await {
                Ok(written) => {
                    for (index, result) in written {
                        results[index] = Some(result);
                    }
                    left.clear();
                }
                Err(GroupFailure::Batch(failed, error)) => {
                    tracing::warn!(%error, agent = %group[failed].batch.agent_id,
                        "a batch failed in its group; the group is written again without it");
                    results[failed] = Some(Err(error));
                    left.retain(|&index| index != failed);
                }
                Err(GroupFailure::Whole(error)) => store_failed = Some(error),
            }
        }
        if let Some(error) = store_failed {
            // Nothing of the group committed: every batch left is answered with the error (its
            // agent resends; any stored before are refused as duplicates).
            let (fault, message) = (error.fault(), error.to_string());
            let mut error = Some(error);
            for &index in &left {
                results[index] = Some(match error.take() {
                    Some(error) => Err(error),
                    None => Err(StoreError::Group { fault, message: message.clone() }),
                });
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(StoreError::Group { fault: None, message: "the batch was left out of its group".into() })
                })
            })
            .collect()
    }

    /// The group in a few statements for all its batches, when every series of every batch
    /// is known (the steady state: agents send the same series every interval), so that
    /// nothing is created and no series limit can refuse a batch. None when a series is
    /// not known: the per-batch path counts and creates them. An error leaves the caller
    /// to write the group again batch by batch, which finds the batch at fault (whether
    /// this transaction committed or not: a batch that did is then a duplicate).
    async fn try_fast_group(
        &self,
        group: &[Queued],
        order: &[usize],
    ) -> Result<Option<Vec<(usize, Result<WriteOutcome, StoreError>)>>, StoreError> {
        let mut prepared: Vec<(usize, Vec<Cow<'_, Sample>>, Vec<i64>)> = Vec::with_capacity(order.len());
        for &index in order {
            let queued = &group[index];
            let samples: Vec<Cow<'_, Sample>> = queued.batch.metric_samples().collect();
            let ids = self.series_ids.lookup(&queued.tenant, &queued.batch, &samples);
            let Some(ids) = ids.into_iter().collect::<Option<Vec<i64>>>() else { return Ok(None) };
            prepared.push((index, samples, ids));
        }
        let batch_at = |position: usize| &group[prepared[position].0];
        let mut outcomes: Vec<Option<Result<WriteOutcome, StoreError>>> = prepared.iter().map(|_| None).collect();
        let mut tx = self.pool.begin().await?;

        // Duplicates and other tenants' agents, for the whole group, as the owner (who sees
        // every tenant's agents). The server's own samples (no agent id) are no agent's batch.
        let agent_positions: Vec<usize> =
            (0..prepared.len()).filter(|&p| !batch_at(p).batch.agent_id.is_empty()).collect();
        let agent_ids: Vec<&str> = agent_positions.iter().map(|&p| batch_at(p).batch.agent_id.as_str()).collect();
        let sequences: Vec<i64> = agent_positions.iter().map(|&p| batch_at(p).batch.sequence as i64).collect();
        if !agent_positions.is_empty() {
            let rows: Vec<(i64, bool, Option<String>)> = sqlx::query_as(
                "SELECT u.i, EXISTS (SELECT 1 FROM ingested_batches b WHERE b.agent_id = u.a AND b.sequence = u.s), \
                 (SELECT g.tenant_id FROM agents g WHERE g.agent_id = u.a) \
                 FROM UNNEST($1::text[], $2::int8[]) WITH ORDINALITY AS u(a, s, i)",
            )
            .bind(&agent_ids)
            .bind(&sequences)
            .fetch_all(&mut *tx)
            .await?;
            let mut seen: HashSet<(&str, u64)> = HashSet::new();
            for (ordinal, already, owner) in rows {
                let Some(&position) = usize::try_from(ordinal - 1).ok().and_then(|i| agent_positions.get(i)) else {
                    continue;
                };
                let queued = batch_at(position);
                outcomes[position] = if already {
                    Some(Ok(WriteOutcome::Duplicate))
                } else if owner.as_deref().is_some_and(|owner| owner != queued.tenant) {
                    Some(Err(StoreError::TenantMismatch { agent_id: queued.batch.agent_id.clone() }))
                } else if !seen.insert((queued.batch.agent_id.as_str(), queued.batch.sequence)) {
                    // A second copy of a batch earlier in this group.
                    Some(Ok(WriteOutcome::Duplicate))
                } else {
                    None
                };
            }
            // Their places in the ledger; a copy committed by a group on another lane
            // meanwhile (this insert waited for it) makes a batch a duplicate.
            let going: Vec<usize> = agent_positions.iter().copied().filter(|&p| outcomes[p].is_none()).collect();
            if !going.is_empty() {
                let ids: Vec<&str> = going.iter().map(|&p| batch_at(p).batch.agent_id.as_str()).collect();
                let sequences: Vec<i64> = going.iter().map(|&p| batch_at(p).batch.sequence as i64).collect();
                let inserted: Vec<(String, i64)> = sqlx::query_as(
                    "INSERT INTO ingested_batches (agent_id, sequence, committed_at_ms) \
                     SELECT a, s, $3 FROM UNNEST($1::text[], $2::int8[]) AS u(a, s) \
                     ON CONFLICT DO NOTHING RETURNING agent_id, sequence",
                )
                .bind(&ids)
                .bind(&sequences)
                .bind(now_ms())
                .fetch_all(&mut *tx)
                .await?;
                let inserted: HashSet<(String, i64)> = inserted.into_iter().collect();
                for position in going {
                    let batch = &batch_at(position).batch;
                    if !inserted.contains(&(batch.agent_id.clone(), batch.sequence as i64)) {
                        outcomes[position] = Some(Ok(WriteOutcome::Duplicate));
                    }
                }
            }
        }

        // Each tenant's batches under its role: its agents' rows, then all its samples.
        let mut tenants: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for position in (0..prepared.len()).filter(|&p| outcomes[p].is_none()) {
            tenants.entry(batch_at(position).tenant.as_str()).or_default().push(position);
        }
        let now = now_ms();
        for (tenant, positions) in &tenants {
            sqlx::query("SELECT set_config('secumon.tenant', $1, true), set_config('role', 'secumon_tenant', true)")
                .bind(*tenant)
                .execute(&mut *tx)
                .await?;
            // One row per agent, from its last batch of the group, with its count.
            let mut agents: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
            for &position in positions {
                let batch = &batch_at(position).batch;
                if batch.agent_id.is_empty() {
                    continue;
                }
                let entry = agents.entry(batch.agent_id.as_str()).or_insert((position, 0));
                if batch.sequence >= batch_at(entry.0).batch.sequence {
                    entry.0 = position;
                }
                entry.1 += 1;
            }
            if !agents.is_empty() {
                let last = |(position, _): &(usize, u64)| &batch_at(*position).batch;
                let ids: Vec<&str> = agents.keys().copied().collect();
                let hosts: Vec<&str> = agents.values().map(|a| last(a).host.as_str()).collect();
                let labels: Vec<String> =
                    agents.values().map(|a| serde_json::to_string(&last(a).agent_labels)).collect::<Result<_, _>>()?;
                let sequences: Vec<i64> = agents.values().map(|a| last(a).sequence as i64).collect();
                let counts: Vec<i64> = agents.values().map(|(_, count)| *count as i64).collect();
                sqlx::query(
                    "INSERT INTO agents (agent_id, tenant_id, host, labels, first_seen_ms, last_seen_ms, last_sequence, batches) \
                     SELECT a, $1, h, l, $2, $2, s, n FROM UNNEST($3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[]) \
                     AS u(a, h, l, s, n) \
                     ON CONFLICT (agent_id) DO UPDATE SET host = excluded.host, labels = excluded.labels, \
                     last_seen_ms = GREATEST(agents.last_seen_ms, excluded.last_seen_ms), \
                     last_sequence = GREATEST(agents.last_sequence, excluded.last_sequence), \
                     batches = agents.batches + excluded.batches",
                )
                .bind(*tenant)
                .bind(now)
                .bind(&ids)
                .bind(&hosts)
                .bind(&labels)
                .bind(&sequences)
                .bind(&counts)
                .execute(&mut *tx)
                .await?;
            }
            // One statement for the tenant's samples; for a series and timestamp written twice
            // in the group, the later batch's value (batches are in agent and sequence order).
            let mut ids = Vec::new();
            let mut samples = Vec::new();
            for &position in positions {
                ids.extend_from_slice(&prepared[position].2);
                samples.extend(prepared[position].1.iter().cloned());
            }
            self.insert_samples(&mut tx, &ids, &samples).await?;
            for &position in positions {
                write_extras(&mut tx, tenant, &batch_at(position).batch).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(
            prepared
                .iter()
                .zip(outcomes)
                .map(|((index, _, _), outcome)| (*index, outcome.unwrap_or(Ok(WriteOutcome::Committed))))
                .collect(),
        ))
    }

    /// Writes the batches of `group` at `order` in one transaction and commits it.
    async fn try_commit_group(
        &self,
        group: &[Queued],
        order: &[usize],
    ) -> Result<Vec<(usize, Result<WriteOutcome, StoreError>)>, GroupFailure> {
        let mut tx = self.pool.begin().await.map_err(|e| GroupFailure::Whole(e.into()))?;
        let mut written = Vec::with_capacity(order.len());
        // Series created by the group's batches so far, per tenant, for the series limit.
        let mut group_created: HashMap<String, u64> = HashMap::new();
        for (position, &index) in order.iter().enumerate() {
            let queued = &group[index];
            if position > 0 {
                // Back to the owner: the next batch's tenant check must see every tenant's agents.
                sqlx::query("RESET ROLE").execute(&mut *tx).await.map_err(|e| GroupFailure::Whole(e.into()))?;
            }
            match self.write_one(&mut tx, &queued.tenant, &queued.batch, &mut group_created).await {
                Ok(done) => written.push((index, done)),
                // A value the database rejects, or a deadlock this batch was chosen to end,
                // is this batch's: the group goes on without it (the agent resends it). A
                // fault of the store (the connection, a full disk) is no batch's: the group fails.
                Err(error) if matches!(error.fault(), None | Some(crate::StoreFault::Busy)) => {
                    return Err(GroupFailure::Batch(index, error));
                }
                Err(error) => return Err(GroupFailure::Whole(error)),
            }
        }
        tx.commit().await.map_err(|e| GroupFailure::Whole(e.into()))?;
        let mut results = Vec::with_capacity(written.len());
        for (index, done) in written {
            let queued = &group[index];
            results.push((
                index,
                match done {
                    Written::Duplicate => Ok(WriteOutcome::Duplicate),
                    Written::Refused(error) => Err(error),
                    Written::Committed { learned, created } => {
                        self.series_budget.add(&queued.tenant, created);
                        self.series_ids.remember(&queued.tenant, &queued.batch, learned);
                        Ok(WriteOutcome::Committed)
                    }
                },
            ));
        }
        Ok(results)
    }

    /// One batch's rows inside the group's transaction, which starts it as the owner role.
    /// It is refused, or found a duplicate, before it writes anything; an error is a
    /// failed statement, after which the transaction is aborted.
    async fn write_one(
        &self,
        tx: &mut PgConnection,
        tenant: &str,
        batch: &IngestBatch,
        group_created: &mut HashMap<String, u64>,
    ) -> Result<Written, StoreError> {
        let now = now_ms();
        let samples: Vec<Cow<'_, Sample>> = batch.metric_samples().collect();
        let mut ids = self.series_ids.lookup(tenant, batch, &samples);
        let unresolved = Unresolved::new(tenant, batch, &samples, &ids);
        let sequence = batch.sequence as i64;
        // The server's own samples (no agent id: see `Store::write_batch`) are no agent's
        // batch: nothing to deduplicate, no agent row.
        let agent_batch = !batch.agent_id.is_empty();
        if agent_batch {
            // In the ledger already (committed, or earlier in this group): a duplicate,
            // whatever its tenant. Another tenant's agent: refused. With every series known,
            // the batch takes its place in the ledger in the same statement; a copy in a
            // group committing at the same time makes that insert wait for its outcome.
            let (inserted, already, owner): (bool, bool, Option<String>) = sqlx::query_as(
                "WITH prior AS (SELECT tenant_id FROM agents WHERE agent_id = $1), \
                 already AS (SELECT EXISTS (SELECT 1 FROM ingested_batches WHERE agent_id = $1 AND sequence = $2) AS e), \
                 fresh AS (INSERT INTO ingested_batches (agent_id, sequence, committed_at_ms) SELECT $1, $2, $3 \
                   WHERE $5 AND NOT (SELECT e FROM already) AND NOT EXISTS (SELECT 1 FROM prior WHERE tenant_id <> $4) \
                   ON CONFLICT DO NOTHING RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM fresh), (SELECT e FROM already), (SELECT tenant_id FROM prior)",
            )
            .bind(&batch.agent_id)
            .bind(sequence)
            .bind(now)
            .bind(tenant)
            .bind(unresolved.is_empty())
            .fetch_one(&mut *tx)
            .await?;
            if already {
                return Ok(Written::Duplicate);
            }
            if owner.as_deref().is_some_and(|owner| owner != tenant) {
                return Ok(Written::Refused(StoreError::TenantMismatch { agent_id: batch.agent_id.clone() }));
            }
            if unresolved.is_empty() && !inserted {
                // A copy committed by another group while this one waited for it.
                return Ok(Written::Duplicate);
            }
        }
        if !unresolved.is_empty() {
            // The series limit, before anything is written: the series the batch would create.
            let pending = group_created.get(tenant).copied().unwrap_or(0);
            let before = match self.series_budget.known(tenant) {
                Some(committed) => committed + pending,
                None => {
                    // Counted inside the group's transaction: that includes what earlier
                    // batches of the group created, which are not committed yet.
                    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM series WHERE tenant_id = $1")
                        .bind(tenant)
                        .fetch_one(&mut *tx)
                        .await?;
                    self.series_budget.counted(tenant, (count as u64).saturating_sub(pending));
                    count as u64
                }
            };
            let names: Vec<&str> = unresolved.keys.iter().map(|k| k.name.as_str()).collect();
            let labels: Vec<String> =
                unresolved.keys.iter().map(|k| serde_json::to_string(&k.labels)).collect::<Result<_, _>>()?;
            let new: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM UNNEST($2::text[], $3::text[]) AS u(n, l) WHERE NOT EXISTS \
                 (SELECT 1 FROM series s WHERE s.tenant_id = $1 AND s.name = u.n AND s.labels = u.l)",
            )
            .bind(tenant)
            .bind(&names)
            .bind(&labels)
            .fetch_one(&mut *tx)
            .await?;
            if let Err(refused) = self.series_budget.check(tenant, before, new as u64) {
                return Ok(Written::Refused(refused));
            }
            if agent_batch {
                let inserted = sqlx::query(
                    "INSERT INTO ingested_batches (agent_id, sequence, committed_at_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(&batch.agent_id)
                .bind(sequence)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !inserted {
                    return Ok(Written::Duplicate);
                }
            }
        }
        // The tenant role, for row-level security, until the next batch's `RESET ROLE`.
        sqlx::query("SELECT set_config('secumon.tenant', $1, true), set_config('role', 'secumon_tenant', true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        if agent_batch {
            sqlx::query(
                "INSERT INTO agents (agent_id, tenant_id, host, labels, first_seen_ms, last_seen_ms, last_sequence, batches) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6, 1) \
                 ON CONFLICT (agent_id) DO UPDATE SET host = excluded.host, labels = excluded.labels, \
                 last_seen_ms = GREATEST(agents.last_seen_ms, excluded.last_seen_ms), \
                 last_sequence = GREATEST(agents.last_sequence, excluded.last_sequence), batches = agents.batches + 1",
            )
            .bind(&batch.agent_id)
            .bind(tenant)
            .bind(&batch.host)
            .bind(serde_json::to_string(&batch.agent_labels)?)
            .bind(now)
            .bind(sequence)
            .execute(&mut *tx)
            .await?;
        }
        // Series another session created since the count above are found, not created.
        let (resolved, created) = Self::resolve_series(&mut *tx, tenant, &unresolved.keys).await?;
        *group_created.entry(tenant.to_string()).or_default() += created;
        let learned = unresolved.apply(&resolved, &mut ids);
        let ids: Vec<i64> = ids.into_iter().map(|id| id.expect("every series resolved")).collect();
        self.insert_samples(&mut *tx, &ids, &samples).await?;

        write_extras(&mut *tx, tenant, batch).await?;
        Ok(Written::Committed { learned, created })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn write_batch(&self, tenant: &str, batch: &IngestBatch) -> Result<WriteOutcome, StoreError> {
        // Refused before queueing: a batch that can never be stored does not join a group.
        let samples: Vec<Cow<'_, Sample>> = batch.metric_samples().collect();
        refuse_future_samples(tenant, batch, &samples, now_ms(), self.options.max_future_ms)?;
        drop(samples);
        let queued = Queued { tenant: tenant.to_string(), batch: batch.clone() };
        self.group
            .submit(
                queued,
                |group| self.commit_group(group),
                || {
                    Err(StoreError::Group {
                        fault: Some(crate::StoreFault::Connection),
                        message: "the write this batch was grouped with was cancelled; resend it".into(),
                    })
                },
            )
            .await
    }

    async fn agents(&self, tenant: &str, filter: &AgentFilter) -> Result<(Vec<AgentRecord>, u64), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let mut select = sqlx::QueryBuilder::<Postgres>::new(
            "SELECT agent_id, tenant_id, host, labels, first_seen_ms, last_seen_ms, last_sequence, batches, \
             COUNT(*) OVER () AS total",
        );
        select.push(" FROM agents WHERE tenant_id = ").push_bind(tenant);
        if let Some(id) = &filter.agent_id {
            select.push(" AND agent_id = ").push_bind(id);
        }
        if let Some(host) = &filter.host {
            select.push(" AND host = ").push_bind(host);
        }
        // LIMIT NULL: no limit.
        select.push(" ORDER BY host, agent_id LIMIT ").push_bind(filter.limit.map(i64::from));
        select.push(" OFFSET ").push_bind(i64::from(filter.offset));
        let rows: Vec<CountedAgentRow> = select.build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let total = match rows.first() {
            Some(row) => row.total as u64,
            // Past the last page, or nothing at all: count without the window.
            None if filter.offset > 0 => {
                self.agents(tenant, &AgentFilter { offset: 0, limit: Some(1), ..filter.clone() }).await?.1
            }
            None => 0,
        };
        let agents =
            rows.into_iter().map(|row| AgentRecord::try_from(row.agent)).collect::<Result<Vec<_>, StoreError>>()?;
        Ok((agents, total))
    }

    async fn recent_logs(&self, tenant: &str, host: &str, limit: u32) -> Result<Vec<LogRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT ts, source, labels, line FROM logs WHERE tenant_id = $1 AND host = $2 \
             ORDER BY ts DESC, id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(host)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut records = rows
            .into_iter()
            .map(|(timestamp_ms, source, labels, line)| {
                Ok(LogRecord { timestamp_ms, source, labels: serde_json::from_str(&labels)?, line })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        records.reverse();
        Ok(records)
    }

    async fn log_rows(&self, tenant: &str, scan: &LogScan<'_>) -> Result<Vec<LogEntry>, StoreError> {
        let order = match scan.order {
            LogOrder::Forward => "ASC",
            LogOrder::Backward => "DESC",
        };
        let sql = format!(
            "SELECT id, ts, source, labels, line FROM logs WHERE tenant_id = $1 AND host = $2 \
             AND (ts, id) > ($3, $4) AND (ts, id) < ($5, $6) AND ($7::TEXT IS NULL OR source = $7) \
             ORDER BY ts {order}, id {order} LIMIT $8"
        );
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(i64, i64, String, String, String)> = sqlx::query_as(&sql)
            .bind(tenant)
            .bind(scan.host)
            .bind(scan.after.timestamp_ms)
            .bind(scan.after.id)
            .bind(scan.before.timestamp_ms)
            .bind(scan.before.id)
            .bind(scan.source)
            .bind(i64::from(scan.limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(id, timestamp_ms, source, labels, line)| {
                Ok(LogEntry {
                    cursor: LogCursor { timestamp_ms, id },
                    record: LogRecord { timestamp_ms, source, labels: serde_json::from_str(&labels)?, line },
                })
            })
            .collect()
    }

    async fn put_state(&self, tenant: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO component_state (tenant_id, key, value, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
        )
        .bind(tenant)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let inserted = sqlx::query(
            "INSERT INTO records (tenant_id, kind, id, body, updated_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(kind)
        .bind(id)
        .bind(body)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn put_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(UPSERT_RECORD).bind(tenant).bind(kind).bind(id).bind(body).bind(now_ms()).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_records(&self, tenant: &str, kind: &str, records: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let now = now_ms();
        for (id, body) in records {
            sqlx::query(UPSERT_RECORD).bind(tenant).bind(kind).bind(id).bind(body).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn swap_records(&self, tenant: &str, swaps: &[RecordSwap]) -> Result<bool, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let now = now_ms();
        for swap in swaps {
            let changed = sqlx::query(
                "UPDATE records SET body = $1, updated_ms = $2 \
                 WHERE tenant_id = $3 AND kind = $4 AND id = $5 AND body = $6",
            )
            .bind(&swap.body)
            .bind(now)
            .bind(tenant)
            .bind(&swap.kind)
            .bind(&swap.id)
            .bind(&swap.expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                // Dropping the transaction rolls back the swaps made so far.
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn get_record(&self, tenant: &str, kind: &str, id: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let body = sqlx::query_scalar("SELECT body FROM records WHERE tenant_id = $1 AND kind = $2 AND id = $3")
            .bind(tenant)
            .bind(kind)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(body)
    }

    async fn list_records(
        &self,
        tenant: &str,
        kind: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, body, updated_ms FROM records WHERE tenant_id = $1 AND kind = $2 AND id > $3 \
             ORDER BY id LIMIT $4",
        )
        .bind(tenant)
        .bind(kind)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(id, body, updated_ms)| StoredRecord { id, body, updated_ms }).collect())
    }

    async fn delete_record(&self, tenant: &str, kind: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let deleted = sqlx::query("DELETE FROM records WHERE tenant_id = $1 AND kind = $2 AND id = $3")
            .bind(tenant)
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn delete_agent(&self, tenant: &str, agent_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant)
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn get_state(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let value = sqlx::query_scalar("SELECT value FROM component_state WHERE tenant_id = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(value)
    }

    /// One transaction, set-based: PostgreSQL has no single writer, so a long import holds
    /// row locks on this tenant's findings and series only, and the report is whole or
    /// nothing by the transaction itself. The report is staged in a temporary table with
    /// `UNNEST` arrays, then classified, fixed, upserted, counted and sampled in a handful
    /// of statements.
    async fn import_findings(&self, tenant: &str, import: &FindingsImport) -> Result<ImportSummary, StoreError> {
        let findings = unique_findings(import, self.options.max_report_findings)?;
        self.ensure_partitions("samples", std::iter::once(import.at_ms)).await?;
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "CREATE TEMPORARY TABLE findings_import (seq BIGINT NOT NULL, asset TEXT NOT NULL, \
             finding_id TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL, \
             PRIMARY KEY (asset, finding_id)) ON COMMIT DROP",
        )
        .execute(&mut *tx)
        .await?;
        for (step, part) in findings.chunks(STAGE_PER_INSERT).enumerate() {
            let first_seq = (step * STAGE_PER_INSERT) as i64;
            let seqs: Vec<i64> = (first_seq..first_seq + part.len() as i64).collect();
            let column = |get: fn(&Finding) -> &str| part.iter().map(|f| get(f)).collect::<Vec<&str>>();
            sqlx::query(
                "INSERT INTO findings_import (seq, asset, finding_id, severity, title, description) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])",
            )
            .bind(&seqs)
            .bind(column(|f| &f.asset))
            .bind(column(|f| &f.id))
            .bind(column(|f| f.severity.as_str()))
            .bind(column(|f| &f.title))
            .bind(column(|f| &f.description))
            .execute(&mut *tx)
            .await?;
        }
        // A temporary table has no statistics until asked: without them the joins below are
        // planned for a handful of rows.
        sqlx::query("ANALYZE findings_import").execute(&mut *tx).await?;
        let prior: Vec<PriorState> = sqlx::query_as(
            "SELECT s.seq, f.status, f.first_seen_ms FROM findings_import s LEFT JOIN findings f \
             ON f.tenant_id = $1 AND f.asset = s.asset AND f.finding_id = s.finding_id \
             WHERE f.status IS DISTINCT FROM 'open'",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        let fixed: Vec<FindingRow> = if import.full_scan {
            sqlx::query_as(
                "UPDATE findings f SET status = 'fixed' WHERE f.tenant_id = $1 AND f.source = $2 \
                 AND f.status = 'open' AND f.asset IN (SELECT asset FROM findings_import) \
                 AND NOT EXISTS (SELECT 1 FROM findings_import s WHERE s.asset = f.asset AND s.finding_id = f.finding_id) \
                 RETURNING f.asset, f.finding_id, f.severity, f.title, f.description, f.status, f.first_seen_ms, \
                 f.last_seen_ms",
            )
            .bind(tenant)
            .bind(&import.source)
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        // Sorted, so two imports of one tenant lock rows in the same order and cannot
        // deadlock; first_seen_ms is set on insert only, so a finding that comes back keeps it.
        sqlx::query(
            "INSERT INTO findings (tenant_id, asset, finding_id, source, severity, title, description, status, \
             first_seen_ms, last_seen_ms) SELECT $1, asset, finding_id, $2, severity, title, description, 'open', \
             $3, $3 FROM findings_import ORDER BY asset, finding_id \
             ON CONFLICT (tenant_id, asset, finding_id) DO UPDATE SET source = excluded.source, \
             severity = excluded.severity, title = excluded.title, description = excluded.description, \
             status = 'open', last_seen_ms = excluded.last_seen_ms",
        )
        .bind(tenant)
        .bind(&import.source)
        .bind(import.at_ms)
        .execute(&mut *tx)
        .await?;
        if prior.len() > fixed.len() {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM findings WHERE tenant_id = $1 AND status = 'open'")
                    .bind(tenant)
                    .fetch_one(&mut *tx)
                    .await?;
            let limit = self.options.max_open_findings;
            if open as u64 > limit {
                // Dropping the transaction rolls everything above back.
                return Err(StoreError::TooManyOpenFindings { tenant: tenant.to_string(), open: open as u64, limit });
            }
        }
        let counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT asset, severity, count(*) FROM findings WHERE tenant_id = $1 AND status = 'open' \
             AND asset IN (SELECT asset FROM findings_import) GROUP BY asset, severity",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        let assets = assets(&findings);
        let mut summary = summary(import, &findings, prior, fixed)?;
        summary.samples = open_samples(tenant, &assets, &open_values(&assets, counts), import.at_ms);
        let keys: Vec<SeriesKey> = summary.samples.iter().map(|s| s.series.clone()).collect();
        let mut ids = Vec::with_capacity(keys.len());
        for part in keys.chunks(STAGE_PER_INSERT) {
            // Counted, not limited: a report's series are bounded by max_open_findings.
            let (part_ids, created) = Self::resolve_series(&mut tx, tenant, part).await?;
            self.series_budget.add(tenant, created);
            ids.extend(part_ids);
        }
        let samples: Vec<Cow<'_, Sample>> = summary.samples.iter().map(Cow::Borrowed).collect();
        self.insert_samples(&mut tx, &ids, &samples).await?;
        let events = critical_finding_events(&summary)?;
        for part in events.chunks(STAGE_PER_INSERT) {
            let column =
                |get: for<'e> fn(&'e FindingEvent<'e>) -> &'e str| part.iter().map(|e| get(e)).collect::<Vec<&str>>();
            sqlx::query(
                "INSERT INTO events (tenant_id, host, ts, kind, severity, labels, message) \
                 SELECT $1, h, $2, k, s, l, m FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                 AS u(h, k, s, l, m)",
            )
            .bind(tenant)
            .bind(import.at_ms)
            .bind(column(|e| &e.finding.asset))
            .bind(column(|e| e.kind))
            .bind(column(|e| e.severity.as_str()))
            .bind(column(|e| &e.labels))
            .bind(column(|e| &e.message))
            .execute(&mut *tx)
            .await?;
        }
        drop(events);
        tx.commit().await?;
        Ok(summary)
    }

    async fn latest_checks(&self, tenant: &str) -> Result<Vec<LatestCheck>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<CheckRow> = sqlx::query_as(
            "SELECT DISTINCT ON (c.agent_id, c.check_id) c.agent_id, a.host, c.check_id, c.kind, c.target, c.status, \
             c.ts, c.duration_us, c.details FROM check_results c JOIN agents a ON a.agent_id = c.agent_id \
             WHERE c.tenant_id = $1 ORDER BY c.agent_id, c.check_id, c.ts DESC, c.id DESC",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut checks = rows.into_iter().map(latest_check).collect::<Result<Vec<_>, StoreError>>()?;
        checks.sort_by(|a, b| (&a.result.check_id, &a.host).cmp(&(&b.result.check_id, &b.host)));
        Ok(checks)
    }

    async fn check_runs(&self, tenant: &str, from_ms: i64, to_ms: i64) -> Result<Vec<CheckRuns>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<CheckRunsRow> = sqlx::query_as(
            "SELECT c.agent_id, a.host, c.check_id, \
               (ARRAY_AGG(c.kind ORDER BY c.ts DESC, c.id DESC))[1], \
               (ARRAY_AGG(c.target ORDER BY c.ts DESC, c.id DESC))[1], \
               COUNT(*), COUNT(*) FILTER (WHERE c.status = 'ok') \
             FROM check_results c JOIN agents a ON a.agent_id = c.agent_id \
             WHERE c.tenant_id = $1 AND c.ts >= $2 AND c.ts < $3 GROUP BY c.agent_id, a.host, c.check_id",
        )
        .bind(tenant)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(records::check_runs(rows))
    }

    async fn open_finding_counts(&self, tenant: &str) -> Result<Vec<(Severity, u64)>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT severity, COUNT(*) FROM findings WHERE tenant_id = $1 AND status = 'open' GROUP BY severity",
        )
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        records::severity_counts(rows)
    }

    async fn list_findings(&self, tenant: &str, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let severities = admitted_severities(filter);
        let status = status_text(filter.status);
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<FindingRow> = sqlx::query_as(
            "SELECT asset, finding_id, severity, title, description, status, first_seen_ms, last_seen_ms \
             FROM findings WHERE tenant_id = $1 AND ($2::text IS NULL OR asset = $2) \
             AND ($3::text IS NULL OR status = $3) AND severity = ANY($4) \
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 \
             WHEN 'low' THEN 3 ELSE 4 END, last_seen_ms DESC, asset, finding_id LIMIT $5 OFFSET $6",
        )
        .bind(tenant)
        .bind(&filter.asset)
        .bind(status)
        .bind(&severities)
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.offset))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(finding_from_row).collect()
    }

    async fn append_alert_history(&self, tenant: &str, entries: &[AlertHistoryEntry]) -> Result<(), StoreError> {
        let rules: Vec<&str> = entries.iter().map(|e| e.rule.as_str()).collect();
        let times: Vec<i64> = entries.iter().map(|e| e.at_ms).collect();
        let records: Vec<&str> = entries.iter().map(|e| e.record.as_str()).collect();
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO alert_history (tenant_id, rule, ts, record) \
             SELECT $1, r, t, x FROM UNNEST($2::text[], $3::int8[], $4::text[]) WITH ORDINALITY AS u(r, t, x, i) \
             ORDER BY i",
        )
        .bind(tenant)
        .bind(&rules)
        .bind(&times)
        .bind(&records)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn alert_history(
        &self,
        tenant: &str,
        rule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT rule, ts, record FROM alert_history WHERE tenant_id = $1 AND ($2::text IS NULL OR rule = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(rule)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(rule, at_ms, record)| AlertHistoryEntry { rule, at_ms, record }).collect())
    }

    async fn alert_history_between(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT rule, ts, record FROM alert_history WHERE tenant_id = $1 AND ts BETWEEN $2 AND $3 \
             ORDER BY ts, id LIMIT $4",
        )
        .bind(tenant)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(rule, at_ms, record)| AlertHistoryEntry { rule, at_ms, record }).collect())
    }

    fn set_series_limit(&self, tenant: &str, limit: Option<u64>) {
        self.series_budget.set_limit(tenant, limit);
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.tenant_tx(&entry.tenant).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (tenant_id, ts, actor, client_ip, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&entry.tenant)
        .bind(entry.at_ms)
        .bind(&entry.actor)
        .bind(&entry.client_ip)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.detail)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        // One tenant's entries read under its row-level security; every tenant's (a
        // super-admin's view) as the owner.
        let mut tx = match &filter.tenant {
            Some(tenant) => self.tenant_tx(tenant).await?,
            None => self.pool.begin().await?,
        };
        let rows: Vec<AuditRow> = crate::audit::select::<Postgres>(filter).build_query_as().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(entry_from_row).collect())
    }

    async fn list_series(&self, tenant: &str, name: Option<&str>) -> Result<Vec<SeriesKey>, StoreError> {
        let mut tx = self.pool.begin().await?;
        enter_tenant(&mut tx, tenant).await?;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, labels FROM series WHERE tenant_id = $1 AND ($2::text IS NULL OR name = $2)")
                .bind(tenant)
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut keys = rows
            .into_iter()
            .map(|(name, labels)| Ok(SeriesKey::new(name, serde_json::from_str::<Labels>(&labels)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        keys.sort();
        Ok(keys)
    }

    async fn query_range(&self, tenant: &str, query: &RangeQuery) -> Result<Vec<SeriesPoints>, StoreError> {
        if query.step_ms <= 0 {
            return Err(StoreError::InvalidQuery("step must be positive".into()));
        }
        if query.end_ms < query.start_ms {
            return Err(StoreError::InvalidQuery("end is before start".into()));
        }
        let mut tx = self.pool.begin().await?;
        // One snapshot for the head, the blocks and the rollups: a compaction commits wholly
        // before or after it, so no sample is seen twice or missed.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
        enter_tenant(&mut tx, tenant).await?;
        // A host's series through the (tenant, name, host) index; other labels are matched
        // here (jsonb refuses the \u0000 that labels may hold, so no index on them).
        let candidates: Vec<(i64, String)> = match query.selector.matchers.get("host") {
            Some(host) => {
                sqlx::query_as("SELECT id, labels FROM series WHERE tenant_id = $1 AND name = $2 AND host = $3")
                    .bind(tenant)
                    .bind(&query.selector.name)
                    .bind(host)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query_as("SELECT id, labels FROM series WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant)
                    .bind(&query.selector.name)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let mut matched: HashMap<i64, SeriesKey> = HashMap::new();
        for (id, labels) in candidates {
            let series = SeriesKey::new(query.selector.name.clone(), serde_json::from_str::<Labels>(&labels)?);
            if query.selector.matches(&series) {
                matched.insert(id, series);
            }
        }
        let ids: Vec<i64> = matched.keys().copied().collect();
        let tier = Tier::for_query(query, now_ms(), &self.retentions.of(tenant));
        let (first_window, last_window) = (window_of(query.start_ms), window_of(query.end_ms));
        // Head samples in the order written. For a rollup tier, every head sample of the
        // windows the range touches: a window with head samples is settled here as compaction
        // would settle it, so a timestamp sent again is never counted twice.
        let (head_from, head_to) = match tier {
            Tier::Raw => (query.start_ms, query.end_ms),
            _ => (first_window, last_window.saturating_add(BLOCK_WINDOW_MS - 1)),
        };
        let head: Vec<(i64, i64, f64)> = sqlx::query_as(
            "SELECT series_id, ts, value FROM samples WHERE series_id = ANY($1) AND ts BETWEEN $2 AND $3 \
             ORDER BY series_id, write_seq",
        )
        .bind(&ids)
        .bind(head_from)
        .bind(head_to)
        .fetch_all(&mut *tx)
        .await?;
        let mut work = QueryWork::default();
        if tier == Tier::Raw {
            let blocks: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT series_id, data FROM blocks WHERE series_id = ANY($1) AND window_start BETWEEN $2 AND $3 \
                 AND max_ts >= $4 AND min_ts <= $5",
            )
            .bind(&ids)
            .bind(first_window)
            .bind(last_window)
            .bind(query.start_ms)
            .bind(query.end_ms)
            .fetch_all(&mut *tx)
            .await?;
            work.blocks = blocks;
            for (id, ts, value) in head {
                work.head.entry(id).or_default().push((ts, value));
            }
        } else {
            let table = if tier == Tier::FiveMinutes { "rollup_5m_blocks" } else { "rollup_1h_blocks" };
            for (id, ts, value) in head {
                work.unsettled.entry((id, window_of(ts))).or_default().push((ts, value));
            }
            work.stored = read_windows(&mut tx, &work.unsettled).await?;
            work.rollups = sqlx::query_as(&format!(
                "SELECT series_id, window_start, data FROM {table} WHERE series_id = ANY($1) \
                 AND window_start BETWEEN $2 AND $3"
            ))
            .bind(&ids)
            .bind(first_window)
            .bind(last_window)
            .fetch_all(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // Decoding dominates big queries: split the series over the cores.
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, ids.len().max(1));
        let mut shares: Vec<(Vec<i64>, QueryWork)> = (0..parts).map(|_| Default::default()).collect();
        let part_of = |id: i64| id.rem_euclid(parts as i64) as usize;
        for id in &ids {
            shares[part_of(*id)].0.push(*id);
        }
        work.split_into(&mut shares, part_of);
        let tasks: Vec<_> = shares
            .into_iter()
            .map(|(ids, work)| {
                let query = query.clone();
                tokio::task::spawn_blocking(move || work.answer(&ids, &query, tier))
            })
            .collect();
        let mut answer = Vec::new();
        for task in tasks {
            for (id, points) in task.await?? {
                if let Some(series) = matched.remove(&id) {
                    answer.push(SeriesPoints { series, points });
                }
            }
        }
        answer.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(answer)
    }

    async fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, StoreError> {
        self.maintenance_pass(now_ms, true).await
    }

    fn maintenance_health(&self) -> MaintenanceHealth {
        self.health.snapshot()
    }

    fn retention_defaults(&self) -> TierRetention {
        self.options.retention.tiers()
    }

    async fn tier_retention(&self, tenant: &str) -> Result<TierRetention, StoreError> {
        crate::retention::read(self, &self.retentions, tenant).await
    }

    async fn set_tier_retention(&self, tenant: &str, tiers: Option<TierRetention>) -> Result<(), StoreError> {
        crate::retention::write(self, &self.retentions, tenant, tiers).await
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    async fn close(&self) {
        let task = self.background.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.pool.close().await;
    }
}

/// What a range query read, before decoding: raw blocks and head samples by series (raw
/// tier), or rollup blocks, head samples by window and those windows' stored blocks.
#[derive(Default)]
struct QueryWork {
    blocks: Vec<(i64, Vec<u8>)>,
    head: HashMap<i64, Vec<(i64, f64)>>,
    rollups: Vec<(i64, i64, Vec<u8>)>,
    unsettled: BTreeMap<WindowKey, Vec<(i64, f64)>>,
    stored: HashMap<WindowKey, StoredWindow>,
}

impl QueryWork {
    /// Hands each series' share to the part `part_of` names.
    fn split_into(self, shares: &mut [(Vec<i64>, QueryWork)], part_of: impl Fn(i64) -> usize) {
        for block in self.blocks {
            shares[part_of(block.0)].1.blocks.push(block);
        }
        for (id, head) in self.head {
            shares[part_of(id)].1.head.insert(id, head);
        }
        for rollup in self.rollups {
            shares[part_of(rollup.0)].1.rollups.push(rollup);
        }
        let mut stored = self.stored;
        for (key, head) in self.unsettled {
            let share = &mut shares[part_of(key.0)].1;
            if let Some(window) = stored.remove(&key) {
                share.stored.insert(key, window);
            }
            share.unsettled.insert(key, head);
        }
    }

    /// Each series' points of `ids` for `query`, from `tier`.
    fn answer(mut self, ids: &[i64], query: &RangeQuery, tier: Tier) -> Result<Vec<(i64, Vec<Point>)>, StoreError> {
        let mut raw: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        for (id, data) in &self.blocks {
            let (ts, vs) = decode_chunk(data)?;
            raw.entry(*id).or_default().extend(ts.into_iter().zip(vs));
        }
        let mut summaries: HashMap<i64, Vec<(i64, Summary)>> = HashMap::new();
        if tier != Tier::Raw {
            let resolution = if tier == Tier::FiveMinutes { FIVE_MINUTES_MS } else { ONE_HOUR_MS };
            let first_bucket = bucket_of(query.start_ms, 0, resolution);
            let mut keep = |id: i64, window: Vec<(i64, Summary)>| {
                let out = summaries.entry(id).or_default();
                for (bucket, summary) in window {
                    if bucket >= first_bucket && bucket <= query.end_ms {
                        out.push((bucket.max(query.start_ms), summary));
                    }
                }
            };
            // Windows with head samples: settled as compaction will store them.
            let settled_keys: HashSet<WindowKey> = self.unsettled.keys().copied().collect();
            for (key, head) in std::mem::take(&mut self.unsettled) {
                let settled = settle(&self.stored.remove(&key).unwrap_or_default(), head)?;
                keep(key.0, if tier == Tier::FiveMinutes { settled.rollup_5m } else { settled.rollup_1h });
            }
            for (id, window_start, data) in &self.rollups {
                if !settled_keys.contains(&(*id, *window_start)) {
                    keep(*id, decode_summaries(data)?);
                }
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let points = answer(
                raw.remove(id).unwrap_or_default(),
                summaries.remove(id).unwrap_or_default(),
                self.head.remove(id).unwrap_or_default(),
                query,
                tier,
            );
            if !points.is_empty() {
                out.push((*id, points));
            }
        }
        Ok(out)
    }
}

/// A batch's check results, events and log lines, in the caller's transaction.
async fn write_extras(tx: &mut PgConnection, tenant: &str, batch: &IngestBatch) -> Result<(), StoreError> {
    for check in &batch.check_results {
        sqlx::query(
            "INSERT INTO check_results (tenant_id, agent_id, check_id, kind, target, status, ts, duration_us, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(tenant)
        .bind(&batch.agent_id)
        .bind(&check.check_id)
        .bind(&check.kind)
        .bind(&check.target)
        .bind(check.status.as_str())
        .bind(check.timestamp_ms)
        .bind(check.duration_us as i64)
        .bind(check.details.to_string())
        .execute(&mut *tx)
        .await?;
    }
    for event in &batch.events {
        let labels = serde_json::to_string(&event.labels)?;
        let (kind, severity) = (&event.kind, event.severity);
        insert_event(&mut *tx, tenant, &batch.host, event.timestamp_ms, kind, severity, &labels, &event.message)
            .await?;
    }
    if !batch.logs.is_empty() {
        let timestamps: Vec<i64> = batch.logs.iter().map(|l| l.timestamp_ms).collect();
        let sources: Vec<&str> = batch.logs.iter().map(|l| l.source.as_str()).collect();
        let labels: Vec<String> =
            batch.logs.iter().map(|l| serde_json::to_string(&l.labels)).collect::<Result<_, _>>()?;
        let lines: Vec<&str> = batch.logs.iter().map(|l| l.line.as_str()).collect();
        sqlx::query(
                "INSERT INTO logs (tenant_id, host, ts, source, labels, line) \
                 SELECT $1, $2, t, s, l, x FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::text[]) AS u(t, s, l, x)",
            )
            .bind(tenant)
            .bind(&batch.host)
            .bind(&timestamps)
            .bind(&sources)
            .bind(&labels)
            .bind(&lines)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    conn: &mut PgConnection,
    tenant: &str,
    host: &str,
    at_ms: i64,
    kind: &str,
    severity: Severity,
    labels_json: &str,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (tenant_id, host, ts, kind, severity, labels, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(host)
    .bind(at_ms)
    .bind(kind)
    .bind(severity.as_str())
    .bind(labels_json)
    .bind(message)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use secumon_core::{IngestBatch, LogRecord, Sample};
    use sqlx::postgres::PgConnectOptions;

    use super::{PgStore, Queued};
    use crate::{Store, StoreError, StoreOptions, WriteOutcome};

    fn batch(agent: &str, sequence: u64, value: f64, line: Option<&str>) -> IngestBatch {
        let now = secumon_core::now_ms();
        IngestBatch {
            agent_id: agent.into(),
            sequence,
            host: agent.into(),
            samples: vec![Sample::new("load1", Default::default(), now - 60_000 + sequence as i64, value)],
            logs: line
                .map(|line| LogRecord {
                    timestamp_ms: now,
                    source: "s".into(),
                    labels: Default::default(),
                    line: line.into(),
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// The group path for cached series, directly: one statement per step for the whole
    /// group, each batch's own answer, refusals and duplicates without writes, and an error
    /// (for the caller to write the group again batch by batch) when a batch is rejected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fast_group_path_answers_each_batch_and_writes_each_once() {
        let Ok(url) = std::env::var("SECUMON_TEST_PG_URL") else {
            secumon_core::testing::peer_missing("SECUMON_TEST_PG_URL is not set");
            return;
        };
        let admin = sqlx::PgPool::connect(&url).await.expect("SECUMON_TEST_PG_URL");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let schema = format!("secumon_fast_{}_{nanos}", std::process::id());
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\"")).execute(&admin).await.unwrap();
        let connect = PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
        let store =
            PgStore::connect_with(connect, StoreOptions { background: false, ..Default::default() }).await.unwrap();
        // First batches: series created and cached (the per-batch path).
        for agent in ["a", "b", "c"] {
            store.write_batch("acme", &batch(agent, 1, 1.0, None)).await.unwrap();
        }
        store.write_batch("globex", &batch("g", 1, 1.0, None)).await.unwrap();
        let queued = |tenant: &str, batch: IngestBatch| Queued { tenant: tenant.into(), batch };
        let group = vec![
            queued("acme", batch("a", 2, 2.0, Some("two"))),
            queued("acme", batch("b", 1, 9.0, None)), // in the ledger already
            queued("acme", batch("c", 2, 2.0, None)),
            queued("acme", batch("c", 2, 2.0, None)), // the same batch twice in one group
            queued("acme", IngestBatch { samples: Vec::new(), ..batch("g", 2, 0.0, Some("intruder")) }),
            queued("globex", batch("g", 2, 2.0, None)),
            queued("acme", batch("a", 3, 3.0, None)),
        ];
        let order: Vec<usize> = (0..group.len()).collect();
        let written = store.try_fast_group(&group, &order).await.unwrap().expect("every series cached");
        let outcomes: Vec<String> = written.iter().map(|(_, r)| format!("{r:?}")).collect();
        assert_eq!(
            outcomes,
            [
                "Ok(Committed)",
                "Ok(Duplicate)",
                "Ok(Committed)",
                "Ok(Duplicate)",
                "Err(TenantMismatch { agent_id: \"g\" })",
                "Ok(Committed)",
                "Ok(Committed)"
            ]
        );
        let agents: Vec<(String, u64, u64)> = store
            .list_agents("acme")
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.agent_id, a.batches, a.last_sequence))
            .collect();
        assert_eq!(agents, [("a".into(), 3, 3), ("b".into(), 1, 1), ("c".into(), 2, 2)]);
        let rows: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".samples")).fetch_one(&admin).await.unwrap();
        assert_eq!(rows, 4 + 4, "four first batches and four committed here");
        let lines: Vec<String> =
            sqlx::query_scalar(&format!("SELECT line FROM \"{schema}\".logs")).fetch_all(&admin).await.unwrap();
        assert_eq!(lines, ["two"]);

        // A batch the database rejects fails the group's statement: an error, nothing written.
        let group = vec![queued("acme", batch("a", 4, 4.0, None)), queued("acme", batch("b", 2, 4.0, Some("\0")))];
        let failed = store.try_fast_group(&group, &[0, 1]).await;
        assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
        // Written again through the store, the good one is taken, the bad one refused alone.
        let (good, bad) =
            tokio::join!(store.write_batch("acme", &group[0].batch), store.write_batch("acme", &group[1].batch));
        assert_eq!(good.unwrap(), WriteOutcome::Committed);
        assert!(matches!(bad, Err(StoreError::Database(_))), "{bad:?}");
        // A series not cached: not for this path.
        let fresh = vec![queued("acme", batch("new", 1, 1.0, None))];
        assert!(store.try_fast_group(&fresh, &[0]).await.unwrap().is_none());
        store.close().await;
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&admin).await.unwrap();
    }

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(super::redact("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(super::redact("postgres://app@db/x"), "postgres://app@db/x");
    }
}
