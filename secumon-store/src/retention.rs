//! Per-tenant retention of samples, tier by tier (raw, 5-minute and 1-hour rollups): the
//! [`TierRetention`] a tenant may set in place of the store's [`Retention`] defaults, its
//! validation, where it is kept (a record of the tenant, so every server process sharing a
//! database applies the same policy), and the in-memory view that queries (which tier to
//! read) and retention passes (what to delete, tenant by tenant) work from.
//!
//! A retention pass first deletes, for everyone, what lies past the longest horizon any
//! tenant has (by age, the cheap way: whole partitions, the age indexes); then, for each
//! group of tenants with a shorter horizon, what of theirs lies past it ([`RetentionPlan`]).

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::{DAY_MS, Retention, Store, StoreError};

/// The record kind a tenant's own [`TierRetention`] is kept under (id [`RETENTION_ID`]).
pub const RETENTION_KIND: &str = "retention";
/// The record id of a tenant's own [`TierRetention`].
pub const RETENTION_ID: &str = "tiers";
/// Shortest raw retention a tenant may set: rollups are made from raw samples well within it.
pub const MIN_RAW_RETENTION_MS: i64 = 3_600_000;
/// Longest retention of any tier: past it, durations overflow or mean nothing.
pub const MAX_RETENTION_MS: i64 = 10 * 365 * DAY_MS;

/// How long one tenant's samples are kept in each tier, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierRetention {
    /// Raw samples.
    pub raw_ms: i64,
    /// 5-minute rollups.
    pub rollup_5m_ms: i64,
    /// 1-hour rollups.
    pub rollup_1h_ms: i64,
}

/// Why a [`TierRetention`] was refused: the tier (`raw`, `rollup_5m`, `rollup_1h`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention `{field}` {reason}")]
pub struct RetentionError {
    /// The tier at fault, as the API names it.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl TierRetention {
    /// The tiers' names, as the API spells them, in order from finest to coarsest.
    pub const FIELDS: [&'static str; 3] = ["raw", "rollup_5m", "rollup_1h"];

    /// Checks the policy: raw at least [`MIN_RAW_RETENTION_MS`], every tier at most
    /// [`MAX_RETENTION_MS`], and each rollup tier kept at least as long as the finer one
    /// (a query past the finer tier's horizon is answered from the coarser one).
    pub fn validate(&self) -> Result<(), RetentionError> {
        let tiers = [self.raw_ms, self.rollup_5m_ms, self.rollup_1h_ms];
        if self.raw_ms < MIN_RAW_RETENTION_MS {
            return Err(RetentionError { field: "raw", reason: "must be at least 1 hour".into() });
        }
        for (field, ms) in Self::FIELDS.into_iter().zip(tiers) {
            if ms > MAX_RETENTION_MS {
                return Err(RetentionError { field, reason: "must be at most 10 years".into() });
            }
        }
        for i in 1..tiers.len() {
            if tiers[i] < tiers[i - 1] {
                return Err(RetentionError {
                    field: Self::FIELDS[i],
                    reason: format!("must be at least as long as `{}`", Self::FIELDS[i - 1]),
                });
            }
        }
        Ok(())
    }

    fn tier(&self, tier: SampleTier) -> i64 {
        match tier {
            SampleTier::Raw => self.raw_ms,
            SampleTier::FiveMinutes => self.rollup_5m_ms,
            SampleTier::OneHour => self.rollup_1h_ms,
        }
    }
}

impl Retention {
    /// The sample tiers of these defaults.
    pub fn tiers(&self) -> TierRetention {
        TierRetention { raw_ms: self.raw_ms, rollup_5m_ms: self.rollup_5m_ms, rollup_1h_ms: self.rollup_1h_ms }
    }

    /// These defaults with the sample tiers of `tiers`.
    pub fn with_tiers(self, tiers: TierRetention) -> Retention {
        Retention { raw_ms: tiers.raw_ms, rollup_5m_ms: tiers.rollup_5m_ms, rollup_1h_ms: tiers.rollup_1h_ms, ..self }
    }
}

/// A stored sample tier: what a retention pass deletes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SampleTier {
    Raw,
    FiveMinutes,
    OneHour,
}

