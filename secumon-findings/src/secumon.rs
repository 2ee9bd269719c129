//! SecuMon's own report format: `{"findings": [{id, severity, asset, title, description?}]}`
//! (see the README), for scripts that have no standard format to hand.

use secumon_core::Finding;
use serde::Deserialize;

use crate::{FindingsParser, ParseError, finding, json, severity_from_name};

pub struct SecuMon;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    findings: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    severity: String,
    asset: String,
    title: String,
    #[serde(default)]
    description: String,
}

impl FindingsParser for SecuMon {
    fn format(&self) -> &'static str {
        "secumon"
    }

    fn detect(&self, text: &str) -> bool {
        text.trim_start().starts_with('{') && text.contains("\"findings\"")
    }

    fn parse(&self, text: &str, origin: &str) -> Result<Vec<Finding>, ParseError> {
        let document: Document = json(text, origin)?;
        document
            .findings
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                if e.id.is_empty() || e.asset.is_empty() {
                    return Err(ParseError::new(
                        origin,
                        0,
                        0,
                        format!("findings[{index}]: id and asset must not be empty"),
                    ));
                }
                Ok(finding(e.id, severity_from_name(&e.severity), e.asset, e.title, e.description))
            })
            .collect()
    }
}
