//! `GET /api/v1/overview` against a real server on loopback with tokens required: hosts
//! pushed over HTTP with their labels, a rule that fires on one of them, then every row's
//! gauges and alerts, paging, sorting, the filter, grouping with counts, and the
//! super-admin's view of every tenant (refused to anyone else). The console's client reads
//! the same list.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use secumon_server::auth::{LoginOutcome, Role};
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

const PASSWORD: &str = "a long test password";
const HOSTS: usize = 30;
const CLIENTS: [&str; 3] = ["acme", "globex", "initech"];

struct Api {
    raw: Raw,
}

impl Api {
    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.raw.call_as(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self.raw.call_as(Method::POST, path, Some(token), Some(body)).await;
        assert!(status.is_success(), "{path}: {status}");
        answer
    }
}

/// Host `i`'s client label: every fifth host has none.
fn client_of(i: usize) -> Option<&'static str> {
    (i % 5 != 4).then(|| CLIENTS[i % 3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_gives_the_fleet_paged_sorted_filtered_and_grouped() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.add_user("root", PASSWORD, "default", Role::Admin, true).await.unwrap();
    accounts.create_tenant("acme").await.unwrap();
    let (_, key) = accounts.create_api_key("default", "ops", Role::Admin, "t").await.unwrap();
    let (_, acme_key) = accounts.create_api_key("acme", "ops", Role::Admin, "t").await.unwrap();
    let api = Api { raw: Raw::new(&server) };
    api.post(&key, "/alert-rules", json!({"name": "CpuHot", "expr": "cpu_usage_ratio > 0.9", "severity": "warning"}))
        .await;
    for i in 0..HOSTS {
        let labels: BTreeMap<&str, &str> = client_of(i).map(|c| ("client", c)).into_iter().collect();
        let cpu = if i == 7 { 0.95 } else { i as f64 / 100.0 };
        api.post(
            &key,
            "/ingest",
            json!({"source": format!("host-{i:02}"), "host": format!("host-{i:02}"), "labels": labels, "samples": [
                {"name": "cpu_usage_ratio", "value": cpu},
                {"name": "memory_used_ratio", "value": 0.5},
                {"name": "filesystem_used_ratio", "labels": {"mountpoint": "/"}, "value": 0.25},
                {"name": "filesystem_used_ratio", "labels": {"mountpoint": "/data"}, "value": 0.75},
            ]}),
        )
        .await;
    }
    api.post(
        &acme_key,
        "/ingest",
        json!({"source": "a", "host": "acme-web", "samples": [{"name": "up", "value": 1.0}]}),
    )
    .await;

    // The rule fires on host-07 once its sample is evaluated.
    let mut whole = Value::Null;
    for _ in 0..100 {
        let (status, body) = api.get(&key, "/overview").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        whole = body;
        if whole["hosts"][0]["firing"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((whole["total"].as_u64(), whole["known"].as_u64()), (Some(HOSTS as u64), Some(HOSTS as u64)));
    assert!(whole["next_offset"].is_null(), "one page holds them all: {}", whole["next_offset"]);
    let rows = whole["hosts"].as_array().unwrap();
    assert_eq!(rows[0]["host"], "host-07", "most firing first: {}", rows[0]);
    assert_eq!(rows[0]["firing"], 1);
    assert_eq!(rows.iter().filter(|r| r["firing"] != 0).count(), 1);
    let row = |name: &str| rows.iter().find(|r| r["host"] == name).unwrap().clone();
    let twelve = row("host-12");
    assert_eq!((twelve["cpu"].as_f64(), twelve["memory"].as_f64()), (Some(0.12), Some(0.5)), "{twelve}");
    assert_eq!(twelve["disk"].as_f64(), Some(0.75), "the fullest filesystem: {twelve}");
    assert_eq!((twelve["status"].as_str(), twelve["tenant"].as_str()), (Some("online"), Some("default")));
    assert_eq!(twelve["labels"]["client"], "acme");
    assert!(!rows.iter().any(|r| r["host"] == "acme-web"), "another tenant's host");

    // Pages of 7 give the same rows in the same order.
    let mut paged = Vec::new();
    let mut offset = 0;
    loop {
        let (_, page) = api.get(&key, &format!("/overview?limit=7&offset={offset}")).await;
        paged.extend(page["hosts"].as_array().unwrap().iter().map(|r| r["host"].clone()));
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(paged, rows.iter().map(|r| r["host"].clone()).collect::<Vec<_>>());

    // Sorted by CPU, busiest first; by name.
    let (_, by_cpu) = api.get(&key, "/overview?sort=cpu&limit=3").await;
    let names = |body: &Value| body["hosts"].as_array().unwrap().iter().map(|r| r["host"].clone()).collect::<Vec<_>>();
    assert_eq!(names(&by_cpu), ["host-07", "host-29", "host-28"]);
    assert_eq!(by_cpu["total"], HOSTS);
    let (_, by_name) = api.get(&key, "/overview?sort=name&limit=2&offset=28").await;
    assert_eq!(names(&by_name), ["host-28", "host-29"]);

    // The filter: a label, case-insensitive; a name.
    let (_, globex) = api.get(&key, "/overview?filter=CLIENT%3Dglobex").await;
    let expected = (0..HOSTS).filter(|i| client_of(*i) == Some("globex")).count();
    assert_eq!((globex["total"].as_u64(), globex["known"].as_u64()), (Some(expected as u64), Some(HOSTS as u64)));
    let (_, last) = api.get(&key, "/overview?filter=host-29").await;
    assert_eq!(names(&last), ["host-29"]);

    // Grouped by client: groups by name, unlabelled last, counts over every page.
    let (_, grouped) = api.get(&key, "/overview?group_by=client&limit=5").await;
    let groups = grouped["groups"].as_array().unwrap();
    let summary: Vec<(String, u64, u64, u64)> = groups
        .iter()
        .map(|g| {
            let n = |k: &str| g[k].as_u64().unwrap();
            (g["name"].as_str().unwrap().to_string(), n("hosts"), n("down"), n("firing"))
        })
        .collect();
    let count = |client: Option<&str>| (0..HOSTS).filter(|i| client_of(*i) == client).count() as u64;
    assert_eq!(
        summary,
        [
            ("acme".into(), count(Some("acme")), 0, 0),
            ("globex".into(), count(Some("globex")), 0, 1),
            ("initech".into(), count(Some("initech")), 0, 0),
            ("".into(), count(None), 0, 0),
        ],
        "host-07 is globex's"
    );
    assert_eq!(grouped["hosts"].as_array().unwrap().len(), 5);
    assert!(grouped["hosts"].as_array().unwrap().iter().all(|r| r["labels"]["client"] == "acme"));

    // Every tenant: a super-admin only.
    let (status, refused) = api.get(&key, "/overview?all_tenants=true").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let LoginOutcome::Session(session) = accounts.login("root", PASSWORD, None).await.unwrap() else {
        panic!("no MFA for this user")
    };
    let (status, all) = api.get(&session.access_token, "/overview?all_tenants=true&group_by=tenant&sort=name").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total"], HOSTS + 1);
    assert_eq!(all["hosts"][0]["host"], "acme-web");
    assert_eq!(all["hosts"][0]["tenant"], "acme");
    let tenants: Vec<(&str, u64)> = all["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["hosts"].as_u64().unwrap()))
        .collect();
    assert_eq!(tenants, [("acme", 1), ("default", HOSTS as u64)]);

    for bad in ["limit=0", "limit=10001", "sort=bogus", "colour=red"] {
        let (status, body) = api.get(&key, &format!("/overview?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    server.shutdown().await;
}

/// A script pushing through `POST /ingest` that has not run lately is `idle`, not an
/// `offline` host: in `GET /agents`, in the overview's rows and in its per-group down count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_has_not_run_lately_is_idle_not_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(ServerConfig::loopback(dir.path().join("s.db"))).await.unwrap();
    let base = format!("http://{}/api/v1", server.api_addr());
    let http = Client::new();
    let labels = BTreeMap::from([("client".to_string(), "acme".to_string())]);
    let agent = secumon_core::IngestBatch {
        agent_id: "web-1-agent".into(),
        sequence: 1,
        host: "web-1".into(),
        agent_labels: labels.clone(),
        ..Default::default()
    };
    server.store().write_batch(secumon_store::DEFAULT_TENANT, &agent).await.unwrap();
    let script = json!({"source": "nightly-backup", "host": "nas-1", "labels": labels,
        "samples": [{"name": "backup_bytes", "value": 1024.0}]});
    let pushed = http.post(format!("{base}/ingest")).json(&script).send().await.unwrap();
    assert_eq!(pushed.status(), StatusCode::OK);

    let get = |path: &str| {
        let request = http.get(format!("{base}{path}"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let kinds = |list: &Value, key: &str| -> Vec<(String, String, String)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a[key].as_str().unwrap().into(),
                    a["kind"].as_str().unwrap().into(),
                    a["status"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let fresh = get("/agents").await;
    assert_eq!(
        kinds(&fresh["agents"], "id"),
        [
            ("api:default:nightly-backup".into(), "script".into(), "online".into()),
            ("web-1-agent".into(), "agent".into(), "online".into())
        ]
    );

    // An hour passes without a push from either (the rows aged in the server's own store).
    let database = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
    sqlx::query("UPDATE agents SET last_seen_ms = last_seen_ms - 3600000").execute(&database).await.unwrap();
    database.close().await;

    let listed = get("/agents").await;
    assert_eq!(
        kinds(&listed["agents"], "id"),
        [
            ("api:default:nightly-backup".into(), "script".into(), "idle".into()),
            ("web-1-agent".into(), "agent".into(), "offline".into())
        ]
    );
    let single = get("/agents/api:default:nightly-backup").await;
    assert_eq!((single["kind"].as_str(), single["status"].as_str()), (Some("script"), Some("idle")));
    let overview = get("/overview?group_by=client&sort=name").await;
    assert_eq!(
        kinds(&overview["hosts"], "host"),
        [("nas-1".into(), "script".into(), "idle".into()), ("web-1".into(), "agent".into(), "offline".into())]
    );
    assert_eq!(overview["groups"], json!([{"name": "acme", "hosts": 2, "down": 1, "firing": 0}]), "{overview}");
    server.shutdown().await;
}
