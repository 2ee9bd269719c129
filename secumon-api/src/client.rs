//! The typed async client of `/api/v1`: one method per endpoint, the request and answer
//! types of this crate, and refusals read into [`Refusal`]s with their [`ErrorCode`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), secumon_api::ClientError> {
//! let api = secumon_api::Client::builder("http://127.0.0.1:8080").token("smk_…").build()?;
//! for alert in api.alerts(&Default::default()).await?.alerts {
//!     println!("{} {}", alert.rule, alert.state.as_str());
//! }
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use http::{HeaderValue, Method};
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::accounts::{
    ApiKeyList, ConfirmRequest, CreatedApiKey, EnrollRequest, Identity, LoginAnswer, LoginRequest, MfaEnrolment,
    MfaVerifyRequest, NewApiKey, NewTenant, NewUser, PasswordChange, RecoveryCodes, RefreshRequest, Session,
    SsoExchangeRequest, SsoStart, SsoStartRequest, UserChange, UserList, UserView,
};
use crate::agent_config::{AgentConfigLayer, AgentConfigLayers, AgentConfigState};
use crate::agents::{AgentList, AgentView, ProvisionRequest, Provisioned};
use crate::alerts::{
    AcknowledgeRequest, Acknowledged, AlertFilter, AlertHistory, AlertList, AlertStats, HistoryFilter, Resolved,
    Silence, SilenceList, SilenceRequest,
};
use crate::audit::{AuditList, AuditQuery};
use crate::config::TenantConfig;
use crate::dashboards::{Dashboard, DashboardList, DashboardRequest};
use crate::data::{CheckList, FindingList, FindingsQuery, ImportQuery, ImportResult};
use crate::error::{ErrorCode, Refusal};
use crate::hosts::{HostSummary, HostSummaryQuery, NetworkQuery, NetworkTarget};
use crate::ingest::{IngestRequest, Ingested};
use crate::limits::{TenantLimitSettings, TenantLimitsView};
use crate::logs::{LogsPage, LogsQuery};
use crate::metrics::{History, HistoryQuery};
use crate::overview::{Overview, OverviewQuery};
use crate::page::{PageQuery, TenantList};
use crate::reports::{Report, ReportQuery};
use crate::rules::{IntegrationList, RuleId, RuleList, RuleSpec, RuleTest, RuleView};

/// The header a super-admin names the tenant to act in with.
pub const TENANT_HEADER: &str = "x-secumon-tenant";

/// Why a call did not give its answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address, token or tenant cannot be used (not a URL, not a header value).
    #[error("{0}")]
    Setting(String),
    /// No answer: the server is down, unreachable, or did not answer in time.
    #[error("cannot reach {server}: {source}")]
    Unreachable {
        /// The server's address, as given.
        server: String,
        /// What failed underneath.
        #[source]
        source: reqwest::Error,
    },
    /// The server refused the request; the refusal says why.
    #[error("{0}")]
    Refused(Refusal),
    /// The server answered success with something this client does not read.
    #[error("unexpected answer from {server}: {reason}")]
    Decode {
        /// The server's address, as given.
        server: String,
        /// What could not be read.
        reason: String,
    },
}

impl Error {
    /// The refusal's code, when the server refused with a code this build knows.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused(refusal) => refusal.code,
            _ => None,
        }
    }

    /// The refusal's HTTP status, when the server refused.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Error::Refused(refusal) => Some(refusal.status),
            _ => None,
        }
    }
}

