//! One alert engine per tenant, started when the tenant is first seen: a tenant's rules,
//! alerts, silences and history never mix with another's. The rule file's rules and
//! channels apply to every tenant; rules made through the API belong to their tenant.
//!
//! With several alert processes, an [`Ownership`] says which tenants this process evaluates:
//! an engine runs only while the process owns its tenant, is dropped when it stops owning
//! it, and is started afresh (its state read back from the store) for every new term, so a
//! tenant that changed hands resumes where its last owner left it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use secumon_alert::RuleFile;
use secumon_store::Store;

use crate::ServerError;
use crate::alert_lease::Ownership;
use crate::alerting::Alerting;
use crate::live::LiveFeed;

/// A running engine and the ownership term it was started under (`None` without ownership).
type Running = (Option<u64>, Arc<Alerting>);

pub(crate) struct AlertingByTenant {
    rules: RuleFile,
    store: Arc<dyn Store>,
    live: LiveFeed,
    engines: RwLock<HashMap<String, Running>>,
    /// Serialises starts, so a tenant's engine is started once.
    starting: tokio::sync::Mutex<()>,
    /// Which tenants this process evaluates; `None`: all of them (one process).
    ownership: Option<Arc<dyn Ownership>>,
    /// The tenants this process asked to own, so their engines start when it gets them.
    wanted: RwLock<BTreeSet<String>>,
}

impl AlertingByTenant {
    pub fn new(rules: RuleFile, store: Arc<dyn Store>, live: LiveFeed) -> Self {
        Self {
            rules,
            store,
            live,
            engines: RwLock::default(),
            starting: tokio::sync::Mutex::new(()),
            ownership: None,
            wanted: RwLock::default(),
        }
    }

    /// Evaluates only the tenants `ownership` gives this process.
    #[must_use]
    pub fn with_ownership(mut self, ownership: Arc<dyn Ownership>) -> Self {
        self.ownership = Some(ownership);
        self
    }

    /// The engine of `tenant`, started (with its saved state) on first use. With an
    /// ownership, an error while another process evaluates the tenant.
    pub async fn get(&self, tenant: &str) -> Result<Arc<Alerting>, ServerError> {
        self.evaluating(tenant).await?.ok_or_else(|| {
            ServerError::Alerting(format!("tenant {tenant:?}'s alerts are evaluated by another alert process"))
        })
    }

