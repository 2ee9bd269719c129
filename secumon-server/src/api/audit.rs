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
use secumon_api::{AuditList, AuditQuery, AuditView};
use secumon_store::{AuditEntry, AuditFilter};

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

/// The API's view of a stored entry: its detail, stored as JSON text, as JSON again.
fn audit_view(entry: AuditEntry) -> AuditView {
    let detail = serde_json::from_str(&entry.detail).unwrap_or(serde_json::Value::String(entry.detail));
    AuditView {
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

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, description = "Audit entries, newest first", body = AuditList)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<AuditQuery>,
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
    Ok(Json(AuditList { entries: entries.into_iter().map(audit_view).collect(), next_before }))
}
