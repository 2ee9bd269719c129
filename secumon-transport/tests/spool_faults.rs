//! The spool on a disk of its own that fills up and turns read-only: a tmpfs this test
//! mounts (we run as root, as CI does; a failed mount fails the test). Nothing may be
//! corrupted, doubled or lost uncounted, sequences never repeat, and the spool returns to
//! disk by itself when the disk allows.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use secumon_transport::Outbox;

/// A tmpfs mounted on a temporary directory, unmounted when dropped (panics included).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "cannot mount a tmpfs (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let output = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(self.path()).output().unwrap();
        assert!(output.status.success(), "remount {mode}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(self.path()).status().is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a panic left a file open): detach it now, freed when closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Fills the filesystem under `dir` with one file, to the last byte; returns it.
fn fill_disk(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // Byte-sized writes take the last partial page.
    while file.write(&[0xAA]).is_ok_and(|n| n == 1) {}
    path
}

fn payload(sequence: u64) -> Vec<u8> {
    let mut bytes = sequence.to_le_bytes().to_vec();
    bytes.resize(3_000, (sequence % 251) as u8);
    bytes
}

/// Pushes one batch; returns its sequence.
fn push(outbox: &mut Outbox) -> u64 {
    outbox.push(payload).expect("a batch of normal size is always taken")
}

/// What the outbox would deliver, checked for order and content.
fn pending(outbox: &mut Outbox) -> Vec<u64> {
    let pending = outbox.read_pending(0, usize::MAX).unwrap();
    for pair in pending.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "delivered in increasing order: {:?}",
            pair.iter().map(|p| p.0).collect::<Vec<_>>()
        );
    }
    for (sequence, bytes) in &pending {
        assert_eq!(bytes, &payload(*sequence), "batch {sequence} intact");
    }
    pending.into_iter().map(|(s, _)| s).collect()
}

#[test]
fn full_disk_keeps_batches_in_memory_and_returns_to_disk_with_nothing_doubled() {
    let disk = Tmpfs::mount("256k");
    let dir = disk.path().join("spool");
    let mut outbox = Outbox::open(&dir, 64 * 1024 * 1024, 10 * 3_000).unwrap();
    let mut issued = Vec::new();

    // The disk fills (the spool itself and whatever else lives there).
    for _ in 0..10 {
        issued.push(push(&mut outbox));
    }
    fill_disk(disk.path());
    for _ in 0..30 {
        issued.push(push(&mut outbox));
    }
    let spool = outbox.spool_stats();
    let memory = outbox.memory_stats();
    assert!(!spool.writable, "{spool:?}");
    assert_eq!(spool.pending_batches, 10, "what reached the disk stays there");
    assert_eq!(spool.dropped_full, 0, "a full disk is not the spool's bound: nothing dropped from disk");
    assert!(memory.batches <= 11, "memory bounded: {memory:?}");
    assert_eq!(memory.batches + memory.dropped, 30, "every batch in memory or counted: {memory:?}");
    assert_eq!(pending(&mut outbox).len() as u64, 10 + memory.batches);
    let first_in_memory = issued[10 + memory.dropped as usize];
    assert_eq!(pending(&mut outbox)[10], first_in_memory, "the oldest were dropped, spool first, then memory");

    // The server acknowledges everything it was sent: the acknowledgement cannot be
    // written, yet it counts, and what was acknowledged never comes back.
    let through = *pending(&mut outbox).last().unwrap();
    outbox.ack(through);
    assert!(pending(&mut outbox).is_empty());
    assert_eq!(outbox.memory_stats().batches, 0);

    // Deleting the acknowledged segments gave some space back: the disk fills up again.
    let filler = fill_disk(disk.path());
    issued.push(push(&mut outbox));
    assert!(!outbox.spool_stats().writable);
    assert_eq!(outbox.memory_stats().batches, 1);
    // More batches while still full, some sent, then the space comes back.
    for _ in 0..4 {
        issued.push(push(&mut outbox));
    }
    let sent = outbox.read_pending(through, 2).unwrap();
    assert_eq!(sent.len(), 2);
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..3 {
        issued.push(push(&mut outbox));
    }
    let spool = outbox.spool_stats();
    assert!(spool.writable, "{spool:?}");
    assert_eq!(outbox.memory_stats().batches, 0, "memory moved to disk by itself");
    assert_eq!(spool.pending_batches, 8);
    let after = pending(&mut outbox);
    assert_eq!(after, issued[issued.len() - 8..].to_vec(), "nothing doubled, nothing skipped");

    // Sequences never repeat, and a restart finds exactly what is pending.
    let unique: BTreeSet<_> = issued.iter().collect();
    assert_eq!(unique.len(), issued.len());
    let next = outbox.spool_stats().next_sequence;
    drop(outbox);
    let mut outbox = Outbox::open(&dir, 64 * 1024 * 1024, 10 * 3_000).unwrap();
    assert_eq!(outbox.spool_stats().corrupt_records, 0, "ENOSPC mid-append left no torn record");
    assert_eq!(pending(&mut outbox), after);
    assert_eq!(outbox.spool_stats().next_sequence, next, "a clean close keeps the numbering exact");
}

