//! `secumon rules`: list, add, test and delete alert rules through the REST API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use secumon_alert::RuleFile;
use secumon_api::{Client, IntegrationKind, RuleSpec, RuleTestAlert, RuleView, SourceKind};

use crate::api_client::{client, emit, json_text, labels_shown, refused};

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
    /// Check a rules file without a server, as `promtool check rules` does: rules,
    /// channels and the channels the rules name; exit code 0 when valid, 1 with
    /// `file:line:column: key: message` errors when not.
    ///
    /// Example: secumon rules check examples/alerting.yaml
    Check { file: PathBuf },
    /// Add the rules of a YAML file (`rules: [...]`, as in a rules file), all or none:
    /// checked here first, channels against the server's; `--replace` updates rules that
    /// exist already.
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
    let api = client(&args.server)?;
    match args.command {
        RulesCommand::List => {
            let list = match api.rules().await {
                Ok(list) => list,
                Err(error) => return refused(error, &args.server),
            };
            print(&list, args.json, || render_rules(&list.rules))?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Check { file } => Ok(match check_file(&file) {
            Ok(summary) => {
                println!("{}: ok ({summary})", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for error in errors {
                    eprintln!("{error}");
                }
                ExitCode::from(1)
            }
        }),
        RulesCommand::Add { file, replace } => add(&api, &args.server, &file, replace, args.json).await,
        RulesCommand::Test { id } => {
            let test = match api.test_rule(&id).await {
                Ok(test) => test,
                Err(error) => return refused(error, &args.server),
            };
            print(&test, args.json, || render_test(&id, &test.alerts))?;
            let firing = test.alerts.iter().any(|a| a.state == secumon_api::AlertState::Firing);
            Ok(if firing { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        RulesCommand::Delete { id } => {
            if let Err(error) = api.delete_rule(&id).await {
                return refused(error, &args.server);
            }
            if !args.json {
                println!("deleted {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `secumon rules add`: every rule goes in or none does. Everything that can be checked
/// before a change is (the file, the channels the server has, rules that exist already);
/// if the server still refuses one, the rules added or replaced before it are put back.
async fn add(api: &Client, server: &str, file: &Path, replace: bool, json: bool) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("secumon: {}: cannot read: {error}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let origin = file.display().to_string();
    let rules = match RuleFile::parse(&text, &origin) {
        Ok(parsed) => parsed.rules,
        Err(error) => {
            eprintln!("secumon: {error}");
            return Ok(ExitCode::from(2));
        }
    };
    let existing: Vec<(String, RuleSpec)> = match api.rules().await {
        Ok(list) => list.rules.into_iter().map(|view| (view.id, view.rule)).collect(),
        Err(error) => return refused(error, server),
    };
    let channels: Vec<String> = match api.integrations().await {
        Ok(list) => list
            .integrations
            .into_iter()
            .filter(|i| i.kind == IntegrationKind::NotificationChannel)
            .map(|i| i.name)
            .collect(),
        Err(error) => return refused(error, server),
    };
    let mut errors = Vec::new();
    for rule in &rules {
        for channel in named_channels(&rule.spec) {
            if !channels.iter().any(|c| c == channel) {
                errors.push(format!(
                    "{origin}:{}: key `channels`: rule {:?}: the server has no channel named {channel:?} \
                     (channels: {channels:?})",
                    channel_line(&text, rule.name(), channel),
                    rule.name()
                ));
            }
        }
        if !replace && existing.iter().any(|(id, _)| id == rule.name()) {
            errors.push(format!(
                "{origin}:{}: rule {:?} exists already (pass --replace to update it)",
                rule_line(&text, rule.name()),
                rule.name()
            ));
        }
    }
    if !errors.is_empty() {
        for error in &errors {
            eprintln!("secumon: {error}");
        }
        eprintln!("secumon: nothing was added");
        // A channel the server lacks is a fault of the file (2); a name taken, of the state (1).
        let usage = errors.iter().any(|e| e.contains("key `channels`"));
        return Ok(ExitCode::from(if usage { 2 } else { 1 }));
    }
    // What each change undoes: delete an added rule, put a replaced rule's old body back.
    let mut undo: Vec<(String, Option<RuleSpec>)> = Vec::new();
    let mut done = Vec::new();
    for rule in &rules {
        let name = rule.name().to_string();
        let body = &rule.spec;
        let previous = existing.iter().find(|(id, _)| *id == name).map(|(_, rule)| rule.clone());
        let (outcome, verb) = match &previous {
            Some(_) => (api.update_rule(&name, body).await.map(drop), "replaced"),
            None => (api.create_rule(body).await.map(drop), "added"),
        };
        if let Err(error) = outcome {
            // A 400's message is printed now, before the undoing, as it always was.
            let outcome = refused(error, server);
            let mut left = Vec::new();
            for (name, previous) in undo.iter().rev() {
                let undone = match previous {
                    Some(old) => api.update_rule(name, old).await.map(drop),
                    None => api.delete_rule(name).await,
                };
                if let Err(error) = undone {
                    // Printed if a 400; the outcome that counts is the first refusal's.
                    let _ = refused(error, server);
                    left.push(name.as_str());
                }
            }
            eprintln!("secumon: {origin}:{}: rule {name:?} refused; nothing was added", rule_line(&text, &name));
            if !left.is_empty() {
                eprintln!("secumon: could not undo the change to {left:?}: check them with `secumon rules list`");
            }
            return outcome;
        }
        undo.push((name.clone(), previous));
        done.push(format!("{verb} {name}"));
    }
    if !json {
        emit(&done.iter().map(|line| format!("{line}\n")).collect::<String>())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every channel a rule names, its first level and its escalation levels.
fn named_channels(spec: &RuleSpec) -> impl Iterator<Item = &String> {
    spec.channels.iter().chain(spec.escalation.iter().flat_map(|level| level.channels.iter()))
}

/// `secumon rules check`: a one-line summary, or every error found as
/// `file:line:column: key: message` (`file:line: ...` for channel references).
pub fn check_file(file: &Path) -> Result<String, Vec<String>> {
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|error| vec![format!("{origin}: cannot read: {error}")])?;
    let parsed = RuleFile::parse(&text, &origin).map_err(|error| vec![error.to_string()])?;
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for rule in &parsed.rules {
        if !seen.insert(rule.name()) {
            errors.push(format!(
                "{origin}:{}: key `name`: rule {:?} is defined twice",
                rule_line(&text, rule.name()),
                rule.name()
            ));
        }
        // A file without `channels:` is one for `rules add`, whose channels are the server's.
        if parsed.channels.is_empty() {
            continue;
        }
        for channel in named_channels(&rule.spec) {
            if !parsed.channels.contains_key(channel) {
                let known: Vec<&String> = parsed.channels.keys().collect();
                errors.push(format!(
                    "{origin}:{}: key `channels`: rule {:?} names no channel of this file: {channel:?} \
                     (channels: {known:?})",
                    channel_line(&text, rule.name(), channel),
                    rule.name()
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(format!("{} rules, {} channels", parsed.rules.len(), parsed.channels.len()))
    } else {
        Err(errors)
    }
}

/// The 1-based line of a rule's `name:` in the file (1 if not found). The YAML parser keeps
/// no positions once a rule is read, so the rule is found again by its name in the text.
fn rule_line(text: &str, name: &str) -> usize {
    let pattern = format!(r#"(^|[\s{{,-])name:\s*["']?{}["']?\s*($|[,}}#])"#, regex::escape(name));
    let Ok(pattern) = regex::Regex::new(&pattern) else { return 1 };
    text.lines().position(|line| pattern.is_match(line)).map_or(1, |index| index + 1)
}

/// The line, at or after the rule's `name:`, where the rule names `channel`.
fn channel_line(text: &str, rule: &str, channel: &str) -> usize {
    let start = rule_line(text, rule);
    let pattern = format!(r#"(^|[\s\[,:"'-]){}($|[\s\],"'#])"#, regex::escape(channel));
    let Ok(pattern) = regex::Regex::new(&pattern) else { return start };
    text.lines()
        .enumerate()
        .skip(start - 1)
        .find(|(_, line)| pattern.is_match(line))
        .map_or(start, |(index, _)| index + 1)
}

fn print(answer: &impl serde::Serialize, json: bool, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    let text = if json { json_text(answer)? } else { table() };
    Ok(emit(&text)?)
}

/// What a rule watches, in one short phrase.
fn condition(rule: &RuleSpec) -> String {
    let duration = |d: Option<Duration>| d.map(|d| humantime::format_duration(d).to_string());
    let expr = |otherwise: &str| rule.expr.clone().unwrap_or_else(|| otherwise.to_string());
    match rule.source {
        SourceKind::Agent => format!("no data for {}", duration(rule.no_data).unwrap_or_default()),
        SourceKind::Log => format!(
            "/{}/ {} in {}",
            rule.pattern.as_deref().unwrap_or(""),
            expr("count > 0"),
            duration(rule.window).unwrap_or_else(|| "5m".into())
        ),
        SourceKind::Finding => expr("severity >= critical"),
        SourceKind::Metric | SourceKind::Check => expr(""),
    }
}

fn render_rules(rules: &[RuleView]) -> String {
    if rules.is_empty() {
        return "no alert rule\n".to_string();
    }
    let mut out = format!(
        "{:<24}  {:<6}  {:<7}  {:<8}  {:<5}  {:<40}  CHANNELS\n",
        "ID", "ORIGIN", "SOURCE", "SEVERITY", "FOR", "CONDITION"
    );
    for view in rules {
        let rule = &view.rule;
        out.push_str(&format!(
            "{:<24}  {:<6}  {:<7}  {:<8}  {:<5}  {:<40}  {}\n",
            view.id,
            view.origin.as_str(),
            rule.source.as_str(),
            rule.severity.as_str(),
            humantime::format_duration(rule.for_duration).to_string(),
            condition(rule),
            rule.channels.join(","),
        ));
    }
    out
}

fn render_test(id: &str, alerts: &[RuleTestAlert]) -> String {
    if alerts.is_empty() {
        return format!("{id}: nothing would fire now\n");
    }
    let mut out = format!("{id}: {} alert(s) now\n{:<8}  {:<12}  LABELS\n", alerts.len(), "STATE", "VALUE");
    for alert in alerts {
        out.push_str(&format!(
            "{:<8}  {:<12}  {}\n",
            alert.state.as_str(),
            // NaN (no value) is `null` in the JSON: shown blank.
            if alert.value.is_nan() { String::new() } else { format!("{}", alert.value) },
            labels_shown(&alert.labels)
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
        let rules: Vec<RuleView> = serde_json::from_value(json!([
            json!({"id": "DiskFull", "origin": "api", "rule": {"name": "DiskFull", "source": "metric",
                "expr": "disk_used_ratio > 0.9", "severity": "critical", "for": "5m", "channels": ["ops"]}}),
            json!({"id": "AgentDown", "origin": "file", "rule": {"name": "AgentDown", "source": "agent",
                "no_data": "2m", "severity": "critical", "for": "0s", "channels": ["ops", "pager"]}}),
            json!({"id": "Oom", "origin": "api", "rule": {"name": "Oom", "source": "log", "pattern": "oom",
                "severity": "warning", "for": "0s", "channels": []}}),
        ]))
        .unwrap();
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
    fn rules_and_their_channels_are_found_by_line() {
        let text = "rules:\n  - name: DiskFull\n    expr: x > 1\n    severity: critical\n    channels: [ops]\n  \
                    - {name: Other, expr: y > 1, severity: info, channels: [pager]}\n";
        assert_eq!(rule_line(text, "DiskFull"), 2);
        assert_eq!(rule_line(text, "Other"), 6);
        assert_eq!(rule_line(text, "Disk"), 1, "a prefix is not the name");
        assert_eq!(channel_line(text, "DiskFull", "ops"), 5);
        assert_eq!(channel_line(text, "Other", "pager"), 6);
    }

    #[test]
    fn renders_a_rule_test() {
        let alerts: Vec<RuleTestAlert> = serde_json::from_value(json!([{"state": "firing", "value": 0.95,
            "labels": {"alertname": "DiskFull", "host": "db-1", "tenant": "default"}}]))
        .unwrap();
        assert_eq!(
            render_test("DiskFull", &alerts),
            "DiskFull: 1 alert(s) now\nSTATE     VALUE         LABELS\nfiring    0.95          host=db-1\n"
        );
        assert_eq!(render_test("X", &[]), "X: nothing would fire now\n");
    }
}
