//! `/agent-config`: the agent configuration an operator manages centrally, layer by layer
//! (per tenant and label selector), and `/agents/{id}/config`: what one agent should run
//! and what it reports running.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{AgentConfigLayer, AgentConfigLayers, AgentConfigState, ErrorCode};
use secumon_store::AgentFilter;

use super::access::ApiJson;
use super::{ApiError, ApiState};
use crate::agent_config::AgentConfigError;
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/agent-config", get(list_layers))
        .route("/api/v1/agent-config/{selector}", axum::routing::put(put_layer).delete(delete_layer))
        .route("/api/v1/agents/{id}/config", get(agent_config))
}

impl From<AgentConfigError> for ApiError {
    fn from(error: AgentConfigError) -> Self {
        match error {
            AgentConfigError::Invalid(message) => ApiError::new(ErrorCode::BadRequest, message),
            AgentConfigError::NotFound(_) => ApiError::new(ErrorCode::NotFound, error.to_string()),
            AgentConfigError::Store(error) => error.into(),
        }
    }
}

/// The tenant's layers, in the order they merge.
#[utoipa::path(get, path = "/api/v1/agent-config", tag = "agents", responses((status = 200, description = "OK", body = AgentConfigLayers)))]
async fn list_layers(State(state): State<ApiState>, caller: Caller) -> Result<Json<AgentConfigLayers>, ApiError> {
    Ok(Json(AgentConfigLayers { layers: state.agent_config.layers(&caller.tenant).await? }))
}

/// Sets the sections (`metrics`, `logs`, `probe_mode`) the selector's agents run; they
/// apply it on their next batch's acknowledgement.
#[utoipa::path(put, path = "/api/v1/agent-config/{selector}", tag = "agents",
    params(("selector" = String, Path, description = "`default`, or `label=value[,label=value…]`")),
    request_body(content = Object, description = "Sections of agent.yaml: metrics, logs, probe_mode"),
    responses((status = 200, description = "The layer as stored", body = AgentConfigLayer)))]
async fn put_layer(
    State(state): State<ApiState>,
    caller: Caller,
    Path(selector): Path<String>,
    ApiJson(document): ApiJson<serde_json::Value>,
) -> Result<(AuditNote, Json<AgentConfigLayer>), ApiError> {
    caller.require(Role::Admin)?;
    let layer = state.agent_config.put(&caller.tenant, &selector, document, &caller.subject).await?;
    tracing::info!(tenant = %caller.tenant, selector = %layer.selector, by = %caller.subject, "agent configuration set");
    let note = AuditNote::by(&caller, "agent_config.set", &layer.selector).detail(layer.document.clone());
    Ok((note, Json(layer)))
}

/// Removes a layer: its agents fall back to the other layers, or to their own file.
#[utoipa::path(delete, path = "/api/v1/agent-config/{selector}", tag = "agents",
    params(("selector" = String, Path, description = "`default`, or `label=value[,label=value…]`")),
    responses((status = 200, description = "The layer as it was", body = AgentConfigLayer)))]
async fn delete_layer(
    State(state): State<ApiState>,
    caller: Caller,
    Path(selector): Path<String>,
) -> Result<(AuditNote, Json<AgentConfigLayer>), ApiError> {
    caller.require(Role::Admin)?;
    let layer = state.agent_config.delete(&caller.tenant, &selector).await?;
    tracing::info!(tenant = %caller.tenant, selector = %layer.selector, by = %caller.subject, "agent configuration removed");
    Ok((AuditNote::by(&caller, "agent_config.delete", &layer.selector), Json(layer)))
}

/// What the agent should run (the layers its labels select, merged) and what it runs.
#[utoipa::path(get, path = "/api/v1/agents/{id}/config", tag = "agents",
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 200, description = "OK", body = AgentConfigState)))]
async fn agent_config(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AgentConfigState>, ApiError> {
    let filter = AgentFilter { agent_id: Some(id.clone()), ..Default::default() };
    let Some(agent) = state.store.agents(&caller.tenant, &filter).await?.0.into_iter().next() else {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no agent {id:?}")));
    };
    Ok(Json(state.agent_config.state(&caller.tenant, &id, &agent.labels).await?))
}
