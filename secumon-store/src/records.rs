//! What both backends derive from findings and check rows the same way, whatever their SQL:
//! the `findings_open` samples, the event of a new critical finding, the severities a
//! filter admits, and a check result rebuilt from its columns.

use secumon_core::{CheckResult, Finding, FindingStatus, Labels, Sample, Severity};

use crate::{FindingFilter, ImportSummary, LatestCheck, StoreError};

pub const SEVERITIES: [Severity; 5] =
    [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

/// `findings_open{host=asset, severity, tenant}` for every severity (so a count can fall
/// to 0), from the asset's open counts per severity.
pub fn findings_open_samples(tenant: &str, asset: &str, counts: &[(String, i64)], at_ms: i64) -> Vec<Sample> {
    SEVERITIES
        .iter()
        .map(|severity| {
            let count = counts.iter().find(|(s, _)| s == severity.as_str()).map_or(0, |(_, n)| *n);
            let labels = Labels::from([
                ("host".to_string(), asset.to_string()),
                ("severity".to_string(), severity.as_str().to_string()),
                ("tenant".to_string(), tenant.to_string()),
            ]);
            Sample::new("findings_open", labels, at_ms, count as f64)
        })
        .collect()
}

/// An event to store for a finding: kind, severity, labels (JSON) and message.
pub struct FindingEvent<'a> {
    pub finding: &'a Finding,
    pub kind: &'static str,
    pub severity: Severity,
    pub labels: String,
    pub message: String,
}

/// One `finding_critical` event per critical finding the import opened or reopened.
pub fn critical_finding_events(summary: &ImportSummary) -> Result<Vec<FindingEvent<'_>>, StoreError> {
    summary
        .new
        .iter()
        .chain(&summary.reopened)
        .filter(|f| f.severity == Severity::Critical)
        .map(|finding| {
            Ok(FindingEvent {
                finding,
                kind: "finding_critical",
                severity: Severity::Critical,
                labels: serde_json::to_string(&Labels::from([("finding".to_string(), finding.id.clone())]))?,
                message: format!("new critical finding {}: {}", finding.id, finding.title),
            })
        })
        .collect()
}

/// Severities the filter admits, as stored.
pub fn admitted_severities(filter: &FindingFilter) -> Vec<&'static str> {
    SEVERITIES.into_iter().filter(|s| filter.severity.is_none_or(|least| *s >= least)).map(Severity::as_str).collect()
}

/// The stored form of a finding status filter.
pub fn status_text(status: Option<FindingStatus>) -> Option<&'static str> {
    status.map(|s| if s == FindingStatus::Open { "open" } else { "fixed" })
}

/// A `check_results` row joined with its agent's host: agent id, host, check id, kind,
/// target, status, timestamp, duration (µs) and details (JSON).
pub type CheckRow = (String, String, String, String, String, String, i64, i64, String);

pub fn latest_check(row: CheckRow) -> Result<LatestCheck, StoreError> {
    let (agent_id, host, check_id, kind, target, status, timestamp_ms, duration_us, details) = row;
    Ok(LatestCheck {
        agent_id,
        host,
        result: CheckResult {
            check_id,
            kind,
            target,
            status: serde_json::from_value(serde_json::Value::String(status))?,
            timestamp_ms,
            duration_us: duration_us as u64,
            details: serde_json::from_str(&details)?,
            samples: Vec::new(),
        },
    })
}

/// A row of the per-check run counts: agent id, host, check id, kind, target, runs, `ok` runs.
pub type CheckRunsRow = (String, String, String, String, String, i64, i64);

pub fn check_runs(rows: Vec<CheckRunsRow>) -> Vec<crate::CheckRuns> {
    let mut runs: Vec<crate::CheckRuns> = rows
        .into_iter()
        .map(|(agent_id, host, check_id, kind, target, runs, ok)| crate::CheckRuns {
            agent_id,
            host,
            check_id,
            kind,
            target,
            runs: runs.max(0) as u64,
            ok: ok.max(0) as u64,
        })
        .collect();
    runs.sort_by(|a, b| (&a.check_id, &a.host, &a.agent_id).cmp(&(&b.check_id, &b.host, &b.agent_id)));
    runs
}

/// `(severity, count)` rows as severities, most severe first.
pub fn severity_counts(rows: Vec<(String, i64)>) -> Result<Vec<(secumon_core::Severity, u64)>, StoreError> {
    let mut counts = rows
        .into_iter()
        .map(|(severity, n)| Ok((serde_json::from_value(serde_json::Value::String(severity))?, n.max(0) as u64)))
        .collect::<Result<Vec<(secumon_core::Severity, u64)>, StoreError>>()?;
    counts.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(counts)
}

/// A `findings` row: asset, id, severity, title, description, status, first and last seen.
pub type FindingRow = (String, String, String, String, String, String, i64, i64);

pub fn finding_from_row(row: FindingRow) -> Result<Finding, StoreError> {
    let (asset, id, severity, title, description, status, first_seen_ms, last_seen_ms) = row;
    Ok(Finding {
        id,
        severity: serde_json::from_value(serde_json::Value::String(severity))?,
        asset,
        title,
        description,
        first_seen_ms,
        last_seen_ms,
        status: if status == "fixed" { FindingStatus::Fixed } else { FindingStatus::Open },
    })
}
