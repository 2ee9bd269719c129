//! A tenant's report ([`secumon_api::Report`]) computed from the store: what
//! `GET /api/v1/reports` answers and what scheduled reports e-mail. The definitions (the
//! README's "Reports" section states them for operators):
//!
//! - **Host availability**: the period is cut in buckets aligned to the clock, those that
//!   overlap it counting (1 minute while the period lies in
//!   the raw tier; else the rollup tier's 5 minutes or 1 hour, the finest data left); a
//!   bucket counts as reporting when the host sent a sample of `cpu_usage_ratio`,
//!   `memory_used_ratio` or `filesystem_used_ratio` (every agent sends them each interval)
//!   in it. Availability = reporting buckets / buckets from the period's start, or from the
//!   host's first sample or first push when later (a host added mid-period is not down
//!   before it existed).
//! - **Check availability**: runs with status `ok` / runs, per check and probe.
//! - **Alerts**: each time an alert went firing (from inactive, pending or resolved) within
//!   the period; MTTA = mean(first acknowledgement - fire time) over those acknowledged,
//!   MTTR = mean(resolve time - fire time) over those resolved, both as of now.
//! - **Certificates**: TLS checks' (and HTTPS checks') latest certificate whose `notAfter`
//!   is within 30 days of the period's end (or past).
//! - **Findings**: open findings by severity, now.
//! - **Top hosts**: mean of each host's samples over the period, ten highest.

use std::collections::{BTreeMap, HashMap};

use secumon_alert::{AlertSeverity, AlertState, alert_id};
use secumon_api::{
    AlertSummary, CheckAvailability, ExpiringCertificate, FindingCount, HostAvailability, HostUsage, Report,
    SeverityAlerts, TopHosts,
};
use secumon_core::model::HOST_LABEL;
use secumon_core::{Labels, Severity};
use secumon_store::{
    Aggregation, AlertHistoryEntry, FIVE_MINUTES_MS, LatestCheck, ONE_HOUR_MS, RangeQuery, SeriesSelector, Store,
    StoreError,
};
use serde::Deserialize;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Certificates expiring within this long of the period's end are listed.
pub const CERTIFICATE_HORIZON_MS: i64 = 30 * DAY_MS;
/// The series whose samples say a host is reporting.
pub const HEARTBEAT_METRICS: [&str; 3] = ["cpu_usage_ratio", "memory_used_ratio", "filesystem_used_ratio"];
/// Hosts listed per resource among the top hosts.
const TOP_HOSTS: usize = 10;
/// Most alert history entries one report reads.
const MAX_HISTORY: u32 = 500_000;

/// Why a report could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert history of the period is too large to read at once.
    #[error("more than {MAX_HISTORY} alert history entries since the period's start: ask for a shorter period")]
    TooMuchHistory,
}

