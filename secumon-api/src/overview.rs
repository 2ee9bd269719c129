//! `GET /api/v1/overview`: the fleet in one request, a row per host (agent) with its status,
//! firing alerts and latest gauges, optionally grouped.

use secumon_core::Labels;
use serde::{Deserialize, Serialize};

/// `GET /overview`: which rows, in which order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct OverviewQuery {
    /// Rows per page, 1 to 10 000 (default 10 000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Skip this many rows first (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// `alerts` (most firing first; default), `name`, `cpu`, `memory`, `disk`, `last_seen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// Case-insensitive text the host name, the tenant or a `label=value` must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `tenant`, or an agent label (`client`, `site`, `role`): rows come group by group,
    /// and `groups` counts each over every matching host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Every tenant (super-admin only); else the caller's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_tenants: Option<bool>,
}

fn agent_kind() -> String {
    "agent".into()
}

/// One host (agent) on the overview.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct OverviewHost {
    /// The agent's tenant.
    pub tenant: String,
    /// The agent's id.
    pub agent_id: String,
    /// The host's name.
    pub host: String,
    /// The agent's labels.
    pub labels: Labels,
    /// `agent`, or `script` (pushing through `POST /ingest`), as in `GET /agents`.
    #[serde(default = "agent_kind")]
    pub kind: String,
    /// `online`, `offline`, `idle` (a script not run lately) or `refused`, as in `GET
    /// /agents`.
    pub status: String,
    /// When it last pushed (Unix ms).
    pub last_seen_ms: i64,
    /// Alerts firing with this host's `host` label.
    pub firing: usize,
    /// Latest ratios (0-1) within the last 15 minutes; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Memory in use, ratio 0-1, within the last 15 minutes; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// The fullest filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
    /// Its clock minus the server's, ms; absent when not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// The server re-stamps its data by that offset.
    #[serde(default)]
    pub clock_corrected: bool,
    /// Status `refused`: why its latest batch was refused (a sender whose every batch was
    /// refused is listed too, from what it sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_reason: Option<String>,
}

impl OverviewHost {
    /// `offline` or `refused`: a script that has not run lately (`idle`) is not down.
    pub fn is_down(&self) -> bool {
        !matches!(self.status.as_str(), "online" | "idle")
    }
}

/// A group's counts over every host that matches the filter (not only this page's).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct OverviewGroup {
    /// The tenant or label value; empty for hosts without the label.
    pub name: String,
    /// Hosts in the group.
    pub hosts: usize,
    /// Hosts `offline` or `refused` (an `idle` script is not down).
    pub down: usize,
    /// Alerts firing on its hosts.
    pub firing: usize,
}

/// `GET /overview`: a page of hosts with their status, firing alerts and gauges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Overview {
    /// The rows of this page.
    pub hosts: Vec<OverviewHost>,
    /// Hosts matching the filter, on every page.
    pub total: usize,
    /// Hosts known, before the filter.
    pub known: usize,
    /// The `offset` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// With `group_by`: every group, in the rows' order.
    #[serde(default)]
    pub groups: Vec<OverviewGroup>,
}
