//! Alert ownership leases: when several alert processes run, each tenant's rules are
//! evaluated by one of them at a time, so nothing is notified twice. A lease is a key per
//! tenant in a JetStream key-value bucket whose entries live `ttl`: a process takes a free
//! lease with `create` (refused while another holds it), renews it with `update` on the
//! revision it holds every `ttl / 3`, and releases it on shutdown. A process that dies stops
//! renewing; its entry expires after `ttl` and another process takes the tenant over on its
//! next attempt, so within `ttl + ttl / 3`.
//!
//! Never two owners at once: a holder counts itself owner only until `ttl` after it *sent*
//! its last successful create or renewal (minus a margin), while the bucket keeps the entry
//! at least `ttl` after the server *received* it. So a holder cut off from NATS, or paused,
//! stops evaluating before anyone else can take its lease. Each acquisition has a term (the
//! lease's revision when taken); an engine started under one term is dropped when the term
//! changes, and the next one reads the alert state back from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Default lease time: how long a dead owner's tenants wait before another process takes
/// them over (plus up to a third of it for the next attempt).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default key-value bucket of the leases.
pub const DEFAULT_LEASE_BUCKET: &str = "secumon_alert_leases";

/// Which process evaluates which tenant's alert rules: what the tenants' alert engines
/// consult before they evaluate.
pub trait Ownership: Send + Sync {
    /// Asks to own `tenant` from now on; cheap when it is asked already.
    fn want(&self, tenant: &str);
    /// The term under which this process owns `tenant` now, or `None` when it does not.
    /// A new term means another process may have owned the tenant in between.
    fn term(&self, tenant: &str) -> Option<u64>;
}

/// Why the leases could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease time is too short to renew in time.
    #[error("the alert lease time must be at least 1 s, not {0:?}")]
    TooShort(Duration),
    /// The key-value bucket could not be created or opened.
    #[error("alert lease bucket {bucket:?}: {message}")]
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// What JetStream said.
        message: String,
    },
}

/// How the leases are kept.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// The key-value bucket (one per installation; every alert process names the same).
    pub bucket: String,
    /// How long a lease lives without renewal.
    pub ttl: Duration,
    /// Who holds the leases this process takes (kept in the lease, for people reading it).
    pub holder: String,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            bucket: DEFAULT_LEASE_BUCKET.to_string(),
            ttl: DEFAULT_LEASE_TTL,
            holder: format!("{}-{}", hostname(), std::process::id()),
        }
    }
}

/// A lease held now.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The revision to renew on.
    revision: u64,
    /// Until when this process may count itself the owner.
    until: Instant,
    /// The revision at acquisition: changes whenever ownership may have changed hands.
    term: u64,
}

struct Leases {
    kv: kv::Store,
    holder: String,
    ttl: Duration,
    /// Every tenant wanted, with the lease held on it if any.
    tenants: Mutex<HashMap<String, Option<Held>>>,
    /// Wakes the keeper when a tenant is newly wanted.
    wanted: Notify,
}

/// The leases of one alert process: a keeper task takes and renews them. Dropping it ends
/// the keeper without releasing anything (as a crash would); [`AlertLeases::shutdown`]
/// releases them so another process takes over at once.
pub struct AlertLeases {
    leases: Arc<Leases>,
    keeper: JoinHandle<()>,
}

/// A view of an [`AlertLeases`]' ownership, cheap to clone, that stays readable after the
/// leases are dropped (it then owns nothing once the last lease's time runs out).
#[derive(Clone)]
pub struct LeaseView(Arc<Leases>);

