//! The live feed behind `/api/v1/stream`: every committed batch and every alert transition,
//! tagged with its tenant, broadcast to all subscribers. Publishing never waits: a
//! subscriber that falls more than [`FEED_CAPACITY`] events behind loses its place and is
//! dropped with a message, so a slow console can never stall ingestion.

use std::sync::Arc;

use secumon_alert::Transition;
use secumon_core::IngestBatch;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is dropped.
pub const FEED_CAPACITY: usize = 4096;

/// One thing that happened, for one tenant.
#[derive(Debug)]
pub enum LiveEvent {
    /// A batch was stored.
    Batch {
        /// The tenant it was stored for.
        tenant: String,
        /// The batch as stored.
        batch: Arc<IngestBatch>,
    },
    /// An alert changed state.
    Alert {
        /// The tenant of the alert.
        tenant: String,
        /// What changed.
        transition: Transition,
    },
}

impl LiveEvent {
    /// The tenant the event belongs to.
    pub fn tenant(&self) -> &str {
        match self {
            LiveEvent::Batch { tenant, .. } | LiveEvent::Alert { tenant, .. } => tenant,
        }
    }
}

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    /// Every event, wherever it happened: what WebSocket subscribers see.
    sender: broadcast::Sender<Arc<LiveEvent>>,
    /// Events of this process only: what the NATS bridge sends to the others.
    here: broadcast::Sender<Arc<LiveEvent>>,
    /// Events of other processes only (from NATS): what the alert engines here still need.
    elsewhere: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(FEED_CAPACITY).0,
            here: broadcast::channel(FEED_CAPACITY).0,
            elsewhere: broadcast::channel(FEED_CAPACITY).0,
        }
    }
}

impl LiveFeed {
    /// Hands `event` to every subscriber; returns at once whether or not anyone listens.
    pub fn publish(&self, event: LiveEvent) {
        let event = Arc::new(event);
        if self.here.receiver_count() > 0 {
            let _ = self.here.send(Arc::clone(&event));
        }
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(event);
        }
    }

    /// Hands an event that happened in another server process (received over NATS) to
    /// every subscriber, without sending it back out.
    pub fn publish_remote(&self, event: LiveEvent) {
        let event = Arc::new(event);
        if self.elsewhere.receiver_count() > 0 {
            let _ = self.elsewhere.send(Arc::clone(&event));
        }
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(event);
        }
    }

    /// The events published in this process only, from now.
    pub fn subscribe_here(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.here.subscribe()
    }

    /// The events of other processes only, from now.
    pub fn subscribe_remote(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.elsewhere.subscribe()
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// A new subscriber: it receives every event published from now; one that falls
    /// [`FEED_CAPACITY`] events behind is told it lagged.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }
}
