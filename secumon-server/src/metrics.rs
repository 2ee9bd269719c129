//! The server's own health in Prometheus text format at `/metrics`: what ingest committed,
//! refused and failed, how long store writes take, whether the store takes writes, how its
//! maintenance fares, and the alert engine's state.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secumon_alert::AlertState;
use secumon_store::{MaintenanceHealth, MaintenanceTask, StoreError, StoreFault};

use crate::alerting::Alerting;

/// Counters the ingest path updates; read by `/metrics`.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    committed: AtomicU64,
    duplicate: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    samples: AtomicU64,
    write_micros: AtomicU64,
    writes: AtomicU64,
    clock_corrected: AtomicU64,
    dead_letters: AtomicU64,
    pub store: StoreHealth,
    /// Push streams open now (the ingest service counts them).
    pub open_streams: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl IngestMetrics {
    /// Counters for a store at `location` (a path, or a database server).
    pub fn for_store(location: String) -> Self {
        Self { store: StoreHealth::new(location), ..Self::default() }
    }
}

/// Whether the store takes writes, as the last write (or probe) found it, and its failures
/// by fault since start.
#[derive(Debug)]
pub struct StoreHealth {
    location: String,
    writable: std::sync::atomic::AtomicBool,
    failures: [AtomicU64; StoreFault::ALL.len()],
    other_failures: AtomicU64,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self::new("the store".into())
    }
}

impl StoreHealth {
    pub fn new(location: String) -> Self {
        Self {
            location,
            writable: std::sync::atomic::AtomicBool::new(true),
            failures: Default::default(),
            other_failures: AtomicU64::new(0),
        }
    }

    pub fn writable(&self) -> bool {
        self.writable.load(Ordering::Relaxed)
    }

    pub fn write_succeeded(&self) {
        if !self.writable.swap(true, Ordering::Relaxed) {
            tracing::info!(store = %self.location, "the store takes writes again");
        }
    }

    /// Counts a failed write and says once per episode, in the log, what is wrong and where.
    /// Returns the message for the writer (an agent, a script): what is wrong, not where,
    /// since it may be another tenant's.
    pub fn write_failed(&self, error: &StoreError) -> String {
        let fault = error.fault();
        match fault {
            Some(fault) => self.failures[fault as usize].fetch_add(1, Ordering::Relaxed),
            None => self.other_failures.fetch_add(1, Ordering::Relaxed),
        };
        let was_writable = self.writable.swap(false, Ordering::Relaxed);
        let what = fault.map_or_else(|| "the store failed".to_string(), |fault| fault.to_string());
        if was_writable {
            tracing::error!(store = %self.location, %error,
                "the store cannot take writes: {what}; agents keep their batches until it can");
        } else {
            tracing::debug!(store = %self.location, %error, "store write failed again");
        }
        format!("the server cannot store batches now ({what}); keep them and retry")
    }
}

/// What became of one batch at the store.
#[derive(Debug, Clone, Copy)]
pub enum BatchOutcome {
    Committed {
        samples: usize,
    },
    Duplicate,
    /// The store refused it for good (another tenant's agent, a far-future sample).
    Refused,
    /// The store failed; the agent will resend.
    Failed,
}

