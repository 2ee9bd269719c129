//! `GET /api/v1/reports`: a tenant's service report over a period (availability per host
//! and per check, alerts by severity with MTTA and MTTR, certificates expiring soon, open
//! findings by severity, top hosts by CPU, memory and disk). The server computes it from
//! the store; the CLI and the scheduled e-mails render this same value to PDF, Excel, HTML
//! or JSON, so every format shows the API's numbers.

use serde::{Deserialize, Serialize};

/// `GET /reports`: which period.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct ReportQuery {
    /// How far back from now the report looks: `1h` to `366d` (default `30d`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// The period's end, Unix ms (default now); the report covers `end - period` to `end`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<i64>,
}

/// A tenant's report over `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Report {
    /// The tenant reported on.
    pub tenant: String,
    /// The period as asked (`30d`).
    pub period: String,
    /// Start of the period, Unix ms (included).
    pub from_ms: i64,
    /// End of the period, Unix ms (excluded).
    pub to_ms: i64,
    /// When the report was computed, Unix ms.
    pub generated_ms: i64,
    /// Each host's availability, least available first.
    pub hosts: Vec<HostAvailability>,
    /// Each check's availability (per probe), least available first.
    pub checks: Vec<CheckAvailability>,
    /// Alerts that fired within the period, by severity.
    pub alerts: AlertSummary,
    /// Certificates (TLS and HTTPS checks' latest results) expiring within 30 days of the
    /// report's end, soonest first; expired ones included.
    pub certificates: Vec<ExpiringCertificate>,
    /// Open findings by severity, most severe first (every severity, zero included).
    pub findings: Vec<FindingCount>,
    /// The hosts with the highest mean usage over the period.
    pub top_hosts: TopHosts,
}

/// How long a host was reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HostAvailability {
    /// The host's name.
    pub host: String,
    /// Its agent's id.
    pub agent_id: String,
    /// Buckets of the period (from the host's first sample on, if that is later) it had
    /// samples in.
    pub reporting_buckets: u64,
    /// Buckets of the period counted (from its first sample on).
    pub expected_buckets: u64,
    /// Bucket width, ms (1 minute on raw samples; the rollup width on older periods).
    pub bucket_ms: i64,
    /// `reporting_buckets / expected_buckets`, 0 to 1.
    pub availability: f64,
}

/// How often a check succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct CheckAvailability {
    /// The check's id.
    pub check_id: String,
    /// Its kind (`tcp`, `tls`, `http`...).
    pub kind: String,
    /// What it checks.
    pub target: String,
    /// The probe (host) that ran it.
    pub host: String,
    /// Runs within the period.
    pub runs: u64,
    /// Runs whose status was `ok`.
    pub successes: u64,
    /// `successes / runs`, 0 to 1.
    pub availability: f64,
}

/// Alerts of one severity that fired within the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SeverityAlerts {
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// Times an alert of this severity went firing within the period.
    pub fired: u64,
    /// Of those, acknowledged (by now).
    pub acknowledged: u64,
    /// Of those, resolved (by now).
    pub resolved: u64,
    /// Mean time to acknowledge, seconds: mean of (acknowledged - fired) over acknowledged
    /// firings; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtta_seconds: Option<f64>,
    /// Mean time to resolve, seconds: mean of (resolved - fired) over resolved firings;
    /// absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mttr_seconds: Option<f64>,
}

/// Alerts by severity, and the same over all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AlertSummary {
    /// `critical`, `warning`, `info`, in that order (zero rows included).
    pub by_severity: Vec<SeverityAlerts>,
    /// Every severity together (`severity` is `all`).
    pub total: SeverityAlerts,
}

/// A certificate that expires soon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ExpiringCertificate {
    /// The check that saw it.
    pub check_id: String,
    /// The check's target.
    pub target: String,
    /// The probe (host) that ran the check.
    pub host: String,
    /// The certificate's subject, when the check reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its `notAfter`, Unix ms.
    pub not_after_ms: i64,
    /// Days from the report's end to `notAfter` (negative: expired).
    pub days_left: f64,
}

/// Open findings of one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FindingCount {
    /// `critical`, `high`, `medium`, `low` or `info`.
    pub severity: String,
    /// Open findings of it.
    pub open: u64,
}

/// A host's mean usage of one resource over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct HostUsage {
    /// The host's name.
    pub host: String,
    /// Mean usage, ratio 0 to 1.
    pub mean: f64,
}

/// The busiest hosts, at most ten each, highest mean first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TopHosts {
    /// By `cpu_usage_ratio`.
    pub cpu: Vec<HostUsage>,
    /// By `memory_used_ratio`.
    pub memory: Vec<HostUsage>,
    /// By `filesystem_used_ratio` (the host's fullest filesystem, by its mean).
    pub disk: Vec<HostUsage>,
}
