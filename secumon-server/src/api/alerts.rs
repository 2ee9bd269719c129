//! Alerts as the engine holds them: listing, stats, history, acknowledging, resolving, and
//! the silences that mute them; and how the engine's types are shown in the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secumon_alert::{Acknowledgement, ActiveAlert, AlertState, Silence};
use secumon_api::{
    AcknowledgeRequest, Acknowledged, AlertFilter, AlertHistory, AlertList, AlertStats, ErrorCode, HistoryFilter,
    Resolved, SilenceList, SilenceRequest,
};
use secumon_core::now_ms;
use serde::Serialize;

use super::access::{ApiJson, ApiQuery};
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::audit::AuditNote;
use crate::auth::{Caller, Role};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/history", get(alert_history))
        .route("/api/v1/alerts/stats", get(alert_stats))
        .route("/api/v1/alerts/{id}/acknowledge", post(acknowledge_alert))
        .route("/api/v1/alerts/{id}/resolve", post(resolve_alert))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertFilter), responses((status = 200, description = "OK", body = AlertList)))]
pub(super) async fn list_alerts(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<AlertFilter>,
) -> Result<Json<AlertList>, ApiError> {
    let alerts = state
        .alerting(&caller)
        .await?
        .active()
        .await?
        .into_iter()
        .filter(|a| filter.status.as_deref().is_none_or(|s| enum_name(&a.state) == s))
        .filter(|a| filter.severity.as_deref().is_none_or(|s| enum_name(&a.severity) == s))
        .map(api_alert)
        .collect();
    Ok(Json(AlertList { alerts }))
}

/// The serialized name of a unit enum variant (`firing`, `critical`).
fn enum_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[utoipa::path(get, path = "/api/v1/alerts/stats", tag = "alerts", responses((status = 200, description = "OK", body = AlertStats)))]
pub(super) async fn alert_stats(State(state): State<ApiState>, caller: Caller) -> Result<Json<AlertStats>, ApiError> {
    let alerting = state.alerting(&caller).await?;
    let alerts = alerting.active().await?;
    let mut stats = AlertStats {
        total: alerts.len(),
        by_status: Default::default(),
        by_severity: Default::default(),
        acknowledged: alerts.iter().filter(|a| a.acknowledged.is_some()).count(),
        delivery_failures: alerting.delivery_failures().await?,
    };
    for alert in &alerts {
        *stats.by_status.entry(enum_name(&alert.state)).or_default() += 1;
        *stats.by_severity.entry(enum_name(&alert.severity)).or_default() += 1;
    }
    Ok(Json(stats))
}

#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(HistoryFilter), responses((status = 200, description = "OK", body = AlertHistory)))]
pub(super) async fn alert_history(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<HistoryFilter>,
) -> Result<Json<AlertHistory>, ApiError> {
    let limit = filter.limit.unwrap_or(100).min(10_000);
    Ok(Json(AlertHistory { history: state.alerting(&caller).await?.history(filter.rule.as_deref(), limit).await? }))
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", params(("id" = String, Path, description = "Alert id")), request_body = AcknowledgeRequest, responses((status = 200, description = "Acknowledged", body = serde_json::Value)))]
pub(super) async fn acknowledge_alert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AcknowledgeRequest>,
) -> Result<(AuditNote, Json<Acknowledged>), ApiError> {
    caller.require(Role::Operator)?;
    // Who acknowledged is who called, not what the body claims.
    let note = AuditNote::by(&caller, "alert.acknowledge", &id).detail(serde_json::json!({"comment": request.comment}));
    let ack = Acknowledgement { by: caller.subject.clone(), at_ms: now_ms(), comment: request.comment };
    if state.alerting(&caller).await?.acknowledge(&id, ack).await? {
        Ok((note, Json(Acknowledged { acknowledged: true })))
    } else {
        Err(ApiError::new(ErrorCode::NotFound, format!("no firing alert {id:?}")))
    }
}

