//! `ALERTS`, as Prometheus names it, for the Prometheus query API: one series per alert and
//! state (`alertstate` = `pending`, `firing` or `stale`) with the alert's labels, `alertname`
//! and `severity`, value 1 while the alert is in that state, a sample every evaluation
//! interval and a staleness marker where the state ended. Nothing is stored for it: the
//! series are rebuilt from the tenant's alert history (its transitions) and the engine's
//! alerts of now, so dashboards count and list alerts with the same PromQL as on Prometheus.
//!
//! The state of an alert at the end of the asked range is the `from` of its first transition
//! after that end, or (none) its state now; walking the range's transitions backwards from
//! there gives every interval, including those that began before the range.

use std::collections::BTreeMap;

use secumon_alert::promql::{Fetched, STALE_MARKER, SeriesMatcher};
use secumon_alert::{ActiveAlert, AlertSeverity, AlertState};
use secumon_core::{Labels, SeriesKey};
use secumon_store::{AlertHistoryEntry, Store, StoreError};
use serde::Deserialize;

/// The series' name.
pub(crate) const ALERTS: &str = "ALERTS";
/// Distance between two samples of one state, as Prometheus' default evaluation interval.
const EVALUATION_MS: i64 = 15_000;
/// Most history entries one answer reads: an older range is refused beyond it.
const MAX_HISTORY: u32 = 200_000;

/// Whether `matcher` may select `ALERTS` (its name, or a name matcher that takes it).
pub(crate) fn may_select(matcher: &SeriesMatcher) -> bool {
    matcher.name.as_deref().is_none_or(|name| name == ALERTS)
}

/// A recorded transition, as the history keeps it.
#[derive(Deserialize)]
struct Recorded {
    kind: String,
    labels: Labels,
    from: AlertState,
    to: AlertState,
    at_ms: i64,
    severity: AlertSeverity,
}

/// Why the series could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AlertSeriesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("more than {MAX_HISTORY} alert history entries since the range's start: ask for a more recent range")]
    TooMuchHistory,
}

