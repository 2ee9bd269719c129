//! Range queries: the selector, the step-bucketed aggregations, and their pure evaluation
//! over raw points, shared by every backend.

use std::fmt;
use std::str::FromStr;

use secumon_core::{Labels, SeriesKey};
use serde::{Deserialize, Serialize};

/// Chooses series by metric name and exact label values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SeriesSelector {
    pub name: String,
    /// Every label here must be present on the series with this exact value.
    pub matchers: Labels,
}

impl SeriesSelector {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), matchers: Labels::new() }
    }

    pub fn with(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.matchers.insert(label.into(), value.into());
        self
    }

    pub fn matches(&self, series: &SeriesKey) -> bool {
        series.name == self.name && self.matchers.iter().all(|(k, v)| series.labels.get(k) == Some(v))
    }
}

/// How the raw values inside one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    #[default]
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Last,
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
            other => {
                return Err(format!("unknown aggregation {other:?}: expected avg, min, max, sum, count or last"));
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
        })
    }
}

/// Series matching `selector`, between `start_ms` and `end_ms` inclusive, one point per
/// `step_ms` bucket that holds data, stamped with the bucket's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeQuery {
    pub selector: SeriesSelector,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub aggregation: Aggregation,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub timestamp_ms: i64,
    pub value: f64,
}

/// One series' answer to a range query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoints {
    pub series: SeriesKey,
    pub points: Vec<Point>,
}

/// Buckets time-ordered raw points by step and aggregates each bucket. NaN values are
/// ignored by avg/min/max/sum (and not counted), but `last` reports what was last stored.
pub fn aggregate(raw: &[Point], start_ms: i64, step_ms: i64, aggregation: Aggregation) -> Vec<Point> {
    let step = step_ms.max(1);
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let bucket = start_ms + (raw[i].timestamp_ms - start_ms).div_euclid(step) * step;
        let mut j = i;
        while j < raw.len() && raw[j].timestamp_ms < bucket + step {
            j += 1;
        }
        let values = raw[i..j].iter().map(|p| p.value);
        let finite = values.clone().filter(|v| !v.is_nan());
        let value = match aggregation {
            Aggregation::Last => raw[j - 1].value,
            Aggregation::Count => finite.count() as f64,
            Aggregation::Sum => finite.sum(),
            Aggregation::Min => finite.fold(f64::NAN, f64::min),
            Aggregation::Max => finite.fold(f64::NAN, f64::max),
            Aggregation::Avg => {
                let (sum, n) = finite.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
                if n == 0 { f64::NAN } else { sum / n as f64 }
            }
        };
        out.push(Point { timestamp_ms: bucket, value });
        i = j;
    }
    out
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
