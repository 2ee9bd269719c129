//! The pushing side of clock-skew detection. The client stamps each batch's send time as it
//! goes on the wire (at every resend, not at collection), and learns from the server's
//! receive and acknowledgement times in each [`PushAck`] (NTP-style) the network round trip,
//! which it sends with the next batch, and how far its own clock is off, which it logs once
//! per episode rather than once per batch.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use secumon_core::now_ms;
use secumon_core::proto::{Batch, PushAck};

/// Batches whose enqueue time is remembered; older ones (a long outage's spool, or a
/// previous run's) are stamped with the wall clock alone. 4096 entries are ~130 KB.
const MAX_ENQUEUED: usize = 4096;
/// Batches on the wire at once stay far below this (the in-flight window); past it, entries
/// of streams that died without acks are forgotten.
const MAX_IN_FLIGHT: usize = 1024;
/// An offset beyond this (plus the round trip) starts a skew episode in the log...
const SKEW_MS: i64 = 2_000;
/// ...and one back under this ends it, so an offset wavering at the limit logs nothing new.
const AGREE_MS: i64 = 1_000;

/// Send-time stamps, round trips and the clock offset they measure.
#[derive(Default)]
pub(crate) struct SendClock {
    /// `(sequence, monotonic, wall clock)` when each batch was enqueued, oldest first.
    enqueued: Mutex<VecDeque<(u64, Instant, i64)>>,
    /// `sequence -> (monotonic, wall clock)` when it was last put on the wire.
    in_flight: Mutex<HashMap<u64, (Instant, i64)>>,
    round_trip_ms: AtomicU32,
    /// The latest measured offset of this machine's clock against the server's.
    offset_ms: AtomicI64,
    episode: Mutex<SkewEpisode>,
}

impl SendClock {
    /// Now, by both clocks: taken as a batch is handed over, for [`SendClock::enqueued`].
    pub(crate) fn frame(&self) -> Frame {
        Frame { at: Instant::now(), wall_ms: now_ms() }
    }

    /// Remembers that `sequence` was handed over at `frame`.
    pub(crate) fn enqueued(&self, sequence: u64, frame: Frame) {
        let mut enqueued = lock(&self.enqueued);
        if enqueued.len() >= MAX_ENQUEUED {
            enqueued.pop_front();
        }
        enqueued.push_back((sequence, frame.at, frame.wall_ms));
    }

    /// Stamps `batch` as it goes on the wire: its send time and the latest round trip.
    ///
    /// The send time is read in the frame of the wall clock that stamped the batch's
    /// contents: the wall clock at enqueue plus the monotonic time since. So a batch made
    /// while the clock was 2 h ahead and sent just after NTP fixed it still says "2 h ahead",
    /// which is what the server must correct its samples by. Without a remembered enqueue
    /// (the spool of a previous run) it is the wall clock now.
    pub(crate) fn stamp(&self, batch: &mut Batch) {
        let (now, wall) = (Instant::now(), now_ms());
        let frame = {
            let enqueued = lock(&self.enqueued);
            enqueued
                .binary_search_by_key(&batch.sequence, |(sequence, _, _)| *sequence)
                .ok()
                .map(|i| (enqueued[i].1, enqueued[i].2))
        };
        batch.sent_at_ms = match frame {
            Some((then, then_wall)) => then_wall.saturating_add(millis(now.duration_since(then))),
            None => wall,
        };
        batch.round_trip_ms = self.round_trip_ms.load(Ordering::Relaxed);
        let mut in_flight = lock(&self.in_flight);
        if in_flight.len() >= MAX_IN_FLIGHT {
            in_flight.clear();
        }
        in_flight.insert(batch.sequence, (now, wall));
    }

