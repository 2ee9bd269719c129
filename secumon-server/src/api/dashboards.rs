//! Dashboards: named layouts the console saves and reloads, one set per tenant. The layout
//! is the console's own JSON object; the server keeps it whole and bounds its size.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{Dashboard, DashboardList, DashboardRequest, DashboardSummary};
use secumon_core::now_ms;

use super::access::{ApiJson, ApiQuery};
use super::{ApiError, ApiState, PageParams, Paging};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};
use secumon_api::ErrorCode;

const KIND: &str = "dashboard";
/// Largest layout kept, serialised.
const MAX_LAYOUT_BYTES: usize = 64 * 1024;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/dashboards", get(list).post(create))
        .route("/api/v1/dashboards/{id}", get(read).put(update).delete(remove))
}

/// A request's name and layout, checked.
fn validate(request: &DashboardRequest) -> Result<(), ApiError> {
    if request.name.trim().is_empty() || request.name.len() > 100 {
        return Err(ApiError::bad_request("`name` must be 1 to 100 characters"));
    }
    if serde_json::to_vec(&request.layout).map_or(usize::MAX, |bytes| bytes.len()) > MAX_LAYOUT_BYTES {
        return Err(ApiError::bad_request(format!("`layout` must be at most {MAX_LAYOUT_BYTES} bytes")));
    }
    Ok(())
}

/// The dashboard a request stores as `id`, saved by the caller now.
fn dashboard_of(request: DashboardRequest, id: String, caller: &Caller) -> Dashboard {
    Dashboard {
        id,
        name: request.name,
        layout: request.layout,
        created_by: caller.subject.clone(),
        updated_ms: now_ms(),
    }
}

#[utoipa::path(get, path = "/api/v1/dashboards", tag = "dashboards", params(PageParams), responses((status = 200, description = "OK", body = DashboardList)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<DashboardList>, ApiError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let records = state.store.list_records(&caller.tenant, KIND, after.as_deref(), 500).await?;
        let Some(last) = records.last() else { break };
        after = Some(last.id.clone());
        for record in records {
            let dashboard: Dashboard = serde_json::from_str(&record.body).map_err(unreadable)?;
            all.push(DashboardSummary { id: dashboard.id, name: dashboard.name, updated_ms: dashboard.updated_ms });
        }
    }
    let (dashboards, page) = page.apply(all)?;
    Ok(Json(DashboardList { dashboards, total: page.total, next_offset: page.next_offset }))
}

#[utoipa::path(post, path = "/api/v1/dashboards", tag = "dashboards", request_body = DashboardRequest, responses((status = 201, description = "Created", body = Dashboard)))]
pub(super) async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<DashboardRequest>,
) -> Result<(StatusCode, AuditNote, Json<Dashboard>), ApiError> {
    caller.require(Role::Operator)?;
    validate(&request)?;
    let id = crate::auth::new_record_id();
    let dashboard = dashboard_of(request, id.clone(), &caller);
    state
        .store
        .insert_record(&caller.tenant, KIND, &id, &serde_json::to_string(&dashboard).map_err(unreadable)?)
        .await?;
    Ok((StatusCode::CREATED, AuditNote::by(&caller, "dashboard.create", &id), Json(dashboard)))
}

#[utoipa::path(get, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "Dashboard id")), responses((status = 200, description = "OK", body = Dashboard)))]
pub(super) async fn read(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Dashboard>, ApiError> {
    let body = state.store.get_record(&caller.tenant, KIND, &id).await?.ok_or_else(|| not_found(&id))?;
    Ok(Json(serde_json::from_str(&body).map_err(unreadable)?))
}

#[utoipa::path(put, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "Dashboard id")), request_body = DashboardRequest, responses((status = 200, description = "OK", body = Dashboard)))]
pub(super) async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DashboardRequest>,
) -> Result<(AuditNote, Json<Dashboard>), ApiError> {
    caller.require(Role::Operator)?;
    validate(&request)?;
    if state.store.get_record(&caller.tenant, KIND, &id).await?.is_none() {
        return Err(not_found(&id));
    }
    let dashboard = dashboard_of(request, id.clone(), &caller);
    state.store.put_record(&caller.tenant, KIND, &id, &serde_json::to_string(&dashboard).map_err(unreadable)?).await?;
    Ok((AuditNote::by(&caller, "dashboard.update", &id), Json(dashboard)))
}

#[utoipa::path(delete, path = "/api/v1/dashboards/{id}", tag = "dashboards", params(("id" = String, Path, description = "Dashboard id")), responses((status = 204, description = "Deleted")))]
pub(super) async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Operator)?;
    if state.store.delete_record(&caller.tenant, KIND, &id).await? {
        Ok((AuditNote::by(&caller, "dashboard.delete", &id), StatusCode::NO_CONTENT))
    } else {
        Err(not_found(&id))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no dashboard {id:?}"))
}

fn unreadable(error: serde_json::Error) -> ApiError {
    ApiError::internal(ErrorCode::Internal, "a stored dashboard is unreadable", error)
}
