//! The in-memory head of the embedded store: samples whose batch is durable in the
//! write-ahead table but not yet compacted into chunks. Queries read it beside the chunks;
//! compaction freezes it, writes it out series by series and then forgets it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use foldhash::HashMap;

use crate::codec::WalSample;

/// One series' uncompacted samples, in arrival order (not necessarily time order).
#[derive(Debug, Default, Clone)]
pub struct SeriesHead {
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
    /// Highest write-ahead record holding a sample of this series.
    pub max_wal_id: i64,
}

/// A generation of the head: every sample of a set of whole write-ahead records.
#[derive(Debug, Default)]
pub struct Generation {
    pub series: HashMap<u32, SeriesHead>,
    pub samples: usize,
    pub max_wal_id: i64,
    /// When this generation received its first sample.
    pub since: Option<Instant>,
}

impl Generation {
    pub fn append(&mut self, wal_id: i64, samples: &[WalSample]) {
        for s in samples {
            let head = self.series.entry(s.series_id).or_default();
            head.timestamps.push(s.timestamp_ms);
            head.values.push(s.value);
            head.max_wal_id = wal_id;
        }
        self.samples += samples.len();
        self.max_wal_id = self.max_wal_id.max(wal_id);
        self.since.get_or_insert_with(Instant::now);
    }
}

/// The active generation takes new batches; a frozen one is being compacted.
#[derive(Debug, Default)]
pub struct Head {
    pub active: Generation,
    frozen: Arc<Generation>,
    /// Frozen series already compacted: queries read them from their chunks.
    released: HashSet<u32>,
}

impl Head {
    /// Hands the active generation to compaction, or the frozen one again if an earlier
    /// compaction failed half-way: its records are only deleted once all of it is written,
    /// so it must be finished before a newer generation's. Returns the generation and the
    /// series of it still to write, in order. The caller holds the writer, so no batch is
    /// between its commit and its append.
    pub fn freeze(&mut self) -> (Arc<Generation>, Vec<u32>) {
        if !self.frozen_pending() {
            self.frozen = Arc::new(std::mem::take(&mut self.active));
            self.released.clear();
        }
        let mut pending: Vec<u32> =
            self.frozen.series.keys().copied().filter(|id| !self.released.contains(id)).collect();
        pending.sort_unstable();
        (Arc::clone(&self.frozen), pending)
    }

    /// Whether a frozen generation is not finished (a compaction failed part-way).
    pub fn frozen_pending(&self) -> bool {
        self.frozen.max_wal_id > 0
    }

    /// Hides compacted series of the frozen generation.
    pub fn release(&mut self, series_ids: impl IntoIterator<Item = u32>) {
        self.released.extend(series_ids);
    }

    /// Forgets the frozen generation once all of it is compacted.
    pub fn finish(&mut self) {
        self.frozen = Arc::default();
        self.released.clear();
    }

    /// The series' head samples, older generation first, in arrival order.
    pub fn samples_of(&self, series_id: u32, out: &mut Vec<(i64, f64)>) {
        let frozen = (!self.released.contains(&series_id)).then(|| self.frozen.series.get(&series_id)).flatten();
        for head in frozen.into_iter().chain(self.active.series.get(&series_id)) {
            out.extend(head.timestamps.iter().copied().zip(head.values.iter().copied()));
        }
    }
}

/// Orders samples by time keeping, for equal timestamps, the one written last.
pub fn sort_last_write_wins(samples: &mut Vec<(i64, f64)>) {
    // A stable sort keeps arrival order among equal timestamps; keep the last of each run.
    samples.sort_by_key(|(ts, _)| *ts);
    let mut write = 0;
    for read in 0..samples.len() {
        if read + 1 < samples.len() && samples[read + 1].0 == samples[read].0 {
            continue;
        }
        samples[write] = samples[read];
        write += 1;
    }
    samples.truncate(write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_write_wins_among_equal_timestamps() {
        let mut samples = vec![(3, 1.0), (1, 1.0), (3, 2.0), (2, 5.0), (3, 3.0), (1, 9.0)];
        sort_last_write_wins(&mut samples);
        assert_eq!(samples, vec![(1, 9.0), (2, 5.0), (3, 3.0)]);
    }

    #[test]
    fn frozen_samples_stay_visible_until_released() {
        let mut head = Head::default();
        head.active.append(1, &[WalSample { series_id: 4, timestamp_ms: 10, value: 1.0 }]);
        let (frozen, pending) = head.freeze();
        assert_eq!(frozen.series.len(), 1);
        assert_eq!(pending, vec![4]);
        head.active.append(2, &[WalSample { series_id: 4, timestamp_ms: 20, value: 2.0 }]);
        let mut out = Vec::new();
        head.samples_of(4, &mut out);
        assert_eq!(out, vec![(10, 1.0), (20, 2.0)]);
        head.release([4]);
        out.clear();
        head.samples_of(4, &mut out);
        assert_eq!(out, vec![(20, 2.0)]);
        head.finish();
        out.clear();
        head.samples_of(4, &mut out);
        assert_eq!(out, vec![(20, 2.0)]);
    }
}
