//! `secumon-agent`: the lean binary installed on every monitored server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secumon_agent::{Agent, AgentSettings, ManagedBase, SetupOptions, shutdown_signal, with_services};
use secumon_core::AgentConfig;
use secumon_core::config::MetricsSection;

/// Where the agent looks for its configuration unless `--config` says otherwise.
const DEFAULT_CONFIG: &str = "/etc/secumon/agent.yaml";

/// Exit code of an agent the server revoked (1 is any other failure, 2 a configuration
/// error): a service manager or script can tell that restarting will not help.
const EXIT_REVOKED: u8 = 3;

/// Collects this host's metrics and pushes them to the SecuMon server.
///
/// Exit codes: 0 stopped, 1 failure, 2 configuration error, 3 revoked by the server.
///
/// Example: secumon-agent --config /etc/secumon/agent.yaml
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Agent configuration file (for `setup`, the one it writes); before or after `setup`
    /// [default: /etc/secumon/agent.yaml].
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Only validate the configuration, then exit.
    #[arg(long)]
    check: bool,
    /// Collect once (two cycles a second apart, so ratios exist), print, and exit.
    #[arg(long)]
    once: bool,
    /// With --once: print JSON (one object per sample) instead of exposition lines.
    #[arg(long, requires = "once")]
    json: bool,
    /// Watch this systemd unit besides the failed ones (repeatable).
    #[arg(long, value_name = "NAME")]
    monitor_service: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Enroll this machine with a provisioning token and write the configuration (--config).
    ///
    /// Example: secumon-agent setup --collector monitor.example.net:9090 --token smp_…
    /// (the token and the whole command come from `POST /api/v1/agents/provision`).
    Setup {
        /// The server's gRPC ingest, HOST:PORT.
        #[arg(long)]
        collector: String,
        /// The provisioning token (one use; expires).
        #[arg(long, env = "SECUMON_PROVISION_TOKEN", hide_env_values = true)]
        token: String,
        /// The agent's state directory: identity, spool, certificate and session token.
        #[arg(long, default_value = "/var/lib/secumon/agent")]
        state_dir: PathBuf,
        /// Host name to report (default: this machine's).
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing configuration file.
        #[arg(long)]
        force: bool,
    },
}

/// Colour codes only for a person at a terminal (the log goes to stdout), and not with
/// `NO_COLOR`: see [`secumon_agent::log_colours`].
fn log_colours() -> bool {
    use std::io::IsTerminal;
    secumon_agent::log_colours(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(log_colours())
        .init();
    if let Some(Command::Setup { collector, token, state_dir, name, force }) = args.command {
        return run_setup(SetupOptions {
            token: match token.parse() {
                Ok(token) => token,
                Err(error) => {
                    eprintln!("secumon-agent: {error}");
                    return ExitCode::from(2);
                }
            },
            collector,
            config_path: args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
            state_dir,
            name,
            force,
        });
    }
    let config_path = args.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    // A fresh install has no configuration until `setup` writes one: `--once` needs none,
    // and running as a service says what to do instead of "cannot read".
    if args.config.is_none() && !config_path.exists() {
        if args.once {
            return print_snapshot(&with_services(MetricsSection::default(), &args.monitor_service), args.json);
        }
        eprintln!(
            "secumon-agent: no configuration at {DEFAULT_CONFIG}. Enroll this machine with\n  \
             secumon-agent setup --collector SERVER:9090 --token smp_...\n\
             (the token and the whole command come from `POST /api/v1/agents/provision`), or point \
             --config at an agent file (the secumon-agent package installs one; examples/agent.yaml in the sources). \
             `secumon-agent --once` collects once without one."
        );
        return ExitCode::from(2);
    }
    let mut config = match AgentConfig::load(&config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("secumon-agent: {error}");
            return ExitCode::from(2);
        }
    };
    config.metrics = with_services(config.metrics, &args.monitor_service);
    if args.once {
        return print_snapshot(&config.metrics, args.json);
    }
    let mut settings = match AgentSettings::from_config(&config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("secumon-agent: {}: {error}", config_path.display());
            return ExitCode::from(2);
        }
    };
    // Managed documents from the server are laid over this file (see README, "Central
    // agent configuration").
    settings.managed = match ManagedBase::read(&config_path, args.monitor_service.clone()) {
        Ok(base) => Some(base),
        Err(error) => {
            eprintln!("secumon-agent: {error}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", config_path.display());
        return ExitCode::SUCCESS;
    }
    // One thread is plenty for a few file reads per interval and one gRPC stream.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("secumon-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match Agent::open(settings) {
            Ok(agent) => {
                let client = agent.push_client();
                agent.run(shutdown_signal()).await;
                match client.revoked() {
                    Some(reason) => {
                        eprintln!("secumon-agent: revoked by the server: {reason}");
                        ExitCode::from(EXIT_REVOKED)
                    }
                    None => ExitCode::SUCCESS,
                }
            }
            Err(error) => {
                eprintln!("secumon-agent: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn run_setup(options: SetupOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("secumon-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(secumon_agent::setup(&options)) {
        Ok(report) => {
            println!("Enrolled as agent {} (host {:?}).", report.agent_id, report.host);
            println!("  certificate  {}", report.cert_path.display());
            println!("  config       {}", report.config_path.display());
            println!("Start it: secumon-agent --config {}", report.config_path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("secumon-agent: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `metrics` also watching the systemd units named by `--monitor-service`.
/// `--once`: one collection to stdout, collector failures to stderr.
fn print_snapshot(metrics: &MetricsSection, json: bool) -> ExitCode {
    let (samples, failures) = secumon_agent::collect_snapshot(metrics, std::time::Duration::from_secs(1));
    for failure in &failures {
        eprintln!("secumon-agent: {failure}");
    }
    let mut out = String::new();
    for sample in &samples {
        if json {
            let line = serde_json::json!({
                "name": sample.series.name,
                "labels": sample.series.labels,
                "timestamp_ms": sample.timestamp_ms,
                "value": sample.value,
            });
            out.push_str(&line.to_string());
        } else {
            out.push_str(&format!("{} {}", sample.series, sample.value));
        }
        out.push('\n');
    }
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    ExitCode::SUCCESS
}
