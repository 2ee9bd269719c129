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

#![warn(missing_docs)]

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

/// Why a push, an enrollment or loading the agent's TLS or session files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The spool could not be opened, written or read.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The server address is not a valid URI.
    #[error("invalid server endpoint {0}")]
    Endpoint(String),
    /// The connection to the server (TCP, TLS handshake, HTTP/2) failed.
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The server answered a call with an error status (e.g. `Unauthenticated`).
    #[error("server: {0}")]
    Status(#[from] tonic::Status),
    /// The push stream ended while batches were in flight; the client reconnects.
    #[error("the push stream was closed")]
    StreamClosed,
    /// A TLS or session file could not be read or written.
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Enrollment could not be done on this side: a malformed token, a server that cannot be
    /// reached or whose chain lacks the CA the token pins, no session in the answer, or a
    /// session file without a token.
    #[error("enrollment: {0}")]
    Enrollment(String),
    /// A blocking spool task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
