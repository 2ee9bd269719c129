//! The server's alerting: committed samples go through the alert engine as they arrive,
//! a one-second tick runs the `for` and `resolve_after` timers, and every transition is
//! kept in a bounded history and handed to the dispatcher without holding up ingest.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use secumon_alert::{
    Acknowledgement, ActiveAlert, AlertEngine, Dispatcher, Grouper, Notification, RuleFile, Silence, Transition,
};
use secumon_core::{Sample, now_ms};

/// Transitions kept for the API, at most.
const HISTORY: usize = 10_000;

pub struct Alerting {
    engine: Mutex<AlertEngine>,
    grouper: Mutex<Grouper>,
    dispatcher: Arc<Dispatcher>,
    history: Mutex<VecDeque<Transition>>,
}

impl Alerting {
    pub fn new(config: RuleFile) -> Self {
        let channels =
            config.channels.iter().map(|(name, channel)| (name.clone(), channel.build())).collect::<HashMap<_, _>>();
        Self {
            grouper: Mutex::new(Grouper::new(&config.rules)),
            engine: Mutex::new(AlertEngine::new(config.rules)),
            dispatcher: Arc::new(Dispatcher::new(channels)),
            history: Mutex::new(VecDeque::new()),
        }
    }

    /// Evaluates the rules these just-committed samples concern.
    pub fn observe(&self, samples: &[Sample]) {
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

    pub fn active(&self) -> Vec<ActiveAlert> {
        lock(&self.engine).active()
    }

    /// Acknowledges a firing alert (which stops its escalation); false if there is none.
    pub fn acknowledge(&self, id: &str, ack: Acknowledgement) -> bool {
        let done = lock(&self.engine).acknowledge_id(id, ack.clone());
        if done {
            tracing::info!(alert = id, by = %ack.by, comment = %ack.comment, "alert acknowledged");
        }
        done
    }

    pub fn add_silence(&self, silence: Silence) {
        tracing::info!(matchers = ?silence.matchers, by = %silence.created_by, "silence added");
        lock(&self.engine).add_silence(silence);
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
