//! Nuclei JSONL output (`nuclei -jsonl`): one JSON object per line, each a matched template
//! on a host. A bad line is reported with its line number.

use secumon_core::Finding;
use serde::Deserialize;

use crate::{FindingsParser, ParseError, finding, severity_from_name};

pub struct Nuclei;

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "template-id")]
    template_id: String,
    host: String,
    #[serde(rename = "matched-at", default)]
    matched_at: String,
    info: Info,
}

#[derive(Deserialize)]
struct Info {
    name: String,
    severity: String,
    #[serde(default)]
    description: String,
}

impl FindingsParser for Nuclei {
    fn format(&self) -> &'static str {
        "nuclei"
    }

    fn detect(&self, text: &str) -> bool {
        text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.contains("\"template-id\""))
    }

    fn parse(&self, text: &str, origin: &str) -> Result<Vec<Finding>, ParseError> {
        let mut findings = Vec::new();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let entry: Line = serde_json::from_str(line)
                .map_err(|e| ParseError::new(origin, number + 1, e.column(), e.to_string()))?;
            // The same template on another URL of the host is another finding.
            let id = if entry.matched_at.is_empty() || entry.matched_at == entry.host {
                entry.template_id.clone()
            } else {
                format!("{}@{}", entry.template_id, entry.matched_at)
            };
            findings.push(finding(
                id,
                severity_from_name(&entry.info.severity),
                entry.host,
                entry.info.name,
                entry.info.description,
            ));
        }
        Ok(findings)
    }
}