#[test]
fn read_only_disk_acknowledges_in_memory_and_a_restart_reuses_no_sequence() {
    let disk = Tmpfs::mount("1m");
    let dir = disk.path().join("spool");
    let mut outbox = Outbox::open(&dir, 64 * 1024 * 1024, 1024 * 1024).unwrap();
    let mut issued: Vec<u64> = (0..5).map(|_| push(&mut outbox)).collect();

    disk.remount("ro");
    issued.extend((0..5).map(|_| push(&mut outbox)));
    let spool = outbox.spool_stats();
    assert!(!spool.writable);
    assert_eq!((spool.pending_batches, outbox.memory_stats().batches), (5, 5));
    // Acknowledging spooled and in-memory batches: nothing can be written or deleted, the
    // acknowledgement holds all the same.
    outbox.ack(issued[7]);
    assert_eq!(pending(&mut outbox), issued[8..].to_vec());
    assert_eq!(outbox.spool_stats().pending_batches, 0);
    // Delivered: nothing left in memory, so a stop loses nothing.
    outbox.ack(issued[9]);
    let last = *issued.last().unwrap();
    drop(outbox); // the exact state cannot be written either

    // Restart on the read-only disk, its state stale: numbering continues above.
    let mut outbox = Outbox::open(&dir, 64 * 1024 * 1024, 1024 * 1024).unwrap();
    assert!(!outbox.spool_stats().writable);
    let restarted = push(&mut outbox);
    assert!(restarted > last, "sequence {restarted} after {last}: never reused");
    // The acknowledged segments are still on the disk; they come back as already sent
    // batches (the server acknowledges them as duplicates), never as new ones.
    let again = pending(&mut outbox);
    assert!(again.iter().all(|s| issued.contains(s) || *s == restarted), "{again:?}");

    // Writable again: the disk catches up by itself.
    disk.remount("rw");
    let next = push(&mut outbox);
    let spool = outbox.spool_stats();
    assert!(spool.writable, "{spool:?}");
    assert_eq!(outbox.memory_stats().batches, 0);
    outbox.ack(next);
    assert!(pending(&mut outbox).is_empty());
    drop(outbox);
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert_eq!(segments, 0, "acknowledged segments deleted once the disk allowed");
    let mut outbox = Outbox::open(&dir, 64 * 1024 * 1024, 1024 * 1024).unwrap();
    assert!(pending(&mut outbox).is_empty());
    assert_eq!(outbox.spool_stats().next_sequence, next + 1);
}

