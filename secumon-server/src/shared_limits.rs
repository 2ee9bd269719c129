//! Limits shared between API processes through Redis: request budgets (per tenant and
//! endpoint, per login address, per account) and the per-user lock under which user
//! records are read, changed and written (failed-login counts, lockouts, TOTP steps), so
//! several API processes behind one load balancer enforce one budget and one lock, not one
//! each. Budgets are GCRA (the algorithm of the in-process `governor` limiter, so the
//! budgets mean the same), run as one Lua script on Redis's clock: atomic, whatever the
//! processes' clocks say.
//!
//! Redis unreachable while running. Request budgets *fall back to the process's own
//! limiter* (see `api::limits`): neither open (a Redis outage would lift every limit,
//! login guessing included) nor closed (it would take the whole API down with it). The user
//! lock *fails closed*: it guards one-time TOTP codes and the failure count behind the
//! lockout, and a process-local lock would let two processes accept one code; a login that
//! cannot take it is refused until Redis is back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long a Redis call may take before the caller falls back or refuses.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a user lock is held at most (a process that dies holding it frees it then).
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long to wait for a user lock another request holds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// GCRA: `KEYS[1]` holds the theoretical arrival time (µs, Redis clock). ARGV: emission
/// interval and burst tolerance, µs. Returns 0 when admitted, else the µs to wait.
const GCRA: &str = r"
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000000 + tonumber(now[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return tat - now - tolerance
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// Counts a password check in progress for a user if fewer than `ARGV[1]` are; the count
/// lives a minute at most, so one a dead process left behind frees itself.
const BEGIN_ATTEMPT: &str = r"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 60000)
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
";

/// Frees a lock only if it is still ours (it may have expired and been taken since).
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitsError {
    /// Redis refused or failed.
    #[error("redis at {url}: {source}")]
    Redis {
        /// Where (password left out).
        url: String,
        /// What the client said.
        source: redis::RedisError,
    },
    /// Redis did not answer in time.
    #[error("redis at {0} did not answer within {CALL_TIMEOUT:?}")]
    Timeout(String),
    /// Another request held the lock for too long.
    #[error("user {0:?} is being changed by another request; retry in a moment")]
    LockBusy(String),
}

/// A request budget: `per_period` requests each `period`, up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The refill period.
    pub period: Duration,
    /// Requests a period.
    pub per_period: u32,
    /// Requests at once.
    pub burst: u32,
}

/// The Redis connection (cheap to clone) and the key prefix of one installation.
#[derive(Clone)]
pub struct SharedLimits {
    redis: ConnectionManager,
    url: String,
    prefix: String,
    gcra: redis::Script,
    unlock: redis::Script,
    begin_attempt: redis::Script,
}

impl SharedLimits {
    /// Connects to Redis at `url`; every key starts with `prefix` (one per installation,
    /// or per test).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, SharedLimitsError> {
        let shown = redacted(url);
        let error = |source| SharedLimitsError::Redis { url: shown.clone(), source };
        let client = redis::Client::open(url).map_err(error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let redis = ConnectionManager::new_with_config(client, config).await.map_err(error)?;
        Ok(Self {
            redis,
            url: shown,
            prefix: prefix.to_string(),
            gcra: redis::Script::new(GCRA),
            unlock: redis::Script::new(UNLOCK),
            begin_attempt: redis::Script::new(BEGIN_ATTEMPT),
        })
    }

    fn error(&self, source: redis::RedisError) -> SharedLimitsError {
        if source.is_timeout() {
            SharedLimitsError::Timeout(self.url.clone())
        } else {
            SharedLimitsError::Redis { url: self.url.clone(), source }
        }
    }

    /// Spends one request of `key`'s `budget` in `bucket`: `Ok(None)` when admitted,
    /// `Ok(Some(wait))` when refused, with how long until the next one would be.
    pub async fn spend(&self, bucket: &str, key: &str, budget: Budget) -> Result<Option<Duration>, SharedLimitsError> {
        let interval = budget.period.as_micros() as u64 / u64::from(budget.per_period.max(1));
        let tolerance = interval * u64::from(budget.burst.max(1) - 1);
        let key = format!("{}:rate:{bucket}:{key}", self.prefix);
        let mut redis = self.redis.clone();
        let mut invocation = self.gcra.key(key);
        invocation.arg(interval).arg(tolerance);
        let wait_us = tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<u64>(&mut redis))
            .await
            .map_err(|_| SharedLimitsError::Timeout(self.url.clone()))?
            .map_err(|e| self.error(e))?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }

    /// Counts a password check in progress for `user` if fewer than `allowed` are, over
    /// every process; `false` when as many are in progress already.
    pub async fn begin_attempt(&self, user: &str, allowed: u32) -> Result<bool, SharedLimitsError> {
        let mut redis = self.redis.clone();
        let mut invocation = self.begin_attempt.key(format!("{}:attempts:{user}", self.prefix));
        invocation.arg(allowed);
        let begun = tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut redis))
            .await
            .map_err(|_| SharedLimitsError::Timeout(self.url.clone()))?
            .map_err(|e| self.error(e))?;
        Ok(begun == 1)
    }

    /// Uncounts a password check of `user` (in the background: it runs from `Drop`).
    pub fn end_attempt(&self, user: &str) {
        let (mut redis, key) = (self.redis.clone(), format!("{}:attempts:{user}", self.prefix));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut decr = redis::cmd("DECR");
                decr.arg(&key);
                if let Ok(Err(error)) = tokio::time::timeout(CALL_TIMEOUT, decr.query_async::<i64>(&mut redis)).await {
                    tracing::warn!(%error, key, "cannot uncount a login attempt; the count expires by itself");
                }
            });
        }
    }

    /// Takes the lock `name` (waiting up to a few seconds for another holder); it is freed
    /// by [`SharedLock::release`], or after a while by itself if this process dies.
    pub async fn lock(&self, name: &str) -> Result<SharedLock, SharedLimitsError> {
        let key = format!("{}:lock:{name}", self.prefix);
        let token = format!("{}-{}", std::process::id(), random_u64());
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut redis = self.redis.clone();
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(&token).arg("NX").arg("PX").arg(LOCK_TTL.as_millis() as u64);
            let taken: Option<String> = tokio::time::timeout(CALL_TIMEOUT, set.query_async(&mut redis))
                .await
                .map_err(|_| SharedLimitsError::Timeout(self.url.clone()))?
                .map_err(|e| self.error(e))?;
            if taken.is_some() {
                return Ok(SharedLock { limits: self.clone(), key, token, released: false });
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SharedLimitsError::LockBusy(name.to_string()));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// A lock held in Redis; release it with [`SharedLock::release`] (dropping it releases it
/// in the background).
pub struct SharedLock {
    limits: SharedLimits,
    key: String,
    token: String,
    released: bool,
}

impl SharedLock {
    /// Frees the lock if it is still ours.
    pub async fn release(mut self) {
        self.released = true;
        unlock(self.limits.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.token)).await;
    }
}

