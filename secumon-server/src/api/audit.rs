//! The audit log over the API: the layer that records what handlers report they did
//! ([`AuditNote`] in the response's extensions) with the client address and time, and
//! `GET /api/v1/audit`, which reads it back newest first. A tenant's admins see their
//! tenant's entries; a super-admin sees every tenant's, or one with `?tenant=`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};
use axum::routing::get;
use axum::{Json, Router};
use secumon_store::{AuditEntry, AuditFilter};
use serde::{Deserialize, Serialize};

use super::access::ApiQuery;
use super::{ApiError, ApiState};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role, validate_tenant_name};

/// Entries one page holds unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1_000;

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/audit", get(list))
}

impl IntoResponseParts for AuditNote {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}

/// Writes the note a successful handler left in its response, as made from the client's
/// address; a failed write is flagged on the answer (and logged and counted by the log).
pub(super) async fn record(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let client = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let mut response = next.run(request).await;
    let note = response.extensions_mut().remove::<AuditNote>();
    if let Some(note) = note.filter(|_| response.status().is_success())
        && !state.audit.record(note, client).await
    {
        response.headers_mut().insert("x-secumon-audit", HeaderValue::from_static("failed"));
    }
    response
}

/// Which entries to list; all optional.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Entries at or after this instant (ms since 1970).
    since: Option<i64>,
    /// Entries before this instant (ms since 1970).
    until: Option<i64>,
    /// Only this actor's: a user name, or `key:<id>`.
    actor: Option<String>,
    /// Only this action, e.g. `user.create`.
    action: Option<String>,
    /// The page after the one that ended with this id (`next_before` of the previous page).
    before: Option<i64>,
    /// At most this many entries: 1 to 1000, default 100.
    limit: Option<u32>,
    /// A super-admin's choice of tenant; without it a super-admin sees every tenant's.
    tenant: Option<String>,
}

/// One audit entry as the API shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub tenant: String,
    pub at_ms: i64,
    /// Who, as authenticated: a user name, `key:<id>` for an API key, `agent:<id>` for an
    /// agent enrolling itself with a provisioning token.
    pub actor: String,
    /// The client address as the server saw it; empty when there was none to attribute.
    pub client_ip: String,
    pub action: String,
    pub target: String,
    /// What changed.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        let detail = serde_json::from_str(&entry.detail).unwrap_or(serde_json::Value::String(entry.detail));
        Self {
            id: entry.id,
            tenant: entry.tenant,
            at_ms: entry.at_ms,
            actor: entry.actor,
            client_ip: entry.client_ip,
            action: entry.action,
            target: entry.target,
            detail,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditView>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams), responses((status = 200, description = "Audit entries, newest first", body = AuditList)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    caller.require(Role::Admin)?;
    let tenant = match params.tenant {
        Some(tenant) => {
            if tenant != caller.tenant {
                caller.require_super_admin()?;
            }
            validate_tenant_name(&tenant)?;
            Some(tenant)
        }
        None if caller.super_admin => None,
        None => Some(caller.tenant.clone()),
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("`limit` must be 1 to {MAX_LIMIT}")));
    }
    let filter = AuditFilter {
        tenant,
        since_ms: params.since,
        until_ms: params.until,
        actor: params.actor,
        action: params.action,
        before_id: params.before,
        // One more than asked for says whether another page follows.
        limit: limit + 1,
    };
    let mut entries = state.store.audit(&filter).await?;
    let more = entries.len() > limit as usize;
    entries.truncate(limit as usize);
    let next_before = if more { entries.last().map(|e| e.id) } else { None };
    Ok(Json(AuditList { entries: entries.into_iter().map(AuditView::from).collect(), next_before }))
}
