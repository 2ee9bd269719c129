//! The read endpoints the console lives on: a host's latest values in one call, a network
//! target's checks with latency history, dashboards, integrations.

use reqwest::{Client, Method, StatusCode};
use secumon_core::{CheckResult, CheckStatus, IngestBatch, Labels, Sample, now_ms};
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_summaries_network_targets_dashboards_and_integrations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let http = Client::new();
    let api = Raw::new(&server);
    let now = now_ms();
    let host = |name: &str| Labels::from([("host".to_string(), "web-1".to_string()), ("cpu".to_string(), name.into())]);
    let batch = IngestBatch {
        agent_id: "agent-1".into(),
        sequence: 1,
        host: "web-1".into(),
        samples: vec![
            Sample::new("cpu_usage_ratio", host("all"), now - 20_000, 0.9),
            Sample::new("cpu_usage_ratio", host("all"), now - 10_000, 0.25),
            Sample::new("load1", host("all"), now - 10_000, 2.0),
        ],
        check_results: vec![CheckResult {
            check_id: "shop-https".into(),
            kind: "http".into(),
            target: "https://shop.example".into(),
            status: CheckStatus::Ok,
            timestamp_ms: now - 5_000,
            duration_us: 120_000,
            details: json!({"status_code": 200}),
            samples: Vec::new(),
        }],
        ..Default::default()
    };
    server.store().write_batch("default", &batch).await.unwrap();

    let (status, summary) = api.call(Method::GET, "/metrics/hosts/web-1", None).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["agents"][0]["id"], "agent-1");
    assert_eq!(summary["metrics"]["cpu_usage_ratio"][0]["value"], 0.25, "the latest value: {summary}");
    assert_eq!(summary["metrics"]["load1"][0]["value"], 2.0);
    // Each value carries the time it was measured, not the start of the lookup window:
    // that is what anyone judging staleness reads.
    assert_eq!(summary["metrics"]["cpu_usage_ratio"][0]["timestamp_ms"], now - 10_000, "{summary}");
    assert_eq!(summary["metrics"]["load1"][0]["timestamp_ms"], now - 10_000, "{summary}");
    assert_eq!(summary["metrics"]["memory_used_ratio"], json!([]), "asked for but never sent");
    let (_, only) = api.call(Method::GET, "/metrics/hosts/web-1?metrics=load1", None).await;
    assert_eq!(only["metrics"].as_object().unwrap().keys().collect::<Vec<_>>(), ["load1"]);
    let (status, _) = api.call(Method::GET, "/metrics/hosts/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.call(Method::GET, "/metrics/hosts/web-1?metrics=,", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    for path in ["/metrics/network/shop-https", "/metrics/network/https:%2F%2Fshop.example?period=24h"] {
        let (status, target) = api.call(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {target}");
        assert_eq!(target["checks"][0]["result"]["check_id"], "shop-https");
        let points = target["latency"][0]["points"].as_array().unwrap();
        let measured: Vec<f64> = points.iter().filter_map(|p| p[1].as_f64()).collect();
        assert_eq!(measured, [0.12], "{path}: {target}");
    }
    let (status, _) = api.call(Method::GET, "/metrics/network/elsewhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The typed client reads both answers as the API's types.
    let typed = common::typed(&server, None);
    let summary = typed.host_summary("web-1", &Default::default()).await.unwrap();
    assert_eq!(summary.agents[0].id, "agent-1");
    assert_eq!(summary.metrics["load1"][0].value, 2.0);
    let query = secumon_api::NetworkQuery { period: Some("24h".into()) };
    let target = typed.network_target("https://shop.example", &query).await.unwrap();
    assert_eq!(target.checks[0].result.check_id, "shop-https");
    assert_eq!(target.latency[0].points.iter().filter_map(|p| p.1).collect::<Vec<_>>(), [0.12]);

    let layout = json!({"name": "NOC", "layout": {"panels": [{"host": "web-1", "metric": "load1"}]}});
    let (status, created) = api.call(Method::POST, "/dashboards", Some(layout.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (_, read) = api.call(Method::GET, &format!("/dashboards/{id}"), None).await;
    assert_eq!(read["layout"], layout["layout"]);
    let (_, listed) = api.call(Method::GET, "/dashboards", None).await;
    assert_eq!((listed["total"].as_u64(), listed["dashboards"][0]["name"].as_str()), (Some(1), Some("NOC")));
    let renamed = json!({"name": "NOC 2", "layout": {}});
    let (status, _) = api.call(Method::PUT, &format!("/dashboards/{id}"), Some(renamed)).await;
    assert_eq!(status, StatusCode::OK);
    let too_big = json!({"name": "x", "layout": {"blob": "a".repeat(70_000)}});
    let (status, _) = api.call(Method::POST, "/dashboards", Some(too_big)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.call(Method::POST, "/dashboards", Some(json!({"name": "x", "layout": []}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a layout is an object");
    let (status, _) = api.call(Method::DELETE, &format!("/dashboards/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::GET, &format!("/dashboards/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let document = http.get(format!("http://{}/api/v1/openapi.json", server.api_addr())).send().await.unwrap();
    assert_eq!(document.status(), StatusCode::OK, "served without a token");
    let document: Value = document.json().await.unwrap();
    assert!(document["paths"]["/api/v1/dashboards/{id}"]["put"].is_object());

    let (_, config) = api.call(Method::GET, "/config", None).await;
    let defaults = json!({"raw": "30d", "rollup_5m": "90d", "rollup_1h": "365d"});
    assert_eq!(config, json!({"agent_offline_after": "2m", "default_history_period": "1h", "retention": defaults}));
    for bad in [json!({"agent_offline_after": "10d"}), json!({"default_history_period": "soon"}), json!({"colour": 1})]
    {
        let (status, answer) = api.call(Method::PUT, "/config", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    let (_, unchanged) = api.call(Method::GET, "/config", None).await;
    assert_eq!(unchanged, config, "a refused change stores nothing");
    let short = json!({"agent_offline_after": "30s", "default_history_period": "5m"});
    let (status, _) = api.call(Method::PUT, "/config", Some(short.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = api.call(Method::GET, "/metrics/hosts/web-1/history?metric=load1", None).await;
    let covered = history["end_ms"].as_i64().unwrap() - history["start_ms"].as_i64().unwrap();
    assert!((300_000..=310_000).contains(&covered), "the tenant's default period applies: {history}");

    let integrations = common::typed(&server, None).integrations().await.unwrap();
    let secuscan = &integrations.integrations[0];
    assert_eq!(secuscan.name, "secuscan");
    assert!(secuscan.formats.as_ref().unwrap().iter().any(|f| f == "sarif"), "{integrations:?}");
    server.shutdown().await;
}
