//! The pure half of the sample engines, shared by both backends: merging stored samples
//! with newer writes (last write wins), settling a time window of one series into its
//! compressed block and rollups, and answering a range query from blocks, rollups and head
//! samples. The backends only store and read the blobs and rows these produce.
//!
//! PostgreSQL keeps one raw block per series per [`BLOCK_WINDOW_MS`] window and one rollup
//! block per tier per window; the embedded store keeps its own chunk layout (chunks made
//! from the head, merged by size) but decodes, merges, summarizes and answers through the
//! same functions.

use crate::codec::{CodecError, Effort, decode_chunk, decode_summaries, encode_chunk, encode_summaries};
use crate::head::sort_last_write_wins;
use crate::query::{Point, RangeQuery, Summary, aggregate, aggregate_summaries, summarize};
use crate::{FIVE_MINUTES_MS, ONE_HOUR_MS, Tier};

/// Width of a block's window: two hours, 720 samples of a 10 s series (pco needs some
/// hundreds of samples to reach ~1-2 bytes a sample), a whole number of rollup buckets of
/// both tiers, and a divisor of a day (blocks are partitioned by day).
pub const BLOCK_WINDOW_MS: i64 = 2 * ONE_HOUR_MS;

/// Start of the window holding `timestamp_ms`.
pub fn window_of(timestamp_ms: i64) -> i64 {
    timestamp_ms - timestamp_ms.rem_euclid(BLOCK_WINDOW_MS)
}

/// What the store holds of one series' window before newer samples are merged in.
#[derive(Debug, Default)]
pub struct StoredWindow {
    /// Newest timestamp of the window's raw blocks, if it has any.
    pub raw_max_ts: Option<i64>,
    /// The raw blocks' bytes: read only when [`StoredWindow::needs_raw`] says so.
    pub raw: Vec<Vec<u8>>,
    /// The 5-minute rollup block, if any.
    pub rollup_5m: Option<Vec<u8>>,
    /// The hourly rollup block, if any.
    pub rollup_1h: Option<Vec<u8>>,
}

impl StoredWindow {
    /// Whether merging `newer` needs the raw blocks: a sample at or before the newest
    /// stored one may rewrite a timestamp, so the window is summarized again from all its
    /// samples. Samples all after it only add to the stored rollups.
    pub fn needs_raw(&self, newer: &[(i64, f64)]) -> bool {
        self.raw_max_ts.is_some_and(|max| newer.iter().any(|(ts, _)| *ts <= max))
    }
}

/// One series' window with newer samples merged: what is stored back.
#[derive(Debug)]
pub struct SettledWindow {
    /// With `replaces_raw`, every sample of the window; otherwise the newer samples only,
    /// for a block beside the stored ones. Time-ordered, one per timestamp (the last written).
    pub points: Vec<(i64, f64)>,
    /// Whether `points` replaces the window's raw blocks.
    pub replaces_raw: bool,
    /// The window's 5-minute and hourly summaries, all of them.
    pub rollup_5m: Vec<(i64, Summary)>,
    pub rollup_1h: Vec<(i64, Summary)>,
}

impl SettledWindow {
    /// The compressed raw block of `points`, with its first and last timestamps and count.
    pub fn raw_block(&self, effort: Effort) -> (i64, i64, usize, Vec<u8>) {
        encode_points(&self.points, effort)
    }

    /// The compressed 5-minute and hourly rollup blocks.
    pub fn rollup_blocks(&self) -> (Vec<u8>, Vec<u8>) {
        (encode_summaries(&self.rollup_5m), encode_summaries(&self.rollup_1h))
    }
}

/// A raw block of time-ordered `points`: first and last timestamps, count, bytes.
pub fn encode_points(points: &[(i64, f64)], effort: Effort) -> (i64, i64, usize, Vec<u8>) {
    let timestamps: Vec<i64> = points.iter().map(|p| p.0).collect();
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let first = timestamps.first().copied().unwrap_or_default();
    let last = timestamps.last().copied().unwrap_or_default();
    (first, last, points.len(), encode_chunk(&timestamps, &values, effort))
}

