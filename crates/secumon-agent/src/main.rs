//! `secumon-agent`: the lean binary installed on every monitored server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secumon_agent::{Agent, AgentSettings, shutdown_signal};
use secumon_core::AgentConfig;

/// Collects this host's metrics and pushes them to the SecuMon server.
///
/// Example: secumon-agent --config /etc/secumon/agent.yaml
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Agent configuration file.
    #[arg(long, short, default_value = "/etc/secumon/agent.yaml")]
    config: PathBuf,
    /// Only validate the configuration, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = match AgentConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("secumon-agent: {error}");
            return ExitCode::from(2);
        }
    };
    let settings = match AgentSettings::from_config(&config) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("secumon-agent: {}: {error}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
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
                agent.run(shutdown_signal()).await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("secumon-agent: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
