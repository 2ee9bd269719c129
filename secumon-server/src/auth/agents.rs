//! Agent enrollment and identity: the CA that signs agents' keys, one-time provisioning
//! tokens, session tokens that rotate every 24 h, and revocation. [`AgentAuthority`] is the
//! gate the gRPC services ask (see `secumon_transport::AgentGate`).
//!
//! The CA's key is sealed with the server's secret key and stored once, so every server of
//! an installation signs with the same CA.
//!
//! The CA can be replaced without enrolling agents again ([`rotate_ca`], server stopped):
//! the new CA signs from then on while the old one stays trusted and still signs the
//! server's certificate (agents that have not moved trust only it). Each agent is made to
//! renew its session once, and the renewal brings it a certificate for its own key from
//! the new CA and both CAs to trust. Once every agent was seen with its new certificate
//! ([`ca_status`]), [`retire_old_ca`] drops the old CA, and the server then presents a
//! certificate of the new one. An agent's certificate names it (common name =
//! agent id); its enrollment record says for which tenant it pushes, which certificate is
//! current, and the digests of its session tokens.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use secumon_core::now_ms;
use secumon_core::proto::{AgentSession, EnrollRequest, EnrollResponse};
use secumon_store::Store;
use secumon_transport::{AgentGate, GateError, Peer, PeerCredentials, ProvisioningToken, TlsMaterial};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, AuditNote};

use super::crypto::{digest, random_bytes, random_id, random_token, same_secret, sha256_hex};
use super::{AuthError, SYSTEM, SecretBox, split_credential, validate_tenant_name};

pub(super) const KIND_CA: &str = "agent_ca";
const KIND_PROVISION: &str = "provision_token";
const KIND_ENROLLMENT: &str = "agent_enrollment";
/// An agent renews its session token once it is this old.
pub const SESSION_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// A session token stops admitting pushes after this long (rotation plus an hour's grace).
const SESSION_LIFETIME_MS: i64 = 25 * 3_600_000;
const CERT_LIFETIME_DAYS: i64 = 365;
/// Longest a provisioning token may stay usable.
pub const MAX_PROVISION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const CA_CURRENT: &str = "current";
/// The CA a rotation replaced, trusted until it is retired.
const CA_PREVIOUS: &str = "previous";

#[derive(Serialize, Deserialize, Clone)]
struct CaRecord {
    cert_pem: String,
    sealed_key_pem: String,
    /// When this CA was replaced by a newer one (only in the `previous` record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced_ms: Option<i64>,
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
    /// SHA-256 (hex) of the CA that signed the certificate `cert_sha256`; absent in records
    /// from before CA rotation, whose certificates the only CA there was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_sha256: Option<String>,
    /// The certificate a renewal replaced, still admitted until the agent is seen with its
    /// successor (it may never have received it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_cert_sha256: Option<String>,
}

/// A provisioning token just made; `token` is shown once.
#[derive(Debug, Serialize)]
pub struct NewProvisioningToken {
    /// The token's id, what the audit log names (never the token).
    pub id: String,
    /// The token itself; it enrolls one agent, once.
    pub token: String,
    /// When it expires (ms since 1970).
    pub expires_ms: i64,
}

