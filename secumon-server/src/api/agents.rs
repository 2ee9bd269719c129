//! Agents: the list and detail operators see, provisioning tokens that enroll new agents,
//! and deletion, which also revokes the agent's certificate and session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use secumon_core::{Labels, now_ms};
use secumon_store::{AgentFilter, AgentRecord};

use super::access::{ApiJson, ApiQuery};
use super::config;
use super::params::parse_duration;
use super::{ApiError, ApiState, PageParams, Paging};
use crate::audit::AuditNote;
use crate::auth::{AgentAuthority, Caller, Role};
use crate::clock::AgentClock;
use secumon_api::{AgentList, AgentView, ErrorCode, ProvisionRequest, Provisioned};

/// The agent authority and the address agents enroll at.
#[derive(Clone)]
pub(crate) struct Enrollment {
    pub authority: Arc<AgentAuthority>,
    pub collector: SocketAddr,
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/agents", get(list_agents))
        .route("/api/v1/agents/provision", post(provision))
        .route("/api/v1/agents/{id}", get(get_agent).delete(delete_agent))
}

/// Agent ids of scripts pushing through `POST /api/v1/ingest` start with this.
pub(crate) const SCRIPT_ID_PREFIX: &str = "api:";

/// `a` as shown, online if it pushed within `offline_after`.
pub(super) fn agent_view(a: AgentRecord, clock: Option<AgentClock>, offline_after: Duration) -> AgentView {
    let online = now_ms() - a.last_seen_ms < offline_after.as_millis() as i64;
    let kind = kind_of(&a.agent_id);
    let status = match &clock {
        Some(clock) if clock.refusing() => "refused",
        _ if online => "online",
        // A script that has not run lately is not a host that went down.
        _ if kind == "script" => "idle",
        _ => "offline",
    };
    AgentView {
        kind: kind.to_string(),
        id: a.agent_id,
        host: a.host,
        labels: a.labels,
        status: status.to_string(),
        first_seen_ms: a.first_seen_ms,
        last_seen_ms: a.last_seen_ms,
        last_sequence: a.last_sequence,
        batches: a.batches,
        clock,
        config: None,
    }
}

/// An agent the store has no batch of: every one it pushed was refused.
pub(super) fn refused_view(id: String, clock: AgentClock) -> AgentView {
    AgentView {
        kind: kind_of(&id).to_string(),
        id,
        host: clock.host.clone(),
        labels: Labels::new(),
        status: "refused".to_string(),
        first_seen_ms: clock.refused_ms.unwrap_or(clock.measured_ms),
        last_seen_ms: clock.measured_ms,
        last_sequence: 0,
        batches: 0,
        clock: Some(clock),
        config: None,
    }
}

