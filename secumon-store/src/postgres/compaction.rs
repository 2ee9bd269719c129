//! PostgreSQL's samples as compressed blocks: batches land in the `samples` head table (the
//! write-ahead log: a batch is acknowledged when its transaction commits); compaction moves
//! the head's samples older than [`COMPACT_MARGIN_MS`] into pco blocks per series per
//! two-hour window (`blocks`, partitioned by day), keeping the window's 5-minute and hourly
//! rollups as one block per tier (`rollup_5m_blocks`, `rollup_1h_blocks`), through the shared
//! [`settle`]. Each pass adds a fast level-0 block per series; once a window has closed, its
//! blocks are merged into one level-1 block at the best compression.
//!
//! Several server processes may write and maintain one database: a pass runs only in the
//! process holding the schema's advisory lock, and each slice of series is moved in one
//! REPEATABLE READ transaction that reads the head, writes the blocks and deletes exactly the
//! rows it read (its snapshot's), so what it moves is only committed data and a batch that
//! commits meanwhile stays in the head for the next pass, to be merged then (last write wins,
//! the window's rollups summarized again: never counted twice).

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use super::{DAY_MS, PgStore};
use crate::StoreError;
use crate::blocks::{BLOCK_WINDOW_MS, StoredWindow, encode_points, merge_blocks, settle, window_of};
use crate::codec::{Effort, encode_summaries};
use crate::query::Summary;

/// Head samples this recent stay for the next pass: a batch's stragglers (another agent's
/// batch of the same instant commits a moment later) land in the head, not in a rewrite.
pub(super) const COMPACT_MARGIN_MS: i64 = 2 * 60_000;
/// Series per compaction transaction (by id range), so a pass holds little in memory.
const SERIES_PER_SLICE: i64 = 512;
/// Windows per `UNNEST` statement when blocks are written.
const WINDOWS_PER_INSERT: usize = 2_000;
/// Taken (for its transaction) by a maintenance pass: one process of those sharing the
/// schema compacts and applies retention at a time.
pub(super) const TRY_MAINTENANCE_LOCK: &str =
    "SELECT pg_try_advisory_xact_lock(hashtext('secumon.maintenance.' || current_schema()))";
const MAINTENANCE_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('secumon.maintenance.' || current_schema()))";

/// A series' window: the series id and the window's start.
pub(super) type WindowKey = (i64, i64);

/// A rollup row of the row layout: series, bucket, min, max, sum, count, last timestamp, last.
type LegacyRollupRow = (i64, i64, Option<f64>, Option<f64>, f64, i64, i64, f64);

/// A window's stored blocks as read: series, window start, newest raw timestamp, 5-minute
/// and hourly block.
type StoredRow = (i64, i64, Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>);

/// A raw block: first and last timestamp, samples, bytes.
type RawBlock = (i64, i64, usize, Vec<u8>);

/// A settled window ready to store: its raw block, whether it replaces the window's others,
/// then the 5-minute and hourly rollup blocks.
type WindowRows = (WindowKey, RawBlock, bool, Vec<u8>, Vec<u8>);

impl PgStore {
    /// Moves the head's samples of every window that ended [`COMPACT_MARGIN_MS`] before
    /// `now_ms` into blocks; returns how many. The caller holds the maintenance lock.
    pub(super) async fn compact(&self, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms.saturating_sub(COMPACT_MARGIN_MS);
        // Block partitions for every day the head holds before the cutoff, made outside the
        // slices' transactions (DDL would hold a lock on `blocks` until they commit).
        let head_days = self.partition_days("samples").await?;
        self.ensure_partitions("blocks", head_days.into_iter().filter(|day| day * DAY_MS < cutoff).map(|d| d * DAY_MS))
            .await?;
        let last_series: i64 =
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM series").fetch_one(&self.pool).await?;
        let mut moved = 0;
        let mut from = 0;
        while from <= last_series {
            moved += self.compact_slice(from, from + SERIES_PER_SLICE, cutoff).await?;
            from += SERIES_PER_SLICE;
        }
        Ok(moved)
    }

