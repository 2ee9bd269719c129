//! The agent's disk spool: every batch is appended here, checksummed and synced, before it
//! is sent, and stays until the server acknowledges it.
//!
//! On disk, a directory holds segment files named by their first sequence
//! (`00000000000000000042.seg`) and a `state` file. A segment is a run of records:
//! `magic u32 | payload length u32 | crc32 u32 | sequence u64 | payload`, little endian,
//! the CRC covering sequence and payload. `state` holds the highest acknowledged sequence,
//! a *reservation* (no sequence above it was ever handed out) and when it was written. Sequence numbers are
//! never reused, even after every segment was deleted: a reused sequence would make the
//! server drop new data as a duplicate.
//!
//! Opening scans every segment. A record cut short at the end of a segment (the agent was
//! killed mid-append) is cut off the file; a damaged record elsewhere is skipped, counted,
//! and scanning resynchronises on the next valid record.
//!
//! The spool's own disk may fill up or turn read-only. Then [`Spool::append`] fails (and
//! the caller keeps the batch elsewhere, see [`crate::outbox`]), while acknowledgements
//! still count: progress is kept in memory and written, with deletions that failed, as soon
//! as a write succeeds again ([`Spool::retry`]). Sequences keep being handed out from the
//! reservation, which is renewed long before it runs out, so an agent restarted on a full
//! disk still starts above every number it used (see [`RESERVE_AHEAD`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x5350_4c31; // "SPL1"
const HEADER_LEN: usize = 20;
/// No batch is this large; a length field above it is damage, not a record.
pub(crate) const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

/// How far ahead of the last handed-out sequence the `state` file reserves numbers.
///
/// While the disk cannot be written, sequences come out of this reservation without being
/// recorded; it is renewed whenever less than half of it is left, so a full disk can last
/// at least `RESERVE_AHEAD / 2` batches (almost six days at one a second) before a restart
/// could reuse a number. A clean close records the exact last sequence, so only an agent
/// that was killed skips numbers (at most this many), which costs nothing: the server only
/// needs sequences never to repeat, not to be contiguous.
pub const RESERVE_AHEAD: u64 = 1_000_000;

/// Why the spool could not be opened or could not take a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// A spool file could not be created, read, written or synced (disk full, read-only).
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A batch was appended with a sequence not above the last one in the spool.
    #[error("spool: appended sequence {got}, but {last} is already in the spool")]
    OutOfOrder {
        /// The highest sequence already in the spool.
        last: u64,
        /// The sequence appended.
        got: u64,
    },
    /// A batch is larger than one spool record may be.
    #[error("spool: a batch of {0} bytes is larger than a record may be")]
    TooLarge(usize),
    /// Another open spool holds the directory's lock.
    #[error("spool {0} is in use by another agent (or was not closed yet)")]
    Locked(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.display().to_string(), source }
}

/// Counters of a [`Spool`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches appended and not acknowledged.
    pub pending_batches: u64,
    /// Size of the segment files on disk.
    pub pending_bytes: u64,
    /// Unacknowledged batches dropped because the spool was full (oldest first).
    pub dropped_full: u64,
    /// Damaged records found on disk and skipped.
    pub corrupt_records: u64,
    /// The highest sequence acknowledged; everything up to it is forgotten.
    pub acked_through: u64,
    /// The sequence the next batch gets.
    pub next_sequence: u64,
    /// Whether the spool takes batches: the last append succeeded and no write failed
    /// since (false: disk full or read-only).
    pub writable: bool,
    /// Writes to the spool's directory that failed (appends, state, deletions).
    pub write_failures: u64,
}

/// Where one record lives.
#[derive(Debug, Clone, Copy)]
struct RecordIndex {
    sequence: u64,
    offset: u64,
    payload_len: u32,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    records: Vec<RecordIndex>,
}

impl Segment {
    fn last_sequence(&self) -> Option<u64> {
        self.records.last().map(|r| r.sequence)
    }
}

/// What the `state` file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    acked_through: u64,
    /// No sequence above this was handed out.
    reserved_through: u64,
}

