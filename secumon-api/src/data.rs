//! Probe checks' latest results (`GET /api/v1/checks`) and scanner findings
//! (`GET /api/v1/findings`).

use secumon_core::{CheckResult, Finding};
use serde::{Deserialize, Serialize};

/// A check's latest run, with the probe (agent) that ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestCheck {
    pub agent_id: String,
    pub host: String,
    pub result: CheckResult,
}

/// The latest result of every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckList {
    pub checks: Vec<LatestCheck>,
}

/// `GET /findings`: which findings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct FindingsQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// At least this severe: info, low, medium, high, critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// open or fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct FindingList {
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub findings: Vec<Finding>,
}