    /// Merges the level-0 blocks of windows that closed before `now_ms` (less the margin)
    /// into one level-1 block each, at the best compression; returns the blocks merged away.
    pub(super) async fn merge_closed(&self, now_ms: i64) -> Result<u64, StoreError> {
        let closed_before = now_ms.saturating_sub(COMPACT_MARGIN_MS).saturating_sub(BLOCK_WINDOW_MS);
        let mut merged = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
            let keys: Vec<WindowKey> = sqlx::query_as(
                "SELECT DISTINCT series_id, window_start FROM blocks WHERE level = 0 AND window_start <= $1 LIMIT $2",
            )
            .bind(closed_before)
            .bind(WINDOWS_PER_INSERT as i64)
            .fetch_all(&mut *tx)
            .await?;
            if keys.is_empty() {
                return Ok(merged);
            }
            let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
            let starts: Vec<i64> = keys.iter().map(|k| k.1).collect();
            let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT b.series_id, b.window_start, b.data FROM UNNEST($1::int8[], $2::int8[]) AS k(s, w) \
                 JOIN blocks b ON b.series_id = k.s AND b.window_start = k.w ORDER BY b.series_id, b.window_start, b.min_ts",
            )
            .bind(&ids)
            .bind(&starts)
            .fetch_all(&mut *tx)
            .await?;
            merged += rows.len() as u64;
            let windows = tokio::task::spawn_blocking(move || {
                let mut by_window: BTreeMap<WindowKey, Vec<Vec<u8>>> = BTreeMap::new();
                for (series_id, start, data) in rows {
                    by_window.entry((series_id, start)).or_default().push(data);
                }
                by_window
                    .into_iter()
                    .map(|(key, blocks)| {
                        let points = merge_blocks(blocks.iter().map(Vec::as_slice))?;
                        Ok((key, encode_points(&points, Effort::Best)))
                    })
                    .collect::<Result<Vec<(WindowKey, RawBlock)>, StoreError>>()
            })
            .await??;
            sqlx::query(
                "DELETE FROM blocks b USING UNNEST($1::int8[], $2::int8[]) AS k(s, w) \
                 WHERE b.series_id = k.s AND b.window_start = k.w",
            )
            .bind(&ids)
            .bind(&starts)
            .execute(&mut *tx)
            .await?;
            insert_raw_blocks(&mut tx, windows.iter().map(|(key, block)| (key, block)), 1).await?;
            tx.commit().await?;
        }
    }

    /// Compacts the head rows of series `from..to` older than `cutoff`, in one transaction.
    async fn compact_slice(&self, from: i64, to: i64, cutoff: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One snapshot for the read and the delete: the delete removes exactly the rows read.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
        let rows: Vec<(i64, i64, f64)> = sqlx::query_as(
            "SELECT series_id, ts, value FROM samples WHERE series_id >= $1 AND series_id < $2 AND ts < $3 \
             ORDER BY series_id, write_seq",
        )
        .bind(from)
        .bind(to)
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let moved = rows.len() as u64;
        // Per window, in the order written (a batch holds one row per series and timestamp).
        let mut newer: BTreeMap<WindowKey, Vec<(i64, f64)>> = BTreeMap::new();
        for (series_id, ts, value) in rows {
            newer.entry((series_id, window_of(ts))).or_default().push((ts, value));
        }
        let mut stored = read_windows(&mut tx, &newer).await?;
        let settled = tokio::task::spawn_blocking(move || {
            newer
                .into_iter()
                .map(|(key, points)| {
                    let window = settle(&stored.remove(&key).unwrap_or_default(), points)?;
                    let (five, hourly) = window.rollup_blocks();
                    Ok((key, window.raw_block(Effort::Fast), window.replaces_raw, five, hourly))
                })
                .collect::<Result<Vec<WindowRows>, StoreError>>()
        })
        .await??;
        write_windows(&mut tx, &settled).await?;
        sqlx::query("DELETE FROM samples WHERE series_id >= $1 AND series_id < $2 AND ts < $3")
            .bind(from)
            .bind(to)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Brings a database of the row layout (migrations up to 0004) to the block layout:
    /// fills `series.host` and turns the old rollup rows into rollup blocks. The old raw rows
    /// are already where new batches go (the head), and compaction moves them. Rollup rows of
    /// windows whose raw samples are still in the head are left out: compaction summarizes
    /// those windows from the samples themselves. Safe to run from several processes at once.
    pub(super) async fn upgrade_layout(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(MAINTENANCE_LOCK).execute(&mut *tx).await?;
        // Hosts, so a host's series are found through an index.
        let missing: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, labels FROM series WHERE host IS NULL AND labels LIKE '%\"host\"%'")
                .fetch_all(&mut *tx)
                .await?;
        let mut ids = Vec::new();
        let mut hosts = Vec::new();
        for (id, labels) in missing {
            let labels: secumon_core::Labels = serde_json::from_str(&labels)?;
            if let Some(host) = labels.get("host") {
                ids.push(id);
                hosts.push(host.clone());
            }
        }
        if !ids.is_empty() {
            sqlx::query("UPDATE series SET host = u.h FROM UNNEST($1::int8[], $2::text[]) AS u(i, h) WHERE id = u.i")
                .bind(&ids)
                .bind(&hosts)
                .execute(&mut *tx)
                .await?;
        }
        for (legacy, blocks) in [("rollup_5m", "rollup_5m_blocks"), ("rollup_1h", "rollup_1h_blocks")] {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(legacy).fetch_one(&mut *tx).await?;
            if !exists {
                continue;
            }
            let rows: Vec<LegacyRollupRow> = sqlx::query_as(&format!(
                "SELECT r.series_id, r.bucket, r.min, r.max, r.sum, r.count, r.last_ts, r.last FROM {legacy} r \
                 WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.series_id = r.series_id \
                   AND s.ts >= r.bucket - ((r.bucket % $1) + $1) % $1 \
                   AND s.ts < r.bucket - ((r.bucket % $1) + $1) % $1 + $1) \
                 ORDER BY r.series_id, r.bucket"
            ))
            .bind(BLOCK_WINDOW_MS)
            .fetch_all(&mut *tx)
            .await?;
            let mut windows: BTreeMap<WindowKey, Vec<(i64, Summary)>> = BTreeMap::new();
            for (series_id, bucket, min, max, sum, count, last_ts, last) in rows {
                let summary = Summary {
                    min: min.unwrap_or(f64::NAN),
                    max: max.unwrap_or(f64::NAN),
                    sum,
                    count: count as u64,
                    last_ts,
                    last,
                };
                windows.entry((series_id, window_of(bucket))).or_default().push((bucket, summary));
            }
            let windows: Vec<(WindowKey, Vec<u8>)> =
                windows.into_iter().map(|(key, summaries)| (key, encode_summaries(&summaries))).collect();
            for part in windows.chunks(WINDOWS_PER_INSERT) {
                let ids: Vec<i64> = part.iter().map(|w| w.0.0).collect();
                let starts: Vec<i64> = part.iter().map(|w| w.0.1).collect();
                let data: Vec<&[u8]> = part.iter().map(|w| w.1.as_slice()).collect();
                sqlx::query(&format!(
                    "INSERT INTO {blocks} (series_id, window_start, data) \
                     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bytea[]) ON CONFLICT DO NOTHING"
                ))
                .bind(&ids)
                .bind(&starts)
                .bind(&data)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(&format!("DROP TABLE {legacy}")).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The stored blocks of the windows `newer` samples fall in: their rollup blocks, the
/// newest timestamp of their raw blocks, and the raw blocks themselves where `newer` may
/// rewrite a timestamp ([`StoredWindow::needs_raw`]).
pub(super) async fn read_windows(
    conn: &mut PgConnection,
    newer: &BTreeMap<WindowKey, Vec<(i64, f64)>>,
) -> Result<HashMap<WindowKey, StoredWindow>, StoreError> {
    let keys: Vec<WindowKey> = newer.keys().copied().collect();
    let mut out = HashMap::with_capacity(keys.len());
    for part in keys.chunks(WINDOWS_PER_INSERT) {
        let ids: Vec<i64> = part.iter().map(|k| k.0).collect();
        let starts: Vec<i64> = part.iter().map(|k| k.1).collect();
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT k.s, k.w, (SELECT max(b.max_ts) FROM blocks b WHERE b.series_id = k.s AND b.window_start = k.w), \
             f.data, h.data FROM UNNEST($1::int8[], $2::int8[]) AS k(s, w) \
             LEFT JOIN rollup_5m_blocks f ON f.series_id = k.s AND f.window_start = k.w \
             LEFT JOIN rollup_1h_blocks h ON h.series_id = k.s AND h.window_start = k.w",
        )
        .bind(&ids)
        .bind(&starts)
        .fetch_all(&mut *conn)
        .await?;
        for (series_id, start, raw_max_ts, rollup_5m, rollup_1h) in rows {
            if raw_max_ts.is_some() || rollup_5m.is_some() || rollup_1h.is_some() {
                out.insert((series_id, start), StoredWindow { raw_max_ts, raw: Vec::new(), rollup_5m, rollup_1h });
            }
        }
    }
    // Raw blocks only of windows merged whole (a timestamp sent again, late data).
    let whole: Vec<WindowKey> = out
        .iter()
        .filter(|(key, stored)| newer.get(*key).is_some_and(|points| stored.needs_raw(points)))
        .map(|(key, _)| *key)
        .collect();
    for part in whole.chunks(WINDOWS_PER_INSERT) {
        let ids: Vec<i64> = part.iter().map(|k| k.0).collect();
        let starts: Vec<i64> = part.iter().map(|k| k.1).collect();
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT b.series_id, b.window_start, b.data FROM UNNEST($1::int8[], $2::int8[]) AS k(s, w) \
             JOIN blocks b ON b.series_id = k.s AND b.window_start = k.w ORDER BY b.min_ts",
        )
        .bind(&ids)
        .bind(&starts)
        .fetch_all(&mut *conn)
        .await?;
        for (series_id, start, data) in rows {
            if let Some(stored) = out.get_mut(&(series_id, start)) {
                stored.raw.push(data);
            }
        }
    }
    Ok(out)
}

/// Inserts raw blocks at `level`.
async fn insert_raw_blocks<'a>(
    conn: &mut PgConnection,
    blocks: impl Iterator<Item = (&'a WindowKey, &'a RawBlock)>,
    level: i16,
) -> Result<(), StoreError> {
    let blocks: Vec<(&WindowKey, &RawBlock)> = blocks.collect();
    for part in blocks.chunks(WINDOWS_PER_INSERT) {
        let ids: Vec<i64> = part.iter().map(|w| w.0.0).collect();
        let starts: Vec<i64> = part.iter().map(|w| w.0.1).collect();
        let min_ts: Vec<i64> = part.iter().map(|w| w.1.0).collect();
        let max_ts: Vec<i64> = part.iter().map(|w| w.1.1).collect();
        let samples: Vec<i32> = part.iter().map(|w| w.1.2 as i32).collect();
        let data: Vec<&[u8]> = part.iter().map(|w| w.1.3.as_slice()).collect();
        sqlx::query(
            "INSERT INTO blocks (series_id, window_start, min_ts, max_ts, samples, level, data) \
             SELECT s, w, f, l, n, $7, d FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::bytea[]) \
             AS u(s, w, f, l, n, d)",
        )
        .bind(&ids)
        .bind(&starts)
        .bind(&min_ts)
        .bind(&max_ts)
        .bind(&samples)
        .bind(&data)
        .bind(level)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Stores settled windows: a new raw block each (replacing the window's others when it holds
/// all its samples), and rollup blocks replacing the stored ones.
async fn write_windows(conn: &mut PgConnection, windows: &[WindowRows]) -> Result<(), StoreError> {
    let replaced: Vec<&WindowKey> = windows.iter().filter(|w| w.2).map(|w| &w.0).collect();
    for part in replaced.chunks(WINDOWS_PER_INSERT) {
        let ids: Vec<i64> = part.iter().map(|k| k.0).collect();
        let starts: Vec<i64> = part.iter().map(|k| k.1).collect();
        sqlx::query(
            "DELETE FROM blocks b USING UNNEST($1::int8[], $2::int8[]) AS k(s, w) \
             WHERE b.series_id = k.s AND b.window_start = k.w",
        )
        .bind(&ids)
        .bind(&starts)
        .execute(&mut *conn)
        .await?;
    }
    insert_raw_blocks(conn, windows.iter().map(|w| (&w.0, &w.1)), 0).await?;
    for part in windows.chunks(WINDOWS_PER_INSERT) {
        let ids: Vec<i64> = part.iter().map(|w| w.0.0).collect();
        let starts: Vec<i64> = part.iter().map(|w| w.0.1).collect();
        for (table, pick) in [("rollup_5m_blocks", 0), ("rollup_1h_blocks", 1)] {
            let data: Vec<&[u8]> =
                part.iter().map(|w| if pick == 0 { w.3.as_slice() } else { w.4.as_slice() }).collect();
            sqlx::query(&format!(
                "INSERT INTO {table} (series_id, window_start, data) \
                 SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bytea[]) \
                 ON CONFLICT (series_id, window_start) DO UPDATE SET data = excluded.data"
            ))
            .bind(&ids)
            .bind(&starts)
            .bind(&data)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
