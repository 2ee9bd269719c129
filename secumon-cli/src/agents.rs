//! `secumon agents config`: the agent configuration managed centrally (set, show and delete
//! layers per label selector, and what one agent should run and runs), through the REST
//! API's typed client.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use secumon_api::{AgentConfigLayer, AgentConfigState};

use crate::api_client::{client, refused};

#[derive(clap::Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    command: AgentsCommand,
    /// Server REST address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum AgentsCommand {
    /// The agent configuration managed centrally: sections of agent.yaml (metrics, logs,
    /// probe_mode) set per label selector, pushed to the agents, applied live.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Set a selector's layer: `default` (every agent) or LABEL=VALUE[,LABEL=VALUE…].
    ///
    /// Example: secumon agents config set env=prod 'metrics: {interval: 10s}'
    Set {
        selector: String,
        /// The sections, as YAML or JSON (or --file).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        document: Option<String>,
        /// Read the sections from this YAML or JSON file (`-`: standard input).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Every layer in merge order; with --agent, what that agent should run and runs.
    ///
    /// Example: secumon agents config show --agent 5f0c…
    Show {
        #[arg(long)]
        agent: Option<String>,
    },
    /// Remove a selector's layer; its agents fall back to the others or to their file.
    ///
    /// Example: secumon agents config delete env=prod
    Delete { selector: String },
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let api = client(&args.server)?;
    let AgentsCommand::Config(command) = args.command;
    let printed = match command {
        ConfigCommand::Set { selector, document, file } => {
            let document = read_document(document, file)?;
            api.put_agent_config(&selector, &document).await.map(Printed::Layer)
        }
        ConfigCommand::Delete { selector } => api.delete_agent_config(&selector).await.map(Printed::Deleted),
        ConfigCommand::Show { agent: Some(agent) } => api.agent_config(&agent).await.map(Printed::Agent),
        ConfigCommand::Show { agent: None } => api.agent_config_layers().await.map(|l| Printed::Layers(l.layers)),
    };
    let printed = match printed {
        Ok(printed) => printed,
        Err(error) => return refused(error, &args.server),
    };
    let text = match (&printed, args.json) {
        (Printed::Layer(layer) | Printed::Deleted(layer), true) => serde_json::to_string_pretty(layer)?,
        (Printed::Layers(layers), true) => serde_json::to_string_pretty(&serde_json::json!({ "layers": layers }))?,
        (Printed::Agent(state), true) => serde_json::to_string_pretty(state)?,
        (Printed::Layer(layer), false) => format!("set {}", render_layer(layer)),
        (Printed::Deleted(layer), false) => format!("deleted {}", render_layer(layer)),
        (Printed::Layers(layers), false) if layers.is_empty() => "no agent configuration is managed centrally".into(),
        (Printed::Layers(layers), false) => layers.iter().map(render_layer).collect::<Vec<_>>().join("\n"),
        (Printed::Agent(state), false) => render_agent(state),
    };
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

enum Printed {
    Layer(AgentConfigLayer),
    Deleted(AgentConfigLayer),
    Layers(Vec<AgentConfigLayer>),
    Agent(AgentConfigState),
}

/// The document given inline or in a file, YAML (JSON is YAML too).
fn read_document(inline: Option<String>, file: Option<PathBuf>) -> anyhow::Result<serde_json::Value> {
    let (text, origin) = match (inline, file) {
        (Some(text), _) => (text, "the document".to_string()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            (std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?, "stdin".to_string())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, None) => anyhow::bail!("give the document, or --file"),
    };
    Ok(secumon_core::config::parse_yaml(&text, &origin)?)
}

/// A layer: its selector, who set it when, and its sections as YAML.
fn render_layer(layer: &AgentConfigLayer) -> String {
    format!("{} (by {}, {})\n{}", layer.selector, layer.updated_by, when(layer.updated_ms), indented(&layer.document))
}

fn render_agent(state: &AgentConfigState) -> String {
    let version = |v: &str| if v.is_empty() { "none (its own file)".to_string() } else { v.to_string() };
    let mut out = format!("agent {}: {}\n", state.agent_id, state.state);
    out.push_str(&format!("should run: {} from {}\n", version(&state.version), layers_shown(&state.selectors)));
    if let Some(report) = &state.report {
        out.push_str(&format!(
            "runs:       {} (said {})\n",
            version(&report.running_version),
            when(report.reported_ms)
        ));
        if let (Some(refused), Some(error)) = (&report.refused_version, &report.refused_error) {
            out.push_str(&format!("refused:    {refused}: {error}\n"));
        }
    }
    out.push_str(&indented(&state.document));
    out
}

fn layers_shown(selectors: &[String]) -> String {
    if selectors.is_empty() { "no layer".to_string() } else { selectors.join(" + ") }
}

fn when(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A document as YAML, indented by two spaces.
fn indented(document: &serde_json::Value) -> String {
    let yaml = serde_yaml_ng::to_string(document).unwrap_or_default();
    yaml.lines().filter(|line| *line != "{}").map(|line| format!("  {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_agent_state_says_what_it_should_run_runs_and_refused() {
        let state: AgentConfigState = serde_json::from_value(json!({
            "agent_id": "a1", "version": "00ff", "document": {"metrics": {"interval": "5s"}},
            "selectors": ["default", "env=prod"], "state": "refused",
            "report": {"running_version": "", "refused_version": "00ff",
                       "refused_error": "bad pattern", "reported_ms": 0}
        }))
        .unwrap();
        assert_eq!(
            render_agent(&state),
            "agent a1: refused\nshould run: 00ff from default + env=prod\n\
             runs:       none (its own file) (said 1970-01-01T00:00:00Z)\nrefused:    00ff: bad pattern\n\
             \x20 metrics:\n    interval: 5s\n"
        );
    }

    #[test]
    fn documents_are_yaml_or_json_inline_or_from_a_file() {
        let inline = read_document(Some("metrics: {interval: 10s}".into()), None).unwrap();
        assert_eq!(inline, json!({"metrics": {"interval": "10s"}}));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("doc.json");
        std::fs::write(&path, r#"{"logs": {"enabled": true}}"#).unwrap();
        assert_eq!(read_document(None, Some(path)).unwrap(), json!({"logs": {"enabled": true}}));
        let error = read_document(Some("metrics: [".into()), None).unwrap_err().to_string();
        assert!(error.starts_with("the document:"), "{error}");
    }
}
