//! Single sign-on against a real, certified OpenID provider (`oidc-provider` under Node on
//! loopback): the whole authorization code flow with PKCE through the server's API, a
//! super-admin session that works, and every way an ID token or a sign-in can be wrong
//! refused with its own error and nothing issued.

#[path = "oidc/harness.rs"]
mod harness;

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use harness::{Provider, sign_in};
use reqwest::{Method, StatusCode};
use secumon_server::auth::{OidcConfig, Role};
use secumon_server::{RateLimit, Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

/// The CLI's loopback redirect, as `secumon login --sso` would listen on it.
const REDIRECT: &str = "http://127.0.0.1:47011/callback";

struct Api {
    raw: Raw,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        self.raw.call_as(method, path, token, body).await
    }

    /// One sign-in as `login` at the provider, up to the exchange's answer.
    async fn sso(&self, login: &str) -> (StatusCode, Value) {
        let (verifier, challenge) = pkce();
        let start = json!({"redirect_uri": REDIRECT, "code_challenge": challenge});
        let (status, started) = self.call(Method::POST, "/auth/oidc/start", None, Some(start)).await;
        assert_eq!(status, StatusCode::OK, "{started}");
        let redirected = sign_in(started["authorization_url"].as_str().unwrap(), REDIRECT, login).await;
        assert_eq!(redirected.state, started["state"].as_str().unwrap(), "the provider returns the state");
        let exchange = json!({"state": redirected.state, "code": redirected.code, "code_verifier": verifier,
            "redirect_uri": REDIRECT});
        self.call(Method::POST, "/auth/oidc/exchange", None, Some(exchange)).await
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(uuid_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    (verifier, challenge)
}

fn uuid_bytes() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    bytes
}

async fn start_server(dir: &tempfile::TempDir, provider: &Provider) -> (Server, Api) {
    let oidc = OidcConfig::parse(&provider.config_yaml(), "sso.yaml").expect("the SSO file parses");
    let rate_limit = RateLimit { logins_per_minute: NonZeroU32::new(1000).unwrap(), ..RateLimit::default() };
    let config = ServerConfig {
        open_access: false,
        oidc: Some(oidc),
        rate_limit,
        ..ServerConfig::loopback(dir.path().join("s.db"))
    };
    let server = Server::start(config).await.expect("server starts");
    let api = Api { raw: Raw::new(&server) };
    (server, api)
}

fn error(body: &Value) -> (&str, &str) {
    (body["error"]["code"].as_str().unwrap_or(""), body["error"]["message"].as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_super_admin_signs_in_through_the_provider_and_the_session_works() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_server(&dir, &provider).await;
    server.accounts().create_tenant("acme").await.unwrap();

    let (status, session) = api.sso("alice").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["access_token"].as_str().expect("an access token");
    assert!(session["refresh_token"].as_str().is_some_and(|r| r.starts_with("smr_")), "{session}");
    let (status, me) = api.call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((me["subject"].as_str(), me["super_admin"].as_bool()), (Some("alice@example.com"), Some(true)));
    // A super-admin-only endpoint.
    let (status, tenants) = api.call(Method::GET, "/tenants", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{tenants}");
    assert!(tenants["tenants"].as_array().unwrap().iter().any(|t| t == "acme"), "{tenants}");
    // The refresh token is SecuMon's own and works like a password login's.
    let refresh = json!({"refresh_token": session["refresh_token"]});
    let (status, _) = api.call(Method::POST, "/auth/refresh", None, Some(refresh)).await;
    assert_eq!(status, StatusCode::OK);

    // A second sign-in lands on the same user, found by the provider's `sub`.
    let (status, again) = api.sso("alice").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let users = server.accounts().users(None).await.unwrap();
    assert_eq!(users.iter().filter(|u| u.name == "alice@example.com").count(), 1, "{users:?}");
    // ...who has no password to log in with.
    let (status, _) = api
        .call(Method::POST, "/auth/login", None, Some(json!({"username": "alice@example.com", "password": ""})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_at_the_provider_is_followed() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_server(&dir, &provider).await;
    let (status, body) = api.sso("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Tokens now name a key id the server has not seen; past the refetch interval (5 s),
    // it fetches the key set again and finds it.
    provider.rotate_keys().await;
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    let (status, body) = api.sso("alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The old key is still published, and a token signed by neither is still refused.
    let (status, body) = api.sso("fault-sig").await;
    assert_eq!((status, error(&body).0), (StatusCode::UNAUTHORIZED, "invalid_id_token"), "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_group_signs_in_as_the_existing_user_with_that_users_rights() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_server(&dir, &provider).await;
    server.accounts().add_user("carol", "a long test password", "acme", Role::Operator, false).await.unwrap();

    let (status, session) = api.sso("carol").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!((session["tenant"].as_str(), session["role"].as_str()), (Some("acme"), Some("operator")));
    let token = session["access_token"].as_str().unwrap();
    let (_, me) = api.call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!((me["subject"].as_str(), me["super_admin"].as_bool()), (Some("carol"), Some(false)));
    let (status, _) = api.call(Method::GET, "/tenants", Some(token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "carol is no super-admin");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_id_tokens_and_unmapped_people_get_nothing() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_server(&dir, &provider).await;
    let users_before = server.accounts().users(None).await.unwrap().len();

    // Each `fault-*` account's ID token is wrong in one way only (see provider.js).
    for (login, expected) in
        [("fault-aud", "audience"), ("fault-exp", "expired"), ("fault-sig", "signature"), ("fault-nonce", "nonce")]
    {
        let (status, body) = api.sso(login).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{login}: {body}");
        let (code, message) = error(&body);
        assert_eq!(code, "invalid_id_token", "{login}: {body}");
        assert!(message.contains(expected), "{login}: {message}");
        assert!(body.get("access_token").is_none());
    }
    // A real person whose groups map to nothing.
    let (status, body) = api.sso("bob").await;
    assert_eq!((status, error(&body).0), (StatusCode::FORBIDDEN, "forbidden"), "{body}");
    assert!(error(&body).1.contains("groups"), "{body}");
    // In the admins' group, but the provider has not verified the address that would name the user.
    let (status, body) = api.sso("dave").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error(&body).1.contains("not verified"), "{body}");
    // A user mapped by name who does not exist (carol was never created here).
    let (status, body) = api.sso("carol").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(server.accounts().users(None).await.unwrap().len(), users_before, "nobody was created");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_is_used_once_and_bound_to_its_verifier_and_redirect() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = start_server(&dir, &provider).await;
    let (verifier, challenge) = pkce();
    let begin = || async {
        let start = json!({"redirect_uri": REDIRECT, "code_challenge": challenge});
        let (status, started) = api.call(Method::POST, "/auth/oidc/start", None, Some(start)).await;
        assert_eq!(status, StatusCode::OK, "{started}");
        sign_in(started["authorization_url"].as_str().unwrap(), REDIRECT, "alice").await
    };
    let exchange = |state: &str, code: &str, verifier: &str, redirect: &str| json!({"state": state, "code": code, "code_verifier": verifier, "redirect_uri": redirect});

    // Another verifier than the challenge's: refused by the server before the provider.
    let got = begin().await;
    let (other, _) = pkce();
    let (status, body) = api
        .call(Method::POST, "/auth/oidc/exchange", None, Some(exchange(&got.state, &got.code, &other, REDIRECT)))
        .await;
    assert_eq!((status, error(&body).0), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{body}");
    assert!(error(&body).1.contains("verifier"), "{body}");
    // ...and that used the sign-in up.
    let (status, _) = api
        .call(Method::POST, "/auth/oidc/exchange", None, Some(exchange(&got.state, &got.code, &verifier, REDIRECT)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Another redirect than the start's.
    let got = begin().await;
    let elsewhere = "http://127.0.0.1:47012/callback";
    let (status, body) = api
        .call(Method::POST, "/auth/oidc/exchange", None, Some(exchange(&got.state, &got.code, &verifier, elsewhere)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The right one works once; a replay of the same code and state does not.
    let got = begin().await;
    let body = exchange(&got.state, &got.code, &verifier, REDIRECT);
    let (status, session) = api.call(Method::POST, "/auth/oidc/exchange", None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, replay) = api.call(Method::POST, "/auth/oidc/exchange", None, Some(body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{replay}");

    // The start takes loopback redirects and S256 challenges only.
    for (redirect, challenge) in [("https://evil.example/cb", challenge.as_str()), (REDIRECT, "plain")] {
        let start = json!({"redirect_uri": redirect, "code_challenge": challenge});
        let (status, body) = api.call(Method::POST, "/auth/oidc/start", None, Some(start)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_oidc_section_the_endpoints_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.expect("server starts");
    let api = Api { raw: Raw::new(&server) };
    let (_, challenge) = pkce();
    let start = json!({"redirect_uri": REDIRECT, "code_challenge": challenge});
    let (status, body) = api.call(Method::POST, "/auth/oidc/start", None, Some(start)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error(&body).1.contains("not configured"), "{body}");
    server.shutdown().await;
}
