//! `secumon login --sso` end to end: the real `secumon` binary, a real server with an
//! `oidc:` file, and a real OpenID provider (`oidc-provider` under Node on loopback); the
//! test plays the person's browser, which lands on the command's loopback redirect.

#[path = "../../secumon-server/tests/oidc/harness.rs"]
mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use harness::{Provider, sign_in};
use secumon_server::{Server, ServerConfig};
use serde_json::Value;

async fn server_with_sso(dir: &tempfile::TempDir, provider: &Provider) -> Server {
    let file = dir.path().join("sso.yaml");
    std::fs::write(&file, provider.config_yaml()).unwrap();
    let oidc = secumon_server::auth::OidcConfig::load(&file).expect("the SSO file loads");
    let config =
        ServerConfig { open_access: false, oidc: Some(oidc), ..ServerConfig::loopback(dir.path().join("s.db")) };
    Server::start(config).await.expect("server starts")
}

/// Runs `secumon login --sso` and signs in as `login` in the scripted browser; the
/// command's exit status, standard output and error, and the page the browser was shown.
async fn login(server: &Server, login: &str) -> (std::process::ExitStatus, String, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_secumon"))
        .args(["login", "--sso", "--no-browser", "--json", "--timeout", "60s", "--server"])
        .arg(format!("http://{}", server.api_addr()))
        .env_remove("SECUMON_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secumon runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut printed = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "secumon ended without a URL: {printed}");
        printed.push_str(&line);
        if line.starts_with("http") {
            break line.trim().to_string();
        }
    };
    let authorization = reqwest::Url::parse(&url).expect("a URL");
    let redirect_uri = authorization
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("the URL carries the command's redirect");
    assert!(redirect_uri.starts_with("http://127.0.0.1:"), "{redirect_uri}");
    let redirected = sign_in(&url, &redirect_uri, login).await;
    // The browser arrives at the command's loopback listener.
    let page = reqwest::get(&redirected.url).await.expect("the command's listener answers");
    let page = page.text().await.unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    (output.status, String::from_utf8_lossy(&output.stdout).into_owned(), printed + &rest, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secumon_login_sso_gives_a_super_admin_token_that_works() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_sso(&dir, &provider).await;

    let (status, stdout, stderr, page) = login(&server, "alice").await;
    assert!(status.success(), "{stderr}");
    assert!(page.contains("Signed in"), "{page}");
    assert!(stderr.contains("signed in as alice@example.com") && stderr.contains("super-admin"), "{stderr}");
    let session: Value = serde_json::from_str(&stdout).expect("the session as JSON");
    let token = session["access_token"].as_str().expect("an access token");
    // The token, as SECUMON_TOKEN, on a super-admin endpoint.
    let tenants = reqwest::Client::new()
        .get(format!("http://{}/api/v1/tenants", server.api_addr()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(tenants.status(), reqwest::StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secumon_login_sso_says_why_a_sign_in_is_refused() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_sso(&dir, &provider).await;

    let (status, stdout, stderr, page) = login(&server, "bob").await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "nothing issued: {stdout}");
    assert!(stderr.contains("403") && stderr.contains("`groups` claim"), "{stderr}");
    assert!(page.contains("refused"), "{page}");

    let (status, _, stderr, _) = login(&server, "fault-sig").await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("signature"), "{stderr}");
    server.shutdown().await;
}

#[test]
fn config_check_reads_a_single_sign_on_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let file = dir.path().join("sso.yaml");
        std::fs::write(&file, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_secumon")).args(["config", "check"]).arg(&file).output().unwrap();
        (
            output.status.code(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let good =
        "oidc:\n  issuer: https://login.example.com\n  client_id: secumon\n  claim: groups\n  super_admins: [admins]\n";
    let (code, text) = check(good);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("single sign-on file"), "{text}");
    let (code, text) = check(&good.replace("https://login", "http://login"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("must be https"), "{text}");
    let (code, text) = check(&format!("{good}  audience: x\n"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains(":6:") && text.contains("audience"), "{text}");
}
