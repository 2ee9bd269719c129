//! `secumon`: the operator's command. It parses arguments and composes the library crates;
//! exit codes are 0 for success, 1 when a command ran but its condition failed, 2 for a
//! usage or configuration error.

mod agents;
mod alerts;
mod api_client;
mod audit;
mod backup;
mod findings;
mod logs;
mod query;
mod report;
mod rotation;
mod rules;
mod scan;
mod sso;
mod tenant_config;
mod units;
mod users;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secumon_agent::{Agent, AgentSettings, Probe, shutdown_signal, system_host_name};
use secumon_alert::RuleFile;
use secumon_core::AgentConfig;
use secumon_core::config::{MetricFamily, MetricsSection};
use secumon_scan::ProbeConfig;
use secumon_server::{ClockPolicy, GrpcTls, RateLimit, Role, Roles, Server, ServerConfig, TenantLimits};
use secumon_transport::TlsMaterial;

#[derive(Parser)]
#[command(name = "secumon", version, about = "SecuMon: security and infrastructure monitoring for MSPs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// API token or key for commands that call the server (sent as a bearer token).
    #[arg(long, global = true, env = "SECUMON_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server, a local agent and the embedded store in one process.
    ///
    /// Example: secumon up --data-dir ./secumon-data
    Up {
        #[command(flatten)]
        server: ServerArgs,
        /// Collection interval of the local agent.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
    /// Run the server: gRPC ingest, REST API, embedded store.
    ///
    /// Example: secumon server --grpc 0.0.0.0:9090 --api 127.0.0.1:8080
    Server {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a host's metric over a period, as a table or JSON.
    ///
    /// Example: secumon query cpu_usage_ratio --host web-1 --period 1h --step 1m
    Query(query::QueryArgs),
    /// List, acknowledge and silence alerts.
    Alerts(alerts::AlertsArgs),
    /// Manage agents' configuration centrally (per label selector, applied live).
    ///
    /// Example: secumon agents config set env=prod 'metrics: {interval: 10s}'
    Agents(agents::AgentsArgs),
    /// List, add, test and delete alert rules.
    Rules(rules::RulesArgs),
    /// The operator console: hosts, host charts, alerts (acknowledge), findings.
    ///
    /// Example: secumon console --server http://127.0.0.1:8080
    Console {
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
        server: String,
        /// Name recorded on acknowledgements (default: $USER).
        #[arg(long, env = "USER", default_value = "operator")]
        user: String,
        /// Start on this tenant (a super-admin's; `t` switches in the console).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Shell completions, to source or install.
    ///
    /// Example: secumon completions bash > /etc/bash_completion.d/secumon
    Completions { shell: clap_complete::Shell },
    /// Import scanner reports and list vulnerability findings.
    Findings(findings::FindingsArgs),
    /// A tenant's report over a period (availability, alerts with MTTA/MTTR, certificates,
    /// findings, top hosts) as PDF, Excel, HTML or JSON.
    ///
    /// Example: secumon report --period 30d --format pdf --output report.pdf
    Report(report::ReportArgs),
    /// Print a host's stored log lines: a time range, a source, a regex; --follow for new ones.
    ///
    /// Example: secumon logs web-1 --since 1h --grep ERROR --follow
    Logs(logs::LogsArgs),
    /// Run one probe check now: ping, trace, ports, http, dns.
    Scan(scan::ScanArgs),
    /// Run a probe: the checks of a probe.yaml, pushed to the server.
    ///
    /// Example: secumon probe --config examples/probe.yaml
    Probe {
        #[arg(long)]
        config: PathBuf,
    },
    /// Sign in through the company's identity provider (single sign-on) and print the
    /// access token.
    ///
    /// Example: export SECUMON_TOKEN=$(secumon login --sso --server https://monitor.example.net)
    Login(sso::LoginArgs),
    /// Add and list users, reset a user's second factor (on the server's machine).
    Users(users::UsersArgs),
    /// The audit log: who changed what, when and from where, newest first.
    ///
    /// Example: secumon audit --since 24h --action user.create
    Audit(audit::AuditArgs),
    /// Seal a secret for the rules file under the server's key (SECUMON_SECRET_KEY or
    /// DATA_DIR/secret.key).
    ///
    /// Example: printf %s "$SMTP_PASSWORD" | secumon secrets seal   (then `password: sealed:v1:...`)
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
        #[arg(long, global = true, default_value = "./secumon-data", env = "SECUMON_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Copy a server's data directory while it runs: the embedded store, the secret key and
    /// the CLI token, with a manifest of checksums.
    ///
    /// Example: secumon backup --data-dir /var/lib/secumon/server --to /var/backups/secumon-2026-12-07
    Backup(backup::BackupArgs),
    /// Put a backup in place in an empty data directory (the server stopped), after checking
    /// its checksums and the database.
    ///
    /// Example: secumon restore --from /var/backups/secumon-2026-12-07 --data-dir /var/lib/secumon/server
    Restore(backup::RestoreArgs),
    /// Rotate the server's secret key, which seals the agent CA, the token signing key and
    /// users' second factors in the store (every server stopped).
    ///
    /// Example: secumon secret-key rotate --data-dir /var/lib/secumon
    SecretKey(rotation::SecretKeyArgs),
    /// Rotate the agents' CA without enrolling them again: rotate, status, retire-old.
    ///
    /// Example: secumon ca status --data-dir /var/lib/secumon
    Ca(rotation::CaArgs),
    /// Validate configuration files; show and change a tenant's settings on the server
    /// (retention of its samples per tier among them).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Read one secret from standard input, print it sealed (`sealed:v1:...`).
    ///
    /// Example: printf %s "$SMTP_PASSWORD" | secumon secrets seal --data-dir /var/lib/secumon
    Seal,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check an agent, probe, rules or single sign-on (`oidc:`) file (told apart by their
    /// top-level keys); errors name the file, line and key; exit code 2 when the file is
    /// not valid.
    ///
    /// Example: secumon config check /etc/secumon/agent.yaml
    Check { file: PathBuf },
    /// Show the tenant's settings on the server, with the retention of its samples in force.
    ///
    /// Example: secumon config show --server http://127.0.0.1:8080
    Show(tenant_config::TenantConfigTarget),
    /// Change the tenant's settings on the server; what is not given stays as it is.
    ///
    /// Example: secumon config set --retention-raw 7d --retention-5m 60d --retention-1h 2y
    Set(tenant_config::TenantConfigChange),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Directory of the embedded store (and of the local agent's spool for `up`).
    #[arg(long, default_value = "./secumon-data", env = "SECUMON_DATA_DIR")]
    data_dir: PathBuf,
    /// Store in PostgreSQL instead of the embedded database, e.g. postgres://secumon@db/secumon.
    #[arg(long, value_name = "URL", env = "SECUMON_STORE")]
    store: Option<String>,
    /// gRPC ingest listen address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    grpc: SocketAddr,
    /// REST API listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api: SocketAddr,
    /// Server certificate (PEM) for mutual TLS on the gRPC ingest.
    #[arg(long, requires_all = ["tls_key", "client_ca"])]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "client_ca"])]
    tls_key: Option<PathBuf>,
    /// Alert rules and notification channels (YAML with `rules:` and `channels:`).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Scanners to start on a schedule and import the reports of (YAML with `scans:`; see
    /// README, "SecuAAS integrations").
    #[arg(long, value_name = "FILE")]
    scans: Option<PathBuf>,
    /// CA (PEM) that agents' certificates must be signed by.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    client_ca: Option<PathBuf>,
    /// Mutual TLS under the server's own CA, with agent enrollment
    /// (`POST /api/v1/agents/provision`, then `secumon-agent setup`). On by default when
    /// --grpc is not a loopback address.
    #[arg(long, conflicts_with = "tls_cert")]
    mtls: bool,
    /// A name or address agents reach the gRPC ingest by, for its certificate (repeatable;
    /// default: localhost, the loopback addresses and this host's name).
    #[arg(long, value_name = "NAME")]
    tls_name: Vec<String>,
    /// Most series each tenant may hold; a batch that would create more is refused.
    #[arg(long, default_value_t = secumon_store::DEFAULT_MAX_SERIES_PER_TENANT, value_name = "N")]
    max_series_per_tenant: u64,
    /// Samples a second each tenant may push (bursts of twice that); an agent over it
    /// keeps its batches and retries.
    #[arg(long, default_value_t = NonZeroU32::new(200_000).expect("non-zero"), value_name = "N")]
    max_samples_per_second: NonZeroU32,
    /// API requests a second each tenant may make to each endpoint (bursts of twice that).
    #[arg(long, default_value_t = NonZeroU32::new(500).expect("non-zero"), value_name = "N")]
    api_rate: NonZeroU32,
    /// How far a sender's clock may be off (beyond its measured round trip) before the
    /// server re-stamps its batches by the measured offset.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    clock_tolerance: std::time::Duration,
    /// How often the server stores its own health (every /metrics value, its memory and CPU)
    /// as series of the host `secumon-server`, for rules and dashboards; 0s stores none.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    self_series_interval: std::time::Duration,
    /// Single sign-on for super-admins (`secumon login --sso`): a YAML file with an `oidc:`
    /// section (issuer, client_id, client_secret, claim, super_admins, users).
    #[arg(long, value_name = "FILE", env = "SECUMON_OIDC")]
    oidc: Option<PathBuf>,
    /// The parts of the server this process runs: `all` (one process), or a comma-separated
    /// list of gateway, ingest, alert, api for a scale-out (needs --nats and --store
    /// postgres://…). See README, "Scaling out".
    #[arg(long = "role", default_value = "all", value_name = "LIST", env = "SECUMON_ROLE")]
    roles: Roles,
    /// NATS JetStream between gateways and ingest workers, e.g. nats://10.0.0.5:4222.
    #[arg(long, value_name = "URL", env = "SECUMON_NATS")]
    nats: Option<String>,
    /// Redis (`redis://host:6379`) where several API processes share their rate limits,
    /// login attempts and user update locks; without it each process keeps its own.
    #[arg(long, value_name = "URL", env = "SECUMON_REDIS")]
    redis: Option<String>,
}

impl ServerArgs {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let grpc_tls = match (&self.client_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => GrpcTls::Files(TlsMaterial::load(ca, cert, key)?),
            _ if self.mtls || !self.grpc.ip().is_loopback() => GrpcTls::Managed { names: self.tls_name.clone() },
            _ => GrpcTls::Off,
        };
        self.roles.check_deployment(self.nats.as_deref(), self.store.as_deref()).map_err(ArgumentError::from)?;
        let alerting = match &self.rules {
            Some(path) => Some(RuleFile::load(path).map_err(UsageError)?),
            None => None,
        };
        let scans = match &self.scans {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                secumon_server::scan_trigger::ScanTriggerFile::parse(&text, &path.display().to_string())
                    .map_err(|error| ArgumentError(error.to_string()))?
                    .scans
            }
            None => Vec::new(),
        };
        Ok(ServerConfig {
            scans,
            grpc_addr: self.grpc,
            api_addr: self.api,
            database: self.data_dir.join("secumon.db"),
            postgres_url: self.store.clone(),
            grpc_tls,
            alerting,
            secret_key: Some(users::secret_key(&self.data_dir)?),
            open_access: false,
            rate_limit: RateLimit {
                per_second: self.api_rate,
                burst: self.api_rate.saturating_mul(NonZeroU32::new(2).expect("non-zero")),
                ..Default::default()
            },
            clock: ClockPolicy { tolerance: self.clock_tolerance },
            oidc: match &self.oidc {
                Some(path) => Some(secumon_server::auth::OidcConfig::load(path).map_err(UsageError)?),
                None => None,
            },
            limits: TenantLimits {
                max_series: self.max_series_per_tenant,
                max_samples_per_second: self.max_samples_per_second,
            },
            self_series_interval: Some(self.self_series_interval).filter(|interval| !interval.is_zero()),
            roles: self.roles,
            nats_url: self.nats.clone(),
            redis_url: self.redis.clone(),
            // Alert processes sharing NATS take each tenant's rules by lease: one notifies.
            alert_lease: (self.nats.is_some() && self.roles.has(secumon_server::Role::Alert))
                .then(secumon_server::alert_lease::LeaseOptions::default),
            ..ServerConfig::embedded(&self.data_dir)
        })
    }
}

/// Colour codes only for a person at a terminal (the log goes to stderr), and not with
/// `NO_COLOR`: the agent's rule, [`secumon_agent::log_colours`].
fn log_colours() -> bool {
    use std::io::IsTerminal;
    secumon_agent::log_colours(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("secumon: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    api_client::set_token(cli.token.clone());
    match runtime.block_on(run(cli.command, cli.token)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("secumon: {error:#}");
            // Bad configuration is a usage error (2); anything else a failure (1).
            let usage = error.downcast_ref::<UsageError>().is_some() || error.downcast_ref::<ArgumentError>().is_some();
            if usage { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// A configuration file that cannot be used; the message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct UsageError(#[from] secumon_core::ConfigError);

/// Options that cannot be used together (a scale-out role without NATS…); a usage error too.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ArgumentError(String);

impl From<secumon_server::RolesError> for ArgumentError {
    fn from(error: secumon_server::RolesError) -> Self {
        Self(error.to_string())
    }
}

async fn run(command: Command, token: Option<String>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Server { server } => {
            open_files_for_agents();
            let running = Server::start(server.config()?).await.context("cannot start the server")?;
            let roles = server.roles;
            // A server alone must also say how to get in: without a first user nobody could.
            // (In a scale-out, the API processes do; the others share their store.)
            let token_file = match roles.has(Role::Api) {
                true => Some(bootstrap_first_admin(&running, &server.data_dir).await?),
                false => None,
            };
            match (roles.has(Role::Api), roles.has(Role::Gateway)) {
                (true, true) => println!(
                    "SecuMon server: REST API on http://{}/api/v1, gRPC ingest on {}",
                    running.api_addr(),
                    running.grpc_addr()
                ),
                (true, false) => println!("SecuMon server ({roles}): REST API on http://{}/api/v1", running.api_addr()),
                (false, true) => println!(
                    "SecuMon server ({roles}): gRPC ingest on {}, metrics on http://{}/metrics",
                    running.grpc_addr(),
                    running.api_addr()
                ),
                (false, false) => {
                    println!("SecuMon server ({roles}): metrics on http://{}/metrics", running.api_addr())
                }
            }
            if let Some(token_file) = token_file.filter(|file| file.exists()) {
                println!("  CLI token    export SECUMON_TOKEN=$(cat {})", token_file.display());
            }
            shutdown_signal().await;
            running.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Up { server, interval } => up(server, interval).await,
        Command::Query(args) => query::run(args).await,
        Command::Alerts(args) => alerts::run(args).await,
        Command::Agents(args) => agents::run(args).await,
        Command::Rules(args) => rules::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Findings(args) => findings::run(args).await,
        Command::Report(args) => report::run(args).await,
        Command::Logs(args) => logs::run(args, token).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Into memory first: `| head` must not make the generator panic on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "secumon", &mut script);
            api_client::emit(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Users(args) => users::run(args).await,
        Command::Login(args) => sso::run(args).await,
        Command::Audit(args) => audit::run(args).await,
        Command::Secrets { command: SecretsCommand::Seal, data_dir } => users::seal_secret(&data_dir),
        Command::Console { server, user, tenant } => {
            secumon_console::run(&server, token, &user, tenant).await.context("console terminal failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { config } => {
            let config = match ProbeConfig::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("secumon: {error}");
                    return Ok(ExitCode::from(2));
                }
            };
            let probe = Probe::open(&config).context("cannot start the probe")?;
            println!("probe running {} checks, pushing to {}", config.checks.len(), config.collector.endpoint.0);
            probe.run(shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Check { file } } => Ok(check_config(&file)),
        Command::Config { command: ConfigCommand::Show(target) } => tenant_config::show(target).await,
        Command::Config { command: ConfigCommand::Set(change) } => tenant_config::set(change).await,
        Command::Backup(args) => backup::backup(args).await.map(|()| ExitCode::SUCCESS),
        Command::Restore(args) => backup::restore(args).await.map(|()| ExitCode::SUCCESS),
        Command::SecretKey(args) => rotation::secret_key_command(args).await,
        Command::Ca(args) => rotation::ca_command(args).await,
    }
}

/// The kinds of configuration file `secumon config check` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigKind {
    Agent,
    Probe,
    Rules,
    Oidc,
}

/// Tells a file's kind by its top-level keys: a probe file has `probe:` or `checks:`, a
/// rules file `rules:` or `channels:`, a single sign-on file `oidc:`; anything else (including YAML that does not parse,
/// whose error the agent schema then reports with its line) is read as an agent file.
fn config_kind(text: &str) -> ConfigKind {
    let Ok(serde_yaml_ng::Value::Mapping(top)) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return ConfigKind::Agent;
    };
    let has = |key: &str| top.contains_key(key);
    if has("probe") || has("checks") {
        ConfigKind::Probe
    } else if has("rules") || has("channels") {
        ConfigKind::Rules
    } else if has("oidc") {
        ConfigKind::Oidc
    } else {
        ConfigKind::Agent
    }
}

/// `secumon config check FILE`: 0 and `FILE: ok (KIND file)`, or 2 and the located error.
fn check_config(file: &std::path::Path) -> ExitCode {
    let kind = match std::fs::read_to_string(file) {
        Ok(text) => config_kind(&text),
        // The loaders below report the unreadable file in their own words.
        Err(_) => ConfigKind::Agent,
    };
    let outcome: Result<String, String> = match kind {
        ConfigKind::Agent => match AgentConfig::load(file) {
            Ok(config) => match AgentSettings::from_config(&config) {
                Ok(_) => Ok("agent file".into()),
                Err(error) => Err(format!("{}: {error}", file.display())),
            },
            Err(error) => Err(error.to_string()),
        },
        ConfigKind::Probe => match ProbeConfig::load(file) {
            Ok(config) => Ok(format!("probe file, {} checks", config.checks.len())),
            Err(error) => Err(error.to_string()),
        },
        ConfigKind::Rules => match rules::check_file(file) {
            Ok(summary) => Ok(summary),
            Err(errors) => Err(errors.join("\n")),
        },
        ConfigKind::Oidc => match secumon_server::auth::OidcConfig::load(file) {
            Ok(config) => match config.check() {
                Ok(()) => Ok(format!("single sign-on file, issuer {}", config.issuer)),
                Err(error) => Err(format!("{}: {error}", file.display())),
            },
            Err(error) => Err(error.to_string()),
        },
    };
    match outcome {
        Ok(summary) => {
            println!("{}: ok ({summary})", file.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("secumon: {error}");
            ExitCode::from(2)
        }
    }
}

/// One descriptor per agent connection: the soft limit goes up to the hard one, and a
/// limit too low for a fleet is said at start rather than as refused connections later.
fn open_files_for_agents() {
    match secumon_server::raise_open_files_limit() {
        Ok(limit) if limit < 16_384 => tracing::warn!(
            limit,
            "open-file limit is low for many agents (one descriptor each); raise it (LimitNOFILE=, ulimit -Hn)"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// Server and local agent in one process: the whole product on one machine.
async fn up(args: ServerArgs, interval: Duration) -> anyhow::Result<ExitCode> {
    if args.tls_cert.is_some() || args.mtls {
        anyhow::bail!("`secumon up` talks to its own agent over loopback; use `secumon server` for mTLS");
    }
    if !args.roles.is_all() || args.nats.is_some() {
        return Err(ArgumentError(
            "`secumon up` runs every role in one process without NATS; use `secumon server --role … --nats …` \
             to scale out"
                .into(),
        )
        .into());
    }
    open_files_for_agents();
    let server = Server::start(args.config()?).await.context("cannot start the server")?;
    let token_file = bootstrap_first_admin(&server, &args.data_dir).await?;
    let host = system_host_name()?;
    let agent = Agent::open(AgentSettings {
        host: host.clone(),
        labels: Default::default(),
        metrics: MetricsSection { interval, enabled: MetricFamily::ALL.to_vec(), ..Default::default() },
        state_dir: args.data_dir.join("agent"),
        endpoint: server.grpc_addr().to_string(),
        failover_endpoints: Vec::new(),
        spool_max_bytes: 256 * 1024 * 1024,
        tls: None,
        tls_files: None,
        session: None,
        logs: Default::default(),
        probe_checks: Vec::new(),
        managed: None,
    })
    .context("cannot start the local agent")?;
    println!("SecuMon is up.");
    println!("  REST API     http://{}/api/v1", server.api_addr());
    println!("  gRPC ingest  {}", server.grpc_addr());
    println!("  data         {}", args.data_dir.display());
    println!("  local agent  host {host:?}, every {}", humantime::format_duration(interval));
    println!("  CLI token    export SECUMON_TOKEN=$(cat {})", token_file.display());
    println!("Try: secumon query cpu_usage_ratio --server http://{}   (after the export above)", server.api_addr());
    agent.run(shutdown_signal()).await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// On a server without users (`up` or `server`), creates the super-admin `admin` (password printed once) and an
/// admin API key for the local CLI and console, kept in `cli.token` (mode 0600). Returns
/// that file's path.
async fn bootstrap_first_admin(server: &Server, data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let token_file = data_dir.join("cli.token");
    let accounts = server.accounts();
    if accounts.has_users().await? {
        return Ok(token_file);
    }
    let password = secumon_server::auth::generate_password();
    accounts.add_user("admin", &password, "default", secumon_server::auth::Role::Admin, true).await?;
    let (_, key) = accounts
        .create_api_key("default", "secumon up (local CLI)", secumon_server::auth::Role::Admin, "admin")
        .await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    writeln!(file, "{key}")?;
    println!("First start: created the super-admin \"admin\" with password {password}");
    println!(
        "  (shown once; change it with POST /api/v1/auth/password or `secumon users set-password admin`, \
         add users with `secumon users add`)"
    );
    Ok(token_file)
}