/// Batches on disk in sequence order, in append-only segment files, until acknowledged;
/// bounded in size (oldest dropped first) and locked to one user at a time.
pub struct Spool {
    /// An exclusive lock on the directory, held while open: two spools on one directory
    /// would delete each other's segments and reuse each other's sequences.
    _lock: File,
    dir: PathBuf,
    max_bytes: u64,
    segment_max_bytes: u64,
    /// Oldest first; the last one takes appends.
    segments: Vec<Segment>,
    /// The last segment takes appends (false after opening: appends start a new one).
    active: bool,
    acked_through: u64,
    /// Highest sequence in a segment (or acknowledged).
    last_appended: u64,
    /// Highest sequence handed out, appended or not.
    last_issued: u64,
    /// What the `state` file holds now.
    on_disk: State,
    /// Acknowledged segments whose deletion failed (read-only disk); retried.
    garbage: Vec<PathBuf>,
    /// Sequences were handed out past the reservation on disk (said once).
    warned_past_reservation: bool,
    writable: bool,
    write_failures: u64,
    dropped_full: u64,
    corrupt_records: u64,
}

impl Spool {
    /// Opens or creates the spool in `dir`, bounded to about `max_bytes` on disk. Every
    /// existing record's checksum is verified. A directory that exists but cannot be
    /// written (full, read-only) opens all the same: appends fail until it recovers.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock = lock_dir(dir)?;
        let (state, written_at_us) = read_state(dir)?;
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        names.sort();

