//! Senders with wrong clocks, over the wire: a batch that says when it was sent is measured
//! against the server's clock and, past the tolerance, re-stamped before the store sees it;
//! one that cannot be corrected is refused and its sender still listed, with the reason.
//! (Real senders under `faketime`: the agent binary in `secumon-agent/tests/clock_skew.rs`,
//! the probe in `secumon-cli/tests/clock_skew.rs`.)

use std::net::SocketAddr;

use secumon_core::now_ms;
use secumon_core::proto::{AckStatus, Batch, PushAck, SeriesSamples};
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, DEFAULT_TENANT, RangeQuery, SeriesSelector};
use secumon_transport::grpc::ingest_client::IngestClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::Raw;
use reqwest::Method;

/// A GET of `/api/v1{path}` on `server`, its JSON answer.
async fn get(server: &Server, path: &str) -> Value {
    Raw::new(server).call(Method::GET, path, None).await.1
}

const HOUR: i64 = 3_600_000;

/// A batch of one `load1` sample taken `age_ms` before it is sent, by a clock `skew_ms` off.
fn batch(agent: &str, sequence: u64, skew_ms: i64, age_ms: i64, stamped: bool) -> Batch {
    let agent_now = now_ms() + skew_ms;
    Batch {
        agent_id: agent.into(),
        sequence,
        host: format!("{agent}-host"),
        created_at_ms: agent_now - age_ms,
        series: vec![SeriesSamples {
            name: "load1".into(),
            timestamps_ms: vec![agent_now - age_ms],
            values: vec![sequence as f64],
            ..Default::default()
        }],
        sent_at_ms: if stamped { agent_now } else { 0 },
        ..Default::default()
    }
}

async fn open_stream(addr: SocketAddr) -> (mpsc::Sender<Batch>, tonic::Streaming<PushAck>) {
    let mut client = IngestClient::connect(format!("http://{addr}")).await.expect("connect");
    let (tx, rx) = mpsc::channel(16);
    let acks = client.push(ReceiverStream::new(rx)).await.expect("push").into_inner();
    (tx, acks)
}

async fn push(addr: SocketAddr, batch: Batch) -> PushAck {
    let (tx, mut acks) = open_stream(addr).await;
    tx.send(batch).await.unwrap();
    acks.message().await.expect("ack stream").expect("an ack")
}

