//! The agent's disk spool: every batch is appended here, checksummed and synced, before it
//! is sent, and stays until the server acknowledges it.
//!
//! On disk, a directory holds segment files named by their first sequence
//! (`00000000000000000042.seg`) and a `state` file. A segment is a run of records:
//! `magic u32 | payload length u32 | crc32 u32 | sequence u64 | payload`, little endian,
//! the CRC covering sequence and payload. `state` holds the highest acknowledged and the
//! highest appended sequence, so sequence numbers are never reused even after every segment
//! was deleted: a reused sequence would make the server drop new data as a duplicate.
//!
//! Opening scans every segment. A record cut short at the end of a segment (the agent was
//! killed mid-append) is cut off the file; a damaged record elsewhere is skipped, counted,
//! and scanning resynchronises on the next valid record.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: u32 = 0x5350_4c31; // "SPL1"
const HEADER_LEN: usize = 20;
/// No batch is this large; a length field above it is damage, not a record.
const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("spool: appended sequence {got}, expected {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("spool: a batch of {0} bytes is larger than a record may be")]
    TooLarge(usize),
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
    pub acked_through: u64,
    pub next_sequence: u64,
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

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_max_bytes: u64,
    /// Oldest first; the last one takes appends.
    segments: Vec<Segment>,
    /// Open handle on the last segment.
    active: Option<File>,
    acked_through: u64,
    last_appended: u64,
    dropped_full: u64,
    corrupt_records: u64,
}

impl Spool {
    /// Opens or creates the spool in `dir`, bounded to about `max_bytes` on disk. Every
    /// existing record's checksum is verified.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let (acked_through, persisted_last) = read_state(dir)?;
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(io_error(dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        names.sort();

        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_max_bytes: (max_bytes / 8).clamp(64 * 1024, 4 * 1024 * 1024),
            segments: Vec::new(),
            active: None,
            acked_through,
            last_appended: persisted_last,
            dropped_full: 0,
            corrupt_records: 0,
        };
        for path in names {
            let data = fs::read(&path).map_err(io_error(&path))?;
            let scan = scan_records(&data);
            spool.corrupt_records += scan.corrupt;
            if scan.valid_end < data.len() {
                // A torn tail: cut it so later appends do not sit behind garbage.
                let file = OpenOptions::new().write(true).open(&path).map_err(io_error(&path))?;
                file.set_len(scan.valid_end as u64).map_err(io_error(&path))?;
                file.sync_data().map_err(io_error(&path))?;
            }
            let segment = Segment { path, bytes: scan.valid_end as u64, records: scan.records };
            if let Some(last) = segment.last_sequence() {
                spool.last_appended = spool.last_appended.max(last);
            }
            if segment.last_sequence().is_none_or(|last| last <= acked_through) {
                fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
            } else {
                spool.segments.push(segment);
            }
        }
        if spool.corrupt_records > 0 {
            tracing::warn!(corrupt = spool.corrupt_records, dir = %dir.display(),
                "damaged spool records were skipped");
        }
        Ok(spool)
    }

    /// The sequence the next appended batch must carry.
    pub fn next_sequence(&self) -> u64 {
        self.last_appended + 1
    }