/// `script` for a script pushing through `POST /api/v1/ingest`, else `agent`.
pub(crate) fn kind_of(agent_id: &str) -> &'static str {
    if agent_id.starts_with(SCRIPT_ID_PREFIX) { "script" } else { "agent" }
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(PageParams), responses((status = 200, description = "OK", body = AgentList)))]
pub(super) async fn list_agents(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<AgentList>, ApiError> {
    let (offset, limit) = page.bounds()?;
    let filter = AgentFilter { offset, limit: Some(limit), ..Default::default() };
    let (agents, stored_total) = state.store.agents(&caller.tenant, &filter).await?;
    let offline_after = config::offline_after(&state, &caller).await?;
    let mut clocks = state.clocks.agents(&*state.store, &caller.tenant).await;
    let mut views: Vec<AgentView> = agents
        .into_iter()
        .map(|a| {
            let config = state.agent_config.report(&caller.tenant, &a.agent_id);
            AgentView { config, ..agent_view(a.clone(), clocks.remove(&a.agent_id), offline_after) }
        })
        .collect();
    // Agents whose every batch was refused are not in the store; they follow its agents,
    // by host, so the operator sees them and why.
    let mut refused = Vec::new();
    for (id, clock) in clocks.into_iter().filter(|(_, c)| c.refused_ms.is_some() && c.committed_ms.is_none()) {
        let filter = AgentFilter { agent_id: Some(id.clone()), ..Default::default() };
        if state.store.agents(&caller.tenant, &filter).await?.1 == 0 {
            refused.push(refused_view(id, clock));
        }
    }
    refused.sort_by(|a, b| (&a.host, &a.id).cmp(&(&b.host, &b.id)));
    let total = stored_total + refused.len() as u64;
    let skip = (u64::from(offset) + views.len() as u64).saturating_sub(stored_total) as usize;
    let room = (limit as usize).saturating_sub(views.len());
    views.extend(refused.into_iter().skip(skip).take(room));
    let next = u64::from(offset) + views.len() as u64;
    Ok(Json(AgentList { agents: views, total: total as usize, next_offset: (next < total).then_some(next as usize) }))
}

#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "Agent id")), responses((status = 200, description = "OK", body = AgentView)))]
pub(super) async fn get_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AgentView>, ApiError> {
    let filter = AgentFilter { agent_id: Some(id.clone()), ..Default::default() };
    let agent = state.store.agents(&caller.tenant, &filter).await?.0.into_iter().next();
    let offline_after = config::offline_after(&state, &caller).await?;
    let clock = state.clocks.agents(&*state.store, &caller.tenant).await.remove(&id);
    match (agent, clock) {
        (Some(agent), clock) => {
            let config = state.agent_config.report(&caller.tenant, &id);
            Ok(Json(AgentView { config, ..agent_view(agent, clock, offline_after) }))
        }
        (None, Some(clock)) if clock.refused_ms.is_some() => Ok(Json(refused_view(id, clock))),
        (None, _) => Err(no_agent(&id)),
    }
}

/// Revokes an agent (its next connection is refused) and forgets it; its data stays until
/// retention removes it.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "Agent id")), responses((status = 204, description = "Revoked and forgotten")))]
pub(super) async fn delete_agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    let revoked = match &state.agents {
        Some(enrollment) => enrollment.authority.revoke(&caller.tenant, &id).await?,
        None => false,
    };
    let had_clock = state.clocks.forget(&*state.store, &caller.tenant, &id).await;
    if state.store.delete_agent(&caller.tenant, &id).await? || revoked || had_clock {
        // A deleted or revoked agent is not "down": no AgentDown for it. If it pushes again
        // (a late batch; without enrollment nothing refuses it) it is listed again, but
        // pages only once it has been alive for an agent rule's `no_data` since.
        state.alerting(&caller).await?.forget_agent(&id).await?;
        state.agent_config.forget_agent(&caller.tenant, &id);
        tracing::info!(agent = %id, tenant = %caller.tenant, by = %caller.subject, "agent deleted");
        let note =
            AuditNote::by(&caller, "agent.delete", &id).detail(serde_json::json!({"certificate_revoked": revoked}));
        Ok((note, StatusCode::NO_CONTENT))
    } else {
        Err(no_agent(&id))
    }
}

fn no_agent(id: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no agent {id:?}"))
}

/// Makes a one-time token that enrolls one agent into the caller's tenant.
#[utoipa::path(post, path = "/api/v1/agents/provision", tag = "agents", request_body = ProvisionRequest, responses((status = 201, description = "A one-time token, shown only now", body = Provisioned)))]
pub(super) async fn provision(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<ProvisionRequest>,
) -> Result<(StatusCode, AuditNote, Json<Provisioned>), ApiError> {
    caller.require(Role::Admin)?;
    let Some(enrollment) = &state.agents else {
        return Err(ApiError::new(
            ErrorCode::EnrollmentOff,
            "agent enrollment needs the gRPC ingest under the managed CA (secumon server --mtls)",
        ));
    };
    let ttl = match &request.ttl {
        Some(text) => parse_duration("ttl", text)?,
        None => Duration::from_secs(24 * 3600),
    };
    let made = enrollment.authority.provision(&caller.tenant, &caller.subject, ttl).await?;
    tracing::info!(id = %made.id, tenant = %caller.tenant, by = %caller.subject, "provisioning token made");
    let command = format!("secumon-agent setup --collector {} --token {}", enrollment.collector, made.token);
    // The token's id, never the token.
    let note = AuditNote::by(&caller, "agent.provision_token", &made.id)
        .detail(serde_json::json!({"expires_ms": made.expires_ms}));
    Ok((
        StatusCode::CREATED,
        note,
        Json(Provisioned {
            id: made.id,
            token: made.token,
            tenant: caller.tenant.clone(),
            expires_ms: made.expires_ms,
            command,
        }),
    ))
}
