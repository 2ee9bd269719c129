//! The single sign-on tests' peers: a real OpenID provider (`oidc-provider` under Node, from
//! `provider.js` beside this file, installed by `scripts/test`) and a scripted browser that
//! signs a person in at it and stops at the loopback redirect. Shared by the server's and
//! the CLI's tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// Every account of `provider.js` has this password.
pub const PASSWORD: &str = "correct horse battery";
/// The client secret `provider.js` registers for `secumon`.
pub const CLIENT_SECRET: &str = "secumon-test-secret";

/// A running `oidc-provider`; stopped when dropped.
pub struct Provider {
    pub issuer: String,
    child: Child,
}

impl Provider {
    /// Starts the provider on a free loopback port. Fails (never skips) when Node or the
    /// npm package is missing: `scripts/test` installs both.
    pub fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../secumon-server/tests/oidc");
        let dir = dir.canonicalize().unwrap_or(dir);
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed in {}: run scripts/test (it runs `npm ci` there)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (scripts/test installs Node.js)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("the provider prints its issuer");
        // The provider logs notices on standard output too: a closed pipe would kill it.
        std::thread::spawn(move || reader.lines().map_while(Result::ok).for_each(|l| eprintln!("provider: {l}")));
        let started: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the provider did not start ({e}): {line:?}"));
        let issuer = started["issuer"].as_str().expect("issuer").to_string();
        Self { issuer, child }
    }

    /// The server's `oidc:` file for this provider: `groups` mapped, `secumon-admins` are
    /// super-admins and the `ops` group signs in as the existing user `carol`.
    pub fn config_yaml(&self) -> String {
        format!(
            "oidc:\n  issuer: {}\n  client_id: secumon\n  client_secret: {CLIENT_SECRET}\n  \
             scopes: [openid, email, groups]\n  claim: groups\n  super_admins: [secumon-admins]\n  \
             users:\n    ops: carol\n",
            self.issuer
        )
    }
}

impl Provider {
    /// Rotates the provider's signing key: the key set gains a second key with a new id,
    /// and every ID token from now on is signed with it.
    pub async fn rotate_keys(&self) {
        let response =
            reqwest::Client::new().post(format!("{}/test/rotate", self.issuer)).send().await.expect("rotate");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the person's browser brings back to the CLI's loopback redirect.
#[derive(Debug)]
pub struct Redirected {
    /// The whole URL the provider redirected to.
    pub url: String,
    pub code: String,
    pub state: String,
}

/// Plays the person's browser: opens `authorization_url`, signs in as `login` on the
/// provider's login page, and follows redirects until one leads to `redirect_uri`; returns
/// that URL without fetching it.
pub async fn sign_in(authorization_url: &str, redirect_uri: &str, login: &str) -> Redirected {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut url = reqwest::Url::parse(authorization_url).expect("the authorization URL is a URL");
    for _ in 0..10 {
        let mut response = http.get(url.clone()).header(COOKIE, cookie_header(&cookies)).send().await.expect("GET");
        keep_cookies(&mut cookies, &response);
        if response.status() == StatusCode::OK && url.path().starts_with("/interaction/") {
            let form = [("login", login), ("password", PASSWORD)];
            let action = url.join(&format!("{}/login", url.path())).expect("form action");
            response =
                http.post(action).header(COOKIE, cookie_header(&cookies)).form(&form).send().await.expect("POST login");
            keep_cookies(&mut cookies, &response);
        }
        let status = response.status();
        let Some(location) = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string) else {
            let body = response.text().await.unwrap_or_default();
            panic!("{url}: {status} without a redirect: {body}");
        };
        let next = url.join(&location).expect("a redirect URL");
        if next.as_str().starts_with(redirect_uri) {
            let query: BTreeMap<String, String> = next.query_pairs().into_owned().collect();
            let (Some(code), Some(state)) = (query.get("code"), query.get("state")) else {
                panic!("the provider redirected without a code: {next}");
            };
            return Redirected { url: next.to_string(), code: code.clone(), state: state.clone() };
        }
        url = next;
    }
    panic!("no redirect to {redirect_uri} after 10 steps");
}

fn cookie_header(cookies: &BTreeMap<String, String>) -> String {
    cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

/// A cookie jar that is enough for one provider on one host: paths are ignored, an empty
/// or expired value removes the cookie.
fn keep_cookies(cookies: &mut BTreeMap<String, String>, response: &reqwest::Response) {
    for header in response.headers().get_all(SET_COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        let Some((name, rest)) = text.split_once('=') else { continue };
        let value = rest.split(';').next().unwrap_or_default();
        let expired = text.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
        if value.is_empty() || expired {
            cookies.remove(name.trim());
        } else {
            cookies.insert(name.trim().to_string(), value.to_string());
        }
    }
}