impl SampleTier {
    pub(crate) const ALL: [SampleTier; 3] = [SampleTier::Raw, SampleTier::FiveMinutes, SampleTier::OneHour];
}

/// Whose samples a step of a retention pass deletes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Owners {
    /// One tenant with a policy of its own.
    Tenant(String),
    /// Every tenant but these (the ones with policies of their own): the defaults' group.
    AllBut(Vec<String>),
}

/// What a retention pass does for one tier: everyone's samples older than `now - longest`,
/// then each group's older than its own horizon (only groups whose horizon is shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetentionPlan {
    pub longest_ms: i64,
    pub groups: Vec<(Owners, i64)>,
}

/// The store's defaults and every tenant's own policy, as last read from the records.
pub(crate) struct TenantRetentions {
    defaults: Retention,
    own: RwLock<HashMap<String, TierRetention>>,
}

impl TenantRetentions {
    pub(crate) fn new(defaults: Retention) -> Self {
        Self { defaults, own: RwLock::new(HashMap::new()) }
    }

    fn own(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, TierRetention>> {
        self.own.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `tenant`'s retention: the defaults with its own sample tiers, if it has any.
    pub(crate) fn of(&self, tenant: &str) -> Retention {
        match self.own().get(tenant) {
            Some(tiers) => self.defaults.with_tiers(*tiers),
            None => self.defaults,
        }
    }

    /// Sets (or, `None`, forgets) `tenant`'s own policy in memory.
    pub(crate) fn set(&self, tenant: &str, tiers: Option<TierRetention>) {
        let mut own = self.own.write().unwrap_or_else(|p| p.into_inner());
        match tiers {
            Some(tiers) => own.insert(tenant.to_string(), tiers),
            None => own.remove(tenant),
        };
    }

    /// Replaces every tenant's policy with the stored records' `(tenant, body)`. A body that
    /// cannot be read, or holds a policy that no longer validates, is skipped (logged): that
    /// tenant gets the defaults, and the pass goes on for the others.
    pub(crate) fn load(&self, rows: Vec<(String, String)>) {
        let mut own = HashMap::with_capacity(rows.len());
        for (tenant, body) in rows {
            match serde_json::from_str::<TierRetention>(&body).map_err(|e| e.to_string()).and_then(|tiers| {
                tiers.validate().map_err(|e| e.to_string())?;
                Ok(tiers)
            }) {
                Ok(tiers) => {
                    own.insert(tenant, tiers);
                }
                Err(error) => tracing::error!(%tenant, %error, "stored retention unreadable; the defaults apply"),
            }
        }
        *self.own.write().unwrap_or_else(|p| p.into_inner()) = own;
    }

    /// The latest instant before which raw samples of some tenant may already be deleted.
    pub(crate) fn shortest_raw_ms(&self) -> i64 {
        self.own().values().map(|t| t.raw_ms).fold(self.defaults.raw_ms, i64::min)
    }

    /// What a retention pass deletes of `tier`.
    pub(crate) fn plan(&self, tier: SampleTier) -> RetentionPlan {
        let own = self.own();
        let default_ms = self.defaults.tiers().tier(tier);
        // Tenants whose policy keeps this tier as the defaults do belong to the defaults' group.
        let mut apart: Vec<(&String, i64)> =
            own.iter().map(|(t, tiers)| (t, tiers.tier(tier))).filter(|(_, ms)| *ms != default_ms).collect();
        apart.sort();
        let longest_ms = apart.iter().map(|(_, ms)| *ms).fold(default_ms, i64::max);
        let mut groups: Vec<(Owners, i64)> = apart
            .iter()
            .filter(|(_, ms)| *ms < longest_ms)
            .map(|(tenant, ms)| (Owners::Tenant((*tenant).clone()), *ms))
            .collect();
        if default_ms < longest_ms {
            groups.push((Owners::AllBut(apart.iter().map(|(t, _)| (*t).clone()).collect()), default_ms));
        }
        RetentionPlan { longest_ms, groups }
    }
}

/// [`Store::tier_retention`] for a backend: its record, else the defaults; what it read
/// also refreshes the backend's view.
pub(crate) async fn read<S: Store + ?Sized>(
    store: &S,
    retentions: &TenantRetentions,
    tenant: &str,
) -> Result<TierRetention, StoreError> {
    let own = match store.get_record(tenant, RETENTION_KIND, RETENTION_ID).await? {
        Some(body) => Some(serde_json::from_str::<TierRetention>(&body)?),
        None => None,
    };
    retentions.set(tenant, own);
    Ok(own.unwrap_or(retentions.defaults.tiers()))
}

/// [`Store::set_tier_retention`] for a backend.
pub(crate) async fn write<S: Store + ?Sized>(
    store: &S,
    retentions: &TenantRetentions,
    tenant: &str,
    tiers: Option<TierRetention>,
) -> Result<(), StoreError> {
    match tiers {
        Some(tiers) => {
            tiers.validate()?;
            store.put_record(tenant, RETENTION_KIND, RETENTION_ID, &serde_json::to_string(&tiers)?).await?;
        }
        None => {
            store.delete_record(tenant, RETENTION_KIND, RETENTION_ID).await?;
        }
    }
    retentions.set(tenant, tiers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn tiers(raw: i64, m5: i64, h1: i64) -> TierRetention {
        TierRetention { raw_ms: raw * DAY_MS, rollup_5m_ms: m5 * DAY_MS, rollup_1h_ms: h1 * DAY_MS }
    }

    #[test]
    fn validation_names_the_tier_at_fault() {
        assert_eq!(tiers(30, 90, 365).validate(), Ok(()));
        assert_eq!(TierRetention { raw_ms: HOUR, rollup_5m_ms: HOUR, rollup_1h_ms: HOUR }.validate(), Ok(()));
        let field = |t: TierRetention| t.validate().unwrap_err().field;
        assert_eq!(field(TierRetention { raw_ms: HOUR - 1, ..tiers(1, 1, 1) }), "raw");
        assert_eq!(field(tiers(0, 1, 1)), "raw");
        assert_eq!(field(tiers(30, 7, 365)), "rollup_5m");
        assert_eq!(field(tiers(30, 90, 60)), "rollup_1h");
        assert_eq!(field(tiers(30, 90, 3_651)), "rollup_1h");
        assert_eq!(field(tiers(3_651, 3_651, 3_651)), "raw");
    }

    #[test]
    fn plans_delete_past_the_longest_horizon_then_each_shorter_group() {
        let store = TenantRetentions::new(Retention::default());
        assert_eq!(store.plan(SampleTier::Raw), RetentionPlan { longest_ms: 30 * DAY_MS, groups: vec![] });
        store.set("short", Some(tiers(2, 90, 365)));
        store.set("long", Some(tiers(100, 100, 365)));
        store.set("same", Some(tiers(30, 90, 365)));
        let plan = store.plan(SampleTier::Raw);
        assert_eq!(plan.longest_ms, 100 * DAY_MS);
        assert_eq!(
            plan.groups,
            vec![
                (Owners::Tenant("short".into()), 2 * DAY_MS),
                (Owners::AllBut(vec!["long".into(), "short".into()]), 30 * DAY_MS),
            ]
        );
        let plan = store.plan(SampleTier::FiveMinutes);
        assert_eq!(plan.longest_ms, 100 * DAY_MS);
        assert_eq!(plan.groups, vec![(Owners::AllBut(vec!["long".into()]), 90 * DAY_MS)]);
        assert_eq!(store.plan(SampleTier::OneHour), RetentionPlan { longest_ms: 365 * DAY_MS, groups: vec![] });
        assert_eq!(store.shortest_raw_ms(), 2 * DAY_MS);
        assert_eq!(store.of("short").raw_ms, 2 * DAY_MS);
        assert_eq!(store.of("other"), Retention::default());

        store.load(vec![("short".into(), "{\"raw_ms\": 1}".into()), ("x".into(), "not json".into())]);
        assert_eq!(store.plan(SampleTier::Raw), RetentionPlan { longest_ms: 30 * DAY_MS, groups: vec![] });
    }
}
