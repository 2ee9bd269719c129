//! Senders' clocks. Every batch that says when it was sent (agents, probes, `POST
//! /api/v1/ingest` with `sent_at_ms`) gives its sender's clock offset against the server's.
//! Past a tolerance the batch's timestamps are moved by that offset before the store sees
//! them, so a host whose clock is hours off is neither refused (samples "in the future") nor
//! filed hours in the past. The `ClockBook` keeps each sender's latest reading, which
//! `GET /api/v1/agents` and the console show, and writes the series
//! `secumon_agent_clock_offset_seconds` that rules alert on, for refused senders too (a host
//! whose every batch is refused is the one a clock rule must catch).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use secumon_core::{IngestBatch, Labels, Sample};
use secumon_store::Store;

/// The series of each sender's measured clock offset, labelled with its `agent_id`.
pub const OFFSET_SERIES: &str = "secumon_agent_clock_offset_seconds";
/// Record kind of a sender's clock state in the store.
const RECORD_KIND: &str = "agent_clock";
/// The offset series gets a sample at most this often per sender (and on every change of
/// its state), so 10 000 agents pushing every second add 1 000 samples a second, not 10 000.
const SERIES_EVERY_MS: i64 = 10_000;
/// A sender's state is saved when it changes (its offset by more than a second, its
/// correction or refusal starts or ends), and at least this often while it pushes.
const SAVE_EVERY_MS: i64 = 300_000;

/// Default [`ClockPolicy::tolerance`].
pub const DEFAULT_CLOCK_TOLERANCE: Duration = Duration::from_secs(5);

/// When the server re-stamps a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPolicy {
    /// A batch is re-stamped when its sender's offset exceeds this plus the measured round
    /// trip (the measurement's own uncertainty). Smaller offsets are shown but left alone:
    /// samples a few seconds off do no harm, and re-stamping on measurement noise would.
    pub tolerance: Duration,
}

impl Default for ClockPolicy {
    fn default() -> Self {
        Self { tolerance: DEFAULT_CLOCK_TOLERANCE }
    }
}

// What the server knows of one sender's clock: the API's type.
pub use secumon_api::AgentClock;

/// What [`ClockBook::prepare`] found and did, for [`ClockBook::committed`] or
/// [`ClockBook::refused`] to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClockCheck {
    pub offset_ms: Option<i64>,
    pub round_trip_ms: u32,
    /// The server's clock when the batch arrived.
    pub received_ms: i64,
    pub corrected: bool,
}

/// Book-keeping of one sender besides what the API shows.
#[derive(Debug, Default)]
struct Entry {
    clock: AgentClock,
    series_ms: i64,
    saved_ms: i64,
    saved: AgentClock,
}

/// Every sender's clock, by tenant and agent id: kept in memory, saved as store records so
/// a restarted server still lists a sender it only ever refused.
#[derive(Debug, Default)]
pub(crate) struct ClockBook {
    policy: ClockPolicy,
    entries: Mutex<HashMap<(String, String), Entry>>,
    /// Tenants whose saved records have been read.
    loaded: Mutex<HashSet<String>>,
    /// States to save, by (tenant, agent), written by [`ClockBook::flush`] off the ack path:
    /// a batch's acknowledgement never waits for a write of its sender's clock state.
    unsaved: Mutex<HashMap<(String, String), String>>,
}

impl ClockBook {
    pub fn new(policy: ClockPolicy) -> Self {
        Self { policy, ..Default::default() }
    }

