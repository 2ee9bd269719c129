//! PagerDuty Events API v2: a firing alert triggers an incident, its resolution resolves it;
//! the dedup key ties both to the same incident.

use async_trait::async_trait;
use serde_json::json;

use super::{Notifier, NotifyError, post_json};
use crate::engine::{AlertState, Transition};
use crate::rule::AlertSeverity;

pub(crate) fn default_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_string()
}

pub struct PagerDutyNotifier {
    client: reqwest::Client,
    url: String,
    routing_key: String,
}

impl PagerDutyNotifier {
    pub fn new(client: reqwest::Client, url: String, routing_key: String) -> Self {
        Self { client, url, routing_key }
    }
}

/// One incident per alert: the rule and its labels.
pub(crate) fn dedup_key(t: &Transition) -> String {
    let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("secumon/{}/{}", t.rule, labels.join(","))
}

/// The event for a transition; `None` for changes PagerDuty has no use for (pending).
pub(crate) fn event(routing_key: &str, t: &Transition) -> Option<serde_json::Value> {
    let action = match t.to {
        AlertState::Firing => "trigger",
        AlertState::Resolved => "resolve",
        AlertState::Pending | AlertState::Inactive => return None,
    };
    let severity = match t.severity {
        AlertSeverity::Critical => "critical",
        AlertSeverity::Warning => "warning",
        AlertSeverity::Info => "info",
    };
    let summary = t.annotations.get("summary").cloned().unwrap_or_else(|| format!("{} at {}", t.rule, t.value));
    let source = t.labels.get("host").cloned().unwrap_or_else(|| "secumon".to_string());
    Some(json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(t),
        "payload": {
            "summary": summary,
            "source": source,
            "severity": severity,
            "component": t.rule,
            "custom_details": {"labels": t.labels, "annotations": t.annotations, "value": t.value},
        },
    }))
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    async fn send(&self, transition: &Transition) -> Result<(), NotifyError> {
        let Some(event) = event(&self.routing_key, transition) else { return Ok(()) };
        post_json(self.client.post(&self.url), serde_json::to_vec(&event).unwrap_or_default()).await
    }
}
