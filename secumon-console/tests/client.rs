//! The console's API client against a real server with tokens required: a super-admin lists
//! tenants and switches between them, snapshots and the live stream follow the switch, and
//! silences (added, listed, expired early) and rule histories go through.

use std::time::Duration;

use secumon_console::client::{ApiClient, Change};
use secumon_server::auth::{LoginOutcome, Role};
use secumon_server::{Server, ServerConfig};
use serde_json::json;

const PASSWORD: &str = "a long test password";

async fn push(server: &Server, key: &str, host: &str, value: f64) {
    let body = json!({"source": "test", "host": host, "samples": [
        {"name": "cpu_usage_ratio", "labels": {"cpu": "all"}, "value": value}]});
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/ingest", server.api_addr()))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_admin_switches_tenants_and_the_live_stream_follows() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let accounts = server.accounts();
    accounts.add_user("root", PASSWORD, "default", Role::Admin, true).await.unwrap();
    accounts.create_tenant("acme").await.unwrap();
    let (_, acme_key) = accounts.create_api_key("acme", "ops", Role::Admin, "t").await.unwrap();
    let (_, default_key) = accounts.create_api_key("default", "ops", Role::Admin, "t").await.unwrap();
    push(&server, &default_key, "home-1", 0.1).await;
    push(&server, &acme_key, "acme-web", 0.42).await;
    let LoginOutcome::Session(session) = accounts.login("root", PASSWORD, None).await.unwrap() else {
        panic!("no MFA for this user")
    };

    let client = ApiClient::new(&format!("http://{}", server.api_addr()), Some(session.access_token))
        .expect("a usable address and token");
    assert_eq!(client.tenants().await.unwrap(), ["acme", "default"]);
    let hosts =
        |snapshot: secumon_console::app::Snapshot| snapshot.hosts.into_iter().map(|h| h.host).collect::<Vec<_>>();
    assert_eq!(hosts(client.snapshot().await.unwrap()), ["home-1"], "its own tenant first");

    client.set_tenant(Some("acme".into()));
    let snapshot = client.snapshot().await.unwrap();
    assert_eq!(snapshot.hosts[0].cpu, Some(0.42), "the gauge comes from the overview");
    assert_eq!(hosts(snapshot), ["acme-web"]);
    let mut stream = client.live().await.expect("the live stream opens for acme");
    push(&server, &default_key, "home-1", 0.2).await;
    push(&server, &acme_key, "acme-web", 0.5).await;
    // The first change is acme's host with its gauge (default's push is not in this stream).
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next_change().await.unwrap() {
                Change::Host(host) if host.cpu.is_some() => return host,
                Change::Host(host) => assert_eq!(host.host, "acme-web", "a heartbeat of acme's host"),
                Change::Activity => {}
            }
        }
    })
    .await
    .expect("acme's push arrives");
    assert_eq!((change.host.as_str(), change.cpu), ("acme-web", Some(0.5)));

    // A super-admin grouping by tenant sees every tenant's hosts in one overview.
    client.set_all_tenants(true);
    let (all, pages) = client.overview().await.unwrap();
    let rows: Vec<(String, String)> = all.into_iter().map(|h| (h.tenant, h.host)).collect();
    assert_eq!(rows, [("acme".into(), "acme-web".into()), ("default".into(), "home-1".into())]);
    assert_eq!(pages, 1);
    client.set_all_tenants(false);

    let labels = std::collections::BTreeMap::from([("host".to_string(), "acme-web".to_string())]);
    client.silence(&labels, "30m", "root").await.expect("silenced");
    let silences = reqwest::Client::new()
        .get(format!("http://{}/api/v1/silences", server.api_addr()))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(silences.contains("acme-web") && silences.contains("root"), "{silences}");
    // The console lists it for 30 minutes (not the prompt's prefilled hour), and ends it early.
    let listed = client.silences().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].matchers.clone(), listed[0].created_by.as_str()), (labels.clone(), "root"));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let left_ms = listed[0].ends_ms - now_ms;
    assert!((29 * 60_000..=30 * 60_000).contains(&left_ms), "ends in {left_ms} ms");
    client.expire_silence(&listed[0].id).await.expect("the silence ends early");
    assert_eq!(client.silences().await.unwrap(), [], "no silence in force once expired");
    let raw = reqwest::Client::new()
        .get(format!("http://{}/api/v1/silences", server.api_addr()))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(raw["silences"], json!([]), "the server has it ended too");
    let again = client.expire_silence(&listed[0].id).await.expect_err("an ended silence cannot end again");
    assert!(again.to_string().contains(&listed[0].id), "{again}");
    let refused = client.rule_history("NoSuchRule", 0).await.expect_err("an unknown rule is refused");
    assert!(refused.to_string().contains("NoSuchRule"), "{refused}");
    server.shutdown().await;
}
