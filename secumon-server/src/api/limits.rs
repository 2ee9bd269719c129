//! Rate limits: each tenant gets its own budget per endpoint, so one tenant's scripts cannot
//! starve the others, and logins are limited per client address and per account, which slows
//! password guessing (from one address, or spread over many) before the per-account lockout
//! even starts. Token buckets from `governor`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use secumon_api::ErrorCode;

/// Request budgets; a bucket refills at its rate and holds `burst` requests.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Requests a second per tenant and endpoint.
    pub per_second: NonZeroU32,
    /// Requests a bucket holds: how many may come at once before `per_second` paces them.
    pub burst: NonZeroU32,
    /// Login, MFA and refresh attempts a minute per client address.
    pub logins_per_minute: NonZeroU32,
    /// Login attempts a minute per account, from all addresses together.
    pub account_logins_per_minute: NonZeroU32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: NonZeroU32::new(500).expect("non-zero"),
            burst: NonZeroU32::new(1000).expect("non-zero"),
            logins_per_minute: NonZeroU32::new(20).expect("non-zero"),
            account_logins_per_minute: NonZeroU32::new(10).expect("non-zero"),
        }
    }
}

pub(crate) struct RateLimits {
    endpoints: DefaultKeyedRateLimiter<(String, String)>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    accounts: DefaultKeyedRateLimiter<String>,
}

/// Keys a keyed limiter holds before the idle ones are dropped: names in login attempts
/// come from outside and must not grow the table without end.
const MAX_TRACKED_KEYS: usize = 10_000;

impl RateLimits {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            endpoints: RateLimiter::keyed(Quota::per_second(limit.per_second).allow_burst(limit.burst)),
            logins: RateLimiter::keyed(Quota::per_minute(limit.logins_per_minute)),
            accounts: RateLimiter::keyed(Quota::per_minute(limit.account_logins_per_minute)),
        }
    }

    /// Spends one request of `tenant`'s budget for `endpoint` (the route pattern).
    pub fn request(&self, tenant: &str, endpoint: &str) -> Result<(), ApiError> {
        self.endpoints.check_key(&(tenant.to_string(), endpoint.to_string())).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            refused(format!("too many requests to {endpoint} for this tenant; retry in {} ms", wait.as_millis().max(1)))
        })
    }

    /// Spends one login attempt of `client`'s budget.
    pub fn login(&self, client: IpAddr) -> Result<(), ApiError> {
        self.logins.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            refused(format!("too many login attempts from {client}; retry in {} s", wait.as_secs().max(1)))
        })
    }

    /// Spends one login attempt of `account`'s budget, whatever address it comes from.
    pub fn account_login(&self, account: &str) -> Result<(), ApiError> {
        if self.accounts.len() > MAX_TRACKED_KEYS {
            self.accounts.retain_recent();
        }
        self.accounts.check_key(&account.to_lowercase()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            refused(format!("too many login attempts for this account; retry in {} s", wait.as_secs().max(1)))
        })
    }
}

fn refused(message: String) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, message)
}
