//! The SecuAAS integrations against a real server and local HTTP servers playing the other
//! side: SecuOps pushing events and metrics (`POST /api/v1/integrations/secuops`) that a
//! rule turns into an action call whose answer lands in the alert history, and a scheduled
//! scan whose scanner is not ready twice before it hands over a SARIF report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use reqwest::Method;
use secumon_alert::RuleFile;
use secumon_server::auth::Role;
use secumon_server::scan_trigger::ScanTriggerFile;
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

/// Requests a fake peer received: method, path, headers and body.
type Seen = Arc<Mutex<Vec<(String, String, HeaderMap, Bytes)>>>;

/// A fake peer on loopback answering with `reply(path, how many calls so far)`.
async fn peer(reply: fn(&str, usize) -> (u16, String)) -> (String, Seen) {
    #[derive(Clone)]
    struct Peer {
        seen: Seen,
        reply: fn(&str, usize) -> (u16, String),
    }
    async fn handle(
        State(peer): State<Peer>,
        method: axum::http::Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let calls = {
            let mut seen = peer.seen.lock().unwrap();
            seen.push((method.to_string(), uri.path().to_string(), headers, body));
            seen.iter().filter(|s| s.1 == uri.path()).count()
        };
        let (status, body) = (peer.reply)(uri.path(), calls);
        (StatusCode::from_u16(status).unwrap(), body)
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(handle).with_state(Peer { seen: Arc::clone(&seen), reply });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

async fn eventually<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secuops_data_is_stored_in_the_callers_tenant_and_an_action_records_the_answer() {
    let (ops, calls) = peer(|_, _| (201, r#"{"run":"rb-77","state":"queued"}"#.into())).await;
    let rules = format!(
        r#"
rules:
  - {{name: QueueDeep, expr: 'secuops_queue_depth > 100', severity: critical, channels: [secuops]}}
channels:
  secuops:
    type: action
    url: {ops}/api/runbooks/drain
    secret_headers: {{Authorization: "Bearer 0PS"}}
    body: '{{"host": "{{{{ $labels.host }}}}", "depth": {{{{ $value }}}}, "status": "{{{{ $labels.status }}}}"}}'
    backoff: 10ms
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    config.alerting = Some(RuleFile::parse(&rules, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    let (_, operator) = accounts.create_api_key("default", "secuops", Role::Operator, "t").await.unwrap();
    let (_, viewer) = accounts.create_api_key("default", "reader", Role::Viewer, "t").await.unwrap();
    let api = Raw::new(&server).with_token(&operator);

    let body = json!({
        "events": [{"severity": "high", "title": "Playbook restart-nginx failed", "host": "web-1",
                    "time": "2026-01-02T03:04:05Z", "attributes": {"playbook": "restart-nginx", "run": 12}}],
        "metrics": [{"name": "secuops_queue_depth", "labels": {"host": "web-1", "queue": "remediation"}, "value": 150},
                    {"name": "secuops_agents_connected", "value": 42}]
    });
    let (status, stored) = api.call(Method::POST, "/integrations/secuops", Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, json!({"events": 1, "metrics": 2, "hosts": 2}));

    // The series answer PromQL, under the host the labels named.
    let (_, answer) = api
        .call(Method::GET, "/prometheus/api/v1/query?query=secuops_queue_depth%7Bqueue%3D%22remediation%22%7D", None)
        .await;
    let result = &answer["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!((result[0]["metric"]["host"].as_str(), result[0]["value"][1].as_str()), (Some("web-1"), Some("150")));
    let (_, answer) = api.call(Method::GET, "/prometheus/api/v1/query?query=secuops_agents_connected", None).await;
    assert_eq!(answer["data"]["result"][0]["metric"]["host"], "secuops", "{answer}");

    // The event is in the events store, with its time, title and attributes.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
    let rows: Vec<(String, String, i64, String, String, String, String)> =
        sqlx::query_as("SELECT tenant_id, host, ts, kind, severity, labels, message FROM events")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (tenant, host, ts, kind, severity, labels, message) = &rows[0];
    assert_eq!((tenant.as_str(), host.as_str(), *ts), ("default", "web-1", 1_767_323_045_000));
    assert_eq!(
        (kind.as_str(), severity.as_str(), message.as_str()),
        ("secuops", "high", "Playbook restart-nginx failed")
    );
    let labels: Value = serde_json::from_str(labels).unwrap();
    assert_eq!(labels, json!({"playbook": "restart-nginx", "run": "12"}));
    db.close().await;

    // The depth fired QueueDeep, which called the action; its answer is in the history.
    let entry = eventually("the action's answer in the history", async || {
        let (_, history) = api.call(Method::GET, "/alerts/history?rule=QueueDeep", None).await;
        history["history"].as_array()?.iter().find(|e| e["kind"] == "action_answered").cloned()
    })
    .await;
    assert_eq!(entry["channel"], "secuops");
    assert_eq!(entry["answer"]["status"], 201);
    assert_eq!(entry["answer"]["body"], r#"{"run":"rb-77","state":"queued"}"#);
    assert!(entry["answer"]["latency_ms"].as_u64().is_some(), "{entry}");
    let seen = calls.lock().unwrap().clone();
    let (method, path, headers, sent) = &seen[0];
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/runbooks/drain"));
    assert_eq!(headers["authorization"], "Bearer 0PS");
    let sent: Value = serde_json::from_slice(sent).unwrap();
    assert_eq!(sent, json!({"host": "web-1", "depth": 150, "status": "firing"}));

    // Refusals: clear 400s naming the field, nothing stored; a viewer may not push.
    for (bad, field) in [
        (json!({"events": [{"severity": "urgent", "title": "t", "host": "h"}]}), "events[0].severity"),
        (json!({"events": [{"severity": "low", "title": "t", "host": "h", "time": "noon"}]}), "events[0].time"),
        (
            json!({"metrics": [{"name": "ok_name", "value": 1, "labels": {"tenant": "globex"}}]}),
            "metrics[0].labels.tenant",
        ),
        (json!({"metrics": [{"name": "x", "value": "high"}]}), "metrics[0].value"),
        (json!({"metrics": [{"name": "x", "value": 1}], "extra": true}), "extra"),
    ] {
        let (status, answer) = api.call(Method::POST, "/integrations/secuops", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field), "{bad}: {answer}");
    }
    let (status, _) =
        Raw::new(&server).call_as(Method::POST, "/integrations/secuops", Some(&viewer), Some(body.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = Raw::new(&server).call_as(Method::POST, "/integrations/secuops", None, Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let many: Vec<Value> = (0..=secumon_api::SECUOPS_MAX_ITEMS).map(|i| json!({"name": "x", "value": i})).collect();
    let (status, answer) = api.call(Method::POST, "/integrations/secuops", Some(json!({"metrics": many}))).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));
    let (_, answer) = api.call(Method::GET, "/prometheus/api/v1/query?query=x", None).await;
    assert_eq!(answer["data"]["result"], json!([]), "refused requests store nothing");
    server.shutdown().await;
}

const SARIF: &str = include_str!("../../secumon-findings/tests/reports/sarif.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_scan_is_started_polled_and_imported_once_per_slot() {
    let (scanner, seen) = peer(|path, calls| match path {
        "/scans" => (201, r#"{"id": "scan 7"}"#.into()),
        // Not ready twice (404, then 202), then the report.
        "/scans/scan%207/report" if calls == 1 => (404, String::new()),
        "/scans/scan%207/report" if calls == 2 => (202, r#"{"state": "running"}"#.into()),
        "/scans/scan%207/report" => (200, SARIF.into()),
        _ => (400, String::new()),
    })
    .await;
    let file = format!(
        "scans:\n  - name: weekly-sast\n    every: 7d\n    start_url: {scanner}/scans\n    \
         start_body: '{{\"target\": \"shop\", \"slot\": \"{{{{ $labels.slot }}}}\", \"by\": \"{{{{ $labels.name }}}}\"}}'\n    \
         secret_headers: {{Authorization: Bearer SC4N}}\n    \
         report_url: '{scanner}/scans/{{{{ $labels.answer.id }}}}/report'\n    format: sarif\n    poll_every: 100ms\n    timeout: 30s\n"
    );
    let scans = ScanTriggerFile::parse(&file, "scans.yaml").unwrap().scans;
    let dir = tempfile::tempdir().unwrap();
    let config = || ServerConfig { scans: scans.clone(), ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config()).await.unwrap();
    let api = Raw::new(&server);

    let findings = eventually("the scan's findings", async || {
        let (_, listed) = api.call(Method::GET, "/findings", None).await;
        let findings = listed["findings"].as_array()?.clone();
        (findings.len() == 3).then_some(findings)
    })
    .await;
    assert!(findings.iter().all(|f| f["status"] == "open"), "{findings:?}");
    let mut ids: Vec<&str> = findings.iter().filter_map(|f| f["id"].as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["sql-injection@src/orders.py", "todo-comment@src/debug.py", "weak-hash@src/auth.py"]);

    let (_, listed) = api.call(Method::GET, "/integrations", None).await;
    let kinds: Vec<(&str, &str)> = listed["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["kind"].as_str().unwrap()))
        .collect();
    assert!(
        kinds.contains(&("weekly-sast", "scheduled_scan")) && kinds.contains(&("secuops", "events_ingest")),
        "{kinds:?}"
    );

    let requests = seen.lock().unwrap().clone();
    let paths: Vec<&str> = requests.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(paths, ["/scans", "/scans/scan%207/report", "/scans/scan%207/report", "/scans/scan%207/report"]);
    let (method, _, headers, body) = &requests[0];
    assert_eq!((method.as_str(), headers["authorization"].to_str().unwrap()), ("POST", "Bearer SC4N"));
    let start: Value = serde_json::from_slice(body).unwrap();
    assert_eq!((start["target"].as_str(), start["by"].as_str()), (Some("shop"), Some("weekly-sast")));
    assert!(start["slot"].as_str().unwrap().ends_with('Z'), "{start}");
    let record = eventually("the run's record", async || {
        let records = server.store().list_records("default", "scan_run", None, 10).await.unwrap();
        let body: Value = serde_json::from_str(&records.first()?.body).unwrap();
        (body["state"] != "started").then_some(body)
    })
    .await;
    assert_eq!((record["state"].as_str(), record["new"].as_u64()), (Some("imported"), Some(3)), "{record}");
    server.shutdown().await;

    // After a restart in the same slot: no second scan.
    let server = Server::start(config()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(seen.lock().unwrap().len(), 4, "the slot already ran");
    server.shutdown().await;
}

/// The SARIF report without its `weak-hash` result: what the scanner finds once it is fixed.
fn sarif_without_weak_hash() -> String {
    let mut report: Value = serde_json::from_str(SARIF).unwrap();
    report["runs"][0]["results"].as_array_mut().unwrap().retain(|r| r["ruleId"] != "weak-hash");
    report.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_slot_runs_once_and_a_later_full_scan_fixes_what_it_no_longer_finds() {
    let (scanner, seen) = peer(|path, calls| match path {
        "/scans" => (201, format!(r#"{{"id": {calls}}}"#)),
        "/reports/1" => (200, SARIF.into()),
        "/reports/2" => (200, sarif_without_weak_hash()),
        _ => (404, String::new()),
    })
    .await;
    let file = format!(
        "scans:\n  - name: often\n    every: 2s\n    start_url: {scanner}/scans\n    \
         report_url: '{scanner}/reports/{{{{ $labels.answer.id }}}}'\n    format: sarif\n    poll_every: 50ms\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::loopback(dir.path().join("s.db"));
    config.scans = ScanTriggerFile::parse(&file, "scans.yaml").unwrap().scans;
    let server = Server::start(config).await.unwrap();
    let api = Raw::new(&server);
    let fixed = eventually("the second run's fix", async || {
        let (_, listed) = api.call(Method::GET, "/findings?status=fixed", None).await;
        let fixed = listed["findings"].as_array()?.clone();
        (!fixed.is_empty()).then_some(fixed)
    })
    .await;
    assert_eq!(fixed.len(), 1);
    assert_eq!(fixed[0]["id"], "weak-hash@src/auth.py");
    let (_, open) = api.call(Method::GET, "/findings?status=open", None).await;
    assert_eq!(open["findings"].as_array().map(Vec::len), Some(2), "{open}");
    // One start per claimed slot, never two (a slot is claimed just before its start, so a
    // claim may be seen whose start is still on its way).
    let starts = seen.lock().unwrap().iter().filter(|r| r.1 == "/scans").count();
    let records = server.store().list_records("default", "scan_run", None, 100).await.unwrap();
    assert!(
        starts >= 2 && (starts..=starts + 1).contains(&records.len()),
        "{starts} starts, {} slots claimed",
        records.len()
    );
    let slots: std::collections::BTreeSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(slots.len(), records.len());
    server.shutdown().await;
}
