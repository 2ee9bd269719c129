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
    /// The raw block, if any (gone once raw retention passed).
    pub raw: Option<Vec<u8>>,
    /// The 5-minute rollup block, if any.
    pub rollup_5m: Option<Vec<u8>>,
    /// The hourly rollup block, if any.
    pub rollup_1h: Option<Vec<u8>>,
}

/// One series' window with everything written to it merged: what is stored back.
#[derive(Debug)]
pub struct SettledWindow {
    /// Every sample of the window, time-ordered, one per timestamp (the last written).
    pub points: Vec<(i64, f64)>,
    /// The window's 5-minute and hourly summaries.
    pub rollup_5m: Vec<(i64, Summary)>,
    pub rollup_1h: Vec<(i64, Summary)>,
}

impl SettledWindow {
    /// The compressed raw block, with its first and last timestamps and sample count.
    pub fn raw_block(&self) -> (i64, i64, usize, Vec<u8>) {
        let timestamps: Vec<i64> = self.points.iter().map(|p| p.0).collect();
        let values: Vec<f64> = self.points.iter().map(|p| p.1).collect();
        let first = timestamps.first().copied().unwrap_or_default();
        let last = timestamps.last().copied().unwrap_or_default();
        (first, last, self.points.len(), encode_chunk(&timestamps, &values, Effort::Best))
    }

    /// The compressed 5-minute and hourly rollup blocks.
    pub fn rollup_blocks(&self) -> (Vec<u8>, Vec<u8>) {
        (encode_summaries(&self.rollup_5m), encode_summaries(&self.rollup_1h))
    }
}

/// Merges `newer` samples (in the order they were written) into a window's stored blocks.
///
/// With a raw block, the window is summarized again from all its samples, so a timestamp
/// sent again replaces its earlier value in the rollups instead of being counted twice.
/// Without one but with rollups (raw retention removed the block), the new samples' summaries
/// are added to the stored ones: nothing is left to tell a re-sent timestamp from a new one.
pub fn settle(stored: &StoredWindow, newer: Vec<(i64, f64)>) -> Result<SettledWindow, CodecError> {
    let mut points = match &stored.raw {
        Some(block) => {
            let (ts, vs) = decode_chunk(block)?;
            ts.into_iter().zip(vs).collect()
        }
        None => Vec::new(),
    };
    // Stored first, so the newer write of a timestamp wins.
    points.extend(newer);
    sort_last_write_wins(&mut points);
    let mut rollup_5m = summarize(&points, FIVE_MINUTES_MS);
    let mut rollup_1h = summarize(&points, ONE_HOUR_MS);
    if stored.raw.is_none() {
        if let Some(block) = &stored.rollup_5m {
            rollup_5m = add_summaries(decode_summaries(block)?, rollup_5m);
        }
        if let Some(block) = &stored.rollup_1h {
            rollup_1h = add_summaries(decode_summaries(block)?, rollup_1h);
        }
    }
    Ok(SettledWindow { points, rollup_5m, rollup_1h })
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
        let stored = StoredWindow { raw: Some(block(&[(0, 1.0), (10_000, 2.0)])), ..Default::default() };
        let settled = settle(&stored, vec![(10_000, 5.0), (20_000, 3.0), (10_000, 7.0)]).unwrap();
        assert_eq!(settled.points, vec![(0, 1.0), (10_000, 7.0), (20_000, 3.0)]);
        let five = settled.rollup_5m[0].1;
        assert_eq!((five.count, five.sum, five.last), (3, 11.0, 3.0));
        let (min_ts, max_ts, samples, data) = settled.raw_block();
        assert_eq!((min_ts, max_ts, samples), (0, 20_000, 3));
        assert_eq!(decode_chunk(&data).unwrap().1, vec![1.0, 7.0, 3.0]);
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
