//! The alert state machine: inactive → pending (`for`) → firing → resolved, evaluated when
//! samples arrive rather than on a fixed tick, with timers for `for`, `resolve_after` and
//! data going stale; acknowledgements and silences by label matchers.
//!
//! Missing data is not "all clear": a firing alert whose series stops reporting turns
//! `stale` (kept, shown, nobody told it resolved) until data returns, the rule's `no_data`
//! runs out, or an operator resolves it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use secumon_core::{Finding, FindingStatus, Labels, LogRecord, Sample};
use serde::{Deserialize, Serialize};

use crate::expr::SampleWindow;
use crate::rule::{AlertSeverity, Rule, RuleSource};
use crate::template::render_template;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition does not hold (or the alert has not started).
    Inactive,
    /// The condition holds, for less than the rule's `for` so far.
    Pending,
    /// The condition has held for the rule's `for`: receivers are told.
    Firing,
    /// Was firing, and its data stopped: not known to be fine, so not resolved.
    Stale,
    /// Was firing (or stale) and is over: the condition stayed false for `resolve_after`,
    /// data stayed missing past `no_data`, its rule was removed, or an operator resolved it.
    Resolved,
}

/// One change of one alert: what notifiers and the history receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The rule's name.
    pub rule: String,
    /// The alert's identity: the matched series' labels, the rule's labels and `alertname`.
    pub labels: Labels,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// When the change happened, milliseconds since 1970.
    pub at_ms: i64,
    /// The value that caused it (the latest one seen for the alert).
    pub value: f64,
    /// The rule's severity.
    pub severity: AlertSeverity,
    /// The rule's annotations filled in for this alert.
    pub annotations: BTreeMap<String, String>,
    /// Channels to notify: the rule's on firing, every level told on resolving, the next
    /// level's on escalating; empty for changes nobody is woken for (pending, stale).
    pub channels: Vec<String>,
    /// A silence covered the alert at that moment: keep it in history, notify no one.
    pub silenced: bool,
    /// 0 for a change of state; n for the n-th escalation of a firing alert.
    pub escalation_level: u32,
}

/// Who acknowledged a firing alert, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    /// Who acknowledged it.
    pub by: String,
    /// When, milliseconds since 1970.
    pub at_ms: i64,
    /// Why, as they wrote it; may be empty.
    pub comment: String,
}

/// Mutes alerts whose labels include all of `matchers`, from `starts_ms` to `ends_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Given by [`AlertEngine::add_silence`]; what expiring it early names.
    #[serde(default)]
    pub id: String,
    /// Label values an alert must all carry to be muted.
    pub matchers: Labels,
    /// Start of the silence (inclusive), milliseconds since 1970.
    pub starts_ms: i64,
    /// End of the silence (exclusive), milliseconds since 1970.
    pub ends_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why, as they wrote it.
    pub comment: String,
}

impl Silence {
    fn covers(&self, labels: &Labels, at_ms: i64) -> bool {
        (self.starts_ms..self.ends_ms).contains(&at_ms) && self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// An alert that is pending or firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Stable for a rule and label set: the same alert has the same id after it comes back.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    /// The alert's identity, as in [`Transition::labels`].
    pub labels: Labels,
    /// Pending, firing or stale.
    pub state: AlertState,
    /// When it entered its state (pending or firing), milliseconds since 1970.
    pub since_ms: i64,
    /// The latest value seen for it.
    pub value: f64,
    /// The rule's severity.
    pub severity: AlertSeverity,
    /// Set once an operator acknowledged it (which stops escalation).
    pub acknowledged: Option<Acknowledgement>,
    /// Escalation levels notified so far.
    pub escalation_level: u32,
    /// The rule's annotations filled in for this alert (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Since when the alert's data has been missing (state `stale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since_ms: Option<i64>,
    /// When the condition became false while firing (waiting out `resolve_after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clear_since_ms: Option<i64>,
}

impl ActiveAlert {
    /// When the condition became false while firing (waiting out `resolve_after`): shown
    /// by the API, changed only by the engine.
    pub fn clear_since_ms(&self) -> Option<i64> {
        self.clear_since_ms
    }
}

/// An agent an operator deleted. It may push again: a batch that was in flight when it was
/// deleted, or the same agent id re-installed. Either way it is alive, and shown; but it
/// counts for `AgentDown` again only once it has been seen alive, after the deletion, for
/// the rule's whole `no_data`. One late batch and silence is a deleted agent, not a down one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedAgent {
    /// The deleted agent's id.
    pub agent_id: String,
    /// When it was deleted, milliseconds since 1970.
    pub deleted_ms: i64,
    /// The first and the latest push seen since the deletion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_since_ms: Option<i64>,
    /// The latest push seen since the deletion (0 when none).
    #[serde(default)]
    pub back_until_ms: i64,
}

impl DeletedAgent {
    /// How long it has been seen alive since the deletion; `None` when not at all.
    fn alive_for_ms(&self) -> Option<i64> {
        self.back_since_ms.map(|since| self.back_until_ms - since)
    }
}

/// What must survive a restart: the alerts pending or firing, the silences, and the agents
/// deleted (a restart must not turn a deleted agent's late batch into a page).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// The alerts pending, firing or stale.
    pub alerts: Vec<ActiveAlert>,
    /// The silences kept (an expired one is dropped when silences are next listed).
    pub silences: Vec<Silence>,
    /// Agents deleted and not yet counted for `AgentDown` again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_agents: Vec<DeletedAgent>,
}

/// Evaluates rules over incoming samples and tracks every alert's state.
pub struct AlertEngine {
    rules: Vec<Rule>,
    window: SampleWindow,
    keep: Duration,
    alerts: HashMap<(usize, Labels), ActiveAlert>,
    silences: Vec<Silence>,
    /// When each agent (by its `host` and `agent_id` labels) last sent a batch.
    agents: HashMap<Labels, i64>,
    /// Agents deleted by an operator, by agent id, until they have earned `AgentDown` again.
    deleted: HashMap<String, DeletedAgent>,
    /// Log rules: when lines matched, by rule name and the line's `host`/`source`.
    log_hits: HashMap<(String, Labels), VecDeque<i64>>,
    /// Open findings, by asset and id.
    findings: BTreeMap<(String, String), Finding>,
}

impl AlertEngine {
    /// An engine with `rules`, no alerts and no silences.
    pub fn new(rules: Vec<Rule>) -> Self {
        let mut engine = Self {
            rules: Vec::new(),
            window: SampleWindow::default(),
            keep: Duration::ZERO,
            alerts: HashMap::new(),
            silences: Vec::new(),
            agents: HashMap::new(),
            deleted: HashMap::new(),
            log_hits: HashMap::new(),
            findings: BTreeMap::new(),
        };
        engine.set_rules(rules, 0);
        engine
    }

