//! The embedded SQLite backend: one database file in WAL mode, one writer connection (SQLite
//! allows a single writer; queueing in the pool beats SQLITE_BUSY retries) and a few readers.
//! Samples go through the [`SampleEngine`]; everything else is plain rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use secumon_core::model::HOST_LABEL;
use secumon_core::{Finding, IngestBatch, Labels, LogRecord, Sample, SeriesKey, Severity, now_ms};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::audit::{AuditRow, entry_from_row};
use crate::chunked::SampleEngine;
use crate::codec::WalSample;
use crate::findings_import::{PriorState, assets, open_samples, open_series, open_values, summary, unique_findings};
use crate::group::GroupCommit;
use crate::ingest::{SeriesBudget, SeriesCache, Unresolved, refuse_future_samples};
use crate::logs::{LogCursor, LogEntry, LogOrder, LogScan};
use crate::query::{RangeQuery, SeriesPoints};
use crate::records::{
    self, CheckRow, CheckRunsRow, FindingRow, admitted_severities, critical_finding_events, finding_from_row,
    latest_check, status_text,
};
use crate::writer::{WriteTransaction, Writer};
use crate::{
    AgentFilter, AgentRecord, AgentRow, AlertHistoryEntry, AuditEntry, AuditFilter, CheckRuns, FindingFilter,
    FindingsImport, ImportSummary, LatestCheck, MaintenanceHealth, MaintenanceReport, RecordSwap, Store, StoreError,
    StoreOptions, StoredRecord, TierRetention, WriteOutcome,
};

/// Stores a document, replacing any under its `(tenant, kind, id)`.
const UPSERT_RECORD: &str = "INSERT INTO records (tenant_id, kind, id, body, updated_ms) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (tenant_id, kind, id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms";

/// Rows per multi-row INSERT: a few bound values each stays far below SQLite's 32 766 limit.
const ROWS_PER_INSERT: usize = 2_000;
/// Staged findings (and `findings_open` series) per write transaction: a few milliseconds
/// of the single writer each, so agents' batches get in between the steps of a big import.
const STAGE_PER_TRANSACTION: usize = 4_000;
/// Staged findings per INSERT: seven bound values each, under SQLite's 32 766.
const STAGE_PER_INSERT: usize = 2_000;
/// Staged rows deleted per write transaction once an import is done.
const UNSTAGE_PER_TRANSACTION: usize = 10_000;
/// Import ids are only unique among imports in flight: staged rows go at open.
static NEXT_IMPORT: AtomicI64 = AtomicI64::new(1);
/// How often the background task looks for due maintenance.
const MAINTENANCE_TICK: Duration = Duration::from_secs(1);
/// How often retention and chunk merging run in the background.
const EXPIRY_EVERY: Duration = Duration::from_secs(600);

