//! SecuMon transport. On the agent, [`PushClient`] spools every batch to disk and streams
//! it to the server over gRPC (zstd-compressed), forgetting it only once acknowledged; on
//! the server, [`IngestService`] validates each batch and acknowledges it once a
//! [`BatchSink`] has made it durable. Together: no batch lost, none stored twice. Each batch
//! is stamped with its send time as it goes on the wire and each ack carries the server's
//! receive and ack times, so both sides learn the agent's clock offset (`clock.rs`).
//! When the spool's disk is full or read-only, batches wait in bounded memory and keep flowing.
//!
//! ```no_run
//! # async fn demo(batch: secumon_core::IngestBatch) -> Result<(), secumon_transport::TransportError> {
//! use secumon_transport::{PushClient, PushClientConfig};
//! let client = PushClient::open(PushClientConfig::new("127.0.0.1:9090", "/var/lib/secumon/spool"))?;
//! client.enqueue(batch).await?; // durable in the spool from here on
//! client.run(std::future::pending()).await; // delivers it, reconnecting as needed
//! # Ok(()) }
//! ```

mod client;
mod clock;
mod enroll;
mod gate;
pub mod outbox;
mod service;
pub mod spool;
mod tls;

/// Generated gRPC client and server of `secumon.v1.Ingest`.
pub mod grpc {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/secumon.v1.rs"));
}

pub use client::{ConfigStatus, PushClient, PushClientConfig, PushStats};
pub use enroll::{Enrolled, ProvisioningToken, SessionFile, enroll};
pub use gate::{AgentGate, GateError, Peer, PeerCredentials, REVOKED_METADATA, is_revocation, revoked_status};
pub use outbox::{MemoryStats, Outbox};
pub use service::{
    BatchSink, ConfigReport, EnrollmentService, IngestService, MAX_MESSAGE_BYTES, SinkError, SinkOutcome,
};
pub use spool::{Spool, SpoolError, SpoolStats};
pub use tls::{TlsFiles, TlsMaterial};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("invalid server endpoint {0}")]
    Endpoint(String),
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("server: {0}")]
    Status(#[from] tonic::Status),
    #[error("the push stream was closed")]
    StreamClosed,
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile { path: String, source: std::io::Error },
    #[error("enrollment: {0}")]
    Enrollment(String),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
