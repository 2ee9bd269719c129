//! A tenant's settings (`GET|PUT /api/v1/config`): the thresholds the API applies when it
//! answers for that tenant. Stored as one record per tenant; absent settings take defaults.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::access::ApiJson;
use super::{ApiError, ApiState, parse_duration};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

const KIND: &str = "config";
const ID: &str = "tenant";

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/config", get(read).put(write))
}

/// A tenant's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// An agent silent for this long is shown offline: `30s` to `1d`.
    #[serde(default = "default_offline_after")]
    pub agent_offline_after: String,
    /// The period a host history covers when the request names none: `5m` to `31d`.
    #[serde(default = "default_history_period")]
    pub default_history_period: String,
}

fn default_offline_after() -> String {
    "2m".into()
}

fn default_history_period() -> String {
    "1h".into()
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self { agent_offline_after: default_offline_after(), default_history_period: default_history_period() }
    }
}

impl TenantConfig {
    /// The caller's tenant's settings, defaults where none are stored.
    pub(super) async fn of(state: &ApiState, caller: &Caller) -> Result<Self, ApiError> {
        match state.store.get_record(&caller.tenant, KIND, ID).await? {
            Some(body) => serde_json::from_str(&body).map_err(|error| {
                tracing::error!(%error, tenant = %caller.tenant, "stored settings unreadable; using defaults");
                ApiError::bad_request("the stored settings are unreadable; PUT them again")
            }),
            None => Ok(Self::default()),
        }
    }

    pub(super) fn offline_after(&self) -> Duration {
        parse_duration("agent_offline_after", &self.agent_offline_after).unwrap_or(Duration::from_secs(120))
    }

    fn validate(&self) -> Result<(), ApiError> {
        let within = |name: &str, text: &str, min: u64, max: u64| {
            let value = parse_duration(name, text)?;
            if (min..=max).contains(&value.as_secs()) {
                Ok(())
            } else {
                Err(ApiError::bad_request(format!("`{name}` must be between {min} s and {max} s")))
            }
        };
        within("agent_offline_after", &self.agent_offline_after, 30, 86_400)?;
        within("default_history_period", &self.default_history_period, 300, 31 * 86_400)
    }
}

#[utoipa::path(get, path = "/api/v1/config", tag = "config", responses((status = 200, description = "OK", body = TenantConfig)))]
pub(super) async fn read(State(state): State<ApiState>, caller: Caller) -> Result<Json<TenantConfig>, ApiError> {
    Ok(Json(TenantConfig::of(&state, &caller).await?))
}

#[utoipa::path(put, path = "/api/v1/config", tag = "config", request_body = TenantConfig, responses((status = 200, description = "Stored", body = TenantConfig)))]
pub(super) async fn write(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(config): ApiJson<TenantConfig>,
) -> Result<(AuditNote, Json<TenantConfig>), ApiError> {
    caller.require(Role::Admin)?;
    config.validate()?;
    let body = serde_json::to_string(&config).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state.store.put_record(&caller.tenant, KIND, ID, &body).await?;
    tracing::info!(tenant = %caller.tenant, by = %caller.subject, ?config, "settings changed");
    let note =
        AuditNote::by(&caller, "config.update", "tenant").detail(serde_json::to_value(&config).unwrap_or_default());
    Ok((note, Json(config)))
}
