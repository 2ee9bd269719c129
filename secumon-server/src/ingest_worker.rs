//! The ingest worker: takes the batches gateways published from the JetStream consumer that
//! every worker shares, commits each through the same [`StoreSink`] a single server uses
//! (clock correction, tenant limits, `(agent_id, sequence)` deduplication, alerting, live
//! feed, metrics) and acknowledges it to JetStream only after the store's commit.
//!
//! What becomes of a batch:
//! - stored, or stored before (a redelivery): acknowledged;
//! - the store cannot take it now (down, tenant over its rate): refused with a delay, and
//!   JetStream delivers it again (to this worker or another);
//! - refused for good (undecodable, invalid, another tenant's agent, a far-future sample):
//!   published to the tenant's dead-letter subject, counted
//!   (`secumon_ingest_dead_letters_total`), logged once, and acknowledged, so it is never
//!   delivered again.
//!
//! A worker that dies leaves its batches unacknowledged: after the consumer's ack wait they
//! go to another worker, and the store drops those it had committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use prost::Message as _;
use secumon_core::IngestBatch;
use secumon_core::proto::Batch;
use secumon_store::Store;
use secumon_transport::{BatchSink, Peer, SinkError};
use tokio::sync::watch;

use crate::bus::{Bus, ConsumerSettings};
use crate::gateway::{AGENT_HEADER, QUEUED_HEADER, RECEIVED_HEADER, TENANT_HEADER};
use crate::ingest::StoreSink;
use crate::metrics::IngestMetrics;

/// The header a dead letter carries: why the store refused the batch.
pub(crate) const REFUSED_HEADER: &str = "Secumon-Refused";

/// How a worker pulls and commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerSettings {
    /// The shared consumer's delivery settings (created with them on first use).
    pub consumer: ConsumerSettings,
    /// Batches asked for in one pull.
    pub pull_batch: usize,
    /// Batches committed at once (the embedded store groups them into one transaction, a
    /// PostgreSQL store spreads them over its pool).
    pub concurrency: usize,
    /// How long a batch the store could not take now waits before it is delivered again.
    pub retry_delay: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            consumer: ConsumerSettings::default(),
            pull_batch: 256,
            concurrency: 64,
            retry_delay: Duration::from_secs(2),
        }
    }
}

/// One ingest worker; any number of them, in any processes, share the work.
pub(crate) struct IngestWorker {
    bus: Bus,
    sink: Arc<StoreSink<dyn Store>>,
    metrics: Arc<IngestMetrics>,
    settings: WorkerSettings,
    /// Pull errors are logged once per episode.
    failing: AtomicBool,
}

/// What to tell JetStream about one batch.
enum Verdict {
    /// Stored now or before: acknowledge.
    Stored,
    /// Not now: deliver again later.
    Retry(String),
    /// Never: dead-letter it.
    Refused(String),
}

impl IngestWorker {
    pub fn new(bus: Bus, sink: Arc<StoreSink<dyn Store>>, metrics: Arc<IngestMetrics>) -> Self {
        Self { bus, sink, metrics, settings: WorkerSettings::default(), failing: AtomicBool::new(false) }
    }

