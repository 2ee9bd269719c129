//! The agent side of `secumon.v1.Ingest/Push`: every batch is first made durable in the
//! spool, then streamed to the server; the spool forgets a batch only when the server
//! acknowledges it. Connection failures are retried with backoff and logged once per outage.
//!
//! When the spool's disk is full or read-only, batches wait in a bounded queue in memory
//! instead ([`Outbox`]) and are streamed from there; an acknowledgement the disk cannot
//! record is kept in memory, never a reason to drop the connection. So is a renewed session
//! token the disk cannot take: it is used from memory and saved when the disk allows.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prost::Message;
use secumon_core::IngestBatch;
use secumon_core::proto::{AckStatus, AgentConfigUpdate, AgentSession, Batch};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

use crate::clock::SendClock;
use crate::enroll::{SessionFile, channel, insert_bearer};
use crate::grpc::ingest_client::IngestClient;
use crate::outbox::{MemoryStats, Outbox};
use crate::service::MAX_MESSAGE_BYTES;
use crate::spool::SpoolStats;
use crate::{TlsFiles, TlsMaterial, TransportError};

/// Settings of a [`PushClient`].
#[derive(Debug, Clone)]
pub struct PushClientConfig {
    /// The server's ingest address: `HOST:PORT` or `http://HOST:PORT`.
    pub endpoint: String,
    /// More addresses of the same server (the gateways of a scale-out): when a connection
    /// fails or its stream is lost, the next one is tried, round robin from `endpoint`, each
    /// after the usual backoff. Empty: `endpoint` only.
    pub failover_endpoints: Vec<String>,
    /// Directory of the on-disk spool (locked while the client is open).
    pub spool_dir: PathBuf,
    /// Bound on the spool's size on disk in bytes (default 256 MiB); the oldest unacknowledged
    /// batches are dropped beyond it.
    pub spool_max_bytes: u64,
    /// Batches the spool cannot take (disk full, read-only) wait in memory, up to this many
    /// bytes of them; beyond it the oldest unsent ones are dropped and counted.
    pub memory_max_bytes: usize,
    /// Batches sent but not yet acknowledged, at most.
    pub max_in_flight: usize,
    /// First wait before reconnecting after a failure (default 200 ms); doubled on each
    /// further failure.
    pub backoff_min: Duration,
    /// Longest wait between reconnection attempts (default 30 s).
    pub backoff_max: Duration,
    /// Mutual TLS; plaintext HTTP/2 when `None`.
    pub tls: Option<TlsMaterial>,
    /// Where `tls` was read from, to write a certificate and CAs a renewal brings (agent
    /// CA rotation); without it they are used until the agent stops.
    pub tls_files: Option<TlsFiles>,
    /// The enrolled agent's session token, sent with every push and renewed when due.
    pub session: Option<SessionFile>,
    /// How old a session token may get before it is renewed (24 h, the server's rotation).
    pub session_rotation: Duration,
}

/// How often a renewed session token the disk refused is offered to it again while connected.
const SESSION_SAVE_RETRY: Duration = Duration::from_secs(2);

impl PushClientConfig {
    /// Settings for `endpoint` with the spool in `spool_dir`, plaintext, and the defaults:
    /// 256 MiB of spool, 4 MiB of memory, 32 batches in flight, 200 ms to 30 s backoff.
    pub fn new(endpoint: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            failover_endpoints: Vec::new(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 256 * 1024 * 1024,
            memory_max_bytes: 4 * 1024 * 1024,
            max_in_flight: 32,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            tls: None,
            tls_files: None,
            session: None,
            session_rotation: Duration::from_secs(24 * 3600),
        }
    }
}

