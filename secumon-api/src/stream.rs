//! The live stream, `GET /api/v1/stream` (a WebSocket): what a client sends to choose what
//! it hears ([`ClientMessage`]), and what the server sends ([`StreamMessage`], a JSON object
//! tagged by its `type`). OpenAPI has no words for WebSockets; these types are its contract.

use std::collections::BTreeMap;

use secumon_core::{CheckResult, Labels};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertSeverity, AlertState};
use crate::logs::LogLine;

/// What a client sends: `{"subscribe": {...}}`, whenever it wants to change what it gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    /// What the client wants from now on, replacing what it asked before.
    pub subscribe: Subscription,
}

/// What a subscriber hears about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The hosts whose batches are reported; none: every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The metrics whose new values are sent as `samples`; a name may end in `*`.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Alert transitions (default true).
    #[serde(default = "yes")]
    pub alerts: bool,
    /// Probe check results.
    #[serde(default)]
    pub checks: bool,
    /// One host's log lines to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogFollow>,
}

fn yes() -> bool {
    true
}

impl Default for Subscription {
    fn default() -> Self {
        Self { hosts: Vec::new(), metrics: Vec::new(), alerts: true, checks: false, logs: None }
    }
}

/// What `"logs"` in a subscription asks for: one host's lines after `after` (a page's
/// `next_cursor`), else from `since_ms`, else from the newest line stored, that pass the
/// filters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFollow {
    /// The host whose lines to follow.
    pub host: String,
    /// Lines after this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Lines stamped at or after this (ms since 1970), when no cursor is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Only lines of this source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Only lines holding this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// Only lines matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// One message from the server, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    /// The subscription in force, sent on connecting and after each `subscribe`.
    Subscribed {
        /// The tenant the stream reports on.
        tenant: String,
        /// What the client hears about from now on.
        subscription: Subscription,
    },
    /// An agent's batch arrived: a heartbeat for overviews.
    Host {
        /// The agent that sent the batch.
        agent_id: String,
        /// The host it runs on.
        host: String,
        /// When the server received it (ms since 1970).
        at_ms: i64,
        /// How many samples the batch held.
        samples: usize,
    },
    /// The subscribed metrics' new values from one batch.
    Samples {
        /// The agent that sent them.
        agent_id: String,
        /// The host it runs on.
        host: String,
        /// The values, in the batch's order.
        samples: Vec<StreamSample>,
    },
    /// A probe check ran.
    Check {
        /// The probe's host.
        host: String,
        /// The check's result.
        result: CheckResult,
    },
    /// An alert changed state (or escalated).
    Alert {
        /// The change.
        transition: AlertTransition,
    },
    /// Log lines of the followed host, in order.
    Logs {
        /// The followed host.
        host: String,
        /// The lines.
        logs: Vec<LogLine>,
        /// The last line's cursor: where to resume after a reconnect.
        cursor: String,
    },
    /// A refusal or the reason the server closes the stream.
    Error {
        /// `bad_request`, `store_unavailable`, `slow_consumer`, `unauthenticated` or
        /// `lifetime`.
        code: String,
        /// What happened, for people.
        message: String,
    },
}

/// One new value in a `samples` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSample {
    /// The metric.
    pub name: String,
    /// The series' labels.
    pub labels: Labels,
    /// When it was measured (ms since 1970).
    pub timestamp_ms: i64,
    /// The value; `null` when it is not a number.
    pub value: Option<f64>,
}

/// One change of one alert, as the alert engine records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTransition {
    /// The rule's name.
    pub rule: String,
    /// The alert's identity: the matched series' labels, the rule's labels and `alertname`.
    pub labels: Labels,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// When (ms since 1970).
    pub at_ms: i64,
    /// The rule's value at that moment; `null` when it is not a number.
    pub value: Option<f64>,
    /// How urgent the alert is.
    pub severity: AlertSeverity,
    /// The rule's annotations, filled in.
    pub annotations: BTreeMap<String, String>,
    /// The notification channels the change goes out through.
    pub channels: Vec<String>,
    /// A silence covered the alert at that moment: kept in history, notified to no one.
    pub silenced: bool,
    /// 0 for a change of state; n for the n-th escalation of a firing alert.
    pub escalation_level: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_by_type() {
        let error = StreamMessage::Error { code: "slow_consumer".into(), message: "behind".into() };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"type": "error", "code": "slow_consumer", "message": "behind"})
        );
        let host: StreamMessage = serde_json::from_value(serde_json::json!(
            {"type": "host", "agent_id": "a1", "host": "web-1", "at_ms": 5, "samples": 3}))
        .unwrap();
        assert_eq!(host, StreamMessage::Host { agent_id: "a1".into(), host: "web-1".into(), at_ms: 5, samples: 3 });
    }

    #[test]
    fn a_subscription_takes_the_defaults_it_always_had() {
        let request: ClientMessage = serde_json::from_str(r#"{"subscribe": {}}"#).unwrap();
        assert_eq!(request.subscribe, Subscription::default());
        assert!(request.subscribe.alerts, "alerts unless refused");
        assert!(serde_json::from_str::<ClientMessage>(r#"{"subscribe": {"hostz": []}}"#).is_err());
    }
}
