//! What every backend does to a batch before storing it: refuse samples stamped too far in
//! the future, find series ids without building a series key per sample, and keep each
//! tenant under its budget of series.

use std::borrow::Cow;
use std::sync::Mutex;

use foldhash::{HashMap, HashMapExt};
use secumon_core::{IngestBatch, Labels, Sample, SeriesKey};

use crate::StoreError;

/// Fails, naming the series, if a sample is stamped later than now plus `max_future_ms`.
pub fn refuse_future_samples(
    tenant: &str,
    batch: &IngestBatch,
    samples: &[Cow<'_, Sample>],
    now_ms: i64,
    max_future_ms: i64,
) -> Result<(), StoreError> {
    let latest_allowed = now_ms.saturating_add(max_future_ms);
    match samples.iter().find(|s| s.timestamp_ms > latest_allowed) {
        Some(late) => Err(StoreError::FutureTimestamp {
            series: batch.stored_series_key(tenant, &late.series).to_string(),
            timestamp_ms: late.timestamp_ms,
            limit_ms: max_future_ms,
        }),
        None => Ok(()),
    }
}

/// One agent's series ids by the keys it sends, valid while its host and labels stay.
struct AgentSeries<Id> {
    host: String,
    labels: Labels,
    ids: HashMap<SeriesKey, Id>,
}

/// Series ids of committed series, by (tenant, agent id), so steady-state batches skip
/// every lookup and every stored-key allocation. It holds at most [`SERIES_CACHE_ENTRIES`]
/// ids: past that it starts again empty (ids are looked up in the store again), so a flood
/// of new series cannot grow it without bound.
pub struct SeriesCache<Id> {
    agents: Mutex<HashMap<(String, String), AgentSeries<Id>>>,
    capacity: usize,
}

/// Default bound of a [`SeriesCache`]: about 100 bytes each, 200 MB at most.
pub const SERIES_CACHE_ENTRIES: usize = 2_000_000;

impl<Id: Copy> Default for SeriesCache<Id> {
    fn default() -> Self {
        Self::with_capacity(SERIES_CACHE_ENTRIES)
    }
}

impl<Id: Copy> SeriesCache<Id> {
    /// A cache of at most `capacity` series ids.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { agents: Mutex::new(HashMap::new()), capacity }
    }

    /// Series ids held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.agents.lock().unwrap_or_else(|p| p.into_inner()).values().map(|a| a.ids.len()).sum()
    }

    /// The known id of each sample's series, None where the store must resolve it.
    pub fn lookup(&self, tenant: &str, batch: &IngestBatch, samples: &[Cow<'_, Sample>]) -> Vec<Option<Id>> {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let known = agents.entry((tenant.to_string(), batch.agent_id.clone())).or_insert_with(|| AgentSeries {
            host: batch.host.clone(),
            labels: batch.agent_labels.clone(),
            ids: HashMap::new(),
        });
        if known.host != batch.host || known.labels != batch.agent_labels {
            *known = AgentSeries { host: batch.host.clone(), labels: batch.agent_labels.clone(), ids: HashMap::new() };
        }
        samples.iter().map(|s| known.ids.get(&s.series).copied()).collect()
    }

    /// Records ids resolved by a batch that has committed.
    pub fn remember(&self, tenant: &str, batch: &IngestBatch, resolved: impl IntoIterator<Item = (SeriesKey, Id)>) {
        let resolved: Vec<(SeriesKey, Id)> = resolved.into_iter().collect();
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let held: usize = agents.values().map(|a| a.ids.len()).sum();
        if held + resolved.len() > self.capacity {
            // Whole, not one by one: cheap, and the ids are all in the store anyway.
            tracing::info!(held, capacity = self.capacity, "series id cache full; starting it again empty");
            agents.clear();
        }
        let key = (tenant.to_string(), batch.agent_id.clone());
        let known = agents.entry(key).or_insert_with(|| AgentSeries {
            host: batch.host.clone(),
            labels: batch.agent_labels.clone(),
            ids: HashMap::new(),
        });
        if resolved.len() <= self.capacity {
            known.ids.extend(resolved);
        }
    }
}

/// How many series each tenant holds, against the limit of series per tenant: counted from
/// the store the first time a tenant creates series, then kept up to date by the batches
/// that create more. Series are never deleted, so the count only grows.
pub struct SeriesBudget {
    limit: u64,
    counts: Mutex<HashMap<String, u64>>,
    /// Tenants with a limit of their own.
    limits: Mutex<HashMap<String, u64>>,
}

impl SeriesBudget {
    pub fn new(limit: u64) -> Self {
        Self { limit, counts: Mutex::new(HashMap::new()), limits: Mutex::new(HashMap::new()) }
    }