    /// Measures `batch`'s sender's clock (received at `received_ms`) and, past the tolerance,
    /// moves its timestamps by the offset; may add a sample of the offset series. Fails, with
    /// the reason, when the batch cannot be corrected.
    pub fn prepare(&self, tenant: &str, batch: &mut IngestBatch, received_ms: i64) -> Result<ClockCheck, String> {
        let Some(reading) = batch.clock else {
            return Ok(ClockCheck { offset_ms: None, round_trip_ms: 0, received_ms, corrected: false });
        };
        let previous = lock(&self.entries)
            .get(&(tenant.to_string(), batch.agent_id.clone()))
            .and_then(|entry| entry.clock.offset_ms);
        let offset_ms = settle_offset(reading.offset_ms(), reading.queued_ms, previous);
        let shift_ms = content_offset(batch, offset_ms, previous, self.policy.tolerance);
        let corrected = needs_correction(shift_ms, reading.round_trip_ms, self.policy.tolerance);
        if corrected {
            batch.shift_timestamps(-shift_ms).map_err(|error| {
                format!("the sender's clock is {shift_ms} ms off and its batch cannot be corrected: {error}")
            })?;
        }
        let check =
            ClockCheck { offset_ms: Some(offset_ms), round_trip_ms: reading.round_trip_ms, received_ms, corrected };
        let due = {
            let entries = lock(&self.entries);
            match entries.get(&(tenant.to_string(), batch.agent_id.clone())) {
                None => true,
                Some(entry) => {
                    received_ms - entry.series_ms >= SERIES_EVERY_MS
                        || entry.clock.corrected != corrected
                        || entry.clock.offset_ms.is_none_or(|o| (o - offset_ms).abs() > tolerance_ms(&self.policy))
                }
            }
        };
        if due {
            let labels = Labels::from([("agent_id".to_string(), batch.agent_id.clone())]);
            batch.samples.push(Sample::new(OFFSET_SERIES, labels, received_ms, offset_ms as f64 / 1000.0));
        }
        Ok(check)
    }

    /// Records that `batch` (prepared by `check`) was stored.
    pub fn committed(&self, tenant: &str, batch: &IngestBatch, check: ClockCheck) {
        let series_sent = batch.samples.last().is_some_and(|s| s.series.name == OFFSET_SERIES);
        self.update(tenant, batch, check, |entry| {
            entry.clock.committed_ms = Some(check.received_ms);
            entry.clock.corrected_batches += u64::from(check.corrected);
            if series_sent {
                entry.series_ms = check.received_ms;
            }
        });
    }

    /// Records that `batch` was refused for `reason`, so its sender is listed with it, and
    /// stores a sample of its offset (at most every [`SERIES_EVERY_MS`]): a host whose every
    /// batch is refused is the one a clock rule must see. Returns the stored batch of that
    /// sample (the server's own: no agent id), for the alert engine.
    pub async fn refused<S: Store + ?Sized>(
        &self,
        store: &S,
        tenant: &str,
        batch: &IngestBatch,
        check: ClockCheck,
        reason: &str,
    ) -> Option<IngestBatch> {
        let reason = if check.offset_ms.is_none() {
            format!("{reason} (the sender does not stamp its send time, so its clock cannot be measured and corrected)")
        } else {
            reason.to_string()
        };
        let offset_ms = check.offset_ms.or_else(|| ahead_at_least(batch, check.received_ms));
        let mut due = false;
        self.update(tenant, batch, check, |entry| {
            entry.clock.refused_batches += 1;
            entry.clock.refused_ms = Some(check.received_ms);
            entry.clock.refused_reason = Some(reason);
            due = offset_ms.is_some() && check.received_ms - entry.series_ms >= SERIES_EVERY_MS;
            if due {
                entry.series_ms = check.received_ms;
            }
        });
        let offset_ms = offset_ms.filter(|_| due)?;
        // Under the sender's host and labels, as its own batches would have put it.
        let labels = Labels::from([("agent_id".to_string(), batch.agent_id.clone())]);
        let own = IngestBatch {
            agent_id: String::new(),
            host: batch.host.clone(),
            agent_labels: batch.agent_labels.clone(),
            created_at_ms: check.received_ms,
            samples: vec![Sample::new(OFFSET_SERIES, labels, check.received_ms, offset_ms as f64 / 1000.0)],
            ..Default::default()
        };
        match store.write_batch(tenant, &own).await {
            Ok(_) => Some(own),
            Err(error) => {
                // Debug, not warn: a sender over the series limit would repeat it every 10 s,
                // and its refusal is logged once per episode already.
                tracing::debug!(%error, agent = %batch.agent_id, "cannot store the refused sender's clock offset");
                None
            }
        }
    }

