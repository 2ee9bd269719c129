//! `secumon report`: a tenant's report over a period, fetched from the server's API
//! (`GET /api/v1/reports`) and rendered here to PDF, Excel, HTML or JSON by
//! [`secumon_report`], so every format shows the API's numbers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use secumon_api::ReportQuery;
use secumon_report::Format;

use crate::api_client::{client_builder, refused};

/// What `secumon report` takes.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// Server REST address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Another tenant's report (a super-admin's choice).
    #[arg(long)]
    tenant: Option<String>,
    /// How far back from now: `1h` to `366d`.
    #[arg(long, default_value = "30d")]
    period: String,
    /// `pdf`, `xlsx`, `html` or `json`.
    #[arg(long, default_value = "pdf", value_parser = ["pdf", "xlsx", "html", "json"])]
    format: String,
    /// Where to write it; `-` for standard output. Default: standard output for json and
    /// html, else `secumon-report-TENANT-DATE.EXT` in the current directory.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// `secumon report`.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args.format.parse()?;
    // A long period over many hosts takes the server a while to compute.
    let api = client_builder(&args.server)
        .tenant(args.tenant.clone())
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .with_context(|| format!("cannot use the server address {:?}", args.server))?;
    let query = ReportQuery { period: Some(args.period.clone()), end_ms: None };
    let report = match api.report(&query).await {
        Ok(report) => report,
        Err(error) => return refused(error, &args.server),
    };
    let bytes = secumon_report::render(&report, format)?;
    let to_stdout = match &args.output {
        Some(path) => path.as_os_str() == "-",
        None => matches!(format, Format::Json | Format::Html),
    };
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e).context("writing the report"),
            _ => {}
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.output.unwrap_or_else(|| PathBuf::from(secumon_report::file_name(&report, format)));
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {} ({} bytes, {} report of {} over {})",
        path.display(),
        bytes.len(),
        format,
        report.tenant,
        report.period
    );
    Ok(ExitCode::SUCCESS)
}
