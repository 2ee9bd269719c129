//! Connects the gRPC ingest service to the store: a batch is acknowledged once its
//! transaction has committed.

use std::sync::Arc;

use async_trait::async_trait;
use secumon_core::IngestBatch;

use std::time::Instant;

use crate::agent_config::AgentConfigBook;
use crate::clock::{ClockBook, ClockCheck};
use crate::live::{LiveEvent, LiveFeed};
use crate::metrics::{BatchOutcome, IngestMetrics};
use crate::tenant_limits::{IngestGuard, Refusal};
use crate::tenants::AlertingByTenant;
use secumon_core::proto::AgentConfigUpdate;
use secumon_store::{Store, StoreError, WriteOutcome};
use secumon_transport::{BatchSink, ConfigReport, Peer, SinkError, SinkOutcome};

/// A [`BatchSink`] that writes every batch to a [`Store`], for its pusher's tenant or, for
/// connections no gate assigned one, a default tenant.
pub(crate) struct StoreSink<S: ?Sized> {
    store: Arc<S>,
    tenant: String,
    alerting: Option<Arc<AlertingByTenant>>,
    metrics: Arc<IngestMetrics>,
    live: Option<LiveFeed>,
    clocks: Arc<ClockBook>,
    guard: Option<Arc<IngestGuard>>,
    agent_config: Option<Arc<AgentConfigBook>>,
}

impl<S: Store + ?Sized> StoreSink<S> {
    pub fn new(store: Arc<S>, tenant: impl Into<String>) -> Self {
        let metrics = Arc::new(IngestMetrics::for_store(store.location()));
        Self {
            store,
            tenant: tenant.into(),
            alerting: None,
            metrics,
            live: None,
            clocks: Arc::default(),
            guard: None,
            agent_config: None,
        }
    }

    /// Holds each tenant to its sample rate, and counts what the tenant limits refuse.
    pub(crate) fn with_guard(mut self, guard: Arc<IngestGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Tells senders the managed configuration they should run, from `book`.
    pub fn with_agent_config(mut self, book: Arc<AgentConfigBook>) -> Self {
        self.agent_config = Some(book);
        self
    }

    /// Measures and corrects senders' clocks into `clocks` (shared with the API, which
    /// shows them), instead of a book of its own.
    pub fn with_clocks(mut self, clocks: Arc<ClockBook>) -> Self {
        self.clocks = clocks;
        self
    }

    /// Counts every batch's outcome and store time into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<IngestMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also announces every committed batch on the live feed.
    pub fn with_live_feed(mut self, live: LiveFeed) -> Self {
        self.live = Some(live);
        self
    }

    /// Also hands every committed sample to the alert engine.
    pub fn with_alerting(mut self, alerting: Arc<AlertingByTenant>) -> Self {
        self.alerting = Some(alerting);
        self
    }
}

impl<S: Store + ?Sized> StoreSink<S> {
    /// Hands the server's own stored samples (a refused sender's clock offset) to the
    /// tenant's alert engine.
    async fn observe_own(&self, tenant: &str, own: Option<IngestBatch>) {
        let (Some(own), Some(alerting)) = (own, &self.alerting) else { return };
        match alerting.evaluating(tenant).await {
            Ok(Some(engine)) => engine.observe_own_batch(tenant, &own),
            // Another alert process owns the tenant: it hears of the batch over NATS.
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "the tenant's alert engine is down"),
        }
    }
}

#[async_trait]
impl<S: Store + ?Sized + 'static> BatchSink for StoreSink<S> {
    async fn commit(&self, peer: &Peer, mut batch: IngestBatch) -> Result<SinkOutcome, SinkError> {
        let started = Instant::now();
        let tenant = peer.tenant.as_deref().unwrap_or(&self.tenant);
        // Corrected before the store sees it: the store refuses samples far in the future.
        let received_ms = match &mut batch.clock {
            Some(clock) if clock.received_at_ms != 0 => clock.received_at_ms,
            // Handed over without the ingest service's receive stamp: it arrives now.
            Some(clock) => {
                clock.received_at_ms = secumon_core::now_ms();
                clock.received_at_ms
            }
            None => secumon_core::now_ms(),
        };
        let check = match self.clocks.prepare(tenant, &mut batch, received_ms) {
            Ok(check) => check,
            Err(reason) => {
                let check = ClockCheck {
                    offset_ms: batch.clock.map(|c| c.offset_ms()),
                    round_trip_ms: 0,
                    received_ms,
                    corrected: false,
                };
                let own = self.clocks.refused(&*self.store, tenant, &batch, check, &reason).await;
                self.observe_own(tenant, own).await;
                self.metrics.record(BatchOutcome::Refused, started.elapsed());
                return Err(SinkError::Refused(reason));
            }
        };
        if let Some(guard) = &self.guard
            && let Err(refused) = guard.admit(tenant, batch.value_count())
        {
            // Over a limit, not refused: the agent keeps the batch and sends it again later.
            self.metrics.record(BatchOutcome::Refused, started.elapsed());
            return Err(SinkError::OverLimit(refused));
        }
        let written = self.store.write_batch(tenant, &batch).await;
        let outcome = match &written {
            Ok(WriteOutcome::Committed) => BatchOutcome::Committed { samples: batch.value_count() },
            Ok(WriteOutcome::Duplicate) => BatchOutcome::Duplicate,
            Err(
                StoreError::TenantMismatch { .. } | StoreError::FutureTimestamp { .. } | StoreError::SeriesLimit { .. },
            ) => BatchOutcome::Refused,
            Err(_) => BatchOutcome::Failed,
        };
        self.metrics.record(outcome, started.elapsed());
        if written.is_ok() {
            self.metrics.store.write_succeeded();
        }
        match written {
            Ok(WriteOutcome::Committed) => {
                if check.corrected {
                    self.metrics.record_clock_correction();
                }
                self.clocks.committed(tenant, &batch, check);
                let batch = Arc::new(batch);
                if let Some(live) = &self.live {
                    live.publish(LiveEvent::Batch { tenant: tenant.to_string(), batch: Arc::clone(&batch) });
                }
                if let Some(alerting) = &self.alerting {
                    match alerting.evaluating(tenant).await {
                        Ok(Some(engine)) => engine.observe_batch(tenant, &batch),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(%error, "the batch is stored but its tenant's alert engine is down")
                        }
                    }
                }
                Ok(SinkOutcome::Committed)
            }
            Ok(WriteOutcome::Duplicate) => Ok(SinkOutcome::Duplicate),
            Err(
                refused @ (StoreError::TenantMismatch { .. }
                | StoreError::FutureTimestamp { .. }
                | StoreError::SeriesLimit { .. }),
            ) => {
                if let (StoreError::SeriesLimit { new, .. }, Some(guard)) = (&refused, &self.guard) {
                    guard.count(tenant, Refusal::SeriesLimit, batch.value_count() as u64, *new);
                }
                let reason = refused.to_string();
                let own = self.clocks.refused(&*self.store, tenant, &batch, check, &reason).await;
                self.observe_own(tenant, own).await;
                Err(SinkError::Refused(reason))
            }
            Err(error) => Err(SinkError::Unavailable(self.metrics.store.write_failed(&error))),
        }
    }

    async fn agent_config(&self, peer: &Peer, report: &ConfigReport) -> Option<AgentConfigUpdate> {
        let book = self.agent_config.as_ref()?;
        book.update_for(peer.tenant.as_deref().unwrap_or(&self.tenant), report).await
    }
}
