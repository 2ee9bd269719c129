//! The SecuMon server: agents push batches over gRPC into the store, operators read them
//! back through the REST API. [`Server::start`] binds both listeners and returns a handle
//! that reports their addresses and shuts everything down cleanly.
//!
//! ```no_run
//! # async fn demo() -> Result<(), secumon_server::ServerError> {
//! use secumon_server::{Server, ServerConfig};
//! let server = Server::start(ServerConfig::embedded("./secumon-data")).await?;
//! println!("API on http://{}", server.api_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod agent_config;
mod alert_calls;
pub mod alert_lease;
mod alerting;
mod api;
mod audit;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod cluster_feed;
pub mod data_lock;
mod fd_limit;
mod gateway;
mod ingest;
mod ingest_worker;
pub mod live;
mod metrics;
pub mod remote_write;
pub mod report;
pub mod report_schedule;
pub mod roles;
pub mod scan_trigger;
mod self_monitor;
pub mod self_series;
pub mod shared_limits;
mod tenant_limits;
mod tenants;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use secumon_alert::RuleFile;
use secumon_store::{DEFAULT_TENANT, PgStore, SqliteStore, Store, StoreError, StoreOptions};
use secumon_transport::{AgentGate, BatchSink, EnrollmentService, IngestService, TlsMaterial};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

pub use alerting::{Alerting, RuleError, RuleOrigin, RuleTest, RuleTestAlert, RuleView};
pub use api::{
    AgentList, AgentView, FindingList, History, HistorySeries, ImportResult, MAX_REPORT_BYTES, Overview, OverviewGroup,
    OverviewHost, Provisioned, RateLimit,
};
use clock::ClockBook;
pub use clock::{AgentClock, ClockPolicy};
pub use fd_limit::raise_open_files_limit;
use ingest::StoreSink;
pub use roles::{Role, Roles, RolesError};
pub use tenant_limits::TenantLimits;
use tenants::AlertingByTenant;

use auth::{Accounts, AgentAuthority, SecretBox};
use live::LiveFeed;

/// The start of every key the server keeps in Redis.
const SHARED_LIMITS_PREFIX: &str = "secumon";

/// Where the server listens and keeps its data.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// gRPC ingest listener; port 0 picks a free one.
    pub grpc_addr: SocketAddr,
    /// REST API listener; port 0 picks a free one.
    pub api_addr: SocketAddr,
    /// The embedded store's database file.
    pub database: PathBuf,
    /// PostgreSQL instead of the embedded store (`postgres://user@host/db`).
    pub postgres_url: Option<String>,
    /// Transport security of the gRPC ingest.
    pub grpc_tls: GrpcTls,
    /// Alert rules and notification channels.
    pub alerting: Option<RuleFile>,
    /// The key that seals secrets at rest; `None` reads (or creates) `secret.key` beside
    /// the database.
    pub secret_key: Option<SecretBox>,
    /// Serve the API without tokens, every request acting as the super-admin of the default
    /// tenant. For tests only; refused unless the API listens on loopback.
    pub open_access: bool,
    /// Request budgets per tenant and endpoint, and login attempts per client address.
    pub rate_limit: RateLimit,
    /// When a sender's batches are re-stamped because its clock is off.
    pub clock: ClockPolicy,
    /// Single sign-on for `secumon login --sso` through an OpenID provider.
    pub oidc: Option<auth::OidcConfig>,
    /// Series and samples a second each tenant may push.
    pub limits: TenantLimits,
    /// How often the server stores its own health as series of the host `secumon-server`
    /// ([`self_series`]); `None` stores none (tests' servers).
    pub self_series_interval: Option<std::time::Duration>,
    /// Longest time a sample stays in the embedded store's in-memory head before compaction
    /// writes it into chunks (default 10 min; shorter means less to replay after a restart
    /// but more, smaller chunks to merge). Not used with PostgreSQL.
    pub head_max_age: std::time::Duration,
    /// The parts of the server this process runs ([`Roles::all`]: every part, one process).
    pub roles: Roles,
    /// NATS JetStream (`nats://HOST:4222`): gateways publish agents' batches there and ingest
    /// workers store them from there; live events and revocations fan out to the other server
    /// processes over it. Required unless `roles` is all; with all roles and no NATS, batches
    /// go straight to the store and nothing is shared.
    pub nats_url: Option<String>,
    /// Redis (`redis://host:6379`) where the API's rate limits, login attempts and user
    /// update locks are shared between API processes. `None`: kept in this process.
    pub redis_url: Option<String>,
    /// With `nats_url`: this process evaluates a tenant's alert rules only while it holds
    /// the tenant's lease ([`alert_lease`]), so several alert processes never notify twice.
    /// `None`: it evaluates every tenant.
    pub alert_lease: Option<alert_lease::LeaseOptions>,
    /// Scanners started on a schedule, their reports imported as findings
    /// ([`scan_trigger`]); run by alert processes.
    pub scans: Vec<scan_trigger::ScanTrigger>,
}