    /// The engine that evaluates `tenant` in this process, started (with its saved state)
    /// on first use and on each new ownership term; `None` while another process owns the
    /// tenant. Asks for the tenant's ownership if it was not asked for yet.
    pub async fn evaluating(&self, tenant: &str) -> Result<Option<Arc<Alerting>>, ServerError> {
        let term = match &self.ownership {
            None => None,
            Some(ownership) => {
                self.want(tenant);
                match ownership.term(tenant) {
                    Some(term) => Some(term),
                    None => {
                        self.retire(tenant);
                        return Ok(None);
                    }
                }
            }
        };
        if let Some(engine) = self.current(tenant, term) {
            return Ok(Some(engine));
        }
        let _one_at_a_time = self.starting.lock().await;
        if let Some(engine) = self.current(tenant, term) {
            return Ok(Some(engine));
        }
        // A new term: whatever this process held before may be stale; the store has what
        // the last owner saved.
        self.retire(tenant);
        let engine = Alerting::start(self.rules.clone(), Arc::clone(&self.store), tenant, self.live.clone()).await?;
        if let Some(term) = term {
            tracing::info!(%tenant, term, alerts = engine.active().len(), "evaluating the tenant's alerts");
        }
        self.engines.write().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), (term, Arc::clone(&engine)));
        Ok(Some(engine))
    }

    /// Asks for `tenant`'s ownership (no-op without one): its engine starts on the next
    /// [`AlertingByTenant::evaluated`] after this process gets it.
    pub fn want(&self, tenant: &str) {
        let Some(ownership) = &self.ownership else { return };
        let new = !self.wanted.read().unwrap_or_else(|p| p.into_inner()).contains(tenant);
        if new {
            self.wanted.write().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string());
        }
        ownership.want(tenant);
    }

    /// The engines to tick now: every tenant's without an ownership; with one, those of
    /// the tenants this process owns now, started (from the stored state) for a new term,
    /// while those it lost are dropped.
    pub async fn evaluated(&self) -> Vec<Arc<Alerting>> {
        if self.ownership.is_none() {
            return self.all();
        }
        let wanted: Vec<String> = self.wanted.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let mut engines = Vec::new();
        for tenant in wanted {
            match self.evaluating(&tenant).await {
                Ok(Some(engine)) => engines.push(engine),
                Ok(None) => {}
                Err(error) => tracing::error!(%tenant, %error, "cannot start the tenant's alert engine"),
            }
        }
        engines
    }

    /// The engine of `tenant` if it is running (and, with an ownership, still owned).
    pub fn running(&self, tenant: &str) -> Option<Arc<Alerting>> {
        let term = match &self.ownership {
            None => None,
            Some(ownership) => Some(ownership.term(tenant)?),
        };
        self.current(tenant, term)
    }

    /// Every running engine this process evaluates now; those whose tenant it no longer
    /// owns are dropped (they must neither evaluate nor save state any more).
    pub fn all(&self) -> Vec<Arc<Alerting>> {
        let Some(ownership) = &self.ownership else {
            return self.engines.read().unwrap_or_else(|p| p.into_inner()).values().map(|(_, e)| e.clone()).collect();
        };
        let mut engines = self.engines.write().unwrap_or_else(|p| p.into_inner());
        engines.retain(|tenant, (term, _)| {
            let kept = ownership.term(tenant) == *term;
            if !kept {
                tracing::info!(%tenant, "no longer evaluating the tenant's alerts");
            }
            kept
        });
        engines.values().map(|(_, engine)| engine.clone()).collect()
    }

    fn current(&self, tenant: &str, term: Option<u64>) -> Option<Arc<Alerting>> {
        let engines = self.engines.read().unwrap_or_else(|p| p.into_inner());
        engines.get(tenant).filter(|(started, _)| *started == term).map(|(_, engine)| engine.clone())
    }

    fn retire(&self, tenant: &str) {
        if self.engines.write().unwrap_or_else(|p| p.into_inner()).remove(tenant).is_some() {
            tracing::info!(%tenant, "no longer evaluating the tenant's alerts");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Two alert processes in one test, sharing one store and one NATS: the lease owner
    //! evaluates and notifies; when it dies the other takes over with the stored state, and
    //! the webhook hears of the firing once in all.

    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use axum::routing::post;
    use secumon_core::{IngestBatch, Labels, Sample, SeriesKey, now_ms};
    use secumon_store::{DEFAULT_TENANT, SqliteStore};

    use super::*;
    use crate::alert_lease::{AlertLeases, LeaseOptions};

    type Bodies = Arc<Mutex<Vec<serde_json::Value>>>;

    /// A webhook receiver on loopback: its URL and the notifications it received.
    async fn receiver() -> (String, Bodies) {
        let bodies: Bodies = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let kept = Arc::clone(&bodies);
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| async move {
                kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or_default());
                axum::http::StatusCode::OK
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, bodies)
    }

    fn count(bodies: &Bodies, status: &str) -> usize {
        bodies.lock().unwrap().iter().filter(|b| b["status"] == status).count()
    }

    /// One alert process: its engines, its leases and its one-second tick.
    struct AlertProcess {
        alerting: Arc<AlertingByTenant>,
        leases: AlertLeases,
        ticker: tokio::task::JoinHandle<()>,
    }

    impl AlertProcess {
        async fn start(client: &async_nats::Client, store: Arc<dyn Store>, rules: RuleFile, bucket: &str) -> Self {
            let options = LeaseOptions { bucket: bucket.into(), ttl: Duration::from_secs(2), holder: "test".into() };
            let leases = AlertLeases::start(client.clone(), options).await.unwrap();
            let alerting = Arc::new(
                AlertingByTenant::new(rules, store, LiveFeed::default()).with_ownership(Arc::new(leases.view())),
            );
            alerting.evaluating(DEFAULT_TENANT).await.unwrap();
            let ticking = Arc::clone(&alerting);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    ticking.evaluated().await.iter().for_each(|engine| engine.tick());
                }
            });
            Self { alerting, leases, ticker }
        }

        /// What a committed batch reaching this process does (over NATS in scale-out).
        async fn observe(&self, batch: &IngestBatch) -> bool {
            match self.alerting.evaluating(DEFAULT_TENANT).await.unwrap() {
                Some(engine) => {
                    engine.observe_batch(DEFAULT_TENANT, batch);
                    true
                }
                None => false,
            }
        }

        fn owns(&self) -> bool {
            self.alerting.running(DEFAULT_TENANT).is_some()
        }

        /// As after kill -9: no release, no flush.
        fn kill(self) {
            self.ticker.abort();
            drop(self.leases);
        }
    }

    fn reading(value: f64) -> IngestBatch {
        static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let series = SeriesKey::new("temperature_celsius", Labels::from([("room".to_string(), "r1".to_string())]));
        let sample = Sample { series, timestamp_ms: now_ms(), value };
        let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        IngestBatch {
            agent_id: "probe".into(),
            sequence,
            host: "dc-1".into(),
            samples: vec![sample],
            ..Default::default()
        }
    }

    /// Stores a batch, then hands it to both processes as the live feed would.
    async fn commit(store: &dyn Store, processes: &[&AlertProcess], value: f64) -> usize {
        let batch = reading(value);
        let stored = store.write_batch(DEFAULT_TENANT, &batch).await.unwrap();
        assert_eq!(stored, secumon_store::WriteOutcome::Committed);
        let mut evaluated = 0;
        for process in processes {
            evaluated += usize::from(process.observe(&batch).await);
        }
        evaluated
    }

    async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_alert_owner_dies_while_firing_and_the_next_owner_notifies_no_one_again() {
        let Some(client) = crate::alert_lease::tests::test_nats().await else { return };
        let bucket = crate::alert_lease::tests::unique("lease_alerts");
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        let (hook, bodies) = receiver().await;
        let text = format!(
            "rules:\n  - name: RoomTooHot\n    expr: temperature_celsius > 30\n    severity: critical\n    channels: [ops]\n\
             channels:\n  ops: {{type: webhook, url: \"{hook}\"}}\n"
        );
        let rules = RuleFile::parse(&text, "rules.yaml").unwrap();

        let a = AlertProcess::start(&client, Arc::clone(&store), rules.clone(), &bucket).await;
        until("a takes the free lease", Duration::from_secs(5), || a.owns()).await;
        let b = AlertProcess::start(&client, Arc::clone(&store), rules, &bucket).await;
        assert_eq!(commit(&*store, &[&a, &b], 20.0).await, 1, "one process evaluates");
        assert_eq!(commit(&*store, &[&a, &b], 35.0).await, 1);
        until("the firing notification", Duration::from_secs(5), || count(&bodies, "firing") == 1).await;
        // Saved after the change: the state a successor reads.
        let saved = store.get_state(DEFAULT_TENANT, "alerting").await.unwrap().unwrap_or_default();
        assert!(saved.contains("firing"), "{saved}");
        assert!(!b.owns());

        let died = Instant::now();
        a.kill();
        // Still hot all along: b takes over and must not fire again.
        let mut evaluated_by_b = 0;
        while died.elapsed() < Duration::from_secs(5) {
            evaluated_by_b += commit(&*store, &[&b], 36.0).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(b.owns(), "b took over");
        assert!(evaluated_by_b > 10, "b evaluated only {evaluated_by_b} batches after taking over");
        let engine = b.alerting.running(DEFAULT_TENANT).unwrap();
        let active = engine.active();
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0].state, secumon_alert::AlertState::Firing, "resumed from the store");
        // b really evaluates: cooling down resolves the alert it inherited.
        commit(&*store, &[&b], 20.0).await;
        until("the resolved notification", Duration::from_secs(5), || count(&bodies, "resolved") == 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&bodies, "firing"), 1, "one firing notification in all: {:?}", bodies.lock().unwrap());
        assert_eq!(bodies.lock().unwrap().len(), 2);

        b.ticker.abort();
        b.leases.shutdown().await;
        let _ = async_nats::jetstream::new(client).delete_key_value(&bucket).await;
    }
}
