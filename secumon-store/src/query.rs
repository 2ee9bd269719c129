//! Range queries: the selector, the step-bucketed aggregations, and their pure evaluation
//! over raw points, shared by every backend.

use std::fmt;
use std::str::FromStr;

use secumon_core::{Labels, SeriesKey};
use serde::{Deserialize, Serialize};

/// Chooses series by metric name and exact label values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeriesSelector {
    /// The metric name, exactly.
    pub name: String,
    /// Every label here must be present on the series with this exact value.
    pub matchers: Labels,
}

impl SeriesSelector {
    /// Every series named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), matchers: Labels::new() }
    }

    /// This selector, also requiring `label` to be `value`.
    pub fn with(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.matchers.insert(label.into(), value.into());
        self
    }

    /// Whether `series` has the name and every label value.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        series.name == self.name && self.matchers.iter().all(|(k, v)| series.labels.get(k) == Some(v))
    }
}

/// How the raw values inside one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Mean of the values (the default).
    #[default]
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum of the values.
    Sum,
    /// Number of values.
    Count,
    /// The value stored last.
    Last,
    /// 95th percentile (nearest rank) of the raw values; never answered from rollups.
    P95,
}

impl FromStr for Aggregation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "sum" => Self::Sum,
            "count" => Self::Count,
            "last" => Self::Last,
            "p95" => Self::P95,
            other => {
                return Err(format!("unknown aggregation {other:?}: expected avg, min, max, sum, count, last or p95"));
            }
        })
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Sum => "sum",
            Self::Count => "count",
            Self::Last => "last",
            Self::P95 => "p95",
        })
    }
}

/// Series matching `selector`, between `start_ms` and `end_ms` inclusive, one point per
/// `step_ms` bucket that holds data, stamped with the bucket's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeQuery {
    /// Which series.
    pub selector: SeriesSelector,
    /// First instant, milliseconds since 1970 (inclusive).
    pub start_ms: i64,
    /// Last instant, milliseconds since 1970 (inclusive); not before `start_ms`.
    pub end_ms: i64,
    /// Bucket width in milliseconds; must be positive.
    pub step_ms: i64,
    /// How the values of a bucket are combined.
    pub aggregation: Aggregation,
}

/// One value at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Milliseconds since 1970.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// One series' answer to a range query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoints {
    /// The series, with its stored labels.
    pub series: SeriesKey,
    /// One point per bucket that holds data, oldest first.
    pub points: Vec<Point>,
}

/// What rollups keep of the values in a time bucket, enough for every aggregation but p95.
/// NaN values are not counted by min/max/sum/count, but `last` reports what was stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
    pub last_ts: i64,
    pub last: f64,
}

impl Summary {
    pub fn of(timestamp_ms: i64, value: f64) -> Self {
        let finite = !value.is_nan();
        Self {
            min: value,
            max: value,
            sum: if finite { value } else { 0.0 },
            count: u64::from(finite),
            last_ts: timestamp_ms,
            last: value,
        }
    }

    /// Folds in a summary of values written later (it wins `last` on equal timestamps).
    pub fn merge(&mut self, later: &Summary) {
        // f64::min/max return the other operand when one is NaN.
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.count += later.count;
        if later.last_ts >= self.last_ts {
            self.last_ts = later.last_ts;
            self.last = later.last;
        }
    }

    pub fn value(&self, aggregation: Aggregation) -> f64 {
        match aggregation {
            Aggregation::Last => self.last,
            Aggregation::Count => self.count as f64,
            Aggregation::Sum => self.sum,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Avg | Aggregation::P95 if self.count == 0 => f64::NAN,
            Aggregation::Avg | Aggregation::P95 => self.sum / self.count as f64,
        }
    }
}

/// Start of the `step_ms` bucket, counted from `start_ms`, that holds `timestamp_ms`.
pub fn bucket_of(timestamp_ms: i64, start_ms: i64, step_ms: i64) -> i64 {
    let step = step_ms.max(1);
    start_ms + (timestamp_ms - start_ms).div_euclid(step) * step
}

/// Summaries per `resolution_ms` bucket (aligned to the epoch) of time-ordered points:
/// what a rollup tier stores.
pub(crate) fn summarize(points: &[(i64, f64)], resolution_ms: i64) -> Vec<(i64, Summary)> {
    let mut out: Vec<(i64, Summary)> = Vec::new();
    for &(ts, value) in points {
        let bucket = bucket_of(ts, 0, resolution_ms);
        match out.last_mut() {
            Some((last_bucket, summary)) if *last_bucket == bucket => summary.merge(&Summary::of(ts, value)),
            _ => out.push((bucket, Summary::of(ts, value))),
        }
    }
    out
}

/// Combines time-stamped summaries (rollup rows, or raw points as [`Summary::of`]) into
/// one point per `step_ms` bucket counted from `start_ms`. Summaries must come oldest
/// written first, so `last` is right.
pub(crate) fn aggregate_summaries(
    summaries: impl IntoIterator<Item = (i64, Summary)>,
    start_ms: i64,
    step_ms: i64,
    aggregation: Aggregation,
) -> Vec<Point> {
    let mut buckets: std::collections::BTreeMap<i64, Summary> = std::collections::BTreeMap::new();
    for (ts, summary) in summaries {
        buckets.entry(bucket_of(ts, start_ms, step_ms)).and_modify(|s| s.merge(&summary)).or_insert(summary);
    }
    buckets.into_iter().map(|(timestamp_ms, s)| Point { timestamp_ms, value: s.value(aggregation) }).collect()
}