/// Sets up a [`Client`]: the server's address, then a token, a tenant and timeouts.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    server: String,
    token: Option<String>,
    tenant: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl ClientBuilder {
    /// The bearer token every request carries: an access token or an API key.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Like [`token`](Self::token), for a token that may be absent (an open server).
    pub fn token_opt(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The tenant a super-admin acts in (`X-Secumon-Tenant`); without it, the caller's own.
    pub fn tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// How long a whole request may take (30 s unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long connecting may take (10 s unless set).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The client, with its settings checked once.
    pub fn build(self) -> Result<Client, Error> {
        let trimmed = self.server.trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/api/v1"))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base())
            .ok_or_else(|| Error::Setting(format!("{:?} is not a server address (http://host:port)", self.server)))?;
        let authorization = self
            .token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .map_err(|_| Error::Setting("the token holds characters a header cannot carry".into()))?
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| Error::Setting(format!("cannot set up HTTP: {e}")))?;
        Client { http, base, server: trimmed.to_string(), authorization, tenant: None }.with_tenant(self.tenant)
    }
}

/// A client of one server's `/api/v1`, as one caller (token) in one tenant. Cheap to
/// clone: clones share their connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `…/api/v1`; endpoints are path segments under it.
    base: Url,
    /// The address as given, for messages.
    server: String,
    authorization: Option<HeaderValue>,
    tenant: Option<HeaderValue>,
}

