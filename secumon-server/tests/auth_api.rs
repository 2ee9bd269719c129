//! The API's doors, over HTTP against a real server with tokens required: logins with and
//! without a second factor, roles, bad input, and a matrix that calls every endpoint as
//! tenant A on tenant B's objects and proves nothing leaks or changes.

use reqwest::{Client, Method, StatusCode};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;
use secumon_api::{LoginAnswer, LoginRequest};

const PASSWORD: &str = "a long test password";

async fn server(dir: &tempfile::TempDir) -> Server {
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    Server::start(config).await.expect("server starts")
}

struct Api {
    raw: Raw,
    typed: secumon_api::Client,
}

impl Api {
    fn new(server: &Server) -> Self {
        Self { raw: Raw::new(server), typed: common::typed(server, None) }
    }

    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        self.raw.call_as(method, path, token, body).await
    }

    async fn login(&self, user: &str) -> String {
        let request = LoginRequest { username: Some(user.into()), password: PASSWORD.into(), ..Default::default() };
        match self.typed.login(&request).await.expect("a login") {
            LoginAnswer::Session(session) => session.access_token,
            other => panic!("not a session: {other:?}"),
        }
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an API error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_checked_and_refreshable() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    server.accounts().add_user("ada", PASSWORD, "acme", Role::Viewer, false).await.unwrap();

    let (status, body) = api.call(Method::GET, "/agents", None, None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    for bad in ["nonsense", "smk_abc.def", "eyJhbGciOiJFZERTQSJ9.e30.AAAA"] {
        let (status, _) = api.call(Method::GET, "/agents", Some(bad), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let (status, body) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": "wrong one!"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"));

    let (status, session) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK);
    let token = session["access_token"].as_str().unwrap();
    let (status, me) = api.call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (me["subject"].as_str(), me["tenant"].as_str(), me["role"].as_str()),
        (Some("ada"), Some("acme"), Some("viewer"))
    );

    let refresh = json!({"refresh_token": session["refresh_token"]});
    let (status, renewed) = api.call(Method::POST, "/auth/refresh", None, Some(refresh.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call(Method::POST, "/auth/refresh", None, Some(refresh)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a refresh token is used once");
    let (status, _) =
        api.call(Method::POST, "/auth/logout", None, Some(json!({"refresh_token": renewed["refresh_token"]}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) =
        api.call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": renewed["refresh_token"]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked by logout");
    let (status, _) = api.call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the access token too");
    let token = &api.login("ada").await;

    // A viewer reads but does not change.
    let (status, body) = api
        .call(
            Method::POST,
            "/silences",
            Some(token),
            Some(json!({"matchers": {"a": "b"}, "duration": "1h", "created_by": "ada"})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_over_http_refuses_replayed_codes_and_locks_after_failures() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    server.accounts().add_user("ada", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let token = api.login("ada").await;

    // A token alone does not enrol the second factor: the password is asked again.
    let (status, body) = api.call(Method::POST, "/auth/mfa/enroll", Some(&token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let wrong = json!({"password": "not the password"});
    let (status, body) = api.call(Method::POST, "/auth/mfa/enroll", Some(&token), Some(wrong)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let (status, enrolment) =
        api.call(Method::POST, "/auth/mfa/enroll", Some(&token), Some(json!({"password": PASSWORD}))).await;
    assert_eq!(status, StatusCode::OK, "{enrolment}");
    let secret = totp_rs::Secret::Encoded(enrolment["secret"].as_str().unwrap().into()).to_bytes().unwrap();
    let app = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, "ada".into()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (status, codes) =
        api.call(Method::POST, "/auth/mfa/confirm", Some(&token), Some(json!({"code": app.generate(now - 30)}))).await;
    assert_eq!(status, StatusCode::OK, "{codes}");
    assert_eq!(codes["recovery_codes"].as_array().unwrap().len(), 10);

    let (status, half) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": PASSWORD}))).await;
    assert_eq!((status, half["mfa_required"].as_bool()), (StatusCode::OK, Some(true)));
    assert!(half.get("access_token").is_none());
    let verify = json!({"mfa_token": half["mfa_token"], "code": app.generate(now)});
    let (status, session) = api.call(Method::POST, "/auth/mfa/verify", None, Some(verify.clone())).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, body) = api.call(Method::POST, "/auth/mfa/verify", None, Some(verify)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "replayed code");

    // Wrong codes count towards the lockout, which then refuses even a right password.
    for _ in 0..4 {
        let wrong = json!({"mfa_token": half["mfa_token"], "code": "not-a-code"});
        api.call(Method::POST, "/auth/mfa/verify", None, Some(wrong)).await;
    }
    let (status, body) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": PASSWORD}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{body}");
    assert!(server.accounts().user("ada", None).await.unwrap().locked);
    // The same answer as for a name that does not exist.
    let (_, unknown) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "nobody", "password": PASSWORD}))).await;
    assert_eq!(body, unknown);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_a_clear_4xx_in_the_error_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    server.accounts().add_user("ada", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let token = api.login("ada").await;
    let send = |body: Vec<u8>| {
        api.raw
            .request(Method::POST, "/silences", Some(&token))
            .header("content-type", "application/json")
            // A connection the server may close after a 413 must not go back to the pool.
            .header("connection", "close")
            .body(body)
            .send()
    };
    for (body, expected) in [
        (b"{not json".to_vec(), StatusCode::BAD_REQUEST),
        (br#"{"matchers": 5, "duration": "1h", "created_by": "x"}"#.to_vec(), StatusCode::BAD_REQUEST),
        (vec![b' '; 3 * 1024 * 1024], StatusCode::PAYLOAD_TOO_LARGE),
    ] {
        // The server answers 413 as soon as it sees the length and closes the connection, so
        // a client still writing the body may see the close first: try again then.
        let mut response = send(body.clone()).await;
        for _ in 0..5 {
            if response.is_ok() {
                break;
            }
            response = send(body.clone()).await;
        }
        let response = response.unwrap();
        assert_eq!(response.status(), expected);
        let body: Value = response.json().await.unwrap();
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{body}");
    }
    let (status, silences) = api.call(Method::GET, "/silences", Some(&token), None).await;
    assert_eq!((status, silences["silences"].as_array().unwrap().len()), (StatusCode::OK, 0), "nothing stored");
    let (status, body) = api.call(Method::GET, "/agents?limit=0", Some(&token), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    let (status, body) = api.call(Method::GET, "/agents?limit=ten", Some(&token), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "bad_request"));
    server.shutdown().await;
}

/// Tenant B's objects, made through the API as B's admin.
struct Globex {
    token: String,
    user: String,
    key_id: String,
    key: String,
    rule: String,
    alert: String,
    silence: String,
    dashboard: String,
}

async fn populate_globex(server: &Server, api: &Api) -> Globex {
    server.accounts().add_user("gina", PASSWORD, "globex", Role::Admin, false).await.unwrap();
    let token = api.login("gina").await;
    let t = Some(token.as_str());
    let ok = |(status, body): (StatusCode, Value)| {
        assert!(status.is_success(), "{status}: {body}");
        body
    };
    ok(api
        .call(
            Method::POST,
            "/ingest",
            t,
            Some(json!({"source": "s", "host": "b-host",
        "samples": [{"name": "b_secret_metric", "value": 42.0}],
        "events": [{"kind": "b_event", "severity": "info", "message": "b"}]})),
        )
        .await);
    // SecuOps data pushed into B: an event and a series no query of A's may show.
    ok(api
        .call(
            Method::POST,
            "/integrations/secuops",
            t,
            Some(json!({"events": [{"severity": "high", "title": "b_secuops_event", "host": "b-host"}],
                "metrics": [{"name": "b_secuops_metric", "labels": {"host": "b-host"}, "value": 7.0}]})),
        )
        .await);
    // A log line of B's host that no query of A's may show.
    let logs = secumon_core::IngestBatch {
        agent_id: "b-agent".into(),
        sequence: 1,
        host: "b-host".into(),
        logs: vec![secumon_core::LogRecord {
            timestamp_ms: secumon_core::now_ms(),
            source: "/var/log/b.log".into(),
            labels: Default::default(),
            line: "ERROR b_secret_log_line".into(),
        }],
        ..Default::default()
    };
    server.store().write_batch("globex", &logs).await.unwrap();
    let rule = "GlobexRule".to_string();
    ok(api
        .call(
            Method::POST,
            "/alert-rules",
            t,
            Some(json!({"name": rule, "expr": "b_secret_metric > 1",
        "severity": "critical"})),
        )
        .await);
    let silence = ok(api
        .call(
            Method::POST,
            "/silences",
            t,
            Some(json!({"matchers": {"host": "b-host"}, "duration": "1h",
        "created_by": "gina"})),
        )
        .await);
    let user = ok(api
        .call(Method::POST, "/users", t, Some(json!({"name": "gus", "password": PASSWORD, "role": "viewer"})))
        .await);
    let key = ok(api.call(Method::POST, "/api-keys", t, Some(json!({"name": "b-script", "role": "operator"}))).await);
    let dashboard =
        ok(api.call(Method::POST, "/dashboards", t, Some(json!({"name": "b-dash", "layout": {"h": "b-host"}}))).await);
    let layer = json!({"logs": {"enabled": true, "sources": ["/var/log/b_secret_log_line"]}});
    ok(api.call(Method::PUT, "/agent-config/role=b-host", t, Some(layer)).await);
    // The rule fires on the next push.
    ok(api
        .call(
            Method::POST,
            "/ingest",
            t,
            Some(json!({"source": "s", "host": "b-host",
        "samples": [{"name": "b_secret_metric", "value": 43.0}]})),
        )
        .await);
    let mut alert = String::new();
    for _ in 0..100 {
        let alerts = ok(api.call(Method::GET, "/alerts", t, None).await);
        if let Some(id) = alerts["alerts"][0]["id"].as_str() {
            alert = id.to_string();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!alert.is_empty(), "globex's rule fired");
    Globex {
        token,
        user: user["name"].as_str().unwrap().into(),
        key_id: key["id"].as_str().unwrap().into(),
        key: key["secret"].as_str().unwrap().into(),
        rule,
        alert,
        silence: silence["id"].as_str().unwrap().into(),
        dashboard: dashboard["id"].as_str().unwrap().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_can_neither_see_nor_change_tenant_b() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    let b = populate_globex(&server, &api).await;
    server.accounts().add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let a_token = api.login("alice").await;
    let (_, a_key) = server.accounts().create_api_key("acme", "a-script", Role::Admin, "alice").await.unwrap();
    let (rule, alert, user, key_id, dash) = (&b.rule, &b.alert, &b.user, &b.key_id, &b.dashboard);
    let silence = &b.silence;
    let rule_body = json!({"name": rule, "expr": "up > 0", "severity": "info"});

    // Every endpoint, as A (by token and by API key), aimed at B's objects.
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/agents".into(), None),
        (Method::GET, "/agents/api:globex:s".into(), None),
        (Method::DELETE, "/agents/api:globex:s".into(), None),
        (Method::GET, "/agents/api:globex:s/config".into(), None),
        // (A `PUT /agent-config/…` sets A's own layer: selectors are per tenant.)
        (Method::GET, "/agent-config".into(), None),
        (Method::DELETE, "/agent-config/role=b-host".into(), None),
        (Method::GET, "/metrics/hosts/b-host/history?metric=b_secret_metric&period=1h".into(), None),
        (Method::GET, "/metrics/hosts/b-host".into(), None),
        (Method::GET, "/overview".into(), None),
        (Method::GET, "/overview?group_by=tenant&filter=b-host".into(), None),
        (Method::GET, "/overview?all_tenants=true".into(), None),
        (Method::GET, "/reports".into(), None),
        (Method::GET, "/reports?period=1h".into(), None),
        (Method::GET, "/metrics/network/b-host".into(), None),
        (Method::GET, "/dashboards".into(), None),
        (Method::GET, format!("/dashboards/{dash}"), None),
        (Method::PUT, format!("/dashboards/{dash}"), Some(json!({"name": "mine", "layout": {}}))),
        (Method::DELETE, format!("/dashboards/{dash}"), None),
        (Method::GET, "/integrations".into(), None),
        (Method::GET, "/config".into(), None),
        (Method::GET, "/logs/hosts/b-host".into(), None),
        (Method::GET, "/logs/hosts/b-host?since_ms=0&regex=ERROR&source=/var/log/b.log&limit=5000".into(), None),
        (Method::GET, "/logs/hosts/b-host?before=7fffffffffffffff.7fffffffffffffff&contains=b_secret".into(), None),
        (Method::GET, "/checks".into(), None),
        (Method::GET, "/findings".into(), None),
        (Method::GET, "/alerts".into(), None),
        (Method::GET, "/alerts/stats".into(), None),
        (Method::GET, "/alerts/history".into(), None),
        (Method::POST, format!("/alerts/{alert}/acknowledge"), Some(json!({"by": "alice"}))),
        (Method::POST, format!("/alerts/{alert}/resolve"), None),
        (Method::GET, "/silences".into(), None),
        (Method::DELETE, format!("/silences/{silence}"), None),
        (Method::GET, "/alert-rules".into(), None),
        (Method::GET, format!("/alert-rules/{rule}"), None),
        (Method::PUT, format!("/alert-rules/{rule}"), Some(rule_body)),
        (Method::GET, format!("/alert-rules/{rule}/test"), None),
        (Method::GET, format!("/alert-rules/{rule}/history"), None),
        (Method::DELETE, format!("/alert-rules/{rule}"), None),
        (Method::GET, "/users".into(), None),
        (Method::GET, format!("/users/{user}"), None),
        (Method::POST, format!("/users/{user}/reset-mfa"), None),
        (Method::PUT, format!("/users/{user}"), Some(json!({"role": "viewer", "disabled": true}))),
        (Method::POST, format!("/users/{user}/revoke-sessions"), None),
        (Method::DELETE, format!("/users/{user}"), None),
        (Method::GET, "/api-keys".into(), None),
        (Method::DELETE, format!("/api-keys/{key_id}"), None),
        (Method::GET, "/tenants".into(), None),
        (Method::POST, "/tenants".into(), Some(json!({"name": "evil"}))),
        // Single sign-on is not configured here: both answer 404 whoever asks.
        (
            Method::POST,
            "/auth/oidc/start".into(),
            Some(json!({"redirect_uri": "http://127.0.0.1:1/callback",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"})),
        ),
        (
            Method::POST,
            "/auth/oidc/exchange".into(),
            Some(
                json!({"state": "s", "code": "c", "code_verifier": "v", "redirect_uri": "http://127.0.0.1:1/callback"}),
            ),
        ),
        // The audit log: A sees its own tenant's entries only, and may not pick B's.
        (Method::GET, "/audit".into(), None),
        (Method::GET, "/audit?tenant=globex".into(), None),
        (Method::GET, "/audit?actor=gina".into(), None),
        (Method::GET, "/tenants/globex/limits".into(), None),
        (Method::PUT, "/tenants/globex/limits".into(), Some(json!({"max_series": 1}))),
        // Prometheus' query API: A's queries read A's series only.
        (Method::GET, "/prometheus/api/v1/query?query=b_secret_metric".into(), None),
        (Method::GET, "/prometheus/api/v1/query?query=sum%20by%20(host)%20(b_secret_metric)".into(), None),
        (Method::GET, "/prometheus/api/v1/query_range?query=b_secret_metric&start=0&end=4e9&step=1e6".into(), None),
        (Method::GET, "/prometheus/api/v1/series?match[]=b_secret_metric".into(), None),
        (Method::GET, "/prometheus/api/v1/labels".into(), None),
        (Method::GET, "/prometheus/api/v1/label/host/values".into(), None),
        (Method::GET, "/prometheus/api/v1/label/__name__/values".into(), None),
        // `ALERTS` is made from each tenant's own alerts: B's firing alert is not A's.
        (Method::GET, "/prometheus/api/v1/query?query=ALERTS".into(), None),
        (Method::GET, "/prometheus/api/v1/query_range?query=ALERTS&start=0&end=4e9&step=1e6".into(), None),
        (Method::GET, "/prometheus/api/v1/series?match[]=ALERTS".into(), None),
        // SecuOps pushes land in the caller's tenant only (see below); B's are not A's to read.
        (Method::GET, "/prometheus/api/v1/query?query=b_secuops_metric".into(), None),
        (Method::GET, "/agents/api:globex:secuops:b-host".into(), None),
        (Method::DELETE, "/agents/api:globex:secuops:b-host".into(), None),
    ];
    let secrets = [
        rule.as_str(),
        alert.as_str(),
        silence.as_str(),
        user.as_str(),
        key_id.as_str(),
        "b-host",
        "b_secret_metric",
        "b_secret_log_line",
        "gina",
        "globex",
        "b-dash",
        "b_secuops_metric",
        "b_secuops_event",
    ];
    for token in [a_token.as_str(), a_key.as_str()] {
        for (method, path, body) in &calls {
            let (status, answer) = api.call(method.clone(), path, Some(token), body.clone()).await;
            assert!(
                matches!(status, StatusCode::OK | StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "{method} {path}: {status} {answer}"
            );
            let text = answer.to_string();
            // Error messages may repeat the id A asked for, never anything else of B's.
            let asked = path.clone();
            for secret in secrets.iter().filter(|s| !asked.contains(*s)) {
                assert!(!text.contains(secret), "{method} {path} shows B's {secret:?}: {text}");
            }
            if status == StatusCode::OK && *method != Method::GET {
                panic!("{method} {path} changed something: {answer}");
            }
        }
        // Nor can A switch tenant with the super-admin header.
        let response = api
            .raw
            .request(Method::GET, "/agents", Some(token))
            .header("x-secumon-tenant", "globex")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // Nor push SecuOps data into B with it.
        let response = api
            .raw
            .request(Method::POST, "/integrations/secuops", Some(token))
            .header("x-secumon-tenant", "globex")
            .json(&json!({"metrics": [{"name": "a_into_b_metric", "labels": {"host": "b-host"}, "value": 1.0}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // Without it, A's push is A's: stored in A's tenant, never B's.
        let push = json!({"metrics": [{"name": "a_own_secuops_metric", "labels": {"host": "a-host"}, "value": 1.0}]});
        let (status, _) = api.call(Method::POST, "/integrations/secuops", Some(token), Some(push)).await;
        assert_eq!(status, StatusCode::OK);
        // Nor set B's settings (its retention) with it.
        let response = api
            .raw
            .request(Method::PUT, "/config", Some(token))
            .header("x-secumon-tenant", "globex")
            .json(&json!({"agent_offline_after": "30s", "retention": {"raw": "1h", "rollup_5m": "1h", "rollup_1h": "1h"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }

    // B's objects are all as they were.
    // Made through the API, B's user is B's own: stored as `globex/<name>`.
    let stored = secumon_server::auth::tenant_user_name("globex", user);
    let b_user = server.accounts().user(&stored, None).await.expect("B's user still exists");
    assert!(!b_user.disabled && b_user.roles.contains_key("globex"), "{b_user:?}");
    let t = Some(b.token.as_str());
    let (_, rules) = api.call(Method::GET, &format!("/alert-rules/{rule}"), t, None).await;
    assert_eq!(rules["rule"]["expr"].as_str(), Some("b_secret_metric > 1"), "{rules}");
    let (_, alerts) = api.call(Method::GET, "/alerts", t, None).await;
    assert!(alerts["alerts"][0]["acknowledged"].is_null(), "{alerts}");
    assert_eq!(alerts["alerts"][0]["state"], "firing", "not resolved by A: {alerts}");
    let (_, silences) = api.call(Method::GET, "/silences", t, None).await;
    assert_eq!(silences["silences"][0]["id"].as_str(), Some(silence.as_str()), "not expired by A: {silences}");
    let (_, dashboard) = api.call(Method::GET, &format!("/dashboards/{dash}"), t, None).await;
    assert_eq!(dashboard["name"].as_str(), Some("b-dash"), "{dashboard}");
    let (_, config) = api.call(Method::GET, "/config", t, None).await;
    assert_eq!(config["agent_offline_after"], "2m", "{config}");
    assert_eq!(config["retention"], json!({"raw": "30d", "rollup_5m": "90d", "rollup_1h": "365d"}), "{config}");
    let (_, layers) = api.call(Method::GET, "/agent-config", t, None).await;
    assert_eq!(layers["layers"][0]["selector"], "role=b-host", "not deleted by A: {layers}");
    let (status, _) = api.call(Method::GET, "/agents", Some(&b.key), None).await;
    assert_eq!(status, StatusCode::OK, "B's key still works");
    let (_, agents) = api.call(Method::GET, "/agents", t, None).await;
    assert_eq!(agents["agents"][0]["host"].as_str(), Some("b-host"));
    let (status, _) = api.call(Method::DELETE, "/agents/api:globex:s", t, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "B's admin forgets B's agent");
    let (status, _) = api.call(Method::GET, "/agents/api:globex:s", t, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for metric in ["a_own_secuops_metric", "a_into_b_metric"] {
        let (_, answer) = api.call(Method::GET, &format!("/prometheus/api/v1/query?query={metric}"), t, None).await;
        assert_eq!(answer["data"]["result"], json!([]), "A's push is not in B: {answer}");
    }
    let (_, answer) = api.call(Method::GET, "/prometheus/api/v1/query?query=b_secuops_metric", t, None).await;
    assert_eq!(answer["data"]["result"][0]["value"][1], "7", "B's own SecuOps series: {answer}");
    let (_, history) =
        api.call(Method::GET, "/metrics/hosts/b-host/history?metric=b_secret_metric&period=1h&agg=max", t, None).await;
    assert_eq!(history["series"].as_array().map(Vec::len), Some(1), "{history}");
    assert!(
        server.accounts().tenant_exists("globex").await.unwrap()
            && !server.accounts().tenant_exists("evil").await.unwrap()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_are_per_tenant_and_endpoint_and_logins_per_client() {
    use std::num::NonZeroU32;
    let dir = tempfile::tempdir().unwrap();
    let rate_limit = secumon_server::RateLimit {
        per_second: NonZeroU32::new(1).unwrap(),
        burst: NonZeroU32::new(2).unwrap(),
        logins_per_minute: NonZeroU32::new(4).unwrap(),
        ..secumon_server::RateLimit::default()
    };
    let config = ServerConfig { open_access: false, rate_limit, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.unwrap();
    let api = Api::new(&server);
    let accounts = server.accounts();
    let (_, acme) = accounts.create_api_key("acme", "a", Role::Viewer, "t").await.unwrap();
    let (_, globex) = accounts.create_api_key("globex", "b", Role::Viewer, "t").await.unwrap();

    let statuses = |token: String, path: &'static str| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(api.call(Method::GET, path, Some(&token), None).await.0);
            }
            seen
        }
    };
    assert_eq!(
        statuses(acme.clone(), "/agents").await,
        [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]
    );
    assert_eq!(statuses(acme, "/checks").await[0], StatusCode::OK, "another endpoint has its own budget");
    assert_eq!(statuses(globex, "/agents").await[0], StatusCode::OK, "another tenant has its own budget");

    accounts.add_user("ada", PASSWORD, "acme", Role::Viewer, false).await.unwrap();
    for _ in 0..4 {
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "x", "password": "wrong password"}))).await;
    }
    let (status, body) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": PASSWORD}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{body}");
    server.shutdown().await;
}

/// 20 logins at once from 20 loopback addresses, 19 wrong and 1 right: the per-address limit
/// does not see them, the per-account one does, and no session is granted on an account that
/// ends locked. (That no more passwords are checked than failures are left is proven in the
/// accounts' unit tests, since every refusal now looks alike from outside.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_logins_from_many_addresses_cannot_outguess_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    server.accounts().add_user("ada", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let url = format!("http://{}/api/v1/auth/login", server.api_addr());
    let logins: Vec<_> = (0..20u8)
        .map(|i| {
            let client = Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2 + i])).build().unwrap();
            let password = if i == 10 { PASSWORD.to_string() } else { format!("wrong password {i}") };
            let url = url.clone();
            tokio::spawn(async move {
                let response =
                    client.post(url).json(&json!({"username": "ada", "password": password})).send().await.unwrap();
                response.status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.unwrap());
    }
    let sessions = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(statuses.iter().all(|s| [200, 401, 429].contains(&s.as_u16())), "{statuses:?}");
    // The per-account limit (10 a minute) holds whatever the addresses.
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(limited >= 10, "{statuses:?}");
    let locked = server.accounts().user("ada", None).await.unwrap().locked;
    assert!(!(sessions == 1 && locked), "a session on an account that ended locked: {statuses:?}");
    server.shutdown().await;
}

/// A plain admin of a tenant could reset the super-admin's MFA and then log in with the
/// password alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_reset_the_mfa_of_a_super_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    let accounts = server.accounts();
    accounts.add_user("root", PASSWORD, "default", Role::Admin, true).await.unwrap();
    accounts.add_user("ada", PASSWORD, "default", Role::Admin, false).await.unwrap();
    accounts.add_user("bob", PASSWORD, "default", Role::Viewer, false).await.unwrap();
    let ada = api.login("ada").await;
    let (status, body) = api.call(Method::POST, "/users/root/reset-mfa", Some(&ada), None).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    let (status, _) = api.call(Method::POST, "/users/bob/reset-mfa", Some(&ada), None).await;
    assert_eq!(status, StatusCode::OK);
    let root = api.login("root").await;
    let (status, _) = api.call(Method::POST, "/users/ada/reset-mfa", Some(&root), None).await;
    assert_eq!(status, StatusCode::OK, "a super-admin may");
    server.shutdown().await;
}

/// Users can be managed, and every change that should end a session does so at once:
/// logout, a password or role change, disabling and deletion (access tokens used to work
/// for their whole 15 minutes after any of these).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_lifecycle_ends_sessions_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    let accounts = server.accounts();
    accounts.add_user("boss", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    accounts.add_user("ada", PASSWORD, "acme", Role::Operator, false).await.unwrap();
    let boss = api.login("boss").await;
    let me = |token: &str| {
        let (api, token) = (&api, token.to_string());
        async move { api.call(Method::GET, "/auth/me", Some(&token), None).await.0 }
    };

    // Logout ends the access token too.
    let (_, session) =
        api.call(Method::POST, "/auth/login", None, Some(json!({"username": "ada", "password": PASSWORD}))).await;
    let access = session["access_token"].as_str().unwrap().to_string();
    assert_eq!(me(&access).await, StatusCode::OK);
    let (status, _) =
        api.call(Method::POST, "/auth/logout", None, Some(json!({"refresh_token": session["refresh_token"]}))).await;
    assert!(status.is_success());
    assert_eq!(me(&access).await, StatusCode::UNAUTHORIZED, "the access token died with the logout");

    // A user changes their own password, proving the current one; old sessions end.
    let ada = api.login("ada").await;
    let change = json!({"current_password": "not it at all", "new_password": "a brand new password"});
    let (status, _) = api.call(Method::POST, "/auth/password", Some(&ada), Some(change)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new password"});
    let (status, body) = api.call(Method::POST, "/auth/password", Some(&ada), Some(change)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(me(&ada).await, StatusCode::UNAUTHORIZED);
    let login = json!({"username": "ada", "password": "a brand new password"});
    let (status, session) = api.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let ada = session["access_token"].as_str().unwrap().to_string();

    // An admin changes the role: the old token (with the old role) ends.
    let (status, user) = api.call(Method::PUT, "/users/ada", Some(&boss), Some(json!({"role": "viewer"}))).await;
    assert_eq!((status, user["roles"]["acme"].as_str()), (StatusCode::OK, Some("viewer")), "{user}");
    assert_eq!(me(&ada).await, StatusCode::UNAUTHORIZED);

    // Disabled: no login, no token.
    let (_, session) = api.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    let ada = session["access_token"].as_str().unwrap().to_string();
    let (status, user) = api.call(Method::PUT, "/users/ada", Some(&boss), Some(json!({"disabled": true}))).await;
    assert_eq!((status, user["disabled"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(me(&ada).await, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a disabled user cannot log in");
    api.call(Method::PUT, "/users/ada", Some(&boss), Some(json!({"disabled": false}))).await;

    // An admin ends a user's sessions, then deletes the user.
    let (_, session) = api.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    let ada = session["access_token"].as_str().unwrap().to_string();
    let (status, _) = api.call(Method::POST, "/users/ada/revoke-sessions", Some(&boss), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&ada).await, StatusCode::UNAUTHORIZED);
    let (_, session) = api.call(Method::POST, "/auth/login", None, Some(login.clone())).await;
    let ada = session["access_token"].as_str().unwrap().to_string();
    let (status, _) = api.call(Method::DELETE, "/users/ada", Some(&boss), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(me(&ada).await, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::POST, "/auth/login", None, Some(login)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call(Method::DELETE, "/users/ada", Some(&boss), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A tenant admin cannot delete or disable a super-admin.
    accounts.add_user("root", PASSWORD, "acme", Role::Admin, true).await.unwrap();
    let (status, _) = api.call(Method::DELETE, "/users/root", Some(&boss), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.call(Method::PUT, "/users/root", Some(&boss), Some(json!({"disabled": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_cannot_learn_which_user_names_other_tenants_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(&dir).await;
    let api = Api::new(&server);
    server.accounts().add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    server.accounts().add_user("gina", PASSWORD, "globex", Role::Admin, false).await.unwrap();
    let (alice, gina) = (api.login("alice").await, api.login("gina").await);
    let new_user = |name: &str, password: &str| Some(json!({"name": name, "password": password, "role": "viewer"}));
    let (status, _) = api.call(Method::POST, "/users", Some(&gina), new_user("bob", "globex bob's password")).await;
    assert_eq!(status, StatusCode::CREATED);

    // Names taken in another tenant (an installation-wide user, a tenant's own user) and a
    // fresh name: all answered alike, so nothing is learnt about globex.
    let mut answers = Vec::new();
    for name in ["gina", "bob", "fresh"] {
        let (status, mut body) =
            api.call(Method::POST, "/users", Some(&alice), new_user(name, "acme's own password")).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["name"], name);
        body["name"] = Value::Null;
        body["created_ms"] = Value::Null;
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Unique in the tenant: only acme's own names conflict.
    let (status, body) = api.call(Method::POST, "/users", Some(&alice), new_user("bob", "another password")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains("globex"), "{body}");

    // Each bob logs in to his own tenant by giving it, or by his full name.
    let login = |body: Value| {
        let api = &api;
        async move { api.call(Method::POST, "/auth/login", None, Some(body)).await }
    };
    let (status, acme_bob) =
        login(json!({"username": "bob", "tenant": "acme", "password": "acme's own password"})).await;
    assert_eq!((status, acme_bob["tenant"].as_str()), (StatusCode::OK, Some("acme")), "{acme_bob}");
    let (status, globex_bob) =
        login(json!({"username": "bob", "tenant": "globex", "password": "globex bob's password"})).await;
    assert_eq!((status, globex_bob["tenant"].as_str()), (StatusCode::OK, Some("globex")), "{globex_bob}");
    let (status, _) = login(json!({"username": "bob", "tenant": "acme", "password": "globex bob's password"})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "one tenant's bob is not the other's");
    let (status, _) = login(json!({"username": "acme/bob", "password": "acme's own password"})).await;
    assert_eq!(status, StatusCode::OK);
    // The installation-wide gina still logs in as before, to globex.
    let (status, session) = login(json!({"username": "gina", "password": PASSWORD})).await;
    assert_eq!((status, session["tenant"].as_str()), (StatusCode::OK, Some("globex")));

    // acme's admin manages acme's bob by his short name and never touches globex's.
    let (status, body) = api.call(Method::PUT, "/users/bob", Some(&alice), Some(json!({"disabled": true}))).await;
    assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("bob")), "{body}");
    let (status, body) = api.call(Method::GET, "/users/bob", Some(&gina), None).await;
    assert_eq!((status, body["disabled"].as_bool()), (StatusCode::OK, Some(false)), "{body}");
    let (_, list) = api.call(Method::GET, "/users", Some(&alice), None).await;
    let mut names: Vec<&str> = list["users"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["alice", "bob", "fresh", "gina"]);
    server.shutdown().await;
}
