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
//! `"logs": {"host": H, "after": CURSOR, "since_ms": .., "source": .., "contains": ..,
//! "regex": ..}` in a subscription follows one host's log lines: the server sends `logs`
//! messages with every stored line after `after` (or from `since_ms`, or else from the
//! newest line stored when the subscription arrived) that passes the filters, in order, and
//! then each new one as its batch is committed. Lines are read back from the store by cursor
//! on every batch of that host, so the stream has no gap and no duplicate at its seam with a
//! page read through `GET /logs/hosts/{id}` (pass that page's `next_cursor` as `after`).
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
use secumon_alert::Transition;
use secumon_api::{AlertTransition, ClientMessage, LogFollow, StreamMessage, StreamSample, Subscription};
use secumon_core::now_ms;
use secumon_store::{LogCursor, LogOrder, LogQuery, Store, StoreError};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::alerts::api_state;
use super::logs::{LogsQueryExt, log_line};
use super::{ApiState, LogLine, LogsQuery};
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

/// A log follow in progress: the query, and the last row already sent.
struct Following {
    query: LogQuery,
    cursor: LogCursor,
}

impl Following {
    /// Validates `follow` and finds where it starts.
    async fn start(store: &dyn Store, tenant: &str, follow: &LogFollow) -> Result<Self, StoreError> {
        let params = LogsQuery {
            limit: Some(secumon_store::logs::MAX_PAGE),
            since_ms: follow.since_ms,
            source: follow.source.clone(),
            contains: follow.contains.clone(),
            regex: follow.regex.clone(),
            after: follow.after.clone(),
            ..LogsQuery::default()
        };
        let mut query = params.to_store(&follow.host)?;
        query.order = LogOrder::Forward;
        let cursor = match (query.after, follow.since_ms) {
            (Some(after), _) => after,
            (None, Some(since_ms)) => LogCursor::at(since_ms),
            // From now: after the newest row stored, or before everything if there is none.
            (None, None) => {
                let newest =
                    LogQuery { host: follow.host.clone(), order: LogOrder::Backward, limit: 1, ..LogQuery::default() };
                store.query_logs(tenant, &newest).await?.last.unwrap_or(LogCursor::at(i64::MIN))
            }
        };
        query.since_ms = None;
        Ok(Self { query, cursor })
    }

    /// The lines stored after the last one sent, as `logs` messages; moves the cursor on.
    async fn catch_up(&mut self, store: &dyn Store, tenant: &str) -> Result<Vec<StreamMessage>, StoreError> {
        let mut messages = Vec::new();
        loop {
            self.query.after = Some(self.cursor);
            let page = store.query_logs(tenant, &self.query).await?;
            if let Some(last) = page.last {
                self.cursor = last;
            }
            if !page.entries.is_empty() {
                let lines: Vec<LogLine> = page.entries.into_iter().map(log_line).collect();
                let (host, cursor) = (self.query.host.clone(), self.cursor.to_string());
                messages.push(StreamMessage::Logs { host, logs: lines, cursor });
            }
            if !page.more {
                return Ok(messages);
            }
        }
    }
}

/// What a subscription lets through, and what a live event becomes for it.
trait Subscriber {
    fn wants_host(&self, host: &str) -> bool;
    fn wants_metric(&self, name: &str) -> bool;
    fn messages(&self, event: &LiveEvent) -> Vec<StreamMessage>;
}