/// Computes `tenant`'s report over `[to_ms - period_ms, to_ms)`, as of `now_ms`.
pub async fn build(
    store: &dyn Store,
    tenant: &str,
    period: &str,
    period_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Report, ReportError> {
    let from_ms = to_ms - period_ms;
    let bucket_ms = bucket_width(store, tenant, from_ms, now_ms).await?;
    let hosts = host_availability(store, tenant, from_ms, to_ms, bucket_ms).await?;
    let checks = store
        .check_runs(tenant, from_ms, to_ms)
        .await?
        .into_iter()
        .map(|c| CheckAvailability {
            availability: if c.runs == 0 { 0.0 } else { c.ok as f64 / c.runs as f64 },
            check_id: c.check_id,
            kind: c.kind,
            target: c.target,
            host: c.host,
            runs: c.runs,
            successes: c.ok,
        })
        .collect::<Vec<_>>();
    let mut checks = checks;
    checks.sort_by(|a, b| a.availability.total_cmp(&b.availability).then_with(|| a.check_id.cmp(&b.check_id)));
    let history = store.alert_history_between(tenant, from_ms, now_ms.max(to_ms), MAX_HISTORY).await?;
    if history.len() >= MAX_HISTORY as usize {
        return Err(ReportError::TooMuchHistory);
    }
    let alerts = alert_summary(&history, from_ms, to_ms);
    let mut certificates: Vec<ExpiringCertificate> =
        store.latest_checks(tenant).await?.iter().filter_map(|c| expiring(c, to_ms)).collect();
    certificates.sort_by(|a, b| a.not_after_ms.cmp(&b.not_after_ms).then_with(|| a.check_id.cmp(&b.check_id)));
    let findings = finding_counts(store.open_finding_counts(tenant).await?);
    let top_hosts = TopHosts {
        cpu: top_usage(store, tenant, "cpu_usage_ratio", from_ms, to_ms).await?,
        memory: top_usage(store, tenant, "memory_used_ratio", from_ms, to_ms).await?,
        disk: top_usage(store, tenant, "filesystem_used_ratio", from_ms, to_ms).await?,
    };
    Ok(Report {
        tenant: tenant.to_string(),
        period: period.to_string(),
        from_ms,
        to_ms,
        generated_ms: now_ms,
        hosts,
        checks,
        alerts,
        certificates,
        findings,
        top_hosts,
    })
}

/// The availability bucket: 1 minute when raw samples still cover the period's start (a
/// minute of margin), else the width of the rollup tier the store reads it from.
async fn bucket_width(store: &dyn Store, tenant: &str, from_ms: i64, now_ms: i64) -> Result<i64, StoreError> {
    let tiers = store.tier_retention(tenant).await?;
    Ok(if from_ms > now_ms - tiers.raw_ms + MINUTE_MS {
        MINUTE_MS
    } else if from_ms > now_ms - tiers.rollup_5m_ms + FIVE_MINUTES_MS {
        FIVE_MINUTES_MS
    } else {
        ONE_HOUR_MS
    })
}

async fn host_availability(
    store: &dyn Store,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<HostAvailability>, StoreError> {
    // Buckets aligned to the epoch, as the rollups are.
    let start = from_ms.div_euclid(bucket_ms) * bucket_ms;
    let mut reporting: HashMap<String, std::collections::BTreeSet<i64>> = HashMap::new();
    for metric in HEARTBEAT_METRICS {
        let query = RangeQuery {
            selector: SeriesSelector::new(metric),
            start_ms: start,
            end_ms: to_ms - 1,
            step_ms: bucket_ms,
            aggregation: Aggregation::Count,
        };
        for series in store.query_range(tenant, &query).await? {
            let Some(host) = series.series.labels.get(HOST_LABEL) else { continue };
            let buckets = reporting.entry(host.clone()).or_default();
            buckets.extend(series.points.iter().filter(|p| p.value > 0.0).map(|p| p.timestamp_ms));
        }
    }
    let mut hosts: Vec<HostAvailability> = store
        .list_agents(tenant)
        .await?
        .into_iter()
        // The server's own series are not a host's.
        .filter(|agent| !agent.agent_id.starts_with(crate::self_series::AGENT_ID_PREFIX))
        .map(|agent| {
            let buckets = reporting.remove(&agent.host).unwrap_or_default();
            availability(&agent.host, &agent.agent_id, &buckets, agent.first_seen_ms, start, to_ms, bucket_ms)
        })
        // A host that first pushed after the period (and sent nothing dated within it) was
        // not there to be available.
        .filter(|host| host.expected_buckets > 0)
        .collect();
    hosts.sort_by(|a, b| a.availability.total_cmp(&b.availability).then_with(|| a.host.cmp(&b.host)));
    Ok(hosts)
}

/// One host's availability from the buckets (starts, aligned from `start`) it reported in:
/// counted from `start`, or from its first push or first reporting bucket when later.
fn availability(
    host: &str,
    agent_id: &str,
    buckets: &std::collections::BTreeSet<i64>,
    first_seen_ms: i64,
    start: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> HostAvailability {
    let first_seen_bucket = first_seen_ms.div_euclid(bucket_ms) * bucket_ms;
    let first_sample = buckets.first().copied().unwrap_or(i64::MAX);
    let counted_from = start.max(first_seen_bucket.min(first_sample));
    // Buckets whose start lies before the period's end.
    let expected = if counted_from >= to_ms { 0 } else { ((to_ms - counted_from + bucket_ms - 1) / bucket_ms) as u64 };
    let reporting = buckets.range(counted_from..to_ms).count() as u64;
    HostAvailability {
        host: host.to_string(),
        agent_id: agent_id.to_string(),
        reporting_buckets: reporting,
        expected_buckets: expected,
        bucket_ms,
        availability: if expected == 0 { 0.0 } else { reporting as f64 / expected as f64 },
    }
}

/// A transition or an acknowledgement as the alert history keeps them.
#[derive(Deserialize)]
struct Recorded {
    kind: String,
    #[serde(default)]
    rule: String,
    at_ms: i64,
    #[serde(default)]
    labels: Labels,
    from: Option<AlertState>,
    to: Option<AlertState>,
    severity: Option<AlertSeverity>,
    /// An acknowledgement's alert id.
    alert: Option<String>,
}

/// One firing of one alert.
struct Firing {
    severity: AlertSeverity,
    at_ms: i64,
    acknowledged_ms: Option<i64>,
    resolved_ms: Option<i64>,
}

/// Alerts that went firing in `[from_ms, to_ms)`, with their first acknowledgement and
/// their resolution from `entries` (oldest first, read up to now).
pub fn alert_summary(entries: &[AlertHistoryEntry], from_ms: i64, to_ms: i64) -> AlertSummary {
    let mut firings: Vec<Firing> = Vec::new();
    // The firing each alert id is in now, as an index into `firings`.
    let mut open: HashMap<String, usize> = HashMap::new();
    for entry in entries {
        let Ok(recorded) = serde_json::from_str::<Recorded>(&entry.record) else { continue };
        match recorded.kind.as_str() {
            "transition" => {
                let (Some(from), Some(to)) = (recorded.from, recorded.to) else { continue };
                let id = alert_id(&recorded.rule, &recorded.labels);
                let began = to == AlertState::Firing
                    && matches!(from, AlertState::Inactive | AlertState::Pending | AlertState::Resolved);
                if began {
                    open.remove(&id);
                    if (from_ms..to_ms).contains(&recorded.at_ms) {
                        open.insert(id, firings.len());
                        firings.push(Firing {
                            severity: recorded.severity.unwrap_or(AlertSeverity::Warning),
                            at_ms: recorded.at_ms,
                            acknowledged_ms: None,
                            resolved_ms: None,
                        });
                    }
                } else if matches!(to, AlertState::Resolved | AlertState::Inactive)
                    && let Some(i) = open.remove(&id)
                {
                    firings[i].resolved_ms = Some(recorded.at_ms);
                }
            }
            "acknowledged" => {
                let Some(id) = recorded.alert else { continue };
                if let Some(&i) = open.get(&id)
                    && firings[i].acknowledged_ms.is_none()
                {
                    firings[i].acknowledged_ms = Some(recorded.at_ms);
                }
            }
            _ => {}
        }
    }
    let summarise = |name: &str, of: &dyn Fn(&Firing) -> bool| {
        let chosen: Vec<&Firing> = firings.iter().filter(|f| of(f)).collect();
        let mean = |delays: Vec<i64>| {
            (!delays.is_empty()).then(|| delays.iter().sum::<i64>() as f64 / delays.len() as f64 / 1_000.0)
        };
        let acked: Vec<i64> = chosen.iter().filter_map(|f| f.acknowledged_ms.map(|a| a - f.at_ms)).collect();
        let resolved: Vec<i64> = chosen.iter().filter_map(|f| f.resolved_ms.map(|r| r - f.at_ms)).collect();
        SeverityAlerts {
            severity: name.to_string(),
            fired: chosen.len() as u64,
            acknowledged: acked.len() as u64,
            resolved: resolved.len() as u64,
            mtta_seconds: mean(acked),
            mttr_seconds: mean(resolved),
        }
    };
    let by_severity = [AlertSeverity::Critical, AlertSeverity::Warning, AlertSeverity::Info]
        .into_iter()
        .map(|severity| summarise(severity.as_str(), &|f: &Firing| f.severity == severity))
        .collect();
    AlertSummary { by_severity, total: summarise("all", &|_: &Firing| true) }
}

/// The certificate a TLS check (`chain[0]`) or an HTTPS check (`response.tls`) saw, when it
/// expires within [`CERTIFICATE_HORIZON_MS`] of `to_ms`.
pub fn expiring(check: &LatestCheck, to_ms: i64) -> Option<ExpiringCertificate> {
    let details = &check.result.details;
    let certificate = match check.result.kind.as_str() {
        "tls" => details.get("chain")?.get(0)?,
        _ => details.get("response")?.get("tls")?,
    };
    let not_after_ms = certificate.get("not_after_unix")?.as_i64()?.checked_mul(1_000)?;
    (not_after_ms < to_ms + CERTIFICATE_HORIZON_MS).then(|| ExpiringCertificate {
        check_id: check.result.check_id.clone(),
        target: check.result.target.clone(),
        host: check.host.clone(),
        subject: certificate.get("subject").and_then(|s| s.as_str()).map(str::to_string),
        not_after_ms,
        days_left: (not_after_ms - to_ms) as f64 / DAY_MS as f64,
    })
}

/// Counts per severity, most severe first, every severity listed (zero where none).
pub fn finding_counts(counted: Vec<(Severity, u64)>) -> Vec<FindingCount> {
    let counts: BTreeMap<Severity, u64> = counted.into_iter().collect();
    [Severity::Critical, Severity::High, Severity::Medium, Severity::Low, Severity::Info]
        .into_iter()
        .map(|s| FindingCount { severity: s.as_str().to_string(), open: counts.get(&s).copied().unwrap_or(0) })
        .collect()
}

/// The hosts with the highest mean of `metric` over the period (a host with several
/// series of it, such as filesystems: its highest mean).
async fn top_usage(
    store: &dyn Store,
    tenant: &str,
    metric: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<HostUsage>, StoreError> {
    let query = RangeQuery {
        selector: SeriesSelector::new(metric),
        start_ms: from_ms,
        end_ms: to_ms - 1,
        // One bucket for the whole period.
        step_ms: (to_ms - from_ms).max(1),
        aggregation: Aggregation::Avg,
    };
    let mut means: HashMap<String, f64> = HashMap::new();
    for series in store.query_range(tenant, &query).await? {
        let Some(host) = series.series.labels.get(HOST_LABEL) else { continue };
        let Some(mean) = series.points.first().map(|p| p.value).filter(|v| v.is_finite()) else { continue };
        let slot = means.entry(host.clone()).or_insert(mean);
        *slot = slot.max(mean);
    }
    let mut top: Vec<HostUsage> = means.into_iter().map(|(host, mean)| HostUsage { host, mean }).collect();
    top.sort_by(|a, b| b.mean.total_cmp(&a.mean).then_with(|| a.host.cmp(&b.host)));
    top.truncate(TOP_HOSTS);
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(host: &str) -> Labels {
        Labels::from([("alertname".to_string(), "Down".to_string()), ("host".to_string(), host.to_string())])
    }

    fn transition(host: &str, from: &str, to: &str, at_ms: i64, severity: &str) -> AlertHistoryEntry {
        let record = json!({"kind": "transition", "rule": "Down", "labels": labels(host), "from": from, "to": to,
            "at_ms": at_ms, "value": 1.0, "severity": severity, "annotations": {}, "channels": [],
            "silenced": false, "escalation_level": 0});
        AlertHistoryEntry { rule: "Down".into(), at_ms, record: record.to_string() }
    }

    fn ack(host: &str, at_ms: i64) -> AlertHistoryEntry {
        let record = json!({"kind": "acknowledged", "rule": "Down", "at_ms": at_ms,
            "alert": alert_id("Down", &labels(host)), "by": "ops", "comment": ""});
        AlertHistoryEntry { rule: "Down".into(), at_ms, record: record.to_string() }
    }

    #[test]
    fn mtta_and_mttr_are_means_over_the_firings_acknowledged_and_resolved() {
        let history = [
            transition("a", "pending", "firing", 1_000_000, "critical"),
            ack("a", 1_060_000), // 60 s
            ack("a", 1_090_000), // a second ack does not count
            transition("b", "inactive", "firing", 1_100_000, "critical"),
            ack("b", 1_280_000),                                          // 180 s
            transition("a", "firing", "resolved", 1_600_000, "critical"), // 600 s
            transition("a", "resolved", "firing", 2_000_000, "critical"), // fires again, never acked
            transition("c", "pending", "firing", 2_100_000, "warning"),
            transition("c", "firing", "stale", 2_200_000, "warning"),
            transition("c", "stale", "firing", 2_250_000, "warning"), // data back: not a new firing
            transition("c", "firing", "resolved", 2_400_000, "warning"), // 300 s
            transition("d", "pending", "firing", 9_000_000, "info"),  // after the period
        ];
        let summary = alert_summary(&history, 0, 5_000_000);
        let critical = &summary.by_severity[0];
        assert_eq!((critical.fired, critical.acknowledged, critical.resolved), (3, 2, 1));
        assert_eq!(critical.mtta_seconds, Some(120.0));
        assert_eq!(critical.mttr_seconds, Some(600.0));
        let warning = &summary.by_severity[1];
        assert_eq!((warning.fired, warning.acknowledged, warning.resolved), (1, 0, 1));
        assert_eq!((warning.mtta_seconds, warning.mttr_seconds), (None, Some(300.0)));
        assert_eq!(summary.by_severity[2].fired, 0);
        assert_eq!((summary.total.fired, summary.total.mttr_seconds), (4, Some(450.0)));
    }

    #[test]
    fn availability_counts_from_the_period_start_or_the_hosts_first_data() {
        let buckets: std::collections::BTreeSet<i64> = [0, 60_000, 180_000].into();
        let whole = availability("h", "a", &buckets, -10_000_000, 0, 600_000, 60_000);
        assert_eq!((whole.reporting_buckets, whole.expected_buckets), (3, 10));
        let late: std::collections::BTreeSet<i64> = [300_000, 360_000].into();
        let new_host = availability("h", "a", &late, 300_000, 0, 600_000, 60_000);
        assert_eq!((new_host.reporting_buckets, new_host.expected_buckets, new_host.availability), (2, 5, 0.4));
        let silent = availability("h", "a", &Default::default(), -1, 0, 600_000, 60_000);
        assert_eq!((silent.expected_buckets, silent.availability), (10, 0.0));
    }

    #[test]
    fn certificates_come_from_tls_chains_and_https_responses_within_the_horizon() {
        let check = |kind: &str, details: serde_json::Value| LatestCheck {
            agent_id: "p".into(),
            host: "probe".into(),
            result: secumon_core::CheckResult {
                check_id: "c".into(),
                kind: kind.into(),
                target: "t".into(),
                status: secumon_core::CheckStatus::Ok,
                timestamp_ms: 0,
                duration_us: 0,
                details,
                samples: Vec::new(),
            },
        };
        let soon = check("tls", json!({"chain": [{"subject": "CN=x", "not_after_unix": 86_400 * 10}]}));
        let found = expiring(&soon, 0).unwrap();
        assert_eq!((found.days_left, found.subject.as_deref()), (10.0, Some("CN=x")));
        assert!(expiring(&check("tls", json!({"chain": [{"not_after_unix": 86_400 * 31}]})), 0).is_none());
        let https = check("http", json!({"response": {"tls": {"not_after_unix": -86_400}}}));
        assert_eq!(expiring(&https, 0).unwrap().days_left, -1.0);
        assert!(expiring(&check("tcp", json!({})), 0).is_none());
    }
}
