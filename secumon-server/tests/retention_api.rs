//! A tenant's retention of samples per tier through `/api/v1/config`, against a real server
//! with tokens required: read with the defaults, set by the tenant's admin (tiers left out at
//! the defaults, refusals naming the field), by a super-admin for another tenant, never by an
//! operator or another tenant's admin; it lasts across a restart, and the store's retention
//! pass applies each tenant's own.

use reqwest::{Method, StatusCode};
use secumon_api::{LoginAnswer, LoginRequest, RetentionSettings, TenantConfig};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector};
use serde_json::{Value, json};

mod common;
use common::Raw;

const PASSWORD: &str = "a long test password";
const DAY: i64 = 86_400_000;

async fn server(dir: &tempfile::TempDir) -> Server {
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    Server::start(config).await.expect("server starts")
}

async fn login(server: &Server, user: &str) -> String {
    let request = LoginRequest { username: Some(user.into()), password: PASSWORD.into(), ..Default::default() };
    match common::typed(server, None).login(&request).await.expect("a login") {
        LoginAnswer::Session(session) => session.access_token,
        other => panic!("not a session: {other:?}"),
    }
}

fn retention(raw: &str, rollup_5m: &str, rollup_1h: &str) -> Option<RetentionSettings> {
    Some(RetentionSettings {
        raw: Some(raw.into()),
        rollup_5m: Some(rollup_5m.into()),
        rollup_1h: Some(rollup_1h.into()),
    })
}

/// PUT /config as `token`, in `tenant` if given (the super-admin header).
async fn put(raw: &Raw, token: &str, tenant: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = raw.request(Method::PUT, "/config", Some(token)).json(&body);
    if let Some(tenant) = tenant {
        request = request.header(secumon_api::TENANT_HEADER, tenant);
    }
    common::answer(request.send().await.expect("the server answers")).await
}

/// Whether `tenant` still has raw samples of `old` (p95 is answered from raw samples only).
async fn has_raw(server: &Server, tenant: &str, start_ms: i64) -> bool {
    let query = RangeQuery {
        selector: SeriesSelector::new("old"),
        start_ms,
        end_ms: start_ms + 3_600_000,
        step_ms: 3_600_000,
        aggregation: Aggregation::P95,
    };
    !server.store().query_range(tenant, &query).await.unwrap().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_is_set_per_tenant_by_its_admin_or_a_super_admin_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let accounts = server.accounts();
    accounts.add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    accounts.add_user("olga", PASSWORD, "acme", Role::Operator, false).await.unwrap();
    accounts.add_user("gina", PASSWORD, "globex", Role::Admin, false).await.unwrap();
    accounts.add_user("root", PASSWORD, "default", Role::Admin, true).await.unwrap();
    let (alice, olga, gina, root) = (
        login(&server, "alice").await,
        login(&server, "olga").await,
        login(&server, "gina").await,
        login(&server, "root").await,
    );
    let (as_alice, as_gina) = (common::typed(&server, Some(&alice)), common::typed(&server, Some(&gina)));
    let raw = Raw::new(&server);

    // The defaults, in force for every tenant until it sets its own.
    let config = as_alice.tenant_config().await.unwrap();
    assert_eq!(config.retention, retention("30d", "90d", "365d"), "{config:?}");

    // The tenant's admin sets it; a tier left out takes the default.
    let mut wanted = TenantConfig { retention: retention("7d", "30d", "365d"), ..config.clone() };
    wanted.retention.as_mut().unwrap().rollup_1h = None;
    let stored = as_alice.set_tenant_config(&wanted).await.unwrap();
    assert_eq!(stored.retention, retention("7d", "30d", "365d"));
    assert_eq!(as_alice.tenant_config().await.unwrap().retention, retention("7d", "30d", "365d"));
    assert_eq!(as_gina.tenant_config().await.unwrap().retention, retention("30d", "90d", "365d"), "globex's own");

    // Refusals name the field, and change nothing.
    for (body, field) in [
        (json!({"retention": {"raw": "30m"}}), "retention.raw"),
        (json!({"retention": {"raw": "soon"}}), "retention.raw"),
        (json!({"retention": {"raw": "7d", "rollup_5m": "1d"}}), "retention.rollup_5m"),
        (json!({"retention": {"rollup_1h": "30d"}}), "retention.rollup_1h"),
        (json!({"retention": {"rollup_1h": "20y"}}), "retention.rollup_1h"),
        (json!({"retention": {"raw_days": 7}}), "raw_days"),
    ] {
        let (status, answer) = put(&raw, &alice, None, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{body}: the message names {field}: {answer}");
    }
    // An operator may not change it.
    let (status, answer) = put(&raw, &olga, None, json!({"retention": {"raw": "1h"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // A PUT without retention leaves it as it is.
    let (status, answer) = put(&raw, &alice, None, json!({"agent_offline_after": "5m"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["retention"], json!({"raw": "7d", "rollup_5m": "30d", "rollup_1h": "365d"}), "{answer}");

    // Another tenant's admin cannot set acme's (nor read it), by token or by the header.
    let (status, answer) = put(&raw, &gina, Some("acme"), json!({"retention": {"raw": "1h"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = common::answer(
        raw.request(Method::GET, "/config", Some(&gina))
            .header(secumon_api::TENANT_HEADER, "acme")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // A super-admin sets any tenant's.
    let (status, answer) = put(&raw, &root, Some("globex"), json!({"retention": {"raw": "2d"}})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(as_gina.tenant_config().await.unwrap().retention, retention("2d", "90d", "365d"));
    assert_eq!(as_alice.tenant_config().await.unwrap().retention, retention("7d", "30d", "365d"), "acme's unchanged");

    // The retention pass applies each tenant's own: samples 5 days old go for globex only.
    let now = now_ms();
    let old = now - now % 3_600_000 - 5 * DAY;
    for (sequence, tenant) in [(1, "acme"), (2, "globex")] {
        let samples = (0..360).map(|i| Sample::new("old", Labels::new(), old + i * 10_000, 1.0)).collect();
        let batch = IngestBatch {
            agent_id: format!("{tenant}-agent"),
            sequence,
            host: "h".into(),
            samples,
            ..Default::default()
        };
        server.store().write_batch(tenant, &batch).await.unwrap();
    }
    assert!(has_raw(&server, "acme", old).await && has_raw(&server, "globex", old).await);
    server.store().maintain(now).await.unwrap();
    assert!(has_raw(&server, "acme", old).await, "acme keeps raw samples 7 days");
    assert!(!has_raw(&server, "globex", old).await, "globex keeps them 2 days");
    server.shutdown().await;

    // It lasts across a restart; `{}` gives the defaults back.
    let server = self::server(&dir).await;
    let gina = login(&server, "gina").await;
    let (as_gina, raw) = (common::typed(&server, Some(&gina)), Raw::new(&server));
    assert_eq!(as_gina.tenant_config().await.unwrap().retention, retention("2d", "90d", "365d"));
    let (status, answer) = put(&raw, &gina, None, json!({"retention": {}})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["retention"], json!({"raw": "30d", "rollup_5m": "90d", "rollup_1h": "365d"}), "{answer}");
    let defaults = server.store().retention_defaults();
    assert_eq!(server.store().tier_retention("globex").await.unwrap(), defaults);
    server.shutdown().await;
}
