//! Alert rules as written in YAML (`rules:` files) and their validated, compiled form.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use secumon_core::config::{ConfigError, load_yaml, parse_yaml};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::expr::Condition;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    Info,
    Warning,
    Critical,
}

/// A rules file: `rules: [ ... ]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub rules: Vec<Rule>,
    /// Notification channels the rules name.
    #[serde(default)]
    pub channels: BTreeMap<String, crate::notify::ChannelConfig>,
}

impl RuleFile {
    /// Reads a rules file; a bad expression is reported with its file, line and key like
    /// any other configuration error.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_yaml(path)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        parse_yaml(text, origin)
    }
}

/// One metric alert rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A comparison in the supported PromQL subset, e.g. `avg by (host) (cpu_usage_ratio) > 0.9`.
    #[serde(rename = "expr", deserialize_with = "condition")]
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_duration: Duration,
    /// How long the condition must stay false before a firing alert resolves (flap guard).
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Duration,
    pub severity: AlertSeverity,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Texts with `{{ $labels.NAME }}` and `{{ $value }}` filled in per alert.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Notification channels, by name: the first level.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Further levels, notified in turn while a firing alert stays unacknowledged.
    #[serde(default)]
    pub escalation: Vec<EscalationLevel>,
    /// Alerts sharing these labels are notified together; unset, each alert alone.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// How long a group gathers alerts before it is sent (0: only those changing together).
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Duration,
}

/// One escalation step: `after` this long firing and unacknowledged, tell `channels` too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    pub channels: Vec<String>,
}

fn condition<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Condition, D::Error> {
    let text = String::deserialize(deserializer)?;
    Condition::parse(&text).map_err(|e| D::Error::custom(format!("{e} in {text:?}")))
}

/// Fills `{{ $labels.NAME }}` and `{{ $value }}` in an annotation.
pub fn render_template(template: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let token = rest[start + 2..start + end].trim();
        match token.strip_prefix("$labels.") {
            Some(name) => out.push_str(labels.get(name).map(String::as_str).unwrap_or("")),
            None if token == "$value" => out.push_str(&format!("{value}")),
            None => out.push_str(&rest[start..start + end + 2]),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_rules_file() {
        let text = r#"
rules:
  - name: HostCpuHigh
    expr: avg by (host) (cpu_usage_ratio) > 0.9
    for: 2m
    resolve_after: 1m
    severity: critical
    labels: {team: ops}
    annotations:
      summary: "CPU at {{ $value }} on {{ $labels.host }}"
    channels: [ops-mail, ops-slack]
"#;
        let file = RuleFile::parse(text, "rules.yaml").unwrap();
        let rule = &file.rules[0];
        assert_eq!(rule.name, "HostCpuHigh");
        assert_eq!(rule.for_duration, Duration::from_secs(120));
        assert_eq!(rule.resolve_after, Duration::from_secs(60));
        assert_eq!(rule.severity, AlertSeverity::Critical);
        assert_eq!(rule.channels, vec!["ops-mail", "ops-slack"]);
        assert_eq!(rule.condition.threshold, 0.9);
    }

    #[test]
    fn the_example_file_parses() {
        let file = RuleFile::parse(include_str!("../../../examples/alerting.yaml"), "examples/alerting.yaml").unwrap();
        assert_eq!(file.rules.len(), 4);
        assert!(file.rules.iter().all(|r| r.channels.iter().all(|c| file.channels.contains_key(c))));
    }

    #[test]
    fn a_bad_expression_names_file_line_and_key() {
        let text = "rules:\n  - name: X\n    expr: rate(x) > 1\n    severity: info\n";
        let err = RuleFile::parse(text, "rules.yaml").unwrap_err().to_string();
        // serde_yaml_ng places errors raised inside a value at the start of its mapping.
        assert!(err.starts_with("rules.yaml:2:") || err.starts_with("rules.yaml:3:"), "{err}");
        assert!(err.contains("rate"), "{err}");
        assert!(err.contains("rules[0].expr"), "{err}");
    }

    #[test]
    fn templates_fill_labels_and_value() {
        let labels = BTreeMap::from([("host".to_string(), "web-1".to_string())]);
        assert_eq!(
            render_template("{{ $labels.host }} at {{$value}} {{ $labels.nope }}{{ other }}", &labels, 0.95),
            "web-1 at 0.95 {{ other }}"
        );
        assert_eq!(render_template("unclosed {{ $value", &labels, 1.0), "unclosed {{ $value");
    }
}
