//! `secumon-agent setup`: enrolls this machine with a provisioning token and writes what the
//! agent then runs with: its key and certificate, the CA, the session token and the
//! configuration file that names them.

use std::path::{Path, PathBuf};

use secumon_transport::{ProvisioningToken, SessionFile, enroll};

use crate::{AgentError, host_name, load_or_create_agent_id};

/// What `setup` needs.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The server's gRPC ingest, `HOST:PORT`.
    pub collector: String,
    /// The one-time provisioning token the server issued.
    pub token: ProvisioningToken,
    /// The configuration file to write.
    pub config_path: PathBuf,
    /// The agent's state directory (identity, spool, certificate, session).
    pub state_dir: PathBuf,
    /// Host name to report; the system's by default.
    pub name: Option<String>,
    /// Replace an existing configuration file.
    pub force: bool,
}

/// Where setup put things.
#[derive(Debug)]
#[non_exhaustive]
pub struct SetupReport {
    /// The id the server enrolled this agent under.
    pub agent_id: String,
    /// The host name it reports.
    pub host: String,
    /// The configuration file written.
    pub config_path: PathBuf,
    /// The agent's certificate, signed by the server's agent CA.
    pub cert_path: PathBuf,
}

/// Enrolls with the server and writes the agent's certificate, key, session and config.
pub async fn setup(options: &SetupOptions) -> Result<SetupReport, AgentError> {
    if options.config_path.exists() && !options.force {
        return Err(AgentError::Setup(format!(
            "{} exists already; pass --force to replace it",
            options.config_path.display()
        )));
    }
    let host = host_name(options.name.as_deref())?;
    let agent_id = load_or_create_agent_id(&options.state_dir)?;
    let enrolled = enroll(&options.collector, &options.token, &agent_id, &host).await?;

    let tls_dir = options.state_dir.join("tls");
    let (ca, cert, key) = (tls_dir.join("ca.pem"), tls_dir.join("agent.crt"), tls_dir.join("agent.key"));
    write_private(&tls_dir, &ca, &enrolled.tls.ca_pem)?;
    write_private(&tls_dir, &cert, &enrolled.tls.cert_pem)?;
    write_private(&tls_dir, &key, &enrolled.tls.key_pem)?;
    let session = options.state_dir.join("session");
    SessionFile::new(&session).store(&enrolled.session)?;

    let name = options.name.as_ref().map(|name| format!("agent:\n  name: {}\n", quoted(name))).unwrap_or_default();
    let config = format!(
        "# Written by `secumon-agent setup`: agent {agent_id}, enrolled with {collector}.\n\
         {name}collector:\n  endpoint: {collector_q}\n  tls:\n    enabled: true\n    ca: {ca}\n    cert: {cert}\n    \
         key: {key}\n    session: {session}\nspool:\n  dir: {state}\n",
        collector = options.collector,
        collector_q = quoted(&options.collector),
        ca = quoted_path(&ca),
        cert = quoted_path(&cert),
        key = quoted_path(&key),
        session = quoted_path(&session),
        state = quoted_path(&options.state_dir),
    );
    if let Some(parent) = options.config_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| state_error(parent, source))?;
    }
    std::fs::write(&options.config_path, config).map_err(|source| state_error(&options.config_path, source))?;
    Ok(SetupReport { agent_id: enrolled.agent_id, host, config_path: options.config_path.clone(), cert_path: cert })
}

fn state_error(path: &Path, source: std::io::Error) -> AgentError {
    AgentError::StateDir { path: path.display().to_string(), source }
}

/// Writes `bytes` to `path` readable by the owner only.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), AgentError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|source| state_error(dir, source))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|source| state_error(path, source))
}

/// A YAML double-quoted string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

fn quoted_path(path: &Path) -> String {
    quoted(&path.display().to_string())
}
