//! The SecuMon REST API (`/api/v1`) as Rust types: what each endpoint takes and answers
//! (with its OpenAPI schema, feature `schema`), the error codes with the one table of their
//! HTTP statuses ([`ErrorCode`]), and one typed async client ([`Client`], feature `client`).
//!
//! The server answers with these types and the console, the CLI and the Python bindings read
//! them, so a change to the API fails to compile wherever it breaks something. The JSON is
//! the API's wire format: field names and shapes here are a contract with scripts, the
//! Python bindings and the published OpenAPI document.
//!
//! ```no_run
//! # async fn demo() -> Result<(), secumon_api::ClientError> {
//! use secumon_api::{Client, ErrorCode, OverviewQuery};
//! let api = Client::builder("http://127.0.0.1:8080").token("smk_…").build()?;
//! match api.overview(&OverviewQuery::default()).await {
//!     Ok(overview) => println!("{} hosts", overview.total),
//!     Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => eprintln!("log in first"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod accounts;
pub mod agent_config;
pub mod agents;
pub mod alerts;
pub mod audit;
#[cfg(feature = "client")]
pub mod client;
pub mod config;
pub mod dashboards;
pub mod data;
pub mod error;
pub mod hosts;
pub mod ingest;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod overview;
pub mod page;
pub mod reports;
pub mod rules;
pub mod secuops;
pub mod stream;

pub use accounts::{
    ApiKeyList, ApiKeyView, ConfirmRequest, CreatedApiKey, EnrollRequest, Identity, LoginAnswer, LoginRequest,
    MfaEnrolment, MfaVerifyRequest, NewApiKey, NewTenant, NewUser, PasswordChange, RecoveryCodes, RefreshRequest, Role,
    Session, SsoExchangeRequest, SsoStart, SsoStartRequest, UnknownRole, UserChange, UserList, UserView,
};
pub use agent_config::{AgentConfigLayer, AgentConfigLayers, AgentConfigReport, AgentConfigState};
pub use agents::{AgentClock, AgentList, AgentView, ProvisionRequest, Provisioned};
pub use alerts::{
    AcknowledgeRequest, Acknowledged, Acknowledgement, Alert, AlertFilter, AlertHistory, AlertList, AlertSeverity,
    AlertState, AlertStats, HistoryFilter, Resolved, Silence, SilenceList, SilenceRequest,
};
pub use audit::{AuditList, AuditQuery, AuditView};
#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder, Error as ClientError, TENANT_HEADER};
pub use config::{ReportSchedule, RetentionSettings, TenantConfig};
pub use dashboards::{Dashboard, DashboardList, DashboardRequest, DashboardSummary};
pub use data::{CheckList, FindingList, FindingsQuery, ImportQuery, ImportResult, LatestCheck};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, Refusal};
pub use hosts::{HostSummary, HostSummaryQuery, LatestValue, NetworkQuery, NetworkTarget};
pub use ingest::{IngestEvent, IngestRequest, IngestSample, Ingested};
pub use limits::{TenantLimitSettings, TenantLimitsView};
pub use logs::{LogLine, LogsPage, LogsQuery};
pub use metrics::{Aggregation, History, HistoryQuery, HistorySeries};
pub use overview::{Overview, OverviewGroup, OverviewHost, OverviewQuery};
pub use page::{Page, PageQuery, TenantList};
pub use reports::{
    AlertSummary, CheckAvailability, ExpiringCertificate, FindingCount, HostAvailability, HostUsage, Report,
    ReportQuery, SeverityAlerts, TopHosts,
};
pub use rules::{
    EscalationLevel, Integration, IntegrationKind, IntegrationList, RuleId, RuleList, RuleOrigin, RuleSpec, RuleTest,
    RuleTestAlert, RuleView, SourceKind,
};
pub use secumon_core::{CheckResult, CheckStatus, Finding, FindingStatus, Labels, Severity};
/// The core types answers carry as they are (findings, check results, label sets).
pub use secuops::{
    SECUOPS_MAX_BODY_BYTES, SECUOPS_MAX_ITEMS, SecuOpsEvent, SecuOpsIngested, SecuOpsMetric, SecuOpsRequest,
    SecuOpsTime,
};
pub use stream::{AlertTransition, ClientMessage, LogFollow, StreamMessage, StreamSample, Subscription};
