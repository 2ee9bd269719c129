//! The REST API under `/api/v1`. Every handler takes the [`Caller`] and reads or changes
//! only the caller's tenant. Errors are JSON `{"error": {"code", "message"}}` with the
//! matching HTTP status; lists are paged with `limit` and `offset`.

mod access;
mod accounts;
mod agent_config;
mod agents;
mod audit;
mod config;
mod dashboards;
mod hosts;
mod limits;
mod oidc;
mod openapi;
mod overview;
mod prometheus;
mod stream;
mod tenant_limits;

pub(crate) use agents::Enrollment;
pub use limits::RateLimit;
pub(crate) use limits::RateLimits;
// The API's types, from the crate the clients read them with.
use secumon_api::{
    AcknowledgeRequest, Acknowledged, AlertFilter, AlertHistory, AlertList, AlertStats, CheckList, FindingsQuery,
    HistoryFilter, HistoryQuery as HistoryParams, ImportQuery, IngestRequest, Ingested, Integration, IntegrationKind,
    IntegrationList, LogsPage, Resolved, RuleId, RuleList, RuleTest, RuleTestAlert, RuleView, SilenceList,
    SilenceRequest,
};
pub use secumon_api::{AgentList, AgentView, Provisioned};
pub use secumon_api::{FindingList, History, HistorySeries, ImportResult, Overview, OverviewGroup, OverviewHost};
pub(crate) use secumon_api::{LogLine, LogsQuery, Page, PageQuery as PageParams};

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use secumon_alert::RuleSpec;
use secumon_alert::{Acknowledgement, ActiveAlert, AlertState, Silence};
use secumon_api::{ErrorBody, ErrorCode};
use secumon_core::{ClockReading, Event, Finding, IngestBatch, Sample, now_ms};

use crate::alerting::{Alerting, RuleError, RuleOrigin};
use crate::audit::AuditNote;
use crate::auth::{Accounts, Caller, Role};
use crate::clock::{ClockBook, ClockCheck};
use crate::live::{LiveEvent, LiveFeed};
use crate::metrics::IngestMetrics;
use crate::tenants::AlertingByTenant;
use access::{ApiJson, ApiQuery};
use secumon_store::{
    AgentFilter, Aggregation, FindingFilter, FindingsImport, RangeQuery, SeriesPoints, SeriesSelector, Store,
    StoreError,
};
use serde::Serialize;

/// Points a history answers with when no step is given.
const DEFAULT_POINTS: u32 = 60;
/// A step finer than this over a long period would return millions of points.
const MAX_POINTS: i64 = 11_000;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Accounts>,
    pub alerting: Arc<AlertingByTenant>,
    pub ingest_metrics: Arc<IngestMetrics>,
    /// Senders' clocks, measured on ingest.
    pub clocks: Arc<ClockBook>,
    /// Requests without a token act as the super-admin of the default tenant (tests).
    pub open_access: bool,
    pub live: LiveFeed,
    /// Agent enrollment, when the gRPC ingest runs under the managed CA.
    pub agents: Option<Enrollment>,
    pub limits: Arc<limits::RateLimits>,
    /// Single sign-on through an OpenID provider, when configured.
    pub sso: Option<Arc<crate::auth::Sso>>,
    /// Where handlers' [`crate::audit::AuditNote`]s are written.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Each tenant's sample budget, and what the tenant limits refused.
    pub guard: Arc<crate::tenant_limits::IngestGuard>,
    /// The limits tenants have unless they have their own.
    pub tenant_limits: crate::TenantLimits,
    /// Agent configuration managed centrally, and what agents report of it.
    pub agent_config: Arc<crate::agent_config::AgentConfigBook>,
}

impl ApiState {
    async fn alerting(&self, caller: &Caller) -> Result<Arc<Alerting>, ApiError> {
        self.alerting.get(&caller.tenant).await.map_err(|error| {
            tracing::error!(%error, tenant = %caller.tenant, "cannot start the tenant's alert engine");
            ApiError::new(ErrorCode::Internal, "the alert engine is not available")
        })
    }
}

