//! The SecuMon agent: every interval it runs the host collectors, makes one batch of their
//! samples, appends it to the on-disk spool and lets the push client deliver it. Collection
//! never waits for the server, so an outage costs disk space, not data. Nor does it wait
//! for the disk: when the spool cannot be written (full, read-only), batches are delivered
//! from bounded memory, and the agent's own `secumon_agent_spool_*` series say so.
//!
//! ```no_run
//! # async fn demo(config: secumon_core::AgentConfig) -> Result<(), secumon_agent::AgentError> {
//! use secumon_agent::{Agent, AgentSettings};
//! let agent = Agent::open(AgentSettings::from_config(&config)?)?;
//! agent.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;

use secumon_collect::{CollectError, Collector, LogError, LogTailer, collectors_for};
use secumon_core::config::{LogsSection, MetricsSection, ProbeModeSection, TlsSection};
use secumon_core::proto::AgentConfigUpdate;
use secumon_core::{AgentConfig, IngestBatch, Labels, Sample, now_ms};
use secumon_scan::ScheduledCheck;
use secumon_transport::{
    ConfigStatus, PushClient, PushClientConfig, SessionFile, TlsFiles, TlsMaterial, TransportError,
};

mod managed;
mod probe;
mod setup;

use managed::{Managed, Parts};
pub use managed::{ManagedBase, with_services};
use probe::{Origin, run_checks};
pub use probe::{Probe, probe_mode_checks};
pub use setup::{SetupOptions, SetupReport, setup};
use tokio::sync::watch;

/// Probe-mode checks running at once, at most.
const PROBE_MODE_CONCURRENCY: usize = 8;

/// Why an agent, a probe or `setup` could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The state directory (or a file setup writes) could not be created, read or written.
    #[error("cannot use state directory {path}: {source}")]
    StateDir {
        /// The directory or file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spool could not be opened, the TLS files loaded, or enrollment failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Log tailing could not start (a bad glob, an unwritable positions file).
    #[error(transparent)]
    Logs(#[from] LogError),
    /// No name was configured and the system's host name is empty.
    #[error("cannot tell this machine's host name; set agent.name in the configuration")]
    NoHostName,
    /// TLS is enabled but one of its three files is not configured.
    #[error("collector.tls.enabled is true, so collector.tls.ca, .cert and .key must all be set")]
    TlsIncomplete,
    /// Setup refused to run (the configuration file exists and `force` is off).
    #[error("setup: {0}")]
    Setup(String),
}

/// Everything an agent needs to run, validated.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Host name reported as the `host` label.
    pub host: String,
    /// Labels added to every series the agent sends (`agent.labels`).
    pub labels: Labels,
    /// Which collectors, how often, and their settings.
    pub metrics: MetricsSection,
    /// Holds the agent's identity and its spool.
    pub state_dir: PathBuf,
    /// The server's gRPC ingest, `HOST:PORT`.
    pub endpoint: String,
    /// More gateways of the same server, tried in turn when one cannot be reached.
    pub failover_endpoints: Vec<String>,
    /// Bound on the spool's size on disk in bytes; the oldest batches are dropped beyond it.
    pub spool_max_bytes: u64,
    /// Mutual TLS to the server; plaintext when `None`.
    pub tls: Option<TlsMaterial>,
    /// The files `tls` was read from, rewritten when a renewal brings a certificate of a
    /// new agent CA.
    pub tls_files: Option<TlsFiles>,
    /// The enrolled agent's session token file.
    pub session: Option<SessionFile>,
    /// Log files and journal to ship.
    pub logs: LogsSection,
    /// Checks of `probe_mode`, run beside the collectors.
    pub probe_checks: Vec<ScheduledCheck>,
    /// The configuration file managed documents from the server are laid over; without
    /// one the agent refuses them (and runs these settings).
    pub managed: Option<ManagedBase>,
}

