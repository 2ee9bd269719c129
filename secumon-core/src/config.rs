//! YAML configuration: the agent's `agent.yaml` (the seed's layout, as written) and the
//! loader that turns any bad input into one error naming the file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// A configuration file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file's path.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML, or a key is unknown, missing or has a bad value.
    #[error("{file}:{line}:{column}: {}{message}", key_prefix(.key))]
    Invalid {
        /// The file's path (or the origin the text was parsed under).
        file: String,
        /// 1-based line of the problem; 0 when the parser gave no position.
        line: usize,
        /// 1-based column of the problem; 0 when the parser gave no position.
        column: usize,
        /// The dotted path of the offending key (`metrics.interval`), when there is one.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A document that is not a file (a centrally managed agent configuration) is invalid.
    #[error("{origin}: {}{message}", key_prefix(.key))]
    Document {
        /// What names the document (`agent-config "env=prod"`), or the file whose pins failed.
        origin: String,
        /// The dotted path of the offending key, when there is one.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default()
}

/// Parses YAML text into `T`, rejecting unknown keys; `origin` names the file in errors.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let (line, column) = inner.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let mut message = inner.to_string();
        // serde_yaml_ng appends the location, which the error already carries.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        // ...and prefixes its own (parent) path, which `path` already holds in full.
        if let Some((head, rest)) = message.split_once(": ")
            && !head.contains(' ')
            && path.starts_with(head)
        {
            message = rest.to_string();
        }
        let key = match unknown_field(&message) {
            Some(field) if !path.ends_with(&field) => Some(format!("{path}.{field}")),
            _ => (path != ".").then_some(path),
        };
        ConfigError::Invalid { file: origin.to_string(), line, column, key, message }
    })
}

/// Reads and parses a YAML configuration file.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    parse_yaml(&text, &file)
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// The agent's configuration file (`/etc/secumon/agent.yaml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This machine's name, labels and pinned keys.
    #[serde(default)]
    pub agent: AgentSection,
    /// The server to push to (required).
    pub collector: CollectorSection,
    /// Host metric collection.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// Log shipping (off by default).
    #[serde(default)]
    pub logs: LogsSection,
    /// External checks run by the agent (off by default).
    #[serde(default)]
    pub probe_mode: ProbeModeSection,
    /// Where batches wait for the server.
    #[serde(default)]
    pub spool: SpoolSection,
}

impl AgentConfig {
    /// Reads and validates an agent configuration file; the error names the file, line and
    /// key of the first problem, or the `agent.pinned` entry that names no managed section.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = load_yaml(path)?;
        crate::managed::validate_pins(&config.agent.pinned, &path.display().to_string())?;
        Ok(config)
    }
}

/// The `agent` section: how this machine is named and labelled.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Host name reported for this machine; defaults to the system host name.
    pub name: Option<String>,
    /// Labels added to every series this agent sends.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Keys of the centrally managed sections (`metrics.interval`, `logs`) that keep this
    /// file's value whatever the server's agent configuration says.
    #[serde(default)]
    pub pinned: Vec<String>,
}

/// The `collector` section: the server the agent pushes to, `endpoint: HOST:PORT`, or the
/// gateways of a scaled-out server, `endpoints: [HOST:PORT, ...]`, tried in turn when one
/// cannot be reached (exactly one of the two keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "CollectorFile")]
pub struct CollectorSection {
    /// The server's gRPC ingest address, `HOST:PORT`: the first of `endpoints`.
    pub endpoint: Endpoint,
    /// Every address to push to, in the order they are tried (`endpoint` alone when the
    /// file names one).
    pub endpoints: Vec<Endpoint>,
    /// Mutual TLS to the server (off by default).
    pub tls: TlsSection,
}

/// The `collector` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectorFile {
    endpoint: Option<Endpoint>,
    endpoints: Option<Vec<Endpoint>>,
    #[serde(default)]
    tls: TlsSection,
}

impl TryFrom<CollectorFile> for CollectorSection {
    type Error = String;

