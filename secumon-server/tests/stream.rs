//! The live stream over a real WebSocket: authenticated, scoped to the caller's tenant,
//! filtered by subscription, and a subscriber that cannot keep up is dropped with a message
//! while publishing goes on.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::Role;
use secumon_server::live::{FEED_CAPACITY, LiveEvent};
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Server, key: Option<&str>) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/api/v1/stream", server.api_addr()).into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

/// The next JSON message, or `None` if none comes within `wait`.
async fn next(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(Message::Close(_)) | Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn subscribe(socket: &mut Socket, subscription: Value) {
    socket.send(Message::text(json!({"subscribe": subscription}).to_string())).await.unwrap();
    let answer = next(socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer["type"], "subscribed", "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_their_tenant_live_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.create_tenant("acme").await.unwrap();
    accounts.create_tenant("globex").await.unwrap();
    let (_, operator) = accounts.create_api_key("acme", "ops", Role::Admin, "t").await.unwrap();
    let (_, viewer) = accounts.create_api_key("acme", "view", Role::Viewer, "t").await.unwrap();
    let (_, other) = accounts.create_api_key("globex", "view", Role::Viewer, "t").await.unwrap();

    match connect(&server, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("an anonymous stream must be refused, got {:?}", other.map(|_| ())),
    }
    let mut acme = connect(&server, Some(&viewer)).await.unwrap();
    let hello = next(&mut acme, Duration::from_secs(5)).await.unwrap();
    assert_eq!((hello["type"].as_str(), hello["tenant"].as_str()), (Some("subscribed"), Some("acme")), "{hello}");
    subscribe(&mut acme, json!({"metrics": ["load*"], "hosts": ["web-1"]})).await;
    let mut globex = connect(&server, Some(&other)).await.unwrap();
    next(&mut globex, Duration::from_secs(5)).await.unwrap();

    acme.send(Message::text("{\"unsubscribe\": true}")).await.unwrap();
    let error = next(&mut acme, Duration::from_secs(5)).await.unwrap();
    assert_eq!(error["code"], "bad_request", "{error}");

    let http = reqwest::Client::new();
    let api = format!("http://{}/api/v1", server.api_addr());
    let rule = json!({"name": "HighLoad", "expr": "load1 > 5", "severity": "warning"});
    let created = http.post(format!("{api}/alert-rules")).bearer_auth(&operator).json(&rule).send().await.unwrap();
    assert_eq!(created.status(), 201);
    for (host, value) in [("db-1", 1.0), ("web-1", 9.0)] {
        let push = json!({"source": "test", "host": host,
            "samples": [{"name": "load1", "value": value}, {"name": "mem_used_bytes", "value": 1}]});
        let sent = http.post(format!("{api}/ingest")).bearer_auth(&operator).json(&push).send().await.unwrap();
        assert_eq!(sent.status(), 200);
    }

    let mut seen = Vec::new();
    while let Some(message) = next(&mut acme, Duration::from_secs(2)).await {
        seen.push(message);
        let firing = seen.iter().any(|m| m["type"] == "alert" && m["transition"]["to"] == "firing");
        if firing && seen.iter().any(|m| m["type"] == "samples") {
            break;
        }
    }
    let kinds: Vec<&str> = seen.iter().filter_map(|m| m["type"].as_str()).collect();
    assert!(seen.iter().all(|m| m["host"].as_str().is_none_or(|h| h == "web-1")), "only web-1: {seen:?}");
    let samples = seen.iter().find(|m| m["type"] == "samples").unwrap_or_else(|| panic!("no samples: {seen:?}"));
    assert_eq!(samples["samples"].as_array().unwrap().len(), 1, "only load*: {samples}");
    assert_eq!(samples["samples"][0]["value"], 9.0);
    assert!(kinds.contains(&"host"), "{kinds:?}");
    assert!(seen.iter().any(|m| m["type"] == "alert" && m["transition"]["rule"] == "HighLoad"), "{seen:?}");

    assert_eq!(next(&mut globex, Duration::from_millis(500)).await, None, "globex sees none of acme's events");
    let metrics = reqwest::get(format!("http://{}/metrics", server.api_addr())).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "secumon_stream_subscribers 2"), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_dropped_and_publishing_never_waits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let mut slow = connect(&server, None).await.unwrap();
    next(&mut slow, Duration::from_secs(5)).await.unwrap();
    subscribe(&mut slow, json!({"metrics": ["*"]})).await;

    // Big messages the client does not read: the server's socket fills while the feed runs on.
    let batch = Arc::new(IngestBatch {
        agent_id: "a".into(),
        host: "h".into(),
        samples: (0..200).map(|i| Sample::new(format!("metric_{i}"), Labels::new(), now_ms(), 1.0)).collect(),
        ..Default::default()
    });
    let feed = server.live_feed();
    let started = std::time::Instant::now();
    for _ in 0..FEED_CAPACITY * 2 {
        feed.publish(LiveEvent::Batch { tenant: "default".into(), batch: Arc::clone(&batch) });
    }
    assert!(started.elapsed() < Duration::from_secs(2), "publishing waited for the subscriber");

    let mut dropped_with = None;
    while let Some(message) = next(&mut slow, Duration::from_secs(10)).await {
        if message["type"] == "error" {
            dropped_with = Some(message);
            break;
        }
    }
    let notice = dropped_with.expect("the slow subscriber is told why it is dropped");
    assert_eq!(notice["code"], "slow_consumer", "{notice}");
    assert_eq!(next(&mut slow, Duration::from_secs(5)).await, None, "and the stream ends");
    server.shutdown().await;
}

/// A revoked API key's open stream used to go on receiving data; now it is closed within a
/// few seconds of the revocation, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_credential_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    let (key, secret) = accounts.create_api_key("default", "watcher", Role::Viewer, "t").await.unwrap();
    let (_, keeper) = accounts.create_api_key("default", "keeper", Role::Viewer, "t").await.unwrap();
    let mut revoked = connect(&server, Some(&secret)).await.unwrap();
    let mut kept = connect(&server, Some(&keeper)).await.unwrap();
    next(&mut revoked, Duration::from_secs(5)).await.unwrap();
    next(&mut kept, Duration::from_secs(5)).await.unwrap();

    assert!(accounts.revoke_api_key("default", &key.id).await.unwrap());
    let notice = next(&mut revoked, Duration::from_secs(10)).await.expect("a notice before the close");
    assert_eq!(
        (notice["type"].as_str(), notice["code"].as_str()),
        (Some("error"), Some("unauthenticated")),
        "{notice}"
    );
    assert!(next(&mut revoked, Duration::from_secs(2)).await.is_none(), "closed after the notice");

    // The other key's stream goes on.
    subscribe(&mut kept, json!({"alerts": true})).await;
    server.shutdown().await;
}
