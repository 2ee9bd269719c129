//! The live feed and revocations across server processes over the real NATS at
//! `SECUMON_TEST_NATS_URL`: two bridged processes (in one test) hear each other's events
//! exactly once and never their own back, and a WebSocket on one server sees what was
//! pushed to another.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::RevocationFeed;
use secumon_server::cluster_feed::ClusterFeed;
use secumon_server::live::{LiveEvent, LiveFeed};
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

fn nats_url() -> String {
    std::env::var("SECUMON_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A connection of its own to the test NATS, or `None` (after failing in strict mode).
async fn nats() -> Option<async_nats::Client> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(client),
        Err(error) => {
            secumon_core::testing::peer_missing(&format!("NATS at {}: {error}", nats_url()));
            None
        }
    }
}

/// A name no other test (or earlier run) uses: tests share the NATS subjects.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn batch(host: &str, sequence: u64) -> IngestBatch {
    IngestBatch {
        agent_id: "agent".into(),
        sequence,
        host: host.into(),
        samples: vec![Sample::new("load1", Labels::new(), now_ms(), sequence as f64)],
        ..Default::default()
    }
}

/// Events of `tenant` received within `wait`, as (kind, host or rule).
async fn drain(events: &mut broadcast::Receiver<Arc<LiveEvent>>, tenant: &str, wait: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match &*event {
            LiveEvent::Batch { tenant: t, batch } if t == tenant => seen.push(format!("batch {}", batch.host)),
            LiveEvent::Alert { tenant: t, transition } if t == tenant => {
                seen.push(format!("alert {}", transition.rule))
            }
            _ => {}
        }
    }
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridged_processes_see_each_others_events_exactly_once() {
    let (Some(first), Some(second)) = (nats().await, nats().await) else { return };
    let tenant = unique("t").replace('-', "_");
    let (feed_a, feed_b) = (LiveFeed::default(), LiveFeed::default());
    let _bridge_a = ClusterFeed::bridge(first, feed_a.clone(), None).await.unwrap();
    let _bridge_b = ClusterFeed::bridge(second, feed_b.clone(), None).await.unwrap();
    let (mut all_a, mut all_b) = (feed_a.subscribe(), feed_b.subscribe());
    let mut remote_b = feed_b.subscribe_remote();

    feed_a.publish(LiveEvent::Batch { tenant: tenant.clone(), batch: Arc::new(batch("a-host", 1)) });
    let transition: secumon_alert::Transition = serde_json::from_value(json!({
        "rule": "HighLoad", "labels": {"host": "a-host"}, "from": "pending", "to": "firing", "at_ms": now_ms(),
        "value": 9.0, "severity": "warning", "annotations": {}, "channels": [], "silenced": false,
        "escalation_level": 0
    }))
    .unwrap();
    feed_a.publish(LiveEvent::Alert { tenant: tenant.clone(), transition: transition.clone() });
    feed_b.publish(LiveEvent::Batch { tenant: tenant.clone(), batch: Arc::new(batch("b-host", 2)) });

    let wait = Duration::from_secs(2);
    let (seen_a, seen_b) = tokio::join!(drain(&mut all_a, &tenant, wait), drain(&mut all_b, &tenant, wait));
    let expected = vec!["alert HighLoad".to_string(), "batch a-host".into(), "batch b-host".into()];
    assert_eq!(seen_a, expected, "a: its own events once, b's once");
    assert_eq!(seen_b, expected, "b: its own events once, a's once");
    let remote = drain(&mut remote_b, &tenant, Duration::from_millis(200)).await;
    assert_eq!(remote, vec!["alert HighLoad".to_string(), "batch a-host".into()], "b's remote events are a's only");

    // What crossed is what was sent: the batch's samples and the transition.
    let sent = batch("a-host", 3);
    feed_a.publish(LiveEvent::Batch { tenant: tenant.clone(), batch: Arc::new(sent.clone()) });
    loop {
        let event = tokio::time::timeout(wait, all_b.recv()).await.expect("the batch crosses").unwrap();
        if let LiveEvent::Batch { tenant: t, batch: crossed } = &*event
            && *t == tenant
        {
            assert_eq!(**crossed, sent);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_one_process_reaches_the_other_once() {
    let (Some(first), Some(second)) = (nats().await, nats().await) else { return };
    let (revocations_a, revocations_b) = (RevocationFeed::default(), RevocationFeed::default());
    let _bridge_a = ClusterFeed::bridge(first, LiveFeed::default(), Some(revocations_a.clone())).await.unwrap();
    let _bridge_b = ClusterFeed::bridge(second, LiveFeed::default(), Some(revocations_b.clone())).await.unwrap();
    let (mut heard_a, mut heard_b) = (revocations_a.subscribe(), revocations_b.subscribe());
    let mut announced_b = revocations_b.subscribe_here();
    let agent = unique("agent");

    revocations_a.publish(&agent);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        tokio::select! {
            Ok(id) = heard_a.recv() => if id == agent { *counts.entry("a").or_default() += 1 },
            Ok(id) = heard_b.recv() => if id == agent { *counts.entry("b").or_default() += 1 },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    assert_eq!(counts.get("a"), Some(&1), "the revoking process hears it once (not back from NATS)");
    assert_eq!(counts.get("b"), Some(&1), "the other process hears it once");
    assert!(announced_b.try_recv().is_err(), "b does not announce what it heard from NATS");
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(_)) | Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_one_server_sees_a_batch_pushed_to_another() {
    if nats().await.is_none() {
        return;
    }
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &tempfile::TempDir| ServerConfig {
        nats_url: Some(nats_url()),
        ..ServerConfig::loopback(dir.path().join("s.db"))
    };
    let ingesting = Server::start(config(&dirs.0)).await.unwrap();
    let serving = Server::start(config(&dirs.1)).await.unwrap();
    let host = unique("web");

    let url = format!("ws://{}/api/v1/stream", serving.api_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next(&mut socket, Duration::from_secs(5)).await.unwrap();
    let subscription = json!({"subscribe": {"metrics": ["*"], "hosts": [host]}});
    socket.send(Message::text(subscription.to_string())).await.unwrap();
    assert_eq!(next(&mut socket, Duration::from_secs(5)).await.unwrap()["type"], "subscribed");

    let push = json!({"source": "test", "host": host, "samples": [{"name": "load1", "value": 4.5}]});
    let api = format!("http://{}/api/v1/ingest", ingesting.api_addr());
    let sent = reqwest::Client::new().post(api).json(&push).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let mut samples = Vec::new();
    while let Some(message) = next(&mut socket, Duration::from_secs(3)).await {
        if message["type"] == "samples" {
            samples.push(message);
        }
    }
    assert_eq!(samples.len(), 1, "the batch once: {samples:?}");
    assert_eq!(samples[0]["samples"][0]["value"], 4.5, "{samples:?}");
    ingesting.shutdown().await;
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_servers_with_alert_leases_one_evaluates_and_the_other_takes_over_on_shutdown() {
    if nats().await.is_none() {
        return;
    }
    let bucket = unique("leases").replace('-', "_");
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = |dir: &tempfile::TempDir| ServerConfig {
        nats_url: Some(nats_url()),
        alert_lease: Some(secumon_server::alert_lease::LeaseOptions {
            bucket: bucket.clone(),
            ttl: Duration::from_secs(3),
            holder: dir.path().display().to_string(),
        }),
        ..ServerConfig::loopback(dir.path().join("s.db"))
    };
    let first = Server::start(config(&dirs.0)).await.unwrap();
    let second = Server::start(config(&dirs.1)).await.unwrap();
    let owners = |a: &Server, b: &Server| (a.evaluating().is_some(), b.evaluating().is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while owners(&first, &second) == (false, false) {
        assert!(tokio::time::Instant::now() < deadline, "nobody evaluates the default tenant");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then exactly one, for a while.
    for _ in 0..20 {
        let (a, b) = owners(&first, &second);
        assert!(a != b, "exactly one server evaluates: {:?}", (a, b));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (owner, other) = if first.evaluating().is_some() { (first, second) } else { (second, first) };
    let released = tokio::time::Instant::now();
    owner.shutdown().await;
    // Released on shutdown: taken on the other's next attempt (a third of the lease), its
    // engine started on the next tick (a second).
    while other.evaluating().is_none() {
        assert!(released.elapsed() < Duration::from_secs(5), "the other server did not take over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    other.shutdown().await;
    let jetstream = async_nats::jetstream::new(nats().await.unwrap());
    let _ = jetstream.delete_key_value(&bucket).await;
}
