//! Agent enrollment over real gRPC with mutual TLS under the server's own CA: a provisioning
//! token is used once, the agent gets a certificate for the key it made, pushes for its
//! tenant with its session token, renews the token, and is refused once deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secumon_core::proto::EnrollRequest;
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::{Role, SecretBox, ca_status, retire_old_ca, rotate_ca};
use secumon_server::{GrpcTls, Server, ServerConfig};
use secumon_transport::{
    AgentGate, Enrolled, PeerCredentials, ProvisioningToken, PushClient, PushClientConfig, PushStats, SessionFile,
    TlsFiles, TlsMaterial, enroll,
};
use serde_json::{Value, json};

mod common;
use common::Raw;

struct Setup {
    server: Server,
    api: Raw,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            open_access: false,
            grpc_tls: GrpcTls::Managed { names: vec![] },
            ..ServerConfig::loopback(dir.path().join("s.db"))
        };
        let server = Server::start(config).await.expect("server starts");
        server.accounts().create_tenant("acme").await.unwrap();
        let (_, admin_key) = server.accounts().create_api_key("acme", "test", Role::Admin, "test").await.unwrap();
        Self { api: Raw::new(&server).with_token(&admin_key), server, _dir: dir }
    }

    fn collector(&self) -> String {
        format!("localhost:{}", self.server.grpc_addr().port())
    }

    async fn provision(&self) -> ProvisioningToken {
        let (status, body) =
            self.api.call(reqwest::Method::POST, "/agents/provision", Some(json!({"ttl": "10m"}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["tenant"], "acme");
        let token = body["token"].as_str().unwrap();
        assert!(body["command"].as_str().unwrap().ends_with(&format!("--token {token}")), "{body}");
        token.parse().unwrap()
    }
}

fn batch(agent_id: &str) -> IngestBatch {
    IngestBatch {
        agent_id: agent_id.into(),
        host: "web-1".into(),
        samples: vec![Sample::new("load1", Labels::new(), now_ms(), 1.0)],
        ..Default::default()
    }
}

/// Pushes one batch of `agent_id` with these credentials for up to 3 s.
async fn push_one(
    collector: &str,
    agent_id: &str,
    tls: Option<TlsMaterial>,
    session: Option<SessionFile>,
) -> PushStats {
    let dir = tempfile::tempdir().unwrap();
    let mut config = PushClientConfig::new(collector, dir.path());
    config.tls = tls;
    config.session = session;
    config.backoff_max = Duration::from_millis(200);
    let client = PushClient::open(config).unwrap();
    client.enqueue(batch(agent_id)).await.unwrap();
    let runner = client.clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    let run = tokio::spawn(async move { runner.run(tokio::time::sleep_until(deadline.into())).await });
    while Instant::now() < deadline
        && client.stats().committed + client.stats().duplicates + client.stats().rejected == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.abort();
    client.stats()
}

fn session_file(dir: &tempfile::TempDir, enrolled: &Enrolled) -> SessionFile {
    let file = SessionFile::new(dir.path().join("session"));
    file.store(&enrolled.session).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_agent_pushes_for_its_tenant_until_it_is_deleted() {
    let setup = Setup::start().await;
    let token = setup.provision().await;
    let enrolled = enroll(&setup.collector(), &token, "agent-1", "web-1").await.expect("enrolls");
    assert_eq!(enrolled.agent_id, "agent-1");
    let cert = String::from_utf8(enrolled.tls.cert_pem.clone()).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");

    // The token was for one agent only.
    let again = enroll(&setup.collector(), &token, "agent-2", "web-2").await.err().expect("a used token is refused");
    assert!(again.to_string().contains("unknown, used or expired"), "{again}");

    let dir = tempfile::tempdir().unwrap();
    let session = session_file(&dir, &enrolled);
    let stats = push_one(&setup.collector(), "agent-1", Some(enrolled.tls.clone()), Some(session.clone())).await;
    assert_eq!((stats.committed, stats.rejected), (1, 0), "{stats:?}");
    let agents = setup.server.store().list_agents("acme").await.unwrap();
    assert_eq!(agents.iter().map(|a| a.agent_id.as_str()).collect::<Vec<_>>(), ["agent-1"], "stored for acme");
    assert!(setup.server.store().list_agents("default").await.unwrap().is_empty(), "nothing in the default tenant");

    // Its certificate cannot push another agent's batches.
    let stats = push_one(&setup.collector(), "agent-9", Some(enrolled.tls.clone()), Some(session.clone())).await;
    assert_eq!((stats.committed, stats.rejected), (0, 1), "{stats:?}");

    // Without the session token, or without a certificate, nothing is delivered.
    let stats = push_one(&setup.collector(), "agent-1", Some(enrolled.tls.clone()), None).await;
    assert_eq!((stats.committed, stats.spool.pending_batches), (0, 1), "{stats:?}");
    let gate = setup.server.agent_authority().unwrap();
    let no_cert = PeerCredentials { cert_der: None, session_token: Some(enrolled.session.token.clone()) };
    let refused = gate.admit(&no_cert).await.err().unwrap();
    assert!(refused.to_string().contains("client certificate is required"), "{refused}");

    // Deleting the agent revokes it: its next connection is refused.
    let (status, body) = setup.api.call(reqwest::Method::DELETE, "/agents/agent-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let stats = push_one(&setup.collector(), "agent-1", Some(enrolled.tls.clone()), Some(session)).await;
    assert_eq!((stats.committed, stats.spool.pending_batches), (0, 1), "{stats:?}");
    assert!(setup.server.store().list_agents("acme").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_closes_its_open_stream() {
    let setup = Setup::start().await;
    let token = setup.provision().await;
    let enrolled = enroll(&setup.collector(), &token, "agent-1", "web-1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = PushClientConfig::new(setup.collector(), dir.path().join("spool"));
    config.tls = Some(enrolled.tls.clone());
    config.session = Some(session_file(&dir, &enrolled));
    config.backoff_min = Duration::from_secs(30);
    let client = PushClient::open(config).unwrap();
    let runner = client.clone();
    let run = tokio::spawn(async move { runner.run(std::future::pending()).await });
    client.enqueue(batch("agent-1")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.stats().committed == 0 {
        assert!(Instant::now() < deadline, "never delivered: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.stats().connected);

    let (status, _) = setup.api.call(reqwest::Method::DELETE, "/agents/agent-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.stats().connected {
        assert!(Instant::now() < deadline, "the revoked agent's stream stayed open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.enqueue(batch("agent-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((client.stats().committed, client.stats().spool.pending_batches), (1, 1), "{:?}", client.stats());
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_before_they_are_used_up() {
    let setup = Setup::start().await;
    let token = setup.provision().await;

    // A token pinning another CA: the agent will not talk to this server at all.
    let foreign = ProvisioningToken::new(token.to_text().rsplit_once('.').unwrap().0.to_string(), b"another CA");
    let error = enroll(&setup.collector(), &foreign, "agent-1", "web-1").await.err().unwrap();
    assert!(error.to_string().contains("does not contain the CA the token pins"), "{error}");

    // A bad signing request or agent id is refused without using the token up.
    let gate = setup.server.agent_authority().expect("managed TLS has an authority");
    let credential = token.to_text().rsplit_once('.').unwrap().0.to_string();
    let request = |agent_id: &str, csr: &str| EnrollRequest {
        token: credential.clone(),
        csr_pem: csr.into(),
        agent_id: agent_id.into(),
        host: "web-1".into(),
    };
    let bad_csr = gate.enroll(request("agent-1", "not a CSR")).await.err().unwrap();
    assert!(bad_csr.to_string().contains("signing request"), "{bad_csr}");
    let bad_id = gate.enroll(request("../etc", "x")).await.err().unwrap();
    assert!(bad_id.to_string().contains("not a valid agent id"), "{bad_id}");
    enroll(&setup.collector(), &token, "agent-1", "web-1").await.expect("the token still works");

    // An enrolled id cannot be taken over by a second token.
    let second = setup.provision().await;
    let taken = enroll(&setup.collector(), &second, "agent-1", "evil").await.err().unwrap();
    assert!(taken.to_string().contains("enrolled already"), "{taken}");

    // Provisioning is for admins, with a bounded lifetime.
    let (status, _) = setup.api.call(reqwest::Method::POST, "/agents/provision", Some(json!({"ttl": "30d"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, viewer) = setup.server.accounts().create_api_key("acme", "v", Role::Viewer, "test").await.unwrap();
    let response = setup
        .api
        .request(reqwest::Method::POST, "/agents/provision", Some(&viewer))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_rotate_and_the_replaced_one_stops_admitting() {
    let setup = Setup::start().await;
    let token = setup.provision().await;
    let enrolled = enroll(&setup.collector(), &token, "agent-1", "web-1").await.unwrap();
    let gate: Arc<dyn AgentGate> = setup.server.agent_authority().unwrap();
    let cert_der = pem::parse(&enrolled.tls.cert_pem).unwrap().into_contents();
    let with = |token: &str| PeerCredentials { cert_der: Some(cert_der.clone()), session_token: Some(token.into()) };

    let first = enrolled.session.token.clone();
    let peer = gate.admit(&with(&first)).await.expect("the first token admits");
    assert_eq!(peer.tenant.as_deref(), Some("acme"));
    let second = gate.renew(&with(&first)).await.unwrap();
    assert_ne!(second.token, first);
    assert!(second.expires_at_ms > now_ms() + 24 * 3_600_000, "{second:?}");
    assert!(gate.admit(&with(&first)).await.is_err(), "the replaced token no longer pushes");
    gate.admit(&with(&second.token)).await.expect("the new token pushes");
    // The replaced token may still renew once (its successor may never have arrived).
    let third = gate.renew(&with(&first)).await.unwrap();
    assert!(gate.renew(&with("sms_made_up")).await.is_err());
    gate.admit(&with(&third.token)).await.unwrap();

    // The push client renews a token that is due before it pushes, and stores the new one.
    let dir = tempfile::tempdir().unwrap();
    let file = SessionFile::new(dir.path().join("session"));
    let mut stale = third.clone();
    stale.issued_at_ms -= 24 * 3_600_000;
    file.store(&stale).unwrap();
    let stats = push_one(&setup.collector(), "agent-1", Some(enrolled.tls.clone()), Some(file.clone())).await;
    assert_eq!(stats.committed, 1, "{stats:?}");
    let renewed = file.load().unwrap();
    assert_ne!(renewed.token, third.token, "rotated on connect");
    gate.admit(&with(&renewed.token)).await.unwrap();
}

/// Another tenant enrolled `api:acme:python` and so blocked acme's script ingest, and an
/// enrollment without a valid token said which agent ids exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_ids_of_scripts_are_reserved_and_ids_are_not_revealed_without_a_token() {
    let setup = Setup::start().await;
    let token = setup.provision().await;
    let taken = enroll(&setup.collector(), &token, "api:acme:python", "evil").await.err().unwrap();
    assert!(taken.to_string().contains("not a valid agent id"), "{taken}");
    enroll(&setup.collector(), &token, "agent-1", "web-1").await.expect("the token was not used up");

    // Without a valid token, an enrolled id and a free one get the same answer.
    let gate = setup.server.agent_authority().expect("managed TLS has an authority");
    let forged = |agent_id: &str| EnrollRequest {
        token: "smp_nothing.forged".into(),
        csr_pem: "x".into(),
        agent_id: agent_id.into(),
        host: "web-1".into(),
    };
    let known = gate.enroll(forged("agent-1")).await.err().unwrap().to_string();
    let unknown = gate.enroll(forged("agent-2")).await.err().unwrap().to_string();
    assert_eq!(known, unknown);
    assert!(known.contains("provisioning token"), "{known}");

    // Another tenant's valid token learns only that the id is not available.
    setup.server.accounts().create_tenant("globex").await.unwrap();
    let (_, globex_admin) = setup.server.accounts().create_api_key("globex", "g", Role::Admin, "t").await.unwrap();
    let answer: Value = setup
        .api
        .request(reqwest::Method::POST, "/agents/provision", Some(&globex_admin))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let globex_token: ProvisioningToken = answer["token"].as_str().unwrap().parse().unwrap();
    let refused = enroll(&setup.collector(), &globex_token, "agent-1", "web-9").await.err().unwrap().to_string();
    assert!(refused.contains("not available") && !refused.contains("acme"), "{refused}");

    // acme's scripts push under their reserved id as before.
    let push =
        json!({"source": "python", "host": "backup-1", "samples": [{"name": "backup_age_seconds", "value": 60.0}]});
    let (status, body) = setup.api.call(reqwest::Method::POST, "/ingest", Some(push)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A server on `database` with the managed agent CA, and an admin key of acme.
async fn managed_server(database: &std::path::Path) -> (Server, String) {
    let config = ServerConfig {
        open_access: false,
        grpc_tls: GrpcTls::Managed { names: vec![] },
        ..ServerConfig::loopback(database)
    };
    let server = Server::start(config).await.expect("server starts");
    server.accounts().create_tenant("acme").await.unwrap();
    let (_, key) = server.accounts().create_api_key("acme", "test", Role::Admin, "test").await.unwrap();
    (server, key)
}

async fn provision_on(server: &Server, admin_key: &str) -> ProvisioningToken {
    let (_, body) = Raw::new(server)
        .call_as(reqwest::Method::POST, "/agents/provision", Some(admin_key), Some(json!({"ttl": "10m"})))
        .await;
    body["token"].as_str().unwrap().parse().unwrap()
}

/// The store and secret key of a stopped server, for the rotation commands' library calls.
async fn offline(database: &std::path::Path) -> (Arc<dyn secumon_store::Store>, SecretBox) {
    let store: Arc<dyn secumon_store::Store> = Arc::new(secumon_store::SqliteStore::open(database).await.unwrap());
    (store, SecretBox::load_or_create(&database.with_file_name("secret.key")).unwrap())
}

fn certificates(pem_text: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text).unwrap().into_iter().map(|p| p.into_contents()).collect()
}

/// Agent CA rotation with the server stopped between steps, as `secumon ca` runs it: the
/// agent enrolled under the old CA is made to renew once and leaves with a certificate of
/// the new CA for its own key (written to its files), an agent that enrolls meanwhile gets
/// one too, the retirement waits for every agent, and after it the old certificate is
/// refused while the new one pushes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_ca_rotates_without_enrolling_agents_again() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("s.db");
    let (server, admin_key) = managed_server(&database).await;
    let collector = format!("localhost:{}", server.grpc_addr().port());
    let enrolled = enroll(&collector, &provision_on(&server, &admin_key).await, "agent-1", "web-1").await.unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let files = TlsFiles { ca: agent_dir.path().join("ca.pem"), cert: agent_dir.path().join("agent.crt") };
    files.store(&enrolled.tls).unwrap();
    let session = session_file(&agent_dir, &enrolled);
    let old_ca = certificates(&enrolled.tls.ca_pem);
    assert_eq!(old_ca.len(), 1);
    server.shutdown().await;

    let (store, secrets) = offline(&database).await;
    assert!(retire_old_ca(&*store, false).await.is_err(), "nothing to retire before a rotation");
    let new_ca_sha256 = rotate_ca(&*store, &secrets).await.unwrap();
    assert!(rotate_ca(&*store, &secrets).await.is_err(), "one rotation at a time");
    let status = ca_status(&*store).await.unwrap();
    assert_eq!(status.current_sha256, new_ca_sha256);
    assert_eq!(status.pending().len(), 1, "{status:?}");
    store.close().await;

    let (server, admin_key) = managed_server(&database).await;
    let collector = format!("localhost:{}", server.grpc_addr().port());
    // The agent, still trusting the old CA only, pushes: it is made to renew once, gets a
    // certificate of the new CA and both CAs, writes them and pushes with them.
    let stats = push_one_with_files(&collector, "agent-1", &files, &enrolled.tls, session.clone()).await;
    assert_eq!(stats.committed, 1, "{stats:?}");
    let renewed = TlsMaterial {
        ca_pem: std::fs::read(&files.ca).unwrap(),
        cert_pem: std::fs::read(&files.cert).unwrap(),
        key_pem: enrolled.tls.key_pem.clone(),
    };
    assert_ne!(renewed.cert_pem, enrolled.tls.cert_pem, "a new certificate was written");
    let bundle = certificates(&renewed.ca_pem);
    assert_eq!(bundle.len(), 2, "the new CA and the old one");
    assert!(bundle.contains(&old_ca[0]));
    let new_ca = bundle.iter().find(|der| **der != old_ca[0]).unwrap().clone();
    assert_eq!(sha256_hex(&new_ca), new_ca_sha256);
    let (new_der, old_der) = (certificates(&renewed.cert_pem), certificates(&enrolled.tls.cert_pem));
    let (_, cert) = x509_parser::parse_x509_certificate(&new_der[0]).unwrap();
    let (_, issuer) = x509_parser::parse_x509_certificate(&new_ca).unwrap();
    let (_, old_cert) = x509_parser::parse_x509_certificate(&old_der[0]).unwrap();
    assert_eq!(cert.issuer(), issuer.subject(), "issued by the new CA");
    assert_ne!(cert.issuer(), old_cert.issuer());
    assert_eq!(cert.public_key().raw, old_cert.public_key().raw, "for the key the agent holds");
    assert_eq!(cert.subject(), old_cert.subject(), "naming the same agent");
    let moved = renewed;

    // An agent enrolling during the rotation pins the CA the server still presents.
    let second = enroll(&collector, &provision_on(&server, &admin_key).await, "agent-2", "web-2").await.unwrap();
    assert_eq!(certificates(&second.tls.ca_pem).len(), 2);
    server.shutdown().await;

    let (store, _) = offline(&database).await;
    let status = ca_status(&*store).await.unwrap();
    assert!(status.pending().is_empty(), "{status:?}");
    assert!(status.agents.iter().all(|agent| agent.ca_sha256 == new_ca_sha256), "{status:?}");
    assert!(retire_old_ca(&*store, false).await.unwrap().is_empty());
    assert!(ca_status(&*store).await.unwrap().replaced_sha256.is_none());
    store.close().await;

    let (server, _) = managed_server(&database).await;
    let collector = format!("localhost:{}", server.grpc_addr().port());
    let stats = push_one(&collector, "agent-1", Some(moved.clone()), Some(session.clone())).await;
    // Its sequence 1 was stored before: acknowledged as a duplicate.
    assert_eq!(stats.committed + stats.duplicates, 1, "the new certificate pushes: {stats:?}");
    // The old certificate, even beside a bundle that trusts the new CA, is refused.
    let old_cert = TlsMaterial { cert_pem: enrolled.tls.cert_pem.clone(), ..moved.clone() };
    let stats = push_one(&collector, "agent-1", Some(old_cert), Some(session)).await;
    assert_eq!((stats.committed + stats.duplicates, stats.connections), (0, 0), "{stats:?}");
    // So is an agent still trusting the old CA only: the server now presents the new one.
    let stats = push_one(&collector, "agent-1", Some(enrolled.tls.clone()), None).await;
    assert_eq!((stats.committed + stats.duplicates, stats.connections), (0, 0), "{stats:?}");
    server.shutdown().await;
}

/// [`push_one`] for a client that may rewrite its TLS files.
async fn push_one_with_files(
    collector: &str,
    agent_id: &str,
    files: &TlsFiles,
    tls: &TlsMaterial,
    session: SessionFile,
) -> PushStats {
    let dir = tempfile::tempdir().unwrap();
    let mut config = PushClientConfig::new(collector, dir.path());
    config.tls = Some(tls.clone());
    config.tls_files = Some(files.clone());
    config.session = Some(session);
    config.backoff_max = Duration::from_millis(200);
    let client = PushClient::open(config).unwrap();
    client.enqueue(batch(agent_id)).await.unwrap();
    let runner = client.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    let run = tokio::spawn(async move { runner.run(tokio::time::sleep_until(deadline.into())).await });
    while Instant::now() < deadline
        && client.stats().committed + client.stats().duplicates + client.stats().rejected == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.abort();
    client.stats()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