/// A CA whose key the server holds.
struct Ca {
    pem: String,
    der: Vec<u8>,
    sha256: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn open(record: &CaRecord, secrets: &SecretBox) -> Result<Self, AuthError> {
        let ca_error = |e: rcgen::Error| AuthError::Internal(format!("agent CA: {e}"));
        let key_pem = String::from_utf8(secrets.open(&record.sealed_key_pem)?)
            .map_err(|_| AuthError::Internal("the agent CA key is not text".into()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(ca_error)?;
        let issuer = Issuer::from_ca_cert_pem(&record.cert_pem, key).map_err(ca_error)?;
        let der = pem_der(&record.cert_pem)?;
        Ok(Self { pem: record.cert_pem.clone(), sha256: sha256_hex(&der), der, issuer })
    }
}

/// Revoked agent ids as they are revoked: those of this process and those other server
/// processes announce (see `cluster_feed`), so every gateway drops a revoked agent at once.
#[derive(Clone)]
pub struct RevocationFeed {
    /// Every revocation: what the ingest service closes streams by.
    all: tokio::sync::broadcast::Sender<String>,
    /// This process's own: what is announced to the others.
    here: tokio::sync::broadcast::Sender<String>,
}

impl Default for RevocationFeed {
    fn default() -> Self {
        Self { all: tokio::sync::broadcast::channel(64).0, here: tokio::sync::broadcast::channel(64).0 }
    }
}

impl RevocationFeed {
    /// An agent revoked in this process.
    pub fn publish(&self, agent_id: &str) {
        let _ = self.here.send(agent_id.to_string());
        let _ = self.all.send(agent_id.to_string());
    }

    /// An agent revoked in another process.
    pub fn publish_remote(&self, agent_id: &str) {
        let _ = self.all.send(agent_id.to_string());
    }

    /// Every revocation from now.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.all.subscribe()
    }

    /// This process's revocations from now.
    pub fn subscribe_here(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.here.subscribe()
    }
}

/// Signs agents' keys and decides which agent connections are admitted.
pub struct AgentAuthority {
    store: Arc<dyn Store>,
    /// Signs agents' certificates.
    ca: Ca,
    /// The CA `ca` replaced, while a rotation is under way: still trusted, and it signs the
    /// server's certificate, which agents that have not moved yet must be able to check.
    /// With when the rotation began.
    replaced: Option<(Ca, i64)>,
    /// Serialises renewals, so two racing with one token cannot both succeed.
    updates: tokio::sync::Mutex<()>,
    /// Revoked agent ids, for the ingest service to close their open streams.
    revoked: RevocationFeed,
    /// Where enrollments are recorded (they come over gRPC, not through the API's layer).
    audit: Option<Arc<AuditLog>>,
}

impl AgentAuthority {
    /// Loads the installation's agent CA, creating it on first start.
    pub async fn open(store: Arc<dyn Store>, secrets: &SecretBox) -> Result<Self, AuthError> {
        if store.get_record(SYSTEM, KIND_CA, CA_CURRENT).await?.is_none() {
            let fresh = new_ca_record("SecuMon agent CA", secrets)?;
            // Insert-once, then read: servers starting together agree on one CA.
            store.insert_record(SYSTEM, KIND_CA, CA_CURRENT, &serde_json::to_string(&fresh)?).await?;
        }
        let stored = ca_record(&*store, CA_CURRENT)
            .await?
            .ok_or_else(|| AuthError::Internal("the agent CA was not saved".into()))?;
        let ca = Ca::open(&stored, secrets)?;
        let replaced = match ca_record(&*store, CA_PREVIOUS).await? {
            Some(previous) => Some((Ca::open(&previous, secrets)?, previous.replaced_ms.unwrap_or(0))),
            None => None,
        };
        Ok(Self {
            store,
            ca,
            replaced,
            updates: tokio::sync::Mutex::new(()),
            revoked: RevocationFeed::default(),
            audit: None,
        })
    }

    /// Revocations made here and (when bridged over NATS) in other server processes.
    pub fn revocation_feed(&self) -> RevocationFeed {
        self.revoked.clone()
    }

    /// Records every enrollment in `audit`.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The certificate of the CA that signs agents' certificates, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The CAs whose certificates are trusted, PEM: the signing CA, then the one it
    /// replaced while a rotation is under way.
    pub fn trusted_pem(&self) -> String {
        match &self.replaced {
            Some((old, _)) => format!("{}{}", self.ca.pem, old.pem),
            None => self.ca.pem.clone(),
        }
    }

    /// The CA that signs the server's certificate and that provisioning tokens pin: the
    /// replaced one while a rotation is under way, as agents yet to move trust only it.
    fn serving_ca(&self) -> &Ca {
        self.replaced.as_ref().map_or(&self.ca, |(old, _)| old)
    }