/// Paging a list the server holds whole.
pub(crate) trait Paging {
    /// The page's `(offset, limit)`, checked.
    fn bounds(&self) -> Result<(u32, u32), ApiError>;
    fn apply<T>(&self, all: Vec<T>) -> Result<(Vec<T>, Page), ApiError>;
}

impl Paging for PageParams {
    fn bounds(&self) -> Result<(u32, u32), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("`limit` must be 1 to 1000"));
        }
        Ok((self.offset.unwrap_or(0), limit))
    }

    fn apply<T>(&self, all: Vec<T>) -> Result<(Vec<T>, Page), ApiError> {
        let (offset, limit) = self.bounds()?;
        let (offset, limit) = (offset as usize, limit as usize);
        let total = all.len();
        let items: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
        let next_offset = (offset + items.len() < total).then_some(offset + items.len());
        Ok((items, Page { total, offset, limit, next_offset }))
    }
}

pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .merge(accounts::routes())
        .merge(oidc::routes())
        .route("/metrics", get(server_metrics))
        .merge(agents::routes())
        .merge(agent_config::routes())
        .merge(dashboards::routes())
        .merge(config::routes())
        .merge(hosts::routes())
        .merge(audit::routes())
        .merge(tenant_limits::routes())
        .merge(overview::routes())
        .merge(prometheus::routes())
        .route("/api/v1/integrations", get(list_integrations))
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/metrics/hosts/{id}/history", get(host_history))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/history", get(alert_history))
        .route("/api/v1/alerts/stats", get(alert_stats))
        .route("/api/v1/alerts/{id}/acknowledge", post(acknowledge_alert))
        .route("/api/v1/alerts/{id}/resolve", post(resolve_alert))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/alert-rules", get(list_rules).post(create_rule))
        .route("/api/v1/alert-rules/{id}", get(get_rule).put(update_rule).delete(delete_rule))
        .route("/api/v1/alert-rules/{id}/test", get(test_rule))
        .route("/api/v1/alert-rules/{id}/history", get(rule_history))
        .route(
            "/api/v1/findings",
            get(list_findings).post(import_findings).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/checks", get(latest_checks))
        .route("/api/v1/logs/hosts/{id}", get(host_logs))
        .route("/api/v1/integrations/secuscan", post(import_secuscan).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)))
        .route("/api/v1/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::middleware::from_fn(log_server_errors))
        // Every route's successful changes are recorded here, in one place.
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .with_state(state)
}

/// Logs each answer that is the server's fault, with the cause the client is not shown;
/// errors are only rendered where they are made, so logging lives here, once.
async fn log_server_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    if let Some(ServerFault(cause)) = response.extensions().get::<ServerFault>() {
        tracing::error!(%method, %path, status = response.status().as_u16(), %cause, "request failed inside the server");
    }
    response
}

/// What went wrong inside the server, carried from an [`ApiError`] to the logging layer.
#[derive(Clone)]
struct ServerFault(String);

/// A batch sequence for HTTP pushes: increasing, never reused while the clock moves on.
fn next_sequence() -> u64 {
    static LAST: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    *last = (*last + 1).max(now_ms() as u64 * 1_000);
    *last
}

/// Hands the server's own stored samples (a refused sender's clock offset) to the caller's
/// alert engine; the refusal is answered either way.
async fn observe_own(state: &ApiState, caller: &Caller, own: Option<IngestBatch>) {
    if let Some(own) = own
        && let Ok(engine) = state.alerting(caller).await
    {
        engine.observe_own_batch(&caller.tenant, &own);
    }
}

