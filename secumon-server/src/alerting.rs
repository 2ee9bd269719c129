//! The server's alerting: committed batches go through the alert engine as they arrive,
//! a one-second tick runs the timers (`for`, `resolve_after`, agents gone silent), and
//! every change is appended to the stored history and handed to delivery lanes without
//! holding up ingest. Rules come from the rules file (read-only) and from the API (kept in
//! the store). The engine's state is saved after every change and restored at start, with
//! the recent data the rules need, so a restart neither forgets nor repeats an alert.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use secumon_alert::{
    Acknowledgement, ActiveAlert, AlertEngine, AlertState, DeliveryAttempt, Dispatcher, EngineState, Grouper,
    Notification, Notifier, Rule, RuleFile, RuleSource, RuleSpec, Silence, Transition,
};
use secumon_core::{Finding, FindingStatus, IngestBatch, Labels, Sample, now_ms};
use secumon_store::{Aggregation, AlertHistoryEntry, FindingFilter, RangeQuery, SeriesSelector, Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

pub use secumon_api::{RuleOrigin, RuleView};

use crate::ServerError;
use crate::live::{LiveEvent, LiveFeed};

/// Where the engine's state is kept in the store.
const STATE_KEY: &str = "alerting";
/// Where rules created through the API are kept.
const RULES_KEY: &str = "alert-rules";
/// Deliveries run in this many ordered lanes: one alert's notifications always share a
/// lane, so its resolution never overtakes its firing; different alerts go in parallel.
const DELIVERY_LANES: usize = 16;
/// Log lines read back per agent at start, for log rules' windows.
const LOG_PRELOAD: u32 = 2_000;

/// What a rule would do now, evaluated against stored data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleTest {
    /// The rule's name.
    pub rule: String,
    /// When it was evaluated (ms since 1970).
    pub evaluated_at_ms: i64,
    /// Alerts the rule would raise now: `firing`, or `pending` while its `for` runs.
    pub alerts: Vec<RuleTestAlert>,
}

/// One alert a rule test would raise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleTestAlert {
    /// The alert's labels.
    pub labels: Labels,
    /// The value that crossed; NaN when there was none.
    pub value: f64,
    /// `firing`, or `pending` while the rule's `for` runs.
    pub state: AlertState,
}