/// The embedded backend: [`Store`] in one SQLite file (WAL mode), needing no server.
pub struct SqliteStore {
    engine: Arc<SampleEngine>,
    series_ids: SeriesCache<u32>,
    series_budget: SeriesBudget,
    /// Agents' batches queued for the next write transaction (see group.rs).
    group: GroupCommit<Queued, Result<WriteOutcome, StoreError>>,
    /// `findings_open` series ids by tenant and asset (series are never deleted).
    finding_series: Mutex<HashMap<String, HashMap<String, [u32; 5]>>>,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with default options.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default()).await
    }

    /// Opens the database at `path`, applies migrations, replays samples that were not yet
    /// compacted and, if `options.background`, starts the maintenance task.
    pub async fn open_with(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Open { path: parent.display().to_string(), reason: e.to_string() })?;
        }
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            // A batch is acknowledged once committed: FULL makes that survive power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        // Created here, once: a connection the pools open later (after an error, or an idle
        // one replaced) must fail where the file was deleted, not start an empty database.
        if !path.exists() {
            let create = connect.clone().create_if_missing(true);
            let created = async { sqlx::Connection::close(sqlx::ConnectOptions::connect(&create).await?).await };
            created.await.map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        // Left by imports a stopped process never finished: invisible, and never resumed.
        sqlx::query("DELETE FROM findings_import").execute(&writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(connect).await?;
        let background = options.background;
        let max_series = options.max_series_per_tenant;
        let group = GroupCommit::new(options.max_group_batches);
        let engine = Arc::new(SampleEngine::new(Writer::new(writer, path)?, reader, options));
        engine.recover().await?;
        let store = Self {
            engine,
            series_ids: SeriesCache::default(),
            series_budget: SeriesBudget::new(max_series),
            group,
            finding_series: Mutex::default(),
            background: Mutex::new(None),
            path: path.to_path_buf(),
        };
        if background {
            let task = tokio::spawn(run_maintenance(Arc::downgrade(&store.engine)));
            *store.background.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(store)
    }
}

/// Findings imports, in three phases so one tenant's big report never holds the single
/// writer for long: (1) the report's rows are staged in `findings_import` and the series of
/// its `findings_open` samples created, [`STAGE_PER_TRANSACTION`] rows per write
/// transaction; (2) one transaction applies it with set-based statements (classify, fix,
/// upsert, check the tenant's cap, count, samples, events), which is what makes the report
/// whole or nothing to readers: nothing outside the staging table changes before that
/// commit, and everything changes in it; (3) the staged rows are deleted in steps.
/// Staged rows and series names are invisible to every query, so a failure in (1) or a
/// refusal in (2) leaves nothing a user can see; a retry starts over with a new import id.
impl SqliteStore {
    async fn stage_and_apply(
        &self,
        tenant: &str,
        import: &FindingsImport,
        import_id: i64,
        findings: &[&Finding],
    ) -> Result<ImportSummary, StoreError> {
        let writer = &self.engine.writer;
        for (step, part) in findings.chunks(STAGE_PER_TRANSACTION).enumerate() {
            let mut tx = writer.begin().await?;
            for (insert, rows) in part.chunks(STAGE_PER_INSERT).enumerate() {
                let first_seq = (step * STAGE_PER_TRANSACTION + insert * STAGE_PER_INSERT) as i64;
                QueryBuilder::<Sqlite>::new(
                    "INSERT INTO findings_import (import_id, seq, asset, finding_id, severity, title, description) ",
                )
                .push_values(rows.iter().enumerate(), |mut row, (i, finding)| {
                    row.push_bind(import_id)
                        .push_bind(first_seq + i as i64)
                        .push_bind(finding.asset.as_str())
                        .push_bind(finding.id.as_str())
                        .push_bind(finding.severity.as_str())
                        .push_bind(finding.title.as_str())
                        .push_bind(finding.description.as_str());
                })
                .build()
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        let assets = assets(findings);
        let ids = self.finding_series_ids(tenant, &assets, import.at_ms).await?;

        let mut tx = writer.begin().await?;
        // Only what was not open is fetched: the rest is "unchanged" by count.
        let prior: Vec<PriorState> = sqlx::query_as(
            "SELECT s.seq, f.status, f.first_seen_ms FROM findings_import s LEFT JOIN findings f \
             ON f.tenant_id = ? AND f.asset = s.asset AND f.finding_id = s.finding_id \
             WHERE s.import_id = ? AND f.status IS NOT 'open'",
        )
        .bind(tenant)
        .bind(import_id)
        .fetch_all(&mut *tx)
        .await?;
        let fixed: Vec<FindingRow> = if import.full_scan {
            sqlx::query_as(
                "UPDATE findings SET status = 'fixed' WHERE tenant_id = ? AND source = ? AND status = 'open' \
                 AND asset IN (SELECT asset FROM findings_import WHERE import_id = ?) \
                 AND NOT EXISTS (SELECT 1 FROM findings_import s WHERE s.import_id = ? \
                   AND s.asset = findings.asset AND s.finding_id = findings.finding_id) \
                 RETURNING asset, finding_id, severity, title, description, status, first_seen_ms, last_seen_ms",
            )
            .bind(tenant)
            .bind(&import.source)
            .bind(import_id)
            .bind(import_id)
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        // first_seen_ms is set on insert only: a finding that comes back keeps its own.
        sqlx::query(
            "INSERT INTO findings (tenant_id, asset, finding_id, source, severity, title, description, status, \
             first_seen_ms, last_seen_ms) SELECT ?, asset, finding_id, ?, severity, title, description, 'open', ?, ? \
             FROM findings_import WHERE import_id = ? \
             ON CONFLICT (tenant_id, asset, finding_id) DO UPDATE SET source = excluded.source, \
             severity = excluded.severity, title = excluded.title, description = excluded.description, \
             status = 'open', last_seen_ms = excluded.last_seen_ms",
        )
        .bind(tenant)
        .bind(&import.source)
        .bind(import.at_ms)
        .bind(import.at_ms)
        .bind(import_id)
        .execute(&mut *tx)
        .await?;
        if prior.len() > fixed.len() {
            let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM findings WHERE tenant_id = ? AND status = 'open'")
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await?;
            let limit = self.engine.options.max_open_findings;
            if open as u64 > limit {
                // Dropping the transaction rolls everything above back.
                return Err(StoreError::TooManyOpenFindings { tenant: tenant.to_string(), open: open as u64, limit });
            }
        }
        let counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT asset, severity, COUNT(*) FROM findings WHERE tenant_id = ? AND status = 'open' \
             AND asset IN (SELECT asset FROM findings_import WHERE import_id = ?) GROUP BY asset, severity",
        )
        .bind(tenant)
        .bind(import_id)
        .fetch_all(&mut *tx)
        .await?;
        let values = open_values(&assets, counts);
        let mut summary = summary(import, findings, prior, fixed)?;
        // Sample objects are built after the commit: the write-ahead record needs only ids
        // and values, and the writer is not held for allocations.
        let wal: Vec<WalSample> = ids
            .iter()
            .zip(&values)
            .map(|(&series_id, &value)| WalSample { series_id, timestamp_ms: import.at_ms, value })
            .collect();
        let wal_id = SampleEngine::log(&mut tx, &wal).await?;
        let events = critical_finding_events(&summary)?;
        for part in events.chunks(ROWS_PER_INSERT / 8) {
            QueryBuilder::<Sqlite>::new("INSERT INTO events (tenant_id, host, ts, kind, severity, labels, message) ")
                .push_values(part, |mut row, event| {
                    row.push_bind(tenant)
                        .push_bind(event.finding.asset.as_str())
                        .push_bind(import.at_ms)
                        .push_bind(event.kind)
                        .push_bind(event.severity.as_str())
                        .push_bind(event.labels.as_str())
                        .push_bind(event.message.as_str());
                })
                .build()
                .execute(&mut *tx)
                .await?;
        }
        let writer = tx.commit_keeping_writer().await?;
        self.engine.append(wal_id, &wal);
        drop(writer);
        drop(events);
        summary.samples = open_samples(tenant, &assets, &values, import.at_ms);
        Ok(summary)
    }

    /// Ids of the `findings_open` series of `assets` (five each, as [`open_series`] orders
    /// them), from the cache or created in steps of their own: 250 000 series of a
    /// 50 000-asset report took seconds to resolve on every import otherwise.
    async fn finding_series_ids(&self, tenant: &str, assets: &[&str], at_ms: i64) -> Result<Vec<u32>, StoreError> {
        let missing: Vec<&str> = {
            let cache = self.finding_series.lock().unwrap_or_else(|p| p.into_inner());
            let known = cache.get(tenant);
            assets.iter().copied().filter(|a| known.is_none_or(|k| !k.contains_key(*a))).collect()
        };
        for part in missing.chunks(STAGE_PER_TRANSACTION / 5) {
            let keys = open_series(tenant, part, at_ms);
            let mut tx = self.engine.writer.begin().await?;
            let (ids, created) = resolve_series(&mut tx, tenant, &keys).await?;
            tx.commit().await?;
            // Counted, not limited: a report's series are bounded by max_open_findings.
            self.series_budget.add(tenant, created);
            let mut cache = self.finding_series.lock().unwrap_or_else(|p| p.into_inner());
            let known = cache.entry(tenant.to_string()).or_default();
            for (asset, ids) in part.iter().zip(ids.chunks_exact(5)) {
                known.insert(asset.to_string(), [ids[0], ids[1], ids[2], ids[3], ids[4]]);
            }
        }
        let cache = self.finding_series.lock().unwrap_or_else(|p| p.into_inner());
        let known = cache.get(tenant);
        let mut ids = Vec::with_capacity(assets.len() * 5);
        for asset in assets {
            let five = known
                .and_then(|k| k.get(*asset))
                .ok_or_else(|| StoreError::InvalidQuery(format!("no findings_open series for asset {asset}")))?;
            ids.extend_from_slice(five);
        }
        Ok(ids)
    }

    /// Deletes the staged rows of an import, a step at a time.
    async fn unstage(&self, import_id: i64, staged: usize) -> Result<(), StoreError> {
        for first in (0..staged).step_by(UNSTAGE_PER_TRANSACTION) {
            self.engine
                .writer
                .execute_alone(
                    sqlx::query("DELETE FROM findings_import WHERE import_id = ? AND seq >= ? AND seq < ?")
                        .bind(import_id)
                        .bind(first as i64)
                        .bind((first + UNSTAGE_PER_TRANSACTION) as i64),
                )
                .await?;
        }
        Ok(())
    }
}

/// Compacts the head when due and, every [`EXPIRY_EVERY`], merges chunks and applies
/// retention; ends when the store is dropped.
/// A failure is counted ([`Store::maintenance_health`]) and logged once per episode (again
/// every [`EXPIRY_EVERY`] while it lasts).
async fn run_maintenance(engine: std::sync::Weak<SampleEngine>) {
    let mut last_expiry = tokio::time::Instant::now();
    let mut failing_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(MAINTENANCE_TICK).await;
        let Some(engine) = engine.upgrade() else { return };
        let full = last_expiry.elapsed() >= EXPIRY_EVERY;
        if !full && !engine.head_due() {
            continue;
        }
        match engine.maintain(now_ms(), false).await {
            Ok(report) => {
                if failing_since.take().is_some() && !engine.health.failing() {
                    tracing::info!(?report, "store maintenance works again");
                }
                tracing::debug!(?report, "store maintenance");
            }
            Err(error) => match failing_since {
                Some(since) if since.elapsed() < EXPIRY_EVERY => {
                    tracing::debug!(%error, "store maintenance failed again")
                }
                _ => {
                    tracing::error!(%error, health = ?engine.health.snapshot(),
                        "store maintenance failed; retrying on the next tick (secumon_store_maintenance_failures_total)");
                    failing_since = Some(tokio::time::Instant::now());
                }
            },
        }
        if full {
            last_expiry = tokio::time::Instant::now();
        }
    }
}

/// Ids for `keys`, creating missing series inside the caller's transaction, in order.
/// ` FROM agents WHERE ...` for `filter`.
fn agent_conditions(query: &mut QueryBuilder<'_, Sqlite>, tenant: &str, filter: &AgentFilter) {
    query.push(" FROM agents WHERE tenant_id = ").push_bind(tenant.to_string());
    if let Some(id) = &filter.agent_id {
        query.push(" AND agent_id = ").push_bind(id.clone());
    }
    if let Some(host) = &filter.host {
        query.push(" AND host = ").push_bind(host.clone());
    }
}

/// Ids of `keys`, creating the missing series, and how many it created.
async fn resolve_series(
    conn: &mut SqliteConnection,
    tenant: &str,
    keys: &[SeriesKey],
) -> Result<(Vec<u32>, u64), StoreError> {
    let labels: Vec<String> = keys.iter().map(|k| serde_json::to_string(&k.labels)).collect::<Result<_, _>>()?;
    let mut created = 0;
    for part in keys.iter().zip(&labels).collect::<Vec<_>>().chunks(ROWS_PER_INSERT / 2) {
        created += QueryBuilder::<Sqlite>::new("INSERT INTO series (tenant_id, name, labels) ")
            .push_values(part, |mut row, (key, labels)| {
                row.push_bind(tenant).push_bind(&key.name).push_bind(labels.as_str());
            })
            .push(" ON CONFLICT DO NOTHING")
            .build()
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    let wanted: Vec<(&str, &str)> = keys.iter().zip(&labels).map(|(k, l)| (k.name.as_str(), l.as_str())).collect();
    let mut ids = vec![0u32; keys.len()];
    // CROSS JOIN keeps the wanted keys as the outer loop: each is one index lookup, where
    // the planner's own order re-read the JSON for every row of `series`.
    for (part_no, part) in wanted.chunks(5_000).enumerate() {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT w.key, s.id FROM json_each(?) w CROSS JOIN series s \
             ON s.tenant_id = ? AND s.name = w.value ->> 0 AND s.labels = w.value ->> 1",
        )
        .bind(serde_json::to_string(part)?)
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await?;
        for (index, id) in rows {
            ids[part_no * 5_000 + index as usize] = u32::try_from(id).map_err(|_| StoreError::TooManySeries)?;
        }
    }
    Ok((ids, created))
}

/// A batch waiting for the next group commit.
struct Queued {
    tenant: String,
    batch: IngestBatch,
}

/// What one batch did inside a group's transaction.
enum Written {
    Duplicate,
    Mismatch,
    /// Over the tenant's series limit: nothing of it kept.
    Refused(StoreError),
    Committed {
        wal_id: Option<i64>,
        wal: Vec<WalSample>,
        learned: Vec<(SeriesKey, u32)>,
        created: u64,
    },
}

/// Takes one batch's rows back out of the group's transaction (see `write_one`'s savepoint).
async fn undo_batch(tx: &mut WriteTransaction) -> Result<(), StoreError> {
    sqlx::query("ROLLBACK TO batch").execute(&mut **tx).await?;
    sqlx::query("RELEASE batch").execute(&mut **tx).await?;
    Ok(())
}

impl SqliteStore {
    /// Writes a group of batches in one transaction; each result holds only once it has
    /// committed. A failure of the transaction fails every batch of the group (each agent
    /// resends; the ones that had been stored before are refused as duplicates).
    async fn commit_group(&self, group: Vec<Queued>) -> Vec<Result<WriteOutcome, StoreError>> {
        match self.try_commit_group(&group).await {
            Ok(results) => results,
            Err(error) => {
                let (fault, message) = (error.fault(), error.to_string());
                let mut results = Vec::with_capacity(group.len());
                results.push(Err(error));
                results.extend((1..group.len()).map(|_| Err(StoreError::Group { fault, message: message.clone() })));
                results
            }
        }
    }

    async fn try_commit_group(&self, group: &[Queued]) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        let mut tx = self.engine.writer.begin().await?;
        let mut written = Vec::with_capacity(group.len());
        // Series created by the group's batches so far, per tenant, for the series limit.
        let mut group_created = HashMap::new();
        for queued in group {
            written.push(self.write_one(&mut tx, &queued.tenant, &queued.batch, &mut group_created).await?);
        }
        // The head append happens before the writer is released (see chunked.rs).
        let writer = tx.commit_keeping_writer().await?;
        let mut results = Vec::with_capacity(group.len());
        let mut learned_all = Vec::new();
        for (queued, written) in group.iter().zip(written) {
            results.push(match written {
                Written::Duplicate => Ok(WriteOutcome::Duplicate),
                Written::Mismatch => Err(StoreError::TenantMismatch { agent_id: queued.batch.agent_id.clone() }),
                Written::Refused(refused) => Err(refused),
                Written::Committed { wal_id, wal, learned, created } => {
                    self.engine.append(wal_id, &wal);
                    self.series_budget.add(&queued.tenant, created);
                    learned_all.push((queued, learned));
                    Ok(WriteOutcome::Committed)
                }
            });
        }
        drop(writer);
        for (queued, learned) in learned_all {
            self.series_ids.remember(&queued.tenant, &queued.batch, learned);
        }
        Ok(results)
    }

    /// One batch's rows inside the group's transaction.
    async fn write_one(
        &self,
        tx: &mut WriteTransaction,
        tenant: &str,
        batch: &IngestBatch,
        group_created: &mut HashMap<String, u64>,
    ) -> Result<Written, StoreError> {
        let now = now_ms();
        // What this batch writes can leave the group's transaction alone (ROLLBACK TO).
        sqlx::query("SAVEPOINT batch").execute(&mut **tx).await?;
        let samples: Vec<Cow<'_, Sample>> = batch.metric_samples().collect();
        let mut ids = self.series_ids.lookup(tenant, batch, &samples);
        // The server's own samples (no agent id: see `Store::write_batch`) are no agent's
        // batch: nothing to deduplicate, no agent row.
        if !batch.agent_id.is_empty() {
            let sequence = batch.sequence as i64;
            let first_time = sqlx::query(
                "INSERT INTO ingested_batches (agent_id, sequence, committed_at_ms) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&batch.agent_id)
            .bind(sequence)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1;
            if !first_time {
                sqlx::query("RELEASE batch").execute(&mut **tx).await?;
                return Ok(Written::Duplicate);
            }

            let owner: Option<String> = sqlx::query_scalar("SELECT tenant_id FROM agents WHERE agent_id = ?")
                .bind(&batch.agent_id)
                .fetch_optional(&mut **tx)
                .await?;
            if owner.as_deref().is_some_and(|owner| owner != tenant) {
                // Nothing of this batch stays in the group's transaction.
                undo_batch(tx).await?;
                return Ok(Written::Mismatch);
            }
            sqlx::query(
                "INSERT INTO agents (agent_id, tenant_id, host, labels, first_seen_ms, last_seen_ms, last_sequence, batches) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, 1) \
                 ON CONFLICT (agent_id) DO UPDATE SET host = excluded.host, labels = excluded.labels, \
                 last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), \
                 last_sequence = max(last_sequence, excluded.last_sequence), batches = batches + 1",
            )
            .bind(&batch.agent_id)
            .bind(tenant)
            .bind(&batch.host)
            .bind(serde_json::to_string(&batch.agent_labels)?)
            .bind(now)
            .bind(now)
            .bind(sequence)
            .execute(&mut **tx)
            .await?;
        }

        let unresolved = Unresolved::new(tenant, batch, &samples, &ids);
        let before = if unresolved.is_empty() {
            0
        } else {
            let pending = group_created.get(tenant).copied().unwrap_or(0);
            match self.series_budget.known(tenant) {
                Some(committed) => committed + pending,
                None => {
                    // Counted inside the group's transaction: that includes what earlier
                    // batches of the group created, which are not committed yet.
                    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM series WHERE tenant_id = ?")
                        .bind(tenant)
                        .fetch_one(&mut **tx)
                        .await?;
                    self.series_budget.counted(tenant, (count as u64).saturating_sub(pending));
                    count as u64
                }
            }
        };
        let (resolved, created) = resolve_series(tx, tenant, &unresolved.keys).await?;
        if let Err(refused) = self.series_budget.check(tenant, before, created) {
            // Refused whole: the batch's rows (its new series included) leave the group's
            // transaction, the other batches' stay.
            undo_batch(tx).await?;
            return Ok(Written::Refused(refused));
        }
        *group_created.entry(tenant.to_string()).or_default() += created;
        let learned = unresolved.apply(&resolved, &mut ids);
        let wal: Vec<WalSample> = samples
            .iter()
            .zip(&ids)
            .map(|(s, id)| WalSample {
                series_id: id.expect("every series resolved"),
                timestamp_ms: s.timestamp_ms,
                value: s.value,
            })
            .collect();
        let wal_id = SampleEngine::log(tx, &wal).await?;
        for check in &batch.check_results {
            sqlx::query(
                "INSERT INTO check_results (tenant_id, agent_id, check_id, kind, target, status, ts, duration_us, details) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .execute(&mut **tx)
            .await?;
        }
        for event in &batch.events {
            sqlx::query("INSERT INTO events (tenant_id, host, ts, kind, severity, labels, message) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(tenant)
                .bind(&batch.host)
                .bind(event.timestamp_ms)
                .bind(&event.kind)
                .bind(event.severity.as_str())
                .bind(serde_json::to_string(&event.labels)?)
                .bind(&event.message)
                .execute(&mut **tx)
                .await?;
        }
        for chunk in batch.logs.chunks(ROWS_PER_INSERT / 2) {
            QueryBuilder::<Sqlite>::new("INSERT INTO logs (tenant_id, host, ts, source, labels, line) ")
                .push_values(chunk, |mut row, log| {
                    row.push_bind(tenant)
                        .push_bind(&batch.host)
                        .push_bind(log.timestamp_ms)
                        .push_bind(&log.source)
                        .push_bind(serde_json::to_string(&log.labels).unwrap_or_else(|_| "{}".into()))
                        .push_bind(&log.line);
                })
                .build()
                .execute(&mut **tx)
                .await?;
        }

        sqlx::query("RELEASE batch").execute(&mut **tx).await?;
        Ok(Written::Committed { wal_id, wal, learned, created })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_batch(&self, tenant: &str, batch: &IngestBatch) -> Result<WriteOutcome, StoreError> {
        // Refused before queueing: a batch that can never be stored does not join a group.
        let samples: Vec<Cow<'_, Sample>> = batch.metric_samples().collect();
        refuse_future_samples(tenant, batch, &samples, now_ms(), self.engine.options.max_future_ms)?;
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
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT agent_id, tenant_id, host, labels, first_seen_ms, last_seen_ms, last_sequence, batches",
        );
        agent_conditions(&mut select, tenant, filter);
        // LIMIT -1: no limit.
        select.push(" ORDER BY host, agent_id LIMIT ").push_bind(filter.limit.map_or(-1, i64::from));
        select.push(" OFFSET ").push_bind(i64::from(filter.offset));
        let rows: Vec<AgentRow> = select.build_query_as().fetch_all(&self.engine.reader).await?;
        let agents = rows.into_iter().map(AgentRecord::try_from).collect::<Result<Vec<_>, StoreError>>()?;
        if filter.limit.is_none() && filter.offset == 0 {
            let total = agents.len() as u64;
            return Ok((agents, total));
        }
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        agent_conditions(&mut count, tenant, filter);
        let total: i64 = count.build_query_scalar().fetch_one(&self.engine.reader).await?;
        Ok((agents, total as u64))
    }

    async fn put_state(&self, tenant: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.engine
            .writer
            .execute_alone(
                sqlx::query(
                    "INSERT INTO component_state (tenant_id, key, value, updated_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                )
                .bind(tenant)
                .bind(key)
                .bind(value)
                .bind(now_ms()),
            )
            .await?;
        Ok(())
    }

    async fn import_findings(&self, tenant: &str, import: &FindingsImport) -> Result<ImportSummary, StoreError> {
        let findings = unique_findings(import, self.engine.options.max_report_findings)?;
        let import_id = NEXT_IMPORT.fetch_add(1, Ordering::Relaxed);
        let result = self.stage_and_apply(tenant, import, import_id, &findings).await;
        // Applied or refused, the staged rows are of no more use; if this fails too, the
        // next open deletes them.
        if let Err(error) = self.unstage(import_id, findings.len()).await {
            tracing::warn!(%error, import_id, "staged findings not deleted; they go at the next open");
        }
        result
    }

    async fn latest_checks(&self, tenant: &str) -> Result<Vec<LatestCheck>, StoreError> {
        let rows: Vec<CheckRow> = sqlx::query_as(
            "SELECT c.agent_id, a.host, c.check_id, c.kind, c.target, c.status, c.ts, c.duration_us, c.details \
             FROM check_results c JOIN agents a ON a.agent_id = c.agent_id \
             WHERE c.tenant_id = ? AND c.ts = (SELECT MAX(ts) FROM check_results l \
               WHERE l.tenant_id = c.tenant_id AND l.agent_id = c.agent_id AND l.check_id = c.check_id) \
             GROUP BY c.agent_id, c.check_id ORDER BY c.check_id, a.host",
        )
        .bind(tenant)
        .fetch_all(&self.engine.reader)
        .await?;
        rows.into_iter().map(latest_check).collect()
    }

    async fn check_runs(&self, tenant: &str, from_ms: i64, to_ms: i64) -> Result<Vec<CheckRuns>, StoreError> {
        // SQLite's bare columns beside MAX() come from the row holding the maximum: the
        // kind and target of the latest run.
        let rows: Vec<CheckRunsRow> = sqlx::query_as(
            "SELECT c.agent_id, a.host, c.check_id, c.kind, c.target, runs, ok FROM ( \
               SELECT agent_id, check_id, kind, target, MAX(ts) AS latest, COUNT(*) AS runs, \
                 SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok \
               FROM check_results WHERE tenant_id = ? AND ts >= ? AND ts < ? GROUP BY agent_id, check_id) c \
             JOIN agents a ON a.agent_id = c.agent_id",
        )
        .bind(tenant)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.engine.reader)
        .await?;
        Ok(records::check_runs(rows))
    }

    async fn open_finding_counts(&self, tenant: &str) -> Result<Vec<(Severity, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT severity, COUNT(*) FROM findings WHERE tenant_id = ? AND status = 'open' GROUP BY severity",
        )
        .bind(tenant)
        .fetch_all(&self.engine.reader)
        .await?;
        records::severity_counts(rows)
    }

    async fn list_findings(&self, tenant: &str, filter: &FindingFilter) -> Result<Vec<Finding>, StoreError> {
        let severities = admitted_severities(filter);
        let status = status_text(filter.status);
        let rows: Vec<FindingRow> = sqlx::query_as(
            "SELECT asset, finding_id, severity, title, description, status, first_seen_ms, last_seen_ms FROM findings \
             WHERE tenant_id = ? AND (? IS NULL OR asset = ?) AND (? IS NULL OR status = ?) \
             AND severity IN (SELECT value FROM json_each(?)) \
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, \
             last_seen_ms DESC, asset, finding_id LIMIT ? OFFSET ?",
        )
        .bind(tenant)
        .bind(&filter.asset)
        .bind(&filter.asset)
        .bind(status)
        .bind(status)
        .bind(serde_json::to_string(&severities)?)
        .bind(filter.limit)
        .bind(filter.offset)
        .fetch_all(&self.engine.reader)
        .await?;
        rows.into_iter().map(finding_from_row).collect()
    }

    async fn append_alert_history(&self, tenant: &str, entries: &[AlertHistoryEntry]) -> Result<(), StoreError> {
        let mut tx = self.engine.writer.begin().await?;
        for chunk in entries.chunks(ROWS_PER_INSERT / 4) {
            QueryBuilder::<Sqlite>::new("INSERT INTO alert_history (tenant_id, rule, ts, record) ")
                .push_values(chunk, |mut row, entry| {
                    row.push_bind(tenant).push_bind(&entry.rule).push_bind(entry.at_ms).push_bind(&entry.record);
                })
                .build()
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alert_history(
        &self,
        tenant: &str,
        rule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule, ts, record FROM alert_history WHERE tenant_id = ? AND (? IS NULL OR rule = ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(rule)
        .bind(rule)
        .bind(limit)
        .fetch_all(&self.engine.reader)
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AlertHistoryEntry {
                    rule: row.try_get("rule")?,
                    at_ms: row.try_get("ts")?,
                    record: row.try_get("record")?,
                })
            })
            .collect()
    }

    async fn alert_history_between(
        &self,
        tenant: &str,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<AlertHistoryEntry>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT rule, ts, record FROM alert_history WHERE tenant_id = ? AND ts BETWEEN ? AND ? \
             ORDER BY ts, id LIMIT ?",
        )
        .bind(tenant)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(&self.engine.reader)
        .await?;
        Ok(rows.into_iter().map(|(rule, at_ms, record)| AlertHistoryEntry { rule, at_ms, record }).collect())
    }

    fn set_series_limit(&self, tenant: &str, limit: Option<u64>) {
        self.series_budget.set_limit(tenant, limit);
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.engine.writer.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit_log (tenant_id, ts, actor, client_ip, action, target, detail) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        let rows: Vec<AuditRow> =
            crate::audit::select::<Sqlite>(filter).build_query_as().fetch_all(&self.engine.reader).await?;
        Ok(rows.into_iter().map(entry_from_row).collect())
    }

    async fn insert_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<bool, StoreError> {
        let inserted = self.engine.writer.execute_alone(sqlx::query(
            "INSERT INTO records (tenant_id, kind, id, body, updated_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(kind)
        .bind(id)
        .bind(body)
        .bind(now_ms()))
        .await?;
        Ok(inserted == 1)
    }

    async fn put_record(&self, tenant: &str, kind: &str, id: &str, body: &str) -> Result<(), StoreError> {
        self.engine
            .writer
            .execute_alone(sqlx::query(UPSERT_RECORD).bind(tenant).bind(kind).bind(id).bind(body).bind(now_ms()))
            .await?;
        Ok(())
    }

    async fn put_records(&self, tenant: &str, kind: &str, records: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.engine.writer.begin().await?;
        let now = now_ms();
        for (id, body) in records {
            sqlx::query(UPSERT_RECORD).bind(tenant).bind(kind).bind(id).bind(body).bind(now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn swap_records(&self, tenant: &str, swaps: &[RecordSwap]) -> Result<bool, StoreError> {
        let mut tx = self.engine.writer.begin().await?;
        let now = now_ms();
        for swap in swaps {
            let changed = sqlx::query(
                "UPDATE records SET body = ?, updated_ms = ? WHERE tenant_id = ? AND kind = ? AND id = ? AND body = ?",
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
        Ok(sqlx::query_scalar("SELECT body FROM records WHERE tenant_id = ? AND kind = ? AND id = ?")
            .bind(tenant)
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.engine.reader)
            .await?)
    }

    async fn list_records(
        &self,
        tenant: &str,
        kind: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT id, body, updated_ms FROM records WHERE tenant_id = ? AND kind = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(tenant)
        .bind(kind)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.engine.reader)
        .await?;
        Ok(rows.into_iter().map(|(id, body, updated_ms)| StoredRecord { id, body, updated_ms }).collect())
    }

    async fn delete_record(&self, tenant: &str, kind: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .engine
            .writer
            .execute_alone(
                sqlx::query("DELETE FROM records WHERE tenant_id = ? AND kind = ? AND id = ?")
                    .bind(tenant)
                    .bind(kind)
                    .bind(id),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn delete_agent(&self, tenant: &str, agent_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .engine
            .writer
            .execute_alone(
                sqlx::query("DELETE FROM agents WHERE tenant_id = ? AND agent_id = ?").bind(tenant).bind(agent_id),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn get_state(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM component_state WHERE tenant_id = ? AND key = ?")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&self.engine.reader)
            .await?)
    }

    async fn recent_logs(&self, tenant: &str, host: &str, limit: u32) -> Result<Vec<LogRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT ts, source, labels, line FROM logs WHERE tenant_id = ? AND host = ? \
             ORDER BY ts DESC, rowid DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(host)
        .bind(i64::from(limit))
        .fetch_all(&self.engine.reader)
        .await?;
        let mut records = rows
            .into_iter()
            .map(|row| {
                Ok(LogRecord {
                    timestamp_ms: row.try_get("ts")?,
                    source: row.try_get("source")?,
                    labels: serde_json::from_str(row.try_get("labels")?)?,
                    line: row.try_get("line")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        records.reverse();
        Ok(records)
    }

    async fn log_rows(&self, tenant: &str, scan: &LogScan<'_>) -> Result<Vec<LogEntry>, StoreError> {
        // Row values walk the (tenant_id, host, ts) index, whose entries end in the rowid.
        let order = match scan.order {
            LogOrder::Forward => "ASC",
            LogOrder::Backward => "DESC",
        };
        let sql = format!(
            "SELECT rowid, ts, source, labels, line FROM logs WHERE tenant_id = ? AND host = ? \
             AND (ts, rowid) > (?, ?) AND (ts, rowid) < (?, ?) AND (? IS NULL OR source = ?) \
             ORDER BY ts {order}, rowid {order} LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(scan.host)
            .bind(scan.after.timestamp_ms)
            .bind(scan.after.id)
            .bind(scan.before.timestamp_ms)
            .bind(scan.before.id)
            .bind(scan.source)
            .bind(scan.source)
            .bind(i64::from(scan.limit))
            .fetch_all(&self.engine.reader)
            .await?;
        rows.into_iter()
            .map(|row| {
                let timestamp_ms = row.try_get("ts")?;
                Ok(LogEntry {
                    cursor: LogCursor { timestamp_ms, id: row.try_get("rowid")? },
                    record: LogRecord {
                        timestamp_ms,
                        source: row.try_get("source")?,
                        labels: serde_json::from_str(row.try_get("labels")?)?,
                        line: row.try_get("line")?,
                    },
                })
            })
            .collect()
    }

    async fn list_series(&self, tenant: &str, name: Option<&str>) -> Result<Vec<SeriesKey>, StoreError> {
        let mut select = QueryBuilder::<Sqlite>::new("SELECT name, labels FROM series WHERE tenant_id = ");
        select.push_bind(tenant);
        if let Some(name) = name {
            select.push(" AND name = ").push_bind(name);
        }
        let rows = select.build().fetch_all(&self.engine.reader).await?;
        let mut keys = rows
            .into_iter()
            .map(|row| {
                Ok(SeriesKey::new(row.try_get::<String, _>("name")?, serde_json::from_str(row.try_get("labels")?)?))
            })
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
        // A host's series come from the host index; other matchers are checked below.
        let mut candidates = QueryBuilder::<Sqlite>::new("SELECT id, labels FROM series WHERE tenant_id = ");
        candidates.push_bind(tenant).push(" AND name = ").push_bind(&query.selector.name);
        if let Some(host) = query.selector.matchers.get(HOST_LABEL) {
            candidates.push(" AND labels ->> '$.host' = ").push_bind(host);
        }
        let candidates = candidates.build().fetch_all(&self.engine.reader).await?;
        let mut matched: HashMap<u32, SeriesKey> = HashMap::new();
        for row in candidates {
            let labels: Labels = serde_json::from_str(row.try_get("labels")?)?;
            let series = SeriesKey::new(query.selector.name.clone(), labels);
            if query.selector.matches(&series) {
                matched.insert(row.try_get::<i64, _>("id")? as u32, series);
            }
        }
        let ids: Vec<u32> = matched.keys().copied().collect();
        let mut answer: Vec<SeriesPoints> = self
            .engine
            .query(tenant, &ids, query, now_ms())
            .await?
            .into_iter()
            .filter_map(|(id, points)| Some(SeriesPoints { series: matched.remove(&id)?, points }))
            .collect();
        answer.sort_by(|a, b| a.series.cmp(&b.series));
        Ok(answer)
    }

    async fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport, StoreError> {
        self.engine.maintain(now_ms, true).await
    }

    fn retention_defaults(&self) -> TierRetention {
        self.engine.options.retention.tiers()
    }

    async fn tier_retention(&self, tenant: &str) -> Result<TierRetention, StoreError> {
        crate::retention::read(self, &self.engine.retentions, tenant).await
    }

    async fn set_tier_retention(&self, tenant: &str, tiers: Option<TierRetention>) -> Result<(), StoreError> {
        crate::retention::write(self, &self.engine.retentions, tenant, tiers).await
    }

    fn maintenance_health(&self) -> MaintenanceHealth {
        self.engine.health.snapshot()
    }

    /// Stops the maintenance task and closes every connection (checkpointing the WAL).
    /// Samples still in the head are safe in their write-ahead records.
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn close(&self) {
        let task = self.background.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.engine.reader.close().await;
        self.engine.writer.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection the pools open after the database's directory was deleted and made
    /// again fails: it does not start an empty database there.
    #[tokio::test]
    async fn reconnecting_after_the_file_was_deleted_makes_no_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let path = data.join("store.db");
        let options = StoreOptions { background: false, ..StoreOptions::default() };
        let store = SqliteStore::open_with(&path, options).await.unwrap();
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::create_dir(&data).unwrap();
        // Every pooled connection closed, as the pools do with idle ones after a while.
        for pool in [&store.engine.reader, &store.engine.writer.pool] {
            while pool.size() > 0 {
                pool.acquire().await.unwrap().close().await.unwrap();
            }
        }
        assert!(store.list_agents("default").await.is_err(), "no database to read");
        let error = store.engine.writer.pool.acquire().await.expect_err("no database to write");
        assert!(error.to_string().contains("unable to open"), "{error}");
        assert!(!path.exists(), "no empty database made");
        store.close().await;
    }
}
