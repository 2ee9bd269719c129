//! Alert rules as written in YAML (`rules:` files) and their validated, compiled form.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use secumon_core::config::{ConfigError, load_yaml, parse_yaml};
pub use secumon_core::rules::{AlertSeverity, EscalationLevel, RuleSpec, SourceKind};
use secumon_core::{CheckStatus, Labels, Severity};
use serde::{Deserialize, Serialize};

use crate::expr::{Comparison, Condition};

/// A rules file: `rules: [ ... ]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// The rules, each checked and compiled as the file is read.
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

    /// Reads rules from `text`; errors name `origin` (a file name) with line and key.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        parse_yaml(text, origin)
    }
}

/// A rule's condition, compiled.
#[derive(Debug, Clone)]
pub enum RuleSource {
    /// Metric and check rules: a PromQL condition over series (check results are series
    /// too, see [`secumon_core::CheckResult::metric_samples`]).
    Series(Condition),
    /// Agent rules: an agent silent this long is down.
    Agent {
        /// How long without a batch.
        no_data: Duration,
    },
    /// Log rules: matching lines counted over a window, compared with a threshold.
    Log {
        /// What a line must match.
        pattern: Regex,
        /// Only lines from sources containing this text, if set.
        source: Option<String>,
        /// How far back lines are counted.
        window: Duration,
        /// How the count is compared (`count > 10`).
        comparison: Comparison,
        /// The number the count is compared with.
        threshold: f64,
    },
    /// Finding rules: open findings compared by severity (`severity >= critical`).
    Finding {
        /// How a finding's severity is compared.
        comparison: Comparison,
        /// The severity compared with.
        severity: Severity,
    },
}

/// A validated rule: what was written and its compiled condition.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RuleSpec", into = "RuleSpec")]
pub struct Rule {
    /// What was written.
    pub spec: RuleSpec,
    /// Its compiled condition.
    pub source: RuleSource,
}

impl From<Rule> for RuleSpec {
    fn from(rule: Rule) -> Self {
        rule.spec
    }
}

impl TryFrom<RuleSpec> for Rule {
    type Error = String;

    fn try_from(spec: RuleSpec) -> Result<Self, String> {
        let source = compile(&spec).map_err(|e| format!("rule {:?}: {e}", spec.name))?;
        Ok(Self { spec, source })
    }
}

