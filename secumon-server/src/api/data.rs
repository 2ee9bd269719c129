//! Stored values read back: a host's metric history (`GET /metrics/hosts/{id}/history`) and
//! the latest result of every probe check (`GET /checks`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use secumon_api::{CheckList, ErrorCode, History, HistoryQuery as HistoryParams, HistorySeries};
use secumon_core::now_ms;
use secumon_store::{AgentFilter, Aggregation, RangeQuery, SeriesPoints, SeriesSelector};

use super::access::ApiQuery;
use super::config;
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::auth::Caller;

/// Points a history answers with when no step is given.
const DEFAULT_POINTS: u32 = 60;
/// A step finer than this over a long period would return millions of points.
const MAX_POINTS: i64 = 11_000;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/metrics/hosts/{id}/history", get(host_history))
        .route("/api/v1/checks", get(latest_checks))
}

#[utoipa::path(get, path = "/api/v1/checks", tag = "data", responses((status = 200, description = "The latest result of every check", body = serde_json::Value)))]
pub(super) async fn latest_checks(State(state): State<ApiState>, caller: Caller) -> Result<Json<CheckList>, ApiError> {
    let checks = state.store.latest_checks(&caller.tenant).await?;
    let checks = checks
        .into_iter()
        .map(|c| secumon_api::LatestCheck { agent_id: c.agent_id, host: c.host, result: c.result })
        .collect();
    Ok(Json(CheckList { checks }))
}

/// A stored series as the API shows it: a NaN value is `null`.
pub(crate) fn history_series(series: SeriesPoints) -> HistorySeries {
    HistorySeries {
        labels: series.series.labels,
        points: series.points.into_iter().map(|p| (p.timestamp_ms, (!p.value.is_nan()).then_some(p.value))).collect(),
    }
}

/// The store's aggregation, as the API names it.
fn api_aggregation(aggregation: Aggregation) -> secumon_api::Aggregation {
    use secumon_api::Aggregation as Api;
    match aggregation {
        Aggregation::Avg => Api::Avg,
        Aggregation::Min => Api::Min,
        Aggregation::Max => Api::Max,
        Aggregation::Sum => Api::Sum,
        Aggregation::Count => Api::Count,
        Aggregation::Last => Api::Last,
        Aggregation::P95 => Api::P95,
    }
}

#[utoipa::path(get, path = "/api/v1/metrics/hosts/{id}/history", tag = "metrics", params(("id" = String, Path, description = "Host name"), HistoryParams), responses((status = 200, description = "OK", body = History)))]
pub(super) async fn host_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<History>, ApiError> {
    let metric = params.metric.ok_or_else(|| ApiError::bad_request("query parameter `metric` is required"))?;
    let default_period = config::of(&state, &caller).await?.default_history_period;
    let period = parse_duration("period", params.period.as_deref().unwrap_or(&default_period))?;
    let period_ms = period.as_millis() as i64;
    let step_ms = match params.step.as_deref() {
        Some(step) => parse_duration("step", step)?.as_millis() as i64,
        None => (period_ms / i64::from(DEFAULT_POINTS)).max(1_000),
    };
    if step_ms <= 0 || period_ms / step_ms > MAX_POINTS {
        return Err(ApiError::bad_request(format!(
            "step must be positive and give at most {MAX_POINTS} points over the period"
        )));
    }
    let aggregation = match params.agg.as_deref() {
        Some(agg) => agg.parse().map_err(ApiError::bad_request)?,
        None => Aggregation::Avg,
    };
    let end_ms = now_ms();
    // Align buckets on the step so consecutive calls return the same bucket boundaries.
    let start_ms = (end_ms - period_ms).div_euclid(step_ms) * step_ms;
    let query = RangeQuery {
        selector: SeriesSelector::new(metric.clone()).with(secumon_core::model::HOST_LABEL, host.clone()),
        start_ms,
        end_ms,
        step_ms,
        aggregation,
    };
    let answer = state.store.query_range(&caller.tenant, &query).await?;
    let on_host = AgentFilter { host: Some(host.clone()), limit: Some(1), ..Default::default() };
    if answer.is_empty() && state.store.agents(&caller.tenant, &on_host).await?.0.is_empty() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no host {host:?}")));
    }
    Ok(Json(History {
        host,
        metric,
        start_ms,
        end_ms,
        step_ms,
        aggregation: api_aggregation(aggregation),
        series: answer.into_iter().map(history_series).collect(),
    }))
}