    fn try_from(file: CollectorFile) -> Result<Self, String> {
        let endpoints = match (file.endpoint, file.endpoints) {
            (Some(endpoint), None) => vec![endpoint],
            (None, Some(endpoints)) if !endpoints.is_empty() => endpoints,
            (None, Some(_)) => return Err("`endpoints` lists no address".into()),
            (None, None) => return Err("missing `endpoint` (HOST:PORT) or `endpoints` ([HOST:PORT, ...])".into()),
            (Some(_), Some(_)) => {
                return Err("both `endpoint` and `endpoints`: give one address or the list, not both".into());
            }
        };
        Ok(Self { endpoint: endpoints[0].clone(), endpoints, tls: file.tls })
    }
}

/// A `HOST:PORT` address, checked when the file is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint(pub String);

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let authority = text.split_once("://").map_or(text.as_str(), |(_, rest)| rest);
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Endpoint(text)),
            _ => Err(D::Error::custom(format!("expected HOST:PORT, got {text:?}"))),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `collector.tls`: the agent's certificate files for mutual TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Use mutual TLS; then `cert`, `key` and `ca` must all be set (default false).
    #[serde(default)]
    pub enabled: bool,
    /// The agent's certificate (PEM).
    pub cert: Option<PathBuf>,
    /// The agent's private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA bundle the server's certificate must chain to (PEM).
    pub ca: Option<PathBuf>,
    /// The session token file `secumon-agent setup` wrote; sent with every push and renewed
    /// every 24 h.
    pub session: Option<PathBuf>,
}

/// Metric families an agent can collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricFamily {
    /// CPU time and usage, total and per core, plus load averages.
    Cpu,
    /// Memory and swap.
    Memory,
    /// Filesystem space and inodes per mountpoint, I/O per block device.
    Disk,
    /// Traffic per interface, TCP connections by state, UDP sockets.
    Network,
    /// Process counts by state, threads, top processes by CPU and memory.
    Processes,
    /// systemd units through D-Bus.
    Services,
    /// Docker containers through the Engine API.
    Containers,
}

/// The `metrics` section: which host metrics to collect and how often.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Time between two collection cycles (default 60 s).
    #[serde(default = "default_interval", deserialize_with = "positive_duration")]
    pub interval: Duration,
    /// The families to collect (default: cpu, memory, disk, network).
    #[serde(default = "default_families")]
    pub enabled: Vec<MetricFamily>,
    /// How many processes to report by CPU and by memory (default 10).
    #[serde(default = "default_top_processes")]
    pub top_processes: usize,
    /// Filesystem types to report although they are usually pseudo filesystems (`tmpfs`).
    #[serde(default)]
    pub include_fstypes: Vec<String>,
    /// systemd units to report besides every failed one (`nginx.service`).
    #[serde(default)]
    pub services: Vec<String>,
    /// The Docker Engine API socket (default `/var/run/docker.sock`).
    #[serde(default = "default_docker_socket")]
    pub docker_socket: PathBuf,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            enabled: default_families(),
            top_processes: default_top_processes(),
            include_fstypes: Vec::new(),
            services: Vec::new(),
            docker_socket: default_docker_socket(),
        }
    }
}

fn default_top_processes() -> usize {
    10
}

fn default_docker_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

impl MetricFamily {
    /// Every family, in declaration order.
    pub const ALL: [MetricFamily; 7] =
        [Self::Cpu, Self::Memory, Self::Disk, Self::Network, Self::Processes, Self::Services, Self::Containers];
}

fn default_families() -> Vec<MetricFamily> {
    vec![MetricFamily::Cpu, MetricFamily::Memory, MetricFamily::Disk, MetricFamily::Network]
}

/// A humantime duration (`10s`, `5m`) that must be greater than zero.
pub fn positive_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let duration: Duration = humantime_serde::deserialize(deserializer)?;
    if duration.is_zero() {
        return Err(D::Error::custom("duration must be greater than zero"));
    }
    Ok(duration)
}

