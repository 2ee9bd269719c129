//! The sample engine of the embedded store: write-ahead records in `head_batches`, the
//! in-memory head, compaction into per-series pco chunks with rollups, merging of small
//! chunks, retention, restart replay, and range queries over chunks, rollups and head.
//!
//! Ordering rule: a batch appends to the head while it still holds the single writer
//! connection, and compaction freezes the head while holding it too, so a frozen generation
//! holds exactly the write-ahead records up to its `max_wal_id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::blocks::answer;
use crate::codec::{Effort, WalSample, decode_chunk, decode_wal, encode_chunk, encode_wal};
use crate::head::{Generation, Head, sort_last_write_wins};
use crate::query::{Point, Summary, bucket_of, summarize};
use crate::retention::{Owners, RETENTION_KIND, SampleTier, TenantRetentions};
use crate::writer::Writer;
use crate::{
    FIVE_MINUTES_MS, MaintenanceCounters, MaintenanceReport, MaintenanceTask, ONE_HOUR_MS, RangeQuery, StoreError,
    StoreOptions, Tier,
};

/// Series compacted per transaction, so the writer is never held for long.
const SERIES_PER_TRANSACTION: usize = 20_000;
/// Level-0 chunks of a series are merged once they hold this many samples together.
const MERGE_AT_SAMPLES: i64 = 1_024;
/// Level-0 chunks whose data is older than this are merged whatever their size.
const MERGE_AFTER_MS: i64 = 2 * 3_600_000;
/// Largest merged chunk.
const MAX_CHUNK_SAMPLES: usize = 16_384;
/// Rows deleted per retention statement, so ingest interleaves.
const EXPIRE_SLICE: i64 = 10_000;

pub struct SampleEngine {
    pub writer: Writer,
    pub reader: SqlitePool,
    pub options: StoreOptions,
    /// Every tenant's retention of samples per tier, read again at each retention pass.
    pub retentions: TenantRetentions,
    head: Mutex<Head>,
    /// Held shared by queries and exclusively while a compaction commits and hides the
    /// series it wrote, so no query sees a sample both in the head and in a chunk.
    gate: tokio::sync::RwLock<()>,
    /// One compaction, merge or retention pass at a time.
    maintenance: tokio::sync::Mutex<()>,
    /// Outcomes of maintenance passes, by task.
    pub health: MaintenanceCounters,
}

/// A series' level-0 chunks read for merging: series id, chunk ids, newest head record, samples.
type MergeInput = (u32, Vec<i64>, i64, Vec<(i64, f64)>);

/// One compacted series, ready to write.
struct CompactedSeries {
    series_id: u32,
    min_ts: i64,
    max_ts: i64,
    samples: usize,
    max_wal_id: i64,
    chunk: Vec<u8>,
    rollup_5m: Vec<(i64, Summary)>,
    rollup_1h: Vec<(i64, Summary)>,
}

impl SampleEngine {
    pub fn new(writer: Writer, reader: SqlitePool, options: StoreOptions) -> Self {
        Self {
            writer,
            reader,
            retentions: TenantRetentions::new(options.retention),
            options,
            head: Mutex::new(Head::default()),
            gate: tokio::sync::RwLock::new(()),
            maintenance: tokio::sync::Mutex::new(()),
            health: MaintenanceCounters::default(),
        }
    }

    fn head(&self) -> MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the write-ahead record of `samples` inside the caller's transaction.
    pub async fn log(conn: &mut SqliteConnection, samples: &[WalSample]) -> Result<Option<i64>, StoreError> {
        if samples.is_empty() {
            return Ok(None);
        }
        let id = sqlx::query_scalar("INSERT INTO head_batches (record) VALUES (?) RETURNING id")
            .bind(encode_wal(samples))
            .fetch_one(conn)
            .await?;
        Ok(Some(id))
    }

    /// Makes committed samples visible; call while still holding the writer connection.
    pub fn append(&self, wal_id: Option<i64>, samples: &[WalSample]) {
        if let Some(wal_id) = wal_id {
            self.head().active.append(wal_id, samples);
        }
    }

