//! Alert rules through the API: listing, creating, changing, deleting, testing a rule, and
//! one rule's history.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use secumon_alert::RuleSpec;
use secumon_api::{AlertHistory, HistoryFilter, RuleId, RuleList, RuleTest, RuleTestAlert, RuleView};

use super::access::{ApiJson, ApiQuery};
use super::alerts::api_state;
use super::{ApiError, ApiState};
use crate::alerting::RuleError;
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alert-rules", get(list_rules).post(create_rule))
        .route("/api/v1/alert-rules/{id}", get(get_rule).put(update_rule).delete(delete_rule))
        .route("/api/v1/alert-rules/{id}/test", get(test_rule))
        .route("/api/v1/alert-rules/{id}/history", get(rule_history))
}

#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "rules", responses((status = 200, description = "OK", body = RuleList)))]
pub(super) async fn list_rules(State(state): State<ApiState>, caller: Caller) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList { rules: state.alerting(&caller).await?.rules().await? }))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule name")), responses((status = 200, description = "OK", body = serde_json::Value)))]
pub(super) async fn get_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    let rule = state.alerting(&caller).await?.rules().await?.into_iter().find(|r| r.id == id);
    rule.map(Json).ok_or_else(|| RuleError::NotFound(id).into())
}

/// A rule as the audit log describes it: its definition (rules hold no credentials; channels
/// are named, their secrets live in the rules file).
fn rule_detail(spec: &RuleSpec) -> serde_json::Value {
    serde_json::to_value(spec).unwrap_or_default()
}

/// The body of a rule request, checked here so a wrong key gets a clear message.
fn rule_spec(body: serde_json::Value) -> Result<RuleSpec, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("`{path}`: ") };
        ApiError::bad_request(format!("{at}{}", e.into_inner()))
    })
}

#[utoipa::path(post, path = "/api/v1/alert-rules", tag = "rules", request_body(content = serde_json::Value, description = "A rule, as in the rules file"), responses((status = 201, description = "Created", body = serde_json::Value)))]
pub(super) async fn create_rule(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, AuditNote, Json<RuleId>), ApiError> {
    caller.require(Role::Admin)?;
    let spec = rule_spec(body)?;
    let id = spec.name.clone();
    let detail = rule_detail(&spec);
    state.alerting(&caller).await?.create_rule(spec).await?;
    let note = AuditNote::by(&caller, "alert_rule.create", &id).detail(detail);
    Ok((StatusCode::CREATED, note, Json(RuleId { id })))
}

#[utoipa::path(put, path = "/api/v1/alert-rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule name")), request_body(content = serde_json::Value, description = "The rule's new definition"), responses((status = 200, description = "OK", body = serde_json::Value)))]
pub(super) async fn update_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(AuditNote, Json<RuleId>), ApiError> {
    caller.require(Role::Admin)?;
    let spec = rule_spec(body)?;
    let detail = rule_detail(&spec);
    state.alerting(&caller).await?.update_rule(&id, spec).await?;
    Ok((AuditNote::by(&caller, "alert_rule.update", &id).detail(detail), Json(RuleId { id })))
}

#[utoipa::path(delete, path = "/api/v1/alert-rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule name")), responses((status = 204, description = "Deleted")))]
pub(super) async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    state.alerting(&caller).await?.delete_rule(&id).await?;
    Ok((AuditNote::by(&caller, "alert_rule.delete", &id), StatusCode::NO_CONTENT))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}/test", tag = "rules", params(("id" = String, Path, description = "Rule name")), responses((status = 200, description = "What the rule would fire on now", body = serde_json::Value)))]
pub(super) async fn test_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RuleTest>, ApiError> {
    let test = state.alerting(&caller).await?.test_rule(&id).await?;
    let alerts = test
        .alerts
        .into_iter()
        .map(|a| RuleTestAlert { labels: a.labels, value: a.value, state: api_state(a.state) })
        .collect();
    Ok(Json(RuleTest { rule: test.rule, evaluated_at_ms: test.evaluated_at_ms, alerts }))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}/history", tag = "rules", params(("id" = String, Path, description = "Rule name"), HistoryFilter), responses((status = 200, description = "OK", body = AlertHistory)))]
pub(super) async fn rule_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(filter): ApiQuery<HistoryFilter>,
) -> Result<Json<AlertHistory>, ApiError> {
    let alerting = state.alerting(&caller).await?;
    if !alerting.rules().await?.iter().any(|r| r.id == id) {
        return Err(RuleError::NotFound(id).into());
    }
    let limit = filter.limit.unwrap_or(100).min(10_000);
    Ok(Json(AlertHistory { history: alerting.history(Some(&id), limit).await? }))
}
