//! The audit log's rows: who changed what in a tenant, when and from where. Both backends
//! store them in an append-only `audit_log` table and answer [`AuditFilter`] the same way:
//! newest first, paged by id (a cursor that stays right while entries are added).

use serde::{Deserialize, Serialize};

/// One administrative action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store when appended (increasing); 0 in an entry to append.
    pub id: i64,
    /// The tenant the action was made in.
    pub tenant: String,
    /// When, milliseconds since 1970.
    pub at_ms: i64,
    /// Who, as authenticated: a user name, `key:<id>` for an API key.
    pub actor: String,
    /// The client address as the server saw it; empty when the action did not come over
    /// a connection the server could attribute.
    pub client_ip: String,
    /// What kind of action: `user.create`, `api_key.revoke`, `alert_rule.update`, ...
    pub action: String,
    /// What it was done to: a user name, a key id, a rule name, ...
    pub target: String,
    /// A compact JSON description of the change, never a secret.
    pub detail: String,
}

/// Which audit entries [`crate::Store::audit`] answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// One tenant's entries; every tenant's for `None`.
    pub tenant: Option<String>,
    /// At or after this instant (ms).
    pub since_ms: Option<i64>,
    /// Before this instant (ms).
    pub until_ms: Option<i64>,
    /// Only this actor's entries, exactly.
    pub actor: Option<String>,
    /// Only this kind of action, exactly.
    pub action: Option<String>,
    /// Entries older than this id (the last id of the previous page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// An `audit_log` row: id, tenant, ts, actor, client_ip, action, target, detail.
pub(crate) type AuditRow = (i64, String, i64, String, String, String, String, String);

pub(crate) fn entry_from_row(row: AuditRow) -> AuditEntry {
    let (id, tenant, at_ms, actor, client_ip, action, target, detail) = row;
    AuditEntry { id, tenant, at_ms, actor, client_ip, action, target, detail }
}

/// The `SELECT` that answers `filter`, written once for both backends (the builder picks
/// each one's placeholders).
pub(crate) fn select<'a, DB>(filter: &'a AuditFilter) -> sqlx::QueryBuilder<'a, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::QueryBuilder::new(
        "SELECT id, tenant_id, ts, actor, client_ip, action, target, detail FROM audit_log WHERE 1 = 1",
    );
    if let Some(tenant) = &filter.tenant {
        query.push(" AND tenant_id = ").push_bind(tenant.as_str());
    }
    if let Some(since) = filter.since_ms {
        query.push(" AND ts >= ").push_bind(since);
    }
    if let Some(until) = filter.until_ms {
        query.push(" AND ts < ").push_bind(until);
    }
    if let Some(actor) = &filter.actor {
        query.push(" AND actor = ").push_bind(actor.as_str());
    }
    if let Some(action) = &filter.action {
        query.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(before) = filter.before_id {
        query.push(" AND id < ").push_bind(before);
    }
    query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(filter.limit));
    query
}
