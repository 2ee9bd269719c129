//! The live feed and agent revocations across server processes, over core NATS subjects:
//! what one process commits or revokes, every other hears at once, so any API process
//! serves any WebSocket, every alert process sees every committed batch, and every gateway
//! drops a revoked agent. Committed batches go as protobuf (`secumon.v1.Batch`), alert
//! transitions as JSON, on `secumon.live.<tenant>`; revocations as the agent id on
//! `secumon.revoked`. Each message carries its process's origin id: a process hears its own
//! messages back from NATS and drops them, and what it receives from NATS it never sends
//! out again. Core NATS, not JetStream: a process that is down misses the events of the
//! meantime, which is what a live view wants (the store has the history; revocations are
//! in the store too and checked on every connection).

use std::sync::Arc;

use async_nats::HeaderMap;
use futures::StreamExt;
use prost::Message as _;
use secumon_alert::Transition;
use secumon_core::{IngestBatch, proto};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::auth::RevocationFeed;
use crate::live::{LiveEvent, LiveFeed};

/// Subjects of the live events, one per tenant below it.
pub const LIVE_SUBJECT: &str = "secumon.live";
/// Subject of agent revocations.
pub const REVOKED_SUBJECT: &str = "secumon.revoked";
const ORIGIN_HEADER: &str = "Secumon-Origin";
const KIND_HEADER: &str = "Secumon-Kind";

/// The bridge between this process's feeds and NATS; its tasks end when it is dropped.
pub struct ClusterFeed {
    origin: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ClusterFeed {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl ClusterFeed {
    /// Bridges `live` (and `revocations`, when this process has an agent authority) to
    /// NATS through `client`, after subscribing, so nothing sent from now is missed.
    pub async fn bridge(
        client: async_nats::Client,
        live: LiveFeed,
        revocations: Option<RevocationFeed>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let origin = origin_id();
        let mut tasks = Vec::new();
        let incoming = client.subscribe(format!("{LIVE_SUBJECT}.>")).await?;
        tasks.push(tokio::spawn(receive_live(incoming, origin.clone(), live.clone())));
        tasks.push(tokio::spawn(send_live(client.clone(), origin.clone(), live.subscribe_here())));
        if let Some(revocations) = revocations {
            let incoming = client.subscribe(REVOKED_SUBJECT).await?;
            tasks.push(tokio::spawn(receive_revocations(incoming, origin.clone(), revocations.clone())));
            tasks.push(tokio::spawn(send_revocations(client.clone(), origin.clone(), revocations.subscribe_here())));
        }
        confirm_subscriptions(&client, &origin).await?;
        Ok(Self { origin, tasks })
    }

    /// This process's origin id in the messages it sends.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Waits until the server has this connection's subscriptions, so events other processes
/// send from now on are not missed: a message to itself makes the round trip (`flush` only
/// empties the client's buffer), and the server handles one connection's commands in order.
async fn confirm_subscriptions(client: &async_nats::Client, origin: &str) -> Result<(), async_nats::SubscribeError> {
    let subject = format!("_INBOX.secumon.{origin}");
    let mut echo = client.subscribe(subject.clone()).await?;
    if client.publish(subject, "".into()).await.is_ok()
        && tokio::time::timeout(std::time::Duration::from_secs(5), echo.next()).await.is_ok()
    {
        return Ok(());
    }
    tracing::warn!("NATS did not confirm the live feed's subscriptions in time");
    Ok(())
}

fn origin_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    format!("{}-{nanos:x}-{}", std::process::id(), u64::from_le_bytes(random))
}

fn headers(origin: &str, kind: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN_HEADER, origin);
    headers.insert(KIND_HEADER, kind);
    headers
}

fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|value| value.as_str())
}

async fn send_live(
    client: async_nats::Client,
    origin: String,
    mut events: tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "live events not sent to the other server processes (NATS too slow)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let subject = format!("{LIVE_SUBJECT}.{}", event.tenant());
        let (kind, payload) = match &*event {
            LiveEvent::Batch { batch, .. } => ("batch", batch.to_proto().encode_to_vec()),
            LiveEvent::Alert { transition, .. } => match serde_json::to_vec(transition) {
                Ok(json) => ("alert", json),
                Err(error) => {
                    tracing::error!(%error, "cannot encode an alert transition for NATS");
                    continue;
                }
            },
        };
        if let Err(error) = client.publish_with_headers(subject, headers(&origin, kind), payload.into()).await {
            tracing::warn!(%error, "cannot send a live event to NATS");
        }
    }
}

async fn receive_live(mut incoming: async_nats::Subscriber, origin: String, live: LiveFeed) {
    while let Some(message) = incoming.next().await {
        if header(&message, ORIGIN_HEADER) == Some(origin.as_str()) {
            continue;
        }
        let Some(tenant) = message.subject.as_str().strip_prefix(LIVE_SUBJECT).and_then(|t| t.strip_prefix('.')) else {
            continue;
        };
        let tenant = tenant.to_string();
        let event = match header(&message, KIND_HEADER) {
            Some("batch") => match proto::Batch::decode(message.payload.as_ref()).map(IngestBatch::from_proto) {
                Ok(Ok(batch)) => LiveEvent::Batch { tenant, batch: Arc::new(batch) },
                Ok(Err(error)) => {
                    tracing::warn!(%error, "a batch from NATS does not validate; dropped");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, "a batch from NATS does not decode; dropped");
                    continue;
                }
            },
            Some("alert") => match serde_json::from_slice::<Transition>(&message.payload) {
                Ok(transition) => LiveEvent::Alert { tenant, transition },
                Err(error) => {
                    tracing::warn!(%error, "an alert transition from NATS does not decode; dropped");
                    continue;
                }
            },
            other => {
                tracing::debug!(kind = ?other, "unknown live event kind from NATS; dropped");
                continue;
            }
        };
        live.publish_remote(event);
    }
}

async fn send_revocations(
    client: async_nats::Client,
    origin: String,
    mut revoked: tokio::sync::broadcast::Receiver<String>,
) {
    loop {
        let agent_id = match revoked.recv().await {
            Ok(agent_id) => agent_id,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "revocations not announced to the other server processes");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let sent = client.publish_with_headers(REVOKED_SUBJECT, headers(&origin, "revoked"), agent_id.clone().into());
        if let Err(error) = sent.await {
            tracing::error!(%error, agent_id, "cannot announce a revocation over NATS; other gateways refuse the agent on its next connection");
        }
    }
}

async fn receive_revocations(mut incoming: async_nats::Subscriber, origin: String, revocations: RevocationFeed) {
    while let Some(message) = incoming.next().await {
        if header(&message, ORIGIN_HEADER) == Some(origin.as_str()) {
            continue;
        }
        match std::str::from_utf8(&message.payload) {
            Ok(agent_id) if !agent_id.is_empty() => revocations.publish_remote(agent_id),
            _ => tracing::warn!("a revocation from NATS without an agent id; dropped"),
        }
    }
}
