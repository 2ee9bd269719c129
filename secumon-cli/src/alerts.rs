//! `secumon alerts`: list, acknowledge, resolve and silence alerts, and list and expire
//! silences, through the REST API's typed client.

use std::process::ExitCode;

use secumon_api::{AcknowledgeRequest, Alert, AlertList, AlertState, Silence, SilenceList, SilenceRequest};

use crate::api_client::{client, labels_shown, refused};

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
    let api = client(&args.server)?;
    // Each answer in its type, and as the API's JSON for `--json`.
    let (answer, print) = match args.command {
        AlertsCommand::List => (api.alerts(&Default::default()).await.map(Printed::Alerts), None),
        AlertsCommand::Ack { id, by, comment } => {
            let request = AcknowledgeRequest { by: Some(by), comment };
            (api.acknowledge(&id, &request).await.map(|a| Printed::Json(json_of(&a))), Some("acknowledged"))
        }
        AlertsCommand::Silence { matchers, duration, by, comment } => {
            let request =
                SilenceRequest { matchers: matchers.into_iter().collect(), duration, created_by: Some(by), comment };
            (api.add_silence(&request).await.map(Printed::Silence), None)
        }
        AlertsCommand::Resolve { id } => (api.resolve(&id).await.map(|r| Printed::Json(json_of(&r))), Some("resolved")),
        AlertsCommand::Silences => (api.silences().await.map(Printed::Silences), None),
        AlertsCommand::Unsilence { id } => {
            (api.expire_silence(&id).await.map(|s| Printed::Json(json_of(&s))), Some("expired"))
        }
    };
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return refused(error, &args.server),
    };
    match answer {
        Printed::Json(body) if args.json => println!("{}", serde_json::to_string_pretty(&body)?),
        Printed::Json(_) => println!("{}", print.unwrap_or("done")),
        Printed::Alerts(list) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&json_of(&list))?);
            } else {
                print!("{}", render_alerts(&list.alerts));
            }
            if list.alerts.iter().any(|a| a.state == AlertState::Firing) {
                return Ok(ExitCode::from(1));
            }
        }
        Printed::Silence(silence) if args.json => println!("{}", serde_json::to_string_pretty(&json_of(&silence))?),
        Printed::Silence(silence) => println!("silenced (id {})", silence.id),
        Printed::Silences(list) if args.json => println!("{}", serde_json::to_string_pretty(&json_of(&list))?),
        Printed::Silences(list) => print!("{}", render_silences(&list.silences)),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a command got back.
enum Printed {
    Alerts(AlertList),
    Silence(Silence),
    Silences(SilenceList),
    /// An answer only `--json` shows.
    Json(serde_json::Value),
}

/// An answer as a JSON tree, printed with its keys in order as before the typed client.
fn json_of(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// One line per alert: id, state, severity, rule, labels, acknowledgement; then the rule's
/// `summary`, indented, when it has one.
fn render_alerts(alerts: &[Alert]) -> String {
    if alerts.is_empty() {
        return "no alert pending, firing or stale\n".to_string();
    }
    let mut out = format!("{:<16}  {:<8}  {:<8}  {:<24}  LABELS\n", "ID", "STATE", "SEVERITY", "RULE");
    for alert in alerts {
        let ack = alert.acknowledged.as_ref().map(|a| format!("  (ack: {})", a.by)).unwrap_or_default();
        out.push_str(&format!(
            "{:<16}  {:<8}  {:<8}  {:<24}  {}{ack}\n",
            alert.id,
            alert.state.as_str(),
            alert.severity.as_str(),
            alert.rule,
            labels_shown(&alert.labels),
        ));
        if let Some(summary) = alert.annotations.get("summary").filter(|s| !s.is_empty()) {
            out.push_str(&format!("{:<18}{summary}\n", ""));
        }
    }
    out
}

/// One line per silence: id, until when, matchers, who, why.
fn render_silences(silences: &[Silence]) -> String {
    if silences.is_empty() {
        return "no silence in force\n".to_string();
    }
    let mut out = format!("{:<16}  {:<20}  {:<12}  MATCHERS  COMMENT\n", "ID", "ENDS", "BY");
    for silence in silences {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(silence.ends_ms.max(0) as u64);
        let ends = humantime::format_rfc3339_seconds(at).to_string();
        out.push_str(&format!(
            "{:<16}  {:<20}  {:<12}  {}  {}\n",
            silence.id,
            ends,
            silence.created_by,
            labels_shown(&silence.matchers),
            silence.comment,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An answer as the API sends it, read into its type.
    fn typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).expect("the API's shape")
    }

    #[test]
    fn renders_alerts_as_a_table() {
        let alerts = vec![typed(json!({
            "id": "00112233aabbccdd", "state": "firing", "severity": "critical", "rule": "RoomTooHot",
            "labels": {"alertname": "RoomTooHot", "room": "a", "host": "dc-1", "tenant": "default"},
            "acknowledged": {"by": "alice", "at_ms": 0, "comment": ""}, "annotations": {"summary": "room a at 35.5°C"},
            "since_ms": 0, "value": 35.5, "escalation_level": 0
        }))];
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
        let silences = vec![typed(json!({
            "id": "9c1d2e3f4a5b6c7d", "matchers": {"host": "web-1"}, "starts_ms": 0,
            "ends_ms": 1_767_225_600_000i64, "created_by": "alice", "comment": "maintenance"
        }))];
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
