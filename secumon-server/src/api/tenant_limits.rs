//! A tenant's own ingest limits (`GET|PUT /api/v1/tenants/{name}/limits`): series and
//! samples a second, in place of the server's defaults. Super-admins only: a tenant's admin
//! must not raise their own tenant's share of the server.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::access::ApiJson;
use super::{ApiError, ApiState};
use crate::audit::AuditNote;
use crate::auth::{Caller, validate_tenant_name};
use crate::tenant_limits::{IngestGuard, TenantLimitSettings};
use secumon_api::{ErrorCode, TenantLimitsView};

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/tenants/{name}/limits", get(read).put(write))
}

async fn view(state: &ApiState, tenant: &str) -> Result<TenantLimitsView, ApiError> {
    let settings = IngestGuard::settings(&*state.store, tenant).await?;
    let defaults = state.tenant_limits;
    Ok(TenantLimitsView {
        tenant: tenant.to_string(),
        settings,
        max_series: settings.max_series.unwrap_or(defaults.max_series),
        max_samples_per_second: settings.max_samples_per_second.unwrap_or(defaults.max_samples_per_second).get(),
    })
}

async fn existing_tenant(state: &ApiState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    caller.require_super_admin()?;
    validate_tenant_name(name)?;
    if !state.accounts.tenant_exists(name).await? {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no tenant {name:?}")));
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/tenants/{name}/limits", tag = "tenants", params(("name" = String, Path, description = "Tenant")), responses((status = 200, description = "The tenant's limits", body = TenantLimitsView)))]
pub(super) async fn read(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TenantLimitsView>, ApiError> {
    existing_tenant(&state, &caller, &name).await?;
    Ok(Json(view(&state, &name).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{name}/limits", tag = "tenants", params(("name" = String, Path, description = "Tenant")), request_body = TenantLimitSettings, responses((status = 200, description = "Applied at once", body = TenantLimitsView)))]
pub(super) async fn write(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(settings): ApiJson<TenantLimitSettings>,
) -> Result<(AuditNote, Json<TenantLimitsView>), ApiError> {
    existing_tenant(&state, &caller, &name).await?;
    if settings.max_series == Some(0) {
        return Err(ApiError::bad_request("`max_series` must be at least 1"));
    }
    state.guard.apply(&*state.store, &name, settings).await?;
    tracing::info!(tenant = %name, by = %caller.subject, ?settings, "tenant limits changed");
    let mut note = AuditNote::by(&caller, "tenant.limits_update", &name)
        .detail(serde_json::to_value(settings).unwrap_or_default());
    // Recorded in the tenant concerned, so its admins see why its limits moved.
    note.tenant = name.clone();
    Ok((note, Json(view(&state, &name).await?)))
}