impl AgentSettings {
    /// The settings an agent configuration file describes, with no managed base. Errors when
    /// TLS is enabled without all its files or when they cannot be loaded, and when no host
    /// name is configured or found.
    pub fn from_config(config: &AgentConfig) -> Result<Self, AgentError> {
        let tls = tls_material(&config.collector.tls)?;
        Ok(Self {
            host: host_name(config.agent.name.as_deref())?,
            labels: config.agent.labels.clone(),
            metrics: config.metrics.clone(),
            state_dir: config.spool.dir.clone(),
            endpoint: config.collector.endpoint.0.clone(),
            failover_endpoints: config.collector.endpoints.iter().skip(1).map(|e| e.0.clone()).collect(),
            spool_max_bytes: config.spool.max_bytes,
            tls,
            tls_files: tls_files(&config.collector.tls),
            session: config.collector.tls.session.clone().map(SessionFile::new),
            logs: config.logs.clone(),
            probe_checks: probe_mode_checks(&config.probe_mode),
            managed: None,
        })
    }
}

/// The client certificate a `collector.tls` section names, if it is enabled.
pub(crate) fn tls_material(section: &TlsSection) -> Result<Option<TlsMaterial>, AgentError> {
    match (section.enabled, &section.ca, &section.cert, &section.key) {
        (false, ..) => Ok(None),
        (true, Some(ca), Some(cert), Some(key)) => Ok(Some(TlsMaterial::load(ca, cert, key)?)),
        (true, ..) => Err(AgentError::TlsIncomplete),
    }
}

/// Where the CA bundle and the certificate of an enabled `collector.tls` section live.
pub(crate) fn tls_files(section: &TlsSection) -> Option<TlsFiles> {
    match (section.enabled, &section.ca, &section.cert) {
        (true, Some(ca), Some(cert)) => Some(TlsFiles { ca: ca.clone(), cert: cert.clone() }),
        _ => None,
    }
}

/// The configured name, or this machine's.
pub(crate) fn host_name(configured: Option<&str>) -> Result<String, AgentError> {
    configured.map_or_else(system_host_name, |name| Ok(name.to_string()))
}

/// Delivers the spool in the background until the returned sender says `true`.
pub(crate) fn spawn_pusher(client: PushClient) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let pusher = tokio::spawn(async move {
        client
            .run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });
    (stop, pusher)
}

/// This machine's host name.
pub fn system_host_name() -> Result<String, AgentError> {
    let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
    if name.is_empty() { Err(AgentError::NoHostName) } else { Ok(name) }
}

