//! Agent configuration managed centrally: the layers an operator sets per tenant and label
//! selector (kept in the store as records), the document each agent should run, and what
//! agents report running or refusing. Ingest asks the book, on every accepted batch,
//! whether the sender's acknowledgement should carry another configuration.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use secumon_api::{AgentConfigLayer, AgentConfigReport, AgentConfigState};
use secumon_core::managed::{merge_into, validate_document, version_of};
use secumon_core::now_ms;
use secumon_core::proto::AgentConfigUpdate;
use secumon_store::{Store, StoreError};
use secumon_transport::ConfigReport;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The store's record kind of the layers; a layer's id is its canonical selector.
const RECORD_KIND: &str = "agent-config";
/// The selector of every agent of a tenant.
pub const DEFAULT_SELECTOR: &str = "default";
/// How long a tenant's layers are used before they are read again: a change made through
/// another server of the same store reaches this one's agents within it.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// A tenant has at most this many layers.
const MAX_LAYERS: usize = 1_000;

/// Why a layer cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum AgentConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("no agent configuration for selector {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `default`, or the labels an agent must all hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector(BTreeMap<String, String>);

impl Selector {
    /// Reads `default` or `label=value[,label=value…]`.
    pub fn parse(text: &str) -> Result<Self, AgentConfigError> {
        let text = text.trim();
        if text == DEFAULT_SELECTOR {
            return Ok(Self(BTreeMap::new()));
        }
        let mut labels = BTreeMap::new();
        for pair in text.split(',') {
            let bad = || {
                AgentConfigError::Invalid(format!(
                    "selector {text:?}: expected `default` or `label=value[,label=value…]`"
                ))
            };
            let (key, value) = pair.split_once('=').ok_or_else(bad)?;
            let (key, value) = (key.trim(), value.trim());
            let label_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
            if key.is_empty() || value.is_empty() || !key.chars().all(label_char) || value.contains(',') {
                return Err(bad());
            }
            if labels.insert(key.to_string(), value.to_string()).is_some() {
                return Err(AgentConfigError::Invalid(format!("selector {text:?} names `{key}` twice")));
            }
        }
        Ok(Self(labels))
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(key, value)| labels.get(key) == Some(value))
    }

    /// Merge order: `default` first, then fewer labels before more, then by text.
    fn merge_key(&self) -> (usize, String) {
        (self.0.len(), self.to_string())
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str(DEFAULT_SELECTOR);
        }
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// A layer as stored (its selector is the record's id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredLayer {
    document: Value,
    updated_ms: i64,
    updated_by: String,
}

struct Layer {
    selector: Selector,
    stored: StoredLayer,
}

impl Layer {
    fn view(&self) -> AgentConfigLayer {
        AgentConfigLayer {
            selector: self.selector.to_string(),
            document: self.stored.document.clone(),
            updated_ms: self.stored.updated_ms,
            updated_by: self.stored.updated_by.clone(),
        }
    }
}

/// What one agent should run: the merged document, its version and the layers in it.
struct Effective {
    version: String,
    document: Value,
    selectors: Vec<String>,
}

/// Each tenant's layers in merge order, and when they were read.
type CachedLayers = HashMap<String, (Instant, Arc<Vec<Layer>>)>;

/// The tenants' layers (cached) and the agents' reports.
pub struct AgentConfigBook {
    store: Arc<dyn Store>,
    tenants: Mutex<CachedLayers>,
    /// Each `(tenant, agent)`'s latest report, kept only when it changes.
    reports: Mutex<HashMap<(String, String), AgentConfigReport>>,
}