impl ServerConfig {
    /// Both listeners on free loopback ports, no TLS: for tests and local tools.
    pub fn loopback(database: impl Into<PathBuf>) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_addr: any_port,
            api_addr: any_port,
            database: database.into(),
            postgres_url: None,
            grpc_tls: GrpcTls::Off,
            alerting: None,
            secret_key: None,
            open_access: true,
            rate_limit: RateLimit::default(),
            clock: ClockPolicy::default(),
            oidc: None,
            limits: TenantLimits::default(),
            self_series_interval: None,
            head_max_age: StoreOptions::default().head_max_age,
            roles: Roles::all(),
            nats_url: None,
            redis_url: None,
            alert_lease: None,
            scans: Vec::new(),
        }
    }

    /// Default ports on loopback, the database in `data_dir`.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: data_dir.into().join("secumon.db"),
            postgres_url: None,
            grpc_tls: GrpcTls::Off,
            alerting: None,
            secret_key: None,
            open_access: false,
            rate_limit: RateLimit::default(),
            clock: ClockPolicy::default(),
            oidc: None,
            limits: TenantLimits::default(),
            self_series_interval: Some(self_series::DEFAULT_INTERVAL),
            head_max_age: StoreOptions::default().head_max_age,
            roles: Roles::all(),
            nats_url: None,
            redis_url: None,
            alert_lease: None,
            scans: Vec::new(),
        }
    }
}

