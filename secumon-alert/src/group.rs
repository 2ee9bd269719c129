//! Grouping: transitions of one rule that share the rule's `group_by` labels, the same new
//! state and the same escalation level become one [`Notification`], so 200 hosts behind one
//! dead switch page once per group, not 200 times. Transitions produced together are merged
//! at once; `group_wait` also gathers those arriving over a short window.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use secumon_core::Labels;
use serde::Serialize;

use crate::engine::{AlertState, Transition};
use crate::rule::{AlertSeverity, Rule};

/// What a channel receives: one or more alerts of one rule that changed the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Notification {
    /// The rule's name.
    pub rule: String,
    /// The state the alerts moved to.
    pub status: AlertState,
    /// The rule's severity.
    pub severity: AlertSeverity,
    /// The labels the group is made of (all of the alert's labels when the rule does not group).
    pub group_labels: Labels,
    /// The channels to send it to.
    pub channels: Vec<String>,
    /// 0 for a change of state; n for the n-th escalation (see [`Transition::escalation_level`]).
    pub escalation_level: u32,
    /// When the first of its alerts changed, milliseconds since 1970.
    pub at_ms: i64,
    /// Never empty.
    pub alerts: Vec<Transition>,
}

impl Notification {
    /// A notification about one alert alone.
    pub fn single(transition: Transition) -> Self {
        Self {
            rule: transition.rule.clone(),
            status: transition.to,
            severity: transition.severity,
            group_labels: transition.labels.clone(),
            channels: transition.channels.clone(),
            escalation_level: transition.escalation_level,
            at_ms: transition.at_ms,
            alerts: vec![transition],
        }
    }

    /// The `summary` annotation of the first alert, with a count of the others.
    pub fn summary(&self) -> String {
        let first = &self.alerts[0];
        let own =
            first.annotations.get("summary").cloned().unwrap_or_else(|| format!("{} at {}", first.rule, first.value));
        match self.alerts.len() {
            1 => own,
            n => format!("{own} (and {} more)", n - 1),
        }
    }
}

type GroupKey = (String, Labels, AlertState, u32, Vec<String>);

/// Gathers transitions into notifications.
pub struct Grouper {
    /// Rule name → (`group_by` labels, `group_wait`).
    rules: HashMap<String, (Option<Vec<String>>, Duration)>,
    /// Groups waiting for their `group_wait` to pass: deadline and notification so far.
    waiting: BTreeMap<GroupKey, (i64, Notification)>,
}

impl Grouper {
    /// A grouper for `rules` (their `group_by` and `group_wait`), with nothing waiting.
    pub fn new(rules: &[Rule]) -> Self {
        let mut grouper = Self { rules: HashMap::new(), waiting: BTreeMap::new() };
        grouper.set_rules(rules);
        grouper
    }

    /// Takes changed rules; groups already waiting are sent as they are.
    pub fn set_rules(&mut self, rules: &[Rule]) {
        self.rules =
            rules.iter().map(|r| (r.name().to_string(), (r.spec.group_by.clone(), r.spec.group_wait))).collect();
    }

