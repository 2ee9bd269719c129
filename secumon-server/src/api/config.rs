//! A tenant's settings (`GET|PUT /api/v1/config`): the thresholds the API applies when it
//! answers for that tenant. Stored as one record per tenant; absent settings take defaults.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::TenantConfig;

use super::access::ApiJson;
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

const KIND: &str = "config";
const ID: &str = "tenant";

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/config", get(read).put(write))
}

/// The caller's tenant's settings, defaults where none are stored.
pub(super) async fn of(state: &ApiState, caller: &Caller) -> Result<TenantConfig, ApiError> {
    match state.store.get_record(&caller.tenant, KIND, ID).await? {
        Some(body) => serde_json::from_str(&body).map_err(|error| {
            tracing::error!(%error, tenant = %caller.tenant, "stored settings unreadable; using defaults");
            ApiError::bad_request("the stored settings are unreadable; PUT them again")
        }),
        None => Ok(TenantConfig::default()),
    }
}

/// How long the caller's tenant's agents may be silent before they are shown offline.
pub(super) async fn offline_after(state: &ApiState, caller: &Caller) -> Result<Duration, ApiError> {
    let config = of(state, caller).await?;
    Ok(parse_duration("agent_offline_after", &config.agent_offline_after).unwrap_or(Duration::from_secs(120)))
}

/// Settings within their bounds.
fn validate(config: &TenantConfig) -> Result<(), ApiError> {
    let within = |name: &str, text: &str, min: u64, max: u64| {
        let value = parse_duration(name, text)?;
        if (min..=max).contains(&value.as_secs()) {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("`{name}` must be between {min} s and {max} s")))
        }
    };
    within("agent_offline_after", &config.agent_offline_after, 30, 86_400)?;
    within("default_history_period", &config.default_history_period, 300, 31 * 86_400)
}

#[utoipa::path(get, path = "/api/v1/config", tag = "config", responses((status = 200, description = "OK", body = TenantConfig)))]
pub(super) async fn read(State(state): State<ApiState>, caller: Caller) -> Result<Json<TenantConfig>, ApiError> {
    Ok(Json(of(&state, &caller).await?))
}

#[utoipa::path(put, path = "/api/v1/config", tag = "config", request_body = TenantConfig, responses((status = 200, description = "Stored", body = TenantConfig)))]
pub(super) async fn write(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(config): ApiJson<TenantConfig>,
) -> Result<(AuditNote, Json<TenantConfig>), ApiError> {
    caller.require(Role::Admin)?;
    validate(&config)?;
    let body = serde_json::to_string(&config).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.put_record(&caller.tenant, KIND, ID, &body).await?;
    tracing::info!(tenant = %caller.tenant, by = %caller.subject, ?config, "settings changed");
    let note =
        AuditNote::by(&caller, "config.update", "tenant").detail(serde_json::to_value(&config).unwrap_or_default());
    Ok((note, Json(config)))
}
