//! What one tenant may push: at most so many series (enforced by the store, which knows
//! which series are new: `StoreOptions::max_series_per_tenant`) and so many samples a second
//! (a token bucket per tenant here), so one tenant's flood cannot take the server's memory
//! or its write capacity from the others. Refusals are counted per tenant for `/metrics`.
//!
//! Over the sample rate, a gRPC push ends with `RESOURCE_EXHAUSTED`: the agent keeps the batch in
//! its spool and sends it again after its backoff, so nothing is lost while the burst
//! passes. Over the series limit the batch is rejected in its acknowledgement: sent again
//! it would be refused again until an operator raises the limit, and held back it would
//! stop everything after it in the agent's spool; the agent logs and counts the rejection.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use secumon_store::{Store, StoreError};

/// Where a tenant's own limits are kept: a record of the installation, one per tenant.
const SYSTEM: &str = "_system";
const KIND: &str = "tenant_limits";

// A tenant's own limits, as the API takes and shows them.
pub use secumon_api::TenantLimitSettings;

/// Limits every tenant gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Most series a tenant may hold.
    pub max_series: u64,
    /// Samples a second a tenant may push, in bursts of up to twice that (so a batch larger
    /// than twice this can never pass: keep it well above the largest batch, 5 000 for an
    /// agent).
    pub max_samples_per_second: NonZeroU32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            max_series: secumon_store::DEFAULT_MAX_SERIES_PER_TENANT,
            // A thousand hosts at 200 series every 10 s is 20 000/s: ten times that.
            max_samples_per_second: NonZeroU32::new(200_000).expect("non-zero"),
        }
    }
}

/// Why samples were refused, as the metric's `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    SampleRate,
    SeriesLimit,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::SampleRate => "sample_rate",
            Refusal::SeriesLimit => "series_limit",
        }
    }
}

/// The per-tenant sample budget and the refusal counters.
pub struct IngestGuard {
    samples: DefaultKeyedRateLimiter<String>,
    per_second: NonZeroU32,
    /// Tenants with a rate of their own, each with its bucket.
    own_rates: Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
    /// (tenant, reason) -> (samples, series) refused.
    refused: Mutex<BTreeMap<(String, Refusal), (u64, u64)>>,
}

impl IngestGuard {
    pub fn new(limits: TenantLimits) -> Self {
        let per_second = limits.max_samples_per_second;
        let burst = per_second.saturating_mul(NonZeroU32::new(2).expect("non-zero"));
        Self {
            samples: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            per_second,
            own_rates: Mutex::default(),
            refused: Mutex::default(),
        }
    }

