//! Runs checks on their intervals: each check first runs soon after start, at a random point
//! of the first few seconds (so a hundred checks do not fire together, yet a 6-hour TLS check
//! does not leave its target unwatched for 6 hours), then every interval give or take
//! `jitter`; at most `concurrency` run at once across all checks; each run is bounded by
//! its timeout, so a hanging target never stalls the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secumon_core::CheckResult;
use tokio::sync::{Semaphore, mpsc};

use crate::check::{Check, run_check};

/// A check and how often, and for how long at most, it runs.
#[derive(Clone)]
pub struct ScheduledCheck {
    /// The check.
    pub check: Arc<dyn Check>,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take before it is `unknown`.
    pub timeout: Duration,
}

impl std::fmt::Debug for ScheduledCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {} every {:?}", self.check.kind(), self.check.id(), self.check.target(), self.interval)
    }
}

/// Runs [`ScheduledCheck`]s and sends every result to a channel.
pub struct Scheduler {
    checks: Vec<ScheduledCheck>,
    concurrency: usize,
    /// Fraction of the interval each run may move by, either way (0.1: ±10 %).
    jitter: f64,
    /// First runs are spread over this much time after start (or over the interval, when
    /// that is shorter).
    first_run_spread: Duration,
}

/// How long after start the first runs are spread over, by default.
pub const FIRST_RUN_SPREAD: Duration = Duration::from_secs(10);

impl Scheduler {
    /// A scheduler of `checks`: 32 at once, ±10 % jitter.
    pub fn new(checks: Vec<ScheduledCheck>) -> Self {
        Self { checks, concurrency: 32, jitter: 0.1, first_run_spread: FIRST_RUN_SPREAD }
    }

    /// Checks running at once, at most (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How far each run may move, as a fraction of the interval (0 to 0.5).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 0.5);
        self
    }

    /// Spreads the first runs over this much time after start (capped by each interval).
    pub fn first_run_spread(mut self, spread: Duration) -> Self {
        self.first_run_spread = spread;
        self
    }

    /// Runs until `shutdown` completes or `results` is closed.
    pub async fn run(self, results: mpsc::Sender<CheckResult>, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for scheduled in self.checks {
            let (permits, results, jitter) = (Arc::clone(&permits), results.clone(), self.jitter);
            let spread = self.first_run_spread.min(scheduled.interval);
            tasks.spawn(async move {
                tokio::time::sleep(spread.mul_f64(fastrand::f64())).await;
                loop {
                    let started = tokio::time::Instant::now();
                    let result = {
                        let Ok(_permit) = permits.acquire().await else { return };
                        run_check(scheduled.check.as_ref(), scheduled.timeout).await
                    };
                    if results.send(result).await.is_err() {
                        return;
                    }
                    let spread = 1.0 + jitter * (2.0 * fastrand::f64() - 1.0);
                    tokio::time::sleep_until(started + scheduled.interval.mul_f64(spread)).await;
                }
            });
        }
        drop(results);
        shutdown.await;
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use secumon_core::CheckStatus;

    use super::*;
    use crate::check::{CheckError, Outcome};

    /// Sleeps `delay` per run and counts how many run at once.
    struct Slow {
        id: String,
        delay: Duration,
        running: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Check for Slow {
        fn id(&self) -> &str {
            &self.id
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn target(&self) -> String {
            self.id.clone()
        }
        async fn execute(&self) -> Result<Outcome, CheckError> {
            // Counted out on drop too: a timed-out run is cancelled mid-sleep.
            struct Running<'a>(&'a AtomicUsize);
            impl Drop for Running<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            let _running = Running(&self.running);
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            Ok(Outcome::new(CheckStatus::Ok, serde_json::Value::Null))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn intervals_concurrency_and_timeouts() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let check = |id: &str, delay_ms: u64, timeout_ms: u64| ScheduledCheck {
            check: Arc::new(Slow {
                id: id.into(),
                delay: Duration::from_millis(delay_ms),
                running: Arc::clone(&running),
                most: Arc::clone(&most),
            }),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(timeout_ms),
        };
        let mut checks: Vec<ScheduledCheck> = (0..6).map(|i| check(&format!("fast-{i}"), 100, 500)).collect();
        checks.push(check("hung", 3_600_000, 500));
        let (sender, mut receiver) = mpsc::channel(1_000);
        let scheduler = Scheduler::new(checks).concurrency(2);
        let run = tokio::spawn(scheduler.run(sender, tokio::time::sleep(Duration::from_secs(10))));
        let mut results = Vec::new();
        while let Some(result) = receiver.recv().await {
            results.push(result);
        }
        run.await.unwrap();
        assert!(most.load(Ordering::SeqCst) <= 2, "never more than the limit at once");
        let hung: Vec<_> = results.iter().filter(|r| r.check_id == "hung").collect();
        assert!(hung.len() >= 8, "the hung check times out every interval: {}", hung.len());
        assert!(hung.iter().all(|r| r.status == CheckStatus::Unknown && r.details["error"].as_str().unwrap().contains("timed out")));
        let fast = results.iter().filter(|r| r.check_id == "fast-0").count();
        assert!((8..=11).contains(&fast), "about one run per second for 10 s: {fast}");
    }

    #[tokio::test(start_paused = true)]
    async fn long_interval_checks_first_run_within_seconds_of_start() {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let checks: Vec<ScheduledCheck> = (0..20)
            .map(|i| ScheduledCheck {
                check: Arc::new(Slow {
                    id: format!("tls-{i}"),
                    delay: Duration::from_millis(5),
                    running: Arc::clone(&running),
                    most: Arc::clone(&most),
                }),
                interval: Duration::from_secs(6 * 3_600),
                timeout: Duration::from_secs(5),
            })
            .collect();
        let (sender, mut receiver) = mpsc::channel(100);
        let start = tokio::time::Instant::now();
        // Stops a minute in: a first run that waited for a share of its 6 h interval misses it.
        let run = tokio::spawn(Scheduler::new(checks).run(sender, tokio::time::sleep(Duration::from_secs(60))));
        let mut first_runs = Vec::new();
        while let Some(result) = receiver.recv().await {
            first_runs.push((result.check_id, start.elapsed()));
        }
        run.await.unwrap();
        assert_eq!(first_runs.len(), 20, "each check ran once, soon after start: {first_runs:?}");
        let latest = first_runs.iter().map(|(_, at)| *at).max().unwrap();
        assert!(latest <= FIRST_RUN_SPREAD + Duration::from_secs(1), "last first run at {latest:?}");
        let earliest = first_runs.iter().map(|(_, at)| *at).min().unwrap();
        assert!(latest > earliest, "first runs are spread, not all at once");
    }
}
