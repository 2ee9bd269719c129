//! `secumon findings import|list`: scanner reports into the server, findings out.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use crate::api_client::{emit, send};

#[derive(clap::Args)]
pub struct FindingsArgs {
    #[command(subcommand)]
    command: FindingsCommand,
    /// Server REST address.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum FindingsCommand {
    /// Import a scanner report (SARIF 2.1.0, Trivy JSON, Nuclei JSONL, SecuMon JSON), checked
    /// here first; it is stored whole or not at all.
    ///
    /// Example: secumon findings import trivy-web.json
    Import {
        file: PathBuf,
        /// sarif, trivy, nuclei, secumon or auto.
        #[arg(long, default_value = "auto")]
        format: String,
        /// The report covers only part of its assets: do not mark what it lacks as fixed.
        #[arg(long)]
        partial: bool,
    },
    /// Findings, most severe first.
    ///
    /// Example: secumon findings list --severity high --status open
    List {
        #[arg(long)]
        asset: Option<String>,
        /// At least this severe.
        #[arg(long)]
        severity: Option<String>,
        /// open or fixed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

pub async fn run(args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let api = format!("{}/api/v1/findings", args.server.trim_end_matches('/'));
    let http = reqwest::Client::new();
    match args.command {
        FindingsCommand::Import { file, format, partial } => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(format!("reading {}", file.display()));
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) => {
                    eprintln!("secumon: {}: {error}", file.display());
                    return Ok(ExitCode::from(2));
                }
            };
            let origin = file.display().to_string();
            bar.set_message(format!("checking {} ({} bytes)", file.display(), text.len()));
            let report = match secumon_findings::parse(&text, &origin, Some(&format)) {
                Ok(report) => report,
                Err(error) => {
                    bar.finish_and_clear();
                    eprintln!("secumon: {error}");
                    return Ok(ExitCode::from(2));
                }
            };
            bar.set_message(format!("sending {} {} findings", report.findings.len(), report.format));
            let query =
                [("format", report.format), ("full_scan", if partial { "false" } else { "true" }), ("origin", &origin)];
            let answer = send(http.post(&api).query(&query).body(text), &args.server).await;
            bar.finish_and_clear();
            let body = match answer? {
                Ok(body) => body,
                Err(code) => return Ok(code),
            };
            let text = if args.json {
                format!("{}\n", serde_json::to_string_pretty(&body)?)
            } else {
                format!(
                    "{}: {} findings ({}): {} new, {} reopened, {} fixed, {} unchanged\n",
                    origin,
                    body["findings"],
                    body["format"].as_str().unwrap_or(""),
                    body["new"],
                    body["reopened"],
                    body["fixed"],
                    body["unchanged"]
                )
            };
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        FindingsCommand::List { asset, severity, status, limit } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            query.extend(asset.map(|a| ("asset", a)));
            query.extend(severity.map(|s| ("severity", s)));
            query.extend(status.map(|s| ("status", s)));
            let body = match send(http.get(&api).query(&query), &args.server).await? {
                Ok(body) => body,
                Err(code) => return Ok(code),
            };
            let findings = body["findings"].as_array().cloned().unwrap_or_default();
            let text =
                if args.json { format!("{}\n", serde_json::to_string_pretty(&body)?) } else { render(&findings) };
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render(findings: &[Value]) -> String {
    if findings.is_empty() {
        return "no finding\n".to_string();
    }
    let mut out = format!("{:<8}  {:<6}  {:<32}  {:<36}  TITLE\n", "SEVERITY", "STATUS", "ASSET", "ID");
    for f in findings {
        out.push_str(&format!(
            "{:<8}  {:<6}  {:<32}  {:<36}  {}\n",
            f["severity"].as_str().unwrap_or(""),
            f["status"].as_str().unwrap_or(""),
            f["asset"].as_str().unwrap_or(""),
            f["id"].as_str().unwrap_or(""),
            f["title"].as_str().unwrap_or("")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_findings() {
        let findings = vec![serde_json::json!({"severity": "critical", "status": "open", "asset": "web-1",
            "id": "CVE-2024-3094", "title": "xz backdoor"})];
        let table = render(&findings);
        assert!(table.lines().nth(1).unwrap().starts_with("critical  open    web-1"));
        assert!(table.ends_with("xz backdoor\n"));
        assert_eq!(render(&[]), "no finding\n");
    }
}
