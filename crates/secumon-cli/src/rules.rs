//! `secumon rules`: list, add, test and delete alert rules through the REST API.

use std::path::PathBuf;
use std::process::ExitCode;

use secumon_alert::RuleFile;
use serde_json::Value;

use crate::api_client::{alert_labels, emit, send};

#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
    /// Server REST address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// Every rule, from the rules file and from the API.
    ///
    /// Example: secumon rules list
    List,
    /// Add the rules of a YAML file (`rules: [...]`, as in a rules file), checked here
    /// first; `--replace` updates rules that exist already.
    ///
    /// Example: secumon rules add disk-rules.yaml
    Add {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
    /// Evaluate a rule now against stored data; exit code 1 when it would fire.
    ///
    /// Example: secumon rules test DiskFull
    Test { id: String },
    /// Delete a rule made through the API.
    ///
    /// Example: secumon rules delete DiskFull
    Delete { id: String },
}

pub async fn run(args: RulesArgs) -> anyhow::Result<ExitCode> {
    let api = format!("{}/api/v1/alert-rules", args.server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    match args.command {
        RulesCommand::List => {
            let body = match send(http.get(&api), &args.server).await? {
                Ok(body) => body,
                Err(code) => return Ok(code),
            };
            print(&body, args.json, || render_rules(body["rules"].as_array().map(Vec::as_slice).unwrap_or(&[])))?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Add { file, replace } => {
            let rules = match RuleFile::load(&file) {
                Ok(parsed) => parsed.rules,
                Err(error) => {
                    eprintln!("secumon: {error}");
                    return Ok(ExitCode::from(2));
                }
            };
            let existing: Vec<String> = match send(http.get(&api), &args.server).await? {
                Ok(body) => body["rules"]
                    .as_array()
                    .map(|rules| rules.iter().filter_map(|r| r["id"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default(),
                Err(code) => return Ok(code),
            };
            for rule in rules {
                let name = rule.name().to_string();
                let body = serde_json::to_value(&rule)?;
                let (request, done) = if replace && existing.contains(&name) {
                    (http.put(format!("{api}/{name}")).json(&body), "replaced")
                } else {
                    (http.post(&api).json(&body), "added")
                };
                if let Err(code) = send(request, &args.server).await? {
                    return Ok(code);
                }
                if !args.json {
                    println!("{done} {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Test { id } => {
            let body = match send(http.get(format!("{api}/{id}/test")), &args.server).await? {
                Ok(body) => body,
                Err(code) => return Ok(code),
            };
            let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
            print(&body, args.json, || render_test(&id, &alerts))?;
            Ok(if alerts.iter().any(|a| a["state"] == "firing") { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        RulesCommand::Delete { id } => {
            if let Err(code) = send(http.delete(format!("{api}/{id}")), &args.server).await? {
                return Ok(code);
            }
            if !args.json {
                println!("deleted {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print(body: &Value, json: bool, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    let text = if json { format!("{}\n", serde_json::to_string_pretty(body)?) } else { table() };
    Ok(emit(&text)?)
}

/// What a rule watches, in one short phrase.
fn condition(rule: &Value) -> String {
    let text = |key: &str| rule[key].as_str().unwrap_or("").to_string();
    match rule["source"].as_str().unwrap_or("metric") {
        "agent" => format!("no data for {}", text("no_data")),
        "log" => format!(
            "/{}/ {} in {}",
            text("pattern"),
            rule["expr"].as_str().unwrap_or("count > 0"),
            rule["window"].as_str().unwrap_or("5m")
        ),
        "finding" => rule["expr"].as_str().unwrap_or("severity >= critical").to_string(),
        _ => text("expr"),
    }
}

fn render_rules(rules: &[Value]) -> String {
    if rules.is_empty() {
        return "no alert rule\n".to_string();
    }
    let mut out = format!(
        "{:<24}  {:<6}  {:<7}  {:<8}  {:<5}  {:<40}  CHANNELS\n",
        "ID", "ORIGIN", "SOURCE", "SEVERITY", "FOR", "CONDITION"
    );
    for view in rules {
        let rule = &view["rule"];
        let channels: Vec<&str> =
            rule["channels"].as_array().map(|c| c.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        out.push_str(&format!(
            "{:<24}  {:<6}  {:<7}  {:<8}  {:<5}  {:<40}  {}\n",
            view["id"].as_str().unwrap_or(""),
            view["origin"].as_str().unwrap_or(""),
            rule["source"].as_str().unwrap_or("metric"),
            rule["severity"].as_str().unwrap_or(""),
            rule["for"].as_str().unwrap_or("0s"),
            condition(rule),
            channels.join(","),
        ));
    }
    out
}

fn render_test(id: &str, alerts: &[Value]) -> String {
    if alerts.is_empty() {
        return format!("{id}: nothing would fire now\n");
    }
    let mut out = format!("{id}: {} alert(s) now\n{:<8}  {:<12}  LABELS\n", alerts.len(), "STATE", "VALUE");
    for alert in alerts {
        out.push_str(&format!(
            "{:<8}  {:<12}  {}\n",
            alert["state"].as_str().unwrap_or(""),
            alert["value"].as_f64().map(|v| format!("{v}")).unwrap_or_default(),
            alert_labels(&alert["labels"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_rules_of_every_source() {
        let rules = vec![
            json!({"id": "DiskFull", "origin": "api", "rule": {"name": "DiskFull", "source": "metric",
                "expr": "disk_used_ratio > 0.9", "severity": "critical", "for": "5m", "channels": ["ops"]}}),
            json!({"id": "AgentDown", "origin": "file", "rule": {"name": "AgentDown", "source": "agent",
                "no_data": "2m", "severity": "critical", "for": "0s", "channels": ["ops", "pager"]}}),
            json!({"id": "Oom", "origin": "api", "rule": {"name": "Oom", "source": "log", "pattern": "oom",
                "severity": "warning", "for": "0s", "channels": []}}),
        ];
        let table = render_rules(&rules);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID") && lines[0].ends_with("CHANNELS"));
        assert!(
            lines[1].contains("DiskFull") && lines[1].contains("disk_used_ratio > 0.9") && lines[1].ends_with("ops")
        );
        assert!(lines[2].contains("no data for 2m") && lines[2].ends_with("ops,pager"));
        assert!(lines[3].contains("/oom/ count > 0 in 5m"));
        assert_eq!(render_rules(&[]), "no alert rule\n");
    }

    #[test]
    fn renders_a_rule_test() {
        let alerts = vec![json!({"state": "firing", "value": 0.95,
            "labels": {"alertname": "DiskFull", "host": "db-1", "tenant": "default"}})];
        assert_eq!(
            render_test("DiskFull", &alerts),
            "DiskFull: 1 alert(s) now\nSTATE     VALUE         LABELS\nfiring    0.95          host=db-1\n"
        );
        assert_eq!(render_test("X", &[]), "X: nothing would fire now\n");
    }
}
