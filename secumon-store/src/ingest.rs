//! What every backend does to a batch before storing it: refuse samples stamped too far in
//! the future, and find series ids without building a series key per sample.

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
/// every lookup and every stored-key allocation.
pub struct SeriesCache<Id> {
    agents: Mutex<HashMap<(String, String), AgentSeries<Id>>>,
}

impl<Id: Copy> Default for SeriesCache<Id> {
    fn default() -> Self {
        Self { agents: Mutex::new(HashMap::new()) }
    }
}

impl<Id: Copy> SeriesCache<Id> {
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
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = agents.get_mut(&(tenant.to_string(), batch.agent_id.clone())) {
            known.ids.extend(resolved);
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

    /// Fills `ids` from the ids resolved for `keys`; returns what the cache should learn.
    pub fn apply<Id: Copy>(self, resolved: &[Id], ids: &mut [Option<Id>]) -> Vec<(SeriesKey, Id)> {
        for (index, slot) in self.pending {
            ids[index] = Some(resolved[slot]);
        }
        self.named.into_iter().zip(resolved.iter().copied()).collect()
    }
}