/// `host`'s `metric` points: (timestamp, value).
async fn points(server: &Server, host: &str, metric: &str) -> Vec<(i64, f64)> {
    let query = RangeQuery {
        selector: SeriesSelector::new(metric).with("host", host),
        start_ms: 0,
        end_ms: i64::MAX,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let series = server.store().query_range(DEFAULT_TENANT, &query).await.unwrap();
    series.into_iter().flat_map(|s| s.points).map(|p| (p.timestamp_ms, p.value)).collect()
}

async fn listed(server: &Server, id: &str) -> Value {
    let list: Value = get(server, "/agents").await;
    list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

#[tokio::test]
async fn skewed_batches_are_restamped_and_listed_with_their_offset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let addr = server.grpc_addr();

    for (agent, skew_ms) in [("ahead", 2 * HOUR), ("behind", -2 * HOUR), ("close", 3_000)] {
        let before = now_ms();
        // A spooled batch: collected 30 s before it is (re)sent; its send time is fresh.
        let ack = push(addr, batch(agent, 1, skew_ms, 30_000, true)).await;
        let after = now_ms();
        assert_eq!(ack.status(), AckStatus::Committed, "{agent}: {}", ack.error);
        assert!((before..=after).contains(&ack.received_at_ms) && ack.acked_at_ms >= ack.received_at_ms, "{ack:?}");

        let stored = points(&server, &format!("{agent}-host"), "load1").await;
        assert_eq!(stored.len(), 1, "{agent}: {stored:?}");
        let view = listed(&server, agent).await;
        let clock = &view["clock"];
        let offset = clock["offset_ms"].as_i64().unwrap();
        assert!((offset - skew_ms).abs() < 1_000, "{agent}: offset {offset}, truth {skew_ms}");
        assert_eq!(view["status"], "online");
        if skew_ms.abs() > 5_000 {
            // At the server's time of collection: 30 s before it arrived.
            let expected = before - 30_000;
            assert!((stored[0].0 - expected).abs() < 1_000, "{agent}: stored at {}, expected {expected}", stored[0].0);
            assert_eq!((clock["corrected"].as_bool(), clock["corrected_batches"].as_u64()), (Some(true), Some(1)));
        } else {
            // Within the tolerance: left as the agent stamped it.
            assert!((stored[0].0 - (before + skew_ms - 30_000)).abs() < 1_000, "{agent}: {stored:?}");
            assert_eq!((clock["corrected"].as_bool(), clock["corrected_batches"].as_u64()), (Some(false), Some(0)));
        }
        // The offset series, at server time, for rules.
        let series = points(&server, &format!("{agent}-host"), "secumon_agent_clock_offset_seconds").await;
        assert_eq!(series.len(), 1, "{agent}: {series:?}");
        assert!((series[0].0 - before).abs() < 1_000 && (series[0].1 * 1000.0 - skew_ms as f64).abs() < 1_000.0);
    }
    server.shutdown().await;
}

/// The example's clock rule, without its `for` (the test does not wait a minute).
const CLOCK_RULE: &str =
    "rules:\n  - {name: ClockSkew, expr: abs(secumon_agent_clock_offset_seconds) > 60, severity: warning}\n";

/// The `ClockSkew` alerts the API lists: (agent_id, host, value).
async fn clock_alerts(server: &Server) -> Vec<(String, String, f64)> {
    let alerts: Value = get(server, "/alerts?status=firing").await;
    let mut found: Vec<(String, String, f64)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "ClockSkew")
        .map(|a| {
            let label = |k: &str| a["labels"][k].as_str().unwrap_or_default().to_string();
            (label("agent_id"), label("host"), a["value"].as_f64().unwrap())
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[tokio::test]
async fn an_uncorrectable_batch_is_refused_and_its_sender_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.alerting = Some(secumon_alert::RuleFile::parse(CLOCK_RULE, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let addr = server.grpc_addr();

    // An agent that does not stamp its send time, 2 h ahead: nothing to correct by.
    let ack = push(addr, batch("old", 1, 2 * HOUR, 0, false)).await;
    assert_eq!(ack.status(), AckStatus::Rejected);
    assert!(ack.error.contains("in the future"), "{}", ack.error);
    let view = listed(&server, "old").await;
    assert_eq!(
        (view["status"].as_str(), view["host"].as_str(), view["batches"].as_u64()),
        (Some("refused"), Some("old-host"), Some(0))
    );
    let reason = view["clock"]["refused_reason"].as_str().unwrap();
    assert!(reason.contains("in the future") && reason.contains("does not stamp its send time"), "{reason}");
    assert_eq!(view["clock"]["refused_batches"], 1);
    let single: Value = get(&server, "/agents/old").await;
    assert_eq!(single["status"], "refused");

    // A stamped batch whose samples claim 1970 while its clock says years ahead: moving them
    // by the offset would leave the epoch.
    let mut broken = batch("broken", 1, 0, 0, true);
    broken.sent_at_ms = now_ms() + 20_000 * 24 * HOUR;
    broken.series[0].timestamps_ms[0] = 5;
    let ack = push(addr, broken).await;
    assert_eq!(ack.status(), AckStatus::Rejected);
    assert!(ack.error.contains("cannot be corrected"), "{}", ack.error);

    // Refused, and still seen by a clock rule: "old" by the least its clock can be ahead
    // (its sample is 2 h in the future), "broken" by its measured offset. The offset is
    // stored, at server time, under the sender's host.
    let alerts = clock_alerts(&server).await;
    let found: Vec<(&str, &str)> = alerts.iter().map(|(a, h, _)| (a.as_str(), h.as_str())).collect();
    assert_eq!(found, [("broken", "broken-host"), ("old", "old-host")], "{alerts:?}");
    assert!((alerts[1].2 - 7_200.0).abs() < 2.0, "{alerts:?}");
    let stored = points(&server, "old-host", "secumon_agent_clock_offset_seconds").await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!((stored[0].0 - now_ms()).abs() < 5_000 && (stored[0].1 - 7_200.0).abs() < 2.0, "{stored:?}");

    // The overview lists both, though the store has no agent of either, with the reason.
    let overview: Value = get(&server, "/overview?sort=name").await;
    let rows: Vec<(&str, &str, &str, bool)> = overview["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let reason = h["refused_reason"].as_str().unwrap_or_default();
            (
                h["agent_id"].as_str().unwrap(),
                h["host"].as_str().unwrap(),
                h["status"].as_str().unwrap(),
                reason.contains("in the future") || reason.contains("cannot be corrected"),
            )
        })
        .collect();
    assert_eq!(rows, [("broken", "broken-host", "refused", true), ("old", "old-host", "refused", true)], "{overview}");
    assert!(overview["hosts"][0]["clock_offset_ms"].as_i64().unwrap() > 1_000 * 24 * HOUR, "{overview}");
    assert_eq!(overview["total"], 2);

    // Paging counts them: two refused agents after the store's (none here).
    let page: Value = get(&server, "/agents?limit=1").await;
    assert_eq!((page["total"].as_u64(), page["next_offset"].as_u64()), (Some(2), Some(1)), "{page}");
    let rest: Value = get(&server, "/agents?limit=5&offset=1").await;
    assert_eq!(rest["agents"].as_array().unwrap().len(), 1, "{rest}");
    assert_ne!(page["agents"][0]["id"], rest["agents"][0]["id"]);

    // Once it is upgraded (stamps its send time), it is stored and no longer "refused".
    let ack = push(addr, batch("old", 2, 2 * HOUR, 0, true)).await;
    assert_eq!(ack.status(), AckStatus::Committed, "{}", ack.error);
    let view = listed(&server, "old").await;
    assert_eq!((view["status"].as_str(), view["batches"].as_u64()), (Some("online"), Some(1)));
    assert_eq!(view["clock"]["refused_batches"], 1, "the refusal stays counted");

    // Deleting a refused-only agent forgets it.
    let deleted = Raw::new(&server).request(Method::DELETE, "/agents/broken", None).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let list: Value = get(&server, "/agents").await;
    assert_eq!(list["total"], 1, "{list}");
    server.shutdown().await;
}

#[tokio::test]
async fn refused_senders_and_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    assert_eq!(push(server.grpc_addr(), batch("old", 1, 2 * HOUR, 0, false)).await.status(), AckStatus::Rejected);
    assert_eq!(push(server.grpc_addr(), batch("ahead", 1, 2 * HOUR, 0, true)).await.status(), AckStatus::Committed);
    server.shutdown().await;

    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    assert_eq!(listed(&server, "old").await["status"], "refused");
    let offset = listed(&server, "ahead").await["clock"]["offset_ms"].as_i64().unwrap();
    assert!((offset - 2 * HOUR).abs() < 1_000, "{offset}");
    server.shutdown().await;
}

#[tokio::test]
async fn http_ingest_measures_a_scripts_clock_by_its_sent_at() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = Raw::new(&server);
    let post = |body: &Value| api.request(Method::POST, "/ingest", None).json(body).send();

    // A script 2 h behind: one sample without a timestamp (its "now"), one a minute older.
    let before = now_ms();
    let script_now = before - 2 * HOUR;
    let body = json!({"source": "backup", "host": "nas-1", "sent_at_ms": script_now, "samples": [
        {"name": "backup_age_seconds", "value": 1.0},
        {"name": "backup_age_seconds", "value": 2.0, "timestamp_ms": script_now - 60_000},
    ]});
    let answer: Value = post(&body).await.unwrap().json().await.unwrap();
    assert_eq!(answer["samples"], 2, "{answer}");
    assert_eq!(answer["clock_corrected"], true, "{answer}");
    assert!((answer["clock_offset_ms"].as_i64().unwrap() + 2 * HOUR).abs() < 1_000, "{answer}");
    let stored = points(&server, "nas-1", "backup_age_seconds").await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!((stored[0].0 - (before - 60_000)).abs() < 1_000 && stored[0].1 == 2.0, "{stored:?}");
    assert!((stored[1].0 - before).abs() < 1_000 && stored[1].1 == 1.0, "{stored:?}");
    let view = listed(&server, "api:default:backup").await;
    assert!((view["clock"]["offset_ms"].as_i64().unwrap() + 2 * HOUR).abs() < 1_000, "{view}");

    // Without `sent_at_ms` timestamps are taken as given: a far-future one is refused, and
    // the script is listed with the reason.
    let body = json!({"source": "cron", "host": "nas-1", "samples": [
        {"name": "backup_age_seconds", "value": 1.0, "timestamp_ms": now_ms() + 2 * HOUR},
    ]});
    let refused = post(&body).await.unwrap();
    assert_eq!(refused.status(), 400);
    let zero = json!({"source": "cron", "host": "nas-1", "sent_at_ms": 0, "samples": [{"name": "x", "value": 1.0}]});
    assert_eq!(post(&zero).await.unwrap().status(), 400, "not a time");
    let view = listed(&server, "api:default:cron").await;
    assert_eq!(view["status"], "refused");
    assert!(view["clock"]["refused_reason"].as_str().unwrap().contains("in the future"), "{view}");
    server.shutdown().await;
}