        let mut spool = Self {
            _lock: lock,
            dir: dir.to_path_buf(),
            max_bytes,
            segment_max_bytes: (max_bytes / 8).clamp(64 * 1024, 4 * 1024 * 1024),
            segments: Vec::new(),
            active: false,
            acked_through: state.acked_through,
            last_appended: state.acked_through,
            last_issued: state.reserved_through.max(state.acked_through),
            on_disk: state,
            garbage: Vec::new(),
            warned_past_reservation: false,
            writable: true,
            write_failures: 0,
            dropped_full: 0,
            corrupt_records: 0,
        };
        for path in names {
            let data = fs::read(&path).map_err(io_error(&path))?;
            let scan = scan_records(&data);
            spool.corrupt_records += scan.corrupt;
            if scan.valid_end < data.len() {
                // A torn tail: cut it so later appends do not sit behind garbage. If the disk
                // refuses, nothing is lost: appends go to a new segment and the next open
                // cuts it again.
                let cut = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|file| file.set_len(scan.valid_end as u64).and_then(|()| file.sync_data()));
                if let Err(error) = cut {
                    spool.write_failed();
                    tracing::warn!(path = %path.display(), %error, "cannot cut a torn spool record yet");
                }
            }
            let segment = Segment { path, bytes: scan.valid_end as u64, records: scan.records };
            if let Some(last) = segment.last_sequence() {
                spool.last_appended = spool.last_appended.max(last);
                spool.last_issued = spool.last_issued.max(last);
            }
            if segment.last_sequence().is_none_or(|last| last <= spool.acked_through) {
                spool.garbage.push(segment.path);
            } else {
                spool.segments.push(segment);
            }
        }
        spool.collect_garbage();
        if spool.corrupt_records > 0 {
            tracing::warn!(corrupt = spool.corrupt_records, dir = %dir.display(),
                "damaged spool records were skipped");
        }
        if spool.persist().is_err() {
            // Started on a disk that cannot be written: this run cannot reserve its numbers,
            // and an earlier run on the same unwritable disk (a restart loop) started from
            // the same stale state and handed out numbers nothing recorded. Each such run
            // starts above the reservation by the microseconds elapsed since the state was
            // written, so it starts above every number an earlier one could have handed out
            // (fewer than one batch per microsecond), and numbers grow only by the length of
            // the outage. (A clock set back by more than the outage defeats this.)
            let elapsed = now_us().saturating_sub(written_at_us);
            spool.last_issued = spool.last_issued.saturating_add(elapsed.max(1));
            tracing::warn!(dir = %dir.display(), from = spool.last_issued + 1,
                "spool cannot be written at start; sequences skip ahead by the time since its state was saved");
        }
        Ok(spool)
    }

    /// The sequence the next batch gets from [`Spool::issue`].
    pub fn next_sequence(&self) -> u64 {
        self.last_issued + 1
    }

    /// Hands out the next sequence, whether or not the batch will reach the disk, and
    /// renews the reservation when it runs low (if the disk allows).
    pub fn issue(&mut self) -> u64 {
        self.last_issued += 1;
        if self.last_issued > self.on_disk.reserved_through.saturating_sub(RESERVE_AHEAD / 2) {
            let _ = self.persist();
            let past = self.last_issued > self.on_disk.reserved_through;
            if past && !self.warned_past_reservation {
                tracing::error!(sequence = self.last_issued, dir = %self.dir.display(),
                    "spool unwritable past its sequence reservation; a restart before it can be written may reuse sequences");
            }
            self.warned_past_reservation = past;
        }
        self.last_issued
    }

    /// Appends batch `sequence` durably, then drops the oldest segments if the spool has
    /// grown past its bound. Sequences only grow: `sequence` must be above every one in the
    /// spool (gaps are fine: batches kept in memory and dropped there leave them). A
    /// sequence not handed out by [`Spool::issue`] yet counts as handed out.
    pub fn append(&mut self, sequence: u64, payload: &[u8]) -> Result<(), SpoolError> {
        if sequence <= self.last_appended {
            return Err(SpoolError::OutOfOrder { last: self.last_appended, got: sequence });
        }
        if payload.len() > MAX_RECORD_LEN {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        self.last_issued = self.last_issued.max(sequence);
        let record_len = (HEADER_LEN + payload.len()) as u64;
        let roll = self
            .segments
            .last()
            .is_none_or(|s| !self.active || (s.bytes > 0 && s.bytes + record_len > self.segment_max_bytes));
        if roll {
            let path = self.dir.join(format!("{sequence:020}{SEGMENT_SUFFIX}"));
            let created = OpenOptions::new().create(true).append(true).open(&path).map_err(io_error(&path));
            // The new file's name must be durable too, or a crash could lose the segment.
            if let Err(error) = created.and_then(|_| sync_dir(&self.dir)) {
                self.write_failed();
                return Err(error);
            }
            self.segments.push(Segment { path, bytes: 0, records: Vec::new() });
            self.active = true;
        }
        let Some(segment) = self.segments.last_mut() else { unreachable!("a segment was just opened") };
        let record = encode_record(sequence, payload);
        let offset = segment.bytes;
        // Opened for each append rather than held open: no file stays open for writing, so
        // the disk can be remounted read-only under a running agent.
        let written = OpenOptions::new().append(true).open(&segment.path).and_then(|mut file| {
            match file.write_all(&record).and_then(|()| file.sync_data()) {
                Ok(()) => Ok(()),
                Err(error) => {
                    // Cut a partial write so the file stays a clean run of records (shrinking
                    // a file works on a full disk); if even that fails, appends move on to a
                    // new segment rather than land behind the torn bytes.
                    if file.set_len(offset).is_err() {
                        self.active = false;
                    }
                    Err(error)
                }
            }
        });
        if let Err(source) = written {
            let path = segment.path.display().to_string();
            self.write_failed();
            return Err(SpoolError::Io { path, source });
        }
        segment.bytes += record_len;
        segment.records.push(RecordIndex { sequence, offset, payload_len: payload.len() as u32 });
        self.last_appended = sequence;
        self.write_succeeded();
        self.enforce_bound();
        Ok(())
    }

    /// Unacknowledged batches after `after`, oldest first, at most `limit`.
    pub fn read_pending(&mut self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let floor = after.max(self.acked_through);
        let mut out = Vec::new();
        for segment in &self.segments {
            if segment.last_sequence().is_none_or(|last| last <= floor) {
                continue;
            }
            let file = File::open(&segment.path).map_err(io_error(&segment.path))?;
            for record in segment.records.iter().filter(|r| r.sequence > floor) {
                if out.len() >= limit {
                    return Ok(out);
                }
                let mut buffer = vec![0u8; HEADER_LEN + record.payload_len as usize];
                file.read_exact_at(&mut buffer, record.offset).map_err(io_error(&segment.path))?;
                match decode_record(&buffer) {
                    Some((sequence, payload)) if sequence == record.sequence => out.push((sequence, payload.to_vec())),
                    // Damaged since it was written; the next open will count it.
                    _ => tracing::warn!(sequence = record.sequence, "damaged spool record skipped"),
                }
            }
        }
        Ok(out)
    }

    /// Marks every batch up to `sequence` acknowledged (sequences handed out but kept in
    /// memory included) and deletes wholly acknowledged segments. Never fails: what the
    /// disk refuses now (state, deletions) is written by a later call or [`Spool::retry`],
    /// and a stale state only means batches already stored are sent again, which the
    /// server acknowledges as duplicates.
    pub fn ack(&mut self, sequence: u64) {
        if sequence <= self.acked_through {
            return;
        }
        self.acked_through = sequence.min(self.last_issued);
        self.last_appended = self.last_appended.max(self.acked_through);
        let acked = self.acked_through;
        // A segment may go before the state records the acknowledgement (a restart would
        // then merely not resend it), but never before the reservation covers its numbers.
        let reserved = self.on_disk.reserved_through;
        let done =
            self.segments.iter().take_while(|s| s.last_sequence().is_none_or(|l| l <= acked && l <= reserved)).count();
        if done == self.segments.len() {
            self.active = false;
        }
        self.garbage.extend(self.segments.drain(..done).map(|s| s.path));
        // Deleting first frees space for the state on a full disk.
        self.collect_garbage();
        let _ = self.persist();
    }

    /// Writes what earlier failures left in memory (state, deletions). Cheap when there is
    /// nothing to do.
    pub fn retry(&mut self) {
        self.collect_garbage();
        if self.wanted_state() != self.on_disk {
            let _ = self.persist();
        }
    }

    /// Whether the spool takes batches: the last append succeeded and no write failed since.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The spool's counters now.
    pub fn stats(&self) -> SpoolStats {
        let acked = self.acked_through;
        SpoolStats {
            pending_batches: self
                .segments
                .iter()
                .map(|s| s.records.iter().filter(|r| r.sequence > acked).count() as u64)
                .sum(),
            pending_bytes: self.segments.iter().map(|s| s.bytes).sum(),
            dropped_full: self.dropped_full,
            corrupt_records: self.corrupt_records,
            acked_through: acked,
            next_sequence: self.next_sequence(),
            writable: self.writable,
            write_failures: self.write_failures,
        }
    }

    /// The state to have on disk: the acknowledgements, and a reservation renewed once less
    /// than half of it is left.
    fn wanted_state(&self) -> State {
        let reserved_through = if self.last_issued + RESERVE_AHEAD / 2 > self.on_disk.reserved_through {
            self.last_issued + RESERVE_AHEAD
        } else {
            self.on_disk.reserved_through
        };
        State { acked_through: self.acked_through, reserved_through }
    }

    /// Writes the wanted state if it differs from the one on disk.
    fn persist(&mut self) -> Result<(), SpoolError> {
        let wanted = self.wanted_state();
        if wanted == self.on_disk {
            return Ok(());
        }
        self.write_state(wanted)
    }

    fn write_state(&mut self, state: State) -> Result<(), SpoolError> {
        match write_state(&self.dir, state) {
            Ok(()) => {
                // Only an append says the spool takes batches again: a state file of a few
                // bytes may fit where a batch does not.
                self.on_disk = state;
                Ok(())
            }
            Err(error) => {
                self.write_failed();
                Err(error)
            }
        }
    }

    fn collect_garbage(&mut self) {
        let mut failed = false;
        self.garbage.retain(|path| match fs::remove_file(path) {
            Ok(()) => false,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => {
                failed = true;
                true
            }
        });
        if failed {
            self.write_failed();
        }
    }

    fn write_failed(&mut self) {
        self.write_failures += 1;
        if self.writable {
            self.writable = false;
            tracing::warn!(dir = %self.dir.display(), "spool cannot be written (disk full or read-only)");
        }
    }

    fn write_succeeded(&mut self) {
        if !self.writable {
            self.writable = true;
            tracing::info!(dir = %self.dir.display(), "spool can be written again");
            self.retry();
        }
    }

    /// Drops whole oldest segments (never the one taking appends) until under the bound.
    fn enforce_bound(&mut self) {
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        let mut dropped = 0u64;
        while total > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.remove(0);
            total -= oldest.bytes;
            dropped += oldest.records.iter().filter(|r| r.sequence > self.acked_through).count() as u64;
            self.garbage.push(oldest.path);
        }
        if dropped > 0 {
            self.collect_garbage();
            self.dropped_full += dropped;
            tracing::warn!(
                dropped,
                total_dropped = self.dropped_full,
                max_bytes = self.max_bytes,
                "spool full: dropped the oldest unacknowledged batches"
            );
        }
    }
}

