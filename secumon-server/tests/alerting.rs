//! Alerting through the whole server: a sample pushed over gRPC crosses a rule's threshold,
//! the alert fires on arrival, a signed webhook reaches a local receiver, and the REST API
//! shows the alert and its history.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use secumon_alert::{RuleFile, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig};

mod common;
use common::Raw;
use reqwest::Method;

/// When each notification arrived, its `(timestamp, signature)` headers and its body.
type Deliveries = Arc<Mutex<Vec<(Instant, Option<(String, String)>, Bytes)>>>;

async fn receive(State(deliveries): State<Deliveries>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name| headers.get(name).and_then(|v: &axum::http::HeaderValue| v.to_str().ok()).map(str::to_string);
    let signed = header(TIMESTAMP_HEADER).zip(header(SIGNATURE_HEADER));
    deliveries.lock().unwrap().push((Instant::now(), signed, body));
    StatusCode::OK
}

/// A webhook receiver on loopback: its URL and what it received.
async fn start_receiver() -> (String, Deliveries) {
    let deliveries: Deliveries = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(deliveries.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hook, deliveries)
}

fn rules(hook: &str) -> RuleFile {
    let text = format!(
        r#"
rules:
  - name: RoomTooHot
    expr: temperature_celsius > 30
    severity: critical
    annotations:
      summary: "{{{{ $labels.room }}}} is at {{{{ $value }}}}°C"
      rounded: "{{{{ $value | printf \"%.0f\" }}}}°C, {{{{ humanizePercentage 0.355 }}}} of the limit"
    channels: [ops]
channels:
  ops: {{type: webhook, url: "{hook}", secret: "k3y"}}
"#
    );
    RuleFile::parse(&text, "rules.yaml").unwrap()
}

