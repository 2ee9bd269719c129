//! `secumon audit`: the audit log of administrative actions, newest first, through the
//! REST API (`GET /api/v1/audit`), as a table or the API's JSON.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use secumon_api::{AuditQuery, AuditView};

use crate::api_client::{client, emit, json_text, refused};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Server REST address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Entries of this recent period only: `24h`, `7d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only this actor's: a user name, or `key:<id>`.
    #[arg(long)]
    actor: Option<String>,
    /// Only this action: `user.create`, `api_key.revoke`, `alert_rule.update`, ...
    #[arg(long)]
    action: Option<String>,
    /// One tenant's entries (a super-admin's choice; a super-admin sees all by default).
    #[arg(long)]
    tenant: Option<String>,
    /// At most this many entries (1 to 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = args.since.map(|since| secumon_core::now_ms().saturating_sub(since.as_millis() as i64));
    let query = AuditQuery {
        since,
        actor: args.actor,
        action: args.action,
        tenant: args.tenant,
        limit: Some(args.limit),
        ..Default::default()
    };
    let list = match client(&args.server)?.audit(&query).await {
        Ok(list) => list,
        Err(error) => return refused(error, &args.server),
    };
    if args.json {
        emit(&json_text(&list)?)?;
    } else {
        emit(&render(&list.entries))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per entry: when (UTC), tenant, actor, client address, action, target, detail.
fn render(entries: &[AuditView]) -> String {
    if entries.is_empty() {
        return "no audit entry\n".to_string();
    }
    let mut out = format!(
        "{:<20}  {:<12}  {:<16}  {:<15}  {:<22}  {:<16}  DETAIL\n",
        "AT", "TENANT", "ACTOR", "FROM", "ACTION", "TARGET"
    );
    for entry in entries {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(entry.at_ms.max(0) as u64);
        let at = humantime::format_rfc3339_seconds(at).to_string();
        let detail = match &entry.detail {
            Value::Object(map) if map.is_empty() => String::new(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        out.push_str(&format!(
            "{at:<20}  {:<12}  {:<16}  {:<15}  {:<22}  {:<16}  {detail}\n",
            entry.tenant, entry.actor, entry.client_ip, entry.action, entry.target,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_entries_as_a_table() {
        let entries = vec![AuditView {
            id: 7,
            tenant: "acme".into(),
            at_ms: 1_767_225_600_000,
            actor: "alice".into(),
            client_ip: "127.0.0.1".into(),
            action: "user.update".into(),
            target: "bob".into(),
            detail: json!({"role": "viewer"}),
        }];
        let table = render(&entries);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("AT") && lines[0].ends_with("DETAIL"), "{table}");
        assert!(lines[1].starts_with("2026-01-01T00:00:00Z  acme"), "{table}");
        for part in ["alice", "127.0.0.1", "user.update", "bob", "{\"role\":\"viewer\"}"] {
            assert!(lines[1].contains(part), "{part} in {table}");
        }
        assert_eq!(render(&[]), "no audit entry\n");
    }
}
