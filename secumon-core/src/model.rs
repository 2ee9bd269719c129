//! The data model shared by every SecuMon crate: samples and their series, check results,
//! events, log records and vulnerability findings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Label set of a series, kept sorted by name so that equal sets compare and hash equal.
pub type Labels = BTreeMap<String, String>;

/// Label every stored series carries: the host the agent reports for.
pub const HOST_LABEL: &str = "host";
/// Label every stored series carries: the tenant that owns it.
pub const TENANT_LABEL: &str = "tenant";
/// The tenant that exists from the start: the provider's own.
pub const DEFAULT_TENANT: &str = "default";

/// A metric name plus its labels: the identity of a time series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric name, Prometheus style (`memory_total_bytes`).
    pub name: String,
    /// The series' labels.
    pub labels: Labels,
}

impl SeriesKey {
    /// The series `name` with `labels`.
    pub fn new(name: impl Into<String>, labels: Labels) -> Self {
        Self { name: name.into(), labels }
    }
}

impl fmt::Display for SeriesKey {
    /// Prometheus exposition style: `name{a="1",b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// One value of one series at one instant. Values are in base units (bytes, seconds, ratios).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series it belongs to.
    pub series: SeriesKey,
    /// When it was measured, milliseconds since 1970.
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// A sample of the series `name` with `labels`.
    pub fn new(name: impl Into<String>, labels: Labels, timestamp_ms: i64, value: f64) -> Self {
        Self { series: SeriesKey::new(name, labels), timestamp_ms, value }
    }
}

/// Status of a check run, ordered from best to worst except `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The target answered as expected.
    Ok,
    /// The target answered, but past a warning threshold.
    Warning,
    /// The target failed or is past a critical threshold.
    Critical,
    /// The check could not tell (it could not run, or its answer made no sense).
    Unknown,
}

impl CheckStatus {
    /// The lowercase name, as in JSON: `ok`, `warning`, `critical`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Unknown => "unknown",
        }
    }

    /// The value of the `check_status` sample: 0 ok, 1 warning, 2 critical, 3 unknown.
    pub fn code(self) -> f64 {
        match self {
            Self::Ok => 0.0,
            Self::Warning => 1.0,
            Self::Critical => 2.0,
            Self::Unknown => 3.0,
        }
    }
}

/// The outcome of one run of a probe check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's id, unique per sender.
    pub check_id: String,
    /// The kind of check (`tcp`, `tls`, `http`, `dns`...).
    pub kind: String,
    /// What was checked (a host, `host:port`, a URL).
    pub target: String,
    /// The outcome.
    pub status: CheckStatus,
    /// When the run started, milliseconds since 1970.
    pub timestamp_ms: i64,
    /// How long the run took, in microseconds.
    pub duration_us: u64,
    /// Structured, kind-specific details.
    pub details: serde_json::Value,
    /// The check's own samples (latency, loss, days to expiry...).
    pub samples: Vec<Sample>,
}

impl CheckResult {
    /// Labels that tie a sample to this check: `check`, `kind` and `target`.
    pub fn labels(&self) -> Labels {
        Labels::from([
            ("check".to_string(), self.check_id.clone()),
            ("kind".to_string(), self.kind.clone()),
            ("target".to_string(), self.target.clone()),
        ])
    }

    /// The samples this run adds to the check's series, each under [`CheckResult::labels`]
    /// (its own labels win): `check_status` ([`CheckStatus::code`]),
    /// `check_duration_seconds`, then the check's own samples.
    pub fn metric_samples(&self) -> Vec<Sample> {
        let labels = self.labels();
        let mut out = Vec::with_capacity(self.samples.len() + 2);
        out.push(Sample::new("check_status", labels.clone(), self.timestamp_ms, self.status.code()));
        out.push(Sample::new(
            "check_duration_seconds",
            labels.clone(),
            self.timestamp_ms,
            self.duration_us as f64 / 1e6,
        ));
        for sample in &self.samples {
            let mut merged = labels.clone();
            merged.extend(sample.series.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.push(Sample::new(sample.series.name.clone(), merged, sample.timestamp_ms, sample.value));
        }
        out
    }
}

/// Severity shared by events and findings, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information; nothing to fix.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lowercase name, as in JSON: `info`, `low`, `medium`, `high`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// A discrete change: a service went down, a certificate changed, an agent connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened, milliseconds since 1970.
    pub timestamp_ms: i64,
    /// What kind of change, a short name chosen by the sender.
    pub kind: String,
    /// How serious it is.
    pub severity: Severity,
    /// What it concerns.
    pub labels: Labels,
    /// A human-readable description.
    pub message: String,
}

/// One log line with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the line was read (or, from the journal, written), milliseconds since 1970.
    pub timestamp_ms: i64,
    /// A file path, or `journald`.
    pub source: String,
    /// Labels of the source (from the journal: `unit`, `identifier`, `priority`).
    pub labels: Labels,
    /// The line, without its newline.
    pub line: String,
}

/// Lifecycle of a vulnerability finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    /// Reported and not fixed yet.
    Open,
    /// No longer reported, or marked fixed.
    Fixed,
}

/// A vulnerability reported by a scanner about an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// CVE id or scanner rule id.
    pub id: String,
    /// How serious it is, as the scanner rated it.
    pub severity: Severity,
    /// Host name, URL or image the finding is about.
    pub asset: String,
    /// One-line summary.
    pub title: String,
    /// The scanner's description; may be empty.
    pub description: String,
    /// When it was first reported, milliseconds since 1970.
    pub first_seen_ms: i64,
    /// When it was last reported, milliseconds since 1970.
    pub last_seen_ms: i64,
    /// Open or fixed.
    pub status: FindingStatus,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_key_displays_in_exposition_style() {
        let labels =
            Labels::from([("mountpoint".to_string(), "/".to_string()), ("device".to_string(), "sda1".to_string())]);
        let key = SeriesKey::new("filesystem_size_bytes", labels);
        assert_eq!(key.to_string(), r#"filesystem_size_bytes{device="sda1",mountpoint="/"}"#);
    }

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Info < Severity::Low);
    }
}
