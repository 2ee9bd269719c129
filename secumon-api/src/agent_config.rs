//! Agent configuration managed centrally (`/agent-config`): the layers an operator sets per
//! tenant and label selector, the configuration one agent should run, and what it reports
//! running or refusing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One layer: sections of `agent.yaml` (`metrics`, `logs`, `probe_mode`) for the agents
/// its selector matches. Layers merge key by key: `default` first, then selectors with
/// fewer labels before those with more (then by name), the later one winning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentConfigLayer {
    /// `default` (every agent of the tenant) or `label=value[,label=value…]` (agents
    /// whose `agent.labels` hold all of them), written canonically (labels sorted).
    pub selector: String,
    /// The sections it sets, as in `agent.yaml`.
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub document: Value,
    /// When it was last set (Unix ms).
    pub updated_ms: i64,
    /// Who set it (a user name or an API key's name).
    pub updated_by: String,
}

/// `GET /agent-config`: the tenant's layers in merge order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentConfigLayers {
    /// The layers, in merge order.
    pub layers: Vec<AgentConfigLayer>,
}

/// What an agent last said of its managed configuration (on every batch it pushes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentConfigReport {
    /// The version it runs; empty: its own `agent.yaml` only.
    pub running_version: String,
    /// The latest version it refused, with its reason; absent when it refused none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_version: Option<String>,
    /// Why `refused_version` was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_error: Option<String>,
    /// When the agent last reported (Unix ms, server clock).
    pub reported_ms: i64,
}

/// `GET /agents/{id}/config`: what one agent should run and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentConfigState {
    /// The agent's id.
    pub agent_id: String,
    /// The version of the merged document it should run; empty when nothing is managed.
    pub version: String,
    /// The merged document.
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub document: Value,
    /// The layers that make it, in merge order.
    pub selectors: Vec<String>,
    /// `current` (it runs `version`), `pending` (not yet: it applies it on its next
    /// batch's acknowledgement), `refused` (it refused `version`: see `report`), or
    /// `unknown` (it has not pushed since this server started).
    pub state: String,
    /// What the agent last reported; absent when it has not pushed since this server started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<AgentConfigReport>,
}
