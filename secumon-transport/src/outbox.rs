//! Everything the agent has made and the server has not acknowledged: the disk [`Spool`]
//! first, and behind it a bounded queue in memory for when the spool's disk is full or
//! read-only, so a host whose disk fills up keeps reporting (that is when its disk alert
//! matters most).
//!
//! Every batch gets its sequence from the spool, whether it reaches the disk or not.
//! Sequences in memory are always above those in the spool: a new batch goes to the spool
//! only while memory is empty, and when the disk takes writes again, memory is moved into
//! the spool oldest first before anything else. So reading "the spool, then memory" is one
//! queue in sequence order, and one acknowledgement clears both.
//!
//! Memory holds at most `memory_max_bytes` of batches that were never sent: beyond it, the
//! oldest of those are dropped and counted. Batches already sent stay until acknowledged
//! (at most one in-flight window of them), because the server may have stored them: were
//! they dropped and counted, the count of lost batches would not be exact.

use std::collections::VecDeque;
use std::path::Path;

use crate::spool::{MAX_RECORD_LEN, Spool, SpoolError, SpoolStats};

/// Counters of the in-memory part of an [`Outbox`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Batches held in memory because the spool could not take them.
    pub batches: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// Batches dropped from memory, never sent (oldest first).
    pub dropped: u64,
}

#[derive(Debug)]
struct MemoryBatch {
    sequence: u64,
    payload: Vec<u8>,
    /// Handed to a push stream at least once: the server may have it.
    sent: bool,
}

/// The spool with its in-memory overflow.
pub struct Outbox {
    spool: Spool,
    memory: VecDeque<MemoryBatch>,
    memory_bytes: usize,
    memory_max_bytes: usize,
    dropped: u64,
    /// Batches go to memory since a write failed (said once per outage).
    in_memory_mode: bool,
}

impl Outbox {
    /// Opens the spool in `dir` (see [`Spool::open`]), with room for `memory_max_bytes` of
    /// unsent batches in memory while it cannot be written.
    pub fn open(dir: &Path, max_bytes: u64, memory_max_bytes: usize) -> Result<Self, SpoolError> {
        Ok(Self {
            spool: Spool::open(dir, max_bytes)?,
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_max_bytes,
            dropped: 0,
            in_memory_mode: false,
        })
    }

    /// Numbers a batch (`encode` makes its bytes for the sequence it gets) and stores it:
    /// in the spool if it can be written, in memory otherwise. Fails only for a batch too
    /// large to ever be stored.
    pub fn push(&mut self, encode: impl FnOnce(u64) -> Vec<u8>) -> Result<u64, SpoolError> {
        self.spool.retry();
        self.move_to_spool();
        let sequence = self.spool.issue();
        let payload = encode(sequence);
        if payload.len() > MAX_RECORD_LEN {
            // Refused here rather than kept in memory, where it could never reach the disk.
            return Err(SpoolError::TooLarge(payload.len()));
        }
        if self.memory.is_empty() {
            match self.spool.append(sequence, &payload) {
                Ok(()) => {
                    self.in_memory_mode = false;
                    return Ok(sequence);
                }
                Err(SpoolError::Io { path, source }) => {
                    if !self.in_memory_mode {
                        self.in_memory_mode = true;
                        tracing::error!(%path, error = %source,
                            "cannot write to the spool; delivering from memory until it can be written again");
                    }
                }
                Err(refused) => return Err(refused),
            }
        }
        self.memory_bytes += payload.len();
        self.memory.push_back(MemoryBatch { sequence, payload, sent: false });
        self.trim();
        Ok(sequence)
    }

    /// Stored batches after `after`, oldest first, at most `limit`: the spool's, then
    /// memory's (those are marked sent).
    pub fn read_pending(&mut self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let mut out = self.spool.read_pending(after, limit)?;
        let after = out.last().map_or(after, |(sequence, _)| *sequence);
        for batch in self.memory.iter_mut().filter(|b| b.sequence > after).take(limit - out.len()) {
            batch.sent = true;
            out.push((batch.sequence, batch.payload.clone()));
        }
        Ok(out)
    }

    /// Everything up to `sequence` is acknowledged: gone from the spool and from memory.
    pub fn ack(&mut self, sequence: u64) {
        self.spool.ack(sequence);
        while self.memory.front().is_some_and(|b| b.sequence <= sequence) {
            if let Some(batch) = self.memory.pop_front() {
                self.memory_bytes -= batch.payload.len();
            }
        }
        // An acknowledgement may have freed space: memory goes back to disk as soon as it can.
        self.move_to_spool();
    }

    /// The disk spool's counters.
    pub fn spool_stats(&self) -> SpoolStats {
        self.spool.stats()
    }

    /// The in-memory queue's counters.
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats { batches: self.memory.len() as u64, bytes: self.memory_bytes as u64, dropped: self.dropped }
    }

    /// Moves batches from memory into the spool, oldest first, while the disk takes them.
    fn move_to_spool(&mut self) {
        let before = self.memory.len();
        while let Some(batch) = self.memory.front() {
            match self.spool.append(batch.sequence, &batch.payload) {
                Ok(()) => {}
                Err(SpoolError::Io { .. }) => break,
                // Cannot happen (memory is above the spool, batches were sized when made);
                // dropping it keeps the queue moving, and it is counted.
                Err(error) => {
                    tracing::error!(sequence = batch.sequence, %error, "batch in memory cannot be spooled; dropped");
                    self.dropped += 1;
                }
            }
            if let Some(batch) = self.memory.pop_front() {
                self.memory_bytes -= batch.payload.len();
            }
        }
        let moved = before - self.memory.len();
        if moved > 0 && self.memory.is_empty() && self.in_memory_mode {
            self.in_memory_mode = false;
            tracing::info!(moved, "spool writable again; batches kept in memory are on disk now");
        }
    }

    /// Drops the oldest never-sent batches until memory is within its bound; the newest
    /// batch always stays.
    fn trim(&mut self) {
        while self.memory_bytes > self.memory_max_bytes {
            let Some(index) = self.memory.iter().position(|b| !b.sent) else { break };
            if index + 1 == self.memory.len() {
                break;
            }
            if let Some(batch) = self.memory.remove(index) {
                self.memory_bytes -= batch.payload.len();
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    // 1, 2, 4, 8...: a lasting outage is visible in the log without flooding it.
                    tracing::error!(
                        dropped_total = self.dropped,
                        max_bytes = self.memory_max_bytes,
                        "spool unwritable and memory full: dropped the oldest unsent batches"
                    );
                }
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // A disk that has room again at shutdown keeps what memory holds (acknowledged
        // segments deleted first, for the room).
        self.spool.retry();
        self.move_to_spool();
        if !self.memory.is_empty() {
            tracing::error!(
                batches = self.memory.len(),
                "the spool cannot be written: batches only in memory are lost"
            );
        }
    }
}