    /// The rules it evaluates.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Replaces the rules. Alerts of rules kept (by name) carry on; those of rules removed
    /// resolve, stale ones too, so no receiver is left with an incident nobody will close.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut removed: Vec<(usize, ActiveAlert)> = Vec::new();
        let alerts = std::mem::take(&mut self.alerts);
        for ((index, labels), alert) in alerts {
            match rules.iter().position(|r| r.name() == self.rules[index].name()) {
                Some(new_index) => {
                    self.alerts.insert((new_index, labels), alert);
                }
                None => removed.push((index, alert)),
            }
        }
        removed.sort_by(|a, b| a.1.labels.cmp(&b.1.labels));
        for (index, alert) in removed {
            // Firing and stale alerts were heard of (a stale one never stopped firing for its
            // receivers): both resolve. A pending one ends unheard of.
            if matches!(alert.state, AlertState::Firing | AlertState::Stale) {
                out.push(self.end(index, alert, now_ms));
            }
        }
        self.log_hits.retain(|(name, _), _| rules.iter().any(|r| r.name() == name));
        self.keep = rules.iter().filter_map(|r| r.condition()).map(|c| c.lookback()).max().unwrap_or_default();
        self.rules = rules;
        out
    }

    /// The state to save for a restart.
    pub fn state(&self) -> EngineState {
        let mut deleted_agents: Vec<DeletedAgent> = self.deleted.values().cloned().collect();
        deleted_agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        EngineState { alerts: self.active(), silences: self.silences.clone(), deleted_agents }
    }

    /// Takes back a saved state: alerts stay pending or firing without being notified
    /// again. Alerts of rules that no longer exist are dropped.
    pub fn restore(&mut self, state: EngineState) {
        for alert in state.alerts {
            if let Some(index) = self.rules.iter().position(|r| r.name() == alert.rule) {
                self.alerts.insert((index, alert.labels.clone()), alert);
            }
        }
        self.silences = Vec::new();
        for silence in state.silences {
            self.add_silence(silence);
        }
        self.deleted = state.deleted_agents.into_iter().map(|d| (d.agent_id.clone(), d)).collect();
    }

    /// Metric names the rules read, and how far back they look: what to preload.
    pub fn inputs(&self) -> (Vec<String>, Duration) {
        let mut names: Vec<String> =
            self.rules.iter().filter_map(Rule::condition).flat_map(|c| c.selectors()).map(|s| s.name.clone()).collect();
        names.sort();
        names.dedup();
        (names, self.keep)
    }

    /// Fills the recent-sample window (after a restart) without evaluating anything.
    pub fn preload(&mut self, samples: &[Sample]) {
        for sample in samples {
            if self.rules.iter().any(|r| reads(r, sample)) {
                self.window.push(&sample.series, sample.timestamp_ms, sample.value);
            }
        }
    }

    /// Takes newly stored samples and re-evaluates, at `now_ms`, the rules they concern.
    pub fn ingest(&mut self, samples: &[Sample], now_ms: i64) -> Vec<Transition> {
        let mut touched = vec![false; self.rules.len()];
        for sample in samples {
            let mut wanted = false;
            for (index, rule) in self.rules.iter().enumerate() {
                if reads(rule, sample) {
                    touched[index] = true;
                    wanted = true;
                }
            }
            if wanted {
                self.window.push(&sample.series, sample.timestamp_ms, sample.value);
                self.window.mark_live(&sample.series);
            }
        }
        let mut transitions = Vec::new();
        for (index, _) in touched.iter().enumerate().filter(|(_, t)| **t) {
            self.evaluate(index, now_ms, &mut transitions);
        }
        transitions
    }

    /// Notes that an agent (by its `host` and `agent_id` labels) sent data at `at_ms`; its
    /// no-data alerts resolve.
    pub fn agent_seen(&mut self, agent: Labels, at_ms: i64, now_ms: i64) -> Vec<Transition> {
        // Only an alert about this agent can change; firing waits for `tick`.
        let alerting = self.agent_alerting(&agent);
        let longest = self
            .rules
            .iter()
            .filter_map(|r| match r.source {
                RuleSource::Agent { no_data } => Some(no_data.as_millis() as i64),
                _ => None,
            })
            .max();
        if let Some(deleted) = agent.get("agent_id").and_then(|id| self.deleted.get_mut(id)) {
            // Alive means pushing without a gap any agent rule would call down: after
            // such a gap, the time alive counts from this push.
            let gap = deleted.back_since_ms.is_some() && longest.is_some_and(|l| at_ms - deleted.back_until_ms >= l);
            if deleted.back_since_ms.is_none() || gap {
                deleted.back_since_ms = Some(at_ms);
            }
            deleted.back_until_ms = deleted.back_until_ms.max(at_ms);
            // Alive long enough for every agent rule: an agent like any other again.
            if deleted.alive_for_ms().zip(longest).is_some_and(|(alive, longest)| alive >= longest) {
                let id = deleted.agent_id.clone();
                self.deleted.remove(&id);
            }
        }
        let last = self.agents.entry(agent).or_insert(at_ms);
        *last = (*last).max(at_ms);
        if !alerting {
            return Vec::new();
        }
        self.evaluate_where(now_ms, |source| matches!(source, RuleSource::Agent { .. }))
    }

    /// Takes back, after a restart, an agent last heard from at `last_seen_ms` while the
    /// server itself only came up at `restart_ms`. The agent could not have sent anything
    /// while the server was down, so it gets a full `no_data` from `restart_ms`, except
    /// when an alert about it was already pending or firing: that one stays as it was (a
    /// restart is no news about the agent), so it neither vanishes nor pages again.
    pub fn agent_known(&mut self, agent: Labels, last_seen_ms: i64, restart_ms: i64) {
        let alerting = self.agent_alerting(&agent);
        let seen = if alerting { last_seen_ms } else { last_seen_ms.max(restart_ms) };
        let last = self.agents.entry(agent).or_insert(seen);
        *last = (*last).max(seen);
    }

    /// Forgets an agent that was deleted or revoked, so it never counts as down; alerts
    /// about it resolve (their receivers should not keep an incident nobody will close).
    pub fn forget_agent(&mut self, agent_id: &str, now_ms: i64) -> Vec<Transition> {
        let deleted =
            DeletedAgent { agent_id: agent_id.to_string(), deleted_ms: now_ms, back_since_ms: None, back_until_ms: 0 };
        self.deleted.insert(agent_id.to_string(), deleted);
        self.agents.retain(|labels, _| labels.get("agent_id").map(String::as_str) != Some(agent_id));
        let mut gone: Vec<(usize, Labels)> = self
            .alerts
            .keys()
            .filter(|(index, labels)| {
                matches!(self.rules[*index].source, RuleSource::Agent { .. })
                    && labels.get("agent_id").map(String::as_str) == Some(agent_id)
            })
            .cloned()
            .collect();
        gone.sort();
        let mut out = Vec::new();
        for key in gone {
            let Some(alert) = self.alerts.remove(&key) else { continue };
            out.push(self.end(key.0, alert, now_ms));
        }
        out
    }

    /// An operator's word that a firing or stale alert is over (say, a check that was
    /// removed for good). If its condition still holds, it fires again as a new alert.
    pub fn resolve_id(&mut self, id: &str, now_ms: i64) -> Option<Transition> {
        let key = self
            .alerts
            .iter()
            .find(|(_, a)| a.id == id && matches!(a.state, AlertState::Firing | AlertState::Stale))
            .map(|(key, _)| key.clone())?;
        let alert = self.alerts.remove(&key)?;
        Some(self.end(key.0, alert, now_ms))
    }

    /// The transition of an alert taken out of the engine: a pending one ends unheard of, a
    /// firing or stale one resolves on every level that heard of it.
    fn end(&self, index: usize, alert: ActiveAlert, now_ms: i64) -> Transition {
        let (to, channels) = match alert.state {
            AlertState::Pending => (AlertState::Inactive, Vec::new()),
            _ => (AlertState::Resolved, resolution_channels(&self.rules[index], &alert)),
        };
        self.transition(index, alert.labels, (alert.state, to), now_ms, alert.value, channels)
    }

    fn agent_alerting(&self, agent: &Labels) -> bool {
        self.alerts.iter().any(|((index, labels), _)| {
            matches!(self.rules[*index].source, RuleSource::Agent { .. })
                && agent.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
    }

    /// Counts log lines (from the host these labels name) against log rules.
    pub fn ingest_logs(&mut self, host: &Labels, records: &[LogRecord], now_ms: i64) -> Vec<Transition> {
        let mut touched = false;
        for rule in &self.rules {
            let RuleSource::Log { pattern, source, .. } = &rule.source else { continue };
            for record in records {
                if source.as_ref().is_some_and(|s| !record.source.contains(s.as_str()))
                    || !pattern.is_match(&record.line)
                {
                    continue;
                }
                let mut labels = host.clone();
                labels.insert("source".to_string(), record.source.clone());
                self.log_hits.entry((rule.name().to_string(), labels)).or_default().push_back(record.timestamp_ms);
                touched = true;
            }
        }
        if !touched {
            return Vec::new();
        }
        self.evaluate_where(now_ms, |source| matches!(source, RuleSource::Log { .. }))
    }

    /// Takes new or updated findings: open ones count against finding rules, fixed ones
    /// resolve their alerts.
    pub fn ingest_findings(&mut self, findings: &[Finding], now_ms: i64) -> Vec<Transition> {
        for finding in findings {
            let key = (finding.asset.clone(), finding.id.clone());
            match finding.status {
                FindingStatus::Open => self.findings.insert(key, finding.clone()),
                FindingStatus::Fixed => self.findings.remove(&key),
            };
        }
        self.evaluate_where(now_ms, |source| matches!(source, RuleSource::Finding { .. }))
    }

    fn evaluate_where(&mut self, now_ms: i64, wanted: impl Fn(&RuleSource) -> bool) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for index in 0..self.rules.len() {
            if wanted(&self.rules[index].source) {
                self.evaluate(index, now_ms, &mut transitions);
            }
        }
        transitions
    }

    /// Re-evaluates every rule at `now_ms`: `for` and `resolve_after` timers, stale data.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Transition> {
        self.window.trim(now_ms, self.keep);
        self.evaluate_where(now_ms, |_| true)
    }

    /// Alerts pending or firing now, most severe first.
    pub fn active(&self) -> Vec<ActiveAlert> {
        let mut alerts: Vec<ActiveAlert> = self.alerts.values().cloned().collect();
        alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.rule.cmp(&b.rule)).then(a.labels.cmp(&b.labels)));
        alerts
    }

    /// Acknowledges the firing alert of `rule` with these labels; false if there is none.
    pub fn acknowledge(&mut self, rule: &str, labels: &Labels, ack: Acknowledgement) -> bool {
        self.acknowledge_id(&alert_id(rule, labels), ack)
    }

    /// Acknowledges the firing alert with this id; false if there is none.
    pub fn acknowledge_id(&mut self, id: &str, ack: Acknowledgement) -> bool {
        match self.alerts.values_mut().find(|a| a.id == id && a.state == AlertState::Firing) {
            Some(alert) => {
                alert.acknowledged = Some(ack);
                true
            }
            None => false,
        }
    }

    /// Adds a silence and returns its id (the one it has, or a new one).
    pub fn add_silence(&mut self, mut silence: Silence) -> String {
        if silence.id.is_empty() || self.silences.iter().any(|s| s.id == silence.id) {
            silence.id = self.new_silence_id(&silence);
        }
        let id = silence.id.clone();
        self.silences.push(silence);
        id
    }

    /// Ends a silence now, before its time; `None` if no current silence has this id.
    pub fn expire_silence(&mut self, id: &str, now_ms: i64) -> Option<Silence> {
        let silence = self.silences.iter_mut().find(|s| s.id == id && s.ends_ms > now_ms)?;
        silence.ends_ms = now_ms;
        let expired = silence.clone();
        self.silences.retain(|s| s.ends_ms > now_ms);
        Some(expired)
    }

    /// A hash of the silence's content, made unique among the current silences.
    fn new_silence_id(&self, silence: &Silence) -> String {
        let text = format!("{:?}{}{}{}", silence.matchers, silence.starts_ms, silence.created_by, silence.comment);
        let mut salt = 0u64;
        loop {
            let id = fnv_hex(&format!("{text}\u{0}{salt}"));
            if !self.silences.iter().any(|s| s.id == id) {
                return id;
            }
            salt += 1;
        }
    }

    /// Silences not yet over at `now_ms` (ended ones are forgotten).
    pub fn silences(&mut self, now_ms: i64) -> Vec<Silence> {
        self.silences.retain(|s| s.ends_ms > now_ms);
        self.silences.clone()
    }

    /// What holds for a rule at `now_ms`: each alert's labels (before the rule's own) and value.
    fn holding(&mut self, index: usize, now_ms: i64) -> Vec<(Labels, f64)> {
        let rule = &self.rules[index];
        let mut holding: Vec<(Labels, f64)> = match &rule.source {
            RuleSource::Series(condition) => condition.firing(&self.window, now_ms),
            RuleSource::Agent { no_data } => {
                let silent_ms = no_data.as_millis() as i64;
                // Scripts pushing through the API are not agents that can go down, unless
                // the rule asks for them.
                let api_sources = rule.spec.api_sources;
                let deleted = &self.deleted;
                self.agents
                    .iter()
                    .filter(|(labels, _)| {
                        api_sources || !labels.get("agent_id").is_some_and(|id| id.starts_with("api:"))
                    })
                    // A deleted agent that pushed again pages only once it has been alive,
                    // since, for the whole `no_data`: not for one batch that was in flight.
                    .filter(|(labels, _)| {
                        labels
                            .get("agent_id")
                            .and_then(|id| deleted.get(id))
                            .is_none_or(|d| d.alive_for_ms().is_some_and(|alive| alive >= silent_ms))
                    })
                    .filter(|(_, last)| now_ms - **last >= silent_ms)
                    .map(|(labels, last)| (labels.clone(), (now_ms - last) as f64 / 1000.0))
                    .collect()
            }
            RuleSource::Log { window, comparison, threshold, .. } => {
                let oldest = now_ms - window.as_millis() as i64;
                let mut counts = Vec::new();
                self.log_hits.retain(|(name, labels), hits| {
                    if name != rule.name() {
                        return true;
                    }
                    while hits.front().is_some_and(|ts| *ts <= oldest) {
                        hits.pop_front();
                    }
                    let count = hits.iter().filter(|ts| **ts <= now_ms).count() as f64;
                    if comparison.holds(count, *threshold) {
                        counts.push((labels.clone(), count));
                    }
                    !hits.is_empty()
                });
                counts
            }
            RuleSource::Finding { comparison, severity } => self
                .findings
                .values()
                .filter(|f| comparison.holds(f.severity as u8 as f64, *severity as u8 as f64))
                .map(|f| {
                    let labels = Labels::from([
                        ("asset".to_string(), f.asset.clone()),
                        ("finding".to_string(), f.id.clone()),
                        ("finding_severity".to_string(), f.severity.as_str().to_string()),
                        ("title".to_string(), f.title.clone()),
                    ]);
                    (labels, f.severity as u8 as f64)
                })
                .collect(),
        };
        holding.sort_by(|a, b| a.0.cmp(&b.0));
        holding
    }

    fn evaluate(&mut self, index: usize, now_ms: i64, out: &mut Vec<Transition>) {
        let holding = self.holding(index, now_ms);
        let rule = &self.rules[index];
        let for_ms = rule.spec.for_duration.as_millis() as i64;
        let mut still: Vec<Labels> = Vec::with_capacity(holding.len());
        for (series_labels, value) in holding {
            let labels = alert_labels(rule, series_labels.clone());
            let key = (index, labels.clone());
            // History preloaded at start keeps existing alerts going; it does not raise new
            // ones (it may come from a check that is no longer configured).
            if !self.alerts.contains_key(&key)
                && rule.condition().is_some_and(|c| !c.has_live_data(&self.window, &series_labels))
            {
                continue;
            }
            still.push(labels.clone());
            let change = match self.alerts.get_mut(&key) {
                None => {
                    let state = if for_ms == 0 { AlertState::Firing } else { AlertState::Pending };
                    let alert = ActiveAlert {
                        id: alert_id(rule.name(), &labels),
                        rule: rule.name().to_string(),
                        labels: labels.clone(),
                        state,
                        since_ms: now_ms,
                        value,
                        severity: rule.spec.severity,
                        acknowledged: None,
                        escalation_level: 0,
                        annotations: annotate(rule, &labels, value),
                        stale_since_ms: None,
                        clear_since_ms: None,
                    };
                    self.alerts.insert(key, alert);
                    Some((AlertState::Inactive, state))
                }
                Some(alert) => {
                    if alert.value != value {
                        alert.value = value;
                        alert.annotations = annotate(rule, &labels, value);
                    }
                    alert.clear_since_ms = None;
                    if alert.state == AlertState::Pending && now_ms - alert.since_ms >= for_ms {
                        alert.state = AlertState::Firing;
                        alert.since_ms = now_ms;
                        Some((AlertState::Pending, AlertState::Firing))
                    } else if alert.state == AlertState::Stale {
                        // Data is back and still bad: it never stopped firing for the
                        // receivers, so they hear nothing new.
                        alert.state = AlertState::Firing;
                        alert.stale_since_ms = None;
                        Some((AlertState::Stale, AlertState::Firing))
                    } else {
                        None
                    }
                }
            };
            if let Some((from, to)) = change {
                // Only firing is worth waking someone for; pending and back-from-stale are history.
                let channels = if to == AlertState::Firing && from != AlertState::Stale {
                    rule.spec.channels.clone()
                } else {
                    Vec::new()
                };
                out.push(self.transition(index, labels, (from, to), now_ms, value, channels));
            }
        }

        // Escalate firing alerts nobody acknowledged, one level at a time.
        let mut escalations = Vec::new();
        for ((rule_index, labels), alert) in self.alerts.iter_mut() {
            if *rule_index != index || alert.state != AlertState::Firing || alert.acknowledged.is_some() {
                continue;
            }
            while let Some(level) = rule.spec.escalation.get(alert.escalation_level as usize) {
                if now_ms - alert.since_ms < level.after.as_millis() as i64 {
                    break;
                }
                alert.escalation_level += 1;
                escalations.push((labels.clone(), alert.value, level.channels.clone(), alert.escalation_level));
            }
        }
        escalations.sort_by(|a, b| a.0.cmp(&b.0).then(a.3.cmp(&b.3)));
        for (labels, value, channels, level) in escalations {
            let mut escalation =
                self.transition(index, labels, (AlertState::Firing, AlertState::Firing), now_ms, value, channels);
            escalation.escalation_level = level;
            out.push(escalation);
        }

        let resolve_after_ms = rule.spec.resolve_after.as_millis() as i64;
        let no_data_ms = match rule.source {
            RuleSource::Series(_) => rule.spec.no_data.map(|d| d.as_millis() as i64),
            _ => None,
        };
        // Series rules tell "no data" apart from "fine": the alerts of elements that have
        // data. Worked out only when a firing alert's condition stopped holding.
        let clearing = self
            .alerts
            .iter()
            .any(|((i, labels), alert)| *i == index && alert.state != AlertState::Pending && !still.contains(labels));
        let present: Option<Vec<Labels>> = match rule.condition() {
            Some(condition) if clearing => {
                Some(condition.present(&self.window, now_ms).into_iter().map(|l| alert_labels(rule, l)).collect())
            }
            _ => None,
        };
        let mut ended = Vec::new();
        let mut went_stale = Vec::new();
        for ((rule_index, labels), alert) in self.alerts.iter_mut() {
            if *rule_index != index || still.contains(labels) {
                continue;
            }
            let no_data = present.as_ref().is_some_and(|present| !present.contains(labels));
            match alert.state {
                AlertState::Pending => {
                    ended.push((labels.clone(), AlertState::Pending, AlertState::Inactive, alert.value))
                }
                // Its data stopped: not "all clear". Kept, marked, nobody told it resolved.
                AlertState::Firing if no_data => {
                    alert.state = AlertState::Stale;
                    alert.stale_since_ms = Some(now_ms);
                    alert.clear_since_ms = None;
                    went_stale.push((labels.clone(), alert.value));
                }
                AlertState::Stale if no_data => {
                    let since = alert.stale_since_ms.unwrap_or(now_ms);
                    if no_data_ms.is_some_and(|limit| now_ms - since >= limit) {
                        ended.push((labels.clone(), AlertState::Stale, AlertState::Resolved, alert.value));
                    }
                }
                from => {
                    let clear_since = *alert.clear_since_ms.get_or_insert(now_ms);
                    if now_ms - clear_since >= resolve_after_ms {
                        ended.push((labels.clone(), from, AlertState::Resolved, alert.value));
                    }
                }
            }
        }
        // Deterministic order for notifications and history.
        went_stale.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, value) in went_stale {
            let states = (AlertState::Firing, AlertState::Stale);
            out.push(self.transition(index, labels, states, now_ms, value, Vec::new()));
        }
        ended.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, from, to, value) in ended {
            let Some(alert) = self.alerts.remove(&(index, labels.clone())) else { continue };
            // A resolution reaches every level that heard about the alert; a pending one, no one.
            let channels = match to {
                AlertState::Resolved => resolution_channels(&self.rules[index], &alert),
                _ => Vec::new(),
            };
            out.push(self.transition(index, labels, (from, to), now_ms, value, channels));
        }
    }

    /// The record of a change; escalations set `escalation_level` on it afterwards.
    fn transition(
        &self,
        index: usize,
        labels: Labels,
        (from, to): (AlertState, AlertState),
        at_ms: i64,
        value: f64,
        channels: Vec<String>,
    ) -> Transition {
        let rule = &self.rules[index];
        let annotations = annotate(rule, &labels, value);
        let silenced = self.silences.iter().any(|s| s.covers(&labels, at_ms));
        Transition {
            rule: rule.name().to_string(),
            labels,
            from,
            to,
            at_ms,
            value,
            severity: rule.spec.severity,
            annotations,
            channels,
            silenced,
            escalation_level: 0,
        }
    }
}

