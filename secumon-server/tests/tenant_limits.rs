//! Per-tenant ingest limits against a real server, over HTTP and gRPC: a tenant past its
//! series limit gets a clear refusal (HTTP 409 `series_limit`, a rejected gRPC ack) and a
//! tenant past its sample rate is told to retry (HTTP 429, gRPC `RESOURCE_EXHAUSTED`, so the
//! agent keeps the batch), other tenants are not affected, and `/metrics` counts what was
//! refused, per tenant.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use reqwest::{Client, Method, StatusCode};
use secumon_core::now_ms;
use secumon_core::proto::{AckStatus, Batch, PushAck, SeriesSamples};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig, TenantLimits};
use secumon_transport::grpc::ingest_client::IngestClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::Raw;
use secumon_api::{AuditQuery, LoginAnswer, LoginRequest, TenantLimitSettings};

async fn server(dir: &tempfile::TempDir, max_series: u64, per_second: u32) -> Server {
    let limits =
        TenantLimits { max_series, max_samples_per_second: NonZeroU32::new(per_second).expect("a positive rate") };
    let config = ServerConfig { open_access: false, limits, ..ServerConfig::loopback(dir.path().join("s.db")) };
    Server::start(config).await.expect("server starts")
}

struct Tenant {
    key: String,
}

impl Tenant {
    async fn new(server: &Server, name: &str) -> Self {
        server.accounts().create_tenant(name).await.unwrap();
        let (_, key) = server.accounts().create_api_key(name, "script", Role::Operator, "test").await.unwrap();
        Self { key }
    }