#[utoipa::path(get, path = "/api/v1/silences", tag = "alerts", responses((status = 200, description = "OK", body = SilenceList)))]
pub(super) async fn list_silences(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<SilenceList>, ApiError> {
    Ok(Json(SilenceList {
        silences: state.alerting(&caller).await?.silences().await?.into_iter().map(api_silence).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/silences", tag = "alerts", request_body = SilenceRequest, responses((status = 201, description = "Created", body = serde_json::Value)))]
pub(super) async fn add_silence(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<SilenceRequest>,
) -> Result<(StatusCode, AuditNote, Json<secumon_api::Silence>), ApiError> {
    caller.require(Role::Operator)?;
    if request.matchers.is_empty() {
        return Err(ApiError::bad_request("a silence needs at least one label matcher"));
    }
    let duration = parse_duration("duration", &request.duration)?;
    let starts_ms = now_ms();
    let silence = Silence {
        // The engine gives it its id.
        id: String::new(),
        matchers: request.matchers,
        starts_ms,
        ends_ms: starts_ms.saturating_add(duration.as_millis() as i64),
        created_by: caller.subject.clone(),
        comment: request.comment,
    };
    let silence = state.alerting(&caller).await?.add_silence(silence).await?;
    let note = AuditNote::by(&caller, "silence.create", &silence.id).detail(serde_json::json!({
        "matchers": silence.matchers, "ends_ms": silence.ends_ms, "comment": silence.comment}));
    Ok((StatusCode::CREATED, note, Json(api_silence(silence))))
}

/// Ends a silence before its time (recorded in the history as the caller's doing).
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerts", params(("id" = String, Path, description = "Silence id")), responses((status = 200, description = "Expired; the silence as it ends", body = serde_json::Value), (status = 404, description = "No current silence with this id")))]
pub(super) async fn expire_silence(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, Json<secumon_api::Silence>), ApiError> {
    caller.require(Role::Operator)?;
    match state.alerting(&caller).await?.expire_silence(&id, &caller.subject).await? {
        Some(silence) => Ok((AuditNote::by(&caller, "silence.remove", &id), Json(api_silence(silence)))),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("no current silence {id:?}"))),
    }
}

/// Ends a firing or stale alert by an operator's word: a stale alert's data is gone (a
/// check removed for good), so only a person or the rule's `no_data` can close it.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "Resolved", body = serde_json::Value), (status = 404, description = "No firing or stale alert with this id")))]
pub(super) async fn resolve_alert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, Json<Resolved>), ApiError> {
    caller.require(Role::Operator)?;
    if state.alerting(&caller).await?.resolve(&id, &caller.subject).await? {
        Ok((AuditNote::by(&caller, "alert.resolve", &id), Json(Resolved { resolved: true })))
    } else {
        Err(ApiError::new(ErrorCode::NotFound, format!("no firing or stale alert {id:?}")))
    }
}

/// An engine's alert as the API shows it.
fn api_alert(alert: ActiveAlert) -> secumon_api::Alert {
    secumon_api::Alert {
        clear_since_ms: alert.clear_since_ms(),
        id: alert.id,
        rule: alert.rule,
        labels: alert.labels,
        state: api_state(alert.state),
        since_ms: alert.since_ms,
        value: alert.value,
        severity: alert.severity,
        acknowledged: alert.acknowledged.map(|a| secumon_api::Acknowledgement {
            by: a.by,
            at_ms: a.at_ms,
            comment: a.comment,
        }),
        escalation_level: alert.escalation_level,
        annotations: alert.annotations,
        stale_since_ms: alert.stale_since_ms,
    }
}

/// An engine's silence as the API shows it.
fn api_silence(silence: Silence) -> secumon_api::Silence {
    secumon_api::Silence {
        id: silence.id,
        matchers: silence.matchers,
        starts_ms: silence.starts_ms,
        ends_ms: silence.ends_ms,
        created_by: silence.created_by,
        comment: silence.comment,
    }
}

/// An engine's alert state as the API names it.
pub(super) fn api_state(state: AlertState) -> secumon_api::AlertState {
    match state {
        AlertState::Inactive => secumon_api::AlertState::Inactive,
        AlertState::Pending => secumon_api::AlertState::Pending,
        AlertState::Firing => secumon_api::AlertState::Firing,
        AlertState::Stale => secumon_api::AlertState::Stale,
        AlertState::Resolved => secumon_api::AlertState::Resolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_and_silences_keep_the_engines_json() {
        let alert: ActiveAlert = serde_json::from_value(serde_json::json!({
            "id": "a1", "rule": "CpuHigh", "labels": {"host": "web-1"}, "state": "firing", "since_ms": 5,
            "value": 0.9, "severity": "critical", "acknowledged": {"by": "ada", "at_ms": 7, "comment": "on it"},
            "escalation_level": 1, "annotations": {"summary": "hot"}, "stale_since_ms": 8, "clear_since_ms": 9}))
        .unwrap();
        assert_eq!(serde_json::to_value(api_alert(alert.clone())).unwrap(), serde_json::to_value(&alert).unwrap());
        let silence = Silence {
            id: "s1".into(),
            matchers: [("host".to_string(), "web-1".to_string())].into(),
            starts_ms: 1,
            ends_ms: 2,
            created_by: "ada".into(),
            comment: "maintenance".into(),
        };
        assert_eq!(
            serde_json::to_value(api_silence(silence.clone())).unwrap(),
            serde_json::to_value(&silence).unwrap()
        );
    }
}