/// Counters of a [`PushClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// The on-disk spool's counters.
    pub spool: SpoolStats,
    /// Batches waiting in memory because the spool cannot be written.
    pub memory: MemoryStats,
    /// Whether a push stream to the server is open now.
    pub connected: bool,
    /// Push streams opened so far (a reconnect opens one more).
    pub connections: u64,
    /// Batches the server acknowledged as stored.
    pub committed: u64,
    /// Batches the server acknowledged as already stored (resent after a lost ack).
    pub duplicates: u64,
    /// Batches the server refused as invalid; they are dropped, not resent.
    pub rejected: u64,
    /// The session token in use could not be written to the session file (disk full or
    /// read-only): it lives in memory until the disk takes it.
    pub session_unsaved: bool,
    /// Failed attempts at writing a renewed session token to the session file.
    pub session_save_failures: u64,
}

/// What this sender says of its centrally managed configuration on every batch it sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigStatus {
    /// The version it runs; empty: its own file only.
    pub running: String,
    /// The latest version it refused, and why; empty when none.
    pub refused: String,
    /// Why `refused` was refused; empty when none.
    pub error: String,
}

/// Spools batches and pushes them to the server. Cheap to clone; [`PushClient::run`] drives
/// the connection while [`PushClient::enqueue`] may be called from anywhere.
#[derive(Clone)]
pub struct PushClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: PushClientConfig,
    outbox: Mutex<Outbox>,
    /// Highest sequence stored (spool or memory), to wake the sender.
    appended: watch::Sender<u64>,
    connected: AtomicBool,
    connections: AtomicU64,
    /// The server refused the session token: renew before the next push.
    renew_now: AtomicBool,
    /// The TLS material in use: the configuration's, or what a renewal brought.
    tls: Mutex<Option<TlsMaterial>>,
    /// The session token in use when the session file could not take it (it then holds an
    /// older one): written there as soon as the disk allows.
    unsaved_session: Mutex<Option<AgentSession>>,
    session_save_failures: AtomicU64,
    committed: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    /// Send-time stamps and the clock offset the acks measure.
    clock: SendClock,
    /// The server's word that this agent was revoked; `run` stops for good once set.
    revoked: Mutex<Option<String>>,
    /// The latest sequence the server acknowledged, for callers that wait on their batch.
    acked: watch::Sender<u64>,
    /// Stamped on every batch sent.
    config_status: Mutex<ConfigStatus>,
    /// The latest managed configuration the server asked this sender to run.
    config_updates: watch::Sender<Option<AgentConfigUpdate>>,
}

impl PushClient {
    /// Opens the spool in `config.spool_dir`, recovering what an earlier run left there.
    pub fn open(config: PushClientConfig) -> Result<Self, TransportError> {
        let outbox = Outbox::open(&config.spool_dir, config.spool_max_bytes, config.memory_max_bytes)?;
        let last = outbox.spool_stats().next_sequence.saturating_sub(1);
        let outbox_acked = outbox.spool_stats().acked_through;
        Ok(Self {
            inner: Arc::new(Inner {
                outbox: Mutex::new(outbox),
                appended: watch::Sender::new(last),
                connected: AtomicBool::new(false),
                connections: AtomicU64::new(0),
                renew_now: AtomicBool::new(false),
                tls: Mutex::new(config.tls.clone()),
                unsaved_session: Mutex::new(None),
                session_save_failures: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                clock: SendClock::default(),
                revoked: Mutex::new(None),
                acked: watch::Sender::new(outbox_acked),
                config_status: Mutex::default(),
                config_updates: watch::Sender::new(None),
                config,
            }),
        })
    }

    /// Gives `batch` the next sequence number and appends it durably to the spool (or, if
    /// the spool cannot be written, keeps it in memory); from then on it is this client's
    /// job to deliver it. Returns the sequence. Fails only for a batch too large to store.
    pub async fn enqueue(&self, mut batch: IngestBatch) -> Result<u64, TransportError> {
        let inner = Arc::clone(&self.inner);
        // Before the spool's fsync: the frame of the clock that stamped the batch.
        let frame = inner.clock.frame();
        let sequence = tokio::task::spawn_blocking(move || {
            let sequence = inner.lock_outbox().push(|sequence| {
                batch.sequence = sequence;
                batch.to_proto().encode_to_vec()
            })?;
            inner.clock.enqueued(sequence, frame);
            Ok::<_, TransportError>(sequence)
        })
        .await??;
        self.inner.appended.send_replace(sequence);
        Ok(sequence)
    }

