//! Agent enrollment and identity: the CA that signs agents' keys, one-time provisioning
//! tokens, session tokens that rotate every 24 h, and revocation. [`AgentAuthority`] is the
//! gate the gRPC services ask (see `secumon_transport::AgentGate`).
//!
//! The CA's key is sealed with the server's secret key and stored once, so every server of
//! an installation signs with the same CA. An agent's certificate names it (common name =
//! agent id); its enrollment record says for which tenant it pushes, which certificate is
//! current, and the digests of its session tokens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use secumon_core::now_ms;
use secumon_core::proto::{AgentSession, EnrollRequest, EnrollResponse};
use secumon_store::Store;
use secumon_transport::{AgentGate, GateError, Peer, PeerCredentials, ProvisioningToken, TlsMaterial};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, AuditNote};

use super::crypto::{digest, random_bytes, random_id, random_token, same_secret, sha256_hex};
use super::{AuthError, SYSTEM, SecretBox, split_credential, validate_tenant_name};

const KIND_CA: &str = "agent_ca";
const KIND_PROVISION: &str = "provision_token";
const KIND_ENROLLMENT: &str = "agent_enrollment";
/// An agent renews its session token once it is this old.
pub const SESSION_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// A session token stops admitting pushes after this long (rotation plus an hour's grace).
const SESSION_LIFETIME_MS: i64 = 25 * 3_600_000;
const CERT_LIFETIME_DAYS: i64 = 365;
/// Longest a provisioning token may stay usable.
pub const MAX_PROVISION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Serialize, Deserialize)]
struct CaRecord {
    cert_pem: String,
    sealed_key_pem: String,
}