/// The samples of raw blocks, oldest written first, time-ordered with the last write of
/// each timestamp.
pub fn merge_blocks<'a>(blocks: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<(i64, f64)>, CodecError> {
    let mut points = Vec::new();
    for block in blocks {
        let (ts, vs) = decode_chunk(block)?;
        points.extend(ts.into_iter().zip(vs));
    }
    sort_last_write_wins(&mut points);
    Ok(points)
}

/// Merges `newer` samples (in the order they were written) into a window's stored blocks.
///
/// Samples all after the stored ones (the usual case: a series' next samples) make a block
/// of their own and their summaries are added to the stored rollups. Otherwise (a timestamp
/// sent again, late data) the window is merged whole, last write wins, and summarized again
/// from all its samples: a rewritten timestamp is never counted twice. Without raw blocks
/// but with rollups (raw retention removed the blocks), new samples' summaries are added:
/// nothing is left to tell a re-sent timestamp from a new one.
pub fn settle(stored: &StoredWindow, newer: Vec<(i64, f64)>) -> Result<SettledWindow, CodecError> {
    let replaces_raw = stored.needs_raw(&newer);
    if replaces_raw && stored.raw.is_empty() {
        return Err(CodecError::Chunk("a window merged whole without its raw blocks".into()));
    }
    let mut points = if replaces_raw { merge_blocks(stored.raw.iter().map(Vec::as_slice))? } else { Vec::new() };
    // Stored first, so the newer write of a timestamp wins.
    points.extend(newer);
    sort_last_write_wins(&mut points);
    let mut rollup_5m = summarize(&points, FIVE_MINUTES_MS);
    let mut rollup_1h = summarize(&points, ONE_HOUR_MS);
    if !replaces_raw {
        if let Some(block) = &stored.rollup_5m {
            rollup_5m = add_summaries(decode_summaries(block)?, rollup_5m);
        }
        if let Some(block) = &stored.rollup_1h {
            rollup_1h = add_summaries(decode_summaries(block)?, rollup_1h);
        }
    }
    Ok(SettledWindow { points, replaces_raw, rollup_5m, rollup_1h })
}

/// Bucket-ordered summaries of older samples combined with those of newer ones.
pub fn add_summaries(older: Vec<(i64, Summary)>, newer: Vec<(i64, Summary)>) -> Vec<(i64, Summary)> {
    let mut buckets: std::collections::BTreeMap<i64, Summary> = older.into_iter().collect();
    for (bucket, summary) in newer {
        buckets.entry(bucket).and_modify(|s| s.merge(&summary)).or_insert(summary);
    }
    buckets.into_iter().collect()
}