/// `ALERTS` of `tenant` from `from_ms` to `to_ms`, read from its history and `active`
/// (the engine's alerts now, at `now_ms`).
pub(crate) async fn load(
    store: &dyn Store,
    tenant: &str,
    active: &[ActiveAlert],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> Result<Fetched, AlertSeriesError> {
    let entries = store.alert_history_between(tenant, from_ms, now_ms.max(to_ms), MAX_HISTORY).await?;
    if entries.len() >= MAX_HISTORY as usize {
        return Err(AlertSeriesError::TooMuchHistory);
    }
    Ok(build(&entries, active, from_ms, to_ms.min(now_ms)))
}

/// The series from `entries` (oldest first, from `from_ms` on) and `active`, sampled up to
/// `to_ms`.
fn build(entries: &[AlertHistoryEntry], active: &[ActiveAlert], from_ms: i64, to_ms: i64) -> Fetched {
    struct Alert {
        severity: AlertSeverity,
        /// Transitions within the range, oldest first.
        within: Vec<Recorded>,
        /// The state at the range's end, once a later transition told it.
        at_end: Option<AlertState>,
    }
    let mut alerts: BTreeMap<Labels, Alert> = BTreeMap::new();
    for entry in entries {
        let Ok(recorded) = serde_json::from_str::<Recorded>(&entry.record) else { continue };
        // Escalations repeat the state; other kinds are not changes of state.
        if recorded.kind != "transition" || recorded.from == recorded.to {
            continue;
        }
        let alert = alerts.entry(recorded.labels.clone()).or_insert(Alert {
            severity: recorded.severity,
            within: Vec::new(),
            at_end: None,
        });
        if recorded.at_ms <= to_ms {
            alert.within.push(recorded);
        } else if alert.at_end.is_none() {
            alert.at_end = Some(recorded.from);
        }
    }
    for now in active {
        alerts.entry(now.labels.clone()).or_insert(Alert { severity: now.severity, within: Vec::new(), at_end: None });
    }
    let mut series: BTreeMap<SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
    for (labels, mut alert) in alerts {
        let last_known = alert.within.last().map_or(AlertState::Inactive, |t| t.to);
        let mut state = match (alert.at_end, active.iter().find(|a| a.labels == labels)) {
            (Some(state), _) => state,
            // Began after the range.
            (None, Some(now)) if now.since_ms > to_ms => last_known,
            (None, Some(now)) => {
                // The engine's change may not be in the history yet (it is written behind).
                if alert.within.last().is_none_or(|t| t.at_ms < now.since_ms) && now.since_ms >= from_ms {
                    alert.within.push(Recorded {
                        kind: "transition".into(),
                        labels: labels.clone(),
                        from: last_known,
                        to: now.state,
                        at_ms: now.since_ms,
                        severity: now.severity,
                    });
                }
                now.state
            }
            (None, None) => last_known,
        };
        let mut end = to_ms;
        let mut ended_within = false;
        let mut emit = |state: AlertState, start: i64, end: i64, ended: bool| {
            let Some(name) = state_label(state) else { return };
            let mut key_labels = labels.clone();
            key_labels.insert("alertstate".into(), name.into());
            key_labels.entry("severity".into()).or_insert_with(|| alert.severity.as_str().into());
            let points = series.entry(SeriesKey::new(ALERTS, key_labels)).or_default();
            points.extend(samples(start.max(from_ms), end));
            if ended {
                points.push((end, STALE_MARKER));
            }
        };
        for transition in alert.within.iter().rev() {
            emit(state, transition.at_ms, end, ended_within);
            state = transition.from;
            end = transition.at_ms;
            ended_within = true;
        }
        emit(state, from_ms, end, ended_within);
    }
    series
        .into_iter()
        .map(|(key, mut points)| {
            points.sort_by_key(|&(ts, _)| ts);
            (key, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect()
}

/// A sample at `start` and at every evaluation time after it, before `end` (and at `end`
/// when the state lasts past it).
fn samples(start: i64, end: i64) -> impl Iterator<Item = (i64, f64)> {
    let first_tick = (start.div_euclid(EVALUATION_MS) + 1) * EVALUATION_MS;
    let ticks = (first_tick..end).step_by(EVALUATION_MS as usize);
    (start < end).then_some(start).into_iter().chain(ticks).map(|ts| (ts, 1.0))
}

fn state_label(state: AlertState) -> Option<&'static str> {
    match state {
        AlertState::Pending => Some("pending"),
        AlertState::Firing => Some("firing"),
        AlertState::Stale => Some("stale"),
        AlertState::Inactive | AlertState::Resolved => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secumon_alert::promql::is_stale_marker;
    use serde_json::json;

    const S: i64 = 1_000;

    fn labels(room: &str) -> Labels {
        Labels::from([("alertname".to_string(), "Hot".to_string()), ("room".to_string(), room.to_string())])
    }

    fn transition(room: &str, from: &str, to: &str, at_ms: i64) -> AlertHistoryEntry {
        let record = json!({"kind": "transition", "rule": "Hot", "labels": labels(room), "from": from, "to": to,
            "at_ms": at_ms, "value": 35.0, "severity": "critical", "annotations": {}, "channels": [],
            "silenced": false, "escalation_level": 0});
        AlertHistoryEntry { rule: "Hot".into(), at_ms, record: record.to_string() }
    }

    fn active(room: &str, state: &str, since_ms: i64) -> ActiveAlert {
        serde_json::from_value(json!({"id": room, "rule": "Hot", "labels": labels(room), "state": state,
            "since_ms": since_ms, "value": 35.0, "severity": "critical", "acknowledged": null,
            "escalation_level": 0}))
        .unwrap()
    }

    /// `(room, alertstate)` → timestamps of value 1, and where a marker ended it.
    fn shape(series: &Fetched) -> Vec<(String, String, Vec<i64>, Option<i64>)> {
        series
            .iter()
            .map(|(key, points)| {
                assert_eq!(key.name, ALERTS);
                assert_eq!(key.labels["severity"], "critical");
                let ones = points.iter().filter(|p| p.1 == 1.0).map(|p| p.0).collect();
                let marker = points.iter().find(|p| is_stale_marker(p.1)).map(|p| p.0);
                (key.labels["room"].clone(), key.labels["alertstate"].clone(), ones, marker)
            })
            .collect()
    }

    #[test]
    fn a_pending_then_firing_then_resolved_alert_has_one_series_per_state_ended_by_markers() {
        let history = [
            transition("a", "inactive", "pending", 10 * S),
            transition("a", "pending", "firing", 40 * S),
            transition("a", "firing", "firing", 60 * S), // an escalation: no change of state
            transition("a", "firing", "resolved", 100 * S),
        ];
        let series = build(&history, &[], 0, 200 * S);
        assert_eq!(
            shape(&series),
            [
                ("a".into(), "firing".into(), vec![40 * S, 45 * S, 60 * S, 75 * S, 90 * S], Some(100 * S)),
                ("a".into(), "pending".into(), vec![10 * S, 15 * S, 30 * S], Some(40 * S)),
            ]
        );
    }

    #[test]
    fn states_that_began_before_the_range_or_last_past_it_cover_it() {
        // b fired before the range and is still firing; c fired before it and resolved after
        // it (told by the transition after the range's end); d resolved within it.
        let history = [transition("d", "firing", "resolved", 20 * S), transition("c", "firing", "resolved", 90 * S)];
        let series = build(&history, &[active("b", "firing", -500 * S)], 0, 30 * S);
        assert_eq!(
            shape(&series),
            [
                ("b".into(), "firing".into(), vec![0, 15 * S], None),
                ("c".into(), "firing".into(), vec![0, 15 * S], None),
                ("d".into(), "firing".into(), vec![0, 15 * S], Some(20 * S)),
            ]
        );
    }

    #[test]
    fn an_alert_the_history_does_not_hold_yet_starts_when_the_engine_says() {
        let series = build(&[], &[active("e", "pending", 22 * S)], 0, 40 * S);
        assert_eq!(shape(&series), [("e".into(), "pending".into(), vec![22 * S, 30 * S], None)]);
        // One that began after the range is not in it.
        assert!(build(&[], &[active("e", "pending", 50 * S)], 0, 40 * S).is_empty());
    }
}
