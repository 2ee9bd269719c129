//! The [`Check`] trait every probe check implements, and [`run_check`], which runs one and
//! always yields a [`CheckResult`].

use std::time::{Duration, Instant};

use async_trait::async_trait;
use secumon_core::{CheckResult, CheckStatus, Labels, Sample, now_ms};

use crate::details::CheckDetails;

/// Why a check could not say whether its target is fine: the result is `unknown`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A host name could not be resolved.
    #[error("cannot resolve {name}: {reason}")]
    Resolve {
        /// The name.
        name: String,
        /// Why, as the resolver said.
        reason: String,
    },
    /// The check's settings cannot work (a bad port list, URL, OID...).
    #[error("invalid check: {0}")]
    Invalid(String),
    /// A socket or file operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Anything else, as one line.
    #[error("{0}")]
    Other(String),
}

/// What a check found: its status, kind-specific details and samples (without the
/// check's own labels, which [`run_check`] adds through [`CheckResult::metric_samples`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome {
    /// `ok`, `warning`, `critical` or `unknown`.
    pub status: CheckStatus,
    /// The kind-specific details; they become the result's `details` JSON.
    pub details: CheckDetails,
    /// Samples as (name, labels, value), without the check's own labels.
    pub samples: Vec<(String, Labels, f64)>,
}

impl Outcome {
    /// An outcome with no samples yet.
    pub fn new(status: CheckStatus, details: impl Into<CheckDetails>) -> Self {
        Self { status, details: details.into(), samples: Vec::new() }
    }

    /// Adds one sample.
    pub fn sample(mut self, name: &str, labels: Labels, value: f64) -> Self {
        self.samples.push((name.to_string(), labels, value));
        self
    }
}

/// One kind of probe check, configured for one target.
#[async_trait]
pub trait Check: Send + Sync {
    /// The check's name in the configuration: stable across runs.
    fn id(&self) -> &str;
    /// `ping`, `trace`, `tcp`, `udp`, `http`, `dns`...
    fn kind(&self) -> &'static str;
    /// What is checked, as the operator wrote it.
    fn target(&self) -> String;
    /// Runs the check once. An `Err` means the target's state is unknown.
    async fn execute(&self) -> Result<Outcome, CheckError>;
}

/// Runs `check` once, giving up after `timeout`; failures become `unknown` with the
/// reason in `details.error`.
pub async fn run_check(check: &dyn Check, timeout: Duration) -> CheckResult {
    let started = Instant::now();
    let timestamp_ms = now_ms();
    let outcome = match tokio::time::timeout(timeout, check.execute()).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => Outcome::new(CheckStatus::Unknown, CheckDetails::Error { error: error.to_string() }),
        Err(_) => Outcome::new(
            CheckStatus::Unknown,
            CheckDetails::Error { error: format!("timed out after {}", humantime::format_duration(timeout)) },
        ),
    };
    CheckResult {
        check_id: check.id().to_string(),
        kind: check.kind().to_string(),
        target: check.target(),
        status: outcome.status,
        timestamp_ms,
        duration_us: started.elapsed().as_micros() as u64,
        details: outcome.details.to_json(),
        samples: outcome
            .samples
            .into_iter()
            .map(|(name, labels, value)| Sample::new(name, labels, timestamp_ms, value))
            .collect(),
    }
}

/// Resolves a host name or address to its addresses, for checks that connect.
pub(crate) async fn resolve(host: &str) -> Result<Vec<std::net::IpAddr>, CheckError> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse() {
        return Ok(vec![ip]);
    }
    let addresses: Vec<std::net::IpAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| CheckError::Resolve { name: host.to_string(), reason: e.to_string() })?
        .map(|a| a.ip())
        .collect();
    if addresses.is_empty() {
        return Err(CheckError::Resolve { name: host.to_string(), reason: "no address".into() });
    }
    Ok(addresses)
}
