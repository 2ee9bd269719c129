//! Group commit: the batches of many agents that arrive while one transaction commits go
//! into the next transaction together, and each caller gets its answer only after that
//! transaction committed. One fsync then covers a whole group instead of one batch, which
//! is what lets a single writer keep up with thousands of agents (issue #18).
//!
//! No background task: a caller queues its item, then takes a leader's place (one of
//! `lanes`). If a previous leader already answered it, it returns; otherwise it drains the
//! queue (its own item included, oldest first, up to `max_items`), commits that group and
//! answers everyone in it before giving the place up. Under no load a group is one item and
//! costs what a plain write did; under load the group grows with the time a commit takes.
//! The embedded store has one lane (SQLite has one writer); the PostgreSQL store several,
//! so a few groups commit at once on its connection pool. With several lanes a leader may
//! find the queue empty: its item is in a group another leader is committing, and it waits
//! for that answer. A leader that sees idle lanes leaves them a share of the queue.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

struct Entry<T, R> {
    item: T,
    reply: oneshot::Sender<R>,
}

/// A queue of items committed in groups by whichever callers hold the leaders' places.
pub struct GroupCommit<T, R> {
    pending: Mutex<Vec<Entry<T, R>>>,
    leaders: tokio::sync::Semaphore,
    max_items: usize,
}

impl<T, R> GroupCommit<T, R> {
    /// One group commits at a time (a single writer).
    pub fn new(max_items: usize) -> Self {
        Self::with_lanes(max_items, 1)
    }

    /// Up to `lanes` groups commit at once, each of up to `max_items` items.
    pub fn with_lanes(max_items: usize, lanes: usize) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            leaders: tokio::sync::Semaphore::new(lanes.max(1)),
            max_items: max_items.max(1),
        }
    }

    /// Queues `item` and returns its result once the group it went into has been committed
    /// by `commit`, which gets the group oldest first and must return one result per item,
    /// in the same order. `abandoned` is the answer when the caller that led the group was
    /// cancelled before answering (whether that group committed is then unknown, so the
    /// answer must be an error the writer retries on: duplicates are refused on retry).
    pub async fn submit<F, Fut>(&self, item: T, commit: F, abandoned: impl FnOnce() -> R) -> R
    where
        F: Fn(Vec<T>) -> Fut,
        Fut: Future<Output = Vec<R>>,
    {
        let (reply, mut answer) = oneshot::channel();
        self.lock_pending().push(Entry { item, reply });
        loop {
            // The semaphore is never closed.
            let Ok(leader) = self.leaders.acquire().await else { return abandoned() };
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return abandoned(),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let group: Vec<Entry<T, R>> = {
                let mut pending = self.lock_pending();
                // A share for each idle lane too: a burst is committed by every lane at once,
                // not by one while the others wait for new items. With no lane idle (and with
                // one lane) the leader takes everything queued.
                let share = pending.len().div_ceil(self.leaders.available_permits() + 1);
                let take = share.min(self.max_items);
                pending.drain(..take).collect()
            };
            if group.is_empty() {
                // Another lane's leader took our item and is committing it.
                drop(leader);
                return answer.await.unwrap_or_else(|_| abandoned());
            }
            let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) =
                group.into_iter().map(|entry| (entry.item, entry.reply)).unzip();
            let results = commit(items).await;
            debug_assert_eq!(results.len(), replies.len(), "one result per item");
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away meanwhile no longer needs its answer.
                let _ = reply.send(result);
            }
            drop(leader);
            // Our item was in that group unless more than `max_items` were queued before it.
            match answer.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return abandoned(),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Entry<T, R>>> {
        // Pushing to and draining a Vec cannot leave it inconsistent.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_items_share_commits_and_each_gets_its_own_result() {
        let group = Arc::new(GroupCommit::<u32, u32>::new(1_000));
        let commits = Arc::new(AtomicUsize::new(0));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..200u32 {
            let (group, commits) = (Arc::clone(&group), Arc::clone(&commits));
            callers.spawn(async move {
                let answer = group
                    .submit(
                        n,
                        |items: Vec<u32>| {
                            let commits = Arc::clone(&commits);
                            async move {
                                commits.fetch_add(1, Ordering::SeqCst);
                                // A commit that takes time, as an fsync does: callers pile up.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                items.into_iter().map(|i| i * 2).collect()
                            }
                        },
                        || u32::MAX,
                    )
                    .await;
                (n, answer)
            });
        }
        let mut answered = 0;
        while let Some(done) = callers.join_next().await {
            let (n, answer) = done.expect("caller");
            assert_eq!(answer, n * 2, "caller {n} got another item's result");
            answered += 1;
        }
        assert_eq!(answered, 200);
        let commits = commits.load(Ordering::SeqCst);
        assert!(commits < 200, "200 concurrent items took {commits} commits: nothing was grouped");
    }

    #[tokio::test]
    async fn a_group_never_exceeds_its_limit() {
        let group = Arc::new(GroupCommit::<u32, usize>::new(3));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..20u32 {
            let group = Arc::clone(&group);
            callers.spawn(async move {
                group
                    .submit(
                        n,
                        |items: Vec<u32>| async move {
                            tokio::task::yield_now().await;
                            vec![items.len(); items.len()]
                        },
                        || usize::MAX,
                    )
                    .await
            });
        }
        while let Some(done) = callers.join_next().await {
            let size = done.expect("caller");
            assert!((1..=3).contains(&size), "a group of {size}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_lanes_commit_at_once_but_never_more_and_answer_everyone() {
        const LANES: usize = 3;
        let group = Arc::new(GroupCommit::<u32, u32>::with_lanes(8, LANES));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut callers = tokio::task::JoinSet::new();
        for n in 0..300u32 {
            let (group, running, most) = (Arc::clone(&group), Arc::clone(&running), Arc::clone(&most));
            callers.spawn(async move {
                let answer = group
                    .submit(
                        n,
                        |items: Vec<u32>| {
                            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                            async move {
                                assert!(!items.is_empty(), "an empty group was committed");
                                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                running.fetch_sub(1, Ordering::SeqCst);
                                items.into_iter().map(|i| i + 1).collect()
                            }
                        },
                        || u32::MAX,
                    )
                    .await;
                (n, answer)
            });
        }
        while let Some(done) = callers.join_next().await {
            let (n, answer) = done.expect("caller");
            assert_eq!(answer, n + 1, "caller {n} got another item's result");
        }
        let most = most.load(Ordering::SeqCst);
        assert!((2..=LANES).contains(&most), "{most} groups committed at once with {LANES} lanes");
    }
}