mod model {
    //! The outbox against a model, as `spool_model.rs` does for the spool alone, with the
    //! disk filling up, turning read-only and coming back between random operations.
    //! Bounds are large here, so nothing is dropped and the model is exact: what is
    //! pending must be exactly what was pushed and not acknowledged, in order and intact;
    //! only a reopen may lose the batches memory held (they die with the process) and bring
    //! back acknowledged ones whose acknowledgement the disk could not record (the server
    //! acknowledges those as duplicates). Sequences never repeat.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        /// Acknowledge through the n-th pending batch (modulo their number).
        Ack(usize),
        Fill,
        Release,
        ReadOnly,
        ReadWrite,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..6_000).prop_map(Op::Push),
            3 => any::<usize>().prop_map(Op::Ack),
            1 => Just(Op::Fill),
            1 => Just(Op::Release),
            1 => Just(Op::ReadOnly),
            1 => Just(Op::ReadWrite),
            1 => Just(Op::Reopen),
        ]
    }

    fn bytes(sequence: u64, len: usize) -> Vec<u8> {
        let mut bytes = sequence.to_le_bytes().to_vec();
        bytes.resize(len.max(8), (sequence % 253) as u8);
        bytes
    }

    const MAX: u64 = 64 * 1024 * 1024;

    #[test]
    fn outbox_matches_a_queue_through_disk_faults() {
        let disk = Tmpfs::mount("256k");
        let cases = std::sync::atomic::AtomicU32::new(0);
        // PROPTEST_CASES=2000 for a longer search.
        let cases_wanted = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
        let config = ProptestConfig { cases: cases_wanted, failure_persistence: None, ..ProptestConfig::default() };
        proptest!(config, |(ops in proptest::collection::vec(op(), 1..50))| {
            let case = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A clean disk for each case, whatever an earlier (failed) case left.
            disk.remount("rw");
            for entry in std::fs::read_dir(disk.path()).unwrap() {
                let path = entry.unwrap().path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
            let filler = disk.path().join("filler");
            let dir = disk.path().join(format!("case-{case}"));
            let mut outbox = Outbox::open(&dir, MAX, usize::MAX / 2).unwrap();
            // Every batch pushed, by sequence: its payload.
            let mut pushed: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut acked = 0u64;
            let mut last_issued = 0u64;
            let mut read_only = false;
            for op in ops {
                match op {
                    Op::Push(len) => {
                        let sequence = outbox.push(|s| bytes(s, len)).unwrap();
                        prop_assert!(sequence > last_issued, "{} after {}", sequence, last_issued);
                        last_issued = sequence;
                        pushed.insert(sequence, bytes(sequence, len));
                    }
                    Op::Ack(n) => {
                        let pending = outbox.read_pending(acked, usize::MAX).unwrap();
                        if !pending.is_empty() {
                            let through = pending[n % pending.len()].0;
                            outbox.ack(through);
                            acked = acked.max(through);
                        }
                    }
                    // (A read-only disk can be neither filled nor freed.)
                    Op::Fill if !read_only => {
                        fill_disk(disk.path());
                    }
                    Op::Release if !read_only => {
                        let _ = std::fs::remove_file(&filler);
                    }
                    Op::Fill | Op::Release => {}
                    Op::ReadOnly => {
                        disk.remount("ro");
                        read_only = true;
                    }
                    Op::ReadWrite => {
                        disk.remount("rw");
                        read_only = false;
                    }
                    Op::Reopen => {
                        // What only memory held is saved to disk at close if the disk allows,
                        // and lost with the process otherwise.
                        let in_memory = outbox.memory_stats().batches as usize;
                        let held: Vec<u64> = pushed.range(acked + 1..).rev().take(in_memory).map(|(s, _)| *s).collect();
                        // Room for memory at close: the disk is writable, nothing else fills it,
                        // and the spool's own files (acknowledged ones included) leave space.
                        let spool_files: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
                        let room = !read_only
                            && !filler.exists()
                            && spool_files + outbox.memory_stats().bytes + 64 * 1024 < 256 * 1024;
                        drop(outbox);
                        outbox = Outbox::open(&dir, MAX, usize::MAX / 2).unwrap();
                        prop_assert!(
                            outbox.spool_stats().next_sequence > last_issued,
                            "no sequence reused after a reopen: {:?} after {}",
                            outbox.spool_stats(),
                            last_issued
                        );
                        prop_assert_eq!(outbox.spool_stats().corrupt_records, 0);
                        let kept: Vec<u64> = outbox.read_pending(0, usize::MAX).unwrap().iter().map(|(s, _)| *s).collect();
                        for sequence in held {
                            if !kept.contains(&sequence) {
                                prop_assert!(!room, "memory saved at close when the disk had room");
                                pushed.remove(&sequence);
                            }
                        }
                    }
                }
                let pending = outbox.read_pending(0, usize::MAX).unwrap();
                for pair in pending.windows(2) {
                    prop_assert!(pair[0].0 < pair[1].0, "in order");
                }
                for (sequence, payload) in &pending {
                    prop_assert_eq!(Some(payload), pushed.get(sequence), "batch {} intact", sequence);
                }
                let unacked: Vec<u64> = pending.iter().map(|(s, _)| *s).filter(|s| *s > acked).collect();
                let expected: Vec<u64> = pushed.range(acked + 1..).map(|(s, _)| *s).collect();
                prop_assert_eq!(unacked, expected, "exactly the unacknowledged batches");
                let memory = outbox.memory_stats();
                prop_assert_eq!(memory.dropped, 0);
                prop_assert_eq!(outbox.spool_stats().dropped_full, 0);
            }
            // The disk comes back: the outbox returns to it by itself.
            disk.remount("rw");
            let _ = std::fs::remove_file(&filler);
            // The server acknowledges what the spool holds (memory holds the newest), which
            // leaves the disk room for memory, unless memory alone is most of the disk.
            let pending = outbox.read_pending(acked, usize::MAX).unwrap();
            let memory = outbox.memory_stats();
            if let Some((through, _)) = pending.len().checked_sub(memory.batches as usize + 1).map(|i| &pending[i]) {
                outbox.ack(*through);
                acked = *through;
            }
            let sequence = outbox.push(|s| bytes(s, 10)).unwrap();
            pushed.insert(sequence, bytes(sequence, 10));
            if memory.bytes > 128 * 1024 {
                return Ok(());
            }
            prop_assert!(outbox.spool_stats().writable);
            prop_assert_eq!(outbox.memory_stats().batches, 0);
            let expected: Vec<u64> = pushed.range(acked + 1..).map(|(s, _)| *s).collect();
            let on_disk: Vec<u64> =
                outbox.read_pending(acked, usize::MAX).unwrap().iter().map(|(s, _)| *s).collect();
            prop_assert_eq!(on_disk, expected, "all of it on disk");
            drop(outbox);
            let _ = std::fs::remove_dir_all(&dir);
        });
    }
}
