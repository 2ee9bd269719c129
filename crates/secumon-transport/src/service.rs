//! The server side of `secumon.v1.Ingest/Push`: validates each batch of an agent's stream,
//! hands it to a [`BatchSink`] and acknowledges it only once the sink says it is durable.

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Stream;
use secumon_core::IngestBatch;
use secumon_core::proto::{AckStatus, Batch, PushAck};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status, Streaming};

use crate::grpc::ingest_server::{Ingest, IngestServer};

/// What a sink did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkOutcome {
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
}

/// Where accepted batches go: the store, or a message queue in scale-out mode.
#[async_trait]
pub trait BatchSink: Send + Sync + 'static {
    /// Makes `batch` durable. Called in sequence order for each agent stream; returning
    /// means the batch may be acknowledged.
    async fn commit(&self, batch: IngestBatch) -> Result<SinkOutcome, SinkError>;
}

/// The gRPC ingest service over a [`BatchSink`].
pub struct IngestService<S> {
    sink: Arc<S>,
    stopping: watch::Receiver<bool>,
}

impl<S: BatchSink> IngestService<S> {
    /// `stopping` turning true ends every open push stream, so a graceful server shutdown
    /// does not wait forever for agents' endless streams.
    pub fn new(sink: Arc<S>, stopping: watch::Receiver<bool>) -> Self {
        Self { sink, stopping }
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
impl<S: BatchSink> Ingest for IngestService<S> {
    type PushStream = AckStream;

    async fn push(&self, request: Request<Streaming<Batch>>) -> Result<Response<AckStream>, Status> {
        let peer = request.remote_addr();
        let mut batches = request.into_inner();
        let sink = Arc::clone(&self.sink);
        let mut stopping = self.stopping.clone();
        // A small buffer: acks are tiny, and a stalled reader should stall only its own stream.
        let (acks, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = batches.message() => message,
                    _ = stopping.wait_for(|stop| *stop) => break,
                };
                let batch = match message {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(?peer, %status, "push stream ended");
                        break;
                    }
                };
                let sequence = batch.sequence;
                let ack = match IngestBatch::from_proto(batch) {
                    Err(invalid) => {
                        tracing::warn!(?peer, sequence, error = %invalid, "rejected a batch");
                        ack(sequence, AckStatus::Rejected, invalid.to_string())
                    }
                    Ok(batch) => match sink.commit(batch).await {
                        Ok(SinkOutcome::Committed) => ack(sequence, AckStatus::Committed, String::new()),
                        Ok(SinkOutcome::Duplicate) => ack(sequence, AckStatus::Duplicate, String::new()),
                        Err(SinkError::Refused(reason)) => {
                            tracing::warn!(?peer, sequence, %reason, "refused a batch");
                            ack(sequence, AckStatus::Rejected, reason)
                        }
                        Err(failure) => {
                            // Later batches must not be committed ahead of this one: end the
                            // stream so the agent reconnects and resends from here.
                            tracing::error!(?peer, sequence, error = %failure, "could not store a batch");
                            let _ = acks.send(Err(Status::unavailable(failure.to_string()))).await;
                            break;
                        }
                    },
                };
                if acks.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn ack(sequence: u64, status: AckStatus, error: String) -> PushAck {
    PushAck { sequence, status: status as i32, error }
}
