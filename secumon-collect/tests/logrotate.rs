//! The log tailer against the real `logrotate` (Debian package, installed by
//! `scripts/test`) and a writer of our own at 200 lines/s, polled once a second as the
//! agent does: with `copytruncate`, and with `create` and a writer that reopens its file
//! 0.8 s after the rename. Every line written must arrive once, in order, except the few
//! that fall inside logrotate's own copy-to-truncate window.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use secumon_collect::LogTailer;

const LOGROTATE: &str = "/usr/sbin/logrotate";

/// Writes `n\n` for n = 0, 1, ... at about 200 lines/s until stopped; with `reopen_after`,
/// reopens the path that long after it is renamed away. Returns how many lines it wrote.
fn writer(path: PathBuf, stop: Arc<AtomicBool>, reopen_after: Option<Duration>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut file = open();
        let mut inode = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
        let mut renamed_at: Option<Instant> = None;
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            file.write_all(format!("{n}\n").as_bytes()).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(5));
            if let Some(delay) = reopen_after {
                let now = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
                if renamed_at.is_none() && now != Some(inode) {
                    renamed_at = Some(Instant::now());
                }
                if renamed_at.is_some_and(|at| at.elapsed() >= delay) {
                    file = open();
                    inode = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
                    renamed_at = None;
                }
            }
        }
        n
    })
}

fn logrotate(dir: &Path, log: &Path, mode: &str) {
    let config = dir.join("logrotate.conf");
    std::fs::write(&config, format!("{} {{\n  {mode}\n  rotate 3\n  missingok\n}}\n", log.display())).unwrap();
    let status = Command::new(LOGROTATE)
        .arg("-f")
        .arg("-s")
        .arg(dir.join("logrotate.state"))
        .arg(&config)
        .status()
        .unwrap_or_else(|e| panic!("{LOGROTATE} must be installed (scripts/test installs it): {e}"));
    assert!(status.success(), "logrotate failed");
}

/// Runs the writer and the tailer through one rotation; returns the numbers received and
/// how many were written.
fn run(mode: &str, reopen_after: Option<Duration>) -> (Vec<u64>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("b.log");
    std::fs::write(&log, "").unwrap();
    let mut tailer = LogTailer::open(&[log.display().to_string()], &dir.path().join("positions.json"))
        .unwrap()
        .with_rotation_grace(Duration::from_secs(2));
    tailer.poll(0);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(log.clone(), stop.clone(), reopen_after);
    let mut received = Vec::new();
    let mut take = |tailer: &mut LogTailer| {
        for record in tailer.poll(0) {
            received.push(record.line.parse::<u64>().unwrap_or_else(|_| panic!("a whole line: {:?}", record.line)));
        }
    };
    for second in 0..5 {
        // The poll after the rotation comes 0.5 s after it: before a late writer reopens.
        std::thread::sleep(Duration::from_millis(if second == 2 { 500 } else { 1000 }));
        take(&mut tailer);
        if second == 1 {
            // Half a second after our read: ~100 lines exist only in the rotated copy.
            std::thread::sleep(Duration::from_millis(500));
            logrotate(dir.path(), &log, mode);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let written = writing.join().unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        take(&mut tailer);
    }
    assert!(dir.path().join("b.log.1").exists(), "logrotate rotated the file");
    (received, written)
}

fn check(received: &[u64], written: u64, may_lose: u64) {
    let mut sorted = received.to_vec();
    sorted.dedup();
    assert_eq!(sorted.len(), received.len(), "no line twice");
    assert!(received.windows(2).all(|w| w[0] < w[1]), "in order: {received:?}");
    assert!(received.iter().all(|&n| n < written));
    let lost = written - received.len() as u64;
    assert!(lost <= may_lose, "{lost} of {written} lines lost, at most {may_lose} allowed: {received:?}");
}

#[test]
fn copytruncate_loses_only_the_copy_to_truncate_window() {
    let (received, written) = run("copytruncate", None);
    assert!(written > 800, "the writer ran: {written}");
    // logrotate copies then truncates; what is written between the two is gone for anyone.
    check(&received, written, 5);
}

#[test]
fn create_rotation_with_a_writer_reopening_late_loses_nothing() {
    let (received, written) = run("create", Some(Duration::from_millis(800)));
    assert!(written > 800, "the writer ran: {written}");
    check(&received, written, 0);
}