impl AlertLeases {
    /// Opens (creating if needed) the lease bucket and starts the keeper.
    pub async fn start(client: async_nats::Client, options: LeaseOptions) -> Result<Self, LeaseError> {
        if options.ttl < Duration::from_secs(1) {
            return Err(LeaseError::TooShort(options.ttl));
        }
        let jetstream = async_nats::jetstream::new(client);
        let bucket_error = |message: String| LeaseError::Bucket { bucket: options.bucket.clone(), message };
        // The bucket's stream is made here rather than by `create_key_value`, which first
        // reads the account's JetStream info in a shape nats-server 2.9 does not send. The
        // layout is a key-value bucket's: one entry a key, entries expiring after the ttl.
        let stream = async_nats::jetstream::stream::Config {
            name: format!("KV_{}", options.bucket),
            description: Some("SecuMon: which alert process evaluates which tenant".into()),
            subjects: vec![format!("$KV.{}.>", options.bucket)],
            max_messages_per_subject: 1,
            max_age: options.ttl,
            storage: async_nats::jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        if let Err(error) = jetstream.create_stream(stream).await {
            // Made by another process with other settings: used as it is (its ttl applies).
            tracing::warn!(bucket = %options.bucket, %error, "the alert lease bucket exists with other settings");
        }
        let kv = jetstream.get_key_value(&options.bucket).await.map_err(|error| bucket_error(error.to_string()))?;
        let ttl = match kv.status().await {
            Ok(status) if !status.max_age().is_zero() => status.max_age(),
            Ok(_) => {
                return Err(bucket_error("the bucket's entries never expire: a dead owner would keep them".into()));
            }
            Err(error) => return Err(bucket_error(error.to_string())),
        };
        let leases =
            Arc::new(Leases { kv, holder: options.holder, ttl, tenants: Mutex::default(), wanted: Notify::new() });
        let keeper = tokio::spawn(keep(Arc::clone(&leases)));
        Ok(Self { leases, keeper })
    }

    /// A view of the ownership that outlives these leases.
    pub fn view(&self) -> LeaseView {
        LeaseView(Arc::clone(&self.leases))
    }

    /// The lease time in force (the bucket's).
    pub fn ttl(&self) -> Duration {
        self.leases.ttl
    }

    /// Stops renewing and releases every lease held, so other processes take the tenants
    /// over on their next attempt rather than after the lease time.
    pub async fn shutdown(self) {
        self.keeper.abort();
        let held: Vec<(String, Held)> = {
            let mut tenants = self.leases.lock();
            tenants.iter_mut().filter_map(|(tenant, held)| Some((tenant.clone(), held.take()?))).collect()
        };
        for (tenant, held) in held {
            // Only our own revision: a lease another process took meanwhile stays its own.
            match self.leases.kv.delete_expect_revision(&tenant, Some(held.revision)).await {
                Ok(()) => tracing::info!(%tenant, "alert lease released"),
                Err(error) => tracing::warn!(%tenant, %error, "alert lease not released; it expires by itself"),
            }
        }
    }
}

impl Drop for AlertLeases {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Ownership for AlertLeases {
    fn want(&self, tenant: &str) {
        self.leases.want(tenant);
    }

    fn term(&self, tenant: &str) -> Option<u64> {
        self.leases.term(tenant)
    }
}

impl Ownership for LeaseView {
    fn want(&self, tenant: &str) {
        self.0.want(tenant);
    }

    fn term(&self, tenant: &str) -> Option<u64> {
        self.0.term(tenant)
    }
}

impl Leases {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<Held>>> {
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn want(&self, tenant: &str) {
        let mut tenants = self.lock();
        if !tenants.contains_key(tenant) {
            tenants.insert(tenant.to_string(), None);
            self.wanted.notify_one();
        }
    }

    fn term(&self, tenant: &str) -> Option<u64> {
        let held = (*self.lock().get(tenant)?)?;
        (Instant::now() < held.until).then_some(held.term)
    }

    /// Until when a lease written at `sent` may be counted on. The margin covers the two
    /// clocks (ours, the server's) running at slightly different rates.
    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.ttl - (self.ttl / 20).max(Duration::from_millis(50))
    }