impl AgentConfigBook {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, tenants: Mutex::default(), reports: Mutex::default() }
    }

    /// The tenant's layers in merge order.
    pub async fn layers(&self, tenant: &str) -> Result<Vec<AgentConfigLayer>, StoreError> {
        Ok(self.cached_layers(tenant).await?.iter().map(Layer::view).collect())
    }

    /// Sets the layer of `selector` to `document` (checked first); the layer as stored.
    pub async fn put(
        &self,
        tenant: &str,
        selector: &str,
        document: Value,
        by: &str,
    ) -> Result<AgentConfigLayer, AgentConfigError> {
        let selector = Selector::parse(selector)?;
        validate_document(&document, &format!("agent-config {:?}", selector.to_string()))
            .map_err(|error| AgentConfigError::Invalid(error.to_string()))?;
        let layers = self.read_layers(tenant).await?;
        if layers.len() >= MAX_LAYERS && !layers.iter().any(|l| l.selector == selector) {
            return Err(AgentConfigError::Invalid(format!("a tenant has at most {MAX_LAYERS} layers")));
        }
        let stored = StoredLayer { document, updated_ms: now_ms(), updated_by: by.to_string() };
        let body = serde_json::to_string(&stored).map_err(|e| AgentConfigError::Invalid(e.to_string()))?;
        self.store.put_record(tenant, RECORD_KIND, &selector.to_string(), &body).await?;
        self.forget(tenant);
        Ok(Layer { selector, stored }.view())
    }

    /// Removes the layer of `selector`; the layer as it was.
    pub async fn delete(&self, tenant: &str, selector: &str) -> Result<AgentConfigLayer, AgentConfigError> {
        let selector = Selector::parse(selector)?;
        let id = selector.to_string();
        let existing = self.read_layers(tenant).await?.into_iter().find(|l| l.selector == selector);
        let Some(existing) = existing else { return Err(AgentConfigError::NotFound(id)) };
        if !self.store.delete_record(tenant, RECORD_KIND, &id).await? {
            return Err(AgentConfigError::NotFound(id));
        }
        self.forget(tenant);
        Ok(existing.view())
    }

    /// What `agent_id` (with `labels`) should run, and what it last said it runs.
    pub async fn state(
        &self,
        tenant: &str,
        agent_id: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<AgentConfigState, StoreError> {
        let effective = effective(&self.cached_layers(tenant).await?, labels);
        let report = self.report(tenant, agent_id);
        let state = match &report {
            None => "unknown",
            Some(r) if r.running_version == effective.version => "current",
            Some(r) if r.refused_version.as_deref() == Some(effective.version.as_str()) => "refused",
            Some(_) => "pending",
        };
        Ok(AgentConfigState {
            agent_id: agent_id.to_string(),
            version: effective.version,
            document: effective.document,
            selectors: effective.selectors,
            state: state.to_string(),
            report,
        })
    }

    /// The agent's latest report, if it pushed since this server started.
    pub fn report(&self, tenant: &str, agent_id: &str) -> Option<AgentConfigReport> {
        self.lock_reports().get(&(tenant.to_string(), agent_id.to_string())).cloned()
    }

    /// Records what a batch says and answers with the configuration its sender should
    /// switch to, if any. A store failure leaves the sender as it is (logged): its data
    /// matters more than its configuration, which the next batch asks for again.
    pub async fn update_for(&self, tenant: &str, report: &ConfigReport) -> Option<AgentConfigUpdate> {
        self.record(tenant, report);
        let layers = match self.cached_layers(tenant).await {
            Ok(layers) => layers,
            Err(error) => {
                tracing::warn!(%error, tenant, "cannot read the agent configuration; agents keep theirs");
                return None;
            }
        };
        let effective = effective(&layers, &report.labels);
        let refused = !report.refused.is_empty() && effective.version == report.refused;
        if effective.version == report.running || refused {
            return None;
        }
        Some(AgentConfigUpdate { version: effective.version, document_json: effective.document.to_string() })
    }

    fn record(&self, tenant: &str, report: &ConfigReport) {
        let refused = (!report.refused.is_empty()).then(|| report.refused.clone());
        let error = (!report.error.is_empty()).then(|| report.error.clone());
        let mut reports = self.lock_reports();
        let key = (tenant.to_string(), report.agent_id.clone());
        match reports.get_mut(&key) {
            Some(known)
                if known.running_version == report.running
                    && known.refused_version == refused
                    && known.refused_error == error =>
            {
                known.reported_ms = now_ms();
            }
            _ => {
                if let Some(error) = &error {
                    tracing::warn!(tenant, agent = %report.agent_id, version = %report.refused, %error,
                        "an agent refused its managed configuration");
                }
                let report = AgentConfigReport {
                    running_version: report.running.clone(),
                    refused_version: refused,
                    refused_error: error,
                    reported_ms: now_ms(),
                };
                reports.insert(key, report);
            }
        }
    }

    /// Forgets a deleted agent's report.
    pub fn forget_agent(&self, tenant: &str, agent_id: &str) {
        self.lock_reports().remove(&(tenant.to_string(), agent_id.to_string()));
    }

    async fn cached_layers(&self, tenant: &str) -> Result<Arc<Vec<Layer>>, StoreError> {
        if let Some((read, layers)) = self.lock_tenants().get(tenant)
            && read.elapsed() < CACHE_TTL
        {
            return Ok(Arc::clone(layers));
        }
        let layers = Arc::new(self.read_layers(tenant).await?);
        self.lock_tenants().insert(tenant.to_string(), (Instant::now(), Arc::clone(&layers)));
        Ok(layers)
    }

    /// The tenant's layers from the store, in merge order; a record that no longer parses
    /// is skipped (logged) rather than blocking every agent's configuration.
    async fn read_layers(&self, tenant: &str) -> Result<Vec<Layer>, StoreError> {
        let records = self.store.list_records(tenant, RECORD_KIND, None, MAX_LAYERS as u32).await?;
        let mut layers: Vec<Layer> = records
            .into_iter()
            .filter_map(|record| {
                let parsed =
                    Selector::parse(&record.id).ok().zip(serde_json::from_str::<StoredLayer>(&record.body).ok());
                if parsed.is_none() {
                    tracing::error!(tenant, selector = %record.id, "unreadable agent configuration layer; skipped");
                }
                parsed.map(|(selector, stored)| Layer { selector, stored })
            })
            .collect();
        layers.sort_by_key(|layer| layer.selector.merge_key());
        Ok(layers)
    }

    fn forget(&self, tenant: &str) {
        self.lock_tenants().remove(tenant);
    }

    fn lock_tenants(&self) -> MutexGuard<'_, CachedLayers> {
        self.tenants.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_reports(&self) -> MutexGuard<'_, HashMap<(String, String), AgentConfigReport>> {
        self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The layers matching `labels`, merged in order.
fn effective(layers: &[Layer], labels: &BTreeMap<String, String>) -> Effective {
    let mut document = Value::Object(serde_json::Map::new());
    let mut selectors = Vec::new();
    for layer in layers.iter().filter(|layer| layer.selector.matches(labels)) {
        merge_into(&mut document, &layer.stored.document);
        selectors.push(layer.selector.to_string());
    }
    Effective { version: version_of(&document), document, selectors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn layer(selector: &str, document: Value) -> Layer {
        Layer {
            selector: Selector::parse(selector).unwrap(),
            stored: StoredLayer { document, updated_ms: 0, updated_by: "test".into() },
        }
    }

    #[test]
    fn selectors_are_canonical_and_bad_ones_refused() {
        assert_eq!(Selector::parse("role=web, env=prod").unwrap().to_string(), "env=prod,role=web");
        assert_eq!(Selector::parse("default").unwrap().to_string(), "default");
        for bad in ["", "env", "env=", "=prod", "env=prod,env=dev", "en v=prod", "env=prod,,role=web"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matching_layers_merge_from_general_to_specific() {
        let mut layers = vec![
            layer("env=prod,role=web", json!({"metrics": {"interval": "5s"}})),
            layer("env=prod", json!({"metrics": {"interval": "15s", "top_processes": 3}})),
            layer("default", json!({"metrics": {"interval": "60s"}, "logs": {"enabled": true}})),
            layer("role=db", json!({"metrics": {"interval": "1s"}})),
        ];
        layers.sort_by_key(|layer| layer.selector.merge_key());
        let web = effective(&layers, &labels(&[("env", "prod"), ("role", "web")]));
        assert_eq!(web.selectors, ["default", "env=prod", "env=prod,role=web"]);
        assert_eq!(web.document, json!({"metrics": {"interval": "5s", "top_processes": 3}, "logs": {"enabled": true}}));
        let other = effective(&layers, &labels(&[("env", "dev")]));
        assert_eq!(other.selectors, ["default"]);
        assert_ne!(web.version, other.version);
        let nothing = effective(&[], &labels(&[]));
        assert_eq!(nothing.version, "");
    }
}