    /// Learns the round trip and the clock offset from an acknowledgement, and logs the
    /// start and the end of a skew episode.
    pub(crate) fn acked(&self, ack: &PushAck) {
        {
            let mut enqueued = lock(&self.enqueued);
            while enqueued.front().is_some_and(|(sequence, _, _)| *sequence <= ack.sequence) {
                enqueued.pop_front();
            }
        }
        let Some((sent, sent_wall)) = lock(&self.in_flight).remove(&ack.sequence) else { return };
        // Servers before the clock fields leave them 0: nothing to learn.
        if ack.received_at_ms == 0 || ack.acked_at_ms == 0 {
            return;
        }
        let measured = Measurement::new(sent_wall, millis(sent.elapsed()), ack.received_at_ms, ack.acked_at_ms);
        self.round_trip_ms.store(u32::try_from(measured.round_trip_ms).unwrap_or(u32::MAX), Ordering::Relaxed);
        self.offset_ms.store(measured.offset_ms, Ordering::Relaxed);
        let notice = lock(&self.episode).observe(measured.offset_ms, measured.round_trip_ms);
        match notice {
            Some(Notice::Skewed(offset_ms)) => tracing::warn!(
                offset_ms,
                round_trip_ms = measured.round_trip_ms,
                "this machine's clock is {} the server's; the server corrects the timestamps \
                 of what it receives when the offset is past its tolerance; check NTP here",
                describe(offset_ms)
            ),
            Some(Notice::Agrees(offset_ms)) => {
                tracing::info!(offset_ms, "this machine's clock agrees with the server's again")
            }
            None => {}
        }
    }

    /// The latest measured offset of this machine's clock against the server's, in ms
    /// (positive: ahead); 0 before the first acknowledgement.
    #[cfg(test)]
    fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}

/// A moment by the monotonic and the wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    at: Instant,
    wall_ms: i64,
}

/// One push→ack exchange, NTP-style: `sent` and `sent + elapsed` by this machine's clock,
/// `received` and `acked` by the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Measurement {
    /// The network's share of the exchange: the server's time spent storing is left out.
    round_trip_ms: i64,
    /// This machine's clock minus the server's.
    offset_ms: i64,
}

impl Measurement {
    fn new(sent_ms: i64, elapsed_ms: i64, received_ms: i64, acked_ms: i64) -> Self {
        let held_ms = (acked_ms - received_ms).max(0);
        let round_trip_ms = (elapsed_ms - held_ms).max(0);
        // Read back at `sent + elapsed` by the monotonic clock, so a clock step between
        // sending and the ack does not distort the measurement.
        let back_ms = sent_ms + elapsed_ms;
        let offset_ms = ((sent_ms - received_ms) + (back_ms - acked_ms)) / 2;
        Self { round_trip_ms, offset_ms }
    }
}

