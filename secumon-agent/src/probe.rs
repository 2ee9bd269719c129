//! Probe checks pushed like host metrics: [`Probe`] is the standalone probe daemon
//! (`secumon probe --config probe.yaml`); the agent's `probe_mode` runs its targets the same
//! way. Results are spooled as they come (one batch per burst of results), so an alert on
//! a check does not wait for the next collection cycle.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::config::{ProbeModeSection, ProbeTarget};
use secumon_core::{CheckResult, IngestBatch, Labels, now_ms};
use secumon_scan::{HttpCheck, PingCheck, PortList, ProbeConfig, ScheduledCheck, Scheduler, TcpScan};
use secumon_transport::{ConfigStatus, PushClient, PushClientConfig};
use tokio::sync::mpsc;

use crate::{AgentError, host_name, load_or_create_agent_id, spawn_pusher, tls_files, tls_material};

/// Results waiting for the spool when it cannot take them, at most.
const MAX_PENDING_RESULTS: usize = 10_000;

/// The agent's `probe_mode.targets` as scheduled checks (none when probe mode is off).
pub fn probe_mode_checks(section: &ProbeModeSection) -> Vec<ScheduledCheck> {
    if !section.enabled {
        return Vec::new();
    }
    let timeout = |interval: Duration| interval.min(Duration::from_secs(30));
    section
        .targets
        .iter()
        .enumerate()
        .map(|(index, target)| match target {
            ProbeTarget::Http { url, interval } => ScheduledCheck {
                check: Arc::new(HttpCheck::get(format!("http-{index}"), url.clone())),
                interval: *interval,
                timeout: timeout(*interval),
            },
            ProbeTarget::Tcp { host, port, interval } => ScheduledCheck {
                check: Arc::new(
                    TcpScan::new(format!("tcp-{index}"), host.clone(), PortList::single(*port))
                        .expect_open(vec![*port]),
                ),
                interval: *interval,
                timeout: timeout(*interval),
            },
            ProbeTarget::Ping { host, interval } => ScheduledCheck {
                check: Arc::new(PingCheck::new(format!("ping-{index}"), host.clone())),
                interval: *interval,
                timeout: timeout(*interval),
            },
        })
        .collect()
}

/// Who the results are from.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    pub agent_id: String,
    pub host: String,
    pub labels: Labels,
}

/// Runs `checks` and spools their results through `client` until `shutdown`.
pub(crate) async fn run_checks(
    checks: Vec<ScheduledCheck>,
    concurrency: usize,
    client: PushClient,
    origin: Origin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (results, mut incoming) = mpsc::channel::<CheckResult>(1_024);
    let scheduler = tokio::spawn(Scheduler::new(checks).concurrency(concurrency).run(results, shutdown));
    let mut pending: VecDeque<CheckResult> = VecDeque::new();
    while let Some(result) = incoming.recv().await {
        pending.push_back(result);
        while let Ok(more) = incoming.try_recv() {
            pending.push_back(more);
        }
        let batch = IngestBatch {
            agent_id: origin.agent_id.clone(),
            host: origin.host.clone(),
            agent_labels: origin.labels.clone(),
            created_at_ms: now_ms(),
            check_results: pending.iter().cloned().collect(),
            ..Default::default()
        };
        match client.enqueue(batch).await {
            Ok(_) => pending.clear(),
            Err(error) => {
                tracing::error!(%error, pending = pending.len(), "cannot spool check results; keeping them in memory");
                if pending.len() > MAX_PENDING_RESULTS {
                    let excess = pending.len() - MAX_PENDING_RESULTS;
                    pending.drain(..excess);
                    tracing::error!(dropped = excess, "spool unwritable and memory full: dropped the oldest results");
                }
            }
        }
    }
    let _ = scheduler.await;
}