/// Stores a script's samples and events as one batch, validated like an agent's.
#[utoipa::path(post, path = "/api/v1/ingest", tag = "data", request_body = IngestRequest, responses((status = 200, description = "Stored: counts of samples and events", body = Ingested)))]
async fn ingest(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(request): ApiJson<IngestRequest>,
) -> Result<Json<Ingested>, ApiError> {
    caller.require(Role::Operator)?;
    if request.sent_at_ms.is_some_and(|sent| sent <= 0) {
        return Err(ApiError::bad_request("`sent_at_ms` must be milliseconds since 1970"));
    }
    let now = now_ms();
    // Untimed values are as of the script's "now", in its clock's frame, so a correction
    // moves them with the rest.
    let default_ms = request.sent_at_ms.unwrap_or(now);
    let batch = IngestBatch {
        // Per tenant: two tenants' scripts may share a name without meeting.
        agent_id: format!("{}{}:{}", agents::SCRIPT_ID_PREFIX, caller.tenant, request.source),
        sequence: next_sequence(),
        host: request.host,
        agent_labels: request.labels,
        created_at_ms: now,
        samples: request
            .samples
            .into_iter()
            .map(|s| Sample::new(s.name, s.labels, s.timestamp_ms.unwrap_or(default_ms), s.value))
            .collect(),
        events: request
            .events
            .into_iter()
            .map(|e| Event {
                timestamp_ms: e.timestamp_ms.unwrap_or(default_ms),
                kind: e.kind,
                severity: e.severity,
                labels: e.labels,
                message: e.message,
            })
            .collect(),
        // An HTTP request's round trip is unknown; on the networks scripts push over, the
        // way out is far below the tolerance.
        clock: request.sent_at_ms.map(|sent_at_ms| ClockReading { sent_at_ms, round_trip_ms: 0, received_at_ms: 0 }),
        ..Default::default()
    };
    // The wire validation, so an HTTP push meets the rules an agent's batch does.
    let mut batch = IngestBatch::from_proto(batch.to_proto()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(clock) = &mut batch.clock {
        clock.received_at_ms = now;
    }
    // What the script sent, before the server adds its clock-offset sample.
    let (samples, events) = (batch.samples.len(), batch.events.len());
    let check = match state.clocks.prepare(&caller.tenant, &mut batch, now) {
        Ok(check) => check,
        Err(reason) => {
            let check = ClockCheck {
                offset_ms: batch.clock.map(|c| c.offset_ms()),
                round_trip_ms: 0,
                received_ms: now,
                corrected: false,
            };
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &reason).await;
            observe_own(&state, &caller, own).await;
            return Err(ApiError::bad_request(reason));
        }
    };
    if let Err(refused) = state.guard.admit(&caller.tenant, batch.value_count()) {
        return Err(ApiError::new(ErrorCode::IngestRateLimited, refused));
    }
    let health = &state.ingest_metrics.store;
    match state.store.write_batch(&caller.tenant, &batch).await {
        Ok(_) => {
            health.write_succeeded();
            state.clocks.committed(&caller.tenant, &batch, check)
        }
        Err(error) if error.fault().is_some() => {
            return Err(ApiError::new(ErrorCode::StoreUnavailable, health.write_failed(&error)));
        }
        Err(refused @ (StoreError::FutureTimestamp { .. } | StoreError::TenantMismatch { .. })) => {
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &refused.to_string()).await;
            observe_own(&state, &caller, own).await;
            return Err(refused.into());
        }
        Err(refused @ StoreError::SeriesLimit { new, .. }) => {
            let reason = crate::tenant_limits::Refusal::SeriesLimit;
            state.guard.count(&caller.tenant, reason, batch.value_count() as u64, new);
            let own = state.clocks.refused(&*state.store, &caller.tenant, &batch, check, &refused.to_string()).await;
            observe_own(&state, &caller, own).await;
            return Err(refused.into());
        }
        Err(error) => return Err(error.into()),
    }
    let batch = Arc::new(batch);
    state.live.publish(LiveEvent::Batch { tenant: caller.tenant.clone(), batch: Arc::clone(&batch) });
    state.alerting(&caller).await?.observe_batch(&caller.tenant, &batch);
    Ok(Json(Ingested {
        samples,
        events,
        clock_offset_ms: check.offset_ms,
        clock_corrected: check.offset_ms.map(|_| check.corrected),
    }))
}

/// The store query a `GET /logs/hosts/{id}` asks for.
pub(crate) trait LogsQueryExt {
    /// The store query this asks for, or why it cannot be asked.
    fn to_store(&self, host: &str) -> Result<secumon_store::LogQuery, StoreError>;
}