/// How agents connect to the gRPC ingest.
#[derive(Debug, Clone)]
pub enum GrpcTls {
    /// Plaintext, every agent pushing for the default tenant: loopback only (`secumon up`).
    Off,
    /// Mutual TLS under the installation's own agent CA: agents enroll with a provisioning
    /// token (`POST /api/v1/agents/provision`), then push with their certificate and a
    /// session token, for their tenant. The listener's certificate is valid for `names`
    /// (empty: localhost, the loopback addresses, this host's name and the listen address).
    Managed {
        /// Extra names the listener's certificate is valid for.
        names: Vec<String>,
    },
    /// Mutual TLS with certificates from an outside CA; every agent it signed pushes for the
    /// default tenant.
    Files(TlsMaterial),
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    /// A listener could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The store failed to open or to answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert rules could not be loaded or the engine not started.
    #[error("alerting: {0}")]
    Alerting(String),
    /// The gRPC TLS material is unusable.
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] tonic::transport::Error),
    /// The accounts (tenants, users, keys) could not be set up.
    #[error("accounts: {0}")]
    Auth(#[from] auth::AuthError),
    /// The single sign-on configuration is unusable.
    #[error("{0}")]
    Sso(#[from] auth::SsoError),
    /// Open access (no tokens) asked for on an API address that is not loopback.
    #[error("open access (no tokens) is only allowed on a loopback API address, not {0}")]
    OpenAccessNotLoopback(SocketAddr),
    /// Plaintext gRPC asked for on an address that is not loopback.
    #[error("plaintext gRPC is only allowed on a loopback address, not {0}: use mutual TLS")]
    PlaintextNotLoopback(SocketAddr),
    /// The data directory is locked by a rotation, or its lock file cannot be taken.
    #[error(transparent)]
    DataDir(#[from] data_lock::LockError),
    /// The roles asked for cannot run with this configuration (no NATS, no PostgreSQL).
    #[error(transparent)]
    Roles(#[from] RolesError),
    /// NATS JetStream is unreachable or its streams unusable.
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    /// The live feed could not be bridged over NATS.
    #[error("cannot bridge the live feed over NATS at {url}: {message}")]
    Nats {
        /// The URL given.
        url: String,
        /// What the client said.
        message: String,
    },
    /// The alert leases could not be set up.
    #[error(transparent)]
    Lease(#[from] alert_lease::LeaseError),
    /// Redis, for the shared limits, could not be reached at start.
    #[error(transparent)]
    SharedLimits(#[from] shared_limits::SharedLimitsError),
}

/// A running server. Dropping it without [`Server::shutdown`] leaves the tasks running.
pub struct Server {
    grpc_addr: SocketAddr,
    api_addr: SocketAddr,
    store: Arc<dyn Store>,
    alerting: Arc<AlertingByTenant>,
    accounts: Arc<Accounts>,
    agents: Option<Arc<AgentAuthority>>,
    live: LiveFeed,
    clocks: Arc<ClockBook>,
    bus: Option<bus::Bus>,
    /// The tenants' alert leases, released on shutdown.
    leases: Option<alert_lease::AlertLeases>,
    /// The live feed and revocations bridged to the other server processes.
    _cluster: Option<cluster_feed::ClusterFeed>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Held while serving, so a secret-key or CA rotation refuses to run beside this server.
    _data_dir: data_lock::DataDirLock,
    reports: Arc<report_schedule::ReportScheduler>,
}

impl Server {
    /// Opens the store, binds both listeners and starts serving.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let roles = config.roles;
        roles.check_deployment(config.nats_url.as_deref(), config.postgres_url.as_deref())?;
        if config.open_access && !config.api_addr.ip().is_loopback() {
            return Err(ServerError::OpenAccessNotLoopback(config.api_addr));
        }
        if roles.has(Role::Gateway) && matches!(config.grpc_tls, GrpcTls::Off) && !config.grpc_addr.ip().is_loopback() {
            return Err(ServerError::PlaintextNotLoopback(config.grpc_addr));
        }
        // First, so an unreachable NATS is said before anything else is opened.
        let bus = match &config.nats_url {
            Some(url) => Some(bus::Bus::connect(url, bus::BusNames::default()).await?),
            None => None,
        };
        let data_dir = config.database.parent().filter(|dir| !dir.as_os_str().is_empty());
        let data_dir_lock = data_lock::DataDirLock::shared(data_dir.unwrap_or(std::path::Path::new(".")))?;
        let options = StoreOptions {
            max_series_per_tenant: config.limits.max_series,
            head_max_age: config.head_max_age,
            ..StoreOptions::default()
        };
        let store: Arc<dyn Store> = match &config.postgres_url {
            Some(url) => PgStore::connect_url_with(url, options).await?,
            None => Arc::new(SqliteStore::open_with(&config.database, options).await?),
        };
        let guard = Arc::new(tenant_limits::IngestGuard::new(config.limits));
        guard.load(&*store).await?;
        // A process that is no gateway takes no pushes: it has no gRPC listener.
        let grpc_listener = match roles.has(Role::Gateway) {
            true => Some(bind(config.grpc_addr).await?),
            false => None,
        };
        let api_listener = bind(config.api_addr).await?;
        let grpc_addr = match &grpc_listener {
            Some(listener) => local_addr(listener, config.grpc_addr)?,
            None => config.grpc_addr,
        };
        let api_addr = local_addr(&api_listener, config.api_addr)?;
        let (stop, stopped) = watch::channel(false);

        let secrets = match &config.secret_key {
            Some(key) => key.clone(),
            None => SecretBox::load_or_create(&config.database.with_file_name("secret.key"))?,
        };
        let accounts = match Accounts::open(store.clone(), secrets).await {
            // A rotation cut short after re-sealing the store leaves the new key beside.
            Err(auth::AuthError::SecretKey(message))
                if config.secret_key.is_none()
                    && auth::rekey::KeyFiles::new(&config.database.with_file_name("secret.key")).next.exists() =>
            {
                Err(auth::AuthError::SecretKey(format!(
                    "{message}; a secret-key rotation was interrupted (secret.key.new exists): run `secumon \
                     secret-key rotate` again to finish it"
                )))
            }
            opened => opened,
        };
        let shared_limits = match &config.redis_url {
            Some(url) => Some(shared_limits::SharedLimits::connect(url, SHARED_LIMITS_PREFIX).await?),
            None => None,
        };
        let mut accounts = accounts?;
        if let Some(shared) = &shared_limits {
            accounts = accounts.with_shared_limits(shared.clone());
        }
        let accounts = Arc::new(accounts);
        let sso = match config.oidc.clone() {
            Some(oidc) => Some(Arc::new(auth::Sso::new(oidc, store.clone(), accounts.secrets())?)),
            None => None,
        };
        let audit = Arc::new(audit::AuditLog::new(store.clone()));
        let live = LiveFeed::default();
        let rules = open_channel_credentials(config.alerting.clone().unwrap_or_default(), accounts.secrets())?;
        let scans = open_scan_credentials(config.scans.clone(), accounts.secrets())?;
        let rules = self_monitor::with_builtin_rules(rules);
        let reports = Arc::new(report_schedule::ReportScheduler::new(store.clone(), rules.channels.clone()));
        let nats = bus.as_ref().map(bus::Bus::client);
        let leases = match (&nats, &config.alert_lease) {
            (Some(client), Some(options)) => {
                Some(alert_lease::AlertLeases::start(client.clone(), options.clone()).await?)
            }
            _ => None,
        };
        let mut by_tenant = AlertingByTenant::new(rules, store.clone(), live.clone());
        if let Some(leases) = &leases {
            by_tenant = by_tenant.with_ownership(Arc::new(leases.view()));
        }
        let alerting = Arc::new(by_tenant);
        match &leases {
            // Every tenant is contended for; the engines start as their leases are taken.
            Some(_) => {
                for tenant in accounts.tenants(None, u32::MAX).await? {
                    alerting.want(&tenant);
                }
            }
            // An engine only where alerts are evaluated: an API process calls the owner's.
            None if roles.has(Role::Alert) => {
                alerting.get(DEFAULT_TENANT).await?;
            }
            None => {}
        }
        let ingest_metrics = Arc::new(metrics::IngestMetrics::for_store(store.location()));
        let clocks = Arc::new(ClockBook::new(config.clock));
        let agent_config = Arc::new(agent_config::AgentConfigBook::new(store.clone()));
        let store_sink = StoreSink::new(store.clone(), DEFAULT_TENANT)
            .with_clocks(Arc::clone(&clocks))
            .with_agent_config(Arc::clone(&agent_config))
            .with_metrics(Arc::clone(&ingest_metrics))
            .with_guard(Arc::clone(&guard))
            .with_live_feed(live.clone());
        // Only an alert process evaluates (and notifies): an ingest worker elsewhere must not.
        let store_sink =
            Arc::new(if roles.has(Role::Alert) { store_sink.with_alerting(Arc::clone(&alerting)) } else { store_sink });
        // Agents' batches go to the store here, or through JetStream to the ingest workers.
        let agent_sink: Arc<dyn BatchSink> = match &bus {
            Some(bus) => Arc::new(
                gateway::GatewaySink::new(bus.clone(), DEFAULT_TENANT).with_agent_config(Arc::clone(&agent_config)),
            ),
            None => store_sink.clone(),
        };
        // The agent CA: gateways admit agents under it, the API provisions them.
        let agents = match &config.grpc_tls {
            GrpcTls::Managed { .. } if roles.has(Role::Gateway) || roles.has(Role::Api) => Some(Arc::new(
                AgentAuthority::open(store.clone(), accounts.secrets()).await?.with_audit(Arc::clone(&audit)),
            )),
            _ => None,
        };

        let mut tasks = Vec::new();
        if let Some(grpc_listener) = grpc_listener {
            let ingest = IngestService::new(agent_sink, stopped.clone())
                .counting_streams_in(Arc::clone(&ingest_metrics.open_streams));
            let grpc_stop = wait_for_stop(stopped.clone());
            let mut builder = tonic::transport::Server::builder();
            let router = match (&config.grpc_tls, &agents) {
                (GrpcTls::Managed { names }, Some(authority)) => {
                    let names = if names.is_empty() { default_tls_names(grpc_addr) } else { names.clone() };
                    let identity = authority.server_identity(&names)?;
                    // Without a certificate a client may only enroll; pushes check for one.
                    let tls = identity.server_config().client_auth_optional(true);
                    let gate: Arc<dyn AgentGate> = authority.clone();
                    builder
                        .tls_config(tls)?
                        .add_service(ingest.with_gate(Arc::clone(&gate)).into_server())
                        .add_service(EnrollmentService::new(gate).into_server())
                }
                (GrpcTls::Files(tls), _) => builder.tls_config(tls.server_config())?.add_service(ingest.into_server()),
                _ => builder.add_service(ingest.into_server()),
            };
            tasks.push(tokio::spawn(async move {
                let served =
                    router.serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), grpc_stop).await;
                if let Err(error) = served {
                    tracing::error!(%error, "gRPC ingest stopped");
                }
            }));
        }
        if let (Some(bus), true) = (&bus, roles.has(Role::Ingest)) {
            let worker =
                ingest_worker::IngestWorker::new(bus.clone(), Arc::clone(&store_sink), Arc::clone(&ingest_metrics));
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        if let (Some(client), true) = (&nats, roles.has(Role::Alert)) {
            alert_calls::serve(client.clone(), Arc::clone(&alerting), stopped.clone()).await.map_err(|error| {
                ServerError::Nats { url: config.nats_url.clone().unwrap_or_default(), message: error.to_string() }
            })?;
        }
        let cluster = match nats.clone() {
            Some(client) => {
                // Batches other processes committed reach this process's alert engines (those
                // of the tenants it evaluates) when it is an alert process; its own went to
                // them from the sink. A gateway or ingest process evaluates nothing.
                if roles.has(Role::Alert) {
                    let remote = live.subscribe_remote();
                    tasks.push(tokio::spawn(evaluate_remote_batches(remote, Arc::clone(&alerting), stopped.clone())));
                }
                let revocations = agents.as_ref().map(|authority| authority.revocation_feed());
                let bridged = cluster_feed::ClusterFeed::bridge(client, live.clone(), revocations).await;
                let url = config.nats_url.clone().unwrap_or_default();
                Some(bridged.map_err(|error| ServerError::Nats { url, message: error.to_string() })?)
            }
            None => None,
        };
        if roles.has(Role::Alert) {
            // Scheduled reports: several alert processes may pass; each report's mark in the
            // store lets one of them send it.
            let (scheduler, tenants, mut stopped_reports) =
                (Arc::clone(&reports), Arc::clone(&accounts), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(report_schedule::CHECK_EVERY);
                loop {
                    tokio::select! {
                        _ = stopped_reports.wait_for(|stop| *stop) => break,
                        _ = ticker.tick() => {}
                    }
                    match tenants.tenants(None, u32::MAX).await {
                        Ok(all) => {
                            scheduler.run_due(&all, secumon_core::now_ms()).await;
                        }
                        Err(error) => tracing::error!(%error, "scheduled reports: cannot list the tenants"),
                    }
                }
            }));
            let (ticking, mut stopped_ticking) = (Arc::clone(&alerting), stopped.clone());
            tasks.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stopped_ticking.wait_for(|stop| *stop) => break,
                        _ = ticker.tick() => {}
                    }
                    ticking.evaluated().await.iter().for_each(|engine| engine.tick());
                }
            }));
        }
        if roles.has(Role::Alert) && !scans.is_empty() {
            tasks.push(tokio::spawn(scan_trigger::run(scans, store.clone(), Arc::clone(&alerting), stopped.clone())));
        }
        // Senders' clock states are saved here, every second, never on a batch's ack path.
        let (saving, clock_store, mut stop_saving) = (Arc::clone(&clocks), store.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop_saving.wait_for(|stop| *stop) => break,
                    _ = ticker.tick() => {}
                }
                saving.flush(&*clock_store).await;
            }
        }));
        if roles.has(Role::Alert) {
            tasks.push(tokio::spawn(self_monitor::run(
                Arc::clone(&ingest_metrics),
                store.clone(),
                Arc::clone(&alerting),
                stopped.clone(),
            )));
        }
        let state = api::ApiState {
            store: store.clone(),
            accounts: Arc::clone(&accounts),
            alerting: alerting.clone(),
            evaluates_alerts: roles.has(Role::Alert),
            alert_calls: nats.clone(),
            ingest_metrics,
            clocks: Arc::clone(&clocks),
            open_access: config.open_access,
            live: live.clone(),
            agents: agents.clone().map(|authority| api::Enrollment { authority, collector: grpc_addr }),
            limits: Arc::new(match shared_limits {
                Some(shared) => api::RateLimits::new(config.rate_limit).shared(shared),
                None => api::RateLimits::new(config.rate_limit),
            }),
            sso,
            audit,
            guard,
            tenant_limits: config.limits,
            agent_config,
            scans: Arc::new(config.scans.iter().map(|s| (s.tenant.clone(), s.name.clone())).collect()),
            reports: Arc::clone(&reports),
        };
        if let Some(interval) = config.self_series_interval {
            let metrics_state = state.clone();
            let render = move || metrics_state.metrics_text();
            // One series set per process: several roles' processes may share a machine.
            let process = (!roles.is_all()).then(|| format!("{roles}@{}", api_addr.port()));
            tasks.push(tokio::spawn(self_series::run(store_sink, render, interval, stopped.clone(), process)));
        }
        let api_stop = wait_for_stop(stopped);
        // Every process serves its own `/metrics`; only an API process serves the API.
        let router = if roles.has(Role::Api) { api::router(state) } else { api::metrics_router(state) };
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(api_listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(api_stop)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "REST API stopped");
            }
        }));
        let database = match &config.postgres_url {
            Some(_) => "postgresql".to_string(),
            None => config.database.display().to_string(),
        };
        let mtls = match &config.grpc_tls {
            GrpcTls::Off => "off",
            GrpcTls::Managed { .. } => "managed CA",
            GrpcTls::Files(_) => "certificate files",
        };
        let nats = config.nats_url.as_deref().unwrap_or("none");
        tracing::info!(%roles, %grpc_addr, %api_addr, mtls, %database, %nats, "server started");
        Ok(Self {
            grpc_addr,
            api_addr,
            store,
            alerting,
            accounts,
            agents,
            live,
            clocks,
            bus,
            leases,
            _cluster: cluster,
            stop,
            tasks,
            _data_dir: data_dir_lock,
            reports,
        })
    }

    /// Where the gRPC ingest listens (the port chosen when 0 was asked for).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Sends every tenant's scheduled report whose period ended by `now_ms` and was not sent
    /// yet (what the server does every minute); returns how many were sent.
    pub async fn send_due_reports(&self, now_ms: i64) -> Result<usize, ServerError> {
        let tenants = self.accounts.tenants(None, u32::MAX).await?;
        Ok(self.reports.run_due(&tenants, now_ms).await)
    }

    /// Where the REST API listens (the port chosen when 0 was asked for).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The store the server writes to and reads from.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The default tenant's alert rules, alerts and their history.
    ///
    /// # Panics
    /// With an alert lease, while another process evaluates the default tenant.
    pub fn alerting(&self) -> Arc<Alerting> {
        self.alerting.running(DEFAULT_TENANT).expect("the default tenant's engine starts with the server")
    }

    /// The default tenant's alerting if this process evaluates it now: always without an
    /// alert lease, with one while it holds the tenant's lease.
    pub fn evaluating(&self) -> Option<Arc<Alerting>> {
        self.alerting.running(DEFAULT_TENANT)
    }

    /// Tenants, users, API keys.
    pub fn accounts(&self) -> Arc<Accounts> {
        Arc::clone(&self.accounts)
    }

    /// Committed batches and alert transitions as they happen (what `/api/v1/stream` serves).
    pub fn live_feed(&self) -> LiveFeed {
        self.live.clone()
    }

    /// The agent CA and enrollment, when the gRPC ingest runs under [`GrpcTls::Managed`].
    pub fn agent_authority(&self) -> Option<Arc<AgentAuthority>> {
        self.agents.clone()
    }

    /// The NATS JetStream connection, when the server was given one (`nats_url`).
    pub fn bus(&self) -> Option<&bus::Bus> {
        self.bus.as_ref()
    }

    /// Stops accepting, lets in-flight requests finish, and closes the store.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
        // After every stream ended: the last batches' clock states too.
        self.clocks.flush(&*self.store).await;
        for engine in self.alerting.all() {
            if let Err(error) = engine.flush().await {
                tracing::error!(%error, "cannot save alert state on shutdown");
            }
        }
        // After the last state is saved: the next owner reads it.
        if let Some(leases) = self.leases {
            leases.shutdown().await;
        }
        self.store.close().await;
        // The ingest workers' last acks go out before the connection is dropped.
        if let Some(bus) = &self.bus {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bus.client().flush()).await;
        }
        tracing::info!("server stopped");
    }
}