/// Why a rule change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule does not parse or does not make sense; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A rule of that name exists already (in the file or through the API).
    #[error("a rule named {0:?} exists already")]
    Exists(String),
    /// No rule of that name.
    #[error("no rule named {0:?}")]
    NotFound(String),
    /// The rule comes from the rules file: only editing the file changes it.
    #[error("rule {0:?} comes from the rules file; edit the file to change it")]
    ReadOnly(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum HistoryWrite {
    Append(Vec<AlertHistoryEntry>),
    Flush(oneshot::Sender<()>),
}

/// One tenant's alerting: its rules (file and API), the alert engine's state, silences,
/// history and notification delivery.
pub struct Alerting {
    store: Arc<dyn Store>,
    tenant: String,
    /// The latest engine state to save and its generation; a background task writes it,
    /// newest wins, and then announces the generation saved.
    unsaved: watch::Sender<(u64, String)>,
    engine: Mutex<AlertEngine>,
    grouper: Mutex<Grouper>,
    channels: BTreeSet<String>,
    file_rules: Vec<Rule>,
    /// Rules made through the API; the async lock serialises changes and their saving.
    api_rules: tokio::sync::Mutex<Vec<Rule>>,
    history: mpsc::UnboundedSender<HistoryWrite>,
    /// Each notification goes with the state generation it follows from.
    lanes: Vec<mpsc::UnboundedSender<(u64, Notification)>>,
    deliveries: Arc<DeliveryCounters>,
    live: LiveFeed,
}

/// Notifications handed to the channels, and channel deliveries that failed for good.
#[derive(Debug, Default)]
struct DeliveryCounters {
    notifications: AtomicU64,
    failures: AtomicU64,
    /// Notifications queued on the lanes or being delivered.
    queued: AtomicU64,
}

impl Alerting {
    /// Builds the engine from the rules file and the stored API rules, restores its saved
    /// state and the recent data its rules read, and starts the saving, history and
    /// delivery tasks.
    pub async fn start(
        config: RuleFile,
        store: Arc<dyn Store>,
        tenant: &str,
        live: LiveFeed,
    ) -> Result<Arc<Self>, ServerError> {
        let mut notifiers: HashMap<String, Arc<dyn Notifier>> = HashMap::new();
        for (name, channel) in &config.channels {
            let notifier =
                channel.build().map_err(|error| ServerError::Alerting(format!("channel {name:?}: {error}")))?;
            notifiers.insert(name.clone(), notifier);
        }
        // The rules file's own rules use any channel; rules this tenant's admins write only
        // those opened to it (the provider's channels are not the tenant's).
        let channels: BTreeSet<String> = config
            .channels
            .iter()
            .filter(|(_, channel)| channel.open_to(tenant))
            .map(|(name, _)| name.clone())
            .collect();
        let file_rules = config.rules;
        let api_rules = stored_api_rules(store.as_ref(), tenant, &file_rules, &channels).await?;
        let all: Vec<Rule> = file_rules.iter().chain(&api_rules).cloned().collect();
        let mut engine = AlertEngine::new(all.clone());
        if let Some(saved) = store.get_state(tenant, STATE_KEY).await? {
            match serde_json::from_str::<EngineState>(&saved) {
                Ok(state) => engine.restore(state),
                Err(error) => tracing::error!(%error, "saved alert state unreadable; starting afresh"),
            }
        }
        // Agents get a full `no_data` from the server's start (while it was down they could
        // not have sent anything), except those already alerted on: those stay firing.
        load_inputs(&mut engine, store.as_ref(), tenant, now_ms(), AgentClock::ServerStart).await?;

        let (history, history_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_history(Arc::clone(&store), tenant.to_string(), history_rx));
        let dispatcher = Arc::new(Dispatcher::new(notifiers));
        let deliveries = Arc::new(DeliveryCounters::default());
        let (saved, saved_rx) = watch::channel(0u64);
        let lanes = (0..DELIVERY_LANES)
            .map(|_| {
                let (lane, queue) = mpsc::unbounded_channel();
                tokio::spawn(deliver_in_order(
                    queue,
                    saved_rx.clone(),
                    Arc::clone(&dispatcher),
                    history.clone(),
                    Arc::clone(&deliveries),
                ));
                lane
            })
            .collect();
        let alerting = Arc::new(Self {
            store,
            tenant: tenant.to_string(),
            unsaved: watch::Sender::new((0, String::new())),
            grouper: Mutex::new(Grouper::new(&all)),
            engine: Mutex::new(engine),
            channels,
            file_rules,
            api_rules: tokio::sync::Mutex::new(api_rules),
            history,
            lanes,
            deliveries,
            live,
        });
        let mut unsaved = alerting.unsaved.subscribe();
        let (store, tenant) = (Arc::clone(&alerting.store), alerting.tenant.clone());
        tokio::spawn(async move {
            while unsaved.changed().await.is_ok() {
                let (generation, state) = unsaved.borrow_and_update().clone();
                if let Err(error) = store.put_state(&tenant, STATE_KEY, &state).await {
                    tracing::error!(%error, "cannot save alert state");
                }
                // Failed or not: notifications waiting on it go out (a store that refuses
                // writes must not silence alerts).
                saved.send_replace(generation);
            }
        });
        Ok(alerting)
    }

    /// Evaluates the rules a just-committed batch concerns: its samples and check results
    /// as stored (with `host` and `tenant` labels), its logs, and the agent being alive.
    pub fn observe_batch(&self, tenant: &str, batch: &IngestBatch) {
        let samples: Vec<Sample> = batch
            .metric_samples()
            .map(|s| Sample { series: batch.stored_series_key(tenant, &s.series), ..s.into_owned() })
            .collect();
        let now = now_ms();
        let transitions = {
            let mut engine = lock(&self.engine);
            let mut transitions = engine.agent_seen(agent_labels(&batch.host, &batch.agent_id), now, now);
            transitions.extend(engine.ingest(&samples, now));
            if !batch.logs.is_empty() {
                transitions.extend(engine.ingest_logs(&host_labels(&batch.host), &batch.logs, now));
            }
            transitions
        };
        self.publish(transitions);
    }

    /// Evaluates the rules on the server's own stored samples (a batch without an agent id,
    /// such as a refused sender's clock offset): no agent is seen alive by it.
    pub fn observe_own_batch(&self, tenant: &str, batch: &IngestBatch) {
        let samples: Vec<Sample> = batch
            .metric_samples()
            .map(|s| Sample { series: batch.stored_series_key(tenant, &s.series), ..s.into_owned() })
            .collect();
        let transitions = lock(&self.engine).ingest(&samples, now_ms());
        self.publish(transitions);
    }

    /// Evaluates finding rules against findings that were just stored (new, reopened or
    /// fixed) and the `findings_open` samples the import wrote.
    pub fn observe_findings(&self, findings: &[Finding], samples: &[Sample]) {
        let now = now_ms();
        let transitions = {
            let mut engine = lock(&self.engine);
            let mut transitions = engine.ingest_findings(findings, now);
            transitions.extend(engine.ingest(samples, now));
            transitions
        };
        self.publish(transitions);
    }

    /// Evaluates the rules on samples that are not stored: the server's view of itself,
    /// which must alert even when the store cannot take writes.
    pub fn observe_unstored(&self, samples: &[Sample]) {
        let transitions = lock(&self.engine).ingest(samples, now_ms());
        self.publish(transitions);
    }

    /// Runs the timers; called every second.
    pub fn tick(&self) {
        let now = now_ms();
        let transitions = lock(&self.engine).tick(now);
        self.publish(transitions);
        let due = lock(&self.grouper).due(now);
        self.send(due);
    }

    /// The alerts pending, firing or stale now.
    pub fn active(&self) -> Vec<ActiveAlert> {
        lock(&self.engine).active()
    }

    /// Acknowledges a firing alert (which stops its escalation); false if there is none.
    pub fn acknowledge(&self, id: &str, ack: Acknowledgement) -> bool {
        let rule = lock(&self.engine).active().into_iter().find(|a| a.id == id).map(|a| a.rule);
        let done = lock(&self.engine).acknowledge_id(id, ack.clone());
        if done {
            self.persist();
            tracing::info!(alert = id, by = %ack.by, comment = %ack.comment, "alert acknowledged");
            let record = serde_json::json!({"alert": id, "by": ack.by, "comment": ack.comment});
            self.record(vec![entry(rule.as_deref().unwrap_or(""), ack.at_ms, "acknowledged", record)]);
        }
        done
    }

    /// Adds a silence; returns it with its id.
    pub fn add_silence(&self, mut silence: Silence) -> Silence {
        silence.id = lock(&self.engine).add_silence(silence.clone());
        tracing::info!(silence = %silence.id, matchers = ?silence.matchers, by = %silence.created_by, "silence added");
        self.record(vec![entry("", silence.starts_ms, "silence_added", &silence)]);
        self.persist();
        silence
    }

    /// Ends a current silence now; `None` if there is none with this id.
    pub fn expire_silence(&self, id: &str, by: &str) -> Option<Silence> {
        let now = now_ms();
        let expired = lock(&self.engine).expire_silence(id, now)?;
        tracing::info!(silence = id, by, "silence expired early");
        let record = serde_json::json!({"silence": expired, "by": by});
        self.record(vec![entry("", now, "silence_expired", record)]);
        self.persist();
        Some(expired)
    }

    /// An operator ends a firing or stale alert (its check was removed for good, say);
    /// false if there is no such alert. Its receivers hear it resolved.
    pub fn resolve(&self, id: &str, by: &str) -> bool {
        let now = now_ms();
        let Some(transition) = lock(&self.engine).resolve_id(id, now) else { return false };
        tracing::info!(alert = id, by, "alert resolved by an operator");
        let record = serde_json::json!({"alert": id, "by": by});
        self.record(vec![entry(&transition.rule, now, "resolved_by_operator", record)]);
        self.publish(vec![transition]);
        true
    }

    /// Forgets an agent that was deleted or revoked: it never counts as down again, and
    /// its no-data alerts resolve.
    pub fn forget_agent(&self, agent_id: &str) {
        let transitions = lock(&self.engine).forget_agent(agent_id, now_ms());
        self.persist();
        self.publish(transitions);
    }

    /// The silences in force or still to come.
    pub fn silences(&self) -> Vec<Silence> {
        lock(&self.engine).silences(now_ms())
    }

    /// Every rule, those of the file first.
    pub async fn rules(&self) -> Vec<RuleView> {
        let api_rules = self.api_rules.lock().await;
        let view =
            |origin| move |rule: &Rule| RuleView { id: rule.name().to_string(), origin, rule: rule.spec.clone() };
        self.file_rules.iter().map(view(RuleOrigin::File)).chain(api_rules.iter().map(view(RuleOrigin::Api))).collect()
    }

    /// Adds a rule; it is evaluated from the next sample on.
    pub async fn create_rule(&self, spec: RuleSpec) -> Result<(), RuleError> {
        let rule = self.validate(spec)?;
        let mut api_rules = self.api_rules.lock().await;
        if self.file_rules.iter().chain(api_rules.iter()).any(|r| r.name() == rule.name()) {
            return Err(RuleError::Exists(rule.name().to_string()));
        }
        let mut changed = api_rules.clone();
        changed.push(rule.clone());
        self.apply_rules(&mut api_rules, changed, entry(rule.name(), now_ms(), "rule_created", &rule.spec)).await
    }

    /// Replaces the API rule named `id`; its alerts carry on under the new definition.
    pub async fn update_rule(&self, id: &str, spec: RuleSpec) -> Result<(), RuleError> {
        if spec.name != id {
            return Err(RuleError::Invalid(format!("the rule's name {:?} must be its id {id:?}", spec.name)));
        }
        let rule = self.validate(spec)?;
        let mut api_rules = self.api_rules.lock().await;
        let position = self.api_rule_position(&api_rules, id)?;
        let mut changed = api_rules.clone();
        changed[position] = rule.clone();
        self.apply_rules(&mut api_rules, changed, entry(id, now_ms(), "rule_updated", &rule.spec)).await
    }

    /// Removes the API rule named `id`; its firing alerts resolve.
    pub async fn delete_rule(&self, id: &str) -> Result<(), RuleError> {
        let mut api_rules = self.api_rules.lock().await;
        let position = self.api_rule_position(&api_rules, id)?;
        let mut changed = api_rules.clone();
        let removed = changed.remove(position);
        self.apply_rules(&mut api_rules, changed, entry(id, now_ms(), "rule_deleted", &removed.spec)).await
    }

    /// Evaluates a rule now against stored data, in an engine of its own: nothing is
    /// notified and the live alerts are untouched.
    pub async fn test_rule(&self, id: &str) -> Result<RuleTest, RuleError> {
        let rule =
            self.rules().await.into_iter().find(|r| r.id == id).ok_or_else(|| RuleError::NotFound(id.to_string()))?;
        let mut engine = AlertEngine::new(vec![Rule::from_spec(rule.rule).map_err(RuleError::Invalid)?]);
        // Deleted agents stay deleted in a test too: one that sent a late batch is not down.
        let deleted_agents = lock(&self.engine).state().deleted_agents;
        engine.restore(EngineState { deleted_agents, ..Default::default() });
        let now = now_ms();
        load_inputs(&mut engine, self.store.as_ref(), &self.tenant, now, AgentClock::LastSeen).await?;
        engine.tick(now);
        let alerts = engine
            .active()
            .into_iter()
            .map(|a| RuleTestAlert { labels: a.labels, value: a.value, state: a.state })
            .collect();
        Ok(RuleTest { rule: id.to_string(), evaluated_at_ms: now, alerts })
    }

    /// The latest history entries (transitions, acknowledgements, rule changes, failed
    /// deliveries), of one rule or all, newest first.
    pub async fn history(&self, rule: Option<&str>, limit: u32) -> Result<Vec<serde_json::Value>, StoreError> {
        self.flush_history().await;
        let entries = self.store.alert_history(&self.tenant, rule, limit).await?;
        Ok(entries.into_iter().filter_map(|e| serde_json::from_str(&e.record).ok()).collect())
    }

    /// The notification channels this tenant's rules may name.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().cloned().collect()
    }

    /// Deliveries that failed for good since the server started.
    pub fn delivery_failures(&self) -> u64 {
        self.deliveries.failures.load(Ordering::Relaxed)
    }

    /// Notifications waiting for delivery (or being delivered) now.
    pub fn notifications_queued(&self) -> u64 {
        self.deliveries.queued.load(Ordering::Relaxed)
    }

    /// Notifications handed to their channels since the server started.
    pub fn notifications_sent(&self) -> u64 {
        self.deliveries.notifications.load(Ordering::Relaxed)
    }

    /// Saves the engine's state and the pending history now; the server calls it on the
    /// way down.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_history().await;
        let state = self.state_json();
        self.store.put_state(&self.tenant, STATE_KEY, &state).await
    }

    async fn flush_history(&self) {
        let (done, written) = oneshot::channel();
        if self.history.send(HistoryWrite::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    fn validate(&self, spec: RuleSpec) -> Result<Rule, RuleError> {
        if spec.name.trim().is_empty() || spec.name.len() > 200 || spec.name.contains('/') {
            return Err(RuleError::Invalid("a rule needs a name of 1 to 200 characters without `/`".into()));
        }
        let rule = Rule::from_spec(spec).map_err(RuleError::Invalid)?;
        let named = rule.spec.channels.iter().chain(rule.spec.escalation.iter().flat_map(|l| l.channels.iter()));
        if let Some(unknown) = named.into_iter().find(|c| !self.channels.contains(*c)) {
            let known: Vec<&String> = self.channels.iter().collect();
            return Err(RuleError::Invalid(format!("no channel named {unknown:?} (channels: {known:?})")));
        }
        Ok(rule)
    }

    fn api_rule_position(&self, api_rules: &[Rule], id: &str) -> Result<usize, RuleError> {
        if self.file_rules.iter().any(|r| r.name() == id) {
            return Err(RuleError::ReadOnly(id.to_string()));
        }
        api_rules.iter().position(|r| r.name() == id).ok_or_else(|| RuleError::NotFound(id.to_string()))
    }

    /// Saves the new API rules, then puts them to work.
    async fn apply_rules(
        &self,
        api_rules: &mut Vec<Rule>,
        changed: Vec<Rule>,
        change: AlertHistoryEntry,
    ) -> Result<(), RuleError> {
        let specs: Vec<&RuleSpec> = changed.iter().map(|r| &r.spec).collect();
        let json = serde_json::to_string(&specs).map_err(|e| RuleError::Invalid(e.to_string()))?;
        self.store.put_state(&self.tenant, RULES_KEY, &json).await?;
        tracing::info!(rule = %change.rule, change = %change.record, "alert rules changed");
        self.record(vec![change]);
        *api_rules = changed;
        let all: Vec<Rule> = self.file_rules.iter().chain(api_rules.iter()).cloned().collect();
        lock(&self.grouper).set_rules(&all);
        let transitions = lock(&self.engine).set_rules(all, now_ms());
        self.persist();
        self.publish(transitions);
        Ok(())
    }

    fn state_json(&self) -> String {
        serde_json::to_string(&lock(&self.engine).state()).unwrap_or_default()
    }

    /// Hands the engine's state to the saver. The state is taken under the watch's lock,
    /// so states are queued in the order they were taken.
    fn persist(&self) {
        self.unsaved.send_modify(|(generation, state)| {
            *generation += 1;
            *state = self.state_json();
        });
    }

    fn record(&self, entries: Vec<AlertHistoryEntry>) {
        if self.history.send(HistoryWrite::Append(entries)).is_err() {
            tracing::error!("alert history writer is gone; entries not stored");
        }
    }

    fn publish(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        for transition in &transitions {
            tracing::info!(rule = %transition.rule, labels = ?transition.labels, from = ?transition.from,
                to = ?transition.to, value = transition.value, silenced = transition.silenced, "alert");
            self.live.publish(LiveEvent::Alert { tenant: self.tenant.clone(), transition: transition.clone() });
        }
        self.record(transitions.iter().map(|t| entry(&t.rule, t.at_ms, "transition", t)).collect());
        self.persist();
        let ready = lock(&self.grouper).add(transitions, now_ms());
        self.send(ready);
    }

    /// Queues notifications on their lanes without making ingest wait for receivers. Each
    /// is delivered once the state that led to it is saved: an alert process that dies
    /// after notifying leaves a state that says so, and the next owner of the tenant (see
    /// `alert_lease`) does not notify again. (One that dies between saving and delivering
    /// loses that notification: at most once, rather than twice.)
    fn send(&self, notifications: Vec<Notification>) {
        let generation = self.unsaved.borrow().0;
        for notification in notifications {
            let mut hasher = DefaultHasher::new();
            (&notification.rule, &notification.group_labels).hash(&mut hasher);
            let lane = &self.lanes[hasher.finish() as usize % self.lanes.len()];
            self.deliveries.queued.fetch_add(1, Ordering::Relaxed);
            if lane.send((generation, notification)).is_err() {
                self.deliveries.queued.fetch_sub(1, Ordering::Relaxed);
                tracing::error!("alert delivery lane is gone; notification not sent");
            }
        }
    }
}

/// Delivers one lane's notifications one after the other; a delivery that fails for good
/// is counted, logged and written to the history, and so is what an action channel's API
/// answered (`action_answered`), whether the call succeeded or not.
async fn deliver_in_order(
    mut queue: mpsc::UnboundedReceiver<(u64, Notification)>,
    mut saved: watch::Receiver<u64>,
    dispatcher: Arc<Dispatcher>,
    history: mpsc::UnboundedSender<HistoryWrite>,
    counters: Arc<DeliveryCounters>,
) {
    while let Some((generation, notification)) = queue.recv().await {
        // The saver gone (the engine is being dropped) counts as saved.
        let _ = saved.wait_for(|saved| *saved >= generation).await;
        let last: Vec<DeliveryAttempt> = dispatcher.deliver_all(&notification).await;
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        counters.notifications.fetch_add(1, Ordering::Relaxed);
        let failures = last.iter().filter(|attempt| attempt.error.is_some()).count();
        counters.failures.fetch_add(failures as u64, Ordering::Relaxed);
        let at = now_ms();
        let entries: Vec<AlertHistoryEntry> = last
            .iter()
            .filter(|attempt| attempt.error.is_some() || attempt.answer.is_some())
            .map(|attempt| {
                let mut record = serde_json::json!({"channel": attempt.channel, "attempts": attempt.attempt,
                    "error": attempt.error, "labels": attempt.labels, "status": notification.status});
                if let Some(answer) = &attempt.answer {
                    record["answer"] = serde_json::json!(answer);
                }
                let kind = if attempt.error.is_some() { "delivery_failed" } else { "action_answered" };
                entry(&notification.rule, at, kind, record)
            })
            .collect();
        if !entries.is_empty() {
            let _ = history.send(HistoryWrite::Append(entries));
        }
    }
}

/// Appends history entries as they come, batching what queued up meanwhile.
async fn write_history(store: Arc<dyn Store>, tenant: String, mut queue: mpsc::UnboundedReceiver<HistoryWrite>) {
    while let Some(first) = queue.recv().await {
        let mut pending = Vec::new();
        let mut waiting = Vec::new();
        let mut next = Some(first);
        while let Some(write) = next {
            match write {
                HistoryWrite::Append(entries) => pending.extend(entries),
                HistoryWrite::Flush(done) => waiting.push(done),
            }
            next = queue.try_recv().ok();
        }
        if !pending.is_empty()
            && let Err(error) = store.append_alert_history(&tenant, &pending).await
        {
            tracing::error!(%error, entries = pending.len(), "cannot store alert history");
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

fn entry(rule: &str, at_ms: i64, kind: &str, record: impl Serialize) -> AlertHistoryEntry {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("kind".to_string(), kind.into());
        object.entry("rule").or_insert_with(|| rule.into());
        object.entry("at_ms").or_insert_with(|| at_ms.into());
    }
    AlertHistoryEntry { rule: rule.to_string(), at_ms, record: value.to_string() }
}

/// API rules saved in the store; one that no longer validates is skipped with an error.
async fn stored_api_rules(
    store: &dyn Store,
    tenant: &str,
    file_rules: &[Rule],
    channels: &BTreeSet<String>,
) -> Result<Vec<Rule>, ServerError> {
    let Some(saved) = store.get_state(tenant, RULES_KEY).await? else { return Ok(Vec::new()) };
    let specs: Vec<serde_json::Value> = serde_json::from_str(&saved).unwrap_or_else(|error| {
        tracing::error!(%error, "stored alert rules unreadable; ignoring them");
        Vec::new()
    });
    let mut rules = Vec::new();
    for spec in specs {
        match serde_json::from_value::<Rule>(spec) {
            Ok(rule) if file_rules.iter().any(|r| r.name() == rule.name()) => {
                tracing::warn!(rule = rule.name(), "the rules file defines this rule too; the file's wins")
            }
            Ok(rule) if rule.spec.channels.iter().any(|c| !channels.contains(c)) => {
                tracing::warn!(rule = rule.name(), "stored rule names a channel that no longer exists");
                rules.push(rule);
            }
            Ok(rule) => rules.push(rule),
            Err(error) => tracing::error!(%error, "a stored alert rule no longer validates; skipped"),
        }
    }
    Ok(rules)
}

/// Why an engine is loaded: when agents count as last seen, and whether stored samples
/// may raise alerts.
#[derive(Clone, Copy, PartialEq)]
enum AgentClock {
    /// At the server's start: a restart is no reason to call every agent silent, and stored
    /// samples only keep restored alerts going.
    ServerStart,
    /// When they really were, and stored samples count: what a rule test wants to see.
    LastSeen,
}

/// Fills an engine with the recent stored data its rules read: samples of the series they
/// select, agents' last contact, and recent log lines when a log rule exists.
async fn load_inputs(
    engine: &mut AlertEngine,
    store: &dyn Store,
    tenant: &str,
    now: i64,
    agents: AgentClock,
) -> Result<(), StoreError> {
    let (names, lookback) = engine.inputs();
    for name in names {
        let query = RangeQuery {
            selector: SeriesSelector::new(name),
            start_ms: now - lookback.as_millis() as i64,
            end_ms: now,
            step_ms: 1,
            aggregation: Aggregation::Last,
        };
        let recent: Vec<Sample> = store
            .query_range(tenant, &query)
            .await?
            .into_iter()
            .flat_map(|s| {
                let series = s.series;
                s.points.into_iter().map(move |p| Sample {
                    series: series.clone(),
                    timestamp_ms: p.timestamp_ms,
                    value: p.value,
                })
            })
            .collect();
        match agents {
            // A restart: stored data keeps existing alerts going but raises none.
            AgentClock::ServerStart => engine.preload(&recent),
            // A rule test: stored data is all it has to go on.
            AgentClock::LastSeen => {
                engine.ingest(&recent, now);
            }
        }
    }
    // Open findings, so finding rules (from the file or added later) see them all.
    let open = FindingFilter { status: Some(FindingStatus::Open), limit: u32::MAX, ..Default::default() };
    engine.ingest_findings(&store.list_findings(tenant, &open).await?, now);
    let reads_logs = engine.rules().iter().any(|r| matches!(r.source, RuleSource::Log { .. }));
    for agent in store.list_agents(tenant).await? {
        let labels = agent_labels(&agent.host, &agent.agent_id);
        match agents {
            // A full `no_data` from the restart, but an agent already alerted on stays so.
            AgentClock::ServerStart => engine.agent_known(labels, agent.last_seen_ms, now),
            AgentClock::LastSeen => {
                engine.agent_seen(labels, agent.last_seen_ms, now);
            }
        }
        if reads_logs {
            let logs = store.recent_logs(tenant, &agent.host, LOG_PRELOAD).await?;
            engine.ingest_logs(&host_labels(&agent.host), &logs, now);
        }
    }
    Ok(())
}

/// What identifies an agent in no-data alerts.
fn agent_labels(host: &str, agent_id: &str) -> Labels {
    Labels::from([("host".to_string(), host.to_string()), ("agent_id".to_string(), agent_id.to_string())])
}

fn host_labels(host: &str) -> Labels {
    Labels::from([("host".to_string(), host.to_string())])
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
