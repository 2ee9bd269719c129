//! `secumon query`: fetches a host's metric history from the REST API and prints it as a
//! table, or as the API's JSON with `--json`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use secumon_api::{History, HistoryQuery};

use crate::api_client::{client, emit, refused};
use crate::units::human_value;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Metric name, optionally with label matchers (`=`, `!=`), e.g. cpu_usage_ratio,
    /// load1, 'filesystem_used_ratio{mountpoint="/"}'. A `host` matcher picks the host.
    metric: String,
    /// Host to query; defaults to this machine's host name.
    #[arg(long)]
    host: Option<String>,
    /// How far back from now.
    #[arg(long, default_value = "1h")]
    period: String,
    /// Bucket width (default: period / 60).
    #[arg(long)]
    step: Option<String>,
    /// avg, min, max, sum, count, last or p95.
    #[arg(long, default_value = "avg")]
    agg: String,
    /// Server REST address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SECUMON_SERVER")]
    server: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One label matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    label: String,
    equal: bool,
    value: String,
}

impl Matcher {
    fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        (labels.get(&self.label).map(String::as_str).unwrap_or("") == self.value) == self.equal
    }
}

/// `name` or `name{label="value",label!="value"}`: what `secumon query` can ask the history
/// endpoint (one metric of one host) and filter here. Anything else (functions, operators,
/// regex matchers, ranges) is refused with a message that says so, rather than sent as a
/// metric name that can only come back empty.
fn parse_selector(text: &str) -> Result<(String, Vec<Matcher>), String> {
    let unsupported = |what: &str| {
        format!(
            "`{text}`: {what}; `secumon query` takes one metric name with optional label matchers \
             (`=`, `!=`), e.g. 'filesystem_used_ratio{{mountpoint=\"/\"}}' (PromQL expressions are \
             for alert rules: `secumon rules test`)"
        )
    };
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(at) => (&text[..at], Some(&text[at..])),
        None => (text, None),
    };
    let name = name.trim();
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    if !is_name(name) {
        return Err(unsupported(if name.contains('(') {
            "functions are not supported"
        } else if name.contains('[') {
            "range vectors are not supported"
        } else if name.is_empty() {
            "a metric name is needed before the braces"
        } else {
            "this is not a metric name (operators are not supported)"
        }));
    }
    let Some(rest) = rest else { return Ok((name.to_string(), Vec::new())) };
    let Some(body) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return Err(unsupported("only a selector may follow the metric name (no range, operator or function)"));
    };
    let mut matchers = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let label_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let label = &rest[..label_end];
        let after = rest[label_end..].trim_start();
        let (equal, after) = if let Some(after) = after.strip_prefix("!=") {
            (false, after)
        } else if after.starts_with("=~") || after.starts_with("!~") {
            return Err(unsupported("regular-expression matchers (=~, !~) are not supported"));
        } else if let Some(after) = after.strip_prefix('=') {
            (true, after)
        } else {
            return Err(unsupported("a matcher is `label=\"value\"` or `label!=\"value\"`"));
        };
        if label.is_empty() {
            return Err(unsupported("a matcher needs a label name"));
        }
        let after = after.trim_start();
        let Some(quoted) = after.strip_prefix('"') else {
            return Err(unsupported("matcher values are double-quoted"));
        };
        let (value, after) = unquote(quoted).map_err(unsupported)?;
        matchers.push(Matcher { label: label.to_string(), equal, value });
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok((name.to_string(), matchers))
}

/// A double-quoted value's text after its opening quote: the value, with PromQL's escapes
/// (`\"`, `\\`, `\n`, `\t`, `\r`) undone, and what follows the closing quote. Other escapes
/// are refused rather than guessed at, so a value never silently matches something else.
fn unquote(quoted: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &quoted[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '"')) => value.push('"'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some(_) => return Err("in a matcher value, only \\\", \\\\, \\n, \\t and \\r are escapes"),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a matcher value is not closed")
}

pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let (metric, mut matchers) = match parse_selector(&args.metric) {
        Ok(selector) => selector,
        Err(message) => {
            eprintln!("secumon: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    // `{host="web-1"}` names the host the way --host does.
    let host_matcher = matchers.iter().position(|m| m.label == "host" && m.equal);
    let host = match (args.host, host_matcher) {
        (Some(host), _) => host,
        (None, Some(at)) => matchers.remove(at).value,
        (None, None) => secumon_agent::system_host_name()?,
    };
    let query = HistoryQuery {
        metric: Some(metric.clone()),
        period: Some(args.period.clone()),
        step: args.step.clone(),
        agg: Some(args.agg.clone()),
    };
    let mut history = match client(&args.server)?.host_history(&host, &query).await {
        Ok(history) => history,
        Err(error) => return refused(error, &args.server),
    };
    let before = history.series.len();
    let mut seen: Vec<String> = Vec::new();
    if !matchers.is_empty() {
        history.series.retain(|series| {
            let keep = matchers.iter().all(|m| m.matches(&series.labels));
            if !keep {
                seen.extend(
                    matchers.iter().filter_map(|m| series.labels.get(&m.label).map(|v| format!("{}={v:?}", m.label))),
                );
            }
            keep
        });
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&history)?))?;
    } else if history.series.is_empty() && before > 0 {
        // There is data, only none of it matches: "no data for ..." on stdout would
        // contradict the message below, which says what is there.
    } else {
        emit(&render_table(&history, &args.period))?;
    }
    if history.series.is_empty() {
        if before > 0 {
            seen.sort();
            seen.dedup();
            eprintln!(
                "secumon: {before} series of {metric} on {host}, none matching {}; their values: {}",
                args.metric,
                if seen.is_empty() { "none of those labels".to_string() } else { seen.join(", ") }
            );
        } else {
            eprintln!(
                "secumon: the server has no {metric} for host {host:?} in the last {}: check the metric name \
                 (README, \"What the agent collects\") and the host (--host; `GET /api/v1/agents` lists them)",
                args.period
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// One block per series: its labels, then a `time  value` row per point.
fn render_table(history: &History, period: &str) -> String {
    let mut out = String::new();
    if history.series.is_empty() {
        let _ = writeln!(out, "no data for {} on {} in the last {period}", history.metric, history.host);
        return out;
    }
    for series in &history.series {
        let labels: Vec<String> = series
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "host" | "tenant"))
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let _ = writeln!(
            out,
            "{}{{{}}} on {} ({} per {})",
            history.metric,
            labels.join(","),
            history.host,
            history.aggregation,
            humantime::format_duration(Duration::from_millis(history.step_ms as u64))
        );
        let _ = writeln!(out, "  {:<20}  {:>16}", "TIME (UTC)", "VALUE");
        for &(timestamp_ms, value) in &series.points {
            let time =
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(timestamp_ms.max(0) as u64));
            let value = value.map_or_else(|| "NaN".to_string(), |v| human_value(&history.metric, v));
            let _ = writeln!(out, "  {:<20}  {:>16}", time.to_string().trim_end_matches('Z'), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secumon_api::HistorySeries;

    #[test]
    fn renders_one_block_per_series_without_host_and_tenant() {
        let history = History {
            host: "web-1".into(),
            metric: "cpu_core_usage_ratio".into(),
            start_ms: 0,
            end_ms: 120_000,
            step_ms: 60_000,
            aggregation: "avg".parse().unwrap(),
            series: vec![HistorySeries {
                labels: [("core", "0"), ("host", "web-1"), ("tenant", "default")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                points: vec![(1_700_000_000_000, Some(0.25)), (1_700_000_060_000, None)],
            }],
        };
        let table = render_table(&history, "1h");
        assert_eq!(
            table,
            "cpu_core_usage_ratio{core=\"0\"} on web-1 (avg per 1m)\n  TIME (UTC)                       VALUE\n  2023-11-14T22:13:20             25.0 %\n  2023-11-14T22:14:20                NaN\n"
        );
    }

    #[test]
    fn selectors_are_parsed_and_what_is_not_supported_is_said() {
        let m = |label: &str, equal, value: &str| Matcher { label: label.into(), equal, value: value.into() };
        assert_eq!(parse_selector("load1").unwrap(), ("load1".to_string(), vec![]));
        assert_eq!(
            parse_selector(r#"filesystem_used_ratio{mountpoint="/"}"#).unwrap(),
            ("filesystem_used_ratio".to_string(), vec![m("mountpoint", true, "/")])
        );
        assert_eq!(
            parse_selector(r#"cpu_core_usage_ratio{ core != "0" , host="web-1",}"#).unwrap(),
            ("cpu_core_usage_ratio".to_string(), vec![m("core", false, "0"), m("host", true, "web-1")])
        );
        for (bad, says) in [
            ("rate(cpu_seconds_total[5m])", "functions are not supported"),
            ("load1 > 2", "operators are not supported"),
            ("load1[5m]", "range vectors"),
            (r#"x{a=~"b.*"}"#, "regular-expression matchers"),
            (r#"x{a="b"}[5m]"#, "only a selector"),
            ("x{a=b}", "double-quoted"),
            (r#"x{a="b}"#, "not closed"),
            (r#"x{a="b\"}"#, "not closed"),
            (r#"x{a="b\q"}"#, "only"),
            (r#"{a="b"}"#, "a metric name is needed"),
        ] {
            let error = parse_selector(bad).unwrap_err();
            assert!(error.contains(says) && error.contains("label matchers"), "{bad}: {error}");
        }
        // Escaped quotes and backslashes are part of the value, not its end.
        assert_eq!(
            parse_selector(r#"x{path="C:\\dir \"a\", b",tab!="a\tb"}"#).unwrap(),
            ("x".to_string(), vec![m("path", true, r#"C:\dir "a", b"#), m("tab", false, "a\tb")])
        );
        assert_eq!(
            parse_selector(r#"x{a="\"",b="}"}"#).unwrap(),
            ("x".to_string(), vec![m("a", true, "\""), m("b", true, "}")])
        );
        let labels = [("mountpoint".to_string(), "/".to_string())].into_iter().collect();
        assert!(m("mountpoint", true, "/").matches(&labels));
        assert!(!m("mountpoint", false, "/").matches(&labels));
        assert!(m("device", false, "sda").matches(&labels), "a missing label is the empty value");
    }

    #[test]
    fn says_so_when_there_is_no_data() {
        let history = History {
            host: "h".into(),
            metric: "load1".into(),
            start_ms: 0,
            end_ms: 0,
            step_ms: 1000,
            aggregation: Default::default(),
            series: vec![],
        };
        assert_eq!(render_table(&history, "15m"), "no data for load1 on h in the last 15m\n");
    }
}
