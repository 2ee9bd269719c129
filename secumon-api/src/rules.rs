//! Alert rules and integrations: `/api/v1/alert-rules*` (but the rule history, which is
//! with the alerts) and `/api/v1/integrations`.
//!
//! A rule's definition is the rules file's: [`RuleSpec`], shared with the alert engine
//! through `secumon-core`, so the API, the CLI and the engine read one type.

use secumon_core::Labels;
pub use secumon_core::rules::{EscalationLevel, RuleSpec, SourceKind};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertState, nan_if_null};

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleOrigin {
    /// The rules file given at start: changed by editing the file.
    File,
    /// Created through the API and kept in the store.
    Api,
}

impl RuleOrigin {
    /// The name the API uses: `file` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Api => "api",
        }
    }
}

/// A rule as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// The rule's name, which identifies it.
    pub id: String,
    /// Where the rule is defined: the rules file (read-only here) or the API.
    pub origin: RuleOrigin,
    /// The definition, as in the rules file.
    pub rule: RuleSpec,
}

/// `GET /alert-rules`: every rule, from the rules file and from the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct RuleList {
    /// The rules (`id`, `origin`, `rule`).
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub rules: Vec<RuleView>,
}

/// The rule a create or an update stored, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleId {
    /// The rule's name.
    pub id: String,
}

/// What a rule would do now, evaluated against stored data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTest {
    /// The rule's name.
    pub rule: String,
    /// When it was evaluated (ms since 1970).
    pub evaluated_at_ms: i64,
    /// Alerts the rule would raise now: `firing`, or `pending` while its `for` runs.
    pub alerts: Vec<RuleTestAlert>,
}

/// One alert a rule test would raise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTestAlert {
    /// The alert's labels.
    pub labels: Labels,
    /// The value that crossed; NaN (sent as `null`) when there was none.
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    /// `firing`, or `pending` while the rule's `for` runs.
    pub state: AlertState,
}

/// What an integration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationKind {
    /// An endpoint scanner reports are imported through.
    FindingsImport,
    /// A channel alert rules notify through.
    NotificationChannel,
    /// An endpoint another platform pushes events and metrics through (SecuOps).
    EventsIngest,
    /// A scanner the server starts on a schedule and imports the report of.
    ScheduledScan,
}

/// One way in or out of the server: a findings import endpoint or a notification channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integration {
    /// The integration's name (a channel's name in the rules file).
    pub name: String,
    /// An import endpoint or a notification channel.
    pub kind: IntegrationKind,
    /// How a report is sent (`POST`), for an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Where a report is sent, for an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The report formats read, for an import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<String>>,
}

/// `GET /integrations`: the imports and the notification channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrationList {
    /// The imports first, then the channels.
    pub integrations: Vec<Integration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_alert_without_a_value_reads_as_nan() {
        let alert: RuleTestAlert =
            serde_json::from_value(serde_json::json!({"labels": {}, "value": null, "state": "pending"})).unwrap();
        assert!(alert.value.is_nan() && alert.state == AlertState::Pending);
    }

    #[test]
    fn integrations_show_import_details_only_for_imports() {
        let channel = Integration {
            name: "ops".into(),
            kind: IntegrationKind::NotificationChannel,
            method: None,
            endpoint: None,
            formats: None,
        };
        assert_eq!(
            serde_json::to_value(&channel).unwrap(),
            serde_json::json!({"name": "ops", "kind": "notification_channel"})
        );
    }
}