    /// A fresh key and certificate for the gRPC listener, valid for `names` (DNS names or
    /// IP addresses), signed by the serving CA. `cert_pem` carries that CA after the leaf,
    /// so an enrolling agent sees the certificate its token pins. `ca_pem` is every
    /// trusted CA, for client certificates.
    pub fn server_identity(&self, names: &[String]) -> Result<TlsMaterial, AuthError> {
        let error = |e: rcgen::Error| AuthError::Internal(format!("server certificate: {e}"));
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(error)?;
        params.distinguished_name.push(DnType::CommonName, "SecuMon server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(CERT_LIFETIME_DAYS);
        let serving = self.serving_ca();
        let cert = params.signed_by(&key, &serving.issuer).map_err(error)?;
        Ok(TlsMaterial {
            ca_pem: self.trusted_pem().into_bytes(),
            cert_pem: format!("{}{}", cert.pem(), serving.pem).into_bytes(),
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
        let token = ProvisioningToken::new(format!("smp_{id}.{secret}"), &self.serving_ca().der).to_text();
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
        self.revoked.publish(agent_id);
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
        let presented = sha256_hex(der);
        if record.cert_sha256 != presented && record.previous_cert_sha256.as_deref() != Some(presented.as_str()) {
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
        AgentSession { token, issued_at_ms, expires_at_ms: issued_at_ms + SESSION_LIFETIME_MS, ..Default::default() }
    }

    /// A client certificate for `agent_id` of `tenant` over `public_key` (of a signing
    /// request, or of the agent's current certificate); nothing else of a request is used.
    fn sign(&self, public_key: &impl PublicKeyData, agent_id: &str, tenant: &str) -> Result<String, GateError> {
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
        let cert = params.signed_by(public_key, &self.ca.issuer).map_err(failed)?;
        Ok(cert.pem())
    }
}

#[async_trait]
impl AgentGate for AgentAuthority {
    async fn admit(&self, credentials: &PeerCredentials) -> Result<Peer, GateError> {
        let (agent_id, mut record) = self.enrolled_peer(credentials).await?;
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
        if let Some((_, replaced_ms)) = &self.replaced
            && !self.on_current_ca(&record)
            && record.session_issued_ms < *replaced_ms
        {
            // Once per agent: its renewal brings the certificate of the new CA. An agent
            // that cannot take one carries on with its old certificate after renewing.
            return Err(GateError::Unauthenticated(
                "the agent CA was rotated: renew the session for a certificate from the new CA".into(),
            ));
        }
        let presented = credentials.cert_der.as_deref().map(sha256_hex);
        if record.previous_cert_sha256.is_some() && presented.as_deref() == Some(record.cert_sha256.as_str()) {
            // The agent is seen with its new certificate: the old one is done with.
            let _guard = self.updates.lock().await;
            if let Some(mut fresh) = self.enrollment(&agent_id).await.map_err(unavailable)?
                && fresh.cert_sha256 == record.cert_sha256
            {
                fresh.previous_cert_sha256 = None;
                let body = serde_json::to_string(&fresh).map_err(unavailable)?;
                self.store.put_record(SYSTEM, KIND_ENROLLMENT, &agent_id, &body).await.map_err(unavailable)?;
            }
            record.previous_cert_sha256 = None;
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
        let cert_pem = self.sign(&csr.public_key, &request.agent_id, &tenant)?;
        let mut record = EnrollmentRecord {
            tenant,
            host: request.host,
            cert_sha256: sha256_hex(&pem_der(&cert_pem).map_err(unavailable)?),
            session_digest: String::new(),
            previous_digest: None,
            session_issued_ms: 0,
            enrolled_ms: now_ms(),
            revoked_ms: None,
            ca_sha256: Some(self.ca.sha256.clone()),
            previous_cert_sha256: None,
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
        Ok(EnrollResponse { agent_id: request.agent_id, cert_pem, ca_pem: self.trusted_pem(), session: Some(session) })
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
        let mut session = Self::new_session(&mut record);
        let der = credentials.cert_der.as_deref().unwrap_or_default();
        if !self.on_current_ca(&record) || record.cert_sha256 != sha256_hex(der) {
            // A certificate from the new CA for the key the agent holds, and both CAs to
            // trust; the one presented stays good until the agent is seen with this one.
            let public_key = certificate_public_key(der)?;
            let cert_pem = self.sign(&public_key, &agent_id, &record.tenant)?;
            let presented = sha256_hex(der);
            if record.previous_cert_sha256.is_none() || record.cert_sha256 == presented {
                record.previous_cert_sha256 = Some(presented);
            }
            record.cert_sha256 = sha256_hex(&pem_der(&cert_pem).map_err(unavailable)?);
            record.ca_sha256 = Some(self.ca.sha256.clone());
            session.cert_pem = cert_pem;
            session.ca_pem = self.trusted_pem();
        }
        let body = serde_json::to_string(&record).map_err(unavailable)?;
        self.store.put_record(SYSTEM, KIND_ENROLLMENT, &agent_id, &body).await.map_err(unavailable)?;
        Ok(session)
    }
}

impl AgentAuthority {
    /// Whether the record's certificate is from the CA that signs now (a record from before
    /// rotation existed names no CA: its certificate is from the only one there was, which
    /// signs now unless a rotation stamped the record).
    fn on_current_ca(&self, record: &EnrollmentRecord) -> bool {
        record.ca_sha256.as_deref().is_none_or(|ca| ca == self.ca.sha256)
    }
}

/// A fresh self-signed CA, its key sealed under `secrets`.
fn new_ca_record(name: &str, secrets: &SecretBox) -> Result<CaRecord, AuthError> {
    let ca_error = |e: rcgen::Error| AuthError::Internal(format!("agent CA: {e}"));
    let key = KeyPair::generate().map_err(ca_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_error)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()));
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(ca_error)?;
    Ok(CaRecord {
        cert_pem: cert.pem(),
        sealed_key_pem: secrets.seal(key.serialize_pem().as_bytes()),
        replaced_ms: None,
    })
}

async fn ca_record(store: &dyn Store, id: &str) -> Result<Option<CaRecord>, AuthError> {
    match store.get_record(SYSTEM, KIND_CA, id).await? {
        Some(body) => Ok(Some(serde_json::from_str(&body)?)),
        None => Ok(None),
    }
}

/// Where one agent stands in a CA rotation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentCaState {
    /// The agent's id.
    pub agent_id: String,
    /// The tenant it pushes for.
    pub tenant: String,
    /// The host it reports for.
    pub host: String,
    /// SHA-256 (hex) of the CA that signed its latest certificate.
    pub ca_sha256: String,
    /// Its latest certificate is from the signing CA and it was seen using it.
    pub on_current_ca: bool,
    /// Its certificate is revoked: it may not push or renew.
    pub revoked: bool,
}

/// The agent CAs and where every enrolled agent stands.
#[derive(Debug, Clone, Serialize)]
pub struct CaStatus {
    /// SHA-256 (hex) of the CA that signs.
    pub current_sha256: String,
    /// SHA-256 (hex) of the CA being replaced, while a rotation is under way.
    pub replaced_sha256: Option<String>,
    /// Every enrolled agent.
    pub agents: Vec<AgentCaState>,
}

impl CaStatus {
    /// Agents, not revoked, that still use a certificate of the replaced CA.
    pub fn pending(&self) -> Vec<&AgentCaState> {
        self.agents.iter().filter(|agent| !agent.revoked && !agent.on_current_ca).collect()
    }
}

async fn all_enrollments(store: &dyn Store) -> Result<Vec<(String, EnrollmentRecord)>, AuthError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list_records(SYSTEM, KIND_ENROLLMENT, after.as_deref(), 500).await?;
        for record in &page {
            all.push((record.id.clone(), serde_json::from_str(&record.body)?));
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.id.clone()),
            _ => return Ok(all),
        }
    }
}

/// The CAs and each agent's, read from the store (the server may be running).
pub async fn ca_status(store: &dyn Store) -> Result<CaStatus, AuthError> {
    let current = ca_record(store, CA_CURRENT)
        .await?
        .ok_or_else(|| AuthError::Invalid("this store has no agent CA yet (no server ran with --mtls)".into()))?;
    let current_sha256 = sha256_hex(&pem_der(&current.cert_pem)?);
    let replaced_sha256 = match ca_record(store, CA_PREVIOUS).await? {
        Some(previous) => Some(sha256_hex(&pem_der(&previous.cert_pem)?)),
        None => None,
    };
    let agents = all_enrollments(store)
        .await?
        .into_iter()
        .map(|(agent_id, record)| {
            let ca_sha256 = record.ca_sha256.clone().unwrap_or_else(|| current_sha256.clone());
            AgentCaState {
                on_current_ca: ca_sha256 == current_sha256 && record.previous_cert_sha256.is_none(),
                ca_sha256,
                agent_id,
                tenant: record.tenant,
                host: record.host,
                revoked: record.revoked_ms.is_some(),
            }
        })
        .collect();
    Ok(CaStatus { current_sha256, replaced_sha256, agents })
}

/// Makes a new agent CA, keeping the current one trusted until [`retire_old_ca`]. Run with
/// every server stopped; they take it up when they start. Returns the new CA's SHA-256.
pub async fn rotate_ca(store: &dyn Store, secrets: &SecretBox) -> Result<String, AuthError> {
    let current_body = store
        .get_record(SYSTEM, KIND_CA, CA_CURRENT)
        .await?
        .ok_or_else(|| AuthError::Invalid("this store has no agent CA yet (no server ran with --mtls)".into()))?;
    let mut current: CaRecord = serde_json::from_str(&current_body)?;
    let current_sha256 = sha256_hex(&pem_der(&current.cert_pem)?);
    // Refuses early if the key does not open the CA (wrong secret key).
    Ca::open(&current, secrets)?;
    if let Some(previous) = ca_record(store, CA_PREVIOUS).await? {
        // A rotation that stopped between its two writes left the current CA as `previous`.
        if previous.cert_pem != current.cert_pem {
            return Err(AuthError::Invalid(
                "a CA rotation is under way already: finish it with `secumon ca retire-old` first".into(),
            ));
        }
    }
    // Records from before rotation existed name no CA: it is the one being replaced.
    for (agent_id, mut record) in all_enrollments(store).await? {
        if record.ca_sha256.is_none() {
            record.ca_sha256 = Some(current_sha256.clone());
            store.put_record(SYSTEM, KIND_ENROLLMENT, &agent_id, &serde_json::to_string(&record)?).await?;
        }
    }
    let name = format!("SecuMon agent CA {}", time::OffsetDateTime::now_utc().unix_timestamp());
    let fresh = new_ca_record(&name, secrets)?;
    let fresh_sha256 = sha256_hex(&pem_der(&fresh.cert_pem)?);
    current.replaced_ms = Some(now_ms());
    // The old CA is kept first: a crash before the swap leaves it both current and
    // previous, which changes nothing and which the next run goes on from.
    store.put_record(SYSTEM, KIND_CA, CA_PREVIOUS, &serde_json::to_string(&current)?).await?;
    let swap = secumon_store::RecordSwap {
        kind: KIND_CA.into(),
        id: CA_CURRENT.into(),
        expected: current_body,
        body: serde_json::to_string(&fresh)?,
    };
    if !store.swap_records(SYSTEM, &[swap]).await? {
        return Err(AuthError::Invalid("the agent CA changed meanwhile: is a server still running?".into()));
    }
    Ok(fresh_sha256)
}

/// Stops trusting the CA a rotation replaced. Refused while an agent that is not revoked
/// still uses one of its certificates (they would be shut out), unless `force`. Run with
/// every server stopped. Returns the agents shut out by `force`.
pub async fn retire_old_ca(store: &dyn Store, force: bool) -> Result<Vec<AgentCaState>, AuthError> {
    let status = ca_status(store).await?;
    if status.replaced_sha256.is_none() {
        return Err(AuthError::Invalid("no CA rotation is under way: nothing to retire".into()));
    }
    let pending: Vec<AgentCaState> = status.pending().into_iter().cloned().collect();
    if !pending.is_empty() && !force {
        let names: Vec<String> = pending.iter().map(|a| format!("{} ({})", a.agent_id, a.host)).collect();
        return Err(AuthError::Invalid(format!(
            "{} agent(s) still use a certificate of the old CA: {}. Let them connect (each renews once), or \
             enroll them again; --force shuts them out",
            pending.len(),
            names.join(", ")
        )));
    }
    store.delete_record(SYSTEM, KIND_CA, CA_PREVIOUS).await?;
    Ok(pending)
}

/// The public key of a certificate (DER).
fn certificate_public_key(der: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, GateError> {
    let unreadable = |e: String| GateError::Denied(format!("the client certificate is unreadable: {e}"));
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| unreadable(e.to_string()))?;
    rcgen::SubjectPublicKeyInfo::from_der(cert.public_key().raw).map_err(|e| unreadable(e.to_string()))
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