    /// Whether the head is due for compaction.
    pub fn head_due(&self) -> bool {
        let head = self.head();
        head.frozen_pending()
            || head.active.samples >= self.options.head_max_samples
            || head.active.since.is_some_and(|since| since.elapsed() >= self.options.head_max_age)
    }

    /// Rebuilds the head from the write-ahead records after a restart, skipping samples a
    /// compaction had already written before the process stopped; converts the rows of the
    /// pre-chunk `samples` table, if any, into a write-ahead record first.
    pub async fn recover(&self) -> Result<(), StoreError> {
        self.load_retentions().await?;
        self.convert_legacy_samples().await?;
        let watermarks: HashMap<i64, i64> = sqlx::query_as(
            "SELECT series_id, MAX(max_wal_id) FROM chunks \
             WHERE max_wal_id >= (SELECT MIN(id) FROM head_batches) GROUP BY series_id",
        )
        .fetch_all(&self.writer.pool)
        .await?
        .into_iter()
        .collect();
        let mut last_id = 0;
        loop {
            let rows: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT id, record FROM head_batches WHERE id > ? ORDER BY id LIMIT 1000")
                    .bind(last_id)
                    .fetch_all(&self.writer.pool)
                    .await?;
            let Some((id, _)) = rows.last() else { break };
            last_id = *id;
            let mut head = self.head();
            for (wal_id, record) in rows {
                let mut samples = decode_wal(&record)?;
                samples.retain(|s| watermarks.get(&i64::from(s.series_id)).is_none_or(|&done| wal_id > done));
                head.active.append(wal_id, &samples);
            }
        }
        Ok(())
    }

    /// Reads every tenant's own retention policy from the records.
    pub async fn load_retentions(&self) -> Result<(), StoreError> {
        // On a reader: the single writer stays free for ingest.
        let rows = sqlx::query_as("SELECT tenant_id, body FROM records WHERE kind = ?")
            .bind(RETENTION_KIND)
            .fetch_all(&self.reader)
            .await?;
        self.retentions.load(rows);
        Ok(())
    }

