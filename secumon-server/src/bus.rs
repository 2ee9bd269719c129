//! The server's connection to NATS JetStream, the bus between gateways and ingest workers:
//! the ingest stream (`SECUMON_INGEST`, file storage, one subject per tenant,
//! `secumon.ingest.<tenant>`, a duplicate window so a batch a gateway publishes twice is
//! kept once), the durable pull consumer the ingest workers share, and the dead-letter
//! stream (`SECUMON_DEADLETTER`, `secumon.deadletter.<tenant>`) that keeps the batches the
//! store refuses for good. [`Bus::connect`] fails at once, naming the URL, when NATS is not
//! there; once connected, the client reconnects by itself for as long as the process runs.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

/// How long the first connection may take before the server refuses to start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a JetStream request or publish ack is waited for (a gateway holds the agent's
/// batch that long before telling it to keep the batch and retry).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch published again within this window (a gateway's retry after a lost publish ack,
/// an agent's resend to another gateway) is dropped by JetStream; later ones by the store.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long dead letters are kept for an operator to look at.
const DEAD_LETTER_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The names of the streams, subjects and consumer on the bus. Every process of one
/// installation must use the same; tests use their own ([`BusNames::namespaced`]) to share
/// a NATS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusNames {
    /// The stream of pushed batches.
    pub ingest_stream: String,
    /// The ingest subjects' prefix: a tenant's batches go to `<prefix>.<tenant>`.
    pub ingest_subject: String,
    /// The durable pull consumer the ingest workers share.
    pub ingest_consumer: String,
    /// The stream of batches the store refused for good.
    pub dead_letter_stream: String,
    /// The dead-letter subjects' prefix: `<prefix>.<tenant>`.
    pub dead_letter_subject: String,
}

impl Default for BusNames {
    fn default() -> Self {
        Self {
            ingest_stream: "SECUMON_INGEST".into(),
            ingest_subject: "secumon.ingest".into(),
            ingest_consumer: "secumon-ingest".into(),
            dead_letter_stream: "SECUMON_DEADLETTER".into(),
            dead_letter_subject: "secumon.deadletter".into(),
        }
    }
}

impl BusNames {
    /// The standard names with `namespace` (letters, digits, `_`) in each, so several
    /// installations (or tests) can share one NATS server without seeing each other.
    pub fn namespaced(namespace: &str) -> Self {
        let standard = Self::default();
        Self {
            ingest_stream: format!("{}_{namespace}", standard.ingest_stream),
            ingest_subject: format!("{namespace}.{}", standard.ingest_subject),
            ingest_consumer: format!("{}-{namespace}", standard.ingest_consumer),
            dead_letter_stream: format!("{}_{namespace}", standard.dead_letter_stream),
            dead_letter_subject: format!("{namespace}.{}", standard.dead_letter_subject),
        }
    }
}

/// How the ingest workers' shared consumer delivers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsumerSettings {
    /// A batch a worker took and neither acknowledged nor refused within this time (the
    /// worker died) goes to another worker.
    pub ack_wait: Duration,
    /// Batches handed out and not yet acknowledged, across all workers.
    pub max_ack_pending: i64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { ack_wait: Duration::from_secs(30), max_ack_pending: 4096 }
    }
}

/// Why the bus is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS did not answer at `url`.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server asked for.
        url: String,
        /// What the client said.
        message: String,
    },
    /// A stream or consumer could not be created, or the existing one does not fit.
    #[error("NATS JetStream at {url}: {what}: {message}")]
    JetStream {
        /// The server.
        url: String,
        /// The stream or consumer concerned.
        what: String,
        /// What went wrong (JetStream not enabled, a clash with an existing stream…).
        message: String,
    },
}

/// A connection to NATS JetStream with the ingest and dead-letter streams in place. Cheap to
/// clone.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    names: Arc<BusNames>,
    url: Arc<str>,
}

