//! Trivy JSON reports (`trivy image --format json`, schema version 2): each vulnerability of
//! each result, on the scanned artifact.

use secumon_core::Finding;
use serde::Deserialize;

use crate::{FindingsParser, ParseError, finding, json, severity_from_name};

pub struct Trivy;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    artifact_name: String,
    #[serde(default)]
    results: Vec<Result>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Result {
    target: String,
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    pkg_name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: String,
    severity: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
}

impl FindingsParser for Trivy {
    fn format(&self) -> &'static str {
        "trivy"
    }

    fn detect(&self, text: &str) -> bool {
        text.contains("\"ArtifactName\"") && text.contains("\"SchemaVersion\"")
    }

    fn parse(&self, text: &str, origin: &str) -> std::result::Result<Vec<Finding>, ParseError> {
        let document: Document = json(text, origin)?;
        let mut findings = Vec::new();
        for result in document.results {
            for v in result.vulnerabilities {
                // One package can carry the same CVE in several places: the id says which.
                let id = format!("{}:{}", v.vulnerability_id, v.pkg_name);
                let title = if v.title.is_empty() { v.vulnerability_id.clone() } else { v.title };
                let fix = if v.fixed_version.is_empty() {
                    "no fix yet".to_string()
                } else {
                    format!("fixed in {}", v.fixed_version)
                };
                let description =
                    format!("{} {} in {} ({fix}). {}", v.pkg_name, v.installed_version, result.target, v.description);
                findings.push(finding(
                    id,
                    severity_from_name(&v.severity),
                    document.artifact_name.clone(),
                    title,
                    description.trim().to_string(),
                ));
            }
        }
        Ok(findings)
    }
}