impl Client {
    /// Starts setting up a client of the server at `server` (`http://host:port`).
    pub fn builder(server: &str) -> ClientBuilder {
        ClientBuilder {
            server: server.to_string(),
            token: None,
            tenant: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The same client acting in `tenant` (`None`: the caller's own tenant).
    pub fn with_tenant(&self, tenant: Option<String>) -> Result<Client, Error> {
        let tenant = tenant
            .map(|t| HeaderValue::from_str(&t).map_err(|_| Error::Setting(format!("{t:?} is not a tenant name"))))
            .transpose()?;
        Ok(Client { tenant, ..self.clone() })
    }

    /// The server's address, as given.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// `…/api/v1` followed by `segments`, each escaped (a host name may hold anything).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request to `segments` carrying the token and the tenant.
    fn request(&self, method: Method, segments: &[&str]) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, self.url(segments));
        if let Some(authorization) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, authorization.clone());
        }
        if let Some(tenant) = &self.tenant {
            request = request.header(TENANT_HEADER, tenant.clone());
        }
        request
    }

    /// Sends `request` and reads the answer into `T`, or the refusal.
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, Error> {
        let unreachable = |source| Error::Unreachable { server: self.server.clone(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        // Read whole, then parsed straight into `T`: no JSON tree in between (an overview
        // of 10 000 hosts is megabytes).
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(Error::Refused(Refusal::from_body(status, &body)));
        }
        serde_json::from_slice(&body).map_err(|e| Error::Decode { server: self.server.clone(), reason: e.to_string() })
    }

    /// Sends `request`, whose success answers nothing (`204 No Content`).
    async fn send_empty(&self, request: reqwest::RequestBuilder) -> Result<(), Error> {
        let unreachable = |source| Error::Unreachable { server: self.server.clone(), source };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() { Ok(()) } else { Err(Error::Refused(Refusal::from_body(status, &body))) }
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str], query: &impl Serialize) -> Result<T, Error> {
        self.send(self.request(Method::GET, segments).query(query)).await
    }

    /// A GET without a query string.
    async fn get_plain<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, Error> {
        self.send(self.request(Method::GET, segments)).await
    }

    async fn post<T: DeserializeOwned>(&self, segments: &[&str], body: &impl Serialize) -> Result<T, Error> {
        self.send(self.request(Method::POST, segments).json(body)).await
    }

    /// `POST /auth/login`: a session, or the token to finish the login with a second factor.
    pub async fn login(&self, request: &LoginRequest) -> Result<LoginAnswer, Error> {
        self.post(&["auth", "login"], request).await
    }

    /// `POST /auth/mfa/verify`: finishes a login with a TOTP or recovery code.
    pub async fn verify_mfa(&self, request: &MfaVerifyRequest) -> Result<Session, Error> {
        self.post(&["auth", "mfa", "verify"], request).await
    }

    /// `POST /auth/refresh`: a new session for a refresh token.
    pub async fn refresh(&self, request: &RefreshRequest) -> Result<Session, Error> {
        self.post(&["auth", "refresh"], request).await
    }

    /// `POST /auth/logout`: revokes a refresh token.
    pub async fn logout(&self, request: &RefreshRequest) -> Result<(), Error> {
        self.send_empty(self.request(Method::POST, &["auth", "logout"]).json(request)).await
    }

    /// `GET /auth/me`: who the token is, in which tenant, with which role.
    pub async fn me(&self) -> Result<Identity, Error> {
        self.get_plain(&["auth", "me"]).await
    }

    /// `POST /auth/mfa/enroll`: starts adding a second factor to the caller.
    pub async fn enroll_mfa(&self, request: &EnrollRequest) -> Result<MfaEnrolment, Error> {
        self.post(&["auth", "mfa", "enroll"], request).await
    }

    /// `POST /auth/mfa/confirm`: turns the second factor on; the recovery codes.
    pub async fn confirm_mfa(&self, request: &ConfirmRequest) -> Result<RecoveryCodes, Error> {
        self.post(&["auth", "mfa", "confirm"], request).await
    }

    /// `POST /auth/password`: changes the caller's password; every session ends.
    pub async fn change_password(&self, request: &PasswordChange) -> Result<(), Error> {
        self.send_empty(self.request(Method::POST, &["auth", "password"]).json(request)).await
    }

    /// `POST /auth/oidc/start`: starts a single sign-on; the URL to open.
    pub async fn sso_start(&self, request: &SsoStartRequest) -> Result<SsoStart, Error> {
        self.post(&["auth", "oidc", "start"], request).await
    }

    /// `POST /auth/oidc/exchange`: the session for the code a sign-on brought back.
    pub async fn sso_exchange(&self, request: &SsoExchangeRequest) -> Result<Session, Error> {
        self.post(&["auth", "oidc", "exchange"], request).await
    }

    /// `GET /users`: the tenant's users.
    pub async fn users(&self, page: &PageQuery) -> Result<UserList, Error> {
        self.get(&["users"], page).await
    }

    /// `POST /users`: adds a user to the tenant.
    pub async fn add_user(&self, user: &NewUser) -> Result<UserView, Error> {
        self.post(&["users"], user).await
    }

    /// `GET /users/{name}`: one user.
    pub async fn user(&self, name: &str) -> Result<UserView, Error> {
        self.get_plain(&["users", name]).await
    }

    /// `PUT /users/{name}`: changes a user's role, state, password or address.
    pub async fn change_user(&self, name: &str, change: &UserChange) -> Result<UserView, Error> {
        self.send(self.request(Method::PUT, &["users", name]).json(change)).await
    }

    /// `DELETE /users/{name}`: removes a user from the tenant.
    pub async fn delete_user(&self, name: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::DELETE, &["users", name])).await
    }

    /// `POST /users/{name}/revoke-sessions`: ends every session of a user.
    pub async fn revoke_sessions(&self, name: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::POST, &["users", name, "revoke-sessions"])).await
    }

    /// `POST /users/{name}/reset-mfa`: removes a user's second factor.
    pub async fn reset_mfa(&self, name: &str) -> Result<UserView, Error> {
        self.send(self.request(Method::POST, &["users", name, "reset-mfa"])).await
    }

    /// `GET /api-keys`: the tenant's API keys, never their secrets.
    pub async fn api_keys(&self, page: &PageQuery) -> Result<ApiKeyList, Error> {
        self.get(&["api-keys"], page).await
    }

    /// `POST /api-keys`: a new API key, with its secret shown only now.
    pub async fn create_api_key(&self, key: &NewApiKey) -> Result<CreatedApiKey, Error> {
        self.post(&["api-keys"], key).await
    }

    /// `DELETE /api-keys/{id}`: revokes an API key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::DELETE, &["api-keys", id])).await
    }

    /// `POST /tenants`: creates a tenant (super-admins only).
    pub async fn create_tenant(&self, tenant: &NewTenant) -> Result<(), Error> {
        self.send_empty(self.request(Method::POST, &["tenants"]).json(tenant)).await
    }

    /// `GET /overview`: one page of the fleet.
    pub async fn overview(&self, query: &OverviewQuery) -> Result<Overview, Error> {
        self.get(&["overview"], query).await
    }

    /// `GET /tenants`: the tenants (super-admins only).
    pub async fn tenants(&self, page: &PageQuery) -> Result<TenantList, Error> {
        self.get(&["tenants"], page).await
    }

    /// `GET /alerts`: alerts pending, firing or stale now.
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<AlertList, Error> {
        self.get(&["alerts"], filter).await
    }

    /// `GET /alerts/stats`: counts of the alerts now.
    pub async fn alert_stats(&self) -> Result<AlertStats, Error> {
        self.get_plain(&["alerts", "stats"]).await
    }

    /// `GET /alerts/history`: history entries, newest first.
    pub async fn alert_history(&self, filter: &HistoryFilter) -> Result<AlertHistory, Error> {
        self.get(&["alerts", "history"], filter).await
    }

    /// `POST /alerts/{id}/acknowledge`: stops a firing alert's escalation.
    pub async fn acknowledge(&self, id: &str, request: &AcknowledgeRequest) -> Result<Acknowledged, Error> {
        self.post(&["alerts", id, "acknowledge"], request).await
    }

    /// `POST /alerts/{id}/resolve`: ends a firing or stale alert by hand.
    pub async fn resolve(&self, id: &str) -> Result<Resolved, Error> {
        self.send(self.request(Method::POST, &["alerts", id, "resolve"])).await
    }

    /// `GET /silences`: the silences in force.
    pub async fn silences(&self) -> Result<SilenceList, Error> {
        self.get_plain(&["silences"]).await
    }

    /// `POST /silences`: silences alerts whose labels match, for a while.
    pub async fn add_silence(&self, request: &SilenceRequest) -> Result<Silence, Error> {
        self.post(&["silences"], request).await
    }

    /// `DELETE /silences/{id}`: ends a silence now; the silence as it ends.
    pub async fn expire_silence(&self, id: &str) -> Result<Silence, Error> {
        self.send(self.request(Method::DELETE, &["silences", id])).await
    }

    /// `GET /alert-rules`: every rule, those of the rules file first.
    pub async fn rules(&self) -> Result<RuleList, Error> {
        self.get_plain(&["alert-rules"]).await
    }

    /// `GET /alert-rules/{id}`: one rule.
    pub async fn rule(&self, id: &str) -> Result<RuleView, Error> {
        self.get_plain(&["alert-rules", id]).await
    }

    /// `POST /alert-rules`: adds a rule (`rule`: its definition, as in the rules file).
    pub async fn create_rule(&self, rule: &RuleSpec) -> Result<RuleId, Error> {
        self.post(&["alert-rules"], rule).await
    }

    /// `PUT /alert-rules/{id}`: replaces a rule made through the API.
    pub async fn update_rule(&self, id: &str, rule: &RuleSpec) -> Result<RuleId, Error> {
        self.send(self.request(Method::PUT, &["alert-rules", id]).json(rule)).await
    }

    /// `DELETE /alert-rules/{id}`: deletes a rule made through the API.
    pub async fn delete_rule(&self, id: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::DELETE, &["alert-rules", id])).await
    }

    /// `GET /alert-rules/{id}/test`: what the rule would fire on now.
    pub async fn test_rule(&self, id: &str) -> Result<RuleTest, Error> {
        self.get_plain(&["alert-rules", id, "test"]).await
    }

    /// `GET /integrations`: report imports and notification channels.
    pub async fn integrations(&self) -> Result<IntegrationList, Error> {
        self.get_plain(&["integrations"]).await
    }

    /// `GET /alert-rules/{id}/history`: one rule's history entries, newest first.
    pub async fn rule_history(&self, rule: &str, filter: &HistoryFilter) -> Result<AlertHistory, Error> {
        self.get(&["alert-rules", rule, "history"], filter).await
    }

    /// `GET /checks`: the latest result of every probe check.
    pub async fn checks(&self) -> Result<CheckList, Error> {
        self.get_plain(&["checks"]).await
    }

    /// `GET /findings`: scanner findings.
    pub async fn findings(&self, query: &FindingsQuery) -> Result<FindingList, Error> {
        self.get(&["findings"], query).await
    }

    /// `POST /findings`: imports a scanner report (SARIF, Trivy, Nuclei, SecuMon), given
    /// whole as the body.
    pub async fn import_findings(&self, query: &ImportQuery, report: Vec<u8>) -> Result<ImportResult, Error> {
        self.send(self.request(Method::POST, &["findings"]).query(query).body(report)).await
    }

    /// `POST /ingest`: stores a script's samples and events as one batch.
    pub async fn ingest(&self, request: &IngestRequest) -> Result<Ingested, Error> {
        self.post(&["ingest"], request).await
    }

    /// `GET /metrics/hosts/{id}/history`: a host's metric over a period.
    pub async fn host_history(&self, host: &str, query: &HistoryQuery) -> Result<History, Error> {
        self.get(&["metrics", "hosts", host, "history"], query).await
    }

    /// `GET /metrics/hosts/{id}`: a host's agents and the latest value of each series of
    /// the asked metrics.
    pub async fn host_summary(&self, host: &str, query: &HostSummaryQuery) -> Result<HostSummary, Error> {
        self.get(&["metrics", "hosts", host], query).await
    }

    /// `GET /metrics/network/{target}`: a probe target's checks and their latency history.
    pub async fn network_target(&self, target: &str, query: &NetworkQuery) -> Result<NetworkTarget, Error> {
        self.get(&["metrics", "network", target], query).await
    }

    /// `GET /agents`: the tenant's agents and scripts, with their clocks.
    pub async fn agents(&self, page: &PageQuery) -> Result<AgentList, Error> {
        self.get(&["agents"], page).await
    }

    /// `GET /agents/{id}`: one agent.
    pub async fn agent(&self, id: &str) -> Result<AgentView, Error> {
        self.get_plain(&["agents", id]).await
    }

    /// `DELETE /agents/{id}`: revokes an agent and forgets it.
    pub async fn delete_agent(&self, id: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::DELETE, &["agents", id])).await
    }

    /// `POST /agents/provision`: a one-time token that enrolls one agent.
    pub async fn provision(&self, request: &ProvisionRequest) -> Result<Provisioned, Error> {
        self.post(&["agents", "provision"], request).await
    }

    /// `GET /agent-config`: the tenant's managed agent configuration, layer by layer.
    pub async fn agent_config_layers(&self) -> Result<AgentConfigLayers, Error> {
        self.get_plain(&["agent-config"]).await
    }

    /// `PUT /agent-config/{selector}`: sets the layer of `selector` (`default` or
    /// `label=value,…`) to `document`; the layer as stored.
    pub async fn put_agent_config(
        &self,
        selector: &str,
        document: &serde_json::Value,
    ) -> Result<AgentConfigLayer, Error> {
        self.send(self.request(Method::PUT, &["agent-config", selector]).json(document)).await
    }

    /// `DELETE /agent-config/{selector}`: removes a layer; the layer as it was.
    pub async fn delete_agent_config(&self, selector: &str) -> Result<AgentConfigLayer, Error> {
        self.send(self.request(Method::DELETE, &["agent-config", selector])).await
    }

    /// `GET /agents/{id}/config`: what one agent should run, and what it runs.
    pub async fn agent_config(&self, agent_id: &str) -> Result<AgentConfigState, Error> {
        self.get_plain(&["agents", agent_id, "config"]).await
    }

    /// `GET /audit`: a page of the audit log, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditList, Error> {
        self.get(&["audit"], query).await
    }

    /// `GET /tenants/{name}/limits`: a tenant's own ingest limits and those in force
    /// (super-admins only).
    pub async fn tenant_limits(&self, tenant: &str) -> Result<TenantLimitsView, Error> {
        self.get_plain(&["tenants", tenant, "limits"]).await
    }

    /// `PUT /tenants/{name}/limits`: sets a tenant's own ingest limits, at once.
    pub async fn set_tenant_limits(
        &self,
        tenant: &str,
        settings: &TenantLimitSettings,
    ) -> Result<TenantLimitsView, Error> {
        self.send(self.request(Method::PUT, &["tenants", tenant, "limits"]).json(settings)).await
    }

    /// `GET /reports`: the tenant's report over a period (a super-admin names another
    /// tenant through [`ClientBuilder::tenant`]).
    pub async fn report(&self, query: &ReportQuery) -> Result<Report, Error> {
        self.get(&["reports"], query).await
    }

    /// `GET /config`: the tenant's settings, with the retention of its samples in force.
    pub async fn tenant_config(&self) -> Result<TenantConfig, Error> {
        self.get_plain(&["config"]).await
    }

    /// `PUT /config`: replaces the tenant's settings (and the retention of its samples, if
    /// `config` has one; else that stays as it is); the settings as stored. Needs the admin
    /// role; a super-admin sets another tenant's through [`ClientBuilder::tenant`].
    pub async fn set_tenant_config(&self, config: &TenantConfig) -> Result<TenantConfig, Error> {
        self.send(self.request(Method::PUT, &["config"]).json(config)).await
    }

    /// `GET /dashboards`: the tenant's dashboards, without their layouts.
    pub async fn dashboards(&self, page: &PageQuery) -> Result<DashboardList, Error> {
        self.get(&["dashboards"], page).await
    }

    /// `POST /dashboards`: saves a new dashboard.
    pub async fn create_dashboard(&self, request: &DashboardRequest) -> Result<Dashboard, Error> {
        self.post(&["dashboards"], request).await
    }

    /// `GET /dashboards/{id}`: one dashboard with its layout.
    pub async fn dashboard(&self, id: &str) -> Result<Dashboard, Error> {
        self.get_plain(&["dashboards", id]).await
    }

    /// `PUT /dashboards/{id}`: replaces a dashboard's name and layout.
    pub async fn update_dashboard(&self, id: &str, request: &DashboardRequest) -> Result<Dashboard, Error> {
        self.send(self.request(Method::PUT, &["dashboards", id]).json(request)).await
    }

    /// `DELETE /dashboards/{id}`: deletes a dashboard.
    pub async fn delete_dashboard(&self, id: &str) -> Result<(), Error> {
        self.send_empty(self.request(Method::DELETE, &["dashboards", id])).await
    }

    /// `GET /logs/hosts/{id}`: a page of a host's log lines.
    pub async fn host_logs(&self, host: &str, query: &LogsQuery) -> Result<LogsPage, Error> {
        self.get(&["logs", "hosts", host], query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_under_the_api_prefix() {
        let client = Client::builder("http://127.0.0.1:8080/").build().unwrap();
        assert_eq!(
            client.url(&["logs", "hosts", "web 1/a"]).as_str(),
            "http://127.0.0.1:8080/api/v1/logs/hosts/web%201%2Fa"
        );
        let prefixed = Client::builder("https://example.net/secumon").build().unwrap();
        assert_eq!(prefixed.url(&["alerts"]).as_str(), "https://example.net/secumon/api/v1/alerts");
    }

    #[test]
    fn unusable_settings_are_refused_when_built() {
        assert!(matches!(Client::builder("127.0.0.1:8080").build(), Err(Error::Setting(_))));
        assert!(matches!(Client::builder("http://h").token("a\nb").build(), Err(Error::Setting(_))));
        let client = Client::builder("http://h").build().unwrap();
        assert!(matches!(client.with_tenant(Some("a\r\n".into())), Err(Error::Setting(_))));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_that_names_it() {
        // A port nothing listens on: bound, then let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Client::builder(&format!("http://127.0.0.1:{port}")).build().unwrap();
        let error = client.silences().await.unwrap_err();
        assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
        assert!(error.to_string().contains(&port.to_string()), "{error}");
    }
}
