//! Agents (`/api/v1/agents*`): the list and detail operators see, with each sender's clock
//! against the server's, and provisioning tokens that enroll new agents.

use secumon_core::Labels;
use serde::{Deserialize, Serialize};

use crate::agent_config::AgentConfigReport;

/// An agent as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentView {
    /// The agent's id: its enrolled id, or `api:<tenant>:<source>` for a script.
    pub id: String,
    /// `agent` (an agent or probe), or `script`: a script pushing through `POST
    /// /api/v1/ingest` (id `api:<tenant>:<source>`), which pushes when it runs.
    pub kind: String,
    /// The host it reports for.
    pub host: String,
    /// Its labels from its configuration (`client`, `site`, `role`, ...).
    pub labels: Labels,
    /// `online` (pushed within the tenant's `agent_offline_after`), `offline` (an agent
    /// that did not), `idle` (a script that did not: it runs when it runs, and is not down
    /// unless an agent rule with `api_sources: true` says so), or `refused`: its latest
    /// batch was refused and none stored since (`clock.refused_reason` says why).
    pub status: String,
    /// When it first pushed (Unix ms).
    pub first_seen_ms: i64,
    /// When it last pushed (Unix ms).
    pub last_seen_ms: i64,
    /// The sequence number of the latest batch stored.
    pub last_sequence: u64,
    /// Batches stored from it.
    pub batches: u64,
    /// Its clock against the server's, measured on every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<AgentClock>,
    /// The managed configuration it last said it runs, and the latest it refused and why
    /// (`GET /agents/{id}/config` compares it with what it should run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AgentConfigReport>,
}

/// What the server knows of one sender's clock, as `GET /api/v1/agents` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentClock {
    /// The host the sender reports for.
    pub host: String,
    /// Its clock minus the server's on its latest push, in ms (positive: ahead). Absent when
    /// the sender does not stamp its send time (agents before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_ms: Option<i64>,
    /// The round trip its offset was corrected for.
    #[serde(default)]
    pub round_trip_ms: u32,
    /// When the latest push arrived (server clock).
    pub measured_ms: i64,
    /// The latest batch's timestamps were moved by the offset (its clock is past the
    /// tolerance).
    #[serde(default)]
    pub corrected: bool,
    /// Batches re-stamped since the server first met it.
    #[serde(default)]
    pub corrected_batches: u64,
    /// Batches refused (they could not be corrected) since the server first met it.
    #[serde(default)]
    pub refused_batches: u64,
    /// When the latest batch was refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_ms: Option<i64>,
    /// Why the latest batch was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_reason: Option<String>,
    /// When its latest batch was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_ms: Option<i64>,
}

impl AgentClock {
    /// Its latest batch was refused and none stored since.
    pub fn refusing(&self) -> bool {
        self.refused_ms.is_some_and(|refused| self.committed_ms.is_none_or(|committed| refused >= committed))
    }
}

/// `GET /agents`: a page of the tenant's agents and scripts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AgentList {
    /// The agents on this page.
    pub agents: Vec<AgentView>,
    /// Agents in the list, on every page.
    pub total: usize,
    /// The `offset` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// `POST /agents/provision`: a one-time token that enrolls one agent into the caller's tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// How long the token may be used, e.g. `1h`; default 24 h, at most 7 days.
    pub ttl: Option<String>,
}

/// A provisioning token, shown once, and the command that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Provisioned {
    /// The token's id, as the audit log names it (never the token).
    pub id: String,
    /// The token itself: it enrolls one agent, once. Shown only now.
    pub token: String,
    /// The tenant the agent joins.
    pub tenant: String,
    /// When the token expires (Unix ms).
    pub expires_ms: i64,
    /// The command that sets an agent up with the token: `secumon-agent setup --collector ...
    /// --token ...`.
    pub command: String,
}