impl Rule {
    /// Checks a rule sent to the API the way a rules file is checked.
    pub fn from_spec(spec: RuleSpec) -> Result<Self, String> {
        Self::try_from(spec)
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The PromQL condition of metric and check rules.
    pub fn condition(&self) -> Option<&Condition> {
        match &self.source {
            RuleSource::Series(condition) => Some(condition),
            _ => None,
        }
    }
}

/// The start of a possibly huge expression, for error messages.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 120;
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The longest any duration of a rule may be: the engine adds them to timestamps.
const MAX_RULE_DURATION: Duration = Duration::from_secs(366 * 86_400);

fn check_durations(spec: &RuleSpec) -> Result<(), String> {
    let durations = [
        ("for", Some(spec.for_duration)),
        ("resolve_after", Some(spec.resolve_after)),
        ("no_data", spec.no_data),
        ("window", spec.window),
        ("group_wait", Some(spec.group_wait)),
    ]
    .into_iter()
    .chain(spec.escalation.iter().map(|level| ("escalation.after", Some(level.after))));
    for (key, duration) in durations {
        if duration.is_some_and(|d| d > MAX_RULE_DURATION) {
            return Err(format!("`{key}` is at most 366 days"));
        }
    }
    Ok(())
}

fn compile(spec: &RuleSpec) -> Result<RuleSource, String> {
    check_durations(spec)?;
    for (key, template) in &spec.annotations {
        crate::template::check_template(template).map_err(|e| format!("annotation `{key}`: {e}"))?;
    }
    let expr = spec.expr.as_deref().map(str::trim);
    let allowed: &[&str] = match spec.source {
        SourceKind::Metric => &["expr", "no_data"],
        SourceKind::Finding => &["expr"],
        SourceKind::Check => &["expr", "check", "no_data"],
        SourceKind::Agent => &["no_data", "api_sources"],
        SourceKind::Log => &["expr", "pattern", "log_source", "window"],
    };
    let given = [
        ("expr", spec.expr.is_some()),
        ("check", !spec.check.is_empty()),
        ("no_data", spec.no_data.is_some()),
        ("api_sources", spec.api_sources),
        ("pattern", spec.pattern.is_some()),
        ("log_source", spec.log_source.is_some()),
        ("window", spec.window.is_some()),
    ];
    if let Some((key, _)) = given.iter().find(|(key, set)| *set && !allowed.contains(key)) {
        return Err(format!("`{key}` does not apply to {:?} rules", spec.source));
    }
    let needs = |key: &str| format!("{:?} rules need `{key}`", spec.source).to_lowercase();
    match spec.source {
        SourceKind::Metric => {
            let text = expr.ok_or_else(|| needs("expr"))?;
            Ok(RuleSource::Series(Condition::parse(text).map_err(|e| format!("`expr`: {e} in {:?}", excerpt(text)))?))
        }
        SourceKind::Check => {
            let text = expr.ok_or_else(|| needs("expr"))?;
            check_condition(text, &spec.check)
                .map(RuleSource::Series)
                .map_err(|e| format!("`expr`: {e} in {:?}", excerpt(text)))
        }
        SourceKind::Agent => Ok(RuleSource::Agent { no_data: spec.no_data.ok_or_else(|| needs("no_data"))? }),
        SourceKind::Log => {
            let pattern = spec.pattern.as_deref().ok_or_else(|| needs("pattern"))?;
            let pattern = Regex::new(pattern).map_err(|e| format!("`pattern`: {e}"))?;
            let (comparison, threshold) = match expr {
                None => (Comparison::Greater, 0.0),
                Some(text) => match split_comparison(text) {
                    Some(("count", comparison, number)) => (
                        comparison,
                        number.parse().map_err(|_| format!("`expr`: {number:?} is not a number in {text:?}"))?,
                    ),
                    _ => return Err(format!("`expr`: log rules compare the count, e.g. `count > 10`, not {text:?}")),
                },
            };
            let window = spec.window.unwrap_or(Duration::from_secs(300));
            Ok(RuleSource::Log { pattern, source: spec.log_source.clone(), window, comparison, threshold })
        }
        SourceKind::Finding => {
            let text = expr.unwrap_or("severity >= critical");
            match split_comparison(text) {
                Some(("severity", comparison, level)) => {
                    let severity = serde_json::from_value(serde_json::Value::String(level.to_lowercase()))
                        .map_err(|_| format!("`expr`: {level:?} is not info, low, medium, high or critical"))?;
                    Ok(RuleSource::Finding { comparison, severity })
                }
                _ => Err(format!("`expr`: finding rules compare the severity, e.g. `severity >= high`, not {text:?}")),
            }
        }
    }
}

/// `NAME OP VALUE` on a check's series: `status` against ok/warning/critical/unknown,
/// `duration` against seconds or a duration like `2s`, any other name against a number.
fn check_condition(text: &str, matchers: &Labels) -> Result<Condition, String> {
    let (name, comparison, value) =
        split_comparison(text).ok_or("a check condition looks like `status != ok` or `duration > 2s`")?;
    let (metric, number) = match name {
        "status" => {
            let status: CheckStatus = serde_json::from_value(serde_json::Value::String(value.to_lowercase()))
                .map_err(|_| format!("{value:?} is not ok, warning, critical or unknown"))?;
            ("check_status", status.code())
        }
        "duration" | "latency" => {
            let seconds = match value.parse::<f64>() {
                Ok(seconds) => seconds,
                Err(_) => humantime::parse_duration(value)
                    .map_err(|_| format!("{value:?} is neither seconds nor a duration like 2s"))?
                    .as_secs_f64(),
            };
            ("check_duration_seconds", seconds)
        }
        other => (other, value.parse().map_err(|_| format!("{value:?} is not a number"))?),
    };
    let matchers: Vec<String> =
        matchers.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    let promql = format!("{metric}{{{}}} {} {number}", matchers.join(","), comparison.symbol());
    Condition::parse(&promql).map_err(|e| e.to_string())
}

/// Splits `left OP right` at the first comparison operator.
fn split_comparison(text: &str) -> Option<(&str, Comparison, &str)> {
    let at = text.find(['<', '>', '=', '!'])?;
    let op_len = if text[at + 1..].starts_with('=') { 2 } else { 1 };
    let comparison = Comparison::from_symbol(&text[at..at + op_len])?;
    Some((text[..at].trim(), comparison, text[at + op_len..].trim()))
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
        assert_eq!(rule.name(), "HostCpuHigh");
        assert_eq!(rule.spec.for_duration, Duration::from_secs(120));
        assert_eq!(rule.spec.resolve_after, Duration::from_secs(60));
        assert_eq!(rule.spec.severity, AlertSeverity::Critical);
        assert_eq!(rule.spec.channels, vec!["ops-mail", "ops-slack"]);
        assert_eq!(rule.condition().unwrap().threshold, 0.9);
    }