/// FNV-1a of the rule name and labels, in hex.
/// An alert's id ([`ActiveAlert::id`]): stable for a rule and label set, so a history
/// entry that names an alert (an acknowledgement) can be matched to its transitions.
pub fn alert_id(rule: &str, labels: &Labels) -> String {
    fnv_hex(&labels.iter().fold(rule.to_string(), |acc, (k, v)| format!("{acc}\u{0}{k}={v}")))
}

fn fnv_hex(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// The rule's annotations filled in for one alert.
fn annotate(rule: &Rule, labels: &Labels, value: f64) -> BTreeMap<String, String> {
    rule.spec.annotations.iter().map(|(k, template)| (k.clone(), render_template(template, labels, value))).collect()
}

fn alert_labels(rule: &Rule, mut labels: Labels) -> Labels {
    labels.extend(rule.spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("alertname".to_string(), rule.name().to_string());
    labels
}

/// Whether a series rule reads this sample.
fn reads(rule: &Rule, sample: &Sample) -> bool {
    rule.condition().is_some_and(|c| c.selectors().iter().any(|s| s.matches(&sample.series)))
}

/// A resolution reaches every level that heard of the alert.
fn resolution_channels(rule: &Rule, alert: &ActiveAlert) -> Vec<String> {
    let mut channels = rule.spec.channels.clone();
    for level in rule.spec.escalation.iter().take(alert.escalation_level as usize) {
        for channel in &level.channels {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
    }
    channels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::RuleFile;

    fn engine(rules: &str) -> AlertEngine {
        AlertEngine::new(RuleFile::parse(rules, "rules.yaml").unwrap().rules)
    }

    fn cpu(host: &str, ts: i64, value: f64) -> Sample {
        Sample::new("cpu_usage_ratio", Labels::from([("host".to_string(), host.to_string())]), ts, value)
    }

    fn states(transitions: &[Transition]) -> Vec<(String, AlertState, AlertState)> {
        transitions.iter().map(|t| (t.labels["host"].clone(), t.from, t.to)).collect()
    }

    const RULES: &str = r#"
rules:
  - name: CpuHigh
    expr: cpu_usage_ratio > 0.9
    for: 30s
    resolve_after: 20s
    severity: critical
    labels: {team: ops}
    annotations: {summary: "{{ $labels.host }} at {{ $value }}"}
    channels: [ops]
"#;

    #[test]
    fn pending_then_firing_then_resolved_with_flap_guard() {
        let mut engine = engine(RULES);
        let t = states(&engine.ingest(&[cpu("a", 0, 0.95), cpu("b", 0, 0.5)], 0));
        assert_eq!(t, vec![("a".into(), AlertState::Inactive, AlertState::Pending)]);
        assert!(engine.ingest(&[cpu("a", 10_000, 0.97)], 10_000).is_empty(), "still pending");

        // The `for` timer fires without a new sample.
        let fired = engine.tick(30_000);
        assert_eq!(states(&fired), vec![("a".into(), AlertState::Pending, AlertState::Firing)]);
        assert_eq!(fired[0].annotations["summary"], "a at 0.97");
        assert_eq!(fired[0].labels["team"], "ops");
        assert_eq!(fired[0].labels["alertname"], "CpuHigh");
        assert_eq!(fired[0].channels, vec!["ops"]);

        // A dip shorter than resolve_after does not resolve (no flapping)...
        assert!(engine.ingest(&[cpu("a", 35_000, 0.2)], 35_000).is_empty());
        assert!(engine.ingest(&[cpu("a", 45_000, 0.95)], 45_000).is_empty(), "back above: still firing");
        // ...a longer one does.
        assert!(engine.ingest(&[cpu("a", 50_000, 0.2)], 50_000).is_empty());
        let resolved = engine.tick(70_000);
        assert_eq!(states(&resolved), vec![("a".into(), AlertState::Firing, AlertState::Resolved)]);
        assert!(engine.active().is_empty());
    }

    #[test]
    fn a_pending_alert_that_clears_goes_back_to_inactive() {
        let mut engine = engine(RULES);
        engine.ingest(&[cpu("a", 0, 0.95)], 0);
        let t = states(&engine.ingest(&[cpu("a", 5_000, 0.1)], 5_000));
        assert_eq!(t, vec![("a".into(), AlertState::Pending, AlertState::Inactive)]);
        assert!(engine.tick(60_000).is_empty(), "never fired");
    }

    #[test]
    fn zero_for_fires_on_the_sample_that_crosses() {
        let mut engine = engine("rules:\n  - {name: Down, expr: up == 0, severity: critical}\n");
        let up = |ts, v| Sample::new("up", Labels::new(), ts, v);
        assert!(engine.ingest(&[up(0, 1.0)], 0).is_empty());
        let t = engine.ingest(&[up(1_000, 0.0)], 1_000);
        assert_eq!((t[0].from, t[0].to, t[0].at_ms), (AlertState::Inactive, AlertState::Firing, 1_000));
    }

    #[test]
    fn stale_data_makes_alerts_stale_and_silences_mark_transitions() {
        let mut engine = engine("rules:\n  - {name: Hot, expr: temp > 50, severity: warning}\n");
        let temp =
            |host: &str, ts, v| Sample::new("temp", Labels::from([("host".to_string(), host.to_string())]), ts, v);
        engine.add_silence(Silence {
            id: String::new(),
            matchers: Labels::from([("host".to_string(), "lab".to_string())]),
            starts_ms: 0,
            ends_ms: 60_000,
            created_by: "ops".into(),
            comment: "maintenance".into(),
        });
        let t = engine.ingest(&[temp("lab", 0, 70.0), temp("prod", 0, 70.0)], 0);
        let silenced: Vec<(String, bool)> = t.iter().map(|t| (t.labels["host"].clone(), t.silenced)).collect();
        assert_eq!(silenced, vec![("lab".into(), true), ("prod".into(), false)]);
        // No sample for five minutes: the series is stale, and so are the alerts (not resolved).
        let t = engine.tick(301_000);
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.to == AlertState::Stale && t.channels.is_empty()));
    }

    const CERT_RULES: &str = r#"
rules:
  - name: CertExpiring
    source: check
    expr: tls_cert_days_to_expiry < 14
    severity: warning
    annotations: {summary: "{{ $labels.target }}: {{ $value | printf \"%.0f\" }} days left"}
    channels: [ops]
  - name: CertGone
    source: check
    expr: tls_cert_days_to_expiry < 3
    no_data: 1h
    severity: critical
    channels: [ops]
"#;

    fn days(target: &str, ts: i64, value: f64) -> Sample {
        Sample::new("tls_cert_days_to_expiry", Labels::from([("target".to_string(), target.to_string())]), ts, value)
    }

    fn moves(transitions: &[Transition]) -> Vec<(&str, AlertState, AlertState, usize)> {
        transitions.iter().map(|t| (t.rule.as_str(), t.from, t.to, t.channels.len())).collect()
    }

    #[test]
    fn a_check_that_stops_reporting_makes_its_alert_stale_not_resolved() {
        let mut engine = engine(CERT_RULES);
        let t = engine.ingest(&[days("mail.example:443", 0, 9.6)], 0);
        assert_eq!(moves(&t), vec![("CertExpiring", AlertState::Inactive, AlertState::Firing, 1)]);
        assert_eq!(engine.active()[0].annotations["summary"], "mail.example:443: 10 days left");

        // The probe stops: five minutes on, the alert is stale, and nobody hears "resolved".
        let t = engine.tick(301_000);
        assert_eq!(moves(&t), vec![("CertExpiring", AlertState::Firing, AlertState::Stale, 0)]);
        assert_eq!(engine.active()[0].state, AlertState::Stale);
        assert_eq!(engine.active()[0].stale_since_ms, Some(301_000));
        assert!(engine.tick(3 * 3_600_000).is_empty(), "stale stays stale without a no_data");

        // Data again, still bad: firing once more, silently (it never stopped for receivers).
        let t = engine.ingest(&[days("mail.example:443", 3 * 3_600_000, 9.5)], 3 * 3_600_000);
        assert_eq!(moves(&t), vec![("CertExpiring", AlertState::Stale, AlertState::Firing, 0)]);
        // Data saying it is fine: that, and only that, is a resolution.
        let t = engine.ingest(&[days("mail.example:443", 3 * 3_600_000 + 1, 80.0)], 3 * 3_600_000 + 1);
        assert_eq!(moves(&t), vec![("CertExpiring", AlertState::Firing, AlertState::Resolved, 1)]);
    }

    #[test]
    fn stale_alerts_end_by_the_rules_no_data_or_by_an_operator() {
        let mut engine = engine(CERT_RULES);
        engine.ingest(&[days("a:443", 0, 1.0), days("b:443", 0, 1.0)], 0);
        assert_eq!(engine.active().len(), 4);
        engine.tick(301_000);
        assert!(engine.active().iter().all(|a| a.state == AlertState::Stale));
        // CertGone says an hour without data ends it; CertExpiring says nothing.
        assert!(engine.tick(301_000 + 3_599_000).is_empty());
        let t = engine.tick(301_000 + 3_600_000);
        assert_eq!(
            moves(&t),
            vec![
                ("CertGone", AlertState::Stale, AlertState::Resolved, 1),
                ("CertGone", AlertState::Stale, AlertState::Resolved, 1)
            ]
        );
        let id = engine.active().iter().find(|a| a.labels["target"] == "a:443").unwrap().id.clone();
        let t = engine.resolve_id(&id, 4_000_000).unwrap();
        assert_eq!(
            (t.from, t.to, t.channels.clone()),
            (AlertState::Stale, AlertState::Resolved, vec!["ops".to_string()])
        );
        assert!(engine.resolve_id(&id, 4_000_001).is_none(), "only once");
        assert_eq!(engine.active().len(), 1);
    }

    #[test]
    fn preloaded_history_keeps_alerts_but_raises_none() {
        // After a restart, stored results of a check no longer configured are preloaded:
        // they must not fire (and then resolve) an alert.
        let mut engine = engine(CERT_RULES);
        engine.preload(&[days("removed:443", 1_000, 2.0)]);
        assert!(engine.tick(2_000).is_empty());
        assert!(engine.tick(400_000).is_empty());
        assert!(engine.active().is_empty());
        // A live result of the same series does raise one.
        let t = engine.ingest(&[days("removed:443", 401_000, 2.0)], 401_000);
        assert_eq!(t.len(), 2);
    }

    const ESCALATING: &str = r#"
rules:
  - name: Down
    expr: up == 0
    severity: critical
    channels: [team]
    escalation:
      - {after: 10m, channels: [oncall]}
      - {after: 30m, channels: [manager, team]}
"#;

    fn up(ts: i64, value: f64) -> Sample {
        Sample::new("up", Labels::from([("host".to_string(), "db".to_string())]), ts, value)
    }

    fn routing(transitions: &[Transition]) -> Vec<(u32, Vec<String>)> {
        transitions.iter().map(|t| (t.escalation_level, t.channels.clone())).collect()
    }

    #[test]
    fn unacknowledged_alerts_escalate_and_resolution_reaches_every_level() {
        let mut engine = engine(ESCALATING);
        let minute = 60_000;
        assert_eq!(routing(&engine.ingest(&[up(0, 0.0)], 0)), vec![(0, vec!["team".to_string()])]);
        assert!(engine.ingest(&[up(9 * minute, 0.0)], 9 * minute).is_empty());
        assert_eq!(
            routing(&engine.ingest(&[up(10 * minute, 0.0)], 10 * minute)),
            vec![(1, vec!["oncall".to_string()])]
        );
        assert!(engine.ingest(&[up(11 * minute, 0.0)], 11 * minute).is_empty(), "each level once");
        let resolved = engine.ingest(&[up(12 * minute, 1.0)], 12 * minute);
        assert_eq!(resolved[0].to, AlertState::Resolved);
        assert_eq!(resolved[0].channels, vec!["team", "oncall"], "levels 1 and 2 heard of it, not level 3");
    }

    #[test]
    fn acknowledging_stops_escalation() {
        let mut engine = engine(ESCALATING);
        engine.ingest(&[up(0, 0.0)], 0);
        let labels = engine.active()[0].labels.clone();
        assert!(engine.acknowledge(
            "Down",
            &labels,
            Acknowledgement { by: "bob".into(), at_ms: 1, comment: String::new() }
        ));
        assert!(engine.ingest(&[up(40 * 60_000, 0.0)], 40 * 60_000).is_empty(), "no escalation once acknowledged");
    }

    #[test]
    fn pending_changes_notify_no_one() {
        let mut engine = engine(RULES);
        let t = engine.ingest(&[cpu("a", 0, 0.95)], 0);
        assert_eq!(t[0].to, AlertState::Pending);
        assert!(t[0].channels.is_empty());
    }

    #[test]
    fn a_restored_engine_does_not_notify_again() {
        let mut engine = engine(RULES);
        engine.ingest(&[cpu("a", 0, 0.95)], 0);
        engine.tick(30_000); // firing
        let saved = serde_json::to_string(&engine.state()).unwrap();

        let mut restarted = self::engine(RULES);
        restarted.restore(serde_json::from_str(&saved).unwrap());
        restarted.preload(&[cpu("a", 25_000, 0.97)]);
        assert!(restarted.tick(31_000).is_empty(), "still firing, nothing new to say");
        assert!(restarted.ingest(&[cpu("a", 32_000, 0.99)], 32_000).is_empty());
        assert_eq!(restarted.active()[0].state, AlertState::Firing);
        assert_eq!(restarted.active()[0].since_ms, 30_000);
        restarted.ingest(&[cpu("a", 40_000, 0.1)], 40_000);
        let resolved = restarted.tick(60_000);
        assert_eq!(states(&resolved), vec![("a".into(), AlertState::Firing, AlertState::Resolved)]);
        assert_eq!(restarted.inputs(), (vec!["cpu_usage_ratio".to_string()], Duration::from_secs(300)));
    }

    #[test]
    fn acknowledge_only_firing_alerts() {
        let mut engine = engine("rules:\n  - {name: Hot, expr: temp > 50, severity: warning}\n");
        engine.ingest(&[Sample::new("temp", Labels::new(), 0, 70.0)], 0);
        let labels = engine.active()[0].labels.clone();
        let ack = Acknowledgement { by: "alice".into(), at_ms: 5, comment: "on it".into() };
        let id = engine.active()[0].id.clone();
        assert_eq!(id.len(), 16);
        assert!(engine.acknowledge_id(&id, ack.clone()));
        assert!(engine.acknowledge("Hot", &labels, ack.clone()));
        assert_eq!(engine.active()[0].acknowledged, Some(ack.clone()));
        assert!(!engine.acknowledge("Other", &labels, ack));
    }

    #[test]
    fn samples_no_rule_needs_are_not_kept() {
        let mut engine = engine(RULES);
        assert!(engine.ingest(&[Sample::new("memory_used_bytes", Labels::new(), 0, 1.0)], 0).is_empty());
        assert!(engine.window_is_empty());
    }

    fn host(name: &str) -> Labels {
        Labels::from([("host".to_string(), name.to_string())])
    }

    #[test]
    fn check_rules_watch_status_and_duration() {
        use secumon_core::{CheckResult, CheckStatus};
        let mut engine = engine(
            r#"
rules:
  - {name: SiteDown, source: check, check: {kind: http}, expr: status != ok, severity: critical}
  - {name: SiteSlow, source: check, expr: duration > 2s, severity: warning}
"#,
        );
        let run = |status, duration_us, ts| CheckResult {
            check_id: "shop".into(),
            kind: "http".into(),
            target: "https://shop.example".into(),
            status,
            timestamp_ms: ts,
            duration_us,
            details: serde_json::Value::Null,
            samples: vec![],
        };
        let samples = |r: CheckResult| r.metric_samples();
        assert!(engine.ingest(&samples(run(CheckStatus::Ok, 300_000, 0)), 0).is_empty());
        let t = engine.ingest(&samples(run(CheckStatus::Critical, 2_500_000, 1_000)), 1_000);
        let fired: Vec<(&str, &str, f64)> =
            t.iter().map(|t| (t.rule.as_str(), t.labels["target"].as_str(), t.value)).collect();
        assert_eq!(fired, vec![("SiteDown", "https://shop.example", 2.0), ("SiteSlow", "https://shop.example", 2.5)]);
        let t = engine.ingest(&samples(run(CheckStatus::Ok, 100_000, 2_000)), 2_000);
        assert!(t.iter().all(|t| t.to == AlertState::Resolved) && t.len() == 2);
    }

    #[test]
    fn agents_that_fall_silent_fire_and_resolve_when_back() {
        let mut engine = engine("rules:\n  - {name: AgentDown, source: agent, no_data: 2m, severity: critical}\n");
        assert!(engine.agent_seen(host("web-1"), 0, 0).is_empty());
        assert!(engine.agent_seen(host("web-2"), 0, 0).is_empty());
        assert!(engine.agent_seen(host("web-2"), 100_000, 100_000).is_empty());
        assert!(engine.tick(119_000).is_empty());
        let t = engine.tick(120_000);
        assert_eq!(states(&t), vec![("web-1".into(), AlertState::Inactive, AlertState::Firing)]);
        assert_eq!(t[0].value, 120.0, "seconds without data");
        let t = engine.agent_seen(host("web-1"), 130_000, 130_000);
        assert_eq!(states(&t), vec![("web-1".into(), AlertState::Firing, AlertState::Resolved)]);
    }

    const AGENT_DOWN: &str =
        "rules:\n  - {name: AgentDown, source: agent, no_data: 2m, severity: critical, channels: [ops]}\n";

    fn agent(host: &str, id: &str) -> Labels {
        Labels::from([("host".to_string(), host.to_string()), ("agent_id".to_string(), id.to_string())])
    }

    #[test]
    fn a_restart_keeps_agent_down_firing_silently_and_gives_the_others_their_grace() {
        let mut engine = engine(AGENT_DOWN);
        engine.agent_seen(agent("web-1", "a1"), 0, 0);
        let t = engine.tick(120_000);
        assert_eq!(t.len(), 1, "web-1 is down");
        let saved = serde_json::to_string(&engine.state()).unwrap();

        // The server restarts at 300 s; web-1 was last heard from at 0, web-2 at 250 s.
        let mut restarted = self::engine(AGENT_DOWN);
        restarted.restore(serde_json::from_str(&saved).unwrap());
        restarted.agent_known(agent("web-1", "a1"), 0, 300_000);
        restarted.agent_known(agent("web-2", "a2"), 250_000, 300_000);
        for now in [301_000, 360_000, 419_000] {
            assert!(restarted.tick(now).is_empty(), "nothing to say at {now}");
            assert_eq!(restarted.active().len(), 1, "web-1 still listed at {now}");
            assert_eq!(restarted.active()[0].state, AlertState::Firing);
            assert_eq!(restarted.active()[0].since_ms, 120_000, "the same alert");
        }
        // web-2 had its full no_data from the restart, then counts as down.
        let t = restarted.tick(420_000);
        assert_eq!(t.iter().map(|t| t.labels["host"].as_str()).collect::<Vec<_>>(), ["web-2"]);
        let t = restarted.agent_seen(agent("web-1", "a1"), 421_000, 421_000);
        assert_eq!(states(&t), vec![("web-1".into(), AlertState::Firing, AlertState::Resolved)]);
    }

    #[test]
    fn deleted_agents_and_api_pushers_never_page_agent_down() {
        let mut engine = engine(AGENT_DOWN);
        engine.agent_seen(agent("web-1", "a1"), 0, 0);
        engine.agent_seen(agent("db-1", "a2"), 0, 0);
        engine.agent_seen(agent("backup", "api:default:nightly-backup"), 0, 0);
        let t = engine.tick(120_000);
        let hosts: Vec<&str> = t.iter().map(|t| t.labels["host"].as_str()).collect();
        assert_eq!(hosts, ["web-1", "db-1"], "by labels (agent a1, a2); the API pusher is not an agent");
        // db-1 is deleted: its alert ends, and it is never down again.
        let t = engine.forget_agent("a2", 130_000);
        assert_eq!(states(&t), vec![("db-1".into(), AlertState::Firing, AlertState::Resolved)]);
        assert!(engine.tick(600_000).is_empty());
        // web-1 deleted before it ever went down: no page.
        let mut web_only = engine_with_web_1();
        web_only.forget_agent("a1", 60_000);
        assert!(web_only.tick(600_000).is_empty());

        // A rule can ask for API sources.
        let mut engine = self::engine(
            "rules:\n  - {name: PushStopped, source: agent, no_data: 2m, api_sources: true, severity: warning}\n",
        );
        engine.agent_seen(agent("backup", "api:default:nightly-backup"), 0, 0);
        assert_eq!(engine.tick(120_000).len(), 1);
    }

    #[test]
    fn a_deleted_agent_pages_again_only_after_living_a_whole_no_data_since() {
        let mut engine = engine(AGENT_DOWN);
        engine.agent_seen(agent("web-1", "a1"), 0, 0);
        engine.forget_agent("a1", 10_000);
        // A batch that was in flight when it was deleted arrives, then nothing.
        assert!(engine.agent_seen(agent("web-1", "a1"), 11_000, 11_000).is_empty());
        assert!(engine.tick(600_000).is_empty(), "one late batch is no agent to page about");
        assert!(engine.active().is_empty());

        // The mark survives a restart, even for an agent the store lists again.
        let saved = serde_json::to_string(&engine.state()).unwrap();
        let mut restarted = self::engine(AGENT_DOWN);
        restarted.restore(serde_json::from_str(&saved).unwrap());
        restarted.agent_known(agent("web-1", "a1"), 11_000, 700_000);
        assert!(restarted.tick(1_000_000).is_empty(), "a restart does not arm it");

        // Re-installed: it pushes for less than no_data (2 m), then stops: still no page.
        restarted.agent_seen(agent("web-1", "a1"), 1_000_000, 1_000_000);
        restarted.agent_seen(agent("web-1", "a1"), 1_100_000, 1_100_000);
        assert!(restarted.tick(1_500_000).is_empty());
        // It keeps going for no_data: an agent like any other, down when it goes quiet.
        for at in [1_600_000, 1_660_000] {
            restarted.agent_seen(agent("web-1", "a1"), at, at);
            assert!(!restarted.state().deleted_agents.is_empty(), "not yet at {at}");
        }
        restarted.agent_seen(agent("web-1", "a1"), 1_720_000, 1_720_000);
        assert!(restarted.state().deleted_agents.is_empty(), "the mark is gone once it is earned");
        assert!(restarted.tick(1_839_000).is_empty());
        let t = restarted.tick(1_840_000);
        assert_eq!(states(&t), vec![("web-1".into(), AlertState::Inactive, AlertState::Firing)]);
        // Deleted again: its alert resolves, and it is marked again.
        assert_eq!(restarted.forget_agent("a1", 1_850_000).len(), 1);
        restarted.agent_seen(agent("web-1", "a1"), 1_851_000, 1_851_000);
        assert!(restarted.tick(2_000_000).is_empty());
    }

    #[test]
    fn removing_a_rule_resolves_its_stale_alerts_too() {
        let mut engine = engine(CERT_RULES);
        engine.ingest(&[days("a:443", 0, 9.0)], 0);
        engine.tick(301_000);
        assert_eq!(engine.active()[0].state, AlertState::Stale);
        let t = engine.set_rules(Vec::new(), 302_000);
        assert_eq!(moves(&t), vec![("CertExpiring", AlertState::Stale, AlertState::Resolved, 1)]);
        assert_eq!(t[0].channels, vec!["ops"], "its receivers close the incident");
        assert!(engine.active().is_empty());
    }

    fn engine_with_web_1() -> AlertEngine {
        let mut engine = engine(AGENT_DOWN);
        engine.agent_seen(agent("web-1", "a1"), 0, 0);
        engine
    }

    #[test]
    fn silences_have_ids_and_can_be_expired_early() {
        let mut engine = engine("rules:\n  - {name: Hot, expr: temp > 50, severity: warning, channels: [ops]}\n");
        let silence = |host: &str| Silence {
            id: String::new(),
            matchers: host_labels(host),
            starts_ms: 0,
            ends_ms: 3_600_000,
            created_by: "ops".into(),
            comment: String::new(),
        };
        let lab = engine.add_silence(silence("lab"));
        let twin = engine.add_silence(silence("lab"));
        assert_eq!(lab.len(), 16);
        assert_ne!(lab, twin, "two silences alike still get two ids");
        assert_eq!(engine.silences(1).len(), 2);
        assert_eq!(engine.expire_silence(&lab, 60_000).map(|s| s.ends_ms), Some(60_000));
        assert!(engine.expire_silence(&lab, 60_001).is_none(), "already over");
        assert!(engine.expire_silence(&twin, 60_000).is_some());
        let temp = Sample::new("temp", host_labels("lab"), 61_000, 70.0);
        let t = engine.ingest(&[temp], 61_000);
        assert!(!t[0].silenced, "expired silences mute nothing");
        // Silences saved before they had ids get one when restored.
        let mut saved = engine.state();
        saved.silences = vec![silence("old")];
        let mut restarted = self::engine("rules: []\n");
        restarted.restore(saved);
        assert_eq!(restarted.silences(1)[0].id.len(), 16);
    }

    fn host_labels(name: &str) -> Labels {
        Labels::from([("host".to_string(), name.to_string())])
    }

    #[test]
    fn log_rules_count_matching_lines_over_their_window() {
        let mut engine = engine(
            r#"
rules:
  - name: SshBruteForce
    source: log
    pattern: "Failed password for .* from"
    log_source: auth
    window: 1m
    expr: count >= 3
    severity: warning
"#,
        );
        let line = |ts, source: &str, text: &str| LogRecord {
            timestamp_ms: ts,
            source: source.into(),
            labels: Labels::new(),
            line: text.into(),
        };
        let failed = "sshd[1]: Failed password for root from 203.0.113.9 port 22";
        let lines = [
            line(0, "/var/log/auth.log", failed),
            line(1_000, "/var/log/auth.log", "sshd[1]: Accepted publickey for ops"),
            line(2_000, "/var/log/syslog", failed),
            line(3_000, "/var/log/auth.log", failed),
        ];
        assert!(engine.ingest_logs(&host("bastion"), &lines, 3_000).is_empty(), "two matches in auth.log so far");
        let t = engine.ingest_logs(&host("bastion"), &[line(4_000, "/var/log/auth.log", failed)], 4_000);
        assert_eq!(states(&t), vec![("bastion".into(), AlertState::Inactive, AlertState::Firing)]);
        assert_eq!((t[0].value, t[0].labels["source"].as_str()), (3.0, "/var/log/auth.log"));
        // A minute later the lines have left the window.
        let t = engine.tick(62_000);
        assert_eq!(states(&t), vec![("bastion".into(), AlertState::Firing, AlertState::Resolved)]);
    }

    #[test]
    fn finding_rules_fire_on_open_findings_at_or_above_the_severity() {
        use secumon_core::{Finding, FindingStatus, Severity};
        let mut engine =
            engine("rules:\n  - {name: CriticalVuln, source: finding, expr: severity >= high, severity: critical}\n");
        let finding = |id: &str, severity, status| Finding {
            id: id.into(),
            severity,
            asset: "web-1".into(),
            title: format!("{id} in openssl"),
            description: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            status,
        };
        let t = engine.ingest_findings(
            &[
                finding("CVE-2024-0001", Severity::Medium, FindingStatus::Open),
                finding("CVE-2024-0002", Severity::Critical, FindingStatus::Open),
            ],
            0,
        );
        let fired: Vec<&str> = t.iter().map(|t| t.labels["finding"].as_str()).collect();
        assert_eq!(fired, vec!["CVE-2024-0002"]);
        assert_eq!(t[0].labels["asset"], "web-1");
        let t = engine.ingest_findings(&[finding("CVE-2024-0002", Severity::Critical, FindingStatus::Fixed)], 5_000);
        assert_eq!(t[0].to, AlertState::Resolved);
    }

    #[test]
    fn replacing_rules_keeps_alerts_of_kept_rules_and_resolves_the_rest() {
        let two = "rules:\n  - {name: Hot, expr: temp > 50, severity: warning, channels: [ops]}\n  - {name: Cold, expr: temp < 60, severity: info}\n";
        let mut engine = engine(two);
        assert_eq!(engine.ingest(&[Sample::new("temp", Labels::new(), 0, 55.0)], 0).len(), 2);
        let only_hot =
            RuleFile::parse("rules:\n  - {name: Hot, expr: temp > 50, severity: warning, channels: [ops]}\n", "x")
                .unwrap()
                .rules;
        let t = engine.set_rules(only_hot.clone(), 1_000);
        assert_eq!(t.iter().map(|t| (t.rule.as_str(), t.to)).collect::<Vec<_>>(), vec![("Cold", AlertState::Resolved)]);
        assert_eq!(engine.active().len(), 1);
        assert!(engine.set_rules(only_hot, 2_000).is_empty());
        assert!(engine.ingest(&[Sample::new("temp", Labels::new(), 3_000, 56.0)], 3_000).is_empty(), "still firing");
    }

    impl AlertEngine {
        fn window_is_empty(&self) -> bool {
            format!("{:?}", self.window) == format!("{:?}", SampleWindow::default())
        }
    }
}