    /// One round: renews the leases held and tries to take the others, all tenants at
    /// once, so many tenants do not make the last ones' renewals late.
    async fn round(&self) {
        let wanted: Vec<(String, Option<Held>)> = self.lock().iter().map(|(t, h)| (t.clone(), *h)).collect();
        let outcomes = futures::future::join_all(wanted.into_iter().map(|(tenant, held)| async move {
            let now_held = self.attempt(&tenant, held).await;
            (tenant, now_held)
        }))
        .await;
        let mut tenants = self.lock();
        for (tenant, now_held) in outcomes {
            if let Some(slot) = tenants.get_mut(&tenant) {
                *slot = now_held;
            }
        }
    }

    /// Renews `tenant`'s lease if held, else tries to take it; what is held after.
    async fn attempt(&self, tenant: &str, held: Option<Held>) -> Option<Held> {
        let sent = Instant::now();
        // Bounded, so a slow answer cannot hold the next round past the lease's time.
        let attempt = self.ttl / 3;
        match held {
            Some(held) => {
                let renewal = self.kv.update(tenant, self.holder.clone().into(), held.revision);
                match tokio::time::timeout(attempt, renewal).await {
                    Ok(Ok(revision)) => Some(Held { revision, until: self.valid_until(sent), ..held }),
                    // Taken by another process after ours expired (or a renewal of ours that
                    // timed out here was applied there): not ours to count on any more.
                    Ok(Err(error)) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        tracing::warn!(%tenant, "alert lease lost; no longer evaluating this tenant");
                        None
                    }
                    // NATS unreachable or slow: keep counting on the lease until its time
                    // runs out (`term` stops answering then), and try again next round.
                    Ok(Err(error)) => {
                        tracing::warn!(%tenant, %error, "cannot renew the alert lease");
                        Some(held)
                    }
                    Err(_) => {
                        tracing::warn!(%tenant, "renewing the alert lease timed out");
                        Some(held)
                    }
                }
            }
            None => {
                let taking = self.kv.create(tenant, self.holder.clone().into());
                match tokio::time::timeout(attempt, taking).await {
                    Ok(Ok(revision)) => {
                        tracing::info!(%tenant, term = revision, "alert lease taken; evaluating this tenant");
                        Some(Held { revision, until: self.valid_until(sent), term: revision })
                    }
                    Ok(Err(error)) if error.kind() == kv::CreateErrorKind::AlreadyExists => None,
                    Ok(Err(error)) => {
                        tracing::debug!(%tenant, %error, "cannot take the alert lease");
                        None
                    }
                    Err(_) => None,
                }
            }
        }
    }
}

/// Renews and takes leases every third of the lease time, and at once when a tenant is
/// newly wanted.
async fn keep(leases: Arc<Leases>) {
    let period = leases.ttl / 3;
    loop {
        leases.round().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = leases.wanted.notified() => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The NATS of `SECUMON_TEST_NATS_URL`, or `None` (after failing in strict mode).
    pub(crate) async fn test_nats() -> Option<async_nats::Client> {
        let url = std::env::var("SECUMON_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        match async_nats::connect(&url).await {
            Ok(client) => Some(client),
            Err(error) => {
                secumon_core::testing::peer_missing(&format!("NATS at {url}: {error}"));
                None
            }
        }
    }

    pub(crate) fn unique(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{prefix}_{}_{nanos}", std::process::id())
    }

    async fn delete_bucket(client: &async_nats::Client, bucket: &str) {
        let _ = async_nats::jetstream::new(client.clone()).delete_key_value(bucket).await;
    }

    #[tokio::test]
    async fn a_dead_owners_tenant_is_taken_over_within_the_lease_time_and_never_owned_twice() {
        let Some(client) = test_nats().await else { return };
        let bucket = unique("lease_takeover");
        let ttl = Duration::from_secs(2);
        let options = |holder: &str| LeaseOptions { bucket: bucket.clone(), ttl, holder: holder.into() };
        let a = AlertLeases::start(client.clone(), options("a")).await.unwrap();
        a.want("acme");
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.term("acme").is_none() {
            assert!(Instant::now() < deadline, "the first holder never took the free lease");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let b = AlertLeases::start(client.clone(), options("b")).await.unwrap();
        b.want("acme");
        let (a_view, b_view) = (a.view(), b.view());
        // Sampled all along: never both at once.
        let sampling = tokio::spawn(async move {
            let mut samples = 0u32;
            let mut b_since: Option<Instant> = None;
            let started = Instant::now();
            loop {
                let (a_owns, b_owns) = (a_view.term("acme").is_some(), b_view.term("acme").is_some());
                assert!(!(a_owns && b_owns), "both own the tenant at {:?}", started.elapsed());
                samples += 1;
                if b_owns && b_since.is_none() {
                    b_since = Some(Instant::now());
                }
                // Go on sampling a while after the takeover, then stop.
                let done = b_since.is_some_and(|at| at.elapsed() > Duration::from_millis(500));
                if done || started.elapsed() > Duration::from_secs(15) {
                    return (samples, b_since);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        // Two renewal periods with both alive: the owner keeps it, the other never gets it.
        tokio::time::sleep(ttl + ttl / 3).await;
        assert!(a.term("acme").is_some() && b.term("acme").is_none(), "the live owner kept its lease");
        let died = Instant::now();
        drop(a); // as after kill -9: no release
        let (samples, b_since) = sampling.await.unwrap();
        let b_since = b_since.expect("the second holder never took over");
        assert!(b.term("acme").is_some(), "the new owner keeps renewing");
        let waited = b_since.duration_since(died);
        // Within the lease time plus one attempt period (and some scheduling slack).
        assert!(waited <= ttl + ttl / 3 + Duration::from_millis(300), "took over after {waited:?}");
        assert!(samples > 100, "too few samples ({samples}) to say anything");
        eprintln!("takeover {waited:?} after the owner died (lease {ttl:?}), {samples} samples, never two owners");
        b.shutdown().await;
        delete_bucket(&client, &bucket).await;
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once_and_terms_change_with_the_owner() {
        let Some(client) = test_nats().await else { return };
        let bucket = unique("lease_release");
        let ttl = Duration::from_secs(3);
        let options = |holder: &str| LeaseOptions { bucket: bucket.clone(), ttl, holder: holder.into() };
        let a = AlertLeases::start(client.clone(), options("a")).await.unwrap();
        a.want("acme");
        let wait_for = |leases: &AlertLeases| {
            let view = leases.view();
            async move {
                let deadline = Instant::now() + ttl * 2;
                loop {
                    if let Some(term) = view.term("acme") {
                        return term;
                    }
                    assert!(Instant::now() < deadline, "no lease taken in time");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        let first_term = wait_for(&a).await;
        let b = AlertLeases::start(client.clone(), options("b")).await.unwrap();
        b.want("acme");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(b.term("acme"), None, "held by a");
        assert_eq!(a.term("acme"), Some(first_term), "a renewal keeps the term");
        let released = Instant::now();
        a.shutdown().await;
        let second_term = wait_for(&b).await;
        // Released, not expired: taken on b's next attempt (a third of the lease time), where
        // an expiry would have taken at least two thirds of it.
        assert!(released.elapsed() < ttl / 2, "took {:?}", released.elapsed());
        assert_ne!(first_term, second_term, "a new owner gets a new term");
        b.shutdown().await;
        delete_bucket(&client, &bucket).await;
    }

    #[tokio::test]
    async fn a_lease_time_under_a_second_is_refused() {
        let Some(client) = test_nats().await else { return };
        let options = LeaseOptions { ttl: Duration::from_millis(300), ..LeaseOptions::default() };
        assert!(matches!(AlertLeases::start(client, options).await, Err(LeaseError::TooShort(_))));
    }
}
