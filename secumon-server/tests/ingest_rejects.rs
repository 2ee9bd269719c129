//! A bad batch is refused to the agent that sent it, and to no one else: the stream stays
//! usable, and other agents' batches are stored untouched.

use std::net::SocketAddr;

use secumon_core::proto::{AckStatus, Batch, PushAck, SeriesSamples};
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector};
use secumon_transport::grpc::ingest_client::IngestClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;

const T0: i64 = 1_700_000_000_000;

fn batch(agent: &str, sequence: u64, metric: &str) -> Batch {
    Batch {
        agent_id: agent.into(),
        sequence,
        host: format!("{agent}-host"),
        created_at_ms: T0,
        series: vec![SeriesSamples {
            name: metric.into(),
            timestamps_ms: vec![T0 + sequence as i64],
            values: vec![sequence as f64],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Opens a push stream; returns the sender of batches and the stream of acks.
async fn open_stream(addr: SocketAddr) -> (mpsc::Sender<Batch>, tonic::Streaming<PushAck>) {
    let mut client = IngestClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .send_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Zstd);
    let (tx, rx) = mpsc::channel(16);
    let acks = client.push(ReceiverStream::new(rx)).await.expect("push").into_inner();
    (tx, acks)
}

async fn next_ack(acks: &mut tonic::Streaming<PushAck>) -> PushAck {
    acks.message().await.expect("ack stream").expect("an ack")
}

#[tokio::test]
async fn invalid_batches_are_rejected_to_their_sender_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let (bad_tx, mut bad_acks) = open_stream(server.grpc_addr()).await;
    let (good_tx, mut good_acks) = open_stream(server.grpc_addr()).await;

    good_tx.send(batch("good", 1, "load1")).await.unwrap();
    bad_tx.send(batch("bad", 1, "not a metric name")).await.unwrap();
    let mut reserved = batch("bad", 2, "load1");
    reserved.series[0].labels.insert("tenant".into(), "someone-else".into());
    bad_tx.send(reserved).await.unwrap();
    let mut skewed = batch("bad", 3, "load1");
    skewed.series[0].timestamps_ms[0] = secumon_core::now_ms() + 7 * 86_400_000;
    bad_tx.send(skewed).await.unwrap();
    bad_tx.send(batch("bad", 4, "load1")).await.unwrap();
    good_tx.send(batch("good", 2, "load1")).await.unwrap();
    good_tx.send(batch("good", 2, "load1")).await.unwrap();

    let rejected = next_ack(&mut bad_acks).await;
    assert_eq!((rejected.sequence, rejected.status()), (1, AckStatus::Rejected));
    assert!(rejected.error.contains("not a metric name"), "{}", rejected.error);
    let rejected = next_ack(&mut bad_acks).await;
    assert_eq!((rejected.sequence, rejected.status()), (2, AckStatus::Rejected));
    assert!(rejected.error.contains("tenant"), "{}", rejected.error);
    let rejected = next_ack(&mut bad_acks).await;
    assert_eq!((rejected.sequence, rejected.status()), (3, AckStatus::Rejected));
    assert!(rejected.error.contains("in the future") && rejected.error.contains("load1"), "{}", rejected.error);
    // The same stream still works after rejections.
    let accepted = next_ack(&mut bad_acks).await;
    assert_eq!((accepted.sequence, accepted.status()), (4, AckStatus::Committed));

    let statuses: Vec<_> =
        [next_ack(&mut good_acks).await, next_ack(&mut good_acks).await, next_ack(&mut good_acks).await]
            .iter()
            .map(|a| (a.sequence, a.status()))
            .collect();
    assert_eq!(statuses, vec![(1, AckStatus::Committed), (2, AckStatus::Committed), (2, AckStatus::Duplicate)]);

    let store = server.store();
    let query = |host: &str| RangeQuery {
        selector: SeriesSelector::new("load1").with("host", host),
        start_ms: T0,
        end_ms: T0 + 1_000,
        step_ms: 1,
        aggregation: Aggregation::Sum,
    };
    let good = store.query_range("default", &query("good-host")).await.unwrap();
    let values: Vec<f64> = good[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, vec![1.0, 2.0], "the good agent's data is whole and not doubled");
    let bad = store.query_range("default", &query("bad-host")).await.unwrap();
    let values: Vec<f64> = bad[0].points.iter().map(|p| p.value).collect();
    assert_eq!(values, vec![4.0], "only the valid batch of the bad agent was stored");

    // The server's own health: what reached the store, in Prometheus text format. Batches
    // refused by validation never reach it; the far-future one is refused by the store.
    let metrics = reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap();
    for line in [
        "secumon_ingest_batches_total{outcome=\"committed\"} 3",
        "secumon_ingest_batches_total{outcome=\"duplicate\"} 1",
        "secumon_ingest_batches_total{outcome=\"refused\"} 1",
        "secumon_ingest_batches_total{outcome=\"failed\"} 0",
        "secumon_ingest_samples_total 3",
        "secumon_store_write_seconds_count 5",
        "# TYPE secumon_notifications_failed_total counter",
        "secumon_alerts{state=\"firing\"} 0",
        "secumon_notification_queue_depth 0",
        "secumon_stream_subscribers 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }

    drop((bad_tx, good_tx));
    server.shutdown().await;
}

#[tokio::test]
async fn undecodable_bytes_end_only_that_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    // A raw HTTP/2 gRPC request whose message is not a protobuf Batch.
    let garbage = {
        let mut frame = vec![0u8];
        let body = [0xffu8; 11];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    };
    let http = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = http
        .post(format!("http://{}/secumon.v1.Ingest/Push", server.grpc_addr()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(garbage)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200, "gRPC reports errors in trailers");

    // Another agent is unaffected.
    let (tx, mut acks) = open_stream(server.grpc_addr()).await;
    tx.send(batch("fine", 1, "load1")).await.unwrap();
    assert_eq!(next_ack(&mut acks).await.status(), AckStatus::Committed);
    drop(tx);
    server.shutdown().await;
}

/// Scripts pushing through the REST API get the store's refusal as a 400 naming the series,
/// and nothing of their request is stored.
#[tokio::test]
async fn api_ingest_refuses_far_future_samples_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let url = format!("http://{}/api/v1/ingest", server.api_addr());
    let future = secumon_core::now_ms() + 30 * 86_400_000;
    let body = serde_json::json!({"source": "scanner", "host": "web-1", "samples": [
        {"name": "scan_ok", "value": 1.0},
        {"name": "scan_duration_seconds", "value": 2.5, "timestamp_ms": future}]});
    let response = reqwest::Client::new().post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_request");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("scan_duration_seconds") && message.contains("in the future"), "{message}");
    let now = secumon_core::now_ms();
    let query = RangeQuery {
        selector: SeriesSelector::new("scan_ok"),
        start_ms: now - 3_600_000,
        end_ms: now + 3_600_000,
        step_ms: 1_000,
        aggregation: Aggregation::Last,
    };
    assert!(server.store().query_range("default", &query).await.unwrap().is_empty(), "nothing stored");
    server.shutdown().await;
}
