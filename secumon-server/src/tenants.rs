//! One alert engine per tenant, started when the tenant is first seen: a tenant's rules,
//! alerts, silences and history never mix with another's. The rule file's rules and
//! channels apply to every tenant; rules made through the API belong to their tenant.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use secumon_alert::RuleFile;
use secumon_store::Store;

use crate::ServerError;
use crate::alerting::Alerting;
use crate::live::LiveFeed;

pub(crate) struct AlertingByTenant {
    rules: RuleFile,
    store: Arc<dyn Store>,
    live: LiveFeed,
    engines: RwLock<HashMap<String, Arc<Alerting>>>,
    /// Serialises starts, so a tenant's engine is started once.
    starting: tokio::sync::Mutex<()>,
}

impl AlertingByTenant {
    pub fn new(rules: RuleFile, store: Arc<dyn Store>, live: LiveFeed) -> Self {
        Self { rules, store, live, engines: RwLock::default(), starting: tokio::sync::Mutex::new(()) }
    }

    /// The engine of `tenant`, started (with its saved state) on first use.
    pub async fn get(&self, tenant: &str) -> Result<Arc<Alerting>, ServerError> {
        if let Some(engine) = self.running(tenant) {
            return Ok(engine);
        }
        let _one_at_a_time = self.starting.lock().await;
        if let Some(engine) = self.running(tenant) {
            return Ok(engine);
        }
        let engine = Alerting::start(self.rules.clone(), Arc::clone(&self.store), tenant, self.live.clone()).await?;
        self.engines.write().unwrap_or_else(|p| p.into_inner()).insert(tenant.to_string(), Arc::clone(&engine));
        Ok(engine)
    }

    /// The engine of `tenant` if it is running.
    pub fn running(&self, tenant: &str) -> Option<Arc<Alerting>> {
        self.engines.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned()
    }

    /// Every running engine.
    pub fn all(&self) -> Vec<Arc<Alerting>> {
        self.engines.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}
