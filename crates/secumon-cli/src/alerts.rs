//! `secumon alerts`: list, acknowledge and silence alerts through the REST API.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::api_client::{alert_labels, send};

#[derive(clap::Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    command: AlertsCommand,
    /// Server REST address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum AlertsCommand {
    /// Alerts pending or firing now; exit code 1 when any is firing.
    ///
    /// Example: secumon alerts list
    List,
    /// Acknowledge a firing alert, which stops its escalation.
    ///
    /// Example: secumon alerts ack 3f2a9c0d1e4b5a6f --by alice --comment "on it"
    Ack {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Silence alerts whose labels match, for a while.
    ///
    /// Example: secumon alerts silence host=web-1 --for 2h --by alice --comment "maintenance"
    Silence {
        /// LABEL=VALUE, one or more.
        #[arg(required = true, value_parser = parse_matcher)]
        matchers: Vec<(String, String)>,
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

fn parse_matcher(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected LABEL=VALUE, got {text:?}"))
}

pub async fn run(args: AlertsArgs) -> anyhow::Result<ExitCode> {
    let api = format!("{}/api/v1", args.server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let (request, print) = match args.command {
        AlertsCommand::List => (http.get(format!("{api}/alerts")), Printed::Alerts),
        AlertsCommand::Ack { id, by, comment } => (
            http.post(format!("{api}/alerts/{id}/acknowledge")).json(&json!({"by": by, "comment": comment})),
            Printed::Done("acknowledged"),
        ),
        AlertsCommand::Silence { matchers, duration, by, comment } => {
            let matchers: serde_json::Map<String, Value> =
                matchers.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            let body = json!({"matchers": matchers, "duration": duration, "created_by": by, "comment": comment});
            (http.post(format!("{api}/silences")).json(&body), Printed::Done("silenced"))
        }
    };
    let body = match send(request, &args.server).await? {
        Ok(body) => body,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    match print {
        Printed::Done(what) if !args.json => println!("{what}"),
        Printed::Alerts => {
            let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
            if !args.json {
                print!("{}", render_alerts(&alerts));
            }
            if alerts.iter().any(|a| a["state"] == "firing") {
                return Ok(ExitCode::from(1));
            }
        }
        Printed::Done(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

enum Printed {
    Alerts,
    Done(&'static str),
}

/// One line per alert: id, state, severity, rule, labels, acknowledgement.
fn render_alerts(alerts: &[Value]) -> String {
    if alerts.is_empty() {
        return "no alert pending or firing\n".to_string();
    }
    let mut out = format!("{:<16}  {:<8}  {:<8}  {:<24}  LABELS\n", "ID", "STATE", "SEVERITY", "RULE");
    for alert in alerts {
        let ack = alert["acknowledged"]["by"].as_str().map(|by| format!("  (ack: {by})")).unwrap_or_default();
        out.push_str(&format!(
            "{:<16}  {:<8}  {:<8}  {:<24}  {}{ack}\n",
            alert["id"].as_str().unwrap_or(""),
            alert["state"].as_str().unwrap_or(""),
            alert["severity"].as_str().unwrap_or(""),
            alert["rule"].as_str().unwrap_or(""),
            alert_labels(&alert["labels"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_alerts_as_a_table() {
        let alerts = vec![json!({
            "id": "00112233aabbccdd", "state": "firing", "severity": "critical", "rule": "RoomTooHot",
            "labels": {"alertname": "RoomTooHot", "room": "a", "host": "dc-1", "tenant": "default"},
            "acknowledged": {"by": "alice"}
        })];
        assert_eq!(
            render_alerts(&alerts),
            "ID                STATE     SEVERITY  RULE                      LABELS\n\
             00112233aabbccdd  firing    critical  RoomTooHot                host=dc-1,room=a  (ack: alice)\n"
        );
        assert_eq!(render_alerts(&[]), "no alert pending or firing\n");
    }

    #[test]
    fn matchers_need_a_label_and_an_equals_sign() {
        assert_eq!(parse_matcher("host=web-1"), Ok(("host".into(), "web-1".into())));
        assert!(parse_matcher("host").is_err());
        assert!(parse_matcher("=x").is_err());
    }
}