impl Bus {
    /// Connects to `url` (fails within a few seconds, naming it, when nobody answers) and
    /// creates the streams, or checks that the existing ones take their subjects.
    pub async fn connect(url: &str, names: BusNames) -> Result<Self, BusError> {
        let logged_url = url.to_string();
        let client = async_nats::ConnectOptions::new()
            .name("secumon-server")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Back quickly after an outage: agents' spools are waiting.
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 250).min(2_000)))
            .event_callback(move |event| {
                let url = logged_url.clone();
                async move {
                    match event {
                        async_nats::Event::Disconnected => tracing::warn!(%url,
                            "NATS lost: gateways stop acknowledging (agents keep their batches), ingest waits; reconnecting"),
                        async_nats::Event::Connected => tracing::info!(%url, "NATS connected"),
                        other => tracing::warn!(%url, event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|error| BusError::Connect { url: url.to_string(), message: error.to_string() })?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(REQUEST_TIMEOUT);
        let bus = Self { client, jetstream, names: Arc::new(names), url: url.into() };
        bus.ensure_stream(stream::Config {
            name: bus.names.ingest_stream.clone(),
            subjects: vec![format!("{}.>", bus.names.ingest_subject)],
            // Each batch is kept until a worker has stored it, then removed.
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            // With limits set by the operator, a full stream refuses new batches (the agents
            // keep them) rather than dropping stored ones.
            discard: stream::DiscardPolicy::New,
            duplicate_window: DUPLICATE_WINDOW,
            description: Some("SecuMon: agents' batches between gateways and ingest workers".into()),
            ..Default::default()
        })
        .await?;
        bus.ensure_stream(stream::Config {
            name: bus.names.dead_letter_stream.clone(),
            subjects: vec![format!("{}.>", bus.names.dead_letter_subject)],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: DEAD_LETTER_MAX_AGE,
            description: Some("SecuMon: batches the store refused for good".into()),
            ..Default::default()
        })
        .await?;
        Ok(bus)
    }

    /// Creates the stream `config` describes, or checks the one by that name takes its subjects.
    async fn ensure_stream(&self, config: stream::Config) -> Result<(), BusError> {
        let what = format!("stream {}", config.name);
        let wanted = config.subjects.clone();
        let mut existing =
            self.jetstream.get_or_create_stream(config).await.map_err(|error| self.error(&what, error))?;
        let info = existing.info().await.map_err(|error| self.error(&what, error))?;
        if let Some(missing) = wanted.iter().find(|subject| !info.config.subjects.contains(subject)) {
            return Err(BusError::JetStream {
                url: self.url.to_string(),
                what,
                message: format!("exists without the subject {missing} (it has {:?})", info.config.subjects),
            });
        }
        Ok(())
    }

    fn error(&self, what: &str, error: impl std::fmt::Display) -> BusError {
        BusError::JetStream { url: self.url.to_string(), what: what.to_string(), message: error.to_string() }
    }

    /// The NATS server's address, as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The names in use.
    pub fn names(&self) -> &BusNames {
        &self.names
    }

    /// The NATS client, for plain subjects beside the streams.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The JetStream context (publish with acks, streams, consumers).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// Whether the connection is up now (while it is down, publishes cannot be acked).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Where a tenant's batches are published.
    pub fn ingest_subject(&self, tenant: &str) -> String {
        format!("{}.{}", self.names.ingest_subject, subject_token(tenant))
    }

    /// Where a tenant's refused batches are kept.
    pub fn dead_letter_subject(&self, tenant: &str) -> String {
        format!("{}.{}", self.names.dead_letter_subject, subject_token(tenant))
    }

    /// The ingest workers' durable pull consumer, created on first use.
    pub(crate) async fn ingest_consumer(&self, settings: ConsumerSettings) -> Result<consumer::PullConsumer, BusError> {
        let what = format!("consumer {} on {}", self.names.ingest_consumer, self.names.ingest_stream);
        let stream =
            self.jetstream.get_stream(&self.names.ingest_stream).await.map_err(|error| self.error(&what, error))?;
        stream
            .get_or_create_consumer(
                &self.names.ingest_consumer,
                consumer::pull::Config {
                    durable_name: Some(self.names.ingest_consumer.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: settings.ack_wait,
                    max_ack_pending: settings.max_ack_pending,
                    description: Some("SecuMon ingest workers".into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|error| self.error(&what, error))
    }
}

/// A tenant id as one subject token: letters, digits, `-` and `_` as they are, any other
/// byte (`.`, `*`, `>`, space) as `~XX`, so no tenant name can reach another's subject.
fn subject_token(tenant: &str) -> String {
    let mut token = String::with_capacity(tenant.len());
    for byte in tenant.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("~{byte:02x}"));
        }
    }
    if token.is_empty() {
        token.push('~');
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_become_single_safe_tokens() {
        assert_eq!(subject_token("acme-corp_2"), "acme-corp_2");
        assert_eq!(subject_token("a.b"), "a~2eb");
        assert_eq!(subject_token("x > *"), "x~20~3e~20~2a");
        assert_eq!(subject_token(""), "~");
        assert_ne!(subject_token("a.b"), subject_token("a~2eb"), "`~` itself is escaped");
    }

    #[tokio::test]
    async fn an_unreachable_nats_is_named_at_once() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("nats://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        let error = Bus::connect(&url, BusNames::namespaced("unreachable")).await.err().expect("nobody listens");
        assert!(error.to_string().contains(&url), "{error}");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    }
}