    /// Gives `tenant` a sample rate of its own, or (`None`) the server's again.
    pub fn set_rate(&self, tenant: &str, per_second: Option<NonZeroU32>) {
        let mut rates = self.own_rates.lock().unwrap_or_else(|p| p.into_inner());
        match per_second {
            Some(rate) => {
                let burst = rate.saturating_mul(NonZeroU32::new(2).expect("non-zero"));
                let bucket = Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)));
                rates.insert(tenant.to_string(), (rate, bucket));
            }
            None => {
                rates.remove(tenant);
            }
        }
    }

    /// The limits in force for `tenant`, with `settings` applied (in the store, the guard
    /// and the record that keeps them across restarts).
    pub async fn apply(
        &self,
        store: &dyn Store,
        tenant: &str,
        settings: TenantLimitSettings,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(&settings)?;
        store.put_record(SYSTEM, KIND, tenant, &body).await?;
        self.set_rate(tenant, settings.max_samples_per_second);
        store.set_series_limit(tenant, settings.max_series);
        Ok(())
    }

    /// Applies every tenant's stored settings (at start).
    pub async fn load(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let page = store.list_records(SYSTEM, KIND, after.as_deref(), 500).await?;
            let Some(last) = page.last() else { return Ok(()) };
            after = Some(last.id.clone());
            for record in &page {
                let settings: TenantLimitSettings = serde_json::from_str(&record.body)?;
                self.set_rate(&record.id, settings.max_samples_per_second);
                store.set_series_limit(&record.id, settings.max_series);
            }
        }
    }

    /// `tenant`'s own settings, as stored.
    pub async fn settings(store: &dyn Store, tenant: &str) -> Result<TenantLimitSettings, StoreError> {
        match store.get_record(SYSTEM, KIND, tenant).await? {
            Some(body) => Ok(serde_json::from_str(&body)?),
            None => Ok(TenantLimitSettings::default()),
        }
    }

    /// Spends `samples` of `tenant`'s budget, or says (and counts) why not: the text for
    /// the sender.
    pub fn admit(&self, tenant: &str, samples: usize) -> Result<(), String> {
        let own = self.own_rates.lock().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned();
        let per_second = own.as_ref().map_or(self.per_second, |(rate, _)| *rate);
        let Some(n) = u32::try_from(samples).ok().and_then(NonZeroU32::new) else {
            return if samples == 0 { Ok(()) } else { Err(self.refuse_rate(tenant, samples, per_second, None)) };
        };
        let checked = match &own {
            Some((_, bucket)) => bucket.check_n(n),
            None => self.samples.check_key_n(&tenant.to_string(), n),
        };
        match checked {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                let wait = not_until.wait_time_from(now).as_millis().max(1);
                Err(self.refuse_rate(tenant, samples, per_second, Some(wait)))
            }
            // Larger than the whole bucket: it could never pass.
            Err(_) => Err(self.refuse_rate(tenant, samples, per_second, None)),
        }
    }

    fn refuse_rate(&self, tenant: &str, samples: usize, per_second: NonZeroU32, retry_ms: Option<u128>) -> String {
        self.count(tenant, Refusal::SampleRate, samples as u64, 0);
        match retry_ms {
            Some(ms) => format!(
                "tenant {tenant} is over its ingest limit of {per_second} samples/s; keep the batch and retry in {ms} ms"
            ),
            None => format!(
                "a batch of {samples} samples is more than tenant {tenant}'s limit of {per_second}/s lets through"
            ),
        }
    }

    /// Counts refused samples and series of `tenant`.
    pub fn count(&self, tenant: &str, reason: Refusal, samples: u64, series: u64) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let entry = refused.entry((tenant.to_string(), reason)).or_default();
        entry.0 += samples;
        entry.1 += series;
    }

    /// The refusal counters in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP secumon_ingest_refused_samples_total Samples refused by a tenant limit, by tenant and reason.\n\
             # TYPE secumon_ingest_refused_samples_total counter\n",
        );
        for ((tenant, reason), (samples, _)) in refused.iter() {
            let _ = writeln!(
                out,
                "secumon_ingest_refused_samples_total{{tenant=\"{}\",reason=\"{}\"}} {samples}",
                escape(tenant),
                reason.as_str()
            );
        }
        out.push_str(
            "# HELP secumon_ingest_refused_series_total New series refused by the series limit, by tenant.\n\
             # TYPE secumon_ingest_refused_series_total counter\n",
        );
        for ((tenant, _), (_, series)) in refused.iter().filter(|((_, reason), _)| *reason == Refusal::SeriesLimit) {
            let _ = writeln!(out, "secumon_ingest_refused_series_total{{tenant=\"{}\"}} {series}", escape(tenant));
        }
        out
    }
}

/// A label value as the exposition format wants it (tenant names are plain; this is a wall).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tenant_has_its_own_sample_budget() {
        let guard = IngestGuard::new(TenantLimits {
            max_series: 10,
            max_samples_per_second: NonZeroU32::new(50_000).expect("non-zero"),
        });
        // The bucket holds 100 000 (twice the rate): the first batch passes, the next not.
        assert!(guard.admit("acme", 100_000).is_ok());
        let refused = guard.admit("acme", 10_000).unwrap_err();
        assert!(
            refused.contains("acme") && refused.contains("50000 samples/s") && refused.contains("retry"),
            "{refused}"
        );
        assert!(guard.admit("globex", 100_000).is_ok(), "another tenant is not affected");
        assert!(guard.admit("acme", 0).is_ok());
        let too_big = guard.admit("globex", 1_000_000).unwrap_err();
        assert!(too_big.contains("1000000 samples"), "{too_big}");
        let metrics = guard.render_metrics();
        assert!(
            metrics.contains("secumon_ingest_refused_samples_total{tenant=\"acme\",reason=\"sample_rate\"} 10000"),
            "{metrics}"
        );
        assert!(!metrics.contains("tenant=\"acme\",reason=\"sample_rate\"} 100000"), "{metrics}");
    }
}