impl LogsQueryExt for LogsQuery {
    fn to_store(&self, host: &str) -> Result<secumon_store::LogQuery, StoreError> {
        use secumon_store::{LineFilter, LogOrder};
        let cursor = |text: &Option<String>| text.as_deref().map(str::parse).transpose();
        let (after, before) = (cursor(&self.after)?, cursor(&self.before)?);
        if after.is_some() && before.is_some() {
            return Err(StoreError::InvalidQuery("give `after` or `before`, not both".into()));
        }
        let filter = match (&self.contains, &self.regex) {
            (Some(_), Some(_)) => {
                return Err(StoreError::InvalidQuery("give `contains` or `regex`, not both".into()));
            }
            (Some(text), None) => Some(LineFilter::Contains(text.clone())),
            (None, Some(pattern)) => Some(LineFilter::regex(pattern)?),
            (None, None) => None,
        };
        let forward = match self.order.as_deref() {
            _ if after.is_some() => true,
            _ if before.is_some() => false,
            Some("oldest") => true,
            Some("newest") => false,
            None => self.since_ms.is_some(),
            Some(other) => {
                return Err(StoreError::InvalidQuery(format!("order is `oldest` or `newest`, not {other:?}")));
            }
        };
        Ok(secumon_store::LogQuery {
            host: host.to_string(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            after,
            before,
            source: self.source.clone(),
            filter,
            order: if forward { LogOrder::Forward } else { LogOrder::Backward },
            limit: self.limit.unwrap_or(100).clamp(1, secumon_store::logs::MAX_PAGE),
        })
    }
}

/// A stored line as the API shows it.
pub(crate) fn log_line(entry: secumon_store::LogEntry) -> LogLine {
    let record = entry.record;
    LogLine {
        cursor: entry.cursor.to_string(),
        timestamp_ms: record.timestamp_ms,
        source: record.source,
        labels: record.labels,
        line: record.line,
    }
}

/// A host's log lines: a time range, a source, a text or regex filter, paged by cursor.
/// Without `since_ms`, `after` or `before`: the latest `limit` lines, oldest first.
#[utoipa::path(get, path = "/api/v1/logs/hosts/{id}", tag = "data", params(("id" = String, Path, description = "Host name"), LogsQuery), responses((status = 200, description = "A page of log lines", body = LogsPage)))]
async fn host_logs(
    State(state): State<ApiState>,
    caller: Caller,
    Path(host): Path<String>,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<LogsPage>, ApiError> {
    let page = state.store.query_logs(&caller.tenant, &query.to_store(&host)?).await?;
    Ok(Json(LogsPage {
        host,
        logs: page.entries.into_iter().map(log_line).collect(),
        next_cursor: page.last.map(|c| c.to_string()),
        prev_cursor: page.first.map(|c| c.to_string()),
        more: page.more,
    }))
}

/// The latest result of every probe check.
/// What connects to the server: scanner report imports (with their formats) and the
/// notification channels alerts go out through.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations", responses((status = 200, description = "Report imports and notification channels", body = serde_json::Value)))]
async fn list_integrations(State(state): State<ApiState>, caller: Caller) -> Result<Json<IntegrationList>, ApiError> {
    let formats: Vec<String> = secumon_findings::parsers().iter().map(|p| p.format().to_string()).collect();
    let import = |name: &str, endpoint: &str| Integration {
        name: name.into(),
        kind: IntegrationKind::FindingsImport,
        method: Some("POST".into()),
        endpoint: Some(endpoint.into()),
        formats: Some(formats.clone()),
    };
    let mut integrations =
        vec![import("secuscan", "/api/v1/integrations/secuscan"), import("findings", "/api/v1/findings")];
    for channel in state.alerting(&caller).await?.channel_names() {
        integrations.push(Integration {
            name: channel.to_string(),
            kind: IntegrationKind::NotificationChannel,
            method: None,
            endpoint: None,
            formats: None,
        });
    }
    Ok(Json(IntegrationList { integrations }))
}

#[utoipa::path(get, path = "/api/v1/checks", tag = "data", responses((status = 200, description = "The latest result of every check", body = serde_json::Value)))]
async fn latest_checks(State(state): State<ApiState>, caller: Caller) -> Result<Json<CheckList>, ApiError> {
    let checks = state.store.latest_checks(&caller.tenant).await?;
    let checks = checks
        .into_iter()
        .map(|c| secumon_api::LatestCheck { agent_id: c.agent_id, host: c.host, result: c.result })
        .collect();
    Ok(Json(CheckList { checks }))
}

/// Largest scanner report accepted in one request, in bytes: a report of the store's
/// default cap of 100 000 findings (`StoreOptions::max_report_findings`) takes about 16 MiB
/// in SecuMon's JSON, twice that leaves room for SARIF's verbosity. A larger body is
/// refused with 413 `report_too_large` before it is parsed.
pub const MAX_REPORT_BYTES: usize = 32 * 1024 * 1024;

/// A scanner report, taken whole or refused with the position of the problem.
#[utoipa::path(post, path = "/api/v1/findings", tag = "findings", params(ImportQuery), request_body(content = serde_json::Value, description = "A SARIF, Trivy, Nuclei (JSON lines) or SecuMon report"), responses((status = 200, description = "Imported", body = ImportResult)))]
async fn import_findings(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<ImportQuery>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    caller.require(Role::Operator)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::ReportTooLarge,
                format!("the report is larger than the limit of {MAX_REPORT_BYTES} bytes per report"),
            )
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    let origin = params.origin.unwrap_or_else(|| "report".into());
    // Parsing megabytes of JSON is CPU work: off the runtime's workers, which also serve
    // agents' pushes.
    let format = params.format;
    let report = tokio::task::spawn_blocking(move || {
        let text =
            std::str::from_utf8(&body).map_err(|e| ApiError::bad_request(format!("{origin}: not UTF-8 text: {e}")))?;
        secumon_findings::parse(text, &origin, format.as_deref()).map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(ErrorCode::Internal, "the report could not be parsed", e))??;
    let import = FindingsImport {
        source: report.format.to_string(),
        findings: report.findings,
        full_scan: params.full_scan.unwrap_or(true),
        at_ms: now_ms(),
    };
    let summary = state.store.import_findings(&caller.tenant, &import).await?;
    let changed: Vec<Finding> = summary.new.iter().chain(&summary.reopened).chain(&summary.fixed).cloned().collect();
    state.alerting(&caller).await?.observe_findings(&changed, &summary.samples);
    tracing::info!(
        format = report.format,
        findings = import.findings.len(),
        new = summary.new.len(),
        fixed = summary.fixed.len(),
        "findings imported"
    );
    Ok(Json(ImportResult {
        format: report.format.to_string(),
        findings: import.findings.len(),
        new: summary.new.len(),
        reopened: summary.reopened.len(),
        fixed: summary.fixed.len(),
        unchanged: summary.unchanged,
    }))
}

/// The scanner integration's endpoint: the same import under the integration's own path.
#[utoipa::path(post, path = "/api/v1/integrations/secuscan", tag = "integrations", params(ImportQuery), request_body(content = serde_json::Value, description = "A scanner report"), responses((status = 200, description = "Imported", body = ImportResult)))]
async fn import_secuscan(
    state: State<ApiState>,
    caller: Caller,
    params: ApiQuery<ImportQuery>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    import_findings(state, caller, params, body).await
}

/// A lower-case enum name from a query parameter.
fn named<T: serde::de::DeserializeOwned>(field: &str, value: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_lowercase()))
        .map_err(|_| ApiError::bad_request(format!("`{field}` {value:?} is not recognised")))
}

