//! `GET /api/v1/metrics/hosts/{id}/history`: a host's metric over a period.

use secumon_core::Labels;
use serde::{Deserialize, Serialize};

/// How the raw values inside one step are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The mean of the values.
    #[default]
    Avg,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The sum of the values.
    Sum,
    /// How many values there were.
    Count,
    /// The latest value.
    Last,
    /// 95th percentile (nearest rank) of the raw values.
    P95,
}

impl Aggregation {
    /// The name the API takes and gives: `avg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Sum => "sum",
            Self::Count => "count",
            Self::Last => "last",
            Self::P95 => "p95",
        }
    }
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Aggregation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Self::Avg, Self::Min, Self::Max, Self::Sum, Self::Count, Self::Last, Self::P95]
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| format!("unknown aggregation {text:?}: expected avg, min, max, sum, count, last or p95"))
    }
}

/// `GET /metrics/hosts/{id}/history`: which metric, how far back, how combined.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct HistoryQuery {
    /// The metric's name, e.g. `cpu_usage_ratio`; required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How far back from now: `15m`, `1h`, `7d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Bucket width: `10s`, `5m`. Defaults to period / 60.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// avg (default), min, max, sum, count or last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agg: Option<String>,
}

impl HistoryQuery {
    /// `metric` over `period` (`1h`), combined by `agg`.
    pub fn new(metric: &str, period: &str, agg: Aggregation) -> Self {
        Self {
            metric: Some(metric.to_string()),
            period: Some(period.to_string()),
            step: None,
            agg: Some(agg.as_str().to_string()),
        }
    }
}

/// A host's metric over a period, one entry per matching series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct History {
    /// The host's name.
    pub host: String,
    /// The metric's name.
    pub metric: String,
    /// Start of the period (Unix ms).
    pub start_ms: i64,
    /// End of the period (Unix ms).
    pub end_ms: i64,
    /// Width of one step, in ms.
    pub step_ms: i64,
    /// How the values inside a step are combined: `avg`, `min`, `max`, `sum`, `count`, `last`
    /// or `p95`.
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub aggregation: Aggregation,
    /// One entry per series of the metric on this host.
    pub series: Vec<HistorySeries>,
}

/// One series of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HistorySeries {
    /// The series' labels.
    pub labels: Labels,
    /// `[timestamp_ms, value]` pairs; a NaN value is `null`.
    /// `[timestamp_ms, value or null]` per step.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Vec<Value>>))]
    pub points: Vec<(i64, Option<f64>)>,
}
