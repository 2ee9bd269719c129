//! Who may push: the server's [`AgentGate`] admits each connection from what it presented
//! (client certificate, session token), enrolls new agents and rotates their session
//! tokens. The ingest and enrollment services only carry credentials to it and its answers
//! back as gRPC statuses.

use async_trait::async_trait;
use secumon_core::proto::{AgentSession, EnrollRequest, EnrollResponse};
use tonic::{Request, Status};

/// What a connection presented.
#[derive(Debug, Clone, Default)]
pub struct PeerCredentials {
    /// The client certificate (DER) the TLS handshake verified against the CA, if any.
    pub cert_der: Option<Vec<u8>>,
    /// The bearer token of the `authorization` metadata, if any.
    pub session_token: Option<String>,
}

impl PeerCredentials {
    pub(crate) fn of<T>(request: &Request<T>) -> Self {
        let cert_der = request.peer_certs().and_then(|certs| certs.first().map(|cert| cert.to_vec()));
        let session_token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_string);
        Self { cert_der, session_token }
    }
}

/// Whom an admitted connection belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    /// The tenant its batches are stored for; `None` leaves it to the sink's default.
    pub tenant: Option<String>,
    /// When set, every batch on the connection must carry this agent id.
    pub agent_id: Option<String>,
}

/// Why a gate said no.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No or wrong credentials; the agent may renew its session and retry.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known but not allowed (used token, replaced certificate).
    #[error("{0}")]
    Denied(String),
    /// The agent was revoked: no retry or renewal will help, it must be enrolled again.
    #[error("{0}")]
    Revoked(String),
    /// A malformed request (bad CSR, bad agent id).
    #[error("{0}")]
    Invalid(String),
    /// The store cannot answer now.
    #[error("{0}")]
    Unavailable(String),
}

impl From<GateError> for Status {
    fn from(error: GateError) -> Self {
        match error {
            GateError::Unauthenticated(message) => Status::unauthenticated(message),
            GateError::Denied(message) => Status::permission_denied(message),
            GateError::Revoked(message) => revoked_status(message),
            GateError::Invalid(message) => Status::invalid_argument(message),
            GateError::Unavailable(message) => Status::unavailable(message),
        }
    }
}

/// gRPC metadata key the server sets on the permission-denied status that answers a
/// revoked agent, so the agent can tell "revoked" (stop) from any other refusal (retry)
/// without parsing the message.
pub const REVOKED_METADATA: &str = "secumon-agent-revoked";

/// The status a revoked agent gets for a push or a session renewal.
pub fn revoked_status(message: impl Into<String>) -> Status {
    let mut status = Status::permission_denied(message);
    status.metadata_mut().insert(REVOKED_METADATA, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Whether `status` is the server saying this agent was revoked.
pub fn is_revocation(status: &Status) -> bool {
    status.code() == tonic::Code::PermissionDenied && status.metadata().contains_key(REVOKED_METADATA)
}

/// The server's agent authority.
#[async_trait]
pub trait AgentGate: Send + Sync + 'static {
    /// Admits a push connection, or says why not.
    async fn admit(&self, credentials: &PeerCredentials) -> Result<Peer, GateError>;
    /// Uses up a provisioning token: signs the agent's key and starts its session.
    async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse, GateError>;
    /// Issues the next session token to an enrolled agent.
    async fn renew(&self, credentials: &PeerCredentials) -> Result<AgentSession, GateError>;

    /// Ids of agents as they are revoked, so their open streams end at once.
    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