#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", params(FindingsQuery), responses((status = 200, description = "OK", body = FindingList)))]
async fn list_findings(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<FindingsQuery>,
) -> Result<Json<FindingList>, ApiError> {
    let filter = FindingFilter {
        asset: query.asset,
        severity: query.severity.as_deref().map(|s| named("severity", s)).transpose()?,
        status: query.status.as_deref().map(|s| named("status", s)).transpose()?,
        limit: query.limit.unwrap_or(100).min(10_000),
        offset: query.offset.unwrap_or(0),
    };
    Ok(Json(FindingList { findings: state.store.list_findings(&caller.tenant, &filter).await? }))
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
async fn host_history(
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

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertFilter), responses((status = 200, description = "OK", body = AlertList)))]
async fn list_alerts(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<AlertFilter>,
) -> Result<Json<AlertList>, ApiError> {
    let alerts = state
        .alerting(&caller)
        .await?
        .active()
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

impl ApiState {
    /// Everything `/metrics` shows (also stored as the server's own series).
    pub(crate) fn metrics_text(&self) -> String {
        let maintenance = self.store.maintenance_health();
        let mut body =
            crate::metrics::render(&self.ingest_metrics, maintenance, &self.alerting.all(), self.live.subscribers());
        body.push_str(&self.audit.render_metrics());
        body.push_str(&self.guard.render_metrics());
        body
    }
}

async fn server_metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut body = state.metrics_text();
    body.push_str(&crate::self_series::process_exposition());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

#[utoipa::path(get, path = "/api/v1/alerts/stats", tag = "alerts", responses((status = 200, description = "OK", body = AlertStats)))]
async fn alert_stats(State(state): State<ApiState>, caller: Caller) -> Result<Json<AlertStats>, ApiError> {
    let alerting = state.alerting(&caller).await?;
    let alerts = alerting.active();
    let mut stats = AlertStats {
        total: alerts.len(),
        by_status: Default::default(),
        by_severity: Default::default(),
        acknowledged: alerts.iter().filter(|a| a.acknowledged.is_some()).count(),
        delivery_failures: alerting.delivery_failures(),
    };
    for alert in &alerts {
        *stats.by_status.entry(enum_name(&alert.state)).or_default() += 1;
        *stats.by_severity.entry(enum_name(&alert.severity)).or_default() += 1;
    }
    Ok(Json(stats))
}

#[utoipa::path(get, path = "/api/v1/alerts/history", tag = "alerts", params(HistoryFilter), responses((status = 200, description = "OK", body = AlertHistory)))]
async fn alert_history(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(filter): ApiQuery<HistoryFilter>,
) -> Result<Json<AlertHistory>, ApiError> {
    let limit = filter.limit.unwrap_or(100).min(10_000);
    Ok(Json(AlertHistory { history: state.alerting(&caller).await?.history(filter.rule.as_deref(), limit).await? }))
}

/// A rule as the API shows it: its definition as the rules file's JSON.
fn api_rule(view: crate::alerting::RuleView) -> RuleView {
    RuleView {
        id: view.id,
        origin: match view.origin {
            RuleOrigin::File => secumon_api::RuleOrigin::File,
            RuleOrigin::Api => secumon_api::RuleOrigin::Api,
        },
        rule: view.rule,
    }
}

/// An engine's alert state as the API names it.
fn api_state(state: AlertState) -> secumon_api::AlertState {
    match state {
        AlertState::Inactive => secumon_api::AlertState::Inactive,
        AlertState::Pending => secumon_api::AlertState::Pending,
        AlertState::Firing => secumon_api::AlertState::Firing,
        AlertState::Stale => secumon_api::AlertState::Stale,
        AlertState::Resolved => secumon_api::AlertState::Resolved,
    }
}

#[utoipa::path(get, path = "/api/v1/alert-rules", tag = "rules", responses((status = 200, description = "OK", body = RuleList)))]
async fn list_rules(State(state): State<ApiState>, caller: Caller) -> Result<Json<RuleList>, ApiError> {
    Ok(Json(RuleList { rules: state.alerting(&caller).await?.rules().await.into_iter().map(api_rule).collect() }))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}", tag = "rules", params(("id" = String, Path, description = "Rule name")), responses((status = 200, description = "OK", body = serde_json::Value)))]
async fn get_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    let rule = state.alerting(&caller).await?.rules().await.into_iter().find(|r| r.id == id);
    rule.map(|rule| Json(api_rule(rule))).ok_or_else(|| RuleError::NotFound(id).into())
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
async fn create_rule(
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
async fn update_rule(
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
async fn delete_rule(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, StatusCode), ApiError> {
    caller.require(Role::Admin)?;
    state.alerting(&caller).await?.delete_rule(&id).await?;
    Ok((AuditNote::by(&caller, "alert_rule.delete", &id), StatusCode::NO_CONTENT))
}

#[utoipa::path(get, path = "/api/v1/alert-rules/{id}/test", tag = "rules", params(("id" = String, Path, description = "Rule name")), responses((status = 200, description = "What the rule would fire on now", body = serde_json::Value)))]
async fn test_rule(
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
async fn rule_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(filter): ApiQuery<HistoryFilter>,
) -> Result<Json<AlertHistory>, ApiError> {
    let alerting = state.alerting(&caller).await?;
    if !alerting.rules().await.iter().any(|r| r.id == id) {
        return Err(RuleError::NotFound(id).into());
    }
    let limit = filter.limit.unwrap_or(100).min(10_000);
    Ok(Json(AlertHistory { history: alerting.history(Some(&id), limit).await? }))
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", params(("id" = String, Path, description = "Alert id")), request_body = AcknowledgeRequest, responses((status = 200, description = "Acknowledged", body = serde_json::Value)))]
async fn acknowledge_alert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AcknowledgeRequest>,
) -> Result<(AuditNote, Json<Acknowledged>), ApiError> {
    caller.require(Role::Operator)?;
    // Who acknowledged is who called, not what the body claims.
    let note = AuditNote::by(&caller, "alert.acknowledge", &id).detail(serde_json::json!({"comment": request.comment}));
    let ack = Acknowledgement { by: caller.subject.clone(), at_ms: now_ms(), comment: request.comment };
    if state.alerting(&caller).await?.acknowledge(&id, ack) {
        Ok((note, Json(Acknowledged { acknowledged: true })))
    } else {
        Err(ApiError::new(ErrorCode::NotFound, format!("no firing alert {id:?}")))
    }
}

#[utoipa::path(get, path = "/api/v1/silences", tag = "alerts", responses((status = 200, description = "OK", body = SilenceList)))]
async fn list_silences(State(state): State<ApiState>, caller: Caller) -> Result<Json<SilenceList>, ApiError> {
    Ok(Json(SilenceList { silences: state.alerting(&caller).await?.silences().into_iter().map(api_silence).collect() }))
}

#[utoipa::path(post, path = "/api/v1/silences", tag = "alerts", request_body = SilenceRequest, responses((status = 201, description = "Created", body = serde_json::Value)))]
async fn add_silence(
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
    let silence = state.alerting(&caller).await?.add_silence(silence);
    let note = AuditNote::by(&caller, "silence.create", &silence.id).detail(serde_json::json!({
        "matchers": silence.matchers, "ends_ms": silence.ends_ms, "comment": silence.comment}));
    Ok((StatusCode::CREATED, note, Json(api_silence(silence))))
}

/// Ends a silence before its time (recorded in the history as the caller's doing).
#[utoipa::path(delete, path = "/api/v1/silences/{id}", tag = "alerts", params(("id" = String, Path, description = "Silence id")), responses((status = 200, description = "Expired; the silence as it ends", body = serde_json::Value), (status = 404, description = "No current silence with this id")))]
async fn expire_silence(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, Json<secumon_api::Silence>), ApiError> {
    caller.require(Role::Operator)?;
    match state.alerting(&caller).await?.expire_silence(&id, &caller.subject) {
        Some(silence) => Ok((AuditNote::by(&caller, "silence.remove", &id), Json(api_silence(silence)))),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("no current silence {id:?}"))),
    }
}

/// Ends a firing or stale alert by an operator's word: a stale alert's data is gone (a
/// check removed for good), so only a person or the rule's `no_data` can close it.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts", params(("id" = String, Path, description = "Alert id")), responses((status = 200, description = "Resolved", body = serde_json::Value), (status = 404, description = "No firing or stale alert with this id")))]
async fn resolve_alert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(AuditNote, Json<Resolved>), ApiError> {
    caller.require(Role::Operator)?;
    if state.alerting(&caller).await?.resolve(&id, &caller.subject) {
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

/// The longest duration any parameter takes: beyond it, timestamps computed from it would
/// overflow or mean nothing.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

fn parse_duration(name: &str, text: &str) -> Result<Duration, ApiError> {
    let duration = humantime::parse_duration(text).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
        ApiError::bad_request(format!("`{name}` must be a duration such as 15m, 1h or 7d, got {text:?}"))
    })?;
    if duration > MAX_DURATION {
        return Err(ApiError::bad_request(format!("`{name}` is at most 10 years, got {text:?}")));
    }
    Ok(duration)
}

/// An API failure, rendered as `{"error": {"code", "message"}}` with the status
/// [`ErrorCode`]'s table gives (the table clients read refusals with).
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
    /// The server-side cause, logged by [`log_server_errors`] and never sent to the client.
    cause: Option<String>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), cause: None }
    }

    /// The server's fault: the client gets `message`, the log gets `cause`.
    pub(crate) fn internal(code: ErrorCode, message: impl Into<String>, cause: impl ToString) -> Self {
        Self { cause: Some(cause.to_string()), ..Self::new(code, message) }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::InvalidQuery(message) => Self::bad_request(message),
            refused @ StoreError::FutureTimestamp { .. } => Self::bad_request(refused.to_string()),
            refused @ StoreError::TenantMismatch { .. } => Self::new(ErrorCode::Conflict, refused.to_string()),
            refused @ StoreError::ReportTooLarge { .. } => Self::new(ErrorCode::ReportTooLarge, refused.to_string()),
            refused @ StoreError::TooManyOpenFindings { .. } => {
                Self::new(ErrorCode::FindingsLimit, refused.to_string())
            }
            refused @ StoreError::SeriesLimit { .. } => Self::new(ErrorCode::SeriesLimit, refused.to_string()),
            other if other.fault().is_some() => {
                let fault = other.fault().map(|f| f.to_string()).unwrap_or_default();
                let message = format!("storage unavailable: {fault}");
                Self::internal(ErrorCode::StoreUnavailable, message, other)
            }
            other => Self::internal(ErrorCode::Internal, "storage failure", other),
        }
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Invalid(message) => Self::bad_request(message),
            RuleError::Exists(_) | RuleError::ReadOnly(_) => Self::new(ErrorCode::Conflict, error.to_string()),
            RuleError::NotFound(_) => Self::new(ErrorCode::NotFound, error.to_string()),
            RuleError::Store(store) => store.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), Json(ErrorBody::new(self.code, self.message))).into_response();
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(ServerFault(cause));
        }
        response
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

    #[test]
    fn rules_keep_the_engines_json() {
        let text = "rules:\n  - {name: DiskFull, expr: disk_used_ratio > 0.9, severity: critical, for: 5m}\n";
        let spec = secumon_alert::RuleFile::parse(text, "rules.yaml").unwrap().rules[0].spec.clone();
        let view = crate::alerting::RuleView { id: "DiskFull".into(), origin: RuleOrigin::File, rule: spec };
        assert_eq!(serde_json::to_value(api_rule(view.clone())).unwrap(), serde_json::to_value(&view).unwrap());
    }

    #[tokio::test]
    async fn a_server_fault_reaches_the_log_layer_but_not_the_client() {
        let response =
            ApiError::internal(ErrorCode::StoreUnavailable, "storage unavailable", "disk full").into_response();
        let Some(ServerFault(cause)) = response.extensions().get::<ServerFault>() else {
            panic!("the cause must travel to the logging layer");
        };
        assert_eq!(cause, "disk full");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("storage unavailable") && !body.contains("disk full"), "{body}");

        let refused = ApiError::bad_request("no").into_response();
        assert!(refused.extensions().get::<ServerFault>().is_none(), "a client's mistake is not the server's fault");
    }
}
