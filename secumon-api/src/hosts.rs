//! Current values: one host's latest metrics in one call (`GET /api/v1/metrics/hosts/{id}`,
//! what an overview's gauges need), and one network target's probe results with their
//! latency history (`GET /api/v1/metrics/network/{target}`).

use std::collections::BTreeMap;

use secumon_core::Labels;
use serde::{Deserialize, Serialize};

use crate::agents::AgentView;
use crate::data::LatestCheck;
use crate::metrics::HistorySeries;

/// `GET /metrics/hosts/{id}`: which metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct HostSummaryQuery {
    /// Comma-separated metric names; default: CPU, memory, swap, filesystems, load, zombies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

/// A series' latest value, stamped with the time that sample was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LatestValue {
    /// The series' labels.
    pub labels: Labels,
    /// When the sample was taken (Unix ms).
    pub timestamp_ms: i64,
    /// The latest value, in the metric's unit.
    pub value: f64,
}

/// A host now: its agents and the latest value of each series of the asked metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HostSummary {
    /// The host's name.
    pub host: String,
    /// The agents that report for it.
    pub agents: Vec<AgentView>,
    /// Each metric asked for, by name: the latest value of each of its series on this host.
    pub metrics: BTreeMap<String, Vec<LatestValue>>,
}

/// `GET /metrics/network/{target}`: how much latency history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct NetworkQuery {
    /// Latency history over this period: `1h` (default), `24h`, `7d`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
}

/// One probe target: every check of it (from every probe) and their durations over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct NetworkTarget {
    /// The target as the checks name it (a host name, address or URL).
    pub target: String,
    /// The latest result of each check of it, from each probe.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub checks: Vec<LatestCheck>,
    /// Width of one latency step, in ms.
    pub step_ms: i64,
    /// Average check duration in seconds per step, per probe; `null` where no check ran.
    pub latency: Vec<HistorySeries>,
}