impl Drop for SharedLock {
    fn drop(&mut self) {
        if !self.released
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(unlock(self.limits.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.token)));
        }
    }
}

async fn unlock(limits: SharedLimits, key: String, token: String) {
    let mut redis = limits.redis.clone();
    let mut invocation = limits.unlock.key(&key);
    invocation.arg(&token);
    match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut redis)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(%error, key, "cannot free a shared lock; it expires by itself"),
        Err(_) => tracing::warn!(key, "freeing a shared lock timed out; it expires by itself"),
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    u64::from_le_bytes(bytes)
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use super::*;
    use crate::api::{RateLimit, RateLimits};

    fn redis_url() -> String {
        std::env::var("SECUMON_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A key prefix no other test or run uses.
    pub(crate) fn unique_prefix(name: &str) -> String {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("test:{name}:{}:{nanos}", std::process::id())
    }

    /// A connection of its own to the test Redis (a process of its own, as it were), or
    /// `None` after failing in strict mode.
    pub(crate) async fn test_redis(prefix: &str) -> Option<SharedLimits> {
        match SharedLimits::connect(&redis_url(), prefix).await {
            Ok(shared) => Some(shared),
            Err(error) => {
                secumon_core::testing::peer_missing(&format!("SECUMON_TEST_REDIS_URL: {error}"));
                None
            }
        }
    }

    fn limit(logins_per_minute: u32) -> RateLimit {
        RateLimit { logins_per_minute: NonZeroU32::new(logins_per_minute).unwrap(), ..RateLimit::default() }
    }

    #[tokio::test]
    async fn two_processes_together_allow_exactly_the_login_budget() {
        let prefix = unique_prefix("budget");
        let (Some(first), Some(second)) = (test_redis(&prefix).await, test_redis(&prefix).await) else { return };
        let processes = [RateLimits::new(limit(20)).shared(first), RateLimits::new(limit(20)).shared(second)];
        let client: IpAddr = [192, 0, 2, 7].into();
        let mut admitted = [0, 0];
        for attempt in 0..60 {
            let which = attempt % 2;
            if processes[which].login(client).await.is_ok() {
                admitted[which] += 1;
            }
        }
        // 20 a minute: the test takes well under the 3 s one more would need.
        assert_eq!(admitted[0] + admitted[1], 20, "{admitted:?}");
        assert!(admitted[0] > 0 && admitted[1] > 0, "both processes spent from it: {admitted:?}");
        // Another address has its own budget.
        assert!(processes[0].login([192, 0, 2, 8].into()).await.is_ok());
        // Without Redis each process has its own: together they would allow twice as much.
        let alone = [RateLimits::new(limit(20)), RateLimits::new(limit(20))];
        let mut admitted_alone = 0;
        for attempt in 0..60 {
            admitted_alone += usize::from(alone[attempt % 2].login(client).await.is_ok());
        }
        assert_eq!(admitted_alone, 40);
    }

    #[tokio::test]
    async fn the_endpoint_budget_refills_at_its_rate_across_processes() {
        let prefix = unique_prefix("endpoint");
        let (Some(first), Some(second)) = (test_redis(&prefix).await, test_redis(&prefix).await) else { return };
        let limit = RateLimit {
            per_second: NonZeroU32::new(10).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
            ..RateLimit::default()
        };
        let processes = [RateLimits::new(limit).shared(first), RateLimits::new(limit).shared(second)];
        let mut admitted = 0;
        for attempt in 0..12 {
            admitted += usize::from(processes[attempt % 2].request("acme", "/api/v1/hosts").await.is_ok());
        }
        assert!((5..=6).contains(&admitted), "the burst, and at most one refill meanwhile: {admitted}");
        let refused = processes[0].request("acme", "/api/v1/hosts").await.unwrap_err();
        assert!(format!("{refused:?}").contains("retry in"), "{refused:?}");
        assert!(processes[1].request("globex", "/api/v1/hosts").await.is_ok(), "another tenant's budget");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(processes[1].request("acme", "/api/v1/hosts").await.is_ok(), "refilled at 10 a second");
    }

    #[tokio::test]
    async fn the_shared_lock_has_one_holder_at_a_time() {
        let prefix = unique_prefix("lock");
        let (Some(first), Some(second)) = (test_redis(&prefix).await, test_redis(&prefix).await) else { return };
        let inside = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for shared in [first.clone(), second.clone(), first, second] {
            let inside = Arc::clone(&inside);
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    let lock = shared.lock("user:ada").await.unwrap();
                    assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0, "two holders at once");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    lock.release().await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    #[tokio::test]
    async fn with_redis_gone_the_budgets_fall_back_to_the_process_and_the_user_lock_refuses() {
        // A Redis of the test's own, to stop while in use (never the shared one).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = match std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return secumon_core::testing::peer_missing(&format!("redis-server: {error}")),
        };
        let url = format!("redis://127.0.0.1:{port}");
        let mut shared = None;
        for _ in 0..100 {
            if let Ok(connected) = SharedLimits::connect(&url, "fallback").await {
                shared = Some(connected);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let shared = shared.expect("the test's redis-server started");
        let limits = RateLimits::new(limit(3)).shared(shared.clone());
        let client: IpAddr = [192, 0, 2, 9].into();
        assert!(limits.login(client).await.is_ok());
        redis.kill().unwrap();
        redis.wait().unwrap();
        // The process's own limiter: 3 a minute, from now.
        let started = std::time::Instant::now();
        let mut admitted = 0;
        for _ in 0..6 {
            admitted += usize::from(limits.login(client).await.is_ok());
        }
        assert_eq!(admitted, 3, "the process's own budget applies while Redis is gone");
        assert!(started.elapsed() < Duration::from_secs(5), "no request waits long on a dead Redis");
        assert!(matches!(
            shared.lock("user:ada").await,
            Err(SharedLimitsError::Redis { .. } | SharedLimitsError::Timeout(_))
        ));
    }
}
