//! `POST /api/v1/ingest`: samples and events a script pushes over HTTP (agents use gRPC),
//! and what the server says it stored.

use secumon_core::{Labels, Severity};
use serde::{Deserialize, Serialize};

/// Samples and events pushed over HTTP by scripts (agents use gRPC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// Names the script: data is stored under the agent id `api:<tenant>:<source>`.
    pub source: String,
    /// The host the data is about; stored as the `host` label.
    pub host: String,
    /// The sender's labels, like an agent's `labels:` (`client`, `site`, `role`): on the
    /// agent (the overview groups by them) and on every series of the request.
    #[serde(default)]
    pub labels: Labels,
    /// Metric samples.
    #[serde(default)]
    pub samples: Vec<IngestSample>,
    /// Events: discrete changes such as a service going down.
    #[serde(default)]
    pub events: Vec<IngestEvent>,
    /// The script's clock when it sent the request (ms since 1970). With it the server
    /// measures the script's clock offset like an agent's, and re-stamps the request's
    /// timestamps when the offset is past its tolerance; samples and events without a
    /// timestamp are taken as of this time. Without it, timestamps are taken as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at_ms: Option<i64>,
}

/// One metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestSample {
    /// The metric name, Prometheus style: snake_case, base units (`_bytes`, `_seconds`).
    pub name: String,
    /// The series' labels, besides `host` and the request's `labels`.
    #[serde(default)]
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When it was measured (Unix ms); absent: as of `sent_at_ms`, else now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestEvent {
    /// What happened, e.g. `service_down`.
    pub kind: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    #[cfg_attr(feature = "schema", schema(value_type = String, example = "high"))]
    pub severity: Severity,
    /// The event's labels, besides `host` and the request's `labels`.
    #[serde(default)]
    pub labels: Labels,
    /// A line for people; empty unless given.
    #[serde(default)]
    pub message: String,
    /// When it happened (Unix ms); absent: as of `sent_at_ms`, else now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

/// What a push stored, and the sender's clock as the server measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Ingested {
    /// Samples stored, as sent.
    pub samples: usize,
    /// Events stored.
    pub events: usize,
    /// The sender's clock minus the server's, when the request said when it was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// The batch was re-stamped because that offset was past the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_corrected: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_send_time_leaves_the_field_out() {
        let request = IngestRequest {
            source: "backup".into(),
            host: "db-1".into(),
            labels: Labels::new(),
            samples: vec![IngestSample { name: "age".into(), labels: Labels::new(), value: 1.0, timestamp_ms: None }],
            events: Vec::new(),
            sent_at_ms: None,
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get("sent_at_ms").is_none() && json["samples"][0].get("timestamp_ms").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<IngestRequest>(json).unwrap(), request);
        let unknown = serde_json::json!({"source": "s", "host": "h", "colour": "red"});
        assert!(serde_json::from_value::<IngestRequest>(unknown).is_err());
    }
}
