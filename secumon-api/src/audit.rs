//! The audit log of administrative actions: `GET /api/v1/audit`, newest first.

use serde::{Deserialize, Serialize};

/// Which entries to list; all optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// Entries at or after this instant (ms since 1970).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Entries before this instant (ms since 1970).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Only this actor's: a user name, or `key:<id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only this action, e.g. `user.create`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The page after the one that ended with this id (`next_before` of the previous page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// At most this many entries: 1 to 1000, default 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A super-admin's choice of tenant; without it a super-admin sees every tenant's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditView {
    /// The entry's id; entries are numbered in the order they were written.
    pub id: i64,
    /// The tenant the action was in.
    pub tenant: String,
    /// When it happened (Unix ms).
    pub at_ms: i64,
    /// Who, as authenticated: a user name, `key:<id>` for an API key, `agent:<id>` for an
    /// agent enrolling itself with a provisioning token.
    pub actor: String,
    /// The client address as the server saw it; empty when there was none to attribute.
    pub client_ip: String,
    /// What was done, e.g. `user.create`, `agent.provision_token`.
    pub action: String,
    /// What it was done to (a user name, a key id, a rule name, ...).
    pub target: String,
    /// What changed.
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub detail: serde_json::Value,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AuditList {
    /// The entries, newest first.
    pub entries: Vec<AuditView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}
