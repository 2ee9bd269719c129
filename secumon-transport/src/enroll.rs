//! The agent's side of enrollment and of its session token.
//!
//! A provisioning token reads `smp_<id>.<secret>.<pin>`: the first two parts are the
//! one-time credential, the pin is the SHA-256 of the server's CA certificate. The agent
//! takes the certificate chain the server presents, keeps the certificate whose digest is
//! the pin as its CA, and only then, over TLS verified against that CA, sends the token and
//! a signing request for a key it made itself. The key never leaves the machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use secumon_core::proto::{AgentSession, EnrollRequest, RenewRequest};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::grpc::enrollment_client::EnrollmentClient;
use crate::{TlsMaterial, TransportError};

/// A provisioning token as `POST /api/v1/agents/provision` prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvisioningToken {
    /// `smp_<id>.<secret>`: what the server checks.
    credential: String,
    /// SHA-256 of the CA certificate (DER).
    ca_pin: Vec<u8>,
}

impl std::fmt::Debug for ProvisioningToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProvisioningToken(…)")
    }
}

impl std::str::FromStr for ProvisioningToken {
    type Err = TransportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed =
            || TransportError::Enrollment("malformed provisioning token: expected smp_<id>.<secret>.<pin>".into());
        let text = text.trim();
        let (credential, pin) = text.rsplit_once('.').ok_or_else(malformed)?;
        let ca_pin = URL_SAFE_NO_PAD.decode(pin).map_err(|_| malformed())?;
        if !credential.starts_with("smp_") || !credential.contains('.') || ca_pin.len() != 32 {
            return Err(malformed());
        }
        Ok(Self { credential: credential.to_string(), ca_pin })
    }
}

impl ProvisioningToken {
    /// Joins a credential and the CA it pins (done by the server).
    pub fn new(credential: String, ca_der: &[u8]) -> Self {
        Self { credential, ca_pin: sha256(ca_der) }
    }

    /// The text an operator pastes into `secumon-agent setup --token`.
    pub fn to_text(&self) -> String {
        format!("{}.{}", self.credential, URL_SAFE_NO_PAD.encode(&self.ca_pin))
    }
}

/// What an agent holds after enrolling.
pub struct Enrolled {
    /// The id the server enrolled the agent under.
    pub agent_id: String,
    /// The agent's new key, its certificate signed by the server's agent CA, and that CA.
    pub tls: TlsMaterial,
    /// The first session token, sent with every push until renewed.
    pub session: AgentSession,
}

/// Enrolls with the server at `endpoint` (`HOST:PORT`) under `token`, asking for `agent_id`.
pub async fn enroll(
    endpoint: &str,
    token: &ProvisioningToken,
    agent_id: &str,
    host: &str,
) -> Result<Enrolled, TransportError> {
    let authority = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest).to_string();
    let server_name = host_of(&authority).to_string();
    let pin = token.ca_pin.clone();
    let ca_der = tokio::task::spawn_blocking(move || pinned_ca(&authority, &server_name, &pin)).await??;
    let ca_pem = pem::encode(&pem::Pem::new("CERTIFICATE", ca_der));

    let key = KeyPair::generate().map_err(|e| TransportError::Enrollment(format!("cannot make a key: {e}")))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TransportError::Enrollment(format!("cannot make a signing request: {e}")))?;
    params.distinguished_name.push(DnType::CommonName, host);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| TransportError::Enrollment(format!("cannot make a signing request: {e}")))?;

    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca_pem));
    let mut client = EnrollmentClient::new(channel(endpoint, Some(tls)).await?);
    let request = EnrollRequest {
        token: token.credential.clone(),
        csr_pem: csr,
        agent_id: agent_id.to_string(),
        host: host.to_string(),
    };
    let enrolled = client.enroll(request).await?.into_inner();
    let session = enrolled.session.ok_or_else(|| TransportError::Enrollment("the server sent no session".into()))?;
    Ok(Enrolled {
        agent_id: enrolled.agent_id,
        tls: TlsMaterial {
            ca_pem: enrolled.ca_pem.into_bytes(),
            cert_pem: enrolled.cert_pem.into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        },
        session,
    })
}

