//! Calls to the server's REST API shared by the commands: the typed client with the
//! `--token`, and one place that turns the API's refusals into the command's exit codes.

use std::process::ExitCode;

use anyhow::{Context, bail};

/// The `--token` / `SECUMON_TOKEN` every API call carries.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

/// The typed API client for `server`, carrying the `--token`.
pub fn client(server: &str) -> anyhow::Result<secumon_api::Client> {
    client_builder(server).build().with_context(|| format!("cannot use the server address {server:?}"))
}

/// The typed API client's builder for `server`, carrying the `--token`, for settings of its
/// own (a tenant to act in).
pub fn client_builder(server: &str) -> secumon_api::ClientBuilder {
    secumon_api::Client::builder(server).token_opt(TOKEN.get().cloned().flatten())
}

/// A failed call as the command's outcome: a 400 is printed and exits
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

/// An answer as the `--json` output shows it: the API's JSON, pretty, through a JSON tree so
/// its keys come out as they did when the CLI read answers untyped.
pub fn json_text(answer: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(&serde_json::to_value(answer)?)?))
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

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
