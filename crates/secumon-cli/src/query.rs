//! `secumon query`: fetches a host's metric history from the REST API and prints it as a
//! table, or as the API's JSON with `--json`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use secumon_server::History;

use crate::api_client::{emit, send};
use crate::units::human_value;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// Metric name, e.g. cpu_usage_ratio, memory_used_bytes, load1.
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

pub async fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let host = match args.host {
        Some(host) => host,
        None => secumon_agent::system_host_name()?,
    };
    let url = format!("{}/api/v1/metrics/hosts/{host}/history", args.server.trim_end_matches('/'));
    let mut params = vec![("metric", args.metric.as_str()), ("period", &args.period), ("agg", &args.agg)];
    if let Some(step) = &args.step {
        params.push(("step", step));
    }
    let body = match send(reqwest::Client::new().get(&url).query(&params), &args.server).await? {
        Ok(body) => body,
        Err(code) => return Ok(code),
    };
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&body)?))?;
    } else {
        let history: History = serde_json::from_value(body).context("unexpected answer shape")?;
        emit(&render_table(&history, &args.period))?;
        if history.series.is_empty() {
            return Ok(ExitCode::from(1));
        }
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
    use secumon_server::HistorySeries;

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