    #[cfg(test)]
    fn with_settings(mut self, settings: WorkerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Consumes until `stopped` turns true; then lets the batches in hand finish.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let consumer = loop {
            match this.bus.ingest_consumer(this.settings.consumer).await {
                Ok(consumer) => break consumer,
                Err(error) => this.failed(&error),
            }
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        loop {
            if *stopped.borrow() {
                return;
            }
            let messages = consumer
                .stream()
                .max_messages_per_batch(this.settings.pull_batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            match messages {
                Ok(messages) => {
                    let mut until_stopped = stopped.clone();
                    let stop = async move {
                        let _ = until_stopped.wait_for(|stop| *stop).await;
                    };
                    // Taking stops at shutdown; commits under way finish and are acked.
                    messages
                        .take_until(stop)
                        .for_each_concurrent(this.settings.concurrency, |item| {
                            let this = Arc::clone(&this);
                            async move {
                                match item {
                                    Ok(message) => this.handle(message).await,
                                    Err(error) => this.failed(&error),
                                }
                            }
                        })
                        .await;
                }
                Err(error) => this.failed(&error),
            }
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(nats = %self.bus.url(), %error, "ingest cannot take batches from NATS; retrying");
        } else {
            tracing::debug!(nats = %self.bus.url(), %error, "ingest still cannot take batches from NATS");
        }
    }

    async fn handle(&self, message: Message) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(nats = %self.bus.url(), "ingest takes batches from NATS again");
        }
        let (tenant, verdict) = self.store(&message).await;
        let acked = match verdict {
            Verdict::Stored => message.ack().await,
            Verdict::Retry(reason) => {
                tracing::debug!(%reason, "batch delivered again later");
                message.ack_with(AckKind::Nak(Some(self.settings.retry_delay))).await
            }
            Verdict::Refused(reason) => match self.dead_letter(&message, &tenant, &reason).await {
                Ok(()) => message.ack().await,
                Err(error) => {
                    tracing::warn!(%error, %reason, "a refused batch could not be dead-lettered; delivered again later");
                    message.ack_with(AckKind::Nak(Some(self.settings.retry_delay))).await
                }
            },
        };
        // A lost ack means one more delivery after the ack wait, which the store drops as a
        // duplicate: nothing to do.
        if let Err(error) = acked {
            tracing::debug!(%error, "ack to JetStream lost");
        }
    }

    /// Commits the batch in `message`; the tenant it belongs to and what to answer.
    async fn store(&self, message: &Message) -> (String, Verdict) {
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        let Some(tenant) = header(TENANT_HEADER) else {
            return (String::new(), Verdict::Refused(format!("no {TENANT_HEADER} header")));
        };
        let batch = match Batch::decode(message.payload.as_ref()) {
            Ok(batch) => batch,
            Err(error) => return (tenant, Verdict::Refused(format!("undecodable batch: {error}"))),
        };
        let mut batch = match IngestBatch::from_proto(batch) {
            Ok(batch) => batch,
            Err(invalid) => return (tenant, Verdict::Refused(invalid.to_string())),
        };
        // Without the gateway's receive time the sink takes now, which is later by the
        // time the batch waited in the stream.
        if let (Some(clock), Some(received)) =
            (&mut batch.clock, header(RECEIVED_HEADER).and_then(|ms| ms.parse::<i64>().ok()))
        {
            clock.received_at_ms = received;
            clock.queued_ms = header(QUEUED_HEADER).and_then(|ms| ms.parse().ok()).unwrap_or(0);
        }
        let peer = Peer { tenant: Some(tenant.clone()), agent_id: header(AGENT_HEADER) };
        let verdict = match self.sink.commit(&peer, batch).await {
            Ok(_) => Verdict::Stored,
            Err(SinkError::Refused(reason)) => Verdict::Refused(reason),
            Err(SinkError::Unavailable(reason) | SinkError::OverLimit(reason)) => Verdict::Retry(reason),
        };
        (tenant, verdict)
    }