/// The `logs` section: which logs to tail and ship.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Ship logs at all (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Files or globs to tail.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Also follow the systemd journal (through `journalctl`) where there is one (default true).
    #[serde(default = "default_true")]
    pub journald: bool,
    /// How long a file renamed away by a rotation is still read after it last grew: a
    /// writer keeps appending through its old handle until it reopens its log (default 5 s).
    #[serde(default = "default_rotation_grace", with = "humantime_serde")]
    pub rotation_grace: Duration,
}

fn default_rotation_grace() -> Duration {
    Duration::from_secs(5)
}

fn default_true() -> bool {
    true
}

impl Default for LogsSection {
    fn default() -> Self {
        Self { enabled: false, sources: Vec::new(), journald: true, rotation_grace: default_rotation_grace() }
    }
}

/// The `probe_mode` section: external checks the agent runs beside its collectors.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeModeSection {
    /// Run the targets at all (default false).
    #[serde(default)]
    pub enabled: bool,
    /// The checks to run.
    #[serde(default)]
    pub targets: Vec<ProbeTarget>,
}

/// One external check the agent runs in probe mode.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProbeTarget {
    /// An HTTP(S) GET of `url`.
    Http {
        /// The URL to fetch.
        url: String,
        /// Time between two runs (default 60 s).
        #[serde(default = "default_interval", deserialize_with = "positive_duration")]
        interval: Duration,
    },
    /// A TCP connect to `host:port`, expected to be open.
    Tcp {
        /// Host name or address.
        host: String,
        /// The port.
        port: u16,
        /// Time between two runs (default 60 s).
        #[serde(default = "default_interval", deserialize_with = "positive_duration")]
        interval: Duration,
    },
    /// ICMP echo to `host`.
    Ping {
        /// Host name or address.
        host: String,
        /// Time between two runs (default 60 s).
        #[serde(default = "default_interval", deserialize_with = "positive_duration")]
        interval: Duration,
    },
}

/// The on-disk spool that keeps batches the server has not acknowledged yet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Directory for the spool and the agent's identity (default `/var/lib/secumon/agent`).
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Bound on the spool's size on disk in bytes (default 256 MiB); the oldest batches are
    /// dropped beyond it.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        Self { dir: default_spool_dir(), max_bytes: default_spool_max_bytes() }
    }
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/secumon/agent")
}