    /// Gives `tenant` a limit of its own, or (`None`) the default again.
    pub fn set_limit(&self, tenant: &str, limit: Option<u64>) {
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        match limit {
            Some(limit) => limits.insert(tenant.to_string(), limit),
            None => limits.remove(tenant),
        };
    }

    fn limit_of(&self, tenant: &str) -> u64 {
        self.limits.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).copied().unwrap_or(self.limit)
    }

    /// The tenant's series count, if known here.
    pub fn known(&self, tenant: &str) -> Option<u64> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).copied()
    }

    /// Sets the tenant's count as the store reports it (unless known meanwhile).
    pub fn counted(&self, tenant: &str, count: u64) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).entry(tenant.to_string()).or_insert(count);
    }

    /// Fails if `created` new series take the tenant, which held `before`, past the limit.
    pub fn check(&self, tenant: &str, before: u64, created: u64) -> Result<(), StoreError> {
        let limit = self.limit_of(tenant);
        if created > 0 && before + created > limit {
            return Err(StoreError::SeriesLimit { tenant: tenant.to_string(), limit, new: created });
        }
        Ok(())
    }

    /// Counts series a committed batch created (for a tenant not counted yet, the count
    /// from the store will include them).
    pub fn add(&self, tenant: &str, created: u64) {
        if let Some(count) = self.counts.lock().unwrap_or_else(|p| p.into_inner()).get_mut(tenant) {
            *count += created;
        }
    }
}

/// The distinct series of a batch that the cache did not know, to resolve once each.
pub struct Unresolved {
    /// Stored keys (with host, tenant and agent labels) to look up or create.
    pub keys: Vec<SeriesKey>,
    /// The same series as the agent names them, for the cache.
    named: Vec<SeriesKey>,
    /// (sample index, index in `keys`) for every sample still without an id.
    pending: Vec<(usize, usize)>,
}

impl Unresolved {
    pub fn new<Id>(tenant: &str, batch: &IngestBatch, samples: &[Cow<'_, Sample>], ids: &[Option<Id>]) -> Self {
        let mut distinct: HashMap<&SeriesKey, usize> = HashMap::new();
        let mut unresolved = Self { keys: Vec::new(), named: Vec::new(), pending: Vec::new() };
        for (index, sample) in samples.iter().enumerate().filter(|(i, _)| ids[*i].is_none()) {
            let slot = *distinct.entry(&sample.series).or_insert_with(|| {
                unresolved.keys.push(batch.stored_series_key(tenant, &sample.series));
                unresolved.named.push(sample.series.clone());
                unresolved.keys.len() - 1
            });
            unresolved.pending.push((index, slot));
        }
        unresolved
    }

    /// Whether the cache knew every series of the batch.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Fills `ids` from the ids resolved for `keys`; returns what the cache should learn.
    pub fn apply<Id: Copy>(self, resolved: &[Id], ids: &mut [Option<Id>]) -> Vec<(SeriesKey, Id)> {
        for (index, slot) in self.pending {
            ids[index] = Some(resolved[slot]);
        }
        self.named.into_iter().zip(resolved.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(agent: &str) -> IngestBatch {
        IngestBatch { agent_id: agent.into(), host: "h".into(), ..Default::default() }
    }

    fn key(i: usize) -> SeriesKey {
        SeriesKey { name: format!("m{i}"), labels: Labels::new() }
    }

    #[test]
    fn the_series_cache_never_holds_more_than_its_capacity() {
        let cache: SeriesCache<u32> = SeriesCache::with_capacity(1_000);
        for agent in 0..50 {
            let batch = batch(&format!("a{agent}"));
            cache.lookup("t", &batch, &[]);
            cache.remember("t", &batch, (0..100).map(|i| (key(i), i as u32)));
            assert!(cache.len() <= 1_000, "{} ids held", cache.len());
        }
        assert!(cache.len() > 0, "it still caches");
        // A batch larger than the whole cache is not cached at all.
        let big = batch("big");
        cache.remember("t", &big, (0..5_000).map(|i| (key(i), i as u32)));
        assert!(cache.len() <= 1_000);
    }

    #[test]
    fn the_series_budget_refuses_what_would_pass_the_limit() {
        let budget = SeriesBudget::new(10);
        budget.counted("a", 8);
        assert!(budget.check("a", 8, 2).is_ok());
        let error = budget.check("a", 8, 3).unwrap_err();
        assert!(error.to_string().contains("more than 10 series"), "{error}");
        assert!(budget.check("a", 12, 0).is_ok(), "no new series, nothing to refuse");
        budget.add("a", 2);
        assert_eq!(budget.known("a"), Some(10));
        assert_eq!(budget.known("b"), None);
        budget.set_limit("a", Some(20));
        assert!(budget.check("a", 10, 10).is_ok(), "a limit of its own");
        assert!(budget.check("b", 8, 3).is_err(), "the others keep the default");
        budget.set_limit("a", None);
        assert!(budget.check("a", 10, 1).is_err());
    }
}
