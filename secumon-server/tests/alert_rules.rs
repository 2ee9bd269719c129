//! Alert rules managed through the REST API against a real server: validation errors,
//! create/replace/delete, a rule test against stored data, per-rule history, rules kept
//! across a restart; and the rule sources beyond metrics (checks, silent agents, logs)
//! firing through the whole pipeline; and a delivery that fails for good leaving a trace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use secumon_alert::RuleFile;
use secumon_core::{CheckResult, CheckStatus, IngestBatch, Labels, LogRecord, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use secumon_transport::{PushClient, PushClientConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(received): State<Received>, Json(body): Json<Value>) {
    received.lock().unwrap().push(body);
}

async fn start_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hook, received)
}

/// A port nothing listens on: connections are refused at once.
fn dead_url() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    drop(socket);
    format!("http://127.0.0.1:{port}/hook")
}

fn config(dir: &std::path::Path, hook: &str, dead: &str) -> ServerConfig {
    let text = format!(
        r#"
rules:
  - {{name: FromFile, expr: never_sent_metric > 1, severity: info, channels: [ops]}}
channels:
  ops: {{type: webhook, url: "{hook}"}}
  dead: {{type: webhook, url: "{dead}"}}
"#
    );
    let mut config = ServerConfig::loopback(dir.join("s.db"));
    config.alerting = Some(RuleFile::parse(&text, "rules.yaml").unwrap());
    config
}