    async fn convert_legacy_samples(&self) -> Result<(), StoreError> {
        let legacy: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'legacy_samples'")
                .fetch_optional(&self.writer.pool)
                .await?;
        if legacy.is_none() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        let rows: Vec<(i64, i64, Option<f64>)> =
            sqlx::query_as("SELECT series_id, ts, value FROM legacy_samples ORDER BY rowid")
                .fetch_all(&mut *tx)
                .await?;
        let samples = rows
            .into_iter()
            .map(|(series_id, timestamp_ms, value)| {
                Ok(WalSample {
                    series_id: u32::try_from(series_id).map_err(|_| StoreError::TooManySeries)?,
                    timestamp_ms,
                    value: value.unwrap_or(f64::NAN),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Self::log(&mut tx, &samples).await?;
        sqlx::query("DROP TABLE legacy_samples").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One maintenance pass; `force` compacts and merges whatever is pending.
    /// Each task's outcome is counted in `health`.
    pub async fn maintain(&self, now_ms: i64, force: bool) -> Result<MaintenanceReport, StoreError> {
        let compaction = async {
            let compacted = if force || self.head_due() { self.compact_head(now_ms).await? } else { 0 };
            Ok((compacted, self.merge_chunks(now_ms, force).await?))
        }
        .await;
        self.health.record(MaintenanceTask::Compaction, &compaction);
        let (compacted_samples, merged_chunks) = compaction?;
        let expired = self.expire(now_ms).await;
        self.health.record(MaintenanceTask::Retention, &expired);
        Ok(MaintenanceReport { compacted_samples, merged_chunks, expired_rows: expired? })
    }

    /// Writes the head into level-0 chunks and rollups; returns the samples written.
    async fn compact_head(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _one = self.maintenance.lock().await;
        let (frozen, pending): (Arc<Generation>, Vec<u32>) = {
            let _writer = self.writer.pool.acquire().await?;
            self.head().freeze()
        };
        for piece in pending.chunks(SERIES_PER_TRANSACTION) {
            let generation = Arc::clone(&frozen);
            let piece_ids = piece.to_vec();
            let mut compacted = tokio::task::spawn_blocking(move || {
                piece_ids.iter().map(|id| compact_series(*id, &generation.series[id])).collect::<Vec<_>>()
            })
            .await?;
            let mut tx = self.writer.begin().await?;
            // Raw samples before this may be gone (for the tenant with the shortest raw
            // retention): a bucket there cannot be summarized again from its chunks.
            let raw_since_ms = now_ms - self.retentions.shortest_raw_ms();
            let resummarized = resummarize_rewrites(&mut tx, &mut compacted, raw_since_ms).await?;
            insert_chunks(&mut tx, &compacted, 0).await?;
            for (table, tier) in [("rollup_5m", 0), ("rollup_1h", 1)] {
                let (mut added, mut replaced) = (Vec::new(), Vec::new());
                for c in &compacted {
                    let rollup = if tier == 0 { &c.rollup_5m } else { &c.rollup_1h };
                    let rows = if resummarized.contains(&c.series_id) { &mut replaced } else { &mut added };
                    rows.extend(rollup.iter().map(|(bucket, summary)| (c.series_id, *bucket, *summary)));
                }
                upsert_rollups(&mut tx, table, &added, Combine::Add).await?;
                upsert_rollups(&mut tx, table, &replaced, Combine::Replace).await?;
            }
            let _exclusive = self.gate.write().await;
            tx.commit().await?;
            self.head().release(piece.iter().copied());
        }
        if frozen.max_wal_id > 0 {
            let delete = sqlx::query("DELETE FROM head_batches WHERE id <= ?").bind(frozen.max_wal_id);
            self.writer.execute_alone(delete).await?;
        }
        self.head().finish();
        Ok(frozen.samples as u64)
    }

    /// Merges each series' level-0 chunks into level-1 chunks at the best compression once
    /// they are big or old enough (all of them with `force`), even a single one: level 0 is
    /// written fast and is twice the size. Returns the number of level-0 chunks merged away.
    async fn merge_chunks(&self, now_ms: i64, force: bool) -> Result<u64, StoreError> {
        let _one = self.maintenance.lock().await;
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT series_id FROM chunks WHERE level = 0 GROUP BY series_id \
             HAVING ? OR SUM(samples) >= ? OR MIN(max_ts) < ?",
        )
        .bind(force)
        .bind(MERGE_AT_SAMPLES)
        .bind(now_ms - MERGE_AFTER_MS)
        .fetch_all(&self.reader)
        .await?;
        let mut merged = 0;
        for piece in due.chunks(2_000) {
            let rows = sqlx::query(
                "SELECT id, series_id, max_wal_id, data FROM chunks \
                 WHERE level = 0 AND series_id IN (SELECT value FROM json_each(?)) ORDER BY series_id, id",
            )
            .bind(json_ids(piece.iter().copied()))
            .fetch_all(&self.reader)
            .await?;
            let mut per_series: Vec<MergeInput> = Vec::new();
            for row in &rows {
                let series_id = row.try_get::<i64, _>("series_id")? as u32;
                if per_series.last().is_none_or(|(id, ..)| *id != series_id) {
                    per_series.push((series_id, Vec::new(), 0, Vec::new()));
                }
                let entry = per_series.last_mut().expect("pushed above");
                let (ts, vs) = decode_chunk(row.try_get("data")?)?;
                entry.1.push(row.try_get("id")?);
                entry.2 = entry.2.max(row.try_get("max_wal_id")?);
                entry.3.extend(ts.into_iter().zip(vs));
            }
            let compacted: Vec<(Vec<i64>, Vec<CompactedSeries>)> = tokio::task::spawn_blocking(move || {
                per_series
                    .into_iter()
                    .map(|(series_id, old, max_wal_id, mut points)| {
                        sort_last_write_wins(&mut points);
                        let parts = points
                            .chunks(MAX_CHUNK_SAMPLES)
                            .map(|part| encode_points(series_id, max_wal_id, part, Effort::Best))
                            .collect();
                        (old, parts)
                    })
                    .collect()
            })
            .await?;
            let (old, new_chunks): (Vec<Vec<i64>>, Vec<Vec<CompactedSeries>>) = compacted.into_iter().unzip();
            let old: Vec<i64> = old.into_iter().flatten().collect();
            let mut tx = self.writer.begin().await?;
            insert_chunks(&mut tx, &new_chunks.into_iter().flatten().collect::<Vec<_>>(), 1).await?;
            sqlx::query("DELETE FROM chunks WHERE id IN (SELECT value FROM json_each(?))")
                .bind(json_ids(old.iter().copied()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            merged += old.len() as u64;
        }
        Ok(merged)
    }

    /// Deletes what each tier's retention no longer covers, a slice at a time. Samples
    /// (chunks and rollups) go by age past the longest horizon of any tenant, then tenant
    /// group by group past each shorter one, walking each group's series through the series
    /// index (not every chunk older than the shorter horizon, which longer-keeping tenants'
    /// data would make a scan of most of the table at every pass).
    async fn expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        let _one = self.maintenance.lock().await;
        let r = &self.options.retention;
        let by_rowid = |table: &str, ts: &str| {
            format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {ts} < ?1 LIMIT ?2)")
        };
        let by_bucket = |table: &str| {
            format!(
                "DELETE FROM {table} WHERE (series_id, bucket) IN \
                 (SELECT series_id, bucket FROM {table} WHERE bucket < ?1 LIMIT ?2)"
            )
        };
        // Series first (CROSS JOIN keeps SQLite from driving the join from the age index).
        let of_owners = |tier: SampleTier, owners: &Owners| {
            let owned = match owners {
                Owners::Tenant(_) => "s.tenant_id = ?3",
                Owners::AllBut(_) => "s.tenant_id NOT IN (SELECT value FROM json_each(?3))",
            };
            match tier {
                SampleTier::Raw => format!(
                    "DELETE FROM chunks WHERE rowid IN (SELECT c.rowid FROM series s CROSS JOIN chunks c \
                     WHERE c.series_id = s.id AND c.max_ts < ?1 AND {owned} LIMIT ?2)"
                ),
                SampleTier::FiveMinutes | SampleTier::OneHour => {
                    let table = if tier == SampleTier::FiveMinutes { "rollup_5m" } else { "rollup_1h" };
                    format!(
                        "DELETE FROM {table} WHERE (series_id, bucket) IN (SELECT r.series_id, r.bucket \
                         FROM series s CROSS JOIN {table} r WHERE r.series_id = s.id AND r.bucket < ?1 \
                         AND {owned} LIMIT ?2)"
                    )
                }
            }
        };
        let owner_bind = |owners: &Owners| match owners {
            Owners::Tenant(tenant) => tenant.clone(),
            Owners::AllBut(tenants) => serde_json::Value::from(tenants.clone()).to_string(),
        };
        // (statement, keep, the owners' bind if the statement takes one)
        let mut plans: Vec<(String, i64, Option<String>)> = Vec::new();
        let samples = |tier: SampleTier, plans: &mut Vec<(String, i64, Option<String>)>| {
            let plan = self.retentions.plan(tier);
            plans.push(match tier {
                SampleTier::Raw => (by_rowid("chunks", "max_ts"), plan.longest_ms, None),
                SampleTier::FiveMinutes => (by_bucket("rollup_5m"), plan.longest_ms, None),
                SampleTier::OneHour => (by_bucket("rollup_1h"), plan.longest_ms, None),
            });
            for (owners, keep_ms) in &plan.groups {
                plans.push((of_owners(tier, owners), *keep_ms, Some(owner_bind(owners))));
            }
        };
        samples(SampleTier::Raw, &mut plans);
        plans.extend([
            (by_rowid("check_results", "ts"), r.raw_ms, None),
            (by_rowid("logs", "ts"), r.logs_ms, None),
            (by_rowid("events", "ts"), r.events_ms, None),
            (by_rowid("alert_history", "ts"), r.alerts_ms, None),
            (by_rowid("audit_log", "ts"), r.audit_ms, None),
        ]);
        samples(SampleTier::FiveMinutes, &mut plans);
        samples(SampleTier::OneHour, &mut plans);
        // The duplicate filter only needs to outlive what an agent may still resend.
        plans.push((
            "DELETE FROM ingested_batches WHERE (agent_id, sequence) IN (SELECT agent_id, sequence \
             FROM ingested_batches WHERE committed_at_ms < ?1 LIMIT ?2)"
                .to_string(),
            r.raw_ms,
            None,
        ));
        let mut expired = 0;
        for (delete, keep_ms, owners) in plans {
            loop {
                let mut slice = sqlx::query(&delete).bind(now_ms.saturating_sub(keep_ms)).bind(EXPIRE_SLICE);
                if let Some(owners) = &owners {
                    slice = slice.bind(owners.as_str());
                }
                let done = self.writer.execute_alone(slice).await?;
                expired += done;
                if done < EXPIRE_SLICE as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        Ok(expired)
    }

    /// Points of each series in `series_ids` for `query`, from the tier it calls for.
    pub async fn query(
        &self,
        tenant: &str,
        series_ids: &[u32],
        query: &RangeQuery,
        now_ms: i64,
    ) -> Result<Vec<(u32, Vec<Point>)>, StoreError> {
        if series_ids.is_empty() {
            return Ok(Vec::new());
        }
        let tier = Tier::for_query(query, now_ms, &self.retentions.of(tenant));
        let ids = json_ids(series_ids.iter().map(|id| i64::from(*id)));
        let _shared = self.gate.read().await;
        let stored: Vec<Stored> = match tier {
            // By series: the age index would scan every chunk of a recent range.
            Tier::Raw => sqlx::query_as::<_, (i64, Vec<u8>)>(
                "SELECT series_id, data FROM chunks INDEXED BY chunks_by_series WHERE series_id IN (SELECT value FROM json_each(?1)) \
                 AND max_ts >= ?2 AND min_ts <= ?3 ORDER BY id",
            )
            .bind(&ids)
            .bind(query.start_ms)
            .bind(query.end_ms)
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(|(id, data)| Stored::Chunk(id as u32, data))
            .collect(),
            Tier::FiveMinutes | Tier::OneHour => {
                let (table, resolution) =
                    if tier == Tier::FiveMinutes { ("rollup_5m", FIVE_MINUTES_MS) } else { ("rollup_1h", ONE_HOUR_MS) };
                sqlx::query(&format!(
                    "SELECT series_id, bucket, min, max, sum, count, last_ts, last FROM {table} \
                     WHERE series_id IN (SELECT value FROM json_each(?1)) AND bucket BETWEEN ?2 AND ?3 \
                     ORDER BY series_id, bucket"
                ))
                .bind(&ids)
                .bind(bucket_of(query.start_ms, 0, resolution))
                .bind(query.end_ms)
                .fetch_all(&self.reader)
                .await?
                .iter()
                .map(|row| {
                    let real = |name: &str| row.try_get::<Option<f64>, _>(name).map(|v| v.unwrap_or(f64::NAN));
                    let bucket: i64 = row.try_get("bucket")?;
                    Ok(Stored::Rollup(
                        row.try_get::<i64, _>("series_id")? as u32,
                        bucket.max(query.start_ms),
                        Summary {
                            min: real("min")?,
                            max: real("max")?,
                            sum: real("sum")?,
                            count: row.try_get::<i64, _>("count")? as u64,
                            last_ts: row.try_get("last_ts")?,
                            last: real("last")?,
                        },
                    ))
                })
                .collect::<Result<_, StoreError>>()?
            }
        };
        let mut head_points: HashMap<u32, Vec<(i64, f64)>> = HashMap::with_capacity(series_ids.len());
        {
            let head = self.head();
            for id in series_ids {
                let mut points = Vec::new();
                head.samples_of(*id, &mut points);
                head_points.insert(*id, points);
            }
        }
        drop(_shared);
        // Decoding dominates big queries: split the series over the cores.
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get()).min(series_ids.len()).max(1);
        let part_of = |id: u32| id as usize % parts;
        let mut work: Vec<QueryPart> = (0..parts).map(|_| Default::default()).collect();
        for id in series_ids {
            work[part_of(*id)].0.push(*id);
        }
        for item in stored {
            let id = match &item {
                Stored::Chunk(id, _) | Stored::Rollup(id, ..) => *id,
            };
            work[part_of(id)].1.push(item);
        }
        for (id, points) in head_points {
            work[part_of(id)].2.insert(id, points);
        }
        let tasks: Vec<_> = work
            .into_iter()
            .map(|(ids, stored, head)| {
                let query = query.clone();
                tokio::task::spawn_blocking(move || evaluate(&ids, stored, head, &query, tier))
            })
            .collect();
        let mut answer = Vec::with_capacity(series_ids.len());
        for task in tasks {
            answer.extend(task.await??);
        }
        Ok(answer)
    }
}

/// One core's share of a query: its series, their stored data and their head samples.
type QueryPart = (Vec<u32>, Vec<Stored>, HashMap<u32, Vec<(i64, f64)>>);

/// What the database gave for a query, before decoding.
enum Stored {
    Chunk(u32, Vec<u8>),
    Rollup(u32, i64, Summary),
}

fn evaluate(
    series_ids: &[u32],
    stored: Vec<Stored>,
    mut head_points: HashMap<u32, Vec<(i64, f64)>>,
    query: &RangeQuery,
    tier: Tier,
) -> Result<Vec<(u32, Vec<Point>)>, StoreError> {
    let in_range = |ts: i64| ts >= query.start_ms && ts <= query.end_ms;
    let mut raw: HashMap<u32, Vec<(i64, f64)>> = HashMap::new();
    let mut rollups: HashMap<u32, Vec<(i64, Summary)>> = HashMap::new();
    for item in stored {
        match item {
            Stored::Chunk(id, data) => {
                let (ts, vs) = decode_chunk(&data)?;
                raw.entry(id).or_default().extend(ts.into_iter().zip(vs).filter(|(ts, _)| in_range(*ts)));
            }
            Stored::Rollup(id, ts, summary) => rollups.entry(id).or_default().push((ts, summary)),
        }
    }
    let mut out = Vec::new();
    for id in series_ids {
        let head = head_points.remove(id).unwrap_or_default();
        let stored = raw.remove(id).unwrap_or_default();
        let points = answer(stored, rollups.remove(id).unwrap_or_default(), head, query, tier);
        if !points.is_empty() {
            out.push((*id, points));
        }
    }
    Ok(out)
}

fn compact_series(series_id: u32, head: &crate::head::SeriesHead) -> CompactedSeries {
    let mut points: Vec<(i64, f64)> = head.timestamps.iter().copied().zip(head.values.iter().copied()).collect();
    sort_last_write_wins(&mut points);
    encode_points(series_id, head.max_wal_id, &points, Effort::Fast)
}

/// A chunk of `points`; chunks from the head (fast effort) also carry their rollups, since
/// each sample leaves the head exactly once.
fn encode_points(series_id: u32, max_wal_id: i64, points: &[(i64, f64)], effort: Effort) -> CompactedSeries {
    let with_rollups = effort == Effort::Fast;
    let timestamps: Vec<i64> = points.iter().map(|p| p.0).collect();
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    CompactedSeries {
        series_id,
        min_ts: timestamps.first().copied().unwrap_or_default(),
        max_ts: timestamps.last().copied().unwrap_or_default(),
        samples: points.len(),
        max_wal_id,
        chunk: encode_chunk(&timestamps, &values, effort),
        rollup_5m: if with_rollups { summarize(points, FIVE_MINUTES_MS) } else { Vec::new() },
        rollup_1h: if with_rollups { summarize(points, ONE_HOUR_MS) } else { Vec::new() },
    }
}

async fn insert_chunks(conn: &mut SqliteConnection, chunks: &[CompactedSeries], level: i64) -> Result<(), StoreError> {
    for part in chunks.chunks(1_000) {
        QueryBuilder::<Sqlite>::new(
            "INSERT INTO chunks (series_id, min_ts, max_ts, samples, level, max_wal_id, data) ",
        )
        .push_values(part, |mut row, c| {
            row.push_bind(i64::from(c.series_id))
                .push_bind(c.min_ts)
                .push_bind(c.max_ts)
                .push_bind(c.samples as i64)
                .push_bind(level)
                .push_bind(c.max_wal_id)
                .push_bind(c.chunk.as_slice());
        })
        .build()
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// How a summary written to a rollup bucket meets what the bucket already holds.
#[derive(Clone, Copy, PartialEq)]
enum Combine {
    /// The summary is of samples the bucket does not hold yet.
    Add,
    /// The summary is of every sample of the bucket.
    Replace,
}

/// Makes the rollups of series whose head rewrites or precedes samples already in chunks
/// (a timestamp sent again, or late data) right: a rollup bucket holds each sample once, the
/// last one written at its timestamp. The hours those head samples touch are summarized
/// again from the chunks and the head, and `compacted`'s rollups for them replaced; the ids of
/// those series are returned, whose rollups are then written with [`Combine::Replace`].
/// Hours older than `raw_since_ms` may have lost chunks to retention: added to as before.
async fn resummarize_rewrites(
    conn: &mut SqliteConnection,
    compacted: &mut [CompactedSeries],
    raw_since_ms: i64,
) -> Result<std::collections::HashSet<u32>, StoreError> {
    let stored_until: HashMap<i64, i64> = sqlx::query_as(
        "SELECT series_id, MAX(max_ts) FROM chunks \
         WHERE series_id IN (SELECT value FROM json_each(?)) GROUP BY series_id",
    )
    .bind(json_ids(compacted.iter().map(|c| i64::from(c.series_id))))
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let mut resummarized = std::collections::HashSet::new();
    for c in compacted.iter_mut() {
        let from = bucket_of(c.min_ts, 0, ONE_HOUR_MS);
        let until = bucket_of(c.max_ts, 0, ONE_HOUR_MS) + ONE_HOUR_MS;
        let rewrites = stored_until.get(&i64::from(c.series_id)).is_some_and(|&stored| c.min_ts <= stored);
        if !rewrites || from < raw_since_ms {
            continue;
        }
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM chunks WHERE series_id = ? AND max_ts >= ? AND min_ts < ? ORDER BY id",
        )
        .bind(i64::from(c.series_id))
        .bind(from)
        .bind(until)
        .fetch_all(&mut *conn)
        .await?;
        // Oldest written first, the head last, so the last write at a timestamp wins.
        let mut points = Vec::new();
        for data in chunks.iter().map(Vec::as_slice).chain([c.chunk.as_slice()]) {
            let (ts, vs) = decode_chunk(data)?;
            points.extend(ts.into_iter().zip(vs).filter(|(ts, _)| (from..until).contains(ts)));
        }
        sort_last_write_wins(&mut points);
        c.rollup_5m = summarize(&points, FIVE_MINUTES_MS);
        c.rollup_1h = summarize(&points, ONE_HOUR_MS);
        resummarized.insert(c.series_id);
    }
    Ok(resummarized)
}

/// Writes summaries to a rollup table, adding to or replacing what its buckets hold.
async fn upsert_rollups(
    conn: &mut SqliteConnection,
    table: &str,
    rows: &[(u32, i64, Summary)],
    combine: Combine,
) -> Result<(), StoreError> {
    let finite = |v: f64| (!v.is_nan()).then_some(v);
    for part in rows.chunks(1_000) {
        let mut insert = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {table} (series_id, bucket, min, max, sum, count, last_ts, last) "
        ));
        insert.push_values(part, |mut row, (id, bucket, s)| {
            row.push_bind(i64::from(*id))
                .push_bind(*bucket)
                .push_bind(finite(s.min))
                .push_bind(finite(s.max))
                .push_bind(finite(s.sum))
                .push_bind(s.count as i64)
                .push_bind(s.last_ts)
                .push_bind(finite(s.last));
        });
        if combine == Combine::Replace {
            insert.push(
                " ON CONFLICT (series_id, bucket) DO UPDATE SET min = excluded.min, max = excluded.max, \
                 sum = excluded.sum, count = excluded.count, last = excluded.last, last_ts = excluded.last_ts",
            );
            insert.build().execute(&mut *conn).await?;
            continue;
        }
        // SQLite's many-argument min/max are NULL when any argument is: keep the other side.
        insert.push(
            " ON CONFLICT (series_id, bucket) DO UPDATE SET \
             min = coalesce(min(min, excluded.min), min, excluded.min), \
             max = coalesce(max(max, excluded.max), max, excluded.max), \
             sum = coalesce(sum, 0) + coalesce(excluded.sum, 0), count = count + excluded.count, \
             last = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last ELSE last END, \
             last_ts = max(last_ts, excluded.last_ts)",
        );
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

fn json_ids(ids: impl Iterator<Item = i64>) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}
