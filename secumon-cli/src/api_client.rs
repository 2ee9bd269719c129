//! Calls to the server's REST API shared by the commands: one place that turns the API's
//! `{"error": {...}}` answers into the command's exit codes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// Sends `request` and returns the JSON answer; a 400 (the caller asked for something
/// invalid) is printed and becomes `Err(exit code 2)`, other failures are errors.
/// The `--token` / `SECUMON_TOKEN` every API call carries.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

pub async fn send(request: reqwest::RequestBuilder, server: &str) -> anyhow::Result<Result<Value, ExitCode>> {
    let request = match TOKEN.get().cloned().flatten() {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response =
        request.timeout(Duration::from_secs(30)).send().await.with_context(|| format!("cannot reach {server}"))?;
    let status = response.status();
    let bytes = response.bytes().await.context("the server's answer was cut off")?;
    // 204 No Content and the like carry no body.
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")?
    };
    if status.is_success() {
        return Ok(Ok(body));
    }
    let message = body["error"]["message"].as_str().unwrap_or("unknown error");
    if status == reqwest::StatusCode::UNAUTHORIZED {
        bail!("{server}: {message} (pass --token or set SECUMON_TOKEN)");
    }
    if status == reqwest::StatusCode::BAD_REQUEST {
        eprintln!("secumon: {message}");
        return Ok(Err(ExitCode::from(2)));
    }
    bail!("{status}: {message}")
}

/// The typed API client for `server`, carrying the `--token`.
pub fn client(server: &str) -> anyhow::Result<secumon_api::Client> {
    secumon_api::Client::builder(server)
        .token_opt(TOKEN.get().cloned().flatten())
        .build()
        .with_context(|| format!("cannot use the server address {server:?}"))
}

/// A failed typed call as the command's outcome, like [`send`]: a 400 is printed and exits
/// 2, a 401 says how to pass a token, anything else is an error.
pub fn refused(error: secumon_api::ClientError, server: &str) -> anyhow::Result<ExitCode> {
    match error {
        secumon_api::ClientError::Refused(refusal) if refusal.status == reqwest::StatusCode::UNAUTHORIZED => {
            bail!("{server}: {} (pass --token or set SECUMON_TOKEN)", refusal.message)
        }
        secumon_api::ClientError::Refused(refusal) if refusal.status == reqwest::StatusCode::BAD_REQUEST => {
            eprintln!("secumon: {}", refusal.message);
            Ok(ExitCode::from(2))
        }
        secumon_api::ClientError::Refused(refusal) => bail!("{}: {}", refusal.status, refusal.message),
        other => Err(other.into()),
    }
}

/// Labels as `k=v,k=v`, without the ones every alert has.
pub fn labels_shown(labels: &secumon_api::Labels) -> String {
    let shown: Vec<String> = labels
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "tenant"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    shown.join(",")
}

/// An alert's labels as `k=v,k=v`, without the ones every alert has.
pub fn alert_labels(labels: &Value) -> String {
    let shown: Vec<String> = labels
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "tenant"))
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    shown.join(",")
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
