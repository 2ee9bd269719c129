//! The gateway's [`BatchSink`]: each batch an agent pushes is published to the tenant's
//! JetStream subject and acknowledged to the agent only once JetStream has stored it. The
//! batch travels as the wire protobuf, its tenant, agent and receive time in headers, and
//! `Nats-Msg-Id = <tenant>/<agent_id>/<sequence>` so JetStream drops a second copy within
//! its duplicate window (the store drops later ones by `(agent_id, sequence)`).
//!
//! While NATS is away the sink answers "unavailable": the push stream ends, the agent keeps
//! the batch in its spool and sends it again after its backoff; the NATS client reconnects
//! by itself, so the gateway acknowledges again as soon as NATS is back.

use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use prost::Message;
use secumon_core::IngestBatch;
use secumon_core::proto::AgentConfigUpdate;
use secumon_transport::{BatchSink, ConfigReport, Peer, SinkError, SinkOutcome};

use crate::agent_config::AgentConfigBook;
use crate::bus::Bus;

/// The header naming the tenant a batch is stored for.
pub(crate) const TENANT_HEADER: &str = "Secumon-Tenant";
/// The header naming the pushing agent, as its connection was admitted.
pub(crate) const AGENT_HEADER: &str = "Secumon-Agent";
/// When the gateway received the batch (ms since 1970, the gateway's clock): the sender's
/// clock offset is measured against it, not against when a worker reads the batch.
pub(crate) const RECEIVED_HEADER: &str = "Secumon-Received-At";
/// How long the batch may have waited in its stream before the gateway read it (ms; see
/// `ClockReading::queued_ms`).
pub(crate) const QUEUED_HEADER: &str = "Secumon-Queued-Ms";

/// Publishes batches to JetStream, for its pusher's tenant or a default one.
pub(crate) struct GatewaySink {
    bus: Bus,
    tenant: String,
    agent_config: Option<Arc<AgentConfigBook>>,
}

impl GatewaySink {
    pub fn new(bus: Bus, tenant: impl Into<String>) -> Self {
        Self { bus, tenant: tenant.into(), agent_config: None }
    }

    /// Tells senders the managed configuration they should run, from `book`.
    pub fn with_agent_config(mut self, book: Arc<AgentConfigBook>) -> Self {
        self.agent_config = Some(book);
        self
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> SinkError {
        SinkError::Unavailable(format!("the message bus cannot take batches now ({what}); keep them and retry"))
    }
}

/// The JetStream message id of a batch: the same for every copy of it, whichever gateway
/// receives it.
pub(crate) fn message_id(tenant: &str, agent_id: &str, sequence: u64) -> String {
    format!("{tenant}/{agent_id}/{sequence}")
}

#[async_trait]
impl BatchSink for GatewaySink {
    async fn commit(&self, peer: &Peer, batch: IngestBatch) -> Result<SinkOutcome, SinkError> {
        // Down now: say so at once rather than after the publish timeout.
        if !self.bus.is_connected() {
            return Err(self.unavailable(format_args!("NATS at {} is unreachable", self.bus.url())));
        }
        let tenant = peer.tenant.as_deref().unwrap_or(&self.tenant);
        let mut headers = HeaderMap::new();
        headers.insert(TENANT_HEADER, tenant);
        headers.insert(AGENT_HEADER, batch.agent_id.as_str());
        if let Some(clock) = batch.clock.filter(|clock| clock.received_at_ms != 0) {
            headers.insert(RECEIVED_HEADER, clock.received_at_ms.to_string().as_str());
            headers.insert(QUEUED_HEADER, clock.queued_ms.to_string().as_str());
        }
        let payload = batch.to_proto().encode_to_vec();
        let publish = PublishMessage::build().payload(payload.into()).headers(headers).message_id(message_id(
            tenant,
            &batch.agent_id,
            batch.sequence,
        ));
        let subject = self.bus.ingest_subject(tenant);
        let acked = match self.bus.jetstream().send_publish(subject, publish).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match acked {
            Ok(ack) if ack.duplicate => Ok(SinkOutcome::Duplicate),
            Ok(_) => Ok(SinkOutcome::Committed),
            Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                tracing::error!(agent = %batch.agent_id, sequence = batch.sequence, %error,
                    "a batch is larger than NATS accepts; raise max_payload in the NATS server's configuration");
                Err(SinkError::Refused(format!("the batch is larger than the message bus accepts: {error}")))
            }
            Err(error) => Err(self.unavailable(error)),
        }
    }

    async fn agent_config(&self, peer: &Peer, report: &ConfigReport) -> Option<AgentConfigUpdate> {
        let book = self.agent_config.as_ref()?;
        book.update_for(peer.tenant.as_deref().unwrap_or(&self.tenant), report).await
    }
}
