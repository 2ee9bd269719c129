//! Mutual TLS on the push path: an agent with a certificate from the SecuMon CA delivers;
//! one with a certificate from another CA, or with no TLS at all, delivers nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use secumon_core::{IngestBatch, Labels, Sample};
use secumon_transport::{
    BatchSink, IngestService, Peer, PushClient, PushClientConfig, SinkError, SinkOutcome, TlsMaterial,
};
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Default)]
struct MemorySink(Mutex<Vec<u64>>);

#[async_trait]
impl BatchSink for MemorySink {
    async fn commit(&self, _peer: &Peer, batch: IngestBatch) -> Result<SinkOutcome, SinkError> {
        self.0.lock().unwrap().push(batch.sequence);
        Ok(SinkOutcome::Committed)
    }
}

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self { ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A leaf certificate for `names`, signed by this CA, with the CA to trust.
    fn issue(&self, names: &[&str]) -> TlsMaterial {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        TlsMaterial {
            ca_pem: self.ca.pem().into_bytes(),
            cert_pem: cert.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
        }
    }
}

async fn start_server(tls: TlsMaterial, sink: Arc<MemorySink>) -> (SocketAddr, watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let service = IngestService::new(sink, stopped.clone()).into_server();
    let router = tonic::transport::Server::builder().tls_config(tls.server_config()).unwrap().add_service(service);
    let mut stopped = stopped;
    tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (addr, stop)
}

/// Pushes one batch with `tls` for a while; returns what the client saw.
async fn push_one(addr: SocketAddr, tls: Option<TlsMaterial>) -> secumon_transport::PushStats {
    let dir = tempfile::tempdir().unwrap();
    let mut config = PushClientConfig::new(format!("localhost:{}", addr.port()), dir.path());
    config.tls = tls;
    config.backoff_max = Duration::from_millis(200);
    let client = PushClient::open(config).unwrap();
    client
        .enqueue(IngestBatch {
            agent_id: "a".into(),
            host: "h".into(),
            samples: vec![Sample::new("load1", Labels::new(), 1_700_000_000_000, 1.0)],
            ..Default::default()
        })
        .await
        .unwrap();
    let runner = client.clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    let run = tokio::spawn(async move {
        runner.run(tokio::time::sleep_until(deadline.into())).await;
    });
    while Instant::now() < deadline && client.stats().committed == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.abort();
    client.stats()
}

#[tokio::test]
async fn only_agents_with_a_certificate_from_our_ca_deliver() {
    let ours = Pki::new("SecuMon CA");
    let theirs = Pki::new("Someone else's CA");
    let sink = Arc::new(MemorySink::default());
    let (addr, _stop) = start_server(ours.issue(&["localhost", "127.0.0.1"]), sink.clone()).await;

    let stats = push_one(addr, Some(ours.issue(&["agent-1"]))).await;
    assert_eq!(stats.committed, 1, "{stats:?}");
    assert_eq!(stats.spool.pending_batches, 0);
    assert_eq!(*sink.0.lock().unwrap(), vec![1]);

    // A client certificate from another CA: the handshake fails, the batch stays spooled.
    let mut foreign = theirs.issue(&["agent-2"]);
    foreign.ca_pem = ours.ca.pem().into_bytes(); // it trusts our server, but we do not trust it
    let stats = push_one(addr, Some(foreign)).await;
    assert_eq!(stats.committed, 0, "{stats:?}");
    assert_eq!(stats.spool.pending_batches, 1, "kept for later, not lost");

    // No TLS at all.
    let stats = push_one(addr, None).await;
    assert_eq!(stats.committed, 0, "{stats:?}");
    assert_eq!(sink.0.lock().unwrap().len(), 1, "nothing but the trusted agent's batch arrived");
}