/// The standalone probe: a `probe.yaml`'s checks, pushed to the server.
pub struct Probe {
    checks: Vec<ScheduledCheck>,
    concurrency: usize,
    client: PushClient,
    origin: Origin,
}

impl Probe {
    /// Loads (or creates) the probe's identity in `spool.dir` and opens its spool. Errors as
    /// [`Agent::open`](crate::Agent::open) does, and when TLS or the host name are missing.
    pub fn open(config: &ProbeConfig) -> Result<Self, AgentError> {
        let tls = tls_material(&config.collector.tls)?;
        let host = host_name(config.probe.name.as_deref())?;
        let agent_id = load_or_create_agent_id(&config.spool.dir)?;
        let mut push = PushClientConfig::new(config.collector.endpoint.0.clone(), config.spool.dir.join("spool"));
        push.failover_endpoints = config.collector.endpoints.iter().skip(1).map(|e| e.0.clone()).collect();
        push.spool_max_bytes = config.spool.max_bytes;
        push.tls = tls;
        push.tls_files = tls_files(&config.collector.tls);
        push.session = config.collector.tls.session.clone().map(secumon_transport::SessionFile::new);
        let client = PushClient::open(push)?;
        tracing::info!(%agent_id, %host, checks = config.checks.len(), "probe ready");
        Ok(Self {
            checks: config.checks.iter().map(|c| c.scheduled()).collect(),
            concurrency: config.probe.concurrency,
            client,
            origin: Origin { agent_id, host, labels: config.probe.labels.clone() },
        })
    }

    /// The push client, for its counters.
    pub fn push_client(&self) -> PushClient {
        self.client.clone()
    }

    /// Runs the checks and delivers their results until `shutdown` completes; what was not
    /// delivered stays in the spool.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, pusher) = spawn_pusher(self.client.clone());
        let refusing = tokio::spawn(refuse_managed_configs(self.client.clone()));
        run_checks(self.checks, self.concurrency, self.client, self.origin, shutdown).await;
        refusing.abort();
        stop.send_replace(true);
        let _ = pusher.await;
        tracing::info!("probe stopped");
    }
}

/// A standalone probe runs its `probe.yaml`: it refuses the managed agent configurations
/// its labels select, with the reason, so the server shows why and stops sending them.
async fn refuse_managed_configs(client: PushClient) {
    let mut updates = client.config_updates();
    while updates.changed().await.is_ok() {
        let Some(update) = updates.borrow_and_update().clone() else { continue };
        let error = "a standalone probe runs the checks of its probe.yaml, not a managed agent configuration";
        client.report_config(ConfigStatus { running: String::new(), refused: update.version, error: error.into() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_mode_targets_become_scheduled_checks() {
        let config: secumon_core::AgentConfig = secumon_core::config::parse_yaml(
            "collector: {endpoint: '127.0.0.1:9090'}\nprobe_mode:\n  enabled: true\n  targets:\n    \
             - {type: http, url: 'https://shop.example/', interval: 30s}\n    \
             - {type: tcp, host: 127.0.0.1, port: 443, interval: 2m}\n    \
             - {type: ping, host: 192.0.2.1}\n",
            "agent.yaml",
        )
        .unwrap();
        let checks = probe_mode_checks(&config.probe_mode);
        let shape: Vec<(&str, String, Duration, Duration)> =
            checks.iter().map(|c| (c.check.kind(), c.check.target(), c.interval, c.timeout)).collect();
        assert_eq!(
            shape,
            vec![
                ("http", "https://shop.example/".to_string(), Duration::from_secs(30), Duration::from_secs(30)),
                ("tcp", "127.0.0.1".to_string(), Duration::from_secs(120), Duration::from_secs(30)),
                ("ping", "192.0.2.1".to_string(), Duration::from_secs(60), Duration::from_secs(30)),
            ]
        );
        let disabled = ProbeModeSection { enabled: false, ..config.probe_mode };
        assert!(probe_mode_checks(&disabled).is_empty());
    }
}
