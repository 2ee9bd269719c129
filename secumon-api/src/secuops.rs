//! `POST /api/v1/integrations/secuops`: events and metrics the SecuOps platform sends into
//! a tenant, and what the server stored of them.

use std::collections::BTreeMap;

use secumon_core::{Labels, Severity};
use serde::{Deserialize, Serialize};

/// Items (events plus metrics) one request may carry.
pub const SECUOPS_MAX_ITEMS: usize = 5_000;
/// Largest request body, in bytes.
pub const SECUOPS_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A point in time: RFC 3339 in UTC (`2026-12-08T00:10:00Z`, fractions allowed) or Unix
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SecuOpsTime {
    /// Milliseconds since 1970.
    UnixMs(i64),
    /// RFC 3339, UTC.
    Rfc3339(String),
}

/// Events and metrics from SecuOps. Both lists may be empty, not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecuOpsRequest {
    /// Events: incidents, changes, detections.
    #[serde(default)]
    pub events: Vec<SecuOpsEvent>,
    /// Metric samples.
    #[serde(default)]
    pub metrics: Vec<SecuOpsMetric>,
}

/// One SecuOps event, stored as an event of its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecuOpsEvent {
    /// `info`, `low`, `medium`, `high` or `critical`.
    #[cfg_attr(feature = "schema", schema(value_type = String, example = "high"))]
    pub severity: Severity,
    /// A line for people (1 to 1 024 bytes).
    pub title: String,
    /// The host the event is about.
    pub host: String,
    /// When it happened; absent: when the server received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<SecuOpsTime>,
    /// What happened, a metric-style name (default `secuops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Extra facts: label names as keys, strings, numbers or booleans as values.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// One SecuOps metric sample; its `host` label names the host (default `secuops`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecuOpsMetric {
    /// Prometheus-style name (`secuops_playbook_runs_total`).
    pub name: String,
    /// The series' labels; `host` becomes the sample's host.
    #[serde(default)]
    pub labels: Labels,
    /// The value (finite).
    pub value: f64,
    /// When it was measured; absent: when the server received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<SecuOpsTime>,
}

/// What a SecuOps request stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SecuOpsIngested {
    /// Events stored.
    pub events: usize,
    /// Metric samples stored.
    pub metrics: usize,
    /// Hosts they were about.
    pub hosts: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_milliseconds_or_rfc3339_text() {
        let event: SecuOpsEvent = serde_json::from_value(serde_json::json!({
            "severity": "high", "title": "t", "host": "h", "time": "2026-12-08T00:10:00Z"}))
        .unwrap();
        assert_eq!(event.time, Some(SecuOpsTime::Rfc3339("2026-12-08T00:10:00Z".into())));
        let metric: SecuOpsMetric =
            serde_json::from_value(serde_json::json!({"name": "m", "value": 1.0, "timestamp": 1_700_000_000_000i64}))
                .unwrap();
        assert_eq!(metric.timestamp, Some(SecuOpsTime::UnixMs(1_700_000_000_000)));
        assert!(serde_json::from_value::<SecuOpsRequest>(serde_json::json!({"evnts": []})).is_err());
    }
}
