//! Issue #17, finding 2: one tenant's big scanner report must not stall anyone else's
//! writes. While tenant acme imports 50 000 findings on 50 000 assets through the API,
//! tenant globex keeps pushing samples with `POST /api/v1/ingest` and an agent keeps
//! pushing batches over gRPC; every one of those is accepted (no 500, no refused batch), a
//! few of each finish before the import does, and the import itself is stored whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use secumon_core::proto::{AckStatus, Batch, SeriesSamples};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, FindingFilter, RangeQuery, SeriesSelector};
use secumon_transport::grpc::ingest_client::IngestClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const FINDINGS: usize = 50_000;

fn report() -> String {
    let findings: Vec<Value> = (0..FINDINGS)
        .map(|i| {
            let severity = ["critical", "high", "medium", "low", "info"][i % 5];
            json!({"id": format!("CVE-2024-{:05}", i % 997), "severity": severity, "asset": format!("host-{i}"),
                   "title": "a vulnerable package", "description": "upgrade it"})
        })
        .collect();
    json!({ "findings": findings }).to_string()
}

fn batch(sequence: u64) -> Batch {
    let now = secumon_core::now_ms();
    Batch {
        agent_id: "agent-1".into(),
        sequence,
        host: "agent-host".into(),
        created_at_ms: now,
        series: vec![SeriesSamples {
            name: "load1".into(),
            timestamps_ms: vec![now],
            values: vec![sequence as f64],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_import_does_not_hold_back_other_tenants_ingest_or_agents() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let api = format!("http://{}/api/v1", server.api_addr());
    let (_, acme) = server.accounts().create_api_key("acme", "scanner", Role::Operator, "t").await.unwrap();
    let (_, globex) = server.accounts().create_api_key("globex", "script", Role::Operator, "t").await.unwrap();
    let http = reqwest::Client::new();

    let mut client = IngestClient::connect(format!("http://{}", server.grpc_addr())).await.unwrap();
    let (batches, rx) = mpsc::channel(4);
    let mut acks = client.push(ReceiverStream::new(rx)).await.unwrap().into_inner();

    let done = Arc::new(AtomicBool::new(false));
    let import = {
        let (http, api, done) = (http.clone(), api.clone(), done.clone());
        let body = report();
        tokio::spawn(async move {
            let response = http.post(format!("{api}/findings")).bearer_auth(&acme).body(body).send().await.unwrap();
            done.store(true, Ordering::SeqCst);
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        })
    };

    // Until the import answers (and for at least a few rounds), one REST push and one agent
    // batch at a time, each awaited: every one must be accepted.
    let (mut during_import, mut rounds) = (0u64, 0u64);
    while rounds < 5 || !done.load(Ordering::SeqCst) {
        rounds += 1;
        let body = json!({"source": "script", "host": "globex-web", "samples": [{"name": "requests", "value": rounds as f64}]});
        let response = http.post(format!("{api}/ingest")).bearer_auth(&globex).json(&body).send().await.unwrap();
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "round {rounds}: {}", response.text().await.unwrap());
        batches.send(batch(rounds)).await.unwrap();
        let ack = acks.message().await.unwrap().expect("an ack");
        assert_eq!((ack.sequence, ack.status()), (rounds, AckStatus::Committed), "{}", ack.error);
        if !done.load(Ordering::SeqCst) {
            during_import += 1;
        }
        assert!(rounds < 100_000, "the import never answered");
    }
    let (status, imported) = import.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{imported}");
    assert_eq!(
        (imported["findings"].as_u64(), imported["new"].as_u64()),
        (Some(FINDINGS as u64), Some(FINDINGS as u64))
    );
    assert!(during_import >= 2, "only {during_import} pushes went through while the import ran");

    let stored =
        server.store().list_findings("acme", &FindingFilter { limit: 100_000, ..Default::default() }).await.unwrap();
    assert_eq!(stored.len(), FINDINGS);
    let now = secumon_core::now_ms();
    let query = |name: &str| RangeQuery {
        selector: SeriesSelector::new(name),
        start_ms: now - 3_600_000,
        end_ms: now + 60_000,
        step_ms: 3_700_000,
        aggregation: Aggregation::Count,
    };
    let pushed = server.store().query_range("globex", &query("requests")).await.unwrap();
    assert_eq!(pushed.iter().flat_map(|s| &s.points).map(|p| p.value).sum::<f64>(), rounds as f64);
    let agent = server.store().query_range("default", &query("load1")).await.unwrap();
    assert_eq!(agent.iter().flat_map(|s| &s.points).map(|p| p.value).sum::<f64>(), rounds as f64);
    drop(batches);
    server.shutdown().await;
}

/// The caps answer in the API's error shape, naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_report_is_refused_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let url = format!("http://{}/api/v1/findings", server.api_addr());
    let body = vec![b' '; secumon_server::MAX_REPORT_BYTES + 1];
    let response = reqwest::Client::new().post(&url).body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "report_too_large");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(&secumon_server::MAX_REPORT_BYTES.to_string()), "{message}");
    server.shutdown().await;
}
