//! The server's alerting: committed samples go through the alert engine as they arrive,
//! a one-second tick runs the `for` and `resolve_after` timers, and every transition is
//! kept in a bounded history and handed to the dispatcher without holding up ingest. The
//! engine's state is saved in the store after every change and restored at start, with the
//! recent samples the rules need, so a restart neither forgets nor repeats an alert.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use secumon_alert::{
    Acknowledgement, ActiveAlert, AlertEngine, Dispatcher, EngineState, Grouper, Notification, Notifier, RuleFile,
    Silence, Transition,
};
use secumon_core::{IngestBatch, Labels, Sample, now_ms};
use secumon_store::{Aggregation, RangeQuery, SeriesSelector, Store, StoreError};
use tokio::sync::watch;

use crate::ServerError;

/// Where the engine's state is kept in the store.
const STATE_KEY: &str = "alerting";

/// Transitions kept for the API, at most.
const HISTORY: usize = 10_000;

pub struct Alerting {
    store: Arc<dyn Store>,
    tenant: String,
    /// The latest engine state to save; a background task writes it, newest wins.
    unsaved: watch::Sender<String>,
    engine: Mutex<AlertEngine>,
    grouper: Mutex<Grouper>,
    dispatcher: Arc<Dispatcher>,
    history: Mutex<VecDeque<Transition>>,
}

impl Alerting {
    /// Builds the engine, restores its saved state and the recent samples its rules read,
    /// and starts saving changes.
    pub async fn start(config: RuleFile, store: Arc<dyn Store>, tenant: &str) -> Result<Arc<Self>, ServerError> {
        let mut channels = HashMap::new();
        for (name, channel) in &config.channels {
            let notifier =
                channel.build().map_err(|error| ServerError::Alerting(format!("channel {name:?}: {error}")))?;
            channels.insert(name.clone(), notifier);
        }
        let mut engine = AlertEngine::new(config.rules.clone());
        if let Some(saved) = store.get_state(tenant, STATE_KEY).await? {
            match serde_json::from_str::<EngineState>(&saved) {
                Ok(state) => engine.restore(state),
                Err(error) => tracing::error!(%error, "saved alert state unreadable; starting afresh"),
            }
        }
        let (names, lookback) = engine.inputs();
        let now = now_ms();
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
            engine.preload(&recent);
        }
        // Agents get a full `no_data` from the server's start: while it was down they could
        // not have sent anything.
        for agent in store.list_agents(tenant).await? {
            engine.agent_seen(agent_labels(&agent.host, &agent.agent_id), now, now);
        }
        let alerting = Arc::new(Self::new(config, engine, channels, store, tenant));
        let mut unsaved = alerting.unsaved.subscribe();
        let (store, tenant) = (Arc::clone(&alerting.store), alerting.tenant.clone());
        tokio::spawn(async move {
            while unsaved.changed().await.is_ok() {
                let state = unsaved.borrow_and_update().clone();
                if let Err(error) = store.put_state(&tenant, STATE_KEY, &state).await {
                    tracing::error!(%error, "cannot save alert state");
                }
            }
        });
        Ok(alerting)
    }

    fn new(
        config: RuleFile,
        engine: AlertEngine,
        channels: HashMap<String, Arc<dyn Notifier>>,
        store: Arc<dyn Store>,
        tenant: &str,
    ) -> Self {
        Self {
            store,
            tenant: tenant.to_string(),
            unsaved: watch::Sender::new(String::new()),
            grouper: Mutex::new(Grouper::new(&config.rules)),
            engine: Mutex::new(engine),
            dispatcher: Arc::new(Dispatcher::new(channels)),
            history: Mutex::new(VecDeque::new()),
        }
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
                let host = Labels::from([("host".to_string(), batch.host.clone())]);
                transitions.extend(engine.ingest_logs(&host, &batch.logs, now));
            }
            transitions
        };
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

    pub fn active(&self) -> Vec<ActiveAlert> {
        lock(&self.engine).active()
    }

    /// Acknowledges a firing alert (which stops its escalation); false if there is none.
    pub fn acknowledge(&self, id: &str, ack: Acknowledgement) -> bool {
        let done = lock(&self.engine).acknowledge_id(id, ack.clone());
        if done {
            self.persist();
            tracing::info!(alert = id, by = %ack.by, comment = %ack.comment, "alert acknowledged");
        }
        done
    }

    pub fn add_silence(&self, silence: Silence) {
        tracing::info!(matchers = ?silence.matchers, by = %silence.created_by, "silence added");
        lock(&self.engine).add_silence(silence);
        self.persist();
    }

    /// Saves the engine's state now; the server calls it on the way down.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let state = self.state_json();
        self.store.put_state(&self.tenant, STATE_KEY, &state).await
    }

    fn state_json(&self) -> String {
        serde_json::to_string(&lock(&self.engine).state()).unwrap_or_default()
    }

    fn persist(&self) {
        self.unsaved.send_replace(self.state_json());
    }

    pub fn silences(&self) -> Vec<Silence> {
        lock(&self.engine).silences(now_ms())
    }

    /// The latest transitions, newest first.
    pub fn history(&self, limit: usize) -> Vec<Transition> {
        lock(&self.history).iter().rev().take(limit).cloned().collect()
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    fn publish(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        {
            let mut history = lock(&self.history);
            for transition in &transitions {
                tracing::info!(rule = %transition.rule, labels = ?transition.labels, from = ?transition.from,
                    to = ?transition.to, value = transition.value, silenced = transition.silenced, "alert");
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(transition.clone());
            }
        }
        self.persist();
        let ready = lock(&self.grouper).add(transitions, now_ms());
        self.send(ready);
    }

    /// Hands notifications to the dispatcher without making ingest wait for receivers.
    fn send(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            let dispatcher = Arc::clone(&self.dispatcher);
            tokio::spawn(async move { dispatcher.deliver(&notification).await });
        }
    }
}

/// What identifies an agent in no-data alerts.
fn agent_labels(host: &str, agent_id: &str) -> Labels {
    Labels::from([("host".to_string(), host.to_string()), ("agent_id".to_string(), agent_id.to_string())])
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