    fn update(&self, tenant: &str, batch: &IngestBatch, check: ClockCheck, change: impl FnOnce(&mut Entry)) {
        let save = {
            let mut entries = lock(&self.entries);
            let entry = entries.entry((tenant.to_string(), batch.agent_id.clone())).or_default();
            let was = entry.clock.clone();
            entry.clock.host = batch.host.clone();
            entry.clock.measured_ms = check.received_ms;
            entry.clock.corrected = check.corrected;
            entry.clock.round_trip_ms = check.round_trip_ms;
            // A sender without a send time keeps its last measured offset (an old copy
            // of a batch, an HTTP push without `sent_at_ms`).
            if check.offset_ms.is_some() {
                entry.clock.offset_ms = check.offset_ms;
            }
            change(entry);
            log_episode(tenant, &batch.agent_id, &batch.host, &was, &entry.clock);
            let now = &entry.clock;
            let changed = now.host != entry.saved.host
                || now.corrected != entry.saved.corrected
                || now.refusing() != entry.saved.refusing()
                || now.offset_ms.is_some() != entry.saved.offset_ms.is_some()
                || now.offset_ms.zip(entry.saved.offset_ms).is_some_and(|(a, b)| (a - b).abs() > 1_000);
            (changed || check.received_ms - entry.saved_ms >= SAVE_EVERY_MS).then(|| {
                entry.saved_ms = check.received_ms;
                entry.saved = now.clone();
                now.clone()
            })
        };
        if let Some(clock) = save {
            let body = serde_json::to_string(&clock).unwrap_or_default();
            lock(&self.unsaved).insert((tenant.to_string(), batch.agent_id.clone()), body);
        }
    }

    /// Writes the states changed since the last call (the server calls it every second and
    /// when it stops); one that cannot be written is kept for the next call.
    pub async fn flush<S: Store + ?Sized>(&self, store: &S) {
        let unsaved = std::mem::take(&mut *lock(&self.unsaved));
        // One transaction per tenant, not per agent: a fleet's first batches mark thousands.
        let mut by_tenant: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for ((tenant, agent), body) in unsaved {
            by_tenant.entry(tenant).or_default().push((agent, body));
        }
        for (tenant, records) in by_tenant {
            if let Err(error) = store.put_records(&tenant, RECORD_KIND, &records).await {
                tracing::warn!(%error, %tenant, agents = records.len(), "cannot save agents' clock states; trying again");
                // Unless newer states came meanwhile.
                let mut pending = lock(&self.unsaved);
                for (agent, body) in records {
                    pending.entry((tenant.clone(), agent)).or_insert(body);
                }
            }
        }
    }

