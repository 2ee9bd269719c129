//! `secumon alerts`: list, acknowledge, resolve and silence alerts, and list and expire
//! silences, through the REST API.

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
    /// Alerts pending, firing or stale (data stopped) now, with the rule's summary; exit
    /// code 1 when any is firing.
    ///
    /// Example: secumon alerts list
    List,
    /// Resolve a firing or stale alert by hand (a check removed for good, say).
    ///
    /// Example: secumon alerts resolve 3f2a9c0d1e4b5a6f
    Resolve { id: String },
    /// Silences in force now, with their ids.
    ///
    /// Example: secumon alerts silences
    Silences,
    /// End a silence before its time.
    ///
    /// Example: secumon alerts unsilence 9c1d2e3f4a5b6c7d
    Unsilence { id: String },
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
            (http.post(format!("{api}/silences")).json(&body), Printed::Silence)
        }
        AlertsCommand::Resolve { id } => (http.post(format!("{api}/alerts/{id}/resolve")), Printed::Done("resolved")),
        AlertsCommand::Silences => (http.get(format!("{api}/silences")), Printed::Silences),
        AlertsCommand::Unsilence { id } => (http.delete(format!("{api}/silences/{id}")), Printed::Done("expired")),
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
        Printed::Silence if !args.json => println!("silenced (id {})", body["id"].as_str().unwrap_or("?")),
        Printed::Silences if !args.json => {
            print!("{}", render_silences(body["silences"].as_array().map(Vec::as_slice).unwrap_or_default()))
        }
        Printed::Done(_) | Printed::Silence | Printed::Silences => {}
    }
    Ok(ExitCode::SUCCESS)
}

enum Printed {
    Alerts,
    Silence,
    Silences,
    Done(&'static str),
}

/// One line per alert: id, state, severity, rule, labels, acknowledgement; then the rule's
/// `summary`, indented, when it has one.
fn render_alerts(alerts: &[Value]) -> String {
    if alerts.is_empty() {
        return "no alert pending, firing or stale\n".to_string();
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
        if let Some(summary) = alert["annotations"]["summary"].as_str().filter(|s| !s.is_empty()) {
            out.push_str(&format!("{:<18}{summary}\n", ""));
        }
    }
    out
}

/// One line per silence: id, until when, matchers, who, why.
fn render_silences(silences: &[Value]) -> String {
    if silences.is_empty() {
        return "no silence in force\n".to_string();
    }
    let mut out = format!("{:<16}  {:<20}  {:<12}  MATCHERS  COMMENT\n", "ID", "ENDS", "BY");
    for silence in silences {
        let ends = silence["ends_ms"]
            .as_i64()
            .map(|ms| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
                humantime::format_rfc3339_seconds(at).to_string()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<16}  {:<20}  {:<12}  {}  {}\n",
            silence["id"].as_str().unwrap_or(""),
            ends,
            silence["created_by"].as_str().unwrap_or(""),
            alert_labels(&silence["matchers"]),
            silence["comment"].as_str().unwrap_or(""),
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
            "acknowledged": {"by": "alice"}, "annotations": {"summary": "room a at 35.5°C"}
        })];
        assert_eq!(
            render_alerts(&alerts),
            "ID                STATE     SEVERITY  RULE                      LABELS\n\
             00112233aabbccdd  firing    critical  RoomTooHot                host=dc-1,room=a  (ack: alice)\n\
             \x20                 room a at 35.5°C\n"
        );
        assert_eq!(render_alerts(&[]), "no alert pending, firing or stale\n");
    }

    #[test]
    fn renders_silences_with_their_ids() {
        let silences = vec![json!({
            "id": "9c1d2e3f4a5b6c7d", "matchers": {"host": "web-1"}, "starts_ms": 0,
            "ends_ms": 1_767_225_600_000i64, "created_by": "alice", "comment": "maintenance"
        })];
        assert_eq!(
            render_silences(&silences),
            "ID                ENDS                  BY            MATCHERS  COMMENT\n\
             9c1d2e3f4a5b6c7d  2026-01-01T00:00:00Z  alice         host=web-1  maintenance\n"
        );
        assert_eq!(render_silences(&[]), "no silence in force\n");
    }

    #[test]
    fn matchers_need_a_label_and_an_equals_sign() {
        assert_eq!(parse_matcher("host=web-1"), Ok(("host".into(), "web-1".into())));
        assert!(parse_matcher("host").is_err());
        assert!(parse_matcher("=x").is_err());
    }
}