#[derive(Serialize, Deserialize)]
struct ProvisionRecord {
    tenant: String,
    digest: String,
    expires_ms: i64,
    created_by: String,
    created_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct EnrollmentRecord {
    tenant: String,
    host: String,
    cert_sha256: String,
    session_digest: String,
    /// The token the current one replaced: still good for renewing (in case the agent never
    /// received its successor), never for pushing.
    previous_digest: Option<String>,
    session_issued_ms: i64,
    enrolled_ms: i64,
    revoked_ms: Option<i64>,
}

/// A provisioning token just made; `token` is shown once.
#[derive(Debug, Serialize)]
pub struct NewProvisioningToken {
    pub id: String,
    pub token: String,
    pub expires_ms: i64,
}

/// Signs agents' keys and decides which agent connections are admitted.
pub struct AgentAuthority {
    store: Arc<dyn Store>,
    ca_pem: String,
    ca_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    /// Serialises renewals, so two racing with one token cannot both succeed.
    updates: tokio::sync::Mutex<()>,
    /// Revoked agent ids, for the ingest service to close their open streams.
    revoked: tokio::sync::broadcast::Sender<String>,
    /// Where enrollments are recorded (they come over gRPC, not through the API's layer).
    audit: Option<Arc<AuditLog>>,
}

impl AgentAuthority {
    /// Loads the installation's agent CA, creating it on first start.
    pub async fn open(store: Arc<dyn Store>, secrets: &SecretBox) -> Result<Self, AuthError> {
        let ca_error = |e: rcgen::Error| AuthError::Internal(format!("agent CA: {e}"));
        if store.get_record(SYSTEM, KIND_CA, "current").await?.is_none() {
            let key = KeyPair::generate().map_err(ca_error)?;
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_error)?;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.distinguished_name.push(DnType::CommonName, "SecuMon agent CA");
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
            let cert = params.self_signed(&key).map_err(ca_error)?;
            let fresh = CaRecord { cert_pem: cert.pem(), sealed_key_pem: secrets.seal(key.serialize_pem().as_bytes()) };
            // Insert-once, then read: servers starting together agree on one CA.
            store.insert_record(SYSTEM, KIND_CA, "current", &serde_json::to_string(&fresh)?).await?;
        }
        let stored: CaRecord = match store.get_record(SYSTEM, KIND_CA, "current").await? {
            Some(body) => serde_json::from_str(&body)?,
            None => return Err(AuthError::Internal("the agent CA was not saved".into())),
        };
        let key_pem = String::from_utf8(secrets.open(&stored.sealed_key_pem)?)
            .map_err(|_| AuthError::Internal("the agent CA key is not text".into()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(ca_error)?;
        let issuer = Issuer::from_ca_cert_pem(&stored.cert_pem, key).map_err(ca_error)?;
        let ca_der = pem_der(&stored.cert_pem)?;
        Ok(Self {
            store,
            ca_pem: stored.cert_pem,
            ca_der,
            issuer,
            updates: tokio::sync::Mutex::new(()),
            revoked: tokio::sync::broadcast::channel(64).0,
            audit: None,
        })
    }

    /// Records every enrollment in `audit`.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A fresh key and certificate for the gRPC listener, valid for `names` (DNS names or
    /// IP addresses), signed by the agent CA. `cert_pem` carries the CA after the leaf, so
    /// an enrolling agent sees the certificate its token pins.
    pub fn server_identity(&self, names: &[String]) -> Result<TlsMaterial, AuthError> {
        let error = |e: rcgen::Error| AuthError::Internal(format!("server certificate: {e}"));
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(error)?;
        params.distinguished_name.push(DnType::CommonName, "SecuMon server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(CERT_LIFETIME_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(error)?;
        Ok(TlsMaterial {
            ca_pem: self.ca_pem.clone().into_bytes(),
            cert_pem: format!("{}{}", cert.pem(), self.ca_pem).into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        })
    }

    /// A one-time token that enrolls one agent into `tenant` within `ttl`.
    pub async fn provision(
        &self,
        tenant: &str,
        created_by: &str,
        ttl: Duration,
    ) -> Result<NewProvisioningToken, AuthError> {
        validate_tenant_name(tenant)?;
        if ttl.is_zero() || ttl > MAX_PROVISION_TTL {
            return Err(AuthError::Invalid("ttl must be between 1 s and 7 days".into()));
        }
        let (id, secret) = (random_id(), random_token());
        let expires_ms = now_ms() + ttl.as_millis() as i64;
        let record = ProvisionRecord {
            tenant: tenant.to_string(),
            digest: digest(&secret),
            expires_ms,
            created_by: created_by.to_string(),
            created_ms: now_ms(),
        };
        self.store.put_record(SYSTEM, KIND_PROVISION, &id, &serde_json::to_string(&record)?).await?;
        let token = ProvisioningToken::new(format!("smp_{id}.{secret}"), &self.ca_der).to_text();
        Ok(NewProvisioningToken { id, token, expires_ms })
    }

    /// Revokes `agent_id` of `tenant`: its next connection is refused. `false` if it was
    /// never enrolled there.
    pub async fn revoke(&self, tenant: &str, agent_id: &str) -> Result<bool, AuthError> {
        let _guard = self.updates.lock().await;
        let Some(mut record) = self.enrollment(agent_id).await? else { return Ok(false) };
        if record.tenant != tenant {
            return Ok(false);
        }
        record.revoked_ms.get_or_insert(now_ms());
        self.store.put_record(SYSTEM, KIND_ENROLLMENT, agent_id, &serde_json::to_string(&record)?).await?;
        let _ = self.revoked.send(agent_id.to_string());
        Ok(true)
    }

    async fn enrollment(&self, agent_id: &str) -> Result<Option<EnrollmentRecord>, AuthError> {
        match self.store.get_record(SYSTEM, KIND_ENROLLMENT, agent_id).await? {
            Some(body) => Ok(Some(serde_json::from_str(&body)?)),
            None => Ok(None),
        }
    }

    /// The tenant of a valid provisioning token, without using it up.
    async fn token_tenant(&self, credential: &str) -> Result<String, GateError> {
        let refused = || GateError::Denied("the provisioning token is unknown, used or expired".into());
        let (id, secret) = split_credential(credential, "smp_").ok_or_else(refused)?;
        let body = self.store.get_record(SYSTEM, KIND_PROVISION, id).await.map_err(unavailable)?.ok_or_else(refused)?;
        let record: ProvisionRecord = serde_json::from_str(&body).map_err(unavailable)?;
        if !same_secret(&digest(secret), &record.digest) || record.expires_ms <= now_ms() {
            return Err(refused());
        }
        Ok(record.tenant)
    }

    /// Uses up a provisioning token checked by [`Self::token_tenant`]; returns its tenant.
    async fn redeem(&self, credential: &str) -> Result<String, GateError> {
        let refused = || GateError::Denied("the provisioning token is unknown, used or expired".into());
        let tenant = self.token_tenant(credential).await?;
        let (id, _) = split_credential(credential, "smp_").ok_or_else(refused)?;
        // Of agents racing with one token, exactly one deletes it.
        if !self.store.delete_record(SYSTEM, KIND_PROVISION, id).await.map_err(unavailable)? {
            return Err(refused());
        }
        Ok(tenant)
    }

    /// The enrollment a client certificate belongs to, if it is current and not revoked.
    async fn enrolled_peer(&self, credentials: &PeerCredentials) -> Result<(String, EnrollmentRecord), GateError> {
        let der = credentials.cert_der.as_deref().ok_or_else(|| {
            GateError::Unauthenticated(
                "a client certificate is required: enroll this agent with `secumon-agent setup`".into(),
            )
        })?;
        let agent_id = certificate_agent_id(der)?;
        let record = self
            .enrollment(&agent_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| GateError::Denied(format!("agent {agent_id} is not enrolled")))?;
        if record.revoked_ms.is_some() {
            return Err(GateError::Revoked(format!("agent {agent_id} was revoked; enroll it again with a new token")));
        }
        if record.cert_sha256 != sha256_hex(der) {
            return Err(GateError::Denied(format!(
                "this certificate of agent {agent_id} was replaced by a later enrollment"
            )));
        }
        Ok((agent_id, record))
    }

    fn new_session(record: &mut EnrollmentRecord) -> AgentSession {
        let token = format!("sms_{}", random_token());
        let issued_at_ms = now_ms();
        record.session_digest = digest(&token);
        record.session_issued_ms = issued_at_ms;
        AgentSession { token, issued_at_ms, expires_at_ms: issued_at_ms + SESSION_LIFETIME_MS }
    }

    /// A client certificate for `agent_id` of `tenant` over the key of `csr`; whatever
    /// else the request asked for is ignored.
    fn sign(&self, csr: CertificateSigningRequestParams, agent_id: &str, tenant: &str) -> Result<String, GateError> {
        let failed = |e: rcgen::Error| GateError::Unavailable(format!("cannot sign: {e}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, agent_id);
        params.distinguished_name.push(DnType::OrganizationalUnitName, tenant);
        params.subject_alt_names =
            vec![SanType::URI(format!("urn:secumon:agent:{agent_id}").try_into().map_err(failed)?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()));
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(CERT_LIFETIME_DAYS);
        let cert = CertificateSigningRequestParams { params, public_key: csr.public_key }
            .signed_by(&self.issuer)
            .map_err(failed)?;
        Ok(cert.pem())
    }
}

#[async_trait]
impl AgentGate for AgentAuthority {
    async fn admit(&self, credentials: &PeerCredentials) -> Result<Peer, GateError> {
        let (agent_id, record) = self.enrolled_peer(credentials).await?;
        let token = credentials
            .session_token
            .as_deref()
            .ok_or_else(|| GateError::Unauthenticated("the session token is missing".into()))?;
        if !same_secret(&digest(token), &record.session_digest) {
            return Err(GateError::Unauthenticated("the session token is not current; renew it".into()));
        }
        if record.session_issued_ms + SESSION_LIFETIME_MS <= now_ms() {
            return Err(GateError::Unauthenticated("the session token expired; renew it".into()));
        }
        Ok(Peer { tenant: Some(record.tenant), agent_id: Some(agent_id) })
    }

    async fn enroll(&self, request: EnrollRequest) -> Result<EnrollResponse, GateError> {
        validate_agent_id(&request.agent_id)?;
        if request.host.is_empty() || request.host.len() > 253 {
            return Err(GateError::Invalid("host must be 1 to 253 characters".into()));
        }
        let _guard = self.updates.lock().await;
        // The token first: without a valid one, nothing is said about which ids exist.
        let tenant = self.token_tenant(&request.token).await?;
        if let Some(existing) = self.enrollment(&request.agent_id).await.map_err(unavailable)?
            && existing.revoked_ms.is_none()
        {
            if existing.tenant != tenant {
                return Err(GateError::Denied(format!("the agent id {} is not available", request.agent_id)));
            }
            return Err(GateError::Denied(format!(
                "agent {} is enrolled already; delete it (DELETE /api/v1/agents/{}) before enrolling it again",
                request.agent_id, request.agent_id
            )));
        }
        // Read before the token is used up, so a bad request does not cost the token.
        let csr = CertificateSigningRequestParams::from_pem(&request.csr_pem)
            .map_err(|e| GateError::Invalid(format!("the certificate signing request is unusable: {e}")))?;
        self.redeem(&request.token).await?;
        let cert_pem = self.sign(csr, &request.agent_id, &tenant)?;
        let mut record = EnrollmentRecord {
            tenant,
            host: request.host,
            cert_sha256: sha256_hex(&pem_der(&cert_pem).map_err(unavailable)?),
            session_digest: String::new(),
            previous_digest: None,
            session_issued_ms: 0,
            enrolled_ms: now_ms(),
            revoked_ms: None,
        };
        let session = Self::new_session(&mut record);
        let body = serde_json::to_string(&record).map_err(unavailable)?;
        self.store.put_record(SYSTEM, KIND_ENROLLMENT, &request.agent_id, &body).await.map_err(unavailable)?;
        if let Some(audit) = &self.audit {
            // The agent acts on the strength of the token: its id says which one (never
            // its secret). The gate is not told the peer's address, so none is recorded.
            let token_id = split_credential(&request.token, "smp_").map(|(id, _)| id).unwrap_or_default();
            let note = AuditNote {
                tenant: record.tenant.clone(),
                actor: format!("agent:{}", request.agent_id),
                action: "agent.enroll",
                target: request.agent_id.clone(),
                detail: serde_json::json!({"host": record.host, "provisioning_token": token_id}),
            };
            audit.record(note, None).await;
        }
        Ok(EnrollResponse { agent_id: request.agent_id, cert_pem, ca_pem: self.ca_pem.clone(), session: Some(session) })
    }

    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.revoked.subscribe())
    }

    async fn renew(&self, credentials: &PeerCredentials) -> Result<AgentSession, GateError> {
        let _guard = self.updates.lock().await;
        let (agent_id, mut record) = self.enrolled_peer(credentials).await?;
        let presented = digest(credentials.session_token.as_deref().unwrap_or_default());
        let current = same_secret(&presented, &record.session_digest);
        if !current && !record.previous_digest.as_deref().is_some_and(|previous| same_secret(&presented, previous)) {
            return Err(GateError::Unauthenticated("the session token does not belong to this agent".into()));
        }
        if current {
            record.previous_digest = Some(record.session_digest.clone());
        }
        let session = Self::new_session(&mut record);
        let body = serde_json::to_string(&record).map_err(unavailable)?;
        self.store.put_record(SYSTEM, KIND_ENROLLMENT, &agent_id, &body).await.map_err(unavailable)?;
        Ok(session)
    }
}

fn unavailable(error: impl std::fmt::Display) -> GateError {
    GateError::Unavailable(error.to_string())
}

/// Agent ids: 1 to 128 letters, digits, `-`, `_` and `.`. No `:`: ids with one
/// (`api:<tenant>:<source>`) belong to scripts pushing over HTTP, whose tenant they name, and
/// must not be taken by an agent of another tenant.
fn validate_agent_id(id: &str) -> Result<(), GateError> {
    let ok =
        (1..=128).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(GateError::Invalid(format!("{id:?} is not a valid agent id: 1 to 128 of A-Z, a-z, 0-9, '-', '_' and '.'")))
    }
}

/// The agent id a certificate names (its common name).
fn certificate_agent_id(der: &[u8]) -> Result<String, GateError> {
    let unreadable = || GateError::Denied("the client certificate names no agent".into());
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| unreadable())?;
    let name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).ok_or_else(unreadable)?;
    Ok(name.to_string())
}

fn pem_der(pem_text: &str) -> Result<Vec<u8>, AuthError> {
    pem::parse(pem_text).map(|p| p.into_contents()).map_err(|e| AuthError::Internal(format!("bad PEM: {e}")))
}
