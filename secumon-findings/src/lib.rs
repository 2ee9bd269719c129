//! Vulnerability findings from scanners. Each report format is a [`FindingsParser`]; [`parse`]
//! picks the parser (or detects it) and returns every finding, or an error naming the file
//! and the position where the report stops making sense: a report is taken whole or not at
//! all.
//!
//! ```
//! let report = r#"{"findings": [{"id": "CVE-2024-3094", "severity": "critical",
//!   "asset": "web-1", "title": "xz backdoor"}]}"#;
//! let parsed = secumon_findings::parse(report, "scan.json", None)?;
//! assert_eq!(parsed.format, "secumon");
//! assert_eq!(parsed.findings[0].severity, secumon_core::Severity::Critical);
//! # Ok::<(), secumon_findings::ParseError>(())
//! ```

#![warn(missing_docs)]

mod nuclei;
mod sarif;
mod secumon;
mod trivy;

use secumon_core::{Finding, FindingStatus, Severity, now_ms};

/// A report that cannot be read, with where.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct ParseError {
    /// The report's name as the caller gave it (usually its file path).
    pub origin: String,
    /// 1-based line of the problem; 0 when it concerns no position (an unknown format).
    pub line: usize,
    /// 1-based column of the problem; 0 when it concerns no position.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl ParseError {
    /// An error at `line`:`column` of `origin`; for parsers outside this crate too.
    pub fn new(origin: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Self { origin: origin.to_string(), line, column, message: message.into() }
    }

    /// From a JSON error, with its position.
    pub fn json(origin: &str, error: &serde_json::Error) -> Self {
        Self::new(origin, error.line(), error.column(), error.to_string())
    }
}

/// One report format.
pub trait FindingsParser: Send + Sync {
    /// `sarif`, `trivy`, `nuclei`, `secumon`.
    fn format(&self) -> &'static str;
    /// Whether `text` looks like this format (for `--format auto`).
    fn detect(&self, text: &str) -> bool;
    /// Every finding of the report; an error if any part is malformed.
    fn parse(&self, text: &str, origin: &str) -> Result<Vec<Finding>, ParseError>;
}

/// Every parser, in detection order (most specific first).
pub fn parsers() -> Vec<Box<dyn FindingsParser>> {
    vec![Box::new(sarif::Sarif), Box::new(trivy::Trivy), Box::new(secumon::SecuMon), Box::new(nuclei::Nuclei)]
}

/// A parsed report.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// The format it was read as ([`FindingsParser::format`]), detected or given.
    pub format: &'static str,
    /// Every finding of the report, each `Open` and first/last seen now.
    pub findings: Vec<Finding>,
}

/// Parses `text` (from `origin`, for errors) in `format`, or the format it looks like.
pub fn parse(text: &str, origin: &str, format: Option<&str>) -> Result<Report, ParseError> {
    let parsers = parsers();
    let parser = match format.filter(|f| *f != "auto") {
        Some(name) => parsers.into_iter().find(|p| p.format() == name).ok_or_else(|| {
            ParseError::new(origin, 0, 0, format!("unknown format {name:?}: sarif, trivy, nuclei, secumon or auto"))
        })?,
        None => parsers.into_iter().find(|p| p.detect(text)).ok_or_else(|| {
            ParseError::new(origin, 1, 1, "not a SARIF, Trivy, Nuclei or SecuMon report (give --format to say which)")
        })?,
    };
    Ok(Report { format: parser.format(), findings: parser.parse(text, origin)? })
}

/// A finding as scanners report it, seen now.
pub(crate) fn finding(id: String, severity: Severity, asset: String, title: String, description: String) -> Finding {
    let now = now_ms();
    Finding {
        id,
        severity,
        asset,
        title,
        description,
        first_seen_ms: now,
        last_seen_ms: now,
        status: FindingStatus::Open,
    }
}

/// `CRITICAL`, `high`, `Medium`...; `unknown` and anything else is info.
pub(crate) fn severity_from_name(name: &str) -> Severity {
    match name.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" | "error" => Severity::High,
        "medium" | "moderate" | "warning" => Severity::Medium,
        "low" | "note" => Severity::Low,
        _ => Severity::Info,
    }
}

/// A CVSS score to a severity, as NVD bands them.
pub(crate) fn severity_from_score(score: f64) -> Severity {
    match score {
        s if s >= 9.0 => Severity::Critical,
        s if s >= 7.0 => Severity::High,
        s if s >= 4.0 => Severity::Medium,
        s if s > 0.0 => Severity::Low,
        _ => Severity::Info,
    }
}

/// Deserialises a whole JSON document, with the position of the first problem.
pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::json(origin, &e))
}