impl Drop for Spool {
    /// Records the exact last sequence, so a clean restart skips no number. If the disk
    /// refuses, the reservation on disk still covers every number handed out.
    fn drop(&mut self) {
        self.collect_garbage();
        let exact = State { acked_through: self.acked_through, reserved_through: self.last_issued };
        if exact != self.on_disk
            && let Err(error) = write_state(&self.dir, exact)
        {
            tracing::warn!(%error, "cannot record the spool's state at close; the next start skips the reserved sequences");
        }
    }
}

fn encode_record(sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&sequence.to_le_bytes());
    crc.update(payload);
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&MAGIC.to_le_bytes());
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc.finalize().to_le_bytes());
    record.extend_from_slice(&sequence.to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// The record at the start of `data`, if it is whole and its checksum matches.
fn decode_record(data: &[u8]) -> Option<(u64, &[u8])> {
    let header = data.get(..HEADER_LEN)?;
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != MAGIC {
        return None;
    }
    let len = word(4) as usize;
    if len > MAX_RECORD_LEN {
        return None;
    }
    let sequence = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let payload = data.get(HEADER_LEN..HEADER_LEN + len)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&sequence.to_le_bytes());
    crc.update(payload);
    (crc.finalize() == word(8)).then_some((sequence, payload))
}

