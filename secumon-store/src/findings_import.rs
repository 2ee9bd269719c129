//! What both backends do the same way when a scanner report comes in: refuse one over the
//! per-report cap, keep the first of each `(asset, id)`, name the `findings_open` series of
//! the report's assets, and build the [`ImportSummary`] from what the database said about
//! each finding before the import. The SQL lives in the backends: both stage the report in
//! a `findings_import` table and apply it with set-based statements.

use std::collections::{BTreeSet, HashMap, HashSet};

use secumon_core::{Finding, FindingStatus, SeriesKey};

use crate::records::{FindingRow, SEVERITIES, finding_from_row, findings_open_samples};
use crate::{FindingsImport, ImportSummary, StoreError};

/// The report's findings as stored: the first of each `(asset, id)` (a report may list one
/// twice), in report order; the position in this list is the staged `seq`.
pub fn unique_findings(import: &FindingsImport, limit: usize) -> Result<Vec<&Finding>, StoreError> {
    if import.findings.len() > limit {
        return Err(StoreError::ReportTooLarge { findings: import.findings.len(), limit });
    }
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(import.findings.len());
    Ok(import.findings.iter().filter(|f| seen.insert((f.asset.as_str(), f.id.as_str()))).collect())
}

/// The report's assets, sorted: the order of [`open_series`] and of the summary's samples.
pub fn assets<'a>(findings: &[&'a Finding]) -> Vec<&'a str> {
    findings.iter().map(|f| f.asset.as_str()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The `findings_open` series of `assets`, five per asset, in the order
/// [`open_samples`] writes them, so ids resolved ahead of the import line up.
pub fn open_series(tenant: &str, assets: &[&str], at_ms: i64) -> Vec<SeriesKey> {
    assets.iter().flat_map(|asset| findings_open_samples(tenant, asset, &[], at_ms)).map(|s| s.series).collect()
}

/// Open counts of every asset and severity, in [`open_series`] order, from `(asset,
/// severity, open count)` rows; 0 where no row.
pub fn open_values(assets: &[&str], counts: Vec<(String, String, i64)>) -> Vec<f64> {
    let position: HashMap<&str, usize> = assets.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let mut values = vec![0.0; assets.len() * SEVERITIES.len()];
    for (asset, severity, count) in counts {
        let severity = SEVERITIES.iter().position(|s| s.as_str() == severity);
        if let (Some(&asset), Some(severity)) = (position.get(asset.as_str()), severity) {
            values[asset * SEVERITIES.len() + severity] = count as f64;
        }
    }
    values
}

/// `findings_open` samples of every asset, with [`open_values`]' values.
pub fn open_samples(tenant: &str, assets: &[&str], values: &[f64], at_ms: i64) -> Vec<secumon_core::Sample> {
    let mut samples: Vec<_> =
        assets.iter().flat_map(|asset| findings_open_samples(tenant, asset, &[], at_ms)).collect();
    for (sample, value) in samples.iter_mut().zip(values) {
        sample.value = *value;
    }
    samples
}

/// A staged finding that was not open before the import: its `seq`, and the status and
/// first-seen time it had (`None` when it is new).
pub type PriorState = (i64, Option<String>, Option<i64>);

/// What the import changed: `prior` lists the findings that were new or fixed before it,
/// every other staged finding was open and stays so; `fixed` are the rows it fixed.
pub fn summary(
    import: &FindingsImport,
    findings: &[&Finding],
    prior: Vec<PriorState>,
    fixed: Vec<FindingRow>,
) -> Result<ImportSummary, StoreError> {
    let mut summary = ImportSummary { unchanged: findings.len().saturating_sub(prior.len()), ..Default::default() };
    let mut prior = prior;
    // Report order, as the row-at-a-time import listed them.
    prior.sort_unstable_by_key(|(seq, _, _)| *seq);
    for (seq, status, first_seen) in prior {
        let finding = usize::try_from(seq).ok().and_then(|seq| findings.get(seq)).ok_or_else(|| {
            StoreError::InvalidQuery(format!("staged finding {seq} is not in the report being imported"))
        })?;
        let stored = Finding {
            first_seen_ms: first_seen.unwrap_or(import.at_ms),
            last_seen_ms: import.at_ms,
            status: FindingStatus::Open,
            ..(*finding).clone()
        };
        if status.is_some() { summary.reopened.push(stored) } else { summary.new.push(stored) }
    }
    summary.fixed = fixed.into_iter().map(finding_from_row).collect::<Result<_, _>>()?;
    for fixed in &mut summary.fixed {
        fixed.status = FindingStatus::Fixed;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use secumon_core::Severity;

    use super::*;

    fn finding(id: &str, asset: &str) -> Finding {
        Finding {
            id: id.into(),
            severity: Severity::High,
            asset: asset.into(),
            title: String::new(),
            description: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            status: FindingStatus::Open,
        }
    }

    #[test]
    fn a_report_over_the_cap_is_refused_naming_the_limit() {
        let import = FindingsImport {
            source: "x".into(),
            findings: vec![finding("a", "h"), finding("b", "h"), finding("a", "h")],
            full_scan: true,
            at_ms: 5,
        };
        let error = unique_findings(&import, 2).unwrap_err().to_string();
        assert!(error.contains("3 findings") && error.contains("limit of 2"), "{error}");
        let unique = unique_findings(&import, 3).unwrap();
        assert_eq!(unique.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(open_series("t", &assets(&unique), 5).len(), 5);
    }

    #[test]
    fn prior_states_become_new_reopened_and_unchanged() {
        let import = FindingsImport {
            source: "x".into(),
            findings: vec![finding("a", "h"), finding("b", "h"), finding("c", "h")],
            full_scan: true,
            at_ms: 50,
        };
        let unique = unique_findings(&import, 10).unwrap();
        let summary =
            summary(&import, &unique, vec![(2, Some("fixed".into()), Some(7)), (0, None, None)], vec![]).unwrap();
        assert_eq!((summary.new.len(), summary.reopened.len(), summary.unchanged), (1, 1, 1));
        assert_eq!((summary.new[0].first_seen_ms, summary.reopened[0].first_seen_ms), (50, 7));
        assert!(super::summary(&import, &unique, vec![(9, None, None)], vec![]).is_err());
    }
}