/// One series' answer to `query` from the tier it reads: `stored` raw samples (oldest
/// written first) and `head` samples (written after them, in arrival order) for the raw
/// tier; for a rollup tier, the tier's summaries (bucket stamped, already clipped to the
/// query) and head samples not yet in them.
pub fn answer(
    mut stored: Vec<(i64, f64)>,
    rollups: Vec<(i64, Summary)>,
    head: impl IntoIterator<Item = (i64, f64)>,
    query: &RangeQuery,
    tier: Tier,
) -> Vec<Point> {
    let in_range = |ts: i64| ts >= query.start_ms && ts <= query.end_ms;
    let head = head.into_iter().filter(|(ts, _)| in_range(*ts));
    if tier == Tier::Raw {
        stored.retain(|(ts, _)| in_range(*ts));
        stored.extend(head);
        sort_last_write_wins(&mut stored);
        let all: Vec<Point> = stored.into_iter().map(|(timestamp_ms, value)| Point { timestamp_ms, value }).collect();
        aggregate(&all, query.start_ms, query.step_ms, query.aggregation)
    } else {
        let mut head: Vec<(i64, f64)> = head.collect();
        sort_last_write_wins(&mut head);
        let summaries = rollups.into_iter().chain(head.into_iter().map(|(ts, v)| (ts, Summary::of(ts, v))));
        aggregate_summaries(summaries, query.start_ms, query.step_ms, query.aggregation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(points: &[(i64, f64)]) -> Vec<u8> {
        let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        let vs: Vec<f64> = points.iter().map(|p| p.1).collect();
        encode_chunk(&ts, &vs, Effort::Fast)
    }

    #[test]
    fn windows_align_to_the_epoch_also_before_it() {
        assert_eq!(window_of(0), 0);
        assert_eq!(window_of(BLOCK_WINDOW_MS - 1), 0);
        assert_eq!(window_of(BLOCK_WINDOW_MS), BLOCK_WINDOW_MS);
        assert_eq!(window_of(-1), -BLOCK_WINDOW_MS);
    }

    #[test]
    fn a_timestamp_sent_again_replaces_its_value_in_block_and_rollups() {
        let first = vec![(0, 1.0), (10_000, 2.0)];
        let stored = StoredWindow {
            raw_max_ts: Some(10_000),
            raw: vec![block(&first)],
            rollup_5m: Some(encode_summaries(&summarize(&first, FIVE_MINUTES_MS))),
            rollup_1h: Some(encode_summaries(&summarize(&first, ONE_HOUR_MS))),
        };
        let newer = vec![(10_000, 5.0), (20_000, 3.0), (10_000, 7.0)];
        assert!(stored.needs_raw(&newer));
        let settled = settle(&stored, newer).unwrap();
        assert!(settled.replaces_raw);
        assert_eq!(settled.points, vec![(0, 1.0), (10_000, 7.0), (20_000, 3.0)]);
        let five = settled.rollup_5m[0].1;
        assert_eq!((five.count, five.sum, five.last), (3, 11.0, 3.0));
        let (min_ts, max_ts, samples, data) = settled.raw_block(Effort::Best);
        assert_eq!((min_ts, max_ts, samples), (0, 20_000, 3));
        assert_eq!(decode_chunk(&data).unwrap().1, vec![1.0, 7.0, 3.0]);
        // Without the raw blocks read, a rewrite is refused rather than counted twice.
        let unread = StoredWindow { raw: Vec::new(), ..stored };
        assert!(settle(&unread, vec![(0, 9.0)]).is_err());
    }

    #[test]
    fn later_samples_make_a_block_of_their_own_and_add_to_the_rollups() {
        let first = vec![(0, 1.0), (10_000, 2.0)];
        let stored = StoredWindow {
            raw_max_ts: Some(10_000),
            raw: Vec::new(),
            rollup_5m: Some(encode_summaries(&summarize(&first, FIVE_MINUTES_MS))),
            rollup_1h: None,
        };
        let settled = settle(&stored, vec![(30_000, 4.0), (20_000, 3.0)]).unwrap();
        assert!(!settled.replaces_raw);
        assert_eq!(settled.points, vec![(20_000, 3.0), (30_000, 4.0)]);
        let five = settled.rollup_5m[0].1;
        assert_eq!((five.count, five.sum, five.last_ts, five.last), (4, 10.0, 30_000, 4.0));
    }

    #[test]
    fn without_a_raw_block_new_samples_add_to_stored_rollups() {
        let old = summarize(&[(0, 1.0), (400_000, 4.0)], FIVE_MINUTES_MS);
        let stored = StoredWindow { rollup_5m: Some(encode_summaries(&old)), ..Default::default() };
        let settled = settle(&stored, vec![(10_000, 2.0)]).unwrap();
        let counts: Vec<(i64, u64, f64)> = settled.rollup_5m.iter().map(|(b, s)| (*b, s.count, s.sum)).collect();
        assert_eq!(counts, vec![(0, 2, 3.0), (300_000, 1, 4.0)]);
        assert_eq!(settled.rollup_1h.len(), 1, "no hourly block was stored: only the new sample");
    }
}
