//! The agent's side of central configuration: what its own file says (the base a managed
//! document is laid over, with the keys it pins), the last good managed document kept in
//! the state directory so a restart runs it at once (also while the server is away), and
//! building the collection parts a document asks for, refusing what this host cannot run.

use std::path::{Path, PathBuf};

use secumon_collect::{Collector, LogTailer, collectors_for};
use secumon_core::config::{LogsSection, MetricFamily, MetricsSection, ProbeModeSection};
use secumon_core::{AgentConfig, ConfigError, managed};
use secumon_scan::ScheduledCheck;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::probe_mode_checks;

/// What the agent's own file says, for laying managed documents over it.
#[derive(Debug, Clone)]
pub struct ManagedBase {
    /// `agent.yaml` as read (YAML turned JSON).
    local: Value,
    /// Its `agent.pinned` keys.
    pins: Vec<String>,
    /// Units named on the command line (`--monitor-service`), monitored whatever the
    /// document says.
    extra_services: Vec<String>,
}

impl ManagedBase {
    /// Reads the agent's configuration file again as a document.
    pub fn read(path: &Path, extra_services: Vec<String>) -> Result<Self, ConfigError> {
        let local: Value = secumon_core::config::load_yaml(path)?;
        let config: AgentConfig = AgentConfig::load(path)?;
        Ok(Self { local, pins: config.agent.pinned, extra_services })
    }

    /// The configuration `document` makes of the file; `origin` names it in errors.
    fn config(&self, document: &Value, origin: &str) -> Result<AgentConfig, ConfigError> {
        let mut config = managed::apply(&self.local, document, &self.pins, origin)?;
        config.metrics = with_services(config.metrics, &self.extra_services);
        Ok(config)
    }
}

/// `metrics` that also monitors `services` (and so collects the services family).
pub fn with_services(mut metrics: MetricsSection, services: &[String]) -> MetricsSection {
    if !services.is_empty() {
        metrics.services.extend(services.iter().cloned());
        if !metrics.enabled.contains(&MetricFamily::Services) {
            metrics.enabled.push(MetricFamily::Services);
        }
    }
    metrics
}

/// A managed document the agent runs, as kept in its state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Managed {
    pub version: String,
    pub document: Value,
}

impl Managed {
    /// The file the running document is kept in.
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("managed-config.json")
    }

    /// The document the previous run ran, if any (an unreadable file counts as none: the
    /// server sends the document again on the first acknowledgement).
    pub fn load(state_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(Self::path(state_dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps this document for the next start (written beside, then renamed); the empty
    /// version removes the file.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(state_dir);
        if self.version.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        }
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&temporary, &path)
    }
}

/// The collection parts a configuration asks for, built and ready to swap in.
pub(crate) struct Parts {
    pub metrics: MetricsSection,
    pub logs: LogsSection,
    pub collectors: Vec<Box<dyn Collector>>,
    pub tailer: Option<LogTailer>,
    pub probe_checks: Vec<ScheduledCheck>,
    /// What the probe checks were built from; `None` when built from settings.
    pub probe_mode: Option<ProbeModeSection>,
}

/// Builds what `managed` asks for over `base` (the empty version: the file alone), or says
/// why this agent cannot run it.
pub(crate) fn build(base: &ManagedBase, managed: &Managed, state_dir: &Path) -> Result<Parts, String> {
    let origin = format!("managed configuration {}", managed.version);
    let config = base.config(&managed.document, &origin).map_err(|error| error.to_string())?;
    let checks = probe_mode_checks(&config.probe_mode);
    let mut parts =
        build_parts(config.metrics, config.logs, checks, state_dir).map_err(|error| format!("{origin}: {error}"))?;
    parts.probe_mode = Some(config.probe_mode);
    Ok(parts)
}

/// Builds the collectors and the log tailer of `metrics` and `logs`.
pub(crate) fn build_parts(
    metrics: MetricsSection,
    logs: LogsSection,
    probe_checks: Vec<ScheduledCheck>,
    state_dir: &Path,
) -> Result<Parts, crate::AgentError> {
    let tailer = if logs.enabled {
        let mut tailer = LogTailer::open(&logs.sources, &state_dir.join("log-positions.json"))?
            .with_rotation_grace(logs.rotation_grace);
        if logs.journald {
            tailer.follow_journal(Path::new("journalctl"));
        }
        Some(tailer)
    } else {
        None
    };
    let collectors = collectors_for(&metrics);
    Ok(Parts { metrics, logs, collectors, tailer, probe_checks, probe_mode: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(dir: &Path, yaml: &str) -> ManagedBase {
        let path = dir.join("agent.yaml");
        std::fs::write(&path, yaml).unwrap();
        ManagedBase::read(&path, vec!["ssh.service".into()]).unwrap()
    }

    const FILE: &str = "collector:\n  endpoint: \"127.0.0.1:9090\"\nagent:\n  pinned: [metrics.top_processes]\n\
                        metrics:\n  interval: 30s\n  top_processes: 4\n";

    #[test]
    fn a_document_is_built_over_the_file_with_its_pins_and_command_line_services() {
        let dir = tempfile::tempdir().unwrap();
        let base = base(dir.path(), FILE);
        let managed =
            Managed { version: "v1".into(), document: json!({"metrics": {"interval": "5s", "top_processes": 50}}) };
        let parts = build(&base, &managed, dir.path()).unwrap();
        assert_eq!(parts.metrics.interval, std::time::Duration::from_secs(5));
        assert_eq!(parts.metrics.top_processes, 4, "pinned by the file");
        assert_eq!(parts.metrics.services, ["ssh.service"]);
        assert!(parts.tailer.is_none());
    }

    #[test]
    fn what_this_host_cannot_run_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let base = base(dir.path(), FILE);
        let bad_pattern =
            Managed { version: "v2".into(), document: json!({"logs": {"enabled": true, "sources": ["/var/log/[x"]}}) };
        let error = build(&base, &bad_pattern, dir.path()).err().unwrap();
        assert!(error.contains("managed configuration v2") && error.contains("/var/log/[x"), "{error}");
        let unknown = Managed { version: "v3".into(), document: json!({"metrics": {"gpu": true}}) };
        let error = build(&base, &unknown, dir.path()).err().unwrap();
        assert!(error.contains("metrics.gpu"), "{error}");
    }

    #[test]
    fn the_running_document_survives_a_restart_and_the_empty_version_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Managed::load(dir.path()), None);
        let managed = Managed { version: "v1".into(), document: json!({"metrics": {"interval": "5s"}}) };
        managed.save(dir.path()).unwrap();
        assert_eq!(Managed::load(dir.path()), Some(managed));
        Managed { version: String::new(), document: json!({}) }.save(dir.path()).unwrap();
        assert_eq!(Managed::load(dir.path()), None);
    }
}