struct Scan {
    records: Vec<RecordIndex>,
    corrupt: u64,
    /// End of the last valid record: what follows is a torn tail.
    valid_end: usize,
}

/// Walks a segment's bytes, skipping damaged stretches by searching for the next valid
/// record; each damaged stretch counts as one corrupt record.
fn scan_records(data: &[u8]) -> Scan {
    let mut scan = Scan { records: Vec::new(), corrupt: 0, valid_end: 0 };
    let mut pos = 0;
    while pos < data.len() {
        if let Some((sequence, payload)) = decode_record(&data[pos..]) {
            scan.records.push(RecordIndex { sequence, offset: pos as u64, payload_len: payload.len() as u32 });
            pos += HEADER_LEN + payload.len();
            scan.valid_end = pos;
            continue;
        }
        scan.corrupt += 1;
        let magic = MAGIC.to_le_bytes();
        match (pos + 1..data.len().saturating_sub(HEADER_LEN - 1))
            .find(|&p| data[p..p + 4] == magic && decode_record(&data[p..]).is_some())
        {
            Some(next) => pos = next,
            None => break,
        }
    }
    scan
}

/// The state, and when it was written (microseconds since the epoch; 0 if unknown).
fn read_state(dir: &Path) -> Result<(State, u64), SpoolError> {
    let path = dir.join("state");
    let empty = (State { acked_through: 0, reserved_through: 0 }, 0);
    match fs::read_to_string(&path) {
        Ok(text) => {
            // Older versions wrote the last appended sequence where the reservation now is:
            // a reservation that covers exactly what they handed out.
            let mut numbers = text.split_whitespace().map(str::parse::<u64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(acked_through)), Some(Ok(reserved_through))) => {
                    let written_at_us = numbers.next().and_then(Result::ok).unwrap_or(0);
                    Ok((State { acked_through, reserved_through }, written_at_us))
                }
                _ => {
                    // Segments still carry every unacknowledged sequence; start from them.
                    tracing::warn!(path = %path.display(), "unreadable spool state; rebuilding from segments");
                    Ok(empty)
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(empty),
        Err(e) => Err(io_error(&path)(e)),
    }
}

fn write_state(dir: &Path, state: State) -> Result<(), SpoolError> {
    let temporary = dir.join("state.tmp");
    let path = dir.join("state");
    let written = File::create(&temporary).map_err(io_error(&temporary)).and_then(|mut file| {
        file.write_all(format!("{} {} {}\n", state.acked_through, state.reserved_through, now_us()).as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_error(&temporary))
    });
    if let Err(error) = written {
        // A half-written temporary file only takes space a full disk does not have.
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_dir(dir)
}

/// How long opening waits for a spool that is still being closed (in this process, the last
/// handle on it may be finishing a write on another thread).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Locks `dir` itself (an flock on the directory needs no write, so a full or read-only
/// disk can still be locked).
fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    let handle = File::open(dir).map_err(io_error(dir))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match handle.try_lock() {
            Ok(()) => return Ok(handle),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.display().to_string())),
            Err(fs::TryLockError::Error(error)) => return Err(io_error(dir)(error)),
        }
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX / 4))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(sequence: u64) -> Vec<u8> {
        format!("batch-{sequence}-").repeat(10).into_bytes()
    }

    fn fill(spool: &mut Spool, count: u64) {
        for _ in 0..count {
            let sequence = spool.next_sequence();
            spool.append(sequence, &payload(sequence)).unwrap();
        }
    }

    fn sequences(pending: &[(u64, Vec<u8>)]) -> Vec<u64> {
        pending.iter().map(|(s, _)| *s).collect()
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut segments: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        assert_eq!(segments.len(), 1);
        segments.pop().unwrap()
    }

    #[test]
    fn append_read_ack_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.next_sequence(), 1);
        fill(&mut spool, 5);
        let pending = spool.read_pending(0, 100).unwrap();
        assert_eq!(sequences(&pending), vec![1, 2, 3, 4, 5]);
        assert_eq!(pending[2].1, payload(3));
        assert_eq!(sequences(&spool.read_pending(3, 1).unwrap()), vec![4]);
        assert!(matches!(spool.append(5, b"x"), Err(SpoolError::OutOfOrder { last: 5, got: 5 })));

        spool.ack(2);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![3, 4, 5]);
        assert_eq!(spool.stats().pending_batches, 3);
        assert_eq!(spool.next_sequence(), 6);

        // Everything acknowledged: segments go, the counter stays.
        spool.ack(5);
        assert_eq!(spool.stats().pending_bytes, 0);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.next_sequence(), 6, "sequences are never reused");
        assert!(spool.read_pending(0, 100).unwrap().is_empty());
        fill(&mut spool, 1);
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![6]);
    }

    #[test]
    fn one_spool_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(Spool::open(dir.path(), 1 << 20), Err(SpoolError::Locked(_))));
        assert!(started.elapsed() >= LOCK_WAIT, "waited for the first to close");
        drop(spool);
        Spool::open(dir.path(), 1 << 20).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        fill(&mut spool, 3);
        drop(spool);
        let segment = only_segment(dir.path());
        let len = fs::metadata(&segment).unwrap().len();
        let record = (HEADER_LEN + payload(3).len()) as u64;
        // The agent died halfway through writing record 3.
        OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - record / 2).unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.stats().corrupt_records, 1);
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![1, 2]);
        // Batch 3 may have been sent from memory without reaching the disk: its number stays used.
        assert_eq!(spool.next_sequence(), 4, "a number once handed out is never handed out again");
        fill(&mut spool, 2);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.stats().corrupt_records, 0, "the tail was cut, not left behind");
        let pending = spool.read_pending(0, 100).unwrap();
        assert_eq!(sequences(&pending), vec![1, 2, 4, 5]);
        assert_eq!(pending[3].1, payload(5));
    }

    #[test]
    fn flipped_byte_skips_one_record_and_delivers_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        fill(&mut spool, 3);
        drop(spool);
        let segment = only_segment(dir.path());
        let mut data = fs::read(&segment).unwrap();
        let record = HEADER_LEN + payload(1).len();
        data[record + HEADER_LEN + 5] ^= 0x40; // inside record 2's payload
        fs::write(&segment, &data).unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.stats().corrupt_records, 1);
        let pending = spool.read_pending(0, 100).unwrap();
        assert_eq!(sequences(&pending), vec![1, 3]);
        assert_eq!(pending[1].1, payload(3));
    }

    #[test]
    fn damaged_length_field_does_not_allocate_or_panic() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        fill(&mut spool, 3);
        drop(spool);
        let segment = only_segment(dir.path());
        let mut data = fs::read(&segment).unwrap();
        data[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // record 1 claims 4 GiB
        fs::write(&segment, &data).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![2, 3]);
        assert_eq!(spool.stats().corrupt_records, 1);
    }

    #[test]
    fn full_spool_drops_oldest_first_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let max_bytes = 256 * 1024;
        let mut spool = Spool::open(dir.path(), max_bytes).unwrap();
        let big = vec![7u8; 10_000];
        for _ in 0..100 {
            let sequence = spool.next_sequence();
            spool.append(sequence, &big).unwrap();
        }
        let stats = spool.stats();
        assert!(stats.pending_bytes <= max_bytes, "{stats:?}");
        assert!(stats.dropped_full > 0);
        assert_eq!(stats.dropped_full + stats.pending_batches, 100, "every batch is either kept or counted");
        let pending = sequences(&spool.read_pending(0, 1000).unwrap());
        assert_eq!(*pending.last().unwrap(), 100, "the newest is kept");
        assert_eq!(pending.first().copied(), Some(stats.dropped_full + 1), "the oldest went first");
        let on_disk: u64 = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk <= max_bytes + 1024, "on disk {on_disk}");
    }
}