async fn wait_for(deliveries: &Deliveries, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "only {} notifications arrived", deliveries.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn room(name: &str) -> Labels {
    Labels::from([("room".to_string(), name.to_string())])
}

fn batch(samples: Vec<Sample>) -> IngestBatch {
    IngestBatch { agent_id: "probe".into(), host: "dc-1".into(), samples, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossing_sample_notifies_on_arrival() {
    let (hook, deliveries) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.alerting = Some(rules(&hook));
    let server = Server::start(config).await.unwrap();

    let client =
        PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
    let runner = client.clone();
    let delivery = tokio::spawn(async move { runner.run(std::future::pending()).await });
    client.enqueue(batch(vec![Sample::new("temperature_celsius", room("a"), now_ms(), 21.0)])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(deliveries.lock().unwrap().is_empty(), "below the threshold: nothing sent");

    let sent = Instant::now();
    client
        .enqueue(batch(vec![
            Sample::new("temperature_celsius", room("a"), now_ms(), 35.5),
            Sample::new("temperature_celsius", room("b"), now_ms(), 22.0),
        ]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no notification arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (arrived, signed, body) = deliveries.lock().unwrap()[0].clone();
    eprintln!("sample enqueued on the agent → webhook received: {:?}", arrived - sent);
    // What a receiver checks: the signature covers the timestamp, and the timestamp is fresh.
    let (timestamp, signature_header) = signed.expect("timestamp and signature headers");
    let timestamp: i64 = timestamp.parse().unwrap();
    assert!((now_ms() / 1_000 - timestamp).abs() <= 5, "signed just now: {timestamp}");
    assert_eq!(signature_header, signature("k3y", timestamp, &body));
    assert_ne!(signature_header, signature("k3y", timestamp - 600, &body), "a replay with an old timestamp fails");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["rule"], "RoomTooHot");
    assert_eq!(json["status"], "firing");
    assert_eq!(json["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(json["alerts"][0]["labels"]["room"], "a");
    assert_eq!(json["alerts"][0]["labels"]["host"], "dc-1");
    assert_eq!(json["alerts"][0]["annotations"]["summary"], "a is at 35.5°C");
    assert_eq!(json["alerts"][0]["annotations"]["rounded"], "36°C, 35.5% of the limit");

    let api = Raw::new(&server);
    let alerts: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    let alerts = alerts["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "firing");
    assert_eq!(alerts[0]["annotations"]["summary"], "a is at 35.5°C", "what `alerts list` and the console show");
    let history: serde_json::Value = api.call(Method::GET, "/alerts/history", None).await.1;
    assert_eq!(history["history"][0]["from"], "inactive");

    let stats: serde_json::Value = api.call(Method::GET, "/alerts/stats", None).await.1;
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["by_status"]["firing"], 1);
    assert_eq!(stats["by_severity"]["critical"], 1);
    let none: serde_json::Value = api.call(Method::GET, "/alerts?severity=warning", None).await.1;
    assert_eq!(none["alerts"].as_array().unwrap().len(), 0, "filtered by severity");
    let firing: serde_json::Value = api.call(Method::GET, "/alerts?status=firing", None).await.1;
    assert_eq!(firing["alerts"].as_array().unwrap().len(), 1);

    // Acknowledge through the API.
    let id = alerts[0]["id"].as_str().unwrap();
    let acked = api
        .request(Method::POST, &format!("/alerts/{id}/acknowledge"), None)
        .json(&serde_json::json!({"by": "alice", "comment": "opening the window"}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let alerts: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    // Recorded as the caller (open access here: "local"), whatever the body claims.
    assert_eq!(alerts["alerts"][0]["acknowledged"]["by"], "local");
    let missing = api
        .request(Method::POST, "/alerts/nope/acknowledge", None)
        .json(&serde_json::json!({"by": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // A silence on room c: its alert fires in history but nobody is told.
    let silenced = api
        .request(Method::POST, "/silences", None)
        .json(&serde_json::json!({"matchers": {"room": "c"}, "duration": "1h", "created_by": "bob", "comment": "heater test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(silenced.status(), 201);
    let silence: serde_json::Value = silenced.json().await.unwrap();
    let silence_id = silence["id"].as_str().unwrap().to_string();
    assert_eq!(silence["created_by"], "local", "the caller, not the body's `created_by`");
    client.enqueue(batch(vec![Sample::new("temperature_celsius", room("c"), now_ms(), 40.0)])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history: serde_json::Value = api.call(Method::GET, "/alerts/history", None).await.1;
        if history["history"][0]["labels"]["room"] == "c" {
            assert_eq!(history["history"][0]["silenced"], true);
            break;
        }
        assert!(Instant::now() < deadline, "room c never fired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deliveries.lock().unwrap().len(), 1, "the silenced alert sent nothing");

    // The silence is listed with its id and can be ended early, once.
    let listed: serde_json::Value = api.call(Method::GET, "/silences", None).await.1;
    assert_eq!(listed["silences"][0]["id"], silence_id.as_str());
    let expired = api.request(Method::DELETE, &format!("/silences/{silence_id}"), None).send().await.unwrap();
    assert_eq!(expired.status(), 200);
    let listed: serde_json::Value = api.call(Method::GET, "/silences", None).await.1;
    assert_eq!(listed["silences"], serde_json::json!([]), "no longer in force");
    let again = api.request(Method::DELETE, &format!("/silences/{silence_id}"), None).send().await.unwrap();
    assert_eq!(again.status(), 404);
    let history: serde_json::Value = api.call(Method::GET, "/alerts/history", None).await.1;
    let entry = history["history"].as_array().unwrap().iter().find(|e| e["kind"] == "silence_expired").cloned();
    assert_eq!(entry.map(|e| e["by"].clone()), Some("local".into()), "{history}");

    // Back below the threshold: resolved, and the receiver hears about it.
    client.enqueue(batch(vec![Sample::new("temperature_celsius", room("a"), now_ms(), 20.0)])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while deliveries.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "no resolve notification arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resolved: serde_json::Value = serde_json::from_slice(&deliveries.lock().unwrap()[1].2).unwrap();
    assert_eq!(resolved["status"], "resolved");
    delivery.abort();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_alerts_survive_a_restart_without_a_second_notification() {
    let (hook, deliveries) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = ServerConfig::loopback(dir.path().join("s.db"));
        config.alerting = Some(rules(&hook));
        Server::start(config).await.unwrap()
    };
    let push = |server: &Server, samples: Vec<Sample>| {
        let client =
            PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
        async move {
            client.enqueue(batch(samples)).await.unwrap();
            let runner = client.clone();
            let delivery = tokio::spawn(async move { runner.run(std::future::pending()).await });
            while client.stats().spool.pending_batches > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            delivery.abort();
        }
    };

    let server = start().await;
    push(&server, vec![Sample::new("temperature_celsius", room("a"), now_ms(), 35.0)]).await;
    wait_for(&deliveries, 1).await;
    let api = Raw::new(&server);
    let before: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    server.shutdown().await;

    let server = start().await;
    let api = Raw::new(&server);
    let after: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    assert_eq!(after["alerts"], before["alerts"], "the same alert, firing since the same instant");
    push(&server, vec![Sample::new("temperature_celsius", room("a"), now_ms(), 36.0)]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await; // a tick passes too
    assert_eq!(deliveries.lock().unwrap().len(), 1, "not notified twice");

    push(&server, vec![Sample::new("temperature_celsius", room("a"), now_ms(), 20.0)]).await;
    wait_for(&deliveries, 2).await;
    let resolved: serde_json::Value = serde_json::from_slice(&deliveries.lock().unwrap()[1].2).unwrap();
    assert_eq!(resolved["status"], "resolved");
    server.shutdown().await;
}

fn check_rules(hook: &str) -> RuleFile {
    let text = format!(
        r#"
rules:
  - {{name: CheckFailing, source: check, expr: status != ok, severity: critical, channels: [ops]}}
channels:
  ops: {{type: webhook, url: "{hook}"}}
"#
    );
    RuleFile::parse(&text, "rules.yaml").unwrap()
}

fn failing(check_id: &str, at_ms: i64) -> IngestBatch {
    let result = secumon_core::CheckResult {
        check_id: check_id.into(),
        kind: "tls".into(),
        target: format!("{check_id}.example:443"),
        status: secumon_core::CheckStatus::Critical,
        timestamp_ms: at_ms,
        duration_us: 2_000,
        details: serde_json::json!({"error": "certificate expired"}),
        samples: Vec::new(),
    };
    IngestBatch { agent_id: "probe".into(), host: "probe-1".into(), check_results: vec![result], ..Default::default() }
}

/// After a restart, the stored result of a check no longer configured must not fire (and
/// resolve 30 s later); a live result does fire, and an operator can resolve it by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_results_raise_no_alert_after_a_restart_and_operators_resolve_by_hand() {
    let (hook, deliveries) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let mut config = ServerConfig::loopback(dir.path().join("s.db"));
        config.alerting = Some(check_rules(&hook));
        Server::start(config).await.unwrap()
    };
    // A failing result reaches the store but not the engine (the check was removed before
    // the engine saw it, as far as this server's life goes).
    let server = start().await;
    server.store().write_batch("default", &failing("old-site", now_ms() - 10_000)).await.unwrap();
    server.shutdown().await;

    let server = start().await;
    let api = Raw::new(&server);
    tokio::time::sleep(Duration::from_millis(2_500)).await; // two ticks and more
    let alerts: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    assert_eq!(alerts["alerts"], serde_json::json!([]), "history alone raises nothing");
    assert!(deliveries.lock().unwrap().is_empty());

    // A live result of a configured check does fire.
    server.store().write_batch("default", &failing("shop", now_ms())).await.unwrap();
    server.alerting().observe_batch("default", &failing("shop", now_ms()));
    wait_for(&deliveries, 1).await;
    let alerts: serde_json::Value = api.call(Method::GET, "/alerts", None).await.1;
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "{alerts}");
    let id = alerts["alerts"][0]["id"].as_str().unwrap().to_string();

    // The check is removed for good: the operator closes the alert.
    let resolved = api.request(Method::POST, &format!("/alerts/{id}/resolve"), None).send().await.unwrap();
    assert_eq!(resolved.status(), 200);
    wait_for(&deliveries, 2).await;
    let body: serde_json::Value = serde_json::from_slice(&deliveries.lock().unwrap()[1].2).unwrap();
    assert_eq!(body["status"], "resolved");
    let history: serde_json::Value = api.call(Method::GET, "/alerts/history", None).await.1;
    assert!(history["history"].as_array().unwrap().iter().any(|e| e["kind"] == "resolved_by_operator"), "{history}");
    assert_eq!(api.request(Method::POST, &format!("/alerts/{id}/resolve"), None).send().await.unwrap().status(), 404);
    server.shutdown().await;
}

/// Missing data is not "all clear": a firing alert whose series stops reporting turns
/// `stale` (listed under `?status=stale`, nobody notified), then an operator resolves it and
/// the receiver hears "resolved". The rule reads a 2 s window, so its data goes missing in
/// seconds rather than the five minutes of an instant selector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_whose_data_stops_goes_stale_silently_until_an_operator_resolves_it() {
    let (hook, deliveries) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "rules:\n  - {{name: RoomStillHot, expr: 'max_over_time(temperature_celsius[2s]) > 30', severity: critical, \
         channels: [ops]}}\nchannels:\n  ops: {{type: webhook, url: \"{hook}\"}}\n"
    );
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.alerting = Some(RuleFile::parse(&text, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let api = Raw::new(&server);
    let get = |path: String| {
        let request = api.request(Method::GET, &path, None);
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };

    let hot = batch(vec![Sample::new("temperature_celsius", room("a"), now_ms(), 35.0)]);
    server.store().write_batch("default", &hot).await.unwrap();
    server.alerting().observe_batch("default", &hot);
    wait_for(&deliveries, 1).await;
    let firing: serde_json::Value = serde_json::from_slice(&deliveries.lock().unwrap()[0].2).unwrap();
    assert_eq!(firing["status"], "firing");

    // The sensor stops: within a few ticks the alert is stale, still listed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        let stale = get("/alerts?status=stale".into()).await;
        if stale["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break stale;
        }
        assert!(Instant::now() < deadline, "never went stale: {}", get("/alerts".into()).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let alert = &stale["alerts"][0];
    assert_eq!((alert["rule"].as_str(), alert["state"].as_str()), (Some("RoomStillHot"), Some("stale")), "{stale}");
    assert!(alert["stale_since_ms"].as_i64().is_some(), "{stale}");
    assert_eq!(get("/alerts?status=firing".into()).await["alerts"], serde_json::json!([]));
    let id = alert["id"].as_str().unwrap().to_string();
    // Stale is history, not news: the receiver hears nothing, now or later.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(deliveries.lock().unwrap().len(), 1, "no notification for going stale");
    assert_eq!(get("/alerts?status=stale".into()).await["alerts"][0]["id"], id.as_str(), "still stale");
    let history = get("/alerts/history".into()).await;
    assert!(history["history"].as_array().unwrap().iter().any(|e| e["to"] == "stale"), "{history}");

    // The sensor was removed for good: the operator closes it, and the receiver hears it.
    let resolved = api.request(Method::POST, &format!("/alerts/{id}/resolve"), None).send().await.unwrap();
    assert_eq!(resolved.status(), 200);
    wait_for(&deliveries, 2).await;
    let body: serde_json::Value = serde_json::from_slice(&deliveries.lock().unwrap()[1].2).unwrap();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["labels"]["room"], "a");
    assert_eq!(get("/alerts".into()).await["alerts"], serde_json::json!([]));
    server.shutdown().await;
}
