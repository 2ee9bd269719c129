//! Alerts, silences and alert history: `/api/v1/alerts*`, `/api/v1/silences*` and
//! `/api/v1/alert-rules/{id}/history`.
//!
//! These mirror the alert engine's own types field for field (this crate does not depend on
//! `secumon-alert`); the server converts, and its tests check that the JSON is the engine's.

use std::collections::BTreeMap;

use secumon_core::Labels;
pub use secumon_core::rules::AlertSeverity;
use serde::{Deserialize, Serialize};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Not pending or firing (a rule test's series below the threshold).
    Inactive,
    /// Over the threshold, waiting out the rule's `for`.
    Pending,
    /// Over the threshold long enough: notified.
    Firing,
    /// Was firing, and its data stopped: not known to be fine, so not resolved.
    Stale,
    /// Back below the threshold, or closed by an operator.
    Resolved,
}

impl AlertState {
    /// The name the API uses: `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inactive => "inactive",
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::Stale => "stale",
            Self::Resolved => "resolved",
        }
    }
}

/// Who acknowledged a firing alert, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// Who acknowledged (the caller, whatever the request said).
    pub by: String,
    /// When (ms since 1970).
    pub at_ms: i64,
    /// Why, in the acknowledger's words.
    pub comment: String,
}

/// An alert that is pending, firing or stale now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable for a rule and label set: the same alert has the same id after it comes back.
    pub id: String,
    /// The rule that raised it.
    pub rule: String,
    /// The alert's identity: the matched series' labels, the rule's labels and `alertname`.
    pub labels: Labels,
    /// Pending, firing or stale.
    pub state: AlertState,
    /// When it entered its state (ms since 1970).
    pub since_ms: i64,
    /// The value that crossed; NaN (sent as `null`) when there was none.
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    /// How urgent the rule says it is.
    pub severity: AlertSeverity,
    /// Who acknowledged it, if anyone.
    pub acknowledged: Option<Acknowledgement>,
    /// Escalation levels notified so far.
    pub escalation_level: u32,
    /// The rule's annotations filled in for this alert (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Since when the alert's data has been missing (state `stale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since_ms: Option<i64>,
    /// When the condition became false while firing (waiting out `resolve_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_since_ms: Option<i64>,
}

/// A number that JSON carries as `null` when it is NaN (serde_json writes NaN so).
pub(crate) fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Alerts pending or firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AlertList {
    /// The alerts, pending, firing or stale (the engine's alert objects).
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub alerts: Vec<Alert>,
}

/// `GET /alerts`: which alerts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct AlertFilter {
    /// `pending`, `firing` or `stale` (was firing, its data stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `info`, `warning` or `critical`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

/// Counts of the alerts pending or firing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AlertStats {
    /// Alerts pending, firing or stale now.
    pub total: usize,
    /// How many are in each state: `pending`, `firing`, `stale`.
    pub by_status: BTreeMap<String, usize>,
    /// How many are of each severity: `info`, `warning`, `critical`.
    pub by_severity: BTreeMap<String, usize>,
    /// How many of them are acknowledged.
    pub acknowledged: usize,
    /// Notifications that failed for good since the server started.
    pub delivery_failures: u64,
}

/// `POST /alerts/{id}/acknowledge`: records the caller's acknowledgement of a firing alert.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AcknowledgeRequest {
    /// Ignored, for older clients: an acknowledgement is recorded as the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why, in the acknowledger's words; empty unless given.
    #[serde(default)]
    pub comment: String,
}

/// The answer to `POST /alerts/{id}/acknowledge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    /// Always `true`: an unknown alert is refused with 404.
    pub acknowledged: bool,
}

/// The answer to `POST /alerts/{id}/resolve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// Always `true`: an unknown alert is refused with 404.
    pub resolved: bool,
}

/// Mutes alerts whose labels include all of `matchers`, from `starts_ms` to `ends_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// What expiring it early names.
    #[serde(default)]
    pub id: String,
    /// The labels (and values) an alert must have to be muted.
    pub matchers: Labels,
    /// When it starts (ms since 1970).
    pub starts_ms: i64,
    /// When it ends (ms since 1970).
    pub ends_ms: i64,
    /// Who made it (the caller).
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// `GET /silences`: the silences in force or still to come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SilenceList {
    /// The silences (`id`, `matchers`, `starts_ms`, `ends_ms`, `created_by`, `comment`).
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub silences: Vec<Silence>,
}

/// `POST /silences`: mutes alerts from now for a while.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SilenceRequest {
    /// The labels (and values) an alert must all have to be muted.
    pub matchers: Labels,
    /// How long from now: `2h`.
    pub duration: String,
    /// Ignored, for older clients: a silence is recorded as made by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Why, in the caller's words.
    #[serde(default)]
    pub comment: String,
}

/// `GET /alerts/history` and `GET /alert-rules/{id}/history`: which entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct HistoryFilter {
    /// Only this rule's entries (its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// At most this many entries, newest first: default 100, at most 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Alert history entries, newest first: `kind` is `transition`, `acknowledged`,
/// `silence_added`, `rule_created|updated|deleted`, `delivery_failed` or `action_answered`
/// (an action channel's call and the API's `answer`: `status`, `body` excerpt, `latency_ms`).
// The entries stay JSON objects: each kind has its own fields, recorded by the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AlertHistory {
    /// The entries, newest first; each has a `kind` and that kind's fields.
    pub history: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_without_a_value_reads_back() {
        let alert = Alert {
            id: "a".into(),
            rule: "NoData".into(),
            labels: Labels::new(),
            state: AlertState::Firing,
            since_ms: 1,
            value: f64::NAN,
            severity: AlertSeverity::Warning,
            acknowledged: None,
            escalation_level: 0,
            annotations: BTreeMap::new(),
            stale_since_ms: None,
            clear_since_ms: None,
        };
        let json = serde_json::to_string(&alert).unwrap();
        assert!(json.contains(r#""value":null"#), "{json}");
        let back: Alert = serde_json::from_str(&json).unwrap();
        assert!(back.value.is_nan());
    }
}
