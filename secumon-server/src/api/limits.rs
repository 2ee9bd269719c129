//! Rate limits: each tenant gets its own budget per endpoint, so one tenant's scripts cannot
//! starve the others, and logins are limited per client address and per account, which slows
//! password guessing (from one address, or spread over many) before the per-account lockout
//! even starts. Token buckets from `governor`; with Redis, GCRA buckets there shared by every
//! API process (`shared_limits`).

use std::net::IpAddr;
use std::num::NonZeroU32;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use crate::shared_limits::{Budget, SharedLimits};
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
    limit: RateLimit,
    endpoints: DefaultKeyedRateLimiter<(String, String)>,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    accounts: DefaultKeyedRateLimiter<String>,
    /// Budgets shared with the other API processes; the limiters above stand in while
    /// Redis cannot be reached (see `shared_limits` for why).
    shared: Option<SharedLimits>,
    /// Whether Redis failed last time, so its outage is logged when it starts and ends.
    shared_down: AtomicBool,
}

/// Keys a keyed limiter holds before the idle ones are dropped: names in login attempts
/// come from outside and must not grow the table without end.
const MAX_TRACKED_KEYS: usize = 10_000;

impl RateLimits {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            endpoints: RateLimiter::keyed(Quota::per_second(limit.per_second).allow_burst(limit.burst)),
            logins: RateLimiter::keyed(Quota::per_minute(limit.logins_per_minute)),
            accounts: RateLimiter::keyed(Quota::per_minute(limit.account_logins_per_minute)),
            shared: None,
            shared_down: AtomicBool::new(false),
        }
    }

    /// Shares the budgets with every API process using the same Redis and prefix.
    #[must_use]
    pub fn shared(mut self, shared: SharedLimits) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The shared verdict: `Some(Ok)` admitted, `Some(Err(wait))` refused, `None` when
    /// there is no Redis or it failed (the process's own limiter decides then).
    async fn spend_shared(&self, bucket: &str, key: &str, budget: Budget) -> Option<Result<(), Duration>> {
        let shared = self.shared.as_ref()?;
        match shared.spend(bucket, key, budget).await {
            Ok(verdict) => {
                if self.shared_down.swap(false, Ordering::Relaxed) {
                    tracing::info!("shared rate limits: Redis answers again");
                }
                Some(verdict.map_or(Ok(()), Err))
            }
            Err(error) => {
                if !self.shared_down.swap(true, Ordering::Relaxed) {
                    tracing::error!(%error, "shared rate limits: Redis fails; this process's own limits apply meanwhile");
                }
                None
            }
        }
    }

    /// Spends one request of `tenant`'s budget for `endpoint` (the route pattern).
    pub async fn request(&self, tenant: &str, endpoint: &str) -> Result<(), ApiError> {
        let budget = Budget {
            period: Duration::from_secs(1),
            per_period: self.limit.per_second.get(),
            burst: self.limit.burst.get(),
        };
        let message = |wait: Duration| {
            refused(format!("too many requests to {endpoint} for this tenant; retry in {} ms", wait.as_millis().max(1)))
        };
        if let Some(verdict) = self.spend_shared("endpoint", &format!("{tenant}:{endpoint}"), budget).await {
            return verdict.map_err(message);
        }
        self.endpoints
            .check_key(&(tenant.to_string(), endpoint.to_string()))
            .map_err(|not_until| message(wait(&not_until)))
    }

    /// Spends one login attempt of `client`'s budget.
    pub async fn login(&self, client: IpAddr) -> Result<(), ApiError> {
        let per_minute = self.limit.logins_per_minute.get();
        let budget = Budget { period: Duration::from_secs(60), per_period: per_minute, burst: per_minute };
        let message = |wait: Duration| {
            refused(format!("too many login attempts from {client}; retry in {} s", wait.as_secs().max(1)))
        };
        if let Some(verdict) = self.spend_shared("login", &client.to_string(), budget).await {
            return verdict.map_err(message);
        }
        self.logins.check_key(&client).map_err(|not_until| message(wait(&not_until)))
    }

    /// Spends one login attempt of `account`'s budget, whatever address it comes from.
    pub async fn account_login(&self, account: &str) -> Result<(), ApiError> {
        let account = account.to_lowercase();
        let per_minute = self.limit.account_logins_per_minute.get();
        let budget = Budget { period: Duration::from_secs(60), per_period: per_minute, burst: per_minute };
        let message = |wait: Duration| {
            refused(format!("too many login attempts for this account; retry in {} s", wait.as_secs().max(1)))
        };
        if let Some(verdict) = self.spend_shared("account", &account, budget).await {
            return verdict.map_err(message);
        }
        if self.accounts.len() > MAX_TRACKED_KEYS {
            self.accounts.retain_recent();
        }
        self.accounts.check_key(&account).map_err(|not_until| message(wait(&not_until)))
    }
}

/// How long until a refused request would pass the process's own limiter.
fn wait<P: governor::clock::Reference>(not_until: &governor::NotUntil<P>) -> Duration
where
    governor::clock::DefaultClock: governor::clock::Clock<Instant = P>,
{
    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()))
}

fn refused(message: String) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, message)
}
