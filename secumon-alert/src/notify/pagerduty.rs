//! PagerDuty Events API v2: a firing notification triggers an incident, its resolution
//! resolves it; the dedup key (rule and group) ties both to the same incident.

use async_trait::async_trait;
use serde_json::json;

use super::{Notifier, NotifyError, post_json};
use crate::engine::AlertState;
use crate::group::Notification;
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

/// One incident per notified group: the rule and the group's labels.
pub(crate) fn dedup_key(n: &Notification) -> String {
    let labels: Vec<String> = n.group_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("secumon/{}/{}", n.rule, labels.join(","))
}

/// The event for a notification; `None` for changes PagerDuty has no use for (pending).
pub(crate) fn event(routing_key: &str, n: &Notification) -> Option<serde_json::Value> {
    let action = match n.status {
        AlertState::Firing => "trigger",
        AlertState::Resolved => "resolve",
        // A stale alert's incident stays open: nothing says it is over.
        AlertState::Pending | AlertState::Inactive | AlertState::Stale => return None,
    };
    let severity = match n.severity {
        AlertSeverity::Critical => "critical",
        AlertSeverity::Warning => "warning",
        AlertSeverity::Info => "info",
    };
    let source = n.alerts[0].labels.get("host").cloned().unwrap_or_else(|| "secumon".to_string());
    let alerts: Vec<&secumon_core::Labels> = n.alerts.iter().map(|a| &a.labels).collect();
    Some(json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(n),
        "payload": {
            "summary": n.summary(),
            "source": source,
            "severity": severity,
            "component": n.rule,
            "custom_details": {"group": n.group_labels, "alerts": alerts, "annotations": n.alerts[0].annotations},
        },
    }))
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let Some(event) = event(&self.routing_key, notification) else { return Ok(()) };
        post_json(self.client.post(&self.url), serde_json::to_vec(&event).unwrap_or_default()).await
    }
}
