//! The audit log over HTTP against a real server with tokens required and agents enrolling
//! over real gRPC: which actions are recorded, as whom, from which address, with what
//! detail and never a secret; filters and paging of `GET /api/v1/audit`; and tenant
//! isolation (a tenant's admin sees only their tenant's entries, a super-admin chooses).

use std::net::{IpAddr, Ipv4Addr};

use reqwest::{Client, Method, StatusCode};
use secumon_server::auth::Role;
use secumon_server::{GrpcTls, Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;
use secumon_api::AuditQuery;

const PASSWORD: &str = "a long test password";
const BOB_PASSWORD: &str = "bobs-first-secret-pw";
const BOB_NEW_PASSWORD: &str = "bobs-second-secret-pw";

async fn server(dir: &tempfile::TempDir) -> Server {
    let config = ServerConfig {
        open_access: false,
        grpc_tls: GrpcTls::Managed { names: vec![] },
        ..ServerConfig::loopback(dir.path().join("s.db"))
    };
    Server::start(config).await.expect("server starts")
}

struct Api {
    raw: Raw,
}

impl Api {
    /// A client whose connections leave from `from` (any 127/8 address is loopback).
    fn new(server: &Server, from: IpAddr) -> Self {
        let http = Client::builder().local_address(from).build().unwrap();
        Self { raw: Raw::with_http(server, http) }
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.raw.request(method, path, Some(token));
        // A client's claim about its address is not what the server sees.
        request = request.header("x-forwarded-for", "203.0.113.9");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let audit_failed = response.headers().get("x-secumon-audit").is_some();
        let (status, body) = common::answer(response).await;
        assert!(!audit_failed, "{path}: the audit write failed");
        (status, body)
    }

    async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, token, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    async fn login(&self, user: &str) -> String {
        let response = self
            .raw
            .request(Method::POST, "/auth/login", None)
            .json(&json!({"username": user, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().expect("an access token").to_string()
    }
}

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().cloned().unwrap_or_else(|| panic!("not an audit page: {page}"))
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["action"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_recorded_as_who_from_where_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let api = Api::new(&server, from);
    server.accounts().add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let alice = api.login("alice").await;
    let a = alice.as_str();

    api.ok(Method::POST, "/users", a, Some(json!({"name": "bob", "password": BOB_PASSWORD, "role": "viewer"}))).await;
    // Refused actions change nothing and are not recorded.
    let (status, _) =
        api.call(Method::POST, "/users", a, Some(json!({"name": "carl", "password": "short", "role": "viewer"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    api.ok(Method::PUT, "/users/bob", a, Some(json!({"role": "operator", "password": BOB_NEW_PASSWORD}))).await;
    let key = api.ok(Method::POST, "/api-keys", a, Some(json!({"name": "ci-script", "role": "admin"}))).await;
    let (key_id, key_secret) = (key["id"].as_str().unwrap().to_string(), key["secret"].as_str().unwrap().to_string());
    // The key acts as itself.
    let rule = json!({"name": "Hot", "expr": "temp_celsius > 30", "severity": "warning"});
    api.ok(Method::POST, "/alert-rules", &key_secret, Some(rule)).await;
    let rule = json!({"name": "Hot", "expr": "temp_celsius > 35", "severity": "critical"});
    api.ok(Method::PUT, "/alert-rules/Hot", &key_secret, Some(rule)).await;
    api.ok(Method::DELETE, "/alert-rules/Hot", a, None).await;
    api.ok(Method::DELETE, &format!("/api-keys/{key_id}"), a, None).await;
    let config = json!({"agent_offline_after": "5m", "default_history_period": "2h"});
    api.ok(Method::PUT, "/config", a, Some(config)).await;
    let silence = api
        .ok(
            Method::POST,
            "/silences",
            a,
            Some(json!({"matchers": {"host": "web-1"}, "duration": "1h",
        "comment": "maintenance"})),
        )
        .await;
    let silence_id = silence["id"].as_str().unwrap().to_string();
    api.ok(Method::DELETE, &format!("/silences/{silence_id}"), a, None).await;
    let provisioned = api.ok(Method::POST, "/agents/provision", a, Some(json!({"ttl": "10m"}))).await;
    let token_text = provisioned["token"].as_str().unwrap().to_string();
    let collector = format!("localhost:{}", server.grpc_addr().port());
    secumon_transport::enroll(&collector, &token_text.parse().unwrap(), "agent-1", "web-1").await.expect("enrolls");
    api.ok(Method::DELETE, "/agents/agent-1", a, None).await;
    api.ok(Method::DELETE, "/users/bob", a, None).await;

    let page = api.ok(Method::GET, "/audit", a, None).await;
    let all = entries(&page);
    assert_eq!(
        actions(&all),
        vec![
            "user.delete",
            "agent.delete",
            "agent.enroll",
            "agent.provision_token",
            "silence.remove",
            "silence.create",
            "config.update",
            "api_key.revoke",
            "alert_rule.delete",
            "alert_rule.update",
            "alert_rule.create",
            "api_key.create",
            "user.update",
            "user.create",
        ],
        "newest first: {page}"
    );
    assert!(page.get("next_before").is_none(), "one page holds them all: {page}");
    let key_actor = format!("key:{key_id}");
    for entry in &all {
        assert_eq!(entry["tenant"], "acme", "{entry}");
        let action = entry["action"].as_str().unwrap();
        let (actor, ip) = match action {
            "alert_rule.create" | "alert_rule.update" => (key_actor.as_str(), "127.0.0.2"),
            // The agent acts on its provisioning token, over gRPC: the gate is not told its address.
            "agent.enroll" => ("agent:agent-1", ""),
            _ => ("alice", "127.0.0.2"),
        };
        assert_eq!(entry["actor"], actor, "{entry}");
        assert_eq!(entry["client_ip"], ip, "the address the server saw, not X-Forwarded-For: {entry}");
        assert!(entry["at_ms"].as_i64().unwrap() > 0 && entry["id"].as_i64().unwrap() > 0, "{entry}");
    }
    let find = |action: &str| all.iter().find(|e| e["action"] == action).unwrap().clone();
    assert_eq!(find("user.create")["target"], "bob");
    assert_eq!(find("user.create")["detail"]["role"], "viewer");
    let update = find("user.update");
    assert_eq!(update["detail"]["role"], "operator");
    assert_eq!(update["detail"]["password_changed"], true);
    assert_eq!(find("api_key.create")["target"], key_id.as_str());
    assert_eq!(find("api_key.create")["detail"]["name"], "ci-script");
    assert_eq!(find("alert_rule.update")["detail"]["expr"], "temp_celsius > 35");
    assert_eq!(find("silence.create")["target"], silence_id.as_str());
    assert_eq!(find("config.update")["detail"]["agent_offline_after"], "5m");
    assert_eq!(find("agent.provision_token")["target"], provisioned["id"]);
    assert_eq!(find("agent.enroll")["detail"]["host"], "web-1");
    assert_eq!(find("agent.enroll")["detail"]["provisioning_token"], provisioned["id"]);
    assert_eq!(find("agent.delete")["detail"]["certificate_revoked"], true);

    // No secret in any entry: passwords, the API key, the provisioning token, hashes.
    let text = page.to_string();
    let token_secret = token_text.clone();
    for secret in [PASSWORD, BOB_PASSWORD, BOB_NEW_PASSWORD, key_secret.as_str(), token_secret.as_str(), "$argon2"] {
        assert!(!text.contains(secret), "the audit log shows a secret ({secret:?}): {text}");
    }
    let key_part = key_secret.split_once('.').unwrap().1;
    assert!(!text.contains(key_part), "the API key's secret part leaks: {text}");

    // Filters and paging.
    let only = entries(&api.ok(Method::GET, "/audit?action=user.create", a, None).await);
    assert_eq!(actions(&only), vec!["user.create"]);
    let by_key = entries(&api.ok(Method::GET, &format!("/audit?actor=key:{key_id}"), a, None).await);
    assert_eq!(actions(&by_key), vec!["alert_rule.update", "alert_rule.create"]);
    let future = secumon_core::now_ms() + 3_600_000;
    assert!(entries(&api.ok(Method::GET, &format!("/audit?since={future}"), a, None).await).is_empty());
    let until_all = entries(&api.ok(Method::GET, &format!("/audit?until={future}&since=0"), a, None).await);
    assert_eq!(until_all.len(), all.len());
    let typed = common::typed(&server, Some(a));
    let mut paged = Vec::new();
    let mut query = AuditQuery { limit: Some(4), ..Default::default() };
    loop {
        let page = typed.audit(&query).await.expect("a page of the audit log");
        paged.extend(page.entries.into_iter().map(|entry| entry.action));
        match page.next_before {
            Some(before) => query.before = Some(before),
            None => break,
        }
    }
    assert_eq!(paged, actions(&all), "pages of 4 give every entry once, in order");
    let (status, _) = api.call(Method::GET, "/audit?limit=0", a, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The counters, for alerting on a broken trail.
    let metrics = api.raw.http().get(format!("http://{}/metrics", server.api_addr())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains(&format!("secumon_audit_entries_total {}", all.len())), "{metrics}");
    assert!(metrics.contains("secumon_audit_write_failures_total 0"), "{metrics}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_sees_only_their_tenant_and_a_super_admin_chooses() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let accounts = server.accounts();
    accounts.add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    accounts.add_user("gina", PASSWORD, "globex", Role::Admin, false).await.unwrap();
    accounts.add_user("olga", PASSWORD, "acme", Role::Operator, false).await.unwrap();
    accounts.add_user("root", PASSWORD, "default", Role::Admin, true).await.unwrap();
    let (alice, gina, olga, root) =
        (api.login("alice").await, api.login("gina").await, api.login("olga").await, api.login("root").await);
    let new_user = |name: &str| Some(json!({"name": name, "password": PASSWORD, "role": "viewer"}));
    api.ok(Method::POST, "/users", &alice, new_user("ann")).await;
    api.ok(Method::POST, "/users", &gina, new_user("globex-gus")).await;
    api.ok(Method::PUT, "/config", &gina, Some(json!({"agent_offline_after": "10m"}))).await;

    let acme = api.ok(Method::GET, "/audit", &alice, None).await;
    assert_eq!(actions(&entries(&acme)), vec!["user.create"]);
    let text = acme.to_string();
    for other in ["globex", "gina", "globex-gus", "config.update"] {
        assert!(!text.contains(other), "acme's admin sees globex's {other:?}: {text}");
    }
    for path in ["/audit?tenant=globex", "/audit?tenant=acme&tenant=globex"] {
        let (status, body) = api.call(Method::GET, path, &alice, None).await;
        assert!(matches!(status, StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST), "{path}: {status} {body}");
        assert!(!body.to_string().contains("globex-gus"), "{body}");
    }
    let (status, _) = api.call(Method::GET, "/audit?actor=gina", &alice, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(entries(&api.ok(Method::GET, "/audit?actor=gina", &alice, None).await).is_empty());
    // Reading the audit log is for admins.
    let (status, _) = api.call(Method::GET, "/audit", &olga, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let globex = entries(&api.ok(Method::GET, "/audit", &gina, None).await);
    assert_eq!(actions(&globex), vec!["config.update", "user.create"]);
    assert!(globex.iter().all(|e| e["tenant"] == "globex"));

    let everything = entries(&api.ok(Method::GET, "/audit", &root, None).await);
    let tenants: Vec<&str> = everything.iter().map(|e| e["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, vec!["globex", "globex", "acme"], "a super-admin sees every tenant's");
    let chosen = entries(&api.ok(Method::GET, "/audit?tenant=acme", &root, None).await);
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0]["actor"], "alice");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_entry_the_store_cannot_write_is_flagged_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server, IpAddr::V4(Ipv4Addr::LOCALHOST));
    server.accounts().add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let alice = api.login("alice").await;
    // Another connection takes the audit table away under the running server.
    let database = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("s.db").display())).await.unwrap();
    sqlx::query("DROP TABLE audit_log").execute(&database).await.unwrap();
    database.close().await;

    let response = api
        .raw
        .request(Method::POST, "/api-keys", Some(&alice))
        .json(&json!({"name": "ci", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    // The action stands (it is done by then); the answer says its audit entry is missing.
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers().get("x-secumon-audit").map(|v| v.to_str().unwrap()), Some("failed"));
    assert_eq!(server.accounts().api_keys("acme").await.unwrap().len(), 1);
    let metrics = api.raw.http().get(format!("http://{}/metrics", server.api_addr())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "secumon_audit_write_failures_total 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "secumon_audit_entries_total 0"), "{metrics}");
    server.shutdown().await;
}