    /// Every known sender's clock in `tenant`, by agent id.
    pub async fn agents<S: Store + ?Sized>(&self, store: &S, tenant: &str) -> HashMap<String, AgentClock> {
        self.load(store, tenant).await;
        lock(&self.entries)
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, agent), entry)| (agent.clone(), entry.clock.clone()))
            .collect()
    }

    /// Forgets a deleted agent; `true` when it was known.
    pub async fn forget<S: Store + ?Sized>(&self, store: &S, tenant: &str, agent_id: &str) -> bool {
        self.load(store, tenant).await;
        let key = (tenant.to_string(), agent_id.to_string());
        lock(&self.unsaved).remove(&key);
        let known = lock(&self.entries).remove(&key).is_some();
        if let Err(error) = store.delete_record(tenant, RECORD_KIND, agent_id).await {
            tracing::warn!(%error, agent = %agent_id, "cannot delete the agent's clock state");
        }
        known
    }

    /// Reads `tenant`'s saved states once; what this server measured since wins.
    async fn load<S: Store + ?Sized>(&self, store: &S, tenant: &str) {
        if lock(&self.loaded).contains(tenant) {
            return;
        }
        let mut saved = Vec::new();
        let mut after: Option<String> = None;
        loop {
            match store.list_records(tenant, RECORD_KIND, after.as_deref(), 1_000).await {
                Ok(page) if page.is_empty() => break,
                Ok(page) => {
                    after = page.last().map(|r| r.id.clone());
                    saved.extend(page);
                }
                Err(error) => {
                    // Not marked loaded: the next call tries again.
                    tracing::warn!(%error, %tenant, "cannot read the agents' clock states");
                    return;
                }
            }
        }
        let mut entries = lock(&self.entries);
        for record in saved {
            match serde_json::from_str::<AgentClock>(&record.body) {
                Ok(clock) => {
                    entries.entry((tenant.to_string(), record.id)).or_insert_with(|| Entry {
                        saved: clock.clone(),
                        saved_ms: clock.measured_ms,
                        clock,
                        series_ms: 0,
                    });
                }
                Err(error) => tracing::warn!(%error, agent = %record.id, "unreadable clock state; ignored"),
            }
        }
        lock(&self.loaded).insert(tenant.to_string());
    }
}

/// The offset of the clock that stamped `batch`'s contents: the one measured from its send
/// time, unless the contents are later than the send time, which a steady clock cannot do.
/// Then the clock was stepped back between stamping and sending (NTP fixing a clock that was
/// ahead, between a check's run and its send), and the contents belong to the sender's
/// previous offset.
fn content_offset(batch: &IngestBatch, measured_ms: i64, previous_ms: Option<i64>, tolerance: Duration) -> i64 {
    let (Some(reading), Some(previous_ms)) = (batch.clock, previous_ms) else { return measured_ms };
    let tolerance_ms = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX);
    let ahead_of_sending = batch.latest_timestamp_ms().is_some_and(|latest| latest - reading.sent_at_ms > tolerance_ms);
    if ahead_of_sending && (previous_ms - measured_ms).abs() > tolerance_ms { previous_ms } else { measured_ms }
}

/// The offset a batch measured, `measured_ms`, when it may have waited `queued_ms` before it
/// was read: the wait only makes a clock look behind, so the offset lies between `measured_ms`
/// and `measured_ms + queued_ms`. Taken there, nearest the sender's last known offset (or
/// nearest none at all): a right clock whose batches queued behind a store outage is not
/// read as behind by the outage, and a wrong one keeps its known offset.
fn settle_offset(measured_ms: i64, queued_ms: u32, previous_ms: Option<i64>) -> i64 {
    previous_ms.unwrap_or(0).clamp(measured_ms, measured_ms.saturating_add(i64::from(queued_ms)))
}

/// For a sender that does not stamp its send time: the least its clock can be ahead, from
/// its newest timestamp past the server's clock (a clock cannot stamp what has not happened
/// yet). `None` when nothing is in the future: then nothing is known of its clock.
fn ahead_at_least(batch: &IngestBatch, received_ms: i64) -> Option<i64> {
    batch.latest_timestamp_ms().map(|latest| latest.saturating_sub(received_ms)).filter(|ahead| *ahead > 0)
}

/// `true` when an offset is past what the tolerance and the measurement's uncertainty (the
/// round trip) explain.
pub fn needs_correction(offset_ms: i64, round_trip_ms: u32, tolerance: Duration) -> bool {
    let limit = i64::try_from(tolerance.as_millis()).unwrap_or(i64::MAX).saturating_add(i64::from(round_trip_ms));
    offset_ms.unsigned_abs() > limit.unsigned_abs()
}

fn tolerance_ms(policy: &ClockPolicy) -> i64 {
    i64::try_from(policy.tolerance.as_millis()).unwrap_or(i64::MAX)
}

