//! SARIF 2.1.0 (CodeQL, Semgrep, Trivy's SARIF mode...): each result of each run, severity
//! from the rule's `security-severity` score when present, else the result's level; the
//! asset is the run's `automationDetails.id` when set, else the first result location.

use secumon_core::Finding;
use serde::Deserialize;
use serde_json::Value;

use crate::{FindingsParser, ParseError, finding, json, severity_from_name, severity_from_score};

pub struct Sarif;

#[derive(Deserialize)]
struct Document {
    version: String,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: Value,
    #[serde(default)]
    automation_details: Option<Value>,
    #[serde(default)]
    results: Vec<SarifResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    #[serde(default)]
    level: Option<String>,
    message: Value,
    #[serde(default)]
    locations: Vec<Value>,
}

impl FindingsParser for Sarif {
    fn format(&self) -> &'static str {
        "sarif"
    }

    fn detect(&self, text: &str) -> bool {
        text.contains("\"runs\"")
            && (text.contains("sarif-schema")
                || text.contains("\"version\": \"2.1.0\"")
                || text.contains("\"version\":\"2.1.0\""))
    }

    fn parse(&self, text: &str, origin: &str) -> Result<Vec<Finding>, ParseError> {
        let document: Document = json(text, origin)?;
        if document.version != "2.1.0" {
            return Err(ParseError::new(
                origin,
                1,
                1,
                format!("SARIF version {:?}; 2.1.0 is supported", document.version),
            ));
        }
        let mut findings = Vec::new();
        for run in document.runs {
            let rules: Vec<Value> = run.tool["driver"]["rules"].as_array().cloned().unwrap_or_default();
            let run_asset = run.automation_details.as_ref().and_then(|d| d["id"].as_str()).map(str::to_string);
            for result in run.results {
                let rule = rules.iter().find(|r| r["id"].as_str() == Some(&result.rule_id));
                let score = rule
                    .and_then(|r| r["properties"]["security-severity"].as_str().and_then(|s| s.parse::<f64>().ok()));
                let severity = match score {
                    Some(score) => severity_from_score(score),
                    None => severity_from_name(result.level.as_deref().unwrap_or("warning")),
                };
                let location = result
                    .locations
                    .first()
                    .and_then(|l| l["physicalLocation"]["artifactLocation"]["uri"].as_str())
                    .unwrap_or("")
                    .to_string();
                let asset = run_asset.clone().unwrap_or_else(|| location.clone());
                if asset.is_empty() {
                    return Err(ParseError::new(
                        origin,
                        0,
                        0,
                        format!("result {:?} has no location and the run no automationDetails.id", result.rule_id),
                    ));
                }
                let title =
                    rule.and_then(|r| r["shortDescription"]["text"].as_str()).unwrap_or(&result.rule_id).to_string();
                let message = result.message["text"].as_str().unwrap_or("").to_string();
                let id = if location.is_empty() || run_asset.is_none() {
                    result.rule_id.clone()
                } else {
                    format!("{}@{location}", result.rule_id)
                };
                findings.push(finding(id, severity, asset, title, message));
            }
        }
        Ok(findings)
    }
}