/// Opens the sealed credentials of the rules file's channels (they stay plaintext in memory
/// only) and warns about credentials left in plain text.
fn open_channel_credentials(mut rules: RuleFile, secrets: &SecretBox) -> Result<RuleFile, ServerError> {
    for (name, channel) in &mut rules.channels {
        for (field, value) in channel.credentials_mut() {
            match secrets.open_config_value(value) {
                Ok(Some(plain)) => *value = plain,
                Ok(None) => tracing::warn!(channel = %name, field,
                    "a channel credential is in plain text in the rules file; seal it with `secumon secrets seal`"),
                Err(error) => {
                    return Err(ServerError::Alerting(format!("channel `{name}`, `{field}`: {error}")));
                }
            }
        }
    }
    Ok(rules)
}

/// Opens the sealed secret headers of scheduled scans, as [`open_channel_credentials`] does.
fn open_scan_credentials(
    mut scans: Vec<scan_trigger::ScanTrigger>,
    secrets: &SecretBox,
) -> Result<Vec<scan_trigger::ScanTrigger>, ServerError> {
    for scan in &mut scans {
        let name = scan.name.clone();
        for value in scan.credentials_mut() {
            match secrets.open_config_value(value) {
                Ok(Some(plain)) => *value = plain,
                Ok(None) => tracing::warn!(scan = %name,
                    "a scan's secret header is in plain text in the scans file; seal it with `secumon secrets seal`"),
                Err(error) => return Err(ServerError::Alerting(format!("scan `{name}`, `secret_headers`: {error}"))),
            }
        }
    }
    Ok(scans)
}