impl IngestMetrics {
    pub fn record(&self, outcome: BatchOutcome, took: Duration) {
        let counter = match outcome {
            BatchOutcome::Committed { samples } => {
                self.samples.fetch_add(samples as u64, Ordering::Relaxed);
                &self.committed
            }
            BatchOutcome::Duplicate => &self.duplicate,
            BatchOutcome::Refused => &self.refused,
            BatchOutcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.write_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

impl IngestMetrics {
    /// Counts a batch whose timestamps were moved by its sender's clock offset.
    pub fn record_clock_correction(&self) {
        self.clock_corrected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a batch an ingest worker sent to the dead-letter stream (refused for good).
    pub fn record_dead_letter(&self) {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
    }
}

/// Renders every metric in the Prometheus text exposition format.
pub fn render(
    ingest: &IngestMetrics,
    maintenance: MaintenanceHealth,
    engines: &[std::sync::Arc<Alerting>],
    stream_subscribers: usize,
) -> String {
    let store = &ingest.store;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "secumon_ingest_batches_total",
        "counter",
        "Batches that reached the store, by outcome.",
        &[
            ("{outcome=\"committed\"}", load(&ingest.committed)),
            ("{outcome=\"duplicate\"}", load(&ingest.duplicate)),
            ("{outcome=\"refused\"}", load(&ingest.refused)),
            ("{outcome=\"failed\"}", load(&ingest.failed)),
        ],
    );
    family(
        "secumon_ingest_samples_total",
        "counter",
        "Samples committed to the store.",
        &[("", load(&ingest.samples))],
    );
    family(
        "secumon_ingest_clock_corrected_batches_total",
        "counter",
        "Batches re-stamped by their sender's clock offset (its clock was past the tolerance).",
        &[("", load(&ingest.clock_corrected))],
    );
    family(
        "secumon_ingest_dead_letters_total",
        "counter",
        "Batches from NATS JetStream the store refused for good, kept on the dead-letter stream.",
        &[("", load(&ingest.dead_letters))],
    );
    family("secumon_store_write_seconds", "summary", "Time the store took to write a batch.", &[]);
    let _ = writeln!(out, "secumon_store_write_seconds_sum {:.6}", load(&ingest.write_micros) as f64 / 1e6);
    let _ = writeln!(out, "secumon_store_write_seconds_count {}", load(&ingest.writes));
    let _ = writeln!(
        out,
        "# HELP secumon_store_writable Whether the store took the last write (1) or refused it (0).\n\
         # TYPE secumon_store_writable gauge\nsecumon_store_writable {}",
        u8::from(store.writable())
    );
    let _ = writeln!(
        out,
        "# HELP secumon_store_write_failures_total Writes the store failed, by fault.\n\
         # TYPE secumon_store_write_failures_total counter"
    );
    for fault in StoreFault::ALL {
        let _ = writeln!(
            out,
            "secumon_store_write_failures_total{{fault=\"{}\"}} {}",
            fault.as_str(),
            load(&store.failures[fault as usize])
        );
    }
    let _ = writeln!(out, "secumon_store_write_failures_total{{fault=\"other\"}} {}", load(&store.other_failures));
    let _ = writeln!(
        out,
        "# HELP secumon_store_maintenance_failures_total Store maintenance passes that failed, by task.\n\
         # TYPE secumon_store_maintenance_failures_total counter"
    );
    for task in MaintenanceTask::ALL {
        let (name, failures) = (task.as_str(), maintenance.failures(task));
        let _ = writeln!(out, "secumon_store_maintenance_failures_total{{task=\"{name}\"}} {failures}");
    }
    let _ = writeln!(
        out,
        "# HELP secumon_store_maintenance_consecutive_failures Store maintenance passes failed in a row (0 after \
         one succeeds), by task.\n# TYPE secumon_store_maintenance_consecutive_failures gauge"
    );
    for task in MaintenanceTask::ALL {
        let (name, failures) = (task.as_str(), maintenance.consecutive_failures(task));
        let _ = writeln!(out, "secumon_store_maintenance_consecutive_failures{{task=\"{name}\"}} {failures}");
    }
    let alerts: Vec<_> = engines.iter().flat_map(|engine| engine.active()).collect();
    let _ = writeln!(
        out,
        "# HELP secumon_alerts Alerts the engines hold (all tenants), by state.\n# TYPE secumon_alerts gauge"
    );
    for state in [AlertState::Pending, AlertState::Firing, AlertState::Stale, AlertState::Resolved] {
        let count = alerts.iter().filter(|a| a.state == state).count();
        let _ = writeln!(out, "secumon_alerts{{state=\"{}\"}} {count}", format!("{state:?}").to_lowercase());
    }
    let mut family = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    family(
        "secumon_notifications_sent_total",
        "counter",
        "Notifications handed to their channels.",
        engines.iter().map(|e| e.notifications_sent()).sum(),
    );
    family(
        "secumon_notification_queue_depth",
        "gauge",
        "Notifications waiting for (or in) delivery.",
        engines.iter().map(|e| e.notifications_queued()).sum(),
    );
    family(
        "secumon_ingest_streams",
        "gauge",
        "Push streams open now: agents and probes connected.",
        ingest.open_streams.load(Ordering::Relaxed) as u64,
    );
    family(
        "secumon_stream_subscribers",
        "gauge",
        "Live stream (WebSocket) clients connected.",
        stream_subscribers as u64,
    );
    family(
        "secumon_notifications_failed_total",
        "counter",
        "Notifications that failed for good after their retries.",
        engines.iter().map(|e| e.delivery_failures()).sum(),
    );
    out
}