    /// Takes transitions (silenced ones and those for no channel are left out) and returns
    /// the notifications to send now.
    pub fn add(&mut self, transitions: Vec<Transition>, now_ms: i64) -> Vec<Notification> {
        let mut ready: BTreeMap<GroupKey, Notification> = BTreeMap::new();
        let mut out = Vec::new();
        for transition in transitions.into_iter().filter(|t| !t.silenced && !t.channels.is_empty()) {
            let Some((Some(group_by), wait)) = self.rules.get(&transition.rule).cloned() else {
                out.push(Notification::single(transition));
                continue;
            };
            let group_labels: Labels = transition
                .labels
                .iter()
                .filter(|(k, _)| group_by.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let key = (
                transition.rule.clone(),
                group_labels.clone(),
                transition.to,
                transition.escalation_level,
                transition.channels.clone(),
            );
            if wait.is_zero() {
                match ready.get_mut(&key) {
                    Some(notification) => notification.alerts.push(transition),
                    None => {
                        let mut notification = Notification::single(transition);
                        notification.group_labels = group_labels;
                        ready.insert(key, notification);
                    }
                }
            } else {
                match self.waiting.get_mut(&key) {
                    Some((_, notification)) => notification.alerts.push(transition),
                    None => {
                        let mut notification = Notification::single(transition);
                        notification.group_labels = group_labels;
                        self.waiting.insert(key, (now_ms + wait.as_millis() as i64, notification));
                    }
                }
            }
        }
        out.extend(ready.into_values());
        out
    }

    /// Groups whose `group_wait` has passed.
    pub fn due(&mut self, now_ms: i64) -> Vec<Notification> {
        let due: Vec<GroupKey> =
            self.waiting.iter().filter(|(_, (deadline, _))| *deadline <= now_ms).map(|(k, _)| k.clone()).collect();
        due.into_iter().filter_map(|key| self.waiting.remove(&key)).map(|(_, notification)| notification).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AlertEngine;
    use crate::rule::RuleFile;
    use secumon_core::Sample;

    const RULES: &str = r#"
rules:
  - name: HostDown
    expr: up == 0
    severity: critical
    group_by: [switch]
    channels: [ops]
  - name: Hot
    expr: temp > 50
    severity: warning
    channels: [ops]
  - name: Slow
    expr: latency_seconds > 1
    severity: warning
    group_by: []
    group_wait: 2s
    channels: [ops]
"#;

    fn host(name: &str, metric: &str, switch: &str, value: f64) -> Sample {
        let labels = Labels::from([("host".to_string(), name.to_string()), ("switch".to_string(), switch.to_string())]);
        Sample::new(metric, labels, 0, value)
    }

    #[test]
    fn two_hundred_hosts_behind_one_switch_make_one_notification() {
        let rules = RuleFile::parse(RULES, "rules.yaml").unwrap().rules;
        let mut engine = AlertEngine::new(rules.clone());
        let mut grouper = Grouper::new(&rules);
        let mut samples: Vec<Sample> = (0..200).map(|i| host(&format!("h{i}"), "up", "sw-1", 0.0)).collect();
        samples.push(host("other", "up", "sw-2", 0.0));
        let notifications = grouper.add(engine.ingest(&samples, 0), 0);
        let sizes: Vec<(String, usize)> =
            notifications.iter().map(|n| (n.group_labels["switch"].clone(), n.alerts.len())).collect();
        assert_eq!(sizes, vec![("sw-1".to_string(), 200), ("sw-2".to_string(), 1)]);
        assert_eq!(notifications[0].group_labels.len(), 1, "the group is the switch");
        assert!(notifications[0].summary().ends_with("(and 199 more)"), "{}", notifications[0].summary());
    }

    #[test]
    fn rules_without_group_by_notify_per_alert() {
        let rules = RuleFile::parse(RULES, "rules.yaml").unwrap().rules;
        let mut engine = AlertEngine::new(rules.clone());
        let mut grouper = Grouper::new(&rules);
        let samples: Vec<Sample> = (0..3).map(|i| host(&format!("h{i}"), "temp", "s", 60.0)).collect();
        assert_eq!(grouper.add(engine.ingest(&samples, 0), 0).len(), 3);
    }

    #[test]
    fn group_wait_gathers_alerts_arriving_apart() {
        let rules = RuleFile::parse(RULES, "rules.yaml").unwrap().rules;
        let mut engine = AlertEngine::new(rules.clone());
        let mut grouper = Grouper::new(&rules);
        assert!(grouper.add(engine.ingest(&[host("a", "latency_seconds", "s", 3.0)], 0), 0).is_empty());
        assert!(grouper.add(engine.ingest(&[host("b", "latency_seconds", "s", 3.0)], 1_000), 1_000).is_empty());
        assert!(grouper.due(1_999).is_empty());
        let due = grouper.due(2_000);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].alerts.len(), 2);
        assert!(due[0].group_labels.is_empty());
        assert!(grouper.due(10_000).is_empty(), "sent once");
    }
}