/// Buckets time-ordered raw points by step and aggregates each bucket. NaN values are
/// ignored by avg/min/max/sum/p95 (and not counted), but `last` reports what was last stored.
pub(crate) fn aggregate(raw: &[Point], start_ms: i64, step_ms: i64, aggregation: Aggregation) -> Vec<Point> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let bucket = bucket_of(raw[i].timestamp_ms, start_ms, step_ms);
        let mut j = i;
        while j < raw.len() && bucket_of(raw[j].timestamp_ms, start_ms, step_ms) == bucket {
            j += 1;
        }
        let value = if aggregation == Aggregation::P95 {
            p95(raw[i..j].iter().map(|p| p.value))
        } else {
            let mut summary = Summary::of(raw[i].timestamp_ms, raw[i].value);
            raw[i + 1..j].iter().for_each(|p| summary.merge(&Summary::of(p.timestamp_ms, p.value)));
            summary.value(aggregation)
        };
        out.push(Point { timestamp_ms: bucket, value });
        i = j;
    }
    out
}

/// Nearest-rank 95th percentile of the non-NaN values; NaN when there are none.
fn p95(values: impl Iterator<Item = f64>) -> f64 {
    let mut finite: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    if finite.is_empty() {
        return f64::NAN;
    }
    finite.sort_by(f64::total_cmp);
    let rank = (0.95 * finite.len() as f64).ceil() as usize;
    finite[rank.clamp(1, finite.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(raw: &[(i64, f64)]) -> Vec<Point> {
        raw.iter().map(|&(timestamp_ms, value)| Point { timestamp_ms, value }).collect()
    }

    #[test]
    fn buckets_by_step_from_start() {
        let raw = points(&[(1000, 1.0), (1500, 3.0), (2000, 10.0), (4100, 7.0)]);
        let avg = aggregate(&raw, 1000, 1000, Aggregation::Avg);
        assert_eq!(avg, points(&[(1000, 2.0), (2000, 10.0), (4000, 7.0)]));
        assert_eq!(aggregate(&raw, 1000, 1000, Aggregation::Max)[0].value, 3.0);
        assert_eq!(aggregate(&raw, 1000, 1000, Aggregation::Min)[0].value, 1.0);
        assert_eq!(aggregate(&raw, 1000, 1000, Aggregation::Sum)[0].value, 4.0);
        assert_eq!(aggregate(&raw, 1000, 1000, Aggregation::Count)[0].value, 2.0);
        assert_eq!(aggregate(&raw, 1000, 1000, Aggregation::Last)[0].value, 3.0);
        assert_eq!(aggregate(&raw, 0, 10_000, Aggregation::Count), points(&[(0, 4.0)]));
    }

    #[test]
    fn p95_is_nearest_rank_of_raw_values() {
        let raw: Vec<Point> = (1..=100).map(|v| Point { timestamp_ms: v, value: v as f64 }).collect();
        assert_eq!(aggregate(&raw, 0, 1000, Aggregation::P95)[0].value, 95.0);
        assert_eq!(aggregate(&raw[..1], 0, 1000, Aggregation::P95)[0].value, 1.0);
    }

    #[test]
    fn rollup_summaries_combine_like_raw_points() {
        let raw = points(&[(0, 4.0), (100_000, f64::NAN), (299_999, 1.0), (300_000, 8.0), (650_000, 2.0)]);
        let pairs: Vec<(i64, f64)> = raw.iter().map(|p| (p.timestamp_ms, p.value)).collect();
        let five_min = summarize(&pairs, 300_000);
        assert_eq!(five_min.len(), 3);
        assert_eq!((five_min[0].1.count, five_min[0].1.min, five_min[0].1.last), (2, 1.0, 1.0));
        for aggregation in [
            Aggregation::Avg,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Sum,
            Aggregation::Count,
            Aggregation::Last,
        ] {
            let from_rollups = aggregate_summaries(five_min.iter().copied(), 0, 600_000, aggregation);
            assert_eq!(from_rollups, aggregate(&raw, 0, 600_000, aggregation), "{aggregation}");
        }
    }

    #[test]
    fn nan_is_skipped_by_arithmetic_aggregations() {
        let raw = points(&[(0, f64::NAN), (1, 2.0)]);
        assert_eq!(aggregate(&raw, 0, 10, Aggregation::Avg)[0].value, 2.0);
        assert_eq!(aggregate(&raw, 0, 10, Aggregation::Count)[0].value, 1.0);
        assert!(aggregate(&raw[..1], 0, 10, Aggregation::Max)[0].value.is_nan());
    }

    #[test]
    fn selector_requires_every_matcher() {
        let series =
            SeriesKey::new("load1", Labels::from([("host".into(), "a".into()), ("env".into(), "prod".into())]));
        assert!(SeriesSelector::new("load1").with("host", "a").matches(&series));
        assert!(!SeriesSelector::new("load1").with("host", "b").matches(&series));
        assert!(!SeriesSelector::new("load5").matches(&series));
    }
}