    /// Keeps `message` on the tenant's dead-letter subject, with the reason in a header.
    async fn dead_letter(&self, message: &Message, tenant: &str, reason: &str) -> Result<(), String> {
        let mut headers = message.headers.clone().unwrap_or_default();
        headers.insert(REFUSED_HEADER, reason);
        let subject = self.bus.dead_letter_subject(tenant);
        let publish = PublishMessage::build().payload(message.payload.clone()).headers(headers);
        let ack = self.bus.jetstream().send_publish(subject.clone(), publish).await.map_err(|e| e.to_string())?;
        let ack = ack.await.map_err(|e| e.to_string())?;
        if !ack.duplicate {
            self.metrics.record_dead_letter();
            let agent = message.headers.as_ref().and_then(|h| h.get(AGENT_HEADER)).map(|v| v.as_str().to_string());
            tracing::warn!(%tenant, agent = agent.as_deref().unwrap_or("?"), %reason, %subject,
                "the store refuses a batch for good; it is kept on the dead-letter stream");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Against the shared NATS at `SECUMON_TEST_NATS_URL` (streams of the test's own names)
    //! and an embedded store: what a dead worker left unacknowledged is stored by another
    //! after the ack wait, once; what the store can never take is dead-lettered, once.

    use std::time::Instant;

    use secumon_core::{Labels, Sample};
    use secumon_store::{SqliteStore, StoreOptions};

    use super::*;
    use crate::bus::BusNames;
    use crate::gateway::GatewaySink;

    async fn shared_bus() -> Option<Bus> {
        let url = std::env::var("SECUMON_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let namespace = format!("t{}_{}", std::process::id(), secumon_core::now_ms());
        match Bus::connect(&url, BusNames::namespaced(&namespace)).await {
            Ok(bus) => Some(bus),
            Err(error) => {
                secumon_core::testing::peer_missing(&format!("NATS JetStream: {error}"));
                None
            }
        }
    }

    fn batch(n: u64, t0: i64) -> IngestBatch {
        IngestBatch {
            agent_id: "worker-agent".into(),
            sequence: n,
            host: "worker-host".into(),
            samples: vec![Sample::new("worker_marker", Labels::new(), t0 + n as i64 * 1_000, n as f64)],
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_a_dead_worker_held_is_stored_once_and_refused_batches_are_dead_lettered() {
        let Some(bus) = shared_bus().await else { return };
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_with(&dir.path().join("s.db"), StoreOptions::default()).await.unwrap());
        let metrics = Arc::new(IngestMetrics::default());
        let sink = Arc::new(StoreSink::new(Arc::clone(&store), "default").with_metrics(Arc::clone(&metrics)));
        let settings = WorkerSettings {
            consumer: ConsumerSettings { ack_wait: Duration::from_secs(2), max_ack_pending: 64 },
            ..WorkerSettings::default()
        };
        let gateway = GatewaySink::new(bus.clone(), "default");
        let peer = Peer::default();
        let t0 = secumon_core::now_ms() - 600_000;
        for n in 1..=20 {
            gateway.commit(&peer, batch(n, t0)).await.unwrap();
        }
        // Garbage under a tenant: never storable.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(TENANT_HEADER, "default");
        let garbage = PublishMessage::build().payload(vec![0xff; 7].into()).headers(headers);
        bus.jetstream().send_publish(bus.ingest_subject("default"), garbage).await.unwrap().await.unwrap();

        // A worker takes ten batches, stores three and dies before acknowledging any.
        let consumer = bus.ingest_consumer(settings.consumer).await.unwrap();
        let mut taken = consumer.fetch().max_messages(10).messages().await.unwrap();
        let mut held = Vec::new();
        while let Some(message) = taken.next().await {
            held.push(message.unwrap());
        }
        assert_eq!(held.len(), 10);
        let dead = IngestWorker::new(bus.clone(), Arc::clone(&sink), Arc::clone(&metrics));
        for message in &held[..3] {
            assert!(matches!(dead.store(message).await.1, Verdict::Stored));
        }
        drop(held);

        let (stop, stopped) = watch::channel(false);
        let worker = IngestWorker::new(bus.clone(), Arc::clone(&sink), Arc::clone(&metrics)).with_settings(settings);
        let running = tokio::spawn(worker.run(stopped));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut ingest = bus.jetstream().get_stream(&bus.names().ingest_stream).await.unwrap();
        loop {
            let (agents, _) = store.agents("default", &Default::default()).await.unwrap();
            let batches: u64 = agents.iter().map(|a| a.batches).sum();
            let left = ingest.info().await.unwrap().state.messages;
            if batches == 20 && left == 0 {
                break;
            }
            assert!(batches <= 20, "a batch was stored twice: {batches}");
            assert!(Instant::now() < deadline, "{batches} of 20 stored, {left} left on the stream");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.send_replace(true);
        running.await.unwrap();

        let text = crate::metrics::render(&metrics, Default::default(), &[], 0);
        assert!(text.contains("secumon_ingest_dead_letters_total 1\n"), "{text}");
        assert!(text.contains("secumon_ingest_batches_total{outcome=\"duplicate\"} 3\n"), "{text}");
        let mut dead_letters = bus.jetstream().get_stream(&bus.names().dead_letter_stream).await.unwrap();
        assert_eq!(dead_letters.info().await.unwrap().state.messages, 1);
        for name in [&bus.names().ingest_stream, &bus.names().dead_letter_stream] {
            bus.jetstream().delete_stream(name).await.unwrap();
        }
        store.close().await;
    }
}