/// Whether the clock is in a skew episode.
#[derive(Debug, Default)]
struct SkewEpisode {
    skewed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notice {
    /// An episode starts, with the offset measured.
    Skewed(i64),
    /// It ends.
    Agrees(i64),
}

impl SkewEpisode {
    fn observe(&mut self, offset_ms: i64, round_trip_ms: i64) -> Option<Notice> {
        // The measurement's error is at most half the round trip.
        let off = offset_ms.abs() - round_trip_ms / 2;
        if !self.skewed && off > SKEW_MS {
            self.skewed = true;
            return Some(Notice::Skewed(offset_ms));
        }
        if self.skewed && off < AGREE_MS {
            self.skewed = false;
            return Some(Notice::Agrees(offset_ms));
        }
        None
    }
}

/// `2h 0m 3.2s ahead of` / `4.0s behind`.
fn describe(offset_ms: i64) -> String {
    let direction = if offset_ms >= 0 { "ahead of" } else { "behind" };
    // In tenths of a second first, so 7 199 999 ms reads 2h 0m 0.0s, not 1h 59m 60.0s.
    let tenths = (offset_ms.unsigned_abs() + 50) / 100;
    let (hours, minutes, seconds) = (tenths / 36_000, tenths / 600 % 60, (tenths % 600) as f64 / 10.0);
    let amount = match (hours, minutes) {
        (0, 0) => format!("{seconds:.1}s"),
        (0, _) => format!("{minutes}m {seconds:.1}s"),
        _ => format!("{hours}h {minutes}m {seconds:.1}s"),
    };
    format!("{amount} {direction}")
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_offset_and_round_trip_without_the_servers_storage_time() {
        // Sent at 1 000 by a clock 2 h ahead; 10 ms out, 300 ms storing, 10 ms back.
        let ahead = 7_200_000;
        let m = Measurement::new(1_000 + ahead, 320, 1_010, 1_310);
        assert_eq!(m, Measurement { round_trip_ms: 20, offset_ms: ahead });
        // 2 h behind, an asymmetric path (30 ms out, 10 back): off by half the asymmetry.
        let m = Measurement::new(1_000 - ahead, 40, 1_030, 1_030);
        assert_eq!(m, Measurement { round_trip_ms: 40, offset_ms: -ahead - 10 });
    }

    #[test]
    fn a_skew_episode_is_noticed_once_and_its_end_once() {
        let mut episode = SkewEpisode::default();
        assert_eq!(episode.observe(300, 10), None);
        assert_eq!(episode.observe(7_200_000, 10), Some(Notice::Skewed(7_200_000)));
        for _ in 0..100 {
            assert_eq!(episode.observe(7_200_000, 10), None, "not once per batch");
        }
        // Wavering between the two limits changes nothing.
        assert_eq!(episode.observe(1_500, 10), None);
        assert_eq!(episode.observe(200, 10), Some(Notice::Agrees(200)));
        assert_eq!(episode.observe(1_500, 10), None);
        assert_eq!(episode.observe(-7_200_000, 10), Some(Notice::Skewed(-7_200_000)));
        // A slow path widens the margin: 3 s with a 4 s round trip may be the path.
        let mut slow = SkewEpisode::default();
        assert_eq!(slow.observe(3_000, 4_000), None);
    }

    #[test]
    fn send_time_is_read_in_the_frame_of_the_enqueue_and_acks_feed_the_next_batch() {
        let clock = SendClock::default();
        // Enqueued "2 h ago by the wall clock": as if the clock was stepped back since.
        let ahead = 7_200_000;
        let mut frame = clock.frame();
        frame.wall_ms += ahead;
        clock.enqueued(5, frame);
        let mut batch = Batch { sequence: 5, ..Default::default() };
        clock.stamp(&mut batch);
        assert!((batch.sent_at_ms - (now_ms() + ahead)).abs() < 1_000, "{}", batch.sent_at_ms - now_ms());
        assert_eq!(batch.round_trip_ms, 0);

        // A batch of a previous run: the wall clock now.
        let mut old = Batch { sequence: 2, ..Default::default() };
        clock.stamp(&mut old);
        assert!((old.sent_at_ms - now_ms()).abs() < 1_000);

        // The server saw batch 5 arrive 3 s behind our clock and held it 5 ms.
        let received = now_ms() - 3_000;
        clock.acked(&PushAck {
            sequence: 5,
            status: 1,
            error: String::new(),
            received_at_ms: received,
            acked_at_ms: received + 5,
            config: None,
        });
        assert!((clock.offset_ms() - 3_000).abs() < 100, "{}", clock.offset_ms());
        assert!(lock(&clock.enqueued).is_empty(), "acked entries are forgotten");
        let mut next = Batch { sequence: 6, ..Default::default() };
        clock.stamp(&mut next);
        assert!(next.round_trip_ms < 100, "{}", next.round_trip_ms);
    }

    #[test]
    fn describes_offsets_for_people() {
        assert_eq!(describe(7_203_200), "2h 0m 3.2s ahead of");
        assert_eq!(describe(-4_000), "4.0s behind");
        assert_eq!(describe(-61_500), "1m 1.5s behind");
        assert_eq!(describe(7_199_999), "2h 0m 0.0s ahead of");
        assert_eq!(describe(59_960), "1m 0.0s ahead of");
    }
}
