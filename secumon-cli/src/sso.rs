//! `secumon login --sso`: single sign-on through the company's OpenID provider.
//!
//! The command listens on a random loopback port, makes a PKCE verifier and its S256
//! challenge, and asks the server to start a sign-in (the server knows the provider and
//! keeps the state and nonce it puts in the authorization URL). It opens that URL in a
//! browser when it can and prints it always, waits for the provider's redirect to its
//! loopback listener, checks the state, and hands code and verifier to the server, which
//! answers SecuMon's own session. The access token goes to standard output, so
//! `export SECUMON_TOKEN=$(secumon login --sso)` works; `--json` prints the whole session.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use secumon_api::{Client, SsoExchangeRequest, SsoStartRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::api_client::{emit, json_text};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// Sign in through the OpenID provider the server is configured with (its `oidc:` file).
    #[arg(long, required = true)]
    sso: bool,
    /// The SecuMon server's API address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Only print the URL to open; do not start a browser.
    #[arg(long)]
    no_browser: bool,
    /// Print the whole session (access and refresh tokens, tenant, role) as JSON.
    #[arg(long)]
    json: bool,
    /// How long to wait for the browser to come back.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// A PKCE verifier (RFC 7636: 43 characters from 32 random bytes) and its S256 challenge.
fn pkce() -> anyhow::Result<(String, String)> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("no random source"))?;
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()));
    Ok((verifier, challenge))
}

pub async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.trim_end_matches('/').to_string();
    // No token: a sign-in is what makes one.
    let api = Client::builder(&server)
        .timeout(Duration::from_secs(60))
        .build()
        .with_context(|| format!("cannot use the server address {server:?}"))?;
    // Loopback only: the code must not be reachable from another machine.
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot listen on a loopback port")?;
    let redirect_uri = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let (verifier, challenge) = pkce()?;
    let start = SsoStartRequest { redirect_uri: redirect_uri.clone(), code_challenge: challenge };
    let started = outcome(api.sso_start(&start).await).context("cannot start a sign-in")?;
    let (url, state) = (started.authorization_url.as_str(), started.state.as_str());
    eprintln!("Open this URL in a browser to sign in:\n{url}");
    if !args.no_browser {
        open_browser(url);
    }
    let (stream, code) = tokio::time::timeout(args.timeout, wait_for_redirect(&listener, state))
        .await
        .with_context(|| format!("no sign-in came back within {}", humantime::format_duration(args.timeout)))??;
    let exchange = SsoExchangeRequest { state: state.to_string(), code, code_verifier: verifier, redirect_uri };
    let session = match outcome(api.sso_exchange(&exchange).await) {
        Ok(session) => {
            respond(stream, "200 OK", "Signed in to SecuMon. You can close this tab.").await;
            session
        }
        Err(error) => {
            respond(stream, "403 Forbidden", "SecuMon refused the sign-in: see the terminal.").await;
            return Err(error.context("the sign-in was refused"));
        }
    };
    let token = session.access_token.as_str();
    let me = Client::builder(&server).token(token).timeout(Duration::from_secs(60)).build()?.me().await;
    if let Ok(me) = me {
        eprintln!(
            "signed in as {} (tenant {}, {}{})",
            me.subject,
            me.tenant,
            me.role.as_str(),
            if me.super_admin { ", super-admin" } else { "" }
        );
    }
    let out = if args.json { json_text(&session)? } else { format!("{token}\n") };
    emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The answer of an unauthenticated call; a refusal becomes `status: message` (the shared
/// client's hints about `--token` do not apply to a sign-in).
fn outcome<T>(answer: Result<T, secumon_api::ClientError>) -> anyhow::Result<T> {
    match answer {
        Ok(answer) => Ok(answer),
        Err(secumon_api::ClientError::Refused(refusal)) => bail!("{}: {}", refusal.status, refusal.message),
        Err(other) => Err(other.into()),
    }
}

/// Starts the desktop's browser on `url`; failing that, the printed URL does.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let graphical = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if graphical {
        let started = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if started.is_err() {
            eprintln!("(could not start a browser with {opener}: open the URL yourself)");
        }
    }
}

/// The connection and code of the first redirect to `/callback` that carries our `state`;
/// other requests (a favicon, a stale tab) are answered and waited past.
async fn wait_for_redirect(listener: &TcpListener, state: &str) -> anyhow::Result<(TcpStream, String)> {
    loop {
        let (mut stream, _) = listener.accept().await.context("the loopback listener failed")?;
        let Ok(Ok(target)) = tokio::time::timeout(Duration::from_secs(10), request_target(&mut stream)).await else {
            continue;
        };
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            respond(stream, "400 Bad Request", "Not a sign-in.").await;
            continue;
        };
        if url.path() != "/callback" {
            respond(stream, "404 Not Found", "Not a sign-in.").await;
            continue;
        }
        let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        if query.get("state").map(String::as_str) != Some(state) {
            // Not our sign-in (an old tab, or a page trying to plant a code): keep waiting.
            respond(stream, "400 Bad Request", "This sign-in is not the one the terminal waits for.").await;
            continue;
        }
        if let Some(error) = query.get("error") {
            let detail = query.get("error_description").cloned().unwrap_or_default();
            respond(stream, "400 Bad Request", "The identity provider refused the sign-in: see the terminal.").await;
            bail!("the identity provider refused the sign-in: {error} {detail}");
        }
        match query.get("code") {
            Some(code) if !code.is_empty() => return Ok((stream, code.clone())),
            _ => {
                respond(stream, "400 Bad Request", "The redirect has no code.").await;
                bail!("the identity provider's redirect has no code");
            }
        }
    }
}

/// The target of an HTTP/1 request (`/callback?code=...`), read from its request line.
async fn request_target(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 || head.len() > 16 * 1024 {
            bail!("not an HTTP request");
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or_default().split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) if target.starts_with('/') => Ok(target.to_string()),
        _ => bail!("not a GET request"),
    }
}

async fn respond(mut stream: TcpStream, status: &str, message: &str) {
    let body = format!("<!doctype html><title>SecuMon</title><p>{message}</p>\n");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