impl Subscriber for Subscription {
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
    fn messages(&self, event: &LiveEvent) -> Vec<StreamMessage> {
        match event {
            LiveEvent::Batch { batch, .. } if self.wants_host(&batch.host) => {
                let mut out = vec![StreamMessage::Host {
                    agent_id: batch.agent_id.clone(),
                    host: batch.host.clone(),
                    at_ms: now_ms(),
                    samples: batch.samples.len(),
                }];
                let samples: Vec<StreamSample> = batch
                    .samples
                    .iter()
                    .filter(|s| self.wants_metric(&s.series.name))
                    .map(|s| StreamSample {
                        name: s.series.name.clone(),
                        labels: s.series.labels.clone(),
                        timestamp_ms: s.timestamp_ms,
                        value: number(s.value),
                    })
                    .collect();
                if !samples.is_empty() {
                    out.push(StreamMessage::Samples {
                        agent_id: batch.agent_id.clone(),
                        host: batch.host.clone(),
                        samples,
                    });
                }
                if self.checks {
                    out.extend(
                        batch
                            .check_results
                            .iter()
                            .map(|check| StreamMessage::Check { host: batch.host.clone(), result: check.clone() }),
                    );
                }
                out
            }
            LiveEvent::Alert { transition, .. } if self.alerts => {
                vec![StreamMessage::Alert { transition: api_transition(transition) }]
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
    let store = Arc::clone(&state.store);
    upgrade.max_message_size(16 * 1024).on_upgrade(move |socket| async move {
        let still_valid = async move || match &bearer {
            Some(token) => accounts.authenticate(token).await.is_ok(),
            None => true, // open access (tests): no credential to lose
        };
        serve(socket, caller, &*store, events, still_valid).await
    })
}

async fn serve(
    socket: WebSocket,
    caller: Caller,
    store: &dyn Store,
    mut events: broadcast::Receiver<Arc<LiveEvent>>,
    still_valid: impl AsyncFn() -> bool,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    let end_of_life = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(end_of_life);
    let mut subscription = Subscription::default();
    let mut following: Option<Following> = None;
    let subscribed = |subscription: &Subscription| {
        text(&StreamMessage::Subscribed { tenant: caller.tenant.clone(), subscription: subscription.clone() })
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
                    let mut replies = Vec::new();
                    match serde_json::from_str::<ClientMessage>(&body) {
                        Ok(request) => {
                            let follow = match &request.subscribe.logs {
                                Some(follow) => Following::start(store, &caller.tenant, follow).await.map(Some),
                                None => Ok(None),
                            };
                            match follow {
                                Ok(follow) => {
                                    subscription = request.subscribe;
                                    following = follow;
                                    replies.push(subscribed(&subscription));
                                    if let Some(follow) = following.as_mut() {
                                        match follow.catch_up(store, &caller.tenant).await {
                                            Ok(lines) => replies.extend(lines.iter().map(text)),
                                            Err(error) => replies.push(store_error(&error)),
                                        }
                                    }
                                }
                                Err(error) => replies.push(store_error(&error)),
                            }
                        }
                        Err(error) => replies.push(error_text("bad_request", format!("expected {{\"subscribe\": {{...}}}}: {error}"))),
                    };
                    for reply in replies {
                        if !send(&mut sink, reply).await {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            event = events.recv() => match event {
                Ok(event) if event.tenant() == caller.tenant => {
                    let mut messages: Vec<Message> = subscription.messages(&event).iter().map(text).collect();
                    if let (Some(follow), LiveEvent::Batch { batch, .. }) = (following.as_mut(), &*event)
                        && batch.host == follow.query.host
                        && !batch.logs.is_empty()
                    {
                        match follow.catch_up(store, &caller.tenant).await {
                            Ok(lines) => messages.extend(lines.iter().map(text)),
                            Err(error) => messages.push(store_error(&error)),
                        }
                    }
                    for message in messages {
                        if !send(&mut sink, message).await {
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
    if send(sink, error_text(error, message.to_string())).await {
        let frame = CloseFrame { code, reason: error.to_string().into() };
        let _ = send(sink, Message::Close(Some(frame))).await;
    }
}

/// Sends `message`; `false` if the client is gone or did not take it within [`SEND_TIMEOUT`].
async fn send(sink: &mut SplitSink<WebSocket, Message>, message: Message) -> bool {
    matches!(tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await, Ok(Ok(())))
}

/// A store answer the client should hear about: a bad filter is its mistake, the rest ours.
fn store_error(error: &StoreError) -> Message {
    let code = match error {
        StoreError::InvalidQuery(_) => "bad_request",
        _ => "store_unavailable",
    };
    error_text(code, error.to_string())
}

/// An `error` message.
fn error_text(code: &str, message: String) -> Message {
    text(&StreamMessage::Error { code: code.to_string(), message })
}

fn text(message: &StreamMessage) -> Message {
    // These types always serialise: string keys, no fallible `Serialize` impls.
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

/// A sampled value as the stream sends it: `null` when it is not a number.
fn number(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

/// An engine's alert transition as the stream shows it.
fn api_transition(transition: &Transition) -> AlertTransition {
    AlertTransition {
        rule: transition.rule.clone(),
        labels: transition.labels.clone(),
        from: api_state(transition.from),
        to: api_state(transition.to),
        at_ms: transition.at_ms,
        value: number(transition.value),
        severity: transition.severity,
        annotations: transition.annotations.clone(),
        channels: transition.channels.clone(),
        silenced: transition.silenced,
        escalation_level: transition.escalation_level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secumon_alert::{AlertSeverity, AlertState};

    #[test]
    fn transitions_keep_the_engines_json() {
        let transition = Transition {
            rule: "CpuHigh".into(),
            labels: [("host".to_string(), "web-1".to_string())].into(),
            from: AlertState::Pending,
            to: AlertState::Firing,
            at_ms: 5,
            value: 0.9,
            severity: AlertSeverity::Critical,
            annotations: [("summary".to_string(), "hot".to_string())].into(),
            channels: vec!["ops".into()],
            silenced: true,
            escalation_level: 1,
        };
        let json = |t: &Transition| serde_json::to_value(t).unwrap();
        assert_eq!(serde_json::to_value(api_transition(&transition)).unwrap(), json(&transition));
        let no_value = Transition { value: f64::NAN, ..transition };
        assert_eq!(serde_json::to_value(api_transition(&no_value)).unwrap(), json(&no_value));
    }
}