/// Whether logs carry colour codes, for `secumon-agent` and `secumon` alike: only for a person
/// at a terminal (`to_terminal`: the log's stream is one), as a log file, a pipe or journald
/// would keep the raw escapes; and never while `NO_COLOR` (`no_color`, its value) is set to
/// anything but the empty string, whatever the output (no-color.org).
pub fn log_colours(to_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    to_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// A running agent: its identity, spool, collectors and log tailer. Built by [`Agent::open`],
/// driven by [`Agent::run`].
pub struct Agent {
    settings: AgentSettings,
    agent_id: String,
    client: PushClient,
    collectors: Vec<Box<dyn Collector>>,
    /// Collectors whose last run failed, so a lasting failure is logged once.
    failing: HashSet<&'static str>,
    logs: Option<LogTailer>,
    /// The managed document it runs (the empty version: its file alone).
    managed: Managed,
    /// What its batches tell the server of it.
    config_status: ConfigStatus,
    /// What the running probe checks were built from, once a managed document built them.
    probe_mode: Option<ProbeModeSection>,
}

/// The probe-mode checks running beside the collectors, and their own stop.
struct Probing {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probing {
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

impl Agent {
    /// Loads (or creates) the agent's identity in the state directory and opens its spool.
    pub fn open(settings: AgentSettings) -> Result<Self, AgentError> {
        Self::open_with(settings, |_| {})
    }

    /// [`Agent::open`], with the push client's settings (spool and memory bounds, backoff)
    /// adjusted by `tune` after they are derived from `settings`.
    pub fn open_with(
        mut settings: AgentSettings,
        tune: impl FnOnce(&mut PushClientConfig),
    ) -> Result<Self, AgentError> {
        let agent_id = load_or_create_agent_id(&settings.state_dir)?;
        let mut push = PushClientConfig::new(settings.endpoint.clone(), settings.state_dir.join("spool"));
        push.failover_endpoints = settings.failover_endpoints.clone();
        push.spool_max_bytes = settings.spool_max_bytes;
        push.tls = settings.tls.clone();
        push.tls_files = settings.tls_files.clone();
        push.session = settings.session.clone();
        tune(&mut push);
        let client = PushClient::open(push)?;
        // The managed document the last run ran, at once: the server may be away.
        let unmanaged = Managed { version: String::new(), document: serde_json::json!({}) };
        let mut config_status = ConfigStatus::default();
        let saved = settings.managed.as_ref().zip(Managed::load(&settings.state_dir));
        let (parts, managed) = match saved
            .map(|(base, saved)| (managed::build(base, &saved, &settings.state_dir), saved))
        {
            Some((Ok(parts), saved)) => (parts, saved),
            Some((Err(reason), saved)) => {
                tracing::warn!(version = %saved.version, %reason, "the saved managed configuration no longer applies; running the file's");
                (config_status.refused, config_status.error) = (saved.version, reason);
                (Self::file_parts(&mut settings)?, unmanaged)
            }
            None => (Self::file_parts(&mut settings)?, unmanaged),
        };
        config_status.running = managed.version.clone();
        client.report_config(config_status.clone());
        let mut agent = Self {
            settings,
            agent_id,
            client,
            collectors: Vec::new(),
            failing: HashSet::new(),
            logs: None,
            managed,
            config_status,
            probe_mode: None,
        };
        agent.swap_in(parts);
        tracing::info!(agent_id = %agent.agent_id, host = %agent.settings.host, interval = ?agent.settings.metrics.interval,
            managed = %agent.managed.version, "agent ready");
        Ok(agent)
    }

    /// The parts the settings themselves ask for.
    fn file_parts(settings: &mut AgentSettings) -> Result<Parts, AgentError> {
        let checks = std::mem::take(&mut settings.probe_checks);
        managed::build_parts(settings.metrics.clone(), settings.logs.clone(), checks, &settings.state_dir)
    }

    /// Runs `parts` from now on (the probe checks once `run` starts them).
    fn swap_in(&mut self, parts: Parts) {
        self.collectors = parts.collectors;
        self.failing.clear();
        self.logs = parts.tailer;
        self.settings.metrics = parts.metrics;
        self.settings.logs = parts.logs;
        self.settings.probe_checks = parts.probe_checks;
        self.probe_mode = parts.probe_mode;
    }

    /// The stable id this agent pushes under.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The push client, for its counters.
    pub fn push_client(&self) -> PushClient {
        self.client.clone()
    }

    /// Collects every interval and delivers in the background until `shutdown` completes,
    /// applying the managed configurations the server sends. What was not delivered by
    /// then stays in the spool for the next run.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let (stop, mut pusher) = spawn_pusher(self.client.clone());
        let mut probing = self.start_probing();
        let mut updates = self.client.config_updates();
        let mut ticker = tokio::time::interval(self.settings.metrics.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The pusher ends before the shutdown only when the server revoked this agent:
        // collecting on would fill the spool with batches nobody will take.
        let mut pusher_done = false;
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = &mut pusher => {
                    pusher_done = true;
                    break;
                }
                Ok(()) = updates.changed() => {
                    let Some(update) = updates.borrow_and_update().clone() else { continue };
                    let interval = self.settings.metrics.interval;
                    let probes = self.probe_mode.clone();
                    if self.apply(update) {
                        if self.settings.metrics.interval != interval {
                            // The next batch one new interval from now, and so on.
                            let first = tokio::time::Instant::now() + self.settings.metrics.interval;
                            ticker = tokio::time::interval_at(first, self.settings.metrics.interval);
                            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        if self.probe_mode != probes {
                            if let Some(running) = probing.take() {
                                running.stop().await;
                            }
                            probing = self.start_probing();
                        }
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            // Not raced against the shutdown: a batch half-way into the spool is finished,
            // rather than left to a background write that outlives the agent.
            self.collect_once().await;
        }
        stop.send_replace(true);
        if let Some(probing) = probing {
            probing.stop().await;
        }
        if !pusher_done {
            let _ = pusher.await;
        }
        tracing::info!(agent_id = %self.agent_id, "agent stopped");
    }

    /// Starts the probe-mode checks, if there are any.
    fn start_probing(&mut self) -> Option<Probing> {
        let checks = std::mem::take(&mut self.settings.probe_checks);
        if checks.is_empty() {
            return None;
        }
        let origin = Origin {
            agent_id: self.agent_id.clone(),
            host: self.settings.host.clone(),
            labels: self.settings.labels.clone(),
        };
        let (stop, mut stopped) = watch::channel(false);
        let done = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let task = tokio::spawn(run_checks(checks, PROBE_MODE_CONCURRENCY, self.client.clone(), origin, done));
        Some(Probing { stop, task })
    }

    /// Runs the managed configuration `update` names, or refuses it and keeps the one it
    /// runs; either way the next batches say so. Returns whether it now runs another one.
    fn apply(&mut self, update: AgentConfigUpdate) -> bool {
        let refused_before = !self.config_status.refused.is_empty() && update.version == self.config_status.refused;
        if update.version == self.managed.version || refused_before {
            return false;
        }
        let parsed = if update.version.is_empty() {
            Ok(serde_json::json!({}))
        } else {
            serde_json::from_str(&update.document_json).map_err(|e| format!("not a JSON document: {e}"))
        };
        let built = parsed.and_then(|document| {
            let managed = Managed { version: update.version.clone(), document };
            let Some(base) = &self.settings.managed else {
                return Err("this agent runs without a configuration file to lay a managed one over".to_string());
            };
            managed::build(base, &managed, &self.settings.state_dir).map(|parts| (parts, managed))
        });
        let (parts, managed) = match built {
            Ok(built) => built,
            Err(reason) => {
                tracing::error!(version = %update.version, %reason, "refused a managed configuration; keeping the running one");
                self.config_status.refused = update.version;
                self.config_status.error = reason;
                self.client.report_config(self.config_status.clone());
                return false;
            }
        };
        // Lines read so far are acknowledged before the tailer is replaced.
        if let Some(tailer) = &mut self.logs
            && self.client.stats().memory.batches == 0
            && let Err(error) = tailer.commit()
        {
            tracing::warn!(%error, "cannot save log positions; lines may be sent again");
        }
        if let Err(error) = managed.save(&self.settings.state_dir) {
            tracing::warn!(%error, "cannot keep the managed configuration for the next start; running it anyway");
        }
        self.swap_in(parts);
        tracing::info!(version = %managed.version, interval = ?self.settings.metrics.interval, "managed configuration applied");
        self.managed = managed;
        self.config_status = ConfigStatus { running: self.managed.version.clone(), ..ConfigStatus::default() };
        self.client.report_config(self.config_status.clone());
        true
    }

    /// Runs every collector once and spools the resulting batch.
    pub async fn collect_once(&mut self) {
        let timestamp_ms = now_ms();
        let mut samples = Vec::new();
        for collector in &mut self.collectors {
            let name = collector.name();
            match collector.collect(timestamp_ms, &mut samples) {
                Ok(()) => {
                    if self.failing.remove(name) {
                        tracing::info!(collector = name, "collector works again");
                    }
                }
                Err(error @ CollectError::Unavailable { .. }) => {
                    if self.failing.insert(name) {
                        tracing::info!(collector = name, %error, "not available on this machine; checking again every few minutes");
                    }
                }
                Err(error) => {
                    if self.failing.insert(name) {
                        tracing::warn!(collector = name, %error, "collector failed; retrying every cycle");
                    }
                }
            }
        }
        self.self_samples(timestamp_ms, &mut samples);
        let logs = self.logs.as_mut().map(|tailer| tailer.poll(timestamp_ms)).unwrap_or_default();
        let batch = IngestBatch {
            agent_id: self.agent_id.clone(),
            host: self.settings.host.clone(),
            agent_labels: self.settings.labels.clone(),
            created_at_ms: timestamp_ms,
            samples,
            logs,
            ..Default::default()
        };
        // The push client keeps the batch on disk, or in memory while the disk refuses; it
        // only refuses a batch too large to ever store.
        if let Err(error) = self.client.enqueue(batch).await {
            tracing::error!(%error, "batch refused by the spool; dropped");
        }
        // Positions move on only once every line read so far is on disk: lines held in
        // memory would be lost by a restart, so they are read again then.
        if let Some(tailer) = &mut self.logs
            && self.client.stats().memory.batches == 0
            && let Err(error) = tailer.commit()
        {
            tracing::error!(%error, "cannot save log positions; lines may be sent again after a restart");
        }
    }

    /// The agent's own health, so spool trouble is visible on the server (and a rule can
    /// alert on it, see `examples/alerting.yaml`).
    fn self_samples(&self, timestamp_ms: i64, out: &mut Vec<Sample>) {
        let stats = self.client.stats();
        let mut push = |name: &str, value: u64| out.push(Sample::new(name, Labels::new(), timestamp_ms, value as f64));
        push("secumon_agent_spool_pending_batches", stats.spool.pending_batches);
        push("secumon_agent_spool_bytes", stats.spool.pending_bytes);
        // Every batch lost, for whatever reason: the spool's bound, or memory's.
        push("secumon_agent_spool_dropped_batches_total", stats.spool.dropped_full + stats.memory.dropped);
        push("secumon_agent_spool_corrupt_records_total", stats.spool.corrupt_records);
        // 0 while the spool's disk is full or read-only: batches then wait in memory.
        push("secumon_agent_spool_writable", u64::from(stats.spool.writable));
        push("secumon_agent_spool_write_failures_total", stats.spool.write_failures);
        push("secumon_agent_spool_memory_batches", stats.memory.batches);
        push("secumon_agent_spool_memory_bytes", stats.memory.bytes);
        push("secumon_agent_spool_memory_dropped_batches_total", stats.memory.dropped);
        push("secumon_agent_rejected_batches_total", stats.rejected);
        // 1 while a renewed session token lives in memory only (its file could not be written).
        push("secumon_agent_session_unsaved", u64::from(stats.session_unsaved));
        push("secumon_agent_session_save_failures_total", stats.session_save_failures);
    }
}

/// Runs the collectors `metrics` asks for twice, `warmup` apart (ratios need two readings),
/// and returns the second cycle's samples and what failed.
pub fn collect_snapshot(metrics: &MetricsSection, warmup: std::time::Duration) -> (Vec<Sample>, Vec<String>) {
    let mut collectors = collectors_for(metrics);
    let mut failures = Vec::new();
    for collector in &mut collectors {
        let _ = collector.collect(now_ms(), &mut Vec::new());
    }
    std::thread::sleep(warmup);
    let timestamp_ms = now_ms();
    let mut samples = Vec::new();
    for collector in &mut collectors {
        if let Err(error) = collector.collect(timestamp_ms, &mut samples) {
            failures.push(format!("{}: {error}", collector.name()));
        }
    }
    (samples, failures)
}

/// Completes on SIGINT or SIGTERM: the shutdown trigger of the binaries.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The agent id is a UUID created on first start; it must survive restarts because the
/// server deduplicates on `(agent_id, sequence)`.
pub(crate) fn load_or_create_agent_id(state_dir: &Path) -> Result<String, AgentError> {
    let state_error = |source| AgentError::StateDir { path: state_dir.display().to_string(), source };
    std::fs::create_dir_all(state_dir).map_err(state_error)?;
    let path = state_dir.join("agent_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(state_error(e)),
    }
    let id = uuid::Uuid::new_v4().to_string();
    let temporary = state_dir.join("agent_id.tmp");
    std::fs::write(&temporary, &id).map_err(state_error)?;
    std::fs::rename(&temporary, &path).map_err(state_error)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_colours_only_at_a_terminal_and_never_with_no_color() {
        let set = |value: &'static str| Some(std::ffi::OsStr::new(value));
        assert!(log_colours(true, None), "a terminal, NO_COLOR unset");
        assert!(log_colours(true, set("")), "NO_COLOR empty counts as unset (no-color.org)");
        assert!(!log_colours(true, set("1")), "NO_COLOR set turns colours off at a terminal");
        assert!(!log_colours(true, set("false")), "any non-empty value, even this one");
        assert!(!log_colours(false, None), "a pipe or file gets no escapes");
        assert!(!log_colours(false, set("1")));
    }

    #[test]
    fn agent_id_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_agent_id(dir.path()).unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(load_or_create_agent_id(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_agent_id(other.path()).unwrap(), first);
    }
}