/// A TLS (or plaintext) channel to `endpoint`.
pub(crate) async fn channel(endpoint: &str, tls: Option<ClientTlsConfig>) -> Result<Channel, TransportError> {
    let authority = endpoint.split_once("://").map_or(endpoint, |(_, rest)| rest);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut builder = Endpoint::from_shared(format!("{scheme}://{authority}"))
        .map_err(|e| TransportError::Endpoint(format!("{endpoint}: {e}")))?;
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    Ok(builder
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

/// Opens a TLS handshake with `authority` only to see its certificate chain, and returns
/// the certificate of that chain whose SHA-256 is `pin`. Nothing is sent over it.
fn pinned_ca(authority: &str, server_name: &str, pin: &[u8]) -> Result<Vec<u8>, TransportError> {
    use std::io::Write;
    let fail = |message: String| TransportError::Enrollment(message);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(ChainCapture { chain: Mutex::new(Vec::new()), provider: Arc::clone(&provider) });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| fail(format!("{server_name}: {e}")))?;
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| fail(format!("TLS: {e}")))?;
    let mut socket =
        std::net::TcpStream::connect(authority).map_err(|e| fail(format!("cannot reach {authority}: {e}")))?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| fail(e.to_string()))?;
    // The handshake is expected to fail: the capturing verifier refuses every chain.
    let _ = rustls::Stream::new(&mut connection, &mut socket).flush();
    let chain = std::mem::take(&mut *seen.chain.lock().unwrap_or_else(|p| p.into_inner()));
    if chain.is_empty() {
        return Err(fail(format!("{authority} presented no certificate: is gRPC TLS enabled on the server?")));
    }
    chain.into_iter().find(|der| sha256(der) == pin).ok_or_else(|| {
        fail(format!(
            "the certificate chain of {authority} does not contain the CA the token pins: wrong server, \
             or someone in between"
        ))
    })
}

/// Records the chain a server presents and refuses it.
#[derive(Debug)]
struct ChainCapture {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ChainCapture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|cert| cert.to_vec()));
        Err(rustls::Error::General("chain captured".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("chain captured".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("chain captured".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The agent's session token on disk (`key=value` lines, mode 0600), renewed through the
/// server when it is due.
#[derive(Debug, Clone)]
pub struct SessionFile {
    path: PathBuf,
}

impl SessionFile {
    /// The session file at `path`; nothing is read until [`SessionFile::load`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the session is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the stored session.
    pub fn load(&self) -> Result<AgentSession, TransportError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|source| TransportError::TlsFile { path: self.path.display().to_string(), source })?;
        let mut session = AgentSession::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("token", value)) => session.token = value.to_string(),
                Some(("issued_at_ms", value)) => session.issued_at_ms = value.parse().unwrap_or(0),
                Some(("expires_at_ms", value)) => session.expires_at_ms = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        if session.token.is_empty() {
            return Err(TransportError::Enrollment(format!("{} holds no session token", self.path.display())));
        }
        Ok(session)
    }

    /// Replaces the stored session atomically: the file holds the old session or the new
    /// one, whatever fails (a full or read-only disk leaves the old one, and no temporary file).
    pub fn store(&self, session: &AgentSession) -> Result<(), TransportError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| TransportError::TlsFile { path: self.path.display().to_string(), source };
        let temporary = self.path.with_extension("tmp");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                write!(
                    file,
                    "token={}\nissued_at_ms={}\nexpires_at_ms={}\n",
                    session.token, session.issued_at_ms, session.expires_at_ms
                )?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if written.is_err() {
            // Its blocks are better left to the next attempt.
            let _ = std::fs::remove_file(&temporary);
        }
        written.map_err(io)
    }

    /// Asks the server for the next session token over `channel`, presenting `current`.
    /// Storing it is the caller's job (see `PushClient`: a disk that cannot take it must not
    /// cost the new token).
    pub(crate) async fn renew(&self, channel: Channel, current: &AgentSession) -> Result<AgentSession, TransportError> {
        let mut request = tonic::Request::new(RenewRequest {});
        insert_bearer(&mut request, &current.token)?;
        Ok(EnrollmentClient::new(channel).renew(request).await?.into_inner())
    }
}

/// Adds `authorization: Bearer <token>` to a request.
pub(crate) fn insert_bearer<T>(request: &mut tonic::Request<T>, token: &str) -> Result<(), TransportError> {
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| TransportError::Enrollment("the session token is not valid metadata".into()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_malformed_ones_are_refused() {
        let token = ProvisioningToken::new("smp_abc.def".into(), b"ca");
        let text = token.to_text();
        assert_eq!(text.parse::<ProvisioningToken>().unwrap(), token);
        for bad in ["", "smp_abc.def", "smk_abc.def.AAAA", "smp_abc.def.not-a-pin", "smp_abcdef.", "x.y.z"] {
            assert!(bad.parse::<ProvisioningToken>().is_err(), "{bad}");
        }
        assert!(!format!("{token:?}").contains("def"), "Debug must not print the secret");
    }

    #[test]
    fn session_files_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = SessionFile::new(dir.path().join("session"));
        let session = AgentSession { token: "sms_a.b".into(), issued_at_ms: 5, expires_at_ms: 9, ..Default::default() };
        file.store(&session).unwrap();
        assert_eq!(file.load().unwrap(), session);
        assert_eq!(std::fs::metadata(file.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
