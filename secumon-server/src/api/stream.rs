//! `GET /api/v1/stream`: a WebSocket of what happens in the caller's tenant as it happens.
//!
//! The client sends `{"subscribe": {"hosts": [...], "metrics": [...], "alerts": true,
//! "checks": false}}` whenever it wants to change what it gets (no hosts: every host;
//! metric names may end in `*`). The server answers `subscribed`, then sends `host` (an
//! agent's batch arrived: a heartbeat for overviews), `samples` (the subscribed metrics'
//! new values), `check` (probe results) and `alert` (transitions) messages. A client that
//! cannot keep up is sent `{"type": "error", "code": "slow_consumer"}` and disconnected;
//! ingestion never waits for it.
//!
//! A socket lives no longer than its credential: the bearer it opened with is checked again
//! every few seconds, and a revoked API key, an expired access token or a deleted user ends
//! the stream with `{"type": "error", "code": "unauthenticated"}`. No socket lives longer than
//! [`MAX_LIFETIME`]; clients reconnect.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use secumon_core::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use crate::auth::Caller;
use crate::live::LiveEvent;

/// A client whose socket does not take a message within this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// WebSocket close code "try again later".
const CLOSE_TRY_AGAIN: u16 = 1013;
/// WebSocket close code "policy violation": the credential no longer holds.
const CLOSE_POLICY: u16 = 1008;
/// How often the socket's credential is checked again.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// The longest a socket is kept open.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientMessage {
    subscribe: Subscription,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscription {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default = "yes")]
    alerts: bool,
    #[serde(default)]
    checks: bool,
}

fn yes() -> bool {
    true
}

impl Default for Subscription {
    fn default() -> Self {
        Self { hosts: Vec::new(), metrics: Vec::new(), alerts: true, checks: false }
    }
}

impl Subscription {
    fn wants_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|wanted| wanted == host)
    }

    fn wants_metric(&self, name: &str) -> bool {
        self.metrics.iter().any(|wanted| match wanted.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => wanted == name,
        })
    }

    /// The messages `event` becomes for this subscriber.
    fn messages(&self, event: &LiveEvent) -> Vec<Value> {
        match event {
            LiveEvent::Batch { batch, .. } if self.wants_host(&batch.host) => {
                let mut out = vec![json!({
                    "type": "host",
                    "agent_id": batch.agent_id,
                    "host": batch.host,
                    "at_ms": now_ms(),
                    "samples": batch.samples.len(),
                })];
                let samples: Vec<Value> = batch
                    .samples
                    .iter()
                    .filter(|s| self.wants_metric(&s.series.name))
                    .map(|s| {
                        json!({"name": s.series.name, "labels": s.series.labels,
                            "timestamp_ms": s.timestamp_ms, "value": s.value})
                    })
                    .collect();
                if !samples.is_empty() {
                    out.push(
                        json!({"type": "samples", "agent_id": batch.agent_id, "host": batch.host, "samples": samples}),
                    );
                }
                if self.checks {
                    out.extend(
                        batch
                            .check_results
                            .iter()
                            .map(|check| json!({"type": "check", "host": batch.host, "result": check})),
                    );
                }
                out
            }
            LiveEvent::Alert { transition, .. } if self.alerts => {
                vec![json!({"type": "alert", "transition": transition})]
            }
            _ => Vec::new(),
        }
    }
}

pub(super) async fn stream(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let events = state.live.subscribe();
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|token| token.trim().to_string());
    let accounts = Arc::clone(&state.accounts);
    upgrade.max_message_size(16 * 1024).on_upgrade(move |socket| async move {
        let still_valid = async move || match &bearer {
            Some(token) => accounts.authenticate(token).await.is_ok(),
            None => true, // open access (tests): no credential to lose
        };
        serve(socket, caller, events, still_valid).await
    })
}

async fn serve(
    socket: WebSocket,
    caller: Caller,
    mut events: broadcast::Receiver<Arc<LiveEvent>>,
    still_valid: impl AsyncFn() -> bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    let end_of_life = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(end_of_life);
    let mut subscription = Subscription::default();
    let subscribed = |subscription: &Subscription| {
        text(&json!({"type": "subscribed", "tenant": caller.tenant, "subscription": subscription}))
    };
    if !send(&mut sink, subscribed(&subscription)).await {
        return;
    }
    loop {
        tokio::select! {
            _ = recheck.tick() => {
                if !still_valid().await {
                    tracing::info!(subscriber = %caller.subject, "stream credential revoked or expired; closed");
                    close(&mut sink, "unauthenticated", "the credential of this stream was revoked or expired", CLOSE_POLICY).await;
                    return;
                }
            }
            _ = &mut end_of_life => {
                close(&mut sink, "lifetime", "streams are closed after 12 h; reconnect to resume", CLOSE_TRY_AGAIN).await;
                return;
            }
            message = incoming.next() => match message {
                Some(Ok(Message::Text(body))) => {
                    let reply = match serde_json::from_str::<ClientMessage>(&body) {
                        Ok(request) => {
                            subscription = request.subscribe;
                            subscribed(&subscription)
                        }
                        Err(error) => text(&json!({"type": "error", "code": "bad_request",
                            "message": format!("expected {{\"subscribe\": {{...}}}}: {error}")})),
                    };
                    if !send(&mut sink, reply).await {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(event) if event.tenant() == caller.tenant => {
                    for message in subscription.messages(&event) {
                        if !send(&mut sink, text(&message)).await {
                            tracing::info!(subscriber = %caller.subject, "stream subscriber too slow to take a message; dropped");
                            return;
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(subscriber = %caller.subject, missed, "stream subscriber fell behind; dropped");
                    let message = format!("fell {missed} events behind the live feed; reconnect to resume");
                    close(&mut sink, "slow_consumer", &message, CLOSE_TRY_AGAIN).await;
                    return;
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}

/// Tells the client why in an `error` message, then closes with `code`.
async fn close(sink: &mut SplitSink<WebSocket, Message>, error: &str, message: &str, code: u16) {
    if send(sink, text(&json!({"type": "error", "code": error, "message": message}))).await {
        let frame = CloseFrame { code, reason: error.to_string().into() };
        let _ = send(sink, Message::Close(Some(frame))).await;
    }
}

/// Sends `message`; `false` if the client is gone or did not take it within [`SEND_TIMEOUT`].
async fn send(sink: &mut SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(())))
}

fn text(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}
