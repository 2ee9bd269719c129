//! Users' e-mail addresses over HTTP against a real server: set on creation and change,
//! checked for shape, unique whatever the case, freed when changed or deleted, and usable in
//! place of the name to log in (`email`, or the `username` field itself), with the same
//! refusal for an unknown address as for a wrong password.

use reqwest::{Method, StatusCode};
use secumon_server::auth::Role;
use secumon_server::{Server, ServerConfig};
use serde_json::{Value, json};

mod common;
use common::Raw;

const PASSWORD: &str = "a long test password";

struct Api {
    raw: Raw,
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.raw.call_as(method, path, token, Some(body)).await
    }

    async fn login(&self, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/auth/login", None, body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_by_unique_email_as_well_as_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig { open_access: false, ..ServerConfig::loopback(dir.path().join("s.db")) };
    let server = Server::start(config).await.expect("server starts");
    let api = Api { raw: Raw::new(&server) };
    server.accounts().add_user("alice", PASSWORD, "acme", Role::Admin, false).await.unwrap();
    let (_, session) = api.login(json!({"username": "alice", "password": PASSWORD})).await;
    let alice = session["access_token"].as_str().unwrap().to_string();
    let admin = Some(alice.as_str());

    let new_user =
        |name: &str, email: &str| json!({"name": name, "password": PASSWORD, "role": "viewer", "email": email});
    let (status, ada) = api.call(Method::POST, "/users", admin, new_user("ada", " Ada@Example.COM")).await;
    assert_eq!(status, StatusCode::CREATED, "{ada}");
    assert_eq!(ada["email"], "ada@example.com", "kept trimmed and lowercase");

    // By e-mail (any case), by the name field holding the address, and by name as before.
    for body in [
        json!({"email": "ADA@example.com", "password": PASSWORD}),
        json!({"username": "ada@example.com", "password": PASSWORD}),
        // A tenant's own user (made through the API) gives the tenant with the name.
        json!({"username": "ada", "tenant": "acme", "password": PASSWORD}),
    ] {
        let (status, answer) = api.login(body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}: {answer}");
        assert_eq!(answer["tenant"], "acme");
    }
    // A wrong password and an unknown address are refused alike.
    let (wrong_status, wrong) = api.login(json!({"email": "ada@example.com", "password": "not the password"})).await;
    let (unknown_status, unknown) = api.login(json!({"email": "nobody@example.com", "password": PASSWORD})).await;
    assert_eq!((wrong_status, unknown_status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(wrong, unknown, "the same answer for both");
    // An address is not a user name: `email` never falls back to the names.
    let (status, _) = api.login(json!({"email": "alice", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for body in
        [json!({"password": PASSWORD}), json!({"username": "ada", "email": "ada@example.com", "password": PASSWORD})]
    {
        let (status, answer) = api.login(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }

    // Shape checked; unique whatever the case; a refused creation creates nothing.
    for bad in ["ada", "ada@example", "a da@example.com", "<ada@example.com>"] {
        let (status, answer) = api.call(Method::POST, "/users", admin, new_user("bad-one", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    let (status, answer) = api.call(Method::POST, "/users", admin, new_user("ada2", "ADA@example.com")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    for name in ["bad-one", "ada2"] {
        let (status, _) = api.call(Method::GET, &format!("/users/{name}"), admin, Value::Null).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name} was not created");
    }

    // A change moves the address: the old one stops working and is free for others.
    let (status, changed) =
        api.call(Method::PUT, "/users/ada", admin, json!({"email": "ada.lovelace@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["email"], "ada.lovelace@example.com");
    let (status, _) = api.login(json!({"email": "ada@example.com", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old address no longer logs in");
    let (status, _) = api.login(json!({"email": "ada.lovelace@example.com", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, bea) = api.call(Method::POST, "/users", admin, new_user("bea", "ada@example.com")).await;
    assert_eq!(status, StatusCode::CREATED, "the old address is free: {bea}");
    // Taking someone else's address changes nothing else either.
    let (status, _) =
        api.call(Method::PUT, "/users/bea", admin, json!({"email": "ada.lovelace@example.com", "role": "admin"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, bea) = api.call(Method::GET, "/users/bea", admin, Value::Null).await;
    assert_eq!((bea["email"].as_str(), bea["roles"]["acme"].as_str()), (Some("ada@example.com"), Some("viewer")));
    // An empty address removes it; deleting a user frees theirs.
    let (_, cleared) = api.call(Method::PUT, "/users/bea", admin, json!({"email": ""})).await;
    assert!(cleared["email"].is_null(), "{cleared}");
    let (status, _) = api.call(Method::DELETE, "/users/ada", admin, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.call(Method::PUT, "/users/bea", admin, json!({"email": "ada.lovelace@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "ada's address was freed with her");
    let (status, answer) = api.login(json!({"email": "ada.lovelace@example.com", "password": PASSWORD})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    server.shutdown().await;
}
