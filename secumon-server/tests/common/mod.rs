//! What the server's integration tests share to call the REST API: the typed client of
//! `secumon-api` for calls whose answers the tests read as the API's types, and one raw
//! HTTP helper for the calls that send malformed requests or check the JSON as it is on
//! the wire.
//!
//! Each test file includes this as `mod common;` and uses part of it.
#![allow(dead_code)]

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secumon_server::Server;
use serde_json::Value;

/// The typed client of `server`, as the holder of `token` (none: an open server).
pub fn typed(server: &Server, token: Option<&str>) -> secumon_api::Client {
    secumon_api::Client::builder(&format!("http://{}", server.api_addr()))
        .token_opt(token.map(str::to_string))
        .build()
        .expect("a loopback address is a server address")
}

/// Raw calls to one server's `/api/v1`: any method, path and body, the answer as JSON.
pub struct Raw {
    base: String,
    http: reqwest::Client,
    /// The bearer token of [`call`](Self::call).
    token: Option<String>,
}

impl Raw {
    pub fn new(server: &Server) -> Self {
        Self::with_http(server, reqwest::Client::new())
    }

    /// Through `http` (a client set up in a particular way: from another address…).
    pub fn with_http(server: &Server, http: reqwest::Client) -> Self {
        Self { base: format!("http://{}/api/v1", server.api_addr()), http, token: None }
    }

    /// The same calls as the holder of `token`.
    pub fn with_token(self, token: &str) -> Self {
        Self { token: Some(token.to_string()), ..self }
    }

    /// The HTTP client, for what is not under `/api/v1`.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request to `/api/v1{path}` (to `path` itself for the Prometheus-compatible API,
    /// which lives beside it under `/prometheus/`), with `token` as its bearer token if given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let url = if path.starts_with("/prometheus/") {
            format!("{}{path}", self.base.trim_end_matches("/api/v1"))
        } else {
            format!("{}{path}", self.base)
        };
        let request = self.http.request(method, url);
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `body` (if any) as JSON to `path`, with this helper's token (if any); the
    /// status and the JSON answer (`null` when the answer has no body).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(method, path, self.token.as_deref(), body).await
    }

    /// Like [`call`](Self::call), as the holder of `token` (none: no token).
    pub async fn call_as(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("the server answers")).await
    }
}

/// A response's status and JSON body (`null` when it has none); a body that is not JSON
/// fails the test.
pub async fn answer(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("the whole answer");
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON answer") };
    (status, body)
}