    /// Appends batch `sequence` durably, then drops the oldest segments if the spool has
    /// grown past its bound.
    pub fn append(&mut self, sequence: u64, payload: &[u8]) -> Result<(), SpoolError> {
        if sequence != self.next_sequence() {
            return Err(SpoolError::OutOfOrder { expected: self.next_sequence(), got: sequence });
        }
        if payload.len() > MAX_RECORD_LEN {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let record_len = (HEADER_LEN + payload.len()) as u64;
        let roll = self
            .segments
            .last()
            .is_none_or(|s| self.active.is_none() || (s.bytes > 0 && s.bytes + record_len > self.segment_max_bytes));
        if roll {
            let path = self.dir.join(format!("{sequence:020}{SEGMENT_SUFFIX}"));
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_error(&path))?;
            // The new file's name must be durable too, or a crash could lose the segment.
            sync_dir(&self.dir)?;
            self.segments.push(Segment { path, bytes: 0, records: Vec::new() });
            self.active = Some(file);
        }
        let (segment, file) = match (self.segments.last_mut(), self.active.as_mut()) {
            (Some(segment), Some(file)) => (segment, file),
            _ => unreachable!("a segment was just opened"),
        };
        let record = encode_record(sequence, payload);
        let offset = segment.bytes;
        if let Err(source) = file.write_all(&record).and_then(|()| file.sync_data()) {
            // Cut a partial write so the file stays a clean run of records.
            let _ = file.set_len(offset);
            return Err(SpoolError::Io { path: segment.path.display().to_string(), source });
        }
        segment.bytes += record_len;
        segment.records.push(RecordIndex { sequence, offset, payload_len: payload.len() as u32 });
        self.last_appended = sequence;
        self.enforce_bound()
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

    /// Marks every batch up to `sequence` acknowledged and deletes wholly acknowledged
    /// segments.
    pub fn ack(&mut self, sequence: u64) -> Result<(), SpoolError> {
        if sequence <= self.acked_through {
            return Ok(());
        }
        self.acked_through = sequence.min(self.last_appended);
        // The state must be durable before segments go, or the sequence could be reused.
        write_state(&self.dir, self.acked_through, self.last_appended)?;
        let acked = self.acked_through;
        let done = self.segments.iter().take_while(|s| s.last_sequence().is_none_or(|l| l <= acked)).count();
        if done == self.segments.len() {
            self.active = None;
        }
        for segment in self.segments.drain(..done) {
            fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
        }
        Ok(())
    }

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
        }
    }

    /// Drops whole oldest segments (never the one taking appends) until under the bound.
    fn enforce_bound(&mut self) -> Result<(), SpoolError> {
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        let mut dropped = 0u64;
        while total > self.max_bytes && self.segments.len() > 1 {
            let oldest = self.segments.remove(0);
            total -= oldest.bytes;
            dropped += oldest.records.iter().filter(|r| r.sequence > self.acked_through).count() as u64;
            fs::remove_file(&oldest.path).map_err(io_error(&oldest.path))?;
        }
        if dropped > 0 {
            self.dropped_full += dropped;
            tracing::warn!(
                dropped,
                total_dropped = self.dropped_full,
                max_bytes = self.max_bytes,
                "spool full: dropped the oldest unacknowledged batches"
            );
        }
        Ok(())
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

fn read_state(dir: &Path) -> Result<(u64, u64), SpoolError> {
    let path = dir.join("state");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut numbers = text.split_whitespace().map(str::parse::<u64>);
            match (numbers.next(), numbers.next()) {
                (Some(Ok(acked)), Some(Ok(last))) => Ok((acked, last)),
                _ => {
                    // Segments still carry every unacknowledged sequence; start from them.
                    tracing::warn!(path = %path.display(), "unreadable spool state; rebuilding from segments");
                    Ok((0, 0))
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(io_error(&path)(e)),
    }
}

fn write_state(dir: &Path, acked_through: u64, last_appended: u64) -> Result<(), SpoolError> {
    let temporary = dir.join("state.tmp");
    let path = dir.join("state");
    let mut file = File::create(&temporary).map_err(io_error(&temporary))?;
    file.write_all(format!("{acked_through} {last_appended}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(io_error(&temporary))?;
    fs::rename(&temporary, &path).map_err(io_error(&path))?;
    sync_dir(dir)
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
        assert!(matches!(spool.append(9, b"x"), Err(SpoolError::OutOfOrder { expected: 6, got: 9 })));

        spool.ack(2).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![3, 4, 5]);
        assert_eq!(spool.stats().pending_batches, 3);
        assert_eq!(spool.next_sequence(), 6);

        // Everything acknowledged: segments go, the counter stays.
        spool.ack(5).unwrap();
        assert_eq!(spool.stats().pending_bytes, 0);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.next_sequence(), 6, "sequences are never reused");
        assert!(spool.read_pending(0, 100).unwrap().is_empty());
        fill(&mut spool, 1);
        assert_eq!(sequences(&spool.read_pending(0, 100).unwrap()), vec![6]);
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
        assert_eq!(spool.next_sequence(), 3, "the torn batch was never acknowledged, its number is free");
        fill(&mut spool, 2);
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.stats().corrupt_records, 0, "the tail was cut, not left behind");
        let pending = spool.read_pending(0, 100).unwrap();
        assert_eq!(sequences(&pending), vec![1, 2, 3, 4]);
        assert_eq!(pending[3].1, payload(4));
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
