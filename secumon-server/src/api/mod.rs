//! The REST API under `/api/v1`. Every handler takes the [`Caller`] and reads or changes
//! only the caller's tenant. Errors are JSON `{"error": {"code", "message"}}` with the
//! matching HTTP status; lists are paged with `limit` and `offset`.
//!
//! This file holds the router, the state handlers share and the module list; each group of
//! endpoints lives in its own module.

mod access;
mod accounts;
mod agent_config;
mod agents;
mod alert_series;
mod alerts;
mod audit;
mod config;
mod dashboards;
mod data;
mod error;
mod findings;
mod hosts;
mod ingest;
mod limits;
mod logs;
mod oidc;
mod openapi;
mod overview;
mod params;
mod prometheus;
mod reports;
mod rules;
mod secuops;
mod stream;
mod tenant_limits;

pub(crate) use agents::Enrollment;
pub(crate) use error::ApiError;
pub use findings::MAX_REPORT_BYTES;
pub use limits::RateLimit;
pub(crate) use limits::RateLimits;
pub(crate) use params::Paging;
// The API's types, from the crate the clients read them with.
pub use secumon_api::{AgentList, AgentView, Provisioned};
pub use secumon_api::{FindingList, History, HistorySeries, ImportResult, Overview, OverviewGroup, OverviewHost};
pub(crate) use secumon_api::{LogLine, LogsQuery, Page, PageQuery as PageParams};

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use secumon_api::ErrorCode;

use crate::alert_calls::TenantAlerting;
use crate::auth::{Accounts, Caller};
use crate::clock::ClockBook;
use crate::live::LiveFeed;
use crate::metrics::IngestMetrics;
use crate::tenants::AlertingByTenant;
use secumon_store::Store;

#[derive(Clone)]
pub(crate) struct ApiState {
    pub store: Arc<dyn Store>,
    pub accounts: Arc<Accounts>,
    pub alerting: Arc<AlertingByTenant>,
    /// Whether this process runs alert engines (the alert role); without, or for a tenant
    /// another alert process owns, alerting is reached through `alert_calls`.
    pub evaluates_alerts: bool,
    /// NATS, to call the alert process that owns a tenant (split deployments).
    pub alert_calls: Option<async_nats::Client>,
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
    /// Scheduled scans (tenant, name), listed with the integrations.
    pub scans: Arc<Vec<(String, String)>>,
    /// Scheduled reports: what `PUT /config` checks a tenant's schedules against.
    pub reports: Arc<crate::report_schedule::ReportScheduler>,
}

impl ApiState {
    async fn alerting(&self, caller: &Caller) -> Result<TenantAlerting, ApiError> {
        self.tenant_alerting(&caller.tenant).await
    }

    /// `tenant`'s alerting: its engine in this process, or the alert process that owns it.
    async fn tenant_alerting(&self, tenant: &str) -> Result<TenantAlerting, ApiError> {
        if self.evaluates_alerts {
            let here =
                self.alerting.evaluating(tenant).await.map_err(|error| {
                    ApiError::internal(ErrorCode::Internal, "the alert engine is not available", error)
                })?;
            if let Some(engine) = here {
                return Ok(TenantAlerting::Local(engine));
            }
        }
        match &self.alert_calls {
            Some(client) => Ok(TenantAlerting::Remote { client: client.clone(), tenant: tenant.to_string() }),
            None => Err(ApiError::new(ErrorCode::Internal, "no alert engine evaluates this tenant")),
        }
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
        .merge(reports::routes())
        .merge(prometheus::routes())
        .merge(findings::routes())
        .route("/api/v1/stream", get(stream::stream))
        .merge(data::routes())
        .merge(alerts::routes())
        .merge(rules::routes())
        .merge(ingest::routes())
        .merge(secuops::routes())
        .merge(logs::routes())
        .route("/api/v1/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::middleware::from_fn(error::log_server_errors))
        // Every route's successful changes are recorded here, in one place.
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .with_state(state)
}

/// Only `/metrics`: what a process without the API role (a gateway, an ingest worker)
/// serves, so each process of a scale-out can be watched.
pub(crate) fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(server_metrics))
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "this process serves /metrics only; the API is on the api processes")
        })
        .with_state(state)
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