/// Names the gRPC listener's certificate is valid for when none are configured.
fn default_tls_names(grpc_addr: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    // A name a certificate cannot hold (`my_host`) is left out rather than failing the start.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    if !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        names.push(host);
    }
    if !grpc_addr.ip().is_unspecified() && !grpc_addr.ip().is_loopback() {
        names.push(grpc_addr.ip().to_string());
    }
    names
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind { addr, source })
}

/// Hands batches committed by other server processes (over NATS) to the alert engine of
/// their tenant, when this process evaluates it.
async fn evaluate_remote_batches(
    mut remote: tokio::sync::broadcast::Receiver<Arc<live::LiveEvent>>,
    alerting: Arc<AlertingByTenant>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            event = remote.recv() => event,
        };
        let event = match event {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "batches from other server processes not evaluated for alerts (too slow)");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        if let live::LiveEvent::Batch { tenant, batch } = &*event {
            match alerting.evaluating(tenant).await {
                Ok(Some(engine)) => engine.observe_batch(tenant, batch),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, %tenant, "the tenant's alert engine is down"),
            }
        }
    }
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_with(webhook_url: &str) -> RuleFile {
        let yaml = format!("rules: []\nchannels:\n  ops:\n    type: slack\n    webhook_url: \"{webhook_url}\"\n");
        secumon_core::config::parse_yaml(&yaml, "rules.yaml").unwrap()
    }

    fn webhook_url(rules: &mut RuleFile) -> String {
        let channel = rules.channels.get_mut("ops").unwrap();
        channel.credentials_mut()[0].1.clone()
    }

    #[test]
    fn sealed_channel_credentials_open_only_with_the_servers_key() {
        let key = SecretBox::new([7; 32]);
        let sealed = key.seal_config_value("https://hooks.example/T0/B0/secret");
        assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("hooks.example"), "{sealed}");

        let mut opened = open_channel_credentials(rules_with(&sealed), &key).unwrap();
        assert_eq!(webhook_url(&mut opened), "https://hooks.example/T0/B0/secret");
        let mut plain = open_channel_credentials(rules_with("https://plain.example"), &key).unwrap();
        assert_eq!(webhook_url(&mut plain), "https://plain.example", "plain values are kept (with a warning)");

        let error = open_channel_credentials(rules_with(&sealed), &SecretBox::new([8; 32])).err().unwrap();
        assert!(error.to_string().contains("channel `ops`, `webhook_url`"), "{error}");
    }
}
