//! The server side of `secumon.v1.Ingest/Push`: validates each batch of an agent's stream,
//! hands it to a [`BatchSink`] and acknowledges it only once the sink says it is durable.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use secumon_core::proto::{
    AckStatus, AgentConfigUpdate, AgentSession, Batch, EnrollRequest, EnrollResponse, PushAck, RenewRequest,
};
use secumon_core::{IngestBatch, now_ms};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

use crate::gate::{AgentGate, Peer, PeerCredentials};
use crate::grpc::enrollment_server::{Enrollment, EnrollmentServer};
use crate::grpc::ingest_server::{Ingest, IngestServer};

/// What a sink did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOutcome {
    /// Made durable now; the sender may forget it once acknowledged.
    Committed,
    /// Committed before; dropped.
    Duplicate,
}

/// Why a sink did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The batch could not be made durable now (storage down, disk full); the agent keeps it
    /// and sends it again later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The batch will never be accepted (it breaks a rule of the store); it is rejected.
    #[error("{0}")]
    Refused(String),
    /// The sender is over a limit that lifts with time (its tenant's sample rate): the
    /// push ends `RESOURCE_EXHAUSTED`, and the agent keeps the batch and sends it again
    /// after its backoff, like after any failed push.
    #[error("{0}")]
    OverLimit(String),
}

/// Where accepted batches go: the store, or a message queue in scale-out mode.
#[async_trait]
pub trait BatchSink: Send + Sync + 'static {
    /// Makes `batch`, pushed by `peer`, durable. Called in sequence order for each agent
    /// stream; returning means the batch may be acknowledged.
    async fn commit(&self, peer: &Peer, batch: IngestBatch) -> Result<SinkOutcome, SinkError>;

    /// The centrally managed configuration the sender of an accepted batch should run,
    /// when it differs from what `report` says it runs and it did not refuse it already;
    /// carried by that batch's acknowledgement. None by default: nothing is managed.
    async fn agent_config(&self, _peer: &Peer, _report: &ConfigReport) -> Option<AgentConfigUpdate> {
        None
    }
}

/// What a batch says of its sender's managed configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigReport {
    /// The sender's agent id.
    pub agent_id: String,
    /// The sender's labels (its `agent.labels`), which select the configuration layers.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The version it runs; empty: its own file only.
    pub running: String,
    /// The latest version it refused, and why; empty when none.
    pub refused: String,
    /// Why `refused` was refused; empty when none.
    pub error: String,
}

impl ConfigReport {
    fn of(batch: &Batch) -> Self {
        Self {
            agent_id: batch.agent_id.clone(),
            labels: batch.agent_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            running: batch.config_version.clone(),
            refused: batch.config_refused_version.clone(),
            error: batch.config_error.clone(),
        }
    }
}

/// The gRPC ingest service over a [`BatchSink`] (a type, or `dyn BatchSink` when the sink
/// is chosen at run time: the store, or a message bus).
pub struct IngestService<S: ?Sized> {
    sink: Arc<S>,
    stopping: watch::Receiver<bool>,
    gate: Option<Arc<dyn AgentGate>>,
    open_streams: Arc<AtomicUsize>,
}