/// Waits until the receiver got a notification for `rule` with `status`; returns it.
async fn notified(received: &Received, rule: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = received.lock().unwrap().iter().find(|n| n["rule"] == rule && n["status"] == status).cloned();
        if let Some(notification) = found {
            return notification;
        }
        assert!(Instant::now() < deadline, "no {status} notification for {rule}: {:?}", received.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Api {
    raw: Raw,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, answer) = self.raw.call(method, path, body).await;
        (status.as_u16(), answer)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

fn agent(client: &PushClient) -> tokio::task::JoinHandle<()> {
    let runner = client.clone();
    tokio::spawn(async move {
        let _ = runner.run(std::future::pending()).await;
    })
}

fn batch(host: &str) -> IngestBatch {
    IngestBatch { agent_id: format!("{host}-agent"), host: host.into(), ..Default::default() }
}

fn disk(value: f64) -> Sample {
    Sample::new("disk_used_ratio", Labels::from([("mount".to_string(), "/".to_string())]), now_ms(), value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_managed_tested_and_kept_through_the_api() {
    let (hook, received) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let server = Server::start(config(dir.path(), &hook, &dead)).await.unwrap();
    let api = Api { raw: Raw::new(&server) };
    let client =
        PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
    let pushing = agent(&client);

    let (status, listed) = api.get("/alert-rules").await;
    assert_eq!(status, 200);
    assert_eq!(listed["rules"][0]["id"], "FromFile");
    assert_eq!(listed["rules"][0]["origin"], "file");

    // Bad rules are refused with a reason naming what is wrong.
    let refused = [
        (json!({"name": "X", "expr": "rate(x) > 1", "severity": "info"}), 400, "rate"),
        (json!({"name": "X", "expr": "x > 1", "severity": "info", "channels": ["nowhere"]}), 400, "nowhere"),
        (json!({"name": "X", "expr": "x > 1", "severity": "dire"}), 400, "severity"),
        (json!({"name": "X", "expr": "x > 1", "severity": "info", "colour": "red"}), 400, "colour"),
        (json!({"name": "FromFile", "expr": "x > 1", "severity": "info"}), 409, "exists"),
    ];
    for (body, code, needle) in refused {
        let (status, answer) = api.post("/alert-rules", body.clone()).await;
        assert_eq!(status, code, "{body} → {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(needle), "{body} → {answer}");
    }

    // A metric rule made through the API fires on the next sample.
    let disk_rule = json!({"name": "DiskFull", "expr": "disk_used_ratio > 0.9", "severity": "critical",
        "channels": ["ops"], "annotations": {"summary": "{{ $labels.host }} disk at {{ $value }}"}});
    assert_eq!(api.post("/alert-rules", disk_rule.clone()).await, (201, json!({"id": "DiskFull"})));
    client.enqueue(IngestBatch { samples: vec![disk(0.95)], ..batch("db-1") }).await.unwrap();
    let firing = notified(&received, "DiskFull", "firing").await;
    assert_eq!(firing["alerts"][0]["annotations"]["summary"], "db-1 disk at 0.95");

    // The rule test evaluates against stored data, without notifying.
    let (status, test) = api.get("/alert-rules/DiskFull/test").await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["alerts"][0]["state"], "firing");
    assert_eq!(test["alerts"][0]["labels"]["host"], "db-1");
    assert_eq!(test["alerts"][0]["value"], 0.95);
    let (_, file_test) = api.get("/alert-rules/FromFile/test").await;
    assert_eq!(file_test["alerts"], json!([]), "nothing would fire");

    // Replacing the rule: at 0.99 the same disk no longer qualifies and the alert resolves.
    let stricter = json!({"name": "DiskFull", "expr": "disk_used_ratio > 0.99", "severity": "critical",
        "channels": ["ops"]});
    let (status, _) = api.call(reqwest::Method::PUT, "/alert-rules/DiskFull", Some(stricter)).await;
    assert_eq!(status, 200);
    client.enqueue(IngestBatch { samples: vec![disk(0.95)], ..batch("db-1") }).await.unwrap();
    notified(&received, "DiskFull", "resolved").await;

    let (_, history) = api.get("/alert-rules/DiskFull/history").await;
    let kinds: Vec<(&str, &str)> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["to"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        kinds,
        vec![("transition", "resolved"), ("rule_updated", ""), ("transition", "firing"), ("rule_created", "")]
    );

    // File rules are read-only; unknown ones are 404.
    let (status, _) = api.call(reqwest::Method::DELETE, "/alert-rules/FromFile", None).await;
    assert_eq!(status, 409);
    assert_eq!(api.get("/alert-rules/Nope/test").await.0, 404);
    assert_eq!(api.get("/alert-rules/Nope/history").await.0, 404);

    // Rules for checks, silent agents and logs, and one whose channel is down.
    let more = [
        json!({"name": "SiteDown", "source": "check", "check": {"kind": "http"}, "expr": "status != ok",
            "severity": "critical", "channels": ["ops"]}),
        json!({"name": "AgentDown", "source": "agent", "no_data": "2s", "severity": "critical", "channels": ["ops"]}),
        json!({"name": "OomKills", "source": "log", "pattern": "Out of memory: Killed process", "window": "1m",
            "expr": "count >= 2", "severity": "warning", "channels": ["ops"]}),
        json!({"name": "Unheard", "expr": "door_open > 0", "severity": "info", "channels": ["dead"]}),
    ];
    for rule in more {
        assert_eq!(api.post("/alert-rules", rule.clone()).await.0, 201, "{rule}");
    }
    client
        .enqueue(IngestBatch { samples: vec![Sample::new("door_open", Labels::new(), now_ms(), 1.0)], ..batch("gate") })
        .await
        .unwrap();
    let check = CheckResult {
        check_id: "shop".into(),
        kind: "http".into(),
        target: "https://shop.example".into(),
        status: CheckStatus::Critical,
        timestamp_ms: now_ms(),
        duration_us: 1_200,
        details: json!({"error": "connection refused"}),
        samples: vec![],
    };
    client.enqueue(IngestBatch { check_results: vec![check], ..batch("probe-1") }).await.unwrap();
    let down = notified(&received, "SiteDown", "firing").await;
    assert_eq!(down["alerts"][0]["labels"]["target"], "https://shop.example");
    assert_eq!(down["alerts"][0]["labels"]["host"], "probe-1");

    let oom = |ts| LogRecord {
        timestamp_ms: ts,
        source: "journald".into(),
        labels: Labels::new(),
        line: "kernel: Out of memory: Killed process 4242 (java)".into(),
    };
    client.enqueue(IngestBatch { logs: vec![oom(now_ms())], ..batch("app-1") }).await.unwrap();
    client.enqueue(IngestBatch { logs: vec![oom(now_ms())], ..batch("app-1") }).await.unwrap();
    let ooms = notified(&received, "OomKills", "firing").await;
    assert_eq!(ooms["alerts"][0]["labels"]["host"], "app-1");
    assert_eq!(ooms["alerts"][0]["value"], 2.0);
    let (status, logs) = api.get("/logs/hosts/app-1?limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2);
    assert_eq!(logs["logs"][0]["source"], "journald");

    // Every agent above has gone quiet: after 2 s each is reported down; one comes back.
    let agent_down = notified(&received, "AgentDown", "firing").await;
    assert!(agent_down["alerts"][0]["labels"]["agent_id"].as_str().unwrap().ends_with("-agent"));
    client.enqueue(batch("db-1")).await.unwrap();
    let back = notified(&received, "AgentDown", "resolved").await;
    assert_eq!(back["alerts"][0]["labels"]["host"], "db-1");

    // The dead channel: retried, then given up on, visibly.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stats) = api.get("/alerts/stats").await;
        if stats["delivery_failures"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the failed delivery was never reported: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, history) = api.get("/alerts/history?rule=Unheard").await;
    let failed = &history["history"][0];
    assert_eq!((failed["kind"].as_str(), failed["channel"].as_str()), (Some("delivery_failed"), Some("dead")));
    assert_eq!(failed["attempts"], 4, "first try and three retries");

    pushing.abort();
    server.shutdown().await;

    // After a restart the API rules are still there; deleting one works and sticks.
    let server = Server::start(config(dir.path(), &hook, &dead)).await.unwrap();
    let api = Api { raw: Raw::new(&server) };
    let (_, listed) = api.get("/alert-rules").await;
    let ids: Vec<&str> = listed["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    // The server's own rules on its store are built in beside the file's.
    assert_eq!(
        ids,
        vec![
            "FromFile",
            "SecumonStoreUnwritable",
            "SecumonStoreMaintenanceFailing",
            "DiskFull",
            "SiteDown",
            "AgentDown",
            "OomKills",
            "Unheard"
        ]
    );
    assert_eq!(listed["rules"][3]["rule"]["expr"], "disk_used_ratio > 0.99");
    let (status, _) = api.call(reqwest::Method::DELETE, "/alert-rules/DiskFull", None).await;
    assert_eq!(status, 204);
    assert_eq!(api.get("/alert-rules/DiskFull").await.0, 404);
    server.shutdown().await;
    let server = Server::start(config(dir.path(), &hook, &dead)).await.unwrap();
    assert!(server.alerting().rules().await.iter().all(|r| r.id != "DiskFull"));
    server.shutdown().await;
}

/// A tenant admin's rule nested 100 000 deep used to overflow the parser's stack and abort
/// the server; now it is refused before parsing and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_nested_beyond_the_limit_is_refused_and_the_server_lives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let api = Api { raw: Raw::new(&server) };
    for depth in [40, 10_000, 100_000] {
        let expr = format!("{}x{} > 1", "(".repeat(depth), ")".repeat(depth));
        let (status, body) = api.post("/alert-rules", json!({"name": "Deep", "expr": expr, "severity": "info"})).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("too large") && message.len() < 1_000, "{message}");
    }
    let chain = format!("x{} > 1", " + x".repeat(100_000));
    let (status, body) = api.post("/alert-rules", json!({"name": "Long", "expr": chain, "severity": "info"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api.get("/alert-rules").await;
    assert_eq!(status, 200, "the server still serves");
    server.shutdown().await;
}

/// The rules file's channels are the provider's: a tenant's admin may name only those
/// opened to that tenant, and a failed delivery's error shown to the tenant carries no
/// webhook token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_name_only_channels_opened_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
rules: []
channels:
  provider-pager: {type: webhook, url: "http://127.0.0.1:9/provider/TOKENSECRET"}
  acme-slack: {type: slack, webhook_url: "http://127.0.0.1:9/services/TOKENSECRET", tenants: [acme]}
"#;
    let mut config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    config.alerting = Some(RuleFile::parse(text, "rules.yaml").unwrap());
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.create_tenant("acme").await.unwrap();
    let (_, admin) = accounts.create_api_key("acme", "admin", secumon_server::auth::Role::Admin, "t").await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/alert-rules", server.api_addr());
    let rule = |channel: &str| json!({"name": format!("To{channel}"), "expr": "x > 1", "severity": "info", "channels": [channel]});

    let refused = http.post(&url).bearer_auth(&admin).json(&rule("provider-pager")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("provider-pager"), "{body}");
    let accepted = http.post(&url).bearer_auth(&admin).json(&rule("acme-slack")).send().await.unwrap();
    assert_eq!(accepted.status(), 201);

    // A firing alert whose delivery fails: the history the tenant reads names no token.
    let push = json!({"source": "t", "host": "web-1", "samples": [{"name": "x", "value": 5.0}]});
    let ingest = format!("http://{}/api/v1/ingest", server.api_addr());
    assert_eq!(http.post(&ingest).bearer_auth(&admin).json(&push).send().await.unwrap().status(), 200);
    let history_url = format!("http://{}/api/v1/alerts/history", server.api_addr());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = http.get(&history_url).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
        assert!(!history.contains("TOKENSECRET"), "{history}");
        if history.contains("error sending request") {
            break;
        }
        assert!(Instant::now() < deadline, "no failed delivery recorded: {history}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await;
}

/// With an agent down and `AgentDown` firing, a restart keeps the alert listed and firing
/// without a second page; a script pushing through `POST /ingest` is no agent that goes
/// down; deleting the down agent closes its alert for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_down_survives_a_restart_silently_and_deleted_agents_never_page() {
    let (hook, received) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let text = format!(
            "rules:\n  - {{name: AgentDown, source: agent, no_data: 2s, severity: critical, channels: [ops]}}\n\
             channels:\n  ops: {{type: webhook, url: \"{hook}\"}}\n"
        );
        let mut config = ServerConfig::loopback(dir.path().join("s.db"));
        config.alerting = Some(RuleFile::parse(&text, "rules.yaml").unwrap());
        Server::start(config).await.unwrap()
    };
    let server = start().await;
    let api = Api { raw: Raw::new(&server) };
    let client =
        PushClient::open(PushClientConfig::new(server.grpc_addr().to_string(), dir.path().join("spool"))).unwrap();
    let pushing = agent(&client);
    client.enqueue(IngestBatch { samples: vec![disk(0.5)], ..batch("web-1") }).await.unwrap();
    let (status, _) = api
        .post(
            "/ingest",
            json!({"source": "nightly-backup", "host": "backup-1",
            "samples": [{"name": "backup_bytes", "value": 1024.0}]}),
        )
        .await;
    assert_eq!(status, 200);
    let down = notified(&received, "AgentDown", "firing").await;
    assert_eq!(down["alerts"][0]["labels"]["agent_id"], "web-1-agent");
    pushing.abort();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let firing = |received: &Received| received.lock().unwrap().iter().filter(|n| n["status"] == "firing").count();
    assert_eq!(firing(&received), 1, "the API pusher is not an agent: {:?}", received.lock().unwrap());
    let (_, before) = api.get("/alerts").await;
    server.shutdown().await;

    let server = start().await;
    let api = Api { raw: Raw::new(&server) };
    // Through the whole `no_data` grace others get after a restart, and past it.
    let firing_since = |alerts: &Value| {
        let alerts = alerts["alerts"].as_array().cloned().unwrap_or_default();
        alerts.iter().map(|a| (a["id"].clone(), a["state"].clone(), a["since_ms"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(firing_since(&before).len(), 1);
    for _ in 0..4 {
        let (_, after) = api.get("/alerts").await;
        assert_eq!(firing_since(&after), firing_since(&before), "still firing, the same alert: {after}");
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    assert_eq!(firing(&received), 1, "no second page: {:?}", received.lock().unwrap());

    // web-1 is deleted: its alert closes, and it never pages again.
    let (status, _) = api.call(reqwest::Method::DELETE, "/agents/web-1-agent", None).await;
    assert_eq!(status, 204);
    notified(&received, "AgentDown", "resolved").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(firing(&received), 1, "{:?}", received.lock().unwrap());
    assert_eq!(api.get("/alerts").await.1["alerts"], json!([]));

    // A batch that was in flight when it was deleted arrives late (no enrollment here, so
    // nothing refuses it): web-1 is listed again, it is alive, but it pages for nothing.
    push_raw(server.grpc_addr(), "web-1-agent", "web-1", 1_000).await;
    assert_eq!(api.get("/agents/web-1-agent").await.1["status"], "online");
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(firing(&received), 1, "one late batch is no agent to page about: {:?}", received.lock().unwrap());
    assert_eq!(api.get("/alert-rules/AgentDown/test").await.1["alerts"], json!([]), "nor would the rule's test");
    server.shutdown().await;

    // Nor after a restart, though the store lists it again.
    let server = start().await;
    let api = Api { raw: Raw::new(&server) };
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(firing(&received), 1, "{:?}", received.lock().unwrap());
    assert_eq!(api.get("/alerts").await.1["alerts"], json!([]));

    // Re-installed under the same id: it pushes for longer than `no_data`, then stops. It
    // is an agent like any other again, and down when it goes quiet.
    for sequence in 1_001..1_007 {
        push_raw(server.grpc_addr(), "web-1-agent", "web-1", sequence).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while firing(&received) < 2 {
        assert!(Instant::now() < deadline, "the re-installed agent never paged: {:?}", received.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = received.lock().unwrap().iter().rev().find(|n| n["status"] == "firing").cloned().unwrap();
    assert_eq!(last["alerts"][0]["labels"]["agent_id"], "web-1-agent");
    server.shutdown().await;
}

/// Pushes one batch of `agent` straight over gRPC (no spool), stamped now, with `sequence`.
async fn push_raw(addr: std::net::SocketAddr, agent: &str, host: &str, sequence: u64) {
    use secumon_core::proto::{AckStatus, Batch, SeriesSamples};
    use secumon_transport::grpc::ingest_client::IngestClient;
    let mut client = IngestClient::connect(format!("http://{addr}")).await.expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut acks = client.push(tokio_stream::wrappers::ReceiverStream::new(rx)).await.expect("push").into_inner();
    let now = now_ms();
    let batch = Batch {
        agent_id: agent.into(),
        sequence,
        host: host.into(),
        created_at_ms: now,
        series: vec![SeriesSamples {
            name: "load1".into(),
            timestamps_ms: vec![now],
            values: vec![0.5],
            ..Default::default()
        }],
        sent_at_ms: now,
        ..Default::default()
    };
    tx.send(batch).await.unwrap();
    let ack = acks.message().await.expect("ack stream").expect("an ack");
    assert_eq!(ack.status(), AckStatus::Committed, "{}", ack.error);
}
