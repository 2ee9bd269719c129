//! Slack incoming webhooks: one message per transition, with a header, the labels as
//! fields, and an attachment colour by severity (critical red, warning orange, info blue).

use async_trait::async_trait;
use serde_json::json;

use super::{Notifier, NotifyError, post_json};
use crate::engine::{AlertState, Transition};
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
pub(crate) fn colour(transition: &Transition) -> &'static str {
    match (transition.to, transition.severity) {
        (AlertState::Resolved, _) => "#2eb67d",
        (_, AlertSeverity::Critical) => "#d00000",
        (_, AlertSeverity::Warning) => "#ff8c00",
        (_, AlertSeverity::Info) => "#1e6fd9",
    }
}

/// The Slack message for a transition.
pub(crate) fn message(t: &Transition) -> serde_json::Value {
    let state = match t.to {
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
        AlertState::Pending => "PENDING",
        AlertState::Inactive => "CLEARED",
    };
    let title = format!("[{state}] {} ({:?})", t.rule, t.severity);
    let summary = t.annotations.get("summary").cloned().unwrap_or_default();
    let fields: Vec<serde_json::Value> = t
        .labels
        .iter()
        .take(10) // Slack accepts at most ten fields in a section.
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
        .collect();
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": title}})];
    if !summary.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": summary}}));
    }
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("value {}", t.value)}]}));
    json!({
        "text": format!("{title} {summary}"),
        "attachments": [{"color": colour(t), "blocks": blocks}],
    })
}

#[async_trait]
impl Notifier for SlackNotifier {
    async fn send(&self, transition: &Transition) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&message(transition)).unwrap_or_default();
        post_json(self.client.post(&self.webhook_url), body).await
    }
}