    /// Pushes `count` samples over HTTP: one each of series `prefix0..`, or of one series.
    async fn push(&self, server: &Server, prefix: &str, series: usize, count: usize) -> (StatusCode, Value) {
        let now = now_ms();
        let samples: Vec<Value> = (0..count)
            .map(|i| json!({"name": format!("{prefix}{}", i % series), "value": 1.0, "timestamp_ms": now - i as i64}))
            .collect();
        let response = Client::new()
            .post(format!("http://{}/api/v1/ingest", server.api_addr()))
            .bearer_auth(&self.key)
            .json(&json!({"source": "s", "host": "h", "samples": samples}))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

fn grpc_batch(sequence: u64, series: usize, samples_each: usize) -> Batch {
    let now = now_ms();
    Batch {
        agent_id: "agent-1".into(),
        sequence,
        host: "h".into(),
        created_at_ms: now,
        series: (0..series)
            .map(|s| SeriesSamples {
                name: format!("g{s}"),
                timestamps_ms: (0..samples_each).map(|i| now - 1_000 * sequence as i64 - i as i64).collect(),
                values: vec![1.0; samples_each],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

async fn open_stream(addr: SocketAddr) -> (mpsc::Sender<Batch>, tonic::Streaming<PushAck>) {
    let mut client = IngestClient::connect(format!("http://{addr}")).await.expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let acks = client.push(ReceiverStream::new(rx)).await.expect("push").into_inner();
    (tx, acks)
}

async fn metrics(server: &Server) -> String {
    let response = Client::new().get(format!("http://{}/metrics", server.api_addr())).send().await.unwrap();
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_series_limit_is_refused_clearly_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir, 20, 1_000_000).await;
    let (acme, globex) = (Tenant::new(&server, "acme").await, Tenant::new(&server, "globex").await);

    let (status, body) = acme.push(&server, "m", 15, 15).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Ten more series: five past the limit, so none of them (nor the batch) is stored.
    let (status, body) = acme.push(&server, "n", 10, 10).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "series_limit", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tenant acme") && message.contains("20 series") && message.contains("10 new"),
        "{message}"
    );
    // Another tenant has its own budget; the first tenant's known series go on.
    let (status, body) = globex.push(&server, "m", 20, 20).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = acme.push(&server, "m", 15, 30).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Over gRPC (the default tenant, plaintext on loopback): rejected in the ack, which the
    // agent logs and counts; the stream goes on for batches within the limit.
    let (tx, mut acks) = open_stream(server.grpc_addr()).await;
    tx.send(grpc_batch(1, 25, 1)).await.unwrap();
    tx.send(grpc_batch(2, 5, 2)).await.unwrap();
    let first = acks.message().await.expect("ack stream").expect("an ack");
    assert_eq!((first.sequence, first.status()), (1, AckStatus::Rejected));
    assert!(first.error.contains("20 series") && first.error.contains("default"), "{}", first.error);
    let second = acks.message().await.expect("ack stream").expect("an ack");
    assert_eq!((second.sequence, second.status()), (2, AckStatus::Committed), "{}", second.error);

    let text = metrics(&server).await;
    for line in [
        "secumon_ingest_refused_series_total{tenant=\"acme\"} 10",
        "secumon_ingest_refused_series_total{tenant=\"default\"} 25",
        "secumon_ingest_refused_samples_total{tenant=\"acme\",reason=\"series_limit\"} 10",
        "secumon_ingest_refused_samples_total{tenant=\"default\",reason=\"series_limit\"} 25",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("tenant=\"globex\""), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_sample_rate_is_told_to_retry_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    // 1 000 samples/s in bursts of 2 000.
    let server = server(&dir, 1_000, 1_000).await;
    let (acme, globex) = (Tenant::new(&server, "acme").await, Tenant::new(&server, "globex").await);

    let (status, body) = acme.push(&server, "m", 1, 2_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = acme.push(&server, "m", 1, 500).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "ingest_rate_limited", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("tenant acme") && message.contains("1000 samples/s") && message.contains("retry"),
        "{message}"
    );
    let (status, body) = globex.push(&server, "m", 1, 2_000).await;
    assert_eq!(status, StatusCode::OK, "another tenant is not held back: {body}");

    // Over gRPC the stream ends RESOURCE_EXHAUSTED: the agent keeps the batch and sends it
    // again after its backoff.
    let (tx, mut acks) = open_stream(server.grpc_addr()).await;
    tx.send(grpc_batch(1, 1, 2_000)).await.unwrap();
    tx.send(grpc_batch(2, 1, 500)).await.unwrap();
    let first = acks.message().await.expect("ack stream").expect("an ack");
    assert_eq!((first.sequence, first.status()), (1, AckStatus::Committed), "{}", first.error);
    let status = acks.message().await.expect_err("the stream ends");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().starts_with("tenant default is over its ingest limit of 1000 samples/s"), "{status:?}");

    let text = metrics(&server).await;
    for line in [
        "secumon_ingest_refused_samples_total{tenant=\"acme\",reason=\"sample_rate\"} 500",
        "secumon_ingest_refused_samples_total{tenant=\"default\",reason=\"sample_rate\"} 500",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("tenant=\"globex\""), "{text}");
    server.shutdown().await;
}

/// What an agent does about the sample rate: its push client, held back, keeps every batch
/// and gets them all in once the budget refills; none is rejected or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_the_sample_rate_keeps_its_batches_until_they_are_in() {
    use secumon_core::{IngestBatch, Labels, Sample};
    use secumon_transport::{PushClient, PushClientConfig};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    // 1 000 samples/s in bursts of 2 000; the agent sends 5 000.
    let server = server(&dir, 1_000, 1_000).await;
    let mut config =
        PushClientConfig::new(format!("127.0.0.1:{}", server.grpc_addr().port()), dir.path().join("spool"));
    config.backoff_min = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(300);
    let client = PushClient::open(config).unwrap();
    let now = now_ms();
    for b in 0..5i64 {
        let samples = (0..1_000i64).map(|i| Sample::new("load1", Labels::new(), now - b * 1_000 - i, 1.0)).collect();
        let batch = IngestBatch { agent_id: "agent-1".into(), host: "h".into(), samples, ..Default::default() };
        client.enqueue(batch).await.unwrap();
    }
    let runner = client.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let run = tokio::spawn(async move { runner.run(tokio::time::sleep_until(deadline.into())).await });
    while Instant::now() < deadline && client.stats().committed + client.stats().rejected < 5 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.abort();
    let stats = client.stats();
    assert_eq!((stats.committed, stats.rejected), (5, 0), "{stats:?}");
    assert!(stats.connections > 1, "the limit ended a push at least once: {stats:?}");
    let text = metrics(&server).await;
    let refused = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("secumon_ingest_refused_samples_total{tenant=\"default\",reason=\"sample_rate\"} ")
        })
        .unwrap_or_else(|| panic!("no sample-rate refusal counted:\n{text}"));
    assert!(refused.parse::<u64>().unwrap() >= 1_000, "{refused}");
    let query = secumon_store::RangeQuery {
        selector: secumon_store::SeriesSelector::new("load1").with("host", "h"),
        start_ms: now - 10_000,
        end_ms: now + 1,
        step_ms: 60_000,
        aggregation: secumon_store::Aggregation::Count,
    };
    let stored = server.store().query_range("default", &query).await.unwrap();
    let count: f64 = stored.iter().flat_map(|s| &s.points).map(|p| p.value).sum();
    assert_eq!(count, 5_000.0, "every sample stored once");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_admin_gives_one_tenant_its_own_limits_which_last() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir, 1_000, 1_000_000).await;
    let (acme, globex) = (Tenant::new(&server, "acme").await, Tenant::new(&server, "globex").await);
    server.accounts().add_user("root", "a long test password", "default", Role::Admin, true).await.unwrap();
    let login =
        LoginRequest { username: Some("root".into()), password: "a long test password".into(), ..Default::default() };
    let root = match common::typed(&server, None).login(&login).await.unwrap() {
        LoginAnswer::Session(session) => session.access_token,
        other => panic!("not a session: {other:?}"),
    };
    let as_root = common::typed(&server, Some(&root));
    let limits = |max_series: Option<u64>, per_second: Option<u32>| TenantLimitSettings {
        max_series,
        max_samples_per_second: per_second.and_then(NonZeroU32::new),
    };

