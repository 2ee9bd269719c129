//! Scanner findings: importing a report (`POST /findings`, and the same under
//! `/integrations/secuscan`), listing findings, and the list of integrations.

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use secumon_api::{
    ErrorCode, FindingList, FindingsQuery, ImportQuery, ImportResult, Integration, IntegrationKind, IntegrationList,
};
use secumon_core::{Finding, now_ms};
use secumon_store::{FindingFilter, FindingsImport};

use super::access::ApiQuery;
use super::params::named;
use super::{ApiError, ApiState};
use crate::auth::{Caller, Role};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/integrations", get(list_integrations))
        .route(
            "/api/v1/findings",
            get(list_findings).post(import_findings).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)),
        )
        .route("/api/v1/integrations/secuscan", post(import_secuscan).layer(DefaultBodyLimit::max(MAX_REPORT_BYTES)))
}

/// The latest result of every probe check.
/// What connects to the server: scanner report imports (with their formats) and the
/// notification channels alerts go out through.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations", responses((status = 200, description = "Report imports and notification channels", body = serde_json::Value)))]
pub(super) async fn list_integrations(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<IntegrationList>, ApiError> {
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
    integrations.push(Integration {
        name: "secuops".into(),
        kind: IntegrationKind::EventsIngest,
        method: Some("POST".into()),
        endpoint: Some("/api/v1/integrations/secuops".into()),
        formats: None,
    });
    for (_, name) in state.scans.iter().filter(|(tenant, _)| *tenant == caller.tenant) {
        integrations.push(Integration {
            name: name.clone(),
            kind: IntegrationKind::ScheduledScan,
            method: None,
            endpoint: None,
            formats: None,
        });
    }
    for channel in state.alerting(&caller).await?.channel_names().await? {
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

/// Largest scanner report accepted in one request, in bytes: a report of the store's
/// default cap of 100 000 findings (`StoreOptions::max_report_findings`) takes about 16 MiB
/// in SecuMon's JSON, twice that leaves room for SARIF's verbosity. A larger body is
/// refused with 413 `report_too_large` before it is parsed.
pub const MAX_REPORT_BYTES: usize = 32 * 1024 * 1024;

/// A scanner report, taken whole or refused with the position of the problem.
#[utoipa::path(post, path = "/api/v1/findings", tag = "findings", params(ImportQuery), request_body(content = serde_json::Value, description = "A SARIF, Trivy, Nuclei (JSON lines) or SecuMon report"), responses((status = 200, description = "Imported", body = ImportResult)))]
pub(super) async fn import_findings(
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
    state.alerting(&caller).await?.observe_findings(changed, summary.samples.clone()).await?;
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
pub(super) async fn import_secuscan(
    state: State<ApiState>,
    caller: Caller,
    params: ApiQuery<ImportQuery>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    import_findings(state, caller, params, body).await
}

#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", params(FindingsQuery), responses((status = 200, description = "OK", body = FindingList)))]
pub(super) async fn list_findings(
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
