//! The action channel against a local HTTP server playing the automation API (SecuOps):
//! the rendered request (method, path, headers, JSON body with escaped labels), retries on
//! 5xx only, no retry on 4xx, and the answer (status, body excerpt, latency) kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use secumon_alert::{AlertSeverity, AlertState, ChannelConfig, Dispatcher, Notification, Transition};

/// One request the fake API received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The fake API: answers each request with the next status of its script (the last one
/// repeats), and a JSON body naming the call.
#[derive(Clone)]
struct Api {
    script: Arc<Vec<u16>>,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn answer(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut received = api.received.lock().unwrap();
    received.push(Received { method, path: uri.path().to_string(), headers, body });
    let call = received.len();
    let status = api.script.get(call - 1).or(api.script.last()).copied().unwrap_or(200);
    (StatusCode::from_u16(status).unwrap(), format!("{{\"run\":\"job-{call}\",\"padding\":\"{}\"}}", "x".repeat(4000)))
}

/// Starts the fake API on loopback; returns its base URL and the requests it will see.
async fn start(script: &[u16]) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = Api { script: Arc::new(script.to_vec()), received: Arc::default() };
    let received = Arc::clone(&api.received);
    let app = axum::Router::new().fallback(answer).with_state(api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

fn notification() -> Notification {
    Notification::single(Transition {
        rule: "DiskFull".into(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "DiskFull".to_string()),
            ("host".to_string(), "web-\"1\"".to_string()),
        ]),
        from: AlertState::Pending,
        to: AlertState::Firing,
        at_ms: 1,
        value: 0.934,
        severity: AlertSeverity::Critical,
        annotations: BTreeMap::from([("summary".to_string(), "disk of web-1 at 93%".to_string())]),
        channels: vec!["secuops".into()],
        silenced: false,
        escalation_level: 0,
    })
}

fn dispatcher(base: &str, extra: &str) -> Dispatcher {
    let yaml = format!(
        "type: action\nmethod: PUT\nurl: {base}/api/runbooks/clean-disk\n\
         headers: {{X-Source: secumon}}\nsecret_headers: {{Authorization: Bearer T0KEN}}\n\
         body: '{{\"host\": \"{{{{ $labels.host }}}}\", \"rule\": \"{{{{ $labels.alertname }}}}\", \
         \"status\": \"{{{{ $labels.status }}}}\", \"used\": \"{{{{ humanizePercentage $value }}}}\"}}'\n\
         backoff: 10ms\n{extra}"
    );
    let config: ChannelConfig = secumon_core::config::parse_yaml(&yaml, "rules.yaml").unwrap();
    Dispatcher::new(HashMap::from([("secuops".to_string(), config.build().unwrap())]))
}

#[tokio::test]
async fn the_rendered_request_arrives_and_the_answer_is_kept() {
    let (base, received) = start(&[200]).await;
    let dispatcher = dispatcher(&base, "");
    let last = dispatcher.deliver_all(&notification()).await;

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("PUT", "/api/runbooks/clean-disk"));
    assert_eq!(request.headers["authorization"], "Bearer T0KEN");
    assert_eq!(request.headers["x-source"], "secumon");
    assert_eq!(request.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&request.body).expect("the body is JSON");
    assert_eq!(
        body,
        serde_json::json!({"host": "web-\"1\"", "rule": "DiskFull", "status": "firing", "used": "93.4%"}),
        "a quote in a label stays inside its string"
    );

    assert_eq!(last.len(), 1);
    assert!(last[0].error.is_none(), "{last:?}");
    let answer = last[0].answer.as_ref().expect("the answer is kept");
    assert_eq!(answer.status, 200);
    assert!(answer.body.starts_with("{\"run\":\"job-1\""), "{}", answer.body);
    assert_eq!(answer.body.len(), secumon_alert::ANSWER_EXCERPT_BYTES, "a bounded excerpt");
    assert!(answer.latency_ms < 5_000);
    assert!(dispatcher.deliver(&notification()).await.is_empty(), "deliver reports failures only");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    let (base, received) = start(&[500, 503, 200]).await;
    let dispatcher = dispatcher(&base, "retries: 3\n");
    let last = dispatcher.deliver_all(&notification()).await;
    assert_eq!(received.lock().unwrap().len(), 3);
    assert!(last[0].error.is_none() && last[0].attempt == 3, "{last:?}");
    assert!(last[0].answer.as_ref().unwrap().body.contains("job-3"));
    let attempts = dispatcher.attempts();
    let statuses: Vec<u16> = attempts.iter().map(|a| a.answer.as_ref().unwrap().status).collect();
    assert_eq!(statuses, [500, 503, 200], "every try's answer is recorded");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (base, received) = start(&[422]).await;
    let dispatcher = dispatcher(&base, "retries: 3\n");
    let failed = dispatcher.deliver(&notification()).await;
    assert_eq!(received.lock().unwrap().len(), 1, "a 4xx is not tried again");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].gave_up && failed[0].attempt == 1, "{failed:?}");
    assert_eq!(failed[0].error.as_deref(), Some("receiver refused the request with HTTP 422; not retried"));
    assert_eq!(failed[0].answer.as_ref().map(|a| a.status), Some(422));
}

#[tokio::test]
async fn a_timeout_is_retried_then_given_up() {
    // A listener that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let dispatcher = dispatcher(&base, "retries: 1\ntimeout: 200ms\n");
    let started = std::time::Instant::now();
    let failed = dispatcher.deliver(&notification()).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "two tries of 200 ms");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].gave_up && failed[0].attempt == 2 && failed[0].answer.is_none(), "{failed:?}");
    assert!(failed[0].error.as_deref().unwrap().contains("127.0.0.1"), "{failed:?}");
    held.abort();
}