    let view = as_root.set_tenant_limits("acme", &limits(Some(5), None)).await.unwrap();
    assert_eq!((view.max_series, view.max_samples_per_second), (5, 1_000_000));
    as_root.set_tenant_limits("globex", &limits(None, Some(100))).await.unwrap();
    // Only a super-admin sets them, and only for tenants that exist.
    let as_acme = common::typed(&server, Some(&acme.key));
    let refused = as_acme.set_tenant_limits("acme", &limits(Some(1_000_000), None)).await.unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::FORBIDDEN), "{refused}");
    let refused = as_root.set_tenant_limits("nobody", &limits(Some(5), None)).await.unwrap_err();
    assert_eq!(refused.status(), Some(StatusCode::NOT_FOUND), "{refused}");
    // Zero is no rate: the typed request cannot even say it, so it goes raw.
    let zero = json!({"max_samples_per_second": 0});
    let (status, _) = Raw::new(&server).call_as(Method::PUT, "/tenants/acme/limits", Some(&root), Some(zero)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = acme.push(&server, "m", 10, 10).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("more than 5 series"), "{body}");
    let (status, body) = globex.push(&server, "m", 10, 200).await;
    assert_eq!(status, StatusCode::OK, "globex keeps the server's series limit: {body}");
    let (status, body) = globex.push(&server, "m", 10, 100).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("100 samples/s"), "{body}");
    let (status, body) = acme.push(&server, "m", 5, 500).await;
    assert_eq!(status, StatusCode::OK, "acme keeps the server's rate: {body}");

    let audit =
        as_root.audit(&AuditQuery { action: Some("tenant.limits_update".into()), ..Default::default() }).await.unwrap();
    let tenants: Vec<&str> = audit.entries.iter().map(|e| e.tenant.as_str()).collect();
    assert_eq!(tenants, vec!["globex", "acme"], "{audit:?}");
    server.shutdown().await;

    // They last across a restart.
    let server = self::server(&dir, 1_000, 1_000_000).await;
    let (status, body) = acme.push(&server, "n", 1, 1).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    server.shutdown().await;
}
