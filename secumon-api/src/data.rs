//! Probe checks' latest results (`GET /api/v1/checks`) and scanner findings
//! (`GET /api/v1/findings`, and `POST /api/v1/findings` to import a report).

use secumon_core::{CheckResult, Finding};
use serde::{Deserialize, Serialize};

/// A check's latest run, with the probe (agent) that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestCheck {
    /// The probe (agent) that ran the check.
    pub agent_id: String,
    /// The host the probe runs on.
    pub host: String,
    /// The check's latest result.
    pub result: CheckResult,
}

/// The latest result of every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckList {
    /// One entry per check and probe.
    pub checks: Vec<LatestCheck>,
}

/// `GET /findings`: which findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct FindingsQuery {
    /// Only this asset's findings (a host name, image or URL, as the report named it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// At least this severe: info, low, medium, high, critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// open or fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// At most this many findings: default 100, at most 10 000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Skip this many first (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

/// `GET /findings`: the tenant's findings that match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FindingList {
    /// The findings (scanner id, severity, asset, title, first and last seen, status).
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub findings: Vec<Finding>,
}

/// `POST /findings`: how to read the report in the body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct ImportQuery {
    /// `sarif`, `trivy`, `nuclei`, `secumon` or `auto` (the default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The report covers its assets completely (default true): what it no longer lists is fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_scan: Option<bool>,
    /// A name for the report in error messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// What an import did, by count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ImportResult {
    /// The format the report was read as.
    pub format: String,
    /// Findings in the report.
    pub findings: usize,
    /// Findings not seen before.
    pub new: usize,
    /// Findings marked fixed before that the report lists again.
    pub reopened: usize,
    /// Open findings of the report's assets it no longer lists (full scans only).
    pub fixed: usize,
    /// Findings already open and listed again.
    pub unchanged: usize,
}
