//! `secumon findings import|list`: scanner reports into the server, findings out.

use std::path::PathBuf;
use std::process::ExitCode;

use secumon_api::{Finding, FindingStatus, FindingsQuery, ImportQuery};

use crate::api_client::{client, emit, json_text, refused};

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
    let api = client(&args.server)?;
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
            let query = ImportQuery {
                format: Some(report.format.to_string()),
                full_scan: Some(!partial),
                origin: Some(origin.clone()),
            };
            let answer = api.import_findings(&query, text.into_bytes()).await;
            bar.finish_and_clear();
            let result = match answer {
                Ok(result) => result,
                Err(error) => return refused(error, &args.server),
            };
            let text = if args.json {
                json_text(&result)?
            } else {
                format!(
                    "{}: {} findings ({}): {} new, {} reopened, {} fixed, {} unchanged\n",
                    origin, result.findings, result.format, result.new, result.reopened, result.fixed, result.unchanged
                )
            };
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        FindingsCommand::List { asset, severity, status, limit } => {
            let query = FindingsQuery { asset, severity, status, limit: Some(limit), offset: None };
            let list = match api.findings(&query).await {
                Ok(list) => list,
                Err(error) => return refused(error, &args.server),
            };
            let text = if args.json { json_text(&list)? } else { render(&list.findings) };
            emit(&text)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no finding\n".to_string();
    }
    let mut out = format!("{:<8}  {:<6}  {:<32}  {:<36}  TITLE\n", "SEVERITY", "STATUS", "ASSET", "ID");
    for f in findings {
        out.push_str(&format!(
            "{:<8}  {:<6}  {:<32}  {:<36}  {}\n",
            f.severity.as_str(),
            match f.status {
                FindingStatus::Open => "open",
                FindingStatus::Fixed => "fixed",
            },
            f.asset,
            f.id,
            f.title
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_findings() {
        let findings = vec![Finding {
            id: "CVE-2024-3094".into(),
            severity: secumon_api::Severity::Critical,
            asset: "web-1".into(),
            title: "xz backdoor".into(),
            description: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            status: FindingStatus::Open,
        }];
        let table = render(&findings);
        assert!(table.lines().nth(1).unwrap().starts_with("critical  open    web-1"));
        assert!(table.ends_with("xz backdoor\n"));
        assert_eq!(render(&[]), "no finding\n");
    }
}