/// Logs the start and end of a sender's correction or refusal episode, not every batch.
fn log_episode(tenant: &str, agent: &str, host: &str, was: &AgentClock, now: &AgentClock) {
    let offset_ms = now.offset_ms.unwrap_or_default();
    if now.corrected && !was.corrected {
        tracing::warn!(%tenant, %agent, %host, offset_ms,
            "the agent's clock is off; its batches are re-stamped by the offset until it is fixed");
    } else if was.corrected && !now.corrected {
        tracing::info!(%tenant, %agent, %host, offset_ms, "the agent's clock is within tolerance again");
    }
    if now.refusing() && !was.refusing() {
        tracing::warn!(%tenant, %agent, %host, reason = now.refused_reason.as_deref().unwrap_or_default(),
            "the agent's batches are refused; it is listed with the reason");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps: consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secumon_core::ClockReading;

    const HOUR: i64 = 3_600_000;

    fn batch(sent_at_ms: Option<i64>, sample_ms: i64, received_ms: i64) -> IngestBatch {
        IngestBatch {
            agent_id: "a1".into(),
            sequence: 1,
            host: "web-1".into(),
            created_at_ms: sample_ms,
            samples: vec![Sample::new("load1", Labels::new(), sample_ms, 1.0)],
            clock: sent_at_ms.map(|sent_at_ms| ClockReading {
                sent_at_ms,
                round_trip_ms: 20,
                received_at_ms: received_ms,
                queued_ms: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_tolerance_grows_with_the_round_trip() {
        let five = Duration::from_secs(5);
        assert!(!needs_correction(3_000, 0, five));
        assert!(!needs_correction(-5_000, 0, five));
        assert!(needs_correction(-5_001, 0, five));
        assert!(!needs_correction(6_000, 2_000, five), "a slow path explains a second more");
        assert!(needs_correction(2 * HOUR, 2_000, five));
    }

    #[test]
    fn a_skewed_batch_is_moved_to_server_time_and_reports_its_offset() {
        let book = ClockBook::default();
        let now = 1_800_000_000_000;
        // Made and sent by a clock 2 h ahead, 10 ms on the way.
        let mut ahead = batch(Some(now + 2 * HOUR - 10), now + 2 * HOUR - 1_000, now);
        let check = book.prepare("t", &mut ahead, now).unwrap();
        assert_eq!(
            check,
            ClockCheck { offset_ms: Some(2 * HOUR), round_trip_ms: 20, received_ms: now, corrected: true }
        );
        assert_eq!(ahead.samples[0].timestamp_ms, now - 1_000, "at the server's time of collection");
        assert_eq!(ahead.created_at_ms, now - 1_000);
        let offset = &ahead.samples[1];
        assert_eq!((offset.series.name.as_str(), offset.timestamp_ms, offset.value), (OFFSET_SERIES, now, 7_200.0));
        assert_eq!(offset.series.labels["agent_id"], "a1");

        // 2 h behind, the same the other way.
        let mut behind = batch(Some(now - 2 * HOUR - 10), now - 2 * HOUR - 1_000, now);
        assert_eq!(book.prepare("t", &mut behind, now).unwrap().offset_ms, Some(-2 * HOUR));
        assert_eq!(behind.samples[0].timestamp_ms, now - 1_000);

        // 3 s ahead: shown, not moved.
        let mut near = batch(Some(now + 2_990), now + 2_000, now);
        let check = book.prepare("t", &mut near, now).unwrap();
        assert_eq!((check.offset_ms, check.corrected), (Some(3_000), false));
        assert_eq!(near.samples[0].timestamp_ms, now + 2_000);

        // No send time: nothing measured, nothing moved, no series.
        let mut old_agent = batch(None, now + 2 * HOUR, now);
        let check = book.prepare("t", &mut old_agent, now).unwrap();
        assert_eq!((check.offset_ms, check.corrected), (None, false));
        assert_eq!(old_agent.samples.len(), 1);
    }

    #[test]
    fn a_batch_stamped_before_a_clock_step_back_takes_the_previous_offset() {
        let book = ClockBook::default();
        let now = 1_800_000_000_000;
        let mut known = Entry::default();
        known.clock.offset_ms = Some(2 * HOUR);
        lock(&book.entries).insert(("t".into(), "a1".into()), known);
        // NTP steps the clock back between a check and its send: sent at the right time,
        // stamped 2 h ahead.
        let mut straddling = batch(Some(now - 10), now + 2 * HOUR - 100, now);
        let check = book.prepare("t", &mut straddling, now).unwrap();
        assert_eq!(
            (check.offset_ms, check.corrected),
            (Some(0), true),
            "the clock now is right; its contents were not"
        );
        assert_eq!(straddling.samples[0].timestamp_ms, now - 100);
        // A batch stamped after the step is left alone.
        let mut after = batch(Some(now - 10), now - 100, now);
        let check = book.prepare("t", &mut after, now).unwrap();
        assert!(!check.corrected);
        assert_eq!(after.samples[0].timestamp_ms, now - 100);
        // Without a previous offset to go by, nothing is guessed (the store refuses it).
        let mut unknown = batch(Some(now - 10), now + 2 * HOUR - 100, now);
        assert!(!ClockBook::default().prepare("t", &mut unknown, now).unwrap().corrected);
    }

    #[test]
    fn a_batch_read_late_behind_an_outage_is_not_taken_for_a_clock_behind() {
        let now = 1_800_000_000_000;
        let queued = |sent_at_ms: i64, queued_ms: u32| {
            let mut batch = batch(Some(sent_at_ms), sent_at_ms - 1_000, now);
            if let Some(clock) = &mut batch.clock {
                clock.queued_ms = queued_ms;
            }
            batch
        };
        // A right clock: its batch was sent 40 s ago and waited 40 s behind the store's
        // outage. Measured alone, it is 40 s behind; the wait explains all of it.
        let book = ClockBook::default();
        let mut late = queued(now - 40_010, 41_000);
        let check = book.prepare("t", &mut late, now).unwrap();
        assert_eq!((check.offset_ms, check.corrected), (Some(0), false));
        assert_eq!(late.samples[0].timestamp_ms, now - 41_010, "left where its agent put it");

        // A clock 2 h behind, its batches queued the same: still moved, by its known offset.
        let mut known = Entry::default();
        known.clock.offset_ms = Some(-2 * HOUR);
        lock(&book.entries).insert(("t".into(), "a1".into()), known);
        let mut behind = queued(now - 2 * HOUR - 40_010, 41_000);
        let check = book.prepare("t", &mut behind, now).unwrap();
        assert_eq!((check.offset_ms, check.corrected), (Some(-2 * HOUR), true));
        assert_eq!(behind.samples[0].timestamp_ms, now - 41_010);

        // A wait cannot make a clock look ahead: 2 h ahead and queued is 2 h ahead.
        let mut ahead = queued(now + 2 * HOUR - 40_010, 41_000);
        let check = ClockBook::default().prepare("t", &mut ahead, now).unwrap();
        assert!(check.corrected);
        assert!((check.offset_ms.unwrap() - 2 * HOUR).abs() <= 41_000, "{:?}", check.offset_ms);
    }

    #[test]
    fn a_batch_that_cannot_be_moved_is_refused_with_the_reason() {
        let book = ClockBook::default();
        let now = 1_800_000_000_000;
        // A clock years ahead whose samples claim 1970: moving them would leave the epoch.
        let mut broken = batch(Some(now + 20_000 * 24 * HOUR), 5, now);
        let reason = book.prepare("t", &mut broken, now).unwrap_err();
        assert!(reason.contains("cannot be corrected"), "{reason}");
    }

    #[test]
    fn refusing_means_refused_after_the_last_commit() {
        let mut clock = AgentClock { refused_ms: Some(10), ..Default::default() };
        assert!(clock.refusing());
        clock.committed_ms = Some(11);
        assert!(!clock.refusing());
        clock.refused_ms = Some(12);
        assert!(clock.refusing());
    }
}