/// Counts a push stream as open for as long as it lives.
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(count))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: BatchSink + ?Sized> IngestService<S> {
    /// `stopping` turning true ends every open push stream, so a graceful server shutdown
    /// does not wait forever for agents' endless streams.
    pub fn new(sink: Arc<S>, stopping: watch::Receiver<bool>) -> Self {
        Self { sink, stopping, gate: None, open_streams: Arc::default() }
    }

    /// Counts the push streams open now (connected agents and probes) in `counter`.
    pub fn counting_streams_in(mut self, counter: Arc<AtomicUsize>) -> Self {
        self.open_streams = counter;
        self
    }

    /// Admits each push connection through `gate` (without one, every connection that got
    /// through the TLS handshake is admitted, for the sink's default tenant).
    pub fn with_gate(mut self, gate: Arc<dyn AgentGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The tonic service, accepting and sending zstd-compressed messages.
    pub fn into_server(self) -> IngestServer<Self> {
        IngestServer::new(self)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Largest decoded batch accepted (a batch of a million samples stays under it).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type AckStream = Pin<Box<dyn Stream<Item = Result<PushAck, Status>> + Send>>;

#[tonic::async_trait]
impl<S: BatchSink + ?Sized> Ingest for IngestService<S> {
    type PushStream = AckStream;

    async fn push(&self, request: Request<Streaming<Batch>>) -> Result<Response<AckStream>, Status> {
        let admitted = match &self.gate {
            Some(gate) => gate.admit(&PeerCredentials::of(&request)).await?,
            None => Peer::default(),
        };
        let peer = request.remote_addr();
        let mut batches = request.into_inner();
        let sink = Arc::clone(&self.sink);
        let mut stopping = self.stopping.clone();
        let mut revocations = admitted.agent_id.as_ref().and_then(|_| self.gate.as_ref()?.revocations());
        // A small buffer: acks are tiny, and a stalled reader should stall only its own stream.
        let (acks, rx) = mpsc::channel(64);
        let open = OpenStream::new(&self.open_streams);
        tokio::spawn(async move {
            let _open = open;
            // When a read last found nothing waiting: every batch read since arrived after it.
            let mut caught_up_ms = now_ms();
            loop {
                // Whether the batch was already there at the first look (it waited, for at
                // most the time since `caught_up_ms`) or arrived while we listened.
                let mut looks = 0u32;
                let read = std::future::poll_fn(|cx| {
                    looks += 1;
                    batches.poll_next_unpin(cx)
                });
                // Stopping and revocations first: a stream that always has a batch waiting
                // must still see them.
                let message = tokio::select! {
                    biased;
                    _ = stopping.wait_for(|stop| *stop) => break,
                    revoked = next_revocation(&mut revocations) => {
                        if admitted.agent_id.as_deref() != Some(revoked.as_str()) {
                            continue;
                        }
                        None
                    }
                    message = read => Some(message.transpose()),
                };
                let Some(message) = message else {
                    let agent = admitted.agent_id.as_deref().unwrap_or_default();
                    tracing::info!(?peer, %agent, "agent revoked; its stream is closed");
                    let _ = acks
                        .send(Err(crate::gate::revoked_status(format!(
                            "agent {agent} was revoked; enroll it again with a new token"
                        ))))
                        .await;
                    break;
                };
                let batch = match message {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(?peer, %status, "push stream ended");
                        break;
                    }
                };
                // The receive time the sender's clock offset is measured against. A batch
                // queued behind slow commits is read late, by up to the time since the reads
                // last caught up: that bound goes with it, so the server does not take the
                // wait for a clock that is behind (after a store outage, every agent's).
                let received_at_ms = now_ms();
                let queued_ms = if looks > 1 {
                    caught_up_ms = received_at_ms;
                    0
                } else {
                    u32::try_from(received_at_ms.saturating_sub(caught_up_ms)).unwrap_or(u32::MAX)
                };
                let sequence = batch.sequence;
                let ack = |status: AckStatus, error: String| PushAck {
                    sequence,
                    status: status as i32,
                    error,
                    received_at_ms,
                    acked_at_ms: now_ms(),
                    config: None,
                };
                if let Some(agent_id) = admitted.agent_id.as_deref().filter(|id| *id != batch.agent_id) {
                    let reason = format!("this connection belongs to agent {agent_id}, not {}", batch.agent_id);
                    tracing::warn!(?peer, sequence, %reason, "rejected a batch");
                    if acks.send(Ok(ack(AckStatus::Rejected, reason))).await.is_err() {
                        break;
                    }
                    continue;
                }
                let report = ConfigReport::of(&batch);
                let mut ack = match IngestBatch::from_proto(batch) {
                    Err(invalid) => {
                        tracing::warn!(?peer, sequence, error = %invalid, "rejected a batch");
                        ack(AckStatus::Rejected, invalid.to_string())
                    }
                    Ok(mut batch) => {
                        if let Some(clock) = &mut batch.clock {
                            clock.received_at_ms = received_at_ms;
                            clock.queued_ms = queued_ms;
                        }
                        match sink.commit(&admitted, batch).await {
                            Ok(SinkOutcome::Committed) => ack(AckStatus::Committed, String::new()),
                            Ok(SinkOutcome::Duplicate) => ack(AckStatus::Duplicate, String::new()),
                            Err(SinkError::Refused(reason)) => {
                                tracing::warn!(?peer, sequence, %reason, "refused a batch");
                                ack(AckStatus::Rejected, reason)
                            }
                            Err(failure) => {
                                // Later batches must not be committed ahead of this one: end the
                                // stream so the agent reconnects and resends from here.
                                tracing::error!(?peer, sequence, error = %failure, "could not store a batch");
                                let status = match failure {
                                    SinkError::OverLimit(message) => Status::resource_exhausted(message),
                                    other => Status::unavailable(other.to_string()),
                                };
                                let _ = acks.send(Err(status)).await;
                                break;
                            }
                        }
                    }
                };
                if ack.status != AckStatus::Rejected as i32 {
                    ack.config = sink.agent_config(&admitted, &report).await;
                }
                if acks.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The next revoked agent id; never, without a revocation feed.
async fn next_revocation(revocations: &mut Option<broadcast::Receiver<String>>) -> String {
    let Some(receiver) = revocations else { return std::future::pending().await };
    loop {
        match receiver.recv().await {
            Ok(agent_id) => return agent_id,
            // Ids missed in a burst of revocations: those streams stay open until they end,
            // and admission refuses their next connection.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// The gRPC enrollment service: agents trade provisioning tokens for certificates and renew
/// their session tokens, through the server's [`AgentGate`].
pub struct EnrollmentService {
    gate: Arc<dyn AgentGate>,
}

impl EnrollmentService {
    /// A service that admits and renews agents through `gate`.
    pub fn new(gate: Arc<dyn AgentGate>) -> Self {
        Self { gate }
    }

    /// The tonic server to add to a router (requests limited to 64 KiB).
    pub fn into_server(self) -> EnrollmentServer<Self> {
        EnrollmentServer::new(self).max_decoding_message_size(64 * 1024)
    }
}

#[tonic::async_trait]
impl Enrollment for EnrollmentService {
    async fn enroll(&self, request: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr();
        let request = request.into_inner();
        let agent_id = request.agent_id.clone();
        match self.gate.enroll(request).await {
            Ok(enrolled) => {
                tracing::info!(?peer, agent_id = %enrolled.agent_id, "agent enrolled");
                Ok(Response::new(enrolled))
            }
            Err(error) => {
                tracing::warn!(?peer, ?agent_id, %error, "enrollment refused");
                Err(error.into())
            }
        }
    }

    async fn renew(&self, request: Request<RenewRequest>) -> Result<Response<AgentSession>, Status> {
        let session = self.gate.renew(&PeerCredentials::of(&request)).await?;
        Ok(Response::new(session))
    }
}
