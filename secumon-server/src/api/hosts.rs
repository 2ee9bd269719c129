//! Current values: one host's latest metrics in one call (what an overview's gauges need),
//! and one network target's probe results with their latency history.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use secumon_core::model::HOST_LABEL;
use secumon_core::now_ms;
use secumon_store::{AgentFilter, Aggregation, RangeQuery, SeriesSelector};

use super::access::ApiQuery;
use super::agents::agent_view;
use super::config;
use super::data::history_series;
use super::params::parse_duration;
use super::{ApiError, ApiState};
use crate::auth::Caller;
use secumon_api::{
    AgentView, ErrorCode, HostSummary, HostSummaryQuery, LatestCheck, LatestValue, NetworkQuery, NetworkTarget,
};

/// The metrics a host summary carries when the caller names none.
const SUMMARY_METRICS: [&str; 6] =
    ["cpu_usage_ratio", "memory_used_ratio", "swap_used_ratio", "filesystem_used_ratio", "load1", "processes_zombie"];
/// How far back a "latest" value may be.
const LATEST_WINDOW_MS: i64 = 15 * 60_000;
/// Metrics one summary may ask for, at most.
const MAX_SUMMARY_METRICS: usize = 50;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/metrics/hosts/{id}", get(host_summary))
        .route("/api/v1/metrics/network/{target}", get(network_target))
}

#[utoipa::path(get, path = "/api/v1/metrics/hosts/{id}", tag = "metrics", params(("id" = String, Path, description = "Host name"), HostSummaryQuery), responses((status = 200, description = "OK", body = HostSummary)))]
pub(super) async fn host_summary(
    State(state): State<ApiState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(params): ApiQuery<HostSummaryQuery>,
) -> Result<Json<HostSummary>, ApiError> {
    let names: Vec<String> = match &params.metrics {
        Some(list) => list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect(),
        None => SUMMARY_METRICS.iter().map(|n| n.to_string()).collect(),
    };
    if names.is_empty() || names.len() > MAX_SUMMARY_METRICS {
        return Err(ApiError::bad_request(format!("`metrics` must name 1 to {MAX_SUMMARY_METRICS} metrics")));
    }
    let offline_after = config::offline_after(&state, &caller).await?;
    let on_host = AgentFilter { host: Some(host.clone()), ..Default::default() };
    let mut clocks = state.clocks.agents(&*state.store, &caller.tenant).await;
    let agents: Vec<AgentView> = state
        .store
        .agents(&caller.tenant, &on_host)
        .await?
        .0
        .into_iter()
        .map(|a| {
            let clock = clocks.remove(&a.agent_id);
            agent_view(a, clock, offline_after)
        })
        .collect();
    if agents.is_empty() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no host {host:?}")));
    }
    let mut metrics = std::collections::BTreeMap::new();
    for name in names {
        let selector = SeriesSelector::new(name.clone()).with(HOST_LABEL, host.clone());
        metrics.insert(name, latest(&state, &caller, selector).await?);
    }
    Ok(Json(HostSummary { host, agents, metrics }))
}

/// The latest value of each series `selector` matches, within [`LATEST_WINDOW_MS`].
async fn latest(state: &ApiState, caller: &Caller, selector: SeriesSelector) -> Result<Vec<LatestValue>, ApiError> {
    let end_ms = now_ms();
    // One point per sample (a 1 ms step), not one bucket for the window: a bucket's
    // timestamp is where the window starts, and whoever judges staleness needs the time the
    // value was really taken.
    let query = RangeQuery {
        selector,
        start_ms: end_ms - LATEST_WINDOW_MS,
        end_ms,
        step_ms: 1,
        aggregation: Aggregation::Last,
    };
    let answer = state.store.query_range(&caller.tenant, &query).await?;
    Ok(answer
        .into_iter()
        .filter_map(|series| {
            let point = series.points.into_iter().rev().find(|p| !p.value.is_nan())?;
            Some(LatestValue { labels: series.series.labels, timestamp_ms: point.timestamp_ms, value: point.value })
        })
        .collect())
}

#[utoipa::path(get, path = "/api/v1/metrics/network/{target}", tag = "metrics", params(("target" = String, Path, description = "Check target or check id"), NetworkQuery), responses((status = 200, description = "OK", body = NetworkTarget)))]
pub(super) async fn network_target(
    State(state): State<ApiState>,
    caller: Caller,
    Path(target): Path<String>,
    ApiQuery(params): ApiQuery<NetworkQuery>,
) -> Result<Json<NetworkTarget>, ApiError> {
    let period_ms = parse_duration("period", params.period.as_deref().unwrap_or("1h"))?.as_millis() as i64;
    if period_ms > 90 * 24 * 3_600_000 {
        return Err(ApiError::bad_request("`period` may be at most 90 days"));
    }
    let checks: Vec<LatestCheck> = state
        .store
        .latest_checks(&caller.tenant)
        .await?
        .into_iter()
        .filter(|c| c.result.target == target || c.result.check_id == target)
        .map(|c| LatestCheck { agent_id: c.agent_id, host: c.host, result: c.result })
        .collect();
    if checks.is_empty() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no check of target {target:?}")));
    }
    let step_ms = (period_ms / 60).max(1_000);
    let end_ms = now_ms();
    let query = RangeQuery {
        selector: SeriesSelector::new("check_duration_seconds").with("target", checks[0].result.target.clone()),
        start_ms: (end_ms - period_ms).div_euclid(step_ms) * step_ms,
        end_ms,
        step_ms,
        aggregation: Aggregation::Avg,
    };
    let latency = state.store.query_range(&caller.tenant, &query).await?.into_iter().map(history_series).collect();
    Ok(Json(NetworkTarget { target, checks, step_ms, latency }))
}
