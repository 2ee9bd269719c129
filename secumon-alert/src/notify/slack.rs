//! Slack incoming webhooks: one message per notification, with a header, the group's labels
//! as fields, and an attachment colour by severity (critical red, warning orange, info blue).

use async_trait::async_trait;
use serde_json::json;

use super::{Notifier, NotifyError, post_json};
use crate::engine::AlertState;
use crate::group::Notification;
use crate::rule::AlertSeverity;

pub struct SlackNotifier {
    client: reqwest::Client,
    webhook_url: String,
}

impl SlackNotifier {
    pub fn new(client: reqwest::Client, webhook_url: String) -> Self {
        Self { client, webhook_url }
    }
}

/// The colour of a message: red, orange or blue by severity, green once resolved.
pub(crate) fn colour(notification: &Notification) -> &'static str {
    match (notification.status, notification.severity) {
        (AlertState::Resolved, _) => "#2eb67d",
        (_, AlertSeverity::Critical) => "#d00000",
        (_, AlertSeverity::Warning) => "#ff8c00",
        (_, AlertSeverity::Info) => "#1e6fd9",
    }
}

/// The Slack message for a notification.
pub(crate) fn message(n: &Notification) -> serde_json::Value {
    let state = match n.status {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
        AlertState::Pending => "PENDING",
        AlertState::Inactive => "CLEARED",
        AlertState::Stale => "STALE",
    };
    let count = if n.alerts.len() > 1 { format!(" × {}", n.alerts.len()) } else { String::new() };
    let title = format!("[{state}] {} ({:?}){count}", n.rule, n.severity);
    let summary = n.summary();
    let fields: Vec<serde_json::Value> = n
        .group_labels
        .iter()
        .take(10) // Slack accepts at most ten fields in a section.
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}),
    ];
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    json!({
        "text": format!("{title} {summary}"),
        "attachments": [{"color": colour(n), "blocks": blocks}],
    })
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&message(notification)).unwrap_or_default();
        post_json(self.client.post(&self.webhook_url), body).await
    }
}