    /// The latest sequence the server acknowledged (committed, duplicate or rejected),
    /// updated once the outbox has let go of it: wait on it to learn when a sequence that
    /// [`PushClient::enqueue`] returned is durable at the server.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.inner.acked.subscribe()
    }

    /// Says, on every batch sent from now on (spooled ones too), which managed
    /// configuration this sender runs and which it refused.
    pub fn report_config(&self, status: ConfigStatus) {
        *self.inner.config_status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    /// The managed configurations the server asks this sender to run, latest first; it
    /// changes only when the server sends another version (each acknowledgement in flight
    /// may carry the same one).
    pub fn config_updates(&self) -> watch::Receiver<Option<AgentConfigUpdate>> {
        self.inner.config_updates.subscribe()
    }

    /// The client's counters now.
    pub fn stats(&self) -> PushStats {
        let (spool, memory) = {
            let outbox = self.inner.lock_outbox();
            (outbox.spool_stats(), outbox.memory_stats())
        };
        PushStats {
            spool,
            memory,
            connected: self.inner.connected.load(Ordering::Relaxed),
            connections: self.inner.connections.load(Ordering::Relaxed),
            committed: self.inner.committed.load(Ordering::Relaxed),
            duplicates: self.inner.duplicates.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
            session_unsaved: self.inner.lock_unsaved_session().is_some(),
            session_save_failures: self.inner.session_save_failures.load(Ordering::Relaxed),
        }
    }

    /// The server's reason, once it has said that this agent was revoked (then
    /// [`PushClient::run`] has returned without waiting for its shutdown).
    pub fn revoked(&self) -> Option<String> {
        self.inner.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Connects, delivers everything the spool holds and then each new batch, until
    /// `shutdown` completes or the server says this agent was revoked. Reconnects with
    /// exponential backoff after any other failure.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let config = &self.inner.config;
        let mut backoff = config.backoff_min;
        let mut outage: Option<Instant> = None;
        let endpoints: Vec<&str> = std::iter::once(config.endpoint.as_str())
            .chain(config.failover_endpoints.iter().map(String::as_str))
            .collect();
        let mut current = 0;
        loop {
            let endpoint = endpoints[current];
            let session = self.session(endpoint, &mut outage, &mut backoff);
            let failure = tokio::select! {
                _ = &mut shutdown => break,
                result = session => result,
            };
            self.inner.connected.store(false, Ordering::Relaxed);
            if let Err(error) = failure {
                // Retrying would spool forever under "unreachable": only a new enrollment helps.
                if let TransportError::Status(status) = &error
                    && crate::gate::is_revocation(status)
                {
                    tracing::error!(%endpoint, reason = status.message(),
                        "this agent was revoked by the server; stopping (enroll it again with `secumon-agent setup`)");
                    *self.inner.revoked.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(status.message().to_string());
                    break;
                }
                if outage.is_none() {
                    tracing::warn!(%endpoint, %error,
                        "server unreachable; batches are kept in the spool until it is back");
                    outage = Some(Instant::now());
                } else {
                    tracing::debug!(%endpoint, %error, "reconnect failed");
                }
                // Another gateway of the same server may be up: the next attempt goes there.
                current = (current + 1) % endpoints.len();
            }
            // Jitter spreads the reconnects of many agents after a server restart.
            let jitter = backoff.mul_f64(0.2 * f64::from(fastrand_u8()) / 255.0);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(config.backoff_max);
        }
        self.inner.connected.store(false, Ordering::Relaxed);
    }

    /// One connection to `endpoint`: returns when it fails, or `Ok` when the session token
    /// is due for renewal (the next connection renews it).
    async fn session(
        &self,
        endpoint: &str,
        outage: &mut Option<Instant>,
        backoff: &mut Duration,
    ) -> Result<(), TransportError> {
        let config = &self.inner.config;
        let tls = self.inner.tls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let channel = channel(endpoint, tls.as_ref().map(TlsMaterial::client_config)).await?;
        let session = match &config.session {
            Some(file) => {
                let (session, new_certificate) = self.current_session(file, channel.clone()).await?;
                if new_certificate {
                    // The next connection presents it.
                    return Ok(());
                }
                Some(session)
            }
            None => None,
        };
        let mut client = IngestClient::new(channel)
            .send_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let acked_through = self.inner.lock_outbox().spool_stats().acked_through;
        let (requests, request_stream) = mpsc::channel::<Batch>(config.max_in_flight.max(1));
        // Stamped as tonic takes each batch for the wire, so a resent batch has a fresh send time.
        let stamping = Arc::clone(&self.inner);
        let mut push = tonic::Request::new(ReceiverStream::new(request_stream).map(move |mut batch| {
            stamping.clock.stamp(&mut batch);
            let status = stamping.config_status.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            (batch.config_version, batch.config_refused_version, batch.config_error) =
                (status.running, status.refused, status.error);
            batch
        }));
        if let Some(session) = &session {
            insert_bearer(&mut push, &session.token)?;
        }
        let mut acks = match client.push(push).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if status.code() == tonic::Code::Unauthenticated && session.is_some() {
                    self.inner.renew_now.store(true, Ordering::Relaxed);
                }
                return Err(status.into());
            }
        };
        let rotation_due = async {
            match &session {
                Some(session) => tokio::time::sleep(self.until_rotation(session)).await,
                None => std::future::pending().await,
            }
        };
        // A renewed token the disk refused is offered to it again now and then.
        let save_session = async {
            let Some(file) = &config.session else { return std::future::pending().await };
            loop {
                tokio::time::sleep(SESSION_SAVE_RETRY).await;
                if self.inner.lock_unsaved_session().is_some() {
                    self.save_unsaved_session(file);
                }
            }
        };

        self.inner.connected.store(true, Ordering::Relaxed);
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        *backoff = config.backoff_min;
        if let Some(since) = outage.take() {
            let pending = {
                let outbox = self.inner.lock_outbox();
                outbox.spool_stats().pending_batches + outbox.memory_stats().batches
            };
            tracing::info!(%endpoint, outage_secs = since.elapsed().as_secs(), pending,
                "server reachable again; replaying the spool");
        }

        let (acked_tx, acked_rx) = watch::channel(acked_through);
        let sender = self.send_pending(acked_through, requests, acked_rx);
        let receiver = async {
            while let Some(ack) = acks.message().await? {
                self.inner.clock.acked(&ack);
                if let Some(update) = ack.config {
                    self.inner.config_updates.send_if_modified(|latest| {
                        let new = latest.as_ref() != Some(&update);
                        *latest = Some(update);
                        new
                    });
                }
                let inner = Arc::clone(&self.inner);
                let sequence = ack.sequence;
                // Never fails: what the disk cannot record now is kept in memory and written
                // later, so a full disk does not cut the stream that empties it.
                tokio::task::spawn_blocking(move || inner.lock_outbox().ack(sequence)).await?;
                // Counted once the outbox has let go of the batch, so stats never show a batch
                // both committed and pending.
                match AckStatus::try_from(ack.status) {
                    Ok(AckStatus::Committed) => self.inner.committed.fetch_add(1, Ordering::Relaxed),
                    Ok(AckStatus::Duplicate) => self.inner.duplicates.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        // The server will never accept it: keeping it would block the spool.
                        tracing::error!(sequence, error = %ack.error, "server rejected a batch; it is dropped");
                        self.inner.rejected.fetch_add(1, Ordering::Relaxed)
                    }
                };
                acked_tx.send_replace(sequence);
                self.inner.acked.send_replace(sequence);
            }
            Err(TransportError::StreamClosed)
        };
        tokio::select! {
            result = sender => result,
            result = receiver => result,
            () = rotation_due => Ok(()),
            () = save_session => Ok(()),
        }
    }

    /// The session token in use (the session file's, or a newer one the file could not take),
    /// renewed first if it is due or was refused.
    ///
    /// A renewed token is used even when the disk cannot take it: failing here would drop
    /// every connection, and the token the file holds no longer admits pushes. It is saved
    /// when the disk allows. Until then renewals present the file's token, not the newer one:
    /// the server keeps the token a renewal replaced good for renewing, and presenting it
    /// again leaves it so, so the file still lets a restarted agent renew its way back in.
    /// `true` beside it when the renewal brought a new certificate (agent CA rotation): the
    /// connection must be made again to present it.
    async fn current_session(
        &self,
        file: &SessionFile,
        channel: Channel,
    ) -> Result<(AgentSession, bool), TransportError> {
        self.save_unsaved_session(file);
        let unsaved = self.inner.lock_unsaved_session().clone();
        let session = match &unsaved {
            Some(in_use) => in_use.clone(),
            None => file.load()?,
        };
        if !self.inner.renew_now.load(Ordering::Relaxed) && !self.until_rotation(&session).is_zero() {
            return Ok((session, false));
        }
        let next = match unsaved.map(|in_use| (file.load(), in_use)) {
            Some((Ok(saved), in_use)) => match file.renew(channel.clone(), &saved).await {
                // Not renewable after all (the file was replaced?): it is no good for a
                // restart either way, so the token in use renews.
                Err(TransportError::Status(status)) if status.code() == tonic::Code::Unauthenticated => {
                    file.renew(channel, &in_use).await?
                }
                renewed => renewed?,
            },
            Some((Err(_), in_use)) => file.renew(channel, &in_use).await?,
            None => file.renew(channel, &session).await?,
        };
        self.inner.renew_now.store(false, Ordering::Relaxed);
        let new_certificate = !next.cert_pem.is_empty() && self.take_certificate(&next);
        // Only this task writes the session file and the token in use: the lock is not held
        // over the write (and its fsync), so `stats` never waits on the disk.
        let stored = file.store(&next);
        let mut unsaved = self.inner.lock_unsaved_session();
        match stored {
            Ok(()) => {
                if unsaved.take().is_some() {
                    tracing::info!(path = %file.path().display(), "session token renewed and saved again");
                } else {
                    tracing::info!(path = %file.path().display(), "session token renewed");
                }
            }
            Err(error) => {
                self.inner.session_save_failures.fetch_add(1, Ordering::Relaxed);
                if unsaved.replace(next.clone()).is_none() {
                    tracing::warn!(%error,
                        "session token renewed but cannot be saved; using it from memory and saving it when the \
                         disk allows (a restart before then renews with the saved one)");
                } else {
                    tracing::debug!(%error, "session token renewed, still not saved");
                }
            }
        }
        Ok((next, new_certificate))
    }

    /// Puts the certificate and CAs of a renewal in use, and in the TLS files if configured
    /// (a disk that refuses them costs nothing now: the server keeps admitting the old
    /// certificate and hands the new one out again at the next renewal). `false` without
    /// TLS or when they are unreadable.
    fn take_certificate(&self, renewed: &AgentSession) -> bool {
        let mut tls = self.inner.tls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(current) = tls.as_ref() else { return false };
        let certificates = |text: &str| {
            pem::parse_many(text).is_ok_and(|all| !all.is_empty() && all.iter().all(|c| c.tag() == "CERTIFICATE"))
        };
        if !certificates(&renewed.cert_pem) || !certificates(&renewed.ca_pem) {
            tracing::warn!(
                "the server sent an unreadable certificate with the renewed session; keeping the current one"
            );
            return false;
        }
        let next = current.renewed(&renewed.ca_pem, &renewed.cert_pem);
        match &self.inner.config.tls_files {
            Some(files) => match files.store(&next) {
                Ok(()) => tracing::info!(cert = %files.cert.display(), ca = %files.ca.display(),
                    "new certificate from the server's new agent CA saved"),
                Err(error) => tracing::warn!(%error,
                    "new certificate from the server's new agent CA in use but not saved; the next renewal sends it again"),
            },
            None => tracing::info!("new certificate from the server's new agent CA in use"),
        }
        *tls = Some(next);
        true
    }

    /// Writes the session token in use to the session file if it is not there yet.
    fn save_unsaved_session(&self, file: &SessionFile) {
        let Some(session) = self.inner.lock_unsaved_session().clone() else { return };
        match file.store(&session) {
            Ok(()) => {
                tracing::info!(path = %file.path().display(), "renewed session token saved at last");
                *self.inner.lock_unsaved_session() = None;
            }
            Err(error) => {
                self.inner.session_save_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "renewed session token still cannot be saved");
            }
        }
    }

    fn until_rotation(&self, session: &AgentSession) -> Duration {
        let age_ms = u64::try_from(secumon_core::now_ms().saturating_sub(session.issued_at_ms)).unwrap_or(0);
        self.inner.config.session_rotation.saturating_sub(Duration::from_millis(age_ms))
    }

    /// Streams stored batches (spool, then memory) after `acked_through`, keeping at most
    /// `max_in_flight` unacknowledged, and waits for new appends when caught up.
    async fn send_pending(
        &self,
        acked_through: u64,
        requests: mpsc::Sender<Batch>,
        mut acked: watch::Receiver<u64>,
    ) -> Result<(), TransportError> {
        let window = self.inner.config.max_in_flight.max(1);
        let mut appended = self.inner.appended.subscribe();
        let mut sent_through = acked_through;
        // Sequences sent and not acknowledged. Counted, not subtracted: sequences have gaps
        // (batches dropped from memory, numbers skipped after a restart).
        let mut in_flight: VecDeque<u64> = VecDeque::new();
        loop {
            let acked_through = *acked.borrow_and_update();
            while in_flight.front().is_some_and(|s| *s <= acked_through) {
                in_flight.pop_front();
            }
            if in_flight.len() >= window {
                acked.changed().await.map_err(|_| TransportError::StreamClosed)?;
                continue;
            }
            appended.borrow_and_update();
            let inner = Arc::clone(&self.inner);
            let limit = window - in_flight.len();
            let pending =
                tokio::task::spawn_blocking(move || inner.lock_outbox().read_pending(sent_through, limit)).await??;
            if pending.is_empty() {
                appended.changed().await.map_err(|_| TransportError::StreamClosed)?;
                continue;
            }
            for (sequence, payload) in pending {
                sent_through = sequence;
                match Batch::decode(payload.as_slice()) {
                    Ok(batch) => {
                        requests.send(batch).await.map_err(|_| TransportError::StreamClosed)?;
                        in_flight.push_back(sequence);
                    }
                    // The checksum matched, so this was written by another version; skip it.
                    Err(error) => {
                        tracing::error!(sequence, %error, "undecodable batch in the spool; skipped")
                    }
                }
            }
        }
    }
}

impl Inner {
    fn lock_unsaved_session(&self) -> MutexGuard<'_, Option<AgentSession>> {
        self.unsaved_session.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_outbox(&self) -> MutexGuard<'_, Outbox> {
        // A panic while holding the lock cannot leave the spool's files inconsistent.
        self.outbox.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A cheap pseudo-random byte for backoff jitter.
fn fastrand_u8() -> u8 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (nanos ^ (nanos >> 8) ^ (nanos >> 16)) as u8
}
