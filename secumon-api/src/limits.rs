//! A tenant's own ingest limits (`GET|PUT /api/v1/tenants/{name}/limits`, super-admins
//! only): series and samples a second, in place of the server's defaults.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

/// A tenant's own limits (a super-admin's setting); what is absent takes the server's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantLimitSettings {
    /// Most series the tenant may hold.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub max_series: Option<u64>,
    /// Samples a second the tenant may push (bursts of twice that).
    #[cfg_attr(feature = "schema", schema(value_type = Option<u32>, minimum = 1))]
    pub max_samples_per_second: Option<NonZeroU32>,
}

/// A tenant's own settings and the limits in force for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct TenantLimitsView {
    /// The tenant's name.
    pub tenant: String,
    /// What the tenant has of its own (absent: the server's).
    pub settings: TenantLimitSettings,
    /// The most series the tenant may hold, in force now (its own setting or the server's).
    pub max_series: u64,
    /// The samples a second it may push, in force now (bursts of twice that).
    pub max_samples_per_second: u32,
}