fn default_spool_max_bytes() -> u64 {
    256 * 1024 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_AGENT_YAML: &str = r#"
# /etc/secumon/agent.yaml
agent:
  name: "srv-prod-01"
  labels:
    environment: production
    datacenter: bhs
    role: webserver

collector:
  endpoint: "collector.secuaas.ovh:9090"
  tls:
    enabled: true
    cert: "/etc/secumon/agent.crt"
    key: "/etc/secumon/agent.key"
    ca: "/etc/secumon/ca.crt"

metrics:
  interval: 60s
  enabled:
    - cpu
    - memory
    - disk
    - network
    - processes
    - services

logs:
  enabled: true
  sources:
    - /var/log/syslog
    - /var/log/auth.log
    - /var/log/nginx/*.log

probe_mode:
  enabled: true
  targets:
    - type: http
      url: "https://example.com"
      interval: 5m
    - type: tcp
      host: "example.com"
      port: 443
      interval: 1m
"#;

    #[test]
    fn accepts_the_seed_layout_as_written() {
        let config: AgentConfig = parse_yaml(SEED_AGENT_YAML, "agent.yaml").expect("seed parses");
        assert_eq!(config.agent.name.as_deref(), Some("srv-prod-01"));
        assert_eq!(config.agent.labels["datacenter"], "bhs");
        assert_eq!(config.collector.endpoint.0, "collector.secuaas.ovh:9090");
        assert!(config.collector.tls.enabled);
        assert_eq!(config.metrics.interval, Duration::from_secs(60));
        assert_eq!(config.metrics.enabled.len(), 6);
        assert_eq!(config.logs.sources[2], "/var/log/nginx/*.log");
        assert_eq!(config.logs.rotation_grace, Duration::from_secs(5), "the default");
        assert_eq!(
            config.probe_mode.targets[1],
            ProbeTarget::Tcp { host: "example.com".into(), port: 443, interval: Duration::from_secs(60) }
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "agent:\n  name: a\n  colour: blue\ncollector:\n  endpoint: h:1\n";
        let err = parse_yaml::<AgentConfig>(text, "/etc/agent.yaml").unwrap_err().to_string();
        assert!(err.starts_with("/etc/agent.yaml:3:"), "{err}");
        assert!(err.contains("key `agent.colour`"), "{err}");
    }

    #[test]
    fn unknown_key_in_a_probe_target_is_named() {
        let text = "collector:\n  endpoint: h:1\nprobe_mode:\n  targets:\n    - type: tcp\n      host: x\n      port: 1\n      colour: red\n";
        let err = parse_yaml::<AgentConfig>(text, "a.yaml").unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.starts_with("a.yaml:"), "{err}");
    }

    #[test]
    fn broken_yaml_names_file_and_line() {
        let text = "agent:\n  name: [unclosed\ncollector:\n  endpoint: h:1\n";
        let err = parse_yaml::<AgentConfig>(text, "agent.yaml").unwrap_err();
        let ConfigError::Invalid { line, .. } = &err else { panic!("{err}") };
        assert!(*line >= 2, "{err}");
        assert!(err.to_string().starts_with("agent.yaml:"), "{err}");
    }

    #[test]
    fn several_collector_endpoints_are_listed_in_order() {
        let text = "collector:\n  endpoints: [\"a:1\", \"b:2\"]\n";
        let config = parse_yaml::<AgentConfig>(text, "a.yaml").unwrap();
        assert_eq!(config.collector.endpoint.0, "a:1");
        let all: Vec<_> = config.collector.endpoints.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(all, ["a:1", "b:2"]);
        let single = parse_yaml::<AgentConfig>("collector:\n  endpoint: h:1\n", "a.yaml").unwrap();
        assert_eq!(single.collector.endpoints, [Endpoint("h:1".into())]);

        for (text, says) in [
            ("collector:\n  endpoint: h:1\n  endpoints: [\"a:1\"]\n", "both `endpoint` and `endpoints`"),
            ("collector:\n  endpoints: []\n", "lists no address"),
            ("collector:\n  tls:\n    enabled: false\n", "missing `endpoint`"),
        ] {
            let err = parse_yaml::<AgentConfig>(text, "a.yaml").unwrap_err().to_string();
            assert!(err.starts_with("a.yaml:") && err.contains("key `collector`") && err.contains(says), "{err}");
        }
        let err = parse_yaml::<AgentConfig>("collector:\n  endpoints: [\"a:1\", \"b\"]\n", "a.yaml").unwrap_err();
        assert!(err.to_string().contains("key `collector.endpoints[1]`"), "{err}");
        let err = parse_yaml::<AgentConfig>("collector:\n  endpoint: h:1\n  colour: red\n", "a.yaml").unwrap_err();
        assert!(err.to_string().contains("key `collector.colour`"), "{err}");
    }

    #[test]
    fn bad_values_are_named_with_their_key() {
        let text = "collector:\n  endpoint: no-port\n";
        let err = parse_yaml::<AgentConfig>(text, "a.yaml").unwrap_err().to_string();
        assert!(err.starts_with("a.yaml:2:"), "{err}");
        assert!(err.contains("key `collector.endpoint`"), "{err}");

        let text = "collector:\n  endpoint: h:1\nmetrics:\n  interval: 0s\n";
        let err = parse_yaml::<AgentConfig>(text, "a.yaml").unwrap_err().to_string();
        assert!(err.contains("key `metrics.interval`"), "{err}");
        assert!(err.contains("greater than zero"), "{err}");
    }
}