    #[test]
    fn durations_beyond_a_year_are_refused() {
        for key in ["for", "resolve_after"] {
            let text = format!("rules:\n  - {{name: X, expr: x > 1, severity: info, {key}: 500000000y}}\n");
            let error = RuleFile::parse(&text, "r.yaml").unwrap_err().to_string();
            assert!(error.contains(key) && error.contains("366 days"), "{error}");
        }
        let text = "rules:\n  - {name: X, source: agent, no_data: 1000y, severity: info}\n";
        assert!(RuleFile::parse(text, "r.yaml").unwrap_err().to_string().contains("no_data"));
    }

    #[test]
    fn deeply_nested_yaml_is_an_error_not_a_crash() {
        for text in [
            format!("rules: {}{}", "[".repeat(5_000), "]".repeat(5_000)),
            format!("rules:\n  - name: {}x{}", "{a: ".repeat(5_000), "}".repeat(5_000)),
        ] {
            let error = RuleFile::parse(&text, "deep.yaml").unwrap_err().to_string();
            assert!(error.starts_with("deep.yaml:"), "{error}");
        }
    }

    #[test]
    fn the_example_file_parses() {
        let file = RuleFile::parse(include_str!("../../examples/alerting.yaml"), "examples/alerting.yaml").unwrap();
        assert_eq!(file.rules.len(), 13);
        let skew = file.rules.iter().find(|r| r.spec.name == "ClockSkew").expect("the clock rule ships");
        assert_eq!(skew.condition().unwrap().threshold, 60.0);
        assert!(file.rules.iter().all(|r| r.spec.channels.iter().all(|c| file.channels.contains_key(c))));
    }

    #[test]
    fn a_bad_expression_names_file_line_and_key() {
        let text = "rules:\n  - name: X\n    expr: rate(x) > 1\n    severity: info\n";
        let err = RuleFile::parse(text, "rules.yaml").unwrap_err().to_string();
        // serde_yaml_ng places errors raised inside a value at the start of its mapping.
        assert!(err.starts_with("rules.yaml:2:") || err.starts_with("rules.yaml:3:"), "{err}");
        assert!(err.contains("rate"), "{err}");
        assert!(err.contains("rules[0]") && err.contains("`expr`"), "{err}");
    }

    #[test]
    fn each_source_checks_its_own_keys() {
        let err = |rule: &str| RuleFile::parse(&format!("rules:\n  - {rule}\n"), "r.yaml").unwrap_err().to_string();
        assert!(err("{name: A, source: agent, severity: info}").contains("agent rules need `no_data`"));
        assert!(
            err("{name: A, source: agent, no_data: 2m, expr: x > 1, severity: info}").contains("`expr` does not apply")
        );
        assert!(err("{name: L, source: log, pattern: '(', severity: info}").contains("`pattern`"));
        assert!(err("{name: L, source: log, pattern: x, expr: lines > 2, severity: info}").contains("count > 10"));
        assert!(err("{name: C, source: check, expr: status != broken, severity: info}").contains("broken"));
        assert!(err("{name: C, source: check, expr: duration > soon, severity: info}").contains("soon"));
        assert!(err("{name: F, source: finding, expr: severity >= dire, severity: info}").contains("dire"));
        assert!(err("{name: M, severity: info}").contains("metric rules need `expr`"));
    }

    #[test]
    fn check_rules_compile_to_series_conditions_with_their_matchers() {
        let file = RuleFile::parse(
            "rules:\n  - {name: C, source: check, check: {target: 'a\"b'}, expr: tls_cert_days_to_expiry < 14, severity: info}\n",
            "r.yaml",
        )
        .unwrap();
        let condition = file.rules[0].condition().unwrap();
        assert_eq!(condition.threshold, 14.0);
        let series = |target: &str| {
            secumon_core::SeriesKey::new(
                "tls_cert_days_to_expiry",
                Labels::from([("target".to_string(), target.to_string())]),
            )
        };
        assert!(condition.selectors()[0].matches(&series("a\"b")));
        assert!(!condition.selectors()[0].matches(&series("other")));
    }

    #[test]
    fn a_rule_serialises_back_to_what_was_written() {
        let text = "rules:\n  - {name: L, source: log, pattern: oops, window: 2m, expr: count > 1, severity: info}\n";
        let rule = &RuleFile::parse(text, "r.yaml").unwrap().rules[0];
        let json = serde_json::to_value(rule).unwrap();
        assert_eq!(json["source"], "log");
        assert_eq!(json["window"], "2m");
        let back: Rule = serde_json::from_value(json).unwrap();
        assert_eq!(back.spec, rule.spec);
    }
}
