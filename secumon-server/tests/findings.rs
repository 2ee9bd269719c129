//! Scanner reports through the server: `POST /api/v1/integrations/secuscan` takes a Trivy
//! report whole, the seed's rule (`source: secuscan`, `condition: severity >= CRITICAL`)
//! pages on the new critical finding, a malformed report changes nothing, and a later full
//! scan without the finding fixes it and resolves the alert.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use secumon_alert::RuleFile;
use secumon_server::{Server, ServerConfig};
use serde_json::Value;

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(received): State<Received>, Json(body): Json<Value>) {
    received.lock().unwrap().push(body);
}

const TRIVY: &str = include_str!("../../secumon-findings/tests/reports/trivy.json");

async fn notified(received: &Received, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(n) = received.lock().unwrap().iter().find(|n| n["status"] == status).cloned() {
            return n;
        }
        assert!(Instant::now() < deadline, "no {status} notification");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_finding_pages_and_its_fix_resolves() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    let rules = format!(
        "rules:\n  - {{name: CriticalVuln, source: secuscan, condition: severity >= CRITICAL, severity: critical, \
         channels: [ops], annotations: {{summary: \"{{{{ $labels.finding }}}} on {{{{ $labels.asset }}}}\"}}}}\n\
         channels:\n  ops: {{type: webhook, url: \"{hook}\"}}\n"
    );
    config.alerting = Some(RuleFile::parse(&rules, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let api = format!("http://{}/api/v1", server.api_addr());
    let http = reqwest::Client::new();

    let imported: Value =
        http.post(format!("{api}/integrations/secuscan")).body(TRIVY).send().await.unwrap().json().await.unwrap();
    assert_eq!(imported["format"], "trivy");
    assert_eq!((imported["new"].as_u64(), imported["fixed"].as_u64()), (Some(4), Some(0)));
    let firing = notified(&received, "firing").await;
    assert_eq!(firing["rule"], "CriticalVuln");
    assert_eq!(
        firing["alerts"][0]["annotations"]["summary"],
        "CVE-2024-3094:liblzma5 on registry.example.com/shop/web:1.4.2"
    );

    let high: Value = http.get(format!("{api}/findings?severity=high")).send().await.unwrap().json().await.unwrap();
    assert_eq!(high["findings"].as_array().unwrap().len(), 3);
    let bad = http.get(format!("{api}/findings?severity=dire")).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    // A truncated report is refused with its position; nothing of it is stored.
    let truncated = &TRIVY[..900];
    let refused =
        http.post(format!("{api}/findings?origin=nightly.json")).body(truncated.to_string()).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let message = refused.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.starts_with("nightly.json:"), "{message}");
    let all: Value = http.get(format!("{api}/findings")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["findings"].as_array().unwrap().len(), 4);

    // The next full scan of the image no longer has the xz backdoor: fixed, alert resolved.
    let without_xz = TRIVY
        .replace("\"VulnerabilityID\": \"CVE-2024-3094\"", "\"VulnerabilityID\": \"CVE-2024-0000\"")
        .replace("\"CRITICAL\"", "\"LOW\"");
    let imported: Value =
        http.post(format!("{api}/findings?format=trivy")).body(without_xz).send().await.unwrap().json().await.unwrap();
    assert_eq!((imported["new"].as_u64(), imported["fixed"].as_u64()), (Some(1), Some(1)));
    let resolved = notified(&received, "resolved").await;
    assert_eq!(resolved["rule"], "CriticalVuln");
    let fixed: Value = http.get(format!("{api}/findings?status=fixed")).send().await.unwrap().json().await.unwrap();
    assert_eq!(fixed["findings"][0]["id"], "CVE-2024-3094:liblzma5");
    server.shutdown().await;
}
