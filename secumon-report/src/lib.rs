//! SecuMon reports as files: the API's [`Report`] (what `GET /api/v1/reports` answers)
//! rendered to PDF (real text and vector bar charts, pure Rust), an Excel workbook (one
//! sheet per section, numbers as numbers), a self-contained HTML page (inline CSS and SVG)
//! or JSON. Every renderer is a pure function of the report, so a file shows exactly the
//! API's numbers; the CLI (`secumon report`) and the server's scheduled e-mails both use it.
//!
//! Every format draws from one table model ([`sections`]): the same sections, columns and
//! cells, and one text form of each value ([`Cell::text`]).
//!
//! ```no_run
//! # fn demo(report: &secumon_api::Report) -> Result<(), secumon_report::RenderError> {
//! use secumon_report::{Format, render};
//! let pdf: Vec<u8> = render(report, Format::Pdf)?;
//! std::fs::write("report.pdf", pdf).expect("writable");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod html;
mod pdf;
mod table;
mod xlsx;

pub use table::{BarChart, Cell, Section, sections, utc_text};

use secumon_api::Report;

/// A file format a report is rendered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// PDF with charts.
    Pdf,
    /// Excel workbook (`.xlsx`).
    Xlsx,
    /// One self-contained HTML page.
    Html,
    /// The API's JSON, pretty-printed.
    Json,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [Format; 4] = [Format::Pdf, Format::Xlsx, Format::Html, Format::Json];

    /// The name the CLI and schedules use (`pdf`, `xlsx`, `html`, `json`), also the file
    /// extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Xlsx => "xlsx",
            Format::Html => "html",
            Format::Json => "json",
        }
    }

    /// The MIME type of a file of this format (for an e-mail attachment).
    pub fn mime_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = RenderError;

    fn from_str(text: &str) -> Result<Self, RenderError> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == text.to_ascii_lowercase())
            .ok_or_else(|| RenderError::UnknownFormat(text.to_string()))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The format's name is none of `pdf`, `xlsx`, `html`, `json`.
    #[error("unknown report format {0:?} (pdf, xlsx, html or json)")]
    UnknownFormat(String),
    /// The Excel writer refused something.
    #[error("cannot write the workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// The JSON could not be written.
    #[error("cannot write the JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// `report` as a file of `format`.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, RenderError> {
    match format {
        Format::Pdf => Ok(pdf::render(report)),
        Format::Xlsx => xlsx::render(report),
        Format::Html => Ok(html::render(report).into_bytes()),
        Format::Json => {
            let mut bytes = serde_json::to_vec_pretty(report)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
    }
}

/// A file name for `report` in `format`: `secumon-report-TENANT-YYYY-MM-DD.EXT` (the
/// period's last day), with characters unfit for a file name replaced.
pub fn file_name(report: &Report, format: Format) -> String {
    let tenant: String = report
        .tenant
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let day = utc_text(report.to_ms - 1);
    format!("secumon-report-{tenant}-{}.{}", &day[..10], format.as_str())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use secumon_api::*;

    /// A report with a bit of everything.
    pub(crate) fn sample() -> Report {
        Report {
            tenant: "acme".into(),
            period: "1d".into(),
            from_ms: 1_700_000_000_000,
            to_ms: 1_700_086_400_000,
            generated_ms: 1_700_086_400_500,
            hosts: vec![HostAvailability {
                host: "web-1".into(),
                agent_id: "a1".into(),
                reporting_buckets: 1_380,
                expected_buckets: 1_440,
                bucket_ms: 60_000,
                availability: 1_380.0 / 1_440.0,
            }],
            checks: vec![CheckAvailability {
                check_id: "site".into(),
                kind: "http".into(),
                target: "https://example.test/".into(),
                host: "probe-1".into(),
                runs: 8,
                successes: 6,
                availability: 0.75,
            }],
            alerts: AlertSummary {
                by_severity: vec![SeverityAlerts {
                    severity: "critical".into(),
                    fired: 3,
                    acknowledged: 2,
                    resolved: 1,
                    mtta_seconds: Some(150.0),
                    mttr_seconds: Some(900.0),
                }],
                total: SeverityAlerts {
                    severity: "all".into(),
                    fired: 3,
                    acknowledged: 2,
                    resolved: 1,
                    mtta_seconds: Some(150.0),
                    mttr_seconds: Some(900.0),
                },
            },
            certificates: vec![ExpiringCertificate {
                check_id: "tls".into(),
                target: "example.test:443".into(),
                host: "probe-1".into(),
                subject: Some("CN=example.test".into()),
                not_after_ms: 1_700_086_400_000 + 5 * 86_400_000,
                days_left: 5.0,
            }],
            findings: vec![FindingCount { severity: "critical".into(), open: 4 }],
            top_hosts: TopHosts {
                cpu: vec![HostUsage { host: "web-1".into(), mean: 0.4242 }],
                memory: vec![],
                disk: vec![HostUsage { host: "db-1".into(), mean: 0.9 }],
            },
        }
    }

    #[test]
    fn formats_parse_by_name_and_refuse_others() {
        assert_eq!("PDF".parse::<Format>().unwrap(), Format::Pdf);
        assert_eq!("xlsx".parse::<Format>().unwrap(), Format::Xlsx);
        assert!("docx".parse::<Format>().is_err());
    }

    #[test]
    fn the_json_is_the_api_value_again() {
        let report = sample();
        let bytes = render(&report, Format::Json).unwrap();
        assert_eq!(serde_json::from_slice::<Report>(&bytes).unwrap(), report);
        assert_eq!(file_name(&report, Format::Pdf), "secumon-report-acme-2023-11-15.pdf");
    }
}
